"""The requests Drillbit's Kubernetes faults send, checked against a LOCAL API STAND-IN — not a cluster.

``LocalApiStandIn`` is a small HTTP server on 127.0.0.1 that records every request and answers canned JSON in the
shapes the Kubernetes API uses (objects, Status, PodList, watch events, the exec websocket's channel frames). The
official ``kubernetes`` client is pointed at it. What this shows: the exact URLs, queries and bodies Drillbit sends,
how it reads the answers (injection status, 404 on revert, readiness events, exec exit codes), and that the ledger
alone lets a fresh process revert. What it does not show: that a real API server, Chaos Mesh or iptables in a real
pod behave as the canned answers say; that needs a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from drillbit.faults import partition, pod_kill
from drillbit.faults.base import FaultError, cleanup, revert
from drillbit.faults.chaos_mesh import ChaosMeshFault
from drillbit.faults.ledger import Ledger
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform.kubernetes import KubeConnection
from drillbit.faults.pod_kill import PodDelete
from drillbit.faults.port_block import DbPortBlock
from drillbit.faults.undo import UndoError, run_step

NODE = {"app.kubernetes.io/name": "virtengine-node"}
DB = {"app.kubernetes.io/name": "postgres"}
CHAOS = "/apis/chaos-mesh.org/v1alpha1/namespaces/chaos-testing"
INJECTED = {
    "conditions": [{"type": "Selected", "status": "True"}, {"type": "AllInjected", "status": "True"}],
    "experiment": {
        "desiredPhase": "Run",
        "containerRecords": [
            {
                "id": "virtengine/node-1",
                "phase": "Injected",
                "selectorKey": ".",
                "injectedCount": 1,
                "recoveredCount": 0,
            }
        ],
    },
}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# ------------------------------------------------------------------------------------------------ the stand-in


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


def pod(
    name: str, labels: dict[str, str], uid: str, ready: bool = True, owner: tuple[str, str] | None = None
) -> dict[str, Any]:
    """A pod; ``owner`` (kind, name) is its controller (a bare pod without it)."""
    meta = {"name": name, "namespace": "virtengine", "uid": uid, "labels": labels, "resourceVersion": "1"}
    if owner:
        ref = {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": f"uid-{owner[1]}"}
        meta["ownerReferences"] = [ref | {"controller": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in re.split(r",(?![^()]*\))", selector) if selector else []:
        if m := re.fullmatch(r"(\S+) (in|notin) \((.*)\)", term):
            inside = labels.get(m[1]) in m[3].split(",")
            if inside != (m[2] == "in"):
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif (term[1:] in labels) if term.startswith("!") else (term not in labels):  # DoesNotExist / Exists
            return False
    return True


@dataclass
class LocalApiStandIn:
    """Records requests and answers canned JSON; a stand-in for the Kubernetes API, never a cluster."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)  # successive status answers for a chaos object
    gets_after_delete: int = 0  # GETs that still find a deleted object (a finalizer at work)
    create_status: int = 201
    exec_results: list[tuple[int, str, str]] = field(default_factory=list)  # (exit code, stdout, stderr) per exec
    replacements: list[dict[str, Any]] = field(default_factory=list)  # pods the watch announces after a delete
    on_request: Any = None  # called with each Recorded request before it is answered (tests look at the ledger then)
    namespaces: list[str] | None = None  # the namespaces that exist; None: those of its pods
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, method: str, path_prefix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    status = "Success" if code < 300 else "Failure"
    return {"kind": "Status", "apiVersion": "v1", "status": status, "code": code, "reason": reason, "message": message}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: LocalApiStandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _record(self) -> Recorded:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        rec = Recorded(
            self.command, parts.path, parse_qs(parts.query), body, {k.lower(): v for k, v in self.headers.items()}
        )
        with self.api.lock:
            self.api.requests.append(rec)
        if self.api.on_request:
            self.api.on_request(rec)
        return rec

    def _json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_GET(self) -> None:
        self._route(self._record())

    def do_POST(self) -> None:
        self._route(self._record())

    def do_DELETE(self) -> None:
        self._route(self._record())

    def _route(self, rec: Recorded) -> None:
        api, p = self.api, rec.path
        if m := re.fullmatch(r"/apis/chaos-mesh\.org/v1alpha1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", p):
            return self._chaos(rec, m[1], m[2], m[3])
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec", p):
            return self._exec(rec)
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)", p):
            known = (
                api.namespaces
                if api.namespaces is not None
                else {q["metadata"]["namespace"] for q in api.pods.values()}
            )
            if m[1] not in known:
                return self._json(404, status_body(404, "NotFound", f'namespaces "{m[1]}" not found'))
            return self._json(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": m[1]}})
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?", p):
            name = m[2]
            if name is None and rec.query.get("watch") == ["true"]:
                return self._watch(rec)
            if name is None:
                selector = rec.query.get("labelSelector", [""])[0]
                listed = [q for q in api.pods.values() if q["metadata"]["namespace"] == m[1]]
                items = [q for q in listed if _matches(q["metadata"]["labels"], selector)]
                return self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            if name not in api.pods:
                return self._json(404, status_body(404, "NotFound", f'pods "{name}" not found'))
            if rec.method == "DELETE":
                gone = api.pods.pop(name)
                return self._json(200, gone)
            return self._json(200, api.pods[name])
        return self._json(404, status_body(404, "NotFound", "the stand-in has no such path"))

    def _chaos(self, rec: Recorded, ns: str, plural: str, name: str | None) -> None:
        api = self.api
        if rec.method == "POST":
            if api.create_status >= 300:
                return self._json(api.create_status, status_body(api.create_status, "Forbidden", "denied by webhook"))
            obj = json.loads(json.dumps(rec.body))
            obj["metadata"] |= {"uid": "chaos-uid-1", "resourceVersion": "1"}
            api.objects[f"{plural}/{obj['metadata']['name']}"] = obj
            return self._json(201, obj)
        key = f"{plural}/{name}"
        if key not in api.objects:
            return self._json(404, status_body(404, "NotFound", f'{plural}.chaos-mesh.org "{name}" not found'))
        obj = api.objects[key]
        if rec.method == "DELETE":
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            if api.gets_after_delete <= 0:
                del api.objects[key]
            return self._json(200, status_body(200, "", ""))
        if "deletionTimestamp" in obj["metadata"]:
            api.gets_after_delete -= 1
            if api.gets_after_delete <= 0:
                del api.objects[key]
        status = api.statuses.pop(0) if len(api.statuses) > 1 else (api.statuses[0] if api.statuses else None)
        return self._json(200, obj | ({"status": status} if status else {}))

    def _watch(self, rec: Recorded) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        selector = rec.query.get("labelSelector", [""])[0]
        events = [("ADDED", q) for q in self.api.pods.values() if _matches(q["metadata"]["labels"], selector)]
        for fresh in self.api.replacements:
            events += [("ADDED", fresh), ("MODIFIED", pod(**_ready(fresh)))]
            self.api.pods[fresh["metadata"]["name"]] = pod(**_ready(fresh))
        self.api.replacements = []
        for kind, obj in events:
            self.wfile.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            self.wfile.flush()
            time.sleep(0.05)

    def _exec(self, rec: Recorded) -> None:
        key = rec.headers["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
            ).encode()
        )
        code, out, err = self.api.exec_results.pop(0) if self.api.exec_results else (0, "", "")
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode", "message": "exit"}
            status["details"] = {"causes": [{"reason": "ExitCode", "message": str(code)}]}
        for channel, payload in ((1, out), (2, err), (3, json.dumps(status))):
            if payload:
                self.wfile.write(_frame(0x2, bytes([channel]) + payload.encode()))
        self.wfile.write(_frame(0x8, (1000).to_bytes(2, "big")))
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.settimeout(2)
            self.connection.recv(64)  # the client's close frame


