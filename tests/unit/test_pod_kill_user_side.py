"""Pod kill graded from the client's side: a restarted node is back when it serves the current chain (not when its
health endpoint says so), and a page counts only when it reached the pager (crafted timelines, no sandbox)."""

from __future__ import annotations

from drillbit import criteria
from drillbit.model import Outcome, Sample, Timeline

KILL = 100.0
PEERS = ["serving:node-1", "serving:node-2"]


def chain_at(t: float) -> int:
    return int(t)  # one block a second


def timeline(node_height, *, answers_from: float = 102.0, health_from: float = 101.5, end: float = 130.0) -> Timeline:
    """Every 0.5 s from t=90: the two peers serve the chain; node-0 (killed at 100) is down until ``answers_from``,
    then serves ``node_height(t)``; its health check is ok from ``health_from``."""
    tl = Timeline()
    tl.event("injected", "node-0", at=KILL)
    t = 90.0
    while t <= end:
        for peer in PEERS:
            tl.add(Sample(peer, t, True, 0.01, value=float(chain_at(t))))
        down = KILL <= t < answers_from
        if down:
            tl.add(Sample("serving:node-0", t, False, 0.01, error="ConnectError: connection refused"))
        else:
            tl.add(Sample("serving:node-0", t, True, 0.01, value=float(node_height(t))))
        tl.add(Sample("health:node-0", t, not (KILL <= t < health_from), 0.01))
        t += 0.5
    return tl


def grade(tl: Timeline, seconds: float = 30.0):
    c = criteria.serves_current_chain(
        "node-0 back within 30 s", "node-0", "serving:node-0", PEERS, seconds, health="health:node-0"
    )
    return c.check(tl)


def test_a_node_that_replays_and_follows_the_chain_is_back_when_it_caught_up():
    # replays 20 blocks a second from 0 after its restart at 102, then follows the chain
    def height(t: float) -> int:
        return chain_at(t) if t < KILL else min(chain_at(t), int((t - 102.0) * 20))

    v = grade(timeline(height))
    assert v.outcome == Outcome.PASS, v
    assert v.evidence["node"] == "node-0"
    assert v.evidence["height_before_kill"] == 99
    assert v.evidence["answered_after_s"] == 2.0
    assert v.evidence["health_ok_after_s"] == 1.5  # evidence only
    assert 7.0 <= v.evidence["recovery_s"] <= 8.0  # 20 (t-102) ≥ t - 2 at t ≈ 107.4
    assert v.evidence["chain_height_then"] - v.evidence["caught_up_at_height"] <= 2
    assert v.evidence["advancing"] is True


def test_a_healthy_node_stuck_at_its_pre_crash_height_never_came_back():
    v = grade(timeline(lambda t: min(chain_at(t), 99)))
    assert v.outcome == Outcome.FAIL, v
    assert v.evidence["health_ok_after_s"] == 1.5  # its health endpoint said ok all along
    assert v.evidence["served_height"] == 99 and v.evidence["chain_height"] == 130
    assert v.evidence["lag_blocks"] == 31
    assert "never caught up" in v.reason and "served height 99 while the chain was at 130" in v.reason
    assert "its height stayed at 99" in v.reason
    assert "recovery_s" not in v.evidence


def test_close_to_the_chain_but_not_advancing_is_not_caught_up():
    # restarted at 102 serving height 101: 1 block behind at first, then stuck there while the chain moves on
    v = grade(timeline(lambda t: min(chain_at(t), 101)))
    assert v.outcome == Outcome.FAIL, v
    assert v.evidence["served_height"] == 101 and v.evidence["lag_blocks"] == 29


def test_catching_up_after_the_limit_fails_with_the_time_it_took():
    def height(t: float) -> int:
        return min(chain_at(t), 99) if t < 120.0 else chain_at(t)

    v = grade(timeline(height), seconds=10.0)
    assert v.outcome == Outcome.FAIL, v
    assert v.evidence["recovery_s"] == 20.0
    assert "20.0 s after injected" in v.reason


def test_a_node_whose_rpc_never_answers_fails_with_the_last_error():
    v = grade(timeline(lambda t: chain_at(t), answers_from=1e9))
    assert v.outcome == Outcome.FAIL, v
    assert "served no block" in v.reason
    assert "connection refused" in v.evidence["last_error"]


def test_without_the_peers_heights_the_chain_is_unknown_inconclusive():
    tl = Timeline()
    tl.event("injected", "node-0", at=KILL)
    for i in range(20):
        tl.add(Sample("serving:node-0", KILL + i, True, 0.01, value=float(i)))
    v = grade(tl)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "the chain's height is unknown" in v.reason


def test_no_kill_recorded_is_inconclusive():
    tl = timeline(lambda t: chain_at(t))
    tl.events.clear()
    assert grade(tl).outcome == Outcome.INCONCLUSIVE


# -------------------------------------------------------------------------------- the alerting path, end to end


def alert_timeline(*, fired: bool, paged: bool) -> Timeline:
    tl = Timeline()
    tl.event("inject", "kill", at=KILL)
    if fired:
        tl.event("alert_firing", "NodeDown", at=KILL + 12, alertname="NodeDown", component="node-0")
    if paged:
        tl.event("page", "NodeDown", at=KILL + 13, alertname="NodeDown", page_id="1")
    return tl


def test_an_alert_alertmanager_held_that_never_reached_the_pager_fails_paged_and_says_so():
    tl = alert_timeline(fired=True, paged=False)
    assert criteria.alerts_fired("alerts fired", ["NodeDown"]).check(tl).outcome == Outcome.PASS
    v = criteria.paged("on-call paged", ["NodeDown"], 300).check(tl)
    assert v.outcome == Outcome.FAIL
    assert "NodeDown fired in Alertmanager at" in v.reason and "but never reached the pager" in v.reason
    assert v.evidence["fired_in_alertmanager"] == ["NodeDown"]
    assert v.evidence["fired_s_after_fault"] == 12.0 and v.evidence["pages"] == 0


def test_no_alert_at_all_is_a_different_failure():
    v = criteria.paged("on-call paged", ["NodeDown"], 300).check(alert_timeline(fired=False, paged=False))
    assert v.outcome == Outcome.FAIL
    assert "none of them fired" in v.reason


def test_a_page_that_reached_the_pager_passes():
    v = criteria.paged("on-call paged", ["NodeDown"], 300).check(alert_timeline(fired=True, paged=True))
    assert v.outcome == Outcome.PASS and v.evidence["alertname"] == "NodeDown"
