"""Chaos Mesh v2 manifests: every builder and every file in infra/chaos-mesh/ conforms to the real CRD schemas
(Chaos Mesh 2.8 ``openAPIV3Schema``); the seed's 1.x YAML is rejected; bad input is a clear error naming the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillbit.faults import disk, memory, network, partition, pod_kill
from drillbit.faults.base import FaultError
from drillbit.faults.platform import chaosmesh as cm

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "chaos-mesh"
NODE = {"app.kubernetes.io/name": "virtengine-node"}
PROVIDER = {"app.kubernetes.io/name": "provider-daemon"}
COMMON = {"namespace": "virtengine", "run_id": "run-2026-01-01T00:00:00Z/1"}


def seed_document() -> str:
    for base in (ROOT.parent / "shared",):
        path = base / "reference" / "virtengine" / "sre__RELIABILITY_TESTING.md"
        if path.is_file():
            return path.read_text()
    pytest.skip("the seed's RELIABILITY_TESTING.md (../shared/reference/virtengine) is not available")


def seed_yaml(filename: str) -> dict[str, Any]:
    """A YAML block of the seed document, found by its ``# chaos/experiments/<filename>`` comment."""
    for block in re.findall(r"```yaml\n(.*?)```", seed_document(), re.S):
        if f"chaos/experiments/{filename}" in block:
            return yaml.safe_load(block)
    raise AssertionError(f"{filename} not found in the seed document")


