"""Database failure graded from the client's side: each API weakness of the outage's aftermath (stale reads served
as fresh, queued writes applied twice, queued writes applied out of order) is caught by chaos-db-failure with the
right criterion failing and the evidence listing the stale reads / duplicated / reordered writes, while the other
criteria still pass. Each weakness gets a sandbox of its own (offset 8000, one at a time, torn down after its
tests); the same criteria passing on the healthy sandbox is asserted in test_flows_chaos.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillbit.faults.ledger import Ledger
from tests.integration.helpers import client_for, running_sandbox

pytestmark = pytest.mark.integration

RUN_DIR = Path("/tmp/drillbit-test-e1")
OFFSET = 8000
FRESH = "reads fresh after recovery"
EXACTLY_ONCE = "each acknowledged write applied exactly once, in order"
OTHERS = ("cached responses", "writes queued, none lost", "full recovery")


@pytest.fixture(
    scope="module", params=["stale-cache-after-recovery", "duplicate-queued-writes", "reordered-queued-writes"]
)
def weak(request):
    with running_sandbox(RUN_DIR, OFFSET, [request.param]) as ep:
        yield request.param, ep


@pytest.fixture
def record(weak, prefect_server, monkeypatch):
    """chaos-db-failure (compressed) against the weakened sandbox; flows resolve it from DRILLBIT_SANDBOX_DIR."""
    from flows.chaos_db_failure import DbFailureParams, chaos_db_failure

    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(RUN_DIR))
    params = DbFailureParams(duration=10.0, baseline=3.0, recovery=5.0, verify_timeout=12.0)
    rec = chaos_db_failure(params=params)
    assert Ledger().pending() == []
    for v in rec["verdicts"]:  # shown with -rA: the verdicts and what they name
        print(f"{weak[0]}: {v['criterion']}: {v['outcome']}: {v['reason']}")
    return weak[0], {v["criterion"]: v for v in rec["verdicts"]}, rec


def test_the_weakness_is_caught_by_its_criterion_with_the_items_listed(record, weak):
    name, v, rec = record
    assert rec["outcome"] == "fail"
    for other in OTHERS:  # the outage itself was handled: the weakness is in the aftermath only
        assert v[other]["outcome"] == "pass", (other, v[other])
    history, fresh = v[EXACTLY_ONCE], v[FRESH]
    queued = v["writes queued, none lost"]["evidence"]["queued"]
    assert queued >= 2, v["writes queued, none lost"]
    if name == "stale-cache-after-recovery":
        assert fresh["outcome"] == "fail", fresh
        last = fresh["evidence"]["last"]
        # the pinned answer claims to be a fresh cache hit while trailing the chain by more than the bound
        assert last["x_cache"] == "hit" and last["lag_blocks"] > fresh["evidence"]["max_lag_blocks"], last
        assert "blocks behind" in fresh["reason"] and fresh["evidence"]["stale_reads"]
        assert history["outcome"] == "pass", history
        with client_for(weak[1]) as c:  # the health endpoint says all is well: evidence, never the verdict
            assert c.api_get("/health").json()["database"] == "up"
    elif name == "duplicate-queued-writes":
        assert history["outcome"] == "fail" and "duplicated" in history["reason"], history
        ev = history["evidence"]
        assert ev["duplicated_count"] >= min(queued, 2) and not ev["lost"] and not ev["phantom"], ev
        assert all(d["version"] == 2 and d["writes"] == 1 for d in ev["duplicated"]), ev["duplicated"]
        assert fresh["outcome"] == "pass", fresh
    else:
        assert history["outcome"] == "fail" and "reordered" in history["reason"], history
        ev = history["evidence"]
        assert ev["reordered_count"] >= 1 and not ev["duplicated"] and not ev["lost"], ev
        r = ev["reordered"][0]
        assert r["seq"] > r["applied_before"]["seq"] and r["applied_at"] < r["applied_before"]["applied_at"], r
        assert fresh["outcome"] == "pass", fresh
