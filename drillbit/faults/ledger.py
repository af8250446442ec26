"""The fault ledger: every injected fault's undo, recorded durably BEFORE the fault is injected.

One JSON file per handle under ``$DRILLBIT_HOME/ledger/`` (written to a temp file, fsynced, renamed), so a SIGKILL at
any point leaves either no entry (nothing was injected yet) or a complete one that ``drillbit cleanup`` can revert
from the file alone. An entry is removed only after its revert succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drillbit.paths import drillbit_home


@dataclass
class Handle:
    """An injected (or about to be injected) fault: what it is, how to undo it, and until when it may live."""

    kind: str  # e.g. "network-latency", "db-failure", "pod-kill"
    target: str  # what it hits, for people
    undo: list[dict[str, Any]]  # undo steps, each {"driver": name, ...args}; reverted in reverse order
    ttl: float  # seconds from created_at after which the fault is reverted whatever happens
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    created_at: float = field(default_factory=time.time)
    run_id: str | None = None
    owner_pid: int = field(default_factory=os.getpid)
    reaper_pid: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Handle:
        return cls(**d)


class Ledger:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(os.environ.get("DRILLBIT_LEDGER", str(drillbit_home() / "ledger")))
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, handle_id: str) -> Path:
        return self.root / f"{handle_id}.json"

    def record(self, handle: Handle) -> None:
        """Write the handle durably (atomic rename + directory fsync)."""
        tmp = self.root / f".{handle.id}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(handle.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(handle.id))
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def clear(self, handle_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(handle_id).unlink()

    def get(self, handle_id: str) -> Handle | None:
        try:
            return Handle.from_dict(json.loads(self._path(handle_id).read_text()))
        except FileNotFoundError:
            return None

    def pending(self) -> list[Handle]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                out.append(Handle.from_dict(json.loads(p.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a torn temp file never has the .json name; anything else unreadable is skipped
        return sorted(out, key=lambda h: h.created_at)
