"""Open-model schedules, coordinated-omission-corrected percentiles (HDR) and grading, on crafted records."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from drillbit.load import grading
from drillbit.load import results as res
from drillbit.load.scenarios import SCENARIOS
from drillbit.model import Outcome

LOCUSTFILES = Path(__file__).resolve().parents[2] / "infra" / "load" / "locustfiles"


def _arrivals():
    """The locustfiles' schedule module (stdlib only; importing the engine would monkey-patch this process)."""
    name = "drillbit_test_arrivals"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LOCUSTFILES / "arrivals.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


# ------------------------------------------------------------------------------------------------ schedules


def test_streams_interleave_into_the_target_rate_whatever_the_split():
    a = _arrivals()
    profile = a.Profile([a.Segment("ramp", 10, 0, 20), a.Segment("steady", 20, 20, 20)])
    assert profile.total == pytest.approx(100 + 400)
    for streams in (1, 3, 7):
        times = sorted(t for i in range(streams) for t in a.Stream(profile, i, streams).offsets())
        assert len(times) == 500
        assert all(b > x for x, b in itertools.pairwise(times))  # no two arrivals at once
        per_second = np.bincount(np.floor(times).astype(int), minlength=30)
        assert list(per_second[10:30]) == [20] * 20  # steady: exactly the rate, every second
        assert per_second[:10].sum() == 100 and per_second[0] < per_second[9]  # the ramp rises
        steady = np.diff([t for t in times if t >= 10])
        assert np.allclose(steady, 1 / 20)  # evenly spaced, not bunched per stream


def test_profile_inverse_and_bad_segments():
    a = _arrivals()
    seg = a.Segment("ramp", 4, 0, 8)  # count(t) = t^2
    assert seg.time_at(9) == pytest.approx(3)
    p = a.Profile.from_json([["s1", 2, 5, 5], ["s2", 2, 10, 10]])
    assert p.time_at(10) == pytest.approx(2) and p.time_at(20) == pytest.approx(3) and p.time_at(31) is None
    assert p.rate(2.5) == 10 and p.phase(0.1) == "s1" and p.to_json()[1] == ["s2", 2, 10, 10]
    with pytest.raises(ValueError):
        a.Profile([a.Segment("x", 0, 1, 1)])
    with pytest.raises(ValueError):
        a.Stream(p, 3, 3)


def test_record_layout_matches_the_engine():
    source = (LOCUSTFILES / "openloop.py").read_text()
    fmt = re.search(r'RECORD = struct\.Struct\("([^"]+)"\)', source).group(1)
    assert struct.calcsize(fmt) == res.RECORD_DTYPE.itemsize
    packed = struct.pack(fmt, 2, 1.5, 1.75, 2.0, 1, 503, 7, 9.0)
    row = np.frombuffer(packed, dtype=res.RECORD_DTYPE)[0]
    assert (row["name"], row["intended"], row["done"], row["status"], row["err"], row["value"]) == (
        2,
        1.5,
        2.0,
        503,
        7,
        9.0,
    )


# --------------------------------------------------------------------------------- crafted runs on disk


def write_run(out: Path, rows: list[tuple], names: list[str], errors: list[str], profile: list, t0: float) -> Path:
    """Write records the way the engine does (packed records + meta file)."""
    out.mkdir(parents=True, exist_ok=True)
    fmt = "<BdddBhid"
    (out / "samples-test-1.bin").write_bytes(b"".join(struct.pack(fmt, *r) for r in rows))
    meta = {
        "tag": "test-1",
        "t0": t0,
        "profile": profile,
        "names": names,
        "errors": errors,
        "samples_file": "samples-test-1.bin",
        "aborted": None,
        "max_inflight_seen": 10,
        "max_inflight": 10,
        "cap_hits": 0,
    }
    (out / "meta-test-1.json").write_text(json.dumps(meta))
    return out


