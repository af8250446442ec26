"""Tenant work in flight across a provider kill: does the restarted daemon resume what it was doing?

Before the kill, ``leases`` deployments are created, bid on and leased until their workloads run (read through the
provider's API, as a tenant reads them). The ``orders`` deployment txs are broadcast in the fault itself, a few
milliseconds before the SIGKILL, so their orders are open, without a bid, when the daemon dies (its bid would need
the order's block, its next poll and another block). Two monitors read, before, during and after the kill, the
leases' status (``provider-leases``) and the orders' bids (``provider-bids``); after the observation the hook keeps
reading them until both are settled or the limit is over, so the verdict never depends on how long was observed.

Criteria: every lease running before the kill is running and healthy again within ``resume_within`` seconds of it
(evidence: the leases that are not, with their status), and every order open at the kill has a bid from the provider
within the same limit (evidence: the orders still without one). Every deployment created here is closed at the end,
whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from drillbit import probes
from drillbit.client import ClientError, VirtEngineClient, client_for, order_id_path
from drillbit.config import ResolvedEnvironment
from drillbit.faults.base import Fault, Plan
from drillbit.faults.ledger import Handle
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.monitor import Monitor, monitor
from drillbit.poll import PollTimeout, wait_until
from drillbit.scenarios import e2e

LEASES_PROBE = "provider-leases"
BIDS_PROBE = "provider-bids"
LEASES_RESUMED = "leases running before the kill are running after it"
BIDS_SETTLED = "bids in flight are settled or retried"
OWNER = "drillbit-provider-work"
FIRST = 10  # listed in the evidence

log = logging.getLogger("drillbit.provider_workload")


class ProviderWorkload:
    """Leases running and orders open at a provider kill, and what the provider's API and the chain say after it."""

    def __init__(
        self, client: VirtEngineClient, leases: int, orders: int, limit: float, interval: float, setup_timeout: float
    ) -> None:
        self.c, self.n_leases, self.n_orders, self.limit = client, leases, orders, limit
        self.interval, self.setup_timeout = interval, setup_timeout
        self.provider: str | None = None
        self.leases: dict[str, dict[str, Any]] = {}  # lease path → lease id, running before the kill
        self.orders: dict[str, dict[str, Any]] = {}  # order path → order id, broadcast just before the kill
        self.sent: dict[str, str] = {}  # order path → its deployment tx hash
        self.dseqs: list[int] = []  # every deployment this workload created (to close)
        self.setup_error: str | None = None
        self.lease_states: list[tuple[float, dict[str, str]]] = []  # (ts, lease → state) per look
        self.bid_seen: dict[str, float] = {}  # order path → when a bid from the provider was first seen
        self.bids_looked: float | None = None  # the last successful look at the bids
        self._lock = threading.Lock()

    # ---- before the kill
    def start(self, _run: Any = None) -> None:
        """Deployments leased and running (through the provider's API) before the kill; a failure is recorded (the
        criteria are then inconclusive: there was nothing to resume), never raised."""
        try:
            created = []
            for _ in range(self.n_leases):
                dseq = probes.next_dseq()
                self.dseqs.append(dseq)
                e2e.create_deployment(self.c, OWNER, dseq)
                created.append(dseq)
            for dseq in created:
                bid = e2e.wait_for_bids(self.c, OWNER, dseq, self.setup_timeout)[0]
                e2e.accept_bid(self.c, bid["id"])
                self.provider = bid["id"]["provider"]
                self.leases[order_id_path(bid["id"])] = bid["id"]
            for lease_id in self.leases.values():
                e2e.wait_for_running(self.c, lease_id, self.setup_timeout)
        except Exception as exc:  # the workload could not be set up: the harness could not measure
            self.setup_error = f"{exc.__class__.__name__}: {exc}"[:300]
            log.warning("provider workload not set up: %s", self.setup_error)

    def open_orders(self) -> None:
        """Broadcast the in-flight orders' deployment txs (once; confirmed by the monitors' reads and ``collect``)."""
        if self.orders or self.setup_error or not self.n_orders:
            return
        for _ in range(self.n_orders):
            dseq = probes.next_dseq()
            self.dseqs.append(dseq)
            order_id = {"owner": OWNER, "dseq": dseq, "gseq": 1, "oseq": 1}
            try:
                sent = self.c.broadcast(self.c.tx_builder.build("deployment/create", OWNER, deployment_msg(dseq)))
            except ClientError as exc:
                self.setup_error = f"broadcasting the in-flight orders: {exc}"[:300]
                return
            if sent.code == 0:
                self.orders[order_id_path(order_id)] = order_id
                self.sent[order_id_path(order_id)] = sent.hash

    def around(self, fault: Fault) -> Fault:
        return OrdersInFlight(fault, self)

    # ---- during and after: the monitors
    def monitors(self) -> list[Monitor]:
        return [
            monitor(LEASES_PROBE, self.interval, self.look_at_leases),
            monitor(BIDS_PROBE, self.interval, self.look_at_bids),
        ]

    def look_at_leases(self) -> float | None:
        """Each lease's status as its tenant reads it (the provider's API); fails naming those not running."""
        if not self.leases:
            return None
        states: dict[str, str] = {}
        for path, lease_id in self.leases.items():
            status = self.c.lease_status(lease_id)
            healthy = bool(status and status.get("state") == "running" and status.get("healthy"))
            states[path] = "running" if healthy else (status or {}).get("state", "not found")
        with self._lock:
            self.lease_states.append((time.time(), states))
        bad = {p: s for p, s in states.items() if s != "running"}
        if bad:
            raise probes.CheckFailed(f"{len(bad)} lease(s) not running: {_listing(bad)}")
        return float(len(states))

    def look_at_bids(self) -> float | None:
        """The in-flight orders' bids from the provider, read off the chain; fails naming the orders without one."""
        if not self.orders:
            return None
        now = time.time()
        bids = self.c.bids(owner=OWNER, provider=self.provider)
        with self._lock:
            for bid in bids:
                path = order_id_path(bid["id"])
                if path in self.orders:
                    self.bid_seen.setdefault(path, now)
            self.bids_looked = now
            missing = [p for p in self.orders if p not in self.bid_seen]
        if missing:
            raise probes.CheckFailed(f"{len(missing)} order(s) without a bid: {', '.join(missing[:FIRST])}")
        return float(len(self.orders))

    def collect(self, run: Any) -> None:
        """After the observation: drop in-flight orders whose tx never committed, then keep looking (samples in the
        timeline) until every lease runs and every order has a bid, or the limit after the kill is over."""
        for path, tx_hash in list(self.sent.items()):
            try:
                result = self.c.wait_tx(tx_hash, timeout=max(5.0, self.interval * 5))
            except ClientError as exc:
                result, error = None, str(exc)
            else:
                error = result.log
            if result is None or result.code != 0:
                log.warning("in-flight order %s not created: %s", path, error)
                self.orders.pop(path, None)
        killed = run.timeline.last_event_ts("injected")
        if killed is None:
            return
        looks = {LEASES_PROBE: self.look_at_leases, BIDS_PROBE: self.look_at_bids}
        for name, check in looks.items():
            probe = probes.as_probe(name, check)

            def settled(probe=probe) -> bool:
                sample = probe()
                run.timeline.add(sample)
                return sample.ok

            # a look now (after the limit it is the state graded), then until settled or one interval past the limit
            left = killed + self.limit + self.interval - time.time()
            if not settled() and left > 0:
                with contextlib.suppress(PollTimeout):
                    wait_until(settled, left, f"{name} settled", self.interval)

    # ---- criteria
    def criteria(self) -> list[Criterion]:
        out = []
        if self.n_leases:
            out.append(
                Criterion(
                    LEASES_RESUMED,
                    f"each running and healthy within {self.limit:g} s of the kill",
                    self._leases_verdict,
                )
            )
        if self.n_orders:
            out.append(
                Criterion(
                    BIDS_SETTLED, f"each order open at the kill bid on within {self.limit:g} s", self._bids_verdict
                )
            )
        return out

    def _kill(self, tl: Timeline, name: str) -> float | Verdict:
        if self.setup_error:
            return Verdict(name, Outcome.INCONCLUSIVE, f"workload not set up before the kill: {self.setup_error}")
        killed = tl.last_event_ts("injected")
        if killed is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "the provider was not killed")
        return killed

    def _leases_verdict(self, tl: Timeline) -> Verdict:
        killed = self._kill(tl, LEASES_RESUMED)
        if isinstance(killed, Verdict):
            return killed
        if not self.leases:
            return Verdict(LEASES_RESUMED, Outcome.INCONCLUSIVE, "no lease was running before the kill")
        deadline = killed + self.limit
        looks = tl.select(probe=LEASES_PROBE)
        after = looks[looks["ts"] >= killed]
        ok = after[after["ok"] & (after["ts"] <= deadline)]
        evidence: dict[str, Any] = {"leases": len(self.leases), "limit_s": self.limit}
        if not ok.empty:
            evidence["resumed_s"] = round(float(ok["ts"].iloc[0]) - killed, 3)
            last = after.iloc[-1]
            if not bool(last["ok"]):
                evidence["error"] = last["error"]
                reason = f"running {evidence['resumed_s']:g} s after the kill, then not: {last['error']}"
                return Verdict(LEASES_RESUMED, Outcome.FAIL, reason, evidence)
            return Verdict(
                LEASES_RESUMED,
                Outcome.PASS,
                f"all {len(self.leases)} running again {evidence['resumed_s']:g} s after the kill",
                evidence,
            )
        if after.empty or float(after["ts"].max()) < deadline:
            return Verdict(
                LEASES_RESUMED, Outcome.INCONCLUSIVE, f"no look at the leases {self.limit:g} s after the kill", evidence
            )
        with self._lock:  # the last answer by the limit (none: the provider's API did not answer)
            answers = [s for ts, s in self.lease_states if killed <= ts <= deadline + self.interval]
        states = answers[-1] if answers else {}
        bad = {p: states.get(p, "no answer") for p in self.leases if states.get(p) != "running"}
        bad = bad or {p: "no answer" for p in self.leases}
        evidence["not_running"] = [{"lease": p, "state": s} for p, s in list(bad.items())[:FIRST]]
        reason = (
            f"{len(bad)} of {len(self.leases)} lease(s) not running {self.limit:g} s after the kill: {_listing(bad)}"
        )
        return Verdict(LEASES_RESUMED, Outcome.FAIL, reason, evidence)

    def _bids_verdict(self, tl: Timeline) -> Verdict:
        killed = self._kill(tl, BIDS_SETTLED)
        if isinstance(killed, Verdict):
            return killed
        if not self.orders:
            return Verdict(
                BIDS_SETTLED, Outcome.INCONCLUSIVE, "no order was open at the kill (their txs never committed)"
            )
        deadline = killed + self.limit
        with self._lock:
            seen = {p: ts for p, ts in self.bid_seen.items() if p in self.orders}
            looked = self.bids_looked
        late = [p for p in self.orders if p not in seen or seen[p] > deadline]
        evidence: dict[str, Any] = {"orders": len(self.orders), "provider": self.provider, "limit_s": self.limit}
        if not late:
            evidence["slowest_bid_s"] = round(max(seen.values()) - killed, 3)
            return Verdict(
                BIDS_SETTLED,
                Outcome.PASS,
                f"all {len(self.orders)} bid on, the last {evidence['slowest_bid_s']:g} s after the kill",
                evidence,
            )
        if looked is None or looked < deadline:
            return Verdict(
                BIDS_SETTLED, Outcome.INCONCLUSIVE, f"no look at the bids {self.limit:g} s after the kill", evidence
            )
        evidence["without_bid"] = late[:FIRST]
        who = self.provider or "any provider"
        reason = (
            f"{len(late)} of {len(self.orders)} order(s) open at the kill without a bid from {who} "
            f"{self.limit:g} s after it: {', '.join(late[:FIRST])}"
        )
        return Verdict(BIDS_SETTLED, Outcome.FAIL, reason, evidence)

    # ---- the end, in any case
    def close(self) -> None:
        """Close every deployment this workload created (one already closed or never created is skipped)."""
        try:
            for dseq in self.dseqs:
                try:
                    e2e.close_deployment(self.c, OWNER, dseq)
                except (ClientError, KeyError, *probes.POLL_ERRORS) as exc:
                    if "not found" not in str(exc) and "404" not in str(exc):
                        log.warning("deployment %s/%s not closed: %s", OWNER, dseq, exc)
        finally:
            self.c.close()


