"""Component tests of the provider daemon (vesandbox.provider) against a small fake node in the test process."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "infra" / "sandbox"))

import asyncio
import base64
import copy
import functools
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from vesandbox.common import rest_not_found, rpc_error, rpc_result

from tests import support
from tests.support import free_port, stop_process

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
PROVIDER = "provider1"
FAST_ENGINE = {"concurrency": 8, "timeout": 0.5, "fail_max": 5, "reset_timeout": 3.0, "work_ms": 5}

# polls here retry on nothing: an error in a condition fails the test at once
wait_for = functools.partial(support.wait_for, interval=0.05, errors=())


def order_id(dseq: int, owner: str = "tenant1") -> dict[str, Any]:
    return {"owner": owner, "dseq": str(dseq), "gseq": 1, "oseq": 1}


def make_order(dseq: int, max_amount: int, state: str = "open") -> dict[str, Any]:
    spec = {
        "name": "web",
        "resources": {"cpu": 500, "memory": 268435456, "storage": 1073741824},
        "count": 1,
        "price": {"denom": "uve", "amount": str(max_amount)},
    }
    return {"id": order_id(dseq), "state": state, "spec": spec, "created_at": "3"}


def key_of(oid: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(oid["owner"]), str(oid["dseq"]), str(oid["gseq"]), str(oid["oseq"]))


# ---------------------------------------------------------------- fake node


@dataclass
class FakeNode:
    """Stands in for the node's REST and RPC (PROTOCOL.md shapes), with a switchable slow ``orders/info``."""

    page_size: int = 2
    info_delay: float = 0.0
    fail_next_bid_txs: int = 0
    orders: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    leases: list[dict[str, Any]] = field(default_factory=list)
    bids: list[dict[str, Any]] = field(default_factory=list)
    txs: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add_order(self, order: dict[str, Any]) -> None:
        with self.lock:
            self.orders[key_of(order["id"])] = order

    def add_lease(self, oid: dict[str, Any], provider: str = PROVIDER) -> None:
        lease = {"id": {**oid, "provider": provider}, "state": "active", "price": {"denom": "uve", "amount": "10"}}
        with self.lock:
            self.leases.append({"lease": {**lease, "created_at": "9", "closed_on": "0"}, "escrow_payment": {}})

    def close_lease(self, oid: dict[str, Any]) -> None:
        with self.lock:
            for item in self.leases:
                if key_of(item["lease"]["id"]) == key_of(oid):
                    item["lease"]["state"] = "closed"

    def committed_bid_txs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [t for t in self.txs if t["type"] == "market/bid/create" and self.results[t["_hash"]]["code"] == 0]

    def app(self) -> Starlette:
        routes = [
            Route("/virtengine/market/v1beta5/orders/list", self.orders_list),
            Route("/virtengine/market/v1beta5/orders/info", self.orders_info),
            Route("/virtengine/market/v1beta5/bids/list", self.bids_list),
            Route("/virtengine/market/v1beta5/leases/list", self.leases_list),
            Route("/broadcast_tx_sync", self.broadcast),
            Route("/tx", self.tx),
        ]
        return Starlette(routes=routes)

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> Response:
        limit = min(int(request.query_params.get("pagination.limit", "100")), self.page_size)
        start = int(request.query_params.get("pagination.key") or 0)
        end = start + limit
        next_key = str(end) if end < len(items) else None
        return JSONResponse({key: items[start:end], "pagination": {"next_key": next_key, "total": str(len(items))}})

    async def orders_list(self, request: Request) -> Response:
        state = request.query_params.get("filters.state")
        with self.lock:
            self.calls["orders/list"] += 1
            items = [copy.deepcopy(o) for o in self.orders.values() if state in (None, "", o["state"])]
        return self._page(request, "orders", items)

    async def orders_info(self, request: Request) -> Response:
        q = request.query_params
        with self.lock:
            self.calls["orders/info"] += 1
            delay = self.info_delay
            order = copy.deepcopy(self.orders.get((q["id.owner"], q["id.dseq"], q["id.gseq"], q["id.oseq"])))
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"order": order}) if order else rest_not_found("order")

    async def bids_list(self, request: Request) -> Response:
        provider = request.query_params.get("filters.provider")
        with self.lock:
            self.calls["bids/list"] += 1
            items = [copy.deepcopy(b) for b in self.bids if provider in (None, "", b["bid"]["id"]["provider"])]
        return self._page(request, "bids", items)

    async def leases_list(self, request: Request) -> Response:
        q = request.query_params
        provider, state = q.get("filters.provider"), q.get("filters.state")
        with self.lock:
            self.calls["leases/list"] += 1
            items = [
                copy.deepcopy(x)
                for x in self.leases
                if provider in (None, "", x["lease"]["id"]["provider"]) and state in (None, "", x["lease"]["state"])
            ]
        return self._page(request, "leases", items)

    async def broadcast(self, request: Request) -> Response:
        raw = bytes.fromhex(request.query_params["tx"].removeprefix("0x"))
        tx_hash = hashlib.sha256(raw).hexdigest().upper()
        try:
            tx = json.loads(raw)
            assert {"type", "signer", "nonce", "msg"} <= tx.keys()
        except (ValueError, AssertionError):
            return rpc_result({"code": 2, "data": "", "log": "malformed tx", "codespace": "sdk", "hash": tx_hash})
        with self.lock:
            code = 0
            if tx["type"] == "market/bid/create" and self.fail_next_bid_txs > 0:
                self.fail_next_bid_txs -= 1
                code = 11
            elif tx["type"] == "market/bid/create":
                bid_id = {**tx["msg"]["order_id"], "provider": tx["msg"]["provider"]}
                self.bids.append({"bid": {"id": bid_id, "state": "open", "price": tx["msg"]["price"]}})
            self.txs.append({**tx, "_hash": tx_hash})
            self.results[tx_hash] = {"code": code, "log": "" if code == 0 else "bid failed", "events": []}
            b64 = base64.b64encode(raw).decode()
            self.results[tx_hash]["_tx"] = b64
        return rpc_result({"code": 0, "data": "", "log": "", "codespace": "", "hash": tx_hash})

    async def tx(self, request: Request) -> Response:
        tx_hash = request.query_params["hash"].removeprefix("0x").upper()
        with self.lock:
            res = copy.deepcopy(self.results.get(tx_hash))
        if res is None:
            return rpc_error(f"tx ({tx_hash}) not found")
        raw = res.pop("_tx")
        return rpc_result({"hash": tx_hash, "height": "12", "index": 0, "tx_result": res, "tx": raw})