def built() -> dict[str, dict[str, Any]]:
    kill = pod_kill.pod_kill(labels=NODE, **COMMON)
    return {
        "pod_kill": kill,
        "pod_kill_fixed": pod_kill.pod_kill(labels=NODE, mode="fixed", value=2, grace_period=5, duration=90, **COMMON),
        "network_delay": network.network_delay(
            labels=PROVIDER, latency="100ms", jitter="10ms", correlation=25, duration="10m", **COMMON
        ),
        "network_delay_link": network.network_delay(
            labels=PROVIDER, latency=250, direction="both", target_labels=NODE, target_mode="one", **COMMON
        ),
        "partition": partition.network_partition(
            labels=NODE, mode="fixed-percent", value=34, target_labels=NODE, **COMMON
        ),
        "partition_expr": partition.network_partition(
            labels={"app.kubernetes.io/name": "postgres"},
            target_labels=None,
            target_expressions=[{"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["postgres"]}],
            **COMMON,
        ),
        "stress_memory": memory.stress(labels=NODE, memory_size="1GB", memory_workers=4, **COMMON),
        "stress_cpu": memory.stress(labels=NODE, cpu_workers=2, cpu_load=80, container_names=["node"], **COMMON),
        "io_latency": disk.disk_pressure(labels=NODE, volume_path="/root/.virtengine", percent=50, **COMMON),
        "io_enospc": disk.io_chaos(
            labels=NODE, volume_path="/data", action="fault", errno=28, methods=["write", "create"], **COMMON
        ),
        "schedule": cm.schedule(kill, cron="@every 6h"),
        "schedule_cron": cm.schedule(
            network.network_delay(labels=PROVIDER, **COMMON),
            cron="0 3 * * *",
            history_limit=2,
            starting_deadline_seconds=60,
        ),
    }


BUILT = built()


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_builder_output_conforms_to_the_crd(name):
    manifest = BUILT[name]
    assert cm.schema_errors(manifest) == [] and cm.semantic_errors(manifest) == []
    meta = manifest["metadata"]
    assert manifest["apiVersion"] == "chaos-mesh.org/v1alpha1"
    assert meta["namespace"] == "chaos-testing"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "drillbit",
        "drillbit.io/run-id": "run-2026-01-01T00-00-00Z-1",
    }
    assert meta["name"].startswith("drillbit-") and len(meta["name"]) <= 63
    specs = [s for _, s in cm._spec_parts(manifest)]
    assert specs and all(cm.go_duration(s["duration"]) > 0 for s in specs), "every experiment has a duration"
    assert all(s["selector"]["namespaces"] == ["virtengine"] for s in specs)


def test_names_are_unique_and_the_seed_values_are_kept():
    assert len({m["metadata"]["name"] for m in BUILT.values()}) == len(BUILT)
    delay = BUILT["network_delay"]["spec"]
    assert delay["delay"] == {"latency": "100ms", "jitter": "10ms", "correlation": "25"} and delay["duration"] == "10m"
    sched = BUILT["schedule"]["spec"]
    assert sched["schedule"] == "@every 6h" and sched["type"] == "PodChaos" and sched["concurrencyPolicy"] == "Forbid"
    assert sched["podChaos"] == BUILT["pod_kill"]["spec"]
    assert BUILT["pod_kill_fixed"]["spec"]["value"] == "2" and BUILT["pod_kill_fixed"]["spec"]["duration"] == "90s"
    assert BUILT["network_delay_link"]["spec"]["delay"]["latency"] == "250ms"
    assert BUILT["io_enospc"]["spec"]["errno"] == 28


INFRA_FILES = sorted(p.name for p in INFRA.glob("*.yaml") if p.name != "rbac.yaml")


def test_the_four_experiments_are_there():
    assert INFRA_FILES == ["db-failure.yaml", "disk-pressure.yaml", "network-latency.yaml", "pod-kill.yaml"]


@pytest.mark.parametrize("filename", INFRA_FILES)
def test_every_infra_file_conforms_to_the_crd(filename):
    manifest = yaml.safe_load((INFRA / filename).read_text())
    assert cm.validate(manifest) is manifest
    text = yaml.safe_dump(manifest)  # the content, not the comments
    assert "app: virtengine-node" not in text and "scheduler" not in text
    for _, selector, _, _ in cm.selectors(manifest):
        assert selector["namespaces"] == ["virtengine"]
        assert selector.get("labelSelectors") or selector.get("expressionSelectors")
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "drillbit"


def test_infra_files_use_virtengines_real_labels_and_the_seed_numbers():
    load = {f: yaml.safe_load((INFRA / f).read_text()) for f in INFRA_FILES}
    kill = load["pod-kill.yaml"]
    assert kill["kind"] == "Schedule" and kill["spec"]["schedule"] == "@every 6h"
    assert kill["spec"]["podChaos"]["selector"]["labelSelectors"] == NODE
    latency = load["network-latency.yaml"]["spec"]
    assert latency["selector"]["labelSelectors"] == PROVIDER
    assert latency["delay"] == {"latency": "100ms", "jitter": "10ms", "correlation": "25"}
    assert latency["duration"] == "10m"
    assert load["disk-pressure.yaml"]["kind"] == "IOChaos" and load["disk-pressure.yaml"]["spec"]["duration"] == "30m"
    db = load["db-failure.yaml"]
    assert db["kind"] == "NetworkChaos" and db["spec"]["action"] == "partition" and db["spec"]["direction"] == "both"


def test_rbac_is_namespaced_and_least_privilege():
    docs = list(yaml.safe_load_all((INFRA / "rbac.yaml").read_text()))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount"], "nothing cluster-wide"
    roles = {d["metadata"]["namespace"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert set(roles) == {"chaos-testing", "virtengine"}
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert not {"update", "patch", "deletecollection", "escalate", "bind"} & set(rule["verbs"])
    (chaos,) = roles["chaos-testing"]
    assert chaos["apiGroups"] == ["chaos-mesh.org"]
    assert set(chaos["resources"]) == set(cm.PLURALS.values())
    assert chaos["verbs"] == ["create", "get", "list", "watch", "delete"]
    target = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in roles["virtengine"]}
    assert target[(("",), ("pods",))] == ["get", "list", "watch", "delete"]
    assert target[(("",), ("pods/exec",))] == ["create", "get"]
    assert target[(("apps",), ("replicasets",))] == ["list"], "a pod's workload, for the full-outage rule"
    assert target[(("chaos-mesh.org",), tuple(cm.PLURALS.values()))] == ["create"]
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "drillbit-runner", "namespace": "chaos-testing"}
        ]


