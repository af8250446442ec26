"""Faults on the Kubernetes platform, through the official ``kubernetes`` client.

- ``ChaosMeshFault``: create a Chaos Mesh custom resource (``drillbit.faults.chaosmesh`` builds and validates it),
  poll its status until Chaos Mesh reports it injected; revert deletes it (Chaos Mesh's finalizer recovers the pods).
- ``PodDelete``: pod kill without Chaos Mesh — delete pods picked by label selector; ``wait_ready`` watches the
  replacements become Ready and reports the time it took.
- ``RestartWatch``: after a pod kill (either way), watch the selector's pods in the background until as many are
  Ready as before the kill; its ``ReadyReport`` is what the pod-kill experiment grades "back within 30 s" on.
- ``DbPortBlock``: the seed's database failure — ``iptables -A INPUT -p tcp --dport 5432 -j DROP`` run in the
  database pod by exec (``REJECT --reject-with tcp-reset`` with ``action="reject"``); revert runs the matching
  ``-D``. It needs iptables and NET_ADMIN in that container; the Chaos Mesh partition
  (``infra/chaos-mesh/db-failure.yaml``) needs neither.

Blast radius is checked before anything is created: the selectors are resolved against the live pod list and the
count the mode implies must fit ``max_targets`` / ``max_percent``. Undo steps (``k8s_custom_object``, ``k8s_exec``)
carry how to reach the cluster (kubeconfig context or path, in-cluster, or a plain URL such as ``kubectl proxy``'s) —
never a credential — so ``drillbit cleanup`` in a fresh process can revert from the ledger entry alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from drillbit.faults import chaosmesh
from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.sandbox import Mode, select_targets
from drillbit.faults.undo import UndoError, driver

REQUEST_TIMEOUT = 30.0
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class KubeConnection:
    """How to reach the API server; recorded in undo steps, so it holds names and paths only, never secrets.

    ``host`` is an API URL used without credentials (``kubectl proxy``'s http://127.0.0.1:8001, or a test stand-in);
    otherwise ``in_cluster`` uses the pod's service account, else the kubeconfig ``config_file`` / ``context``.
    """

    context: str | None = None
    config_file: str | None = None
    in_cluster: bool = False
    host: str | None = None

    @classmethod
    def from_target(cls, target: Any, *, in_cluster: bool = False, config_file: str | None = None) -> KubeConnection:
        """From a ``drillbit.config.KubernetesTarget`` (its ``context``)."""
        return cls(context=getattr(target, "context", None), config_file=config_file, in_cluster=in_cluster)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KubeConnection:
        return cls(**{k: v for k, v in (data or {}).items() if k in ("context", "config_file", "in_cluster", "host")})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        try:
            if self.host:
                cfg.host = self.host.rstrip("/")
            elif self.in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(
                    config_file=self.config_file, context=self.context, client_configuration=cfg, persist_config=False
                )
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            where = f"kubeconfig context {self.context or '(current)'}"
            if self.in_cluster:
                where = "in-cluster service account"
            raise FaultError(f"cannot load the {where}: {exc}") from exc
        return client.ApiClient(cfg)


def api_error(exc: BaseException) -> str:
    """A short readable reason from an ApiException (the Status message) or a transport error."""
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(exc.body).get("message") or message
        return f"HTTP {exc.status}: {message}".strip()
    return f"{type(exc).__name__}: {exc}"


def selector_string(selector: dict[str, Any]) -> str:
    """A Kubernetes label selector string from a Chaos Mesh selector (labelSelectors + expressionSelectors)."""
    parts = [f"{k}={v}" for k, v in (selector.get("labelSelectors") or {}).items()]
    for expr in selector.get("expressionSelectors") or []:
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)


def is_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def list_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching a label selector, as plain dicts (camelCase, as the API sends them); terminating ones left out."""
    try:
        listed = core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT)
    except (ApiException, *_TRANSPORT_ERRORS) as exc:
        raise FaultError(f"listing pods in {namespace} with {selector!r} failed: {api_error(exc)}") from exc
    pods = [core.api_client.sanitize_for_serialization(p) for p in listed.items or []]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _check_blast_radius(
    pods: list[dict[str, Any]],
    labels: dict[str, str],
    mode: str,
    value: Any,
    max_targets: int | None,
    max_percent: float | None,
    where: str,
) -> int:
    """How many of ``pods`` the mode picks; FaultError if none match or the count exceeds the blast radius."""
    components = {p["metadata"]["name"]: {"labels": p["metadata"].get("labels") or {}} for p in pods}
    if not components:
        raise FaultError(f"{where}: selects no pod ({labels}); check the labels and namespace")
    number = float(value) if value is not None else None
    picked = select_targets(
        components,
        labels,
        "fixed-percent" if mode == "random-max-percent" else mode,  # type: ignore[arg-type]
        number,
        max_targets=max_targets,
        max_percent=max_percent,
    )
    return len(picked)


