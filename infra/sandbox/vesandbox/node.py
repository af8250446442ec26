"""A sandbox validator node: CometBFT-like RPC, Cosmos-like REST, blocks ordered through its own etcd member.

Run as ``python -m vesandbox.node --config FILE``. See PROTOCOL.md ("Consensus", "CometBFT RPC", "Cosmos REST").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox import chain
from vesandbox.common import (
    load_config,
    metrics_response,
    now_rfc3339,
    query_param,
    rest_not_found,
    rpc_error,
    rpc_result,
    setup_logging,
)
from vesandbox.etcd import MAX_TXN_OPS, Etcd, EtcdError, absent, delete_op, put_op

VERSION = "0.38.12-vesandbox"
GENESIS_TIME = "1970-01-01T00:00:00.000000Z"
MAX_PENDING = 20_000
GOSSIP_BATCH = 100
FETCH_BLOCKS = 50
MEMPOOL_SCAN = 5000
LEAK_BYTES = 1 << 20

POSITIONAL = {"broadcast_tx_sync": "tx", "broadcast_tx_async": "tx", "tx": "hash", "block": "height"}


class RpcError(Exception):
    """A JSON-RPC error (``data`` is the human message)."""

    def __init__(self, data: str, code: int = -32603, message: str = "Internal error") -> None:
        super().__init__(data)
        self.data, self.code, self.message = data, code, message


class BadParams(RpcError):
    def __init__(self, data: str) -> None:
        super().__init__(data, -32602, "Invalid params")


@dataclass
class PendingTx:
    raw: bytes
    added: float


class Metrics:
    """The node's Prometheus metrics (own registry)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("tendermint_consensus_height", "Latest committed block height", registry=r)
        self.block_time = Gauge(
            "tendermint_consensus_latest_block_time", "Time of the latest block (unix seconds)", registry=r
        )
        self.mempool = Gauge("tendermint_mempool_size", "Txs accepted by this node, not yet in a block", registry=r)
        self.peers = Gauge("tendermint_p2p_peers", "Validators reachable through the local etcd member", registry=r)
        self.syncing = Gauge("tendermint_consensus_fast_syncing", "1 while replaying blocks after start", registry=r)
        self.txs = Counter("virtengine_node_txs", "Txs delivered in blocks applied by this node", registry=r)
        self.errors = Counter(
            "virtengine_errors", "Failed txs (CheckTx and DeliverTx)", ["module", "category"], registry=r
        )
        self.proposed = Counter("virtengine_node_blocks_proposed", "Blocks this node committed", registry=r)
        self.etcd_errors = Counter("virtengine_node_etcd_errors", "Failed or timed-out etcd calls", ["op"], registry=r)
        self.requests = Counter(
            "virtengine_node_http_requests", "HTTP requests", ["server", "path", "status"], registry=r
        )
        self.latency = Histogram(
            "virtengine_node_http_request_duration_seconds",
            "HTTP request latency",
            ["server", "path"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )


class HttpMetrics:
    """ASGI wrapper counting requests and latency per route template."""

    def __init__(self, app: Any, server: str, metrics: Metrics) -> None:
        self.app, self.server, self.metrics = app, server, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(self.server, path, str(status)).inc()
            self.metrics.latency.labels(self.server, path).observe(time.perf_counter() - start)


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the node (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def parse_time(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


def node_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


class Node:
    """One validator: state machine, mempool, consensus through etcd, RPC and REST apps."""

    def __init__(self, config: dict[str, Any], log: logging.Logger) -> None:
        self.config = config
        self.log = log
        self.name: str = config["name"]
        self.validators: list[str] = list(config["validators"])
        self.index: int = int(config.get("index", self.validators.index(self.name)))
        self.chain_id: str = config.get("chain_id", "virtengine-sandbox")
        self.block_time = float(config.get("block_time", 1.0))
        self.propose_timeout = float(config.get("propose_timeout", 1.0))
        self.poll_interval = float(config.get("poll_interval", 0.1))
        self.max_block_txs = int(config.get("max_block_txs", 5000))
        self.max_block_bytes = int(config.get("max_block_bytes", 600_000))
        self.mempool_ttl = float(config.get("mempool_ttl", 600.0))
        self.leaky = "leaky-memory" in config.get("weaknesses", [])
        self.prefix = f"/vesandbox/{self.chain_id}"
        self.etcd = Etcd(config["etcd"], float(config.get("etcd_timeout", 2.0)))
        self.state = chain.State(self.chain_id, config.get("genesis", {}))
        self.metrics = Metrics()
        self.pending: dict[str, PendingTx] = {}
        self.outbox: dict[str, None] = {}  # pending hashes not yet written to etcd, in arrival order
        self.cleanup: dict[str, None] = {}  # committed hashes whose mempool key may still be in etcd
        self.catching_up = True
        self.metrics.syncing.set(1)
        self.next_due = time.monotonic()
        self.has_leader = False
        self.leaked: list[bytes] = []
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.servers: list[uvicorn.Server] = []
        self._last_error: dict[str, float] = {}
        self._failing: set[str] = set()
        # node-stuck-after-restart: a life file holds the height this process reached; found at start (the previous
        # life ended without a clean stop: a crash), the node replays to that height and never follows the chain again
        self.life_file: Path | None = None
        self.frozen_at: int | None = None
        if "node-stuck-after-restart" in config.get("weaknesses", []) and config.get("life_file"):
            self.life_file = Path(config["life_file"])
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self.frozen_at = int(json.loads(self.life_file.read_text())["height"])

    # ------------------------------------------------------------ etcd keys

    def block_key(self, height: int) -> str:
        return f"{self.prefix}/blocks/{height:012d}"

    def mempool_key(self, h: str) -> str:
        return f"{self.prefix}/mempool/{h}"

    # ------------------------------------------------------------ consensus

    async def consensus_loop(self) -> None:
        """Follow ``/height`` and apply blocks in order; propose when it is this node's turn."""
        while not self.stopping.is_set():
            busy = False
            try:
                busy = await self.step()
                self.etcd_ok("consensus")
            except EtcdError as exc:
                self.etcd_failed("consensus", exc)
            except chain.BlockError as exc:
                self.fatal(f"block from etcd does not fit this node's chain: {exc}")
            except Exception:  # a bug must not stop the node from following the chain
                self.log.exception("consensus step failed")
                await self.pause(1.0)
            if not busy:
                wait = self.proposal_deadline() - time.monotonic()
                await self.pause(min(self.poll_interval, max(0.005, wait)))

    async def step(self) -> bool:
        kv = await self.etcd.get(f"{self.prefix}/height")
        remote = int(kv.value) if kv else 0
        if self.frozen_at is not None:  # node-stuck-after-restart: never past the pre-crash height, yet "in sync"
            remote = min(remote, self.frozen_at)
            if self.state.height >= remote:
                if self.catching_up:
                    self.catching_up = False
                    self.metrics.syncing.set(0)
                    self.log.info("caught up at height %d (stuck after restart: not following the chain)", remote)
                return False
        if remote > self.state.height:
            return await self.fetch_blocks(remote)
        if remote < self.state.height:
            self.fatal(f"etcd is at height {remote}, below this node's {self.state.height} (restored?)")
            return False
        if self.catching_up:
            self.catching_up = False
            self.metrics.syncing.set(0)
            self.log.info("caught up at height %d", self.state.height)
        if time.monotonic() >= self.proposal_deadline():
            await self.propose()
            return True
        return False

    def proposal_deadline(self) -> float:
        """When this node may propose the next height: at once if it is the proposer, later for the others."""
        rank = (self.index - (self.state.height + 1)) % len(self.validators)
        return self.next_due + rank * self.propose_timeout

    async def fetch_blocks(self, remote: int) -> bool:
        """Apply blocks ``height+1..`` (at most ``FETCH_BLOCKS``); False when the next one is missing."""
        start = self.state.height + 1
        end = min(remote, start + FETCH_BLOCKS - 1)
        for kv in await self.etcd.range(self.block_key(start), self.block_key(end + 1)):
            block = json.loads(kv.value)
            if block.get("height") != self.state.height + 1:
                break
            self.apply(block)
            await asyncio.sleep(0)  # keep serving RPC while replaying
        if self.state.height < start:
            self.etcd_failed("consensus", EtcdError(f"/height is {remote} but block {start} is missing"))
            return False
        return True

    async def propose(self) -> None:
        height = self.state.height + 1
        in_etcd: set[str] = set()
        stale: list[str] = []
        candidates: list[bytes] = []
        for kv in await self.etcd.range_prefix(f"{self.prefix}/mempool/", limit=MEMPOOL_SCAN, sort_by_create=True):
            h = chain.tx_hash(kv.value)
            if h in self.state.tx_index or not kv.key.endswith(h):
                stale.append(kv.key.rsplit("/", 1)[-1])
                continue
            in_etcd.add(h)
            candidates.append(kv.value)
        candidates.extend(self.pending[h].raw for h in self.outbox if h in self.pending)
        block = self.state.build_block(now_rfc3339(), self.name, candidates, self.max_block_txs, self.max_block_bytes)
        deletes = list(dict.fromkeys([h for h in block["tx_hashes"] if h in in_etcd] + stale))
        room = MAX_TXN_OPS - 2
        ops = [put_op(self.block_key(height), json.dumps(block)), put_op(f"{self.prefix}/height", str(height))]
        ops += [delete_op(self.mempool_key(h)) for h in deletes[:room]]
        if not await self.etcd.txn([absent(self.block_key(height))], ops):
            return  # another validator committed this height: the next step fetches it
        self.metrics.proposed.inc()
        self.apply(block)
        self.cleanup.update(dict.fromkeys(deletes[room:]))

    def apply(self, block: dict[str, Any]) -> None:
        results = self.state.apply_block(block)
        for h, result in zip(block["tx_hashes"], results, strict=True):
            if self.pending.pop(h, None) is not None:
                self.outbox.pop(h, None)
            if result["code"] != chain.CODE_OK and result["code"] != chain.CODE_DUPLICATE:
                module = chain.MODULES.get(_tx_type(block, h), "tx")
                self.metrics.errors.labels(module, chain.category(result["code"])).inc()
        self.metrics.txs.inc(len(results))
        self.metrics.height.set(self.state.height)
        self.metrics.mempool.set(len(self.pending))
        wall = parse_time(block["time"])
        if wall is not None:
            self.metrics.block_time.set(wall)
        elapsed = min(max(time.time() - wall, 0.0), self.block_time) if wall is not None else 0.0
        self.next_due = time.monotonic() - elapsed + self.block_time
        if self.leaky:
            self.leaked.append(b"\x01" * LEAK_BYTES)
        if self.life_file is not None and self.frozen_at is None:
            self.record_life()

    def record_life(self) -> None:
        """node-stuck-after-restart: remember the height this life reached (replaced atomically)."""
        assert self.life_file is not None
        tmp = self.life_file.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"height": self.state.height}))
            tmp.replace(self.life_file)

    def stop_cleanly(self) -> None:
        """A signal: a clean stop, so the next start is not a restart after a crash."""
        if self.life_file is not None:
            with contextlib.suppress(OSError):
                self.life_file.unlink()
        self.shutdown()

    # ------------------------------------------------------------ mempool

    def broadcast(self, raw: bytes) -> dict[str, Any]:
        """CheckTx and add to the local mempool; CometBFT ``broadcast_tx_sync`` result."""
        h = chain.tx_hash(raw)
        code, log = self.state.check_tx(raw)
        if code == chain.CODE_OK and h in self.pending:
            code, log = chain.CODE_DUPLICATE, "tx already exists in cache"
        if code == chain.CODE_OK and len(self.pending) >= MAX_PENDING:
            code, log = chain.CODE_MEMPOOL_FULL, f"mempool is full: {len(self.pending)} txs"
        if code != chain.CODE_OK:
            self.metrics.errors.labels(chain.tx_module(raw), chain.category(code)).inc()
            codespace = "sdk" if code < 30 else chain.tx_module(raw)
            return {"code": code, "data": "", "log": log, "codespace": codespace, "hash": h}
        self.pending[h] = PendingTx(raw, time.monotonic())
        self.outbox[h] = None
        self.metrics.mempool.set(len(self.pending))
        return {"code": 0, "data": "", "log": "", "codespace": "", "hash": h}

    async def gossip_loop(self) -> None:
        """Write new mempool txs (and deletes of stale keys) to etcd, one txn per ~50 ms."""
        while not self.stopping.is_set():
            await self.pause(0.05)
            self.expire_pending()
            puts = list(itertools.islice((h for h in self.outbox if h not in self.state.tx_index), GOSSIP_BATCH))
            dels = list(self.cleanup)[: MAX_TXN_OPS - len(puts)]
            if not puts and not dels:
                continue
            ops = [put_op(self.mempool_key(h), self.pending[h].raw) for h in puts]
            ops += [delete_op(self.mempool_key(h)) for h in dels]
            try:
                await self.etcd.txn([], ops)
            except EtcdError as exc:
                self.etcd_failed("gossip", exc)
                await self.pause(0.5)
                continue
            except Exception:
                self.log.exception("mempool gossip failed")
                await self.pause(1.0)
                continue
            for h in puts:
                self.outbox.pop(h, None)
            for h in dels:
                self.cleanup.pop(h, None)

    def expire_pending(self) -> None:
        cutoff = time.monotonic() - self.mempool_ttl
        while self.pending:
            h, first = next(iter(self.pending.items()))
            if first.added > cutoff:
                break
            del self.pending[h]
            self.outbox.pop(h, None)
            self.log.warning("dropped tx %s from the mempool after %.0fs", h, self.mempool_ttl)
        self.metrics.mempool.set(len(self.pending))

    async def leader_loop(self) -> None:
        """Peers are reachable when the local etcd member knows a leader (it then talks to a quorum)."""
        while not self.stopping.is_set():
            try:
                self.has_leader = await self.etcd.has_leader()
            except (EtcdError, ValueError) as exc:
                self.has_leader = False
                self.etcd_failed("status", exc)
            self.metrics.peers.set(len(self.peers()))
            await self.pause(1.0)

    def peers(self) -> list[str]:
        return [v for v in self.validators if v != self.name] if self.has_leader else []

    # ------------------------------------------------------------ helpers

    def fatal(self, reason: str) -> None:
        """Stop with exit code 3 so that the supervisor restarts the node and it replays the chain from etcd."""
        self.log.error("%s: exiting to replay from etcd", reason)
        self.exit_code = 3
        self.shutdown()

    def shutdown(self) -> None:
        self.stopping.set()
        for server in self.servers:
            server.should_exit = True

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def etcd_failed(self, op: str, exc: Exception) -> None:
        self.metrics.etcd_errors.labels(op).inc()
        self._failing.add(op)
        now = time.monotonic()
        if now - self._last_error.get(op, 0.0) >= 5.0:
            self._last_error[op] = now
            self.log.warning("etcd %s failed: %s", op, exc)

    def etcd_ok(self, op: str) -> None:
        if op in self._failing:
            self._failing.discard(op)
            self.log.info("etcd %s works again (height %d)", op, self.state.height)

    # ------------------------------------------------------------ run

    async def run(self) -> int:
        """Serve RPC and REST and run the background loops until a signal or a fatal error; the exit code."""
        rpc = self.config["rpc"]
        rest = self.config["rest"]
        self.servers = [
            QuietServer(_uv_config(HttpMetrics(build_rpc_app(self), "rpc", self.metrics), rpc)),
            QuietServer(_uv_config(HttpMetrics(build_rest_app(self), "rest", self.metrics), rest)),
        ]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_cleanly)
        if self.life_file is not None and self.frozen_at is None:
            self.record_life()
        tasks = [asyncio.create_task(c) for c in (self.consensus_loop(), self.gossip_loop(), self.leader_loop())]
        self.log.info(
            "node %s (index %d of %s) chain %s, etcd %s, rpc %s:%d, rest %s:%d",
            self.name, self.index, self.validators, self.chain_id, self.etcd.url,
            rpc["host"], rpc["port"], rest["host"], rest["port"],
        )  # fmt: skip
        try:
            await asyncio.gather(*(s.serve() for s in self.servers))
        finally:
            self.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.etcd.close()
        return self.exit_code


