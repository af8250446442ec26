"""Flow: chaos, network latency on the provider's link to the chain (seed experiment 2). The experiment itself is
``drillbit.scenarios.chaos.network_latency``; this flow resolves the environment and runs it."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.chaos.network_latency import NetworkLatencyParams, build
from tasks.recover import revert_on_crash
from tasks.runner import current_flow_run_id, run_experiment
from tasks.targets import resolve_environment

__all__ = ["NetworkLatencyParams", "chaos_network_latency"]


@flow(name="chaos-network-latency", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_network_latency(params: NetworkLatencyParams = NetworkLatencyParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params, run_id=current_flow_run_id()))
