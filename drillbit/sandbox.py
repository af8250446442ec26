"""Drillbit's side of the sandbox: start/stop it through its own launcher (a subprocess) and read its endpoints.

Drillbit never imports the sandbox's code: the tester must not share code with what it tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_RUN_DIR = Path(os.environ.get("DRILLBIT_SANDBOX_DIR", "/tmp/vesandbox"))


class SandboxNotRunning(RuntimeError):
    pass


def run_dir() -> Path:
    return Path(os.environ.get("DRILLBIT_SANDBOX_DIR", str(DEFAULT_RUN_DIR)))


def port_offset() -> int:
    return int(os.environ.get("DRILLBIT_SANDBOX_PORT_OFFSET", "0"))


def launcher(args: Sequence[str], *, run: Path | None = None, offset: int | None = None, capture: bool = False):
    """Run ``python -m vesandbox ARGS`` for the given run directory; returns the CompletedProcess."""
    cmd = [
        sys.executable,
        "-m",
        "vesandbox",
        "--run-dir",
        str(run or run_dir()),
        "--port-offset",
        str(port_offset() if offset is None else offset),
        *args,
    ]
    return subprocess.run(cmd, capture_output=capture, text=True)


def status_ok(run: Path | None = None) -> bool:
    """True when a sandbox runs in the run directory and every component is healthy."""
    return launcher(["status"], run=run, capture=True).returncode == 0


def endpoints(run: Path | None = None) -> dict[str, Any]:
    """The running sandbox's endpoints (``RUN/endpoints.json``)."""
    path = (run or run_dir()) / "endpoints.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SandboxNotRunning(f"the sandbox is not running (no {path}): start it with `drillbit sandbox up`") from exc
