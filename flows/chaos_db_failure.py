"""Flow: chaos, database failure (seed experiment 4). The experiment itself is
``drillbit.scenarios.chaos.database_failure``; this flow resolves the environment and runs it."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.chaos.database_failure import DbFailureParams, build
from tasks.recover import revert_on_crash
from tasks.runner import current_flow_run_id, run_experiment
from tasks.targets import resolve_environment

__all__ = ["DbFailureParams", "chaos_db_failure"]


@flow(name="chaos-db-failure", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_db_failure(params: DbFailureParams = DbFailureParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params, run_id=current_flow_run_id()))
