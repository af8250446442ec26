"""The write-history checker (exactly once, in order) on crafted histories, and the database-failure judges that
grade its event and the read-freshness event: verdicts and the listed items, not only a flag."""

from __future__ import annotations

from drillbit.history import Applied, Write, WriteCheck, check_writes
from drillbit.model import Outcome
from drillbit.scenarios.chaos.database_failure import EXACTLY_ONCE, FRESH, exactly_once, fresh_after_recovery


def ts(n: int) -> str:  # the API's RFC 3339 applied_at: sortable as text
    return f"2026-12-04T21:00:{n:02d}.000000Z"


def acked(n: int, key: str | None = None) -> Write:
    return Write(key or f"k-{n}", n, "ok", n)


def clean(n: int = 5) -> tuple[list[Write], list[Applied]]:
    return [acked(i) for i in range(1, n + 1)], [Applied(f"k-{i}", i, 1, ts(i)) for i in range(1, n + 1)]


def test_a_clean_history_is_valid():
    writes, applied = clean()
    r = check_writes(writes, applied)
    assert r.valid and r.acknowledged == 5 and r.observed == 5
    assert all(r.to_dict()[f"{k}_count"] == 0 for k in WriteCheck.KINDS)
    assert "exactly once" in r.summary()


def test_a_lost_write_is_listed():
    writes, applied = clean()
    r = check_writes(writes, [a for a in applied if a.key != "k-3"])
    assert not r.valid and r.lost == [{"key": "k-3", "seq": 3}]
    assert r.summary() == "1 lost"


def test_a_write_applied_twice_is_listed_as_duplicated():
    writes, applied = clean()
    applied[1] = Applied("k-2", 2, 2, ts(2))
    r = check_writes(writes, applied)
    assert r.duplicated == [{"key": "k-2", "version": 2, "writes": 1}] and not r.lost and not r.reordered


def test_writes_applied_out_of_acknowledgement_order_are_listed_with_the_one_they_overtook():
    writes, _ = clean()
    # 3 and 4 applied before 2 (a queue batch 2, 3, 4 applied newest first)
    order = {1: 1, 2: 9, 3: 7, 4: 8, 5: 10}
    applied = [Applied(f"k-{i}", i, 1, ts(order[i])) for i in range(1, 6)]
    r = check_writes(writes, applied)
    assert [x["seq"] for x in r.reordered] == [3, 4]
    assert r.reordered[0]["applied_before"] == {"key": "k-2", "seq": 2, "applied_at": ts(9)}
    assert not r.valid and not r.lost and not r.duplicated


def test_a_newer_acknowledged_write_overwritten_by_an_older_one_is_lost():
    # one key, three acknowledged writes; the register holds the second one's value
    writes = [acked(1, "reg"), acked(2, "reg"), acked(3, "reg")]
    r = check_writes(writes, [Applied("reg", 2, 3, ts(5))])
    assert r.lost == [{"key": "reg", "seq": 3, "holds_seq": 2}] and not r.duplicated


def test_phantoms_a_failed_write_applied_and_a_key_never_written():
    writes, applied = clean(3)
    writes.append(Write("k-4", 4, "fail", 4))
    applied += [Applied("k-4", 4, 1, ts(4)), Applied("k-99", "x", 1, ts(5))]
    r = check_writes(writes, applied)
    assert r.phantom == [
        {"key": "k-4", "value": 4, "failed_write": 4},
        {"key": "k-99", "value": "x", "failed_write": None},
    ]


def test_unknown_writes_may_be_applied_once_or_not_at_all_but_never_twice():
    writes = [acked(1), Write("k-2", 2, "info", 2), Write("k-3", 3, "info", 3), acked(4)]
    applied = [Applied("k-1", 1, 1, ts(1)), Applied("k-2", 2, 1, ts(2)), Applied("k-4", 4, 1, ts(4))]
    r = check_writes(writes, applied)
    assert r.valid and r.unknown_applied == 1
    r = check_writes(writes, [*applied[:1], Applied("k-2", 2, 2, ts(2)), applied[2]])
    assert r.duplicated == [{"key": "k-2", "version": 2, "writes": 1}]


