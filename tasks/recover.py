"""Recover-phase tasks: revert faults (idempotent, so retried) and revert whatever a crashed run left."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit.faults.base import revert
from drillbit.faults.ledger import Handle, Ledger


@task(cache_policy=NO_CACHE, name="revert-fault", retries=3, retry_delay_seconds=2)
def revert_fault(handle: Handle) -> None:
    revert(handle)
    get_run_logger().info("reverted %s on %s", handle.kind, handle.target)


def revert_run(run_id: str) -> list[str]:
    """Revert every ledger entry of one run (used by Prefect's on_crashed / on_cancellation hooks)."""
    done = []
    ledger = Ledger()
    for handle in ledger.pending():
        if handle.run_id == run_id:
            revert(handle, ledger)
            done.append(handle.id)
    return done


def revert_on_crash(flow, flow_run, state) -> None:  # Prefect hook signature: (flow, flow_run, state)
    """on_crashed / on_cancellation hook: the run's faults are reverted even if its body never reached `finally`."""
    revert_run(str(flow_run.id))
