"""Marketplace API: indexes the chain's ``block_results`` events into PostgreSQL, caches reads, queues writes.

Run as ``python -m vesandbox.api --config FILE``. See PROTOCOL.md, section "Marketplace API".

Every database call is bounded (``bounded``): a dropped database link must never hang a request. After a failure the
database is marked down, requests go straight to the read cache / the write queue, and one health loop detects recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg import sql
from psycopg.pq import TransactionStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox.common import load_config, metrics_response, serve, setup_logging

T = TypeVar("T")

KINDS = frozenset({"deployment", "order", "bid", "lease", "escrow_account", "escrow_payment", "settlement", "provider"})
MARKET_PATHS = {
    "/api/v1/market/orders": "order",
    "/api/v1/market/bids": "bid",
    "/api/v1/market/leases": "lease",
    "/api/v1/deployments": "deployment",
    "/api/v1/providers": "provider",
}
FILTERS = ("owner", "dseq", "state", "provider")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_KEY_LEN = 512
MAX_BODY_BYTES = 1 << 20
BLOCKS_PER_PASS = 100
HEALTH_INTERVAL = 0.5
NODE_BACKOFF_MAX = 5.0
DRAIN_BATCH = 100
POOL_SLOTS = 6
MAX_IDLE = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_state (
    id int PRIMARY KEY CHECK (id = 1),
    height bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO index_state (id, height) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS entities (
    kind text NOT NULL,
    id text NOT NULL,
    owner text,
    dseq bigint,
    provider text,
    state text,
    data jsonb NOT NULL,
    height bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS entities_kind_owner ON entities (kind, owner, dseq);
CREATE INDEX IF NOT EXISTS entities_kind_provider ON entities (kind, provider);
CREATE TABLE IF NOT EXISTS records (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    written_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL DEFAULT 1
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'records' AND column_name = 'version')
    THEN ALTER TABLE records ADD COLUMN version bigint NOT NULL DEFAULT 1;
    END IF;
END $$;
"""

UPSERT_ENTITY = """
INSERT INTO entities (kind, id, owner, dseq, provider, state, data, height)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (kind, id) DO UPDATE SET owner = EXCLUDED.owner, dseq = EXCLUDED.dseq, provider = EXCLUDED.provider,
    state = EXCLUDED.state, data = EXCLUDED.data, height = EXCLUDED.height
"""

# Order is kept by the API (a write goes to the queue while earlier queued writes are pending), not by the clock.
# ``applied_at`` is the statement's own clock (distinct per row of a batch) and ``version`` counts the applications of
# writes to the key: together they let a client see the order writes were applied in, and any write applied twice.
# A write is known by its key and acceptance time: applying it again (a direct write whose commit was lost on the
# wire, then queued) changes nothing, so each write is applied exactly once.
UPSERT_RECORD_ANEW = """
INSERT INTO records (key, value, written_at, applied_at, version) VALUES (%s, %s::jsonb, %s, clock_timestamp(), 1)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, written_at = EXCLUDED.written_at,
    applied_at = clock_timestamp(), version = records.version + 1
"""
UPSERT_RECORD = UPSERT_RECORD_ANEW + "WHERE records.written_at IS DISTINCT FROM EXCLUDED.written_at\n"

log = logging.getLogger("api")
_background: set[asyncio.Future[Any]] = set()


class DatabaseUnavailable(Exception):
    """The database is down (known, or a call just failed at the connection level)."""


class NodeError(Exception):
    """The node RPC did not give a usable answer."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detach(task: asyncio.Future[Any]) -> None:
    """Let a cancelled task finish its own cleanup in the background; swallow its outcome."""
    _background.add(task)

    def done(t: asyncio.Future[Any]) -> None:
        _background.discard(t)
        if not t.cancelled():
            t.exception()

    task.add_done_callback(done)


async def bounded(coro: Awaitable[T], timeout: float) -> T:
    """Await ``coro`` for at most ``timeout`` seconds, then raise TimeoutError at once.

    Unlike ``asyncio.wait_for`` the timed-out task is cancelled but not awaited: psycopg answers a cancellation by
    sending a cancel request and waiting up to 10 s for the server, which on a dropped link would hold the caller.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        _detach(task)
        raise
    if not done:
        task.cancel()
        _detach(task)
        raise TimeoutError(f"database call took longer than {timeout:.1f} s")
    return task.result()


