"""The error every fault raises when it cannot be planned or injected (re-exported by ``base``).

In a module of its own, importing nothing, so that platform modules can raise it without importing ``base``.
"""

from __future__ import annotations


class FaultError(RuntimeError):
    """A fault could not be planned or injected; nothing is left injected when this is raised."""
