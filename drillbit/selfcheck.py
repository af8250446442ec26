"""Self-checks of Drillbit's own safety (issue 10): the crash-safety soak and the results store's crash atomicity.

Crash-safety soak
-----------------
For each experiment (cycling over every fault type in ``FAULTS``) a *runner* subprocess
(``python -m drillbit.selfcheck runner SPEC``) builds the fault against the sandbox (or, for the Kubernetes driver, a
local API stand-in given by the caller), injects it with a long time-to-live (so the TTL reaper never does the
cleanup's job) and holds it. The runner is SIGKILLed at a point drawn from a seeded RNG:

- ``before``: the runner is ready (everything imported, fault built) but has not started injecting;
- ``during-event``: the runner SIGKILLs itself right after its k-th *event* of the injection (a ledger write, a process
  started — reaper, nft, stress-ng, load generator —, a toxic POST, a signal sent, a custom object created);
  k beyond the injection's events means it was killed after injecting;
- ``during-timed``: SIGKILL from the harness a random fraction of the injection's usual duration after it started;
- ``after``: SIGKILL from the harness a random delay after the injection completed.

The phase it really died in is read from the runner's own progress lines. Then ``drillbit cleanup`` runs (the CLI, in
a fresh process, from the ledger alone) and the machine is scanned for what the experiment may have left: Drillbit's
nftables tables, fault-proxy toxics and disabled proxies, ballast/scratch files, mounts, memory cgroups, sandbox
processes moved out of their cgroup, processes the runner started (found by an environment tag every child inherits),
custom objects at the Kubernetes stand-in, and ledger entries cleanup could not revert. Every name a fault creates
carries the experiment's tag, so nothing another user of the machine made is ever counted (or touched). Whatever is
found is counted, then removed so that the next experiment starts clean.

Store atomicity
---------------
``store_kill_check`` SIGKILLs a subprocess that saves run records in a loop (each record twice: running, then
completed with its samples, as flows do) and checks that every save it reported as committed is there, readable and
whole (a completed record has all its samples; a record never has half of them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from drillbit.faults.ledger import Ledger

FAULTS = (
    "pod-kill",
    "network-latency",
    "port-block",
    "disk-pressure",
    "partition",
    "memory-pressure",
    "overload",
    "k8s-chaos-mesh",
)
MODES = ("before", "during-event", "during-timed", "after")
TAG_ENV = "DRILLBIT_SELFCHECK_TAG"
CATEGORIES = (
    "nft tables",
    "toxics",
    "disabled proxies",
    "files",
    "mounts",
    "cgroups",
    "misplaced processes",
    "processes",
    "custom resources",
    "ledger entries",
)
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
NODE_LABELS = {"app.kubernetes.io/name": "virtengine-node"}
MAX_EVENT = 10  # during-event draws k in 1..MAX_EVENT, folded into the injection's events
# events of a complete injection, per fault (as observed here: ledger writes, reaper and worker starts, the toxic POST,
# the signal, the object creation; a helper process adds two: its end recorded before it starts, then its PID);
# replaced by what the soak observes once a runner of that fault completes one
INJECT_EVENTS = {
    "pod-kill": 5,
    "network-latency": 5,
    "port-block": 5,
    "disk-pressure": 8,
    "partition": 5,
    "memory-pressure": 9,
    "overload": 8,
    "k8s-chaos-mesh": 6,
}
DEFAULT_INJECT_SECONDS = 0.2


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class KillPlan:
    """Where to SIGKILL the runner of one experiment (drawn from the soak's seeded RNG)."""

    index: int
    fault: str
    mode: str
    event: int  # during-event: die right after this event
    fraction: float  # during-timed: this fraction of the usual injection time; after: 0.5 s × this

    def describe(self) -> str:
        if self.mode == "during-event":
            return f"after event {self.event} (mod the injection's events)"
        if self.mode == "during-timed":
            return f"{self.fraction:.2f} × injection time"
        if self.mode == "after":
            return f"{0.5 * self.fraction:.2f} s after injection"
        return "before injection"


def plan_kills(n: int, seed: int, faults: Iterable[str] = FAULTS) -> list[KillPlan]:
    """``n`` experiments cycling over ``faults``; kill points drawn from ``random.Random(seed)`` (reproducible)."""
    faults = list(faults)
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        raise ValueError(f"unknown fault type(s) {unknown or '(none given)'}; known: {', '.join(FAULTS)}")
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        # modes rotate so that any len(faults) consecutive experiments cover every mode and, over len(MODES) cycles,
        # every fault type meets every mode; the point within the mode is drawn from the RNG
        mode = MODES[(i + i // len(faults)) % len(MODES)]
        plans.append(KillPlan(i, faults[i % len(faults)], mode, rng.randint(1, MAX_EVENT), rng.random()))
    return plans


# ------------------------------------------------------------------------------------------------ the runner


def build_fault(spec: dict[str, Any]) -> Any:
    """The fault of one experiment; every name it creates carries ``spec["tag"]``."""
    from drillbit.faults.chaos_mesh import ChaosMeshFault
    from drillbit.faults.disk import DiskPressure
    from drillbit.faults.memory import MemoryPressure
    from drillbit.faults.network import NetworkLatency
    from drillbit.faults.overload import Overload
    from drillbit.faults.partition import Partition
    from drillbit.faults.platform.kubernetes import KubeConnection
    from drillbit.faults.pod_kill import PodKill, pod_kill
    from drillbit.faults.port_block import PortBlock

    kind, tag, ep = spec["fault"], spec["tag"], spec["endpoints"]
    if kind == "pod-kill":
        return PodKill(ep, NODE_LABELS, "one", max_targets=1, seed=spec.get("seed"))
    if kind == "network-latency":
        fault = NetworkLatency(ep["faultproxy"], ["provider"], latency_ms=50.0)
        fault.toxic = f"drillbit-latency-{tag}"
        return fault
    if kind == "port-block":
        fault = PortBlock(int(ep["postgres"]["port"]), action="reject")
        fault.table = f"drillbit_{tag}"
        return fault
    if kind == "disk-pressure":
        volume = Path(ep["volumes"]["node-2"]["path"])
        fault = DiskPressure(str(volume), 40.0, max_fill_bytes=64 << 20, workers=1, io_bytes=4 << 20, duration=60)
        fault.ballast, fault.scratch = volume / f".drillbit-ballast-{tag}", volume / f".drillbit-io-{tag}"
        return fault
    if kind == "partition":
        fault = Partition(ep["etcd"], [ep["etcd"][-1]["name"]], max_isolated=1)
        fault.table = f"drillbit_part_{tag}"
        return fault
    if kind == "memory-pressure":
        fault = MemoryPressure(ep["supervisor"], "node-1", 24 << 20, duration=60, fill_timeout=30)
        fault.name = f"vesandbox-drillbit-{tag}"
        fault.path = fault.root / fault.name
        return fault
    if kind == "overload":
        health = ep["components"]["provider"]["health"].removeprefix("http:")
        out = Path(spec["workdir"]) / f"overload-{tag}"
        return Overload(health, rate=20, duration=60, out_dir=out, method="GET", timeout=2)
    if kind == "k8s-chaos-mesh":
        manifest = pod_kill(namespace="virtengine", labels=NODE_LABELS, run_id=tag, name=f"drillbit-soak-{tag}")
        connection = KubeConnection(host=spec["k8s_url"])
        # the stand-in's node pods are bare (no owner), each a workload of one: the soak tests crash safety, not that
        return ChaosMeshFault(
            manifest, connection, max_targets=1, poll_interval=0.05, inject_timeout=20, full_outage=True
        )
    raise ValueError(f"unknown fault type {kind!r}")


def _instrument(event: Callable[[str], None]) -> None:
    """Report (and possibly die at) every step of an injection that changes something outside the runner."""
    from kubernetes import client as k8s

    original_record = Ledger.record

    def record(self: Ledger, handle: Any) -> None:
        original_record(self, handle)
        event("ledger-record")

    Ledger.record = record  # type: ignore[method-assign]

    class TracedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            argv = self.args if isinstance(self.args, list | tuple) else [self.args]
            name = Path(str(argv[0])).name
            if name.startswith("python") and "-m" in argv:
                name = str(argv[list(argv).index("-m") + 1])
            event(f"popen {name}")

    subprocess.Popen = TracedPopen  # type: ignore[misc]
    original_kill, original_post = os.kill, httpx.post

    def kill(pid: int, sig: int) -> None:
        original_kill(pid, sig)
        if pid != os.getpid():
            event(f"kill {int(sig)}")

    def post(*args: Any, **kwargs: Any) -> httpx.Response:
        response = original_post(*args, **kwargs)
        event("http post")
        return response

    os.kill, httpx.post = kill, post  # type: ignore[assignment]
    original_create = k8s.CustomObjectsApi.create_namespaced_custom_object

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original_create(self, *args, **kwargs)
        event("k8s create")
        return out

    k8s.CustomObjectsApi.create_namespaced_custom_object = create  # type: ignore[method-assign]


def runner_main(spec_path: str) -> int:
    """The runner subprocess: build, wait for "go", inject (reporting each event), hold, revert."""
    from drillbit.faults.base import revert

    spec = json.loads(Path(spec_path).read_text())
    count = 0

    def event(name: str) -> None:
        nonlocal count
        count += 1
        print(f"event {count} {name}", flush=True)
        if spec.get("die_at") == count:
            os.kill(os.getpid(), signal.SIGKILL)

    fault = build_fault(spec)
    ledger = Ledger(Path(spec["ledger"]))
    _instrument(event)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    print("inject-start", flush=True)
    handle = fault.inject(ttl=float(spec.get("ttl", 600)), ledger=ledger, run_id=f"selfcheck-{spec['tag']}")
    print(f"inject-done {handle.id}", flush=True)
    time.sleep(float(spec.get("hold", 10)))
    revert(handle, ledger)
    print("revert-done", flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ leftovers


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def nft_tables(tag: str) -> list[str]:
    """Drillbit-named nftables tables (``drillbit_*``) carrying ``tag``, as ``family name``."""
    out = []
    for line in _run(["nft", "list", "tables"]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith("drillbit_") and tag in parts[2]:
            out.append(f"{parts[1]} {parts[2]}")
    return out


def proxy_state(faultproxy: str) -> dict[str, Any]:
    return httpx.get(f"{faultproxy.rstrip('/')}/proxies", timeout=5).json()


def toxics_of(proxies: dict[str, Any], tag: str) -> list[str]:
    return [f"{p}/{t['name']}" for p, info in proxies.items() for t in info.get("toxics") or [] if tag in t["name"]]


def disabled_proxies(proxies: dict[str, Any]) -> list[str]:
    return sorted(p for p, info in proxies.items() if info.get("enabled") is False)


def tagged_files(dirs: Iterable[Path], tag: str) -> list[str]:
    return sorted(str(p) for d in dirs if d.is_dir() for p in d.iterdir() if tag in p.name)


def tagged_mounts(tag: str) -> list[str]:
    return [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if tag in line.split()[0] or tag in line.split()[1]
    ]


def tagged_cgroups(tag: str, root: Path = CGROUP_MEMORY) -> list[str]:
    return sorted(str(p) for p in root.glob(f"*{tag}*") if p.is_dir())


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _state(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def tagged_processes(tag: str) -> list[int]:
    """Live (not zombie) processes whose environment carries ``TAG_ENV=tag``: everything the runner started."""
    marker = f"{TAG_ENV}={tag}".encode()
    me = str(os.getpid())
    return sorted(
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and p.name != me and _environ_has(p.name, marker) and _state(p.name) not in (None, "Z")
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _memory_cgroup(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return path
    except OSError:
        return None
    return None


def supervised_cgroups(supervisor: str) -> dict[str, tuple[int, str | None]]:
    """Every running supervised program: (pid, memory cgroup)."""
    try:
        infos = xmlrpc.client.ServerProxy(supervisor).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    return {i["name"]: (int(i["pid"]), _memory_cgroup(int(i["pid"]))) for i in infos if int(i.get("pid") or 0) > 0}


def misplaced(before: dict[str, tuple[int, str | None]], after: dict[str, tuple[int, str | None]]) -> list[str]:
    """Programs still running as the same process but in another memory cgroup than before the experiment."""
    out = []
    for name, (pid, group) in before.items():
        now = after.get(name)
        if now and now[0] == pid and now[1] != group:
            out.append(f"{name} (pid {pid}) in {now[1]}, was in {group}")
    return out


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait (bounded) for processes to end; the ones still alive."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _state(str(p)) not in (None, "Z")]
    return left


# ------------------------------------------------------------------------------------------------ the soak


@dataclass
class KillTrial:
    """One trial of the crash soak: a fault runner killed at a planned moment, then cleanup, then a leftover scan."""

    plan: KillPlan
    tag: str
    phase: str = ""  # before | during | after (as the runner's own progress lines show)
    last_event: str = ""
    runner_rc: int | None = None
    runner_error: str = ""
    cleanup_rc: int | None = None
    reverted: int = 0
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: ready, runner, cleanup, scan

    @property
    def leftover_count(self) -> int:
        return sum(len(v) for v in self.leftovers.values())


@dataclass
class SoakReport:
    seed: int
    experiments: list[KillTrial]
    seconds: float

    @property
    def leftovers(self) -> int:
        return sum(e.leftover_count for e in self.experiments)

    @property
    def runner_errors(self) -> list[KillTrial]:
        return [e for e in self.experiments if e.runner_error]

    def by_category(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for e in self.experiments:
            for k, v in e.leftovers.items():
                out[k] += len(v)
        return out

    def table(self) -> str:
        """Per fault type: experiments, where the runner died, faults cleanup reverted, leftovers per category."""
        header = ["fault", "runs", "killed before", "during", "after", "reverted", "leftovers"]
        rows = []
        for fault in dict.fromkeys(e.plan.fault for e in self.experiments):
            es = [e for e in self.experiments if e.plan.fault == fault]
            phases = Counter(e.phase for e in es)
            found = Counter()
            for e in es:
                for k, v in e.leftovers.items():
                    found[k] += len(v)
            detail = ", ".join(f"{k}: {n}" for k, n in found.items() if n) or "0"
            rows.append([fault, len(es), phases["before"], phases["during"], phases["after"]])
            rows[-1] += [sum(e.reverted for e in es), detail]
        rows.append(["total", len(self.experiments), *self._totals(), self.leftovers])
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        cats = self.by_category()
        lines.append("")
        lines.append("leftovers by category: " + ", ".join(f"{c} {cats.get(c, 0)}" for c in CATEGORIES))
        lines.append(f"seed {self.seed}; {len(self.runner_errors)} runner error(s); {self.seconds:.0f} s")
        return "\n".join(lines)

    def _totals(self) -> list[int]:
        phases = Counter(e.phase for e in self.experiments)
        return [phases["before"], phases["during"], phases["after"], sum(e.reverted for e in self.experiments)]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "seconds": self.seconds, "experiments": [asdict(e) for e in self.experiments]}


class CrashSoak:
    """Run kill/cleanup/scan experiments against a running sandbox (``endpoints``) and a Kubernetes API stand-in.

    ``k8s`` is any object with ``url`` (where the stand-in listens) and ``objects`` (a dict of the custom objects it
    holds, keyed ``plural/name``), such as the local API stand-in of the Kubernetes driver's tests; the caller makes it
    answer pod lists and report injection. ``workdir`` holds the soak's DRILLBIT_HOME, ledger and specs; the caller
    removes it. ``log`` receives one line per experiment.
    """

    def __init__(
        self,
        endpoints: dict[str, Any],
        workdir: Path,
        k8s: Any | None = None,
        *,
        seed: int = 0,
        hold: float = 10.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.ep, self.workdir, self.k8s, self.seed, self.hold = endpoints, Path(workdir), k8s, seed, hold
        self.log = log or (lambda _line: None)
        self.home = self.workdir / "home"
        self.ledger = Ledger(self.home / "ledger")
        self.token = f"{uuid.uuid4().hex[:5]}s{seed % 1000}"
        self.inject_seconds: dict[str, list[float]] = {}  # learned: injection durations per fault
        self.inject_events: dict[str, int] = dict(INJECT_EVENTS)  # learned: events of a completed injection

    # --------------------------------------------------------------------------------------------- one experiment

    def run(self, plans: list[KillPlan]) -> SoakReport:
        if any(p.fault == "k8s-chaos-mesh" for p in plans) and self.k8s is None:
            raise ValueError("the k8s-chaos-mesh experiments need a Kubernetes API stand-in (k8s=...)")
        t0 = time.monotonic()
        out = []
        for plan in plans:
            e = self.experiment(plan)
            out.append(e)
            found = ", ".join(f"{k} {len(v)}" for k, v in e.leftovers.items() if v) or "none"
            err = f" RUNNER ERROR {e.runner_error}" if e.runner_error else ""
            self.log(
                f"{plan.index:3d} {plan.fault:16s} {plan.mode:12s} ({plan.describe()}) died {e.phase:6s} "
                f"[{e.last_event}] cleanup rc={e.cleanup_rc} reverted={e.reverted} leftovers: {found}{err} "
                f"({e.seconds:.1f} s: {', '.join(f'{k} {v:.1f}' for k, v in e.timings.items())})"
            )
        return SoakReport(self.seed, out, round(time.monotonic() - t0, 1))

    def experiment(self, plan: KillPlan) -> KillTrial:
        t0 = time.monotonic()
        tag = f"{self.token}x{plan.index:03d}"
        e = KillTrial(plan, tag)
        self.wait_sandbox_ready()
        e.timings["ready"] = round(time.monotonic() - t0, 2)
        homes = supervised_cgroups(self.ep["supervisor"])
        proxies_before = set(disabled_proxies(proxy_state(self.ep["faultproxy"])))
        spec = {
            "fault": plan.fault,
            "tag": tag,
            "seed": self.seed * 1000 + plan.index,
            "endpoints": self.ep,
            "ledger": str(self.ledger.root),
            "workdir": str(self.workdir),
            "k8s_url": getattr(self.k8s, "url", None),
            "ttl": 600,
            "hold": self.hold,
            "die_at": self.die_at(plan),
        }
        spec_path = self.workdir / f"spec-{tag}.json"
        spec_path.write_text(json.dumps(spec))
        lines = self._kill_runner(plan, spec_path, tag, e)
        markers = {ln.split()[0] for ln in lines}
        e.phase = "after" if "inject-done" in markers else "during" if "inject-start" in markers else "before"
        events = [ln for ln in lines if ln.startswith("event ")]
        e.last_event = events[-1].removeprefix("event ") if events else "no event"
        e.timings["runner"] = round(time.monotonic() - t0 - sum(e.timings.values()), 2)
        e.cleanup_rc, e.reverted = self.cleanup()
        e.timings["cleanup"] = round(time.monotonic() - t0 - sum(e.timings.values()), 2)
        e.leftovers = self.scan(tag, homes, proxies_before)
        e.timings["scan"] = round(time.monotonic() - t0 - sum(e.timings.values()), 2)
        self.purge(tag, e.leftovers)
        e.seconds = round(time.monotonic() - t0, 2)
        return e

    def die_at(self, plan: KillPlan) -> int | None:
        """during-event: the event to die at, folded into the events this fault's injection was seen to have."""
        if plan.mode != "during-event":
            return None
        seen = self.inject_events.get(plan.fault)
        return 1 + (plan.event - 1) % seen if seen else plan.event

    def _env(self, tag: str) -> dict[str, str]:
        env = os.environ.copy()
        env |= {"DRILLBIT_HOME": str(self.home), "DRILLBIT_LEDGER": str(self.ledger.root), TAG_ENV: tag}
        return env

    def _kill_runner(self, plan: KillPlan, spec_path: Path, tag: str, e: KillTrial) -> list[str]:
        """Start the runner, SIGKILL it per ``plan``; its progress lines (everything it printed)."""
        cmd = [sys.executable, "-m", "drillbit.selfcheck", "runner", str(spec_path)]
        err_path = self.workdir / f"runner-{tag}.err"
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=self._env(tag)
            )
        lines: list[str] = []
        seen_at: dict[str, float] = {}

        def until(marker: str, timeout: float) -> bool:
            """Read progress lines until one starts with ``marker`` (False at EOF: the runner ended)."""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = proc.stdout.readline().strip()  # type: ignore[union-attr]
                if not line:
                    return False
                lines.append(line)
                seen_at.setdefault(line.split()[0], time.monotonic())
                if line.startswith(marker):
                    return True
            return False

        try:
            if not until("ready", 120):
                raise RuntimeError("the runner never became ready")
            if plan.mode != "before":
                proc.stdin.write("go\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            if plan.mode == "during-timed" and until("inject-start", 60):
                usual = sorted(self.inject_seconds.get(plan.fault) or [DEFAULT_INJECT_SECONDS])
                time.sleep(plan.fraction * usual[len(usual) // 2])
            elif plan.mode in ("after", "during-event") and until("inject-done", 120):
                # during-event: the runner died by itself unless k exceeded the injection's events
                time.sleep(0.5 * plan.fraction)
        except RuntimeError as exc:
            e.runner_error = str(exc)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate(timeout=30)
            lines += [ln.strip() for ln in rest.splitlines() if ln.strip()]
        e.runner_rc = proc.returncode
        if proc.returncode != -signal.SIGKILL and not e.runner_error:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
            e.runner_error = f"exited {proc.returncode} before it was killed: {' | '.join(tail)}"
        if "inject-start" in seen_at and "inject-done" in seen_at:
            self.inject_seconds.setdefault(plan.fault, []).append(seen_at["inject-done"] - seen_at["inject-start"])
            done = next(i for i, ln in enumerate(lines) if ln.startswith("inject-done"))
            self.inject_events[plan.fault] = sum(1 for ln in lines[:done] if ln.startswith("event "))
        return lines

    def cleanup(self) -> tuple[int, int]:
        """``drillbit cleanup`` in a fresh process (the CLI); (exit code, faults it reverted)."""
        exe = Path(sys.executable).with_name("drillbit")
        cmd = [str(exe), "cleanup"] if exe.exists() else [sys.executable, "-c", "from cli.app import app; app()"]
        if not exe.exists():
            cmd.append("cleanup")
        before = len(self.ledger.pending())
        r = subprocess.run(cmd, capture_output=True, text=True, env=self._env("cleanup"), timeout=300)
        return r.returncode, before - len(self.ledger.pending())

    def scan(
        self, tag: str, homes: dict[str, tuple[int, str | None]], proxies_before: set[str]
    ) -> dict[str, list[str]]:
        proxies = proxy_state(self.ep["faultproxy"])
        dirs = [Path(v["path"]) for v in self.ep["volumes"].values()] + [self.workdir]
        found = {
            "nft tables": nft_tables(tag),
            "toxics": toxics_of(proxies, tag),
            "disabled proxies": sorted(set(disabled_proxies(proxies)) - proxies_before),
            "files": [f for f in tagged_files(dirs, tag) if not Path(f).name.startswith(("spec-", "runner-"))],
            "mounts": tagged_mounts(tag),
            "cgroups": tagged_cgroups(tag),
            "misplaced processes": misplaced(homes, supervised_cgroups(self.ep["supervisor"])),
            # the reaper ends within its 0.5 s poll of a cleared entry; anything else was ended by cleanup already
            "processes": [f"{p} {_cmdline(p)}" for p in wait_gone(tagged_processes(tag), 5.0)],
            "custom resources": sorted(k for k in (self.k8s.objects if self.k8s else {}) if tag in k),
            "ledger entries": [f"{h.kind} {h.id}" for h in self.ledger.pending()],
        }
        # overload's results directory is its output (kept for grading), not a leftover
        found["files"] = [f for f in found["files"] if not Path(f).name.startswith("overload-")]
        return {k: v for k, v in found.items() if v}

    def purge(self, tag: str, found: dict[str, list[str]]) -> None:
        """Remove what an experiment left (only things carrying its tag), so that the next one starts clean."""
        from drillbit.faults.undo import run_step

        for entry in found.get("processes", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.split()[0]), signal.SIGKILL)
        for table in found.get("nft tables", []):
            family, name = table.split()
            subprocess.run(["nft", "delete", "table", family, name], capture_output=True)
        for toxic in found.get("toxics", []):
            proxy, name = toxic.split("/", 1)
            httpx.delete(f"{self.ep['faultproxy']}/proxies/{proxy}/toxics/{name}", timeout=5)
        for proxy in found.get("disabled proxies", []):
            httpx.post(f"{self.ep['faultproxy']}/proxies/{proxy}", json={"enabled": True}, timeout=5)
        for path in found.get("mounts", []):
            subprocess.run(["umount", "-l", path], capture_output=True)
        for path in found.get("files", []):
            run_step({"driver": "file", "path": path})
        for group in found.get("cgroups", []):
            with contextlib.suppress(Exception):
                run_step({"driver": "cgroup", "name": Path(group).name, "controllers": ["memory"]})
        for key in found.get("custom resources", []):
            self.k8s.objects.pop(key, None)
        for h in self.ledger.pending():
            self.ledger.clear(h.id)

    def wait_sandbox_ready(self, timeout: float = 60.0) -> None:
        """Every supervised program RUNNING again (a pod kill's victim restarts) before the next experiment."""
        server = xmlrpc.client.ServerProxy(self.ep["supervisor"]).supervisor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if all(i["statename"] == "RUNNING" for i in server.getAllProcessInfo()):
                    return
            time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ store atomicity


@dataclass
class StoreCheck:
    kills: int
    committed: int  # saves the writer reported as committed
    missing: list[str]  # committed saves not found (or found older than committed)
    torn: list[str]  # records whose samples do not match their status
    unreadable: list[str]
    integrity: str

    @property
    def ok(self) -> bool:
        return not (self.missing or self.torn or self.unreadable) and self.integrity == "ok"


def writer_main(url: str, prefix: str) -> int:
    """Save records in a loop: each first as running (no samples), then completed with ``1 + i % 7`` samples."""
    from drillbit.model import RunRecord, Sample
    from drillbit.store import ResultsStore

    store = ResultsStore(url)
    print("ready", flush=True)
    i = 0
    while True:
        run_id = f"{prefix}-{i:06d}"
        record = RunRecord("selfcheck-store", "selfcheck", {"i": i}, started_at=time.time(), run_id=run_id)
        store.save(record)
        print(f"committed {run_id} running 0", flush=True)
        n = 1 + i % 7
        samples = [Sample(f"probe-{k}", time.time(), True, latency=0.001 * k) for k in range(n)]
        record.finish([])
        record.metrics["samples"] = n
        store.save(record, samples)
        print(f"committed {run_id} completed {n}", flush=True)
        i += 1


def store_kill_check(url: str, *, kills: int = 5, seed: int = 0, max_run: float = 1.5) -> StoreCheck:
    """SIGKILL a record writer ``kills`` times (after a seeded random 0.1..max_run s of writing each time), then check
    every committed save against the store. The database at ``url`` accumulates across kills."""
    from drillbit.store import ResultsStore

    rng = random.Random(seed)
    committed: dict[str, tuple[str, int]] = {}
    for k in range(kills):
        cmd = [sys.executable, "-m", "drillbit.selfcheck", "store-writer", url, f"k{seed}-{k}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            if proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError("the store writer did not start")
            time.sleep(rng.uniform(0.1, max_run))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "committed":
                committed[parts[1]] = (parts[2], int(parts[3]))
    store = ResultsStore(url)
    missing, torn, unreadable = [], [], []
    for run_id, (status, _samples) in committed.items():
        try:
            record = store.get(run_id)
        except Exception as exc:
            unreadable.append(f"{run_id}: {type(exc).__name__}: {exc}")
            continue
        if record is None or (status == "completed" and record.status != "completed"):
            missing.append(f"{run_id} ({status})")
    for record in store.list(environment="selfcheck", limit=1_000_000):
        got = len(store.samples("selfcheck", run_id=record.run_id))
        want = record.metrics.get("samples", 0) if record.status == "completed" else 0
        if got != want:
            torn.append(f"{record.run_id}: {record.status} with {got} samples (want {want})")
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        integrity = "ok"
        if store.engine.dialect.name == "sqlite":
            integrity = str(conn.execute(sa.text("PRAGMA integrity_check")).scalar())
    return StoreCheck(kills, len(committed), missing, torn, unreadable, integrity)


# ------------------------------------------------------------------------------------------------ monitor robustness


class CheckRecorder:
    """A monitor's ``on_sample`` callback with bounded memory, whatever the number of checks: counts, the gap between
    consecutive check starts (sum, max, the last ``keep``), the last ``keep`` samples and state changes (up/down).

    Used by ``benchmarks/monitor_robustness.py`` to show that a monitor running through a long outage holds no
    growing state (``run_monitors`` itself returns every sample, by design, for grading one run).
    """

    def __init__(self, keep: int = 1000) -> None:
        from collections import deque

        self.count = self.ok = 0
        self.gap_sum = self.max_gap = 0.0
        self.last_ts: float | None = None
        self.last_ok: bool | None = None
        self.recent: deque[Any] = deque(maxlen=keep)
        self.gaps: deque[float] = deque(maxlen=keep)
        self.changes: deque[tuple[float, bool]] = deque(maxlen=keep)
        self.errors: Counter[str] = Counter()  # by error class: a handful of keys, never one per check

    def __call__(self, sample: Any) -> None:
        self.count += 1
        self.ok += bool(sample.ok)
        if not sample.ok:
            kind = (sample.error or "?").split(":", 1)[0]
            if kind in self.errors or len(self.errors) < 32:
                self.errors[kind] += 1
        if self.last_ts is not None:
            gap = sample.ts - self.last_ts
            self.gap_sum += gap
            self.max_gap = max(self.max_gap, gap)
            self.gaps.append(gap)
        if sample.ok != self.last_ok:
            self.changes.append((sample.ts, bool(sample.ok)))
        self.last_ts, self.last_ok = sample.ts, bool(sample.ok)
        self.recent.append(sample)

    @property
    def mean_gap(self) -> float:
        return self.gap_sum / max(1, self.count - 1)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["runner"] and len(argv) == 2:
        return runner_main(argv[1])
    if argv[:1] == ["store-writer"] and len(argv) == 3:
        return writer_main(argv[1], argv[2])
    print("usage: python -m drillbit.selfcheck runner SPEC | store-writer URL PREFIX", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
