"""The experiment runner: one skeleton for every experiment (chaos, failure modes, gamedays, DR drills).

    steady state → baseline → inject → observe → revert → recovery → collect → grade → publish

An ``Experiment`` is data: its fault (or none), its monitors and workloads, its criteria, and hooks at the points
where scenarios differ (before the injection, instead of the plain observation of the fault window, after the
revert, once the observation is over). The runner owns the order of the phases, the timeline's phase marks, the
observer (probes, alerts, pages, abort), and the guarantee that an injected fault is reverted (``finally``; the
fault's reaper and the flow's crash hooks cover a dead process).

How each step is *executed* is a ``Phases`` object: ``DirectPhases`` calls the core directly (tests, scripts); the
Prefect layer (``tasks/runner.py``) runs the same steps as Prefect tasks with their retries and publishes artifacts.
The core never imports Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from drillbit.config import ResolvedEnvironment
from drillbit.faults.base import Fault, Plan, revert
from drillbit.faults.errors import FullOutageRefused
from drillbit.faults.ledger import Handle
from drillbit.model import Criterion, Outcome, RunRecord, Sample, Timeline, Verdict
from drillbit.monitor import Monitor
from drillbit.observe import AbortPolicy, Observer
from drillbit.store import ResultsStore

TTL_MARGIN_S = 120.0  # the reaper reverts a fault this long after its planned end, should the runner die


class UnhealthyTarget(RuntimeError):
    """The steady-state check failed: an experiment refuses to break what is already broken."""


def check_steady_state(monitors: list[Monitor]) -> list[Sample]:
    """Every probe must succeed once before anything is injected."""
    samples = [m.once() for m in monitors]  # by each monitor's deadline: a stuck probe is a failure, not a hang
    bad = [f"{s.probe}: {s.error}" for s in samples if not s.ok]
    if bad:
        raise UnhealthyTarget("target not in steady state, refusing to inject: " + "; ".join(bad))
    return samples


def grade(timeline: Timeline, criteria: list[Criterion]) -> list[Verdict]:
    return [c.grade(timeline) for c in criteria]


def new_record(
    flow: str, env_name: str, params: BaseModel, scenario: str = "", flow_run_id: str | None = None
) -> RunRecord:
    record = RunRecord(
        flow=flow, environment=env_name, parameters=params.model_dump(mode="json"), started_at=time.time()
    )
    record.scenario = scenario
    record.flow_run_id = flow_run_id
    return record


class Phases(Protocol):
    """How the runner's steps are executed (directly, or as Prefect tasks with retries)."""

    log: logging.Logger | logging.LoggerAdapter

    def flow_run_id(self) -> str | None: ...
    def plan(self, fault: Fault) -> Plan: ...
    def steady_state(self, monitors: list[Monitor]) -> list[Sample]: ...
    def inject(self, fault: Fault, ttl: float, run_id: str) -> Handle: ...
    def revert(self, handle: Handle) -> None: ...
    def grade(self, timeline: Timeline, criteria: list[Criterion]) -> list[Verdict]: ...
    def publish(self, record: RunRecord, timeline: Timeline) -> RunRecord: ...
    def markdown(self, key: str, text: str, description: str) -> None: ...
    def ask(self, model: type[BaseModel], timeout: float, key: str | None = None) -> BaseModel | None: ...


class DirectPhases:
    """Every step called directly: no retries, the run record saved to the results store, artifacts as files."""

    def __init__(self, log: logging.Logger | None = None, results_url: str | None = None) -> None:
        self.log = log or logging.getLogger("drillbit.runner")
        self.results_url = results_url
        self.markdowns: dict[str, str] = {}

    def flow_run_id(self) -> str | None:
        return None

    def plan(self, fault: Fault) -> Plan:
        return fault.plan()

    def steady_state(self, monitors: list[Monitor]) -> list[Sample]:
        return check_steady_state(monitors)

    def inject(self, fault: Fault, ttl: float, run_id: str) -> Handle:
        return fault.inject(ttl=ttl, run_id=run_id)

    def revert(self, handle: Handle) -> None:
        revert(handle)

    def grade(self, timeline: Timeline, criteria: list[Criterion]) -> list[Verdict]:
        return grade(timeline, criteria)

    def publish(self, record: RunRecord, timeline: Timeline) -> RunRecord:
        record.events = timeline.events
        ResultsStore(self.results_url).save(record, timeline.samples())
        return record

    def markdown(self, key: str, text: str, description: str) -> None:
        self.markdowns[key] = text

    def ask(self, model: type[BaseModel], timeout: float, key: str | None = None) -> BaseModel | None:
        return None  # nobody to ask outside a flow run


