"""The core experiment runner's steps as Prefect tasks: plan, steady state and inject are retried (a failed
injection has already been reverted, so a retry is safe), revert is retried (idempotent), grading never is (the same
data gives the same answer), persisting is (the store write is atomic). Artifacts and human input go through Prefect.
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

from drillbit import runner
from drillbit.faults.base import Fault, Plan
from drillbit.faults.ledger import Handle
from drillbit.model import Criterion, RunRecord, Sample, Timeline, Verdict
from drillbit.monitor import Monitor
from tasks.grade import grade
from tasks.inject import inject_fault, plan_fault
from tasks.observe import steady_state
from tasks.recover import revert_fault
from tasks.report import persist_and_publish


def current_flow_run_id() -> str | None:
    try:
        return str(flow_run.id) if flow_run.id else None
    except Exception:
        return None


def new_record(flow: str, env_name: str, params: BaseModel, scenario: str = "") -> RunRecord:
    """A run record named after the current Prefect flow run (if any)."""
    return runner.new_record(flow, env_name, params, scenario, current_flow_run_id())


class PrefectPhases:
    """``drillbit.runner.Phases`` as Prefect tasks."""

    def __init__(self) -> None:
        self.log = get_run_logger()

    def flow_run_id(self) -> str | None:
        return current_flow_run_id()

    def plan(self, fault: Fault) -> Plan:
        return plan_fault(fault)

    def steady_state(self, monitors: list[Monitor]) -> list[Sample]:
        return steady_state(monitors)

    def inject(self, fault: Fault, ttl: float, run_id: str) -> Handle:
        return inject_fault(fault, ttl, run_id)

    def revert(self, handle: Handle) -> None:
        revert_fault(handle)

    def grade(self, timeline: Timeline, criteria: list[Criterion]) -> list[Verdict]:
        return grade(timeline, criteria)

    def publish(self, record: RunRecord, timeline: Timeline) -> RunRecord:
        return persist_and_publish(record, timeline)

    def markdown(self, key: str, text: str, description: str) -> None:
        create_markdown_artifact(text, key=key, description=description)

    def ask(self, model: type[BaseModel], timeout: float, key: str | None = None) -> BaseModel | None:
        """Pause this flow run until a human answers in the Prefect UI (Resume, with input)."""
        return pause_flow_run(wait_for_input=model, timeout=int(timeout), key=key)


def run_experiment(exp: runner.Experiment) -> dict[str, Any]:
    """Run an experiment of the core runner with its steps as Prefect tasks (call inside a flow)."""
    return runner.run(exp, PrefectPhases())
