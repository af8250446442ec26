"""One interface for every fault on every platform: ``inject() -> Handle``; ``revert(handle)`` is idempotent.

The order is the safety guarantee:
1. the handle (with its undo steps) is written to the ledger;
2. a reaper process is started that reverts the fault when its time-to-live expires, whatever happens to us;
3. the fault is applied (if applying fails half-way, it is reverted at once);
4. revert runs the undo steps in reverse, stops the reaper and clears the ledger entry — only after success.

Whoever reverts (this process, the reaper, ``drillbit cleanup`` in a fresh process) goes through ``revert``, which
first makes sure every driver the entry names is registered (``drivers.ensure_drivers``: the platform modules
register theirs when imported).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillbit.faults.drivers import ensure_drivers
from drillbit.faults.errors import FaultError
from drillbit.faults.ledger import Handle, Ledger
from drillbit.faults.undo import UndoError, run_step
from drillbit.paths import drillbit_home


@dataclass
class Plan:
    """What a fault will do, for --dry-run and the run record."""

    kind: str
    targets: list[str]
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind} on {', '.join(self.targets) or '(nothing)'}" + (f" ({extra})" if extra else "")


class Fault(ABC):
    kind: str = "fault"

    @abstractmethod
    def plan(self) -> Plan:
        """Resolve targets and validate parameters; raise FaultError with a clear message. Injects nothing."""

    @abstractmethod
    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        """The undo steps to record BEFORE applying (must be enough to revert a partial apply too)."""

    @abstractmethod
    def apply(self, plan: Plan, handle: Handle) -> None:
        """Break the target. May add detail to ``handle.detail`` (and must re-record the handle if it does)."""

    def remember(self, handle: Handle) -> None:
        """Re-record the handle during ``apply`` (after adding an undo step for something just started)."""
        self._ledger.record(handle)

    def start_process(self, handle: Handle, cmd: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a helper process (its own session) whose end is in the ledger BEFORE it exists: the undo step is
        recorded with a marker the process carries in its environment, then completed with its PID. A runner killed
        between the two leaves a step that still finds the process (``undo`` driver ``process``)."""
        from drillbit.faults.undo import MARKER_ENV, process_identity

        step: dict[str, Any] = {
            "driver": "process",
            "group": True,
            "grace": 5,
            "env_marker": f"{handle.id}-{len(handle.undo)}",
        }
        handle.undo.append(step)
        self.remember(handle)
        env = dict(popen.pop("env", None) or os.environ) | {MARKER_ENV: step["env_marker"]}
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, **popen)
        step.update(process_identity(proc.pid))
        self.remember(handle)
        return proc

    def inject(self, ttl: float, ledger: Ledger | None = None, run_id: str | None = None) -> Handle:
        if ttl <= 0:
            raise FaultError(f"{self.kind}: time-to-live must be positive, got {ttl}")
        ledger = ledger or Ledger()
        plan = self.plan()
        handle = Handle(kind=self.kind, target=", ".join(plan.targets), undo=self.undo_steps(plan), ttl=ttl)
        handle.run_id = run_id
        handle.detail.update(plan.detail)
        ledger.record(handle)
        handle.reaper_pid = start_reaper(handle, ledger)
        ledger.record(handle)
        self._ledger = ledger
        try:
            self.apply(plan, handle)
        except BaseException as exc:
            revert(handle, ledger)
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"{self.kind}: injection failed and was reverted: {exc}") from exc
        ledger.record(handle)
        return handle


def revert(handle: Handle, ledger: Ledger | None = None) -> None:
    """Run the undo steps (reverse order), stop the reaper, clear the entry. Raises UndoError if a step failed."""
    ledger = ledger or Ledger()
    ensure_drivers(handle.undo)
    errors = []
    for step in reversed(handle.undo):
        try:
            run_step(step)
        except UndoError as exc:
            errors.append(str(exc))
    if errors:
        raise UndoError(f"{handle.kind} ({handle.id}) not fully reverted: " + "; ".join(errors))
    ledger.clear(handle.id)
    if handle.reaper_pid and handle.reaper_pid != os.getpid():
        stop_reaper(handle.reaper_pid)


def start_reaper(handle: Handle, ledger: Ledger) -> int:
    """A detached process that reverts the handle when its TTL expires (survives SIGKILL of this process)."""
    log = drillbit_home() / "reaper.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drillbit.faults.reaper", handle.id, str(ledger.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def stop_reaper(pid: int) -> None:
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"drillbit.faults.reaper" in cmdline:
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cleanup(ledger: Ledger | None = None, only_expired: bool = False) -> list[tuple[Handle, str]]:
    """Revert whatever the ledger still holds; returns (handle, "reverted" | error) for each."""
    import time

    ledger = ledger or Ledger()
    out = []
    for handle in ledger.pending():
        if only_expired and time.time() < handle.expires_at:
            continue
        try:
            revert(handle, ledger)
            out.append((handle, "reverted"))
        except UndoError as exc:
            out.append((handle, str(exc)))
    return out