@pytest.fixture
def fake_node() -> Iterator[FakeNode]:
    node = FakeNode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    node.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        node.app(), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the fake node to start")
        yield node
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# ---------------------------------------------------------------- provider subprocess


@dataclass
class Provider:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: pathlib.Path
    client: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=10, trust_env=False, transport=nodelay_transport())
    )

    def get(self, path: str) -> httpx.Response:
        return self.client.get(self.url + path)

    def status(self) -> dict[str, Any]:
        return self.get("/api/v1/status").json()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    return sample.value
        return None

    def evaluate(self, oid: dict[str, Any]) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        resp = self.client.post(self.url + "/api/v1/bid-engine/evaluate", json={"order_id": oid})
        return resp, time.perf_counter() - started

    def stop(self) -> None:
        stop_process(self.proc)
        self.client.close()


def nodelay_transport() -> httpx.HTTPTransport:
    """A transport with TCP_NODELAY: httpx writes a POST's headers and body apart, and Nagle + delayed ACK would
    add ~40 ms to every request."""
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


@pytest.fixture
def start_provider(tmp_path: pathlib.Path, fake_node: FakeNode) -> Iterator[Callable[..., Provider]]:
    procs: list[tuple[Provider, Any]] = []

    def start(**overrides: Any) -> Provider:
        port = free_port()
        config = {
            "name": "provider",
            "weaknesses": [],
            "listen": {"host": "127.0.0.1", "port": port},
            "provider": PROVIDER,
            "node_rpc": fake_node.url,
            "node_rest": fake_node.url,
            "poll_interval": 0.2,
            "provision_delay": 1.5,
            "bid_price": "10",
            "bid_engine": dict(FAST_ENGINE),
        } | overrides
        n = len(procs)
        cfg_path = tmp_path / f"provider-{n}.json"
        cfg_path.write_text(json.dumps(config))
        log_path = tmp_path / f"provider-{n}.log"
        log = log_path.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO / "infra" / "sandbox")}
        cmd = [sys.executable, "-m", "vesandbox.provider", "--config", str(cfg_path)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        provider = Provider(f"http://127.0.0.1:{port}", proc, log_path)
        procs.append((provider, log))

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"provider exited {proc.returncode}: {log_path.read_text()}")
            try:
                return provider.get("/health").json() == {"status": "ok", "provider": PROVIDER}
            except httpx.HTTPError:
                return False

        wait_for(healthy, 15, "provider /health")
        return provider

    try:
        yield start
    finally:
        for provider, log in procs:
            provider.stop()
            log.close()


