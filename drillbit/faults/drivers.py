"""Every undo driver, registered: what a process reverting a ledger entry it did not write (the reaper, ``cleanup``)
needs before it runs the entry's steps.

``undo`` registers the local step kinds (nft table, process, file, mount, cgroup, ...); each platform module registers
its own (``platform.kubernetes``: ``k8s_custom_object``, ``k8s_exec``) when it is imported. ``load_drivers`` imports
every platform module; ``ensure_drivers(steps)`` does so only when a step names a driver not registered yet, so that
reverting a sandbox fault never imports the Kubernetes client. ``base.revert`` calls it before running any step.

The step names are recorded in ledger files: a driver is never renamed (an entry written before would be stranded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from drillbit.faults.undo import DRIVERS


def load_drivers() -> dict[str, Callable[[dict[str, Any]], None]]:
    """Import every platform module (each registers its step kinds); the registry, name -> driver."""
    from drillbit.faults.platform import chaosmesh, kubernetes, sandbox  # noqa: F401  (registration by import)

    return DRIVERS


def ensure_drivers(steps: Iterable[dict[str, Any]]) -> None:
    """Load the platform drivers if any of ``steps`` names a driver that is not registered yet."""
    if any(str(step.get("driver", "")) not in DRIVERS for step in steps):
        load_drivers()
