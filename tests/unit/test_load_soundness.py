"""The load flows' timed verdicts judged by ``drillbit.soundness``: host CPU, the harness's own CPU share (its
process tree, from /proc/<pid>/stat) and the generator's send lateness, on constructed records and timelines."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from drillbit import criteria, soundness
from drillbit.load import grading, runner
from drillbit.load import results as res
from drillbit.load.scenarios import SCENARIOS
from drillbit.model import Outcome, Sample, Timeline
from drillbit.observe import HostSampler, read_tree_ticks
from tests.unit.test_load_stats import breaking_point_run, crafted, write_run

T0 = 5000.0  # crafted()'s start


def host_samples(cpu: float, harness: float | None, start: float = T0 - 1, seconds: int = 40) -> list[Sample]:
    """Host samples every half second over the run, as the load runner's sampler writes them."""
    out = []
    for k in range(2 * seconds):
        ts = start + k / 2
        out.append(Sample(soundness.HOST_CPU, ts, True, None, cpu))
        out.append(Sample(soundness.HARNESS_LATENESS, ts, True, None, 0.001))
        if harness is not None:
            out.append(Sample(soundness.HARNESS_CPU, ts, True, None, harness))
    return out


def grade(data: res.LoadData, **changes) -> dict:
    sc = SCENARIOS["smoke"].with_changes(rate=20, ramp_s=5, duration_s=20, **changes)
    tl = data.timeline()
    return {c.name: c.grade(tl) for c in grading.load_criteria(sc, data)}


# ------------------------------------------------------------------------------------------- the rule itself


def test_a_saturated_host_names_the_harness_share_in_the_reason():
    tl = Timeline()
    tl.begin_phase("injection", 0.0)
    tl.end(20.0)
    for i in range(20):
        tl.add(Sample("api", i + 0.1, True, 0.3))
        tl.add(Sample(soundness.HOST_CPU, i + 0.2, True, None, 0.97))
        tl.add(Sample(soundness.HARNESS_CPU, i + 0.2, True, None, 0.61))
    v = criteria.latency("api latency", "api", 95, 0.1, phase="injection").grade(tl)
    v = soundness.judge(v, soundness.host_figures(tl, 0.0, 20.0))
    assert v.outcome == Outcome.INCONCLUSIVE
    m = v.evidence["measurement"]
    assert m["harness_cpu"] == {"samples": 20, "mean_busy": 0.61, "max_busy": 0.61}
    assert "host CPU saturated" in v.reason and "of which the harness 61%" in v.reason
    assert "97%" in v.reason


def test_without_harness_samples_the_share_is_shown_as_not_measured():
    tl = Timeline()
    for i in range(5):
        tl.add(Sample(soundness.HOST_CPU, float(i), True, None, 0.95))
    figures = soundness.host_figures(tl, None, None)
    assert figures["harness_cpu"] == {"samples": 0, "measured": False}
    reasons = soundness.assess(figures)
    assert len(reasons) == 1 and "of which" not in reasons[0]


# ----------------------------------------------------------------------------------------- the load verdicts


def test_a_slow_load_run_on_a_quiet_host_fails_with_a_measured_sound_measurement(tmp_path: Path):
    data = crafted(tmp_path, slow=12.0)
    data.host = host_samples(cpu=0.3, harness=0.1)
    v = grade(data)
    p95 = v["tx p95 latency"]
    assert p95.outcome == Outcome.FAIL, p95
    m = p95.evidence["measurement"]
    assert m["sound"] is True and m["host_cpu"]["samples"] > 0 and m["harness_cpu"]["mean_busy"] == 0.1
    assert m["generator"]["operations"] == 450 and m["generator"]["arrival_lateness_p95_s"] == 0.0
    assert v["tx throughput (steady)"].evidence["measurement"]["host_cpu"]["samples"] == 40  # its phase: 20 s
    assert "measurement" not in v["load generator kept the schedule"].evidence  # grades the harness itself


def test_a_slow_load_run_on_a_saturated_host_is_inconclusive_never_fail(tmp_path: Path):
    data = crafted(tmp_path, slow=12.0)
    data.host = host_samples(cpu=0.98, harness=0.7)
    p95 = grade(data)["tx p95 latency"]
    assert p95.outcome == Outcome.INCONCLUSIVE, p95
    assert p95.evidence["measurement"]["would_have_been"] == "fail"
    assert "of which the harness 70%" in p95.reason and p95.evidence["corrected_p95_s"] > 12


def test_errors_fail_whatever_the_host(tmp_path: Path):
    data = crafted(tmp_path, errors_every=10)
    data.host = host_samples(cpu=0.98, harness=0.7)
    v = grade(data)
    assert v["tx error rate"].outcome == Outcome.FAIL  # not a timed criterion: a saturated harness excuses nothing


def test_a_generator_that_sent_late_makes_a_latency_fail_inconclusive(tmp_path: Path):
    data = crafted(tmp_path, slow=12.0, late=2.0)  # 10 % of sends 2 s late, nothing held the slots
    data.host = host_samples(cpu=0.3, harness=0.1)
    p95 = grade(data)["tx p95 latency"]
    assert p95.outcome == Outcome.INCONCLUSIVE, p95
    gen = p95.evidence["measurement"]["generator"]
    assert gen["arrival_lateness_p95_s"] == pytest.approx(2.0) and "load generator sent late" in p95.reason


