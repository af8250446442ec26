"""The chaos experiment skeleton every chaos flow follows: steady state → baseline → inject → observe → revert →
recovery → grade → report. Faults are reverted in ``finally`` and by the flow's crash/cancel hooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect.logging import get_run_logger
from pydantic import Field

from drillbit.config import ResolvedEnvironment
from drillbit.experiment import AbortPolicy, Observer
from drillbit.faults.base import Fault
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.synthetic import Monitor
from flows.base import FlowParams, new_record
from tasks.grade import grade
from tasks.inject import inject_fault, plan_fault
from tasks.observe import steady_state
from tasks.recover import revert_fault
from tasks.report import persist_and_publish


class ExperimentParams(FlowParams):
    duration: float = Field(60.0, gt=0, le=86_400, description="Seconds the fault stays in place")
    baseline: float = Field(10.0, ge=0, le=3600, description="Seconds observed before the fault")
    recovery: float = Field(30.0, ge=0, le=3600, description="Seconds observed after reverting")
    interval: float = Field(1.0, gt=0, le=60, description="Seconds between probe checks")
    abort_below: float | None = Field(
        None, ge=0, le=1, description="Abort when availability falls below this (default: safety.abort_availability)"
    )
    dry_run: bool = Field(False, description="Print the plan (targets, fault, criteria); inject nothing")


@dataclass
class Experiment:
    name: str
    env: ResolvedEnvironment
    params: ExperimentParams
    fault: Fault
    monitors: list[Monitor]
    criteria: Callable[[dict[str, Any]], list[Criterion]]  # receives the handle's detail (targets, killed pids ...)
    guarded_probes: list[str] = field(default_factory=list)  # abort when these fail
    after_revert: Callable[[Timeline], None] | None = None  # e.g. verify a write canary
    scenario: str = ""


def run_experiment(exp: Experiment) -> dict:
    log = get_run_logger()
    params, env = exp.params, exp.env
    record = new_record(exp.name, env.name, params, scenario=exp.scenario)
    plan = plan_fault(exp.fault)  # bad selectors / parameters fail here, before anything is injected
    criteria = exp.criteria(dict(plan.detail, targets=plan.targets))
    if params.dry_run:
        record.metrics = {"plan": plan.describe(), "criteria": [f"{c.name}: {c.threshold}" for c in criteria]}
        record.finish([Verdict("dry run", Outcome.INCONCLUSIVE, f"plan only: {plan.describe()}", required=False)])
        record.status, record.outcome = "dry-run", "dry-run"
        log.info("dry run: %s; criteria: %s", plan.describe(), "; ".join(record.metrics["criteria"]))
        return record.to_dict()

    timeline = Timeline()
    steady_state(exp.monitors)  # refuses to start on an unhealthy target
    ep = env.endpoints
    abort_at = params.abort_below if params.abort_below is not None else env.spec.safety.abort_availability
    observer = Observer(
        timeline,
        exp.monitors,
        alertmanager=ep.alertmanager,
        pager=ep.pager,
        abort=AbortPolicy(exp.guarded_probes, abort_at) if exp.guarded_probes else None,
    )
    run_key = record.flow_run_id or record.run_id
    handle = None
    status = "completed"
    timeline.begin_phase("baseline")
    observer.start()
    try:
        observer.wait(params.baseline)
        timeline.begin_phase("injection")
        timeline.event("inject", plan.describe())
        ttl = params.duration + 120.0  # the reaper reverts even if this process dies
        handle = inject_fault(exp.fault, ttl, run_key)
        # "inject" marks the decision, "injected" the moment the fault is in place (the reaper's start and the
        # platform's calls lie between them: seconds on a loaded host)
        timeline.event("injected", ", ".join(f"{k}={v}" for k, v in handle.detail.items()))
        if observer.wait(params.duration):
            status = "aborted"
            log.warning("aborting: %s", observer.aborted)
    finally:
        if handle is not None:
            revert_fault(handle)
            timeline.event("revert", f"{handle.kind} reverted")
        timeline.begin_phase("recovery")
    try:
        if status == "completed":
            observer.wait(params.recovery)
    finally:
        observer.stop()
        timeline.end()
    if exp.after_revert:
        exp.after_revert(timeline)
    criteria = exp.criteria(dict(handle.detail if handle else {}, targets=plan.targets))
    verdicts = grade(timeline, criteria)
    if status == "aborted":
        verdicts.append(Verdict("not aborted", Outcome.FAIL, f"aborted: {observer.aborted}"))
    record.finish(verdicts, status="completed")
    if status == "aborted":
        record.status = "aborted"
    record.metrics = {"fault": plan.describe(), "duration_s": params.duration, "samples": len(timeline)}
    started = time.time()
    out = persist_and_publish(record, timeline).to_dict()
    log.info("graded and published in %.1f s", time.time() - started)
    return out
