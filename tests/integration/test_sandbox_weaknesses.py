"""Each sandbox weakness changes the behaviour it names (one sandbox started with all of them)."""

from __future__ import annotations

import os
import signal
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import WEAK_OFFSET, blocked_port, client_for, running_sandbox, toxic, wait_for

pytestmark = pytest.mark.integration

RUN_DIR = Path("/tmp/drillbit-test-sandbox-weak")
ALL = ["no-restart", "no-read-cache", "no-write-queue", "no-circuit-breaker", "leaky-memory", "no-alert-rules"]


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(RUN_DIR, WEAK_OFFSET, ALL) as ep:
        yield ep


@pytest.fixture
def client(sandbox):
    with client_for(sandbox) as c:
        yield c


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_weaknesses_are_recorded(sandbox):
    assert sorted(sandbox["weaknesses"]) == sorted(ALL)


def test_no_restart_leaves_a_killed_node_dead(sandbox, client):
    sup = xmlrpc.client.ServerProxy(sandbox["supervisor"]).supervisor
    pid = sup.getProcessInfo("node-2")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sup.getProcessInfo("node-2")["statename"] != "RUNNING", 5, what="node-2 to exit")
    time.sleep(3)
    assert sup.getProcessInfo("node-2")["statename"] in {"EXITED", "FATAL", "STOPPED"}
    assert client.height() > 0  # the other validators still serve (through the proxy's other upstreams)


def test_no_alert_rules_means_a_dead_node_never_alerts(sandbox):
    # node-2 stays dead (previous test, no-restart); Prometheus sees it down but has no rule to fire
    wait_for(
        lambda: any(
            t["labels"]["job"] == "node-2" and t["health"] == "down"
            for t in httpx.get(f"{sandbox['prometheus']}/api/v1/targets", timeout=3).json()["data"]["activeTargets"]
        ),
        timeout=15,
        what="Prometheus to see node-2 down",
    )
    time.sleep(8)  # longer than NodeDown's `for:` plus delivery on the healthy sandbox (~5 s)
    assert httpx.get(f"{sandbox['prometheus']}/api/v1/rules", timeout=3).json()["data"]["groups"] == []
    assert httpx.get(f"{sandbox['alertmanager']}/api/v2/alerts", timeout=3).json() == []
    assert httpx.get(f"{sandbox['pager']}/api/v1/pages", timeout=3).json()["pages"] == []


def test_no_read_cache_fails_reads_while_the_database_is_blocked(sandbox, client):
    wait_for(lambda: client.api_get("/api/v1/market/orders").status_code == 200, 15, what="API reads")
    with blocked_port(sandbox["postgres"]["port"]):
        r = wait_for(
            lambda: (r := client.api_get("/api/v1/market/orders")).status_code == 503 and r,
            timeout=10,
            what="a 503 instead of a cached response",
        )
        assert r.headers.get("x-cache") != "stale"


def test_no_write_queue_loses_writes_while_the_database_is_blocked(sandbox, client):
    with blocked_port(sandbox["postgres"]["port"]):
        wait_for(lambda: client.api_get("/health").json()["database"] == "down", 10, what="API to see the DB down")
        r = client.api_post("/api/v1/records", {"key": "weak-write-1", "value": 1})
        assert r.status_code == 503
    wait_for(lambda: client.api_get("/health").json()["database"] == "up", 15, what="API to see the DB up")
    time.sleep(1.0)
    assert client.api_get("/api/v1/records/weak-write-1").status_code == 404


def test_no_circuit_breaker_never_fails_fast(sandbox, client):
    provider = sandbox["components"]["provider"]["endpoint"]
    orders = client.orders()
    order_id = orders[0]["id"] if orders else {"owner": "nobody", "dseq": "1", "gseq": 1, "oseq": 1}

    def evaluate(_):
        t0 = time.monotonic()
        try:
            r = httpx.post(f"{provider}/api/v1/bid-engine/evaluate", json={"order_id": order_id}, timeout=30)
            return r.status_code, time.monotonic() - t0
        except httpx.HTTPError:
            return 0, time.monotonic() - t0

    with toxic(sandbox, "provider-node-rest", "latency", latency=1500), ThreadPoolExecutor(20) as pool:
        results = list(pool.map(evaluate, range(40)))
    codes = [c for c, _ in results]
    fast_rejections = [d for c, d in results if c == 503 and d < 0.1]
    assert not fast_rejections, f"fast 503s without a circuit breaker: {codes}"
    assert min(d for _, d in results) >= 1.0, "every evaluation waited for the slow dependency"
    status = httpx.get(f"{provider}/api/v1/status", timeout=5).json()
    assert status["bid_engine"]["circuit"] == "disabled"


def test_leaky_memory_grows_node_memory(sandbox):
    sup = xmlrpc.client.ServerProxy(sandbox["supervisor"]).supervisor
    pid = sup.getProcessInfo("node-0")["pid"]
    before = rss_kib(pid)
    wait_for(lambda: rss_kib(pid) - before > 4 * 1024, timeout=15, what="node-0 RSS to grow by 4 MiB")
