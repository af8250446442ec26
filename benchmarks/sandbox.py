"""Sandbox cold start and tx confirmation latency at idle.

    .venv/bin/python benchmarks/sandbox.py [N_TXS]

Starts a sandbox at port offset 8000 in its own run dir, reports the cold-start time (goal: every component healthy
within 30 s here), then submits N txs one after another and reports confirmation latency p50/p95, also as a ratio to
the 1 s block time (these machines are noisy: compare ratios), then stops it and removes everything it made.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient

RUN = Path("/tmp/drillbit-bench-sandbox")
OFFSET = 8000


def main(n: int = 30) -> None:
    t0 = time.monotonic()
    up = sbx.launcher(["up"], run=RUN, offset=OFFSET, capture=True)
    cold = time.monotonic() - t0
    try:
        if up.returncode != 0:
            raise SystemExit(f"sandbox up failed: {up.stderr}")
        ep = sbx.endpoints(RUN)
        lat = []
        with VirtEngineClient(ep["node_rpc"], ep["node_rest"], timeout=10) as c:
            for i in range(n):
                msg = {"owner": "bench", "host_uri": "h", "attributes": [{"key": "i", "value": str(i)}]}
                t = time.perf_counter()
                c.submit("provider/update", "bench", msg)
                lat.append(time.perf_counter() - t)
        p50, p95 = np.percentile(lat, [50, 95])
        print(f"cold start (up → every component healthy): {cold:.1f} s  (goal < 30 s)")
        print(f"tx confirmation at idle over {n} txs: p50 {p50:.3f} s, p95 {p95:.3f} s")
        print(f"ratio to the 1 s block time: p50 {p50 / 1.0:.2f}x, p95 {p95 / 1.0:.2f}x")
    finally:
        sbx.launcher(["down", "--purge"], run=RUN, offset=OFFSET, capture=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
