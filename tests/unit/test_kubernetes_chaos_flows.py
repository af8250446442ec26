"""The four chaos flows' KUBERNETES REQUEST PATH, run against a LOCAL STAND-IN of the API server — not a cluster.

Each flow runs for real (Prefect test server, official ``kubernetes`` client, fault ledger, reaper) with an
environment of platform ``kubernetes`` whose kubeconfig points at ``LocalApiStandIn`` (tests/unit/
test_kubernetes_driver_requests.py: canned answers in the API's shapes). The flows' probes (RPC ``/status``, the
marketplace API, Alertmanager, pager...) point at ``EndpointStub``, a tiny HTTP stub on 127.0.0.1 that answers every
check with success: it exists only so that the steady-state check lets these tests reach the Kubernetes requests.
Nothing here tests VirtEngine, Chaos Mesh or a real API server; the verdicts these runs produce grade the stub and
are not evidence about any system. What is shown: which Chaos Mesh object (validated against the CRD schema) or exec
each flow sends, that its undo is in the ledger before the request, that the flow's revert deletes it, that
``drillbit cleanup`` deletes it after the flow process is SIGKILLed mid-injection, that the pod-kill restart verdict
is computed from the watched pods, that dry runs and bad selectors send nothing that changes the cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from drillbit.faults.base import FaultError, cleanup, revert
from drillbit.faults.ledger import Ledger
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform.kubernetes import KubeConnection, RestartWatch
from drillbit.faults.pod_kill import PodDelete
from tests.unit.test_kubernetes_driver_requests import (
    CHAOS,
    DB,
    INJECTED,
    NODE,
    Handler,
    LocalApiStandIn,
    Recorded,
    _gone,
    _reapers,
    pod,
    serve,
)

PROVIDER = {"app.kubernetes.io/name": "provider-daemon"}
ROOT = Path(__file__).resolve().parents[2]
FAST = {"baseline": 0.6, "recovery": 0.6, "interval": 0.2}


# ------------------------------------------------------------------------------------------------ probe stub


@dataclass
class StubState:
    height: int = 100
    fault_seen: bool = False  # set when the stand-in sees the fault's request: the stub's alert and page appear
    records: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class EndpointStub(BaseHTTPRequestHandler):
    """Answers the flows' probes with success (RPC, REST, API, provider, Alertmanager, pager). NOT VirtEngine."""

    protocol_version = "HTTP/1.1"
    state: StubState

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if urlsplit(self.path).path == "/api/v1/records":
            with self.state.lock:
                self.state.records.add(body["key"])
            return self._send(201, {"key": body["key"]})
        self._send(404, {})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        p, q = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        st = self.state
        if p == "/status":
            with st.lock:
                st.height += 1
                h = st.height
            return self._send(200, {"result": {"sync_info": {"latest_block_height": str(h)}}})
        if p == "/health":
            return self._send(200, {"result": {}, "database": "up"})
        if p == "/broadcast_tx_sync":
            return self._send(200, {"result": {"hash": q["tx"][2:18].upper(), "code": 0, "log": ""}})
        if p == "/tx":
            tx = {"hash": q["hash"][2:], "height": str(st.height), "tx_result": {"code": 0, "log": "", "events": []}}
            return self._send(200, {"result": tx})
        if p == "/virtengine/market/v1beta5/bids/list":
            bid_id = {"owner": q.get("filters.owner"), "dseq": int(q.get("filters.dseq", 1)), "gseq": 1, "oseq": 1}
            return self._send(200, {"bids": [{"bid": {"id": bid_id | {"provider": "stub"}, "state": "open"}}]})
        if p.startswith("/api/v1/leases/"):
            return self._send(200, {"state": "running", "healthy": True})
        if p == "/api/v1/market/orders":
            return self._send(200, {"items": []}, {"X-Cache": "hit"})
        if p.startswith("/api/v1/records/"):
            found = p.rsplit("/", 1)[1] in st.records
            return self._send(200 if found else 404, {})
        if p == "/api/v2/alerts":
            alert = {"labels": {"alertname": "PodRestarted"}, "status": {"state": "active"}, "fingerprint": "f1"}
            return self._send(200, [alert] if st.fault_seen else [])
        if p == "/api/v1/pages":
            page = {"id": 1, "alertname": "PodRestarted", "received_at": time.time()}
            return self._send(200, {"pages": [page] if st.fault_seen else []})
        self._send(404, {"error": "the stub has no such path"})


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One Prefect test server for this module (its URL is handed to the crash test's child processes)."""
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield PREFECT_API_URL.value()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Cluster:
    api: LocalApiStandIn
    stub: StubState
    config: Path
    ledger: Ledger
    env: dict[str, str]
    snapshots: list[tuple[str, str, list[dict[str, Any]]]] = field(default_factory=list)  # (method, path, ledger)

    def ledger_at(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        """The ledger's undo steps as they were when the first matching request reached the stand-in."""
        return next(undo for m, p, undo in self.snapshots if m == method and p.startswith(path_prefix))


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    api, stub = LocalApiStandIn(), StubState()
    api_handler = type("BoundHandler", (Handler,), {"api": api})
    stub_handler = type("BoundStub", (EndpointStub,), {"state": stub})
    with serve(api_handler) as api_url, serve(stub_handler) as stub_url:
        api.url = api_url
        for i in range(3):  # one StatefulSet of three validators; the provider and the database are bare pods
            labels = NODE | {"app.kubernetes.io/component": "blockchain"}
            api.pods[f"node-{i}"] = pod(f"node-{i}", labels, f"uid-n{i}", owner=("StatefulSet", "virtengine-node"))
        api.pods["provider-0"] = pod("provider-0", PROVIDER, "uid-p0")
        api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg0")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stand-in", "cluster": {"server": api_url}}],
                    "users": [{"name": "nobody", "user": {}}],
                    "contexts": [{"name": "drillbit-stand-in", "context": {"cluster": "stand-in", "user": "nobody"}}],
                    "current-context": "drillbit-stand-in",
                }
            )
        )
        endpoints = {k: stub_url for k in ("node_rpc", "node_rest", "api", "provider", "alertmanager", "pager")}
        config = tmp_path / "drillbit.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "default_environment": "cluster",
                    "environments": {
                        "cluster": {
                            "platform": "kubernetes",
                            "endpoints": endpoints,
                            "kubernetes": {"context": "drillbit-stand-in"},
                        }
                    },
                }
            )
        )
        home = tmp_path / "home"
        monkeypatch.setenv("DRILLBIT_HOME", str(home))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        ledger = Ledger(home / "ledger")
        env = {**os.environ, "DRILLBIT_HOME": str(home), "KUBECONFIG": str(kubeconfig)}
        c = Cluster(api, stub, config, ledger, env)

        def watch_requests(rec: Recorded) -> None:
            if rec.method in ("POST", "DELETE") or rec.path.endswith("/exec"):
                c.snapshots.append((rec.method, rec.path, [s for h in ledger.pending() for s in h.undo]))
            if rec.method == "POST" or (rec.path.endswith("/exec") and "-A" in rec.query.get("command", [])):
                stub.fault_seen = True

        api.on_request = watch_requests
        try:
            yield c
        finally:
            cleanup(ledger)  # anything a failed test left is deleted through the stand-in, still up
            for pid in _reapers(ledger.root):  # our own TTL reapers, by PID
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                _gone(pid)


