"""What the crash soak found: a runner SIGKILLed between starting a helper process (stress-ng, the load generator) and
recording its PID left the process running after ``drillbit cleanup``. ``Fault.start_process`` now records the undo
step (with an environment marker) before the process exists; the ``process`` driver finds it by that marker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drillbit.faults import base
from drillbit.faults.base import Fault, Plan, revert
from drillbit.faults.ledger import Handle, Ledger
from drillbit.faults.undo import MARKER_ENV, marked_processes, run_step

SLEEPER = [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_marked(marker: str, n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(found := marked_processes(marker)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_a_step_without_pid_ends_the_marked_process_and_its_children():
    marker = f"unit-{os.getpid()}-a"
    proc = subprocess.Popen(SLEEPER, env=os.environ | {MARKER_ENV: marker}, start_new_session=True)
    try:
        found = _wait_marked(marker, 2)
        assert proc.pid in found and len(found) == 2, "the process and the child it started carry the marker"
        run_step({"driver": "process", "group": True, "grace": 2, "env_marker": marker})  # as left by a killed runner
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in found) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in found)
        assert marked_processes(marker) == []
        run_step({"driver": "process", "group": True, "grace": 2, "env_marker": marker})  # idempotent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class _Helper(Fault):
    kind = "helper"

    def plan(self) -> Plan:
        return Plan(self.kind, ["nothing"])

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "noop"}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        handle.detail["pid"] = self.start_process(handle, SLEEPER).pid


def test_start_process_records_its_end_before_the_process_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    ledger = Ledger(tmp_path / "ledger")
    seen_at_start: list[dict[str, Any]] = []
    real_popen = subprocess.Popen

    def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        if cmd == SLEEPER:  # what the ledger holds at the moment the helper is started
            (entry,) = ledger.pending()
            seen_at_start.append(entry.undo[-1])
            assert kwargs["env"][MARKER_ENV] == entry.undo[-1]["env_marker"]
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(base.subprocess, "Popen", popen)
    handle = _Helper().inject(ttl=60, ledger=ledger)
    try:
        assert seen_at_start and seen_at_start[0]["driver"] == "process" and "pid" not in seen_at_start[0]
        step = ledger.get(handle.id).undo[-1]
        assert step["pid"] == handle.detail["pid"] and step["env_marker"] == seen_at_start[0]["env_marker"]
    finally:
        revert(handle, ledger)
    assert not _alive(handle.detail["pid"]) and marked_processes(step["env_marker"]) == []
    assert ledger.pending() == []
