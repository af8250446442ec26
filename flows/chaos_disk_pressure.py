"""Flow: chaos, disk pressure on a validator's data volume (seed experiment 3). The experiment itself is
``drillbit.scenarios.chaos.disk_pressure``; this flow resolves the environment and runs it."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.chaos.disk_pressure import DiskPressureParams, build
from tasks.recover import revert_on_crash
from tasks.runner import current_flow_run_id, run_experiment
from tasks.targets import resolve_environment

__all__ = ["DiskPressureParams", "chaos_disk_pressure"]


@flow(name="chaos-disk-pressure", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_disk_pressure(params: DiskPressureParams = DiskPressureParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params, run_id=current_flow_run_id()))
