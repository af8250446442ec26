"""``drillbit validate --env NAME``'s cluster checks, against the LOCAL KUBERNETES API STAND-IN of the driver's request
tests (tests/unit/test_kubernetes_driver_requests.py: canned answers in the API's shapes) — not a cluster. Every
pod selection of every object must find its namespaces, select at least one pod, name containers those pods have,
and (IOChaos) a volumePath that is a mountPath in them. What this does not show: that a real API server lists pods
the same way (field and node selectors are not applied here, and a real server's label matching is the reference).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from drillbit import manifests
from drillbit.faults.base import FaultError
from drillbit.faults.platform.kubernetes import KubeConnection
from tests.unit.test_chaosmesh_webhook import DELAY, obj, schedule, serial, workflow
from tests.unit.test_kubernetes_driver_requests import Handler, LocalApiStandIn, pod, serve

NODE = {"app.kubernetes.io/name": "virtengine-node", "app.kubernetes.io/component": "blockchain"}
NODE_SELECTOR = {"namespaces": ["virtengine"], "labelSelectors": {"app.kubernetes.io/name": "virtengine-node"}}
DATA = "/root/.virtengine"
runner = CliRunner()


def workload(name: str, labels: dict[str, str], namespace: str = "virtengine", **containers: list[str]) -> dict:
    """A pod of the stand-in with containers (name → mount paths of its volumes)."""
    out = pod(name, labels, f"uid-{name}")
    out["metadata"]["namespace"] = namespace
    out["spec"] = {
        "containers": [
            {"name": c, "image": "x:1", "volumeMounts": [{"name": f"v{i}", "mountPath": m} for i, m in enumerate(ms)]}
            for c, ms in containers.items()
        ]
    }
    return out


@pytest.fixture
def api():
    stand_in = LocalApiStandIn(namespaces=["virtengine", "data", "chaos-testing"])
    for i in range(2):
        stand_in.pods[f"node-{i}"] = workload(f"node-{i}", NODE, node=[DATA], exporter=[])
    stand_in.pods["api-0"] = workload("api-0", {"app.kubernetes.io/name": "virtengine-api"}, api=["/cache"])
    stand_in.pods["postgres-0"] = workload("postgres-0", {"app.kubernetes.io/name": "postgres"}, "data", pg=["/pg"])
    with serve(type("BoundHandler", (Handler,), {"api": stand_in})) as url:
        stand_in.url = url
        yield stand_in


def check(api: LocalApiStandIn, tmp_path: Path, *documents: dict[str, Any]) -> list[tuple[int, str, str, bool]]:
    """(document, field, reason, note) of what the offline and the cluster checks find in ``documents``."""
    path = tmp_path / "chaos.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    report = manifests.validate_paths([path])
    manifests.check_cluster(report, KubeConnection(host=api.url))
    return [(p.document, p.field, p.reason, p.note) for p in report.problems]


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill(selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return obj("PodChaos", {"action": "pod-kill", "mode": "one", "selector": selector} | spec)


def io(volume: str, **spec: Any) -> dict[str, Any]:
    base = {"action": "latency", "mode": "one", "selector": NODE_SELECTOR, "volumePath": volume, "delay": "10ms"}
    return obj("IOChaos", base | spec)


def test_selections_that_find_their_pods_containers_and_volume_pass_against_the_api_stand_in(api, tmp_path):
    found = check(
        api,
        tmp_path,
        kill(NODE_SELECTOR),
        kill(NODE_SELECTOR, action="container-kill", containerNames=["exporter"]),
        io(DATA, containerNames=["node"]),
        io(DATA),  # no containerNames: Chaos Mesh injects into the first container, node
        obj(
            "NetworkChaos",
            DELAY | {"direction": "both"} | {"target": {"mode": "all", "selector": {"namespaces": ["data"]}}},
        ),
    )
    assert found == []
    assert api.seen("GET", "/api/v1/namespaces/virtengine")[0].path == "/api/v1/namespaces/virtengine"
    listings = api.seen("GET", "/api/v1/namespaces/virtengine/pods")
    assert {r.query["labelSelector"][0] for r in listings} == {"app.kubernetes.io/name=virtengine-node"}
    assert len(listings) == 1, "each namespace and selector is listed once"


def test_a_selector_that_selects_no_pod_is_a_problem_against_the_api_stand_in(api, tmp_path):
    selector = {"namespaces": ["virtengine"], "labelSelectors": {"app.kubernetes.io/name": "virtengine-nod"}}
    assert check(api, tmp_path, kill(selector)) == [
        (
            0,
            "spec.selector",
            "selects no pod (namespaces virtengine; labels 'app.kubernetes.io/name=virtengine-nod')",
            False,
        )
    ]


def test_a_namespace_that_does_not_exist_is_a_problem_against_the_api_stand_in(api, tmp_path):
    selector = NODE_SELECTOR | {"namespaces": ["virtengine", "staging"]}
    assert check(api, tmp_path, kill(selector)) == [
        (0, "spec.selector.namespaces[1]", "namespace staging does not exist", False)
    ]


def test_a_selector_without_namespaces_selects_in_the_objects_own_namespace_against_the_api_stand_in(api, tmp_path):
    selector = {"labelSelectors": {"app.kubernetes.io/name": "virtengine-node"}}
    ((_, field, reason, _),) = check(api, tmp_path, kill(selector))
    assert field == "spec.selector"
    assert reason == "selects no pod (namespaces chaos-testing; labels 'app.kubernetes.io/name=virtengine-node')"


COMPONENT = "app.kubernetes.io/component"


@pytest.mark.parametrize(
    ("operator", "values", "sent", "selected"),
    [
        ("In", ["virtengine-api", "postgres"], "app.kubernetes.io/name in (virtengine-api,postgres)", ["api-0"]),
        ("NotIn", ["virtengine-node"], "app.kubernetes.io/name notin (virtengine-node)", ["api-0"]),
        (
            "NotIn",
            ["virtengine-node", "virtengine-api"],
            "app.kubernetes.io/name notin (virtengine-node,virtengine-api)",
            [],
        ),
        ("Exists", None, COMPONENT, ["node-0", "node-1"]),
        ("DoesNotExist", None, f"!{COMPONENT}", ["api-0"]),
    ],
)
def test_expression_selectors_are_sent_as_label_selectors_against_the_api_stand_in(
    api, tmp_path, operator, values, sent, selected
):
    key = COMPONENT if operator in ("Exists", "DoesNotExist") else "app.kubernetes.io/name"
    expression = {"key": key, "operator": operator} | ({"values": values} if values else {})
    selector = {"namespaces": ["virtengine"], "expressionSelectors": [expression]}
    selection = manifests.Selection("spec.selector", selector, ["api", "node"], "spec.containerNames", None, "")
    view = manifests.ClusterView(KubeConnection(host=api.url))
    found = manifests.selection_problems(selection, view, "chaos-testing")
    assert api.seen("GET", "/api/v1/namespaces/virtengine/pods")[0].query["labelSelector"] == [sent]
    if not selected:
        assert found == [("spec.selector", f"selects no pod (namespaces virtengine; labels {sent!r})")]
    else:  # every selected pod lacks one of the two containers: the problem names exactly the selected pods
        assert len(found) == 1 and f"in {len(selected)} of {len(selected)} selected pods" in found[0][1]
        assert all(f"virtengine/{name}" in found[0][1] for name in selected)


def test_annotation_and_phase_selectors_narrow_the_listed_pods_against_the_api_stand_in(api, tmp_path):
    api.pods["node-1"]["metadata"]["annotations"] = {"drillbit.io/victim": "yes"}
    assert check(api, tmp_path, kill(NODE_SELECTOR | {"annotationSelectors": {"drillbit.io/victim": "yes"}})) == []
    assert check(api, tmp_path, kill(NODE_SELECTOR | {"podPhaseSelectors": ["Pending"]}))[0][1] == "spec.selector"


def test_named_containers_missing_from_the_selected_pods_are_problems_against_the_api_stand_in(api, tmp_path):
    found = check(api, tmp_path, kill(NODE_SELECTOR, action="container-kill", containerNames=["node", "nodee"]))
    assert found == [
        (
            0,
            "spec.containerNames[1]",
            "no container 'nodee' in 2 of 2 selected pods (virtengine/node-0, virtengine/node-1); their containers: "
            "exporter, node",
            False,
        )
    ]


def test_an_io_chaos_volume_path_that_is_no_mount_path_is_a_problem_against_the_api_stand_in(api, tmp_path):
    found = check(api, tmp_path, io("/data"), io(DATA, containerNames=["exporter"]))
    assert found == [
        (
            0,
            "spec.volumePath",
            "'/data' is not the mountPath of a volume in 2 of 2 selected pods (virtengine/node-0, virtengine/node-1); "
            "mounted there: /root/.virtengine",
            False,
        ),
        (
            1,
            "spec.volumePath",
            "'/root/.virtengine' is not the mountPath of a volume in 2 of 2 selected pods (virtengine/node-0, "
            "virtengine/node-1); mounted there: nothing",
            False,
        ),
    ]


def test_explicit_pods_must_exist_against_the_api_stand_in(api, tmp_path):
    found = check(api, tmp_path, kill({"pods": {"virtengine": ["node-0", "node-9"], "gone": ["x"]}}))
    assert [(f, r) for _, f, r, _ in found] == [
        ("spec.selector.pods.gone", "namespace gone does not exist"),
        ("spec.selector.pods.virtengine[1]", "pod virtengine/node-9 does not exist"),
    ]


def test_embedded_and_target_selections_are_checked_where_they_are_against_the_api_stand_in(api, tmp_path):
    nobody = {"namespaces": ["virtengine"], "labelSelectors": {"app": "nobody"}}
    target = {"mode": "all", "selector": {"namespaces": ["data"], "labelSelectors": {"app": "nobody"}}}
    chaos = {"action": "pod-kill", "mode": "one", "selector": nobody}
    found = check(
        api,
        tmp_path,
        schedule("PodChaos", "podChaos", chaos),
        workflow(serial("kill"), {"name": "kill", "templateType": "PodChaos", "deadline": "1m", "podChaos": chaos}),
        obj("NetworkChaos", DELAY | {"direction": "both", "target": target}),
    )
    assert [(d, f) for d, f, _, _ in found] == [
        (0, "spec.podChaos.selector"),
        (1, "spec.templates[1].podChaos.selector"),
        (2, "spec.target.selector"),
    ]


def test_objects_with_offline_problems_are_not_checked_against_the_api_stand_in(api, tmp_path):
    broken = kill({"namespaces": ["staging"]}, action="container-kill")
    assert check(api, tmp_path, broken) == [
        (0, "spec.containerNames", "the name of container is required on container-kill action", False),
        (0, "(top level)", "not checked against the cluster: fix its problems first", True),
    ]
    assert api.seen("GET", "/api/v1/namespaces") == []


def test_an_unreachable_api_server_is_a_fault_error():
    port = closed_port()
    report = manifests.Report(objects=[manifests.ChaosObject("f", 0, "PodChaos", "x", kill(NODE_SELECTOR), True)])
    with pytest.raises(FaultError, match=r"cannot reach the API server to read namespace virtengine"):
        manifests.check_cluster(report, KubeConnection(host=f"http://127.0.0.1:{port}"))


# ------------------------------------------------------------------------------------------------ the command


# No current-context: the environment's kubernetes.context must pick the stand-in's context.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: api-stand-in, cluster: {server: "SERVER"}}]
users: [{name: anonymous, user: {}}]
contexts: [{name: elsewhere, context: {cluster: nowhere, user: anonymous}},
           {name: validate-stand-in, context: {cluster: api-stand-in, user: anonymous}}]
"""


