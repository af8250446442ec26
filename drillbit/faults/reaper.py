"""The TTL reaper: ``python -m drillbit.faults.reaper HANDLE_ID LEDGER_DIR``.

Started detached for every injected fault. It waits until the fault's time-to-live expires (or until the entry is
cleared by a normal revert, then exits), then reverts the fault from its ledger entry. It outlives a SIGKILLed runner.
``base.revert`` first loads the undo drivers the entry names (``drivers.ensure_drivers``), whatever platform recorded
them.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from drillbit.faults.ledger import Ledger


def main(handle_id: str, ledger_dir: str) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ledger = Ledger(Path(ledger_dir))
    while True:
        handle = ledger.get(handle_id)
        if handle is None:
            return 0  # reverted by its owner
        remaining = handle.expires_at - time.time()
        if remaining <= 0:
            break
        time.sleep(min(remaining, 0.5))
    from drillbit.faults.base import revert

    for attempt in range(5):
        handle = ledger.get(handle_id)
        if handle is None:
            return 0
        handle.reaper_pid = None  # do not signal ourselves
        try:
            revert(handle, ledger)
            print(f"{time.strftime('%H:%M:%S')} reaper: TTL expired, reverted {handle.kind} {handle.id}", flush=True)
            return 0
        except Exception as exc:
            print(f"reaper: revert of {handle_id} failed (attempt {attempt + 1}): {exc}", flush=True)
            time.sleep(2)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
