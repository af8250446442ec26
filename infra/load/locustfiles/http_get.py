"""A plain HTTP GET on an open schedule (any endpoint): Drillbit's engine without a VirtEngine-specific operation.

Records ``http-get`` (ok on 2xx), latency from the intended start. Used by the benchmarks; also handy to load any
health or query endpoint. Standalone:

    locust -f infra/load/locustfiles/http_get.py --headless -u 4 -r 100 -t 20s --host http://127.0.0.1:8099 \
        --drillbit-rate 100 --drillbit-duration 10 --drillbit-path /
"""

from __future__ import annotations

import time
from typing import Any

from locust import events
from openloop import OpenLoopUser

NAME = "http-get"


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument_group("drillbit http get").add_argument("--drillbit-path", default="/", help="path to GET")


class HttpGetUser(OpenLoopUser):
    primary = NAME

    def on_start(self) -> None:
        super().on_start()
        self.path = getattr(self.engine.env.parsed_options, "drillbit_path", "/")

    def arrive(self, intended: float) -> None:
        sent = time.time()
        ok, status, error, _, _ = self.call(NAME, "GET", self.path)
        self.engine.record(NAME, intended, sent, time.time(), ok, status, error)
