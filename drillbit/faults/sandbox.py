"""Faults on the sandbox platform: real processes, a real firewall, a real TCP fault proxy, real disks.

- pod kill: SIGKILL supervised processes picked by label selector (modes one / all / fixed / fixed-percent), as
  Chaos Mesh's PodChaos ``pod-kill`` does; the supervisor restarting them is what is being tested.
- network latency: a latency toxic (latency, jitter, correlation) on the fault proxy's links to a component.
- database failure: an nftables table of Drillbit's own dropping (or rejecting) the database port on loopback.
- disk pressure: a ballast file filling a component's data volume plus stress-ng I/O workers on it.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import uuid
import xmlrpc.client
from pathlib import Path
from typing import Any, Literal

import httpx

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle

Mode = Literal["one", "all", "fixed", "fixed-percent"]


def select_targets(
    components: dict[str, dict[str, Any]],
    selector: dict[str, str],
    mode: Mode = "one",
    value: float | None = None,
    *,
    max_targets: int | None = None,
    max_percent: float | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    """Pick components whose labels match every selector label, per Chaos Mesh's selection modes.

    Raises FaultError when the selector matches nothing, the mode/value is invalid, or the choice exceeds the blast
    radius (``max_targets`` absolute, ``max_percent`` of the matching set).
    """
    if not selector:
        raise FaultError("selector is empty: it would match every component; give at least one label")
    matching = sorted(n for n, c in components.items() if all(c["labels"].get(k) == v for k, v in selector.items()))
    if not matching:
        known = sorted({f"{k}={v}" for c in components.values() for k, v in c["labels"].items()})
        raise FaultError(f"selector {selector} matches no component; labels in use: {', '.join(known[:12])}")
    rng = rng or random.Random()
    if mode == "one":
        count = 1
    elif mode == "all":
        count = len(matching)
    elif mode == "fixed":
        if value is None or value < 1 or int(value) != value:
            raise FaultError(f"mode fixed needs a whole number value ≥ 1, got {value}")
        count = int(value)
    elif mode == "fixed-percent":
        if value is None or not 0 < value <= 100:
            raise FaultError(f"mode fixed-percent needs a value in (0, 100], got {value}")
        count = max(1, math.floor(len(matching) * value / 100))
    else:
        raise FaultError(f"unknown mode {mode!r}; use one, all, fixed or fixed-percent")
    if count > len(matching):
        raise FaultError(f"mode {mode} asks for {count} targets but the selector matches only {len(matching)}")
    if max_targets is not None and count > max_targets:
        raise FaultError(f"blast radius: {count} targets exceed safety.max_targets={max_targets}")
    if max_percent is not None and count / len(matching) * 100 > max_percent + 1e-9 and count > 1:
        raise FaultError(f"blast radius: {count}/{len(matching)} targets exceed safety.max_percent={max_percent:g}")
    return sorted(rng.sample(matching, count))


class PodKill(Fault):
    kind = "pod-kill"

    def __init__(
        self,
        endpoints: dict[str, Any],
        selector: dict[str, str],
        mode: Mode = "one",
        value: float | None = None,
        max_targets: int | None = None,
        max_percent: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.endpoints, self.selector, self.mode, self.value = endpoints, selector, mode, value
        self.max_targets, self.max_percent = max_targets, max_percent
        self.rng = random.Random(seed)

    def plan(self) -> Plan:
        # like Chaos Mesh, only running pods are candidates (a pod that is already gone cannot be killed)
        supervisor = xmlrpc.client.ServerProxy(self.endpoints["supervisor"]).supervisor
        try:
            running = {i["name"] for i in supervisor.getAllProcessInfo() if i["statename"] == "RUNNING"}
        except (OSError, xmlrpc.client.Error) as exc:
            raise FaultError(f"cannot reach the sandbox supervisor: {exc}") from exc
        candidates = {n: c for n, c in self.endpoints["components"].items() if n in running}
        targets = select_targets(
            candidates,
            self.selector,
            self.mode,
            self.value,
            max_targets=self.max_targets,
            max_percent=self.max_percent,
            rng=self.rng,
        )
        return Plan(self.kind, targets, {"selector": self.selector, "mode": self.mode, "signal": "SIGKILL"})

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "noop", "why": "a killed process must be restarted by the platform, not by Drillbit"}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        supervisor = xmlrpc.client.ServerProxy(self.endpoints["supervisor"]).supervisor
        killed = {}
        for name in plan.targets:
            info = supervisor.getProcessInfo(name)
            pid = int(info.get("pid") or 0)
            if info.get("statename") != "RUNNING" or pid <= 0:
                raise FaultError(f"{name} is not running ({info.get('statename')}); refusing to kill")
            os.kill(pid, signal.SIGKILL)
            killed[name] = pid
        handle.detail["killed"] = killed


class NetworkLatency(Fault):
    """A latency toxic on each named fault-proxy link (Toxiproxy API; jitter and correlation as Chaos Mesh's delay)."""

    kind = "network-latency"

    def __init__(
        self,
        faultproxy: str,
        proxies: list[str],
        latency_ms: float,
        jitter_ms: float = 0.0,
        correlation: float = 0.0,
        stream: Literal["downstream", "upstream"] = "downstream",
    ) -> None:
        self.api, self.proxies = faultproxy.rstrip("/"), list(proxies)
        self.latency_ms, self.jitter_ms, self.correlation, self.stream = latency_ms, jitter_ms, correlation, stream
        self.toxic = f"drillbit-latency-{uuid.uuid4().hex[:8]}"

    def plan(self) -> Plan:
        if self.latency_ms < 0 or self.jitter_ms < 0 or not 0 <= self.correlation <= 100:
            raise FaultError("latency and jitter must be ≥ 0 ms and correlation within 0..100 %")
        if not self.proxies:
            raise FaultError("no link (proxy) to slow down")
        try:
            known = httpx.get(f"{self.api}/proxies", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise FaultError(f"fault proxy at {self.api} is not reachable: {exc}") from exc
        missing = [p for p in self.proxies if p not in known]
        if missing:
            raise FaultError(f"unknown link(s) {', '.join(missing)}; the fault proxy has: {', '.join(sorted(known))}")
        detail = {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "correlation": self.correlation}
        return Plan(self.kind, self.proxies, detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "toxic", "api": self.api, "proxy": p, "toxic": self.toxic} for p in plan.targets]

    def apply(self, plan: Plan, handle: Handle) -> None:
        body = {
            "name": self.toxic,
            "type": "latency",
            "stream": self.stream,
            "toxicity": 1.0,
            "attributes": {"latency": self.latency_ms, "jitter": self.jitter_ms, "correlation": self.correlation},
        }
        for proxy in plan.targets:
            r = httpx.post(f"{self.api}/proxies/{proxy}/toxics", json=body, timeout=5)
            if r.status_code >= 300:
                raise FaultError(f"adding latency to {proxy} failed: HTTP {r.status_code} {r.text[:200]}")


class PortBlock(Fault):
    """Drop (or reset) TCP traffic to a loopback port with an nftables table of Drillbit's own: the DB failure."""

    kind = "db-failure"

    def __init__(self, port: int, action: Literal["drop", "reject"] = "drop", label: str = "database") -> None:
        self.port, self.action, self.label = port, action, label
        self.table = f"drillbit_{uuid.uuid4().hex[:10]}"

    def plan(self) -> Plan:
        if not 0 < int(self.port) < 65536:
            raise FaultError(f"port {self.port} is not a TCP port")
        if shutil.which("nft") is None:
            raise FaultError("nft not found: install nftables (apt-get install -y nftables)")
        if os.geteuid() != 0:
            raise FaultError("blocking a port needs root (nftables)")
        return Plan(self.kind, [f"{self.label} 127.0.0.1:{self.port}"], {"action": self.action, "table": self.table})

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "nft_table", "family": "inet", "table": self.table}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        verdict = "drop" if self.action == "drop" else "reject with tcp reset"
        rules = (
            f"table inet {self.table} {{\n"
            f"  chain output {{\n"
            f"    type filter hook output priority -10; policy accept;\n"
            f'    oifname "lo" tcp dport {int(self.port)} {verdict}\n'
            f"  }}\n"
            f"}}\n"
        )
        r = subprocess.run(["nft", "-f", "-"], input=rules, text=True, capture_output=True)
        if r.returncode != 0:
            raise FaultError(f"nft failed: {r.stderr.strip()}")


