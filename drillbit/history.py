"""A Jepsen-style history of transactions: the workload that records one (``TxHistory``), and the checker, pure
functions over the recorded operations and the final chains.

A client records every transaction it submits as an ``Op``: ``ok`` when it was acknowledged (confirmed committed,
with the height the node reported), ``fail`` when it definitely did not enter (rejected at CheckTx), ``info`` when the
outcome is unknown (timed out, connection lost). Afterwards every node's chain is read over a height range.

``check`` then verifies, without trusting any single node:

- every acknowledged tx is in every node's chain exactly once, at the height its acknowledgement named (no lost or
  moved writes);
- no tx is in a chain twice, and no definitely-failed tx is in it at all;
- every node has every height of the range, all nodes have the same block hash at each height (no divergence, no
  split brain), and each block names its predecessor's hash (the history is one chain).

Unknown (``info``) ops may or may not have committed: both are fine, but never twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from drillbit.chain import Block, tx_hash
from drillbit.client import ClientError, VirtEngineClient
from drillbit.model import Sample
from drillbit.monitor import Monitor

OpOutcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Op:
    """One submitted transaction and what the client learned about it."""

    tx_hash: str
    node: str  # where it was submitted
    invoked_at: float
    outcome: OpOutcome
    completed_at: float | None = None
    height: int | None = None  # for ok: the height the node reported
    error: str | None = None


@dataclass
class CheckResult:
    valid: bool
    acknowledged: int
    unknown_committed: int  # "info" ops found in the chain (committed although the client never learned it)
    heights: tuple[int, int]
    lost: list[dict[str, Any]] = field(default_factory=list)  # acknowledged, missing from a node's chain
    moved: list[dict[str, Any]] = field(default_factory=list)  # acknowledged at one height, found at another
    duplicated: list[dict[str, Any]] = field(default_factory=list)  # in a node's chain more than once
    failed_committed: list[dict[str, Any]] = field(default_factory=list)  # definitely failed, yet in the chain
    missing_blocks: dict[str, list[int]] = field(default_factory=dict)  # node → heights it does not have
    diverged: list[dict[str, Any]] = field(default_factory=list)  # heights where nodes disagree on the hash
    broken_links: list[dict[str, Any]] = field(default_factory=list)  # a block not naming its predecessor

    def to_dict(self, limit: int = 20) -> dict[str, Any]:
        """As JSON-able evidence: counts of every anomaly, and at most ``limit`` examples of each."""
        d = asdict(self)
        for key in ("lost", "moved", "duplicated", "failed_committed", "diverged", "broken_links"):
            d[f"{key}_count"] = len(d[key])
            d[key] = d[key][:limit]
        d["missing_blocks"] = {n: hs[:limit] for n, hs in d["missing_blocks"].items()}
        return d

    def summary(self) -> str:
        if self.valid:
            return (
                f"all {self.acknowledged} acknowledged txs present exactly once; nodes agree on heights "
                f"{self.heights[0]}..{self.heights[1]}"
            )
        parts = [
            f"{len(v)} {k.replace('_', ' ')}"
            for k, v in (
                ("lost", self.lost),
                ("moved", self.moved),
                ("duplicated", self.duplicated),
                ("failed_committed", self.failed_committed),
                ("diverged", self.diverged),
                ("broken_links", self.broken_links),
            )
            if v
        ]
        if self.missing_blocks:
            parts.append("missing blocks on " + ", ".join(sorted(self.missing_blocks)))
        return "; ".join(parts)


def check(ops: list[Op], chains: dict[str, list[Block]], lo: int, hi: int) -> CheckResult:
    """Check the history against every node's chain over heights ``lo..hi`` (inclusive)."""
    acknowledged = sum(o.outcome == "ok" for o in ops)
    result = CheckResult(valid=True, acknowledged=acknowledged, unknown_committed=0, heights=(lo, hi))
    by_node = {node: {b.height: b for b in blocks if lo <= b.height <= hi} for node, blocks in chains.items()}
    _check_blocks(result, by_node, lo, hi)
    unknown_seen: set[str] = set()
    for node, blocks in by_node.items():
        where: dict[str, list[int]] = {}
        for h in sorted(blocks):
            for tx in blocks[h].tx_hashes:
                where.setdefault(tx, []).append(h)
        _check_ops(result, node, ops, where, unknown_seen)
    result.unknown_committed = len(unknown_seen)
    anomalies = (result.lost, result.moved, result.duplicated, result.failed_committed, result.diverged)
    result.valid = not any(anomalies) and not result.broken_links and not result.missing_blocks
    return result


def _check_blocks(result: CheckResult, by_node: dict[str, dict[int, Block]], lo: int, hi: int) -> None:
    for node, blocks in by_node.items():
        missing = [h for h in range(lo, hi + 1) if h not in blocks]
        if missing:
            result.missing_blocks[node] = missing
        for h in range(lo + 1, hi + 1):
            if h in blocks and h - 1 in blocks and blocks[h].last_hash != blocks[h - 1].hash:
                result.broken_links.append({"node": node, "height": h})
    for h in range(lo, hi + 1):
        hashes = {node: blocks[h].hash for node, blocks in by_node.items() if h in blocks}
        if len(set(hashes.values())) > 1:
            result.diverged.append({"height": h, "hashes": hashes})


