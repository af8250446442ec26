"""Work resumes after a provider kill: the sandbox provider's two restart weaknesses change only what they name, and
the pod-kill workload's criteria grade what a tenant reads (lease status, bids on chain) with the evidence listed."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from vesandbox import provider as prov

from drillbit.client import BroadcastResult, TxResult, order_id_path
from drillbit.model import Outcome, Sample, Timeline
from drillbit.scenarios.chaos import provider_workload as pw

LOG = logging.getLogger("test")


def settings(*weaknesses: str) -> prov.Settings:
    raw = {"name": "provider", "provider": "provider1", "listen": {"port": 1}, "node_rpc": "x", "node_rest": "y"}
    return prov.parse_settings({**raw, "weaknesses": list(weaknesses), "provision_delay": 0.0})


def order(dseq: int, height: int) -> dict:
    ident = {"owner": "t", "dseq": str(dseq), "gseq": "1", "oseq": "1"}
    return {"order": {"id": ident, "state": "open", "created_at": str(height)}}


def lease(dseq: int) -> dict:
    return {"lease": {"id": {"owner": "t", "dseq": str(dseq), "gseq": "1", "oseq": "1", "provider": "provider1"}}}


class FakeNode:
    """The node link as the daemon uses it: lists (orders, leases, own bids) and broadcasts (all accepted)."""

    def __init__(self) -> None:
        self.orders: list[dict] = []
        self.leases: list[dict] = []
        self.broadcast_orders: list[str] = []

    async def list_all(self, path: str, filters: dict, key: str) -> list[dict]:
        return {prov.ORDERS_LIST: self.orders, prov.LEASES_LIST: self.leases, prov.BIDS_LIST: []}[path]

    async def broadcast(self, tx: bytes) -> dict:
        import json

        self.broadcast_orders.append(str(json.loads(tx)["msg"]["order_id"]["dseq"]))
        return {"code": 0, "hash": prov.tx_hash(tx)}

    async def tx_result(self, hash_hex: str) -> dict | None:
        return None

    async def height(self) -> int:
        return 10


class FakeEngine:
    async def evaluate(self, order_id: dict) -> dict:
        return {"order_id": order_id, "price": {"denom": "uve", "amount": "10"}}


def bid_on(weaknesses: tuple[str, ...]) -> list[str]:
    """The daemon starts at height 10: order 1 is open, order 2 in the mempool (created at 11), order 3 created later
    (at 13): the orders it bids on."""
    node = FakeNode()
    node.orders = [order(1, 9), order(2, 11)]
    bidder = prov.Bidder(settings(*weaknesses), node, FakeEngine(), prov.Metrics(), LOG)  # type: ignore[arg-type]

    async def go() -> None:
        await bidder.cycle()
        node.orders.append(order(3, 13))
        await bidder.cycle()

    asyncio.run(go())
    return sorted(node.broadcast_orders)


def test_a_restarted_provider_bids_on_the_orders_open_before_it_started():
    assert bid_on(()) == ["1", "2", "3"]


def test_bids_lost_on_restart_skips_only_the_orders_open_before_start():
    assert bid_on((prov.WEAKNESS_BIDS_LOST,)) == ["3"]
    assert bid_on((prov.WEAKNESS_FORGETS_LEASES,)) == ["1", "2", "3"]  # the other weakness leaves bidding alone


def workloads(weaknesses: tuple[str, ...]) -> dict[str, str]:
    """Lease 1 active when the daemon starts, lease 2 after its first cycle: each workload's state at the end."""
    node = FakeNode()
    node.leases = [lease(1)]
    provisioner = prov.Provisioner(settings(*weaknesses), node, prov.Metrics(), LOG)  # type: ignore[arg-type]

    async def go() -> None:
        await provisioner.cycle()
        node.leases.append(lease(2))
        await provisioner.cycle()
        await asyncio.gather(*list(provisioner._tasks.values()))  # the provisioning tasks (provision_delay 0)
        await provisioner.cycle()

    asyncio.run(go())
    return {key[1]: w.state for key, w in provisioner.workloads.items()}


def test_a_restarted_provider_restores_its_active_leases():
    assert workloads(()) == {"1": "running", "2": "running"}


def test_provider_forgets_leases_leaves_only_the_leases_active_before_start_unknown():
    assert workloads((prov.WEAKNESS_FORGETS_LEASES,)) == {"1": "unknown", "2": "running"}
    assert workloads((prov.WEAKNESS_BIDS_LOST,)) == {"1": "running", "2": "running"}


# ---------------------------------------------------------------------------------------------- the workload


class FakeClient:
    """What the workload reads: lease status from the provider's API, bids off the chain; txs all committed."""

    def __init__(self) -> None:
        self.status: dict[str, dict | None] = {}
        self.bid_list: list[dict] = []
        self.failed_txs: set[str] = set()
        self.tx_builder = pw.ProviderWorkload  # unused here

    def lease_status(self, lease_id: dict) -> dict | None:
        return self.status.get(order_id_path(lease_id))

    def bids(self, **filters) -> list[dict]:
        return self.bid_list

    def wait_tx(self, tx_hash: str, timeout: float = 30.0) -> TxResult:
        return TxResult(
            tx_hash, 5, 1 if tx_hash in self.failed_txs else 0, "bad" if tx_hash in self.failed_txs else "", []
        )

    def broadcast(self, tx: bytes) -> BroadcastResult:
        raise AssertionError("not broadcast in these tests")


class FakeRun:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline


