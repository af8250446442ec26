"""Sandbox monitoring: rendered Prometheus/Alertmanager configs, alert rules, the pager, hostmetrics, and an
end-to-end run (real Prometheus + Alertmanager + pager) where stopping a scrape target pages someone."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "infra" / "sandbox"))

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import xmlrpc.server
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from vesandbox.launcher import Layout
from vesandbox.monitoring import monitoring_components, monitoring_endpoints, render_rules

from tests import support

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
SANDBOX_PATH = str(REPO / "infra" / "sandbox")
E2E_OFFSET = 500
NO_RULES_OFFSET = 600
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")

for tool in ("prometheus", "prometheus-alertmanager", "promtool", "amtool"):
    if shutil.which(tool) is None:
        pytest.skip(
            f"{tool} not installed (apt-get install -y prometheus prometheus-alertmanager)", allow_module_level=True
        )


# ----------------------------------------------------------------------------------------------------------- helpers


# polls here retry on these errors only (a component not answering yet); any other, a failed assert too, fails at once
wait_for = functools.partial(support.wait_for, interval=0.2, errors=(httpx.HTTPError, OSError, ValueError, KeyError))


def get_json(url: str, **params: Any) -> Any:
    response = httpx.get(url, params=params, timeout=2.0)
    response.raise_for_status()
    return response.json()


def parse_rfc3339(value: str) -> float:
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6].ljust(6, '0')}+00:00").timestamp()


class Processes:
    """Subprocesses started by a test (each in its own session), stopped by PID and process group at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": SANDBOX_PATH, "PYTHONUNBUFFERED": "1"}
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)  # each runs in its own session: signal its process group (its own children)
        support.stop_group(proc)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    (tmp_path / "logs").mkdir()
    p = Processes(tmp_path / "logs")
    try:
        yield p
    finally:
        p.stop_all()