async def _post_raw(conn: list[Any], port: int, path: str, body: bytes) -> int:
    """One HTTP/1.1 keep-alive POST on ``conn`` ([reader, writer], opened on demand); returns the status."""
    if not conn:
        conn.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = conn
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    writer.write(head.encode() + b"\r\n\r\n" + body)
    await writer.drain()
    lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    length = next(int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _hammer(port: int, oid: dict[str, Any], total: int, concurrency: int, timeout: float) -> list[Any]:
    # A minimal raw HTTP/1.1 client: httpx's async pool costs O(connections²) per request and, at 50 connections,
    # is itself slower than the service under test.
    body = json.dumps({"order_id": oid}).encode()
    remaining = [total]
    results: list[tuple[int | None, float, float]] = []

    async def worker() -> None:
        conn: list[Any] = []
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            code: int | None = None
            try:
                async with asyncio.timeout(timeout):
                    code = await _post_raw(conn, port, "/api/v1/bid-engine/evaluate", body)
            except TimeoutError:
                if conn:
                    conn[1].close()
                conn.clear()
            results.append((code, started, time.perf_counter()))
        if conn:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def hammer(provider: Provider, oid: dict[str, Any], total: int, concurrency: int, timeout: float) -> list[Any]:
    """``total`` evaluate requests, ``concurrency`` at a time: [(status or None on client timeout, start, end)]."""
    return asyncio.run(_hammer(int(provider.url.rsplit(":", 1)[1]), oid, total, concurrency, timeout))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


# ---------------------------------------------------------------- tests


def test_bad_config_exits_non_zero(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"name": "provider", "listen": {"port": "x"}}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "infra" / "sandbox")}
    cmd = [sys.executable, "-m", "vesandbox.provider", "--config", str(cfg)]
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert b"bad provider config" in proc.stderr


def test_bids_on_open_orders_once_and_retries_a_failed_bid_tx(fake_node: FakeNode, start_provider) -> None:
    # Three open orders (the fake pages by 2, so the daemon must follow pagination); one caps the price at 5.
    for dseq, max_amount in ((101, 100), (102, 100), (103, 5)):
        fake_node.add_order(make_order(dseq, max_amount))
    fake_node.add_order(make_order(104, 100, state="active"))  # not open: no bid
    fake_node.fail_next_bid_txs = 1  # the first bid tx fails in DeliverTx: the daemon must bid again
    provider = start_provider()

    wait_for(lambda: provider.status()["bids_placed"] == 3, 20, "three bids placed")
    committed = fake_node.committed_bid_txs()
    assert sorted(t["msg"]["order_id"]["dseq"] for t in committed) == [101, 102, 103]
    for tx in committed:
        dseq = tx["msg"]["order_id"]["dseq"]
        assert tx["signer"] == PROVIDER and tx["msg"]["provider"] == PROVIDER
        assert tx["msg"]["order_id"] == {"owner": "tenant1", "dseq": dseq, "gseq": 1, "oseq": 1}
        assert tx["msg"]["price"] == {"denom": "uve", "amount": "5" if dseq == 103 else "10"}
    all_bids = [t for t in fake_node.txs if t["type"] == "market/bid/create"]
    assert len(all_bids) == 4  # 3 committed + the failed one, retried
    assert len({t["nonce"] for t in all_bids}) == 4

    # No bid twice: let several more watcher cycles run, then count again.
    seen = fake_node.calls["orders/list"]
    wait_for(lambda: fake_node.calls["orders/list"] >= seen + 6, 10, "more watcher cycles")
    assert len([t for t in fake_node.txs if t["type"] == "market/bid/create"]) == 4
    assert provider.metric("provider_bids_placed_total") == 3
    assert provider.metric("provider_bid_engine_requests_total", {"outcome": "ok"}) == 4