class OrdersInFlight(Fault):
    """The pod kill, with the workload's in-flight orders broadcast just before it (not when only planning)."""

    def __init__(self, inner: Fault, work: ProviderWorkload) -> None:
        self.inner, self.work, self.kind = inner, work, inner.kind

    def plan(self) -> Plan:
        return self.inner.plan()

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return self.inner.undo_steps(plan)

    def apply(self, plan: Plan, handle: Handle) -> None:
        self.work.open_orders()
        self.inner._ledger = self._ledger  # the inner fault may re-record the handle
        self.inner.apply(plan, handle)


def deployment_msg(dseq: int) -> dict[str, Any]:
    """The ``deployment/create`` message of ``VirtEngineClient.create_deployment``'s defaults."""
    group = {
        "name": "web",
        "resources": {"cpu": 500, "memory": 512 * 2**20, "storage": 2**30},
        "count": 1,
        "price": {"denom": "uve", "amount": "100"},
    }
    return {"owner": OWNER, "dseq": dseq, "groups": [group], "deposit": {"denom": "uve", "amount": "5000000"}}


def for_pod_kill(
    env: ResolvedEnvironment, target: str, leases: int, orders: int, limit: float, interval: float
) -> ProviderWorkload | None:
    """The workload when the killed role is the provider and the environment has its endpoint; else None."""
    if target != "provider" or not env.endpoints.provider or not (leases or orders):
        return None
    return ProviderWorkload(client_for(env, timeout=5.0), leases, orders, limit, interval, setup_timeout=60.0)


def _listing(states: dict[str, str]) -> str:
    return ", ".join(f"{p} ({s})" for p, s in list(states.items())[:FIRST])


def then(first: Any, second: Any) -> Any:
    """A hook running ``first`` (if any), then ``second``."""
    if first is None:
        return second

    def both(run: Any) -> None:
        first(run)
        second(run)

    return both
