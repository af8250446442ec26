"""The resilience score: one number (0-100) per environment from the latest verdicts — the scoring rule, in one place.

For every test type t with weight w(t):
- result(t) = 1.0 if its latest completed run passed, 0.5 if inconclusive, 0.0 if it failed or never ran;
- freshness(t) = 1.0 while the latest run is younger than the test type's calendar period p(t); after that it halves
  for every further period (0.5 ** ((age - p) / p)), as Gremlin's score decays for stale tests;
- score = 100 × Σ w(t) · result(t) · freshness(t) / Σ w(t).
Weights follow the testing calendar: continuous checks and chaos weigh most; every test type counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from drillbit.model import RunRecord

WEIGHTS: dict[str, float] = {
    "synthetic": 15,
    "e2e": 10,
    "chaos-pod-kill": 8,
    "chaos-network-latency": 6,
    "chaos-disk-pressure": 6,
    "chaos-db-failure": 8,
    "load": 6,
    "stress": 4,
    "soak": 4,
    "cascading-failure": 5,
    "split-brain": 5,
    "resource-exhaustion": 5,
    "dr-drill": 10,
    "gameday": 8,
}
RESULT = {"pass": 1.0, "inconclusive": 0.5}
DAY = 86400.0


@dataclass(frozen=True)
class Component:
    test_type: str
    weight: float
    outcome: str  # pass | fail | inconclusive | never
    age_s: float | None
    period_s: float
    freshness: float
    points: float  # contribution to the 0-100 score


def freshness(age_s: float, period_s: float) -> float:
    if age_s <= period_s:
        return 1.0
    return 0.5 ** ((age_s - period_s) / period_s)


def resilience_score(
    records: list[RunRecord], periods_s: dict[str, float], now: float | None = None, environment: str | None = None
) -> tuple[float, list[Component]]:
    """Score and its breakdown. ``periods_s`` maps a test type to its calendar period (default one week)."""
    now = now or time.time()
    latest: dict[str, RunRecord] = {}
    for r in sorted(records, key=lambda r: r.started_at):
        if r.status in ("completed", "aborted") and (environment is None or r.environment == environment):
            latest[r.flow] = r
    total = sum(WEIGHTS.values())
    parts = []
    for test_type, weight in WEIGHTS.items():
        period = periods_s.get(test_type, 7 * DAY)
        r = latest.get(test_type)
        if r is None:
            parts.append(Component(test_type, weight, "never", None, period, 0.0, 0.0))
            continue
        age = now - (r.finished_at or r.started_at)
        fresh = freshness(age, period)
        result = RESULT.get(r.outcome, 0.0)
        parts.append(Component(test_type, weight, r.outcome, age, period, fresh, 100 * weight * result * fresh / total))
    return round(sum(p.points for p in parts), 1), parts