def test_lease_goes_pending_then_running_survives_restart_and_closes(fake_node: FakeNode, start_provider) -> None:
    delay = 1.5
    provider = start_provider(provision_delay=delay)
    oid = order_id(201)
    fake_node.add_lease(order_id(202), provider="provider2")  # another provider's lease: not ours
    added = time.monotonic()
    fake_node.add_lease(oid)
    path = "/api/v1/leases/tenant1/201/1/1"

    first = wait_for(lambda: provider.get(path).status_code == 200 and provider.get(path).json(), 5, "lease seen")
    assert first["state"] == "pending" and first["healthy"] is False
    running = wait_for(lambda: (r := provider.get(path).json())["state"] == "running" and r, delay + 5, "running")
    elapsed = time.monotonic() - added
    assert delay <= elapsed <= delay + 1.5, elapsed
    assert running["healthy"] is True and running["running_at"]
    assert running["lease_id"]["provider"] == PROVIDER
    listed = provider.get("/api/v1/leases").json()["leases"]
    assert [w["lease_id"]["dseq"] for w in listed] == ["201"]
    assert provider.status()["leases"]["running"] == 1
    assert provider.metric("provider_leases", {"state": "running"}) == 1
    assert provider.metric("provider_provisioning_seconds_count") == 1
    assert provider.get("/api/v1/leases/tenant1/999/1/1").status_code == 404

    # A restarted daemon rebuilds its workloads from the chain's active leases.
    provider.stop()
    provider = start_provider(provision_delay=delay)
    again = wait_for(lambda: provider.get(path).status_code == 200 and provider.get(path).json(), 5, "lease re-seen")
    assert again["state"] in ("pending", "running")
    wait_for(lambda: provider.get(path).json()["state"] == "running", delay + 5, "running after restart")

    fake_node.close_lease(oid)
    wait_for(lambda: provider.get(path).json()["state"] == "closed", 5, "closed")
    assert provider.get(path).json()["healthy"] is False
    assert provider.status()["leases"] == {"pending": 0, "running": 0, "closed": 1}


