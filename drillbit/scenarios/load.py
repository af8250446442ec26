"""The load scenarios' core: the parameters of every load flow (each flow's model carries its scenario's numbers from
``drillbit.load.scenarios`` as defaults and validates them field by field, then as a whole), the criteria and metrics
of one run (error rate, corrected p95, per-phase throughput, the breaking point), and what is stored with the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

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
from drillbit.model import Criterion, Timeline
from drillbit.params import FlowParams

REQUIRED_STRESS_FACTOR = 1.5  # the breaking point must lie above 150 % of production load (RELIABILITY_TESTING)
PRODUCTION_TPS = 50.0


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


# -------------------------------------------------------------------------------------------- grading one run


def load_criteria(scenario: Scenario, data: res.LoadData, required_rate: float | None = None) -> list[Criterion]:
    """The scenario's budgets; a breaking-point run (``required_rate``) first judges where the budgets broke."""
    crits = grading.load_criteria(scenario, data)
    if required_rate is not None:
        crits.insert(0, grading.breaking_point_criterion(scenario, data, required_rate))
    return crits


def load_metrics(
    scenario: Scenario, data: res.LoadData, generated: dict[str, Any], required_rate: float | None = None
) -> dict[str, Any]:
    """What the run measured, how the generator ran, and (breaking point) the first rate that broke the budgets."""
    metrics = grading.metrics(scenario, data)
    metrics["generator_run"] = generated
    if required_rate is not None:
        first = grading.breaking_point(grading.step_results(scenario, data))
        metrics["breaking_rate"] = first.rate if first else None
    return metrics


def per_second_timeline(data: res.LoadData, scenario: Scenario) -> Timeline:
    """What is stored with the run: per-second p95 / throughput of the main operation, phases and events."""
    tl = Timeline()
    tl.phases = list(data.phases)
    tl.extend(grading.per_second_samples(data, [scenario.primary]))
    tl.events = data.events()
    return tl


def leftover_owners(out_dir: Path) -> list[str]:
    """The tenants the deployments generator used (from its meta files): whose deployments may be left active."""
    owners: list[str] = []
    for meta in Path(out_dir).glob("meta-*.json"):
        owners += json.loads(meta.read_text()).get("extra", {}).get("owners", [])
    return sorted(set(owners))