# ------------------------------------------------------------------------------------------------ the validator's teeth


def test_the_seed_pod_kill_is_rejected_for_its_1x_scheduler_field():
    seed = seed_yaml("pod-kill.yaml")
    seed["metadata"]["namespace"] = "chaos-testing"  # so the schema is the only objection
    with pytest.raises(FaultError, match=r"spec\.scheduler: unknown field .*Chaos Mesh 1\.x.*Schedule") as err:
        cm.validate(seed)
    assert "virtengine-pod-kill" in str(err.value)


def test_the_seed_network_latency_is_rejected_for_its_scheduler_field():
    seed = seed_yaml("network-latency.yaml")
    assert cm.schema_errors(seed)[0].startswith("spec.scheduler: unknown field")
    del seed["spec"]["scheduler"]
    seed["metadata"]["namespace"] = "chaos-testing"
    assert cm.validate(seed), "without the 1.x field the seed's delay itself is valid v2"


def test_the_seed_disk_pressure_is_rejected_for_its_io_chaos_stressor():
    seed = seed_yaml("disk-pressure.yaml")
    problems = cm.schema_errors(seed)
    assert problems == ["spec.stressors.ioChaos: unknown field (not in the CRD schema) — " + cm._HINTS["ioChaos"]]
    with pytest.raises(FaultError, match=r"metadata\.namespace: give the chaos namespace"):
        cm.validate(seed)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(apiVersion="chaos-mesh.org/v1beta1"), "apiVersion: 'chaos-mesh.org/v1beta1'"),
        (lambda m: m.update(kind="PodChaos2"), "kind: 'PodChaos2' is not one of"),
        (lambda m: m["spec"].update(mode="sometimes"), "spec.mode: 'sometimes' is not one of"),
        (lambda m: m["spec"].update(action="pod-explode"), "spec.action: 'pod-explode' is not one of"),
        (lambda m: m["spec"].update(gracePeriod=-1), "spec.gracePeriod: -1 is less than the minimum of 0"),
        (lambda m: m["spec"].update(gracePeriod=2**63), "spec.gracePeriod: 9223372036854775808 is greater than"),
        (lambda m: m["spec"].pop("selector"), "spec.selector: required field is missing"),
        (lambda m: m["spec"].update(duration="ten minutes"), "spec.duration: 'ten minutes' is not a duration"),
        (lambda m: m["spec"].update(duration="-5m"), "spec.duration: '-5m' is not a duration"),
        (lambda m: m["spec"].update(mode="fixed"), "spec.value: mode fixed needs a whole number value"),
        (lambda m: m["spec"].update(mode="fixed-percent", value="150"), "spec.value: mode fixed-percent needs a perc"),
        (lambda m: m["metadata"].update(name="Pod_Kill"), "metadata.name: 'Pod_Kill' is not a DNS-1123 subdomain"),
        (lambda m: m["metadata"]["labels"].update(bad="no spaces"), "metadata.labels: value 'no spaces' of 'bad'"),
        (lambda m: m["spec"]["selector"].update(namespaces="virtengine"), "spec.selector.namespaces: 'virtengine' is"),
        (lambda m: m.update(status={"experiment": {"desiredPhase": "Dance"}}), "status.experiment.desiredPhase"),
    ],
)
def test_the_validator_names_the_field(mutate, message):
    manifest = pod_kill.pod_kill(labels=NODE, **COMMON)
    mutate(manifest)
    with pytest.raises(FaultError, match=re.escape(message)):
        cm.validate(manifest)


