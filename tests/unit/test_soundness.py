"""The soundness rule on crafted timelines: a timed FAIL while the harness was the bottleneck (host CPU saturated,
the runner or the load generator late, the server fast but the client slow) is INCONCLUSIVE with the reason and the
figures; on a quiet host a FAIL stays a FAIL; a PASS stays a PASS; a FAIL that is not about time stays a FAIL.
Also the observer's host sampler (/proc/stat), the generator's wait histogram and the engine's own timing."""

from __future__ import annotations

import threading
from pathlib import Path

from drillbit import criteria, soundness
from drillbit.load.openloop_http import WaitHistogram
from drillbit.model import Outcome, Sample, Timeline
from drillbit.observe import HostSampler, Observer, read_cpu_times
from drillbit.poll import wait_until
from drillbit.scenarios.failure import circuit_breaker as cb

T0 = 1_000_000.0


def timeline(latency: float, cpu: float | None, lateness: float | None = None, seconds: int = 20) -> Timeline:
    """A baseline (10 s) and an injection phase (``seconds``): one 'api' check a second with ``latency``, and
    host samples every half second (busy share ``cpu``, sampler lateness ``lateness``) when given."""
    tl = Timeline()
    tl.begin_phase("baseline", T0)
    tl.begin_phase("injection", T0 + 10)
    tl.end(T0 + 10 + seconds)
    for i in range(10 + seconds):
        lat = latency if i >= 10 else 0.01
        tl.add(Sample("api", T0 + i + 0.1, True, lat))
    for k in range(2 * (10 + seconds)):
        ts = T0 + k / 2
        if cpu is not None:
            tl.add(Sample(soundness.HOST_CPU, ts, True, None, cpu if ts >= T0 + 10 else 0.1))
        if lateness is not None:
            tl.add(Sample(soundness.HARNESS_LATENESS, ts, True, None, lateness if ts >= T0 + 10 else 0.001))
    return tl


LAT = criteria.latency("api latency", "api", 95, 0.1, phase="injection")


def test_a_saturated_host_makes_a_latency_fail_inconclusive_with_the_figures():
    v = LAT.grade(timeline(0.3, cpu=0.97))
    assert v.outcome == Outcome.INCONCLUSIVE, v
    m = v.evidence["measurement"]
    assert m["sound"] is False and m["would_have_been"] == "fail"
    assert m["host_cpu"]["saturated_share"] == 1.0 and m["host_cpu"]["samples"] == 40
    assert m["host_cpu"]["mean_busy"] == 0.97
    assert "host CPU" in v.reason and "p95 0.300 s" in v.reason  # the reason and what was measured
    assert v.evidence["p95_s"] == 0.3


def test_on_a_quiet_host_a_fail_stays_a_fail_and_says_the_measurement_was_sound():
    v = LAT.grade(timeline(0.3, cpu=0.3, lateness=0.002))
    assert v.outcome == Outcome.FAIL, v
    m = v.evidence["measurement"]
    assert m["sound"] is True and m["reasons"] == [] and "would_have_been" not in m
    assert m["host_cpu"]["saturated_share"] == 0.0 and m["runner_lateness"]["p95_s"] == 0.002


def test_a_pass_stays_a_pass_on_a_saturated_host():
    v = LAT.grade(timeline(0.02, cpu=0.99, lateness=0.5))
    assert v.outcome == Outcome.PASS, v
    assert v.evidence["measurement"]["sound"] is False and len(v.evidence["measurement"]["reasons"]) == 2


def test_the_window_is_the_criterion_s_phase():
    # saturated only during the baseline: the injection's measurement was sound
    tl = timeline(0.3, cpu=None)
    for k in range(20):
        tl.add(Sample(soundness.HOST_CPU, T0 + k / 2, True, None, 1.0))
        tl.add(Sample(soundness.HOST_CPU, T0 + 10 + k / 2, True, None, 0.2))
    v = LAT.grade(tl)
    assert v.outcome == Outcome.FAIL
    assert v.evidence["measurement"]["window"] == {"start": T0 + 10, "end": T0 + 30}


def test_a_late_runner_makes_a_fail_inconclusive():
    v = LAT.grade(timeline(0.3, cpu=0.4, lateness=0.2))
    assert v.outcome == Outcome.INCONCLUSIVE
    assert v.evidence["measurement"]["runner_lateness"]["p95_s"] == 0.2
    assert "runner woke late: p95 200 ms" in v.reason


def test_without_host_samples_nothing_is_assumed():
    v = LAT.grade(timeline(0.3, cpu=None))
    assert v.outcome == Outcome.FAIL
    m = v.evidence["measurement"]
    assert m["host_cpu"] == {"samples": 0, "measured": False} and m["sound"] is True


