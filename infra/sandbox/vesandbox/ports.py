"""Keep the sandbox's ports out of the kernel's ephemeral range while it is up.

Many sandbox ports (the fault proxies, the API, the replica link, ...) lie inside Linux's ephemeral port range
(32768-60999), so any outgoing connection on the machine may be given one of them as its source port — and then the
sandbox cannot bind it at start, or a component restarted after a pod kill cannot bind it again. The kernel's
``net.ipv4.ip_local_reserved_ports`` is the standard remedy: reserved ports are never handed out as ephemeral ports,
and explicit binds still work.

Each sandbox (owner = its run directory) adds only the ports that were not reserved already and removes exactly
those on ``down``; a shared state file under a lock lets several sandboxes (different port offsets) come and go in
any order. Without root or the sysctl (a container without /proc write access) reservation is skipped: the preflight
check still reports a busy port clearly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

SYSCTL = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
STATE_DIR = Path(os.environ.get("VESANDBOX_STATE_DIR", "/run/vesandbox"))


def parse(text: str) -> set[int]:
    """``"8080,9000-9002"`` → {8080, 9000, 9001, 9002}."""
    out: set[int] = set()
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return out


def render(ports: Iterable[int]) -> str:
    """The inverse of ``parse``, with consecutive ports as ranges (the sysctl accepts both)."""
    items = sorted(set(ports))
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


@contextlib.contextmanager
def _locked_state() -> Iterator[dict[str, list[int]]]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state_file = STATE_DIR / "reserved-ports.json"
    with open(STATE_DIR / "reserved-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
        except (OSError, ValueError):
            state = {}
        yield state
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(state_file)


def available() -> bool:
    return SYSCTL.exists() and os.access(SYSCTL, os.W_OK)


def reserve(owner: str, ports: Iterable[int]) -> list[int]:
    """Reserve ``ports`` for ``owner``; returns the ports this call added to the kernel's set."""
    if not available():
        return []
    wanted = set(ports)
    with _locked_state() as state:
        current = parse(SYSCTL.read_text())
        claimed_by_us = {p for ps in state.values() for p in ps}
        added = sorted(wanted - current)
        # ports another sandbox added stay that sandbox's to remove; ports reserved before us are never ours
        state[owner] = sorted(set(state.get(owner, [])) | set(added) | (wanted & claimed_by_us))
        if added:
            SYSCTL.write_text(render(current | wanted) + "\n")
        return added


def release(owner: str) -> list[int]:
    """Remove the ports ``owner`` reserved that no other sandbox still claims; returns them."""
    if not available():
        return []
    with _locked_state() as state:
        mine = set(state.pop(owner, []))
        still_claimed = {p for ps in state.values() for p in ps}
        drop = mine - still_claimed
        if drop:
            current = parse(SYSCTL.read_text())
            SYSCTL.write_text(render(current - drop) + "\n")  # an empty write is a no-op: "\n" clears the set
        return sorted(drop)


def reserved() -> set[int]:
    return parse(SYSCTL.read_text()) if SYSCTL.exists() else set()
