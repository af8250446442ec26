"""Alert rules and roles (drillbit/alert_rules.py, the ``alerts:`` section of drillbit.yaml): VirtEngine's real rule
files (../shared/reference/virtengine/monitoring) load as Prometheus would load them, broken files are problems
naming the file and the reason, a Prometheus ``/api/v1/rules`` answer reads the same (from a loopback stand-in), the
earliest firing times follow the documented formula, the example VirtEngine profile names only real alerts, and the
built-in sandbox profile names the sandbox's alerts and timings."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest
import yaml
from vesandbox.launcher import Layout
from vesandbox.monitoring import TEMPLATE_DIR, render_alertmanager, render_rules

from drillbit import alert_rules as ar
from drillbit import catalog, config
from drillbit.config import SANDBOX_ALERTS, ConfigError
from drillbit.scenarios.chaos.disk_pressure import DiskPressureParams
from drillbit.scenarios.chaos.pod_kill import PodKillParams
from drillbit.scenarios.dr.dc_loss import DcLossParams
from drillbit.scenarios.failure.resource_exhaustion import ResourceExhaustionParams
from tests.unit.prometheus_stand_in import PrometheusStandIn, config_answer, rules_answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "drillbit.example.yaml"
VIRTENGINE_EMPTY_ROLES = {"pod-restarted", "database-down", "breaker-open", "replication", "backup"}


def shared_dir() -> Path:
    for base in (ROOT.parent / "shared",):
        if (base / "reference" / "virtengine" / "monitoring").is_dir():
            return base
    pytest.skip("VirtEngine's monitoring rules (../shared/reference/virtengine/monitoring) are not available")


def virtengine_glob() -> str:
    return str(shared_dir() / "reference" / "virtengine" / "monitoring" / "*.yaml")


def virtengine_rules() -> ar.RuleSet:
    return ar.load_rule_files([virtengine_glob()])


def rule_named(rules: ar.RuleSet, name: str) -> ar.AlertRule:
    (rule,) = rules.by_name()[name]
    return rule


# --- durations -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("1h30m", 5400),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1y", 31536000),
        ("500ms", 0.5),
        ("1m30s500ms", 90.5),
        ("0", 0),
        ("0s", 0),
    ],
)
def test_prometheus_durations(text, seconds):
    assert ar.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["30", "", "1m1h", "-1s", "1.5m", "5 minutes", "1M", True, None, 1.5])
def test_what_is_not_a_prometheus_duration_is_refused(bad):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        ar.parse_duration(bad)


# --- VirtEngine's real rule files ----------------------------------------------------------------------------------


def test_virtengine_rules_load_as_prometheus_would():
    rules = virtengine_rules()
    assert len(rules.sources) == 7
    assert len(rules.rules) == 98 and len(rules.by_name()) == 97  # LowPeerCount is defined in two files
    per_file = {Path(s).name: sum(Path(r.source).name == Path(s).name for r in rules.rules) for s in rules.sources}
    assert per_file == {
        "alerts__chain-health.yaml": 19,
        "alerts__errors.yaml": 0,
        "alerts__marketplace.yaml": 19,
        "alerts__slo-compliance.yaml": 16,
        "rules__chain_alerts.yaml": 19,
        "rules__slo_alerts.yaml": 16,
        "rules__virtengine_alerts.yaml": 9,
    }


def test_virtengine_errors_file_does_not_load_and_the_duplicate_is_named():
    problems = {Path(p.source).name: p for p in virtengine_rules().problems}
    assert set(problems) == {"alerts__errors.yaml", "rules__chain_alerts.yaml"}
    errors = problems["alerts__errors.yaml"]
    assert not errors.loaded
    # runbook text in Markdown follows the rules at line 234: its numbered list is not YAML
    assert errors.reason.startswith("not valid YAML at line 237: could not find expected ':'")
    assert "'1. Check recent deployments or configuration changes'" in errors.reason
    dup = problems["rules__chain_alerts.yaml"]
    assert dup.loaded and "alert LowPeerCount (group 'virtengine_p2p') is also defined in" in dup.reason
    assert "alerts__chain-health.yaml (group 'virtengine_peers')" in dup.reason


@pytest.mark.parametrize(
    ("name", "for_s", "interval_s", "firing_s"),
    [
        ("ChainHalted", 60, 15, 105),  # alerts/chain-health.yaml: for 1m, group interval 15s
        ("NodeDown", 60, 30, 120),  # rules/chain_alerts.yaml: for 1m, 30s
        ("DiskSpaceCritical", 120, 30, 180),  # for 2m, 30s
        ("ConsensusStalled", 300, 30, 360),  # rules/virtengine_alerts.yaml: for 5m, 30s
        ("HighTransactionLatency", 600, 60, 690),  # for 10m, group interval 1m
        ("SLOOrderMatchingSuccess", 7200, 300, 7530),  # for 2h, group interval 5m
    ],
)
def test_virtengine_alert_timings(name, for_s, interval_s, firing_s):
    rule = rule_named(virtengine_rules(), name)
    assert (rule.for_s, rule.interval_s, rule.keep_firing_for_s) == (for_s, interval_s, 0)
    assert rule.earliest_firing_s(default_interval_s=60, group_wait_s=30) == firing_s
    assert rule.earliest_firing_s(default_interval_s=60, group_wait_s=0) == firing_s - 30


def test_virtengine_rule_fields():
    rule = rule_named(virtengine_rules(), "ChainHalted")
    assert rule.expr == "time() - max(tendermint_consensus_latest_block_time) > 30"
    assert rule.group == "virtengine_chain_health" and rule.labels["severity"] == "critical"


# --- the formula ---------------------------------------------------------------------------------------------------


def test_for_is_rounded_up_to_whole_evaluation_intervals_and_the_global_interval_fills_in():
    rule = ar.AlertRule("A", "up == 0", for_s=45, keep_firing_for_s=0, group="g", interval_s=30, source="f")
    assert rule.earliest_firing_s(60, 10) == 60 + 30 + 10  # fires at the 2nd evaluation after pending
    at_once = dataclasses.replace(rule, for_s=0)
    assert at_once.earliest_firing_s(60, 10) == 30 + 10  # the first evaluation that sees the condition
    global_interval = dataclasses.replace(rule, interval_s=None)
    assert global_interval.earliest_firing_s(20, 0) == 60 + 20  # 45 s → three 20 s evaluations, plus one


# --- files that do not load ----------------------------------------------------------------------------------------

GOOD = "groups:\n  - name: g\n    rules:\n      - alert: Good\n        expr: up == 0\n        for: 1m\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("groups: [\n", "not valid YAML at line 2"),
        ("- alert: X\n  expr: up\n", "(top level): expected a mapping, got list"),
        ("groups: []\nrule_files: []\n", "(top level): unknown key(s) rule_files"),
        ("groups: {g: 1}\n", "groups: expected a list of rule groups"),
        ("groups:\n  - rules: []\n", "groups[0]: a group needs a name"),
        ("groups:\n  - {name: g, rules: []}\n  - {name: g, rules: []}\n", "group 'g' is repeated in the same file"),
        ("groups:\n  - {name: g, interval: 30, rules: []}\n", "group 'g'.interval: 30 is not a Prometheus duration"),
        ("groups:\n  - {name: g, evaluation: 1m, rules: []}\n", "group 'g': unknown key(s) evaluation"),
        ("groups:\n  - {name: g, rules: [{alert: A, record: b, expr: up}]}\n", "give exactly one of alert and record"),
        ("groups:\n  - {name: g, rules: [{expr: up}]}\n", "group 'g' rule 1: give exactly one of alert and record"),
        ("groups:\n  - {name: g, rules: [{alert: A}]}\n", "group 'g' rule 1: expr is missing"),
        ("groups:\n  - {name: g, rules: [{alert: A, expr: up, fro: 1m}]}\n", "unknown key(s) fro"),
        ("groups:\n  - {name: g, rules: [{alert: A, expr: up, for: 5 minutes}]}\n", "alert 'A' (group 'g').for: "),
        ("kind: PrometheusRule\nspec: []\n", "spec: expected a mapping, got list"),
    ],
)
def test_a_broken_rule_file_is_a_problem_naming_file_and_reason(tmp_path, text, reason):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text(text)
    rules = ar.load_rule_files([str(tmp_path / "*.yaml")])
    assert [r.name for r in rules.rules] == ["Good"]  # nothing of the broken file counts
    (problem,) = rules.problems
    assert problem.source == str(tmp_path / "broken.yaml") and not problem.loaded
    assert reason in problem.reason


def test_an_alert_name_in_two_files_is_a_problem_but_both_count(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: g", "name: h").replace("1m", "5m"))
    rules = ar.load_rule_files([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert [r.for_s for r in rules.by_name()["Good"]] == [60, 300]
    (problem,) = rules.problems
    assert problem.loaded and problem.source == str(tmp_path / "b.yaml")
    assert problem.reason == f"alert Good (group 'h') is also defined in {tmp_path / 'a.yaml'} (group 'g')"
    # a role waits for the slower definition
    profile = ar.AlertProfile(roles={"node-down": ("Good",)}, rules=(), evaluation_interval_s=10, group_wait_s=0)
    assert ar.role_alerts(profile, "node-down", rules, 10).wait_s == 300 + 10


def test_prometheus_rule_objects_recording_rules_and_empty_files(tmp_path):
    wrapped = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"}}
    wrapped["spec"] = yaml.safe_load(GOOD.replace("Good", "Wrapped"))
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(wrapped))
    (tmp_path / "rec.yaml").write_text("groups:\n  - {name: r, rules: [{record: 'job:up:sum', expr: sum(up)}]}\n")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    rules = ar.load_rule_files([str(tmp_path / "*.yaml")])
    assert [r.name for r in rules.rules] == ["Wrapped"]
    (problem,) = rules.problems
    assert problem.source.endswith("empty.yaml") and problem.loaded and problem.reason == "holds no rule groups"


def test_a_path_that_matches_nothing_is_a_problem_and_no_file_at_all_is_unavailable(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    rules = ar.load_rule_files(["good.yaml", "missing/*.yml"], base_dir=tmp_path)
    assert [r.name for r in rules.rules] == ["Good"]
    assert [(p.source, p.reason) for p in rules.problems] == [
        ("missing/*.yml", f"no file matches {tmp_path / 'missing' / '*.yml'}")
    ]
    with pytest.raises(ar.RulesUnavailable, match="no rule file found: missing/"):
        ar.load_rule_files(["missing/*.yml"], base_dir=tmp_path)


# --- /api/v1/rules, from a loopback stand-in -----------------------------------------------------------------------


def test_rules_api_stand_in_answer_reads_like_the_files(tmp_path):
    text = render_rules()
    (tmp_path / "rules.yml").write_text(text)
    answer = rules_answer(text, "/run/config/prometheus-alerts.yml", interval_s=1)
    answer["data"]["groups"].append({"name": "recorded", "file": "/r.yml", "interval": 1, "rules": []})
    answer["data"]["groups"][-1]["rules"].append({"name": "job:x", "query": "sum(x)", "type": "recording"})
    answer["data"]["groups"].append({"name": "odd", "file": "/odd.yml", "interval": "1m", "rules": []})
    with PrometheusStandIn({"/api/v1/rules": answer}) as prom:
        from_api = ar.fetch_rules(prom.url)
    assert prom.paths == ["/api/v1/rules"]
    from_file = ar.load_rule_files([str(tmp_path / "rules.yml")])
    assert [(r.name, r.for_s, r.keep_firing_for_s) for r in from_api.rules] == [
        (r.name, r.for_s, r.keep_firing_for_s) for r in from_file.rules
    ]
    assert len(from_api.rules) == sandbox_alert_count(text) and {r.interval_s for r in from_api.rules} == {1}
    breaker = rule_named(from_api, "CircuitBreakerOpen")
    assert (breaker.for_s, breaker.keep_firing_for_s, breaker.group) == (1, 10, "sandbox-marketplace")
    assert breaker.source == f"{prom.url} /run/config/prometheus-alerts.yml"
    (problem,) = from_api.problems
    assert (
        problem.source == f"{prom.url} /odd.yml"
        and "group 'odd'.interval: expected seconds, got '1m'" in problem.reason
    )


def test_rules_api_stand_in_errors_make_the_source_unavailable():
    with PrometheusStandIn({"/api/v1/rules": "<html>proxy login</html>"}) as prom:
        with pytest.raises(ar.RulesUnavailable, match="HTTP 200, not JSON"):
            ar.fetch_rules(prom.url)
        prom.answers["/api/v1/rules"] = {"status": "error", "error": "rule manager not ready"}
        with pytest.raises(ar.RulesUnavailable, match="not a successful rules answer \\(rule manager not ready\\)"):
            ar.fetch_rules(prom.url)
        prom.answers["/api/v1/rules"] = {"status": "success", "data": {}}
        with pytest.raises(ar.RulesUnavailable, match=r"no data\.groups list"):
            ar.fetch_rules(prom.url)
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        with pytest.raises(ar.RulesUnavailable, match="ConnectError"):
            ar.fetch_rules(f"http://127.0.0.1:{closed.getsockname()[1]}")


def test_global_evaluation_interval_from_the_stand_in_status_config(tmp_path):
    (tmp_path / "r.yaml").write_text(GOOD)  # its group sets no interval
    profile = ar.AlertProfile(roles={}, rules=(str(tmp_path / "r.yaml"),), evaluation_interval_s=None)
    rules = ar.load_rules(profile)
    assert ar.default_interval(profile, rules) == (60, "Prometheus's default")  # no Prometheus to ask
    config_yml = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n"
    with PrometheusStandIn({"/api/v1/status/config": config_answer(config_yml)}) as prom:
        asked = dataclasses.replace(profile, prometheus=prom.url)
        assert ar.default_interval(asked, rules) == (15, f"{prom.url}/api/v1/status/config")
        prom.answers["/api/v1/status/config"] = config_answer("scrape_configs: []\n")
        assert ar.fetch_global_interval(prom.url) == 60  # the config sets none: Prometheus's default
        prom.answers["/api/v1/status/config"] = {"status": "success"}
        assert ar.fetch_global_interval(prom.url) is None
    assert ar.default_interval(dataclasses.replace(profile, evaluation_interval_s=5), rules) == (
        5,
        "alerts.evaluation_interval",
    )


# --- the example VirtEngine profile --------------------------------------------------------------------------------


def example_profile() -> ar.AlertProfile:
    return config.load(EXAMPLE).environment("staging").alert_profile()


def test_the_example_virtengine_profile_reads_the_shared_rules_from_the_repository_root():
    profile = example_profile()
    assert profile.rules == ("../shared/reference/virtengine/monitoring/*.yaml",)
    assert profile.base_dir == ROOT and profile.group_wait_s == 30 and profile.evaluation_interval_s is None
    if (ROOT.parent / "shared").is_dir():
        assert len(ar.load_rules(profile).rules) == 98


def test_every_name_of_the_example_virtengine_profile_is_a_real_alert():
    profile = dataclasses.replace(example_profile(), rules=(virtengine_glob(),))
    rules = ar.load_rules(profile)
    checks = {c.role: c for c in ar.check_roles(profile, rules, ar.default_interval(profile, rules)[0])}
    assert list(checks) == list(ar.ROLE_NAMES)
    assert {c.role for c in checks.values() if not c.names} == VIRTENGINE_EMPTY_ROLES
    assert all(c.missing == () for c in checks.values()), {c.role: c.missing for c in checks.values()}
    assert {c.role for c in checks.values() if c.status == "ok"} == set(ar.ROLE_NAMES) - VIRTENGINE_EMPTY_ROLES
    assert ar.uncovered_flows(list(checks.values())) == {}
    assert checks["node-down"].firing_s == {"NodeDown": 120} and checks["node-down"].wait_s == 120
    chain = ar.role_alerts(profile, "chain-halted", rules)
    assert chain.names == ("ChainHalted", "BlockHeightStalled", "BlockProductionStalled", "ConsensusStalled")
    assert chain.firing_s == {
        "ChainHalted": 105,
        "BlockHeightStalled": 165,
        "BlockProductionStalled": 180,
        "ConsensusStalled": 360,
    }
    assert chain.wait_s == 360


def test_every_role_left_empty_in_the_example_says_why():
    lines = [ln for ln in EXAMPLE.read_text().splitlines() if re.match(r"\s+[a-z-]+: \[\]", ln)]
    assert {ln.split(":")[0].strip() for ln in lines} == VIRTENGINE_EMPTY_ROLES
    assert all("VirtEngine has no" in ln for ln in lines), lines


def sandbox_alert_count(text: str) -> int:
    return len(re.findall(r"^\s*- alert: ", text, re.M))


# --- the built-in sandbox profile ----------------------------------------------------------------------------------


def sandbox_profile(rules: tuple[str, ...] | str = ar.PROMETHEUS) -> ar.AlertProfile:
    cfg = config.parse(
        {
            "environments": {
                "sandbox": {"platform": "sandbox", "endpoints": {"node_rpc": "http://n:1", "node_rest": "http://n:2"}}
            }
        }
    )
    return dataclasses.replace(cfg.environment("sandbox").alert_profile(), rules=rules)


def test_the_sandbox_profile_names_only_alerts_of_the_sandbox_rules(tmp_path):
    (tmp_path / "prometheus-alerts.yml").write_text(render_rules())
    profile = sandbox_profile((str(tmp_path / "prometheus-alerts.yml"),))
    rules = ar.load_rules(profile)
    assert rules.problems == [] and len(rules.rules) == sandbox_alert_count(render_rules()) == 20
    interval, origin = ar.default_interval(profile, rules)
    assert (interval, origin) == (1, "alerts.evaluation_interval")
    checks = {c.role: c for c in ar.check_roles(profile, rules, interval)}
    assert {c.status for c in checks.values()} == {"ok"}
    assert checks["chain-halted"].firing_s == {"ChainHalted": 2}  # for 1s + 1 s evaluation + group_wait 0s
    assert checks["node-down"].firing_s == {"NodeDown": 4}
    assert checks["pod-restarted"].firing_s == {"PodRestarted": 1}  # no `for`: the first evaluation fires it
    assert checks["disk"].wait_s == 4 and checks["breaker-open"].wait_s == 2


def test_the_sandbox_profile_timings_are_the_sandbox_configs(tmp_path):
    prometheus = yaml.safe_load((TEMPLATE_DIR / "prometheus.yml.tmpl").read_text())
    assert ar.parse_duration(prometheus["global"]["evaluation_interval"]) == SANDBOX_ALERTS.evaluation_interval
    alertmanager = yaml.safe_load(render_alertmanager(Layout(tmp_path)))
    assert ar.parse_duration(alertmanager["route"]["group_wait"]) == SANDBOX_ALERTS.group_wait
    assert SANDBOX_ALERTS.rules == ar.PROMETHEUS and set(SANDBOX_ALERTS.roles) == set(ar.ROLE_NAMES)


def test_the_scenarios_default_alerts_are_the_sandbox_roles():
    roles = SANDBOX_ALERTS.roles
    assert set(PodKillParams().expected_alerts) == {*roles["pod-restarted"], *roles["node-down"]}
    assert DiskPressureParams().expected_alerts == roles["disk"]
    assert ResourceExhaustionParams().expected_alerts == roles["memory"]
    assert set(DcLossParams().detect_alerts) == {*roles["service-down"], *roles["database-down"]}
    assert roles["chain-halted"] == ["ChainHalted"]  # split_brain's "ChainHalted fires"
    for flow, flow_roles in ar.FLOW_ROLES.items():
        assert flow in catalog.BY_NAME and set(flow_roles) <= set(ar.ROLE_NAMES)


# --- the alerts: section of drillbit.yaml --------------------------------------------------------------------------

STAGING = {
    "platform": "kubernetes",
    "endpoints": {"node_rpc": "http://rpc:26657", "node_rest": "http://rest:1317"},
}


def problems(alerts: dict, endpoints: dict | None = None) -> list[str]:
    env = {**STAGING, "alerts": alerts}
    env["endpoints"] = {**STAGING["endpoints"], **(endpoints or {})}
    with pytest.raises(ConfigError) as exc:
        config.parse({"environments": {"staging": env}, "default_environment": "staging"})
    return exc.value.problems


def test_the_alerts_section_refuses_what_it_cannot_use():
    (p,) = problems({"rules": ["r.yaml"], "roles": {"node-gone": ["X"]}})
    assert p.startswith("environments.staging.alerts.roles:") and "unknown role(s) node-gone; roles: node-down" in p
    (p,) = problems({"rules": ["r.yaml"], "roles": {"disk": ["A", "A"]}})
    assert "role disk: alert names must be non-empty and listed once each" in p
    (p,) = problems({"rules": ["r.yaml"], "group_wait": "half a minute"})
    assert p.startswith("environments.staging.alerts.group_wait:") and "not a Prometheus duration" in p
    (p,) = problems({"rules": []})
    assert "give 'prometheus' or at least one rule file path or glob" in p
    (p,) = problems({"roles": {"disk": ["DiskSpaceLow"]}})  # rules: prometheus by default, and no Prometheus
    assert "endpoints.prometheus is not set" in p


def test_the_sandbox_section_overrides_the_built_in_profile_role_by_role():
    env = {"platform": "sandbox", "endpoints": {"node_rpc": "http://n:1", "node_rest": "http://n:2"}}
    env["alerts"] = {"roles": {"memory": ["OnlyThis"]}, "group_wait": "10s"}
    profile = config.parse({"environments": {"sandbox": env}}).environment().alert_profile()
    assert profile.roles["memory"] == ("OnlyThis",) and profile.roles["disk"] == ("DiskSpaceLow", "DiskSpaceCritical")
    assert (profile.group_wait_s, profile.evaluation_interval_s, profile.rules) == (10, 1, ar.PROMETHEUS)


def test_a_kubernetes_environment_without_alerts_maps_no_role():
    env = {**STAGING, "endpoints": {**STAGING["endpoints"], "prometheus": "http://prom:9090"}}
    profile = config.parse({"environments": {"staging": env}, "default_environment": "staging"}).environment()
    profile = profile.alert_profile()
    assert profile.roles == {} and profile.rules == ar.PROMETHEUS and profile.prometheus == "http://prom:9090"
    assert profile.group_wait_s == 30 and profile.base_dir is None


def test_an_unknown_role_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown alert role 'nope'"):
        ar.role_alerts(ar.AlertProfile(roles={}, rules=(), evaluation_interval_s=1), "nope", ar.RuleSet(), 1)
