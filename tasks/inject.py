"""Inject-phase tasks. The fault records its undo in the ledger before it breaks anything; a retry is safe because a
failed injection has already been reverted."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit.faults.base import Fault, Plan
from drillbit.faults.ledger import Handle


@task(cache_policy=NO_CACHE, name="plan-fault")
def plan_fault(fault: Fault) -> Plan:
    """Resolve targets and validate parameters (clear error, nothing injected)."""
    return fault.plan()


@task(cache_policy=NO_CACHE, name="inject-fault", retries=1, retry_delay_seconds=2)
def inject_fault(fault: Fault, ttl: float, run_id: str) -> Handle:
    handle = fault.inject(ttl=ttl, run_id=run_id)
    get_run_logger().info("injected %s on %s (ttl %.0f s, ledger %s)", handle.kind, handle.target, ttl, handle.id)
    return handle
