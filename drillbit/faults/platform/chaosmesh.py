"""Chaos Mesh v2 (``chaos-mesh.org/v1alpha1``) objects as plain dicts: the parts every builder shares, the Schedule
builder, a validator with teeth, and reading an object's injection status.

Each fault kind builds its own experiment from these parts, in its own module: ``pod_kill.pod_kill`` (PodChaos),
``network.network_delay`` and ``partition.network_partition`` / ``partition.partition_manifests`` (NetworkChaos),
``memory.stress`` (StressChaos), ``disk.io_chaos`` / ``disk.disk_pressure`` (IOChaos); ``schedule`` here wraps any of
them in a Schedule (v2's replacement for 1.x's ``scheduler`` field). Every manifest gets a unique name, the chaos
namespace, a ``duration`` and the labels ``app.kubernetes.io/managed-by: drillbit`` and ``drillbit.io/run-id``
(``build_manifest``); bad input raises ``FaultError`` naming the field.

``problems(manifest)`` lists every (field path, reason) a manifest of any kind in the shared schemas (``KINDS``:
the chaos kinds, Schedule, Workflow, StatusCheck) is refused for, in three stages: the ``openAPIV3Schema`` of the real
Chaos Mesh CRD (converted to JSON Schema; unknown fields are errors, as with ``kubectl apply --validate=strict``);
Chaos Mesh's admission webhook (``chaosmesh_webhook``); then ``beyond_webhook``: what the API server, Chaos Mesh later
on (selecting pods, injecting, running a workflow) or Drillbit refuse although the webhook admits it. ``validate``
raises FaultError listing them. The CRDs are read from ``$DRILLBIT_CHAOS_MESH_CRDS``, else
``../shared/schemas/chaos-mesh`` next to the repository.

Nothing here talks to a cluster: creating, watching and deleting an object is ``drillbit.faults.chaos_mesh``'s
``ChaosMeshFault`` (through ``drillbit.faults.platform.kubernetes``).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from drillbit.faults.errors import FaultError
from drillbit.faults.platform import chaosmesh_webhook as webhook

GROUP = "chaos-mesh.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {  # the kinds Drillbit creates (infra/chaos-mesh/rbac.yaml grants exactly these)
    "PodChaos": "podchaos",
    "NetworkChaos": "networkchaos",
    "StressChaos": "stresschaos",
    "IOChaos": "iochaos",
    "Schedule": "schedules",
}
KINDS = {  # every kind validated: its CRD file in crd_dir()
    **PLURALS,
    "TimeChaos": "timechaos",
    "DNSChaos": "dnschaos",
    "HTTPChaos": "httpchaos",
    "Workflow": "workflows",
    "StatusCheck": "statuschecks",
}
# Chaos Mesh v2 kinds with no CRD in the shared schemas: recognised, not validated.
OTHER_KINDS = ("AWSChaos", "AzureChaos", "BlockChaos", "GCPChaos", "JVMChaos", "KernelChaos", "PhysicalMachineChaos")
OTHER_KINDS += ("PhysicalMachine", "RemoteCluster", "StatusCheckTemplate", "WorkflowNode")
OTHER_KINDS += ("PodHttpChaos", "PodIOChaos", "PodNetworkChaos")
SCHEDULE_FIELDS = {kind: kind[0].lower() + kind[1:] for kind in ("PodChaos", "NetworkChaos", "StressChaos")}
SCHEDULE_FIELDS["IOChaos"] = "ioChaos"  # the Schedule's field for each kind it can embed
MODES = ("one", "all", "fixed", "fixed-percent", "random-max-percent")
MANAGED_BY = ("app.kubernetes.io/managed-by", "drillbit")
RUN_ID_LABEL = "drillbit.io/run-id"
CRDS_ENV = "DRILLBIT_CHAOS_MESH_CRDS"

_GO_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_LATENCY = re.compile(r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$")  # the CRD's own pattern for delay.latency / jitter
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = webhook.DNS_SUBDOMAIN
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HINTS = {
    "scheduler": "that is Chaos Mesh 1.x; in v2 wrap the experiment in a Schedule (kind: Schedule, spec.schedule)",
    "ioChaos": "StressChaos v2 has only cpu and memory stressors; use an IOChaos for disk I/O",
}

# ------------------------------------------------------------------------------------------------ small checks


def go_duration(text: str, field: str = "duration") -> float:
    """Seconds in a Go duration string (``30s``, ``10m``, ``1h30m``); FaultError naming ``field`` if invalid."""
    if not isinstance(text, str) or not _GO_DURATION.match(text):
        raise FaultError(f"{field}: {text!r} is not a duration; use a Go duration such as 30s, 10m or 1h30m")
    seconds = sum(float(n) * _GO_UNIT[u] for n, u in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text))
    if seconds <= 0:
        raise FaultError(f"{field}: {text!r} must be longer than zero")
    return seconds


def as_duration(value: str | float | int, field: str = "duration") -> str:
    """A Go duration string from a string (checked) or a number of seconds."""
    if isinstance(value, bool):
        raise FaultError(f"{field}: {value!r} is not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise FaultError(f"{field}: {value!r} seconds must be a positive number")
        if value == int(value):
            s = int(value)
            return f"{s // 3600}h" if s % 3600 == 0 else f"{s // 60}m" if s % 60 == 0 else f"{s}s"
        return f"{round(value * 1000)}ms"
    go_duration(value, field)
    return value


def latency(value: str | float | int, field: str) -> str:
    """A NetworkChaos latency string (the CRD's pattern) from a string or a number of milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise FaultError(f"{field}: {value!r} ms must be ≥ 0")
        return f"{value:g}ms"
    if not isinstance(value, str) or not _LATENCY.match(value):
        raise FaultError(f"{field}: {value!r} is not a latency; write it like 100ms or 1.5s (no spaces, no sign)")
    return value


def percent(value: float | int, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise FaultError(f"{field}: {value!r} must be a number within 0..100 (percent)")
    return f"{value:g}"


def mode_value(mode: str, value: float | int | None, field: str) -> str | None:
    """Chaos Mesh's ``value`` string for a mode (whole numbers only, as Chaos Mesh parses it with Atoi)."""
    if mode not in MODES:
        raise FaultError(f"{field}.mode: unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode in ("one", "all"):
        return None
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise FaultError(f"{field}.value: mode {mode} needs a whole number value, got {value!r}")
    if mode == "fixed" and value < 1:
        raise FaultError(f"{field}.value: mode fixed needs a value ≥ 1 (number of pods), got {value:g}")
    if mode != "fixed" and not 0 < value <= 100:
        raise FaultError(f"{field}.value: mode {mode} needs a percentage within 1..100, got {value:g}")
    return str(int(value))


def label_value(text: str) -> str:
    """``text`` made into a valid label value (≤ 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))[:63].strip("-_.")
    return cleaned or "none"


def check_labels(labels: Any, field: str) -> None:
    if not isinstance(labels, dict):
        raise FaultError(f"{field}: expected a mapping of label name to value")
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63:
            raise FaultError(f"{field}: {key!r} is not a valid label name")
        if not _LABEL_NAME.match(name):
            raise FaultError(f"{field}: {key!r} is not a valid label name")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise FaultError(f"{field}: value {value!r} of {key!r} is not a valid label value (≤ 63 of [A-Za-z0-9-_.])")


def pod_selector(
    namespace: str | list[str], labels: dict[str, str], field: str = "spec.selector", *, need_labels: bool = True
) -> dict[str, Any]:
    """A Chaos Mesh selector: namespaces plus label selectors — never empty (that would pick a whole namespace)."""
    namespaces = [namespace] if isinstance(namespace, str) else list(namespace or [])
    if not namespaces:
        raise FaultError(f"{field}.namespaces: give the namespace of the target pods (e.g. virtengine)")
    for ns in namespaces:
        if not isinstance(ns, str) or len(ns) > 63 or not _DNS_LABEL.match(ns):
            raise FaultError(f"{field}.namespaces: {ns!r} is not a namespace name")
    if not labels and need_labels:
        raise FaultError(
            f"{field}.labelSelectors: empty — it would select every pod of the namespace; give at least one label "
            "(e.g. app.kubernetes.io/name: virtengine-node)"
        )
    check_labels(labels or {}, f"{field}.labelSelectors")
    return {"namespaces": namespaces, **({"labelSelectors": dict(labels)} if labels else {})}


# ------------------------------------------------------------------------------------------------ builders' parts


def unique_name(slug: str) -> str:
    """``drillbit-<slug>-<8 hex>``, short enough for the names Chaos Mesh derives from it."""
    return f"drillbit-{slug}-{uuid.uuid4().hex[:8]}"


def build_manifest(kind: str, slug: str, spec: dict[str, Any], run_id: str, chaos_namespace: str, name: str | None):
    """A complete, validated object of ``kind`` around ``spec``: unique name, chaos namespace, Drillbit's labels."""
    if not run_id:
        raise FaultError("run_id: every Drillbit manifest carries the run's id; give one")
    labels = {MANAGED_BY[0]: MANAGED_BY[1], RUN_ID_LABEL: label_value(run_id)}
    meta = {"name": name or unique_name(slug), "namespace": chaos_namespace, "labels": labels}
    meta["annotations"] = {RUN_ID_LABEL: str(run_id)}
    manifest = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
    validate(manifest)
    return manifest


def base_spec(namespace, labels, mode, value, duration, expressions=None) -> dict[str, Any]:
    """mode, selector (labels, narrowed by ``expressions`` if given), value and duration of an experiment's spec."""
    spec: dict[str, Any] = {"mode": mode, "selector": pod_selector(namespace, labels)}
    if expressions:
        spec["selector"]["expressionSelectors"] = expression_selectors(expressions, "spec.selector.expressionSelectors")
    v = mode_value(mode, value, "spec")
    if v is not None:
        spec["value"] = v
    spec["duration"] = as_duration(duration, "spec.duration")
    return spec


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def expression_selectors(expressions: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Label selector requirements (key, operator In/NotIn/Exists/DoesNotExist, values), checked."""
    out = []
    for i, e in enumerate(expressions):
        op, values = e.get("operator"), list(e.get("values") or [])
        if op not in _OPERATORS or not e.get("key"):
            raise FaultError(f"{field}[{i}]: give key and operator (one of {', '.join(_OPERATORS)})")
        if (op in ("In", "NotIn")) != bool(values):
            raise FaultError(f"{field}[{i}]: operator {op} {'needs' if op in ('In', 'NotIn') else 'takes no'} values")
        out.append({"key": e["key"], "operator": op, **({"values": values} if values else {})})
    return out


def link_target(
    namespace: str,
    labels: dict[str, str] | None,
    mode: str,
    value: float | None,
    expressions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The other end of a link; labels, or (for "everything else in the namespace") expression selectors."""
    field = "spec.target.selector"
    if not labels and not expressions:
        raise FaultError(f"{field}.labelSelectors: empty — name the pods on the other end of the link")
    selector = pod_selector(namespace, labels or {}, field, need_labels=False)
    if expressions:
        selector["expressionSelectors"] = expression_selectors(expressions, f"{field}.expressionSelectors")
    target: dict[str, Any] = {"mode": mode, "selector": selector}
    v = mode_value(mode, value, "spec.target")
    if v is not None:
        target["value"] = v
    return target


def check_direction(direction: str) -> str:
    """A NetworkChaos ``direction`` (to, from, both), checked."""
    if direction not in ("to", "from", "both"):
        raise FaultError(f"spec.direction: unknown direction {direction!r}; use to, from or both")
    return direction


def _check_cron(cron: Any, field: str = "spec.schedule") -> None:
    """A schedule Chaos Mesh's webhook reads (robfig/cron: 5 fields, or 6 with seconds first; ``@daily``; ``@every
    6h``) whose ``@every`` interval is longer than zero."""
    if not isinstance(cron, str) or not cron.strip():
        raise FaultError(f"{field}: give a cron schedule such as '0 */6 * * *' or '@every 6h'")
    for path, reason in [*webhook.schedule_cron(cron, field), *_every_positive(cron, field)]:
        raise FaultError(f"{path}: {reason}")


def schedule(
    chaos: dict[str, Any],
    *,
    cron: str,
    history_limit: int = 5,
    concurrency_policy: str = "Forbid",
    starting_deadline_seconds: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A v2 Schedule running ``chaos`` (a manifest from a builder here) on ``cron`` (``@every 6h``, ``0 */6 * * *``)."""
    kind = chaos.get("kind")
    if kind not in SCHEDULE_FIELDS:
        raise FaultError(f"chaos.kind: {kind!r} cannot be scheduled here; use one of {', '.join(SCHEDULE_FIELDS)}")
    _check_cron(cron)
    if isinstance(history_limit, bool) or not isinstance(history_limit, int) or history_limit < 1:
        raise FaultError(f"spec.historyLimit: {history_limit!r} must be a whole number ≥ 1")
    if concurrency_policy not in ("Forbid", "Allow"):
        raise FaultError(f"spec.concurrencyPolicy: {concurrency_policy!r}; use Forbid or Allow")
    spec: dict[str, Any] = {"schedule": cron, "historyLimit": history_limit, "concurrencyPolicy": concurrency_policy}
    if starting_deadline_seconds is not None:
        if isinstance(starting_deadline_seconds, bool) or not isinstance(starting_deadline_seconds, int):
            raise FaultError("spec.startingDeadlineSeconds: give a whole number of seconds")
        if starting_deadline_seconds <= 0:
            raise FaultError("spec.startingDeadlineSeconds: must be > 0")
        spec["startingDeadlineSeconds"] = starting_deadline_seconds
    spec["type"] = kind
    spec[SCHEDULE_FIELDS[kind]] = copy.deepcopy(chaos["spec"])
    meta = chaos["metadata"]
    run_id = meta.get("annotations", {}).get(RUN_ID_LABEL) or meta["labels"][RUN_ID_LABEL]
    slug = f"every-{chaos['spec'].get('action') or kind.lower()}"
    return build_manifest("Schedule", slug, spec, run_id, meta["namespace"], name)


# ------------------------------------------------------------------------------------------------ CRD schemas


def crd_dir() -> Path:
    """Where the Chaos Mesh CRDs are: ``$DRILLBIT_CHAOS_MESH_CRDS``, else ``../shared/schemas/chaos-mesh``."""
    env = os.environ.get(CRDS_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[4] / "shared" / "schemas" / "chaos-mesh"]
    for c in candidates:
        if (c / "podchaos.yaml").is_file():
            return c
    raise FaultError(
        f"the Chaos Mesh CRDs were not found (looked in {', '.join(map(str, candidates))}); set {CRDS_ENV} to a folder "
        f"holding {', '.join(f'{stem}.yaml' for stem in KINDS.values())}"
    )


_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_DROP = ("description", "nullable", "example", "externalDocs")


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI v3 (Kubernetes structural) schema node as JSON Schema (draft 2020-12).

    ``x-kubernetes-*`` keys are dropped; ``nullable`` allows null; ``x-kubernetes-int-or-string`` becomes an anyOf;
    a boolean ``exclusiveMinimum`` becomes numeric; ``int32``/``int64`` formats become bounds; objects with
    ``properties`` refuse unknown fields unless ``x-kubernetes-preserve-unknown-fields`` is set.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in _DROP:
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for bound in ("Minimum", "Maximum"):
        if out.get(f"exclusive{bound}") is True:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
        elif out.get(f"exclusive{bound}") is False:
            out.pop(f"exclusive{bound}")
    if out.get("type") == "integer" and node.get("format") in _INT_BOUNDS:
        low, high = _INT_BOUNDS[node["format"]]
        out["minimum"] = max(out.get("minimum", low), low)
        out["maximum"] = min(out.get("maximum", high), high)
    open_object = "additionalProperties" in out or node.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "properties" in out and not open_object:
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.lru_cache(maxsize=16)
def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of a Chaos Mesh kind, as shipped."""
    if kind not in KINDS:
        raise FaultError(f"kind: {kind!r} is not a Chaos Mesh kind Drillbit validates ({', '.join(KINDS)})")
    path = crd_dir() / f"{KINDS[kind]}.yaml"
    with open(path) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if doc.get("spec", {}).get("names", {}).get("kind") != kind:
        raise FaultError(f"{path} is not the CRD of {kind}")
    return doc


@functools.lru_cache(maxsize=16)
def _validator(kind: str):
    from jsonschema import Draft202012Validator

    versions = {v["name"]: v for v in crd(kind)["spec"]["versions"]}
    if VERSION not in versions:
        raise FaultError(f"the {kind} CRD has no version {VERSION} (it has {', '.join(versions)})")
    return Draft202012Validator(to_json_schema(versions[VERSION]["schema"]["openAPIV3Schema"]))


def field_path(parts: Any) -> str:
    """``spec.templates[0].name`` from the parts of a path (names and list indices)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def _describe(error: Any) -> list[tuple[str, str]]:
    path = field_path(error.absolute_path)
    prefix = f"{path}." if path else ""
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [(prefix + key, f"unknown field (not in the CRD schema){_hint(key)}") for key in extra]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(prefix + missing, "required field is missing")]
    message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
    return [(path or "(top level)", message)]


def _hint(key: str) -> str:
    return f" — {_HINTS[key]}" if key in _HINTS else ""


def _identity_problems(manifest: Any) -> list[tuple[str, str]]:
    """What makes a document no Chaos Mesh object Drillbit can validate: not a mapping, another apiVersion, a kind
    without a CRD here."""
    if not isinstance(manifest, dict):
        return [("(top level)", f"a manifest is a mapping, got {type(manifest).__name__}")]
    if manifest.get("apiVersion") != API_VERSION:
        return [("apiVersion", f"{manifest.get('apiVersion')!r}; Chaos Mesh v2 objects are {API_VERSION}")]
    kind = manifest.get("kind")
    if kind in OTHER_KINDS:
        reason = f"{kind} is a Chaos Mesh kind Drillbit has no CRD schema for (it validates {', '.join(KINDS)})"
        return [("kind", reason)]
    if not isinstance(kind, str) or kind not in KINDS:
        return [("kind", f"{kind!r} is not one of {', '.join(KINDS)}")]
    return []


def schema_problems(manifest: Any) -> list[tuple[str, str]]:
    """(field path, reason) for what the CRD's ``openAPIV3Schema`` refuses in ``manifest`` (and for a document that is
    no Chaos Mesh object at all)."""
    if identity := _identity_problems(manifest):
        return identity
    errors = sorted(_validator(manifest["kind"]).iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    return [problem for e in errors for problem in _describe(e)]


def schema_errors(manifest: Any) -> list[str]:
    """Problems of ``manifest`` against its kind's CRD ``openAPIV3Schema`` (empty when it conforms)."""
    return [f"{path}: {reason}" for path, reason in schema_problems(manifest)]


def problems(manifest: Any) -> list[tuple[str, str]]:
    """Every (field path, reason) a manifest is refused for: its CRD schema, then Chaos Mesh's admission webhook
    (``chaosmesh_webhook``), then what the API server, Chaos Mesh later on, or Drillbit refuse (``beyond_webhook``).
    A path already refused is not refused again by a later stage; empty when the manifest is valid."""
    found = schema_problems(manifest)
    if any(path in ("(top level)", "apiVersion", "kind") for path, _ in found):
        return found
    for stage in (webhook.findings(manifest["kind"], manifest.get("spec")), beyond_webhook(manifest)):
        refused = {path for path, _ in found}
        found += [(path, reason) for path, reason in stage if path not in refused]
    return found


def semantic_errors(manifest: dict[str, Any]) -> list[str]:
    """What Chaos Mesh's webhook, the API server, Chaos Mesh later on and Drillbit check beyond the schema."""
    found = [*webhook.findings(manifest.get("kind"), manifest.get("spec")), *beyond_webhook(manifest)]
    return [f"{path}: {reason}" for path, reason in found]


def validate(manifest: dict[str, Any]) -> dict[str, Any]:
    """Check a manifest against its CRD schema and Chaos Mesh's rules; raise FaultError listing every problem."""
    found = problems(manifest)
    if found:
        what = "manifest"
        if isinstance(manifest, dict):
            meta = manifest.get("metadata")
            what = f"{manifest.get('kind', '?')} {(meta if isinstance(meta, dict) else {}).get('name', '?')}"
        raise FaultError(f"invalid {what}: " + "; ".join(f"{path}: {reason}" for path, reason in found))
    return manifest


def _spec_parts(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field path, chaos spec) pairs: the spec itself, or the chaos a Schedule or a Workflow embeds."""
    if not isinstance(manifest, dict):
        return []
    parts = webhook.embedded_objects(manifest.get("kind"), manifest.get("spec"))
    return [(path, spec) for path, kind, spec in parts if kind in webhook.SELECTOR_KINDS]


def selectors(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str | None]]:
    """(field, selector, mode, value) for every pod selection in a manifest, the ``target`` ones included."""
    out = []
    for field, spec in _spec_parts(manifest):
        out.append((f"{field}.selector", spec.get("selector") or {}, spec.get("mode", ""), spec.get("value")))
        target = spec.get("target")
        if isinstance(target, dict):
            sel = target.get("selector") or {}
            out.append((f"{field}.target.selector", sel, target.get("mode", ""), target.get("value")))
    return out


# ------------------------------------------------------------------------------------------------ beyond the webhook
# What Chaos Mesh's webhook admits but the API server, Chaos Mesh later on (when it selects pods, injects, or runs a
# workflow) or Drillbit refuse. Each rule says who refuses it; the webhook's own rules are in chaosmesh_webhook.

CLOCK_IDS = ("CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_PROCESS_CPUTIME_ID", "CLOCK_THREAD_CPUTIME_ID")
CLOCK_IDS += ("CLOCK_MONOTONIC_RAW", "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME")
CLOCK_IDS += ("CLOCK_REALTIME_ALARM", "CLOCK_BOOTTIME_ALARM")  # pkg/time/utils.EncodeClkIds knows these
_NETEM_BLOCKS = {
    "delay": "latency, jitter, correlation",
    "loss": "loss, correlation",
    "duplicate": "duplicate, correlation",
    "corrupt": "corrupt, correlation",
    "bandwidth": "rate, limit, buffer",
}
_NETEM_PERCENTAGES = [("delay", "correlation"), ("delay.reorder", "reorder"), ("delay.reorder", "correlation")]
_NETEM_PERCENTAGES += [(block, key) for block in ("loss", "duplicate", "corrupt") for key in (block, "correlation")]


def beyond_webhook(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The rules below over the object's metadata and every spec it holds, embedded ones included."""
    meta = manifest.get("metadata")
    out = _metadata_problems(meta) if meta is None or isinstance(meta, dict) else []
    for path, kind, spec in webhook.embedded_objects(manifest.get("kind"), manifest.get("spec")):
        if kind in webhook.SELECTOR_KINDS:
            out += _chaos_problems(kind, spec, path)
        elif kind == "Schedule":
            out += _schedule_problems(spec, path)
        elif kind == "Workflow":
            out += _workflow_problems(spec, path)
    return out


def _caught(path: str, check: Any) -> list[tuple[str, str]]:
    """A check that raises FaultError("<path>: <reason>") as (path, reason) pairs."""
    try:
        check()
    except FaultError as exc:
        head, sep, reason = str(exc).partition(": ")
        return [(head, reason)] if sep and head.startswith(path) else [(path, str(exc))]
    return []


def _metadata_problems(meta: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The API server's: a DNS-1123 name, label syntax; Drillbit's: an explicit namespace (no kubectl context
    decides where a fault goes)."""
    meta = meta or {}
    out = _caught("metadata.name", lambda: _check_name(meta.get("name")))
    out += _caught("metadata.namespace", lambda: _check_namespace(meta.get("namespace")))
    return out + _caught("metadata.labels", lambda: check_labels(meta.get("labels") or {}, "metadata.labels"))


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise FaultError("metadata.name: required field is missing")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise FaultError(f"metadata.name: {name!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")


def _check_namespace(namespace: Any) -> None:
    if namespace is None:
        raise FaultError("metadata.namespace: give the chaos namespace (e.g. chaos-testing)")
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise FaultError(f"metadata.namespace: {namespace!r} is not a namespace name")


def _chaos_problems(kind: str, spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    # Drillbit's: a duration longer than zero, written without a sign (Chaos Mesh admits "0s" and "-5m").
    out = []
    if "duration" in spec:
        out += _caught(f"{path}.duration", lambda: go_duration(spec["duration"], f"{path}.duration"))
    out += _selector_problems(spec.get("selector"), f"{path}.selector")
    if isinstance(spec.get("target"), dict):
        out += _selector_problems(spec["target"].get("selector"), f"{path}.target.selector")
    rules = {
        "NetworkChaos": _network_problems,
        "StressChaos": _stress_problems,
        "IOChaos": _io_problems,
        "TimeChaos": _time_problems,
        "DNSChaos": _dns_problems,
    }
    return out + (rules[kind](spec, path) if kind in rules else [])


def _selector_problems(selector: Any, path: str) -> list[tuple[str, str]]:
    """Chaos Mesh's: it builds the pod selector with ``metav1.LabelSelectorAsSelector`` when it selects pods
    (pkg/selector/generic/label), which refuses invalid label names and values, unknown operators, and In / NotIn
    without values or Exists / DoesNotExist with some; the webhook admits them and the experiment then fails."""
    if not isinstance(selector, dict):
        return []
    out = []
    labels = selector.get("labelSelectors")
    if isinstance(labels, dict):
        out += _caught(f"{path}.labelSelectors", lambda: check_labels(labels, f"{path}.labelSelectors"))
    expressions = selector.get("expressionSelectors")
    if isinstance(expressions, list) and all(_well_formed(e) for e in expressions):
        where = f"{path}.expressionSelectors"
        out += _caught(where, lambda: expression_selectors(expressions, where))
        for i, e in enumerate(expressions):
            pairs = {str(e.get("key")): v for v in (e.get("values") or [""])}
            out += _caught(f"{where}[{i}]", lambda pairs=pairs, i=i: check_labels(pairs, f"{where}[{i}]"))
    return out


def _well_formed(expression: Any) -> bool:
    """An expression selector of the schema's shape (else the schema reports it): a mapping, values a list."""
    return isinstance(expression, dict) and isinstance(expression.get("values") or [], list)


def _network_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Drillbit's: each netem probability and correlation within 0..100 (the webhook only checks that it is a
    number; netem reads a percentage), and the action's own block present (without it there is nothing to
    inject)."""
    out = []
    for block, key in _NETEM_PERCENTAGES:
        holder: Any = spec
        for part in block.split("."):
            holder = holder.get(part) if isinstance(holder, dict) else None
        value = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(value, str) and value:
            try:
                number = webhook.parse_float(value, 32)
            except ValueError:
                continue  # not a number: the webhook's to report
            if not 0 <= number <= 100:
                reason = f"{value!r} must be within 0..100 (a percentage; the webhook only checks that it is a number)"
                out.append((f"{path}.{block}.{key}", reason))
    action = spec.get("action")
    if isinstance(action, str) and action in _NETEM_BLOCKS and spec.get(action) is None:
        reason = f"action {action} needs a {action} block ({_NETEM_BLOCKS[action]}); without it nothing is injected"
        out.append((f"{path}.{action}", reason))
    return out


def _stress_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Drillbit's: workers ≥ 1. stresschaos_webhook.go has ``Stressor.Validate`` ("workers should always be
    positive"), but its signature is not the webhook's validator interface, so it is never called and the webhook
    admits 0: ``Stressors.Normalize`` then silently drops a stressor with 0 workers, and stress-ng refuses a negative
    count when the experiment starts."""
    out = []
    stressors = spec.get("stressors")
    for name in ("cpu", "memory"):
        stressor = stressors.get(name) if isinstance(stressors, dict) else None
        workers = stressor.get("workers") if isinstance(stressor, dict) else None
        if isinstance(workers, int) and not isinstance(workers, bool) and workers < 1:
            reason = f"{workers} workers: give at least 1 (with 0 Chaos Mesh silently drops the {name} stressor)"
            out.append((f"{path}.stressors.{name}.workers", reason))
    return out


def _io_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Chaos Mesh's: ``volumePath`` is the absolute mount path of a volume in the container, where the I/O faults
    are injected. Drillbit's: a latency's delay longer than zero."""
    out = []
    volume = spec.get("volumePath")
    if isinstance(volume, str) and not volume.startswith("/"):
        reason = f"{volume!r} must be the absolute path of a volume mounted in the container (e.g. /var/lib/data)"
        out.append((f"{path}.volumePath", reason))
    if spec.get("action") == "latency" and "delay" in spec:
        out += _caught(f"{path}.delay", lambda: go_duration(spec["delay"], f"{path}.delay"))
    return out


def _time_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Chaos Mesh's: the clock ids ``pkg/time/utils.EncodeClkIds`` knows; it refuses any other when injecting."""
    out = []
    clocks = spec.get("clockIds")
    for i, clock in enumerate(clocks if isinstance(clocks, list) else []):
        if clock not in CLOCK_IDS:
            reason = f"unknown clock id {clock!r}; use one of {', '.join(CLOCK_IDS)}"
            out.append((f"{path}.clockIds[{i}]", reason))
    return out


def _dns_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """The DNSChaos CRD's own rule for ``patterns``: the wildcard ``*`` only at the end (``chaos-*.org`` is invalid);
    the webhook does not check it."""
    out = []
    patterns = spec.get("patterns")
    for i, pattern in enumerate(patterns if isinstance(patterns, list) else []):
        if isinstance(pattern, str) and "*" in pattern[:-1]:
            reason = f"{pattern!r}: the wildcard * must be the last character (e.g. github.*); ? matches one character"
            out.append((f"{path}.patterns[{i}]", reason))
    return out


def _every_positive(cron: str, path: str) -> list[tuple[str, str]]:
    """Drillbit's: an ``@every`` interval longer than zero (robfig/cron turns anything shorter into 1 s)."""
    every = cron.rpartition("@every ")[2] if "@every " in cron else None
    try:
        too_short = every is not None and webhook.parse_duration(every) <= 0
    except ValueError:
        return []  # the webhook's to report
    return [(path, f"{cron!r}: @every needs an interval longer than zero (e.g. @every 6h)")] if too_short else []


def _schedule_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Drillbit's: ``@every`` longer than zero, and no embedded spec but the one ``type`` names (Chaos Mesh ignores
    the others, so they mislead a reader)."""
    out = _every_positive(spec["schedule"], f"{path}.schedule") if isinstance(spec.get("schedule"), str) else []
    kind = spec.get("type")
    used = webhook.spec_field(webhook.SCHEDULE_TYPES, kind)
    if used is None:
        return out
    for field in webhook.SCHEDULE_TYPES.values():
        if field != used and spec.get(field) is not None:
            out.append((f"{path}.{field}", f"type {kind} uses only {path}.{used}; Chaos Mesh ignores this spec"))
    return out


def _workflow_problems(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Chaos Mesh's workflow controller's, when a template runs: a ``deadline`` ``time.ParseDuration`` reads
    (pkg/workflow/controllers/new_node.go), a Schedule template's ``schedule`` and a StatusCheck template's
    ``statusCheck`` (it creates the object from them)."""
    out = []
    templates = spec.get("templates")
    for i, template in enumerate(templates if isinstance(templates, list) else []):
        if not isinstance(template, dict):
            continue
        where = f"{path}.templates[{i}]"
        deadline = template.get("deadline")
        if isinstance(deadline, str) and deadline:
            try:
                webhook.parse_duration(deadline)
            except ValueError as exc:
                out.append((f"{where}.deadline", f"{deadline!r} is not a duration ({exc}); write e.g. 5m"))
        kind = template.get("templateType")
        needed = webhook.spec_field({"Schedule": "schedule", "StatusCheck": "statusCheck"}, kind)
        if needed and not isinstance(template.get(needed), dict):
            out.append((f"{where}.{needed}", f"a template of type {kind} needs {needed} (the {kind} to create)"))
    return out


def plural(manifest: dict[str, Any]) -> str:
    return PLURALS[manifest["kind"]]


# ------------------------------------------------------------------------------------------------ status


def injection_state(obj: dict[str, Any]) -> tuple[bool, list[str], str]:
    """(injected?, injected record ids, why not yet) from a Chaos Mesh object's status."""
    status = obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    records = (status.get("experiment") or {}).get("containerRecords") or []
    ids = [r.get("id", "?") for r in records if r.get("phase") == "Injected"]
    injected = conditions.get("AllInjected") == "True" or (bool(records) and len(ids) == len(records))
    reasons = [e.get("message", "") for r in records for e in r.get("events") or [] if e.get("type") == "Failed"]
    if conditions.get("Selected") == "False":
        reasons.insert(0, "Chaos Mesh selected no pod")
    return injected, ids, "; ".join(r for r in reasons if r)
