"""The sandbox, healthy: real etcd validators, nodes, PostgreSQL, API, provider and fault proxy on loopback."""

from __future__ import annotations

import os
import signal
import time
import xmlrpc.client
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import blocked_port, client_for, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sandbox):
    with client_for(sandbox) as c:
        yield c


def supervisor(ep):
    return xmlrpc.client.ServerProxy(ep["supervisor"])


def test_endpoints_file_describes_every_component(sandbox):
    names = set(sandbox["components"])
    assert {"etcd-0", "etcd-1", "etcd-2", "node-0", "node-1", "node-2", "postgres", "api", "provider"} <= names
    assert sandbox["components"]["node-1"]["labels"]["app.kubernetes.io/name"] == "virtengine-node"
    infos = supervisor(sandbox).supervisor.getAllProcessInfo()
    assert all(i["statename"] == "RUNNING" for i in infos), infos
    # each validator runs under its own uid (needed for symmetric partitions)
    uids = {
        int(Path(f"/proc/{i['pid']}/status").read_text().split("Uid:")[1].split()[0])
        for i in infos
        if "etcd" in i["name"]
    }
    assert len(uids) == 3 and 0 not in uids


def test_tx_is_confirmed(client):
    h0 = client.height()
    result = client.submit(
        "provider/create", "provider-x", {"owner": "provider-x", "host_uri": "http://x", "attributes": []}
    )
    assert result.code == 0 and result.height > h0
    assert client.tx(result.hash).height == result.height


def test_bad_tx_rejected_at_checktx(client):
    sent = client.broadcast(b'{"type":"nope"}')
    assert sent.code != 0 and sent.log


def test_deployment_lifecycle_ends_in_settlement(client):
    owner, dseq = "tenant-lifecycle", int(time.time())
    client.create_deployment(owner, dseq)
    orders = client.orders(owner=owner, dseq=dseq)
    assert [o["state"] for o in orders] == ["open"]
    # the provider daemon bids on its own
    bids = wait_for(lambda: client.bids(owner=owner, dseq=dseq), timeout=15, what="a bid from the provider")
    assert bids[0]["id"]["provider"] == "provider1"
    client.create_lease(bids[0]["id"])
    lease_id = bids[0]["id"]
    status = wait_for(
        lambda: (s := client.lease_status(lease_id)) and s["state"] == "running" and s,
        timeout=20,
        what="the provider to run the workload",
    )
    assert status["healthy"] is True
    time.sleep(2.5)  # let the lease accrue a couple of blocks of payment
    client.close_deployment(owner, dseq)
    settlements = client.settlements(orders[0]["id"])
    assert (
        len(settlements) == 1
        and int(
            settlements[0]["amount"]["amount"]
            if isinstance(settlements[0]["amount"], dict)
            else settlements[0]["amount"]
        )
        > 0
    )
    accounts = client.escrow_accounts(owner=owner)
    assert [a["state"]["state"] for a in accounts] == ["closed"]
    payments = client.escrow_payments(xid=f"{owner}/{dseq}")
    assert [p["state"]["state"] for p in payments] == ["closed"]
    leases = client.leases(owner=owner, dseq=dseq)
    assert [lease["lease"]["state"] for lease in leases] == ["closed"]


def test_api_serves_cached_reads_and_queues_writes_while_its_database_is_blocked(client, sandbox):
    wait_for(lambda: client.api_get("/api/v1/market/orders").status_code == 200, 15, what="API reads")
    first = client.api_get("/api/v1/market/orders", state="open")
    assert first.status_code == 200
    with blocked_port(sandbox["postgres"]["port"]):
        t0 = time.monotonic()
        stale = wait_for(
            lambda: (
                (r := client.api_get("/api/v1/market/orders", state="open")).headers.get("x-cache") == "stale" and r
            ),
            timeout=10,
            what="a stale cached response",
        )
        assert stale.json()["source"] == "cache"
        write = client.api_post("/api/v1/records", {"key": "sandbox-test-1", "value": {"n": 1}})
        assert write.status_code == 202 and write.json()["status"] == "queued"
        assert time.monotonic() - t0 < 15
    applied = wait_for(
        lambda: (r := client.api_get("/api/v1/records/sandbox-test-1")).status_code == 200 and r.json(),
        timeout=20,
        what="the queued write to be applied",
    )
    assert applied["value"] == {"n": 1}


