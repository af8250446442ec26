"""Provider daemon: bids on open orders, provisions leases, exposes a bid engine behind a circuit breaker.

Breaker policy (which errors trip it): a *failure of the dependency* (the node link) is a timeout of an evaluation
that had started, a transport error (refused, reset, httpx timeout), an HTTP 5xx or an unreadable body. An answer
from the node is a success of the dependency even when it is a 404 (unknown order) or another 4xx. A request that
could not get an evaluation slot within ``timeout`` (the engine is saturated) counts as a failure too: a saturated
engine must shed load rather than queue it, so sustained overload opens the breaker even when the node is fast.
Requests cancelled by their caller do not count either way.

Bounds: at most ``max_pending`` requests wait for one of ``concurrency`` slots; one more is refused at once (503,
"shed", a breaker failure — Envoy's ``max_pending_requests``). Waiting is limited to ``timeout`` (then 504,
"queue_timeout", a breaker failure), and the node call plus the pricing work to another ``timeout`` (then 504,
"timeout", a breaker failure): a slow dependency is judged on its own time, not on the time a request spent queued
behind others. When the breaker opens, every request still waiting for a slot is refused at once (503): it would be
refused when it got the slot anyway, and an open breaker means fail fast.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, NoReturn

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox.common import load_config, metrics_response, now_rfc3339, serve, setup_logging

ORDERS_LIST = "/virtengine/market/v1beta5/orders/list"
ORDERS_INFO = "/virtengine/market/v1beta5/orders/info"
BIDS_LIST = "/virtengine/market/v1beta5/bids/list"
LEASES_LIST = "/virtengine/market/v1beta5/leases/list"
WEAKNESS_NO_BREAKER = "no-circuit-breaker"
WEAKNESS_FORGETS_LEASES = "provider-forgets-leases"
WEAKNESS_BIDS_LOST = "bids-lost-on-restart"
CIRCUIT_CODES = {"closed": 0, "open": 1, "half-open": 2, "disabled": -1}
MAX_PAGES = 1000
MAX_BIDS_PER_CYCLE = 64
MAX_RETRY_DELAY = 30.0

OrderKey = tuple[str, str, str, str]


# ---------------------------------------------------------------- errors


class EngineError(Exception):
    """An evaluation or node call that did not produce a result."""

    status = 502
    outcome = "error"


class DependencyError(EngineError):
    """The node link failed (transport error, 5xx, bad body): a breaker failure."""


class DependencyTimeout(DependencyError):
    status = 504
    outcome = "timeout"


class NotFound(EngineError):
    """The node answered 404: a success of the dependency."""

    status = 404
    outcome = "not_found"


class NodeRejected(EngineError):
    """The node answered another 4xx: the dependency works, the request was wrong."""

    outcome = "rejected_by_node"


class CircuitOpen(EngineError):
    status = 503
    outcome = "circuit_open"


class Shed(EngineError):
    """``max_pending`` requests already wait for a slot: refused at once."""

    status = 503
    outcome = "shed"


class QueueTimeout(EngineError):
    """No evaluation slot became free within the timeout."""

    status = 504
    outcome = "queue_timeout"


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class EngineSettings:
    concurrency: int = 8
    max_pending: int = 16
    timeout: float = 1.0
    fail_max: int = 5
    reset_timeout: float = 5.0
    work_ms: float = 5.0


@dataclass(frozen=True)
class Settings:
    name: str
    provider: str
    host: str
    port: int
    node_rpc: str
    node_rest: str
    poll_interval: float
    provision_delay: float
    bid_price: int
    node_timeout: float
    confirm_timeout: float
    engine: EngineSettings
    weaknesses: frozenset[str]


def parse_settings(raw: dict[str, Any]) -> Settings:
    """Validate the JSON config; raises ValueError with a readable message."""
    try:
        listen = raw["listen"]
        eng = raw.get("bid_engine", {})
        engine = EngineSettings(
            concurrency=int(eng.get("concurrency", 8)),
            max_pending=int(eng.get("max_pending", 16)),
            timeout=float(eng.get("timeout", 1.0)),
            fail_max=int(eng.get("fail_max", 5)),
            reset_timeout=float(eng.get("reset_timeout", 5.0)),
            work_ms=float(eng.get("work_ms", 5.0)),
        )
        settings = Settings(
            name=str(raw["name"]),
            provider=str(raw["provider"]),
            host=str(listen.get("host", "127.0.0.1")),
            port=int(listen["port"]),
            node_rpc=str(raw["node_rpc"]).rstrip("/"),
            node_rest=str(raw["node_rest"]).rstrip("/"),
            poll_interval=float(raw.get("poll_interval", 0.5)),
            provision_delay=float(raw.get("provision_delay", 2.0)),
            bid_price=int(str(raw.get("bid_price", "10"))),
            node_timeout=float(raw.get("node_timeout", 5.0)),
            confirm_timeout=float(raw.get("confirm_timeout", 30.0)),
            engine=engine,
            weaknesses=frozenset(raw.get("weaknesses", [])),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad provider config: {exc!r}") from exc
    if engine.concurrency < 1 or engine.timeout <= 0 or engine.fail_max < 1 or engine.reset_timeout <= 0:
        raise ValueError("bad provider config: bid_engine values must be positive")
    if engine.max_pending < 0:
        raise ValueError("bad provider config: bid_engine.max_pending must be ≥ 0")
    if settings.poll_interval <= 0 or settings.node_timeout <= 0:
        raise ValueError("bad provider config: poll_interval and node_timeout must be positive")
    return settings


# ---------------------------------------------------------------- helpers


def order_key(order_id: dict[str, Any]) -> OrderKey:
    """Hashable key of an order or lease id (dseq/gseq/oseq as decimal strings)."""
    return (str(order_id["owner"]), str(order_id["dseq"]), str(order_id["gseq"]), str(order_id["oseq"]))


def msg_order_id(order_id: dict[str, Any]) -> dict[str, Any]:
    """Order id as put in a tx message (integers, as in ``deployment/create``); raises on a malformed id."""
    owner = order_id["owner"]
    if not isinstance(owner, str) or not owner:
        raise ValueError("owner must be a non-empty string")
    return {"owner": owner, "dseq": int(order_id["dseq"]), "gseq": int(order_id["gseq"]), "oseq": int(order_id["oseq"])}


def unwrap(item: dict[str, Any], key: str) -> dict[str, Any]:
    """List elements are either the entity or ``{key: entity, ...}``."""
    inner = item.get(key)
    return inner if isinstance(inner, dict) else item


def max_price(order: dict[str, Any]) -> dict[str, Any] | None:
    """The order's max price (``spec.price``, accepting a few spellings)."""
    spec = order.get("spec") or {}
    for candidate in (spec.get("price"), spec.get("max_price"), order.get("price"), order.get("max_price")):
        if isinstance(candidate, dict) and "amount" in candidate:
            return candidate
    return None


