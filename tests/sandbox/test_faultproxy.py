"""The fault proxy as a real subprocess, with real upstreams and real sockets: measured behaviour, not mocks."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests import support
from tests.support import stop_process

SANDBOX = pathlib.Path(__file__).resolve().parents[2] / "infra" / "sandbox"
sys.path.insert(0, str(SANDBOX))

HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------------------- helpers


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# polls here retry on nothing: an error in a condition fails the test at once
wait_for = functools.partial(support.wait_for, interval=0.02, errors=())


class Upstream(BaseHTTPRequestHandler):
    """Tiny HTTP/1.1 upstream: /ping, /bytes?n=N, /close (answers then closes the connection)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        body = b"pong"
        if path == "/bytes":
            body = b"x" * int(query.removeprefix("n="))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class UpstreamServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs under the concurrency test
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets are what some tests inject


class Client:
    """Control-API client plus helpers to talk through a proxy."""

    def __init__(self, api_port: int, ports: dict[str, int], upstream: str) -> None:
        self.api = httpx.Client(base_url=f"http://{HOST}:{api_port}", timeout=10)
        self.ports = ports
        self.upstream = upstream

    def add(self, proxy: str, **toxic: Any) -> dict[str, Any]:
        r = self.api.post(f"/proxies/{proxy}/toxics", json=toxic)
        assert r.status_code == 200, r.text
        return r.json()

    def remove(self, proxy: str, toxic: str) -> None:
        assert self.api.delete(f"/proxies/{proxy}/toxics/{toxic}").status_code == 204

    def http(self, proxy: str = "web", timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.ports[proxy], timeout=timeout)

    def get(self, proxy: str = "web", path: str = "/ping") -> bytes:
        conn = self.http(proxy)
        try:
            return round_trip(conn, path)[1]
        finally:
            conn.close()

    def sock(self, proxy: str = "web", timeout: float = 5) -> socket.socket:
        return socket.create_connection((HOST, self.ports[proxy]), timeout=timeout)

    def metric(self, name: str, proxy: str) -> float:
        for line in self.api.get("/metrics").text.splitlines():
            if line.startswith(f'{name}{{proxy="{proxy}"}}'):
                return float(line.split()[-1])
        raise AssertionError(f"metric {name} for {proxy} not found")


def round_trip(conn: http.client.HTTPConnection, path: str = "/ping") -> tuple[float, bytes]:
    start = time.monotonic()
    conn.request("GET", path)
    body = conn.getresponse().read()
    return time.monotonic() - start, body


