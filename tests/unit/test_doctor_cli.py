"""``drillbit doctor``: the roles table, the rule files that did not load, and the exit codes (0 every flow that
waits for an alert has one, 1 some flow has none, 2 a known error in one red line), run in-process with typer's
CliRunner against rule files in tmp_path, VirtEngine's real rules and a loopback Prometheus stand-in."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from vesandbox.monitoring import render_rules

from cli.app import app
from tests.unit.prometheus_stand_in import PrometheusStandIn, rules_answer
from tests.unit.test_alert_rules import EXAMPLE, virtengine_glob
from tests.unit.test_cli_fast import DATA_STACK, ORCHESTRATION
from tests.unit.test_cli_fast import drillbit as drillbit_subprocess

ENDPOINTS = {"node_rpc": "http://rpc:26657", "node_rest": "http://rest:1317"}


def doctor(tmp_path: Path, cfg: dict | None, *args: str) -> tuple[int, str]:
    """Run ``drillbit doctor --config FILE ARGS`` (``cfg`` written to FILE; None: no --config) in-process."""
    extra = []
    if cfg is not None:
        path = tmp_path / "drillbit.yaml"
        path.write_text(yaml.safe_dump(cfg))
        extra = ["--config", str(path)]
    result = CliRunner().invoke(app, ["doctor", *extra, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def example_with_shared_rules() -> dict:
    """drillbit.example.yaml with the staging rules read from wherever ../shared is found."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["environments"]["staging"]["alerts"]["rules"] = [virtengine_glob()]
    return data


def test_virtengine_example_profile_is_ok_and_names_the_file_that_did_not_load(tmp_path):
    code, out = doctor(tmp_path, example_with_shared_rules(), "--env", "staging")
    assert code == 0, out
    assert "alert roles of staging (kubernetes)" in out
    assert "chain-halted │ ChainHalted │ 105 │ 360 │ ok │ split-brain │ │ │ BlockHeightStalled │ 165 │" in out
    assert "node-down │ NodeDown │ 120 │ 120 │ ok │ chaos-pod-kill" in out
    assert "pod-restarted │ - │ - │ - │ no alert mapped │ chaos-pod-kill" in out
    assert "database-down │ - │ - │ - │ no alert mapped │ dr-dc-loss, dr-drill" in out
    assert "98 alerting rules (97 names) from 7 source(s)" in out
    assert (
        "group_wait (30 s); a role's wait is the longest of its alerts'; every group sets its own evaluation interval"
        in out
    )
    assert "alerts__errors.yaml" in out and "not valid YAML at line 237" in out and "not loaded" in out
    assert "alert LowPeerCount" in out and "counted" in out
    assert "no alert for flow" not in out


def test_a_flow_without_any_alert_exits_1_and_a_missing_name_is_shown(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "groups:\n  - name: g\n    interval: 10s\n    rules:\n"
        "      - {alert: NodeGone, expr: up == 0, for: 20s}\n      - {alert: Halted, expr: 'vector(1)', for: 1m}\n"
    )
    roles = {"node-down": ["NodeGone"], "chain-halted": ["Halted", "ChainHalted"], "disk": ["DiskFull"]}
    env = {"platform": "kubernetes", "endpoints": ENDPOINTS, "alerts": {"rules": ["rules.yaml"], "roles": roles}}
    cfg = {"default_environment": "staging", "environments": {"staging": env}}
    code, out = doctor(tmp_path, cfg)  # no --env: the default environment
    assert code == 1, out
    assert "alert roles of staging (kubernetes); rules: rules.yaml" in out
    assert "node-down │ NodeGone │ 60 │ 60 │ ok" in out  # 20 s + 10 s evaluation + 30 s group_wait (the default)
    assert "chain-halted │ Halted │ 100 │ 100 │ missing: ChainHalted (no such alert in the rules) │ split-brain" in out
    assert "│ │ ChainHalted │ - │ │ │ │" in out
    assert "disk │ DiskFull │ - │ - │ missing: DiskFull (no such alert in the rules)" in out
    assert "no alert for flow chaos-disk-pressure: map one of role(s) disk" in out
    assert "no alert for flow resource-exhaustion: map one of role(s) memory" in out
    assert "no alert for flow dr-dc-loss: map one of role(s) service-down, database-down" in out
    assert "no alert for flow split-brain" not in out and "no alert for flow chaos-pod-kill" not in out


