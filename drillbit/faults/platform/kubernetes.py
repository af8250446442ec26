"""The Kubernetes platform's plumbing, through the official ``kubernetes`` client: no fault here, only how to reach
the API server and what the fault kinds share.

- ``KubeConnection``: how to reach the API server (kubeconfig context or path, in-cluster, or a plain URL such as
  ``kubectl proxy``'s) — recorded in undo steps, so it holds names and paths, never a credential;
- pods: ``list_pods`` (by label selector; ``selector_string`` turns a Chaos Mesh selector into one), ``is_ready``,
  ``pod_workloads`` (each pod's workload through its owner chain, with its Ready replicas counted now),
  ``wait_for_ready`` / ``ReadyReport`` (watch a workload come back), ``RestartWatch`` (the same in the background,
  from what a pod kill recorded), ``exec_in_pod`` (websocket exec, with the exit code);
- undo drivers, registered here: ``k8s_custom_object`` (delete an object and wait until its finalizer ran; the step
  is built by ``custom_object_step``) and ``k8s_exec`` (run a recorded command in a pod, unless the pod was replaced).

So ``drillbit cleanup`` in a fresh process can revert from the ledger entry alone (``drillbit.faults.drivers`` imports
this module when an entry names a ``k8s_*`` driver). The faults are in their kinds' modules: ``pod_kill.PodDelete``,
``port_block.DbPortBlock``, and ``chaos_mesh.ChaosMeshFault`` for every Chaos Mesh experiment.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from drillbit.faults.errors import FaultError
from drillbit.faults.ledger import Handle
from drillbit.faults.targets import Workload
from drillbit.faults.undo import UndoError, driver

REQUEST_TIMEOUT = 30.0
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


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
    def for_environment(cls, target: Any) -> KubeConnection:
        """How to reach an environment's cluster from its ``drillbit.config.KubernetesTarget``: the kubeconfig
        (``$KUBECONFIG``, else ``~/.kube/config``) at the target's context; with neither a kubeconfig nor a context,
        inside a pod (a Kubernetes work pool), the pod's service account."""
        config_file = os.environ.get("KUBECONFIG") or None
        if config_file and os.pathsep in config_file:
            config_file = None  # a merged list: let the client merge it (cleanup needs the same $KUBECONFIG)
        has_kubeconfig = bool(config_file) or (Path.home() / ".kube" / "config").is_file()
        context = getattr(target, "context", None)
        in_cluster = not has_kubeconfig and not context and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        return cls(context=context, config_file=config_file, in_cluster=in_cluster)

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


class KubeClient:
    """A fault's connection to the API server, opened on first use (planning a manifest needs no cluster)."""

    connection: KubeConnection
    _api: client.ApiClient | None = None

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = self.connection.api_client()
        return self._api

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


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
    except (ApiException, *TRANSPORT_ERRORS) as exc:
        raise FaultError(f"listing pods in {namespace} with {selector!r} failed: {api_error(exc)}") from exc
    pods = [core.api_client.sanitize_for_serialization(p) for p in listed.items or []]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def controller_ref(meta: dict[str, Any]) -> dict[str, Any] | None:
    """An object's managing owner (the ownerReference with ``controller: true``, else its first one), or None."""
    refs = meta.get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), refs[0] if refs else None)


def replica_set_owners(apps: client.AppsV1Api, namespace: str) -> dict[str, tuple[str, str]]:
    """Each ReplicaSet of the namespace → (kind, name) of its controller (its Deployment), or of itself if it has
    none; one list request (RBAC: ``list`` on ``apps/replicasets``)."""
    try:
        listed = apps.list_namespaced_replica_set(namespace, _request_timeout=REQUEST_TIMEOUT)
    except (ApiException, *TRANSPORT_ERRORS) as exc:
        raise FaultError(
            f"listing the ReplicaSets of {namespace} (to find the workload of its pods) failed: {api_error(exc)}"
        ) from exc
    out = {}
    for rs in listed.items or []:
        ref = controller_ref(apps.api_client.sanitize_for_serialization(rs.metadata))
        out[rs.metadata.name] = (ref["kind"], ref["name"]) if ref else ("ReplicaSet", rs.metadata.name)
    return out


