"""Performance regression on crafted per-second p95s: a significant slowdown is caught, noise is not."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drillbit.load import regression
from drillbit.model import RunRecord, Sample
from drillbit.store import ResultsStore


def p95s(n: int, median: float, seed: int, spread: float = 0.25) -> np.ndarray:
    """Per-second p95s of a run: log-normal around ``median`` with some autocorrelation, like real ones."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, spread, n)
    smooth = np.convolve(noise, np.ones(3) / 3, mode="same")
    return median * np.exp(smooth)


def test_mann_whitney_matches_the_textbook_and_scipy():
    # x entirely above y: U = n1 * n2 and a small p; ties share ranks
    u, p = regression.mann_whitney_greater(np.array([5.0, 6, 7]), np.array([1.0, 2, 3]))
    assert u == 9 and p < 0.05
    u, p = regression.mann_whitney_greater(np.array([1.0, 2, 3]), np.array([5.0, 6, 7]))
    assert u == 0 and p > 0.95
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = np.round(rng.lognormal(0.1, 0.3, 70), 2), np.round(rng.lognormal(0, 0.3, 90), 2)  # with ties
    ref = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
    u, p = regression.mann_whitney_greater(x, y)
    assert u == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-9)


def test_a_significant_slowdown_is_detected():
    base, cand = p95s(120, 1.0, seed=1), p95s(120, 1.3, seed=2)  # 30 % slower
    cmp = regression.compare(base, cand)
    assert cmp.slowdown and cmp.p_value < 0.01 and cmp.ratio == pytest.approx(1.3, rel=0.1)
    assert 1.1 < cmp.ci_low < cmp.ratio < cmp.ci_high


@pytest.mark.parametrize("seed", range(20))
def test_noise_is_not_a_slowdown(seed: int):
    base, cand = p95s(120, 1.0, seed=100 + seed), p95s(120, 1.0, seed=200 + seed)
    assert not regression.compare(base, cand).slowdown


def test_a_tiny_but_significant_difference_is_not_a_slowdown():
    base, cand = p95s(5000, 1.0, seed=5, spread=0.05), p95s(5000, 1.03, seed=6, spread=0.05)
    cmp = regression.compare(base, cand)
    assert cmp.p_value < 0.01 and not cmp.slowdown  # significant, but 3 % is under the 10 % effect-size floor


def test_a_faster_run_and_too_few_seconds():
    assert not regression.compare(p95s(60, 1.0, 1), p95s(60, 0.5, 2)).slowdown
    with pytest.raises(ValueError, match="at least 10 seconds"):
        regression.compare(np.ones(5), np.ones(50))
    assert "p < 0.01" in regression.describe() and "1.10" in regression.describe()


def _stored_run(store: ResultsStore, values: np.ndarray, outcome: str, started: float, scenario: str = "smoke/tx@5/s"):
    rec = RunRecord(flow="load-smoke", environment="sandbox", parameters={}, started_at=started, scenario=scenario)
    rec.metrics = {"scenario": {"target": "tx"}}
    rec.finish([])
    rec.outcome = outcome
    samples = [Sample("per-second:tx", started + i, True, float(v), phase="steady") for i, v in enumerate(values)]
    samples.append(Sample("per-second:tx", started - 1, True, 99.0, phase="ramp"))  # not compared
    store.save(rec, samples)
    return rec


def test_the_baseline_is_the_latest_passing_run_of_the_same_scenario(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    now = time.time()
    old = _stored_run(store, p95s(30, 1.0, 1), "pass", now - 300)
    _stored_run(store, p95s(30, 1.0, 2), "fail", now - 200)  # failed runs are no baseline
    _stored_run(store, p95s(30, 1.0, 3), "pass", now - 150, scenario="smoke/tx@50/s")  # other offered load
    cand = _stored_run(store, p95s(30, 1.5, 4), "pass", now - 100)
    base = regression.find_baseline(store, cand)
    assert base.run_id == old.run_id
    assert len(regression.steady_p95s(store, base)) == 30  # the ramp second is left out
    assert regression.compare(regression.steady_p95s(store, base), regression.steady_p95s(store, cand)).slowdown
    assert regression.find_baseline(store, old) is None
    assert regression.find_run(store, cand.run_id[:10]).run_id == cand.run_id
    with pytest.raises(LookupError):
        regression.find_run(store, "nope")