def test_breaker_opens_under_overload_fails_fast_and_closes_after_reset(fake_node: FakeNode, start_provider) -> None:
    oid = order_id(301)
    fake_node.add_order(make_order(301, 100, state="active"))  # known to orders/info, not bid on by the watcher
    engine = FAST_ENGINE
    provider = start_provider()

    resp, _ = provider.evaluate(oid)
    assert resp.status_code == 200 and resp.json()["price"] == {"denom": "uve", "amount": "10"}
    # Unknown orders: the node answered, so a 404 is a success of the dependency and never trips the breaker.
    for _ in range(engine["fail_max"] * 2):
        assert provider.evaluate(order_id(999))[0].status_code == 404
    assert provider.status()["bid_engine"]["circuit"] == "closed"

    fake_node.info_delay = 2.0  # slower than the engine's timeout (0.5 s)
    # 25 clients in a closed loop: 3x the engine's 8 slots. Once the breaker is open, a client's latency is about
    # 25 x the HTTP server's cost per request (uvicorn on h11): more clients would measure the parser, not the breaker.
    results = hammer(provider, oid, total=200, concurrency=25, timeout=10)
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {503, 504}, codes
    # Nobody waits for the slow node: at most `timeout` queued for a slot plus `timeout` for the node call.
    assert max(end - start for _, start, end in results) < 2 * engine["timeout"] + 0.5
    # Requests sent once the first 503 came back (the breaker is open) are answered at once.
    opened = min(end for code, _, end in results if code == 503)
    fast = [end - start for code, start, end in results if start >= opened]
    assert len(fast) >= 100 and all(code == 503 for code, start, _ in results if start >= opened), codes
    assert p95(fast) < 0.1, p95(fast)

    status = provider.status()["bid_engine"]
    assert status["circuit"] == "open" and status["circuit_opened_total"] >= 1, status
    opened_total = status["circuit_opened_total"]
    assert provider.metric("provider_bid_engine_circuit_state") == 1
    assert provider.metric("provider_bid_engine_circuit_opened_total") >= 1
    # 503: the breaker was open, or the queue was full (25 clients > 8 slots + 16 waiting)
    refused = {
        o: provider.metric("provider_bid_engine_requests_total", {"outcome": o}) or 0 for o in ("circuit_open", "shed")
    }
    assert refused["circuit_open"] > 0 and sum(refused.values()) == codes[503], (refused, codes)

    # While open: immediate 503, and the node is not called at all.
    calls = fake_node.calls["orders/info"]
    for _ in range(10):
        resp, seconds = provider.evaluate(oid)
        assert resp.status_code == 503 and resp.json() == {"error": "circuit open"}
        assert seconds < 0.1
    assert fake_node.calls["orders/info"] == calls

    # Node still slow: after reset_timeout the breaker half-opens and lets exactly one trial through; it times out
    # and the breaker opens again, while the concurrent requests are refused at once.
    def half_open() -> bool:
        return provider.status()["bid_engine"]["circuit"] == "half-open"

    wait_for(half_open, engine["reset_timeout"] + 3, "half-open")
    assert provider.metric("provider_bid_engine_circuit_state") == 2
    calls = fake_node.calls["orders/info"]
    trial = hammer(provider, oid, total=5, concurrency=5, timeout=10)
    assert sorted(code for code, _, _ in trial) == [503, 503, 503, 503, 504], trial
    assert fake_node.calls["orders/info"] == calls + 1
    status = provider.status()["bid_engine"]
    assert status["circuit"] == "open" and status["circuit_opened_total"] == opened_total + 1, status

    # Node fast again: at the next half-open, the trial succeeds and closes the breaker.
    fake_node.info_delay = 0.0
    wait_for(half_open, engine["reset_timeout"] + 3, "half-open again")
    resp, _ = provider.evaluate(oid)
    assert resp.status_code == 200
    assert provider.status()["bid_engine"]["circuit"] == "closed"
    assert provider.metric("provider_bid_engine_circuit_state") == 0


def test_a_saturated_engine_sheds_load_queue_timeouts_open_the_breaker(fake_node: FakeNode, start_provider) -> None:
    oid = order_id(351)
    fake_node.add_order(make_order(351, 100, state="active"))
    # The node is fast; the engine is the bottleneck: one slot, 300 ms of pricing work (inside the 0.5 s budget, so
    # no evaluation that got a slot ever fails). Only requests that wait too long for the slot fail.
    # (room for all 20 clients to wait: this test is about the wait bound, the next one about the queue bound)
    engine = {**FAST_ENGINE, "concurrency": 1, "work_ms": 300, "max_pending": 64}
    provider = start_provider(bid_engine=engine)
    resp, seconds = provider.evaluate(oid)
    assert resp.status_code == 200 and seconds >= 0.3

    results = hammer(provider, oid, total=120, concurrency=20, timeout=10)
    codes = Counter(code for code, _, _ in results)
    assert codes[504] >= engine["fail_max"] and codes[503] > 0, codes  # queue timeouts, then the breaker sheds
    assert provider.metric("provider_bid_engine_requests_total", {"outcome": "queue_timeout"}) == codes[504]
    assert provider.metric("provider_bid_engine_requests_total", {"outcome": "timeout"}) is None  # node never slow
    status = provider.status()["bid_engine"]
    assert status["circuit_opened_total"] >= 1 and status["rejected"] == codes[503] + codes[504], status
    # once open, requests are refused at once instead of queueing for the saturated engine
    opened = min(end for code, _, end in results if code == 503)
    fast = [end - start for code, start, end in results if code == 503 and start >= opened]
    assert fast and p95(fast) < 0.1, fast

    # the overload is over: after reset_timeout the trial succeeds and the breaker closes
    wait_for(lambda: provider.status()["bid_engine"]["circuit"] == "half-open", engine["reset_timeout"] + 3, "half")
    assert provider.evaluate(oid)[0].status_code == 200
    assert provider.status()["bid_engine"]["circuit"] == "closed"


