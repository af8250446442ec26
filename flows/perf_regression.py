"""Performance regression: a load run against the stored baseline of the same scenario; fails on a significant
slowdown (one-sided Mann-Whitney U on per-second p95s plus a minimum median ratio; see drillbit.load.regression)."""

from __future__ import annotations

from prefect import flow

from drillbit.model import RunRecord
from drillbit.scenarios.perf_regression import (
    PerfRegressionParams,
    comparison_timeline,
    perf_criteria,
    perf_metrics,
    steady_p95s,
)
from drillbit.store import ResultsStore
from flows.load import SCENARIO_FLOWS
from tasks.grade import grade
from tasks.load import baseline_for, load_run
from tasks.report import persist_and_publish
from tasks.runner import new_record
from tasks.targets import resolve_environment


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
    cand, base = steady_p95s(ResultsStore(), candidate, baseline)
    record = new_record("perf-regression", env.name, params, scenario=candidate.scenario)
    timeline = comparison_timeline(cand, base)
    record.finish(grade(timeline, perf_criteria(params, candidate, baseline, cand, base)))
    record.metrics = perf_metrics(params, candidate, baseline, cand, base)
    return persist_and_publish(record, timeline, store_samples=False).to_dict()


FLOWS = (perf_regression,)
