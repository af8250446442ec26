"""Grade-phase task: criteria over the timeline. Never retried: grading the same data twice gives the same answer."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from drillbit import runner
from drillbit.model import Criterion, Timeline, Verdict


@task(cache_policy=NO_CACHE, name="grade")
def grade(timeline: Timeline, criteria: list[Criterion]) -> list[Verdict]:
    return runner.grade(timeline, criteria)