def _check_ops(result: CheckResult, node: str, ops: list[Op], where: dict[str, list[int]], unknown: set[str]) -> None:
    for tx, heights in where.items():
        if len(heights) > 1:
            result.duplicated.append({"node": node, "tx": tx, "heights": heights})
    for op in ops:
        found = where.get(op.tx_hash, [])
        if op.outcome == "ok" and not found:
            result.lost.append({"node": node, "tx": op.tx_hash, "acknowledged_at_height": op.height})
        elif op.outcome == "ok" and op.height is not None and op.height not in found:
            result.moved.append({"node": node, "tx": op.tx_hash, "acknowledged": op.height, "found": found})
        elif op.outcome == "fail" and found:
            result.failed_committed.append({"node": node, "tx": op.tx_hash, "heights": found})
        elif op.outcome == "info" and found:
            unknown.add(op.tx_hash)


def duplicate_submissions(ops: list[Op]) -> list[str]:
    """Tx hashes the client itself submitted more than once (a broken workload, not a broken system)."""
    return sorted(h for h, n in Counter(o.tx_hash for o in ops).items() if n > 1)


# ------------------------------------------------------------------------------------------------ the workload


class TxHistory(Monitor):
    """Submits a tx every ``interval`` s to the next node (round robin) and records every op in ``ops``.

    Confirmation (``/tx`` on the node it was sent to) is awaited in a small pool, so a node that never confirms does
    not hold back the others. Each op becomes a sample of probe ``tx:<node>`` when it completes. Each tx is a
    ``provider/update`` of ``signer`` carrying a unique attribute, so no two txs are alike.
    """

    def __init__(
        self,
        nodes: dict[str, VirtEngineClient],
        interval: float,
        confirm_timeout: float,
        signer: str = "drillbit-history",
        host_uri: str = "https://history.drillbit.invalid",
    ) -> None:
        super().__init__("tx", interval, self.probe)
        self.nodes, self.confirm_timeout = nodes, confirm_timeout
        self.signer, self.host_uri = signer, host_uri
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._next = 0

    def _pick(self) -> str:
        with self._lock:
            name = list(self.nodes)[self._next % len(self.nodes)]
            self._next += 1
        return name

    def _send(self, node: str) -> tuple[float, str | None, Op | None]:
        """Broadcast one tx; returns (invoked_at, hash to confirm or None, the op if already decided)."""
        msg: dict[str, Any] = {"owner": self.signer, "host_uri": self.host_uri}
        msg["attributes"] = [{"key": "seq", "value": str(time.time_ns())}]
        c = self.nodes[node]
        raw = c.tx_builder.build("provider/update", self.signer, msg)
        hash_ = tx_hash(raw)
        t0 = time.time()
        try:
            sent = c.broadcast(raw)
        except ClientError as exc:  # it may or may not have reached the mempool
            return t0, None, Op(hash_, node, t0, "info", time.time(), error=str(exc)[:200])
        if sent.code != 0:
            return t0, None, Op(hash_, node, t0, "fail", time.time(), error=f"CheckTx {sent.code}")
        return t0, hash_, None

    def _confirm(self, node: str, hash_: str, t0: float) -> Op:
        try:
            result = self.nodes[node].wait_tx(hash_, timeout=self.confirm_timeout)
        except ClientError as exc:
            return Op(hash_, node, t0, "info", time.time(), error=str(exc)[:200])
        return Op(hash_, node, t0, "ok", time.time(), result.height)

    def _record(self, op: Op) -> Sample:
        with self._lock:
            self.ops.append(op)
        took = (op.completed_at or time.time()) - op.invoked_at
        return Sample(f"tx:{op.node}", op.invoked_at, op.outcome == "ok", took, op.height, op.error)

    def _one(self, node: str, on_sample: Callable[[Sample], None]) -> None:
        t0, hash_, op = self._send(node)
        on_sample(self._record(op or self._confirm(node, hash_ or "", t0)))

    def probe(self) -> Sample:
        """One op, submitted and confirmed synchronously (the steady-state check)."""
        node = self._pick()
        t0, hash_, op = self._send(node)
        return self._record(op or self._confirm(node, hash_ or "", t0))

    def run(self, on_sample, *, duration=None, count=None, stop: threading.Event | None = None, on_late=None) -> int:
        """Submit until duration / count / stop. ``on_late`` is accepted as every monitor's is, and unused: each op
        completes (confirmed or not within ``confirm_timeout``) in the pool and is recorded once."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration if duration is not None else math.inf
        n = 0
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="tx-confirm") as pool:
            while not stop.is_set() and time.monotonic() < deadline and (count is None or n < count):
                pool.submit(self._one, self._pick(), on_sample)
                n += 1
                stop.wait(self.interval)
        return n


# ------------------------------------------------------------------------------- keyed writes through an API


@dataclass(frozen=True)
class Write:
    """One write a client made to a keyed store: its key, its place in the client's order and what it learned.

    ``seq`` is the client's order of acknowledgement (one client writing one at a time: the order it issued them);
    ``outcome`` as for ``Op``: ``ok`` acknowledged, ``fail`` definitely not taken, ``info`` unknown.
    """

    key: str
    seq: int
    outcome: OpOutcome
    value: Any = None


@dataclass(frozen=True)
class Applied:
    """A record as a client reads it back: the value, how many writes the store applied to the key (``version``,
    None when the store does not say) and when it applied the last one (``applied_at``, sortable; None if unknown)."""

    key: str
    value: Any
    version: int | None = None
    applied_at: str | float | None = None


@dataclass
class WriteCheck:
    valid: bool
    acknowledged: int
    observed: int
    unknown_applied: int  # unknown writes found applied (fine, once)
    lost: list[dict[str, Any]] = field(default_factory=list)  # acknowledged, not readable
    duplicated: list[dict[str, Any]] = field(default_factory=list)  # applied more often than written
    reordered: list[dict[str, Any]] = field(default_factory=list)  # applied before a write acknowledged earlier
    phantom: list[dict[str, Any]] = field(default_factory=list)  # applied, never acknowledged (failed or never made)

    KINDS = ("lost", "duplicated", "reordered", "phantom")

    def to_dict(self, limit: int = 10) -> dict[str, Any]:
        """As JSON-able evidence: the count of every anomaly and its first ``limit`` items."""
        d = {"valid": self.valid, "acknowledged": self.acknowledged, "observed": self.observed}
        d["unknown_applied"] = self.unknown_applied
        for kind in self.KINDS:
            items = getattr(self, kind)
            d[f"{kind}_count"] = len(items)
            d[kind] = items[:limit]
        return d

    def summary(self) -> str:
        if self.valid:
            return f"all {self.acknowledged} acknowledged writes applied exactly once, in acknowledgement order"
        return "; ".join(f"{len(getattr(self, k))} {k}" for k in self.KINDS if getattr(self, k))


def check_writes(writes: list[Write], applied: list[Applied]) -> WriteCheck:
    """Check a client's write history against the records read back (Jepsen's set and register checkers for a
    keyed store with last-write-wins values):

    - lost: an acknowledged write whose key cannot be read, or (several writes to one key) whose key holds the value
      of a write acknowledged before it and nothing later;
    - duplicated: a key whose store-side ``version`` exceeds the writes that may have been applied to it (the
      acknowledged and the unknown ones);
    - reordered: the writes whose values are read back, taken in the client's order, must have been applied in that
      order (``applied_at`` not decreasing); a write applied before one acknowledged earlier is listed with it;
    - phantom: a value read back that no acknowledged or unknown write carried (a failed write, or none at all).
    """
    by_key: dict[str, list[Write]] = {}
    for w in sorted(writes, key=lambda w: w.seq):
        by_key.setdefault(w.key, []).append(w)
    seen = {a.key: a for a in applied}
    acked = [w for w in writes if w.outcome == "ok"]
    result = WriteCheck(valid=True, acknowledged=len(acked), observed=len(applied), unknown_applied=0)
    current: list[tuple[Write, Applied]] = []  # the write each record's value came from
    for key, ws in by_key.items():
        rec = seen.get(key)
        maybe = [w for w in ws if w.outcome != "fail"]
        if rec is None:
            result.lost += [{"key": key, "seq": w.seq} for w in maybe if w.outcome == "ok"]
            continue
        src = next((w for w in reversed(ws) if w.value == rec.value), None)
        if src is None or src.outcome == "fail":
            result.phantom.append({"key": key, "value": rec.value, "failed_write": src.seq if src else None})
        else:
            current.append((src, rec))
            result.unknown_applied += src.outcome == "info"
            later = [w.seq for w in ws if w.outcome == "ok" and w.seq > src.seq]
            if later:  # an older value survived newer acknowledged writes
                result.lost += [{"key": key, "seq": s, "holds_seq": src.seq} for s in later]
        if rec.version is not None and rec.version > len(maybe):
            result.duplicated.append({"key": key, "version": rec.version, "writes": len(maybe)})
    result.phantom += [{"key": a.key, "value": a.value, "failed_write": None} for a in applied if a.key not in by_key]
    _check_order(result, current)
    result.valid = not any(getattr(result, k) for k in WriteCheck.KINDS)
    return result


def _check_order(result: WriteCheck, current: list[tuple[Write, Applied]]) -> None:
    latest: tuple[Write, Applied] | None = None  # the latest-applied write among those acknowledged earlier
    for w, rec in sorted(((w, r) for w, r in current if r.applied_at is not None), key=lambda p: p[0].seq):
        if latest is not None and rec.applied_at < latest[1].applied_at:  # type: ignore[operator]
            before, brec = latest
            result.reordered.append(
                {
                    "key": w.key,
                    "seq": w.seq,
                    "applied_at": rec.applied_at,
                    "applied_before": {"key": before.key, "seq": before.seq, "applied_at": brec.applied_at},
                }
            )
        elif latest is None or rec.applied_at > latest[1].applied_at:  # type: ignore[operator]
            latest = (w, rec)
