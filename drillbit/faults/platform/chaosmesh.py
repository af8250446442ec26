"""Chaos Mesh v2 (``chaos-mesh.org/v1alpha1``) objects as plain dicts: the parts every builder shares, the Schedule
builder, a validator with teeth, and reading an object's injection status.

Each fault kind builds its own experiment from these parts, in its own module: ``pod_kill.pod_kill`` (PodChaos),
``network.network_delay`` and ``partition.network_partition`` / ``partition.partition_manifests`` (NetworkChaos),
``memory.stress`` (StressChaos), ``disk.io_chaos`` / ``disk.disk_pressure`` (IOChaos); ``schedule`` here wraps any of
them in a Schedule (v2's replacement for 1.x's ``scheduler`` field). Every manifest gets a unique name, the chaos
namespace, a ``duration`` and the labels ``app.kubernetes.io/managed-by: drillbit`` and ``drillbit.io/run-id``
(``build_manifest``); bad input raises ``FaultError`` naming the field.

``validate(manifest)`` checks a manifest against the ``openAPIV3Schema`` of the real Chaos Mesh CRD (converted to
JSON Schema; unknown fields are errors, as with ``kubectl apply --validate=strict``) plus what Chaos Mesh's admission
webhook and the API server check beyond the schema (Go durations, mode values, object names, label syntax, cron).
The CRDs are read from ``$DRILLBIT_CHAOS_MESH_CRDS``, else ``../shared/schemas/chaos-mesh`` next to the repository.

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

GROUP = "chaos-mesh.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {
    "PodChaos": "podchaos",
    "NetworkChaos": "networkchaos",
    "StressChaos": "stresschaos",
    "IOChaos": "iochaos",
    "Schedule": "schedules",
}
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
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
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
    if not isinstance(cron, str) or not cron.strip():
        raise FaultError(f"{field}: give a cron schedule such as '0 */6 * * *' or '@every 6h'")
    if cron.startswith("@every "):
        go_duration(cron.removeprefix("@every ").strip(), field)
        return
    if cron.startswith("@"):
        if cron not in _CRON_DESCRIPTORS:
            raise FaultError(f"{field}: unknown descriptor {cron!r}; use {', '.join(_CRON_DESCRIPTORS)} or @every <d>")
        return
    fields = cron.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,?-]+", f) for f in fields):
        raise FaultError(f"{field}: {cron!r} is not a 5-field cron expression (minute hour day-of-month month weekday)")


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
    candidates += [Path("/work/shared/schemas/chaos-mesh")]
    for c in candidates:
        if (c / "podchaos.yaml").is_file():
            return c
    raise FaultError(
        f"the Chaos Mesh CRDs were not found (looked in {', '.join(map(str, candidates))}); set {CRDS_ENV} to a folder "
        "holding podchaos.yaml, networkchaos.yaml, stresschaos.yaml, iochaos.yaml and schedules.yaml"
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


@functools.lru_cache(maxsize=8)
def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of a Chaos Mesh kind, as shipped."""
    if kind not in PLURALS:
        raise FaultError(f"kind: {kind!r} is not a Chaos Mesh kind Drillbit uses ({', '.join(PLURALS)})")
    path = crd_dir() / f"{PLURALS[kind]}.yaml"
    with open(path) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if doc.get("spec", {}).get("names", {}).get("kind") != kind:
        raise FaultError(f"{path} is not the CRD of {kind}")
    return doc


@functools.lru_cache(maxsize=8)
def _validator(kind: str):
    from jsonschema import Draft202012Validator

    versions = {v["name"]: v for v in crd(kind)["spec"]["versions"]}
    if VERSION not in versions:
        raise FaultError(f"the {kind} CRD has no version {VERSION} (it has {', '.join(versions)})")
    return Draft202012Validator(to_json_schema(versions[VERSION]["schema"]["openAPIV3Schema"]))


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts = []
        for key in extra:
            hint = f" — {_HINTS[key]}" if key in _HINTS else ""
            parts.append(f"{path + '.' if path else ''}{key}: unknown field (not in the CRD schema){hint}")
        return "; ".join(parts)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{path + '.' if path else ''}{missing}: required field is missing"
    return f"{path or '(top level)'}: {error.message}"


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Problems of ``manifest`` against its kind's CRD ``openAPIV3Schema`` (empty when it conforms)."""
    if not isinstance(manifest, dict):
        return ["(top level): a manifest is a mapping"]
    if manifest.get("apiVersion") != API_VERSION:
        return [f"apiVersion: {manifest.get('apiVersion')!r}; Chaos Mesh v2 objects are {API_VERSION}"]
    kind = manifest.get("kind")
    if kind not in PLURALS:
        return [f"kind: {kind!r} is not one of {', '.join(PLURALS)}"]
    errors = sorted(_validator(kind).iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(e) for e in errors]