def quote(order: dict[str, Any], bid_price: int) -> dict[str, str]:
    """Price for an order: the configured price, bounded by the order's max price."""
    bound = max_price(order)
    if bound is None:
        return {"denom": "uve", "amount": str(bid_price)}
    amount = min(bid_price, int(str(bound["amount"])))
    return {"denom": str(bound.get("denom", "uve")), "amount": str(amount)}


def encode_tx(tx_type: str, signer: str, msg: dict[str, Any]) -> bytes:
    tx = {"type": tx_type, "signer": signer, "nonce": secrets.token_hex(16), "msg": msg}
    return json.dumps(tx, separators=(",", ":"), sort_keys=True).encode()


def tx_hash(tx: bytes) -> str:
    return sha256(tx).hexdigest().upper()


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class ChangeLog:
    """Logs a failure when it starts or changes, and the recovery, never once per attempt."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._last: dict[str, str] = {}

    def failed(self, what: str, error: str) -> None:
        if self._last.get(what) != error:
            self._last[what] = error
            self._log.warning("%s failing: %s", what, error)

    def ok(self, what: str) -> None:
        if self._last.pop(what, None) is not None:
            self._log.info("%s recovered", what)


# ---------------------------------------------------------------- metrics


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.bids_placed = Counter("provider_bids_placed_total", "Bids confirmed on chain", registry=r)
        self.engine_requests = Counter(
            "provider_bid_engine_requests_total", "Bid engine evaluations by outcome", ["outcome"], registry=r
        )
        self.engine_duration = Histogram(
            "provider_bid_engine_duration_seconds",
            "Bid engine evaluation duration (including queueing and fast failures)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.circuit_state = Gauge(
            "provider_bid_engine_circuit_state", "Breaker state: 0 closed, 1 open, 2 half-open", registry=r
        )
        self.circuit_opened = Counter(
            "provider_bid_engine_circuit_opened_total", "Times the bid engine breaker opened", registry=r
        )
        self.leases = Gauge("provider_leases", "Workloads by state", ["state"], registry=r)
        self.provisioning = Histogram(
            "provider_provisioning_seconds",
            "Lease seen active to workload running",
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
            registry=r,
        )
        self.errors = Counter(
            "virtengine_errors_total", "Errors by module and category", ["module", "category"], registry=r
        )

    def error(self, category: str) -> None:
        self.errors.labels(module="provider_daemon", category=category).inc()


# ---------------------------------------------------------------- node client


class NodeClient:
    """Bounded calls to the node's REST and RPC (normally through the fault proxy)."""

    def __init__(self, rest: str, rpc: str, timeout: float, max_connections: int) -> None:
        self.rest = rest
        self.rpc = rpc
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, url: str, params: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise DependencyTimeout(f"node timeout: {describe(exc)}") from None
        except httpx.HTTPError as exc:
            raise DependencyError(f"node unreachable: {describe(exc)}") from None

    async def rest_get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        resp = await self._get(self.rest + path, params)
        if resp.status_code == 404:
            raise NotFound(f"{path}: not found")
        if resp.status_code >= 500:
            raise DependencyError(f"{path}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise NodeRejected(f"{path}: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError:
            raise DependencyError(f"{path}: unreadable body") from None
        if not isinstance(body, dict):
            raise DependencyError(f"{path}: body is not an object")
        return body

    async def list_all(self, path: str, filters: dict[str, str], key: str) -> list[dict[str, Any]]:
        """All elements of a paginated list endpoint."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {**filters, "pagination.limit": 100}
        for _ in range(MAX_PAGES):
            body = await self.rest_get(path, params)
            page = body.get(key) or []
            items.extend(x for x in page if isinstance(x, dict))
            next_key = (body.get("pagination") or {}).get("next_key")
            if not next_key or not page:
                return items
            params = {**filters, "pagination.limit": 100, "pagination.key": next_key}
        raise DependencyError(f"{path}: more than {MAX_PAGES} pages")

    async def order_info(self, order_id: dict[str, Any]) -> dict[str, Any]:
        params = {f"id.{k}": str(order_id[k]) for k in ("owner", "dseq", "gseq", "oseq")}
        try:
            return unwrap(await self.rest_get(ORDERS_INFO, params), "order")
        except NotFound:
            raise NotFound("order not found") from None

    async def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any] | str:
        """JSON-RPC over GET: the result object, or the error's ``data`` string."""
        resp = await self._get(f"{self.rpc}/{method}", params)
        try:
            body = resp.json()
        except ValueError:
            raise DependencyError(f"{method}: HTTP {resp.status_code}, unreadable body") from None
        if isinstance(body, dict) and isinstance(body.get("result"), dict):
            return body["result"]
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("data") or body["error"].get("message"))
        raise DependencyError(f"{method}: HTTP {resp.status_code}, no result")

    async def height(self) -> int:
        result = await self._rpc("status", {})
        if isinstance(result, str):
            raise DependencyError(f"status: {result}")
        try:
            return int(result["sync_info"]["latest_block_height"])
        except (KeyError, TypeError, ValueError):
            raise DependencyError("status: no latest_block_height") from None

    async def broadcast(self, tx: bytes) -> dict[str, Any]:
        result = await self._rpc("broadcast_tx_sync", {"tx": "0x" + tx.hex()})
        if isinstance(result, str):
            raise DependencyError(f"broadcast_tx_sync: {result}")
        return result

    async def tx_result(self, hash_hex: str) -> dict[str, Any] | None:
        """``tx_result`` of a committed tx, or None while it is not found."""
        result = await self._rpc("tx", {"hash": "0x" + hash_hex})
        if isinstance(result, str):
            if "not found" in result:
                return None
            raise DependencyError(f"tx: {result}")
        return result.get("tx_result") or {}


