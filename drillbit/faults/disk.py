"""Disk pressure: a component's data volume nearly full and busy.

- sandbox: ``DiskPressure`` fills the volume with a ballast file (bounded: only small filesystems, at most
  ``max_fill_bytes``) and runs stress-ng I/O workers on it; revert removes both (undo drivers ``file``, ``process``);
- Chaos Mesh: v2's StressChaos has only ``cpu`` and ``memory`` stressors (the seed's ``ioChaos`` stressor does not
  exist), and a raw ``stressngStressors: --hdd`` string would write into chaos-daemon's filesystem, not the target's
  volume. So disk pressure is an IOChaos on the node's data volume (``io_chaos``; ``disk_pressure`` is its default):
  ``action: latency`` (every file operation slowed) or ``action: fault`` with ``errno: 28`` (ENOSPC: writes fail as on
  a full disk). Neither fills the disk, so a disk-usage alert is not exercised on Kubernetes; the sandbox's
  DiskPressure (a real ballast file) covers that. Run by ``chaos_mesh.ChaosMeshFault``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh

# ------------------------------------------------------------------------------------------------ sandbox


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


# ------------------------------------------------------------------------------------------------ Chaos Mesh


IO_METHODS = ("lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir", "symlink")
IO_METHODS += ("rename", "link", "open", "read", "write", "statfs", "release", "fsync", "setxattr", "getxattr")
IO_METHODS += ("listxattr", "removexattr", "flush", "opendir", "readdir", "releasedir", "fsyncdir", "access")
IO_METHODS += ("create", "getlk", "setlk", "bmap")


def io_chaos(
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    volume_path: str,
    action: str = "latency",
    delay: str | float = "100ms",
    errno: int | None = None,
    percent: int = 100,
    path: str | None = None,
    methods: list[str] | None = None,
    container_names: list[str] | None = None,
    mode: str = "one",
    value: float | None = None,
    duration: str | float = "30m",
    chaos_namespace: str = "chaos-testing",
    name: str | None = None,
) -> dict[str, Any]:
    """IOChaos on a mounted volume: ``latency`` (slow file operations) or ``fault`` (they fail with ``errno``)."""
    if not isinstance(volume_path, str) or not volume_path.startswith("/"):
        raise FaultError(f"spec.volumePath: {volume_path!r} must be the absolute mount path of a volume in the pod")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise FaultError(f"spec.percent: {percent!r} must be a whole percentage within 1..100")
    spec = {"action": action, **chaosmesh.base_spec(namespace, labels, mode, value, duration)}
    spec["volumePath"] = volume_path
    spec["percent"] = percent
    if action == "latency":
        spec["delay"] = chaosmesh.latency(delay, "spec.delay")
    elif action == "fault":
        if isinstance(errno, bool) or not isinstance(errno, int) or not 1 <= errno <= 133:
            raise FaultError(f"spec.errno: action fault needs an errno such as 5 (EIO) or 28 (ENOSPC), got {errno!r}")
        spec["errno"] = errno
    else:
        raise FaultError(f"spec.action: {action!r} is not supported here; use latency or fault")
    if path:
        spec["path"] = path
    if methods:
        unknown = [m for m in methods if m not in IO_METHODS]
        if unknown:
            raise FaultError(f"spec.methods: unknown file operation(s) {', '.join(unknown)}")
        spec["methods"] = list(methods)
    if container_names:
        spec["containerNames"] = list(container_names)
    return chaosmesh.build_manifest("IOChaos", f"io-{action}", spec, run_id, chaos_namespace, name)


def disk_pressure(
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    volume_path: str,
    delay: str | float = "100ms",
    percent: int = 100,
    duration: str | float = "30m",
    **kwargs: Any,
) -> dict[str, Any]:
    """The seed's "disk pressure" as valid v2: an IOChaos latency on the data volume (see the module docstring)."""
    return io_chaos(
        namespace=namespace,
        labels=labels,
        run_id=run_id,
        volume_path=volume_path,
        action="latency",
        delay=delay,
        percent=percent,
        duration=duration,
        **kwargs,
    )