def test_a_system_that_never_answered_fails_even_on_a_saturated_host():
    tl = timeline(0.01, cpu=0.99)
    for i in range(10, 30):  # every injection-phase check failed at its timeout
        tl.add(Sample("api", T0 + i + 0.5, False, 5.0, error="no answer within 5 s"))
    v = LAT.grade(tl)
    assert v.outcome == Outcome.FAIL, v
    assert v.evidence["measurement"]["sound"] is False  # recorded, but it does not excuse silence
    assert "timed" not in v.evidence


def test_recovered_within_late_is_inconclusive_but_never_recovered_fails():
    crit = criteria.recovered_within("recovered", "api", "revert", 2.0)
    tl = timeline(0.01, cpu=0.98)
    tl.events.append({"ts": T0 + 10, "kind": "revert", "detail": ""})
    late = Timeline.from_frame(tl.frame[~((tl.frame["probe"] == "api") & (tl.frame["ts"] < T0 + 15))], tl.phases)
    late.events = list(tl.events)
    v = crit.grade(late)
    assert v.outcome == Outcome.INCONCLUSIVE and v.evidence["recovery_s"] == 5.1, v

    never = Timeline.from_frame(tl.frame[tl.frame["probe"] != "api"], tl.phases)
    never.events = list(tl.events)
    never.add(Sample("api", T0 + 20, False, 1.0, error="refused"))
    v = crit.grade(never)
    assert v.outcome == Outcome.FAIL and "did not recover" in v.reason
    assert "timed" not in v.evidence and v.evidence["measurement"]["sound"] is False


def test_same_input_same_verdict():
    tl = timeline(0.3, cpu=0.95)
    a, b = LAT.grade(tl).to_dict(), LAT.grade(tl).to_dict()
    assert a == b


# ------------------------------------------------------------------------------------------- fail fast


def overload_timeline(client_p95: float, server_p95: float | None, cpu: float, rejected: int = 500) -> Timeline:
    tl = timeline(0.01, cpu=cpu)
    tl.event(
        "overload_result",
        "",
        at=T0 + 31,
        rejected=rejected,
        rejected_p95_s=client_p95 if rejected else None,
        rejected_after_open=rejected,
        rejected_after_open_p95_s=client_p95 if rejected else None,
        served_p95_s=0.05,
        generator_lateness_s=0.004,
        arrival_lateness={"p95_s": 0.002, "share_over_10ms": 0.0},
        send_wait={"p95_s": 0.002, "share_over_10ms": 0.0},
    )
    if server_p95 is not None:
        tl.event("engine_timing", "", at=T0 + 31, available=True, server_p95_s=server_p95, evaluations=rejected)
    return tl


FAST = cb.fails_fast("rejected requests fail fast", 0.1, 2.0)


def test_fail_fast_server_fast_client_slow_is_inconclusive_with_both_figures():
    v = FAST.grade(overload_timeline(0.237, server_p95=0.005, cpu=0.5))
    assert v.outcome == Outcome.INCONCLUSIVE, v
    m = v.evidence["measurement"]
    assert m["server_vs_client"]["client_p95_s"] == 0.237 and m["server_vs_client"]["server_p95_s"] == 0.005
    assert "server took p95 ≤ 5 ms" in v.reason and "237 ms" in v.reason


def test_fail_fast_slow_in_the_server_on_a_quiet_host_fails():
    v = FAST.grade(overload_timeline(0.4, server_p95=0.25, cpu=0.4))
    assert v.outcome == Outcome.FAIL, v
    assert v.evidence["measurement"]["sound"] is True


def test_fail_fast_without_server_timing_on_a_saturated_host_is_inconclusive():
    v = FAST.grade(overload_timeline(0.353, server_p95=None, cpu=1.0))
    assert v.outcome == Outcome.INCONCLUSIVE and "host CPU" in v.reason


def test_fail_fast_nothing_rejected_fails_whatever_the_host():
    v = FAST.grade(overload_timeline(0.0, server_p95=0.005, cpu=1.0, rejected=0))
    assert v.outcome == Outcome.FAIL and "never shed load" in v.reason
    assert v.evidence["rejected"] == 0 and v.evidence["measurement"]["sound"] is False


def test_fail_fast_a_late_generator_is_inconclusive():
    tl = overload_timeline(0.3, server_p95=0.2, cpu=0.3)
    tl.last_event("overload_result")["arrival_lateness"] = {"p95_s": 0.1, "share_over_10ms": 0.4}
    v = FAST.grade(tl)
    assert v.outcome == Outcome.INCONCLUSIVE and "load generator sent late" in v.reason
    assert v.evidence["measurement"]["generator"]["arrival_late_share"] == 0.4