def verdicts(record: dict) -> dict[str, dict]:
    return {v["criterion"]: v for v in record["verdicts"]}


def created(c: Cluster, plural: str) -> Recorded:
    (post,) = c.api.seen("POST", f"{CHAOS}/{plural}")
    return post


def assert_created_recorded_deleted(c: Cluster, plural: str) -> dict:
    """One object created (valid against the CRD), its undo in the ledger before the POST, deleted on revert."""
    post = created(c, plural)
    manifest = post.body
    chaosmesh.validate(manifest)
    name = manifest["metadata"]["name"]
    before = c.ledger_at("POST", f"{CHAOS}/{plural}")
    assert [(s["driver"], s["plural"], s["name"]) for s in before] == [("k8s_custom_object", plural, name)]
    assert before[0]["connection"]["context"] == "drillbit-stand-in"
    deletes = c.api.seen("DELETE", f"{CHAOS}/{plural}/{name}")
    assert len(deletes) == 1 and c.api.requests.index(deletes[0]) > c.api.requests.index(post)
    assert c.ledger.pending() == []
    return manifest


# ------------------------------------------------------------------------------------------------ whole flows


def test_pod_kill_flow_creates_podchaos_and_grades_restart_from_watched_pods_against_local_api_stand_in(
    prefect_api, cluster
):
    from flows.chaos_pod_kill import PodKillParams, chaos_pod_kill

    api = cluster.api
    api.statuses = [INJECTED]  # Chaos Mesh's answer: virtengine/node-1 injected (killed)
    previous = cluster.api.on_request

    def kill_node_1(rec: Recorded) -> None:  # what Chaos Mesh and the StatefulSet would do: a new node-1 pod
        previous(rec)
        if rec.method == "POST" and "node-1" in api.pods:
            del api.pods["node-1"]
            api.replacements = [pod("node-1", NODE | {"app.kubernetes.io/component": "blockchain"}, "uid-n1b", False)]

    api.on_request = kill_node_1
    record = chaos_pod_kill(params=PodKillParams(config_path=str(cluster.config), duration=2.0, **FAST))

    manifest = assert_created_recorded_deleted(cluster, "podchaos")
    assert manifest["kind"] == "PodChaos" and manifest["spec"]["action"] == "pod-kill"
    assert manifest["spec"]["selector"] == {"namespaces": ["virtengine"], "labelSelectors": NODE}
    assert manifest["spec"]["mode"] == "one" and manifest["metadata"]["namespace"] == "chaos-testing"
    post_at = api.requests.index(created(cluster, "podchaos"))
    watches = [r for r in api.requests[post_at:] if r.query.get("watch") == ["true"]]
    assert watches and watches[0].query["labelSelector"] == ["app.kubernetes.io/name=virtengine-node"]

    v = verdicts(record)
    back = v["node pods back within 30 s"]
    assert back["outcome"] == "pass", back
    assert back["evidence"]["killed"] == ["virtengine/node-1"] and back["evidence"]["replacements"] == ["node-1"]
    assert back["evidence"]["wanted"] == 3 and 0 <= back["evidence"]["seconds"] < 30
    # read from the stub, not from any real system: shows only that the flow reads RPC heights, Alertmanager, pager
    assert {k: v[k]["outcome"] for k in ("consensus continues", "alerts fired", "on-call paged")} == dict.fromkeys(
        ("consensus continues", "alerts fired", "on-call paged"), "pass"
    )


