"""Memory pressure on one sandbox component: a cgroup v1 memory group with a tight limit, the component's process and
a ``stress-ng --vm`` worker inside it.

1. plan: the component's process (from the supervisor), its current memory cgroup, room on the host;
2. undo (recorded first): move the processes back (the component to the group it came from) and remove the group;
3. apply: create ``/sys/fs/cgroup/memory/vesandbox-drillbit-<id>`` (hostmetrics exports groups named ``vesandbox*``)
   with a generous limit, move the process in, start stress-ng in the group (its PID is recorded at once, it is
   bounded by ``--timeout``), wait until it holds ``size`` bytes, then tighten the limit to what the group holds
   plus a small headroom, so that the group sits just under its limit (above the CgroupMemoryHigh ratio).

Only what is charged to the group counts against its limit: this kernel refuses ``memory.move_charge_at_immigrate``
(deprecated in cgroup v1), so the process's existing memory stays charged to its old group and the limit is sized
from what the group really holds once stress-ng is in. The component is not OOM-killed as long as what it
allocates during the fault fits the headroom; the group's ``memory.oom_control`` counts every OOM kill in it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform import sandbox as sbx
from drillbit.faults.undo import process_identity

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
MIB = 1 << 20
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)$", re.IGNORECASE)  # a StressChaos memory size


def memory_cgroup(pid: int) -> str:
    """The cgroup v1 memory group a process is in (``/`` for the root)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise FaultError(f"process {pid} has no cgroup v1 memory controller")


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise FaultError("no MemAvailable in /proc/meminfo")