def test_killed_node_is_restarted_and_catches_up(client, sandbox):
    sup = supervisor(sandbox).supervisor
    old_pid = sup.getProcessInfo("node-1")["pid"]
    os.kill(old_pid, signal.SIGKILL)
    new = wait_for(
        lambda: (i := sup.getProcessInfo("node-1"))["statename"] == "RUNNING" and i["pid"] != old_pid and i,
        timeout=15,
        what="node-1 restarted",
    )
    assert new["pid"] != old_pid
    node1 = sandbox["nodes"][1]["rpc"]

    def caught_up():
        s1 = httpx.get(f"{node1}/status", timeout=2).json()["result"]["sync_info"]
        s0 = client.status()["sync_info"]
        h = min(int(s1["latest_block_height"]), int(s0["latest_block_height"]))
        if s1["catching_up"] or h < 2:
            return False
        b1 = httpx.get(f"{node1}/block", params={"height": h}, timeout=2).json()["result"]["block_id"]["hash"]
        b0 = client.block(h)["block_id"]["hash"]
        return b0 == b1

    wait_for(caught_up, timeout=30, what="node-1 to catch up with the same block hashes")


def test_no_block_without_a_validator_majority(client, sandbox):
    sup = supervisor(sandbox).supervisor
    node0 = sandbox["nodes"][0]["rpc"]
    for name in ("etcd-1", "etcd-2"):
        sup.stopProcess(name)
    try:
        time.sleep(2.0)  # let in-flight blocks land
        h_stopped = int(httpx.get(f"{node0}/status", timeout=3).json()["result"]["sync_info"]["latest_block_height"])
        time.sleep(4.0)
        h_later = int(httpx.get(f"{node0}/status", timeout=3).json()["result"]["sync_info"]["latest_block_height"])
        assert h_later == h_stopped, "blocks were produced without a majority"
        sent = client.broadcast(
            client.tx_builder.build(
                "provider/create", "p-nomaj", {"owner": "p-nomaj", "host_uri": "h", "attributes": []}
            )
        )
        assert sent.code == 0
        time.sleep(2.0)
        assert client.tx(sent.hash) is None, "a tx was confirmed without a majority"
    finally:
        for name in ("etcd-1", "etcd-2"):
            sup.startProcess(name)
    wait_for(lambda: client.height() > h_stopped + 1, timeout=20, what="blocks to resume")
    assert client.wait_tx(sent.hash, timeout=20).code == 0


def test_stopping_a_node_fires_node_down_and_pages_on_call(sandbox):
    sup = supervisor(sandbox).supervisor
    stopped_at = time.time()
    sup.stopProcess("node-2")
    try:
        alert = wait_for(
            lambda: next(
                (
                    a
                    for a in httpx.get(f"{sandbox['alertmanager']}/api/v2/alerts", timeout=3).json()
                    if a["labels"]["alertname"] == "NodeDown" and a["labels"].get("component") == "node-2"
                ),
                None,
            ),
            timeout=30,
            what="NodeDown for node-2 in Alertmanager",
        )
        page = wait_for(
            lambda: next(
                (
                    p
                    for p in httpx.get(f"{sandbox['pager']}/api/v1/pages", params={"alertname": "NodeDown"}).json()[
                        "pages"
                    ]
                    if p["component"] == "node-2" and p["status"] == "firing"
                ),
                None,
            ),
            timeout=15,
            what="a NodeDown page for node-2",
        )
    finally:
        sup.startProcess("node-2")
    assert alert["startsAt"] and page["received_at"]
    from datetime import datetime

    received = datetime.fromisoformat(page["received_at"].replace("Z", "+00:00")).timestamp()
    assert stopped_at < received < stopped_at + 45
    acked = httpx.post(f"{sandbox['pager']}/api/v1/pages/{page['id']}/ack", json={"by": "integration-test"}).json()
    assert acked["acknowledged_by"] == "integration-test"


def test_backups_land_in_the_bucket_and_the_replica_streams(sandbox):
    import boto3

    s3cfg = sandbox["storage"]["s3"]
    s3 = boto3.client(
        "s3",
        endpoint_url=s3cfg["url"],
        aws_access_key_id=s3cfg["access_key"],
        aws_secret_access_key=s3cfg["secret_key"],
        region_name=s3cfg.get("region", "us-east-1"),
    )
    backup = sandbox["storage"]["backup"]["url"]
    httpx.post(f"{backup}/api/v1/backups/base", timeout=120)  # do not wait a whole interval for the first one

    def listed(prefix: str) -> list[str]:
        r = s3.list_objects_v2(Bucket=s3cfg["buckets"]["backups"], Prefix=prefix)
        return [o["Key"] for o in r.get("Contents", [])]

    assert wait_for(lambda: listed("base/"), 120, what="a base backup in the bucket")
    assert wait_for(lambda: listed("wal/"), 60, what="archived WAL in the bucket")
    assert wait_for(lambda: listed("etcd/"), 90, what="an etcd snapshot in the bucket")
    metrics = httpx.get(sandbox["storage"]["backup"]["metrics"], timeout=5).text
    lag = [line for line in metrics.splitlines() if line.startswith("virtengine_replication_lag_seconds")]
    assert lag and float(lag[0].split()[-1]) < 5.0
