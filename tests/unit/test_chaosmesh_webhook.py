"""Chaos Mesh v2 objects of every kind in the shared schemas, checked as the API server would: the CRD schema, the
admission webhook's rules (drillbit/faults/platform/chaosmesh_webhook.py, read from Chaos Mesh's api/v1alpha1 source),
and what Chaos Mesh refuses later or Drillbit refuses (``chaosmesh.beyond_webhook``). Each refused case names the
field path and the reason; a valid example of every kind passes; malformed shapes are problems, never crashes. The Go
parsers the webhook calls are mirrored and checked on their edge cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drillbit.faults.base import FaultError
from drillbit.faults.platform import chaosmesh as cm
from drillbit.faults.platform import chaosmesh_webhook as webhook

SEL = {"namespaces": ["virtengine"], "labelSelectors": {"app.kubernetes.io/name": "virtengine-node"}}
POD_KILL = {"action": "pod-kill", "mode": "one", "selector": SEL}
DELAY = {"action": "delay", "mode": "one", "selector": SEL, "delay": {"latency": "100ms", "jitter": "10ms"}}
ONE = {"mode": "one", "selector": SEL}
EVERY_10M = {"schedule": "@every 10m", "type": "PodChaos", "concurrencyPolicy": "Forbid", "podChaos": POD_KILL}
STATUS = {"type": "HTTP", "http": {"url": "http://api.virtengine:8080/health", "criteria": {"statusCode": "200-299"}}}


def obj(kind: str, spec: Any, name: str = "exp") -> dict[str, Any]:
    meta = {"name": name, "namespace": "chaos-testing"}
    return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind, "metadata": meta, "spec": copy.deepcopy(spec)}


def schedule(kind: str, field: str, spec: dict[str, Any], cron: str = "@every 6h") -> dict[str, Any]:
    return obj(
        "Schedule", {"schedule": cron, "type": kind, "historyLimit": 2, "concurrencyPolicy": "Forbid", field: spec}
    )


def workflow(*templates: dict[str, Any], entry: str = "main") -> dict[str, Any]:
    return obj("Workflow", {"entry": entry, "templates": list(templates)})


def serial(*children: str) -> dict[str, Any]:
    return {"name": "main", "templateType": "Serial", "deadline": "10m", "children": list(children)}


def kill_template(**extra: Any) -> dict[str, Any]:
    return {"name": "kill", "templateType": "PodChaos", "deadline": "1m", "podChaos": POD_KILL} | extra


VALID = {
    "PodChaos pod-kill": obj("PodChaos", POD_KILL | {"duration": "30s", "gracePeriod": 0}),
    "PodChaos container-kill": obj("PodChaos", POD_KILL | {"action": "container-kill", "containerNames": ["node"]}),
    "PodChaos pod-failure fixed 2": obj(
        "PodChaos", POD_KILL | {"action": "pod-failure", "mode": "fixed", "value": "2"}
    ),
    "NetworkChaos delay": obj("NetworkChaos", DELAY | {"duration": "10m"}),
    "NetworkChaos delay with reorder": obj(
        "NetworkChaos",
        DELAY | {"delay": {"latency": "1.5s", "correlation": "25", "reorder": {"reorder": "10", "gap": 5}}},
    ),
    "NetworkChaos loss": obj("NetworkChaos", ONE | {"action": "loss", "loss": {"loss": "12.5", "correlation": "25"}}),
    "NetworkChaos bandwidth": obj(
        "NetworkChaos",
        ONE | {"action": "bandwidth", "bandwidth": {"rate": "1mbps", "limit": 20971520, "buffer": 10000}},
    ),
    "NetworkChaos partition both": obj(
        "NetworkChaos",
        {"action": "partition", "mode": "all", "selector": SEL, "direction": "both"}
        | {"target": {"mode": "fixed-percent", "value": "50", "selector": SEL}},
    ),
    "StressChaos memory 256MB": obj(
        "StressChaos", {"mode": "one", "selector": SEL, "stressors": {"memory": {"workers": 2, "size": "256MB"}}}
    ),
    "StressChaos memory 25% and cpu": obj(
        "StressChaos",
        ONE | {"stressors": {"memory": {"workers": 1, "size": "25%"}, "cpu": {"workers": 2, "load": 80}}},
    ),
    "StressChaos stress-ng": obj("StressChaos", {"mode": "one", "selector": SEL, "stressngStressors": "--cpu 1"}),
    "IOChaos latency": obj(
        "IOChaos",
        {"action": "latency", "mode": "one", "selector": SEL, "volumePath": "/data", "delay": "100ms", "percent": 50},
    ),
    "IOChaos fault ENOSPC": obj(
        "IOChaos",
        {"action": "fault", "mode": "one", "selector": SEL, "volumePath": "/data", "errno": 28, "methods": ["write"]},
    ),
    "TimeChaos": obj(
        "TimeChaos", {"mode": "one", "selector": SEL, "timeOffset": "-10m", "clockIds": ["CLOCK_REALTIME"]}
    ),
    "DNSChaos": obj(
        "DNSChaos",
        {"action": "error", "mode": "all", "selector": SEL, "patterns": ["google.com", "github.*", "chaos-mes?.org"]},
    ),
    "HTTPChaos": obj(
        "HTTPChaos",
        {"mode": "all", "selector": SEL, "target": "Request", "port": 8080, "method": "GET", "path": "/api/*"}
        | {"delay": "2s", "duration": "5m"},
    ),
    "StatusCheck": obj("StatusCheck", STATUS | {"duration": "5m", "intervalSeconds": 5}),
    "Schedule cron of PodChaos": schedule("PodChaos", "podChaos", POD_KILL | {"duration": "30s"}, "0 */6 * * *"),
    "Schedule with seconds and a zone of TimeChaos": schedule(
        "TimeChaos", "timeChaos", {"mode": "one", "selector": SEL, "timeOffset": "1h"}, "CRON_TZ=UTC 30 0 3 * * mon-fri"
    ),
    "Schedule of a Workflow": schedule(
        "Workflow", "workflow", {"entry": "main", "templates": [serial("kill"), kill_template()]}, "@daily"
    ),
    "Workflow of every template type": workflow(
        serial("kill", "pause", "both", "every", "check"),
        kill_template(),
        {"name": "pause", "templateType": "Suspend", "deadline": "30s"},
        {"name": "both", "templateType": "Parallel", "children": ["net"]},
        {"name": "net", "templateType": "NetworkChaos", "deadline": "2m", "networkChaos": DELAY},
        {"name": "every", "templateType": "Schedule", "deadline": "1h", "schedule": EVERY_10M},
        {"name": "check", "templateType": "StatusCheck", "deadline": "5m", "statusCheck": STATUS},
    ),
}


def test_there_is_a_valid_example_of_every_kind_in_the_shared_schemas():
    assert {m["kind"] for m in VALID.values()} == set(cm.KINDS)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples_of_every_kind_are_accepted(name):
    manifest = VALID[name]
    assert cm.problems(manifest) == []
    assert cm.validate(manifest) is manifest


# (manifest, field path, reason fragment): each refused for exactly this one problem
REFUSED = {
    # podchaos_webhook.go
    "container-kill without containerNames": (
        obj("PodChaos", POD_KILL | {"action": "container-kill"}),
        "spec.containerNames",
        "the name of container is required on container-kill action",
    ),
    # common_webhook.go: PodSelector.Validate, Duration.Validate
    "mode fixed with a word": (
        obj("PodChaos", POD_KILL | {"mode": "fixed", "value": "two"}),
        "spec.value",
        "mode fixed needs a whole number value (a number of pods, as a string), got 'two'",
    ),
    "mode fixed 0": (obj("PodChaos", POD_KILL | {"mode": "fixed", "value": "0"}), "spec.value", "value ≥ 1"),
    "mode random-max-percent 0": (
        obj("PodChaos", POD_KILL | {"mode": "random-max-percent", "value": "0"}),
        "spec.value",
        "mode random-max-percent needs a percentage within 1..100, got 0",
    ),
    "target mode fixed-percent 101": (
        obj("NetworkChaos", DELAY | {"direction": "both", "target": ONE | {"mode": "fixed-percent", "value": "101"}}),
        "spec.target.value",
        "needs a percentage within 1..100, got 101",
    ),
    "duration in days": (
        obj("PodChaos", POD_KILL | {"duration": "1d"}),
        "spec.duration",
        '\'1d\' is not a duration (time: unknown unit "d" in duration "1d")',
    ),
    # networkchaos_types.go FloatStr, networkchaos_webhook.go Rate and NetworkChaosSpec.Validate
    "loss ten": (
        obj("NetworkChaos", DELAY | {"action": "loss", "loss": {"loss": "ten"}}),
        "spec.loss.loss",
        "'ten' is not a number (strconv.ParseFloat: parsing \"ten\": invalid syntax)",
    ),
    "correlation abc": (
        obj("NetworkChaos", DELAY | {"delay": {"latency": "10ms", "correlation": "abc"}}),
        "spec.delay.correlation",
        "'abc' is not a number",
    ),
    "duplicate beyond float32 (a number Go cannot read as a float32)": (
        obj("NetworkChaos", DELAY | {"action": "duplicate", "duplicate": {"duplicate": "1e39"}}),
        "spec.duplicate.duplicate",
        "value out of range",
    ),
    "reorder correlation x": (
        obj(
            "NetworkChaos",
            DELAY | {"delay": {"latency": "1s", "reorder": {"reorder": "5", "correlation": "x", "gap": 1}}},
        ),
        "spec.delay.reorder.correlation",
        "'x' is not a number",
    ),
    "bandwidth rate fast": (
        obj("NetworkChaos", DELAY | {"action": "bandwidth", "bandwidth": {"rate": "fast", "limit": 1, "buffer": 1}}),
        "spec.bandwidth.rate",
        "'fast' is not a rate (invalid unit)",
    ),
    "bandwidth rate 1.5mbps": (
        obj("NetworkChaos", DELAY | {"action": "bandwidth", "bandwidth": {"rate": "1.5mbps", "limit": 1, "buffer": 1}}),
        "spec.bandwidth.rate",
        'strconv.ParseUint: parsing "1.5": invalid syntax',
    ),
    "direction both without target": (
        obj("NetworkChaos", DELAY | {"direction": "both"}),
        "spec.direction",
        "direction both cannot be used when target is empty",
    ),
    "direction from with external targets": (
        obj(
            "NetworkChaos",
            DELAY | {"direction": "from", "externalTargets": ["1.1.1.1"], "target": ONE},
        ),
        "spec.direction",
        "external targets cannot be used with `from` and `both`",
    ),
    "loss 150 percent": (
        obj("NetworkChaos", DELAY | {"action": "loss", "loss": {"loss": "150"}}),
        "spec.loss.loss",
        "'150' must be within 0..100",
    ),
    "action loss without loss": (
        obj("NetworkChaos", DELAY | {"action": "loss"}),
        "spec.loss",
        "action loss needs a loss block",
    ),
    "jitter without unit (CRD pattern)": (
        obj("NetworkChaos", DELAY | {"delay": {"latency": "10ms", "jitter": "5"}}),
        "spec.delay.jitter",
        "'5' does not match",
    ),
    # stresschaos_webhook.go
    "memory size lots": (
        obj("StressChaos", {"mode": "one", "selector": SEL, "stressors": {"memory": {"workers": 1, "size": "lots"}}}),
        "spec.stressors.memory.size",
        "'lots' is not a size (incorrect bytes format: invalid size: 'lots')",
    ),
    "memory size 150%": (
        obj("StressChaos", {"mode": "one", "selector": SEL, "stressors": {"memory": {"workers": 1, "size": "150%"}}}),
        "spec.stressors.memory.size",
        "illegal proportion",
    ),
    "memory size 10XB": (
        obj("StressChaos", {"mode": "one", "selector": SEL, "stressors": {"memory": {"workers": 1, "size": "10XB"}}}),
        "spec.stressors.memory.size",
        "invalid suffix: 'xb'",
    ),
    "cpu workers 0": (
        obj("StressChaos", {"mode": "one", "selector": SEL, "stressors": {"cpu": {"workers": 0}}}),
        "spec.stressors.cpu.workers",
        "0 workers: give at least 1",
    ),
    "no stressors": (
        obj("StressChaos", {"mode": "one", "selector": SEL}),
        "spec.stressors",
        "missing stressors (cpu and/or memory, or stressngStressors)",
    ),
    "empty stressors": (
        obj("StressChaos", {"mode": "one", "selector": SEL, "stressors": {}}),
        "spec.stressors",
        "missing stressors: give cpu and/or memory",
    ),
    # timechaos_webhook.go, and the clock ids Chaos Mesh knows when injecting
    "timeOffset ten minutes": (
        obj("TimeChaos", {"mode": "one", "selector": SEL, "timeOffset": "ten minutes"}),
        "spec.timeOffset",
        "'ten minutes' is not a time offset",
    ),
    "unknown clock id": (
        obj("TimeChaos", {"mode": "one", "selector": SEL, "timeOffset": "1h", "clockIds": ["CLOCK_WALL"]}),
        "spec.clockIds[0]",
        "unknown clock id 'CLOCK_WALL'",
    ),
    # DNSChaos: the CRD's enum and its documented pattern rule
    "dns action nxdomain": (
        obj("DNSChaos", {"action": "nxdomain", "mode": "all", "selector": SEL}),
        "spec.action",
        "'nxdomain' is not one of ['error', 'random']",
    ),
    "dns wildcard inside": (
        obj("DNSChaos", {"action": "random", "mode": "all", "selector": SEL, "patterns": ["ok.org", "chaos-*.org"]}),
        "spec.patterns[1]",
        "the wildcard * must be the last character",
    ),
    # httpchaos_webhook.go
    "http without port": (
        obj("HTTPChaos", {"mode": "all", "selector": SEL, "target": "Request", "abort": True}),
        "spec.port",
        "port 0 is not supported",
    ),
    "http method gET": (
        obj("HTTPChaos", {"mode": "all", "selector": SEL, "target": "Request", "port": 80, "method": "gET"}),
        "spec.method",
        "method 'gET' is not supported",
    ),
    "http delay without unit": (
        obj("HTTPChaos", {"mode": "all", "selector": SEL, "target": "Response", "port": 80, "delay": "1"}),
        "spec.delay",
        "invalid duration '1' (time: missing unit in duration \"1\")",
    ),
    # iochaos_webhook.go, and where Chaos Mesh injects
    "io fault without errno": (
        obj("IOChaos", {"action": "fault", "mode": "one", "selector": SEL, "volumePath": "/data"}),
        "spec.errno",
        "action fault: errno 0 is not supported",
    ),
    "io percent 150": (
        obj("IOChaos", {"action": "latency", "mode": "one", "selector": SEL, "volumePath": "/d", "percent": 150}),
        "spec.percent",
        "150 is not a percentage",
    ),
    "io delay soon": (
        obj("IOChaos", {"action": "latency", "mode": "one", "selector": SEL, "volumePath": "/d", "delay": "soon"}),
        "spec.delay",
        "'soon' is not a duration",
    ),
    "io relative volume path": (
        obj("IOChaos", {"action": "latency", "mode": "one", "selector": SEL, "volumePath": "data", "delay": "1s"}),
        "spec.volumePath",
        "'data' must be the absolute path of a volume",
    ),
    # selectors: metav1.LabelSelectorAsSelector when Chaos Mesh selects pods
    "unknown expression operator": (
        obj("PodChaos", POD_KILL | {"selector": SEL | {"expressionSelectors": [{"key": "a", "operator": "Equals"}]}}),
        "spec.selector.expressionSelectors[0]",
        "give key and operator (one of In, NotIn, Exists, DoesNotExist)",
    ),
    "label value with a space": (
        obj("PodChaos", POD_KILL | {"selector": {"namespaces": ["virtengine"], "labelSelectors": {"app": "a b"}}}),
        "spec.selector.labelSelectors",
        "value 'a b' of 'app' is not a valid label value",
    ),
    # schedule_webhook.go: robfig/cron, EmbedChaos
    "cron minute 61": (
        schedule("PodChaos", "podChaos", POD_KILL, "61 * * * *"),
        "spec.schedule",
        "end of range (61) above maximum (59)",
    ),
    "cron weekday 7": (
        schedule("PodChaos", "podChaos", POD_KILL, "0 0 * * 7"),
        "spec.schedule",
        "end of range (7) above maximum (6)",
    ),
    "cron step 0": (schedule("PodChaos", "podChaos", POD_KILL, "*/0 * * * *"), "spec.schedule", "step of range"),
    "cron unknown zone": (
        schedule("PodChaos", "podChaos", POD_KILL, "CRON_TZ=Mars/Olympus 0 * * * *"),
        "spec.schedule",
        "provided bad location Mars/Olympus",
    ),
    "cron @every 0s": (
        schedule("PodChaos", "podChaos", POD_KILL, "@every 0s"),
        "spec.schedule",
        "@every needs an interval longer than zero",
    ),
    "schedule type unknown": (
        obj("Schedule", {"schedule": "@daily", "type": "Nap", "podChaos": POD_KILL}),
        "spec.type",
        "unknown template type 'Nap'",
    ),
    "schedule embeds an invalid chaos": (
        schedule("PodChaos", "podChaos", POD_KILL | {"action": "container-kill"}),
        "spec.podChaos.containerNames",
        "the name of container is required",
    ),
    "schedule embeds an invalid stress": (
        schedule("StressChaos", "stressChaos", {"mode": "one", "selector": SEL, "stressors": {"cpu": {"workers": 0}}}),
        "spec.stressChaos.stressors.cpu.workers",
        "0 workers",
    ),
    # workflow_webhook.go
    "workflow entry not a template": (
        workflow(serial("kill"), kill_template(), entry="start"),
        "spec.entry",
        "can not find a template with name start",
    ),
    "workflow duplicate names": (
        workflow(serial("kill"), kill_template(), kill_template()),
        "spec.templates",
        "template name must be unique, duplicated names: ['kill']",
    ),
    "workflow child missing": (
        workflow(serial("kill", "gone"), kill_template()),
        "spec.templates[0].children[1]",
        "can not find a template with name gone",
    ),
    "workflow template name not DNS-1123": (
        workflow(serial("Kill_It"), kill_template(name="Kill_It")),
        "spec.templates[1].name",
        "field name must be DNS-1123 subdomain",
    ),
    "workflow suspend without deadline": (
        workflow(serial("pause"), {"name": "pause", "templateType": "Suspend"}),
        "spec.templates[1].deadline",
        "deadline in template with type Suspend could not be empty",
    ),
    "workflow chaos with a duration": (
        workflow(serial("kill"), kill_template(podChaos=POD_KILL | {"duration": "30s"})),
        "spec.templates[1].podChaos.duration",
        "should not define duration in chaos when using Workflow",
    ),
    "workflow chaos template without chaos": (
        workflow(serial("kill"), {"name": "kill", "templateType": "PodChaos", "deadline": "1m"}),
        "spec.templates[1].podChaos",
        "the value of chaos PodChaos is required",
    ),
    "workflow serial holding chaos": (
        workflow(serial("kill") | {"podChaos": POD_KILL}, kill_template()),
        "spec.templates[0].podChaos",
        "a template of type Serial should not contain any chaos",
    ),
    "workflow unknown template type": (
        workflow(serial("nap"), {"name": "nap", "templateType": "Sleep"}),
        "spec.templates[1].templateType",
        "unrecognized template type: Sleep",
    ),
    "workflow embedded loss ten": (
        workflow(
            serial("net"),
            {"name": "net", "templateType": "NetworkChaos", "networkChaos": DELAY | {"loss": {"loss": "ten"}}},
        ),
        "spec.templates[1].networkChaos.loss.loss",
        "'ten' is not a number",
    ),
    "workflow deadline soon": (
        workflow(serial("kill"), kill_template(deadline="soon")),
        "spec.templates[1].deadline",
        "'soon' is not a duration",
    ),
    "workflow schedule template with a bad cron": (
        workflow(
            serial("every"),
            {"name": "every", "templateType": "Schedule"}
            | {"schedule": {"schedule": "every day", "type": "PodChaos", "podChaos": POD_KILL}},
        ),
        "spec.templates[1].schedule.schedule",
        "'every day' is not a 5-field cron expression",
    ),
    "workflow status check template without it": (
        workflow(serial("check"), {"name": "check", "templateType": "StatusCheck", "deadline": "1m"}),
        "spec.templates[1].statusCheck",
        "a template of type StatusCheck needs statusCheck",
    ),
    # statuscheck_webhook.go
    "status check relative url": (
        obj("StatusCheck", STATUS | {"http": {"url": "health", "criteria": {"statusCode": "200"}}}),
        "spec.http.url",
        "'health' is an invalid http request url (invalid URI for request)",
    ),
    "status check bad port": (
        obj("StatusCheck", STATUS | {"http": {"url": "http://api:port/health", "criteria": {"statusCode": "200"}}}),
        "spec.http.url",
        'invalid port ":port" after host',
    ),
    "status code open range": (
        obj("StatusCheck", STATUS | {"http": {"url": "/health", "criteria": {"statusCode": "200-"}}}),
        "spec.http.criteria.statusCode",
        "'200-': incorrect status code format",
    ),
    "status code 1000": (
        obj("StatusCheck", STATUS | {"http": {"url": "/health", "criteria": {"statusCode": "1000"}}}),
        "spec.http.criteria.statusCode",
        "invalid status code 1000",
    ),
    "status check without http": (
        obj("StatusCheck", {"type": "HTTP"}),
        "spec.http",
        "the detail of http status check is required",
    ),
}


def test_there_are_refused_cases_of_every_kind():
    assert len(REFUSED) >= 30
    assert {manifest["kind"] for manifest, _, _ in REFUSED.values()} == set(cm.KINDS)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_each_refused_case_names_its_field_and_reason(name):
    manifest, path, fragment = REFUSED[name]
    found = cm.problems(manifest)
    assert [p for p, _ in found] == [path], found
    assert fragment in found[0][1]
    with pytest.raises(FaultError, match=r"^invalid \w+ "):
        cm.validate(manifest)


def test_a_schedule_of_one_type_holding_another_types_spec_gets_both_problems():
    manifest = schedule("TimeChaos", "podChaos", POD_KILL)
    assert cm.problems(manifest) == [
        ("spec.timeChaos", "type TimeChaos needs exactly this embedded spec, found ['podChaos']"),
        ("spec.podChaos", "type TimeChaos uses only spec.timeChaos; Chaos Mesh ignores this spec"),
    ]


def test_the_schema_refusal_of_a_path_hides_later_stages_on_the_same_path():
    manifest = obj("NetworkChaos", DELAY | {"delay": {"latency": "100 ms"}})
    assert [p for p, _ in cm.problems(manifest)] == ["spec.delay.latency"]
    assert "does not match" in cm.problems(manifest)[0][1]


def test_schema_paths_use_brackets_for_list_indices():
    manifest = workflow(serial("kill"), kill_template(), {"templateType": "Suspend", "deadline": "1m"})
    assert ("spec.templates[2].name", "required field is missing") in cm.problems(manifest)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (obj("PodChaos", "pod-kill"), [("spec", "'pod-kill' is not of type 'object'")]),
        (obj("PodChaos", [1]), [("spec", "[1] is not of type 'object'")]),
        (obj("PodChaos", POD_KILL) | {"metadata": 3}, [("metadata", "3 is not of type 'object'")]),
        ([obj("PodChaos", POD_KILL)], [("(top level)", "a manifest is a mapping, got list")]),
        ("kind: PodChaos", [("(top level)", "a manifest is a mapping, got str")]),
        (obj("PodChaos", POD_KILL) | {"apiVersion": "v1"}, [("apiVersion", "'v1'; Chaos Mesh v2 objects are ")]),
        (obj("JVMChaos", {}), [("kind", "JVMChaos is a Chaos Mesh kind Drillbit has no CRD schema for")]),
    ],
)
def test_malformed_shapes_are_problems_not_crashes(document, expected):
    found = cm.problems(document)
    assert [p for p, _ in found] == [p for p, _ in expected]
    assert all(reason.startswith(start) for (_, reason), (_, start) in zip(found, expected, strict=True))


@pytest.mark.parametrize(
    "spec",
    [
        {"schedule": "@daily", "type": "PodChaos", "podChaos": "kill"},
        {"schedule": 5, "type": ["PodChaos"], "workflow": 3},
        {"entry": 3, "templates": [1, "a", None, {"templateType": 7, "children": "x"}]},
        {"entry": "a", "templates": {"a": 1}},
        {"action": "delay", "mode": "fixed", "value": 3, "selector": "all", "delay": "10ms", "target": [1]},
        {"stressors": [1], "mode": "one", "selector": {"expressionSelectors": [1, {"key": 2}]}},
        {"stressors": {"cpu": "two", "memory": {"workers": "x", "size": 5}}, "mode": "one", "selector": {}},
        {"http": {"url": 5, "criteria": []}, "type": 1, "patterns": "x", "clockIds": "now", "timeOffset": 3},
    ],
)
@pytest.mark.parametrize("kind", sorted(cm.KINDS))
def test_wrong_types_anywhere_give_problems_never_exceptions(kind, spec):
    found = cm.problems(obj(kind, spec))
    assert found and all(isinstance(p, str) and isinstance(r, str) and r for p, r in found)


# ------------------------------------------------------------------------------------------------ the Go parsers


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("1h30m", 5400 * 10**9),
        ("1.5h", 5400 * 10**9),
        (".5s", 5 * 10**8),
        ("1.s", 10**9),
        ("-5m", -300 * 10**9),
        ("+5m", 300 * 10**9),
        ("0", 0),
        ("300ms", 3 * 10**8),
        ("1µs", 1000),
        ("2h45m30.5s", (2 * 3600 + 45 * 60 + 30) * 10**9 + 5 * 10**8),
    ],
)
def test_parse_duration_reads_what_go_reads(text, nanoseconds):
    assert webhook.parse_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("5", 'time: missing unit in duration "5"'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("--5m", 'time: invalid duration "--5m"'),
        ("1h-5m", 'time: unknown unit "h-" in duration "1h-5m"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ],
)
def test_parse_duration_refuses_what_go_refuses(text, message):
    with pytest.raises(ValueError) as err:
        webhook.parse_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("text", "value"),
    [("25", 25.0), ("1e2", 100.0), ("0x1p-2", 0.25), ("1_000", 1000.0), (".5", 0.5), ("-0", 0.0), ("Inf", "inf")],
)
def test_parse_float_reads_what_go_reads(text, value):
    assert webhook.parse_float(text, 32) == float(value)


@pytest.mark.parametrize("text", ["ten", "", "1e39", "1__0", "_1", "1_", "+nan", "0x1", "1e", "1,5", " 1"])
def test_parse_float_refuses_what_go_refuses(text):
    with pytest.raises(ValueError, match=r"^strconv\.ParseFloat: parsing "):
        webhook.parse_float(text, 32)


def test_parse_float_range_depends_on_the_bit_size():
    assert webhook.parse_float("1e39", 64) == 1e39
    with pytest.raises(ValueError, match="value out of range"):
        webhook.parse_float("1e309", 64)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MB", 256 * 10**6),
        ("1.5 GiB", 15 * 10**8),
        ("4096", 4096),
        ("512k", 512000),
        ("10b", 10),
        ("2T", 2 * 10**12),
    ],
)
def test_from_human_size_reads_what_go_units_reads(text, size):
    assert webhook.from_human_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-5MB", "10XB", "10MBs", "MB10", "", "1.2.3MB"])
def test_from_human_size_refuses_what_go_units_refuses(text):
    with pytest.raises(ValueError):
        webhook.from_human_size(text)


@pytest.mark.parametrize("text", ["1mbps", "100 kbit", "10Gbps", "8bit", " 5tbit "])
def test_rates_tc_reads_are_accepted(text):
    webhook.check_rate(text)


@pytest.mark.parametrize("text", ["fast", "1.5mbps", "mbps", "-1kbit", "10", ""])
def test_rates_tc_cannot_read_are_refused(text):
    with pytest.raises(ValueError):
        webhook.check_rate(text)


@pytest.mark.parametrize(
    "cron",
    [
        "0 */6 * * *",
        "*/30 * * * * *",
        "@every 6h",
        "@daily",
        "TZ=UTC 0 3 * * mon-fri",
        "0 0 1 jan,jul ?",
        "5/15 * * * *",
        "0 9-17/2 * * 1-5",
    ],
)
def test_crons_robfig_reads_are_accepted(cron):
    webhook.parse_cron(cron)


@pytest.mark.parametrize(
    ("cron", "part"),
    [
        ("every six hours", "fields"),
        ("* * * *", "fields"),
        ("61 * * * *", "field"),
        ("5-1 * * * *", "field"),
        ("1-2-3 * * * *", "field"),
        ("0 0 * * sunday", "field"),
        ("@fortnightly", "descriptor"),
        ("@every soon", "every"),
        ("TZ=Nowhere/Town 0 * * * *", "zone"),
        ("TZ=UTC", "zone"),
        ("", "fields"),
    ],
)
def test_crons_robfig_refuses_are_refused(cron, part):
    with pytest.raises(webhook.CronError) as err:
        webhook.parse_cron(cron)
    assert err.value.part == part


@pytest.mark.parametrize("url", ["http://svc:8080/health", "/health", "https://[::1]:443/x?a=b", "mailto:ops", "*"])
def test_request_urls_go_reads_are_accepted(url):
    webhook.check_request_uri(url)


@pytest.mark.parametrize("url", ["", "health", "http://svc:port/", "http://a b/", "/x%zz", ":80/x", "http://h/\x01"])
def test_request_urls_go_refuses_are_refused(url):
    with pytest.raises(ValueError):
        webhook.check_request_uri(url)