@pytest.fixture
def environment(api, tmp_path, monkeypatch):
    """A drillbit.yaml whose environment "cluster" (platform kubernetes) names the kubeconfig context of the
    stand-in; $KUBECONFIG points at that kubeconfig."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.replace("SERVER", api.url))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    endpoints = {"node_rpc": "http://127.0.0.1:1", "node_rest": "http://127.0.0.1:1"}  # never called by validate
    cluster = {"platform": "kubernetes", "endpoints": endpoints, "kubernetes": {"context": "validate-stand-in"}}
    config = tmp_path / "drillbit.yaml"
    config.write_text(yaml.safe_dump({"default_environment": "cluster", "environments": {"cluster": cluster}}))
    return config


def test_the_command_with_env_reports_cluster_problems_and_exits_1_against_the_api_stand_in(api, environment, tmp_path):
    path = tmp_path / "manifests" / "kill.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump_all([kill(NODE_SELECTOR), kill(NODE_SELECTOR | {"namespaces": ["staging"]})]))
    result = runner.invoke(app, ["validate", str(path.parent), "--env", "cluster", "--config", str(environment)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"{path}#1 PodChaos/exp spec.selector.namespaces[0]: namespace staging does not exist",
        "1 problem: 2 Chaos Mesh objects checked in 2 documents of 1 file",
    ]
    assert api.seen("GET", "/api/v1/namespaces/staging"), "the kubeconfig context led to the stand-in"


def test_the_command_with_env_exits_0_when_the_cluster_has_what_the_manifests_select_against_the_api_stand_in(
    api, environment, tmp_path
):
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(kill(NODE_SELECTOR, action="container-kill", containerNames=["node"])))
    result = runner.invoke(app, ["validate", str(path), "--env", "cluster", "--config", str(environment)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["no problems: 1 Chaos Mesh object checked in 1 document of 1 file"]


def test_the_command_with_env_is_exit_2_when_the_api_server_is_unreachable(environment, tmp_path):
    port = closed_port()
    (environment.parent / "kubeconfig").write_text(KUBECONFIG.replace("SERVER", f"http://127.0.0.1:{port}"))
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(kill(NODE_SELECTOR)))
    result = runner.invoke(app, ["validate", str(path), "--env", "cluster", "--config", str(environment)])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith("error: cannot reach the API server to read namespace virtengine")
    assert result.output.count("error:") == 1 and "Traceback" not in result.output  # one message (rich may wrap it)
