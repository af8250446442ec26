"""The split-brain flow: partitions the validator network and checks the transaction history of every node
(the scenario: ``drillbit.scenarios.failure.split_brain``)."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.failure.split_brain import SplitBrainParams, build
from tasks.recover import revert_on_crash
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["SplitBrainParams", "split_brain"]


@flow(name="split-brain", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def split_brain(params: SplitBrainParams = SplitBrainParams()) -> dict:
    """A partition never forks the chain nor loses an acknowledged transaction, and blocks resume after healing."""
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