def test_a_store_that_says_nothing_about_versions_or_order_is_checked_as_a_set():
    writes, _ = clean(3)
    r = check_writes(writes, [Applied(f"k-{i}", i) for i in (1, 3)])
    assert r.lost == [{"key": "k-2", "seq": 2}] and not r.duplicated and not r.reordered


def test_evidence_lists_at_most_ten_of_each_kind_with_the_count():
    writes = [acked(i) for i in range(1, 31)]
    r = check_writes(writes, [Applied(f"k-{i}", i, 3, ts(i % 60)) for i in range(1, 31)])
    d = r.to_dict()
    assert d["duplicated_count"] == 30 and len(d["duplicated"]) == 10 and d["duplicated"][0]["key"] == "k-1"


# ------------------------------------------------------------------------------------------------ the judges


def history_event(writes, applied, **extra) -> dict:
    r = check_writes(writes, applied)
    e = {"read": True, "summary": r.summary(), "queued": 2, "truncated": False, **r.to_dict()}
    e.update({"version_known": True, "order_known": True, **extra})
    return e


def test_exactly_once_passes_a_clean_history_and_fails_with_the_duplicates_listed():
    writes, applied = clean()
    v = exactly_once(history_event(writes, applied))
    assert v.criterion == EXACTLY_ONCE and v.outcome == Outcome.PASS
    applied[3] = Applied("k-4", 4, 2, ts(4))
    v = exactly_once(history_event(writes, applied))
    assert v.outcome == Outcome.FAIL and v.reason == "1 duplicated"
    assert v.evidence["duplicated"] == [{"key": "k-4", "version": 2, "writes": 1}]


def test_exactly_once_is_inconclusive_only_when_the_api_cannot_tell():
    writes, applied = clean()
    v = exactly_once(history_event(writes, applied, version_known=False))
    assert v.outcome == Outcome.INCONCLUSIVE and "duplicates" in v.reason
    v = exactly_once({"read": False, "error": "HTTPError: 503", "acknowledged": 5})
    assert v.outcome == Outcome.FAIL and "503" in v.reason  # the system did not answer: a failure


def freshness_event(**last) -> dict:
    doc = {"path": "/api/v1/market/orders", "status": 200, "x_cache": "miss", "indexed_height": 100}
    doc.update(chain_height=101, lag_blocks=1, queued_unseen=0, queued_unseen_keys=[])
    doc.update(last)
    fresh = doc["status"] == 200 and doc["lag_blocks"] <= 5 and not doc["queued_unseen"]
    return {
        "fresh": fresh,
        "measured": doc["indexed_height"] is not None,
        "reads": 1 if fresh else 30,
        "waited_s": 0.1 if fresh else 15.0,
        "max_lag_blocks": 5,
        "queued": 8,
        "last": doc,
        "stale_reads": [] if fresh else [doc],
        "stale_count": 0 if fresh else 30,
    }


def test_fresh_reads_pass_and_a_pinned_stale_answer_fails_naming_its_height_against_the_chain():
    v = fresh_after_recovery(freshness_event())
    assert v.criterion == FRESH and v.outcome == Outcome.PASS
    v = fresh_after_recovery(freshness_event(x_cache="hit", indexed_height=40, lag_blocks=61, chain_height=101))
    assert v.outcome == Outcome.FAIL
    assert "indexed height 40 against the chain's 101 (61 blocks behind, X-Cache hit)" in v.reason
    assert v.evidence["stale_reads"][0]["indexed_height"] == 40


def test_queued_writes_missing_from_the_listing_are_stale_reads():
    v = fresh_after_recovery(freshness_event(queued_unseen=3, queued_unseen_keys=["a", "b", "c"]))
    assert v.outcome == Outcome.FAIL and "3 of 8 writes queued during the outage not listed" in v.reason
    assert v.evidence["last"]["queued_unseen_keys"] == ["a", "b", "c"]
