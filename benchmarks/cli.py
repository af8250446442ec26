"""CPU cost of the ``drillbit`` commands that run no flow: each one as a whole new process, measured in CPU seconds
(user + system of the child and everything it waited for, from ``os.wait4``), median of N runs, beside the cost of
``python -c pass`` measured in the same run (these machines are noisy and shared; compare ratios). Goal: ``--help``
and ``list`` at most 1.0 CPU s.

Every command reads an empty temporary ``DRILLBIT_HOME`` (no stored runs, an empty fault ledger: ``cleanup`` has
nothing to revert) and a sandbox run directory that does not exist (``sandbox status`` finds nothing running).

    .venv/bin/python benchmarks/cli.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRILLBIT = [sys.executable, "-m", "cli.app"]
GOAL_S = {"--help": 1.0, "list": 1.0}


def cpu_seconds(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """CPU seconds (user + system) of one whole process run, and its exit code."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, proc.returncode


def median_cpu(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    results = [cpu_seconds(cmd, env) for _ in range(runs)]
    return statistics.median(s for s, _ in results), results[-1][1]


def main(runs: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="drillbit-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRILLBIT_", "PREFECT_"))}
        env |= {"DRILLBIT_HOME": f"{tmp}/home", "DRILLBIT_SANDBOX_DIR": f"{tmp}/no-sandbox", "COLUMNS": "160"}
        commands = {
            "--help": ["--help"],
            "list": ["list"],
            "calendar": ["calendar"],
            "runs": ["runs"],
            "report --out <tmp>": ["report", "--out", f"{tmp}/report.html"],
            "score": ["score"],
            "sandbox status": ["sandbox", "status"],
            "cleanup (empty ledger)": ["cleanup"],
        }
        bare, _ = median_cpu([sys.executable, "-c", "pass"], env, runs)
        print(f"CPU seconds (user+sys), median of {runs} whole-process runs; python -c pass: {bare:.3f} s")
        print(f"{'command':<32} {'CPU s':>7} {'x pass':>7}  exit  goal")
        for label, args in commands.items():
            cpu, code = median_cpu([*DRILLBIT, *args], env, runs)
            goal = GOAL_S.get(label)
            verdict = "" if goal is None else f"≤ {goal:.1f} s {'ok' if cpu <= goal else 'MISSED'}"
            print(f"{'drillbit ' + label:<32} {cpu:>7.3f} {cpu / bare:>7.1f}  {code:>4}  {verdict}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
