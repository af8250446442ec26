"""Observe-phase tasks: synthetic checks and the E2E journey's steps. Retries only where repeating is harmless."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit.config import ResolvedEnvironment
from drillbit.model import Sample
from drillbit.monitor import Monitor, run_monitors
from drillbit.runner import check_steady_state
from drillbit.scenarios import e2e
from drillbit.scenarios.synthetic import monitors as synthetic_monitors
from tasks.targets import client_for


@task(cache_policy=NO_CACHE, name="synthetic-checks")
def synthetic_checks(env: ResolvedEnvironment, checks: list[str], rounds: int, interval: float) -> list[Sample]:
    """Run each check ``rounds`` times, ``interval`` seconds apart, side by side; never raises on a failed check."""
    log = get_run_logger()
    client = client_for(env, timeout=35.0)

    def show(s: Sample) -> None:
        log.info(
            "%s %s in %.3f s%s", s.probe, "ok" if s.ok else "FAILED", s.latency or 0, f": {s.error}" if s.error else ""
        )

    try:
        return run_monitors(synthetic_monitors(client, checks, interval), count=rounds, on_sample=show)
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------- the E2E journey


def _step(env: ResolvedEnvironment, name: str, fn: Callable[..., Any], *args: Any) -> tuple[Sample, Any]:
    """One step of ``drillbit.scenarios.e2e`` on a fresh client, timed as a sample (a failed step never raises)."""

    def call() -> Any:
        with client_for(env) as c:
            return fn(c, *args)

    return e2e.timed(name, call)


@task(cache_policy=NO_CACHE, name="e2e-create-deployment", retries=2, retry_delay_seconds=2)
def create_deployment(env: ResolvedEnvironment, owner: str, dseq: int) -> Sample:
    return _step(env, "create-deployment", e2e.create_deployment, owner, dseq)[0]


@task(cache_policy=NO_CACHE, name="e2e-wait-for-bids")
def wait_for_bids(env: ResolvedEnvironment, owner: str, dseq: int, timeout: float) -> tuple[Sample, list[dict]]:
    sample, bids = _step(env, "wait-for-bids", e2e.wait_for_bids, owner, dseq, timeout)
    return sample, bids or []


@task(cache_policy=NO_CACHE, name="e2e-accept-bid", retries=2, retry_delay_seconds=2)
def accept_bid(env: ResolvedEnvironment, bid_id: dict) -> Sample:
    return _step(env, "accept-bid", e2e.accept_bid, bid_id)[0]


@task(cache_policy=NO_CACHE, name="e2e-wait-for-running")
def wait_for_running(env: ResolvedEnvironment, lease_id: dict, timeout: float) -> Sample:
    return _step(env, "wait-for-running", e2e.wait_for_running, lease_id, timeout)[0]


@task(cache_policy=NO_CACHE, name="e2e-check-health", retries=3, retry_delay_seconds=1)
def check_health(env: ResolvedEnvironment, lease_id: dict) -> Sample:
    return _step(env, "check-health", e2e.check_health, lease_id)[0]


@task(cache_policy=NO_CACHE, name="e2e-close-deployment", retries=2, retry_delay_seconds=2)
def close_deployment(env: ResolvedEnvironment, owner: str, dseq: int) -> Sample:
    return _step(env, "close-deployment", e2e.close_deployment, owner, dseq)[0]


@task(cache_policy=NO_CACHE, name="e2e-verify-settlement")
def verify_settlement(env: ResolvedEnvironment, owner: str, dseq: int, timeout: float) -> Sample:
    """Settled = escrow account closed, lease payment closed, settlement record present for the order."""
    return _step(env, "verify-settlement", e2e.verify_settlement, owner, dseq, timeout)[0]


@task(cache_policy=NO_CACHE, name="steady-state", retries=2, retry_delay_seconds=3)
def steady_state(monitors: list[Monitor]) -> list[Sample]:
    """Every probe must succeed once before anything is injected (UnhealthyTarget otherwise)."""
    return check_steady_state(monitors)