def _uv_config(app: Any, addr: dict[str, Any]) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=addr["host"], port=int(addr["port"]), log_level="warning", access_log=False, lifespan="off"
    )


def _tx_type(block: dict[str, Any], h: str) -> str:
    try:
        raw = base64.b64decode(block["txs"][block["tx_hashes"].index(h)])
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError, binascii.Error):
        return ""
    return kind if isinstance(kind, str) else ""


# ---------------------------------------------------------------- RPC


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _tx_param(params: dict[str, Any], from_get: bool) -> bytes:
    value = params.get("tx")
    if not isinstance(value, str) or not value:
        raise BadParams("missing parameter tx")
    try:
        if from_get and value.startswith("0x"):
            return bytes.fromhex(value[2:])
        if from_get and len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1].encode()
        if value.lstrip().startswith("{"):
            return value.encode()
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BadParams(f"cannot decode tx: {exc}") from None


def _hash_param(params: dict[str, Any]) -> str:
    value = _unquote(params.get("hash"))
    if not isinstance(value, str) or not value:
        raise BadParams("missing parameter hash")
    text = value[2:] if value.lower().startswith("0x") else value
    if len(text) == 64:
        try:
            bytes.fromhex(text)
            return text.upper()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise BadParams(f"hash must be hex: {value!r}") from None
    if len(raw) != 32:
        raise BadParams(f"hash must be 32 bytes: {value!r}")
    return raw.hex().upper()


