"""DR: complete data-centre loss (seed DR scenario 1): region A dies, the drill fails over to region B and measures
RTO and RPO. The scenario lives in ``drillbit.scenarios.dr.dc_loss``."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.dr.dc_loss import DcLossParams, build
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["DcLossParams", "dr_dc_loss"]


@flow(name="dr-dc-loss")
def dr_dc_loss(params: DcLossParams = DcLossParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