def is_connection_failure(exc: BaseException) -> bool:
    """Errors that mean "the database is unreachable / unusable", as opposed to a bad statement."""
    return isinstance(
        exc, TimeoutError | OSError | psycopg.OperationalError | psycopg.InterfaceError | psycopg.errors.UndefinedTable
    )


# --------------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Settings:
    name: str
    host: str
    port: int
    database: dict[str, Any]
    node_rpc: str
    queue_path: Path
    index_interval: float
    cache_ttl: float
    cache_max_entries: int
    db_timeout: float
    weaknesses: frozenset[str]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """Validate the JSON config; raise ValueError naming the bad key."""
        try:
            listen, db = config["listen"], config["database"]
            settings = cls(
                name=str(config["name"]),
                host=str(listen["host"]),
                port=int(listen["port"]),
                database={k: db[k] for k in ("host", "port", "user", "dbname", "password") if k in db},
                node_rpc=str(config["node_rpc"]).rstrip("/"),
                queue_path=Path(config["queue_path"]),
                index_interval=float(config.get("index_interval", 0.5)),
                cache_ttl=float(config.get("cache_ttl", 1.0)),
                cache_max_entries=int(config.get("cache_max_entries", 10_000)),
                db_timeout=float(config.get("db_timeout", 2.0)),
                weaknesses=frozenset(config.get("weaknesses") or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad or missing config key: {exc}") from exc
        for key in ("host", "port", "user", "dbname"):
            if key not in settings.database:
                raise ValueError(f"database.{key} is required")
        if settings.index_interval <= 0 or settings.cache_ttl < 0 or settings.cache_max_entries < 1:
            raise ValueError("index_interval must be > 0, cache_ttl >= 0, cache_max_entries >= 1")
        if not 0 < settings.db_timeout <= 30:
            raise ValueError("db_timeout must be in (0, 30]")
        return settings

    @property
    def read_cache(self) -> bool:
        return "no-read-cache" not in self.weaknesses

    @property
    def write_queue(self) -> bool:
        return "no-write-queue" not in self.weaknesses

    @property
    def pins_outage_cache(self) -> bool:
        """Weakness ``stale-cache-after-recovery``: answers served stale during an outage stay served afterwards."""
        return "stale-cache-after-recovery" in self.weaknesses


# --------------------------------------------------------------------------------------------------------- metrics


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "virtengine_api_requests_total", "API requests", ["path", "code"], registry=self.registry
        )
        self.duration = Histogram(
            "virtengine_api_request_duration_seconds",
            "API request duration",
            ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.errors = Counter(
            "virtengine_errors_total", "Errors by module and category", ["module", "category"], registry=self.registry
        )
        self.database_up = Gauge("virtengine_api_database_up", "1 when the database is up", registry=self.registry)
        self.queue_depth = Gauge("virtengine_api_write_queue_depth", "Queued writes", registry=self.registry)
        self.cache_entries = Gauge("virtengine_api_cache_entries", "Read cache entries", registry=self.registry)
        self.indexed_height = Gauge("virtengine_api_indexed_height", "Last indexed block", registry=self.registry)
        self.index_lag = Gauge("virtengine_api_index_lag_blocks", "Chain height - indexed", registry=self.registry)

    def error(self, category: str) -> None:
        self.errors.labels("api", category).inc()


# -------------------------------------------------------------------------------------------------------- database


class Database:
    """A few psycopg connections, every call bounded, with an up/down flag and a health loop."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._timeout = settings.db_timeout
        self._metrics = metrics
        self._kwargs: dict[str, Any] = {
            **settings.database,
            "connect_timeout": max(2, round(settings.db_timeout)),
            "tcp_user_timeout": int(settings.db_timeout * 1000),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "options": f"-c statement_timeout={int(settings.db_timeout * 1000)}",
            "application_name": f"vesandbox-{settings.name}",
            "autocommit": True,
        }
        self.up = False
        self.generation = 0
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(POOL_SLOTS)

    async def run(self, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``fn(conn)`` bounded in time; raise DatabaseUnavailable (and mark down) on a connection failure."""
        if not self.up:
            raise DatabaseUnavailable("database is down")
        try:
            return await bounded(self._with_conn(fn), timeout or self._timeout)
        except Exception as exc:
            if is_connection_failure(exc):
                self.mark_down(exc)
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def _with_conn(self, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        async with self._slots:
            generation = self.generation
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                result = await fn(conn)
            except BaseException:
                await self._close(conn)
                raise
            if (
                generation == self.generation
                and self.up
                and not conn.closed
                and conn.info.transaction_status == TransactionStatus.IDLE
                and len(self._idle) < MAX_IDLE
            ):
                self._idle.append(conn)
            else:
                await self._close(conn)
            return result

    async def _connect(self, dbname: str | None = None) -> psycopg.AsyncConnection[Any]:
        kwargs = dict(self._kwargs)
        if dbname:
            kwargs["dbname"] = dbname
        return await psycopg.AsyncConnection.connect(**kwargs)

    @staticmethod
    async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(Exception):
            await conn.close()

    def mark_down(self, reason: object) -> None:
        if self.up:
            log.warning("database down: %s", reason)
            self._metrics.error("database")
        self.up = False
        self.generation += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()

    async def try_recover(self) -> bool:
        """One bounded attempt to connect (creating the database and the schema if needed); True when up."""
        try:
            conn = await bounded(self._open_with_schema(), self._timeout * 2)
        except Exception as exc:
            log.debug("database still down: %s", exc)
            return False
        self._idle.append(conn)
        self.up = True
        log.info("database up")
        return True

    async def _open_with_schema(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await self._connect()
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
            await self._create_database()
            conn = await self._connect()
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(1700101)")
                await conn.execute(SCHEMA)
        except BaseException:
            await self._close(conn)
            raise
        return conn

    async def _create_database(self) -> None:
        dbname = self._kwargs["dbname"]
        conn = await self._connect("postgres")
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log.info("created database %s", dbname)
        except psycopg.errors.DuplicateDatabase:
            pass
        finally:
            await self._close(conn)

    async def health_loop(self) -> None:
        """Ping while up (a failure marks down); try to reconnect while down. Every attempt is bounded."""
        while True:
            if self.up:
                with contextlib.suppress(DatabaseUnavailable, psycopg.Error):
                    await self.run(lambda conn: conn.execute("SELECT 1"))
            else:
                await self.try_recover()
            await asyncio.sleep(HEALTH_INTERVAL)

    async def close(self) -> None:
        self.up = False
        for conn in self._idle:
            await self._close(conn)
        self._idle = []


# ----------------------------------------------------------------------------------------------------- write queue


class WriteQueue:
    """Durable FIFO of writes in SQLite (WAL, synchronous=FULL); all calls run on one worker thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-queue")
        self._db: sqlite3.Connection | None = None
        self.depth = 0

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self.depth = await self._call(self._open)

    def _open(self) -> int:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, "
            "value TEXT NOT NULL, accepted_at TEXT NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL, "
            "accepted_at TEXT NOT NULL, error TEXT NOT NULL)"
        )
        self._db = db
        return int(db.execute("SELECT count(*) FROM queue").fetchone()[0])

    async def append(self, key: str, value_json: str, accepted_at: datetime) -> None:
        await self._call(self._append, key, value_json, accepted_at.isoformat())
        self.depth += 1

    def _append(self, key: str, value_json: str, accepted_at: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT INTO queue (key, value, accepted_at) VALUES (?, ?, ?)", (key, value_json, accepted_at))

    async def peek(self, limit: int) -> list[tuple[int, str, str, datetime]]:
        rows = await self._call(self._peek, limit)
        return [(seq, key, value, datetime.fromisoformat(at)) for seq, key, value, at in rows]

    def _peek(self, limit: int) -> list[tuple[int, str, str, str]]:
        assert self._db is not None
        query = "SELECT seq, key, value, accepted_at FROM queue ORDER BY seq LIMIT ?"
        return self._db.execute(query, (limit,)).fetchall()

    async def delete_through(self, seq: int) -> None:
        """Forget every write up to ``seq`` (called only after they committed in PostgreSQL)."""
        self.depth = await self._call(self._delete_through, seq)

    def _delete_through(self, seq: int) -> int:
        assert self._db is not None
        self._db.execute("DELETE FROM queue WHERE seq <= ?", (seq,))
        return int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])

    async def bury(self, seq: int, error: str) -> None:
        """Move a write the database rejects (not a connection problem) aside so it cannot block the queue."""
        self.depth = await self._call(self._bury, seq, error)

    def _bury(self, seq: int, error: str) -> int:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "INSERT OR REPLACE INTO dead SELECT seq, key, value, accepted_at, ? FROM queue WHERE seq = ?", (error, seq)
        )
        self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))
        self._db.execute("COMMIT")
        return int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
        self._executor.shutdown(wait=False)


# ------------------------------------------------------------------------------------------------------ read cache


@dataclass
class CacheEntry:
    stored: float
    payload: dict[str, Any]


class ReadCache:
    """Last good response per query, LRU-bounded."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[tuple[Any, ...], CacheEntry] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[Any, ...], payload: dict[str, Any]) -> None:
        self._entries[key] = CacheEntry(time.monotonic(), payload)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# ---------------------------------------------------------------------------------------------------------- events


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unwrap(kind: str, data: Any) -> dict[str, Any]:
    """The entity itself: REST list elements wrap some kinds (``{"bid": {...}}``, ``{"deployment": {...}, ...}``)."""
    if not isinstance(data, dict):
        return {}
    inner = data.get(kind)
    if isinstance(inner, dict) and ("id" in inner or "state" in inner):
        return inner
    return data


def entity_columns(kind: str, entity_id: str, data: Any) -> tuple[str | None, int | None, str | None, str | None]:
    """(owner, dseq, provider, state) of an entity, for filtering."""
    inner = _unwrap(kind, data)
    ident = inner.get("id") if isinstance(inner.get("id"), dict) else {}
    state = inner.get("state")
    state_owner = state.get("owner") if isinstance(state, dict) else None
    if isinstance(state, dict):
        state = state.get("state")
    parts = entity_id.split("/")
    owner = ident.get("owner") or inner.get("owner") or parts[0] or state_owner or None
    dseq = _to_int(ident.get("dseq"))
    if dseq is None and len(parts) > 1:
        dseq = _to_int(parts[1])
    provider = ident.get("provider") or inner.get("provider")
    if kind == "provider":
        provider = owner
    elif provider is None and kind in ("bid", "lease", "escrow_payment") and len(parts) >= 5:
        provider = parts[4]
    return (
        str(owner) if owner is not None else None,
        dseq,
        str(provider) if provider is not None else None,
        state if isinstance(state, str) else None,
    )


def block_entities(height: int, result: dict[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
    """Rows to upsert for one block's results (successful txs only), and the number of malformed events skipped."""
    events: list[Any] = []
    for tx in result.get("txs_results") or []:
        if isinstance(tx, dict) and _to_int(tx.get("code") or 0) == 0:
            events.extend(tx.get("events") or [])
    for key in ("begin_block_events", "end_block_events", "finalize_block_events"):
        events.extend(result.get(key) or [])
    rows: list[tuple[Any, ...]] = []
    bad = 0
    for event in events:
        if not isinstance(event, dict) or event.get("type") not in KINDS:
            continue
        attrs = {a.get("key"): a.get("value") for a in event.get("attributes") or [] if isinstance(a, dict)}
        entity_id, state_json = attrs.get("id"), attrs.get("state")
        try:
            if not isinstance(entity_id, str) or not entity_id or not isinstance(state_json, str):
                raise ValueError("missing id or state attribute")
            data = json.loads(state_json)
        except ValueError as exc:
            log.warning("block %d: skipping malformed %s event: %s", height, event.get("type"), exc)
            bad += 1
            continue
        kind = event["type"]
        owner, dseq, provider, state = entity_columns(kind, entity_id, data)
        rows.append((kind, entity_id, owner, dseq, provider, state, json.dumps(data), height))
    return rows, bad


# --------------------------------------------------------------------------------------------------------- indexer


@dataclass
class Indexer:
    """Follows the chain through the node RPC; one database transaction per block (entities + indexed height)."""

    settings: Settings
    db: Database
    metrics: Metrics
    indexed_height: int = 0
    chain_height: int = 0
    node_up: bool = False
    _synced_generation: int = -1
    _node_seen: bool = False
    _behind_logged: bool = False
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def run(self) -> None:
        interval = self.settings.index_interval
        backoff = interval
        self._client = httpx.AsyncClient(base_url=self.settings.node_rpc, timeout=3.0, trust_env=False)
        try:
            while True:
                more = False
                try:
                    more = await self._pass()
                    backoff = interval
                except NodeError as exc:
                    self._node_down(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, NODE_BACKOFF_MAX)
                    continue
                except DatabaseUnavailable:
                    pass
                except Exception:
                    log.exception("indexer pass failed")
                    self.metrics.error("index")
                if not more:
                    await asyncio.sleep(interval)
        finally:
            await self._client.aclose()

    def _node_down(self, exc: Exception) -> None:
        if self.node_up or not self._node_seen:
            log.warning("node RPC unreachable: %s", exc)
        self._node_seen = True
        self.node_up = False
        self.metrics.error("node")

    async def _pass(self) -> bool:
        """Index up to BLOCKS_PER_PASS new blocks; True when more are waiting."""
        if not self.db.up:
            return False
        if self._synced_generation != self.db.generation:
            self.indexed_height = await self.db.run(_read_indexed_height)
            self._synced_generation = self.db.generation
        self.chain_height = await self._latest_height()
        if self.chain_height < self.indexed_height and not self._behind_logged:
            log.warning("the node is at height %d, below the indexed %d", self.chain_height, self.indexed_height)
        self._behind_logged = self.chain_height < self.indexed_height
        if not self.node_up:
            log.info("node RPC reachable, chain height %d", self.chain_height)
        self.node_up = self._node_seen = True
        last = min(self.chain_height, self.indexed_height + BLOCKS_PER_PASS)
        for height in range(self.indexed_height + 1, last + 1):
            rows, bad = block_entities(height, await self._block_results(height))
            for _ in range(bad):
                self.metrics.error("index")
            now_at = await self.db.run(lambda conn, h=height, r=rows: _apply_block(conn, h, r), self._txn_timeout)
            self.indexed_height = now_at
            if now_at != height:
                log.warning("indexed height in the database is %d, expected %d: resyncing", now_at, height)
                return True
        return self.chain_height > self.indexed_height

    @property
    def _txn_timeout(self) -> float:
        return self.settings.db_timeout * 2

    async def _rpc(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._client is not None
        try:
            resp = await self._client.get(path, params=params)
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise NodeError(f"{path}: {exc!r}") from exc
        if resp.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            raise NodeError(f"{path}: HTTP {resp.status_code} {str(body)[:200]}")
        return body["result"]

    async def _latest_height(self) -> int:
        result = await self._rpc("/status")
        height = _to_int((result.get("sync_info") or {}).get("latest_block_height"))
        if height is None:
            raise NodeError("/status: no sync_info.latest_block_height")
        return height

    async def _block_results(self, height: int) -> dict[str, Any]:
        result = await self._rpc("/block_results", {"height": str(height)})
        if _to_int(result.get("height")) not in (None, height):
            raise NodeError(f"/block_results?height={height} answered height {result.get('height')}")
        return result


async def _read_indexed_height(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT height FROM index_state WHERE id = 1")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _apply_block(conn: psycopg.AsyncConnection[Any], height: int, rows: list[tuple[Any, ...]]) -> int:
    """Apply one block iff the index is exactly at ``height - 1``; return the indexed height afterwards."""
    async with conn.transaction():
        cur = await conn.execute("SELECT height FROM index_state WHERE id = 1 FOR UPDATE")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current != height - 1:
            return current
        if rows:
            async with conn.cursor() as cur2:
                await cur2.executemany(UPSERT_ENTITY, rows)
        await conn.execute(
            "INSERT INTO index_state (id, height) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET height = EXCLUDED.height, updated_at = now()",
            (height,),
        )
    return height


# ---------------------------------------------------------------------------------------------------------- the API


def parse_market_query(params: Any) -> tuple[dict[str, Any], int]:
    """Filters and limit from the query string; ValueError with a message on bad input."""
    filters: dict[str, Any] = {}
    for name in FILTERS:
        value = params.get(name)
        if value in (None, ""):
            continue
        if name == "dseq":
            dseq = _to_int(value)
            if dseq is None or dseq < 0:
                raise ValueError("dseq must be a non-negative integer")
            filters[name] = dseq
        else:
            filters[name] = value
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit not in (None, ""):
        limit = _to_int(raw_limit) or 0
        if limit < 1:
            raise ValueError(f"limit must be an integer between 1 and {MAX_LIMIT}")
        limit = min(limit, MAX_LIMIT)
    return filters, limit


def _has_nul(value: Any) -> bool:
    """PostgreSQL text/jsonb cannot hold U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_record(body: bytes) -> tuple[str, Any]:
    """(key, value) of a write; ValueError with a message on bad input."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError('body must be a JSON object {"key": str, "value": any}')
    key = doc.get("key")
    if not isinstance(key, str) or not key.strip():
        raise ValueError('"key" must be a non-empty string')
    if len(key) > MAX_KEY_LEN:
        raise ValueError(f'"key" must be at most {MAX_KEY_LEN} characters')
    if "value" not in doc:
        raise ValueError('"value" is required')
    if _has_nul(key) or _has_nul(doc["value"]):
        raise ValueError("key and value must not contain U+0000")
    return key, doc["value"]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


UNAVAILABLE = "database unavailable"
API_WEAKNESSES = frozenset(
    {
        "no-read-cache",
        "no-write-queue",
        "stale-cache-after-recovery",
        "duplicate-queued-writes",
        "reordered-queued-writes",
    }
)


class Api:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = Database(settings, self.metrics)
        self.queue = WriteQueue(settings.queue_path)
        self.cache = ReadCache(settings.cache_max_entries)
        self.indexer = Indexer(settings, self.db, self.metrics)
        self.queued_total = 0
        self.applied_total = 0
        self._pinned: set[tuple[Any, ...]] = set()  # weakness stale-cache-after-recovery: queries served stale
        self._drain_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._wire_gauges()

    def _wire_gauges(self) -> None:
        m = self.metrics
        m.database_up.set_function(lambda: 1.0 if self.db.up else 0.0)
        m.queue_depth.set_function(lambda: float(self.queue.depth))
        m.cache_entries.set_function(lambda: float(len(self.cache)))
        m.indexed_height.set_function(lambda: float(self.indexer.indexed_height))
        m.index_lag.set_function(lambda: float(self._index_lag()))

    def _index_lag(self) -> int:
        return max(0, self.indexer.chain_height - self.indexer.indexed_height)

    # ------------------------------------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.queue.open()
        if self.queue.depth:
            log.info("write queue holds %d writes from a previous run", self.queue.depth)
        await self.db.try_recover()
        self._tasks = [
            asyncio.create_task(self.db.health_loop(), name="db-health"),
            asyncio.create_task(self.indexer.run(), name="indexer"),
            asyncio.create_task(self._drain_loop(), name="drain"),
        ]
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks, timeout=3.0)
            await self.db.close()
            await self.queue.close()

    async def _drain_loop(self) -> None:
        """Apply queued writes in order while the database is up; forget each only after its commit."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_wakeup.wait(), HEALTH_INTERVAL)
            self._drain_wakeup.clear()
            while self.db.up and self.queue.depth > 0:
                try:
                    await self._drain_batch()
                except DatabaseUnavailable:
                    break
                except DatabaseFailing as exc:  # retried on the next health interval, the queue untouched
                    log.error("%s", exc)
                    self.metrics.error("queue")
                    break
                except Exception:
                    log.exception("write queue drain failed")
                    self.metrics.error("queue")
                    break

    async def _drain_batch(self) -> None:
        rows = await self.queue.peek(DRAIN_BATCH)
        if not rows:
            self.queue.depth = 0
            return
        args = [(key, value, at) for _seq, key, value, at in rows]
        if "reordered-queued-writes" in self.settings.weaknesses:
            args.reverse()  # weakness: each batch of queued writes is applied newest first
        try:
            await self.db.run(lambda conn: _upsert_records(conn, args), self.settings.db_timeout * 2)
            if "duplicate-queued-writes" in self.settings.weaknesses:  # weakness: replayed again, as new writes
                await self.db.run(
                    lambda conn: _upsert_records(conn, args, UPSERT_RECORD_ANEW), self.settings.db_timeout * 2
                )
        except psycopg.Error as exc:  # a statement error, not a connection failure: find and bury the bad write
            await self._drain_one_by_one(rows, exc)
            return
        await self.queue.delete_through(rows[-1][0])
        self.applied_total += len(rows)
        log.info("applied %d queued writes, %d left", len(rows), self.queue.depth)

    async def _drain_one_by_one(self, rows: list[tuple[int, str, str, datetime]], batch_exc: Exception) -> None:
        log.warning("queued batch rejected (%s): applying one by one", batch_exc)
        for seq, key, value, at in rows:
            try:
                await self.db.run(lambda conn, a=(key, value, at): _upsert_records(conn, [a]))
            except psycopg.Error as exc:
                if not rejects_the_write(exc):
                    # the database itself is failing (corrupted pages, disk full, shutting down): the write is not at
                    # fault, so it stays queued, in order, until the database is repaired or restored
                    raise DatabaseFailing(f"queued write {seq} (key {key!r}) kept: the database failed: {exc}") from exc
                log.error("queued write %d (key %r) rejected by the database, moved aside: %s", seq, key, exc)
                self.metrics.error("queue")
                await self.queue.bury(seq, str(exc))
                continue
            await self.queue.delete_through(seq)
            self.applied_total += 1

    # ------------------------------------------------------------------------------------------ routes

    def app(self) -> Starlette:
        routes = [
            self._route("/health", self.health),
            self._route("/api/v1/status", self.status),
            self._route("/metrics", self.metrics_endpoint),
            self._route("/api/v1/records", self.post_record, ["POST"]),
            self._route("/api/v1/records", self.list_records, ["GET"]),
            self._route("/api/v1/records/{key:path}", self.get_record),
        ]
        for path, kind in MARKET_PATHS.items():
            routes.append(self._route(path, lambda request, k=kind: self.market(request, k)))
        return Starlette(routes=routes, lifespan=self.lifespan)

    def _route(
        self, path: str, handler: Callable[[Request], Awaitable[Response]], methods: list[str] | None = None
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except Exception:
                log.exception("%s %s failed", request.method, path)
                self.metrics.error("internal")
                response = error(500, "internal error")
            self.metrics.requests.labels(path, str(response.status_code)).inc()
            self.metrics.duration.labels(path).observe(time.perf_counter() - start)
            return response

        return Route(path, endpoint, methods=methods or ["GET"])

    def _health_doc(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.db.up else "degraded",
            "database": "up" if self.db.up else "down",
            "queue_depth": self.queue.depth,
            "indexed_height": self.indexer.indexed_height,
        }

    async def health(self, _request: Request) -> Response:
        return JSONResponse(self._health_doc())

    async def status(self, _request: Request) -> Response:
        doc = self._health_doc()
        doc.update(
            chain_height=self.indexer.chain_height,
            index_lag=self._index_lag(),
            node="up" if self.indexer.node_up else "down",
            cache_entries=len(self.cache),
            queued_total=self.queued_total,
            applied_total=self.applied_total,
            weaknesses=sorted(self.settings.weaknesses & API_WEAKNESSES),
        )
        return JSONResponse(doc)

    async def metrics_endpoint(self, _request: Request) -> Response:
        return metrics_response(self.metrics.registry)

    async def market(self, request: Request, kind: str) -> Response:
        try:
            filters, limit = parse_market_query(request.query_params)
        except ValueError as exc:
            return error(400, str(exc))
        key = (request.url.path, tuple(sorted(filters.items())), limit)
        use_cache = self.settings.read_cache
        entry = self.cache.get(key) if use_cache else None
        if entry is not None and self.db.up and time.monotonic() - entry.stored < self.settings.cache_ttl:
            return _market_response(entry.payload, "cache", "hit")
        if entry is not None and self.db.up and key in self._pinned:  # weakness: the outage's answer, as if fresh
            return _market_response(entry.payload, "cache", "hit")
        if self.db.up:
            try:
                payload = await self.db.run(lambda conn: _query_entities(conn, kind, filters, limit))
            except DatabaseUnavailable:
                pass
            else:
                if use_cache:
                    self.cache.put(key, payload)
                return _market_response(payload, "database", "miss")
        if entry is not None:
            if self.settings.pins_outage_cache:
                self._pinned.add(key)
            return _market_response(entry.payload, "cache", "stale")
        return error(503, UNAVAILABLE)

    async def post_record(self, request: Request) -> Response:
        if (_to_int(request.headers.get("content-length")) or 0) > MAX_BODY_BYTES:
            return error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            key, value = parse_record(body)
        except ValueError as exc:
            return error(400, str(exc))
        value_json = json.dumps(value, separators=(",", ":"))
        accepted_at = datetime.now(UTC)
        # while earlier writes wait in the queue, a new one queues behind them (so writes apply in order)
        if self.db.up and (self.queue.depth == 0 or not self.settings.write_queue):
            try:
                await self.db.run(lambda conn: _upsert_records(conn, [(key, value_json, accepted_at)]))
            except DatabaseUnavailable:
                pass
            else:
                self.applied_total += 1
                return JSONResponse({"key": key, "status": "applied"}, status_code=201)
        if not self.settings.write_queue:
            return error(503, UNAVAILABLE)
        try:
            await self.queue.append(key, value_json, accepted_at)
        except Exception as exc:
            log.error("cannot queue write for %r: %s", key, exc)
            self.metrics.error("queue")
            return error(503, "database unavailable and write queue failed")
        self.queued_total += 1
        self._drain_wakeup.set()
        return JSONResponse({"key": key, "status": "queued"}, status_code=202)

    async def get_record(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            row = await self.db.run(lambda conn: _fetch_record(conn, key))
        except DatabaseUnavailable:
            return error(503, UNAVAILABLE)
        if row is None:
            return error(404, f"record {key!r} not found")
        return JSONResponse(row)

    async def list_records(self, request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        try:
            _filters, limit = parse_market_query({"limit": request.query_params.get("limit")})
        except ValueError as exc:
            return error(400, str(exc))
        try:
            items = await self.db.run(lambda conn: _list_records(conn, prefix, limit))
        except DatabaseUnavailable:
            return error(503, UNAVAILABLE)
        return JSONResponse({"items": items, "source": "database"})


def _market_response(payload: dict[str, Any], source: str, cache: str) -> JSONResponse:
    return JSONResponse({**payload, "source": source}, headers={"X-Cache": cache})


async def _query_entities(
    conn: psycopg.AsyncConnection[Any], kind: str, filters: dict[str, Any], limit: int
) -> dict[str, Any]:
    where = [sql.SQL("kind = %s")]
    args: list[Any] = [kind]
    for name, value in filters.items():
        where.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
        args.append(value)
    query = sql.SQL("SELECT data FROM entities WHERE {} ORDER BY owner, dseq, id LIMIT %s").format(
        sql.SQL(" AND ").join(where)
    )
    async with conn.transaction():
        cur = await conn.execute(query, [*args, limit])
        items = [row[0] for row in await cur.fetchall()]
        height = await _read_indexed_height(conn)
    return {"items": items, "indexed_height": height}


class DatabaseFailing(Exception):
    """The database answered but failed server-side: queued writes wait."""


# SQLSTATE classes that blame the statement's data (22 data exception, 23 integrity constraint violation); any other
# error (XX internal such as "invalid page in block", 53 insufficient resources, 57 operator intervention, 58 system
# error) is the database's failure, and a queued write must then wait rather than be moved aside
WRITE_AT_FAULT = ("22", "23")


def rejects_the_write(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in WRITE_AT_FAULT


async def _upsert_records(
    conn: psycopg.AsyncConnection[Any], rows: Iterable[tuple[str, str, datetime]], query: str = UPSERT_RECORD
) -> None:
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(query, list(rows))


def _record_doc(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "key": row[0],
        "value": row[1],
        "written_at": rfc3339(row[2]),
        "applied_at": rfc3339(row[3]),
        "version": row[4],
    }


async def _fetch_record(conn: psycopg.AsyncConnection[Any], key: str) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT key, value, written_at, applied_at, version FROM records WHERE key = %s", (key,))
    row = await cur.fetchone()
    return _record_doc(row) if row else None


async def _list_records(conn: psycopg.AsyncConnection[Any], prefix: str, limit: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT key, value, written_at, applied_at, version FROM records WHERE starts_with(key, %s) "
        "ORDER BY key LIMIT %s",
        (prefix, limit),
    )
    return [_record_doc(row) for row in await cur.fetchall()]


def main(argv: list[str] | None = None) -> None:
    config = load_config(argv)
    try:
        settings = Settings.from_config(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    logger = setup_logging(settings.name)
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logger.info("weaknesses: %s", ", ".join(sorted(settings.weaknesses)) or "none")
    serve(Api(settings).app(), settings.host, settings.port, logger)


if __name__ == "__main__":
    main()