def _height_param(node: Node, params: dict[str, Any]) -> int:
    value = _unquote(params.get("height"))
    if value in (None, "", 0, "0"):
        if node.state.height == 0:
            raise RpcError("no blocks yet: height 0")
        return node.state.height
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        height = int(value)
    else:
        raise BadParams(f"height must be an integer: {value!r}")
    if height > node.state.height:
        raise RpcError(
            f"height {height} must be less than or equal to the current blockchain height {node.state.height}"
        )
    return height


def block_json(state: Any, height: int) -> dict[str, Any] | None:
    """A block as CometBFT's RPC and the REST gateway show it (None when there is no such height)."""
    b = state.block(height)
    if b is None:
        return None
    header = {
        "chain_id": b["chain_id"],
        "height": str(b["height"]),
        "time": b["time"],
        "proposer_address": chain.address_of(b["proposer"]),
        "last_block_id": {"hash": b["last_block_hash"]},
    }
    return {"block_id": {"hash": b["hash"]}, "block": {"header": header, "data": {"txs": b["txs"]}}}


def rpc_methods(node: Node) -> dict[str, Callable[[dict[str, Any], bool], Any]]:
    """JSON-RPC methods: ``(params, from_get) -> result`` (raise ``RpcError``)."""
    st = node.state

    def health(params: dict[str, Any], from_get: bool) -> Any:
        return {}

    def status(params: dict[str, Any], from_get: bool) -> Any:
        return {
            "node_info": {
                "id": node_id(node.name),
                "network": node.chain_id,
                "moniker": node.name,
                "version": VERSION,
                "listen_addr": f"tcp://{node.config['rpc']['host']}:{node.config['rpc']['port']}",
            },
            "sync_info": {
                "latest_block_hash": st.last_block_hash,
                "latest_app_hash": st.app_hash,
                "latest_block_height": str(st.height),
                "latest_block_time": st.last_block_time or GENESIS_TIME,
                "earliest_block_height": "1" if st.height else "0",
                "catching_up": node.catching_up,
            },
            "validator_info": {"address": chain.address_of(node.name), "voting_power": "10"},
        }

    def net_info(params: dict[str, Any], from_get: bool) -> Any:
        peers = node.peers()
        return {
            "listening": True,
            "listeners": [f"Listener(@{node.config['rpc']['host']}:{node.config['rpc']['port']})"],
            "n_peers": str(len(peers)),
            "peers": [{"node_info": {"id": node_id(p), "moniker": p}, "remote_ip": "127.0.0.1"} for p in peers],
        }

    def broadcast_tx_sync(params: dict[str, Any], from_get: bool) -> Any:
        return node.broadcast(_tx_param(params, from_get))

    def tx(params: dict[str, Any], from_get: bool) -> Any:
        h = _hash_param(params)
        found = st.tx(h)
        if found is None:
            raise RpcError(f"tx ({h}) not found")
        rec, tx_b64, result = found
        return {"hash": h, "height": str(rec.height), "index": rec.index, "tx_result": result, "tx": tx_b64}

    def block(params: dict[str, Any], from_get: bool) -> Any:
        b = block_json(st, _height_param(node, params))
        assert b is not None
        return b

    def block_results(params: dict[str, Any], from_get: bool) -> Any:
        height = _height_param(node, params)
        return {"height": str(height), "txs_results": st.block_results(height)}

    def num_unconfirmed_txs(params: dict[str, Any], from_get: bool) -> Any:
        n = str(len(node.pending))
        return {"n_txs": n, "total": n, "total_bytes": str(sum(len(p.raw) for p in node.pending.values()))}

    def validators(params: dict[str, Any], from_get: bool) -> Any:
        vals = [{"address": chain.address_of(v), "voting_power": "10", "name": v} for v in node.validators]
        return {"block_height": str(st.height), "validators": vals, "count": str(len(vals)), "total": str(len(vals))}

    return {
        "health": health,
        "status": status,
        "net_info": net_info,
        "broadcast_tx_sync": broadcast_tx_sync,
        "broadcast_tx_async": broadcast_tx_sync,
        "tx": tx,
        "block": block,
        "block_results": block_results,
        "num_unconfirmed_txs": num_unconfirmed_txs,
        "validators": validators,
    }


