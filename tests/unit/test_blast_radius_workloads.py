"""The whole-workload rule of target selection: a fault may take one replica of a workload down, not every one,
unless the experiment sets ``full_outage``; the plan (dry runs included) lists each workload's replicas and how many
go down, and flags a full outage as refused or allowed.

Sandbox: the components and labels of the sandbox's launcher (constructed here, checked against its source), the
supervisor's answer from a loopback XML-RPC stand-in. Kubernetes: the LOCAL API STAND-IN of the driver's request
tests (tests/unit/test_kubernetes_driver_requests.py), plus ReplicaSet listing — canned answers, not a cluster.
Last, every built-in flow's parameters (defaults, ``drillbit verify``, ``drillbit demo``, the calendar) still pass.
"""

from __future__ import annotations

import contextlib
import json
import re
import xmlrpc.client
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillbit import catalog, runner
from drillbit.calendar import load_calendar
from drillbit.config import Endpoints, Environment, KubernetesTarget, ResolvedEnvironment
from drillbit.faults.chaos_mesh import ChaosMeshFault, takes_down
from drillbit.faults.disk import io_chaos
from drillbit.faults.errors import FaultError, FullOutageRefused
from drillbit.faults.ledger import Ledger
from drillbit.faults.network import network_delay
from drillbit.faults.partition import network_partition
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform.kubernetes import KubeConnection, pod_workloads
from drillbit.faults.pod_kill import PodDelete, PodKill, pod_kill
from drillbit.faults.port_block import DbPortBlock
from drillbit.faults.targets import Workload, choose, sandbox_workloads, select_targets
from drillbit.scenarios.chaos import disk_pressure
from drillbit.scenarios.chaos import kubernetes as kube_scenarios
from drillbit.scenarios.chaos import pod_kill as pod_kill_scenario
from tests.unit.test_kubernetes_driver_requests import (
    DB,
    NODE,
    Handler,
    LocalApiStandIn,
    Recorded,
    pod,
    serve,
    status_body,
)

ROOT = Path(__file__).resolve().parents[2]
NAME, ROLE, INSTANCE = "app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/instance"
PROVIDER = {NAME: "provider-daemon"}
API = {NAME: "virtengine-api"}

# ------------------------------------------------------------------------------------------------ the sandbox

# (program, name, role, instance) of every component the sandbox's launcher starts: launcher.py's components(),
# storage.py's storage_components() and monitoring.py's monitoring_components() (checked against them below)
LAYOUT = [
    *((f"etcd-{i}", "virtengine-validator-store", "consensus", f"etcd-{i}") for i in range(3)),
    ("postgres", "postgres", "database", "postgres-0"),
    ("faultproxy", "faultproxy", "network", "faultproxy-0"),
    *((f"node-{i}", "virtengine-node", "blockchain", f"node-{i}") for i in range(3)),
    ("api", "virtengine-api", "gateway", "api-0"),
    ("provider", "provider-daemon", "provider", "provider-0"),
    *((n, n, "monitoring", f"{n}-0") for n in ("pager", "hostmetrics", "alertmanager", "prometheus")),
    ("s3", "object-storage", "storage", "s3-0"),
    ("replica", "postgres", "database-replica", "postgres-1"),
    ("backup", "backup-agent", "backup", "backup-0"),
]
COMPONENTS = {
    program: {"labels": {NAME: name, ROLE: role, INSTANCE: instance}, "health": "http:http://127.0.0.1:9/health"}
    for program, name, role, instance in LAYOUT
}


def test_the_constructed_sandbox_has_the_launchers_labels():
    src = ROOT / "infra/sandbox/vesandbox"
    text = (src / "launcher.py").read_text() + (src / "storage.py").read_text()
    labelled = set(re.findall(r'_labels\("([^"]+)", "([^"]+)"', text))
    labelled |= {
        (n, "monitoring") for n in re.findall(r'_component\(layout, "([^"]+)"', (src / "monitoring.py").read_text())
    }
    # the replication link runs only with the async-replication-loses-writes weakness
    assert {(name, role) for _, name, role, _ in LAYOUT} == labelled - {("replication-link", "network")}