def test_the_validator_checks_network_stress_and_schedule_specifics():
    delay = network.network_delay(labels=PROVIDER, **COMMON)
    delay["spec"]["delay"]["latency"] = "100 ms"
    assert any(p.startswith("spec.delay.latency: '100 ms' does not match") for p in cm.schema_errors(delay))
    delay = network.network_delay(labels=PROVIDER, **COMMON)
    delay["spec"]["direction"] = "sideways"
    assert cm.schema_errors(delay) == ["spec.direction: 'sideways' is not one of ['to', 'from', 'both']"]
    stress = memory.stress(labels=NODE, memory_size="256MB", **COMMON)
    del stress["spec"]["stressors"]
    with pytest.raises(FaultError, match=r"spec\.stressors: missing stressors"):
        cm.validate(stress)
    sched = cm.schedule(pod_kill.pod_kill(labels=NODE, **COMMON), cron="@every 6h")
    for change, message in [
        ({"type": "NetworkChaos"}, "spec.networkChaos: type NetworkChaos needs exactly this embedded spec"),
        ({"historyLimit": 0}, "spec.historyLimit: 0 is less than the minimum of 1"),
        ({"schedule": "every six hours"}, "spec.schedule: 'every six hours' is not a 5-field cron expression"),
        ({"startingDeadlineSeconds": 0}, "spec.startingDeadlineSeconds: 0 is less than or equal to the minimum of 0"),
        ({"concurrencyPolicy": "Replace"}, "spec.concurrencyPolicy: 'Replace' is not one of ['Forbid', 'Allow']"),
    ]:
        broken = sched | {"spec": sched["spec"] | change}
        with pytest.raises(FaultError, match=re.escape(message)):
            cm.validate(broken)
    cm.validate(sched | {"spec": sched["spec"] | {"startingDeadlineSeconds": None}})  # nullable in the CRD