class FakeTarget:
    """A /metrics endpoint on a fixed port whose body is produced per request; stop() closes the port."""

    def __init__(self, port: int, body: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = body().encode() if self.path.startswith("/metrics") else b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = port
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def targets() -> Iterator[list[FakeTarget]]:
    started: list[FakeTarget] = []
    try:
        yield started
    finally:
        for t in started:
            t.stop()


def node_metrics() -> str:
    return f"tendermint_consensus_height 42\ntendermint_consensus_latest_block_time {time.time():.3f}\n"


def start_monitoring(procs: Processes, comps: list[dict[str, Any]], names: list[str]) -> None:
    by_name = {c["name"]: c for c in comps}
    for name in names:
        procs.start(name, by_name[name]["command"])
    for name in names:
        url = by_name[name]["health"].removeprefix("http:")

        def healthy(url: str = url, name: str = name) -> bool:
            proc = procs.procs[name]
            assert proc.poll() is None, f"{name} exited {proc.returncode}: {procs.log(name)}"
            return httpx.get(url, timeout=1.0).status_code == 200

        wait_for(healthy, 20, f"{name} healthy")


def prom_query(prometheus: str, query: str) -> list[dict[str, Any]]:
    return get_json(f"{prometheus}/api/v1/query", query=query)["data"]["result"]


# --------------------------------------------------------------------------------------------------- config checks


@pytest.mark.parametrize("weaknesses", [[], ["no-alert-rules"]], ids=["rules", "no-alert-rules"])
def test_rendered_configs_pass_promtool_and_amtool(tmp_path: Path, weaknesses: list[str]) -> None:
    layout = Layout(run_dir=tmp_path, offset=E2E_OFFSET)
    backup = {"component": "backup", "address": "127.0.0.1:18999", "service": "backup"}
    comps = monitoring_components(layout, weaknesses, extra_targets=[backup])
    assert [c["name"] for c in comps] == ["pager", "hostmetrics", "alertmanager", "prometheus"]
    assert set(monitoring_endpoints(layout)) == {"prometheus", "alertmanager", "pager", "hostmetrics"}
    prometheus_yml, rules = layout.config_dir / "prometheus.yml", layout.config_dir / "prometheus-alerts.yml"

    check = subprocess.run(["promtool", "check", "config", str(prometheus_yml)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    am = subprocess.run(
        ["amtool", "check-config", str(layout.config_dir / "alertmanager.yml")], capture_output=True, text=True
    )
    assert am.returncode == 0, am.stdout + am.stderr

    config = yaml.safe_load(prometheus_yml.read_text())
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "1s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    expected = {f"node-{i}" for i in range(3)} | {f"etcd-{i}" for i in range(3)}
    expected |= {
        "api",
        "provider",
        "faultproxy",
        "pager",
        "hostmetrics",
        "prometheus",
        "alertmanager",
        "extra",
        "backup",
    }
    assert set(jobs) == expected
    for name, job in jobs.items():
        if name != "extra":
            labels = job["static_configs"][0]["labels"]
            assert labels["instance"] == labels["component"] == name
    assert jobs["node-1"]["static_configs"][0]["targets"] == [f"127.0.0.1:{26667 + E2E_OFFSET}"]
    assert jobs["etcd-2"]["static_configs"][0]["targets"] == [f"127.0.0.4:{2379 + E2E_OFFSET}"]
    if weaknesses:
        assert config["rule_files"] == [] and not rules.exists()
    else:
        assert config["rule_files"] == [str(rules)]
        rules_check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        assert rules_check.returncode == 0, rules_check.stdout + rules_check.stderr
        alerts = [r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
        names = {r["alert"] for r in alerts}
        assert {
            "NodeDown",
            "ChainHalted",
            "NodeMemoryHigh",
            "DiskSpaceLow",
            "HighErrorRate",
            "CircuitBreakerOpen",
        } <= names
        assert {"ProvisioningLatencySLOViolation", "ReplicationLagHigh", "BackupStale"} <= names
        assert all(r["labels"]["severity"] in ("critical", "warning") for r in alerts)
    with pytest.raises(ValueError, match="unknown alert thresholds"):
        render_rules({"nope": 1})


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def test_alert_rules_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool's rule unit tests: each rule fires on the series it watches, with severity and component."""
    rendered = yaml.safe_load(render_rules({"backup_stale_seconds": 30}))
    for group in rendered["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # promtool compares annotations too; the expressions are under test
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump(rendered))
    node0 = {"job": "node-0", "instance": "node-0", "component": "node-0", "service": "virtengine-node"}
    node1 = {**node0, "job": "node-1", "instance": "node-1", "component": "node-1"}
    prov = {"job": "provider", "instance": "provider", "component": "provider", "service": "provider-daemon"}
    api = {"job": "api", "instance": "api", "component": "api", "service": "virtengine-api"}
    host = {"job": "hostmetrics", "instance": "hostmetrics", "component": "sandbox", "service": "monitoring"}
    series = [
        _series("up", "1 1 0x20", **node0),
        _series("up", "1x20", **node1),
        _series("tendermint_consensus_latest_block_time", "0x40", **node1),
        _series("provider_bid_engine_circuit_state", "0 1x20", **prov),
        _series("virtengine_process_resident_memory_bytes", "500000000x20", **{**host, "component": "node-2"}),
        _series("virtengine_filesystem_used_ratio", "0.9x20", **host, path="/data"),
        _series("virtengine_api_requests_total", "0+10x40", **api, path="/api/v1/market/orders", code="503"),
        _series("virtengine_api_requests_total", "0+1x40", **api, path="/api/v1/market/orders", code="200"),
        _series("virtengine_api_requests_total", "0+50x40", **api, path="/metrics", code="200"),
        _series("provider_provisioning_seconds_bucket", "0x40", **prov, le="5"),
        _series("provider_provisioning_seconds_bucket", "0+1x40", **prov, le="10"),
        _series("provider_provisioning_seconds_bucket", "0+1x40", **prov, le="+Inf"),
        _series("virtengine_replication_lag_seconds", "0 0 9x20", job="extra", instance="replica", replica="pg-1"),
        _series("virtengine_backup_last_success_timestamp_seconds", "1x60", job="backup", kind="base"),
        _series("virtengine_backup_last_success_timestamp_seconds", "0x60", job="backup", kind="etcd"),  # never
    ]

    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {"alertname": name, "eval_time": "20s", "exp_alerts": [{"exp_labels": {"severity": severity, **labels}}]}

    cases = [
        alert("NodeDown", "critical", **node0),
        alert("ChainHalted", "critical", component="chain"),
        alert("CircuitBreakerOpen", "warning", **prov),
        alert("NodeMemoryHigh", "warning", **{**host, "component": "node-2"}),
        alert("DiskSpaceLow", "warning", **host, path="/data"),
        alert("HighErrorRate", "warning", component="api"),
        alert("ProvisioningLatencySLOViolation", "warning", component="provider"),
        alert("ReplicationLagHigh", "warning", component="postgres", job="extra", instance="replica", replica="pg-1"),
        {"alertname": "DiskSpaceCritical", "eval_time": "20s", "exp_alerts": []},
        {"alertname": "BackupStale", "eval_time": "20s", "exp_alerts": []},
        alert("BackupStale", "warning", component="backup", job="backup", kind="base") | {"eval_time": "40s"},
        {"alertname": "NodeDown", "eval_time": "3s", "exp_alerts": []},  # `for:` not yet elapsed
    ]
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1s",
        "tests": [{"interval": "1s", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------------- pager


def webhook(status: str, fingerprint: str, alertname: str = "NodeDown", component: str = "node-0") -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": alertname, "severity": "critical", "component": component, "instance": component},
        "annotations": {"summary": "VirtEngine node is down"},
        "startsAt": "2026-11-25T16:02:58.123456789Z",
        "endsAt": "2026-11-25T16:03:30.5Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="NodeDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "pager",
        "groupLabels": {"alertname": alertname},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [alert],
    }


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_pager_dedupes_acks_and_persists(tmp_path: Path, procs: Processes) -> None:
    port = 9095 + E2E_OFFSET + 50
    config = tmp_path / "pager.json"
    config.write_text(
        json.dumps({"name": "pager", "listen": {"host": "127.0.0.1", "port": port}, "data_dir": str(tmp_path / "data")})
    )
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "vesandbox.pager", "--config", str(config)]

    def start() -> None:
        procs.start("pager", command)
        wait_for(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 15, "pager healthy")

    def post(payload: Any) -> httpx.Response:
        return httpx.post(f"{url}/webhook", json=payload, timeout=2)

    start()
    t_before = time.time()
    first = post(webhook("firing", "aaa")).json()
    assert len(first["opened"]) == 1 and first["duplicates"] == 0
    assert post(webhook("firing", "aaa")).json() == {"received": 1, "opened": [], "resolved": [], "duplicates": 1}
    other = post(webhook("firing", "bbb", "ChainHalted", "chain")).json()["opened"][0]
    assert post(webhook("resolved", "aaa")).json()["resolved"] == first["opened"]
    again = post(webhook("firing", "aaa")).json()["opened"]
    assert len(again) == 1 and again != first["opened"], "a new firing after resolve is a new page"
    assert post({"alerts": "nope"}).status_code == 400

    pages = get_json(f"{url}/api/v1/pages", alertname="NodeDown")["pages"]
    assert [p["status"] for p in pages] == ["resolved", "firing"]
    page = pages[0]
    assert page["severity"] == "critical" and page["component"] == "node-0" and page["notifications"] == 2
    assert page["labels"]["instance"] == "node-0" and page["starts_at"] == "2026-11-25T16:02:58.123456789Z"
    assert parse_rfc3339(page["received_at"]) >= t_before - 1 and page["resolved_at"]
    assert [p["id"] for p in get_json(f"{url}/api/v1/pages", status="firing")["pages"]] == [other, *again]
    assert get_json(f"{url}/api/v1/pages", since=str(time.time() + 60))["pages"] == []
    assert len(get_json(f"{url}/api/v1/pages", since=page["received_at"])["pages"]) == 3
    assert httpx.get(f"{url}/api/v1/pages", params={"since": "yesterday"}, timeout=2).status_code == 400

    acked = httpx.post(f"{url}/api/v1/pages/{page['id']}/ack", json={"by": "alice"}, timeout=2).json()
    assert acked["acknowledged_by"] == "alice" and acked["acknowledged_at"]
    repeat = httpx.post(f"{url}/api/v1/pages/{page['id']}/ack", json={"by": "bob"}, timeout=2).json()
    assert repeat == acked, "ack is idempotent"
    assert httpx.post(f"{url}/api/v1/pages/999/ack", json={"by": "a"}, timeout=2).status_code == 404
    assert httpx.post(f"{url}/api/v1/pages/{page['id']}/ack", json={}, timeout=2).status_code == 400

    metrics = httpx.get(f"{url}/metrics", timeout=2).text
    assert metric_value(metrics, "pager_pages_total", alertname="NodeDown", status="firing") == 2
    assert metric_value(metrics, "pager_pages_total", alertname="NodeDown", status="resolved") == 1
    assert metric_value(metrics, "pager_acks_total") == 1

    procs.stop("pager")
    start()
    after = get_json(f"{url}/api/v1/pages")["pages"]
    assert [p["id"] for p in after] == [page["id"], other, *again]
    assert after[0] == acked
    assert post(webhook("firing", "aaa")).json()["duplicates"] == 1, "still firing after the restart: no new page"
    metrics = httpx.get(f"{url}/metrics", timeout=2).text
    assert metric_value(metrics, "pager_pages_total", alertname="NodeDown", status="firing") == 2
    assert metric_value(metrics, "pager_acks_total") == 1


# ----------------------------------------------------------------------------------------------------- hostmetrics


@pytest.fixture
def fake_supervisor() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    infos: list[dict[str, Any]] = []
    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
    server.register_function(lambda: infos, "supervisor.getAllProcessInfo")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/RPC2", infos
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def memory_cgroup() -> Iterator[Path | None]:
    """A fresh cgroup v1 memory cgroup with a 64 MiB limit (None when cgroups cannot be created here)."""
    path = CGROUP_ROOT / f"drillbit-test-hostmetrics-{os.getpid()}"
    try:
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(64 * 1024 * 1024))
    except OSError:
        yield None
        return
    try:
        yield path
    finally:
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                path.rmdir()
            time.sleep(0.1)


TREE = (  # a parent and a forked child sharing 60 MB; the child exits when its parent does
    "import mmap, os, time\n"
    "shared = mmap.mmap(-1, 60_000_000)\n"
    "shared.write(b'x' * 60_000_000)\n"
    "parent = os.getpid()\n"
    "if os.fork() == 0:\n"
    "    touched = sum(shared[i] for i in range(0, len(shared), 4096))\n"
    "    deadline = time.monotonic() + 240\n"
    "    while os.getppid() == parent and time.monotonic() < deadline:\n"
    "        time.sleep(0.1)\n"
    "    os._exit(0)\n"
    "private = b'y' * 30_000_000\n"
    "time.sleep(240)\n"
)


def test_hostmetrics_reports_process_trees_filesystems_cgroups_and_textfiles(
    tmp_path: Path, procs: Processes, fake_supervisor: tuple[str, list[dict[str, Any]]], memory_cgroup: Path | None
) -> None:
    supervisor_url, infos = fake_supervisor
    worker = procs.start("worker", [sys.executable, "-c", TREE])
    infos += [
        {"name": "worker", "pid": worker.pid, "statename": "RUNNING", "start": int(time.time())},
        {"name": "stopped", "pid": 0, "statename": "STOPPED", "start": 0},
    ]
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    (textfiles / "backup.prom").write_text("virtengine_backup_last_success_timestamp_seconds 1700000000\n")
    (textfiles / "broken.prom").write_text("this is { not prometheus\n")
    port = 9100 + E2E_OFFSET + 50
    config = {
        "name": "hostmetrics",
        "listen": {"host": "127.0.0.1", "port": port},
        "supervisor_url": supervisor_url,
        "filesystems": [{"path": str(tmp_path), "component": "sandbox"}, str(tmp_path / "missing")],
        "cgroup_root": str(CGROUP_ROOT),
        "cgroups": [memory_cgroup.name] if memory_cgroup else [],
        "textfile_dir": str(textfiles),
    }
    (tmp_path / "hostmetrics.json").write_text(json.dumps(config))
    if memory_cgroup is not None:
        hog = "import os, sys\nopen(sys.argv[1], 'w').write(str(os.getpid()))\nb = b'x' * 200_000_000\n"
        result = subprocess.run([sys.executable, "-c", hog, str(memory_cgroup / "cgroup.procs")], timeout=30)
        assert result.returncode == -signal.SIGKILL, "the 200 MB hog is OOM-killed in its 64 MiB cgroup"
    procs.start(
        "hostmetrics", [sys.executable, "-m", "vesandbox.hostmetrics", "--config", str(tmp_path / "hostmetrics.json")]
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def tree_counted() -> str | None:
        text = httpx.get(url, timeout=2).text
        return text if (metric_value(text, "virtengine_process_count", component="worker") or 0) >= 2 else None

    text = wait_for(tree_counted, 60, "hostmetrics to see the worker's process tree")
    assert metric_value(text, "virtengine_hostmetrics_supervisor_up") == 1
    resident = metric_value(text, "virtengine_process_resident_memory_bytes", component="worker")
    assert 80_000_000 < resident < 140_000_000, f"60 MB shared once + 30 MB private + interpreters, not {resident}"
    assert metric_value(text, "virtengine_process_cpu_seconds_total", component="worker") > 0
    assert metric_value(text, "virtengine_process_running", component="worker") == 1
    assert metric_value(text, "virtengine_process_running", component="stopped") == 0
    assert metric_value(text, "virtengine_process_resident_memory_bytes", component="stopped") is None
    st = os.statvfs(tmp_path)
    size = metric_value(text, "virtengine_filesystem_size_bytes", path=str(tmp_path), component="sandbox")
    assert size == st.f_blocks * st.f_frsize
    ratio = metric_value(text, "virtengine_filesystem_used_ratio", path=str(tmp_path))
    assert 0 < ratio < 1
    assert metric_value(text, "virtengine_filesystem_size_bytes", path=str(tmp_path / "missing")) is None
    assert metric_value(text, "virtengine_backup_last_success_timestamp_seconds") == 1700000000
    assert metric_value(text, "virtengine_textfile_scrape_error", file="broken.prom") == 1
    assert metric_value(text, "virtengine_textfile_scrape_error", file="backup.prom") == 0
    if memory_cgroup is not None:
        labels = {"cgroup": memory_cgroup.name, "component": memory_cgroup.name}
        assert metric_value(text, "virtengine_cgroup_memory_limit_bytes", **labels) == 64 * 1024 * 1024
        assert metric_value(text, "virtengine_cgroup_memory_usage_bytes", **labels) is not None
        assert metric_value(text, "virtengine_cgroup_memory_oom_kills_total", **labels) >= 1

    infos.clear()  # supervisord gone: process series vanish, supervisor_up still says so
    procs.stop("worker")
    text = httpx.get(url, timeout=2).text
    assert metric_value(text, "virtengine_process_count", component="worker") is None


def test_hostmetrics_without_supervisor(tmp_path: Path, procs: Processes) -> None:
    port = 9100 + E2E_OFFSET + 51
    config = {
        "name": "hostmetrics",
        "listen": {"host": "127.0.0.1", "port": port},
        "supervisor_url": "http://127.0.0.1:9/RPC2",
    }
    (tmp_path / "hm.json").write_text(json.dumps(config))
    procs.start("hostmetrics", [sys.executable, "-m", "vesandbox.hostmetrics", "--config", str(tmp_path / "hm.json")])
    text = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text, 15, "hostmetrics up")
    assert metric_value(text, "virtengine_hostmetrics_supervisor_up") == 0
    bad = subprocess.run(
        [sys.executable, "-m", "vesandbox.hostmetrics", "--config", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SANDBOX_PATH},
        timeout=30,
    )
    assert bad.returncode != 0


# ------------------------------------------------------------------------------------------------------ end to end


def firing_in_alertmanager(alertmanager: str, alertname: str, instance: str) -> dict[str, Any] | None:
    alerts = get_json(f"{alertmanager}/api/v2/alerts", filter=f'alertname="{alertname}"')
    return next(
        (a for a in alerts if a["labels"].get("instance") == instance and a["status"]["state"] == "active"), None
    )


def pages_for(pager: str, alertname: str, component: str, **params: str) -> list[dict[str, Any]]:
    pages = get_json(f"{pager}/api/v1/pages", alertname=alertname, **params)["pages"]
    return [p for p in pages if p["component"] == component]


def test_stopped_target_pages_through_prometheus_and_alertmanager(
    tmp_path: Path, procs: Processes, targets: list[FakeTarget]
) -> None:
    layout = Layout(run_dir=tmp_path / "run", offset=E2E_OFFSET)
    comps = monitoring_components(layout, [])
    ep = monitoring_endpoints(layout)
    node0 = FakeTarget(layout.node_rpc_port(0), node_metrics)
    provider = FakeTarget(layout.provider_port, lambda: "provider_bid_engine_circuit_state 1\n")
    targets += [node0, provider]
    start_monitoring(procs, comps, ["pager", "hostmetrics", "alertmanager", "prometheus"])

    def scraped() -> bool:
        ups = {r["metric"]["job"]: r["value"][1] for r in prom_query(ep["prometheus"], "up")}
        return ups.get("node-0") == "1" and ups.get("hostmetrics") == "1" and ups.get("provider") == "1"

    wait_for(scraped, 15, "Prometheus to scrape node-0, provider and hostmetrics")
    used = prom_query(ep["prometheus"], 'virtengine_filesystem_used_ratio{component="sandbox"}')
    assert used and used[0]["metric"]["path"] == str(layout.data_dir), "hostmetrics labels survive the scrape"
    assert not firing_in_alertmanager(ep["alertmanager"], "NodeDown", "node-0")
    assert not pages_for(ep["pager"], "NodeDown", "node-0")

    t0 = time.time()
    node0.stop()
    alert = wait_for(lambda: firing_in_alertmanager(ep["alertmanager"], "NodeDown", "node-0"), 15, "NodeDown in AM")
    t_alert = time.time()
    page = wait_for(lambda: pages_for(ep["pager"], "NodeDown", "node-0"), 15 - (t_alert - t0), "NodeDown page")[0]
    t_page = time.time()
    assert t_page - t0 < 15, f"paged {t_page - t0:.1f} s after the target stopped"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["component"] == "node-0"
    assert (
        page["status"] == "firing" and page["severity"] == "critical" and page["labels"]["service"] == "virtengine-node"
    )
    assert t0 < parse_rfc3339(page["starts_at"]) <= parse_rfc3339(page["received_at"]) <= t_page + 1
    starts, received = parse_rfc3339(page["starts_at"]) - t0, parse_rfc3339(page["received_at"]) - t0
    print(
        f"\nnode-0 stopped at {t0:.1f}: NodeDown active +{starts:.1f} s ({page['starts_at']}), in Alertmanager"
        f" +{t_alert - t0:.1f} s, paged +{received:.1f} s ({page['received_at']})"
    )
    breaker = pages_for(ep["pager"], "CircuitBreakerOpen", "provider")
    assert len(breaker) == 1 and breaker[0]["severity"] == "warning"

    # the node comes back: the alert resolves and the same page is marked resolved
    targets.append(FakeTarget(layout.node_rpc_port(0), node_metrics))
    resolved = wait_for(
        lambda: pages_for(ep["pager"], "NodeDown", "node-0", status="resolved"), 15, "NodeDown resolved"
    )
    assert [p["id"] for p in resolved] == [page["id"]]
    assert pages_for(ep["pager"], "NodeDown", "node-0", status="firing") == []


def test_no_alert_rules_weakness_never_pages(tmp_path: Path, procs: Processes, targets: list[FakeTarget]) -> None:
    layout = Layout(run_dir=tmp_path / "run", offset=NO_RULES_OFFSET)
    comps = monitoring_components(layout, ["no-alert-rules"])
    ep = monitoring_endpoints(layout)
    node0 = FakeTarget(layout.node_rpc_port(0), node_metrics)
    targets.append(node0)
    start_monitoring(procs, comps, ["pager", "alertmanager", "prometheus"])
    wait_for(lambda: prom_query(ep["prometheus"], 'up{job="node-0"} == 1'), 15, "Prometheus to scrape node-0")
    node0.stop()
    # down for 8 s: well past NodeDown's `for: 3s` and the 1 s evaluation interval
    wait_for(lambda: prom_query(ep["prometheus"], 'max_over_time(up{job="node-0"}[8s]) == 0'), 20, "8 s of node-0 down")
    assert get_json(f"{ep['prometheus']}/api/v1/rules")["data"]["groups"] == []
    assert get_json(f"{ep['prometheus']}/api/v1/alerts")["data"]["alerts"] == []
    assert get_json(f"{ep['alertmanager']}/api/v2/alerts") == []
    assert get_json(f"{ep['pager']}/api/v1/pages")["pages"] == []
