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
def weak_sandbox():
    with running_sandbox(RUN_DIR, WEAK_OFFSET, ALL) as ep:
        yield ep


@pytest.fixture
def client(weak_sandbox):
    with client_for(weak_sandbox) as c:
        yield c


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_weaknesses_are_recorded(weak_sandbox):
    assert sorted(weak_sandbox["weaknesses"]) == sorted(ALL)


@pytest.fixture
def weak_env(weak_sandbox, prefect_server, monkeypatch):
    """Flows resolve the sandbox from DRILLBIT_SANDBOX_DIR: point them at the weakened one."""
    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(RUN_DIR))
    return weak_sandbox


def test_pod_kill_catches_no_restart_and_no_alert_rules(weak_env, tmp_path):
    from flows.chaos_pod_kill import PodKillParams, chaos_pod_kill

    # a selector (from config, as users write them) that picks node-2, so later tests know which node is gone
    cfg = tmp_path / "drillbit.yaml"
    cfg.write_text(
        "environments:\n  sandbox:\n    platform: sandbox\n    kubernetes:\n      selectors:\n"
        "        node: {app.kubernetes.io/name: virtengine-node, app.kubernetes.io/instance: node-2}\n"
    )
    params = PodKillParams(duration=12.0, baseline=3.0, recovery=5.0, config_path=str(cfg))
    record = chaos_pod_kill(params=params)
    v = {x["criterion"]: x for x in record["verdicts"]}
    assert record["outcome"] == "fail"
    back = next(k for k in v if "back within" in k)
    assert v[back]["outcome"] == "fail"  # no-restart: the killed node never serves again
    assert v["alerts fired"]["outcome"] == "fail"  # no-alert-rules: nothing fires
    assert v["on-call paged"]["outcome"] == "fail"
    assert v["consensus continues"]["outcome"] == "pass"  # two validators of three keep the chain going


def test_db_failure_catches_no_read_cache_and_no_write_queue(weak_env):
    from flows.chaos_db_failure import DbFailureParams, chaos_db_failure

    record = chaos_db_failure(params=DbFailureParams(duration=10.0, baseline=3.0, recovery=5.0, verify_timeout=10.0))
    v = {x["criterion"]: x for x in record["verdicts"]}
    assert record["outcome"] == "fail"
    assert v["cached responses"]["outcome"] == "fail"  # no-read-cache
    assert v["writes queued, none lost"]["outcome"] == "fail"  # no-write-queue


def test_no_restart_leaves_a_killed_node_dead(weak_sandbox, client):
    sup = xmlrpc.client.ServerProxy(weak_sandbox["supervisor"]).supervisor
    info = sup.getProcessInfo("node-2")
    if info["statename"] == "RUNNING" and info["pid"] > 0:  # the pod-kill test above may already have killed it
        os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: sup.getProcessInfo("node-2")["statename"] != "RUNNING", 5, what="node-2 to exit")
    time.sleep(3)
    assert sup.getProcessInfo("node-2")["statename"] in {"EXITED", "FATAL", "STOPPED"}
    assert client.height() > 0  # the other validators still serve (through the proxy's other upstreams)


def test_no_alert_rules_means_a_dead_node_never_alerts(weak_sandbox):
    # node-2 stays dead (previous test, no-restart); Prometheus sees it down but has no rule to fire
    wait_for(
        lambda: any(
            t["labels"]["job"] == "node-2" and t["health"] == "down"
            for t in httpx.get(f"{weak_sandbox['prometheus']}/api/v1/targets", timeout=3).json()["data"][
                "activeTargets"
            ]
        ),
        timeout=15,
        what="Prometheus to see node-2 down",
    )
    time.sleep(8)  # longer than NodeDown's `for:` plus delivery on the healthy sandbox (~5 s)
    assert httpx.get(f"{weak_sandbox['prometheus']}/api/v1/rules", timeout=3).json()["data"]["groups"] == []
    assert httpx.get(f"{weak_sandbox['alertmanager']}/api/v2/alerts", timeout=3).json() == []
    assert httpx.get(f"{weak_sandbox['pager']}/api/v1/pages", timeout=3).json()["pages"] == []


def test_no_read_cache_fails_reads_while_the_database_is_blocked(weak_sandbox, client):
    wait_for(lambda: client.api_get("/api/v1/market/orders").status_code == 200, 15, what="API reads")
    with blocked_port(weak_sandbox["postgres"]["port"]):
        r = wait_for(
            lambda: (r := client.api_get("/api/v1/market/orders")).status_code == 503 and r,
            timeout=10,
            what="a 503 instead of a cached response",
        )
        assert r.headers.get("x-cache") != "stale"


def test_no_write_queue_loses_writes_while_the_database_is_blocked(weak_sandbox, client):
    with blocked_port(weak_sandbox["postgres"]["port"]):
        wait_for(lambda: client.api_get("/health").json()["database"] == "down", 10, what="API to see the DB down")
        r = client.api_post("/api/v1/records", {"key": "weak-write-1", "value": 1})
        assert r.status_code == 503
    wait_for(lambda: client.api_get("/health").json()["database"] == "up", 15, what="API to see the DB up")
    time.sleep(1.0)
    assert client.api_get("/api/v1/records/weak-write-1").status_code == 404


def test_no_circuit_breaker_never_fails_fast(weak_sandbox, client):
    provider = weak_sandbox["components"]["provider"]["endpoint"]
    orders = client.orders()
    order_id = orders[0]["id"] if orders else {"owner": "nobody", "dseq": "1", "gseq": 1, "oseq": 1}

    def evaluate(_):
        t0 = time.monotonic()
        try:
            r = httpx.post(f"{provider}/api/v1/bid-engine/evaluate", json={"order_id": order_id}, timeout=30)
            return r.status_code, time.monotonic() - t0
        except httpx.HTTPError:
            return 0, time.monotonic() - t0

    with toxic(weak_sandbox, "provider-node-rest", "latency", latency=1500), ThreadPoolExecutor(20) as pool:
        results = list(pool.map(evaluate, range(40)))
    codes = [c for c, _ in results]
    fast_rejections = [d for c, d in results if c == 503 and d < 0.1]
    assert not fast_rejections, f"fast 503s without a circuit breaker: {codes}"
    assert min(d for _, d in results) >= 1.0, "every evaluation waited for the slow dependency"
    status = httpx.get(f"{provider}/api/v1/status", timeout=5).json()
    assert status["bid_engine"]["circuit"] == "disabled"


def test_leaky_memory_grows_node_memory(weak_sandbox):
    sup = xmlrpc.client.ServerProxy(weak_sandbox["supervisor"]).supervisor
    pid = sup.getProcessInfo("node-0")["pid"]
    before = rss_kib(pid)
    wait_for(lambda: rss_kib(pid) - before > 4 * 1024, timeout=15, what="node-0 RSS to grow by 4 MiB")
