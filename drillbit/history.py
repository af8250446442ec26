"""A Jepsen-style history checker for transactions: pure functions over recorded operations and the final chains.

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

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    last_hash: str
    tx_hashes: tuple[str, ...] = ()


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
