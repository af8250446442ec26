"""Observe-phase tasks: synthetic checks and the E2E journey's steps. Retries only where repeating is harmless."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit import probes
from drillbit.client import ClientError
from drillbit.config import ResolvedEnvironment
from drillbit.model import Sample
from drillbit.synthetic import Monitor, run_monitors
from tasks.targets import client_for

SYNTHETIC_CHECKS = ("tx-submission", "chain-query", "market-query", "deployment-provisioning")


@task(cache_policy=NO_CACHE, name="synthetic-checks")
def synthetic_checks(env: ResolvedEnvironment, checks: list[str], rounds: int, interval: float) -> list[Sample]:
    """Run each check ``rounds`` times, ``interval`` seconds apart, side by side; never raises on a failed check."""
    log = get_run_logger()
    client = client_for(env, timeout=35.0)
    factories = {
        "tx-submission": lambda: probes.tx_submission(client),
        "chain-query": lambda: probes.chain_query(client),
        "market-query": lambda: probes.market_query(client),
        "deployment-provisioning": lambda: probes.deployment_provisioning(client),
    }
    monitors = [Monitor(name, interval, probes.as_probe(name, factories[name]())) for name in checks]

    def show(s: Sample) -> None:
        log.info(
            "%s %s in %.3f s%s", s.probe, "ok" if s.ok else "FAILED", s.latency or 0, f": {s.error}" if s.error else ""
        )

    try:
        return run_monitors(monitors, count=rounds, on_sample=show)
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------- the E2E journey


def _step(name: str, fn, *args: Any) -> tuple[Sample, Any]:
    ts, t0 = time.time(), time.perf_counter()
    try:
        value = fn(*args)
    except Exception as exc:
        return Sample(
            f"e2e:{name}", ts, False, time.perf_counter() - t0, error=f"{exc.__class__.__name__}: {exc}"
        ), None
    return Sample(f"e2e:{name}", ts, True, time.perf_counter() - t0), value


@task(cache_policy=NO_CACHE, name="e2e-create-deployment", retries=2, retry_delay_seconds=2)
def create_deployment(env: ResolvedEnvironment, owner: str, dseq: int) -> Sample:
    def run() -> None:
        with client_for(env) as c:
            try:
                c.create_deployment(owner, dseq)
            except ClientError as exc:
                # a retry after a lost answer: the deployment is already there, which is what we wanted
                if "exists" not in str(exc):
                    raise

    return _step("create-deployment", run)[0]


@task(cache_policy=NO_CACHE, name="e2e-wait-for-bids")
def wait_for_bids(env: ResolvedEnvironment, owner: str, dseq: int, timeout: float) -> tuple[Sample, list[dict]]:
    def run() -> list[dict]:
        with client_for(env) as c:
            return probes.wait_until(lambda: c.bids(owner=owner, dseq=dseq, state="open"), timeout, "bids received")

    sample, bids = _step("wait-for-bids", run)
    return sample, bids or []


@task(cache_policy=NO_CACHE, name="e2e-accept-bid", retries=2, retry_delay_seconds=2)
def accept_bid(env: ResolvedEnvironment, bid_id: dict) -> Sample:
    def run() -> None:
        with client_for(env) as c:
            if c.leases(owner=bid_id["owner"], dseq=bid_id["dseq"], state="active"):
                return  # accepted by an earlier attempt
            c.create_lease(bid_id)

    return _step("accept-bid", run)[0]


@task(cache_policy=NO_CACHE, name="e2e-wait-for-running")
def wait_for_running(env: ResolvedEnvironment, lease_id: dict, timeout: float) -> Sample:
    def run() -> None:
        with client_for(env) as c:
            probes.wait_until(
                lambda: (s := c.lease_status(lease_id)) and s.get("state") == "running", timeout, "running workload"
            )

    return _step("wait-for-running", run)[0]


@task(cache_policy=NO_CACHE, name="e2e-check-health", retries=3, retry_delay_seconds=1)
def check_health(env: ResolvedEnvironment, lease_id: dict) -> Sample:
    def run() -> None:
        with client_for(env) as c:
            status = c.lease_status(lease_id)
            if not status or not status.get("healthy"):
                raise probes.CheckFailed(f"deployment not healthy: {status}")

    return _step("check-health", run)[0]


@task(cache_policy=NO_CACHE, name="e2e-close-deployment", retries=2, retry_delay_seconds=2)
def close_deployment(env: ResolvedEnvironment, owner: str, dseq: int) -> Sample:
    def run() -> None:
        with client_for(env) as c:
            if c.deployment(owner, dseq)["deployment"]["state"] == "closed":
                return
            c.close_deployment(owner, dseq)

    return _step("close-deployment", run)[0]


@task(cache_policy=NO_CACHE, name="e2e-verify-settlement")
def verify_settlement(env: ResolvedEnvironment, owner: str, dseq: int, timeout: float) -> Sample:
    """Settled = escrow account closed, lease payment closed, settlement record present for the order."""

    def settled(c) -> dict | None:
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

    def run() -> None:
        with client_for(env) as c:
            probes.wait_until(lambda: settled(c), timeout, "settlement (escrow closed, payment closed, record)")

    return _step("verify-settlement", run)[0]


class UnhealthyTarget(RuntimeError):
    """The steady-state check failed: an experiment refuses to break what is already broken."""


@task(cache_policy=NO_CACHE, name="steady-state", retries=2, retry_delay_seconds=3)
def steady_state(monitors: list[Monitor]) -> list[Sample]:
    """Every probe must succeed once before anything is injected."""
    samples = [m.probe() for m in monitors]
    bad = [f"{s.probe}: {s.error}" for s in samples if not s.ok]
    if bad:
        raise UnhealthyTarget("target not in steady state, refusing to inject: " + "; ".join(bad))
    return samples
