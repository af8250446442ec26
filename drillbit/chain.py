"""Reading the chain as each node serves it over its CometBFT RPC: one block (height, hash, the hash it links to, time,
the hashes of its transactions), a range of blocks, every node's height, and waiting until the nodes caught up.

``read_block`` is the one reader of a node's ``/block``; it goes through ``VirtEngineClient.block``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

from drillbit.client import ClientError, VirtEngineClient
from drillbit.poll import PollTimeout, wait_until


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    last_hash: str  # the predecessor's hash, as this block names it
    tx_hashes: tuple[str, ...] = ()  # SHA-256 of each raw tx, upper-case hex (what /tx?hash= takes)
    time: str = ""


def tx_hash(raw: bytes) -> str:
    """A transaction's hash as CometBFT names it: SHA-256 of its bytes, upper-case hex."""
    return hashlib.sha256(raw).hexdigest().upper()


def parse_block(result: dict[str, Any]) -> Block:
    """A ``/block`` RPC result as a Block."""
    block = result["block"]
    header = block["header"]
    txs = block["data"].get("txs") or []
    last = (header.get("last_block_id") or {}).get("hash", "")
    hashes = tuple(tx_hash(base64.b64decode(t)) for t in txs)
    return Block(int(header["height"]), result["block_id"]["hash"], last, hashes, header.get("time", ""))


def read_block(node: VirtEngineClient | str, height: int | None = None) -> Block:
    """The block at ``height`` (default: the latest) as ``node`` serves it: a client, or a node's RPC URL (read
    with a short-lived client, 5 s timeout). Raises ClientError when the node cannot serve it."""
    if isinstance(node, str):
        with VirtEngineClient(node, "", timeout=5.0) as client:
            return read_block(client, height)
    try:
        return parse_block(node.block(height))
    except (KeyError, ValueError) as exc:
        raise ClientError(f"block {height} from {node.rpc_url}: malformed answer ({exc})") from exc


def read_chain(node: VirtEngineClient, lo: int, hi: int) -> list[Block]:
    """Blocks lo..hi as one node serves them (a height it cannot serve is simply missing)."""
    out = []
    for height in range(lo, hi + 1):
        try:
            out.append(read_block(node, height))
        except ClientError:
            continue
    return out


def heights(nodes: dict[str, VirtEngineClient]) -> dict[str, int | None]:
    """Each node's latest height (None for a node that does not answer)."""
    out: dict[str, int | None] = {}
    for name, c in nodes.items():
        try:
            out[name] = c.height()
        except ClientError:
            out[name] = None
    return out


def wait_converged(nodes: dict[str, VirtEngineClient], at_least: int, timeout: float) -> dict[str, int | None]:
    """Wait (bounded) until every node is at ``at_least`` or beyond; returns the last heights read (also when the
    time ran out: the caller reads what the nodes have)."""
    last: dict[str, int | None] = {}

    def converged() -> bool:
        last.update(heights(nodes))
        return all(h is not None and h >= at_least for h in last.values())

    with contextlib.suppress(PollTimeout):
        wait_until(converged, timeout, f"every node at height {at_least}", interval=0.5, errors=())
    return last
