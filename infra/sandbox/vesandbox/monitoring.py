"""Monitoring for the sandbox: Prometheus, Alertmanager, the pager and hostmetrics, wired for the launcher.

``monitoring_components(layout, weaknesses)`` renders the configs (templates in ``infra/sandbox/monitoring/``) into
``layout.config_dir``, creates data dirs under ``layout.data_dir`` and returns one process description per
component; ``monitoring_endpoints(layout)`` gives their URLs for ``endpoints.json``. Weakness ``no-alert-rules``:
Prometheus loads no rule file (it scrapes, nothing ever fires).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from vesandbox.launcher import Layout

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "monitoring"
HOST = "127.0.0.1"
PORTS = {"prometheus": 9090, "alertmanager": 9093, "pager": 9095, "hostmetrics": 9100}
VALIDATORS = 3
CGROUP_ROOT = "/sys/fs/cgroup/memory"
CGROUP_PATTERNS = ["vesandbox*", "vesandbox*/*"]

# Alert thresholds substituted for @@name@@ in alerts.yml.tmpl (override per call with ``thresholds=``).
THRESHOLDS: dict[str, float] = {
    "chain_halted_seconds": 10,
    "memory_high_bytes": 384 * 1024 * 1024,
    "cgroup_memory_ratio": 0.9,
    "disk_low_ratio": 0.85,
    "disk_critical_ratio": 0.95,
    "error_ratio": 0.05,
    "provisioning_p95_seconds": 5,
    "replication_lag_seconds": 5,
    "backup_stale_seconds": 150,  # the backup agent's default intervals are 60 s
}

# component → Prometheus `service` label (the alert rules select on it)
SERVICES = {"api": "virtengine-api", "provider": "provider-daemon", "faultproxy": "faultproxy"}


def _port(layout: Layout, name: str) -> int:
    return layout.port(PORTS[name])


def monitoring_endpoints(layout: Layout) -> dict[str, str]:
    """Base URLs of the monitoring components."""
    return {name: f"http://{HOST}:{_port(layout, name)}" for name in PORTS}


def monitoring_listeners(layout: Layout) -> list[tuple[str, int, str]]:
    """(host, port, owner) of every monitoring listener, for the launcher's port preflight."""
    return [(HOST, _port(layout, name), name) for name in PORTS]


def scrape_targets(layout: Layout, extra: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """Every sandbox /metrics endpoint: ``{"component", "address", "service"}`` (``extra`` appended)."""
    out = [
        {"component": f"node-{i}", "address": f"{HOST}:{layout.node_rpc_port(i)}", "service": "virtengine-node"}
        for i in range(VALIDATORS)
    ]
    out += [
        {"component": f"etcd-{i}", "address": f"{layout.etcd_host(i)}:{layout.port(2379)}", "service": "etcd"}
        for i in range(VALIDATORS)
    ]
    out += [
        {"component": "api", "address": f"{HOST}:{layout.api_port}", "service": SERVICES["api"]},
        {"component": "provider", "address": f"{HOST}:{layout.provider_port}", "service": SERVICES["provider"]},
        {"component": "faultproxy", "address": f"{HOST}:{layout.faultproxy_port}", "service": SERVICES["faultproxy"]},
    ]
    out += [{"component": name, "address": f"{HOST}:{_port(layout, name)}", "service": "monitoring"} for name in PORTS]
    return out + list(extra or [])


def _load_template(name: str) -> str:
    return (TEMPLATE_DIR / name).read_text()


def render_rules(thresholds: dict[str, float] | None = None) -> str:
    """The alert rules with thresholds filled in; raises ValueError on an unknown or missing placeholder."""
    values = {**THRESHOLDS, **(thresholds or {})}
    unknown = set(values) - set(THRESHOLDS)
    if unknown:
        raise ValueError(f"unknown alert thresholds: {', '.join(sorted(unknown))}")

    def substitute(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return str(int(value)) if float(value).is_integer() else repr(float(value))

    text = re.sub(r"@@([a-z0-9_]+)@@", substitute, _load_template("alerts.yml.tmpl"))
    left = re.findall(r"@@[a-z0-9_]+@@", text)
    if left:
        raise ValueError(f"unfilled placeholders in alerts.yml.tmpl: {', '.join(sorted(set(left)))}")
    yaml.safe_load(text)  # fail here, not in Prometheus, on a broken template
    return text


def _scrape_config(target: dict[str, str]) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": target["component"],
        "metrics_path": "/metrics",
        "static_configs": [
            {
                "targets": [target["address"]],
                "labels": {
                    "instance": target["component"],
                    "component": target["component"],
                    "service": target["service"],
                },
            }
        ],
    }
    if target["component"] == "hostmetrics":
        job["honor_labels"] = True  # its series carry the `component` they describe
    return job


def render_prometheus(
    layout: Layout, rule_files: list[str], targets_dir: Path, extra: list[dict[str, str]] | None = None
) -> str:
    config = yaml.safe_load(_load_template("prometheus.yml.tmpl"))
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"{HOST}:{_port(layout, 'alertmanager')}"]}
    ]
    config["rule_files"] = rule_files
    jobs = [_scrape_config(t) for t in scrape_targets(layout, extra)]
    jobs.append(
        {
            "job_name": "extra",
            "honor_labels": True,
            "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": "5s"}],
        }
    )
    config["scrape_configs"] = jobs
    return yaml.safe_dump(config, sort_keys=False)


