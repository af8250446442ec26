"""Faults: one module per fault kind (``pod_kill``, ``network``, ``disk``, ``port_block``, ``partition``, ``memory``,
``overload``), each holding that kind's drivers for every platform; the platforms' plumbing is in ``platform/``.

Kept empty on purpose: importing a fault module never imports another platform's client. ``drivers.load_drivers()``
registers every platform's undo drivers (``base.revert`` calls it when a ledger entry names a driver not loaded yet).
"""