Hook = Callable[["Run"], None]


@dataclass
class Experiment:
    """One experiment as data. ``criteria`` receives the fault's detail (targets, killed pids ...): it is called once
    when planning (bad thresholds fail before anything is injected) and again for grading, with what the injection
    recorded."""

    name: str  # the flow's name
    env: ResolvedEnvironment
    params: Any  # an ExperimentParams (duration, baseline, recovery, abort_below, dry_run)
    fault: Fault | None
    monitors: list[Monitor]
    criteria: Callable[[dict[str, Any]], list[Criterion]]
    guarded_probes: list[str] = field(default_factory=list)  # abort when these fail
    scenario: str = ""
    inject_detail: str = ""  # the 'inject' event's text (default: the fault's plan)
    steady_state: bool = True
    ttl_margin: float = TTL_MARGIN_S  # the fault's TTL is the duration plus this
    watch_pages: bool = True
    timeline: Timeline | None = None  # record into this one (default: a new one), e.g. steps timed in ``prepare``
    # True: the hooks mark the 'injection' phase (no 'inject' event) and the 'recovery' phase themselves, at moments
    # known only inside the procedure (a DR drill: the disaster, the service restored)
    own_phase_marks: bool = False
    # before the steady-state check, with the Phases and the new record (e.g. a human approval, set-up)
    prepare: Callable[[Phases, RunRecord], None] | None = None
    # hooks (each receives the Run)
    before_inject: Hook | None = None  # after the baseline, e.g. wait for a workload's first acknowledgement
    during: Hook | None = None  # instead of observing ``duration`` seconds (e.g. a DR recovery procedure)
    after_revert: Hook | None = None  # the fault is gone; e.g. wait for the service to be restored
    collect: Hook | None = None  # the observation is over: read back workloads, ask the humans
    finish: Hook | None = None  # verdicts are in: extra metrics, artifacts (before publishing)
    close: list[Callable[[], Any]] = field(default_factory=list)  # resources to close at the end, in any case


def closing(make: Callable[[], Experiment], close: Callable[[], Any]) -> Experiment:
    """The experiment ``make()`` builds, with ``close`` (releasing what was opened for it: clients, a deployment)
    among its resources to close after the run; called at once instead when building fails."""
    try:
        exp = make()
    except BaseException:
        close()
        raise
    exp.close.append(close)
    return exp


@dataclass
class Run:
    """The state of one experiment run, handed to its hooks."""

    exp: Experiment
    phases: Phases
    record: RunRecord
    timeline: Timeline
    observer: Observer
    plan: Plan | None = None
    handle: Handle | None = None
    status: str = "completed"
    evidence: dict[str, Any] = field(default_factory=dict)
    extra_verdicts: list[Verdict] = field(default_factory=list)

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter:
        return self.phases.log

    @property
    def detail(self) -> dict[str, Any]:
        base = self.handle.detail if self.handle else (self.plan.detail if self.plan else {})
        return dict(base, targets=self.plan.targets if self.plan else [])

    def wait(self, seconds: float) -> str | None:
        """Observe for ``seconds``; returns the abort reason, if an abort condition was met."""
        reason = self.observer.wait(seconds)
        if reason:
            self.status = "aborted"
        return reason


def dry_run(exp: Experiment, phases: Phases) -> dict[str, Any]:
    """The plan only: targets, fault and criteria. Nothing injected, nothing observed. A plan refused for a full
    outage (``FullOutageRefused``) is still shown, with the refusal: its ``workloads`` detail flags the outage."""
    record = new_record(exp.name, exp.env.name, exp.params, exp.scenario, phases.flow_run_id())
    refused = ""
    try:
        plan = phases.plan(exp.fault) if exp.fault else None
    except FullOutageRefused as exc:
        if not isinstance(exc.plan, Plan):
            raise
        plan, refused = exc.plan, str(exc)
    described = plan.describe() if plan else "no fault"
    criteria = exp.criteria(dict(plan.detail if plan else {}, targets=plan.targets if plan else []))
    record.metrics = {"plan": described, "criteria": [f"{c.name}: {c.threshold}" for c in criteria]}
    if refused:
        record.metrics["refused"] = refused
    why = f"plan only: {described}" + (f"; a real run is refused — {refused}" if refused else "")
    record.finish([Verdict("dry run", Outcome.INCONCLUSIVE, why, required=False)])
    record.status, record.outcome = "dry-run", "dry-run"
    phases.log.info("dry run: %s; criteria: %s", described, "; ".join(record.metrics["criteria"]))
    return record.to_dict()


