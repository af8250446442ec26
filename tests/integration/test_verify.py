"""`drillbit verify` in a compressed form for CI: one weakness caught by its flow, that flow without a false alarm on
the healthy sandbox (both started by the command itself, at the verify offset). Every other cell of the matrix is the
same flow + weakness pair that the flow tests grade (test_sandbox_weaknesses.py, test_flows_failure_modes.py,
test_flows_dr.py); the full matrix is `drillbit verify`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli.verify import VERIFY_OFFSET, VERIFY_RUN_DIR
from drillbit import sandbox as sbx

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1000)
def test_verify_reports_the_weakness_caught_and_no_false_alarm(drillbit_home):
    env = {**os.environ, "DRILLBIT_HOME": str(drillbit_home), "COLUMNS": "200"}
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.app",
                "verify",
                "--weakness",
                "no-write-queue",
                "--healthy",
                "chaos-db-failure",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    finally:
        sbx.launcher(["down", "--purge"], run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if "chaos-db-failure" in line and "│" in line]
    assert any("no-write-queue" in r and "caught" in r for r in rows), out.stdout
    assert any("(healthy)" in r and " ok " in r for r in rows), out.stdout


def test_verify_refuses_an_unknown_weakness_before_starting_anything():
    out = subprocess.run(
        [sys.executable, "-m", "cli.app", "verify", "--weakness", "no-such-thing"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "no catching flow registered for no-such-thing" in out.stdout
    assert not VERIFY_RUN_DIR.exists()
