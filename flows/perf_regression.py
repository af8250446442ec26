"""Performance regression: a load run against the stored baseline of the same scenario; fails on a significant
slowdown (one-sided Mann-Whitney U on per-second p95s plus a minimum median ratio; see drillbit.load.regression)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from drillbit.load import regression
from drillbit.model import Criterion, Outcome, RunRecord, Sample, Timeline, Verdict
from drillbit.store import ResultsStore
from flows.base import FlowParams, new_record
from flows.load import SCENARIO_FLOWS
from tasks.grade import grade
from tasks.report import persist_and_publish
from tasks.targets import resolve_environment

ScenarioName = Literal["smoke", "load", "stress", "soak", "sustained", "burst", "deployments"]


class PerfRegressionParams(FlowParams):
    scenario: ScenarioName = Field("smoke", description="load scenario to compare")
    time_scale: float = Field(1.0, gt=0, le=1, description="when running the candidate now: duration compression")
    candidate_run_id: str | None = Field(None, description="stored run to judge (default: run the scenario now)")
    baseline_run_id: str | None = Field(None, description="stored baseline (default: latest passing same-key run)")
    alpha: float = Field(regression.ALPHA, gt=0, lt=0.5, description="significance level of the one-sided test")
    min_ratio: float = Field(regression.MIN_RATIO, ge=1, le=100, description="slowdown = median p95 ratio at least")


@task(name="load-candidate", cache_policy=NO_CACHE)
def load_run(run_id: str) -> RunRecord:
    return regression.find_run(ResultsStore(), run_id)


@task(name="find-baseline", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def baseline_for(candidate: RunRecord, baseline_id: str | None) -> RunRecord | None:
    return regression.find_baseline(ResultsStore(), candidate, baseline_id)


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


@flow(name="perf-regression", log_prints=True)
def perf_regression(params: PerfRegressionParams = PerfRegressionParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path)
    if params.candidate_run_id:
        candidate = load_run(params.candidate_run_id)
    else:
        run_flow, model = SCENARIO_FLOWS[params.scenario]
        sub = model(environment=params.environment, config_path=params.config_path, time_scale=params.time_scale)
        candidate = RunRecord.from_dict(run_flow(params=sub))
    baseline = baseline_for(candidate, params.baseline_run_id)
    store = ResultsStore()
    cand = regression.steady_p95s(store, candidate)
    base = regression.steady_p95s(store, baseline) if baseline else np.array([])
    record = new_record("perf-regression", env.name, params, scenario=candidate.scenario)
    timeline = comparison_timeline(cand, base)
    crits = [regression_criterion(candidate, baseline, cand, base, params.alpha, params.min_ratio)]
    crits.append(candidate_criterion(candidate))
    record.finish(grade.with_options(cache_policy=NO_CACHE)(timeline, crits))
    record.metrics = {
        "candidate_run": candidate.run_id,
        "baseline_run": baseline.run_id if baseline else None,
        "seconds": {"candidate": len(cand), "baseline": len(base)},
        "test": regression.describe(params.alpha, params.min_ratio),
    }
    return persist_and_publish(record, timeline, store_samples=False).to_dict()


def comparison_timeline(cand: np.ndarray, base: np.ndarray) -> Timeline:
    """Both runs' steady per-second p95s on one axis (seconds since each run's steady phase began), for the plot."""
    tl = Timeline()
    for probe, values in (("baseline p95/s", base), ("candidate p95/s", cand)):
        tl.extend(Sample(probe, float(i), True, float(v)) for i, v in enumerate(values))
    return tl


FLOWS = (perf_regression,)
