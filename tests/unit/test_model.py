import pandas as pd

from drillbit import criteria
from drillbit.model import Outcome, RunRecord, Sample, Timeline, Verdict, overall


def timeline():
    tl = Timeline()
    tl.begin_phase("baseline", at=0)
    tl.begin_phase("injection", at=10)
    tl.begin_phase("recovery", at=20)
    tl.end(at=30)
    for t in range(30):
        bad = 12 <= t < 16
        tl.add(Sample("api", float(t), ok=not bad, latency=2.5 if bad else 0.1, error="timeout" if bad else None))
    return tl


def test_samples_are_assigned_to_phases():
    df = timeline().frame
    assert df.groupby("phase").size().to_dict() == {"baseline": 10, "injection": 10, "recovery": 10}


def test_availability_and_latency_criteria_read_the_right_phase():
    tl = timeline()
    base = criteria.availability("avail", "api", 0.99, phase="baseline").grade(tl)
    inj = criteria.availability("avail", "api", 0.99, phase="injection").grade(tl)
    assert base.outcome == Outcome.PASS and inj.outcome == Outcome.FAIL
    assert inj.evidence == {"availability": 0.6, "samples": 10, "failures": 4}
    p95 = criteria.latency("p95", "api", 95, 2.0, phase="injection").grade(tl)
    assert p95.outcome == Outcome.FAIL and p95.evidence["p95_s"] == 2.5
    assert criteria.latency("p95", "api", 95, 2.0, phase="recovery").grade(tl).passed


def test_too_few_samples_is_inconclusive_not_pass():
    v = criteria.availability("avail", "nothing", 0.99).grade(timeline())
    assert v.outcome == Outcome.INCONCLUSIVE and "only 0 samples" in v.reason


def test_a_crashing_criterion_is_inconclusive():
    from drillbit.model import Criterion

    v = Criterion("boom", "x", lambda tl: 1 / 0).grade(timeline())
    assert v.outcome == Outcome.INCONCLUSIVE and "ZeroDivisionError" in v.reason


def test_recovered_within_uses_the_event():
    tl = timeline()
    tl.event("revert", at=16)
    assert criteria.recovered_within("back", "api", "revert", 1.0).grade(tl).evidence["recovery_s"] == 0.0
    tl.event("revert", at=29.5)
    assert criteria.recovered_within("back", "api", "revert", 1.0).grade(tl).outcome == Outcome.FAIL


def test_recovered_within_counts_from_when_the_fault_is_in_place():
    # a pod kill decided at 10 s but done at 12 s (the reaper's start lies between); the pod never comes back.
    # Health checks at 10 and 11 s still succeed: counting from "inject" would call that a recovery in 0 s.
    tl = Timeline()
    tl.begin_phase("injection", at=10)
    tl.event("inject", at=10)
    tl.event("injected", at=12)
    for t in range(10, 20):
        tl.add(Sample("health:node-2", float(t), ok=t < 12))
    assert criteria.recovered_within("back", "health:node-2", "inject", 5).grade(tl).outcome == Outcome.PASS
    v = criteria.recovered_within("back", "health:node-2", "injected", 5).grade(tl)
    assert v.outcome == Outcome.FAIL and "did not recover" in v.reason


def test_all_ok_over_several_probes_and_what_missing_samples_mean():
    tl = timeline()
    tl.add(Sample("db", 25.0, ok=True))
    both = criteria.all_ok("ok", ["api", "db"], phase="recovery").grade(tl)
    assert both.outcome == Outcome.PASS and both.evidence == {"samples": 11, "failures": 0}
    inj = criteria.all_ok("ok", ["api", "db"], phase="injection").grade(tl)
    assert inj.outcome == Outcome.FAIL and inj.evidence["failures"] == 4 and inj.evidence["errors"] == ["timeout"] * 3
    assert criteria.all_ok("ok", "nothing").grade(tl).outcome == Outcome.INCONCLUSIVE
    restored = criteria.all_ok("ok", "nothing", missing=(Outcome.FAIL, "not restored")).grade(tl)
    assert restored.outcome == Outcome.FAIL and restored.reason == "not restored"


def test_overall_outcome():
    p, f, i = (Verdict("a", o, "") for o in (Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE))
    assert overall([p, p]) == Outcome.PASS
    assert overall([p, i]) == Outcome.INCONCLUSIVE
    assert overall([p, i, f]) == Outcome.FAIL
    assert overall([]) == Outcome.INCONCLUSIVE


def test_record_round_trips_through_dict():
    r = RunRecord("synthetic", "sandbox", {"duration": 5}, started_at=1.0)
    r.finish([Verdict("a", Outcome.PASS, "fine", {"x": 1.5})])
    back = RunRecord.from_dict(r.to_dict())
    assert back.outcome == "pass" and back.verdicts[0].evidence == {"x": 1.5}


def test_timeline_round_trips_through_a_frame():
    tl = timeline()
    again = Timeline.from_frame(tl.frame, tl.phases)
    pd.testing.assert_frame_equal(again.frame, tl.frame)


def test_an_optional_inconclusive_criterion_does_not_block_a_pass_but_an_optional_failure_fails():
    p = Verdict("a", Outcome.PASS, "")
    optional_unknown = Verdict("ack", Outcome.INCONCLUSIVE, "no ack source", required=False)
    optional_fail = Verdict("ack", Outcome.FAIL, "not acked", required=False)
    assert overall([p, optional_unknown]) == Outcome.PASS
    assert overall([p, optional_fail]) == Outcome.FAIL


def test_last_event_is_the_most_recent_of_its_kind():
    tl = Timeline()
    assert tl.last_event("revert") is None and tl.last_event_ts("revert") is None
    tl.event("inject", at=10.0, n=1)
    tl.event("revert", at=20.0)
    tl.event("inject", at=30.0, n=2)
    assert tl.last_event("inject")["n"] == 2
    assert tl.last_event_ts("inject") == 30.0 and tl.last_event_ts("revert") == 20.0