def test_a_full_queue_sheds_at_once_and_an_opening_breaker_refuses_the_waiting(
    fake_node: FakeNode, start_provider
) -> None:
    oid = order_id(371)
    fake_node.add_order(make_order(371, 100, state="active"))
    # one slot busy for 1 s of pricing; 3 may wait; the 2nd shed request opens the breaker (no half-open in the test)
    engine = {**FAST_ENGINE, "concurrency": 1, "work_ms": 1000, "max_pending": 3, "fail_max": 2, "timeout": 5.0}
    provider = start_provider(bid_engine=engine | {"reset_timeout": 60.0})
    assert provider.evaluate(oid)[0].status_code == 200
    calls = fake_node.calls["orders/info"]

    results = hammer(provider, oid, total=10, concurrency=10, timeout=10)
    codes = Counter(code for code, _, _ in results)
    assert codes == {200: 1, 503: 9}, codes
    served = next(end - start for code, start, end in results if code == 200)
    refused = [end - start for code, start, end in results if code == 503]
    # nobody waited for the busy slot: the overflow was shed at once, and the 3 waiting were refused when it opened
    assert max(refused) < served / 2, (refused, served)
    assert fake_node.calls["orders/info"] == calls + 1  # only the request holding the slot reached the node
    shed = provider.metric("provider_bid_engine_requests_total", {"outcome": "shed"})
    opened = provider.metric("provider_bid_engine_requests_total", {"outcome": "circuit_open"})
    assert shed >= engine["fail_max"] and shed + opened == 9, (shed, opened)
    status = provider.status()["bid_engine"]
    assert status["circuit"] == "open" and status["rejected"] == 9 and status["queued"] == 0, status
    assert "refused 3 waiting requests" in provider.log_path.read_text()


def test_weakness_no_circuit_breaker_queues_behind_the_slow_node(fake_node: FakeNode, start_provider) -> None:
    oid = order_id(401)
    fake_node.add_order(make_order(401, 100, state="active"))
    provider = start_provider(weaknesses=["no-circuit-breaker"])
    assert provider.evaluate(oid)[0].status_code == 200

    fake_node.info_delay = 1.0
    results = hammer(provider, oid, total=100, concurrency=50, timeout=3.0)
    codes = Counter(code for code, _, _ in results)
    latencies = [end - start for _, start, end in results]
    assert 503 not in codes, codes
    assert min(latencies) >= 0.9, min(latencies)  # not one fast failure: every request waited for the node
    assert p95(latencies) >= 2.5, p95(latencies)  # and most waited in the unbounded queue until the client gave up
    assert codes[None] > 0, codes
    status = provider.status()["bid_engine"]
    assert status["circuit"] == "disabled" and status["circuit_opened_total"] == 0
    assert status["queued"] > 0, status  # abandoned requests still queued inside the daemon
    assert provider.metric("provider_bid_engine_circuit_state") == -1

    # The abandoned requests are still served one by one; once the node is fast the backlog drains.
    fake_node.info_delay = 0.0
    wait_for(lambda: provider.status()["bid_engine"]["queued"] == 0, 15, "backlog drained")
