import pytest

from drillbit.model import Outcome, RunRecord, Verdict
from drillbit.score import DAY, WEIGHTS, freshness, resilience_score


def rec(flow, outcome, at, env="staging"):
    r = RunRecord(flow, env, {}, started_at=at)
    r.finish([Verdict("x", Outcome(outcome), "")])
    r.finished_at = at
    return r


def test_everything_fresh_and_passing_scores_100():
    now = 1_000 * DAY
    records = [rec(t, "pass", now - 60) for t in WEIGHTS]
    score, parts = resilience_score(records, {}, now=now)
    assert score == 100.0 and all(p.freshness == 1.0 for p in parts)


def test_failures_and_missing_types_cost_their_weight():
    now = 1_000 * DAY
    records = [rec(t, "pass", now - 60) for t in WEIGHTS if t not in ("synthetic", "gameday")]
    records.append(rec("synthetic", "fail", now - 60))
    score, parts = resilience_score(records, {}, now=now)
    lost = (WEIGHTS["synthetic"] + WEIGHTS["gameday"]) / sum(WEIGHTS.values()) * 100
    assert score == pytest.approx(100 - lost, abs=0.1)
    assert {p.test_type: p.outcome for p in parts}["gameday"] == "never"


def test_a_stale_test_type_decays_by_half_per_period():
    assert freshness(5 * DAY, 7 * DAY) == 1.0
    assert freshness(14 * DAY, 7 * DAY) == pytest.approx(0.5)
    assert freshness(21 * DAY, 7 * DAY) == pytest.approx(0.25)


def test_only_the_latest_run_of_a_type_counts_and_environments_are_separate():
    now = 1_000 * DAY
    records = [rec("e2e", "fail", now - 3 * DAY), rec("e2e", "pass", now - DAY), rec("e2e", "fail", now, env="prod")]
    _, parts = resilience_score(records, {"e2e": DAY * 2}, now=now, environment="staging")
    e2e = next(p for p in parts if p.test_type == "e2e")
    assert e2e.outcome == "pass" and e2e.freshness == 1.0