def _ready(p: dict[str, Any]) -> dict[str, Any]:
    meta = p["metadata"]
    owner = next(((r["kind"], r["name"]) for r in meta.get("ownerReferences") or []), None)
    return {"name": meta["name"], "labels": meta["labels"], "uid": meta["uid"], "ready": True, "owner": owner}


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big"))
    return head + payload


@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]):
    """Serve ``handler`` on a free loopback port in a thread; yields its URL, stops it afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def api():
    stand_in = LocalApiStandIn()
    with serve(type("BoundHandler", (Handler,), {"api": stand_in})) as url:
        stand_in.url = url
        yield stand_in


def _reapers(ledger_root: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                if b"drillbit.faults.reaper" in cmd and str(ledger_root).encode() in cmd:
                    found.append(int(proc.name))
    return found


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait (bounded) until a process has exited, reaping it if it is our child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z" and os.getppid() != pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        time.sleep(0.05)
    return False


@pytest.fixture
def ledger(api, tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    led = Ledger(tmp_path / "ledger")
    try:
        yield led
    finally:
        cleanup(led)  # the stand-in is still up: anything left is reverted through it
        for pid in _reapers(led.root):  # our own TTL reapers, by PID
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
            _gone(pid)


def nodes(api: LocalApiStandIn, n: int = 3) -> None:
    """``n`` validator pods of one StatefulSet (as infra/k8s/validators.yaml), and a bare API pod."""
    for i in range(n):
        labels = NODE | {"app.kubernetes.io/component": "blockchain"}
        api.pods[f"node-{i}"] = pod(f"node-{i}", labels, f"uid-node-{i}", owner=("StatefulSet", "virtengine-node"))
    api.pods["api-0"] = pod("api-0", {"app.kubernetes.io/name": "virtengine-api"}, "uid-api-0")


def pod_kill_manifest(**kw: Any) -> dict[str, Any]:
    return pod_kill.pod_kill(namespace="virtengine", labels=NODE, run_id="run-7", **kw)


# ------------------------------------------------------------------------------------------------ Chaos Mesh


def test_pod_chaos_is_created_polled_and_deleted_against_local_api_stand_in(api, ledger):
    nodes(api)
    api.statuses = [{}, {"experiment": {"containerRecords": []}}, INJECTED]
    manifest = pod_kill_manifest()
    fault = ChaosMeshFault(manifest, KubeConnection(host=api.url), max_targets=1, poll_interval=0.02)
    handle = fault.inject(ttl=120, ledger=ledger, run_id="run-7")

    listing = api.seen("GET", "/api/v1/namespaces/virtengine/pods")
    assert listing[0].query["labelSelector"] == ["app.kubernetes.io/name=virtengine-node"]
    (post,) = api.seen("POST")
    assert post.path == f"{CHAOS}/podchaos"
    assert post.body == manifest and chaosmesh.validate(post.body)
    name = manifest["metadata"]["name"]
    polls = api.seen("GET", f"{CHAOS}/podchaos/{name}")
    assert len(polls) == 3, "polled until AllInjected"
    assert handle.detail["injected"] == ["virtengine/node-1"]
    assert ledger.get(handle.id).undo[0] | {"connection": None} == {
        "driver": "k8s_custom_object",
        "group": "chaos-mesh.org",
        "version": "v1alpha1",
        "namespace": "chaos-testing",
        "plural": "podchaos",
        "name": name,
        "connection": None,
        "wait_gone": 60.0,
    }

    revert(handle, ledger)
    deletes = api.seen("DELETE")
    assert [d.path for d in deletes] == [f"{CHAOS}/podchaos/{name}"]
    assert api.seen("GET", f"{CHAOS}/podchaos/{name}")[-1] is api.requests[-1], "waited for it to be gone"
    assert ledger.pending() == []
    revert(handle, ledger)  # idempotent: the second DELETE is a 404, which counts as success
    assert len(api.seen("DELETE")) == 2


def test_blast_radius_is_enforced_before_anything_is_created_against_local_api_stand_in(api, ledger):
    nodes(api)
    fault = ChaosMeshFault(pod_kill_manifest(mode="all"), KubeConnection(host=api.url), max_targets=1)
    with pytest.raises(FaultError, match=r"blast radius: 3 targets exceed safety.max_targets=1"):
        fault.inject(ttl=60, ledger=ledger)
    fault = ChaosMeshFault(pod_kill_manifest(mode="fixed-percent", value=100), KubeConnection(host=api.url))
    fault.max_percent = 34
    with pytest.raises(FaultError, match=r"max_percent=34"):
        fault.inject(ttl=60, ledger=ledger)
    assert api.seen("POST") == [] and ledger.pending() == []


def test_selector_matching_nothing_is_refused_against_local_api_stand_in(api, ledger):
    manifest = pod_kill.pod_kill(namespace="virtengine", labels={"app": "virtengine-node"}, run_id="r")
    with pytest.raises(FaultError, match=r"spec.selector: selects no pod"):
        ChaosMeshFault(manifest, KubeConnection(host=api.url)).inject(ttl=60, ledger=ledger)
    assert api.seen("POST") == []


def test_partition_counts_only_the_selected_side_against_local_api_stand_in(api, ledger):
    nodes(api)
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    api.statuses = [INJECTED]
    manifest = partition.network_partition(
        namespace="virtengine",
        labels=DB,
        target_labels=None,
        target_expressions=[{"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["postgres"]}],
        run_id="r",
    )
    connection = KubeConnection(host=api.url)
    fault = ChaosMeshFault(manifest, connection, max_targets=1, poll_interval=0.02, full_outage=True)  # its only pod
    handle = fault.inject(ttl=60, ledger=ledger)
    selectors = [r.query["labelSelector"][0] for r in api.seen("GET", "/api/v1/namespaces/virtengine/pods")]
    assert selectors == ["app.kubernetes.io/name=postgres", "app.kubernetes.io/name notin (postgres)"]
    assert handle.detail["counts"] == {"spec.selector": 1, "spec.target.selector": 4}
    assert api.seen("POST")[0].path == f"{CHAOS}/networkchaos"
    revert(handle, ledger)


def test_an_invalid_manifest_fails_before_any_request_against_local_api_stand_in(api, ledger):
    manifest = pod_kill_manifest()
    manifest["spec"]["scheduler"] = {"cron": "@every 6h"}  # the seed's 1.x field
    with pytest.raises(FaultError, match=r"spec\.scheduler: unknown field"):
        ChaosMeshFault(manifest, KubeConnection(host=api.url)).inject(ttl=60, ledger=ledger)
    assert api.requests == [] and ledger.pending() == []


def test_injection_timeout_reverts_at_once_against_local_api_stand_in(api, ledger):
    nodes(api)
    stuck = {"experiment": {"containerRecords": [{"id": "virtengine/node-0", "phase": "Not Injected", "events": []}]}}
    stuck["experiment"]["containerRecords"][0]["events"] = [{"type": "Failed", "message": "chaos-daemon unreachable"}]
    api.statuses = [stuck]
    fault = ChaosMeshFault(pod_kill_manifest(), KubeConnection(host=api.url), inject_timeout=0.3, poll_interval=0.05)
    with pytest.raises(FaultError, match=r"not injected within 0.3 s: chaos-daemon unreachable"):
        fault.inject(ttl=60, ledger=ledger)
    assert len(api.seen("DELETE", f"{CHAOS}/podchaos/")) == 1, "a failed injection is reverted at once"
    assert ledger.pending() == []


def test_refused_creation_is_a_clear_error_against_local_api_stand_in(api, ledger):
    nodes(api)
    api.create_status = 403
    fault = ChaosMeshFault(pod_kill_manifest(), KubeConnection(host=api.url))
    with pytest.raises(FaultError, match=r"was refused: HTTP 403: denied by webhook"):
        fault.inject(ttl=60, ledger=ledger)
    assert ledger.pending() == []


def test_revert_waits_for_the_finalizer_and_keeps_the_entry_if_it_never_ends_against_local_api_stand_in(api, ledger):
    nodes(api)
    api.statuses = [INJECTED]
    fault = ChaosMeshFault(pod_kill_manifest(), KubeConnection(host=api.url), poll_interval=0.02, delete_timeout=0.5)
    handle = fault.inject(ttl=60, ledger=ledger)
    api.gets_after_delete = 10**6  # the finalizer never finishes
    with pytest.raises(UndoError, match=r"still exists 0.5 s after its deletion: Chaos Mesh's finalizer"):
        revert(handle, ledger)
    assert [h.id for h in ledger.pending()] == [handle.id], "not reverted, so the entry stays"
    api.gets_after_delete = 2
    revert(handle, ledger)
    assert ledger.pending() == []


def test_schedule_is_created_without_waiting_for_injection_against_local_api_stand_in(api, ledger):
    nodes(api)
    manifest = chaosmesh.schedule(pod_kill_manifest(), cron="@every 6h")
    handle = ChaosMeshFault(manifest, KubeConnection(host=api.url), max_targets=1).inject(ttl=60, ledger=ledger)
    (post,) = api.seen("POST")
    assert post.path == f"{CHAOS}/schedules" and post.body["spec"]["podChaos"]["mode"] == "one"
    assert handle.detail["schedule"] == "@every 6h" and handle.kind == "schedule"
    revert(handle, ledger)
    assert [d.path for d in api.seen("DELETE")] == [f"{CHAOS}/schedules/{manifest['metadata']['name']}"]


def test_a_kubeconfig_context_is_honoured_against_local_api_stand_in(api, ledger, tmp_path):
    nodes(api)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Config
            clusters:
              - name: other
                cluster: {{server: "http://127.0.0.1:9"}}
              - name: stand-in
                cluster: {{server: "{api.url}"}}
            users:
              - name: nobody
                user: {{}}
            contexts:
              - name: other
                context: {{cluster: other, user: nobody}}
              - name: drillbit-test
                context: {{cluster: stand-in, user: nobody}}
            current-context: other
            """
        )
    )
    connection = KubeConnection(context="drillbit-test", config_file=str(kubeconfig))
    plan = PodDelete(NODE, connection=connection, mode="all", full_outage=True).plan()
    assert plan.targets == ["node-0", "node-1", "node-2"]
    with pytest.raises(FaultError, match="cannot load the kubeconfig context nope"):
        KubeConnection(context="nope", config_file=str(kubeconfig)).api_client()