def test_network_latency_flow_creates_networkchaos_delay_on_the_link_against_local_api_stand_in(prefect_api, cluster):
    from flows.chaos_network_latency import NetworkLatencyParams, chaos_network_latency

    cluster.api.statuses = [INJECTED]
    params = NetworkLatencyParams(
        config_path=str(cluster.config), duration=2.0, probe_interval=0.5, latency_ms=100, jitter_ms=10, **FAST
    )
    chaos_network_latency(params=params)

    manifest = assert_created_recorded_deleted(cluster, "networkchaos")
    spec = manifest["spec"]
    assert spec["action"] == "delay" and spec["delay"] == {"latency": "100ms", "jitter": "10ms", "correlation": "25"}
    assert spec["selector"]["labelSelectors"] == PROVIDER and spec["mode"] == "one" and spec["direction"] == "to"
    assert spec["target"]["selector"]["labelSelectors"] == NODE, "only the provider's link to the chain"
    assert spec["duration"] == "62s", "Chaos Mesh ends it by itself a minute after the planned window"


def test_disk_pressure_flow_creates_iochaos_on_the_data_volume_against_local_api_stand_in(prefect_api, cluster):
    from flows.chaos_disk_pressure import DiskPressureParams, chaos_disk_pressure

    cluster.api.statuses = [INJECTED]
    params = DiskPressureParams(config_path=str(cluster.config), duration=2.0, io_action="fault", **FAST)
    record = chaos_disk_pressure(params=params)

    manifest = assert_created_recorded_deleted(cluster, "iochaos")
    spec = manifest["spec"]
    assert spec["action"] == "fault" and spec["errno"] == 28 and spec["volumePath"] == "/root/.virtengine"
    assert spec["selector"]["labelSelectors"] == NODE and spec["mode"] == "one" and spec["percent"] == 50
    detected = verdicts(record)["pressure detected"]
    assert detected["outcome"] == "inconclusive" and not detected["required"], "IOChaos does not fill the volume"


def test_db_failure_flow_execs_iptables_in_the_database_pod_against_local_api_stand_in(prefect_api, cluster):
    from flows.chaos_db_failure import DbFailureParams, chaos_db_failure

    params = DbFailureParams(config_path=str(cluster.config), duration=2.0, verify_timeout=5.0, **FAST)
    chaos_db_failure(params=params)

    execs = cluster.api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")
    rule = ["INPUT", "-p", "tcp", "--dport", "5432", "-j", "DROP"]
    assert [e.query["command"] for e in execs] == [["iptables", "-A", *rule], ["iptables", "-D", *rule]]
    (step,) = cluster.ledger_at("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")
    assert step["driver"] == "k8s_exec" and step["command"] == ["iptables", "-D", *rule] and step["uid"] == "uid-pg0"
    assert cluster.ledger.pending() == []


