"""The one-writer criteria of a partitioned data-centre loss, graded on constructed writers' histories."""

from __future__ import annotations

from typing import Any

from drillbit.model import Outcome, Timeline
from drillbit.scenarios.dr import objectives as dr

PARTITION, FAILOVER, GRACE = 1_000.0, 1_010.0, 2.0


def w(key: str, side: str, at: float, acked: bool = True, primary: str | None = None) -> dict[str, Any]:
    primary = primary or ("old" if side == "stranded" else "new")
    return dr.WriteAttempt(key, side, at, at + 0.01 if acked else None, primary if acked else None).to_dict()


def history(writes: list[dict[str, Any]], present: list[str] | None = None, **extra: Any) -> Timeline:
    tl = Timeline()
    data = {"partition_at": PARTITION, "failover_at": FAILOVER, "grace_s": GRACE, "writes": writes}
    data["present"] = [x["key"] for x in writes if x["acked_at"] is not None] if present is None else present
    tl.event(dr.WRITERS_EVENT, "writers", **(data | extra))
    return tl


def fenced() -> list[dict[str, Any]]:
    """A healthy run: the old primary takes writes until it is fenced (inside the grace), then refuses them."""
    old = [w(f"s-{i:03d}", "stranded", 1_001.0 + i, acked=1_001.0 + i < FAILOVER + 1.0) for i in range(20)]
    api = [w(f"a-{i:03d}", "api", 1_001.0 + i, acked=1_001.0 + i > FAILOVER) for i in range(20)]
    return old + api


def grade(criterion, tl):
    return criterion.check(tl)


def test_a_fenced_old_primary_passes_with_both_sides_counted():
    writes = fenced()
    present = [x["key"] for x in writes if x["side"] == "api" and x["acked_at"]]  # old primary's history discarded
    v = grade(dr.one_writer_criterion(), history(writes, present))
    assert v.outcome is Outcome.PASS, v.reason
    assert v.evidence["old_primary_attempted_after_failover"] > 0
    assert v.evidence["old_primary_acknowledged_after_failover"] == 0
    assert v.evidence["new_primary_acknowledged_after_failover"] > 0
    assert v.evidence["first_acknowledged_by_old_primary"] == []


def test_an_old_primary_acknowledging_after_failover_and_grace_fails_listing_the_first_ten():
    old = [w(f"s-{i:03d}", "stranded", 1_001.0 + i) for i in range(30)]  # never fenced
    v = grade(dr.one_writer_criterion(), history(old + fenced()[20:]))
    assert v.outcome is Outcome.FAIL
    listed = v.evidence["first_acknowledged_by_old_primary"]
    assert len(listed) == 10 and listed[0]["key"] == "s-011"  # 1012.0 is the first attempt at/after 1010 + 2
    assert all(x["acked_at"] >= FAILOVER + GRACE and x["primary"] == "old" for x in listed)
    assert v.evidence["old_primary_acknowledged_after_failover"] == 19
    assert "s-011" in v.reason


def test_writes_acknowledged_by_the_old_primary_inside_the_grace_are_allowed():
    old = [w("s-1", "stranded", FAILOVER + 0.5), w("s-2", "stranded", FAILOVER + GRACE + 1, acked=False)]
    v = grade(dr.one_writer_criterion(), history(old, present=[]))
    assert v.outcome is Outcome.PASS and v.evidence["old_primary_acknowledged_total"] == 1


def test_no_stranded_attempt_after_failover_is_inconclusive_with_the_reason():
    old = [w("s-1", "stranded", 1_001.0)]
    v = grade(dr.one_writer_criterion(), history(old, harness_error="stranded writer crashed: boom"))
    assert v.outcome is Outcome.INCONCLUSIVE and "boom" in v.reason


def test_no_failover_or_no_history_is_inconclusive():
    assert grade(dr.one_writer_criterion(), Timeline()).outcome is Outcome.INCONCLUSIVE
    v = grade(dr.one_writer_criterion(), history(fenced(), failover_at=None))
    assert v.outcome is Outcome.INCONCLUSIVE and "failover did not complete" in v.reason


def test_every_acknowledged_write_surviving_passes():
    writes = fenced()
    v = grade(dr.no_discarded_ack_criterion(), history(writes))
    assert v.outcome is Outcome.PASS, v.reason
    assert v.evidence["attempted"] == {"api": 20, "stranded": 20} and v.evidence["lost_count"] == 0


def test_writes_acknowledged_by_a_primary_whose_history_is_discarded_fail_listing_them():
    writes = fenced()
    present = [x["key"] for x in writes if x["side"] == "api" and x["acked_at"]]
    v = grade(dr.no_discarded_ack_criterion(), history(writes, present))
    assert v.outcome is Outcome.FAIL
    lost = v.evidence["lost"]
    assert v.evidence["lost_count"] == 10 and [x["key"] for x in lost] == [f"s-{i:03d}" for i in range(10)]
    assert all(x["primary"] == "old" for x in lost) and "s-000" in v.reason


def test_writes_before_the_partition_are_not_graded_here():
    before = [w("early", "api", PARTITION - 5)]
    v = grade(dr.no_discarded_ack_criterion(), history(before + fenced()[20:], present=[]))
    lost = {x["key"] for x in v.evidence["lost"]}
    assert v.outcome is Outcome.FAIL and "early" not in lost


def test_nothing_attempted_is_inconclusive_and_everything_refused_is_a_failure():
    v = grade(dr.no_discarded_ack_criterion(), history([], harness_error="the stranded writer never connected"))
    assert v.outcome is Outcome.INCONCLUSIVE and "never connected" in v.reason
    refused = [w(f"a-{i}", "api", 1_001.0 + i, acked=False) for i in range(5)]
    v = grade(dr.no_discarded_ack_criterion(), history(refused))
    assert v.outcome is Outcome.FAIL and "refused all 5" in v.reason


def test_an_unread_surviving_history_is_inconclusive():
    v = grade(dr.no_discarded_ack_criterion(), _unread())
    assert v.outcome is Outcome.INCONCLUSIVE and "not read" in v.reason


def _unread() -> Timeline:
    tl = Timeline()
    tl.event(dr.WRITERS_EVENT, "writers", partition_at=PARTITION, writes=fenced(), present=None)
    return tl
