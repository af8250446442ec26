"""DR: complete system rebuild (seed DR scenario 3): from blank infrastructure, rebuild from code and backups, rejoin
the network, check monitoring, and grade the total time and each step's. The scenario lives in
``drillbit.scenarios.dr.rebuild``."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.dr.rebuild import RebuildParams, build
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["RebuildParams", "dr_rebuild"]


@flow(name="dr-rebuild")
def dr_rebuild(params: RebuildParams = RebuildParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