# ---------------------------------------------------------------- bid engine


class Slots:
    """``size`` evaluation slots and a FIFO of waiters that can all be refused at once (when the breaker opens)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, timeout: float | None) -> bool:
        """True once a slot is held; False after ``timeout``. Raises what ``refuse_waiting`` set."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            self._pass_on(fut)
            return False
        except asyncio.CancelledError:  # the client went away
            self._pass_on(fut)
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def _pass_on(self, fut: asyncio.Future[None]) -> None:
        """A waiter gave up: if it had just been handed a slot, hand the slot on."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.release()

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to the first waiter
                return
        self.free += 1

    def refuse_waiting(self, make_error: Callable[[], BaseException]) -> int:
        refused = 0
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(make_error())
                refused += 1
        return refused


class BidEngine:
    """Prices orders; each evaluation reads the order from the node, so it depends on the node link."""

    def __init__(
        self,
        settings: EngineSettings,
        bid_price: int,
        node: NodeClient,
        metrics: Metrics,
        protected: bool,
        log: logging.Logger,
    ) -> None:
        self.cfg = settings
        self.bid_price = bid_price
        self.protected = protected
        self._node = node
        self._metrics = metrics
        self._log = log
        self._slots = Slots(settings.concurrency)
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=settings.fail_max, default_ttl=settings.reset_timeout
        )
        self._factory.add_listener(self._on_breaker_event)
        self._breaker: Any = None
        self._trial_active = False
        self.in_flight = 0
        self.opened_total = 0
        self.counts = {"evaluated": 0, "rejected": 0, "failed": 0}
        metrics.circuit_state.set_function(lambda: CIRCUIT_CODES[self.circuit_state()])

    async def start(self) -> None:
        excluded: list[Any] = [NotFound, NodeRejected, asyncio.CancelledError]
        self._breaker = await self._factory.get_breaker("bid-engine", exclude=excluded)

    def _on_breaker_event(self, name: str, event_type: str, event: Any) -> None:
        if event_type != "state_changed":
            return
        if event.state == "opened":
            self.opened_total += 1
            self._metrics.circuit_opened.inc()
            refused = self._slots.refuse_waiting(lambda: CircuitOpen("circuit open"))
            if refused:
                self._log.warning("bid engine circuit opened: refused %d waiting requests", refused)
        self._log.warning("bid engine circuit %s -> %s", name, event.state)

    def circuit_state(self) -> str:
        """closed | open | half-open (open turns half-open once ``reset_timeout`` has passed); disabled without one."""
        if not self.protected:
            return "disabled"
        if self._breaker is None:
            return "closed"
        ctx = self._breaker.context
        if ctx.state == "opened":
            return "open" if time.time() <= (ctx.opened_at or 0) + ctx.ttl else "half-open"
        return "half-open" if ctx.state == "half-opened" else "closed"

    def status(self) -> dict[str, Any]:
        return {
            "circuit": self.circuit_state(),
            "in_flight": self.in_flight,
            "queued": self._slots.waiting,
            **self.counts,
            "circuit_opened_total": self.opened_total,
        }

    async def evaluate(self, order_id: dict[str, Any]) -> dict[str, Any]:
        """Price an order: ``{"order_id", "price"}``; raises an EngineError."""
        started = time.monotonic()
        outcome = "error"
        try:
            run = self._guarded if self.protected else self._unguarded
            result = await run(order_id)
            outcome = "ok"
            return result
        except EngineError as exc:
            outcome = exc.outcome
            raise
        finally:
            self._record(outcome, time.monotonic() - started)

    def _record(self, outcome: str, seconds: float) -> None:
        self._metrics.engine_requests.labels(outcome=outcome).inc()
        self._metrics.engine_duration.observe(seconds)
        if outcome in ("ok", "not_found", "rejected_by_node"):
            self.counts["evaluated"] += 1
        elif outcome in ("circuit_open", "shed", "queue_timeout"):
            self.counts["rejected"] += 1
            self._metrics.error(outcome)
        else:
            self.counts["failed"] += 1
            self._metrics.error("bid_engine")

    def _blocked(self) -> bool:
        """True when a request must fail fast: open and not yet due, or a half-open trial already running."""
        state = self.circuit_state()
        return state == "open" or (state == "half-open" and self._trial_active)

    async def _guarded(self, order_id: dict[str, Any]) -> dict[str, Any]:
        if self._blocked():
            raise CircuitOpen("circuit open")
        if self._slots.free == 0 and self._slots.waiting >= self.cfg.max_pending:
            await self._shed(Shed("bid engine overloaded"))
        if not await self._slots.acquire(self.cfg.timeout):
            await self._shed(QueueTimeout("no evaluation slot within the timeout"))
        self.in_flight += 1
        try:
            trial = self._admit()
            try:
                return await self._through_breaker(order_id, self.cfg.timeout)
            finally:
                if trial:
                    self._trial_active = False
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _shed(self, error: EngineError) -> NoReturn:
        """Refuse a request for want of a slot, counted as a breaker failure (a saturated engine must shed load)."""
        try:
            async with self._breaker:
                raise error
        except EngineError:
            pass
        except OpenedState as exc:  # already open: nothing more to count
            exc.__traceback__ = None
        raise error

    def _admit(self) -> bool:
        """Decide after getting a slot: normal request (False), the single half-open trial (True), or fail fast."""
        state = self.circuit_state()
        if state == "closed":
            return False
        if state == "open" or self._trial_active:
            raise CircuitOpen("circuit open")
        self._trial_active = True
        return True

    async def _through_breaker(self, order_id: dict[str, Any], budget: float) -> dict[str, Any]:
        try:
            async with self._breaker:
                async with asyncio.timeout(budget):
                    return await self._work(order_id)
        except OpenedState as exc:
            exc.__traceback__ = None  # purgatory re-raises one instance: do not let its traceback grow
            raise CircuitOpen("circuit open") from None
        except TimeoutError:
            raise DependencyTimeout("evaluation timed out") from None

    async def _unguarded(self, order_id: dict[str, Any]) -> dict[str, Any]:
        """Weakness ``no-circuit-breaker``: wait for a slot and for the node as long as it takes."""
        await self._slots.acquire(None)
        self.in_flight += 1
        try:
            return await self._work(order_id)
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _work(self, order_id: dict[str, Any]) -> dict[str, Any]:
        order = await self._node.order_info(order_id)
        await asyncio.sleep(self.cfg.work_ms / 1000.0)
        try:
            price = quote(order, self.bid_price)
        except (ValueError, TypeError, AttributeError) as exc:
            raise DependencyError(f"malformed order from the node: {describe(exc)}") from None
        return {"order_id": order.get("id", order_id), "price": price}


# ---------------------------------------------------------------- bidding


@dataclass
class PendingBid:
    hash: str
    sent_at: float


class Bidder:
    """Watches open orders and places one bid per order (retrying failed broadcasts and failed bid txs)."""

    def __init__(self, settings: Settings, node: NodeClient, engine: BidEngine, metrics: Metrics, log: logging.Logger):
        self.s = settings
        self._node = node
        self._engine = engine
        self._metrics = metrics
        self._log = log
        self._changes = ChangeLog(log)
        self.placed: set[OrderKey] = set()
        self.pending: dict[OrderKey, PendingBid] = {}
        self._retry: dict[OrderKey, tuple[int, float]] = {}
        self._synced = False
        self.bids_placed = 0
        # weakness bids-lost-on-restart: the chain height when this process started; orders created up to the block
        # after it (open, or in the mempool, when it started) are never bid on
        self._forgets = WEAKNESS_BIDS_LOST in settings.weaknesses
        self._born: int | None = None

    async def cycle(self) -> None:
        if not self._synced:
            try:
                self.placed |= await self._existing_bids()
            except EngineError as exc:
                self._metrics.error("node_query")
                self._changes.failed("listing own bids", describe(exc))
                return
            self._synced = True
        await self._check_pending()
        try:
            orders = await self._node.list_all(ORDERS_LIST, {"filters.state": "open"}, "orders")
        except EngineError as exc:
            self._metrics.error("node_query")
            self._changes.failed("listing open orders", describe(exc))
            return
        self._changes.ok("listing open orders")
        if self._forgets and self._born is None:
            try:
                self._born = await self._node.height()
            except EngineError as exc:
                self._changes.failed("reading the chain height", describe(exc))
                return
            self._log.warning(
                "weakness %s: ignoring orders created up to height %d", WEAKNESS_BIDS_LOST, self._born + 1
            )
        todo = [o for o in (unwrap(x, "order") for x in orders) if self._wants(o)]
        if todo:
            # at most `concurrency` of our own evaluations at once: the daemon never floods its own engine's queue
            lanes = asyncio.Semaphore(self.s.engine.concurrency)

            async def bid(order: dict[str, Any]) -> None:
                async with lanes:
                    await self._bid(order)

            await asyncio.gather(*(bid(o) for o in todo[:MAX_BIDS_PER_CYCLE]))

    def _wants(self, order: dict[str, Any]) -> bool:
        try:
            key = order_key(order["id"])
        except (KeyError, TypeError):
            return False
        if order.get("state", "open") != "open" or key in self.placed or key in self.pending:
            return False
        if self._born is not None and _int(order.get("created_at")) <= self._born + 1:
            return False  # weakness bids-lost-on-restart: created before this process started
        retry = self._retry.get(key)
        return retry is None or time.monotonic() >= retry[1]

    def _defer(self, key: OrderKey) -> None:
        attempts = self._retry.get(key, (0, 0.0))[0] + 1
        delay = min(MAX_RETRY_DELAY, self.s.poll_interval * 2**attempts)
        self._retry[key] = (attempts, time.monotonic() + delay)

    async def _existing_bids(self) -> set[OrderKey]:
        """Orders this provider already has a bid on (after a restart, or when a tx went missing)."""
        keys: set[OrderKey] = set()
        for item in await self._node.list_all(BIDS_LIST, {"filters.provider": self.s.provider}, "bids"):
            with contextlib.suppress(KeyError, TypeError):
                keys.add(order_key(unwrap(item, "bid")["id"]))
        return keys

    async def _bid(self, order: dict[str, Any]) -> None:
        key = order_key(order["id"])
        try:
            evaluation = await self._engine.evaluate(order["id"])
            tx = encode_tx(
                "market/bid/create",
                self.s.provider,
                {"provider": self.s.provider, "order_id": msg_order_id(order["id"]), "price": evaluation["price"]},
            )
            result = await self._node.broadcast(tx)
        except (EngineError, ValueError, KeyError, TypeError) as exc:
            self._defer(key)
            self._metrics.error("bid")
            self._changes.failed("bidding", describe(exc))
            return
        if int(result.get("code", 0)) != 0:
            self._defer(key)
            self._metrics.error("bid_rejected")
            self._changes.failed("bidding", f"CheckTx code {result.get('code')}: {result.get('log')}")
            return
        self._changes.ok("bidding")
        self.pending[key] = PendingBid(str(result.get("hash") or tx_hash(tx)).upper(), time.monotonic())
        self._log.info("bid sent on order %s at %s", "/".join(key), evaluation["price"])

    async def _check_pending(self) -> None:
        if not self.pending:
            return
        items = list(self.pending.items())
        results = await asyncio.gather(*(self._node.tx_result(p.hash) for _, p in items), return_exceptions=True)
        stale = False
        for (key, pend), res in zip(items, results, strict=True):
            if isinstance(res, BaseException):
                self._changes.failed("confirming bids", describe(res))
                stale = stale or time.monotonic() - pend.sent_at > self.s.confirm_timeout
                continue
            self._changes.ok("confirming bids")
            if res is None:
                stale = stale or time.monotonic() - pend.sent_at > self.s.confirm_timeout
            elif int(res.get("code", 0)) == 0:
                self._confirmed(key)
            else:
                del self.pending[key]
                self._defer(key)
                self._metrics.error("bid_tx_failed")
                self._log.warning(
                    "bid on %s failed in DeliverTx: code %s %s", "/".join(key), res.get("code"), res.get("log")
                )
        if stale:
            await self._resolve_stale()

    def _confirmed(self, key: OrderKey) -> None:
        self.pending.pop(key, None)
        self._retry.pop(key, None)
        self.placed.add(key)
        self.bids_placed += 1
        self._metrics.bids_placed.inc()
        self._log.info("bid on order %s committed", "/".join(key))

    async def _resolve_stale(self) -> None:
        """Txs unconfirmed for too long: keep those whose bid exists on chain, retry the others."""
        try:
            existing = await self._existing_bids()
        except EngineError as exc:
            self._changes.failed("listing own bids", describe(exc))
            return
        now = time.monotonic()
        for key, pend in list(self.pending.items()):
            if key in existing:
                self._confirmed(key)
            elif now - pend.sent_at > self.s.confirm_timeout:
                del self.pending[key]
                self._defer(key)
                self._log.warning(
                    "bid on %s unconfirmed after %.0fs; will retry", "/".join(key), self.s.confirm_timeout
                )


# ---------------------------------------------------------------- provisioning


@dataclass
class Workload:
    lease_id: dict[str, Any]
    state: str = "pending"
    created_at: str = field(default_factory=now_rfc3339)
    running_at: str | None = None
    closed_at: str | None = None
    seen: float = field(default_factory=time.monotonic)

    def view(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id,
            "state": self.state,
            "created_at": self.created_at,
            "running_at": self.running_at,
            "closed_at": self.closed_at,
        }


class Provisioner:
    """Mirrors this provider's active leases as in-memory workloads (rebuilt from the chain on restart)."""

    def __init__(self, settings: Settings, node: NodeClient, metrics: Metrics, log: logging.Logger) -> None:
        self.s = settings
        self._node = node
        self._metrics = metrics
        self._log = log
        self._changes = ChangeLog(log)
        self.workloads: dict[OrderKey, Workload] = {}
        self._tasks: dict[OrderKey, asyncio.Task[None]] = {}
        # weakness provider-forgets-leases: the leases active at this process's first listing are not restored
        self._restored = WEAKNESS_FORGETS_LEASES not in settings.weaknesses
        for state in ("pending", "running", "closed"):
            metrics.leases.labels(state=state).set_function(lambda st=state: self.count(st))

    def count(self, state: str) -> int:
        return sum(1 for w in self.workloads.values() if w.state == state)

    async def cycle(self) -> None:
        filters = {"filters.provider": self.s.provider, "filters.state": "active"}
        try:
            items = await self._node.list_all(LEASES_LIST, filters, "leases")
        except EngineError as exc:
            self._metrics.error("node_query")
            self._changes.failed("listing active leases", describe(exc))
            return
        self._changes.ok("listing active leases")
        active: dict[OrderKey, dict[str, Any]] = {}
        for item in items:
            lease = unwrap(item, "lease")
            with contextlib.suppress(KeyError, TypeError):
                if lease.get("state", "active") == "active":
                    active[order_key(lease["id"])] = lease["id"]
        if not self._restored:
            self._restored = True
            self._forget(active)
        self._apply(active)

    def _forget(self, active: dict[OrderKey, dict[str, Any]]) -> None:
        """Weakness provider-forgets-leases: the workloads of leases active before this process started are not
        restored; their status says ``unknown`` (not running) until the lease closes."""
        for key, lease_id in active.items():
            self.workloads[key] = Workload(lease_id=lease_id, state="unknown")
        if active:
            self._log.warning("weakness %s: %d active lease(s) not restored", WEAKNESS_FORGETS_LEASES, len(active))

    def _apply(self, active: dict[OrderKey, dict[str, Any]]) -> None:
        for key, lease_id in active.items():
            work = self.workloads.get(key)
            if work is None or work.state == "closed":
                self._start(key, lease_id)
        for key, work in self.workloads.items():
            if key not in active and work.state != "closed":
                self._close(key, work)

    def _start(self, key: OrderKey, lease_id: dict[str, Any]) -> None:
        work = Workload(lease_id=lease_id)
        self.workloads[key] = work
        self._tasks[key] = asyncio.create_task(self._provision(key, work))
        self._log.info("lease %s seen: provisioning", "/".join(key))

    async def _provision(self, key: OrderKey, work: Workload) -> None:
        await asyncio.sleep(self.s.provision_delay)
        if work.state != "pending":
            return
        work.state = "running"
        work.running_at = now_rfc3339()
        self._metrics.provisioning.observe(time.monotonic() - work.seen)
        self._tasks.pop(key, None)
        self._log.info("lease %s running", "/".join(key))

    def _close(self, key: OrderKey, work: Workload) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        work.state = "closed"
        work.closed_at = now_rfc3339()
        self._log.info("lease %s closed", "/".join(key))

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()


