"""The end-to-end deployment lifecycle's core: the seed's seven steps (create a deployment, wait for bids, accept
one, wait until the workload runs, check its health, close it, verify the settlement) as plain functions on a client,
the timing of one step as a sample, the parameters, and one criterion per step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from drillbit import criteria, probes
from drillbit.client import ClientError, VirtEngineClient
from drillbit.model import Criterion, Outcome, Sample, Timeline, Verdict
from drillbit.params import FlowParams
from drillbit.poll import wait_until

STEPS = [
    ("create-deployment", "deployment created"),
    ("wait-for-bids", "bids received"),
    ("accept-bid", "bid accepted"),
    ("wait-for-running", "deployment running"),
    ("check-health", "deployment healthy"),
    ("close-deployment", "deployment closed"),
    ("verify-settlement", "settled"),
]


class E2EParams(FlowParams):
    owner: str = Field("drillbit-e2e", description="Tenant account used for the test deployment")
    bid_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds to wait for bids (seed: 30 s)")
    running_timeout: float = Field(300.0, gt=0, le=7200, description="Seconds to reach running (seed: 5 min)")
    settle_timeout: float = Field(60.0, gt=0, le=3600, description="Seconds to see the settlement")


# ----------------------------------------------------------------------------------------------------- the steps


def timed(name: str, fn: Callable[[], Any]) -> tuple[Sample, Any]:
    """Run one step: its sample (``e2e:<name>``, ok or the error, how long it took) and what it returned."""
    ts, t0 = time.time(), time.perf_counter()
    try:
        value = fn()
    except Exception as exc:
        return Sample(
            f"e2e:{name}", ts, False, time.perf_counter() - t0, error=f"{exc.__class__.__name__}: {exc}"
        ), None
    return Sample(f"e2e:{name}", ts, True, time.perf_counter() - t0), value


def _poll(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(predicate, timeout, what, errors=probes.POLL_ERRORS, raises=probes.CheckFailed)


def create_deployment(c: VirtEngineClient, owner: str, dseq: int) -> None:
    try:
        c.create_deployment(owner, dseq)
    except ClientError as exc:
        # a retry after a lost answer: the deployment is already there, which is what we wanted
        if "exists" not in str(exc):
            raise


def wait_for_bids(c: VirtEngineClient, owner: str, dseq: int, timeout: float) -> list[dict]:
    return _poll(lambda: c.bids(owner=owner, dseq=dseq, state="open"), timeout, "bids received")


def accept_bid(c: VirtEngineClient, bid_id: dict) -> None:
    if c.leases(owner=bid_id["owner"], dseq=bid_id["dseq"], state="active"):
        return  # accepted by an earlier attempt
    c.create_lease(bid_id)


def wait_for_running(c: VirtEngineClient, lease_id: dict, timeout: float) -> None:
    _poll(lambda: (s := c.lease_status(lease_id)) and s.get("state") == "running", timeout, "running workload")


def check_health(c: VirtEngineClient, lease_id: dict) -> None:
    status = c.lease_status(lease_id)
    if not status or not status.get("healthy"):
        raise probes.CheckFailed(f"deployment not healthy: {status}")


def close_deployment(c: VirtEngineClient, owner: str, dseq: int) -> None:
    if c.deployment(owner, dseq)["deployment"]["state"] == "closed":
        return
    c.close_deployment(owner, dseq)


def verify_settlement(c: VirtEngineClient, owner: str, dseq: int, timeout: float) -> None:
    """Settled = escrow account closed, lease payment closed, settlement record present for the order."""

    def settled() -> dict | None:
        accounts = [a for a in c.escrow_accounts(owner=owner) if a["id"]["xid"] == f"{owner}/{dseq}"]
        payments = c.escrow_payments(xid=f"{owner}/{dseq}")
        orders = c.orders(owner=owner, dseq=dseq)
        records = [s for o in orders for s in c.settlements(o["id"])]
        ok = (
            accounts
            and all(a["state"]["state"] == "closed" for a in accounts)
            and payments
            and all(p["state"]["state"] in ("closed", "overdrawn") for p in payments)
            and records
        )
        return {"settlements": records} if ok else None

    _poll(settled, timeout, "settlement (escrow closed, payment closed, record)")


# ------------------------------------------------------------------------------------------------------ criteria


def step_criterion(step: str, name: str, limit: float | None) -> Criterion:
    base = criteria.all_ok(name, f"e2e:{step}", what=step)

    def check(tl: Timeline) -> Verdict:
        if tl.select(probe=f"e2e:{step}").empty:
            return Verdict(name, Outcome.INCONCLUSIVE, "not reached: an earlier step failed")
        v = base.check(tl)
        took = float(tl.select(probe=f"e2e:{step}")["latency"].iloc[0])
        v.evidence["duration_s"] = round(took, 3)
        return v

    return Criterion(name, f"succeeds{f' within {limit:g} s' if limit else ''}", check)


def e2e_criteria(params: E2EParams) -> list[Criterion]:
    """One criterion per step; the waits carry their timeouts as limits."""
    limits = {"wait-for-bids": params.bid_timeout, "wait-for-running": params.running_timeout}
    return [step_criterion(step, name, limits.get(step)) for step, name in STEPS]


def e2e_metrics(timeline: Timeline, owner: str, dseq: int) -> dict[str, Any]:
    """The deployment used and every step's duration."""
    steps = timeline.frame
    return {
        "dseq": dseq,
        "owner": owner,
        "step_seconds": {
            p.removeprefix("e2e:"): round(float(t), 3) for p, t in zip(steps["probe"], steps["latency"], strict=True)
        },
    }