def oom_kills(group: Path) -> int | None:
    """The ``oom_kill`` counter of a group's memory.oom_control (None when the group is gone)."""
    with contextlib.suppress(OSError):
        for line in (group / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return None


def read_int(path: Path) -> int:
    return int(path.read_text().strip())


class MemoryPressure(Fault):
    """``size_bytes`` of memory pressure on a supervised component, in a cgroup of Drillbit's own."""

    kind = "memory-pressure"

    def __init__(
        self,
        supervisor: str,
        component: str,
        size_bytes: int,
        duration: float,
        *,
        headroom_fraction: float = 0.05,
        min_headroom_bytes: int = 4 * MIB,
        churn: bool = False,
        max_share_available: float = 0.5,
        fill_timeout: float = 60.0,
        cgroup_root: Path = CGROUP_ROOT,
    ) -> None:
        self.supervisor, self.component, self.size, self.duration = supervisor, component, int(size_bytes), duration
        self.headroom_fraction, self.min_headroom = headroom_fraction, int(min_headroom_bytes)
        self.churn, self.max_share, self.fill_timeout = churn, max_share_available, fill_timeout
        self.root = Path(cgroup_root)
        self.name = f"vesandbox-drillbit-{uuid.uuid4().hex[:8]}"
        self.path = self.root / self.name
        self.stress_pid: int | None = None

    def plan(self) -> Plan:
        if os.geteuid() != 0:
            raise FaultError("memory pressure needs root (cgroups)")
        if shutil.which("stress-ng") is None:
            raise FaultError("stress-ng not found: apt-get install -y stress-ng")
        if not (self.root / "memory.limit_in_bytes").exists():
            raise FaultError(f"no cgroup v1 memory controller at {self.root}")
        if self.size < MIB or not 0 < self.duration <= 86_400 or not 0 <= self.headroom_fraction < 1:
            raise FaultError("size must be ≥ 1 MiB, duration within (0, 86400] s and headroom_fraction within [0, 1)")
        pid = self._pid()
        room = mem_available()
        need = self.size + max(self.min_headroom, int(self.headroom_fraction * self.size)) + 64 * MIB
        if need > self.max_share * room:
            raise FaultError(
                f"{self.size / MIB:.0f} MiB of pressure needs {need / MIB:.0f} MiB, more than "
                f"{self.max_share:.0%} of the {room / MIB:.0f} MiB available on this host"
            )
        detail = {"cgroup": self.name, "component": self.component, "pid": pid, "size_bytes": self.size}
        detail |= {"from_cgroup": memory_cgroup(pid), "start_time": process_identity(pid)["start_time"]}
        return Plan(self.kind, [f"{self.component} (pid {pid})"], detail)

    def _pid(self) -> int:
        return sbx.running_pid(self.supervisor, self.component)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        d = plan.detail
        home = {"pid": d["pid"], "start_time": d["start_time"], "path": d["from_cgroup"]}
        return [{"driver": "cgroup", "name": self.name, "controllers": ["memory"], "restore": [home]}]

    def command(self) -> list[str]:
        """stress-ng started by a shell that first joins the group (so its workers are born inside it)."""
        stress = ["stress-ng", "--vm", "1", "--vm-bytes", f"{max(1, self.size // 1024)}k", "--vm-keep"]
        if not self.churn:
            stress += ["--vm-hang", "0"]  # allocate and touch once, then hold it (no CPU burnt)
        stress += ["--timeout", f"{math.ceil(self.duration + self.fill_timeout)}s", "--quiet"]
        join = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        return ["sh", "-c", join, str(self.path), *stress]

    def apply(self, plan: Plan, handle: Handle) -> None:
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(self.size + 256 * MIB))
        with contextlib.suppress(OSError):  # refused by this kernel (deprecated); harmless where it works
            (self.path / "memory.move_charge_at_immigrate").write_text("3")
        (self.path / "cgroup.procs").write_text(str(plan.detail["pid"]))
        proc = self.start_process(
            handle, self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        handle.detail["stress_pid"] = self.stress_pid = proc.pid
        self.remember(handle)
        usage = self._wait_filled(proc)
        headroom = max(self.min_headroom, int(self.headroom_fraction * usage))
        (self.path / "memory.limit_in_bytes").write_text(str(usage + headroom))
        handle.detail |= {"usage_bytes": usage, "limit_bytes": read_int(self.path / "memory.limit_in_bytes")}
        self.remember(handle)

    def _wait_filled(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait until stress-ng holds its memory; the group's usage then (bytes)."""
        deadline = time.monotonic() + self.fill_timeout
        usage = read_int(self.path / "memory.usage_in_bytes")
        while usage < 0.97 * self.size:
            if proc.poll() is not None:
                raise FaultError(f"stress-ng exited with {proc.returncode} before holding its memory")
            if time.monotonic() > deadline:
                raise FaultError(
                    f"stress-ng held {usage / MIB:.0f} of {self.size / MIB:.0f} MiB after {self.fill_timeout:g} s"
                )
            time.sleep(0.1)
            usage = read_int(self.path / "memory.usage_in_bytes")
        time.sleep(0.3)  # the last pages of the worker
        return max(usage, read_int(self.path / "memory.usage_in_bytes"))


# ------------------------------------------------------------------------------------------------ Chaos Mesh


def _workers(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
        raise FaultError(f"{field}: {value!r} must be a whole number within 1..8192")
    return value


def stress(
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    memory_size: str | None = None,
    memory_workers: int = 1,
    cpu_workers: int | None = None,
    cpu_load: int | None = None,
    container_names: list[str] | None = None,
    mode: str = "one",
    value: float | None = None,
    duration: str | float = "10m",
    chaos_namespace: str = "chaos-testing",
    name: str | None = None,
) -> dict[str, Any]:
    """StressChaos: ``memory`` (workers each holding ``memory_size``, e.g. 256MB or 25%) and/or ``cpu`` stressors."""
    stressors: dict[str, Any] = {}
    if memory_size is not None:
        if not isinstance(memory_size, str) or not _SIZE.match(memory_size):
            raise FaultError(f"spec.stressors.memory.size: {memory_size!r} is not a size; use e.g. 256MB, 1GB or 25%")
        workers = _workers(memory_workers, "spec.stressors.memory.workers")
        stressors["memory"] = {"workers": workers, "size": memory_size}
    if cpu_workers is not None:
        stressors["cpu"] = {"workers": _workers(cpu_workers, "spec.stressors.cpu.workers")}
        if cpu_load is not None:
            if isinstance(cpu_load, bool) or not isinstance(cpu_load, int) or not 0 <= cpu_load <= 100:
                raise FaultError(f"spec.stressors.cpu.load: {cpu_load!r} must be a whole percentage within 0..100")
            stressors["cpu"]["load"] = cpu_load
    if not stressors:
        raise FaultError("spec.stressors: give memory_size and/or cpu_workers (StressChaos v2 has cpu and memory only)")
    spec = {**chaosmesh.base_spec(namespace, labels, mode, value, duration), "stressors": stressors}
    if container_names:
        spec["containerNames"] = list(container_names)
    return chaosmesh.build_manifest("StressChaos", "stress", spec, run_id, chaos_namespace, name)
