"""The error every fault raises when it cannot be planned or injected (re-exported by ``base``).

In a module of its own, importing nothing, so that platform modules can raise it without importing ``base``.
"""

from __future__ import annotations


class FaultError(RuntimeError):
    """A fault could not be planned or injected; nothing is left injected when this is raised."""


class FullOutageRefused(FaultError):
    """A selection would take every live replica of a workload down and the experiment did not set ``full_outage``.

    ``plan`` is the plan that was refused (a ``base.Plan``, its detail flagging the outage), so that a dry run can
    still show it. Both are in ``args``, so the error survives pickling (Prefect may persist a task's exception)."""

    def __init__(self, message: str, plan: object = None) -> None:
        super().__init__(message, plan)
        self.plan = plan

    def __str__(self) -> str:
        return str(self.args[0])