# ------------------------------------------------------------------------------------------------ crash + cleanup

CHILD = """
import os, signal, sys
from drillbit.faults.chaos_mesh import ChaosMeshFault
from drillbit.faults.port_block import DbPortBlock

def die(*_args, **_kwargs):  # SIGKILL in the middle of the injection: after the request, before the flow goes on
    os.kill(os.getpid(), signal.SIGKILL)

ChaosMeshFault.wait_injected = die
_apply = DbPortBlock.apply
DbPortBlock.apply = lambda self, plan, handle: (_apply(self, plan, handle), die())
import importlib
module = importlib.import_module(sys.argv[1])
flow, params = getattr(module, sys.argv[2]), getattr(module, sys.argv[3])
flow(params=params(config_path=sys.argv[4], duration=30.0, baseline=0.3, interval=0.2))
print("the flow was not killed")
"""

CRASHES = {
    "pod-kill": ("flows.chaos_pod_kill", "chaos_pod_kill", "PodKillParams", "podchaos"),
    "network-latency": ("flows.chaos_network_latency", "chaos_network_latency", "NetworkLatencyParams", "networkchaos"),
    "disk-pressure": ("flows.chaos_disk_pressure", "chaos_disk_pressure", "DiskPressureParams", "iochaos"),
    "db-failure": ("flows.chaos_db_failure", "chaos_db_failure", "DbFailureParams", None),
}


@pytest.mark.parametrize("experiment", list(CRASHES))
def test_cleanup_reverts_after_the_flow_is_sigkilled_mid_injection_against_local_api_stand_in(
    prefect_api, cluster, experiment
):
    """A child process runs the flow (same Prefect test server) and SIGKILLs itself once the fault's request was
    sent; then ``drillbit cleanup``, a fresh process, reverts it from the ledger through the stand-in."""
    module, flow, params, plural = CRASHES[experiment]
    env = cluster.env | {"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, module, flow, params, str(cluster.config)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    (entry,) = cluster.ledger.pending()
    if plural:
        post = created(cluster, plural)
        chaosmesh.validate(post.body)
        assert entry.undo[0]["name"] == post.body["metadata"]["name"]
        assert cluster.ledger_at("POST", f"{CHAOS}/{plural}") == entry.undo, "in the ledger before the POST"
        assert cluster.api.seen("DELETE") == []
    else:
        assert cluster.ledger_at("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec") == entry.undo

    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "drillbit"), "cleanup"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if plural:
        name = post.body["metadata"]["name"]
        assert [d.path for d in cluster.api.seen("DELETE")] == [f"{CHAOS}/{plural}/{name}"]
    else:
        last = cluster.api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")[-1]
        assert last.query["command"][:2] == ["iptables", "-D"]
    assert cluster.ledger.pending() == []
    assert entry.reaper_pid and _gone(entry.reaper_pid), "the killed run's reaper was stopped"


# ------------------------------------------------------------------------------------------------ dry run, bad input


def test_dry_runs_plan_from_the_live_pod_list_and_change_nothing_against_local_api_stand_in(prefect_api, cluster):
    from flows.chaos_db_failure import DbFailureParams, chaos_db_failure
    from flows.chaos_disk_pressure import DiskPressureParams, chaos_disk_pressure
    from flows.chaos_network_latency import NetworkLatencyParams, chaos_network_latency
    from flows.chaos_pod_kill import PodKillParams, chaos_pod_kill

    cfg = {"config_path": str(cluster.config), "dry_run": True}
    plans = {
        "pod-kill": chaos_pod_kill(params=PodKillParams(**cfg)),
        "network": chaos_network_latency(params=NetworkLatencyParams(**cfg)),
        "disk": chaos_disk_pressure(params=DiskPressureParams(**cfg)),
        "db": chaos_db_failure(params=DbFailureParams(**cfg)),
        "provider": chaos_pod_kill(params=PodKillParams(target="provider", **cfg)),  # its only pod, a bare one
    }
    assert {r["status"] for r in plans.values()} == {"dry-run"}
    assert "workloads=StatefulSet/virtengine-node: 1 of 3 live replicas down" in plans["pod-kill"]["metrics"]["plan"]
    assert "full outage of Pod/postgres-0 (allowed by full_outage)" in plans["db"]["metrics"]["plan"]
    refused = plans["provider"]["metrics"]
    assert "full outage of Pod/provider-0 (refused: full_outage=false)" in refused["plan"]
    assert refused["refused"].startswith("full outage refused: PodChaos chaos-testing/drillbit-pod-kill-")
    assert "virtengine/node-0, virtengine/node-1, virtengine/node-2" in plans["pod-kill"]["metrics"]["plan"]
    assert "PodChaos chaos-testing/drillbit-pod-kill-" in plans["pod-kill"]["metrics"]["plan"]
    assert "virtengine/provider-0" in plans["network"]["metrics"]["plan"]
    assert "IOChaos" in plans["disk"]["metrics"]["plan"]
    assert "virtengine/postgres-0:5432" in plans["db"]["metrics"]["plan"]
    assert any("node pods back within 30 s" in c for c in plans["pod-kill"]["metrics"]["criteria"])
    assert [r for r in cluster.api.requests if r.method != "GET" or r.path.endswith("/exec")] == []
    assert cluster.ledger.pending() == []