def test_engine_timing_from_two_metric_snapshots():
    def text(b1: int, b2: int, inf: int, rejected: int) -> str:
        d = cb.ENGINE_DURATION
        return "\n".join(
            [
                f"# HELP {d} x",
                f'{d}_bucket{{le="0.001"}} {b1}.0',
                f'{d}_bucket{{le="0.005"}} {b2}.0',
                f'{d}_bucket{{le="+Inf"}} {inf}.0',
                f"{d}_count {inf}.0",
                f'{cb.ENGINE_REQUESTS}{{outcome="circuit_open"}} {rejected}.0',
            ]
        )

    before = cb.parse_engine_metrics(text(10, 10, 10, 0))
    after = cb.parse_engine_metrics(text(10, 970, 1010, 900))
    t = cb.engine_timing(before, after)
    assert t["evaluations"] == 1000 and t["outcomes"] == {"circuit_open": 900}
    assert t["server_p95_s"] == 0.005 and t["server_p50_s"] == 0.005
    assert cb.engine_timing(None, after)["available"] is False
    assert soundness.histogram_quantile([0.1, float("inf")], [1, 99], 0.95) == float("inf")


# ------------------------------------------------------------------------------------------- the measurements


def test_read_cpu_times_and_the_host_sampler(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
    assert read_cpu_times(str(stat)) == (200, 1000)
    assert read_cpu_times(str(tmp_path / "missing")) is None

    samples: list[Sample] = []
    stop = threading.Event()

    def on_sample(s: Sample) -> None:
        samples.append(s)
        stat.write_text("cpu  400 0 100 1000 0 0 0 0 0 0\n")  # 300 busy of 500 more jiffies
        if len(samples) >= 4:
            stop.set()

    HostSampler(interval=0.01, path=str(stat)).run(on_sample, stop)
    cpu = [s for s in samples if s.probe == soundness.HOST_CPU]
    late = [s for s in samples if s.probe == soundness.HARNESS_LATENESS]
    assert cpu[0].value == 0.6 and all(s.ok for s in samples) and late and late[0].value >= 0


def test_the_observer_records_host_samples_and_can_do_without():
    tl = Timeline()
    obs = Observer(tl, [], host=HostSampler(interval=0.01)).start()
    try:
        wait_until(lambda: len(tl) >= 4, 10, "host samples", interval=0.02)
    finally:
        obs.stop()
    assert {s.probe for s in tl.samples()} >= {soundness.HOST_CPU, soundness.HARNESS_LATENESS}
    assert all(0.0 <= s.value <= 1.0 for s in tl.samples() if s.probe == soundness.HOST_CPU)
    quiet = Timeline()
    Observer(quiet, [], host=None).start().stop()
    assert len(quiet) == 0


def test_wait_histogram_quantiles():
    h = WaitHistogram()
    for _ in range(90):
        h.add(0.0001)
    for _ in range(10):
        h.add(0.03)
    s = h.summary()
    assert s["n"] == 100 and s["p50_s"] == 0.0005 and s["p95_s"] == 0.03 and s["share_over_10ms"] == 0.1
    assert WaitHistogram().quantile(0.95) is None


def breaker_timeline(states: list[float], offered: float) -> Timeline:
    tl = timeline(0.01, cpu=None)
    for i, state in enumerate(states):
        tl.add(Sample("breaker", T0 + 10 + i, True, 0.01, state))
    tl.event("prometheus_breaker", "", available=True, open_points=0, values_seen=[0.0])
    tl.event("overload_result", "", offered_rate=offered, rate=1000.0, requests=int(offered * 8))
    return tl


def test_a_breaker_that_never_opened_under_too_little_load_is_inconclusive_but_disabled_fails():
    crit = cb.breaker_opens("breaker opens", 0.9)
    starved = crit.grade(breaker_timeline([0.0] * 5, offered=300.0))
    assert starved.outcome == Outcome.INCONCLUSIVE and "offered only 300/s of 1000/s" in starved.reason
    applied = crit.grade(breaker_timeline([0.0] * 5, offered=990.0))
    assert applied.outcome == Outcome.FAIL and applied.evidence["status_states"] == ["closed"]
    disabled = crit.grade(breaker_timeline([cb.CIRCUIT["disabled"]] * 5, offered=300.0))
    assert disabled.outcome == Outcome.FAIL and disabled.evidence["status_states"] == ["disabled"]


def test_checks_that_never_answered_fail_even_on_a_saturated_host():
    tl = timeline(0.01, cpu=0.99)
    tl = Timeline.from_frame(tl.frame[~((tl.frame["probe"] == "api") & (tl.frame["ts"] >= T0 + 10))], tl.phases)
    tl.event("check_unanswered", "api", probe="api", started=T0 + 11, running_s=19.0)
    v = LAT.grade(tl)
    assert v.outcome == Outcome.FAIL and v.evidence["unanswered"][0]["probe"] == "api", v
    assert v.evidence["measurement"]["sound"] is False