def lease_id(dseq: int) -> dict:
    return {"owner": pw.OWNER, "dseq": dseq, "gseq": 1, "oseq": 1, "provider": "provider1"}


def order_id(dseq: int) -> dict:
    return {"owner": pw.OWNER, "dseq": dseq, "gseq": 1, "oseq": 1}


def workload(client: FakeClient, limit: float = 5.0) -> pw.ProviderWorkload:
    work = pw.ProviderWorkload(client, leases=2, orders=2, limit=limit, interval=0.1, setup_timeout=1.0)  # type: ignore[arg-type]
    work.provider = "provider1"
    for d in (1, 2):
        work.leases[order_id_path(lease_id(d))] = lease_id(d)
    for d in (3, 4):
        work.orders[order_id_path(order_id(d))] = order_id(d)
        work.sent[order_id_path(order_id(d))] = f"TX{d}"
    return work


def killed_at(ts: float) -> Timeline:
    tl = Timeline()
    tl.begin_phase("baseline", ts - 10)
    tl.event("injected", "killed provider", at=ts)
    return tl


def grade(work: pw.ProviderWorkload, tl: Timeline) -> dict[str, object]:
    return {c.name: c.grade(tl) for c in work.criteria()}


def test_both_pass_when_the_restarted_provider_resumes_its_leases_and_bids():
    client = FakeClient()
    work = workload(client)
    kill = time.time() - 60  # long ago: collect takes one look, no waiting
    tl = killed_at(kill)
    for ts, ok in [(kill - 1, True), (kill + 0.5, False), (kill + 2.0, True)]:
        tl.add(Sample(pw.LEASES_PROBE, ts, ok, 0.01, error=None if ok else "provider down"))
    work.bid_seen = {order_id_path(order_id(3)): kill + 1.5, order_id_path(order_id(4)): kill + 2.5}
    client.status = {order_id_path(lease_id(d)): {"state": "running", "healthy": True} for d in (1, 2)}
    client.bid_list = [{"id": {**order_id(d), "provider": "provider1"}} for d in (3, 4)]
    work.collect(FakeRun(tl))
    v = grade(work, tl)
    assert v[pw.LEASES_RESUMED].outcome == Outcome.PASS
    assert v[pw.LEASES_RESUMED].evidence["resumed_s"] == pytest.approx(2.0, abs=0.01)
    assert v[pw.BIDS_SETTLED].outcome == Outcome.PASS
    assert v[pw.BIDS_SETTLED].evidence["slowest_bid_s"] == pytest.approx(2.5, abs=0.01)


def test_leases_not_restored_fail_listing_each_lease_and_its_status():
    client = FakeClient()
    work = workload(client)
    kill = time.time() - 60
    tl = killed_at(kill)
    client.status = {order_id_path(lease_id(1)): {"state": "unknown", "healthy": False}}  # lease 2: 404
    client.bid_list = [{"id": {**order_id(d), "provider": "provider1"}} for d in (3, 4)]
    work.lease_states = [(kill + 3, {order_id_path(lease_id(1)): "unknown", order_id_path(lease_id(2)): "not found"})]
    work.collect(FakeRun(tl))
    v = grade(work, tl)
    leases = v[pw.LEASES_RESUMED]
    assert leases.outcome == Outcome.FAIL
    assert leases.evidence["not_running"] == [
        {"lease": order_id_path(lease_id(1)), "state": "unknown"},
        {"lease": order_id_path(lease_id(2)), "state": "not found"},
    ]
    assert "2 of 2 lease(s) not running" in leases.reason
    # bids seen only at collect time, i.e. after the limit: late is not "within the limit"
    assert v[pw.BIDS_SETTLED].outcome == Outcome.FAIL


def test_orders_never_bid_on_fail_listing_them_and_a_tx_that_never_committed_is_not_counted():
    client = FakeClient()
    client.failed_txs = {"TX4"}  # order 4 was never created: it cannot be missing a bid
    work = workload(client)
    kill = time.time() - 60
    tl = killed_at(kill)
    tl.add(Sample(pw.LEASES_PROBE, kill + 2, True, 0.01))
    client.status = {order_id_path(lease_id(d)): {"state": "running", "healthy": True} for d in (1, 2)}
    work.collect(FakeRun(tl))
    v = grade(work, tl)
    assert v[pw.LEASES_RESUMED].outcome == Outcome.PASS
    bids = v[pw.BIDS_SETTLED]
    assert bids.outcome == Outcome.FAIL
    assert bids.evidence["without_bid"] == [order_id_path(order_id(3))]
    assert bids.evidence["orders"] == 1
    assert "provider1" in bids.reason


def test_inconclusive_when_the_workload_could_not_be_set_up_or_nothing_was_killed():
    client = FakeClient()
    work = workload(client)
    v = grade(work, Timeline())
    assert {x.outcome for x in v.values()} == {Outcome.INCONCLUSIVE}
    assert all("not killed" in x.reason for x in v.values())
    work.setup_error = "PollTimeout: no bids received within 60 s"
    v = grade(work, killed_at(time.time()))
    assert all(x.outcome == Outcome.INCONCLUSIVE and "no bids received" in x.reason for x in v.values())


def test_the_workload_runs_only_when_the_provider_is_killed():
    class Env:
        class endpoints:
            provider = "http://127.0.0.1:1"

    assert pw.for_pod_kill(Env, "node", 2, 2, 30.0, 1.0) is None  # type: ignore[arg-type]
    assert pw.for_pod_kill(Env, "provider", 0, 0, 30.0, 1.0) is None  # type: ignore[arg-type]