def test_a_selector_matching_no_pod_fails_before_anything_is_created_against_local_api_stand_in(prefect_api, cluster):
    from flows.chaos_network_latency import NetworkLatencyParams, chaos_network_latency
    from flows.chaos_pod_kill import PodKillParams, chaos_pod_kill

    del cluster.api.pods["provider-0"]
    params = NetworkLatencyParams(config_path=str(cluster.config), duration=1.0, **FAST)
    with pytest.raises(FaultError, match=r"spec.selector: selects no pod"):
        chaos_network_latency(params=params)
    with pytest.raises(Exception, match=r"no selector for role 'validator'"):
        chaos_pod_kill(params=PodKillParams(config_path=str(cluster.config), target="validator", **FAST))
    too_many = PodKillParams(config_path=str(cluster.config), mode="all", duration=1.0, **FAST)
    with pytest.raises(FaultError, match=r"blast radius: 3 targets exceed safety.max_targets=1"):
        chaos_pod_kill(params=too_many)
    assert [r for r in cluster.api.requests if r.method != "GET" or r.path.endswith("/exec")] == []
    assert cluster.ledger.pending() == []


# ------------------------------------------------------------------------------------------------ restart watch


def test_restart_watch_reports_not_ready_when_no_replacement_comes_against_local_api_stand_in(cluster):
    connection = KubeConnection(host=cluster.api.url)
    watch = RestartWatch(NODE, "virtengine", connection, timeout=30, max_watch=1)
    fault = PodDelete(NODE, "virtengine", connection, max_targets=1, seed=1, on_applied=watch.start)
    handle = fault.inject(ttl=60, ledger=cluster.ledger)
    report = watch.report(wait=1.0)  # nothing comes back; the watch is stopped
    assert not report.ready and report.seconds is None and report.ready_pods == 2 and report.wanted == 3
    assert watch.killed == list(handle.detail["deleted"])
    assert cluster.api.seen("GET", "/api/v1/namespaces/virtengine/pods")[-1].query["watch"] == ["true"]
    revert(handle, cluster.ledger)


def test_restart_watch_times_the_replacement_after_a_pod_delete_against_local_api_stand_in(cluster):
    connection = KubeConnection(host=cluster.api.url)
    watch = RestartWatch(NODE, "virtengine", connection, timeout=30, max_watch=1)
    fault = PodDelete(NODE, "virtengine", connection, max_targets=1, seed=2, on_applied=watch.start)
    handle = fault.inject(ttl=60, ledger=cluster.ledger)
    (victim,) = handle.detail["deleted"]
    cluster.api.replacements = [pod(victim, NODE, "uid-fresh", ready=False)]
    report = watch.report(wait=10)
    assert report.ready and report.replacements == [victim] and report.ready_pods == 3 and 0 <= report.seconds < 10
    revert(handle, cluster.ledger)


def test_the_connection_names_the_kubeconfig_and_context_never_a_credential(tmp_path, monkeypatch):
    from drillbit.config import parse
    from drillbit.scenarios.chaos import kubernetes as chaos_k8s

    env = parse(
        {
            "default_environment": "c",
            "environments": {
                "c": {"platform": "kubernetes", "endpoints": {"node_rpc": "http://x", "node_rest": "http://x"}}
            },
        }
    ).environment("c")
    kubeconfig = tmp_path / "config"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert chaos_k8s.connection(env).to_dict() == {
        "context": None,
        "config_file": str(kubeconfig),
        "in_cluster": False,
        "host": None,
    }
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert chaos_k8s.connection(env).in_cluster, "inside a pod without a kubeconfig: the service account"
    assert chaos_k8s.chaos_duration(600) == 660
