"""Market queries on the marketplace API (``GET /api/v1/market/orders``) on an open schedule.

Each arrival sends one query, rotating over a few filters; ok = HTTP 200 with an ``items`` list (served from the
database or, while it is down, from the API's cache). Records ``market-query`` (latency from the intended start).
Standalone:

    locust -f infra/load/locustfiles/market_query.py --headless -u 2 -r 2 -t 40s --host http://127.0.0.1:38080 \
        --drillbit-rate 20 --drillbit-duration 30 --drillbit-out /tmp/api-load
"""

from __future__ import annotations

import time
from typing import Any

from openloop import OpenLoopUser

NAME = "market-query"
QUERIES = [
    "/api/v1/market/orders?state=open&limit=50",
    "/api/v1/market/orders?state=active&limit=50",
    "/api/v1/market/orders?limit=100",
    "/api/v1/market/orders?state=closed&limit=20",
]


def has_items(r: Any) -> str | None:
    return None if isinstance(r.json().get("items"), list) else "no items list in the answer"


class MarketQueryUser(OpenLoopUser):
    primary = NAME

    def on_start(self) -> None:
        super().on_start()
        self.turn = 0

    def arrive(self, intended: float) -> None:
        path = QUERIES[self.turn % len(QUERIES)]
        self.turn += 1
        sent = time.time()
        ok, status, error, _, _ = self.call(NAME, "GET", path, ok=has_items)
        self.engine.record(NAME, intended, sent, time.time(), ok, status, error)
