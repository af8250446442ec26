from pathlib import Path

import yaml

from drillbit.calendar import load_calendar, plan, render_prefect_yaml
from drillbit.config import DrillbitConfig, parse

ROOT = Path(__file__).resolve().parents[2]


def test_the_calendar_holds_the_seed_schedule():
    entries = {e.name: e for e in load_calendar().entries()}
    assert (
        entries["chaos-pod-kill-6h"].cron == "0 */6 * * *" and entries["chaos-pod-kill-6h"].environment == "production"
    )
    assert entries["chaos-network-latency-daily"].environment == "staging"
    assert (
        "BYDAY=-1FR" in entries["gameday-quarterly"].rrule and "BYMONTH=3,6,9,12" in entries["gameday-quarterly"].rrule
    )
    assert entries["perf-regression-prerelease"].cron is None and entries["perf-regression-prerelease"].rrule is None
    assert {e.table for e in entries.values()} == {"continuous", "regular", "periodic", "ci"}


def test_production_entries_need_the_opt_in():
    prod = {
        "platform": "kubernetes",
        "endpoints": {"node_rpc": "http://n:26657", "node_rest": "http://n:1317"},
        "safety": {"production": True},
    }
    staging = {"platform": "kubernetes", "endpoints": {"node_rpc": "http://s:26657", "node_rest": "http://s:1317"}}
    cfg = parse({"environments": {"production": prod, "staging": staging}, "default_environment": "staging"})
    deploy, skipped = plan(cfg)
    assert all(env == "staging" for _, env in deploy)
    assert any("has not opted in" in reason for _, reason in skipped)
    prod["safety"]["opt_in"] = True
    deploy, _ = plan(
        parse({"environments": {"production": prod, "staging": staging}, "default_environment": "staging"})
    )
    assert "production" in {env for _, env in deploy}


def test_environments_missing_from_the_config_are_skipped_with_a_reason():
    deploy, skipped = plan(DrillbitConfig())
    assert deploy == []
    assert any("not in drillbit.yaml" in reason for _, reason in skipped)


def test_committed_prefect_yaml_matches_the_calendar():
    assert (ROOT / "prefect.yaml").read_text() == render_prefect_yaml(), (
        "run: drillbit calendar --write-prefect-yaml prefect.yaml"
    )
    doc = yaml.safe_load(render_prefect_yaml())
    assert all(d["work_pool"]["name"] == "drillbit-kubernetes" for d in doc["deployments"])
