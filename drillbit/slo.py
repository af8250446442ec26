"""SLO math: error budgets, budget status and multiwindow burn rates.

Numbers come from VirtEngine's SLI_SLO_SLA (targets, 28-day windows, budget status levels) and ERROR_BUDGET_POLICY
(burn-rate thresholds and windows). The two documents disagree on who is paged at which burn rate; Drillbit follows
ERROR_BUDGET_POLICY (the dedicated policy): 2x over 1 h → warning, 5x over 15 min → page on-call, 10x over 5 min →
page the incident commander; multiwindow confirmation (short AND long window) per tier: tier 0 1 h + 6 h, tier 1
2 h + 12 h, tier 2 4 h + 24 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import pandas as pd

WINDOW_DAYS = 28


def error_budget(target: float, window: timedelta = timedelta(days=WINDOW_DAYS)) -> timedelta:
    """Allowed bad time for an availability target over the window: (1 - target) × window.

    >>> round(error_budget(0.999).total_seconds() / 60, 2)
    40.32
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"SLO target must be between 0 and 1 (exclusive), got {target}")
    return (1.0 - target) * window


class BudgetStatus(StrEnum):
    HEALTHY = "healthy"  # > 50 % remaining
    WARNING = "warning"  # 25-50 %
    CRITICAL = "critical"  # 5-25 %
    DEPLETED = "depleted"  # < 5 %


def budget_status(remaining_fraction: float) -> BudgetStatus:
    if remaining_fraction > 0.50:
        return BudgetStatus.HEALTHY
    if remaining_fraction >= 0.25:
        return BudgetStatus.WARNING
    if remaining_fraction >= 0.05:
        return BudgetStatus.CRITICAL
    return BudgetStatus.DEPLETED


@dataclass(frozen=True)
class BudgetReport:
    target: float
    window: timedelta
    total_events: int
    bad_events: int
    sli: float  # good / total over the window (1.0 when there are no events)
    budget_fraction_used: float  # bad fraction / allowed bad fraction
    remaining_fraction: float  # 1 - used, floored at 0 would hide overspend, so it may go negative
    status: BudgetStatus

    @property
    def budget_minutes(self) -> float:
        return error_budget(self.target, self.window).total_seconds() / 60


def budget_report(ok: pd.Series, target: float, window: timedelta = timedelta(days=WINDOW_DAYS)) -> BudgetReport:
    """Event-based error budget over a window from a boolean series indexed by timestamp (the newest time ends it).

    Each sample is one event (a synthetic check, a request); the budget is the allowed fraction of bad events.
    """
    error_budget(target, window)  # validates the target
    if len(ok):
        end = ok.index.max()
        ok = ok[ok.index > end - window]
    total = len(ok)
    bad = int((~ok.astype(bool)).sum())
    allowed = 1.0 - target
    bad_fraction = bad / total if total else 0.0
    used = bad_fraction / allowed
    remaining = 1.0 - used
    return BudgetReport(
        target=target,
        window=window,
        total_events=total,
        bad_events=bad,
        sli=1.0 - bad_fraction,
        budget_fraction_used=used,
        remaining_fraction=remaining,
        status=budget_status(remaining),
    )


def burn_rate(ok: pd.Series, target: float, window: timedelta, now: pd.Timestamp | None = None) -> float:
    """How many times faster than sustainable the budget burned over the last ``window``.

    burn rate = (bad fraction in the window) / (1 - target); 1.0 spends exactly the budget over the SLO period.
    Returns 0.0 when the window holds no events.
    """
    error_budget(target)
    if not len(ok):
        return 0.0
    now = now if now is not None else ok.index.max()
    recent = ok[(ok.index > now - window) & (ok.index <= now)]
    if not len(recent):
        return 0.0
    bad_fraction = float((~recent.astype(bool)).sum()) / len(recent)
    return bad_fraction / (1.0 - target)


@dataclass(frozen=True)
class BurnRule:
    name: str
    threshold: float
    short: timedelta
    long: timedelta
    severity: str


# ERROR_BUDGET_POLICY thresholds; the long window confirms the short one (tier 0 windows by default).
BURN_RULES: tuple[BurnRule, ...] = (
    BurnRule("emergency", 10.0, timedelta(minutes=5), timedelta(hours=1), "page incident commander"),
    BurnRule("critical", 5.0, timedelta(minutes=15), timedelta(hours=1), "page on-call"),
    BurnRule("fast", 2.0, timedelta(hours=1), timedelta(hours=6), "warning"),
)

TIER_WINDOWS: dict[int, tuple[timedelta, timedelta]] = {
    0: (timedelta(hours=1), timedelta(hours=6)),
    1: (timedelta(hours=2), timedelta(hours=12)),
    2: (timedelta(hours=4), timedelta(hours=24)),
}


@dataclass(frozen=True)
class BurnStatus:
    rule: str
    threshold: float
    short_rate: float
    long_rate: float
    firing: bool
    severity: str


def multiwindow_burn(ok: pd.Series, target: float, now: pd.Timestamp | None = None) -> list[BurnStatus]:
    """Evaluate every burn rule: a rule fires when the rate over BOTH its short and its long window exceeds it."""
    out = []
    for rule in BURN_RULES:
        short = burn_rate(ok, target, rule.short, now)
        long = burn_rate(ok, target, rule.long, now)
        out.append(
            BurnStatus(
                rule.name, rule.threshold, short, long, short > rule.threshold and long > rule.threshold, rule.severity
            )
        )
    return out
