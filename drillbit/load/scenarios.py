"""The load scenarios, as data: VirtEngine's ``RELIABILITY_TESTING.md`` numbers are the defaults.

Durations are real; ``time_scale`` compresses every duration (ramp, steady, steps) for CI and demos, never rates or
budgets. ``duration_s`` is the steady part; the ramp comes before it (so "50 TPS for 1 h, ramp 5 min" runs 65 min).
In the open model ``workers`` is the number of arrival streams (Locust users) sharing the rate; the deployment
scenario is a concurrency (the seed's "50 concurrent deployments"), one lifecycle in flight per worker.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Target = Literal["tx", "market-query", "deployments"]

LOCUSTFILES: dict[str, str] = {"tx": "tx_submit.py", "market-query": "market_query.py", "deployments": "deployments.py"}
PRIMARY: dict[str, str] = {"tx": "tx", "market-query": "market-query", "deployments": "deployment"}
# a target's default p95 budget (s): tx confirmation (SLO-NODE-005), REST API (PERFORMANCE_BUDGETS), provisioning
TARGET_P95: dict[str, float] = {"tx": 10.0, "market-query": 2.0, "deployments": 300.0}
MIN_SCALED_SECONDS = 1.0


def check_rate(v: float | None) -> float | None:
    if v is not None and not 0 < v <= 100_000:
        raise ValueError(f"must be a positive number of operations per second (at most 100000), got {v:g}")
    return v


def check_duration(v: float | None) -> float | None:
    if v is not None and not 0 < v <= 7 * 86_400:
        raise ValueError(f"must be more than 0 seconds (at most 7 days), got {v:g}")
    return v


def check_fraction(v: float | None) -> float | None:
    if v is not None and not 0 <= v <= 1:
        raise ValueError(f"an error budget is a fraction between 0 and 1 (1 % = 0.01), got {v:g} ({v:.0%})")
    return v


def check_time_scale(v: float) -> float:
    if not 0 < v <= 1:
        raise ValueError(f"compresses durations: give 0 < time_scale <= 1 (1 = real durations), got {v:g}")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budgets(Strict):
    """What a run must meet. ``error_rate`` is a fraction (1 % = 0.01)."""

    error_rate: float = Field(0.01, description="error budget as a fraction of operations (1 % = 0.01)")
    p95_s: float | None = Field(None, gt=0, description="p95 latency budget (s); None: the target's default")
    p99_s: float | None = Field(None, gt=0, description="optional p99 latency budget (s)")
    min_throughput: float | None = Field(None, ge=0, description="steady throughput floor (ops/s); None: the rate")
    throughput_tolerance: float = Field(0.05, ge=0, lt=1, description="measurement slack on throughput floors")

    @field_validator("error_rate")
    @classmethod
    def _fraction(cls, v: float) -> float:
        return check_fraction(v)


class StepPlan(Strict):
    """A stepped ramp for the breaking point: ``start_rate``, +``step_rate`` every ``step_s`` up to ``max_rate``."""

    start_rate: float = Field(10.0, gt=0, le=100_000)
    step_rate: float = Field(10.0, gt=0, le=100_000)
    max_rate: float = Field(200.0, gt=0, le=100_000)
    step_s: float = Field(60.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _bounded(self) -> StepPlan:
        if self.max_rate < self.start_rate:
            raise ValueError(f"max_rate {self.max_rate:g} is below start_rate {self.start_rate:g}")
        if len(self.rates()) > 200:
            raise ValueError("more than 200 steps; raise step_rate or lower max_rate")
        return self

    def rates(self) -> list[float]:
        out, r = [], self.start_rate
        while r <= self.max_rate + 1e-9 and len(out) <= 200:
            out.append(round(r, 6))
            r += self.step_rate
        return out


class Scenario(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    target: Target = "tx"
    rate: float | None = Field(None, description="open model: target arrivals per second")
    concurrency: int | None = Field(None, description="concurrency model: operations kept in flight")
    steps: StepPlan | None = None
    duration_s: float = Field(300.0, description="steady duration (s), after the ramp")
    ramp_s: float = Field(0.0, ge=0, le=86_400, description="linear ramp from 0 to the rate (s)")
    workers: int = Field(1, ge=1, le=10_000, description="arrival streams (open) or slots (concurrency)")
    budgets: Budgets = Field(default_factory=Budgets)
    time_scale: float = Field(1.0, description="compresses every duration (0 < x <= 1); 1 = real durations")
    request_timeout_s: float = Field(30.0, gt=0, le=600)
    drift_check: bool = Field(False, description="soak: fail when late p95s are significantly worse than early")
    abort_error_rate: float = Field(0.5, ge=0, le=1, description="watchdog: stop the schedule above this (0 = off)")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: float | None) -> float | None:
        return check_rate(v)

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 10_000:
            raise ValueError(f"must be between 1 and 10000 operations in flight, got {v}")
        return v

    @field_validator("duration_s")
    @classmethod
    def _duration(cls, v: float) -> float:
        return check_duration(v)

    @field_validator("time_scale")
    @classmethod
    def _time_scale(cls, v: float) -> float:
        return check_time_scale(v)

    @model_validator(mode="after")
    def _shape(self) -> Scenario:
        given = [k for k in ("rate", "concurrency", "steps") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of rate (open model), concurrency or steps; got {given or 'none'}")
        if (self.target == "deployments") != (self.concurrency is not None):
            raise ValueError("the deployments target runs as a concurrency, and only it does")
        shortest = min(self.duration_s, self.steps.step_s if self.steps else self.duration_s)
        if shortest * self.time_scale < MIN_SCALED_SECONDS:
            need = MIN_SCALED_SECONDS / shortest
            raise ValueError(
                f"time_scale {self.time_scale:g} leaves {shortest * self.time_scale:.2f} s of load; "
                f"use time_scale >= {need:.3g}"
            )
        return self

    # ---- derived
    @property
    def model(self) -> Literal["open", "concurrency"]:
        return "concurrency" if self.concurrency is not None else "open"

    @property
    def primary(self) -> str:
        return PRIMARY[self.target]

    @property
    def key(self) -> str:
        """What a baseline must share: scenario, target and offered load."""
        load = f"{self.concurrency}x" if self.concurrency else f"{self.rate:g}/s" if self.rate else "steps"
        return f"{self.name}/{self.target}@{load}"

    @property
    def p95_budget(self) -> float:
        return self.budgets.p95_s if self.budgets.p95_s is not None else TARGET_P95[self.target]

    @property
    def ramp(self) -> float:
        return round(self.ramp_s * self.time_scale, 3)

    @property
    def steady(self) -> float:
        return round(self.duration_s * self.time_scale, 3)

    def profile(self) -> list[list[Any]]:
        """Segments ``[phase, seconds, rate_from, rate_to]`` (scaled) for the generator."""
        if self.steps is not None:
            step = round(self.steps.step_s * self.time_scale, 3)
            return [[step_phase(i, r), step, r, r] for i, r in enumerate(self.steps.rates(), 1)]
        rate = float(self.rate or self.concurrency or 0)
        segments: list[list[Any]] = []
        if self.ramp > 0:
            segments.append(["ramp", self.ramp, 0.0, rate])
        segments.append(["steady", self.steady, rate, rate])
        return segments

    @property
    def total_s(self) -> float:
        return sum(s[1] for s in self.profile())

    def expected_throughput(self, phase: str) -> float | None:
        """Average target rate of a phase (ops/s); None for a concurrency."""
        if self.model == "concurrency":
            return None
        for name, _sec, r0, r1 in self.profile():
            if name == phase:
                if phase == "steady" and self.budgets.min_throughput is not None:
                    return self.budgets.min_throughput
                return (r0 + r1) / 2
        return None

    def with_changes(self, **changes: Any) -> Scenario:
        """A validated copy with some fields changed (None values are ignored); a new target resets its p95."""
        data = self.model_dump()
        changes = {k: v for k, v in changes.items() if v is not None}
        budget_keys = {"error_rate", "p95_s", "p99_s", "min_throughput"}
        budgets = dict(data["budgets"])
        if "target" in changes and changes["target"] != self.target:
            budgets["p95_s"] = None
        for k in budget_keys & set(changes):
            budgets[k] = changes.pop(k)
        data.update(changes)
        data["budgets"] = budgets
        return Scenario.model_validate(data)


def step_phase(index: int, rate: float) -> str:
    return f"step-{index:02d}@{rate:g}/s"


def _tx_level(name: str, tps: float, minutes: float, max_errors: float, p95: float = 10.0, **kw: Any) -> Scenario:
    return Scenario(
        name=name,
        target="tx",
        rate=tps,
        duration_s=minutes * 60,
        ramp_s=60,
        workers=max(1, int(tps // 5)),
        budgets=Budgets(error_rate=max_errors, p95_s=p95),
        **kw,
    )


SCENARIOS: dict[str, Scenario] = {
    "sustained": Scenario(
        name="sustained",
        description="Sustained 50 TPS for 1 hour (RELIABILITY_TESTING: TestSustainedLoadReliability)",
        target="tx",
        rate=50,
        duration_s=3600,
        ramp_s=300,
        workers=10,
        budgets=Budgets(error_rate=0.01, p95_s=10.0, min_throughput=50.0),
    ),
    "burst": Scenario(
        name="burst",
        description="Burst to 100 TPS for 5 minutes (TestBurstLoadReliability)",
        target="tx",
        rate=100,
        duration_s=300,
        ramp_s=30,
        workers=20,
        budgets=Budgets(error_rate=0.02, p95_s=15.0),
    ),
    "smoke": _tx_level("smoke", 5, 5, 0.01, description="Smoke: 10 % of production load, 5 TPS for 5 min"),
    "load": _tx_level("load", 50, 30, 0.01, description="Load: 100 % of production load, 50 TPS for 30 min"),
    "stress": _tx_level("stress", 100, 10, 0.05, p95=15.0, description="Stress: 200 % load, 100 TPS for 10 min"),
    "soak": _tx_level("soak", 50, 120, 0.01, drift_check=True, description="Soak: 50 TPS for 2 h (leaks, drift)"),
    "deployments": Scenario(
        name="deployments",
        description="50 concurrent deployments for 30 min: provisioning p95 < 300 s, success > 99 %",
        target="deployments",
        concurrency=50,
        duration_s=1800,
        ramp_s=0,
        workers=50,
        request_timeout_s=60,
        budgets=Budgets(error_rate=0.01, p95_s=300.0),
    ),
    "breaking-point": Scenario(
        name="breaking-point",
        description="Stepped ramp until the budgets are first violated (stress: 150-200 % of production load)",
        target="tx",
        steps=StepPlan(start_rate=10, step_rate=10, max_rate=200, step_s=60),
        duration_s=60,
        workers=20,
        budgets=Budgets(error_rate=0.01, p95_s=10.0),
    ),
}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown load scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
