"""A probe that never answers is a failure at its deadline, not a missing sample (drillbit.monitor).

The checks here block on a threading.Event the test holds: no sleeps, no timing thresholds. Each test releases its
checks at the end and joins their threads, so nothing outlives it.
"""

from __future__ import annotations

import threading

import pytest

from drillbit import criteria
from drillbit.model import Outcome, Sample, Timeline
from drillbit.monitor import Monitor, default_deadline, monitor
from drillbit.observe import Observer

WAIT = 10.0  # seconds a test waits for an event that must happen (a bound against hanging, never a measurement)


class Stuck:
    """A check that blocks until released; counts how often it started and how often it returned."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.starts = 0
        self.returns = 0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.starts += 1
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the check"
        with self._lock:
            self.returns += 1
        return 1.0


def check_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"check-{name}"]


def finish(stuck: Stuck, name: str) -> None:
    """Release the stuck checks and join their threads: an abandoned check ends when its probe returns."""
    stuck.release.set()
    for t in check_threads(name):
        t.join(WAIT)
    assert check_threads(name) == []


class Collect:
    """An on_sample / on_late callback that signals when it holds ``n`` samples."""

    def __init__(self, n: int = 1) -> None:
        self.samples: list[Sample] = []
        self.n = n
        self.enough = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, s: Sample) -> None:
        with self._lock:
            self.samples.append(s)
            if len(self.samples) >= self.n:
                self.enough.set()


def test_a_check_that_never_answers_is_a_failed_sample_at_its_deadline_and_its_late_answer_is_evidence_only():
    stuck = Stuck()
    m = monitor("stuck", 60.0, stuck, deadline=0.2)
    got, late = Collect(), Collect()
    try:
        assert m.run(got, count=1, on_late=late) == 1
        assert len(got.samples) == 1
        s = got.samples[0]
        assert (s.probe, s.ok, s.latency, s.error) == ("stuck", False, 0.2, "no answer within 0.2 s")
        assert stuck.returns == 0  # the check was still running when its failure was recorded
        stuck.release.set()
        assert late.enough.wait(WAIT)  # the late answer arrives, to on_late only
    finally:
        finish(stuck, "stuck")
    assert len(got.samples) == 1 and late.samples[0].ok and late.samples[0].value == 1.0
    assert late.samples[0].ts >= s.ts  # the same check: it started when the failed sample says


def test_a_check_answering_before_its_deadline_is_its_own_sample():
    m = monitor("quick", 0.001, lambda: 7.0, deadline=WAIT)
    got = Collect()
    assert m.run(got, count=3) == 3
    assert [(s.ok, s.value) for s in got.samples] == [(True, 7.0)] * 3
    assert check_threads("quick") == []


def test_a_failing_check_before_its_deadline_keeps_its_own_error():
    def broken() -> None:
        raise RuntimeError("connection refused")

    got = Collect()
    monitor("broken", 60.0, broken, deadline=WAIT).run(got, count=1)
    assert not got.samples[0].ok and got.samples[0].error == "RuntimeError: connection refused"


def test_the_deadline_failure_belongs_to_the_phase_the_check_started_in_and_the_observation_end_waits_for_it():
    tl = Timeline()
    stuck = Stuck()
    m = monitor("provisioning", 60.0, stuck, deadline=0.3)
    obs = Observer(tl, [m], host=None)
    tl.begin_phase("injection")
    obs.start()
    try:
        assert stuck.started.wait(WAIT)
        tl.begin_phase("recovery")  # the fault is gone while the check is still stuck
        obs.stop()  # bounded by the deadline: returns once the failure is recorded
        tl.end()
        assert all(not t.is_alive() for t in obs._threads)  # no monitor thread outlives the observation
    finally:
        finish(stuck, "provisioning")
    df = tl.select(probe="provisioning")
    assert len(df) == 1  # exactly one sample; the late answer after the end is not a second one
    row = df.iloc[0]
    assert row["phase"] == "injection" and not row["ok"] and row["error"] == "no answer within 0.3 s"
    assert row["latency"] == 0.3
    assert stuck.starts == 1 and stuck.returns == 1
    assert not [e for e in tl.events if e["kind"] in ("late_answer", "check_unanswered")]


class SignalTimeline(Timeline):
    """A Timeline that tells a waiting test when it holds ``n`` samples."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def add(self, sample: Sample) -> None:
        with self.changed:
            super().add(sample)
            self.changed.notify_all()

    def wait_samples(self, n: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self._rows) >= n, WAIT)