def request_bytes(path: str = "/ping") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def read_response(sock: socket.socket, timeout: float = 5) -> bytes:
    """Read one /ping response (it may come in several chunks)."""
    data = b""
    sock.settimeout(timeout)
    while not data.endswith(b"pong"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Read until the peer closes: (data, "eof" | "reset"); AssertionError if still open after ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
    raise AssertionError(f"connection still open after {timeout}s ({len(data)} bytes read)")


# --------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = UpstreamServer((HOST, 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def blackhole() -> Iterator[str]:
    """A port whose SYNs are dropped (listen backlog 0, queue already full): connecting to it hangs."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind((HOST, 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield f"{HOST}:{listener.getsockname()[1]}"
    finally:
        filler.close()
        listener.close()


@pytest.fixture(scope="module")
def proxy(upstream: str, blackhole: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    api_port, web, failover, slowfail, closed = free_ports(5)
    ports = {"web": web, "failover": failover, "slowfail": slowfail}
    config = {
        "name": "faultproxy",
        "weaknesses": [],
        "listen": {"host": HOST, "port": api_port},
        "proxies": [
            {"name": "web", "listen": f"{HOST}:{web}", "upstreams": [upstream]},
            {"name": "failover", "listen": f"{HOST}:{failover}", "upstreams": [f"{HOST}:{closed}", upstream]},
            {"name": "slowfail", "listen": f"{HOST}:{slowfail}", "upstreams": [blackhole, upstream]},
        ],
    }
    tmp = tmp_path_factory.mktemp("faultproxy")
    (tmp / "faultproxy.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SANDBOX), os.environ.get("PYTHONPATH", "")])}
    with (tmp / "faultproxy.log").open("w") as logfile:
        process = subprocess.Popen(
            [sys.executable, "-m", "vesandbox.faultproxy", "--config", str(tmp / "faultproxy.json")],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client = Client(api_port, ports, upstream)
    try:

        def healthy() -> bool:
            assert process.poll() is None, (tmp / "faultproxy.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                return client.api.get("/health").status_code == 200
            return False

        wait_for(healthy, 20, "the fault proxy's /health")
        yield client
    finally:
        client.api.close()
        stop_process(process, timeout=10, kill_timeout=10)


@pytest.fixture(autouse=True)
def clean(proxy: Client) -> Iterator[None]:
    assert proxy.api.post("/reset").status_code == 204
    yield
    assert proxy.api.post("/reset").status_code == 204


# ------------------------------------------------------------------------------------------------------------ tests


def test_pass_through_and_api_shapes(proxy: Client) -> None:
    assert proxy.get() == b"pong"
    assert len(proxy.get(path="/bytes?n=300000")) == 300000
    assert proxy.api.get("/version").json()["version"]
    proxies = proxy.api.get("/proxies").json()
    assert set(proxies) == {"web", "failover", "slowfail"}
    web = proxies["web"]
    assert web["listen"] == f"{HOST}:{proxy.ports['web']}"
    assert web["upstream"] == proxy.upstream and web["upstreams"] == [proxy.upstream]
    assert web["enabled"] is True and web["toxics"] == []

    toxic = proxy.add("web", type="latency", attributes={"latency": 5})
    assert toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 5, "jitter": 0, "correlation": 0},
    }
    assert proxy.api.get("/proxies/web/toxics").json() == [toxic]
    assert proxy.api.get("/proxies/web").json()["toxics"] == [toxic]
    updated = proxy.api.post("/proxies/web/toxics/latency_downstream", json={"attributes": {"jitter": 2}}).json()
    assert updated["attributes"] == {"latency": 5, "jitter": 2, "correlation": 0}
    assert proxy.api.get("/proxies/web/toxics/latency_downstream").json() == updated
    assert proxy.metric("faultproxy_toxics_active", "web") == 1
    proxy.remove("web", "latency_downstream")
    assert proxy.api.get("/proxies/web/toxics/latency_downstream").status_code == 404
    assert proxy.metric("faultproxy_connections_total", "web") >= 2


def test_latency_on_open_keepalive_connection_and_removal(proxy: Client) -> None:
    conn = proxy.http()
    try:
        baseline = sorted(round_trip(conn)[0] for _ in range(5))
        assert baseline[2] < 0.1
        proxy.add("web", type="latency", attributes={"latency": 200})
        delayed = [round_trip(conn)[0] for _ in range(3)]  # the same, already-open connection
        assert all(0.2 <= rtt < 1.0 for rtt in delayed), delayed
        fresh = proxy.http()
        try:
            assert 0.2 <= round_trip(fresh)[0] < 1.0
        finally:
            fresh.close()
        proxy.remove("web", "latency_downstream")
        restored = sorted(round_trip(conn)[0] for _ in range(3))
        assert restored[1] < 0.1, restored
    finally:
        conn.close()


def test_latency_both_streams_add_up(proxy: Client) -> None:
    proxy.add("web", type="latency", attributes={"latency": 120})
    proxy.add("web", type="latency", stream="upstream", attributes={"latency": 120})
    conn = proxy.http()
    try:
        rtts = [round_trip(conn)[0] for _ in range(3)]
    finally:
        conn.close()
    assert all(0.24 <= rtt < 1.2 for rtt in rtts), rtts


def test_jitter_spreads_and_full_correlation_holds_it_constant(proxy: Client) -> None:
    proxy.add("web", type="latency", attributes={"latency": 100, "jitter": 60})
    conn = proxy.http()
    try:
        jittered = [round_trip(conn)[0] for _ in range(15)]
        assert min(jittered) >= 0.04, jittered
        assert max(jittered) - min(jittered) >= 0.03, jittered
        r = proxy.api.post("/proxies/web/toxics/latency_downstream", json={"attributes": {"correlation": 100}})
        assert r.status_code == 200, r.text
        correlated = [round_trip(conn)[0] for _ in range(10)]
    finally:
        conn.close()
    assert min(correlated) >= 0.04, correlated
    # the toxic holds the delay constant; a loaded machine adds its own noise on top, so compare the typical spread
    # (interquartile range) rather than max - min, which one scheduler hiccup decides
    q1, q3 = statistics.quantiles(correlated, n=4)[0], statistics.quantiles(correlated, n=4)[2]
    j1, j3 = statistics.quantiles(jittered, n=4)[0], statistics.quantiles(jittered, n=4)[2]
    assert q3 - q1 < 0.02, correlated
    assert q3 - q1 < j3 - j1 or j3 - j1 < 0.02, (correlated, jittered)


def test_toxicity_zero_never_applies(proxy: Client) -> None:
    proxy.add("web", type="latency", toxicity=0.0, attributes={"latency": 1000})
    start = time.monotonic()
    for _ in range(5):
        assert proxy.get() == b"pong"
    assert time.monotonic() - start < 1.0


def test_bandwidth_limits_throughput(proxy: Client) -> None:
    proxy.add("web", type="bandwidth", attributes={"rate": 50})  # 50 KB/s
    start = time.monotonic()
    assert len(proxy.get(path="/bytes?n=50000")) == 50000
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 3.0, elapsed
    proxy.remove("web", "bandwidth_downstream")
    start = time.monotonic()
    assert len(proxy.get(path="/bytes?n=50000")) == 50000
    assert time.monotonic() - start < 0.5


def test_timeout_zero_hangs_until_removed_then_closes(proxy: Client) -> None:
    sock = proxy.sock()
    try:
        sock.sendall(request_bytes())
        assert read_response(sock).startswith(b"HTTP/1.1 200")  # keep-alive connection, working
        proxy.add("web", type="timeout", attributes={"timeout": 0})
        sock.sendall(request_bytes())
        sock.settimeout(0.7)
        with pytest.raises(TimeoutError):
            sock.recv(65536)  # hangs: the response is held
        proxy.remove("web", "timeout_downstream")
        data, how = read_until_closed(sock, 3)
        assert data == b"" and how in ("eof", "reset")
    finally:
        sock.close()
    assert proxy.get() == b"pong"  # new connections work again


def test_timeout_closes_after_the_delay(proxy: Client) -> None:
    proxy.add("web", type="timeout", attributes={"timeout": 300})
    sock = proxy.sock()
    try:
        start = time.monotonic()
        sock.sendall(request_bytes())
        data, _ = read_until_closed(sock, 3)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert data == b""
    assert 0.3 <= elapsed < 1.5, elapsed


def test_reset_peer_resets_the_connection(proxy: Client) -> None:
    proxy.add("web", type="reset_peer", attributes={"timeout": 0})
    sock = proxy.sock()
    try:
        sock.sendall(request_bytes())
        data, how = read_until_closed(sock, 3)
    finally:
        sock.close()
    assert (data, how) == (b"", "reset")
    proxy.api.post("/proxies/web/toxics/reset_peer_downstream", json={"attributes": {"timeout": 300}})
    sock = proxy.sock()
    try:
        start = time.monotonic()
        sock.sendall(request_bytes())
        data, how = read_until_closed(sock, 3)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert (data, how) == (b"", "reset")
    assert elapsed >= 0.3


def test_limit_data_closes_after_n_bytes(proxy: Client) -> None:
    proxy.add("web", type="limit_data", attributes={"bytes": 100})
    sock = proxy.sock()
    try:
        sock.sendall(request_bytes("/bytes?n=10000"))
        data, how = read_until_closed(sock, 3)
    finally:
        sock.close()
    assert len(data) == 100 and data.startswith(b"HTTP/1.1 200") and how == "eof"


def test_slow_close_delays_only_the_close(proxy: Client) -> None:
    proxy.add("web", type="slow_close", attributes={"delay": 400})
    sock = proxy.sock()
    try:
        start = time.monotonic()
        sock.sendall(request_bytes("/close"))
        first = sock.recv(65536)
        got_data = time.monotonic() - start
        rest, how = read_until_closed(sock, 3)
        closed = time.monotonic() - start
    finally:
        sock.close()
    assert (first + rest).endswith(b"pong") and how == "eof"
    assert got_data < 0.3 and closed >= 0.4, (got_data, closed)


def test_disabled_proxy_refuses_and_closes_open_connections(proxy: Client) -> None:
    sock = proxy.sock()
    try:
        sock.sendall(request_bytes())
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        r = proxy.api.post("/proxies/web", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False
        assert read_until_closed(sock, 3)[0] == b""
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        proxy.sock().close()
    assert proxy.metric("faultproxy_proxy_enabled", "web") == 0
    assert proxy.api.post("/proxies/web", json={"enabled": True}).json()["enabled"] is True
    assert proxy.get() == b"pong"


def test_failover_to_the_second_upstream(proxy: Client) -> None:
    for _ in range(5):
        assert proxy.get("failover") == b"pong"
    state = proxy.api.get("/proxies/failover").json()
    assert state["upstream"] != proxy.upstream and state["active_upstream"] == proxy.upstream
    assert proxy.metric("faultproxy_upstream_connect_failures_total", "failover") >= 1
    # a client saving the whole proxy back (as Toxiproxy's Go client does) keeps the upstream list
    saved = proxy.api.post("/proxies/failover", json={**state, "enabled": True}).json()
    assert saved["upstreams"] == state["upstreams"] and saved["active_upstream"] == proxy.upstream


def test_failover_remembers_the_upstream_that_worked(proxy: Client) -> None:
    start = time.monotonic()
    assert proxy.get("slowfail") == b"pong"  # the first upstream hangs: one connect timeout
    assert time.monotonic() - start >= 0.9
    for _ in range(5):
        start = time.monotonic()
        assert proxy.get("slowfail") == b"pong"
        assert time.monotonic() - start < 0.5  # no second of delay per connection


def test_bad_requests_are_rejected_with_a_message(proxy: Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "latncy", "attributes": {"latency": 1}}, "invalid toxic type"),
        ({"type": "latency", "attributes": {"latancy": 1}}, "unknown attribute 'latancy'"),
        ({"type": "latency", "attributes": {"latency": -5}}, "'latency'"),
        ({"type": "latency", "attributes": {"latency": "fast"}}, "must be a number"),
        ({"type": "latency", "attributes": {"correlation": 150}}, "'correlation'"),
        ({"type": "latency", "toxicity": 1.5}, "toxicity"),
        ({"type": "latency", "stream": "sideways"}, "stream"),
    ]
    for body, message in cases:
        r = proxy.api.post("/proxies/web/toxics", json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["error"], (body, r.json())
    bad_json = proxy.api.post("/proxies/web/toxics", content=b"{nope")
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
    assert proxy.api.post("/proxies/nope/toxics", json={"type": "latency"}).status_code == 404
    assert proxy.api.get("/proxies/nope").status_code == 404
    proxy.add("web", type="latency", attributes={"latency": 1})
    duplicate = proxy.api.post("/proxies/web/toxics", json={"type": "latency"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["error"]
    assert proxy.api.get("/proxies/web/toxics").json()[0]["attributes"]["latency"] == 1


def test_reset_clears_everything(proxy: Client) -> None:
    proxy.add("web", type="latency", attributes={"latency": 500})
    proxy.add("failover", type="timeout", stream="upstream", attributes={"timeout": 0})
    proxy.api.post("/proxies/slowfail", json={"enabled": False})
    assert proxy.api.post("/reset").status_code == 204
    for state in proxy.api.get("/proxies").json().values():
        assert state["enabled"] is True and state["toxics"] == []
    start = time.monotonic()
    assert proxy.get() == b"pong" and proxy.get("failover") == b"pong"
    assert time.monotonic() - start < 0.5


def test_proxy_created_at_runtime(proxy: Client) -> None:
    (port,) = free_ports(1)
    body = {"name": "extra", "listen": f"{HOST}:{port}", "upstream": proxy.upstream}
    r = proxy.api.post("/proxies", json=body)
    assert r.status_code == 201, r.text
    try:
        proxy.ports["extra"] = port
        assert proxy.get("extra") == b"pong"
        assert proxy.api.post("/proxies", json=body).status_code == 409
    finally:
        assert proxy.api.delete("/proxies/extra").status_code == 204
    with pytest.raises(ConnectionRefusedError):
        proxy.sock("extra").close()


def test_many_connections_then_all_cleaned_up(proxy: Client) -> None:
    def fetch(_: int) -> bytes:
        return proxy.get()

    before = proxy.metric("faultproxy_connections_total", "web")
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(fetch, range(400)))
    assert bodies == [b"pong"] * 400
    assert time.monotonic() - start < 20
    assert proxy.metric("faultproxy_connections_total", "web") - before == 400
    wait_for(lambda: proxy.metric("faultproxy_connections_active", "web") == 0, 5, "connections to close")
    assert proxy.api.get("/proxies/web").json()["connections"] == 0