class SupervisorStandIn(BaseHTTPRequestHandler):
    """A loopback stand-in of the sandbox supervisor's XML-RPC ``getAllProcessInfo``: every component RUNNING except
    ``stopped``."""

    stopped: frozenset[str] = frozenset()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        _args, method = xmlrpc.client.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert method == "supervisor.getAllProcessInfo", method
        infos = [{"name": n, "statename": "STOPPED" if n in self.stopped else "RUNNING"} for n in COMPONENTS]
        body = xmlrpc.client.dumps((infos,), methodresponse=True).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def supervisor(stopped: frozenset[str] = frozenset()) -> contextlib.AbstractContextManager[str]:
    return serve(type("Bound", (SupervisorStandIn,), {"stopped": stopped}))


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Iterator[dict[str, Any]]:
    """The sandbox's endpoints file (what ``drillbit.sandbox.endpoints`` reads) with the supervisor stand-in."""
    with supervisor() as url:
        volumes = {f"node-{i}": {"path": str(tmp_path), "size_bytes": 1 << 30, "holds": f"etcd-{i}"} for i in range(3)}
        ep = {"supervisor": f"{url}/RPC2", "components": COMPONENTS, "nodes": [], "volumes": volumes}
        (tmp_path / "endpoints.json").write_text(json.dumps(ep))
        monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(tmp_path))
        yield ep


def sandbox_env() -> ResolvedEnvironment:
    spec = Environment(
        platform="sandbox", endpoints=Endpoints(node_rpc="http://127.0.0.1:9", node_rest="http://127.0.0.1:9")
    )
    return ResolvedEnvironment(name="sandbox", spec=spec)


def test_sandbox_workloads_are_the_components_sharing_name_and_role():
    w = sandbox_workloads(COMPONENTS)
    assert w["node-0"] == w["node-2"] == Workload("blockchain", "virtengine-node", 3)
    assert w["etcd-1"] == Workload("consensus", "virtengine-validator-store", 3)
    assert w["provider"] == Workload("provider", "provider-daemon", 1)
    assert w["postgres"] == Workload("database", "postgres", 1), "the primary, not one of two with the replica"
    assert w["replica"] == Workload("database-replica", "postgres", 1)
    assert str(w["provider"]) == "provider/provider-daemon"


def test_killing_one_of_three_validators_is_allowed_and_planned_per_workload(sandbox):
    plan = PodKill(sandbox, NODE, "one", max_targets=1, max_percent=34, seed=1).plan()
    assert len(plan.targets) == 1 and plan.targets[0].startswith("node-")
    assert plan.detail["workloads"] == "blockchain/virtengine-node: 1 of 3 live replicas down"


def test_killing_all_three_validators_is_refused_with_one_line_naming_the_workload(sandbox):
    with pytest.raises(FullOutageRefused) as err:
        PodKill(sandbox, NODE, "all", max_targets=3).plan()
    assert str(err.value) == (
        "full outage refused: the selection can take down every live replica of blockchain/virtengine-node "
        "(replicas 3, targets 3: node-0, node-1, node-2); narrow the selector or mode, or set full_outage=true if "
        "the experiment means a full outage"
    )
    assert "\n" not in str(err.value)
    assert err.value.plan.targets == ["node-0", "node-1", "node-2"], "the refused plan travels with the error"
    assert err.value.plan.detail["workloads"].endswith(
        "3 of 3 live replicas down — full outage of blockchain/virtengine-node (refused: full_outage=false)"
    )


def test_killing_the_only_provider_is_refused_unless_full_outage(sandbox):
    with pytest.raises(FullOutageRefused, match=r"of provider/provider-daemon \(replicas 1, targets 1: provider\)"):
        PodKill(sandbox, PROVIDER, "one", max_targets=1).plan()
    plan = PodKill(sandbox, PROVIDER, "one", max_targets=1, full_outage=True).plan()
    assert plan.targets == ["provider"]
    assert plan.detail["workloads"] == (
        "provider/provider-daemon: 1 of 1 live replicas down — full outage of provider/provider-daemon "
        "(allowed by full_outage)"
    )