def pod_workloads(api: client.ApiClient, namespace: str, pods: list[dict[str, Any]]) -> dict[str, Workload]:
    """The workload of each of ``pods`` (pod name → ``targets.Workload``), through the owner chain: a pod's
    controller, and a ReplicaSet's own controller (its Deployment) when it has one — Pod → ReplicaSet → Deployment,
    Pod → StatefulSet, Pod → DaemonSet (any other controller as is); a pod without one is its own workload of one.

    ``replicas`` is the number of the workload's pods that are Ready now (counted, not the owner's
    ``spec.replicas``: users are served by the live pods), read from one list of the namespace's pods, plus one
    list of its ReplicaSets when a pod is owned by one; nothing is read when every pod given is bare.
    """
    core = client.CoreV1Api(api)
    owned = any(controller_ref(p["metadata"]) for p in pods)
    everyone = list_pods(core, namespace, "") if owned else pods
    owners: dict[str, tuple[str, str]] = {}
    if any((controller_ref(p["metadata"]) or {}).get("kind") == "ReplicaSet" for p in everyone):
        owners = replica_set_owners(client.AppsV1Api(api), namespace)

    def key(p: dict[str, Any]) -> tuple[str, str]:
        ref = controller_ref(p["metadata"])
        if ref is None:
            return ("Pod", p["metadata"]["name"])
        if ref["kind"] == "ReplicaSet":
            return owners.get(ref["name"], ("ReplicaSet", ref["name"]))
        return (ref["kind"], ref["name"])

    ready = Counter(key(p) for p in everyone if is_ready(p))
    return {p["metadata"]["name"]: Workload(*key(p), ready[key(p)], namespace) for p in pods}


# ------------------------------------------------------------------------------------------------ custom objects


def custom_object_step(
    manifest: dict[str, Any], connection: KubeConnection, wait_gone: float, plural: str
) -> dict[str, Any]:
    """The undo step deleting a custom object (``apiVersion`` group/version, ``plural``), waiting ``wait_gone`` s."""
    meta = manifest["metadata"]
    group, _, version = manifest["apiVersion"].rpartition("/")
    return {
        "driver": "k8s_custom_object",
        "group": group,
        "version": version,
        "namespace": meta["namespace"],
        "plural": plural,
        "name": meta["name"],
        "connection": connection.to_dict(),
        "wait_gone": wait_gone,
    }


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
    except TRANSPORT_ERRORS as exc:
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
        except TRANSPORT_ERRORS as exc:
            why = f"the API server became unreachable: {api_error(exc)}"
        if time.monotonic() > deadline:
            raise UndoError(f"{what} still exists {step.get('wait_gone', 60)} s after its deletion: {why}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ pods coming back


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
        except TRANSPORT_ERRORS:
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


# ------------------------------------------------------------------------------------------------ exec


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
    except TRANSPORT_ERRORS as exc:
        raise UndoError(f"cannot reach the API server: {api_error(exc)}") from exc
    if step.get("uid") and current.metadata.uid != step["uid"]:
        return
    try:
        timeout = float(step.get("timeout", 30))
        code, out, err = exec_in_pod(core, namespace, pod, step["command"], step.get("container"), timeout)
    except (ApiException, *TRANSPORT_ERRORS) as exc:
        raise UndoError(f"exec in {namespace}/{pod} failed: {api_error(exc)}") from exc
    absent = step.get("absent_pattern")
    if code == 0 or (absent and re.search(absent, out + err)):
        return
    raise UndoError(f"{' '.join(step['command'])} in {namespace}/{pod} exited {code}: {(err or out).strip()[:300]}")
