"""Synthetic monitoring: the seed's three checks (plus a chain query), graded against VirtEngine's SLOs.

Each run does ``rounds`` rounds of checks; the calendar runs it every 1-5 minutes, so the error budget and burn rates
are computed from the stored history of every run in the 28-day window.
"""

from __future__ import annotations

from prefect import flow

from drillbit.model import Timeline
from drillbit.scenarios.synthetic import SyntheticParams, synthetic_criteria, synthetic_metrics
from tasks.grade import grade
from tasks.observe import synthetic_checks
from tasks.report import persist_and_publish
from tasks.runner import new_record
from tasks.targets import resolve_environment


@flow(name="synthetic", log_prints=True)
def synthetic(params: SyntheticParams = SyntheticParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path)
    record = new_record("synthetic", env.name, params)
    timeline = Timeline()
    timeline.begin_phase("steady")
    timeline.extend(synthetic_checks(env, list(params.checks), params.rounds, params.interval))
    timeline.end()
    crits, thresholds = synthetic_criteria(env, list(params.checks), timeline)
    record.finish(grade(timeline, crits))
    record.metrics = synthetic_metrics(timeline, list(params.checks))
    return persist_and_publish(record, timeline, thresholds=thresholds).to_dict()
