"""Performance regression's core: its parameters, reading the steady per-second p95s of a candidate run and its
baseline from the results store, the comparison timeline drawn for the plot, and the criteria (a significant slowdown
against the baseline; the candidate within its own budgets)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from drillbit.load import regression
from drillbit.model import Criterion, Outcome, RunRecord, Sample, Timeline, Verdict
from drillbit.params import FlowParams
from drillbit.store import ResultsStore

ScenarioName = Literal["smoke", "load", "stress", "soak", "sustained", "burst", "deployments"]


class PerfRegressionParams(FlowParams):
    scenario: ScenarioName = Field("smoke", description="load scenario to compare")
    time_scale: float = Field(1.0, gt=0, le=1, description="when running the candidate now: duration compression")
    candidate_run_id: str | None = Field(None, description="stored run to judge (default: run the scenario now)")
    baseline_run_id: str | None = Field(None, description="stored baseline (default: latest passing same-key run)")
    alpha: float = Field(regression.ALPHA, gt=0, lt=0.5, description="significance level of the one-sided test")
    min_ratio: float = Field(regression.MIN_RATIO, ge=1, le=100, description="slowdown = median p95 ratio at least")


def steady_p95s(store: ResultsStore, candidate: RunRecord, baseline: RunRecord | None) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's and the baseline's steady per-second p95s (none for a missing baseline)."""
    cand = regression.steady_p95s(store, candidate)
    base = regression.steady_p95s(store, baseline) if baseline else np.array([])
    return cand, base


def comparison_timeline(cand: np.ndarray, base: np.ndarray) -> Timeline:
    """Both runs' steady per-second p95s on one axis (seconds since each run's steady phase began), for the plot."""
    tl = Timeline()
    for probe, values in (("baseline p95/s", base), ("candidate p95/s", cand)):
        tl.extend(Sample(probe, float(i), True, float(v)) for i, v in enumerate(values))
    return tl


def regression_criterion(
    candidate: RunRecord, baseline: RunRecord | None, cand: np.ndarray, base: np.ndarray, alpha: float, ratio: float
) -> Criterion:
    name = "p95 slowdown vs baseline"

    def check(_tl: Timeline) -> Verdict:
        if baseline is None:
            reason = f"no stored passing baseline for {candidate.scenario}; a passing run becomes the baseline"
            return Verdict(name, Outcome.INCONCLUSIVE, reason)
        try:
            cmp = regression.compare(base, cand, alpha=alpha, min_ratio=ratio)
        except ValueError as exc:
            return Verdict(name, Outcome.INCONCLUSIVE, str(exc), {"baseline_run": baseline.run_id})
        ev = {**cmp.to_dict(), "baseline_run": baseline.run_id, "candidate_run": candidate.run_id}
        reason = (
            f"median per-second p95 {cmp.median_candidate:.3f} s vs {cmp.median_baseline:.3f} s "
            f"(×{cmp.ratio:.2f}, 95 % CI ×{cmp.ci_low:.2f}–×{cmp.ci_high:.2f}), one-sided p = {cmp.p_value:.3g}"
        )
        return Verdict(name, Outcome.FAIL if cmp.slowdown else Outcome.PASS, reason, ev)

    return Criterion(name, regression.describe(alpha, ratio), check)


def candidate_criterion(candidate: RunRecord) -> Criterion:
    def check(_tl: Timeline) -> Verdict:
        failed = [v.criterion for v in candidate.verdicts if v.outcome == Outcome.FAIL]
        outcome = {"pass": Outcome.PASS, "fail": Outcome.FAIL}.get(candidate.outcome, Outcome.INCONCLUSIVE)
        reason = f"candidate run {candidate.run_id[:12]} {candidate.outcome}" + (
            f" ({', '.join(failed)})" if failed else ""
        )
        return Verdict("candidate within its budgets", outcome, reason, {"candidate_run": candidate.run_id})

    return Criterion("candidate within its budgets", "the candidate run passed its own criteria", check)


def perf_criteria(
    params: PerfRegressionParams, candidate: RunRecord, baseline: RunRecord | None, cand: np.ndarray, base: np.ndarray
) -> list[Criterion]:
    return [
        regression_criterion(candidate, baseline, cand, base, params.alpha, params.min_ratio),
        candidate_criterion(candidate),
    ]


def perf_metrics(
    params: PerfRegressionParams, candidate: RunRecord, baseline: RunRecord | None, cand: np.ndarray, base: np.ndarray
) -> dict[str, Any]:
    """Which runs were compared, over how many seconds each, with which test."""
    return {
        "candidate_run": candidate.run_id,
        "baseline_run": baseline.run_id if baseline else None,
        "seconds": {"candidate": len(cand), "baseline": len(base)},
        "test": regression.describe(params.alpha, params.min_ratio),
    }
