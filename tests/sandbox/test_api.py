"""Component tests of the marketplace API (vesandbox.api) against a real PostgreSQL 15 and a fake node RPC.

The fake node only stands in for the node in this component test; a small TCP forwarder between the API and
PostgreSQL can "blackhole" the database (stop forwarding bytes without closing anything, as a DROP rule would).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import psycopg
import pytest

from tests import support
from tests.support import free_port, pid_alive, stop_process

ROOT = pathlib.Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "infra" / "sandbox"
sys.path.insert(0, str(SANDBOX))

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INITDB_ARGS = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (PG_BIN / "postgres").exists(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run PostgreSQL as the postgres user"),
]


# polls here retry on these errors only (a process or the database not answering yet); any other fails at once
wait_for = functools.partial(support.wait_for, interval=0.05, errors=(httpx.HTTPError, psycopg.Error, OSError))


# ------------------------------------------------------------------------------------------------------- PostgreSQL


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vesbx-api-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def settings(self) -> dict[str, str]:
        return {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "fsync": "off",
            "max_connections": "60",
        }

    def as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd]

    def start(self) -> None:
        subprocess.run(
            self.as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), *INITDB_ARGS),
            check=True,
            capture_output=True,
            timeout=120,
        )
        with open(self.dir / "postgres.log", "wb") as logfile:
            self.proc = subprocess.Popen(
                self.as_postgres(
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    *[arg for k, v in self.settings().items() for arg in ("-c", f"{k}={v}")],
                ),
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 30, "PostgreSQL to accept connections", interval=0.1)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
        with self.connect("postgres"):
            return True

    def connect(self, dbname: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=2, autocommit=True
        )

    def stop(self) -> None:
        postmaster = self._postmaster_pid()
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(
                self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w", "-t", "20"),
                capture_output=True,
                timeout=30,
                check=False,
            )
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if postmaster is not None and pid_alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = Postgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


# -------------------------------------------------------------------------------------------------------- fake node


def event(kind: str, entity_id: str, entity: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "attributes": [{"key": "id", "value": entity_id}, {"key": "state", "value": json.dumps(entity)}],
    }


def tx(*events: dict[str, Any], code: int = 0) -> dict[str, Any]:
    return {"code": code, "log": "" if code == 0 else "order not open", "events": list(events)}


def order(owner: str, dseq: int, state: str) -> dict[str, Any]:
    return {
        "id": {"owner": owner, "dseq": str(dseq), "gseq": 1, "oseq": 1},
        "state": state,
        "spec": {"name": "web", "resources": {"cpu": 500, "memory": 1 << 28, "storage": 1 << 30}, "count": 1},
        "created_at": "1",
    }


def deployment(owner: str, dseq: int, state: str) -> dict[str, Any]:
    return {
        "deployment": {"id": {"owner": owner, "dseq": str(dseq)}, "state": state, "created_at": "1"},
        "groups": [{"id": {"owner": owner, "dseq": str(dseq), "gseq": 1}, "state": "open", "group_spec": {}}],
        "escrow_account": {"id": {"scope": "deployment", "xid": f"{owner}/{dseq}"}},
    }


BID_ID = {"owner": "tenant1", "dseq": "100", "gseq": 1, "oseq": 1, "provider": "provider1"}
PRICE = {"denom": "uve", "amount": "10"}


def bid(state: str) -> dict[str, Any]:
    return {"bid": {"id": BID_ID, "state": state, "price": PRICE, "created_at": "2"}}


def lease(state: str) -> dict[str, Any]:
    return {
        "lease": {"id": BID_ID, "state": state, "price": PRICE, "created_at": "3", "closed_on": "0"},
        "escrow_payment": {"state": {"owner": "tenant1", "state": "open", "rate": PRICE}},
    }


def chain_blocks() -> list[list[dict[str, Any]]]:
    """Blocks 1..3: two deployments with orders, a bid, a lease; block 2 also holds a failed tx."""
    return [
        [
            tx(event("provider", "provider1", {"owner": "provider1", "host_uri": "https://p1", "attributes": []})),
            tx(
                event("deployment", "tenant1/100", deployment("tenant1", 100, "active")),
                event("order", "tenant1/100/1/1", order("tenant1", 100, "open")),
                event(
                    "escrow_account",
                    "tenant1/100",
                    {
                        "id": {"scope": "deployment", "xid": "tenant1/100"},
                        "state": {"owner": "tenant1", "state": "open"},
                    },
                ),
            ),
            tx(
                event("deployment", "tenant2/200", deployment("tenant2", 200, "active")),
                event("order", "tenant2/200/1/1", order("tenant2", 200, "open")),
            ),
        ],
        [
            tx(event("bid", "tenant1/100/1/1/provider1", bid("open"))),
            tx(event("order", "tenant2/200/1/1", order("tenant2", 200, "closed")), code=11),  # failed: ignored
        ],
        [
            tx(
                event("lease", "tenant1/100/1/1/provider1", lease("active")),
                event("bid", "tenant1/100/1/1/provider1", bid("active")),
                event("order", "tenant1/100/1/1", order("tenant1", 100, "active")),
            )
        ],
    ]


class FakeNode:
    """Serves ``/status`` and ``/block_results`` (CometBFT JSON-RPC shapes) from a list of blocks."""

    def __init__(self) -> None:
        self.blocks: list[list[dict[str, Any]]] = chain_blocks()
        self.available = True
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                status, body = node.answer(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not self.available:
            return 500, {
                "jsonrpc": "2.0",
                "id": -1,
                "error": {"code": -32603, "message": "Internal error", "data": "node unavailable"},
            }
        height = len(self.blocks)
        if path == "/status":
            sync = {
                "latest_block_hash": "AB" * 32,
                "latest_block_height": str(height),
                "latest_block_time": "2026-11-25T16:02:58.123456Z",
                "catching_up": False,
            }
            return 200, {"jsonrpc": "2.0", "id": -1, "result": {"node_info": {"moniker": "fake"}, "sync_info": sync}}
        if path == "/block_results":
            h = int(params.get("height", height))
            if not 1 <= h <= height:
                return 500, {
                    "jsonrpc": "2.0",
                    "id": -1,
                    "error": {"code": -32603, "message": "Internal error", "data": f"height {h} not available"},
                }
            result = {"height": str(h), "txs_results": self.blocks[h - 1] or None}
            return 200, {"jsonrpc": "2.0", "id": -1, "result": result}
        return 404, {"error": "not found"}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def node() -> Iterator[FakeNode]:
    fake = FakeNode()
    try:
        yield fake
    finally:
        fake.stop()


# ---------------------------------------------------------------------------------------------------- TCP forwarder


class Forwarder:
    """Forwards 127.0.0.1:<port> to a target port; ``blackhole()`` stops moving bytes without closing anything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.blackholed = threading.Event()
        self._stop = threading.Event()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def blackhole(self) -> None:
        self.blackholed.set()

    def restore(self) -> None:
        self.blackholed.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.blackholed.is_set():
                time.sleep(0.02)
                continue
            for key, _mask in self._selector.select(timeout=0.05):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._pump(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.settimeout(5)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client], self._peers[upstream] = upstream, client

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in list(self._peers):
            self._close_pair(sock)
        self._selector.close()
        self.listener.close()