# ---------------------------------------------------------------- daemon and HTTP API


class Daemon:
    def __init__(self, settings: Settings, log: logging.Logger) -> None:
        self.s = settings
        self.log = log
        self.metrics = Metrics()
        max_conn = settings.engine.concurrency + MAX_BIDS_PER_CYCLE + 8
        self.node = NodeClient(settings.node_rest, settings.node_rpc, settings.node_timeout, max_conn)
        protected = WEAKNESS_NO_BREAKER not in settings.weaknesses
        self.engine = BidEngine(settings.engine, settings.bid_price, self.node, self.metrics, protected, log)
        self.bidder = Bidder(settings, self.node, self.engine, self.metrics, log)
        self.provisioner = Provisioner(settings, self.node, self.metrics, log)
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.engine.start()
        self._loops = [
            asyncio.create_task(self._loop("order watcher", self.bidder.cycle)),
            asyncio.create_task(self._loop("lease watcher", self.provisioner.cycle)),
        ]
        self.log.info("provider %s started (weaknesses: %s)", self.s.provider, sorted(self.s.weaknesses) or "none")

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.provisioner.stop()
        await self.node.aclose()

    async def _loop(self, name: str, cycle: Callable[[], Awaitable[None]]) -> None:
        changes = ChangeLog(self.log)
        while True:
            started = time.monotonic()
            try:
                await cycle()
                changes.ok(name)
            except Exception as exc:  # a watcher must survive anything
                self.metrics.error("internal")
                changes.failed(name, describe(exc))
            await asyncio.sleep(max(0.0, self.s.poll_interval - (time.monotonic() - started)))

    def status(self) -> dict[str, Any]:
        return {
            "provider": self.s.provider,
            "bid_engine": self.engine.status(),
            "bids_placed": self.bidder.bids_placed,
            "bids_pending": len(self.bidder.pending),
            "leases": {st: self.provisioner.count(st) for st in ("pending", "running", "closed")},
        }


