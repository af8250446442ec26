"""The testing calendar as Prefect deployments: one data source (calendar.yaml) → deployments with schedules.

``load_calendar()`` validates the YAML; ``plan(config)`` decides which entries become deployments for the environments
in drillbit.yaml (production only with opt-in); ``build(entries)`` makes ``RunnerDeployment`` objects that
``drillbit deploy`` serves (or that a ``prefect.yaml`` + work pool runs).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drillbit.config import DrillbitConfig

CALENDAR_FILE = Path(__file__).with_name("calendar.yaml")
TIMEZONE = "UTC"


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    flow: str | None = None
    frequency: str
    environment: str
    cron: str | None = None
    rrule: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    table: Literal["continuous", "regular", "periodic", "ci"] = "regular"

    @model_validator(mode="after")
    def one_schedule(self) -> Entry:
        if self.cron and self.rrule:
            raise ValueError(f"{self.name}: give cron or rrule, not both")
        return self

    @property
    def schedule_text(self) -> str:
        return self.cron or (self.rrule or "").replace("\n", " ") or "on demand"


class Calendar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    continuous: list[Entry] = Field(default_factory=list)
    regular: list[Entry] = Field(default_factory=list)
    periodic: list[Entry] = Field(default_factory=list)
    ci: list[Entry] = Field(default_factory=list)

    def entries(self) -> list[Entry]:
        out = []
        for table in ("continuous", "regular", "periodic", "ci"):
            for e in getattr(self, table):
                e.table = table
                out.append(e)
        return out


def load_calendar(path: Path = CALENDAR_FILE) -> Calendar:
    return Calendar.model_validate(yaml.safe_load(path.read_text()))


def plan(config: DrillbitConfig, target: str | None = None, calendar: Calendar | None = None):
    """(entry, environment) pairs to deploy, and (entry, reason) pairs skipped.

    ``target`` retargets every entry to one environment (e.g. the sandbox, to try the calendar out).
    """
    from flows.registry import FLOWS

    deploy, skipped = [], []
    for entry in (calendar or load_calendar()).entries():
        if entry.flow is None:
            skipped.append((entry, "not a Drillbit flow (CI)"))
            continue
        if entry.flow not in FLOWS:
            skipped.append((entry, f"flow {entry.flow!r} is not available yet"))
            continue
        env_name = target or entry.environment
        env = config.environments.get(env_name)
        if env is None:
            skipped.append((entry, f"environment {env_name!r} is not in drillbit.yaml"))
            continue
        if env.safety.production and not env.safety.opt_in:
            skipped.append((entry, f"{env_name} is production and has not opted in (safety.opt_in)"))
            continue
        deploy.append((entry, env_name))
    return deploy, skipped


def build(pairs: list[tuple[Entry, str]], paused: bool = False) -> list[Any]:
    """RunnerDeployments with the calendar's schedules and typed parameters."""
    from prefect.client.schemas.schedules import CronSchedule, RRuleSchedule

    from flows.registry import FLOWS, params_model

    out = []
    for entry, env_name in pairs:
        flow = FLOWS[entry.flow]
        params = params_model(flow).model_validate({**entry.parameters, "environment": env_name})
        schedules = []
        if entry.cron:
            schedules = [CronSchedule(cron=entry.cron, timezone=TIMEZONE)]
        elif entry.rrule:
            schedules = [RRuleSchedule(rrule=entry.rrule, timezone=TIMEZONE)]
        out.append(
            flow.to_deployment(
                name=entry.name,
                schedules=schedules or None,
                parameters={"params": params.model_dump(mode="json", exclude_unset=True)},
                tags=["drillbit", entry.table, env_name],
                description=f"{entry.flow} — {entry.frequency} — {env_name}",
                paused=paused,
            )
        )
    return out


def next_runs(entry: Entry, n: int = 3, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` scheduled times of an entry (empty when it runs on demand)."""
    from prefect.server.schemas.schedules import CronSchedule, RRuleSchedule

    after = after or datetime.now(UTC)
    if entry.cron:
        schedule = CronSchedule(cron=entry.cron, timezone=TIMEZONE)
    elif entry.rrule:
        schedule = RRuleSchedule(rrule=entry.rrule, timezone=TIMEZONE)
    else:
        return []
    return list(asyncio.run(schedule.get_dates(n=n, start=after)))


def prefect_yaml(work_pool: str = "drillbit-kubernetes", calendar: Calendar | None = None) -> dict[str, Any]:
    """A ``prefect.yaml`` for teams that run workers: every calendar entry as a deployment on ``work_pool``.

    Environments stay as the calendar names them (staging / production); production deployments are created paused
    and only run once the environment opts in (safety.opt_in in drillbit.yaml is checked again at run time).
    """
    from flows.registry import FLOWS

    modules = {name: f.fn.__module__.replace(".", "/") + ".py:" + f.fn.__name__ for name, f in FLOWS.items()}
    deployments = []
    for e in (calendar or load_calendar()).entries():
        if e.flow is None:
            continue
        d: dict[str, Any] = {
            "name": e.name,
            "entrypoint": modules.get(e.flow, f"flows/<{e.flow}>.py:<flow>"),
            "description": f"{e.flow} — {e.frequency} — {e.environment}",
            "tags": ["drillbit", e.table, e.environment],
            "parameters": {"params": {**e.parameters, "environment": e.environment}},
            "work_pool": {"name": work_pool},
            "paused": e.environment == "production",
        }
        if e.cron:
            d["schedules"] = [{"cron": e.cron, "timezone": TIMEZONE}]
        elif e.rrule:
            d["schedules"] = [{"rrule": e.rrule, "timezone": TIMEZONE}]
        deployments.append(d)
    return {
        "name": "drillbit",
        "prefect-version": "3.9.1",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/drillbit"}}],
        "deployments": deployments,
    }


def render_prefect_yaml() -> str:
    header = "# Generated from deployments/calendar.yaml by `drillbit calendar --write-prefect-yaml`; do not edit.\n"
    return header + yaml.safe_dump(prefect_yaml(), sort_keys=False, width=120, allow_unicode=True)


def periods_s(calendar: Calendar | None = None) -> dict[str, float]:
    """Each flow's calendar period (the shortest gap between two scheduled runs), for the resilience score."""
    out: dict[str, float] = {}
    for e in (calendar or load_calendar()).entries():
        if not e.flow:
            continue
        runs = next_runs(e, 3)
        if len(runs) >= 2:
            gap = min((b - a).total_seconds() for a, b in itertools.pairwise(runs))
            out[e.flow] = min(out.get(e.flow, gap), gap)
    return out