def test_a_late_answer_during_the_observation_is_an_event_not_a_sample():
    tl = SignalTimeline()
    first = threading.Event()
    release = threading.Event()
    calls = []

    def check() -> float:
        calls.append(1)
        if len(calls) == 1:  # the first check is stuck until released; the others answer at once
            first.set()
            assert release.wait(WAIT)
        return float(len(calls))

    m = monitor("api", 0.01, check, deadline=0.2)
    obs = Observer(tl, [m], host=None)
    tl.begin_phase("injection")
    late_seen = threading.Event()
    real_late = obs._late_answer

    def late(s: Sample) -> None:
        real_late(s)
        late_seen.set()

    obs._late_answer = late  # type: ignore[method-assign]
    obs.start()
    try:
        assert first.wait(WAIT)
        # the stuck first check produces its deadline failure, then later checks answer; release the first one
        assert tl.wait_samples(2)
        release.set()
        assert late_seen.wait(WAIT)
    finally:
        release.set()
        obs.stop()
        tl.end()
        for t in check_threads("api"):
            t.join(WAIT)
    df = tl.select(probe="api")
    failed = df[~df["ok"].astype(bool)]
    assert list(failed["error"]) == ["no answer within 0.2 s"]  # one failure for the stuck check, no duplicate
    assert len(df) == len(calls)  # every check exactly one sample: the late answer added none
    ev = tl.last_event("late_answer")
    assert ev is not None and ev["probe"] == "api" and ev["ok"] is True and ev["started"] == failed["ts"].iloc[0]


def test_a_stuck_target_never_piles_up_more_than_max_abandoned_checks():
    stuck = Stuck()
    m = Monitor("pile", 0.001, monitor("pile", 1, stuck).probe, deadline=0.05, max_abandoned=2)
    got = Collect(3)
    stop = threading.Event()
    t = threading.Thread(target=lambda: m.run(got, stop=stop))
    t.start()
    try:
        assert got.enough.wait(WAIT)  # three failed samples: the check in flight and two abandoned ones
        stop.set()  # the monitor is waiting for a slot: stop ends it without a fourth check
        t.join(WAIT)
        assert not t.is_alive()
    finally:
        stop.set()
        finish(stuck, "pile")
    assert stuck.starts == 3 and len(got.samples) == 3
    assert all(s.error == "no answer within 0.05 s" for s in got.samples)


def test_a_check_without_deadline_still_running_at_the_end_is_recorded_and_fails_its_criteria():
    tl = Timeline()
    stuck = Stuck()
    m = monitor("canary", 60.0, stuck)  # a plain callable declares no timeout: no deadline
    assert m.deadline is None
    obs = Observer(tl, [m], host=None)
    tl.begin_phase("injection")
    obs.start()
    try:
        assert stuck.started.wait(WAIT)
        tl.begin_phase("recovery")
        obs.stop(timeout=0.05)
        tl.end()
    finally:
        stuck.release.set()
        for t in obs._threads:
            t.join(WAIT)
    ev = tl.last_event("check_unanswered")
    assert ev is not None and ev["probe"] == "canary" and tl.phase_of(ev["started"]) == "injection"
    assert tl.select(probe="canary").empty  # no sample was invented for it
    ok = criteria.all_ok("canary succeeds", "canary", phase="injection").check(tl)
    assert ok.outcome == Outcome.FAIL and ok.evidence["unanswered"][0]["probe"] == "canary"
    avail = criteria.availability("canary up", "canary", 0.99, phase="injection").check(tl)
    assert avail.outcome == Outcome.FAIL and "never answered" in avail.reason
    # a latency limit above how long it had run when the observation ended: whether it would have made it is unknown
    slow = criteria.latency("canary fast", "canary", 100, 3600.0, phase="injection").check(tl)
    assert slow.outcome == Outcome.INCONCLUSIVE and slow.evidence["samples"] == 0
    fast = criteria.latency("canary fast", "canary", 100, 0.01, phase="injection").check(tl)
    assert fast.outcome == Outcome.FAIL and fast.evidence["unanswered"][0]["running_s"] >= 0.01


