from datetime import timedelta

import pandas as pd
import pytest

from drillbit import slo


def series(oks, start="2026-01-01", freq="1min"):
    idx = pd.date_range(start, periods=len(oks), freq=freq)
    return pd.Series(oks, index=idx)


def test_error_budget_worked_examples():
    assert slo.error_budget(0.999).total_seconds() / 60 == pytest.approx(40.32)
    assert slo.error_budget(0.9995).total_seconds() / 60 == pytest.approx(20.16)  # "21 minutes" in SLI_SLO_SLA
    assert slo.error_budget(0.995).total_seconds() / 3600 == pytest.approx(3.36)
    assert slo.error_budget(0.99, timedelta(days=30)).total_seconds() / 3600 == pytest.approx(7.2)


@pytest.mark.parametrize("target", [0, 1, 1.5, -0.1])
def test_error_budget_rejects_impossible_targets(target):
    with pytest.raises(ValueError, match="between 0 and 1"):
        slo.error_budget(target)


def test_budget_report_counts_bad_events_in_the_window_only():
    # 1000 checks, 1 bad => 0.1 % bad of a 0.1 % budget => budget fully used
    oks = [True] * 999 + [False]
    r = slo.budget_report(series(oks), 0.999)
    assert (r.total_events, r.bad_events) == (1000, 1)
    assert r.budget_fraction_used == pytest.approx(1.0)
    assert r.status == slo.BudgetStatus.DEPLETED
    # the same bad event 40 days ago is outside the 28-day window
    s = pd.concat([series([False], start="2026-01-01"), series([True] * 10, start="2026-02-15")])
    r = slo.budget_report(s, 0.999)
    assert r.bad_events == 0 and r.remaining_fraction == 1.0 and r.status == slo.BudgetStatus.HEALTHY


@pytest.mark.parametrize(
    ("remaining", "status"),
    [(0.9, "healthy"), (0.5, "warning"), (0.25, "warning"), (0.2, "critical"), (0.05, "critical"), (0.01, "depleted")],
)
def test_budget_status_levels(remaining, status):
    assert slo.budget_status(remaining) == status


def test_burn_rate_is_bad_fraction_over_allowed_fraction():
    # last hour: 60 checks, 6 bad = 10 % bad; allowed 1 % => burn 10x
    oks = [True] * 300 + [True] * 54 + [False] * 6
    s = series(oks)
    assert slo.burn_rate(s, 0.99, timedelta(hours=1)) == pytest.approx(10.0)
    assert slo.burn_rate(s, 0.99, timedelta(hours=6)) == pytest.approx(6 / 360 / 0.01)
    assert slo.burn_rate(series([]), 0.99, timedelta(hours=1)) == 0.0


def test_multiwindow_needs_both_windows():
    # a 5-minute spike of failures after 6 h of success: short windows burn hot, 1 h window confirms 10x? no
    oks = [True] * 355 + [False] * 5
    rules = {b.rule: b for b in slo.multiwindow_burn(series(oks), 0.999)}
    em = rules["emergency"]
    assert em.short_rate == pytest.approx(1000.0)  # 5 of 5 bad / 0.001
    assert em.long_rate == pytest.approx(5 / 60 / 0.001)
    assert em.firing
    # a single failure long ago: nothing fires
    quiet = {b.rule: b for b in slo.multiwindow_burn(series([False] + [True] * 400), 0.999)}
    assert not any(b.firing for b in quiet.values())