def test_the_sandbox_profile_against_a_prometheus_stand_in(tmp_path):
    answer = rules_answer(render_rules(), "/tmp/vesandbox/config/prometheus-alerts.yml", interval_s=1)
    with PrometheusStandIn({"/api/v1/rules": answer}) as prom:
        env = {"platform": "sandbox", "endpoints": {**ENDPOINTS, "prometheus": prom.url}}
        code, out = doctor(tmp_path, {"environments": {"sandbox": env}}, "--env", "sandbox")
    assert code == 0, out
    assert f"alert roles of sandbox (sandbox); rules: Prometheus {prom.url}" in out
    assert "chain-halted │ ChainHalted │ 2 │ 2 │ ok │ split-brain" in out
    assert "memory │ CgroupMemoryHigh │ 4 │ 4 │ ok │ resource-exhaustion │ │ │ NodeMemoryHigh │ 4 │ │ │ │" in out
    assert "20 alerting rules (20 names) from 1 source(s)" in out and "group_wait (0 s)" in out
    assert "rule sources with problems" not in out


@pytest.mark.parametrize(
    ("cfg", "args", "message"),
    [
        (None, ["--env", "nope"], "environment 'nope' is not defined; known: sandbox"),
        (
            {"environments": {"sandbox": {"platform": "sandbox"}}},
            [],
            "the sandbox is not running (no ",
        ),
        (
            {"environments": {"k": {"platform": "kubernetes", "endpoints": ENDPOINTS, "alerts": {"rules": ["x/*.y"]}}}},
            ["--env", "k"],
            "no rule file found: x/*.y",
        ),
        (
            {"environments": {"k": {"platform": "kubernetes", "endpoints": ENDPOINTS}}},
            ["--env", "k"],
            "the rules come from Prometheus (alerts.rules: prometheus) but the environment has no endpoints.prometheus",
        ),
    ],
)
def test_a_known_error_is_one_red_line_and_exit_2(tmp_path, monkeypatch, cfg, args, message):
    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(tmp_path / "no-sandbox"))
    monkeypatch.chdir(tmp_path)  # no drillbit.yaml here: without --config the built-in default applies
    monkeypatch.delenv("DRILLBIT_CONFIG", raising=False)
    if cfg is not None:
        cfg = {"default_environment": next(iter(cfg["environments"])), **cfg}
    code, out = doctor(tmp_path, cfg, *args)
    assert code == 2, out
    assert out.startswith("error: ") and message in out, out
    assert out.count("error:") == 1 and "Traceback" not in out


def test_an_unreachable_prometheus_is_exit_2(tmp_path):
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {"platform": "kubernetes", "endpoints": {**ENDPOINTS, "prometheus": url}}
        code, out = doctor(tmp_path, {"environments": {"k": env}, "default_environment": "k"})
    assert code == 2, out
    assert out.startswith(f"error: {url}/api/v1/rules?type=alert: ConnectError"), out


def test_doctor_imports_neither_prefect_nor_the_data_stack_before_it_runs(tmp_path):
    imported, code, out, err = drillbit_subprocess(tmp_path, "doctor", "--help")
    assert code == 0 and "--env" in out, out + err
    assert imported & (ORCHESTRATION | DATA_STACK) == set()
    imported, code, out, err = drillbit_subprocess(tmp_path, "doctor", "--env", "nope")
    assert code == 2 and "environment 'nope' is not defined; known: sandbox" in " ".join(out.split()), out + err
    assert imported & ORCHESTRATION == set() and "Traceback" not in out + err