def run(exp: Experiment, phases: Phases | None = None) -> dict[str, Any]:
    """Run one experiment through every phase; returns the published run record as a dict."""
    phases = phases or DirectPhases()
    try:
        if getattr(exp.params, "dry_run", False):
            return dry_run(exp, phases)
        return _run(exp, phases)
    finally:
        for close in exp.close:
            close()


def _run(exp: Experiment, phases: Phases) -> dict[str, Any]:
    params, env = exp.params, exp.env
    record = new_record(exp.name, env.name, params, exp.scenario, phases.flow_run_id())
    plan = phases.plan(exp.fault) if exp.fault else None  # bad selectors / parameters fail here, nothing injected
    exp.criteria(dict(plan.detail if plan else {}, targets=plan.targets if plan else []))  # bad thresholds too
    if exp.prepare:
        exp.prepare(phases, record)
    if exp.steady_state:
        phases.steady_state(exp.monitors)  # refuses to start on an unhealthy target
    timeline = exp.timeline if exp.timeline is not None else Timeline()
    abort_at = params.abort_below if getattr(params, "abort_below", None) is not None else None
    if abort_at is None:
        abort_at = env.spec.safety.abort_availability
    ep = env.endpoints
    observer = Observer(
        timeline,
        exp.monitors,
        alertmanager=ep.alertmanager,
        pager=ep.pager if exp.watch_pages else None,
        abort=AbortPolicy(exp.guarded_probes, abort_at) if exp.guarded_probes else None,
    )
    r = Run(exp, phases, record, timeline, observer, plan=plan)
    run_key = record.flow_run_id or record.run_id
    duration = float(getattr(params, "duration", 0.0))
    timeline.begin_phase("baseline")
    observer.start()
    try:
        try:
            r.wait(float(getattr(params, "baseline", 0.0)))
            if exp.before_inject and r.status == "completed":
                exp.before_inject(r)
            if not exp.own_phase_marks:
                timeline.begin_phase("injection")
                timeline.event("inject", exp.inject_detail or (plan.describe() if plan else exp.scenario))
            if exp.fault is not None and plan is not None and r.status == "completed":
                r.handle = phases.inject(exp.fault, duration + exp.ttl_margin, run_key)
                # "inject" marks the decision, "injected" the moment the fault is in place (the reaper's start and
                # the platform's calls lie between them: seconds on a loaded host)
                timeline.event("injected", ", ".join(f"{k}={v}" for k, v in r.handle.detail.items()))
            if r.status == "completed":
                if exp.during:
                    exp.during(r)
                elif r.wait(duration):
                    phases.log.warning("aborting: %s", observer.aborted)
        finally:
            if r.handle is not None:
                phases.revert(r.handle)
                timeline.event("revert", f"{r.handle.kind} reverted")
            if not exp.own_phase_marks:
                timeline.begin_phase("recovery")
        if exp.after_revert:
            exp.after_revert(r)
        if r.status == "completed":
            r.wait(float(getattr(params, "recovery", 0.0)))
    finally:
        observer.stop()
        timeline.end()
    if exp.collect:
        exp.collect(r)
    verdicts = phases.grade(timeline, exp.criteria(r.detail)) + r.extra_verdicts
    if r.status == "aborted":
        verdicts.append(Verdict("not aborted", Outcome.FAIL, f"aborted: {observer.aborted}"))
    record.finish(verdicts, status="completed")
    if r.status == "aborted":
        record.status = "aborted"
    record.metrics = {
        "fault": plan.describe() if plan else None,
        "duration_s": duration,
        "samples": len(timeline),
        **r.evidence,
    }
    if exp.finish:
        exp.finish(r)
    started = time.time()
    out = phases.publish(record, timeline).to_dict()
    phases.log.info("graded and published in %.1f s", time.time() - started)
    return out
