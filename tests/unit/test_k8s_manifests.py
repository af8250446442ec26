"""infra/k8s (the DR rebuild's infrastructure as code): rendered by the real kustomize and checked against the
Kubernetes API models of the ``kubernetes`` client — every object deserialises, every key is a known field at every
depth, selectors, ports, ConfigMaps, Secrets and images hang together, and Drillbit's selectors find the workloads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from drillbit.config import KubernetesTarget

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
WORKLOADS = ("Deployment", "StatefulSet")
DOCUMENTED_SECRETS = {"virtengine-backup-s3", "virtengine-postgres"}  # README.md: created by the operator
PRIMITIVES = {"str", "int", "bool", "float", "object", "datetime", "date"}


def render() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def model_name(doc: dict[str, Any]) -> str:
    version = doc["apiVersion"].rsplit("/", 1)[-1]
    return f"{version.capitalize()}{doc['kind']}"


def unknown_fields(data: Any, type_name: str, path: str) -> list[str]:
    """Keys that are not fields of the model (recursively through lists, maps and nested models)."""
    if type_name in PRIMITIVES or data is None:
        return []
    if m := re.fullmatch(r"list\[(.+)\]", type_name, re.I):
        return [p for i, item in enumerate(data) for p in unknown_fields(item, m.group(1), f"{path}[{i}]")]
    if m := re.fullmatch(r"dict(?:\(|\[)str, (.+)(?:\)|\])", type_name, re.I):
        return [p for k, v in data.items() for p in unknown_fields(v, m.group(1), f"{path}.{k}")]
    cls = getattr(kubernetes.client, type_name)
    by_json = {v: k for k, v in cls.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in by_json:
            problems.append(f"{path}.{key}")
        else:
            problems += unknown_fields(value, cls.openapi_types[by_json[key]], f"{path}.{key}")
    return problems


def validate(doc: dict[str, Any]) -> list[str]:
    name = model_name(doc)
    where = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
    if not hasattr(kubernetes.client, name):
        return [f"{where}: no Kubernetes model {name} for {doc['apiVersion']} {doc['kind']}"]
    try:
        getattr(kubernetes.client, name).from_dict(doc)  # the model's own validation: types, required fields
    except (ValueError, TypeError) as exc:
        return [f"{where}: {' '.join(str(exc).split())}"]
    return [f"{where}: unknown field {p}" for p in unknown_fields(doc, name, "")]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(owner, pod template) of every workload and CronJob."""
    out = []
    for d in docs:
        if d["kind"] in WORKLOADS:
            out.append((d, d["spec"]["template"]))
        elif d["kind"] == "CronJob":
            out.append((d, d["spec"]["jobTemplate"]["spec"]["template"]))
    return out


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------------------------------------------- tests


def test_every_object_is_a_valid_kubernetes_object_with_only_known_fields():
    docs = render()
    assert len(docs) >= 20
    problems = [p for d in docs for p in validate(d)]
    assert problems == []
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Deployment", "Service", "CronJob", "ConfigMap", "PodDisruptionBudget"} <= kinds


def test_the_validator_catches_a_misspelt_field_and_a_missing_required_one():
    docs = render()
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    typo = json.loads(json.dumps(sts))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert validate(typo) == [
        f"StatefulSet/{sts['metadata']['name']}: unknown field .spec.template.spec.containers[0].imagePullPolice"
    ]
    missing = json.loads(json.dumps(sts))
    del missing["spec"]["template"]["spec"]["containers"][0]["name"]
    assert "V1Container name Input should be a valid string" in validate(missing)[0]


def test_selectors_services_config_and_images_hang_together():
    docs = render()
    pods = pod_specs(docs)
    for owner, template in pods:
        labels = template["metadata"]["labels"]
        if owner["kind"] in WORKLOADS:
            assert matches(owner["spec"]["selector"]["matchLabels"], labels), owner["metadata"]["name"]
        for c in template["spec"].get("containers", []) + template["spec"].get("initContainers", []):
            assert re.search(r":[\w.\-]+$", c["image"]) and not c["image"].endswith(":latest"), c["image"]
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    text = json.dumps([t for _, t in pods])
    assert set(re.findall(r'"configMapRef": \{"name": "([^"]+)"', text)) <= configmaps
    assert set(re.findall(r'"configMap": \{"name": "([^"]+)"', text)) <= configmaps
    secrets = set(re.findall(r'"(?:secretRef|secretKeyRef)": \{"name": "([^"]+)"', text))
    secrets |= set(re.findall(r'"(?:secretKeyRef)": \{"key": "[^"]+", "name": "([^"]+)"', text))
    assert secrets and secrets <= DOCUMENTED_SECRETS
    for svc in (d for d in docs if d["kind"] == "Service"):
        selected = [t for _, t in pods if matches(svc["spec"]["selector"], t["metadata"]["labels"])]
        assert selected, f"Service {svc['metadata']['name']} selects no pod"
        port_names = {p["name"] for t in selected for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in port_names, (svc["metadata"]["name"], p)
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"virtengine"}


def test_drillbits_selectors_find_the_workloads_and_the_database_service_selects_only_the_primary():
    docs = render()
    pods = [t["metadata"]["labels"] for o, t in pod_specs(docs) if o["kind"] in WORKLOADS]
    for role, selector in KubernetesTarget().selectors.items():
        assert any(matches(selector, labels) for labels in pods), role
    db = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "postgres")
    primaries = [labels for labels in pods if matches(db["spec"]["selector"], labels)]
    assert [p["app.kubernetes.io/instance"] for p in primaries] == ["postgres-0"]