def _spec_parts(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field path, chaos spec) pairs: the spec itself, or a Schedule's embedded spec."""
    spec = manifest.get("spec") or {}
    if manifest.get("kind") != "Schedule":
        return [("spec", spec)]
    return [(f"spec.{f}", spec[f]) for f in SCHEDULE_FIELDS.values() if isinstance(spec.get(f), dict)]


def _check_mode(holder: dict[str, Any], field: str) -> None:
    mode, value = holder.get("mode"), holder.get("value")
    if mode in ("one", "all") or mode not in MODES:
        return  # an unknown mode is already a schema error
    if value is None or not re.fullmatch(r"\d+", str(value)):
        raise FaultError(f"{field}.value: mode {mode} needs a whole number value as a string, got {value!r}")
    mode_value(mode, int(value), field)


def semantic_errors(manifest: dict[str, Any]) -> list[str]:
    """What the API server and Chaos Mesh's webhook check beyond the schema."""
    problems = []
    meta = manifest.get("metadata") or {}
    checks = [
        lambda: _check_name(meta.get("name")),
        lambda: _check_namespace(meta.get("namespace")),
        lambda: check_labels(meta.get("labels") or {}, "metadata.labels"),
    ]
    if manifest.get("kind") == "Schedule":
        checks.append(lambda: _check_schedule(manifest.get("spec") or {}))
    for field, spec in _spec_parts(manifest):
        checks += _spec_checks(field, spec, manifest.get("kind"))
    for check in checks:
        try:
            check()
        except FaultError as exc:
            problems.append(str(exc))
    return problems


def _spec_checks(field: str, spec: dict[str, Any], kind: str | None) -> list:
    checks = [lambda: _check_mode(spec, field)]
    if "duration" in spec:
        checks.append(lambda: go_duration(spec["duration"], f"{field}.duration"))
    if isinstance(spec.get("target"), dict):
        checks.append(lambda: _check_mode(spec["target"], f"{field}.target"))
    if spec.get("action") == "delay" and "delay" in spec and isinstance(spec["delay"], dict):
        corr = spec["delay"].get("correlation")
        if corr is not None:
            checks.append(lambda: _check_number_string(corr, f"{field}.delay.correlation"))
    if spec.get("action") == "delay" and "delay" not in spec:
        checks.append(lambda: _fail(f"{field}.delay: action delay needs a delay block (latency, jitter, correlation)"))
    if (kind == "IOChaos" or field.endswith("ioChaos")) and spec.get("action") == "latency" and "delay" in spec:
        checks.append(lambda: go_duration(spec["delay"], f"{field}.delay"))
    if (kind == "StressChaos" or field.endswith("stressChaos")) and not (
        spec.get("stressors") or spec.get("stressngStressors")
    ):
        checks.append(lambda: _fail(f"{field}.stressors: missing stressors (cpu and/or memory)"))
    return checks


def _fail(message: str) -> None:
    raise FaultError(message)


def _check_number_string(value: Any, field: str) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"{field}: {value!r} is not a number") from None
    if not 0 <= number <= 100:
        raise FaultError(f"{field}: {value!r} must be within 0..100")


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


def _check_schedule(spec: dict[str, Any]) -> None:
    _check_cron(spec.get("schedule"))
    kind = spec.get("type")
    if kind not in SCHEDULE_FIELDS:
        raise FaultError(f"spec.type: {kind!r}; Drillbit schedules {', '.join(SCHEDULE_FIELDS)}")
    present = [f for f in SCHEDULE_FIELDS.values() if f in spec]
    if present != [SCHEDULE_FIELDS[kind]]:
        raise FaultError(f"spec.{SCHEDULE_FIELDS[kind]}: type {kind} needs exactly this embedded spec, found {present}")


def validate(manifest: dict[str, Any]) -> dict[str, Any]:
    """Check a manifest against its CRD schema and Chaos Mesh's rules; raise FaultError listing every problem."""
    problems = schema_errors(manifest)
    if not problems or all(not p.startswith(("(top level)", "apiVersion", "kind")) for p in problems):
        problems += [p for p in semantic_errors(manifest) if p not in problems]
    if problems:
        what = "manifest"
        if isinstance(manifest, dict):
            what = f"{manifest.get('kind', '?')} {(manifest.get('metadata') or {}).get('name', '?')}"
        raise FaultError(f"invalid {what}: " + "; ".join(problems))
    return manifest


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
