"""RTO/RPO measurement on crafted probe samples and canary histories, state comparison, steps and the drill report."""

from __future__ import annotations

import pytest

from drillbit.model import Outcome, Sample, Timeline
from drillbit.scenarios.dr import objectives as dr

T0 = 1_000.0  # the disaster


def canary(n: int, start: float = 900.0, step: float = 1.0) -> dict[str, float]:
    return {f"c-{i:08d}": start + i * step for i in range(1, n + 1)}


# ---------------------------------------------------------------------------------------------------------- RPO


def test_no_write_lost_is_rpo_zero():
    acked = canary(50)
    r = dr.measure_rpo(acked, acked.keys())
    assert r.rpo_s == 0 and r.missing == [] and r.gaps == [] and not r.lost_tail
    assert r.acknowledged == r.present == 50
    assert r.newest_present == ("c-00000050", 950.0)


def test_a_lost_tail_is_the_gap_from_the_newest_present_write_to_the_last_acknowledged_one():
    acked = canary(50)  # acknowledged at 901 … 950
    present = [k for k, ts in acked.items() if ts <= 944.0]
    r = dr.measure_rpo(acked, present)
    assert r.missing == [f"c-{i:08d}" for i in range(45, 51)]
    assert r.rpo_s == pytest.approx(950.0 - 944.0)
    assert r.lost_tail and len(r.gaps) == 1 and r.gaps[0].count == 6
    assert r.newest_present == ("c-00000044", 944.0) and r.last_acknowledged == ("c-00000050", 950.0)


def test_a_hole_counts_with_its_own_width_and_is_listed():
    acked = canary(50)
    holes = {"c-00000020", "c-00000021", "c-00000022"}  # acknowledged at 920-922; 919 and 923 present
    r = dr.measure_rpo(acked, [k for k in acked if k not in holes])
    assert r.missing == sorted(holes)
    assert r.rpo_s == pytest.approx(922.0 - 919.0)
    assert not r.lost_tail and r.gaps[0].first == "c-00000020" and r.gaps[0].last == "c-00000022"


def test_the_largest_window_wins_and_the_first_writes_lost_count_from_the_canary_start():
    acked = canary(10)  # 901 … 910
    present = ["c-00000004", "c-00000005", "c-00000009"]
    r = dr.measure_rpo(acked, present, since=895.0)
    assert [(g.first, g.last) for g in r.gaps] == [
        ("c-00000001", "c-00000003"),
        ("c-00000006", "c-00000008"),
        ("c-00000010", "c-00000010"),
    ]
    assert r.gaps[0].span_s == pytest.approx(903.0 - 895.0)  # nothing present before: counted from the start
    assert r.rpo_s == pytest.approx(8.0) and r.lost_tail


def test_everything_lost_and_nothing_acknowledged():
    acked = canary(3)
    r = dr.measure_rpo(acked, [])
    assert r.present == 0 and r.rpo_s == pytest.approx(903.0 - 901.0) and r.newest_present is None
    empty = dr.measure_rpo({}, [])
    assert empty.rpo_s == 0 and empty.acknowledged == 0 and empty.last_acknowledged is None


def test_writes_after_the_disaster_do_not_hide_a_lost_tail():
    acked = canary(20)  # 901 … 920; the disaster at 910.5, writes 11-20 acknowledged after the recovery
    r = dr.measure_rpo(acked, [k for k, ts in acked.items() if ts <= 906 or ts >= 911], disaster=910.5)
    assert r.lost_tail and r.last_acknowledged == ("c-00000010", 910.0)
    assert r.newest_present == ("c-00000006", 906.0) and r.rpo_s == pytest.approx(4.0)
    assert not dr.measure_rpo(acked, acked, disaster=910.5).lost_tail


def test_unacknowledged_keys_found_afterwards_do_not_count():
    acked = canary(3)
    r = dr.measure_rpo(acked, [*acked, "c-00000099"])
    assert r.present == 3 and r.rpo_s == 0


# ---------------------------------------------------------------------------------------------------------- RTO


def samples(probe: str, pattern: str, start: float = T0 - 2, interval: float = 0.5) -> list[Sample]:
    """One sample per character: ``.`` ok, ``x`` failed."""
    return [Sample(probe, start + i * interval, ch == ".") for i, ch in enumerate(pattern)]


def test_rto_is_the_first_success_after_the_last_failure_of_the_slowest_probe():
    data = samples("api", "....xxxxxx......") + samples("chain", "................")
    r = dr.measure_rto(data, T0, ["api", "chain"])
    assert r.per_probe["api"] == pytest.approx(T0 - 2 + 10 * 0.5)
    assert r.per_probe["chain"] == pytest.approx(T0)  # unaffected: its first sample after the disaster
    assert r.rto_s == pytest.approx(3.0)


def test_a_flap_after_the_first_success_moves_the_restore_to_after_the_flap():
    r = dr.measure_rto(samples("api", "....xx..x..."), T0, ["api"])
    assert r.rto_s == pytest.approx(T0 - 2 + 9 * 0.5 - T0)


def test_not_restored_when_the_last_sample_failed_or_a_probe_has_no_sample():
    assert dr.measure_rto(samples("api", "....xxxx"), T0, ["api"]).rto_s is None
    r = dr.measure_rto(samples("api", "........"), T0, ["api", "missing"])
    assert r.rto_s is None and r.per_probe["missing"] is None