# ------------------------------------------------------------------------------------------------ bad builder input


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: pod_kill.pod_kill(labels={}, **COMMON), "spec.selector.labelSelectors: empty"),
        (lambda: pod_kill.pod_kill(labels=NODE, mode="sometimes", **COMMON), "spec.mode: unknown mode 'sometimes'"),
        (
            lambda: pod_kill.pod_kill(labels=NODE, mode="fixed", value=0, **COMMON),
            "spec.value: mode fixed needs a value ≥ 1",
        ),
        (lambda: pod_kill.pod_kill(labels=NODE, mode="fixed", **COMMON), "spec.value: mode fixed needs a whole number"),
        (
            lambda: pod_kill.pod_kill(labels=NODE, mode="fixed-percent", value=33.3, **COMMON),
            "spec.value: mode fixed-perc",
        ),
        (
            lambda: pod_kill.pod_kill(labels=NODE, duration="ten minutes", **COMMON),
            "spec.duration: 'ten minutes' is not a",
        ),
        (
            lambda: pod_kill.pod_kill(labels=NODE, duration="0s", **COMMON),
            "spec.duration: '0s' must be longer than zero",
        ),
        (lambda: pod_kill.pod_kill(labels=NODE, duration=-3, **COMMON), "spec.duration: -3 seconds must be a positive"),
        (
            lambda: pod_kill.pod_kill(labels=NODE, grace_period=-1, **COMMON),
            "spec.gracePeriod: -1 must be a whole number",
        ),
        (
            lambda: pod_kill.pod_kill(labels={"app": "a b"}, **COMMON),
            "spec.selector.labelSelectors: value 'a b' of 'app'",
        ),
        (
            lambda: pod_kill.pod_kill(labels=NODE, namespace="Virt_Engine", run_id="r"),
            "spec.selector.namespaces: 'Virt_E",
        ),
        (lambda: pod_kill.pod_kill(labels=NODE, namespace="virtengine", run_id=""), "run_id: every Drillbit manifest"),
        (
            lambda: network.network_delay(labels=PROVIDER, latency="100 ms", **COMMON),
            "spec.delay.latency: '100 ms' is not",
        ),
        (
            lambda: network.network_delay(labels=PROVIDER, correlation=150, **COMMON),
            "spec.delay.correlation: 150 must be",
        ),
        (
            lambda: network.network_delay(labels=PROVIDER, direction="sideways", **COMMON),
            "spec.direction: unknown direc",
        ),
        (
            lambda: network.network_delay(labels=PROVIDER, direction="both", **COMMON),
            "spec.target: direction both needs",
        ),
        (
            lambda: partition.network_partition(labels=NODE, target_labels={}, **COMMON),
            "spec.target.selector.labelSelectors",
        ),
        (
            lambda: partition.network_partition(
                labels=NODE, target_labels=None, target_expressions=[{"key": "a", "operator": "In"}], **COMMON
            ),
            "spec.target.selector.expressionSelectors[0]: operator In needs values",
        ),
        (lambda: memory.stress(labels=NODE, **COMMON), "spec.stressors: give memory_size and/or cpu_workers"),
        (lambda: memory.stress(labels=NODE, memory_size="lots", **COMMON), "spec.stressors.memory.size: 'lots' is not"),
        (lambda: memory.stress(labels=NODE, cpu_workers=0, **COMMON), "spec.stressors.cpu.workers: 0 must be a whole"),
        (lambda: memory.stress(labels=NODE, cpu_workers=1, cpu_load=101, **COMMON), "spec.stressors.cpu.load: 101"),
        (lambda: disk.io_chaos(labels=NODE, volume_path="data", **COMMON), "spec.volumePath: 'data' must be the abs"),
        (lambda: disk.io_chaos(labels=NODE, volume_path="/d", action="fault", **COMMON), "spec.errno: action fault"),
        (lambda: disk.io_chaos(labels=NODE, volume_path="/d", action="mistake", **COMMON), "spec.action: 'mistake'"),
        (lambda: disk.io_chaos(labels=NODE, volume_path="/d", methods=["explode"], **COMMON), "spec.methods: unknown"),
        (lambda: disk.io_chaos(labels=NODE, volume_path="/d", percent=0, **COMMON), "spec.percent: 0 must be a whole"),
        (lambda: cm.schedule(BUILT["pod_kill"], cron="every six hours"), "spec.schedule: 'every six hours' is not a"),
        (lambda: cm.schedule(BUILT["pod_kill"], cron="@every soon"), "spec.schedule: 'soon' is not a duration"),
        (lambda: cm.schedule(BUILT["pod_kill"], cron="@fortnightly"), "spec.schedule: unknown descriptor"),
        (lambda: cm.schedule(BUILT["schedule"], cron="@daily"), "chaos.kind: 'Schedule' cannot be scheduled here"),
        (lambda: cm.schedule(BUILT["pod_kill"], cron="@daily", history_limit=0), "spec.historyLimit: 0 must be"),
        (lambda: cm.schedule(BUILT["pod_kill"], cron="@daily", concurrency_policy="Replace"), "spec.concurrencyPo"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_field(build, message):
    with pytest.raises(FaultError, match=re.escape(message)):
        build()


# ------------------------------------------------------------------------------------------------ OpenAPI → JSON Schema


def test_openapi_conversion_rules():
    node = {
        "type": "object",
        "description": "dropped",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "description": {"type": "string"},  # a field named like a keyword is kept
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "size": {"x-kubernetes-int-or-string": True},
            "seconds": {"type": "integer", "format": "int64", "minimum": 0, "exclusiveMinimum": True, "nullable": True},
            "count": {"type": "integer", "format": "int32"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
            "mode": {"type": "string", "enum": ["a"], "nullable": True},
        },
    }
    out = cm.to_json_schema(node)
    assert "description" not in out and "x-kubernetes-map-type" not in out
    assert out["additionalProperties"] is False
    props = out["properties"]
    assert props["description"] == {"type": "string"}
    assert props["size"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert props["seconds"] == {
        "type": ["integer", "null"],
        "format": "int64",  # an annotation in JSON Schema; the bounds do the checking
        "exclusiveMinimum": 0,
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
    }
    assert props["count"]["maximum"] == 2**31 - 1
    assert "additionalProperties" not in props["free"]
    assert props["mode"] == {"type": ["string", "null"], "enum": ["a", None]}


@pytest.mark.parametrize("kind", ["PodChaos", "NetworkChaos", "StressChaos", "IOChaos"])
def test_converted_crd_schemas_are_valid_json_schema(kind):
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(cm._validator(kind).schema)