def test_lateness_the_target_caused_by_holding_every_slot_is_not_the_generator_s(tmp_path: Path):
    data = crafted(tmp_path, slow=12.0, late=2.0)
    for m in data.metas:
        m["cap_hits"], m["cap_wait_s"] = 49, 98.0
    data.host = host_samples(cpu=0.3, harness=0.1)
    p95 = grade(data)["tx p95 latency"]
    assert p95.outcome == Outcome.FAIL, p95
    gen = p95.evidence["measurement"]["generator"]
    assert "arrival_lateness_p95_s" not in gen and gen["cap_hits"] == 49 and gen["send_lateness_p95_s"] > 1


def test_a_run_without_host_samples_says_not_measured(tmp_path: Path):
    p95 = grade(crafted(tmp_path, slow=12.0))["tx p95 latency"]
    assert p95.outcome == Outcome.FAIL
    assert p95.evidence["measurement"]["host_cpu"] == {"samples": 0, "measured": False}


def _steps(tmp_path: Path, *, slow: bool, errors: bool) -> tuple:
    sc, data = breaking_point_run(tmp_path, slow=slow, errors=errors)
    data.host = host_samples(cpu=0.98, harness=0.5, start=100.0, seconds=30)
    return sc, data


def test_breaking_point_slow_on_a_saturated_host_is_inconclusive_but_broken_by_errors_fails(tmp_path: Path):
    sc, data = _steps(tmp_path / "slow", slow=True, errors=False)
    v = grading.breaking_point_criterion(sc, data, required_rate=75).grade(data.timeline())
    assert v.outcome == Outcome.INCONCLUSIVE and "40/s" in v.reason
    assert v.evidence["measurement"]["window"] == {"start": 118.0, "end": 124.0}  # the step that broke
    sc, data = _steps(tmp_path / "errors", slow=False, errors=True)
    v = grading.breaking_point_criterion(sc, data, required_rate=75).grade(data.timeline())
    assert v.outcome == Outcome.FAIL and "error rate" in v.reason
    assert v.evidence["measurement"]["sound"] is False  # shown, but errors are not about time


# -------------------------------------------------------------------------- host samples of a load run


def test_the_runner_s_host_samples_reach_the_load_timeline(tmp_path: Path):
    out = write_run(tmp_path, [(0, T0, T0, T0 + 0.1, 1, 200, -1, float("nan"))], ["tx"], [], [["steady", 1, 1, 1]], T0)
    runner.write_host_samples(out / res.HOST_SAMPLES, host_samples(cpu=0.5, harness=0.2, seconds=2))
    data = res.read(out)
    assert len(data.host) == 12
    tl = data.timeline()
    assert len(tl.select(probe=soundness.HARNESS_CPU)) == 4 and len(tl.select(probe="tx")) == 1


def _stat(pid: int, ppid: int, session: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    return f"{pid} (a b) c) S {ppid} {pid} {session} 0 0 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0\n"


def fake_proc(root: Path, procs: list[tuple]) -> Path:
    for args in procs:
        d = root / str(args[0])
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(_stat(*args))
    return root


def test_the_harness_tree_is_its_session_plus_the_generator_s_not_a_fault_s(tmp_path: Path):
    proc = fake_proc(
        tmp_path,
        [
            (10, 1, 10, 100, 50, 7, 3),  # the harness: 150 own + 10 of reaped children
            (11, 10, 10, 20, 5),  # a thread pool child in its session
            (12, 10, 12, 1000, 0),  # a stress-ng hog in a session of its own (a fault): not the harness
            (20, 10, 20, 300, 100),  # the load generator (own session), named
            (21, 20, 20, 40, 0),  # one of its workers
            (30, 1, 30, 5000, 0),  # someone else
        ],
    )
    assert read_tree_ticks(10, proc=str(proc)) == 150 + 10 + 25
    assert read_tree_ticks(10, {20}, proc=str(proc)) == 150 + 10 + 25 + 400 + 40
    assert read_tree_ticks(99, proc=str(proc)) is None


def test_the_host_sampler_records_the_harness_share_of_all_cores(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    proc = fake_proc(tmp_path / "proc", [(10, 1, 10, 100, 0), (20, 10, 20, 0, 0)])
    samples: list[Sample] = []
    stop = threading.Event()

    def on_sample(s: Sample) -> None:
        samples.append(s)
        stat.write_text("cpu  400 0 100 1000 0 0 0 0 0 0\n")  # 300 busy of 500 more jiffies
        fake_proc(proc, [(10, 1, 10, 150, 0), (20, 10, 20, 100, 0)])  # the harness: 50 + 100 of them
        if len(samples) >= 3:
            stop.set()

    HostSampler(interval=0.01, path=str(stat), root_pid=10, also={20}, proc=str(proc)).run(on_sample, stop)
    own = [s for s in samples if s.probe == soundness.HARNESS_CPU]
    host = [s for s in samples if s.probe == soundness.HOST_CPU]
    assert host[0].value == 0.6 and own[0].value == 0.3 and own[0].ok
