"""A bare Locust FastHttpUser (closed loop): the baseline Drillbit's open-model engine is compared with.

Each user sends ``GET $DRILLBIT_PLAIN_PATH`` (default ``/``), then waits ``DRILLBIT_PLAIN_WAIT`` seconds (default 0;
with ``constant_throughput`` semantics when ``DRILLBIT_PLAIN_RPS_PER_USER`` is set). What plain Locust reports is its
own stats (``--json-file``): latency measured from the actual send, so a stall is sampled once per user.

    locust -f infra/load/locustfiles/plain_fasthttp.py --headless -u 10 -r 100 -t 10s --host http://127.0.0.1:8099
"""

from __future__ import annotations

import os

from locust import constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

PATH = os.environ.get("DRILLBIT_PLAIN_PATH", "/")
RPS = float(os.environ.get("DRILLBIT_PLAIN_RPS_PER_USER", "0") or 0)


class PlainUser(FastHttpUser):
    wait_time = constant_throughput(RPS) if RPS > 0 else constant(float(os.environ.get("DRILLBIT_PLAIN_WAIT", "0")))

    @task
    def get(self) -> None:
        self.client.get(PATH, name=PATH)
