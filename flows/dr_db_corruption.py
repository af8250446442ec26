"""DR: database corruption (seed DR scenario 2): the primary's storage is corrupted, the drill restores it from the
backups and the archived WAL and grades RPO 0, state consistency and RTO. The scenario lives in
``drillbit.scenarios.dr.db_corruption``."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.dr.db_corruption import DbCorruptionParams, build
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["DbCorruptionParams", "dr_db_corruption"]


@flow(name="dr-db-corruption")
def dr_db_corruption(params: DbCorruptionParams = DbCorruptionParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