def test_replicas_are_the_running_components(sandbox):
    with supervisor(frozenset({"node-2"})) as url:
        ep = dict(sandbox, supervisor=f"{url}/RPC2")
        assert (
            PodKill(ep, NODE, "one").plan().detail["workloads"]
            == "blockchain/virtengine-node: 1 of 2 live replicas down"
        )
        with pytest.raises(FullOutageRefused, match=r"virtengine-node \(replicas 2, targets 2: node-0, node-1\)"):
            PodKill(ep, NODE, "fixed", 2, max_targets=2).plan()


def test_a_selector_spanning_workloads_is_judged_on_what_the_mode_may_pick():
    choice = choose(COMPONENTS, {NAME: "postgres"}, "one")
    assert [s.describe(False) for s in choice.shares] == [
        "database-replica/postgres: up to 1 of 1 live replicas down — full outage of database-replica/postgres "
        "(refused: full_outage=false)",
        "database/postgres: up to 1 of 1 live replicas down — full outage of database/postgres "
        "(refused: full_outage=false)",
    ]
    with pytest.raises(FullOutageRefused, match=r"database-replica/postgres \(replicas 1, targets 1: replica\)"):
        select_targets(COMPONENTS, {NAME: "postgres"}, "one")
    assert select_targets(COMPONENTS, {NAME: "postgres", ROLE: "database"}, "one", full_outage=True) == ["postgres"]


def dry_run(params: pod_kill_scenario.PodKillParams) -> dict[str, Any]:
    return runner.run(pod_kill_scenario.build(sandbox_env(), params))


def test_the_dry_run_plan_says_full_outage_with_the_workload_and_its_counts(sandbox):
    refused = dry_run(pod_kill_scenario.PodKillParams(target="provider", dry_run=True))
    flag = "provider/provider-daemon: 1 of 1 live replicas down — full outage of provider/provider-daemon"
    assert refused["outcome"] == "dry-run"
    assert f"{flag} (refused: full_outage=false)" in refused["metrics"]["plan"]
    assert refused["metrics"]["refused"].startswith("full outage refused: the selection can take down")
    (verdict,) = refused["verdicts"]
    assert "a real run is refused — full outage refused" in verdict["reason"]

    allowed = dry_run(pod_kill_scenario.PodKillParams(target="provider", dry_run=True, full_outage=True))
    assert f"{flag} (allowed by full_outage)" in allowed["metrics"]["plan"] and "refused" not in allowed["metrics"]

    one_node = dry_run(pod_kill_scenario.PodKillParams(dry_run=True))
    assert "workloads=blockchain/virtengine-node: 1 of 3 live replicas down" in one_node["metrics"]["plan"]
    assert "full outage" not in one_node["metrics"]["plan"]


# ------------------------------------------------------------------------------------------------ Kubernetes


def replica_set(name: str, deployment: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "virtengine", "uid": f"uid-{name}"}
    if deployment:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment,
                "uid": f"uid-{deployment}",
                "controller": True,
            }
        ]
    return {"metadata": meta, "spec": {"selector": {"matchLabels": {NAME: deployment or name}}}}


