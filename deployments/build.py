"""The testing calendar as Prefect deployments: ``build`` turns the (entry, environment) pairs that
``drillbit.calendar.plan`` chose into ``RunnerDeployment`` objects with the calendar's schedules and typed parameters,
which ``drillbit deploy`` serves (a ``prefect.yaml`` + work pool runs the same entries; see drillbit/calendar.py)."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.schedules import CronSchedule, RRuleSchedule

from drillbit import catalog
from drillbit.calendar import TIMEZONE, Entry
from flows import registry


def build(pairs: list[tuple[Entry, str]], paused: bool = False) -> list[Any]:
    """RunnerDeployments with the calendar's schedules and typed parameters."""
    out = []
    for entry, env_name in pairs:
        flow = registry.load(entry.flow)
        params = catalog.params_model(entry.flow).model_validate({**entry.parameters, "environment": env_name})
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