def render_alertmanager(layout: Layout, weaknesses: list[str] = ()) -> str:
    """The Alertmanager config: every alert to the pager's webhook (alerts-not-routed: to a receiver that does
    nothing, so Alertmanager holds the alerts and the pager never hears of them)."""
    webhook = f"{monitoring_endpoints(layout)['pager']}/webhook"
    receiver = "nowhere" if "alerts-not-routed" in weaknesses else "pager"
    text = _load_template("alertmanager.yml.tmpl").replace("@@pager_webhook@@", webhook)
    return text.replace("@@receiver@@", receiver)


def _labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "monitoring",
        "app.kubernetes.io/instance": f"{name}-0",
    }


def _filesystems(layout: Layout) -> list[dict[str, str]]:
    """The run's data filesystem plus each component's data dir (a test may mount a small filesystem there)."""
    dirs = {"sandbox": layout.data_dir, "postgres": layout.data_dir / "postgres", "api": layout.data_dir / "api"}
    dirs.update({f"etcd-{i}": layout.data_dir / f"etcd-{i}" for i in range(VALIDATORS)})
    dirs.update({name: layout.data_dir / name for name in ("prometheus", "alertmanager", "pager")})
    return [{"path": str(path), "component": name} for name, path in dirs.items()]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


def _python_service(layout: Layout, name: str, weaknesses: list[str], config: dict[str, Any]) -> list[str]:
    path = layout.config_dir / f"{name}.json"
    path.write_text(json.dumps({"name": name, "weaknesses": weaknesses, **config}, indent=2))
    return [sys.executable, "-m", f"vesandbox.{name}", "--config", str(path)]


def _component(layout: Layout, name: str, command: list[str], health_path: str, priority: int) -> dict[str, Any]:
    url = monitoring_endpoints(layout)[name]
    return {
        "name": name,
        "command": command,
        "health": f"http:{url}{health_path}",
        "endpoint": url,
        "priority": priority,
        "labels": _labels(name),
    }


def monitoring_components(
    layout: Layout,
    weaknesses: list[str],
    thresholds: dict[str, float] | None = None,
    extra_targets: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Render configs, create data dirs and describe the prometheus, alertmanager, pager and hostmetrics processes.

    ``thresholds`` overrides entries of THRESHOLDS; ``extra_targets`` adds scrape jobs
    (``{"component", "address": "host:port", "service"}``, e.g. the backup agent)."""
    config_dir, data_dir = layout.config_dir, layout.data_dir
    targets_dir = config_dir / "prometheus-targets"
    for d in (config_dir, targets_dir, *(data_dir / n for n in ("prometheus", "alertmanager", "pager"))):
        d.mkdir(parents=True, exist_ok=True)
    textfile_dir = data_dir / "hostmetrics" / "textfile"
    textfile_dir.mkdir(parents=True, exist_ok=True)
    endpoints = monitoring_endpoints(layout)

    rule_files: list[str] = []
    if "no-alert-rules" not in weaknesses:
        rules = config_dir / "prometheus-alerts.yml"
        rules.write_text(render_rules(thresholds))
        rule_files.append(str(rules))
    prometheus_yml = config_dir / "prometheus.yml"
    prometheus_yml.write_text(render_prometheus(layout, rule_files, targets_dir, extra_targets))
    alertmanager_yml = config_dir / "alertmanager.yml"
    alertmanager_yml.write_text(render_alertmanager(layout, weaknesses))

    prometheus = [
        _binary("prometheus"),
        f"--config.file={prometheus_yml}",
        f"--storage.tsdb.path={data_dir / 'prometheus'}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={HOST}:{_port(layout, 'prometheus')}",
        f"--web.external-url={endpoints['prometheus']}/",
        "--web.enable-lifecycle",
        "--log.level=info",
    ]
    alertmanager = [
        _binary("prometheus-alertmanager"),
        f"--config.file={alertmanager_yml}",
        f"--storage.path={data_dir / 'alertmanager'}",
        f"--web.listen-address={HOST}:{_port(layout, 'alertmanager')}",
        f"--web.external-url={endpoints['alertmanager']}/",
        "--cluster.listen-address=",
        "--log.level=info",
    ]
    pager = _python_service(
        layout,
        "pager",
        weaknesses,
        {"listen": {"host": HOST, "port": _port(layout, "pager")}, "data_dir": str(data_dir / "pager")},
    )
    hostmetrics = _python_service(
        layout,
        "hostmetrics",
        weaknesses,
        {
            "listen": {"host": HOST, "port": _port(layout, "hostmetrics")},
            "supervisor_url": f"http://{HOST}:{layout.supervisor_port}/RPC2",
            "filesystems": _filesystems(layout),
            "cgroup_root": CGROUP_ROOT,
            "cgroups": CGROUP_PATTERNS,
            "textfile_dir": str(textfile_dir),
        },
    )
    return [
        _component(layout, "pager", pager, "/health", 50),
        _component(layout, "hostmetrics", hostmetrics, "/health", 50),
        _component(layout, "alertmanager", alertmanager, "/-/ready", 55),
        _component(layout, "prometheus", prometheus, "/-/ready", 60),
    ]
