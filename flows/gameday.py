"""Gameday: a practice incident. The flow injects the scenario, records one timeline from machine events (injection,
alerts firing, pages, recovery) and from the humans' inputs given in the Prefect UI while it waits (incident detected,
on-call paged, incident declared, root cause, services restored, notes), grades the seed's criteria and publishes a
retrospective draft."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.gameday import GamedayParams, build
from tasks.recover import revert_on_crash
from tasks.runner import run_experiment
from tasks.targets import resolve_environment


@flow(name="gameday", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def gameday(params: GamedayParams = GamedayParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    return run_experiment(build(env, params))
