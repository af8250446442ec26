"""Crash-safety soak (issue 10, item 2): SIGKILL the fault runner at random points, run ``drillbit cleanup``, count
what is left.

    .venv/bin/python benchmarks/crash_soak.py [-n 56] [--seed 7] [--offset 8000] [--run-dir DIR] [--reuse]

Starts its own sandbox (port offset ``--offset``, default 8000, run directory ``/tmp/drillbit-bench-soak-<offset>``;
stopped and removed at the end) unless ``--reuse`` names the run directory of one already up. The Kubernetes driver's
experiments go to the local API stand-in of its request tests (``tests/integration/k8s_stand_in.py``). Every
experiment: one fault (cycling over pod kill, network latency, port block, disk pressure, partition, memory pressure,
overload, Chaos Mesh), a runner subprocess SIGKILLed before / during / after injection (``drillbit.selfcheck``
explains the kill points; the seed makes them reproducible), ``drillbit cleanup``, a scan for leftovers. Prints one
line per experiment and the table; also the store check (a record writer SIGKILLed while it writes). Exit 1 if
anything was left or a committed record was lost. Goal: 0 leftovers. Bounded: about 4-8 s per experiment here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drillbit import sandbox as sbx  # noqa: E402
from drillbit.faults.base import cleanup  # noqa: E402
from drillbit.selfcheck import FAULTS, CrashSoak, plan_kills, store_kill_check  # noqa: E402
from tests.integration.k8s_stand_in import chaos_mesh_stand_in  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=56, help="experiments (≥ 50 for the issue's soak; default 56 = 7 cycles)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--offset", type=int, default=8000, help="sandbox port offset (8000 or 3000 on shared machines)")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="use the sandbox already up in --run-dir (not stopped)")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds a runner holds its fault before reverting")
    ap.add_argument("--store-kills", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="also write every experiment here")
    args = ap.parse_args()
    run_dir = args.run_dir or Path(f"/tmp/drillbit-bench-soak-{args.offset}")
    if args.reuse:
        ep = sbx.endpoints(run_dir)
    else:
        sbx.launcher(["down", "--purge"], run=run_dir, offset=args.offset, capture=True)
        t0 = time.monotonic()
        up = sbx.launcher(["up"], run=run_dir, offset=args.offset, capture=True)
        if up.returncode != 0:
            sbx.launcher(["down", "--purge"], run=run_dir, offset=args.offset, capture=True)
            raise SystemExit(f"sandbox up failed: {up.stdout}\n{up.stderr}")
        ep = sbx.endpoints(run_dir)
        print(f"sandbox up at offset {args.offset} in {time.monotonic() - t0:.0f} s")
    work = Path(tempfile.mkdtemp(prefix="drillbit-soak-"))
    soak = None
    try:
        plans = plan_kills(args.n, args.seed, FAULTS)
        with chaos_mesh_stand_in() as k8s:
            soak = CrashSoak(ep, work, k8s, seed=args.seed, hold=args.hold, log=lambda line: print(line, flush=True))
            report = soak.run(plans)
        print()
        print(f"crash-safety soak: {len(plans)} experiments over {len(FAULTS)} fault types")
        print(report.table())
        if args.json:
            args.json.write_text(json.dumps(report.to_dict(), indent=1))
        check = store_kill_check(f"sqlite:///{work / 'store.sqlite3'}", kills=args.store_kills, seed=args.seed)
        print()
        print(
            f"store: {check.kills} SIGKILLs of a record writer, {check.committed} committed saves; "
            f"missing {len(check.missing)}, torn {len(check.torn)}, unreadable {len(check.unreadable)}, "
            f"integrity {check.integrity}"
        )
        for problem in check.missing + check.torn + check.unreadable:
            print("  ", problem)
        return 0 if report.leftovers == 0 and not report.runner_errors and check.ok else 1
    finally:
        if soak is not None:
            cleanup(soak.ledger)  # anything a failed run left in the ledger
        shutil.rmtree(work, ignore_errors=True)
        if not args.reuse:
            sbx.launcher(["down", "--purge"], run=run_dir, offset=args.offset, capture=True)


if __name__ == "__main__":
    raise SystemExit(main())