def test_rto_criterion_grades_against_the_target_from_the_timeline():
    tl = Timeline()
    tl.extend(samples("api", "....xxxxxx......"))
    tl.event(dr.DISASTER, "region A lost", at=T0)
    assert dr.rto_criterion("RTO", 60, ["api"]).grade(tl).outcome == Outcome.PASS
    v = dr.rto_criterion("RTO", 2.0, ["api"]).grade(tl)
    assert v.outcome == Outcome.FAIL and v.evidence["rto_s"] == pytest.approx(3.0)
    assert dr.rto_criterion("RTO", 60, ["api"]).grade(Timeline()).outcome == Outcome.INCONCLUSIVE


def test_rpo_criterion_lists_the_missing_writes_and_respects_a_zero_target():
    acked = canary(10)
    tl = Timeline()
    tl.event(dr.RPO_EVENT, "", **dr.measure_rpo(acked, list(acked)[:8]).to_dict())
    v = dr.rpo_criterion("RPO", 60).grade(tl)
    assert v.outcome == Outcome.PASS and "2 of 10 acknowledged writes lost" in v.reason
    v0 = dr.rpo_criterion("RPO", 0).grade(tl)
    assert v0.outcome == Outcome.FAIL and v0.evidence["missing"] == ["c-00000009", "c-00000010"]
    clean = Timeline()
    clean.event(dr.RPO_EVENT, "", **dr.measure_rpo(acked, acked).to_dict())
    assert dr.rpo_criterion("RPO", 0).grade(clean).outcome == Outcome.PASS


# ------------------------------------------------------------------------------------------------- steps, states


def test_steps_are_timed_mirrored_into_the_timeline_and_failures_kept():
    tl = Timeline()
    log = dr.StepLog(tl)
    with log.step("promote replica", "pg_ctl promote") as s:
        s.evidence["lsn"] = "0/3000000"
    with pytest.raises(RuntimeError), log.step("restart api"):
        raise RuntimeError("boom")
    steps = dr.steps_of(tl)
    assert [s["name"] for s in steps] == ["promote replica", "restart api"]
    assert steps[0]["ok"] and steps[0]["seconds"] >= 0 and steps[0]["evidence"] == {"lsn": "0/3000000"}
    assert steps[1]["ok"] is False and "boom" in steps[1]["error"]
    v = dr.step_criterion("failover", ["promote replica", "restart api"], 60).grade(tl)
    assert v.outcome == Outcome.FAIL and "restart api failed" in v.reason
    assert dr.step_criterion("x", ["promote replica"], 60).grade(tl).outcome == Outcome.PASS


def test_entity_states_and_their_comparison():
    chain = {
        "deployments": dr.entity_states(
            [{"deployment": {"id": {"owner": "t", "dseq": "1"}, "state": "active"}, "groups": []}]
        ),
        "orders": dr.entity_states(
            [
                {"id": {"owner": "t", "dseq": "1", "gseq": 1, "oseq": 1}, "state": "open"},
                {"id": {"owner": "t", "dseq": "2", "gseq": 1, "oseq": 1}, "state": "open"},
            ]
        ),
    }
    assert chain["deployments"] == {"t/1": "active"} and set(chain["orders"]) == {"t/1/1/1", "t/2/1/1"}
    assert dr.compare_states(chain, chain)["equal"]
    api = {"deployments": {"t/1": "closed"}, "orders": {"t/1/1/1": "open", "t/9/1/1": "open"}}
    diff = dr.compare_states(api, chain)
    assert not diff["equal"]
    assert diff["kinds"]["orders"]["missing_in_api"] == ["t/2/1/1"]
    assert diff["kinds"]["orders"]["extra_in_api"] == ["t/9/1/1"]
    assert diff["kinds"]["deployments"]["different"] == [{"id": "t/1", "api": "closed", "chain": "active"}]


def test_the_drill_report_has_the_rto_rpo_table_the_timeline_and_the_verdicts():
    record = {
        "flow": "dr-dc-loss",
        "run_id": "r1",
        "outcome": "fail",
        "verdicts": [{"criterion": "RPO", "outcome": "fail", "threshold": "RPO < 1 min", "reason": "3 lost"}],
        "metrics": {
            "dr": {
                "scenario": "dc-loss",
                "rto_s": 12.5,
                "rto_target_s": 900,
                "rpo_s": 4.2,
                "rpo_target_s": 60,
                "missing_count": 3,
                "disaster_at": T0,
                "steps": [{"name": "promote replica", "started_at": T0 + 1, "seconds": 0.4, "ok": True}],
                "evidence": {"missing": ["a", "b", "c"]},
            }
        },
    }
    text = dr.drill_report(
        {
            "outcome": "fail",
            "environment": "sandbox",
            "run_id": "d1",
            "started_at": T0,
            "finished_at": T0 + 60,
            "scenarios": [record],
            "approvals": [{"scenario": "dc-loss", "approve": True, "approver": "alice", "at": T0}],
        }
    )
    assert "| dc-loss | fail | 12.5 s | 900.0 s | 4.2 s | 60.0 s | 3 |" in text
    assert "| promote replica | +1.00 | 0.4 s | ok |" in text
    assert "approved by alice" in text and "| RPO | fail | RPO < 1 min | 3 lost |" in text
