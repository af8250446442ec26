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

Each owner names the process that holds its reservation (the launcher while it starts a sandbox, then the sandbox's
supervisord; a test session's pytest). When that process is gone without releasing — SIGKILL, a crash, a machine
session that ended — the next ``reserve`` or ``release`` (or ``prune``) hands its ports back to the kernel. A holder
is the pid together with its start time, so a recycled pid does not keep a dead owner's ports.
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


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # a zombie holds nothing
        return None
    return int(fields[19])


def _holder(pid: int) -> dict[str, int | None]:
    return {"pid": pid, "start": process_start(pid)}


def _alive(entry: dict) -> bool:
    holder = entry.get("holder")
    if not holder:  # no holder named: kept until released
        return True
    start = process_start(int(holder["pid"]))
    return start is not None and start == holder.get("start")


def _ports(state: dict[str, dict]) -> set[int]:
    return {p for e in state.values() for p in e["ports"]}


def _drop(state: dict[str, dict], owner: str) -> list[int]:
    """Remove ``owner`` from the state and its ports (those no other owner claims) from the kernel's set."""
    drop = set(state.pop(owner, {"ports": []})["ports"]) - _ports(state)
    if drop:
        current = parse(SYSCTL.read_text())
        SYSCTL.write_text(render(current - drop) + "\n")  # an empty write is a no-op: "\n" clears the set
    return sorted(drop)


def _prune(state: dict[str, dict]) -> dict[str, list[int]]:
    stale = [o for o, e in state.items() if not _alive(e)]
    return {o: _drop(state, o) for o in stale}


@contextlib.contextmanager
def _locked_state() -> Iterator[dict[str, dict]]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state_file = STATE_DIR / "reserved-ports.json"
    with open(STATE_DIR / "reserved-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            raw = json.loads(state_file.read_text()) if state_file.exists() else {}
        except (OSError, ValueError):
            raw = {}
        # the first format held only the ports (no holder): such owners are kept until released
        state = {o: (e if isinstance(e, dict) else {"ports": e}) for o, e in raw.items()}
        yield state
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(state_file)


def available() -> bool:
    return SYSCTL.exists() and os.access(SYSCTL, os.W_OK)


def reserve(owner: str, ports: Iterable[int], holder: int | None = None) -> list[int]:
    """Reserve ``ports`` for ``owner``, held by process ``holder`` (default: this process); returns the ports this
    call added to the kernel's set. Owners whose holder is gone are pruned first."""
    if not available():
        return []
    wanted = set(ports)
    with _locked_state() as state:
        _prune(state)
        current = parse(SYSCTL.read_text())
        claimed_by_us = _ports(state)
        added = sorted(wanted - current)
        # ports another sandbox added stay that sandbox's to remove; ports reserved before us are never ours
        old = state.get(owner, {"ports": []})["ports"]
        state[owner] = {
            "ports": sorted(set(old) | set(added) | (wanted & claimed_by_us)),
            "holder": _holder(os.getpid() if holder is None else holder),
        }
        if added:
            SYSCTL.write_text(render(current | wanted) + "\n")
        return added


def hold(owner: str, holder: int) -> bool:
    """Hand ``owner``'s reservation to another process (the sandbox's supervisord once it runs)."""
    if not available():
        return False
    with _locked_state() as state:
        if owner not in state:
            return False
        state[owner]["holder"] = _holder(holder)
        return True


def release(owner: str) -> list[int]:
    """Remove the ports ``owner`` reserved that no other sandbox still claims; returns them."""
    if not available():
        return []
    with _locked_state() as state:
        dropped = _drop(state, owner)
        _prune(state)
        return dropped


def prune() -> dict[str, list[int]]:
    """Hand back the ports of every owner whose holder process is gone; returns {owner: ports removed}."""
    if not available():
        return {}
    with _locked_state() as state:
        return _prune(state)


def reserved() -> set[int]:
    return parse(SYSCTL.read_text()) if SYSCTL.exists() else set()
