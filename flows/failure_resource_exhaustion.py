"""The resource-exhaustion flow: memory pressure on a validator node
(the scenario: ``drillbit.scenarios.failure.resource_exhaustion``)."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.failure.resource_exhaustion import ResourceExhaustionParams, build
from tasks.recover import revert_on_crash
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["ResourceExhaustionParams", "resource_exhaustion"]


@flow(name="resource-exhaustion", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def resource_exhaustion(params: ResourceExhaustionParams = ResourceExhaustionParams()) -> dict:
    """Memory pressure raises the alert, degrades gracefully, never OOM-kills the node, and leaks nothing."""
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
