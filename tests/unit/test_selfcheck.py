"""The crash-soak harness's logic: reproducible kill plans, tagged names, leftover detection on given states."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from drillbit.selfcheck import (
    FAULTS,
    MODES,
    TAG_ENV,
    KillPlan,
    KillTrial,
    SoakReport,
    build_fault,
    disabled_proxies,
    misplaced,
    plan_kills,
    tagged_files,
    tagged_processes,
    toxics_of,
)

ENDPOINTS = {
    "supervisor": "http://127.0.0.1:1/RPC2",
    "faultproxy": "http://127.0.0.1:2",
    "postgres": {"port": 5432},
    "volumes": {"node-2": {"path": "/tmp/vol-2"}},
    "etcd": [
        {"name": f"etcd-{i}", "uid": 64000 + i, "peer_host": f"127.0.0.{i + 2}", "peer_port": 2380} for i in (0, 1, 2)
    ],
    "components": {"provider": {"health": "http:http://127.0.0.1:3/health", "labels": {}}},
}


def test_kill_plans_are_reproducible_and_cover_every_fault_and_mode():
    assert plan_kills(56, seed=7) == plan_kills(56, seed=7)
    assert plan_kills(56, seed=7) != plan_kills(56, seed=8)
    plans = plan_kills(32, seed=3)
    assert Counter(p.fault for p in plans) == {f: 4 for f in FAULTS}
    assert {(p.fault, p.mode) for p in plans} == {(f, m) for f in FAULTS for m in MODES}
    compressed = plan_kills(len(FAULTS), seed=3)
    assert [p.fault for p in compressed] == list(FAULTS)
    assert set(p.mode for p in compressed) == set(MODES), "the compressed soak still kills in every phase"
    assert all(1 <= p.event <= 10 and 0 <= p.fraction < 1 for p in plans)


def test_unknown_fault_types_are_refused():
    with pytest.raises(ValueError, match="unknown fault type"):
        plan_kills(3, seed=0, faults=["pod-kill", "meteor"])


def test_every_fault_names_what_it_creates_with_the_experiment_tag(tmp_path):
    spec = {"endpoints": ENDPOINTS, "tag": "abc12s7x003", "workdir": str(tmp_path), "k8s_url": "http://127.0.0.1:4"}
    made = {f: build_fault(spec | {"fault": f}) for f in FAULTS}
    assert made["network-latency"].toxic == "drillbit-latency-abc12s7x003"
    assert made["port-block"].table == "drillbit_abc12s7x003"
    assert made["partition"].table == "drillbit_part_abc12s7x003"
    assert made["disk-pressure"].ballast == Path("/tmp/vol-2/.drillbit-ballast-abc12s7x003")
    assert made["disk-pressure"].scratch.name == ".drillbit-io-abc12s7x003"
    assert made["memory-pressure"].path.name == "vesandbox-drillbit-abc12s7x003"
    assert made["overload"].out_dir == tmp_path / "overload-abc12s7x003"
    assert made["k8s-chaos-mesh"].manifest["metadata"]["name"] == "drillbit-soak-abc12s7x003"
    assert made["partition"].isolate == ["etcd-2"], "one member of three: quorum remains"


def test_toxics_and_disabled_proxies_are_found_by_tag():
    proxies = {
        "provider": {"enabled": True, "toxics": [{"name": "drillbit-latency-t1"}, {"name": "someone-else"}]},
        "api": {"enabled": False, "toxics": []},
        "node-rpc": {"enabled": True, "toxics": None},
    }
    assert toxics_of(proxies, "t1") == ["provider/drillbit-latency-t1"]
    assert toxics_of(proxies, "t2") == []
    assert disabled_proxies(proxies) == ["api"]


def test_a_process_back_in_another_cgroup_is_misplaced_a_restarted_one_is_not():
    before = {"node-1": (100, "/"), "node-2": (200, "/"), "api": (300, "/")}
    after = {"node-1": (100, "/vesandbox-drillbit-t1"), "node-2": (201, "/x"), "api": (300, "/")}
    assert misplaced(before, after) == ["node-1 (pid 100) in /vesandbox-drillbit-t1, was in /"]


def test_tagged_files_ignore_other_names(tmp_path):
    (tmp_path / ".drillbit-ballast-t1").write_bytes(b"x")
    (tmp_path / ".drillbit-ballast-t2").write_bytes(b"x")
    assert tagged_files([tmp_path, tmp_path / "absent"], "t1") == [str(tmp_path / ".drillbit-ballast-t1")]


def test_processes_are_found_by_the_inherited_environment_tag(monkeypatch):
    import subprocess
    import sys

    tag = "unit-tag-selfcheck"
    env = {"PATH": "/usr/bin:/bin", TAG_ENV: tag}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        assert child.pid in tagged_processes(tag)
        assert child.pid not in tagged_processes("another-tag")
    finally:
        child.kill()
        child.wait(10)
    assert child.pid not in tagged_processes(tag)


def test_report_table_counts_phases_and_leftovers():
    def exp(i: int, fault: str, phase: str, left: dict[str, list[str]]) -> KillTrial:
        e = KillTrial(KillPlan(i, fault, "after", 1, 0.5), f"t{i}", phase=phase, reverted=1, leftovers=left)
        return e

    report = SoakReport(
        7,
        [exp(0, "pod-kill", "before", {}), exp(1, "port-block", "after", {"nft tables": ["inet drillbit_t1"]})],
        12.0,
    )
    assert report.leftovers == 1 and report.by_category()["nft tables"] == 1
    text = report.table()
    assert "port-block" in text and "nft tables: 1" in text
    total = next(line.split() for line in text.splitlines() if line.startswith("total"))
    assert total == ["total", "2", "1", "0", "1", "2", "1"]
    assert "seed 7" in text


def test_check_recorder_holds_bounded_state_through_10000_checks():
    from drillbit.model import Sample
    from drillbit.selfcheck import CheckRecorder

    rec = CheckRecorder(keep=100)
    for i in range(10_000):
        down = i < 5_000
        error = f"Kind{i % 100}: refused" if down else None
        rec(Sample("health", 1000.0 + i * 0.01 + (5.0 if i >= 7_000 else 0.0), not down, 0.001, error=error))
    assert rec.count == 10_000 and rec.ok == 5_000
    assert len(rec.recent) == 100 and len(rec.gaps) == 100 and rec.recent[-1].ts == rec.last_ts
    assert len(rec.errors) == 32 and sum(rec.errors.values()) < 5_000, "error kinds are capped, not one per check"
    assert list(rec.changes) == [(1000.0, False), (1050.0, True)]
    assert abs(rec.max_gap - 5.01) < 1e-9, "the stall is kept even after it left the ring"
    assert abs(rec.mean_gap - (9_999 * 0.01 + 5.0) / 9_999) < 1e-9