class DiskPressure(Fault):
    """Fill a data volume with a ballast file (bounded) and run stress-ng I/O workers on it."""

    kind = "disk-pressure"

    def __init__(
        self,
        path: str,
        fill_percent: float = 90.0,
        max_fill_bytes: int = 1 << 30,
        workers: int = 4,
        io_bytes: int = 16 << 20,
        duration: float = 60.0,
        max_filesystem_bytes: int = 8 << 30,
    ) -> None:
        self.path, self.fill_percent, self.max_fill_bytes = Path(path), fill_percent, max_fill_bytes
        self.workers, self.io_bytes, self.duration = workers, io_bytes, duration
        self.max_filesystem_bytes = max_filesystem_bytes
        tag = uuid.uuid4().hex[:8]
        self.ballast = self.path / f".drillbit-ballast-{tag}"
        self.scratch = self.path / f".drillbit-io-{tag}"

    def plan(self) -> Plan:
        if not self.path.is_dir():
            raise FaultError(f"{self.path} is not a directory")
        if not 0 < self.fill_percent < 100:
            raise FaultError(f"fill_percent must be within (0, 100), got {self.fill_percent}")
        if self.workers < 0 or self.workers > 64:
            raise FaultError(f"workers must be within 0..64, got {self.workers}")
        if self.workers and shutil.which("stress-ng") is None:
            raise FaultError("stress-ng not found: apt-get install -y stress-ng")
        st = os.statvfs(self.path)
        size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        if size > self.max_filesystem_bytes:
            raise FaultError(
                f"{self.path} is on a {size / 2**30:.1f} GiB filesystem; disk pressure only fills bounded volumes "
                f"(≤ {self.max_filesystem_bytes / 2**30:.0f} GiB) so that it can never fill the host's disk"
            )
        used = size - free
        want = int(size * self.fill_percent / 100) - used
        fill = max(0, min(want, self.max_fill_bytes, free - (1 << 20)))
        detail = {"filesystem_bytes": size, "fill_bytes": fill, "target_percent": self.fill_percent}
        detail |= {"workers": self.workers, "io_bytes": self.io_bytes}
        return Plan(self.kind, [str(self.path)], detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "file", "path": str(self.ballast)}, {"driver": "file", "path": str(self.scratch)}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        fill = int(plan.detail["fill_bytes"])
        with open(self.ballast, "wb") as f:
            chunk = b"\0" * (4 << 20)
            left = fill
            while left > 0:
                left -= f.write(chunk[: min(len(chunk), left)])
            f.flush()
            os.fsync(f.fileno())
        if self.workers:
            self.scratch.mkdir(exist_ok=True)
            cmd = ["stress-ng", "--hdd", str(self.workers), "--hdd-bytes", str(self.io_bytes)]
            cmd += ["--temp-path", str(self.scratch), "--timeout", f"{max(1, int(self.duration))}s", "--quiet"]
            # their end is in the ledger before they start (start_process): the workers are ours and must be ended
            proc = self.start_process(handle, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            handle.detail["stress_pid"] = proc.pid
            self.remember(handle)