# ------------------------------------------------------------------------------------------------ Chaos Mesh


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


def custom_object_step(manifest: dict[str, Any], connection: KubeConnection, wait_gone: float) -> dict[str, Any]:
    meta = manifest["metadata"]
    return {
        "driver": "k8s_custom_object",
        "group": chaosmesh.GROUP,
        "version": chaosmesh.VERSION,
        "namespace": meta["namespace"],
        "plural": chaosmesh.plural(manifest),
        "name": meta["name"],
        "connection": connection.to_dict(),
        "wait_gone": wait_gone,
    }


_KINDS = {"PodChaos": "pod-kill", "NetworkChaos": "network-latency", "StressChaos": "stress"}
_KINDS |= {"IOChaos": "disk-pressure", "Schedule": "schedule"}


class ChaosMeshFault(Fault):
    """Create a Chaos Mesh experiment (a manifest from ``drillbit.faults.chaosmesh``) and wait until it is injected."""

    def __init__(
        self,
        manifest: dict[str, Any],
        connection: KubeConnection | None = None,
        *,
        max_targets: int | None = None,
        max_percent: float | None = None,
        inject_timeout: float = 60.0,
        poll_interval: float = 1.0,
        delete_timeout: float = 60.0,
        kind: str | None = None,
        on_applied: Callable[[Handle], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.on_applied = on_applied  # called once the fault is in place (e.g. RestartWatch.start)
        self.connection = connection or KubeConnection()
        self.max_targets, self.max_percent = max_targets, max_percent
        self.inject_timeout, self.poll_interval, self.delete_timeout = inject_timeout, poll_interval, delete_timeout
        partition = (manifest.get("spec") or {}).get("action") == "partition"
        self.kind = kind or ("network-partition" if partition else _KINDS.get(manifest.get("kind"), "chaos"))
        self._client: client.ApiClient | None = None

    @property
    def api(self) -> client.ApiClient:
        if self._client is None:
            self._client = self.connection.api_client()
        return self._client

    @property
    def ref(self) -> str:
        meta = self.manifest.get("metadata") or {}
        return f"{self.manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}"

    def plan(self) -> Plan:
        chaosmesh.validate(self.manifest)
        core = client.CoreV1Api(self.api)
        candidates: list[str] = []
        counts = {}
        uids: dict[str, str] = {}
        ready_before = 0
        for where, selector, mode, value in chaosmesh.selectors(self.manifest):
            pods = self._selected(core, where, selector)
            if ".target." in where:  # the far end of a link: it must exist, but it is not what gets broken
                if not pods:
                    raise FaultError(f"{where}: selects no pod; the fault would do nothing")
                counts[where] = len(pods)
                continue
            labels = selector["labelSelectors"]
            counts[where] = _check_blast_radius(pods, labels, mode, value, self.max_targets, self.max_percent, where)
            candidates += [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
            uids |= {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["metadata"]["uid"] for p in pods}
            ready_before += sum(1 for p in pods if is_ready(p))
        detail = {"chaos": self.ref, "counts": counts, "manifest": self.manifest}
        detail |= {"pods": uids, "ready_before": ready_before}
        return Plan(self.kind, sorted(candidates), detail)

    @staticmethod
    def _selected(core: client.CoreV1Api, where: str, selector: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods a selector matches now; only namespaces + label/expression selectors are accepted."""
        known = {"namespaces", "labelSelectors", "expressionSelectors"}
        if set(selector) - known:
            extra = ", ".join(sorted(set(selector) - known))
            raise FaultError(f"{where}: selector fields {extra} are not checked for blast radius; remove them")
        if not selector.get("namespaces"):
            raise FaultError(f"{where}.namespaces: name them (an empty list would let Chaos Mesh look cluster-wide)")
        if not selector.get("labelSelectors") and not (".target." in where and selector.get("expressionSelectors")):
            raise FaultError(f"{where}.labelSelectors: empty — Drillbit never selects a whole namespace")
        return [p for ns in selector["namespaces"] for p in list_pods(core, ns, selector_string(selector))]

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [custom_object_step(self.manifest, self.connection, self.delete_timeout)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        custom = client.CustomObjectsApi(self.api)
        meta = self.manifest["metadata"]
        args = (chaosmesh.GROUP, chaosmesh.VERSION, meta["namespace"], chaosmesh.plural(self.manifest))
        handle.detail["created_at"] = time.time()
        try:
            custom.create_namespaced_custom_object(*args, self.manifest, _request_timeout=REQUEST_TIMEOUT)
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            raise FaultError(f"creating {self.ref} was refused: {api_error(exc)}") from exc
        if self.manifest["kind"] == "Schedule":
            handle.detail["schedule"] = self.manifest["spec"]["schedule"]
            return
        handle.detail["injected"] = self.wait_injected(custom, args)
        self.remember(handle)
        if self.on_applied:
            self.on_applied(handle)

    def wait_injected(self, custom: client.CustomObjectsApi, args: tuple[str, ...]) -> list[str]:
        """Poll the object until Chaos Mesh reports every selected target injected; FaultError on timeout."""
        deadline = time.monotonic() + self.inject_timeout
        why = "no status yet"
        while True:
            try:
                obj = custom.get_namespaced_custom_object(
                    *args, self.manifest["metadata"]["name"], _request_timeout=REQUEST_TIMEOUT
                )
                injected, ids, why = injection_state(obj)
                if injected:
                    return ids
                why = why or "Chaos Mesh has not injected every target yet"
            except (ApiException, *_TRANSPORT_ERRORS) as exc:
                why = f"reading its status failed: {api_error(exc)}"
            if time.monotonic() + self.poll_interval > deadline:
                raise FaultError(f"{self.ref} was not injected within {self.inject_timeout:g} s: {why}")
            time.sleep(self.poll_interval)


@driver("k8s_custom_object")
def _k8s_custom_object(step: dict[str, Any]) -> None:
    """Delete a custom object and wait until it is gone (its finalizer ran); a 404 is success."""
    try:
        custom = client.CustomObjectsApi(KubeConnection.from_dict(step.get("connection")).api_client())
    except FaultError as exc:
        raise UndoError(str(exc)) from exc
    args = (step["group"], step["version"], step["namespace"], step["plural"], step["name"])
    what = f"{step['plural']} {step['namespace']}/{step['name']}"
    try:
        custom.delete_namespaced_custom_object(*args, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise UndoError(f"deleting {what} failed: {api_error(exc)}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise UndoError(f"cannot reach the API server to delete {what}: {api_error(exc)}") from exc
    deadline = time.monotonic() + float(step.get("wait_gone", 60))
    while True:
        try:
            custom.get_namespaced_custom_object(*args, _request_timeout=REQUEST_TIMEOUT)
            why = "Chaos Mesh's finalizer has not finished recovering the targets (see chaos-controller-manager)"
        except ApiException as exc:
            if exc.status == 404:
                return
            why = f"reading it failed: {api_error(exc)}"
        except _TRANSPORT_ERRORS as exc:
            why = f"the API server became unreachable: {api_error(exc)}"
        if time.monotonic() > deadline:
            raise UndoError(f"{what} still exists {step.get('wait_gone', 60)} s after its deletion: {why}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ pod delete


@dataclass
class ReadyReport:
    """How the workload came back after pods were deleted."""

    ready: bool
    seconds: float | None  # from the deletion until enough pods were Ready again
    replacements: list[str] = field(default_factory=list)
    ready_pods: int = 0
    wanted: int = 0


def wait_for_ready(
    core: client.CoreV1Api,
    namespace: str,
    selector: str,
    *,
    want_ready: int,
    exclude_uids: set[str],
    known_uids: set[str],
    since: float,
    timeout: float,
    stop: threading.Event | None = None,
    max_watch: float | None = None,
) -> ReadyReport:
    """Watch pods until ``want_ready`` of them (not the deleted ones) are Ready; seconds are counted from ``since``.

    ``stop`` ends the watch early (checked at every event and between watches; ``max_watch`` bounds one watch
    request, so that a quiet watch notices ``stop`` in time).
    """
    deadline = time.monotonic() + timeout
    report = ReadyReport(False, None, wanted=want_ready)
    pods: dict[str, dict[str, Any]] = {}  # uid -> pod, kept across watch restarts (resumed from resourceVersion)
    version: str | None = None
    while (remaining := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
        w = watch.Watch()
        per_watch = min(remaining, max_watch) if max_watch else remaining
        kwargs: dict[str, Any] = {"label_selector": selector, "timeout_seconds": max(1, math.ceil(per_watch))}
        if version:
            kwargs["resource_version"] = version
        try:
            for event in w.stream(core.list_namespaced_pod, namespace, _request_timeout=remaining + 5, **kwargs):
                pod = event["raw_object"]
                version = pod["metadata"].get("resourceVersion") or version
                if event["type"] == "DELETED":
                    pods.pop(pod["metadata"]["uid"], None)
                elif pod["metadata"]["uid"] not in exclude_uids:
                    pods[pod["metadata"]["uid"]] = pod
                done = _update(report, pods, want_ready, known_uids, since)
                if done or time.monotonic() > deadline or (stop and stop.is_set()):
                    w.stop()
                    break
        except ApiException as exc:
            if exc.status == 410:  # too old to resume: start over from a fresh list
                version = None
                pods.clear()
        except _TRANSPORT_ERRORS:
            pass  # the watch broke; start another while time remains
        if report.ready:
            return report
        if stop:
            stop.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        else:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return report


def _update(report: ReadyReport, pods: dict[str, dict[str, Any]], want: int, known: set[str], since: float) -> bool:
    ready = [p for p in pods.values() if is_ready(p)]
    report.ready_pods = len(ready)
    report.replacements = sorted(p["metadata"]["name"] for p in ready if p["metadata"]["uid"] not in known)
    if len(ready) >= want and not report.ready:
        report.ready, report.seconds = True, round(time.time() - since, 3)
    return report.ready


class PodDelete(Fault):
    """Pod kill without Chaos Mesh: delete pods picked by label selector (modes as Chaos Mesh's, blast radius)."""

    kind = "pod-kill"

    def __init__(
        self,
        selector: dict[str, str],
        namespace: str = "virtengine",
        connection: KubeConnection | None = None,
        *,
        mode: Mode = "one",
        value: float | None = None,
        max_targets: int | None = None,
        max_percent: float | None = None,
        grace_period: int = 0,
        seed: int | None = None,
        on_applied: Callable[[Handle], None] | None = None,
    ) -> None:
        self.selector, self.namespace = dict(selector), namespace
        self.on_applied = on_applied
        self.connection = connection or KubeConnection()
        self.mode, self.value, self.max_targets, self.max_percent = mode, value, max_targets, max_percent
        self.grace_period, self.rng = grace_period, random.Random(seed)
        self._client: client.ApiClient | None = None

    @property
    def core(self) -> client.CoreV1Api:
        if self._client is None:
            self._client = self.connection.api_client()
        return client.CoreV1Api(self._client)

    def plan(self) -> Plan:
        if not self.selector:
            raise FaultError("selector is empty: it would match every pod; give at least one label")
        if self.grace_period < 0:
            raise FaultError(f"grace_period must be ≥ 0 s, got {self.grace_period}")
        pods = list_pods(self.core, self.namespace, selector_string({"labelSelectors": self.selector}))
        components = {p["metadata"]["name"]: {"labels": p["metadata"].get("labels") or {}} for p in pods}
        targets = select_targets(
            components,
            self.selector,
            self.mode,
            self.value,
            max_targets=self.max_targets,
            max_percent=self.max_percent,
            rng=self.rng,
        )
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        detail = {"selector": self.selector, "namespace": self.namespace, "mode": self.mode, "via": "pod delete"}
        detail |= {"target_uids": {t: uids[t] for t in targets}, "known_uids": sorted(uids.values())}
        detail["ready_before"] = sum(1 for p in pods if is_ready(p))
        return Plan(self.kind, targets, detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "noop", "why": "a deleted pod is recreated by its controller, not by Drillbit"}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        handle.detail["deleted_at"] = time.time()
        deleted = {}
        for name, uid in plan.detail["target_uids"].items():
            options = client.V1DeleteOptions(
                grace_period_seconds=self.grace_period, preconditions=client.V1Preconditions(uid=uid)
            )
            try:
                self.core.delete_namespaced_pod(name, self.namespace, body=options, _request_timeout=REQUEST_TIMEOUT)
            except (ApiException, *_TRANSPORT_ERRORS) as exc:
                raise FaultError(f"deleting pod {self.namespace}/{name} failed: {api_error(exc)}") from exc
            deleted[name] = uid
        handle.detail["deleted"] = deleted
        self.remember(handle)
        if self.on_applied:
            self.on_applied(handle)

    def wait_ready(self, handle: Handle, timeout: float = 120.0) -> ReadyReport:
        """Watch until as many pods are Ready as before the deletion (not counting the deleted ones)."""
        return wait_for_ready(
            self.core,
            self.namespace,
            selector_string({"labelSelectors": self.selector}),
            want_ready=int(handle.detail.get("ready_before", 1)),
            exclude_uids=set(handle.detail.get("deleted", {}).values()),
            known_uids=set(handle.detail.get("known_uids", [])),
            since=float(handle.detail.get("deleted_at", time.time())),
            timeout=timeout,
        )


class RestartWatch:
    """Watch a workload come back after a pod kill, in the background, from the moment the kill was applied.

    ``start(handle)`` (give it as a fault's ``on_applied``) reads what the kill recorded — ``PodDelete``'s ``deleted``
    pods, or a Chaos Mesh pod-kill's ``injected`` records mapped to the planned ``pods`` — and watches the selector's
    pods (``wait_for_ready``) until as many are Ready as before, not counting the killed pods. ``report()`` returns the
    ``ReadyReport`` (seconds counted from the deletion / the Chaos Mesh object's creation), stopping the watch if it
    is still waiting.
    """

    def __init__(
        self,
        selector: dict[str, str],
        namespace: str,
        connection: KubeConnection | None = None,
        *,
        timeout: float = 120.0,
        max_watch: float = 5.0,
    ) -> None:
        self.selector, self.namespace = dict(selector), namespace
        self.connection = connection or KubeConnection()
        self.timeout, self.max_watch = timeout, max_watch
        self.killed: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: ReadyReport | None = None
        self._error: str | None = None

    def start(self, handle: Handle) -> None:
        d = handle.detail
        if "deleted" in d:  # PodDelete
            killed = {str(name): str(uid) for name, uid in d["deleted"].items()}
            known, since = set(d.get("known_uids") or []), float(d.get("deleted_at") or time.time())
        else:  # ChaosMeshFault with a PodChaos pod-kill: records are "namespace/name"
            planned = d.get("pods") or {}
            killed = {r: planned[r] for r in d.get("injected") or [] if r in planned}
            known, since = set(planned.values()), float(d.get("created_at") or time.time())
        self.killed = sorted(killed)
        kwargs = {
            "want_ready": int(d.get("ready_before") or 1),
            "exclude_uids": set(killed.values()),
            "known_uids": known,
            "since": since,
            "timeout": self.timeout,
            "stop": self._stop,
            "max_watch": self.max_watch,
        }
        self._thread = threading.Thread(target=self._run, kwargs=kwargs, name="restart-watch", daemon=True)
        self._thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            core = client.CoreV1Api(self.connection.api_client())
            selector = selector_string({"labelSelectors": self.selector})
            self._report = wait_for_ready(core, self.namespace, selector, **kwargs)
        except Exception as exc:  # reported, never raised in a background thread
            self._error = f"{type(exc).__name__}: {exc}"

    @property
    def started(self) -> bool:
        return self._thread is not None

    def report(self, wait: float = 0.0) -> ReadyReport | None:
        """The report once the watch has ended (waiting up to ``wait`` s; then it is stopped); None if never started."""
        if self._thread is None:
            return None
        self._thread.join(max(0.0, wait))
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(self.max_watch + 10)
        if self._report is None:
            self._report = ReadyReport(False, None)
        return self._report

    @property
    def error(self) -> str | None:
        return self._error


# ------------------------------------------------------------------------------------------------ exec / DB failure


def exec_in_pod(
    core: client.CoreV1Api,
    namespace: str,
    pod: str,
    command: list[str],
    container: str | None = None,
    timeout: float = 30.0,
) -> tuple[int | None, str, str]:
    """(exit code or None if it did not finish, stdout, stderr) of a command run in a pod (websocket exec)."""
    kwargs: dict[str, Any] = {"command": command, "stderr": True, "stdin": False, "stdout": True, "tty": False}
    if container:
        kwargs["container"] = container
    resp = stream(core.connect_get_namespaced_pod_exec, pod, namespace, _preload_content=False, **kwargs)
    try:
        resp.run_forever(timeout=timeout)
        out, err = resp.read_stdout(timeout=0) or "", resp.read_stderr(timeout=0) or ""
        status_text = resp.read_channel(3) if not resp.is_open() else ""
    finally:
        resp.close()
    return _exit_code(status_text), out, err


def _exit_code(status_text: str) -> int | None:
    """The exit code from the exec error channel's Status (Success → 0; NonZeroExitCode → its ExitCode cause)."""
    try:
        status = json.loads(status_text)
    except (TypeError, ValueError):
        return None
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    return None


@driver("k8s_exec")
def _k8s_exec(step: dict[str, Any]) -> None:
    """Run a recorded command in a pod. Success if it exits 0, if its output matches ``absent_pattern`` (nothing
    left to undo), or if the pod is gone or is another pod now (``uid`` differs: a new pod has a new network)."""
    try:
        core = client.CoreV1Api(KubeConnection.from_dict(step.get("connection")).api_client())
    except FaultError as exc:
        raise UndoError(str(exc)) from exc
    namespace, pod = step["namespace"], step["pod"]
    try:
        current = core.read_namespaced_pod(pod, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise UndoError(f"reading pod {namespace}/{pod} failed: {api_error(exc)}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise UndoError(f"cannot reach the API server: {api_error(exc)}") from exc
    if step.get("uid") and current.metadata.uid != step["uid"]:
        return
    try:
        timeout = float(step.get("timeout", 30))
        code, out, err = exec_in_pod(core, namespace, pod, step["command"], step.get("container"), timeout)
    except (ApiException, *_TRANSPORT_ERRORS) as exc:
        raise UndoError(f"exec in {namespace}/{pod} failed: {api_error(exc)}") from exc
    absent = step.get("absent_pattern")
    if code == 0 or (absent and re.search(absent, out + err)):
        return
    raise UndoError(f"{' '.join(step['command'])} in {namespace}/{pod} exited {code}: {(err or out).strip()[:300]}")


class DbPortBlock(Fault):
    """The seed's DB failure: an iptables DROP of the database port inside the database pod, removed on revert."""

    kind = "db-failure"
    ABSENT = r"does a matching rule exist|Bad rule"

    def __init__(
        self,
        selector: dict[str, str],
        namespace: str = "virtengine",
        connection: KubeConnection | None = None,
        *,
        port: int = 5432,
        pod: str | None = None,
        container: str | None = None,
        exec_timeout: float = 30.0,
        action: str = "drop",
    ) -> None:
        self.selector, self.namespace, self.port = dict(selector), namespace, port
        self.action = action
        self.pod, self.container = pod, container
        self.connection = connection or KubeConnection()
        self.exec_timeout = exec_timeout
        self._client: client.ApiClient | None = None

    @property
    def core(self) -> client.CoreV1Api:
        if self._client is None:
            self._client = self.connection.api_client()
        return client.CoreV1Api(self._client)

    def rule(self, op: str) -> list[str]:
        target = ["REJECT", "--reject-with", "tcp-reset"] if self.action == "reject" else ["DROP"]
        return ["iptables", op, "INPUT", "-p", "tcp", "--dport", str(int(self.port)), "-j", *target]

    def plan(self) -> Plan:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise FaultError(f"port {self.port!r} is not a TCP port")
        if self.action not in ("drop", "reject"):
            raise FaultError(f"action {self.action!r}: use drop (silent) or reject (TCP reset)")
        if not self.selector:
            raise FaultError("selector is empty: give the database pod's labels (app.kubernetes.io/name: postgres)")
        pods = list_pods(self.core, self.namespace, selector_string({"labelSelectors": self.selector}))
        names = sorted(p["metadata"]["name"] for p in pods)
        if self.pod is not None:
            pods = [p for p in pods if p["metadata"]["name"] == self.pod]
            if not pods:
                raise FaultError(f"pod {self.pod} is not among the pods matching {self.selector}: {', '.join(names)}")
        if len(pods) != 1:
            found = ", ".join(names) or "none"
            raise FaultError(f"{self.selector} must match exactly one database pod (found: {found}); set pod=NAME")
        pod = pods[0]
        if (pod.get("status") or {}).get("phase") != "Running":
            raise FaultError(f"pod {pod['metadata']['name']} is not Running; refusing to block its port")
        detail = {"pod": pod["metadata"]["name"], "uid": pod["metadata"]["uid"], "port": int(self.port)}
        detail |= {"container": self.container, "command": self.rule("-A")}
        return Plan(self.kind, [f"{self.namespace}/{detail['pod']}:{self.port}"], detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        step = {"driver": "k8s_exec", "namespace": self.namespace, "pod": plan.detail["pod"], "uid": plan.detail["uid"]}
        step |= {"container": self.container, "command": self.rule("-D"), "absent_pattern": self.ABSENT}
        return [step | {"timeout": self.exec_timeout, "connection": self.connection.to_dict()}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        pod = plan.detail["pod"]
        try:
            code, out, err = exec_in_pod(
                self.core, self.namespace, pod, self.rule("-A"), self.container, self.exec_timeout
            )
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            raise FaultError(f"exec in {self.namespace}/{pod} failed: {api_error(exc)} (RBAC: pods/exec)") from exc
        if code != 0:
            raise FaultError(
                f"iptables in {self.namespace}/{pod} exited {code}: {(err or out).strip()[:300]} — the container needs "
                "iptables and the NET_ADMIN capability; otherwise use the Chaos Mesh partition (db-failure.yaml)"
            )