def test_cleanup_in_a_fresh_process_deletes_from_the_ledger_alone_against_local_api_stand_in(api, ledger):
    """The runner "dies" right after injecting: nothing of it survives but the ledger file (no revert, no SIGKILL).
    A fresh process, which never imported the Kubernetes module, reverts from that file alone."""
    nodes(api)
    api.statuses = [INJECTED]
    manifest = pod_kill_manifest()
    fault = ChaosMeshFault(manifest, KubeConnection(host=api.url), max_targets=1, poll_interval=0.02)
    handle_id = fault.inject(ttl=300, ledger=ledger).id
    del fault  # the crash: the fault object and its handle are lost; the reaper and the ledger entry remain
    name = manifest["metadata"]["name"]
    assert api.seen("POST") and api.seen("DELETE") == []
    (entry,) = ledger.pending()
    assert entry.id == handle_id and entry.undo[0]["driver"] == "k8s_custom_object" and entry.undo[0]["name"] == name
    env = os.environ.copy()

    fresh = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from drillbit.faults.base import cleanup
        from drillbit.faults.ledger import Ledger
        assert "drillbit.faults.platform.kubernetes" not in sys.modules
        print([r for _, r in cleanup(Ledger(Path({str(ledger.root)!r})))])
        """
    )
    done = subprocess.run([sys.executable, "-c", fresh], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['reverted']"
    assert [d.path for d in api.seen("DELETE")] == [f"{CHAOS}/podchaos/{name}"]
    assert ledger.pending() == []
    assert entry.reaper_pid and _gone(entry.reaper_pid), "the crashed runner's reaper was stopped"


# ------------------------------------------------------------------------------------------------ pod delete


def test_pod_delete_lists_deletes_and_times_the_replacement_against_local_api_stand_in(api, ledger):
    nodes(api)
    fault = PodDelete(NODE, "virtengine", KubeConnection(host=api.url), max_targets=1, seed=3)
    handle = fault.inject(ttl=60, ledger=ledger)
    (victim,) = handle.detail["deleted"]
    (delete,) = api.seen("DELETE")
    assert delete.path == f"/api/v1/namespaces/virtengine/pods/{victim}"
    assert delete.body["gracePeriodSeconds"] == 0
    assert delete.body["preconditions"] == {"uid": f"uid-{victim}"}, "only the very pod that was planned"
    assert handle.detail["ready_before"] == 3

    fresh = pod(victim, NODE | {"app.kubernetes.io/component": "blockchain"}, "uid-replacement", ready=False)
    api.replacements = [fresh]
    report = fault.wait_ready(handle, timeout=10)
    assert report.ready and report.replacements == [victim] and report.ready_pods == 3
    assert 0 < report.seconds < 10
    (watch,) = api.seen("GET", "/api/v1/namespaces/virtengine/pods")[-1:]
    assert watch.query["watch"] == ["true"]
    assert watch.query["labelSelector"] == ["app.kubernetes.io/name=virtengine-node"]
    revert(handle, ledger)
    assert ledger.pending() == []


def test_pod_delete_reports_not_ready_when_no_replacement_comes_against_local_api_stand_in(api, ledger):
    nodes(api)
    fault = PodDelete(NODE, "virtengine", KubeConnection(host=api.url), max_targets=1)
    handle = fault.inject(ttl=60, ledger=ledger)
    report = fault.wait_ready(handle, timeout=1)
    assert not report.ready and report.seconds is None and report.ready_pods == 2
    revert(handle, ledger)


# ------------------------------------------------------------------------------------------------ exec / DB failure


def test_db_port_block_execs_iptables_and_reverts_with_the_matching_delete_against_local_api_stand_in(api, ledger):
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    api.exec_results = [(0, "", ""), (0, "", "")]
    fault = DbPortBlock(DB, "virtengine", KubeConnection(host=api.url), container="postgres", full_outage=True)
    handle = fault.inject(ttl=60, ledger=ledger)
    (add,) = api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")
    assert add.headers["upgrade"].lower() == "websocket"
    assert add.query["command"] == ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5432", "-j", "DROP"]
    assert add.query["container"] == ["postgres"]
    assert add.query["stdout"] == ["true"] and add.query["stderr"] == ["true"] and add.query["stdin"] == ["false"]
    revert(handle, ledger)
    delete = api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")[-1]
    assert delete.query["command"] == ["iptables", "-D", "INPUT", "-p", "tcp", "--dport", "5432", "-j", "DROP"]
    assert ledger.pending() == []


def test_db_port_block_failure_is_clear_and_undo_is_idempotent_against_local_api_stand_in(api, ledger):
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    no_rule = "iptables: Bad rule (does a matching rule exist in that chain?).\n"
    api.exec_results = [
        (4, "", "iptables v1.8.9: can't initialize iptables table `filter': Permission denied"),
        (1, "", no_rule),
    ]
    fault = DbPortBlock(DB, "virtengine", KubeConnection(host=api.url), full_outage=True)
    with pytest.raises(FaultError, match=r"exited 4: .*Permission denied.*NET_ADMIN"):
        fault.inject(ttl=60, ledger=ledger)
    # the -D that the failed inject ran found no rule (exit 1, "does a matching rule exist"): that is success
    execs = api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")
    assert [e.query["command"][1] for e in execs] == ["-A", "-D"]
    assert ledger.pending() == []

    step = fault.undo_steps(fault.plan())[0]
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0-recreated")
    run_step(step)  # a new pod (new network namespace): nothing to undo, and no exec
    del api.pods["postgres-0"]
    run_step(step)  # the pod is gone: nothing to undo
    assert len(api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")) == 2
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    api.exec_results = [(2, "", "iptables v1.8.9: unknown option")]
    with pytest.raises(UndoError, match=r"exited 2: iptables v1.8.9: unknown option"):
        run_step(step)


def test_db_port_block_reject_resets_connections_and_is_undone_alike_against_local_api_stand_in(api, ledger):
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    connection = KubeConnection(host=api.url)
    fault = DbPortBlock(DB, "virtengine", connection, port=6432, action="reject", full_outage=True)
    handle = fault.inject(ttl=60, ledger=ledger)
    revert(handle, ledger)
    execs = api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-0/exec")
    rule = ["INPUT", "-p", "tcp", "--dport", "6432", "-j", "REJECT", "--reject-with", "tcp-reset"]
    assert [e.query["command"] for e in execs] == [["iptables", "-A", *rule], ["iptables", "-D", *rule]]
    with pytest.raises(FaultError, match=r"action 'block': use drop"):
        DbPortBlock(DB, connection=KubeConnection(host=api.url), action="block").plan()


def test_db_port_block_wants_exactly_one_database_pod_against_local_api_stand_in(api, ledger):
    api.pods["postgres-0"] = pod("postgres-0", DB, "uid-pg-0")
    api.pods["postgres-1"] = pod("postgres-1", DB, "uid-pg-1")
    with pytest.raises(FaultError, match=r"exactly one database pod \(found: postgres-0, postgres-1\); set pod=NAME"):
        DbPortBlock(DB, connection=KubeConnection(host=api.url)).plan()
    plan = DbPortBlock(DB, connection=KubeConnection(host=api.url), pod="postgres-1", full_outage=True).plan()
    assert plan.detail["pod"] == "postgres-1" and plan.detail["uid"] == "uid-pg-1"
    assert api.seen("GET", "/api/v1/namespaces/virtengine/pods/postgres-1/exec") == [], "plan injects nothing"


def test_unreachable_api_server_is_an_undo_error_not_a_success(ledger):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    step = {"driver": "k8s_custom_object", "group": "chaos-mesh.org", "version": "v1alpha1", "namespace": "x"}
    step |= {"plural": "podchaos", "name": "y", "connection": {"host": f"http://127.0.0.1:{port}"}}
    with pytest.raises(UndoError, match="cannot reach the API server"):
        run_step(step)