def build_app(settings: Settings, log: logging.Logger) -> Starlette:
    daemon = Daemon(settings, log)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await daemon.start()
        try:
            yield
        finally:
            await daemon.stop()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "provider": settings.provider})

    async def status(request: Request) -> Response:
        return JSONResponse(daemon.status())

    async def metrics(request: Request) -> Response:
        return metrics_response(daemon.metrics.registry)

    async def evaluate(request: Request) -> Response:
        try:
            body = await request.json()
            order_id = body["order_id"]
            msg_order_id(order_id)
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'body must be {"order_id": {owner, dseq, gseq, oseq}}'}, status_code=400)
        try:
            result = await daemon.engine.evaluate(order_id)
        except EngineError as exc:
            return JSONResponse({"error": str(exc) or exc.outcome}, status_code=exc.status)
        return JSONResponse(result)

    async def leases(request: Request) -> Response:
        return JSONResponse({"leases": [w.view() for w in daemon.provisioner.workloads.values()]})

    async def lease(request: Request) -> Response:
        p = request.path_params
        work = daemon.provisioner.workloads.get((p["owner"], p["dseq"], p["gseq"], p["oseq"]))
        if work is None:
            return JSONResponse({"error": "lease not found"}, status_code=404)
        return JSONResponse({**work.view(), "healthy": work.state == "running"})

    routes = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/api/v1/status", status),
        Route("/api/v1/bid-engine/evaluate", evaluate, methods=["POST"]),
        Route("/api/v1/leases", leases),
        Route("/api/v1/leases/{owner}/{dseq}/{gseq}/{oseq}", lease),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.daemon = daemon
    return app


def main(argv: list[str] | None = None) -> None:
    raw = load_config(argv)
    try:
        settings = parse_settings(raw)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    log = setup_logging(settings.name)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per node call is too much
    serve(build_app(settings, log), settings.host, settings.port, log)


if __name__ == "__main__":
    main()
