"""A real 3-member etcd cluster and 3 validator nodes (vesandbox.node): blocks, txs, restarts, quorum loss.

etcd members listen on 127.0.0.2/3/4 and the nodes on 127.0.0.1, all ports offset by +7000 from the sandbox's so a
developer's sandbox keeps running. Every process is started here and killed by PID in the fixture's finalizer.
"""

import base64
import functools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.support import port_free

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "infra" / "sandbox"
OFFSET = 7000
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
N = 3
CHAIN_ID = "virtengine-sandbox"
NAMES = [f"node-{i}" for i in range(N)]
MARKET = "/virtengine/market/v1beta5"

# polls here retry on these errors only (a node or etcd member not answering yet); any other fails at once
wait_for = functools.partial(support.wait_for, errors=(httpx.HTTPError, KeyError, ValueError))


def etcd_ip(i: int) -> str:
    return f"127.0.0.{2 + i}"


def rpc_port(i: int) -> int:
    return 26657 + OFFSET + 10 * i


def rest_port(i: int) -> int:
    return 1317 + OFFSET + 10 * i


class Cluster:
    """The processes of one test cluster; ``close`` kills them all by PID."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.etcds: dict[int, subprocess.Popen] = {}
        self.nodes: dict[int, subprocess.Popen] = {}
        self.client = httpx.Client(timeout=3.0)

    # ---------------------------------------------------------------- processes

    def start_etcd(self, i: int) -> None:
        peers = ",".join(f"etcd-{j}=http://{etcd_ip(j)}:{2380 + OFFSET}" for j in range(N))
        cmd = [
            ETCD,
            f"--name=etcd-{i}",
            f"--data-dir={self.tmp / f'etcd-{i}'}",
            f"--listen-client-urls=http://{etcd_ip(i)}:{2379 + OFFSET}",
            f"--advertise-client-urls=http://{etcd_ip(i)}:{2379 + OFFSET}",
            f"--listen-peer-urls=http://{etcd_ip(i)}:{2380 + OFFSET}",
            f"--initial-advertise-peer-urls=http://{etcd_ip(i)}:{2380 + OFFSET}",
            f"--initial-cluster={peers}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=vesandbox-node-test",
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            "--pre-vote=true",
            "--logger=zap",
            "--log-level=warn",
        ]
        log = open(self.tmp / f"etcd-{i}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.etcds[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start_node(self, i: int) -> None:
        config = {
            "name": NAMES[i],
            "index": i,
            "validators": NAMES,
            "chain_id": CHAIN_ID,
            "rpc": {"host": "127.0.0.1", "port": rpc_port(i)},
            "rest": {"host": "127.0.0.1", "port": rest_port(i)},
            "etcd": f"http://{etcd_ip(i)}:{2379 + OFFSET}",
            "block_time": 1.0,
            "propose_timeout": 1.0,
            "genesis": {"providers": [{"owner": "provider1", "host_uri": "http://127.0.0.1:25443", "attributes": []}]},
            "weaknesses": [],
        }
        path = self.tmp / f"node-{i}.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": str(SANDBOX), "PYTHONUNBUFFERED": "1"}
        log = open(self.tmp / f"node-{i}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.nodes[i] = subprocess.Popen(
            [sys.executable, "-m", "vesandbox.node", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def kill_node(self, i: int) -> None:
        proc = self.nodes.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def signal_etcd(self, i: int, sig: signal.Signals) -> None:
        self.etcds[i].send_signal(sig)

    def close(self) -> None:
        """SIGTERM the nodes, SIGKILL the etcd members (throwaway data; a graceful stop takes seconds)."""
        for proc in self.nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.etcds.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in [*self.nodes.values(), *self.etcds.values()]:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.client.close()

    def logs(self) -> str:
        out = []
        for path in sorted(self.tmp.glob("*.log")):
            out.append(f"----- {path.name} (tail)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(out)

    # ---------------------------------------------------------------- clients

    def rpc(self, i: int, method: str, timeout: float = 3.0, **params: Any) -> dict[str, Any]:
        resp = self.client.get(f"http://127.0.0.1:{rpc_port(i)}/{method}", params=params, timeout=timeout)
        return resp.json()

    def rest(self, i: int, path: str, **params: Any) -> dict[str, Any]:
        resp = self.client.get(f"http://127.0.0.1:{rest_port(i)}{path}", params=params)
        resp.raise_for_status()
        return resp.json()

    def height(self, i: int, timeout: float = 3.0) -> int:
        return int(self.rpc(i, "status", timeout)["result"]["sync_info"]["latest_block_height"])

    def block_hash(self, i: int, height: int) -> str:
        return self.rpc(i, "block", height=height)["result"]["block_id"]["hash"]

    def broadcast(self, i: int, tx: dict[str, Any]) -> str:
        raw = json.dumps(tx).encode()
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "broadcast_tx_sync",
            "params": {"tx": base64.b64encode(raw).decode()},
        }
        result = self.client.post(f"http://127.0.0.1:{rpc_port(i)}/", json=body).json()["result"]
        assert result["code"] == 0, result
        return result["hash"]

    def find_tx(self, i: int, h: str) -> dict[str, Any] | None:
        return self.rpc(i, "tx", hash=f"0x{h}").get("result")

    def confirm(self, i: int, h: str, timeout: float = 6.0) -> dict[str, Any]:
        found = wait_for(lambda: self.find_tx(i, h), timeout, f"tx {h} on node-{i}")
        assert found["tx_result"]["code"] == 0, found
        return found


def make_tx(kind: str, signer: str, msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "signer": signer, "nonce": uuid.uuid4().hex, "msg": msg}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not os.path.exists(ETCD):
        pytest.skip("etcd is not installed")
    for i in range(N):
        for host, port in ((etcd_ip(i), 2379 + OFFSET), (etcd_ip(i), 2380 + OFFSET), ("127.0.0.1", rpc_port(i))):
            if not port_free(host, port):
                pytest.skip(f"{host}:{port} is in use")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        for i in range(N):
            c.start_etcd(i)
        for i in range(N):
            url = f"http://{etcd_ip(i)}:{2379 + OFFSET}/health"
            wait_for(lambda url=url: c.client.get(url).json().get("health") == "true", 20, f"etcd-{i} healthy")
        for i in range(N):
            c.start_node(i)
        wait_for(lambda: all(c.height(i) >= 2 for i in range(N)), 20, "all nodes at height >= 2")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def test_blocks_every_second_and_nodes_agree(cluster: Cluster) -> None:
    start = cluster.height(0)
    wait_for(lambda: min(cluster.height(i) for i in range(N)) >= start + 5, 12, "5 more blocks")
    top = min(cluster.height(i) for i in range(N))
    times = [cluster.rpc(0, "block", height=h)["result"]["block"]["header"]["time"] for h in (start, top)]
    t0, t1 = (time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + t[19:-1]) for t in times)
    interval = (t1 - t0) / (top - start)
    assert 0.8 <= interval <= 1.5, f"mean block interval {interval:.2f}s"
    for h in range(1, top + 1):
        hashes = {cluster.block_hash(i, h) for i in range(N)}
        assert len(hashes) == 1, f"nodes disagree at height {h}: {hashes}"
    headers = [cluster.rpc(0, "block", height=h)["result"]["block"]["header"] for h in range(2, top + 1)]
    assert len({h["proposer_address"] for h in headers}) == N, "proposers rotate over the validators"
    status = cluster.rpc(1, "status")["result"]
    assert status["node_info"]["network"] == CHAIN_ID and status["sync_info"]["catching_up"] is False
    assert cluster.rpc(0, "net_info")["result"]["n_peers"] == "2"
    assert cluster.rest(2, "/cosmos/base/tendermint/v1beta1/syncing") == {"syncing": False}
    metrics = cluster.client.get(f"http://127.0.0.1:{rpc_port(0)}/metrics").text
    assert "tendermint_consensus_height" in metrics and "tendermint_p2p_peers 2.0" in metrics


def test_broadcast_tx_is_confirmed(cluster: Cluster) -> None:
    tx = make_tx("provider/create", "provider9", {"owner": "provider9", "host_uri": "http://p9", "attributes": []})
    raw = json.dumps(tx).encode()
    result = cluster.rpc(1, "broadcast_tx_sync", tx="0x" + raw.hex())["result"]
    assert result["code"] == 0, result
    sent = time.monotonic()
    found = cluster.confirm(2, result["hash"], timeout=5)
    assert time.monotonic() - sent < 5
    assert found["tx_result"]["events"][0]["type"] == "provider"
    assert base64.b64decode(found["tx"]) == raw

    def owners() -> list[str]:
        providers = cluster.rest(0, "/virtengine/provider/v1beta4/providers", **{"pagination.limit": 1000})
        return [p["owner"] for p in providers["providers"]]

    wait_for(lambda: "provider9" in owners(), 3, "provider9 registered on node-0")
    bad = cluster.rpc(0, "broadcast_tx_sync", tx='"{\\"type\\": \\"nope\\"}"')["result"]
    assert bad["code"] != 0 and bad["log"]
    missing = cluster.rpc(0, "tx", hash="0x" + "AB" * 32)
    assert missing["error"]["data"] == f"tx ({'AB' * 32}) not found"


def test_deployment_lifecycle_ends_with_a_settlement(cluster: Cluster) -> None:
    owner, dseq = "tenant1", int(time.time())
    group = {
        "name": "web",
        "resources": {"cpu": 500, "memory": 2**29, "storage": 2**30},
        "count": 1,
        "price": {"denom": "uve", "amount": "100"},
    }
    create = {"owner": owner, "dseq": dseq, "groups": [group], "deposit": {"denom": "uve", "amount": "1000000"}}
    cluster.confirm(0, cluster.broadcast(0, make_tx("deployment/create", owner, create)))
    query = {"filters.owner": owner, "filters.dseq": dseq, "filters.state": "open"}
    orders = wait_for(lambda: cluster.rest(1, f"{MARKET}/orders/list", **query)["orders"], 3, "open order on node-1")
    [order] = orders
    order_id = order["id"]
    bid_msg = {"provider": "provider1", "order_id": order_id, "price": {"denom": "uve", "amount": "40"}}
    cluster.confirm(1, cluster.broadcast(1, make_tx("market/bid/create", "provider1", bid_msg)))
    bid_id = {**order_id, "provider": "provider1"}
    lease = cluster.confirm(2, cluster.broadcast(2, make_tx("market/lease/create", owner, {"bid_id": bid_id})))
    lease_height = int(lease["height"])
    wait_for(lambda: cluster.height(0) >= lease_height + 2, 5, "two more blocks")
    leases = cluster.rest(0, f"{MARKET}/leases/list", **{"filters.owner": owner, "filters.dseq": dseq})
    [item] = leases["leases"]
    assert item["lease"]["state"] == "active" and item["escrow_payment"]["state"]["state"] == "open"
    closed = cluster.confirm(
        0, cluster.broadcast(0, make_tx("deployment/close", owner, {"owner": owner, "dseq": dseq}))
    )
    close_height = int(closed["height"])
    path = f"/virtengine/settlement/v1/settlements/by-order/{owner}/{dseq}/1/1"
    [record] = wait_for(lambda: cluster.rest(2, path)["settlements"], 3, "settlement on node-2")
    assert record["amount"] == {"denom": "uve", "amount": str(40 * (close_height - lease_height))}
    assert record["settled_height"] == str(close_height)
    results = cluster.rpc(2, "block_results", height=close_height)["result"]["txs_results"]
    assert any(e["type"] == "settlement" for r in results for e in r["events"])
    info = cluster.rest(2, "/virtengine/deployment/v1beta4/deployments/info", **{"id.owner": owner, "id.dseq": dseq})
    assert info["deployment"]["state"] == "closed" and info["escrow_account"]["state"]["state"] == "closed"
    unknown = {"id.owner": "nobody", "id.dseq": 1, "id.gseq": 1, "id.oseq": 1}
    resp = cluster.client.get(f"http://127.0.0.1:{rest_port(0)}{MARKET}/orders/info", params=unknown)
    assert resp.status_code == 404 and resp.json()["code"] == 5


def test_300_txs_sent_at_100_per_second_are_all_confirmed_once(cluster: Cluster) -> None:
    """Correctness under a burst: every tx committed successfully and the mempools drain. Its speed is measured by
    benchmarks/sandbox.py, not asserted here (a shared CI machine has no stable timing)."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for k in range(300):  # 3 s at 100 tx/s on an idle machine, spread over the three nodes
        due = start + k / 100
        time.sleep(max(0.0, due - time.monotonic()))
        tx = make_tx("provider/create", f"load{k}-{uuid.uuid4().hex[:6]}", {"host_uri": "http://x", "attributes": []})
        tx["msg"]["owner"] = tx["signer"]
        sent[cluster.broadcast(k % N, tx)] = time.monotonic()
    assert len(sent) == 300  # 300 distinct tx hashes accepted by CheckTx
    confirmed: set[str] = set()

    def all_confirmed() -> bool:
        confirmed.update(h for h in sent if h not in confirmed and cluster.find_tx(0, h))
        return len(confirmed) == len(sent)

    wait_for(all_confirmed, 90, "300 txs confirmed", interval=0.2)
    assert all(cluster.find_tx(0, h)["tx_result"]["code"] == 0 for h in sent)

    def mempools_empty() -> bool:
        texts = [cluster.client.get(f"http://127.0.0.1:{rpc_port(i)}/metrics").text for i in range(N)]
        return all("\ntendermint_mempool_size 0.0\n" in t for t in texts)

    wait_for(mempools_empty, 30, "empty mempools")