def build_rpc_app(node: Node) -> Starlette:
    methods = rpc_methods(node)

    def call(name: str, params: Any, request_id: Any, from_get: bool) -> Response:
        if name not in methods:
            return rpc_error(f"method {name!r} not found", request_id, -32601, "Method not found")
        if isinstance(params, list) and params and name in POSITIONAL:
            params = {POSITIONAL[name]: params[0]}
        if not isinstance(params, dict):
            return rpc_error("params must be an object", request_id, -32602, "Invalid params")
        try:
            return rpc_result(methods[name](params, from_get), request_id)
        except RpcError as exc:
            return rpc_error(exc.data, request_id, exc.code, exc.message)

    async def post(request: Request, name: str | None) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return rpc_error("request body is not JSON", -1, -32700, "Parse error")
        if not isinstance(body, dict):
            return rpc_error("request must be a JSON object", -1, -32600, "Invalid Request")
        return call(body.get("method") or name or "", body.get("params") or {}, body.get("id", -1), False)

    def endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if request.method == "POST":
                return await post(request, name)
            return call(name, dict(request.query_params), -1, True)

        return handle

    async def root(request: Request) -> Response:
        if request.method == "POST":
            return await post(request, None)
        return JSONResponse({"methods": sorted(methods)})

    async def metrics(request: Request) -> Response:
        return metrics_response(node.metrics.registry)

    routes = [Route(f"/{name}", endpoint(name), methods=["GET", "POST"]) for name in methods]
    routes += [Route("/", root, methods=["GET", "POST"]), Route("/metrics", metrics)]
    return Starlette(routes=routes)


