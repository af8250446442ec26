"""The sandbox chain's state machine: pure and deterministic (no I/O, no clock, no randomness).

Every node feeds the same blocks to a ``State`` and so computes the same state, results and hashes.
Entities are stored as the exact JSON the Cosmos REST gateway serves (see PROTOCOL.md).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DENOM = "uve"
MAX_TX_BYTES = 32 * 1024
MAX_GROUPS = 16
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000

# Result codes (codespace "sdk" for generic ones, the module name for state errors).
CODE_OK = 0
CODE_DECODE = 2
CODE_UNAUTHORIZED = 4
CODE_UNKNOWN_TYPE = 6
CODE_INVALID_REQUEST = 18
CODE_DUPLICATE = 19
CODE_MEMPOOL_FULL = 20
CODE_TOO_LARGE = 21
CODE_NOT_FOUND = 30
CODE_EXISTS = 31
CODE_INVALID_STATE = 32
CODE_PRICE_ABOVE_MAX = 33
CODE_UNKNOWN_PROVIDER = 34

CATEGORIES = {
    CODE_DECODE: "decode",
    CODE_UNAUTHORIZED: "unauthorized",
    CODE_UNKNOWN_TYPE: "unknown_type",
    CODE_INVALID_REQUEST: "invalid_request",
    CODE_DUPLICATE: "duplicate",
    CODE_MEMPOOL_FULL: "mempool_full",
    CODE_TOO_LARGE: "too_large",
    CODE_NOT_FOUND: "not_found",
    CODE_EXISTS: "already_exists",
    CODE_INVALID_STATE: "invalid_state",
    CODE_PRICE_ABOVE_MAX: "price_above_max",
    CODE_UNKNOWN_PROVIDER: "unknown_provider",
}

MODULES = {
    "deployment/create": "deployment",
    "deployment/close": "deployment",
    "market/bid/create": "market",
    "market/bid/close": "market",
    "market/lease/create": "market",
    "provider/create": "provider",
    "provider/update": "provider",
}

Key = tuple[Any, ...]
DepKey = Key  # (owner, dseq)
OrderKey = Key  # (owner, dseq, gseq, oseq)
BidKey = Key  # (owner, dseq, gseq, oseq, provider); leases and payments use the same key


class TxError(Exception):
    """A rejected tx: ``code`` != 0, a ``codespace`` and a human ``log``."""

    def __init__(self, code: int, log: str, codespace: str = "sdk") -> None:
        super().__init__(log)
        self.code = code
        self.log = log
        self.codespace = codespace


class BlockError(ValueError):
    """A block that does not extend this state (wrong height, parent, chain or hash)."""


def category(code: int) -> str:
    """Metric category of a result code."""
    return CATEGORIES.get(code, "other")


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def tx_hash(raw: bytes) -> str:
    """Upper-case hex SHA-256 of the exact tx bytes (as CometBFT)."""
    return hashlib.sha256(raw).hexdigest().upper()


def address_of(name: str) -> str:
    """Validator address of a node name: upper-case hex of the first 20 bytes of its SHA-256."""
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


def block_hash(block: dict[str, Any]) -> str:
    """Hash of the header fields PROTOCOL.md names (height as an integer)."""
    header = {k: block[k] for k in ("chain_id", "time", "proposer", "last_block_hash", "tx_hashes")}
    header["height"] = int(block["height"])
    return hashlib.sha256(canonical(header).encode()).hexdigest().upper()


def make_block(
    chain_id: str, height: int, time: str, proposer: str, last_block_hash: str, txs: list[bytes]
) -> dict[str, Any]:
    """A block (the JSON stored in etcd) with its hash."""
    block: dict[str, Any] = {
        "chain_id": chain_id,
        "height": height,
        "time": time,
        "proposer": proposer,
        "last_block_hash": last_block_hash,
        "tx_hashes": [tx_hash(t) for t in txs],
        "txs": [base64.b64encode(t).decode() for t in txs],
    }
    block["hash"] = block_hash(block)
    return block


def coin(amount: int) -> dict[str, str]:
    return {"denom": DENOM, "amount": str(amount)}


# ---------------------------------------------------------------- stateless validation (CheckTx)


def _need(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        raise TxError(CODE_INVALID_REQUEST, f"missing field {where}{key}")
    return obj[key]


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = _need(obj, key, where)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise TxError(CODE_INVALID_REQUEST, f"field {where}{key} must be a non-empty string (max 256 chars)")
    return value


def _uint(obj: dict[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = _need(obj, key, where)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value >= 2**63:
        raise TxError(CODE_INVALID_REQUEST, f"field {where}{key} must be an integer >= {minimum}")
    return value


def _dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _need(obj, key, where)
    if not isinstance(value, dict):
        raise TxError(CODE_INVALID_REQUEST, f"field {where}{key} must be an object")
    return value


def _coin(obj: dict[str, Any], key: str, where: str) -> int:
    value = _dict(obj, key, where)
    if value.get("denom") != DENOM:
        raise TxError(CODE_INVALID_REQUEST, f"field {where}{key}.denom must be {DENOM!r}")
    amount = value.get("amount")
    if not isinstance(amount, str) or not amount.isdigit() or len(amount) > 30:
        raise TxError(CODE_INVALID_REQUEST, f"field {where}{key}.amount must be an integer string")
    return int(amount)


def _order_id(obj: dict[str, Any], key: str, where: str) -> OrderKey:
    oid = _dict(obj, key, where)
    w = f"{where}{key}."
    return (_str(oid, "owner", w), _uint(oid, "dseq", w, 1), _uint(oid, "gseq", w, 1), _uint(oid, "oseq", w, 1))


def _bid_id(obj: dict[str, Any], key: str, where: str) -> BidKey:
    bid = _dict(obj, key, where)
    return (*_order_id(obj, key, where), _str(bid, "provider", f"{where}{key}."))


def _check_group(group: Any, where: str) -> None:
    if not isinstance(group, dict):
        raise TxError(CODE_INVALID_REQUEST, f"{where} must be an object")
    w = f"{where}."
    _str(group, "name", w)
    resources = _dict(group, "resources", w)
    for res in ("cpu", "memory", "storage"):
        _uint(resources, res, f"{w}resources.")
    _uint(group, "count", w, 1)
    _coin(group, "price", w)


def _check_create_deployment(msg: dict[str, Any]) -> None:
    _str(msg, "owner", "msg.")
    _uint(msg, "dseq", "msg.", 1)
    groups = _need(msg, "groups", "msg.")
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_GROUPS:
        raise TxError(CODE_INVALID_REQUEST, f"field msg.groups must be a list of 1..{MAX_GROUPS} groups")
    for i, group in enumerate(groups):
        _check_group(group, f"msg.groups[{i}]")
    _coin(msg, "deposit", "msg.")


def _check_close_deployment(msg: dict[str, Any]) -> None:
    _str(msg, "owner", "msg.")
    _uint(msg, "dseq", "msg.", 1)


def _check_create_bid(msg: dict[str, Any]) -> None:
    _str(msg, "provider", "msg.")
    _order_id(msg, "order_id", "msg.")
    _coin(msg, "price", "msg.")


def _check_bid_id(msg: dict[str, Any]) -> None:
    _bid_id(msg, "bid_id", "msg.")


def _check_create_provider(msg: dict[str, Any]) -> None:
    _str(msg, "owner", "msg.")
    _str(msg, "host_uri", "msg.")
    attributes = msg.get("attributes", [])
    if not isinstance(attributes, list) or len(attributes) > 32:
        raise TxError(CODE_INVALID_REQUEST, "field msg.attributes must be a list (max 32)")
    for i, attr in enumerate(attributes):
        if not isinstance(attr, dict):
            raise TxError(CODE_INVALID_REQUEST, f"msg.attributes[{i}] must be an object")
        _str(attr, "key", f"msg.attributes[{i}].")
        if not isinstance(attr.get("value"), str):
            raise TxError(CODE_INVALID_REQUEST, f"field msg.attributes[{i}].value must be a string")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "deployment/create": _check_create_deployment,
    "deployment/close": _check_close_deployment,
    "market/bid/create": _check_create_bid,
    "market/bid/close": _check_bid_id,
    "market/lease/create": _check_bid_id,
    "provider/create": _check_create_provider,
    "provider/update": _check_create_provider,
}


def decode_tx(raw: bytes) -> dict[str, Any]:
    """Parse and validate a tx without state (CheckTx); raises ``TxError``."""
    if len(raw) > MAX_TX_BYTES:
        raise TxError(CODE_TOO_LARGE, f"tx too large: {len(raw)} bytes > {MAX_TX_BYTES}")
    try:
        tx = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TxError(CODE_DECODE, f"tx parse error: not UTF-8 JSON: {exc}") from None
    if not isinstance(tx, dict):
        raise TxError(CODE_DECODE, "tx parse error: tx must be a JSON object")
    kind = tx.get("type")
    if not isinstance(kind, str) or not kind:
        raise TxError(CODE_INVALID_REQUEST, "missing field type")
    if kind not in CHECKS:
        raise TxError(CODE_UNKNOWN_TYPE, f"unknown tx type {kind!r}; expected one of {sorted(CHECKS)}")
    _str(tx, "signer", "")
    nonce = tx.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise TxError(CODE_INVALID_REQUEST, "field nonce must be a string")
    CHECKS[kind](_dict(tx, "msg", ""))
    return tx


def check_tx(raw: bytes) -> tuple[int, str]:
    """Stateless CheckTx: ``(0, "")`` or ``(code, log)``."""
    try:
        decode_tx(raw)
    except TxError as exc:
        return exc.code, exc.log
    return CODE_OK, ""


def tx_module(raw: bytes) -> str:
    """Module of a tx for metrics (``tx`` when it cannot be parsed)."""
    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "tx"
    return MODULES.get(kind, "tx") if isinstance(kind, str) else "tx"


# ---------------------------------------------------------------- ids and pagination


def dep_str(key: DepKey) -> str:
    return f"{key[0]}/{key[1]}"


def order_str(key: OrderKey) -> str:
    return f"{key[0]}/{key[1]}/{key[2]}/{key[3]}"


def bid_str(key: BidKey) -> str:
    return f"{key[0]}/{key[1]}/{key[2]}/{key[3]}/{key[4]}"


def order_json(key: OrderKey) -> dict[str, Any]:
    return {"owner": key[0], "dseq": str(key[1]), "gseq": key[2], "oseq": key[3]}


def bid_json(key: BidKey) -> dict[str, Any]:
    return {**order_json(key[:4]), "provider": key[4]}


def encode_page_key(key: tuple[Any, ...]) -> str:
    return base64.b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode()


def decode_page_key(text: str) -> tuple[Any, ...]:
    try:
        value = json.loads(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"invalid pagination.key: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ValueError("invalid pagination.key")
    return tuple(value)


@dataclass
class Page:
    """Pagination request: ``limit`` and the opaque ``key`` to start at."""

    limit: int = DEFAULT_PAGE_LIMIT
    key: str | None = None

    @classmethod
    def parse(cls, limit: str | None, key: str | None) -> Page:
        if limit is None:
            return cls(DEFAULT_PAGE_LIMIT, key)
        if not limit.isdigit():
            raise ValueError("pagination.limit must be a non-negative integer")
        value = int(limit) or DEFAULT_PAGE_LIMIT
        return cls(min(value, MAX_PAGE_LIMIT), key)


class SortedIndex:
    """Keys of one entity kind kept sorted, for range filters and pagination."""

    def __init__(self) -> None:
        self.keys: list[tuple[Any, ...]] = []

    def add(self, key: tuple[Any, ...]) -> None:
        bisect.insort(self.keys, key)

    def page(
        self,
        page: Page,
        match: Callable[[tuple[Any, ...]], bool],
        prefix: tuple[Any, ...] = (),
    ) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
        """Keys of one page among keys starting with ``prefix`` that ``match``; and the pagination JSON."""
        lo, hi = self._bounds(prefix)
        start = lo
        if page.key:
            start = max(lo, bisect.bisect_left(self.keys, decode_page_key(page.key), lo, hi))
        total = sum(1 for k in self.keys[lo:hi] if match(k))
        out: list[tuple[Any, ...]] = []
        next_key = None
        for i in range(start, hi):
            k = self.keys[i]
            if not match(k):
                continue
            if len(out) == page.limit:
                next_key = encode_page_key(k)
                break
            out.append(k)
        return out, {"next_key": next_key, "total": str(total)}

    def _bounds(self, prefix: tuple[Any, ...]) -> tuple[int, int]:
        if not prefix:
            return 0, len(self.keys)
        lo = bisect.bisect_left(self.keys, prefix)
        last = prefix[-1]
        upper = (*prefix[:-1], last + "\x00") if isinstance(last, str) else (*prefix[:-1], last + 1)
        return lo, bisect.bisect_left(self.keys, upper)


def _opt_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be an integer")
    return int(value)


# ---------------------------------------------------------------- the state


@dataclass
class Ctx:
    """One DeliverTx: block height/time, signer, and the entities it touched (in order)."""

    height: int
    time: str
    signer: str
    touched: list[tuple[str, Any]] = field(default_factory=list)

    def touch(self, kind: str, key: Any) -> None:
        if (kind, key) not in self.touched:
            self.touched.append((kind, key))


@dataclass
class TxRecord:
    height: int
    index: int


class State:
    """Chain state, blocks and tx index; ``apply_block`` is the only mutator after genesis."""

    def __init__(self, chain_id: str, genesis: dict[str, Any] | None = None) -> None:
        self.chain_id = chain_id
        self.height = 0
        self.last_block_hash = ""
        self.last_block_time = ""
        self.app_hash = hashlib.sha256(chain_id.encode()).hexdigest().upper()
        self.blocks: list[dict[str, Any]] = []
        self.results: list[list[dict[str, Any]]] = []
        self.tx_index: dict[str, TxRecord] = {}
        self.deployments: dict[DepKey, dict[str, Any]] = {}
        self.groups: dict[DepKey, list[dict[str, Any]]] = {}
        self.accounts: dict[DepKey, dict[str, Any]] = {}
        self.orders: dict[OrderKey, dict[str, Any]] = {}
        self.bids: dict[BidKey, dict[str, Any]] = {}
        self.leases: dict[BidKey, dict[str, Any]] = {}
        self.payments: dict[BidKey, dict[str, Any]] = {}
        self.settlements: dict[str, list[dict[str, Any]]] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        self.orders_of: dict[DepKey, list[OrderKey]] = {}
        self.bids_of: dict[OrderKey, list[BidKey]] = {}
        self.idx = {kind: SortedIndex() for kind in ("deployment", "order", "bid", "lease", "provider")}
        for prov in (genesis or {}).get("providers", []):
            self._put_provider(prov["owner"], prov.get("host_uri", ""), prov.get("attributes", []))

    # ------------------------------------------------------------ blocks

    def build_block(
        self,
        time: str,
        proposer: str,
        candidates: Iterable[bytes],
        max_txs: int = 5000,
        max_bytes: int = 600_000,
    ) -> dict[str, Any]:
        """Block ``height + 1`` from candidate txs, skipping hashes already committed or repeated."""
        chosen: list[bytes] = []
        seen: set[str] = set()
        size = 0
        for raw in candidates:
            h = tx_hash(raw)
            if h in seen or h in self.tx_index:
                continue
            if len(chosen) >= max_txs or size + len(raw) > max_bytes:
                break
            seen.add(h)
            chosen.append(raw)
            size += len(raw)
        if self.last_block_time and time <= self.last_block_time:
            time = self.last_block_time  # never go back in time (same machine clock, but be safe)
        return make_block(self.chain_id, self.height + 1, time, proposer, self.last_block_hash, chosen)

    def verify_block(self, block: dict[str, Any]) -> list[bytes]:
        """Raise ``BlockError`` unless ``block`` extends this state; return its raw txs."""
        if block.get("chain_id") != self.chain_id:
            raise BlockError(f"block chain_id {block.get('chain_id')!r} != {self.chain_id!r}")
        if block.get("height") != self.height + 1:
            raise BlockError(f"block height {block.get('height')} != expected {self.height + 1}")
        if block.get("last_block_hash") != self.last_block_hash:
            raise BlockError(f"block {block['height']} does not extend {self.last_block_hash}")
        try:
            raws = [base64.b64decode(t, validate=True) for t in block["txs"]]
        except (binascii.Error, TypeError, KeyError) as exc:
            raise BlockError(f"block {block['height']}: bad txs: {exc}") from None
        if [tx_hash(r) for r in raws] != block.get("tx_hashes"):
            raise BlockError(f"block {block['height']}: tx_hashes do not match txs")
        if "hash" in block and block["hash"] != block_hash(block):
            raise BlockError(f"block {block['height']}: hash mismatch")
        return raws

    def apply_block(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        """Deliver every tx of ``block`` (height must be ``height + 1``); return the tx results."""
        raws = self.verify_block(block)
        height = block["height"]
        results: list[dict[str, Any]] = []
        in_block: set[str] = set()
        for index, raw in enumerate(raws):
            h = block["tx_hashes"][index]
            if h in self.tx_index or h in in_block:
                results.append(_result(TxError(CODE_DUPLICATE, f"tx {h} already committed")))
                continue
            in_block.add(h)
            results.append(self._deliver(raw, height, block["time"]))
            self.tx_index[h] = TxRecord(height, index)
        stored = dict(block)
        stored["hash"] = block.get("hash") or block_hash(block)
        self.blocks.append(stored)
        self.results.append(results)
        self.height = height
        self.last_block_hash = stored["hash"]
        self.last_block_time = block["time"]
        digest = hashlib.sha256((self.app_hash + stored["hash"] + canonical(results)).encode())
        self.app_hash = digest.hexdigest().upper()
        return results

    def block(self, height: int) -> dict[str, Any] | None:
        return self.blocks[height - 1] if 1 <= height <= self.height else None

    def block_results(self, height: int) -> list[dict[str, Any]] | None:
        return self.results[height - 1] if 1 <= height <= self.height else None

    def tx(self, hash_hex: str) -> tuple[TxRecord, str, dict[str, Any]] | None:
        """``(record, tx base64, result)`` of a committed tx, or None."""
        rec = self.tx_index.get(hash_hex.upper())
        if rec is None:
            return None
        return rec, self.blocks[rec.height - 1]["txs"][rec.index], self.results[rec.height - 1][rec.index]

    def check_tx(self, raw: bytes) -> tuple[int, str]:
        """CheckTx: stateless validation plus "not already committed"."""
        if tx_hash(raw) in self.tx_index:
            return CODE_DUPLICATE, f"tx {tx_hash(raw)} already committed"
        return check_tx(raw)

    # ------------------------------------------------------------ DeliverTx

    def _deliver(self, raw: bytes, height: int, time: str) -> dict[str, Any]:
        try:
            tx = decode_tx(raw)
            ctx = Ctx(height, time, tx["signer"])
            try:
                HANDLERS[tx["type"]](self, ctx, tx["msg"])
            except TxError as exc:
                if exc.codespace == "sdk" and exc.code not in (CODE_UNAUTHORIZED, CODE_INVALID_REQUEST):
                    exc.codespace = MODULES[tx["type"]]
                raise
        except TxError as exc:
            return _result(exc)
        return {"code": CODE_OK, "log": "", "codespace": "", "events": [self._event(k, key) for k, key in ctx.touched]}

    def _authorize(self, ctx: Ctx, who: str, role: str) -> None:
        if ctx.signer != who:
            raise TxError(CODE_UNAUTHORIZED, f"unauthorized: signer {ctx.signer!r} is not the {role} {who!r}")

    def _create_deployment(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        owner, dseq = msg["owner"], _uint(msg, "dseq", "msg.", 1)
        self._authorize(ctx, owner, "deployment owner")
        dkey = (owner, dseq)
        if dkey in self.deployments:
            raise TxError(CODE_EXISTS, f"deployment {dep_str(dkey)} already exists")
        h = str(ctx.height)
        self.deployments[dkey] = {"id": {"owner": owner, "dseq": str(dseq)}, "state": "active", "created_at": h}
        self.idx["deployment"].add(dkey)
        self.groups[dkey] = []
        self.orders_of[dkey] = []
        for gseq, group in enumerate(msg["groups"], start=1):
            spec = {
                "name": group["name"],
                "resources": {r: _uint(group["resources"], r, "") for r in ("cpu", "memory", "storage")},
                "count": _uint(group, "count", ""),
                "price": coin(_coin(group, "price", "")),
            }
            gid = {"owner": owner, "dseq": str(dseq), "gseq": gseq}
            self.groups[dkey].append({"id": gid, "state": "open", "group_spec": spec, "created_at": h})
            okey = (owner, dseq, gseq, 1)
            self.orders[okey] = {"id": order_json(okey), "state": "open", "spec": dict(spec), "created_at": h}
            self.idx["order"].add(okey)
            self.orders_of[dkey].append(okey)
            self.bids_of[okey] = []
        deposit = _coin(msg, "deposit", "")
        self.accounts[dkey] = {
            "id": {"scope": "deployment", "xid": dep_str(dkey)},
            "state": {
                "owner": owner,
                "state": "open",
                "balance": coin(deposit),
                "transferred": coin(0),
                "settled_at": h,
            },
        }
        ctx.touch("deployment", dkey)
        for okey in self.orders_of[dkey]:
            ctx.touch("order", okey)
        ctx.touch("escrow_account", dkey)

    def _close_deployment(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        dkey = (msg["owner"], _uint(msg, "dseq", "msg.", 1))
        self._authorize(ctx, dkey[0], "deployment owner")
        dep = self.deployments.get(dkey)
        if dep is None:
            raise TxError(CODE_NOT_FOUND, f"deployment {dep_str(dkey)} not found")
        if dep["state"] != "active":
            raise TxError(CODE_INVALID_STATE, f"deployment {dep_str(dkey)} is {dep['state']}, not active")
        dep["state"] = "closed"
        for group in self.groups[dkey]:
            group["state"] = "closed"
        ctx.touch("deployment", dkey)
        for okey in self.orders_of[dkey]:
            self._close_order(ctx, okey)
        account = self.accounts[dkey]["state"]
        account["state"] = "closed"
        account["balance"] = coin(0)  # the rest of the deposit goes back to the owner
        account["settled_at"] = str(ctx.height)
        ctx.touch("escrow_account", dkey)

    def _close_order(self, ctx: Ctx, okey: OrderKey) -> None:
        self.orders[okey]["state"] = "closed"
        ctx.touch("order", okey)
        for bkey in self.bids_of[okey]:
            bid = self.bids[bkey]
            if bid["bid"]["state"] in ("open", "active"):
                bid["bid"]["state"] = "closed"
                ctx.touch("bid", bkey)
            lease = self.leases.get(bkey)
            if lease is not None and lease["state"] == "active":
                self._settle(ctx, bkey)

    def _settle(self, ctx: Ctx, bkey: BidKey) -> None:
        """Close an active lease and pay its provider from the deployment's escrow (capped at the balance)."""
        lease = self.leases[bkey]
        account = self.accounts[bkey[:2]]["state"]
        payment = self.payments[bkey]
        rate = int(lease["price"]["amount"])
        blocks = max(0, ctx.height - int(lease["created_at"]))
        owed = rate * blocks
        balance = int(account["balance"]["amount"])
        amount = min(owed, balance)
        account["balance"] = coin(balance - amount)
        account["transferred"] = coin(int(account["transferred"]["amount"]) + amount)
        lease["state"] = "closed"
        lease["closed_on"] = str(ctx.height)
        payment["state"].update(
            state="overdrawn" if owed > amount else "closed", balance=coin(0), withdrawn=coin(amount)
        )
        oid = order_str(bkey[:4])
        record = {
            "order_id": order_json(bkey[:4]),
            "lease_id": bid_json(bkey),
            "provider": bkey[4],
            "owner": bkey[0],
            "rate": coin(rate),
            "blocks": str(blocks),
            "amount": coin(amount),
            "settled_height": str(ctx.height),
            "settled_at": ctx.time,
        }
        self.settlements.setdefault(oid, []).append(record)
        ctx.touch("lease", bkey)
        ctx.touch("escrow_payment", bkey)
        ctx.touch("settlement", (oid, len(self.settlements[oid]) - 1))

    def _create_bid(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        provider = msg["provider"]
        okey = _order_id(msg, "order_id", "msg.")
        price = _coin(msg, "price", "msg.")
        self._authorize(ctx, provider, "provider")
        order = self.orders.get(okey)
        if order is None:
            raise TxError(CODE_NOT_FOUND, f"order {order_str(okey)} not found")
        if order["state"] != "open":
            raise TxError(CODE_INVALID_STATE, f"order {order_str(okey)} is {order['state']}, not open")
        if provider not in self.providers:
            raise TxError(CODE_UNKNOWN_PROVIDER, f"provider {provider!r} is not registered")
        max_price = int(order["spec"]["price"]["amount"])
        if price > max_price:
            raise TxError(
                CODE_PRICE_ABOVE_MAX, f"bid price {price}{DENOM} above the order's max price {max_price}{DENOM}"
            )
        bkey = (*okey, provider)
        if bkey in self.bids:
            raise TxError(CODE_EXISTS, f"bid {bid_str(bkey)} already exists")
        self.bids[bkey] = {
            "bid": {"id": bid_json(bkey), "state": "open", "price": coin(price), "created_at": str(ctx.height)}
        }
        self.idx["bid"].add(bkey)
        self.bids_of[okey].append(bkey)
        ctx.touch("bid", bkey)

    def _get_bid(self, msg: dict[str, Any]) -> tuple[BidKey, dict[str, Any]]:
        bkey = _bid_id(msg, "bid_id", "msg.")
        bid = self.bids.get(bkey)
        if bid is None:
            raise TxError(CODE_NOT_FOUND, f"bid {bid_str(bkey)} not found")
        return bkey, bid["bid"]

    def _close_bid(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        bkey = _bid_id(msg, "bid_id", "msg.")
        self._authorize(ctx, bkey[4], "provider")
        bkey, bid = self._get_bid(msg)
        if bid["state"] != "open":
            raise TxError(CODE_INVALID_STATE, f"bid {bid_str(bkey)} is {bid['state']}; only open bids can be closed")
        bid["state"] = "closed"
        ctx.touch("bid", bkey)

    def _create_lease(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        bkey = _bid_id(msg, "bid_id", "msg.")
        self._authorize(ctx, bkey[0], "order owner")
        bkey, bid = self._get_bid(msg)
        okey: OrderKey = bkey[:4]
        order = self.orders[okey]
        if order["state"] != "open":
            raise TxError(CODE_INVALID_STATE, f"order {order_str(okey)} is {order['state']}, not open")
        if bid["state"] != "open":
            raise TxError(CODE_INVALID_STATE, f"bid {bid_str(bkey)} is {bid['state']}, not open")
        order["state"] = "active"
        bid["state"] = "active"
        for other in self.bids_of[okey]:
            if other != bkey and self.bids[other]["bid"]["state"] == "open":
                self.bids[other]["bid"]["state"] = "lost"
                ctx.touch("bid", other)
        price = dict(bid["price"])
        self.leases[bkey] = {
            "id": bid_json(bkey),
            "state": "active",
            "price": price,
            "created_at": str(ctx.height),
            "closed_on": "0",
        }
        self.idx["lease"].add(bkey)
        self.payments[bkey] = {
            "id": {"scope": "deployment", "xid": dep_str(bkey[:2])},
            "payment_id": f"{bkey[2]}/{bkey[3]}/{bkey[4]}",
            "state": {"owner": bkey[4], "state": "open", "rate": price, "balance": coin(0), "withdrawn": coin(0)},
        }
        ctx.touch("order", okey)
        ctx.touch("bid", bkey)
        ctx.touch("lease", bkey)
        ctx.touch("escrow_payment", bkey)

    def _create_provider(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        owner = msg["owner"]
        self._authorize(ctx, owner, "provider owner")
        if owner in self.providers:
            raise TxError(CODE_EXISTS, f"provider {owner!r} already exists")
        self._put_provider(owner, msg["host_uri"], msg.get("attributes", []))
        ctx.touch("provider", owner)

    def _update_provider(self, ctx: Ctx, msg: dict[str, Any]) -> None:
        """Create or replace the signer's provider record (idempotent; synthetic checks use it as a heartbeat tx)."""
        owner = msg["owner"]
        self._authorize(ctx, owner, "provider owner")
        self._put_provider(owner, msg["host_uri"], msg.get("attributes", []))
        ctx.touch("provider", owner)

    def _put_provider(self, owner: str, host_uri: str, attributes: list[dict[str, str]]) -> None:
        attrs = [{"key": a["key"], "value": a["value"]} for a in attributes]
        self.providers[owner] = {"owner": owner, "host_uri": host_uri, "attributes": attrs}
        self.idx["provider"].add((owner,))

    # ------------------------------------------------------------ events

    def _event(self, kind: str, key: Any) -> dict[str, Any]:
        ident, value = self._entity(kind, key)
        return {
            "type": kind,
            "attributes": [{"key": "id", "value": ident}, {"key": "state", "value": canonical(value)}],
        }

    def _entity(self, kind: str, key: Any) -> tuple[str, Any]:
        if kind == "deployment":
            return dep_str(key), self._deployment_item(key)
        if kind == "order":
            return order_str(key), self.orders[key]
        if kind == "bid":
            return bid_str(key), self.bids[key]
        if kind == "lease":
            return bid_str(key), self._lease_item(key)
        if kind == "escrow_account":
            return dep_str(key), self.accounts[key]
        if kind == "escrow_payment":
            return bid_str(key), self.payments[key]
        if kind == "settlement":
            return key[0], self.settlements[key[0]][key[1]]
        return key, self.providers[key]

    # ------------------------------------------------------------ queries (REST JSON)

    def _deployment_item(self, dkey: DepKey) -> dict[str, Any]:
        return {
            "deployment": self.deployments[dkey],
            "groups": self.groups[dkey],
            "escrow_account": self.accounts[dkey],
        }

    def _lease_item(self, bkey: BidKey) -> dict[str, Any]:
        return {"lease": self.leases[bkey], "escrow_payment": self.payments[bkey]}

    def deployments_list(
        self, owner: str | None = None, state: str | None = None, dseq: str | None = None, page: Page | None = None
    ) -> dict[str, Any]:
        d = _opt_int(dseq, "filters.dseq")
        prefix = _prefix(owner, d)

        def match(k: tuple[Any, ...]) -> bool:
            return (d is None or k[1] == d) and (state is None or self.deployments[k]["state"] == state)

        keys, pagination = self.idx["deployment"].page(page or Page(), match, prefix)
        return {"deployments": [self._deployment_item(k) for k in keys], "pagination": pagination}

    def deployment_info(self, owner: str, dseq: str) -> dict[str, Any] | None:
        dkey = (owner, _opt_int(dseq, "id.dseq"))
        return self._deployment_item(dkey) if dkey in self.deployments else None

    def orders_list(
        self, owner: str | None = None, dseq: str | None = None, state: str | None = None, page: Page | None = None
    ) -> dict[str, Any]:
        d = _opt_int(dseq, "filters.dseq")

        def match(k: tuple[Any, ...]) -> bool:
            return (d is None or k[1] == d) and (state is None or self.orders[k]["state"] == state)

        keys, pagination = self.idx["order"].page(page or Page(), match, _prefix(owner, d))
        return {"orders": [self.orders[k] for k in keys], "pagination": pagination}

    def order_info(self, owner: str, dseq: str, gseq: str, oseq: str) -> dict[str, Any] | None:
        okey = (owner, _opt_int(dseq, "id.dseq"), _opt_int(gseq, "id.gseq"), _opt_int(oseq, "id.oseq"))
        return self.orders.get(okey)

    def _bid_filter(self, table: dict[BidKey, Any], state: str | None, dseq: int | None, provider: str | None) -> Any:
        def match(k: tuple[Any, ...]) -> bool:
            if (dseq is not None and k[1] != dseq) or (provider is not None and k[4] != provider):
                return False
            return state is None or _state_of(table[k]) == state

        return match

    def _page_of(
        self,
        kind: str,
        table: dict[str, Any],
        owner: str | None,
        dseq: str | None,
        provider: str | None,
        state: str | None,
        page: Page | None,
    ) -> tuple[list[str], dict[str, Any]]:
        """One page of the bids or leases (same id shape) matching the filters."""
        d = _opt_int(dseq, "filters.dseq")
        match = self._bid_filter(table, state, d, provider)
        return self.idx[kind].page(page or Page(), match, _prefix(owner, d))

    def bids_list(
        self,
        owner: str | None = None,
        dseq: str | None = None,
        provider: str | None = None,
        state: str | None = None,
        page: Page | None = None,
    ) -> dict[str, Any]:
        keys, pagination = self._page_of("bid", self.bids, owner, dseq, provider, state, page)
        return {"bids": [self.bids[k] for k in keys], "pagination": pagination}

    def bid_info(self, owner: str, dseq: str, gseq: str, oseq: str, provider: str) -> dict[str, Any] | None:
        return self.bids.get(self._bkey(owner, dseq, gseq, oseq, provider))

    def leases_list(
        self,
        owner: str | None = None,
        dseq: str | None = None,
        provider: str | None = None,
        state: str | None = None,
        page: Page | None = None,
    ) -> dict[str, Any]:
        keys, pagination = self._page_of("lease", self.leases, owner, dseq, provider, state, page)
        return {"leases": [self._lease_item(k) for k in keys], "pagination": pagination}

    def lease_info(self, owner: str, dseq: str, gseq: str, oseq: str, provider: str) -> dict[str, Any] | None:
        bkey = self._bkey(owner, dseq, gseq, oseq, provider)
        return self._lease_item(bkey) if bkey in self.leases else None

    def accounts_list(
        self, owner: str | None = None, state: str | None = None, page: Page | None = None
    ) -> dict[str, Any]:
        def match(k: tuple[Any, ...]) -> bool:
            return state is None or self.accounts[k]["state"]["state"] == state

        keys, pagination = self.idx["deployment"].page(page or Page(), match, _prefix(owner, None))
        return {"accounts": [self.accounts[k] for k in keys], "pagination": pagination}

    def payments_list(
        self, xid: str | None = None, state: str | None = None, page: Page | None = None
    ) -> dict[str, Any]:
        prefix: tuple[Any, ...] = ()
        if xid is not None:
            owner, _, dseq = xid.rpartition("/")
            if not owner or not dseq.isdigit():
                raise ValueError("filters.xid must be owner/dseq")
            prefix = (owner, int(dseq))

        def match(k: tuple[Any, ...]) -> bool:
            return state is None or self.payments[k]["state"]["state"] == state

        keys, pagination = self.idx["lease"].page(page or Page(), match, prefix)
        return {"payments": [self.payments[k] for k in keys], "pagination": pagination}

    def settlements_by_order(self, owner: str, dseq: str, gseq: str, oseq: str) -> dict[str, Any]:
        key = f"{owner}/{_opt_int(dseq, 'dseq')}/{_opt_int(gseq, 'gseq')}/{_opt_int(oseq, 'oseq')}"
        return {"settlements": list(self.settlements.get(key, []))}

    def providers_list(self, page: Page | None = None) -> dict[str, Any]:
        keys, pagination = self.idx["provider"].page(page or Page(), lambda k: True)
        return {"providers": [self.providers[k[0]] for k in keys], "pagination": pagination}

    def provider_info(self, owner: str) -> dict[str, Any] | None:
        return self.providers.get(owner)

    def _bkey(self, owner: str, dseq: str, gseq: str, oseq: str, provider: str) -> BidKey:
        return (owner, _opt_int(dseq, "id.dseq"), _opt_int(gseq, "id.gseq"), _opt_int(oseq, "id.oseq"), provider)


def _prefix(owner: str | None, dseq: int | None) -> tuple[Any, ...]:
    if owner is None:
        return ()
    return (owner,) if dseq is None else (owner, dseq)


def _state_of(entity: dict[str, Any]) -> str:
    return entity["bid"]["state"] if "bid" in entity else entity["state"]


def _result(exc: TxError) -> dict[str, Any]:
    return {"code": exc.code, "log": exc.log, "codespace": exc.codespace, "events": []}


HANDLERS: dict[str, Callable[[State, Ctx, dict[str, Any]], None]] = {
    "deployment/create": State._create_deployment,
    "deployment/close": State._close_deployment,
    "market/bid/create": State._create_bid,
    "market/bid/close": State._close_bid,
    "market/lease/create": State._create_lease,
    "provider/create": State._create_provider,
    "provider/update": State._update_provider,
}
