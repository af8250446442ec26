"""The cascading-failure flow: overloads the provider's bid engine and watches its circuit breaker
(the scenario: ``drillbit.scenarios.failure.circuit_breaker``)."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.failure.circuit_breaker import CascadingFailureParams, build
from tasks.recover import revert_on_crash
from tasks.runner import run_experiment
from tasks.targets import resolve_environment

__all__ = ["CascadingFailureParams", "cascading_failure"]


@flow(name="cascading-failure", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def cascading_failure(params: CascadingFailureParams = CascadingFailureParams()) -> dict:
    """An overload trips the breaker, rejections fail fast, API and nodes stay healthy, the breaker closes after."""
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