# ---------------------------------------------------------------- REST


def build_rest_app(node: Node) -> Starlette:
    st = node.state

    def q(request: Request, name: str) -> str | None:
        return query_param(request, name)

    def page(request: Request) -> chain.Page:
        return chain.Page.parse(q(request, "pagination.limit"), q(request, "pagination.key"))

    def endpoint(fn: Callable[[Request], Any], what: str = "") -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                result = fn(request)
            except ValueError as exc:
                return JSONResponse({"code": 3, "message": str(exc), "details": []}, status_code=400)
            if result is None:
                return rest_not_found(what)
            return JSONResponse(result)

        return handle

    def block_at(request: Request) -> Any:
        text = request.path_params["height"]
        if not text.isdigit():
            raise ValueError("height must be an integer")
        return block_json(st, int(text))

    def required(request: Request, *names: str) -> list[str]:
        values = [q(request, n) for n in names]
        missing = [n for n, v in zip(names, values, strict=True) if v is None]
        if missing:
            raise ValueError(f"missing query parameter(s): {', '.join(missing)}")
        return values  # type: ignore[return-value]

    def lease_args(request: Request) -> dict[str, Any]:
        return {
            "owner": q(request, "filters.owner"),
            "dseq": q(request, "filters.dseq"),
            "provider": q(request, "filters.provider"),
            "state": q(request, "filters.state"),
            "page": page(request),
        }

    def settlements(request: Request) -> Any:
        p = request.path_params
        return st.settlements_by_order(p["owner"], p["dseq"], p["gseq"], p["oseq"])

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "height": str(st.height), "catching_up": node.catching_up})

    async def metrics(request: Request) -> Response:
        return metrics_response(node.metrics.registry)

    tm = "/cosmos/base/tendermint/v1beta1"
    dep = "/virtengine/deployment/v1beta4/deployments"
    mkt = "/virtengine/market/v1beta5"
    table: list[tuple[str, Callable[[Request], Any], str]] = [
        (f"{tm}/blocks/latest", lambda r: block_json(st, st.height), "block"),
        (f"{tm}/blocks/{{height}}", block_at, "block"),
        (f"{tm}/syncing", lambda r: {"syncing": node.catching_up}, ""),
        (
            f"{tm}/node_info",
            lambda r: {"default_node_info": {"network": node.chain_id, "moniker": node.name, "version": VERSION}},
            "",
        ),
        (
            f"{dep}/list",
            lambda r: st.deployments_list(q(r, "filters.owner"), q(r, "filters.state"), q(r, "filters.dseq"), page(r)),
            "",
        ),
        (f"{dep}/info", lambda r: st.deployment_info(*required(r, "id.owner", "id.dseq")), "deployment"),
        (
            f"{mkt}/orders/list",
            lambda r: st.orders_list(q(r, "filters.owner"), q(r, "filters.dseq"), q(r, "filters.state"), page(r)),
            "",
        ),
        (
            f"{mkt}/orders/info",
            lambda r: st.order_info(*required(r, "id.owner", "id.dseq", "id.gseq", "id.oseq")),
            "order",
        ),
        (f"{mkt}/bids/list", lambda r: st.bids_list(**lease_args(r)), ""),
        (
            f"{mkt}/bids/info",
            lambda r: st.bid_info(*required(r, "id.owner", "id.dseq", "id.gseq", "id.oseq", "id.provider")),
            "bid",
        ),
        (f"{mkt}/leases/list", lambda r: st.leases_list(**lease_args(r)), ""),
        (
            f"{mkt}/leases/info",
            lambda r: st.lease_info(*required(r, "id.owner", "id.dseq", "id.gseq", "id.oseq", "id.provider")),
            "lease",
        ),
        (
            "/virtengine/escrow/v1/types/accounts",
            lambda r: st.accounts_list(q(r, "filters.owner"), q(r, "filters.state"), page(r)),
            "",
        ),
        (
            "/virtengine/escrow/v1/types/payments",
            lambda r: st.payments_list(q(r, "filters.xid"), q(r, "filters.state"), page(r)),
            "",
        ),
        ("/virtengine/settlement/v1/settlements/by-order/{owner}/{dseq}/{gseq}/{oseq}", settlements, ""),
        ("/virtengine/provider/v1beta4/providers", lambda r: st.providers_list(page(r)), ""),
        (
            "/virtengine/provider/v1beta4/providers/{owner}",
            lambda r: st.provider_info(r.path_params["owner"]),
            "provider",
        ),
    ]
    routes = [Route(path, endpoint(fn, what)) for path, fn, what in table]
    routes += [Route("/health", health), Route("/metrics", metrics)]
    return Starlette(routes=routes)