def stalled_run(tmp_path: Path, cap_blocks: bool) -> res.LoadData:
    """100/s for 20 s, 1 ms service, the target stalls every request handled in [10, 11) until 11.

    With ``cap_blocks`` the generator had 10 slots: during the stall it could not send, so it sent late and a
    latency measured from the send ("uncorrected") hides the stall; measured from the intended start it does not.
    """
    t0, rate, rows = 1000.0, 100, []
    free_at = 0.0
    for k in range(20 * rate):
        intended = t0 + k / rate
        sent = intended
        if cap_blocks and t0 + 10 + 0.1 <= intended < t0 + 11:
            sent = t0 + 11  # all slots held by stalled requests until the stall ends
        start = max(sent, free_at)
        done = (t0 + 11 if t0 + 10 <= start < t0 + 11 else start) + 0.001
        rows.append((0, intended, sent, done, 1, 200, -1, float("nan")))
    return res.read(write_run(tmp_path, rows, ["op"], [], [["steady", 20, rate, rate]], t0))


def true_latencies() -> np.ndarray:
    k = np.arange(2000) / 100
    return np.where((k >= 10) & (k < 11), 11 - k, 0) + 0.001


def test_corrected_percentiles_see_the_stall_uncorrected_do_not(tmp_path: Path):
    data = stalled_run(tmp_path, cap_blocks=True)
    summary = res.latency_summary(data.select("op"))
    true_p99 = float(np.percentile(true_latencies(), 99))  # 20 of 2000 requests waited over 0.8 s
    assert true_p99 > 0.75
    assert summary["corrected"]["p99_s"] == pytest.approx(true_p99, rel=0.02)
    assert summary["corrected"]["max_s"] == pytest.approx(1.001, rel=0.01)
    assert summary["uncorrected"]["p99_s"] < 0.15  # the late sends hide all but the first 10 stalled requests
    assert summary["corrected"]["count"] == 2000
    hist = res.decode(summary["hdr_corrected"])
    assert hist.get_total_count() == 2000  # the histogram is stored and can be merged / re-read


def test_an_open_generator_without_a_cap_needs_no_correction(tmp_path: Path):
    data = stalled_run(tmp_path, cap_blocks=False)
    summary = res.latency_summary(data.select("op"))
    assert summary["uncorrected"]["p99_s"] == pytest.approx(summary["corrected"]["p99_s"], rel=0.01)
    assert res.lateness(data.select("op"))["late_fraction"] == 0


def test_hdr_percentiles_agree_with_exact_ones():
    lat = np.random.default_rng(3).lognormal(-3, 1, 200_000)
    p = res.hdr_percentiles(res.hdr(lat))
    for q in (50, 95, 99, 99.9):
        assert p[f"p{q:g}_s"] == pytest.approx(np.percentile(lat, q), rel=2e-3)


def test_per_second_series(tmp_path: Path):
    data = stalled_run(tmp_path, cap_blocks=True)
    ps = res.per_second(data.select("op"), data.t0, data.end)
    assert list(ps["second"][:3]) == [0, 1, 2] and len(ps) == 20
    assert ps.loc[5, "sent"] == 100 and ps.loc[5, "ok"] == 100 and ps.loc[5, "failed"] == 0
    assert ps.loc[10, "sent"] == 10 and ps.loc[11, "sent"] == 190  # the late sends pile up after the stall
    assert ps.loc[10, "p50"] == pytest.approx(0.5, abs=0.02) and ps.loc[10, "p95"] > 0.9  # from the intended start
    assert ps.loc[5, "p95"] == pytest.approx(0.001, abs=1e-4)


def test_locust_summary_reads_its_rounded_histogram():
    stats = [{"name": "x", "num_requests": 100, "num_failures": 2, "total_response_time": 1000.0,
              "max_response_time": 900, "response_times": {"5": 90, "100": 9, "900": 1}}]  # fmt: skip
    s = res.locust_summary(stats)["x"]
    assert (s["requests"], s["failures"], s["p50_s"], s["p95_s"], s["p99_s"]) == (100, 2, 0.005, 0.1, 0.1)
    assert s["avg_s"] == 0.01


# ------------------------------------------------------------------------------------------------ grading


def crafted(tmp_path: Path, *, errors_every: int = 0, slow: float = 0.0, late: float = 0.0) -> res.LoadData:
    """20/s: 5 s ramp then 20 s steady, 0.2 s latency; some failures, some slow, some sent late."""
    t0, rows = 5000.0, []
    sc = SCENARIOS["smoke"].with_changes(rate=20, ramp_s=5, duration_s=20)
    a = _arrivals()
    offsets = sorted(t for t in a.Stream(a.Profile.from_json(sc.profile()), 0, 1).offsets())
    for k, off in enumerate(offsets):
        intended = t0 + off
        sent = intended + (late if k % 10 == 0 else 0.0)
        done = sent + 0.2 + (slow if k % 10 < 3 else 0.0)
        bad = errors_every and k % errors_every == 0
        rows.append((0, intended, sent, done, 0 if bad else 1, 503 if bad else 200, 0 if bad else -1, float("nan")))
    return res.read(write_run(tmp_path, rows, ["tx"], ["HTTP 503"], sc.profile(), t0))


