"""Flow: chaos, random pod termination (seed experiment 1). The experiment itself (parameters, fault per platform,
monitors, criteria) is ``drillbit.scenarios.chaos.pod_kill``; this flow resolves the environment and runs it."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.chaos.pod_kill import PodKillParams, build
from tasks.recover import revert_on_crash
from tasks.runner import current_flow_run_id, run_experiment
from tasks.targets import resolve_environment

__all__ = ["PodKillParams", "chaos_pod_kill"]


@flow(name="chaos-pod-kill", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_pod_kill(params: PodKillParams = PodKillParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params, run_id=current_flow_run_id()))
