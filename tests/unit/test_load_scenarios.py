"""Load scenarios as data: the seed's numbers, validation of bad parameters, time_scale, the Locust command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from drillbit.load import runner
from drillbit.load.scenarios import SCENARIOS, Scenario, StepPlan, scenario


def test_seed_numbers_are_the_defaults():
    s = SCENARIOS["sustained"]
    assert (s.target, s.rate, s.duration_s, s.ramp_s, s.workers) == ("tx", 50, 3600, 300, 10)
    assert (s.budgets.error_rate, s.budgets.p95_s, s.budgets.min_throughput) == (0.01, 10.0, 50.0)
    b = SCENARIOS["burst"]
    assert (b.rate, b.duration_s, b.ramp_s, b.workers, b.budgets.error_rate, b.budgets.p95_s) == (
        100,
        300,
        30,
        20,
        0.02,
        15.0,
    )
    levels = {n: SCENARIOS[n] for n in ("smoke", "load", "stress", "soak")}
    assert {n: (x.rate, x.duration_s / 60, x.budgets.error_rate) for n, x in levels.items()} == {
        "smoke": (5, 5, 0.01),
        "load": (50, 30, 0.01),
        "stress": (100, 10, 0.05),
        "soak": (50, 120, 0.01),
    }
    assert all(x.ramp_s == 60 and x.workers == max(1, int(x.rate // 5)) for x in levels.values())
    d = SCENARIOS["deployments"]
    assert (d.concurrency, d.duration_s, d.p95_budget, d.budgets.error_rate, d.model) == (
        50,
        1800,
        300,
        0.01,
        "concurrency",
    )
    assert SCENARIOS["breaking-point"].steps is not None
    assert SCENARIOS["soak"].drift_check


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": -5}, "positive number of operations per second"),
        ({"rate": 0}, "positive number"),
        ({"duration_s": 0}, "more than 0 seconds"),
        ({"error_rate": 1.5}, "fraction between 0 and 1"),
        ({"error_rate": -0.1}, "fraction between 0 and 1"),
        ({"time_scale": 0}, "0 < time_scale <= 1"),
        ({"time_scale": 2}, "0 < time_scale <= 1"),
        ({"time_scale": 0.0001}, "use time_scale >="),
        ({"workers": 0}, "greater than or equal to 1"),
        ({"concurrency": 5}, "exactly one of rate"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_error(changes, message):
    with pytest.raises(ValidationError) as err:
        SCENARIOS["smoke"].with_changes(**changes)
    assert message in str(err.value)


def test_deployments_target_needs_a_concurrency_and_unknown_names_are_refused():
    with pytest.raises(ValidationError, match="deployments target runs as a concurrency"):
        Scenario(name="x", target="deployments", rate=5)
    with pytest.raises(ValueError, match="unknown load scenario 'nope'; known: sustained"):
        scenario("nope")
    with pytest.raises(ValidationError, match="below start_rate"):
        StepPlan(start_rate=50, max_rate=10)


def test_time_scale_compresses_durations_but_not_rates_or_budgets():
    real = SCENARIOS["sustained"]
    fast = real.with_changes(time_scale=0.01)
    assert real.profile() == [["ramp", 300.0, 0.0, 50.0], ["steady", 3600.0, 50.0, 50.0]]
    assert fast.profile() == [["ramp", 3.0, 0.0, 50.0], ["steady", 36.0, 50.0, 50.0]]
    assert fast.total_s == pytest.approx(39.0)
    assert fast.budgets == real.budgets and fast.rate == real.rate
    assert fast.expected_throughput("steady") == 50 and fast.expected_throughput("ramp") == 25
    steps = SCENARIOS["breaking-point"].with_changes(time_scale=0.1)
    assert {s[1] for s in steps.profile()} == {6.0}
    assert [s[2] for s in steps.profile()][:3] == [10, 20, 30]


def test_a_new_target_gets_its_own_latency_budget_unless_one_is_given():
    mq = SCENARIOS["smoke"].with_changes(target="market-query")
    assert mq.p95_budget == 2.0 and mq.primary == "market-query"
    assert SCENARIOS["smoke"].with_changes(target="market-query", p95_s=0.5).p95_budget == 0.5
    assert mq.key == "smoke/market-query@5/s"


def test_flow_params_refuse_bad_values_before_anything_runs():
    from drillbit.scenarios.load import DeploymentsParams, SmokeParams, SustainedParams

    assert SustainedParams().scenario() == SCENARIOS["sustained"]
    assert SmokeParams(time_scale=0.1).scenario().total_s == pytest.approx(36.0)
    for bad in ({"rate": -1}, {"duration_s": 0}, {"error_budget": 2}, {"time_scale": 0}, {"bogus": 1}):
        with pytest.raises(ValidationError):
            SmokeParams(**bad)
    assert DeploymentsParams(concurrency=3, time_scale=0.01).scenario().workers == 3


def test_locust_command_is_headless_bounded_and_loopback_bound(tmp_path: Path):
    sc = SCENARIOS["burst"].with_changes(time_scale=0.1)
    cmd = runner.command(sc, runner.Urls("http://127.0.0.1:36657"), tmp_path, processes=2)
    locustfile = Path(cmd[cmd.index("-f") + 1])
    assert locustfile.name == "tx_submit.py" and locustfile.exists()
    assert "--headless" in cmd and cmd[cmd.index("--json-file") + 1] == str(tmp_path / "locust")
    assert json.loads(cmd[cmd.index("--drillbit-profile") + 1]) == sc.profile()
    run_time = int(cmd[cmd.index("-t") + 1].rstrip("s"))
    assert sc.total_s < run_time <= sc.total_s + runner.drain_seconds(sc) + runner.STARTUP_S + 1
    assert cmd[cmd.index("--processes") + 1] == "2" and cmd[cmd.index("--master-bind-host") + 1] == "127.0.0.1"
    # the in-flight cap covers the peak rate with every operation taking the whole timeout, per process
    assert int(cmd[cmd.index("--drillbit-max-inflight") + 1]) == int(100 * 30 * 1.1 / 2)
    dep = runner.command(
        SCENARIOS["deployments"].with_changes(time_scale=0.01),
        runner.Urls("http://127.0.0.1:1", rest="http://127.0.0.1:2", provider="http://127.0.0.1:3"),
        tmp_path,
    )
    assert Path(dep[dep.index("-f") + 1]).name == "deployments.py"
    assert dep[dep.index("--drillbit-provider") + 1] == "http://127.0.0.1:3" and "--processes" not in dep


def test_kubernetes_master_and_workers_agree_with_the_sustained_scenario():
    import yaml

    k8s = Path(__file__).resolve().parents[2] / "infra" / "load" / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    assert all((k8s / r).exists() for r in kustomization["resources"])
    master = next(d for d in yaml.safe_load_all((k8s / "master.yaml").read_text()) if d["kind"] == "Job")
    worker = yaml.safe_load((k8s / "worker.yaml").read_text())
    margs = master["spec"]["template"]["spec"]["containers"][0]["args"]
    wargs = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    opt = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in margs if "=" in a}
    sustained = SCENARIOS["sustained"]
    assert json.loads(opt["--drillbit-profile"]) == sustained.profile()
    assert int(opt["--drillbit-streams"]) == int(opt["--users"]) == sustained.workers
    workers = worker["spec"]["parallelism"]
    assert int(opt["--expect-workers"]) == int(opt["--drillbit-processes"]) == workers == worker["spec"]["completions"]
    assert int(opt["--run-time"].rstrip("s")) > sustained.total_s
    assert margs[margs.index("-f") + 1] == wargs[wargs.index("-f") + 1] == "/locustfiles/tx_submit.py"
    assert (runner.LOCUSTFILE_DIR / "tx_submit.py").exists() and "--worker" in wargs and "--master" in margs
