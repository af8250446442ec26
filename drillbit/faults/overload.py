"""Overload as a fault: an open-model HTTP load generator (``drillbit.load.openloop_http``) run as a subprocess.

The generator is bounded by itself (``duration`` seconds and ``max_requests`` requests, each request timed out), and
its process group is recorded in the ledger as soon as it is started, so ``revert`` and ``drillbit cleanup`` end it
by PID. Its results (one CSV line per request, plus a meta file) stay on disk for grading.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.load.openloop_http import is_loopback

MAX_RATE = 50_000.0
MAX_REQUESTS = 10_000_000
START_TIMEOUT = 20.0  # Python's start on a loaded machine


class Overload(Fault):
    """Send ``rate`` requests per second to ``url`` for ``duration`` s (at most ``max_requests``), open model."""

    kind = "overload"

    def __init__(
        self,
        url: str,
        rate: float,
        duration: float,
        out_dir: Path,
        *,
        body: dict[str, Any] | None = None,
        method: str = "POST",
        max_requests: int | None = None,
        connections: int = 256,
        timeout: float = 5.0,
        label: str = "",
    ) -> None:
        self.url, self.rate, self.duration, self.out_dir = url, float(rate), float(duration), Path(out_dir)
        self.body, self.method, self.connections, self.timeout = body, method.upper(), connections, timeout
        self.max_requests = max_requests if max_requests is not None else math.ceil(self.rate * self.duration)
        self.label = label or url
        self.results = self.out_dir / "requests.csv"

    def plan(self) -> Plan:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise FaultError(f"overload target must be an http:// URL, got {self.url!r}")
        if not is_loopback(parts.hostname):
            raise FaultError(f"refusing to overload {parts.hostname}: only loopback targets (127.0.0.0/8)")
        if not 0 < self.rate <= MAX_RATE:
            raise FaultError(f"rate must be within (0, {MAX_RATE:g}] requests/s, got {self.rate:g}")
        if not 0 < self.duration <= 3600:
            raise FaultError(f"duration must be within (0, 3600] s, got {self.duration:g}")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise FaultError(f"max_requests must be within 1..{MAX_REQUESTS}, got {self.max_requests}")
        if not 1 <= self.connections <= 4096 or not 0 < self.timeout <= 60:
            raise FaultError("connections must be within 1..4096 and the request timeout within (0, 60] s")
        detail = {"rate": self.rate, "duration_s": self.duration, "max_requests": self.max_requests}
        detail |= {"results": str(self.results)}
        return Plan(self.kind, [f"{self.label} ({self.method} {self.url})"], detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        # the generator's PID is recorded the moment it starts (apply); until then there is nothing to undo
        return [{"driver": "noop", "why": "the load generator is bounded by its own duration and request count"}]

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "drillbit.load.openloop_http", "--url", self.url, "--method", self.method]
        if self.body is not None:
            cmd += ["--body", json.dumps(self.body, separators=(",", ":"))]
        cmd += ["--rate", f"{self.rate:g}", "--duration", f"{self.duration:g}"]
        cmd += ["--max-requests", str(self.max_requests), "--connections", str(self.connections)]
        return [*cmd, "--timeout", f"{self.timeout:g}", "--out", str(self.results)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = self.out_dir / "generator.log"
        with open(log, "wb") as out:
            proc = self.start_process(handle, self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        handle.detail["generator_pid"] = proc.pid
        self.remember(handle)
        deadline = time.monotonic() + START_TIMEOUT
        while not meta_state(self.results):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-500:]
                raise FaultError(f"the load generator exited with {proc.returncode} before starting: {tail}")
            if time.monotonic() > deadline:
                raise FaultError(f"the load generator did not start within {START_TIMEOUT:g} s")
            time.sleep(0.05)


def meta_state(results: Path) -> str | None:
    """The generator's state from its meta file: None (not started), "running" or "finished"."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads(Path(f"{results}.meta.json").read_text()).get("state")
    return None


def read_results(results: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(requests: columns ts (intended start, unix s), latency (s), status) and the generator's meta."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(Path(f"{results}.meta.json").read_text())
    try:
        df = pd.read_csv(results, names=["ts", "latency", "status"], dtype={"status": np.int32})
    except (FileNotFoundError, pd.errors.EmptyDataError):
        df = pd.DataFrame({"ts": [], "latency": [], "status": []})
    return df, meta
