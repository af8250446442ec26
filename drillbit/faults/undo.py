"""Undo drivers: how to revert one step of a fault, from its ledger entry alone (so a fresh process can do it).

Every driver is idempotent: reverting something already gone counts as success. A driver raises ``UndoError`` only
when the fault may still be in place.

This module holds the registry (``DRIVERS``, ``@driver(name)``) and the local step kinds: nft table, fault-proxy toxic
and proxy enable, process, file, mount, cgroup, supervisor start, SIGCONT, noop. It imports no platform module: each
platform module registers its own step kinds when imported (``drillbit.faults.drivers`` loads them all). The names
are recorded in ledger files and must never change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DRIVERS: dict[str, Callable[[dict[str, Any]], None]] = {}


class UndoError(RuntimeError):
    pass


def driver(name: str) -> Callable[[Callable[[dict[str, Any]], None]], Callable[[dict[str, Any]], None]]:
    def register(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        DRIVERS[name] = fn
        return fn

    return register


def run_step(step: dict[str, Any]) -> None:
    """Run one undo step with its registered driver (platform drivers: see ``drillbit.faults.drivers``)."""
    fn = DRIVERS.get(step.get("driver", ""))
    if fn is None:
        raise UndoError(f"unknown undo driver {step.get('driver')!r}")
    fn(step)


# ------------------------------------------------------------------------------------------------ network / firewall


@driver("nft_table")
def _nft_table(step: dict[str, Any]) -> None:
    """Delete a whole nftables table Drillbit created (one delete removes every rule in it)."""
    family, table = step.get("family", "inet"), step["table"]
    r = subprocess.run(["nft", "delete", "table", family, table], capture_output=True, text=True)
    if r.returncode != 0 and "No such file or directory" not in r.stderr:
        listed = subprocess.run(["nft", "list", "table", family, table], capture_output=True, text=True)
        if listed.returncode == 0:
            raise UndoError(f"nft delete table {family} {table} failed: {r.stderr.strip()}")


@driver("toxic")
def _toxic(step: dict[str, Any]) -> None:
    """Remove a toxic from a Toxiproxy-compatible proxy."""
    url = f"{step['api']}/proxies/{step['proxy']}/toxics/{step['toxic']}"
    try:
        r = httpx.delete(url, timeout=5)
    except httpx.HTTPError as exc:
        raise UndoError(f"cannot reach the fault proxy at {step['api']}: {exc}") from exc
    if r.status_code not in (200, 204, 404):
        raise UndoError(f"DELETE {url} answered {r.status_code}: {r.text[:200]}")


@driver("proxy_enable")
def _proxy_enable(step: dict[str, Any]) -> None:
    try:
        r = httpx.post(f"{step['api']}/proxies/{step['proxy']}", json={"enabled": True}, timeout=5)
    except httpx.HTTPError as exc:
        raise UndoError(f"cannot reach the fault proxy at {step['api']}: {exc}") from exc
    if r.status_code not in (200, 404):
        raise UndoError(f"re-enabling proxy {step['proxy']} answered {r.status_code}")


# ------------------------------------------------------------------------------------------------ processes / files


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_identity(pid: int) -> dict[str, Any]:
    """What to record for a process Drillbit started, so that a later kill never hits a reused PID."""
    return {"pid": pid, "start_time": _start_time(pid)}


MARKER_ENV = (
    "DRILLBIT_FAULT_PROCESS"  # set in the environment of every process a fault starts (see Fault.start_process)
)


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment carries ``MARKER_ENV=marker`` (a process a fault started, and its children)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


@driver("process")
def _process(step: dict[str, Any]) -> None:
    """End a process Drillbit started (load generator, stress worker), by PID, checking it is still the same one.

    A step with ``env_marker`` is recorded before the process starts: a runner killed between the start and the PID's
    recording leaves a step without (or with a stale) PID, and the process is found by the marker in its environment.
    """
    if step.get("pid") is not None:
        _end(int(step["pid"]), step.get("start_time"), bool(step.get("group")), float(step.get("grace", 5)))
    if step.get("env_marker"):
        for pid in marked_processes(str(step["env_marker"])):
            with contextlib.suppress(OSError):
                leader = bool(step.get("group")) and os.getpgid(pid) == pid
                _end(pid, _start_time(pid), leader, float(step.get("grace", 5)))


def _end(pid: int, started: str | None, group: bool, grace: float) -> None:
    if _start_time(pid) is None or (started and _start_time(pid) != started):
        return  # gone, or the PID now belongs to someone else
    sig = signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _start_time(pid) == started:
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if _start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@driver("file")
def _file(step: dict[str, Any]) -> None:
    path = Path(step["path"])
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@driver("mount")
def _mount(step: dict[str, Any]) -> None:
    path = str(Path(step["path"]).resolve())
    mounted = any(line.split()[1] == path for line in Path("/proc/mounts").read_text().splitlines())
    if mounted:
        r = subprocess.run(["umount", "-l", path], capture_output=True, text=True)
        if r.returncode != 0:
            raise UndoError(f"umount {path} failed: {r.stderr.strip()}")
    if step.get("rmdir"):
        with contextlib.suppress(OSError):
            os.rmdir(path)


@driver("cgroup")
def _cgroup(step: dict[str, Any]) -> None:
    """Move every task of a cgroup v1 group back to its parent, then remove the group.

    ``restore`` (optional) lists processes moved in from elsewhere, ``{"pid", "start_time", "path"}``: each one that
    is still the same process goes back to the group it came from (``path``, if that still exists).
    """
    for controller in step.get("controllers", ["memory"]):
        group = Path("/sys/fs/cgroup") / controller / step["name"]
        if not group.exists():
            continue
        for entry in step.get("restore", []):
            home = Path("/sys/fs/cgroup") / controller / str(entry["path"]).lstrip("/") / "cgroup.procs"
            same = _start_time(int(entry["pid"])) == entry.get("start_time")
            if same and home.exists():
                with contextlib.suppress(OSError):
                    home.write_text(str(entry["pid"]))
        parent = group.parent / "cgroup.procs"
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                parent.write_text(pid)
        try:
            group.rmdir()
        except OSError as exc:
            if group.exists():
                raise UndoError(f"cannot remove cgroup {group}: {exc}") from exc


@driver("supervisor_start")
def _supervisor_start(step: dict[str, Any]) -> None:
    """Start a supervised program again (used by faults that STOP a process rather than kill it)."""
    import xmlrpc.client

    server = xmlrpc.client.ServerProxy(step["url"]).supervisor
    try:
        if server.getProcessInfo(step["program"])["statename"] not in ("RUNNING", "STARTING"):
            server.startProcess(step["program"])
    except (OSError, xmlrpc.client.Error) as exc:
        if "ALREADY_STARTED" not in str(exc):
            raise UndoError(f"cannot start {step['program']}: {exc}") from exc


@driver("signal_cont")
def _signal_cont(step: dict[str, Any]) -> None:
    """Resume a process that a fault SIGSTOPped."""
    pid, started = int(step["pid"]), step.get("start_time")
    if _start_time(pid) is not None and (not started or _start_time(pid) == started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@driver("noop")
def _noop(step: dict[str, Any]) -> None:
    """Faults the target must recover from by itself (pod kill): nothing to revert, the entry is the record."""
