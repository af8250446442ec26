"""The flow catalogue (drillbit/catalog.py) against what it describes: every flow module's Prefect flow has the
catalogue's name and takes the catalogue's parameter model; every calendar entry names a catalogued flow with
parameters its model accepts; the calendar's own cron evaluation gives the times Prefect schedules."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from drillbit import catalog
from drillbit.calendar import Cron, Entry, load_calendar, next_runs, parameter_problems


def test_every_catalogued_flow_is_named_and_typed_as_the_catalogue_says():
    from flows import registry

    assert registry.check() == []
    assert list(registry.FLOWS) == catalog.names()


def test_names_are_unique_kebab_case_with_a_known_test_type_and_a_model():
    assert len(set(catalog.names())) == len(catalog.CATALOG)
    for spec in catalog.CATALOG:
        assert spec.name == spec.name.lower() and " " not in spec.name and "_" not in spec.name
        assert spec.test_type in catalog.TEST_TYPES
        assert spec.description and "\n" not in spec.description
        assert issubclass(catalog.params_model(spec.name), BaseModel)
    assert {s.test_type for s in catalog.CATALOG} == set(catalog.TEST_TYPES)


def test_an_unknown_name_is_one_clear_error():
    with pytest.raises(catalog.UnknownFlow, match="unknown flow 'nope'; known: synthetic, e2e"):
        catalog.get("nope")


def test_every_calendar_entry_names_a_catalogued_flow_with_valid_parameters():
    entries = load_calendar().entries()
    assert {e.flow for e in entries if e.flow} <= set(catalog.names())
    assert parameter_problems() == []
    with pytest.raises(ValueError, match="no flow named 'chaos-pod-kil'"):
        Entry(name="typo", flow="chaos-pod-kil", frequency="daily", environment="staging")


CRONS = [
    "* * * * *",
    "*/5 * * * *",
    "0 */6 * * *",
    "0 3 2 1,4,7,10 *",
    "0 2 8 2,5,8,11 *",
    "0 0 13 * 5",  # day of month and weekday both given: either matches
    "0 0 */2 * 1",
    "15,45 9-17/2 * jan-mar mon-fri",
    "0 0 * * 7",
    "5/15 * * * *",
    "0 0 29 2 *",
    "@daily",
]


@pytest.mark.parametrize("cron", [*CRONS, *sorted({e.cron for e in load_calendar().entries() if e.cron})])
def test_cron_times_are_the_times_prefect_schedules(cron):
    from prefect.server.schemas.schedules import CronSchedule

    rnd = random.Random(cron)
    schedule = CronSchedule(cron=cron, timezone="UTC")
    for _ in range(20):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(3 * 365 * 86400))
        start = start.replace(microsecond=rnd.choice([0, rnd.randrange(10**6)]), second=rnd.choice([0, 30]))
        expected = asyncio.run(schedule.get_dates(n=4, start=start))
        assert [t.timestamp() for t in Cron.parse(cron).times(start, 4)] == [t.timestamp() for t in expected], start


def test_rrule_times_are_the_times_prefect_schedules():
    from prefect.server.schemas.schedules import RRuleSchedule

    rules = [e.rrule for e in load_calendar().entries() if e.rrule]
    rules += ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "DTSTART:20260301T093000\nRRULE:FREQ=DAILY;INTERVAL=3"]
    rnd = random.Random(0)
    for rule in rules:
        entry = Entry(name="r", frequency="r", environment="r", rrule=rule)
        for _ in range(10):
            start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(3 * 365 * 86400))
            expected = asyncio.run(RRuleSchedule(rrule=rule, timezone="UTC").get_dates(n=3, start=start))
            assert [t.timestamp() for t in next_runs(entry, 3, start)] == [t.timestamp() for t in expected]


@pytest.mark.parametrize("cron", ["* * * *", "61 * * * *", "0 0 * * mon-", "0 0 5-1 * *", "*/0 * * * *"])
def test_a_bad_cron_is_refused_when_the_calendar_is_read(cron):
    with pytest.raises(ValueError, match="cron"):
        Entry(name="bad", flow="e2e", frequency="daily", environment="staging", cron=cron)