def grade(data: res.LoadData, **changes) -> dict[str, object]:
    sc = SCENARIOS["smoke"].with_changes(rate=20, ramp_s=5, duration_s=20, **changes)
    tl = data.timeline()
    return {c.name: c.grade(tl) for c in grading.load_criteria(sc, data)}


def test_a_healthy_crafted_run_passes_every_budget(tmp_path: Path):
    v = grade(crafted(tmp_path))
    assert {k: x.outcome for k, x in v.items()} == {
        "tx error rate": Outcome.PASS,
        "tx p95 latency": Outcome.PASS,
        "tx throughput (ramp)": Outcome.PASS,
        "tx throughput (steady)": Outcome.PASS,
        "load generator kept the schedule": Outcome.PASS,
    }
    assert v["tx throughput (steady)"].evidence["ok_per_s"] == pytest.approx(20)
    assert v["tx p95 latency"].evidence["corrected_p95_s"] == pytest.approx(0.2, rel=0.01)


def test_errors_slowness_and_a_late_generator_are_each_caught(tmp_path: Path):
    v = grade(crafted(tmp_path / "e", errors_every=25))  # 4 % failures
    assert v["tx error rate"].outcome == Outcome.FAIL
    assert v["tx error rate"].evidence["error_rate"] == pytest.approx(0.04, abs=0.002)
    assert v["tx throughput (steady)"].outcome == Outcome.PASS  # 96 % of 20/s is within the 5 % slack
    v = grade(crafted(tmp_path / "e10", errors_every=10))  # 10 % failures: the throughput floor breaks too
    assert v["tx throughput (steady)"].outcome == Outcome.FAIL
    v = grade(crafted(tmp_path / "s", slow=12.0))  # 30 % of operations 12 s slower
    assert v["tx p95 latency"].outcome == Outcome.FAIL and v["tx error rate"].outcome == Outcome.PASS
    v = grade(crafted(tmp_path / "l", late=2.0))  # 10 % of sends 2 s late: corrected latency includes it
    assert v["load generator kept the schedule"].outcome == Outcome.INCONCLUSIVE
    assert v["tx p95 latency"].evidence["corrected_p95_s"] > 2 > v["tx p95 latency"].evidence["uncorrected_p95_s"]


def breaking_point_run(tmp_path: Path, *, slow: bool = True, errors: bool = False, t0: float = 100.0) -> tuple:
    """The first five steps of breaking-point, compressed (10, 20, 30 ... /s, 6 s each): from 40/s on, operations
    take 12 s (``slow``; else 1 s) and fail (``errors``)."""
    sc = SCENARIOS["breaking-point"].with_changes(time_scale=0.1)
    rows = []
    for i, (_phase, seconds, rate, _) in enumerate(sc.profile()[:5]):
        start = t0 + i * seconds
        for k in range(int(rate * seconds)):
            intended = start + k / rate
            latency = 12.0 if slow and rate >= 40 else 1.0  # the budget (p95 < 10 s) breaks at 40/s
            bad = errors and rate >= 40
            rows.append((0, intended, intended, intended + latency, 0 if bad else 1, 200, -1, float("nan")))
    errs = ["HTTP 503"] if errors else []
    return sc, res.read(write_run(tmp_path, rows, ["tx"], errs, sc.profile(), t0))


def test_breaking_point_is_the_first_step_over_budget(tmp_path: Path):
    sc, data = breaking_point_run(tmp_path)
    steps = grading.step_results(sc, data)
    assert [s.rate for s in steps] == [10, 20, 30, 40, 50]
    assert grading.breaking_point(steps).rate == 40
    v = grading.breaking_point_criterion(sc, data, required_rate=30).grade(data.timeline())
    assert v.outcome == Outcome.PASS and v.evidence["breaking_rate"] == 40 and v.evidence["last_good_rate"] == 30
    v = grading.breaking_point_criterion(sc, data, required_rate=75).grade(data.timeline())
    assert v.outcome == Outcome.FAIL and "40/s" in v.reason
