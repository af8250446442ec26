"""Crash safety, compressed for CI: one experiment per fault type, the runner SIGKILLed before, during or after its
injection, then ``drillbit cleanup``; nothing may be left. The full soak (≥ 50 experiments) is
``benchmarks/crash_soak.py``. Also: SIGKILLing a process that writes run records loses no committed record."""

from __future__ import annotations

import shutil

import pytest

from drillbit.faults.base import cleanup
from drillbit.selfcheck import FAULTS, CrashSoak, plan_kills, store_kill_check
from tests.integration.k8s_stand_in import chaos_mesh_stand_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20260


def test_compressed_crash_soak_leaves_nothing_behind(sandbox, tmp_path):
    plans = plan_kills(len(FAULTS), SEED)
    work = tmp_path / "soak"
    work.mkdir()
    lines: list[str] = []
    soak = None
    try:
        with chaos_mesh_stand_in() as k8s:
            soak = CrashSoak(sandbox, work, k8s, seed=SEED, hold=5.0, log=lines.append)
            report = soak.run(plans)
            posts = [r for r in k8s.requests if r.method == "POST"]
    finally:
        if soak is not None:
            cleanup(soak.ledger)
        shutil.rmtree(work, ignore_errors=True)
    table = report.table() + "\n" + "\n".join(lines)
    assert [e.plan.fault for e in report.experiments] == list(FAULTS)
    assert report.runner_errors == [], table
    assert all(e.runner_rc == -9 for e in report.experiments), table  # every runner died of SIGKILL
    assert all(e.cleanup_rc == 0 for e in report.experiments), table
    assert report.leftovers == 0, table
    phases = {e.phase for e in report.experiments}
    assert phases == {"before", "during", "after"}, table
    # cleanup really had work to do: every runner that got past its first ledger write left an entry it reverted
    for e in report.experiments:
        if e.phase == "after":
            assert e.reverted == 1, table
        if e.phase == "before":
            assert e.reverted == 0, table
    k8s_exp = next(e for e in report.experiments if e.plan.fault == "k8s-chaos-mesh")
    if k8s_exp.phase == "after":
        assert len(posts) == 1, "the Chaos Mesh object was created at the stand-in, then deleted by cleanup"


def test_sigkilled_record_writer_loses_no_committed_record(tmp_path):
    check = store_kill_check(f"sqlite:///{tmp_path / 'results.sqlite3'}", kills=4, seed=SEED, max_run=1.0)
    assert check.committed >= 4, check
    assert check.missing == [] and check.torn == [] and check.unreadable == [], check
    assert check.integrity == "ok"