# ---------------------------------------------------------------- main


def check_config(config: dict[str, Any]) -> str | None:
    """A one-line problem with the config, or None."""
    for key in ("validators", "rpc", "rest", "etcd"):
        if key not in config:
            return f"missing key {key!r}"
    validators = config["validators"]
    if not isinstance(validators, list) or config["name"] not in validators:
        return f"validators must be a list containing the node's name {config['name']!r}"
    index = config.get("index", validators.index(config["name"]))
    if not isinstance(index, int) or not 0 <= index < len(validators) or validators[index] != config["name"]:
        return f"index {index!r} does not match the node's position in validators"
    for key in ("rpc", "rest"):
        addr = config[key]
        if not isinstance(addr, dict) or "host" not in addr or "port" not in addr:
            return f"{key} must be {{'host', 'port'}}"
    return None


def main(argv: list[str] | None = None) -> None:
    config = load_config(argv)
    if "node-stuck-after-restart" in config.get("weaknesses", []):
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--config")
        path = parser.parse_known_args(argv)[0].config
        config.setdefault("life_file", str(Path(path).with_suffix(".life")))  # beside the config: this sandbox's life
    problem = check_config(config)
    if problem:
        print(f"error: bad node config: {problem}", file=sys.stderr)
        raise SystemExit(2)
    log = setup_logging(config["name"])
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    raise SystemExit(asyncio.run(Node(config, log).run()))


if __name__ == "__main__":
    main()