class AppsHandler(Handler):
    """The stand-in's handler, plus ``GET /apis/apps/v1/namespaces/NS/replicasets`` (``api.replica_sets``)."""

    def _route(self, rec: Recorded) -> None:
        if re.fullmatch(r"/apis/apps/v1/namespaces/[^/]+/replicasets", rec.path):
            if getattr(self.api, "apps_forbidden", False):
                return self._json(403, status_body(403, "Forbidden", "replicasets.apps is forbidden"))
            items = list(getattr(self.api, "replica_sets", []))
            return self._json(200, {"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {}, "items": items})
        return super()._route(rec)


@pytest.fixture
def api() -> Iterator[LocalApiStandIn]:
    """The stand-in with a Deployment of three (two ReplicaSets: a rollout), a StatefulSet of one, a bare pod."""
    stand_in = LocalApiStandIn()
    stand_in.replica_sets = [
        replica_set("virtengine-api-7d9f", "virtengine-api"),
        replica_set("virtengine-api-5c4b", "virtengine-api"),
    ]
    for i, rs in enumerate(["virtengine-api-7d9f", "virtengine-api-7d9f", "virtengine-api-5c4b"]):
        stand_in.pods[f"api-{i}"] = pod(f"api-{i}", API, f"uid-api-{i}", owner=("ReplicaSet", rs))
    stand_in.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0", owner=("StatefulSet", "postgres"))
    stand_in.pods["provider-0"] = pod("provider-0", PROVIDER, "uid-provider-0")
    with serve(type("AppsBound", (AppsHandler,), {"api": stand_in})) as url:
        stand_in.url = url
        yield stand_in


def listings(api: LocalApiStandIn) -> list[str]:
    """The path and label selector ('*' for none) of every list request, in order."""
    return [f"{r.path} {r.query.get('labelSelector', ['*'])[0]}" for r in api.requests if r.method == "GET"]


def test_pod_workloads_follow_the_owner_chain_against_local_api_stand_in(api):
    conn = KubeConnection(host=api.url)
    pods = [api.pods[n] for n in ("api-0", "api-2", "postgres-0", "provider-0")]
    w = pod_workloads(conn.api_client(), "virtengine", pods)
    assert w["api-0"] == w["api-2"] == Workload("Deployment", "virtengine-api", 3, "virtengine"), "across a rollout"
    assert w["postgres-0"] == Workload("StatefulSet", "postgres", 1, "virtengine")
    assert w["provider-0"] == Workload("Pod", "provider-0", 1, "virtengine"), "a bare pod is a workload of one"
    assert listings(api) == [
        "/api/v1/namespaces/virtengine/pods *",
        "/apis/apps/v1/namespaces/virtengine/replicasets *",
    ]

    api.requests.clear()
    assert pod_workloads(conn.api_client(), "virtengine", [api.pods["provider-0"]])["provider-0"].replicas == 1
    assert api.requests == [], "a bare pod needs no read"


def test_deleting_one_of_three_deployment_pods_is_allowed_against_local_api_stand_in(api):
    plan = PodDelete(API, connection=KubeConnection(host=api.url), max_targets=1, seed=2).plan()
    assert len(plan.targets) == 1
    assert plan.detail["workloads"] == "Deployment/virtengine-api: 1 of 3 live replicas down"


def test_deleting_every_deployment_pod_is_refused_and_deletes_nothing_against_local_api_stand_in(
    api, tmp_path, monkeypatch
):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    ledger = Ledger(tmp_path / "ledger")
    fault = PodDelete(API, connection=KubeConnection(host=api.url), mode="all")
    with pytest.raises(
        FullOutageRefused, match=r"Deployment/virtengine-api \(replicas 3, targets 3: api-0, api-1, api-2\)"
    ):
        fault.inject(ttl=60, ledger=ledger)
    assert api.seen("DELETE") == [] and ledger.pending() == []


def test_pods_that_are_not_ready_are_not_replicas_against_local_api_stand_in(api):
    api.pods["api-2"] = pod("api-2", API, "uid-api-2", ready=False, owner=("ReplicaSet", "virtengine-api-5c4b"))
    conn = KubeConnection(host=api.url)
    with pytest.raises(FullOutageRefused, match=r"virtengine-api \(replicas 2, targets 2: api-0, api-1\)"):
        PodDelete(API, connection=conn, mode="fixed", value=2, max_targets=2).plan()


def test_a_statefulset_of_one_is_refused_unless_full_outage_against_local_api_stand_in(api):
    manifest = pod_kill(namespace="virtengine", labels=DB, run_id="r")
    conn = KubeConnection(host=api.url)
    with pytest.raises(
        FullOutageRefused, match=r"StatefulSet/postgres \(replicas 1, targets 1: virtengine/postgres-0\)"
    ):
        ChaosMeshFault(manifest, conn, max_targets=1).plan()
    plan = ChaosMeshFault(manifest, conn, max_targets=1, full_outage=True).plan()
    assert plan.detail["workloads"] == (
        "StatefulSet/postgres: 1 of 1 live replicas down — full outage of StatefulSet/postgres (allowed by full_outage)"
    )
    with pytest.raises(FullOutageRefused, match=r"blocking port 5432 of virtengine/postgres-0 can take down every"):
        DbPortBlock(DB, connection=conn).plan()
    assert "allowed by full_outage" in DbPortBlock(DB, connection=conn, full_outage=True).plan().detail["workloads"]
    assert api.seen("POST") == [] and not [r for r in api.requests if r.path.endswith("/exec")]


def test_a_bare_pod_is_its_own_workload_of_one_against_local_api_stand_in(api):
    conn = KubeConnection(host=api.url)
    with pytest.raises(FullOutageRefused, match=r"Pod/provider-0 \(replicas 1, targets 1: provider-0\)"):
        PodDelete(PROVIDER, connection=conn).plan()
    partition = network_partition(namespace="virtengine", labels=PROVIDER, target_labels=API, run_id="r")
    with pytest.raises(
        FullOutageRefused, match=r"NetworkChaos chaos-testing/.* can take down every live replica of Pod/provider-0"
    ):
        ChaosMeshFault(partition, conn).plan()


def test_only_experiments_that_take_pods_down_are_checked_per_workload_against_local_api_stand_in(api):
    conn = KubeConnection(host=api.url)
    delay = network_delay(namespace="virtengine", labels=PROVIDER, run_id="r", latency=100, target_labels=API)
    plan = ChaosMeshFault(delay, conn, max_targets=1).plan()
    assert plan.targets == ["virtengine/provider-0"] and "workloads" not in plan.detail, "a delay takes nothing down"
    io = io_chaos(namespace="virtengine", labels=PROVIDER, run_id="r", volume_path="/data", action="latency", delay=10)
    assert not takes_down(io) and not takes_down(delay)
    assert takes_down(chaosmesh.schedule(pod_kill(namespace="virtengine", labels=DB, run_id="r"), cron="@every 6h"))


def test_an_unreadable_replicaset_list_is_a_clear_error_against_local_api_stand_in(api):
    api.apps_forbidden = True
    why = r"listing the ReplicaSets of virtengine \(to find the workload of its pods\) failed: HTTP 403: replicasets"
    with pytest.raises(FaultError, match=why):
        PodDelete(API, connection=KubeConnection(host=api.url)).plan()


# ------------------------------------------------------------------------------------------------ the built-ins

SELECTING = ("chaos-pod-kill", "chaos-disk-pressure", "chaos-db-failure", "chaos-network-latency")


def built_ins() -> list[tuple[str, dict[str, Any]]]:
    """Every parameter set the project itself runs the selecting flows with: their defaults, ``drillbit verify``'s
    matrix, ``drillbit demo``'s plan and the testing calendar's entries."""
    from cli.demo import DEMO_PLAN
    from cli.verify import HEALTHY, MATRIX

    found = [(f, {}) for f in SELECTING] + HEALTHY + DEMO_PLAN
    found += [(c.flow, c.parameters) for catches in MATRIX.values() for c in catches]
    found += [(e.flow, e.parameters) for e in load_calendar().entries() if e.flow]
    unique = {(f, json.dumps(p, sort_keys=True)): (f, p) for f, p in found if f in SELECTING}
    return list(unique.values())


BUILT_INS = built_ins()
ON_SANDBOX = [b for b in BUILT_INS if b[0] in ("chaos-pod-kill", "chaos-disk-pressure")]  # the others select nothing


def ids(cases: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{flow} {json.dumps(given, sort_keys=True)}" for flow, given in cases]


def params_of(flow: str, given: dict[str, Any]) -> Any:
    return catalog.params_model(flow).model_validate(given)


@pytest.mark.parametrize(("flow", "given"), ON_SANDBOX, ids=ids(ON_SANDBOX))
def test_every_built_in_selection_passes_on_the_sandbox(sandbox, flow, given):
    params = params_of(flow, given)
    if flow == "chaos-pod-kill":
        fault, _health, _back, _closers = pod_kill_scenario.on_sandbox(sandbox_env(), params)
        assert fault.plan().targets
    else:  # the disk-pressure selection happens when its fault is built
        _fault, name, _query = disk_pressure.on_sandbox(sandbox_env(), params)
        assert name.startswith("node-")


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Iterator[tuple[LocalApiStandIn, ResolvedEnvironment]]:
    """The stand-in holding what infra/k8s deploys: validators a StatefulSet of 3, the provider daemon a Deployment
    of 1 (through its ReplicaSet), the database a StatefulSet of 1; an environment whose kubeconfig points at it."""
    stand_in = LocalApiStandIn()
    stand_in.replica_sets = [replica_set("provider-daemon-6f7c", "provider-daemon")]
    for i in range(3):
        labels = NODE | {ROLE: "blockchain"}
        stand_in.pods[f"node-{i}"] = pod(f"node-{i}", labels, f"uid-n{i}", owner=("StatefulSet", "virtengine-node"))
    provider = pod("provider-daemon-6f7c-x2k", PROVIDER, "uid-p", owner=("ReplicaSet", "provider-daemon-6f7c"))
    stand_in.pods["provider-daemon-6f7c-x2k"] = provider
    stand_in.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0", owner=("StatefulSet", "postgres"))
    with serve(type("AppsBound", (AppsHandler,), {"api": stand_in})) as url:
        stand_in.url = url
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "clusters": [{"name": "s", "cluster": {"server": url}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "stand-in", "context": {"cluster": "s", "user": "u"}}],
                    "current-context": "stand-in",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        endpoints = Endpoints(node_rpc="http://127.0.0.1:9", node_rest="http://127.0.0.1:9")
        spec = Environment(platform="kubernetes", endpoints=endpoints, kubernetes=KubernetesTarget(context="stand-in"))
        yield stand_in, ResolvedEnvironment(name="cluster", spec=spec)


def kubernetes_fault(env: ResolvedEnvironment, flow: str, params: Any) -> Any:
    if flow == "chaos-pod-kill":
        return kube_scenarios.pod_kill(env, params, "run-1")[0]
    if flow == "chaos-db-failure":
        return kube_scenarios.db_port_block(env, params)
    if flow == "chaos-network-latency":
        return kube_scenarios.network_delay(env, params, "run-1")
    return kube_scenarios.io_pressure(env, params, "run-1")


@pytest.mark.parametrize(("flow", "given"), BUILT_INS, ids=ids(BUILT_INS))
def test_every_built_in_selection_passes_against_local_api_stand_in(cluster, flow, given):
    api, env = cluster
    plan = kubernetes_fault(env, flow, params_of(flow, given)).plan()
    assert plan.targets
    assert api.seen("POST") == [] and api.seen("DELETE") == [], "planning changes nothing"


def test_a_user_killing_the_only_provider_without_saying_so_is_refused_against_local_api_stand_in(cluster):
    _api, env = cluster
    for via in ("chaos-mesh", "pod-delete"):
        params = params_of("chaos-pod-kill", {"target": "provider", "via": via})
        with pytest.raises(FullOutageRefused, match=r"Deployment/provider-daemon \(replicas 1, targets 1: "):
            kubernetes_fault(env, "chaos-pod-kill", params).plan()
        allowed = params.model_copy(update={"full_outage": True})
        assert "allowed by full_outage" in kubernetes_fault(env, "chaos-pod-kill", allowed).plan().detail["workloads"]
    with pytest.raises(FullOutageRefused, match=r"StatefulSet/postgres"):
        kubernetes_fault(env, "chaos-db-failure", params_of("chaos-db-failure", {"full_outage": False})).plan()


def test_the_crash_soaks_chaos_mesh_fault_plans_on_its_bare_pods_against_local_api_stand_in():
    from drillbit.selfcheck import build_fault
    from tests.integration.k8s_stand_in import chaos_mesh_stand_in

    with chaos_mesh_stand_in() as k8s:
        plan = build_fault({"fault": "k8s-chaos-mesh", "tag": "t1", "endpoints": {}, "k8s_url": k8s.url}).plan()
    rows = plan.detail["workloads"].split("; ")
    assert rows == [
        f"Pod/node-{i}: up to 1 of 1 live replicas down — full outage of Pod/node-{i} (allowed by full_outage)"
        for i in range(3)
    ]