def test_killed_node_catches_up(cluster: Cluster) -> None:
    cluster.kill_node(2)
    before = cluster.height(0)
    wait_for(lambda: cluster.height(0) >= before + 3, 10, "blocks without node-2")
    cluster.start_node(2)
    wait_for(lambda: cluster.height(2) >= 0, 10, "node-2 answers")
    target = cluster.height(0)
    wait_for(lambda: cluster.height(2) >= target, 15, "node-2 caught up")
    status = cluster.rpc(2, "status")["result"]
    assert status["sync_info"]["catching_up"] is False
    for h in (1, target // 2, target):
        assert cluster.block_hash(2, h) == cluster.block_hash(0, h)


def test_no_blocks_without_etcd_quorum(cluster: Cluster) -> None:
    tx = make_tx("provider/create", "provider-q", {"owner": "provider-q", "host_uri": "http://q", "attributes": []})
    for i in (1, 2):
        cluster.signal_etcd(i, signal.SIGSTOP)
    try:
        h = cluster.broadcast(0, tx)
        time.sleep(1.5)  # let an in-flight commit land (a block proposed just before the stop)
        frozen = cluster.height(0)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # watch for 4 s: nodes answer fast, no block, no confirmation
            for i in range(N):
                t = time.monotonic()
                height = cluster.height(i, timeout=1.5)
                assert time.monotonic() - t < 1.0, f"node-{i} slow to answer /status without quorum"
                assert height <= frozen + (0 if i == 0 else 1)
            assert cluster.find_tx(0, h) is None
            time.sleep(0.3)
        assert cluster.height(0) == frozen
    finally:
        for i in (1, 2):
            cluster.signal_etcd(i, signal.SIGCONT)
    wait_for(lambda: cluster.height(0) > frozen + 1, 15, "blocks resume")
    cluster.confirm(0, h, timeout=10)
    cluster.confirm(1, h, timeout=5)
