"""The testing calendar: one data source (deployments/calendar.yaml) for when each flow runs, and where.

``load_calendar()`` reads and validates the YAML against the flow catalogue; ``plan(config)`` decides which entries
become deployments for the environments in drillbit.yaml (production only with opt-in); ``next_runs`` and
``periods_s`` give the schedule's times (the resilience score's freshness periods); ``render_prefect_yaml`` writes
the ``prefect.yaml`` a work pool runs. Building Prefect deployment objects is ``deployments/build.py``'s job: nothing
here imports Prefect or a flow.

Schedules are cron (five fields, evaluated as Prefect's croniter does: day of month and day of week are OR-ed when
both are restricted) or an RFC 5545 rrule; every time is UTC.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drillbit import catalog

if TYPE_CHECKING:
    from drillbit.config import DrillbitConfig

CALENDAR_FILE = Path(__file__).resolve().parents[1] / "deployments" / "calendar.yaml"
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

    @field_validator("flow")
    @classmethod
    def known_flow(cls, flow: str | None) -> str | None:
        if flow is not None and flow not in catalog.BY_NAME:
            raise ValueError(f"no flow named {flow!r} in the catalogue (drillbit/catalog.py)")
        return flow

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, cron: str | None) -> str | None:
        if cron is not None:
            Cron.parse(cron)
        return cron

    @field_validator("rrule")
    @classmethod
    def valid_rrule(cls, rrule: str | None) -> str | None:
        if rrule is not None:
            _rrule(rrule)
        return rrule

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


def parameter_problems(calendar: Calendar | None = None) -> list[str]:
    """Entries whose parameters their flow's model refuses (imports each flow's scenario module, not the flow)."""
    problems = []
    for e in (calendar or load_calendar()).entries():
        if e.flow is None:
            continue
        try:
            catalog.params_model(e.flow).model_validate({**e.parameters, "environment": e.environment})
        except ValidationError as exc:
            problems.append(f"{e.name}: {exc}")
    return problems


def plan(config: DrillbitConfig, target: str | None = None, calendar: Calendar | None = None):
    """(entry, environment) pairs to deploy, and (entry, reason) pairs skipped.

    ``target`` retargets every entry to one environment (e.g. the sandbox, to try the calendar out).
    """
    deploy, skipped = [], []
    for entry in (calendar or load_calendar()).entries():
        if entry.flow is None:
            skipped.append((entry, "not a Drillbit flow (CI)"))
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


def next_runs(entry: Entry, n: int = 3, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` scheduled times of an entry, at or after ``after`` (default now; empty when on demand)."""
    after = (after or datetime.now(UTC)).astimezone(UTC)
    if entry.cron:
        return Cron.parse(entry.cron).times(after, n)
    if entry.rrule:
        rule = _rrule(entry.rrule)
        times = rule.xafter(after.replace(tzinfo=None), count=n, inc=True)
        return [t.replace(tzinfo=UTC) for t in times]
    return []


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


def prefect_yaml(work_pool: str = "drillbit-kubernetes", calendar: Calendar | None = None) -> dict[str, Any]:
    """A ``prefect.yaml`` for teams that run workers: every calendar entry as a deployment on ``work_pool``.

    Environments stay as the calendar names them (staging / production); production deployments are created paused
    and only run once the environment opts in (safety.opt_in in drillbit.yaml is checked again at run time).
    """
    deployments = []
    for e in (calendar or load_calendar()).entries():
        if e.flow is None:
            continue
        d: dict[str, Any] = {
            "name": e.name,
            "entrypoint": catalog.get(e.flow).entrypoint,
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


# ------------------------------------------------------------------------------------------------------ schedules

# an rrule without DTSTART starts here (as Prefect anchors it)
RRULE_ANCHOR = datetime(2020, 1, 1)


def _rrule(text: str) -> Any:
    """The rrule (or rruleset) of ``text``, naive in UTC (the calendar's only timezone)."""
    from dateutil.rrule import rrulestr

    return rrulestr(text, dtstart=RRULE_ANCHOR, cache=True, ignoretz=True)


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (lowest, highest, names) of minute, hour, day of month, month, day of week (0 and 7 are Sunday)
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    (0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_SEARCH_DAYS = 366 * 28  # a schedule matching nothing for 28 years (e.g. 30 February) yields no more times


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression: the minutes, hours, days, months and weekdays (0 = Sunday) it matches."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = _ALIASES.get(text.strip().lower(), text).split()
        if len(fields) != 5:
            raise ValueError(f"cron {text!r}: expected five fields (minute hour day month weekday)")
        sets = [_parse_field(f, *spec, text) for f, spec in zip(fields, _FIELDS, strict=True)]
        sets[4] = {0 if d == 7 else d for d in sets[4]}
        return cls(tuple(sorted(sets[0])), tuple(sorted(sets[1])), *(frozenset(s) for s in sets[2:]))

    def matches_day(self, d: date) -> bool:
        in_month, on_weekday = d.day in self.days, d.isoweekday() % 7 in self.weekdays
        if len(self.days) == 31 or len(self.weekdays) == 7:  # one of them unrestricted: the other decides
            return in_month and on_weekday
        return in_month or on_weekday

    def times(self, after: datetime, n: int) -> list[datetime]:
        """The first ``n`` matching minutes at or after ``after`` (UTC)."""
        first = after.astimezone(UTC).replace(tzinfo=None)
        if first.second or first.microsecond:
            first = first.replace(second=0, microsecond=0) + timedelta(minutes=1)
        out: list[datetime] = []
        day = first.date()
        for _ in range(_SEARCH_DAYS):
            if day.month in self.months and self.matches_day(day):
                for h, m in itertools.product(self.hours, self.minutes):
                    t = datetime(day.year, day.month, day.day, h, m)
                    if t >= first:
                        out.append(t.replace(tzinfo=UTC))
                        if len(out) == n:
                            return out
            day += timedelta(days=1)
        return out


def _parse_field(field: str, low: int, high: int, names: dict[str, int], text: str) -> set[int]:
    def number(s: str) -> int:
        value = names.get(s.lower()) if not s.isdigit() else int(s)
        if value is None or not low <= value <= high:
            raise ValueError(f"cron {text!r}: {s!r} is not in {low}-{high}")
        return value

    out: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"cron {text!r}: bad step in {part!r}")
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            start, stop = (number(s) for s in span.split("-", 1))
            if start > stop:
                raise ValueError(f"cron {text!r}: range {span!r} runs backwards")
        else:
            start = number(span)
            stop = high if step else start
        out.update(range(start, stop + 1, step or 1))
    return out