@pytest.fixture
def forwarder(postgres: Postgres) -> Iterator[Forwarder]:
    fwd = Forwarder(postgres.port)
    try:
        yield fwd
    finally:
        fwd.stop()


# ------------------------------------------------------------------------------------------------------ API process


class ApiProcess:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.url = f"http://127.0.0.1:{config['listen']['port']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"api-{id(self)}.log"
        self.client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def start(self) -> None:
        path = self.workdir / "api.json"
        path.write_text(json.dumps(self.config))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SANDBOX), os.environ.get("PYTHONPATH", "")])}
        with open(self.log, "wb") as logfile:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vesandbox.api", "--config", str(path)],
                cwd=ROOT,
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, 30, f"the API at {self.url} to answer /health", interval=0.1)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"API exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        return self.client.get("/health").status_code == 200

    def health(self) -> dict[str, Any]:
        return self.client.get("/health").json()

    def status(self) -> dict[str, Any]:
        return self.client.get("/api/v1/status").json()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=8)
        self.client.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(db_port: int, dbname: str, node_url: str, weaknesses: list[str] | None = None) -> ApiProcess:
        config = {
            "name": "api",
            "weaknesses": weaknesses or [],
            "listen": {"host": "127.0.0.1", "port": free_port()},
            "database": {"host": "127.0.0.1", "port": db_port, "user": "postgres", "dbname": dbname},
            "node_rpc": node_url,
            "queue_path": str(tmp_path / "data" / "api" / "write-queue.sqlite3"),
            "index_interval": 0.2,
            "cache_ttl": 1.0,
        }
        api = ApiProcess(tmp_path, config)
        started.append(api)
        api.start()
        return api

    try:
        yield start
    finally:
        for api in started:
            api.stop()


