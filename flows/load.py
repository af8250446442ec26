"""Load, stress, soak and breaking-point tests: the seed's scenarios on an open load model (Locust subprocess).

Every flow runs one scenario of ``drillbit.load.scenarios`` (its numbers are the parameters' defaults) against the
environment's node RPC (tx), marketplace API (market-query) or the whole deployment lifecycle (deployments), grades
error rate, coordinated-omission-corrected p95 and per-phase throughput against the scenario's budgets, stores the
run with its per-second series and publishes throughput / latency plots. ``time_scale`` compresses every duration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from prefect import flow
from prefect.cache_policies import NO_CACHE
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from drillbit.load import grading
from drillbit.load import results as res
from drillbit.load.scenarios import (
    SCENARIOS,
    Scenario,
    StepPlan,
    check_duration,
    check_fraction,
    check_rate,
    check_time_scale,
)
from drillbit.model import Timeline
from flows.base import FlowParams, new_record
from tasks import load as load_tasks
from tasks.grade import grade
from tasks.report import artifacts_dir, persist_and_publish
from tasks.targets import resolve_environment

REQUIRED_STRESS_FACTOR = 1.5  # the breaking point must lie above 150 % of production load (RELIABILITY_TESTING)
PRODUCTION_TPS = 50.0

grade_load = grade.with_options(cache_policy=NO_CACHE)  # the timeline may hold millions of samples: never hashed


class LoadParams(FlowParams):
    """Parameters every load flow takes; each flow's subclass carries its scenario's numbers as defaults."""

    time_scale: float = Field(1.0, description="compress every duration by this factor (0 < x <= 1; 1 = real)")
    processes: int = Field(1, ge=1, le=64, description="Locust processes (use the cores of the load host)")

    def scenario(self) -> Scenario:
        raise NotImplementedError

    # field by field first (the error names the parameter), then the whole scenario
    @field_validator("rate", "start_rate", "step_rate", "max_rate", check_fields=False)
    @classmethod
    def _rates(cls, v: float | None) -> float | None:
        return check_rate(v)

    @field_validator("duration_s", "step_s", check_fields=False)
    @classmethod
    def _durations(cls, v: float | None) -> float | None:
        return check_duration(v)

    @field_validator("error_budget", check_fields=False)
    @classmethod
    def _budgets(cls, v: float | None) -> float | None:
        return check_fraction(v)

    @field_validator("time_scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        return check_time_scale(v)

    @model_validator(mode="after")
    def _valid_scenario(self) -> LoadParams:
        try:
            self.scenario()
        except ValidationError as exc:
            raise ValueError("; ".join(_problem(e) for e in exc.errors())) from None
        return self


def _problem(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


class OpenParams(LoadParams):
    target: Literal["tx", "market-query"] = "tx"
    rate: float = 5.0
    duration_s: float = 300.0
    ramp_s: float = 60.0
    workers: int = 1
    error_budget: float = 0.01
    p95_s: float | None = None
    p99_s: float | None = None
    request_timeout_s: float = 30.0

    scenario_name: ClassVar[str] = "smoke"

    def scenario(self) -> Scenario:
        return SCENARIOS[self.scenario_name].with_changes(
            target=self.target,
            rate=self.rate,
            duration_s=self.duration_s,
            ramp_s=self.ramp_s,
            workers=self.workers,
            error_rate=self.error_budget,
            p95_s=self.p95_s,
            p99_s=self.p99_s,
            request_timeout_s=self.request_timeout_s,
            time_scale=self.time_scale,
        )


def _open_params(name: str, cls_name: str) -> type[OpenParams]:
    sc = SCENARIOS[name]
    fields: dict[str, Any] = {
        "target": (Literal["tx", "market-query"], Field(sc.target, description="tx (node RPC) or market-query (API)")),
        "rate": (float, Field(sc.rate, description="target operations per second (open model)")),
        "duration_s": (float, Field(sc.duration_s, description="steady duration in seconds (after the ramp)")),
        "ramp_s": (float, Field(sc.ramp_s, description="linear ramp from 0 to the rate, seconds")),
        "workers": (int, Field(sc.workers, description="arrival streams sharing the rate")),
        "error_budget": (float, Field(sc.budgets.error_rate, description="error budget, fraction (1 % = 0.01)")),
        "p95_s": (float | None, Field(sc.budgets.p95_s, description="p95 budget in seconds (None: the target's)")),
    }
    model = create_model(cls_name, __base__=OpenParams, __doc__=f"{sc.description}.", **fields)
    model.scenario_name = name
    return model


SmokeParams = _open_params("smoke", "SmokeParams")
LoadLevelParams = _open_params("load", "LoadLevelParams")
StressParams = _open_params("stress", "StressParams")
SoakParams = _open_params("soak", "SoakParams")
SustainedParams = _open_params("sustained", "SustainedParams")
BurstParams = _open_params("burst", "BurstParams")


class DeploymentsParams(LoadParams):
    """50 concurrent deployments for 30 min: provisioning p95 < 300 s, success > 99 %."""

    concurrency: int = Field(SCENARIOS["deployments"].concurrency, description="deployments kept in flight")
    duration_s: float = Field(SCENARIOS["deployments"].duration_s, description="seconds of load")
    error_budget: float = Field(0.01, description="failed provisionings allowed, fraction (success > 99 %)")
    p95_s: float = Field(300.0, description="provisioning p95 budget (s), also each lifecycle's timeout")

    def scenario(self) -> Scenario:
        return SCENARIOS["deployments"].with_changes(
            concurrency=self.concurrency,
            workers=self.concurrency,
            duration_s=self.duration_s,
            error_rate=self.error_budget,
            p95_s=self.p95_s,
            time_scale=self.time_scale,
        )


class BreakingPointParams(LoadParams):
    """A stepped ramp; reports the first rate at which the budgets are violated."""

    target: Literal["tx", "market-query"] = "tx"
    start_rate: float = Field(10.0, description="first step's rate (ops/s)")
    step_rate: float = Field(10.0, description="added at every step (ops/s)")
    max_rate: float = Field(200.0, description="last step's rate at most (ops/s)")
    step_s: float = Field(60.0, description="seconds per step")
    workers: int = Field(20, description="arrival streams sharing the rate")
    error_budget: float = Field(0.01, description="error budget per step, fraction")
    p95_s: float | None = Field(None, description="p95 budget per step (s); None: the target's")
    required_rate: float = Field(
        REQUIRED_STRESS_FACTOR * PRODUCTION_TPS, gt=0, description="the breaking point must lie above this rate"
    )

    def scenario(self) -> Scenario:
        steps = StepPlan(
            start_rate=self.start_rate, step_rate=self.step_rate, max_rate=self.max_rate, step_s=self.step_s
        )
        return SCENARIOS["breaking-point"].with_changes(
            target=self.target,
            steps=steps.model_dump(),
            workers=self.workers,
            error_rate=self.error_budget,
            p95_s=self.p95_s,
            time_scale=self.time_scale,
            abort_error_rate=0.5,
        )


# ------------------------------------------------------------------------------------------------------ the body


def run_load(flow_name: str, params: LoadParams, required_rate: float | None = None) -> dict:
    """Preflight → generate (Locust subprocess) → analyse → grade → plot → persist and publish."""
    scenario = params.scenario()
    env = resolve_environment(params.environment, params.config_path)
    record = new_record(flow_name, env.name, params, scenario=scenario.key)
    out_dir = artifacts_dir(record) / "locust"
    urls = load_tasks.preflight(env, scenario)
    try:
        generated = load_tasks.generate(scenario, urls, str(out_dir), params.processes)
        data = load_tasks.analyse(str(out_dir))
    finally:
        if scenario.target == "deployments":
            owners = _owners(out_dir)
            if owners:
                load_tasks.close_leftover_deployments(env, owners)
    timeline = data.timeline()
    crits = grading.load_criteria(scenario, data)
    if required_rate is not None:
        crits.insert(0, grading.breaking_point_criterion(scenario, data, required_rate))
    record.finish(grade_load(timeline, crits))
    record.metrics = grading.metrics(scenario, data)
    record.metrics["generator_run"] = generated
    if required_rate is not None:
        first = grading.breaking_point(grading.step_results(scenario, data))
        record.metrics["breaking_rate"] = first.rate if first else None
    png = load_tasks.plot(
        data, scenario, str(artifacts_dir(record) / "load.png"), f"{flow_name} {scenario.key} — {record.outcome}"
    )
    if png:
        record.artifacts["load_png"] = png
    record.artifacts["locust_dir"] = str(out_dir)
    summary = per_second_timeline(data, scenario)
    thresholds = {f"per-second:{scenario.primary}": scenario.p95_budget}
    return persist_and_publish(record, summary, thresholds=thresholds).to_dict()


def per_second_timeline(data: res.LoadData, scenario: Scenario) -> Timeline:
    """What is stored with the run: per-second p95 / throughput of the main operation, phases and events."""
    tl = Timeline()
    tl.phases = list(data.phases)
    tl.extend(grading.per_second_samples(data, [scenario.primary]))
    tl.events = data.events()
    return tl


def _owners(out_dir: Path) -> list[str]:
    owners: list[str] = []
    for meta in Path(out_dir).glob("meta-*.json"):
        owners += json.loads(meta.read_text()).get("extra", {}).get("owners", [])
    return sorted(set(owners))


# --------------------------------------------------------------------------------------------------------- flows


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
