"""Load, stress, soak and breaking-point tests: the seed's scenarios on an open load model (Locust subprocess).

Every flow runs one scenario of ``drillbit.load.scenarios`` (its numbers are the parameters' defaults) against the
environment's node RPC (tx), marketplace API (market-query) or the whole deployment lifecycle (deployments), grades
error rate, coordinated-omission-corrected p95 and per-phase throughput against the scenario's budgets, stores the
run with its per-second series and publishes throughput / latency plots. ``time_scale`` compresses every duration.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from drillbit.load.scenarios import SCENARIOS
from drillbit.scenarios.load import (
    BreakingPointParams,
    BurstParams,
    DeploymentsParams,
    LoadLevelParams,
    LoadParams,
    SmokeParams,
    SoakParams,
    StressParams,
    SustainedParams,
)
from tasks.load import run_load


@flow(name="load-smoke", log_prints=True, description=SCENARIOS["smoke"].description)
def load_smoke(params: SmokeParams = SmokeParams()) -> dict:
    return run_load("load-smoke", params)


@flow(name="load", log_prints=True, description=SCENARIOS["load"].description)
def load(params: LoadLevelParams = LoadLevelParams()) -> dict:
    return run_load("load", params)


@flow(name="stress", log_prints=True, description=SCENARIOS["stress"].description)
def stress(params: StressParams = StressParams()) -> dict:
    return run_load("stress", params)


@flow(name="soak", log_prints=True, description=SCENARIOS["soak"].description)
def soak(params: SoakParams = SoakParams()) -> dict:
    return run_load("soak", params)


@flow(name="sustained", log_prints=True, description=SCENARIOS["sustained"].description)
def sustained(params: SustainedParams = SustainedParams()) -> dict:
    return run_load("sustained", params)


@flow(name="burst", log_prints=True, description=SCENARIOS["burst"].description)
def burst(params: BurstParams = BurstParams()) -> dict:
    return run_load("burst", params)


@flow(name="deployments", log_prints=True, description=SCENARIOS["deployments"].description)
def deployments(params: DeploymentsParams = DeploymentsParams()) -> dict:
    return run_load("deployments", params)


@flow(name="breaking-point", log_prints=True, description=SCENARIOS["breaking-point"].description)
def breaking_point(params: BreakingPointParams = BreakingPointParams()) -> dict:
    return run_load("breaking-point", params, required_rate=params.required_rate)


FLOWS = (load_smoke, load, stress, soak, sustained, burst, deployments, breaking_point)

# scenario name → (flow, params model): how perf-regression runs a candidate
SCENARIO_FLOWS: dict[str, tuple[Any, type[LoadParams]]] = {
    "smoke": (load_smoke, SmokeParams),
    "load": (load, LoadLevelParams),
    "stress": (stress, StressParams),
    "soak": (soak, SoakParams),
    "sustained": (sustained, SustainedParams),
    "burst": (burst, BurstParams),
    "deployments": (deployments, DeploymentsParams),
}