def timed_get(api: ApiProcess, path: str, durations: list[float]) -> httpx.Response:
    start = time.monotonic()
    resp = api.client.get(path)
    durations.append(time.monotonic() - start)
    return resp


def timed_post(api: ApiProcess, key: str, value: Any, durations: list[float]) -> httpx.Response:
    start = time.monotonic()
    resp = api.client.post("/api/v1/records", json={"key": key, "value": value})
    durations.append(time.monotonic() - start)
    return resp


def wait_database(api: ApiProcess, state: str, timeout: float = 8) -> None:
    wait_for(lambda: api.health()["database"] == state, timeout, f"the API to see the database {state}")


def wait_indexed(api: ApiProcess, height: int, timeout: float = 15) -> None:
    wait_for(lambda: api.health()["indexed_height"] >= height, timeout, f"the API to index block {height}")


ORDERS = "/api/v1/market/orders"


# ----------------------------------------------------------------------------------------------------------- tests


def test_bad_config_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "api", "listen": {"host": "127.0.0.1"}}))
    env = {**os.environ, "PYTHONPATH": str(SANDBOX)}
    proc = subprocess.run(
        [sys.executable, "-m", "vesandbox.api", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"config" in proc.stderr


def test_indexes_blocks_and_caches_reads(postgres: Postgres, node: FakeNode, spawn: Callable[..., ApiProcess]) -> None:
    api = spawn(postgres.port, "mk_index", node.url)  # the database does not exist yet: the API creates it
    wait_indexed(api, 3)

    first = api.client.get(ORDERS, params={"owner": "tenant1"})
    assert first.status_code == 200 and first.headers["X-Cache"] == "miss"
    body = first.json()
    assert body["source"] == "database" and body["indexed_height"] == 3
    assert [(o["id"]["dseq"], o["state"]) for o in body["items"]] == [("100", "active")]
    second = api.client.get(ORDERS, params={"owner": "tenant1"})
    assert second.headers["X-Cache"] == "hit" and second.json()["items"] == body["items"]
    assert second.json()["source"] == "cache"

    # the failed tx of block 2 did not close tenant2's order
    assert [o["state"] for o in api.client.get(ORDERS, params={"owner": "tenant2"}).json()["items"]] == ["open"]
    bids = api.client.get("/api/v1/market/bids", params={"provider": "provider1"}).json()["items"]
    assert [b["bid"]["state"] for b in bids] == ["active"]
    leases = api.client.get("/api/v1/market/leases", params={"dseq": "100", "state": "active"}).json()["items"]
    assert [le["lease"]["id"]["provider"] for le in leases] == ["provider1"]
    deployments = api.client.get("/api/v1/deployments", params={"state": "active"}).json()["items"]
    assert sorted(d["deployment"]["id"]["owner"] for d in deployments) == ["tenant1", "tenant2"]
    assert [p["owner"] for p in api.client.get("/api/v1/providers").json()["items"]] == ["provider1"]
    assert len(api.client.get(ORDERS, params={"limit": "1"}).json()["items"]) == 1
    assert api.client.get(ORDERS, params={"limit": "50000"}).status_code == 200  # clamped to the maximum
    for bad in ({"dseq": "abc"}, {"limit": "0"}, {"limit": "x"}):
        resp = api.client.get(ORDERS, params=bad)
        assert resp.status_code == 400 and resp.json()["error"]

    # a new block changes the order; once the cache entry expires, the change is served
    node.blocks.append([tx(event("order", "tenant1/100/1/1", order("tenant1", 100, "closed")))])
    wait_indexed(api, 4)
    wait_for(
        lambda: api.client.get(ORDERS, params={"owner": "tenant1"}).json()["items"][0]["state"] == "closed",
        5,
        "the closed order to be served",
    )
    with postgres.connect("mk_index") as conn:
        assert conn.execute("SELECT height FROM index_state").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM entities").fetchone() == (8,)

    # node unreachable: the indexer retries, then catches up
    node.available = False
    wait_for(lambda: api.status()["node"] == "down", 5, "the API to see the node down")
    node.blocks.append([tx(event("order", "tenant2/200/1/1", order("tenant2", 200, "closed")))])
    node.available = True
    wait_indexed(api, 5)
    status = api.status()
    assert status["chain_height"] == 5 and status["index_lag"] == 0 and status["node"] == "up"

    metrics = api.client.get("/metrics").text
    for line in (
        "virtengine_api_database_up 1.0",
        "virtengine_api_indexed_height 5.0",
        'virtengine_api_requests_total{code="200",path="/api/v1/market/orders"}',
        'virtengine_errors_total{category="node",module="api"}',
        "virtengine_api_request_duration_seconds_bucket",
        "virtengine_api_write_queue_depth 0.0",
    ):
        assert line in metrics, line


def test_records_and_throughput(postgres: Postgres, node: FakeNode, spawn: Callable[..., ApiProcess]) -> None:
    api = spawn(postgres.port, "mk_records", node.url)
    resp = api.client.post("/api/v1/records", json={"key": "cfg/a", "value": {"x": [1, 2]}})
    assert resp.status_code == 201 and resp.json() == {"key": "cfg/a", "status": "applied"}
    api.client.post("/api/v1/records", json={"key": "cfg/b", "value": "two"})
    api.client.post("/api/v1/records", json={"key": "other", "value": None})
    got = api.client.get("/api/v1/records/cfg/a").json()
    assert got["value"] == {"x": [1, 2]} and got["written_at"].endswith("Z")
    assert api.client.get("/api/v1/records/missing").status_code == 404
    listed = api.client.get("/api/v1/records", params={"prefix": "cfg/"}).json()["items"]
    assert [r["key"] for r in listed] == ["cfg/a", "cfg/b"]
    for bad in ("[1]", "{", '{"value": 1}', '{"key": "", "value": 1}', '{"key": "k"}', '{"key": "k", "value": NaN}'):
        resp = api.client.post("/api/v1/records", content=bad, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"], bad

    # cached reads: a few hundred requests per second from 8 client threads
    wait_indexed(api, 3)
    api.client.get(ORDERS, params={"owner": "tenant1"})

    def burst(_: int) -> int:
        with httpx.Client(base_url=api.url, timeout=10, trust_env=False) as client:
            return sum(client.get(ORDERS, params={"owner": "tenant1"}).status_code == 200 for _ in range(75))

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = sum(pool.map(burst, range(8)))
    elapsed = time.monotonic() - start
    assert ok == 600
    print(f"cached reads: {600 / elapsed:.0f} req/s")
    # throughput is a benchmark figure, not a test threshold (noisy shared machines): the reads above all succeeded


def test_database_blackhole(
    postgres: Postgres, node: FakeNode, forwarder: Forwarder, spawn: Callable[..., ApiProcess]
) -> None:
    api = spawn(forwarder.port, "mk_outage", node.url)
    wait_indexed(api, 3)
    assert api.client.get(ORDERS, params={"owner": "tenant1"}).headers["X-Cache"] == "miss"
    assert api.client.post("/api/v1/records", json={"key": "pre", "value": 0}).status_code == 201

    durations: list[float] = []
    forwarder.blackhole()
    # before the API has noticed: a query that needs the database still answers within the bound
    resp = timed_get(api, f"{ORDERS}?owner=tenant2", durations)
    assert resp.status_code == 503 and resp.json() == {"error": "database unavailable"}
    wait_database(api, "down")
    health = api.health()
    assert health["status"] == "degraded" and health["indexed_height"] == 3

    resp = timed_get(api, f"{ORDERS}?owner=tenant1", durations)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "stale"
    assert resp.json()["source"] == "cache" and resp.json()["items"][0]["state"] == "active"
    assert durations[-1] < 1.0
    resp = timed_get(api, f"{ORDERS}?owner=nobody", durations)
    assert resp.status_code == 503 and resp.json() == {"error": "database unavailable"}
    assert durations[-1] < 1.0
    for n in (1, 2):
        resp = timed_post(api, "k/1", {"n": n}, durations)
        assert resp.status_code == 202 and resp.json() == {"key": "k/1", "status": "queued"}
    assert timed_post(api, "k/2", "second", durations).status_code == 202
    assert timed_get(api, "/api/v1/records/k/1", durations).status_code == 503
    assert api.health()["queue_depth"] == 3
    assert max(durations) < 3.0, durations
    assert "virtengine_api_database_up 0.0" in api.client.get("/metrics").text

    forwarder.restore()
    wait_database(api, "up")
    wait_for(lambda: api.client.get("/api/v1/records/k/2").status_code == 200, 5, "the queued write k/2")
    assert api.client.get("/api/v1/records/k/1").json()["value"] == {"n": 2}
    assert api.client.get("/api/v1/records/pre").json()["value"] == 0
    status = api.status()
    assert status["queue_depth"] == 0 and status["queued_total"] == 3 and status["applied_total"] == 4
    wait_for(
        lambda: api.client.get(ORDERS, params={"owner": "tenant1"}).headers["X-Cache"] == "miss",
        5,
        "a fresh database read after recovery",
    )


def test_queued_writes_survive_sigkill(
    postgres: Postgres, node: FakeNode, forwarder: Forwarder, spawn: Callable[..., ApiProcess]
) -> None:
    first = spawn(forwarder.port, "mk_kill", node.url)
    wait_database(first, "up")
    forwarder.blackhole()
    wait_database(first, "down")
    writes = [("kill/0", "old"), ("kill/1", 1), ("kill/2", 2), ("kill/0", "new")]
    for key, value in writes:
        assert first.client.post("/api/v1/records", json={"key": key, "value": value}).status_code == 202
    assert first.health()["queue_depth"] == 4
    first.kill()

    second = spawn(forwarder.port, "mk_kill", node.url)  # same queue file; the database is still unreachable
    health = second.health()
    assert health["database"] == "down" and health["queue_depth"] == 4
    forwarder.restore()
    wait_for(lambda: second.health()["queue_depth"] == 0, 10, "the restarted API to drain its queue")
    with postgres.connect("mk_kill") as conn:
        rows = conn.execute("SELECT key, value FROM records ORDER BY key").fetchall()
    assert rows == [("kill/0", "new"), ("kill/1", 1), ("kill/2", 2)]


def test_weaknesses_fail_without_cache_and_queue(
    postgres: Postgres, node: FakeNode, forwarder: Forwarder, spawn: Callable[..., ApiProcess]
) -> None:
    api = spawn(forwarder.port, "mk_weak", node.url, ["no-read-cache", "no-write-queue", "leaky-memory"])
    wait_indexed(api, 3)
    for _ in range(2):
        resp = api.client.get(ORDERS, params={"owner": "tenant1"})
        assert resp.status_code == 200 and resp.headers["X-Cache"] == "miss"
    forwarder.blackhole()
    wait_database(api, "down")
    durations: list[float] = []
    resp = timed_get(api, f"{ORDERS}?owner=tenant1", durations)
    assert resp.status_code == 503 and resp.json() == {"error": "database unavailable"}
    resp = timed_post(api, "lost", 1, durations)
    assert resp.status_code == 503 and resp.json() == {"error": "database unavailable"}
    assert api.health()["queue_depth"] == 0
    assert max(durations) < 1.0, durations
    forwarder.restore()
    wait_database(api, "up")
    assert api.client.get("/api/v1/records/lost").status_code == 404


def test_queued_writes_wait_out_a_failing_database_instead_of_being_dropped(
    postgres: Postgres, node: FakeNode, forwarder: Forwarder, spawn: Callable[..., ApiProcess]
) -> None:
    """A reachable database that fails server-side (here a trigger raising SQLSTATE XX001 "data corrupted", as a
    corrupted page does) must not make the API move acknowledged queued writes aside: they wait for the repair."""
    api = spawn(forwarder.port, "mk_corrupt", node.url)
    wait_database(api, "up")
    forwarder.blackhole()
    wait_database(api, "down")
    for n in range(3):
        assert api.client.post("/api/v1/records", json={"key": f"c/{n}", "value": n}).status_code == 202
    with postgres.connect("mk_corrupt") as conn:
        conn.execute(
            "CREATE FUNCTION corrupt() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'invalid page in block 7' USING ERRCODE = 'XX001'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER corrupt BEFORE INSERT OR UPDATE ON records FOR EACH ROW EXECUTE FUNCTION corrupt()"
        )
        conn.commit()
    forwarder.restore()
    wait_database(api, "up")
    wait_for(lambda: queue_errors(api) >= 1, 15, "a failed drain attempt")  # the drain ran and failed
    assert api.health()["queue_depth"] == 3
    with postgres.connect("mk_corrupt") as conn:
        conn.execute("DROP TRIGGER corrupt ON records")
        conn.commit()
    wait_for(lambda: api.health()["queue_depth"] == 0, 15, "the queue to drain after the repair")
    with postgres.connect("mk_corrupt") as conn:
        rows = conn.execute("SELECT key, value FROM records ORDER BY key").fetchall()
    assert rows == [("c/0", 0), ("c/1", 1), ("c/2", 2)]


def queue_errors(api: ApiProcess) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("virtengine_errors_total{") and 'category="queue"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