def _outage_timeline(limit: float) -> Timeline:
    """A provisioning outage as the monitor records it: a check passes in the baseline, the next never answers."""
    tl = Timeline()
    tl.begin_phase("baseline", at=100.0)
    tl.begin_phase("injection", at=110.0)
    tl.begin_phase("recovery", at=200.0)
    tl.end(at=210.0)
    tl.add(Sample("deployment-provisioning", 101.0, True, 4.0, value=4.0))
    tl.add(Sample("deployment-provisioning", 111.0, False, limit, error=f"no answer within {limit:g} s"))
    return tl


def test_criteria_fail_a_window_whose_checks_never_answered_with_the_deadline_in_the_evidence():
    tl = _outage_timeline(60.0)
    within = criteria.latency("provisioning within limit", "deployment-provisioning", 100, 60.0, phase="injection")
    v = within.check(tl)
    assert v.outcome == Outcome.FAIL and v.evidence["samples"] == 1 and v.evidence["max_s"] == 60.0
    succeeds = criteria.all_ok("provisioning succeeds", "deployment-provisioning", phase="injection")
    v = succeeds.check(tl)
    assert v.outcome == Outcome.FAIL and v.evidence["errors"] == ["no answer within 60 s"]
    assert criteria.availability("a", "deployment-provisioning", 0.9, phase="injection").check(tl).outcome == "fail"
    assert criteria.all_ok("ok", "deployment-provisioning", phase="baseline").check(tl).outcome == Outcome.PASS


def test_an_empty_window_is_inconclusive_with_the_figures():
    tl = _outage_timeline(60.0)
    v = criteria.availability("x", "deployment-provisioning", 0.9, phase="recovery").check(tl)
    assert v.outcome == Outcome.INCONCLUSIVE and "only 0 samples" in v.reason
    assert v.evidence == {"samples": 0, "samples_whole_run": 2, "window_s": 10.0}
    v = criteria.all_ok("y", ["deployment-provisioning"], phase="recovery").check(tl)
    assert v.outcome == Outcome.INCONCLUSIVE and v.evidence["window_s"] == 10.0


def test_the_default_deadline_comes_from_the_probes_own_timeout():
    from drillbit import probes

    class Client:  # the probes only hold it; nothing is called here
        pass

    check = probes.deployment_provisioning(Client(), timeout=600)  # type: ignore[arg-type]
    assert check.timeout == 600  # type: ignore[attr-defined]
    assert monitor("p", 2.0, check).deadline == default_deadline(check) == pytest.approx(665.0)
    assert monitor("p", 2.0, check, deadline=350.0).deadline == 350.0  # the scenario's criterion limit wins
    assert probes.bid_placement(Client(), timeout=20).timeout == 20  # type: ignore[arg-type,attr-defined]
    assert monitor("q", 1.0, lambda: None).deadline is None


def test_a_monitor_refuses_a_deadline_that_is_not_positive():
    with pytest.raises(ValueError, match="deadline must be positive"):
        monitor("z", 1.0, lambda: None, deadline=0).run(lambda s: None, count=1)


def test_the_steady_state_look_fails_a_stuck_probe_at_its_deadline_instead_of_hanging():
    from drillbit.runner import UnhealthyTarget, check_steady_state

    stuck = Stuck()
    try:
        with pytest.raises(UnhealthyTarget, match=r"stuck: no answer within 0\.1 s"):
            check_steady_state([monitor("stuck", 1.0, stuck, deadline=0.1)])
    finally:
        finish(stuck, "stuck")
