"""Load tasks: preflight, the Locust subprocess, analysis, leftovers cleanup, plots, the stored runs perf-regression
compares; and ``run_load``, the body every load flow shares (these tasks in order, then grading and publishing).

Retries only where repeating is harmless: the preflight and the cleanup, and the generator only when Locust recorded
nothing (it never started, so no load was offered). Analysis and grading are never retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit.client import ClientError
from drillbit.config import ResolvedEnvironment
from drillbit.load import plots, regression, runner
from drillbit.load import results as res
from drillbit.load.scenarios import Scenario
from drillbit.model import RunRecord
from drillbit.scenarios.load import LoadParams, leftover_owners, load_criteria, load_metrics, per_second_timeline
from drillbit.store import ResultsStore
from tasks.grade import grade
from tasks.report import artifacts_dir, persist_and_publish
from tasks.runner import new_record
from tasks.targets import client_for, resolve_environment


class TargetUnavailable(RuntimeError):
    pass


@task(name="load-preflight", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def preflight(env: ResolvedEnvironment, scenario: Scenario) -> runner.Urls:
    """The surfaces the scenario loads answer at all (a load test against a dead target measures nothing); a slow
    answer is fine (measuring slowness is the point), so the wait is the scenario's request timeout."""
    ep = env.endpoints
    if scenario.target == "market-query":
        if not ep.api:
            raise TargetUnavailable(f"environment {env.name} has no marketplace API endpoint")
        urls = runner.Urls(host=ep.api)
        checks = [f"{ep.api}/health"]
    else:
        urls = runner.Urls(host=ep.node_rpc, rest=ep.node_rest, provider=ep.provider)
        checks = [f"{ep.node_rpc}/health"]
        if scenario.target == "deployments":
            if not ep.provider:
                raise TargetUnavailable(f"environment {env.name} has no provider endpoint")
            checks += [f"{ep.node_rest}/health", f"{ep.provider}/health"]
    for url in checks:
        try:
            httpx.get(url, timeout=scenario.request_timeout_s).raise_for_status()
        except httpx.HTTPError as exc:
            raise TargetUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
    return urls


def _only_start_errors(_task: Any, _run: Any, state: Any) -> bool:
    try:
        state.result()
    except runner.LoadStartError:
        return True
    except Exception:
        return False
    return False


@task(
    name="load-generate",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=_only_start_errors,
    cache_policy=NO_CACHE,
)
def generate(scenario: Scenario, urls: runner.Urls, out_dir: str, processes: int = 1) -> dict[str, Any]:
    """Run the scenario's locustfile as a subprocess until its schedule (and drain) ends."""
    log = get_run_logger()
    log.info(
        "load %s on %s: %s over %.0f s (+ drain), %d process(es)",
        scenario.key,
        urls.host,
        " → ".join(f"{p[0]} {p[3]:g}/s" for p in scenario.profile()[:4]),
        scenario.total_s,
        processes,
    )
    run = runner.run_scenario(scenario, urls, Path(out_dir), processes)
    log.info("locust exited %s after %.1f s%s", run.returncode, run.seconds, " (timed out)" if run.timed_out else "")
    return {"returncode": run.returncode, "seconds": round(run.seconds, 2), "timed_out": run.timed_out}


@task(name="load-analyse", cache_policy=NO_CACHE)
def analyse(out_dir: str) -> res.LoadData:
    data = res.read(Path(out_dir))
    get_run_logger().info("read %d records from %d generator process(es)", len(data.frame), len(data.metas))
    return data


@task(name="load-close-leftovers", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def close_leftover_deployments(env: ResolvedEnvironment, owners: list[str]) -> int:
    """Close deployments the generator left active (a lifecycle cut off by the run's time limit)."""
    closed = 0
    with client_for(env, timeout=15.0) as c:
        for owner in owners:
            r = c.http.get(
                f"{c.rest_url}/virtengine/deployment/v1beta4/deployments/list",
                params={"filters.owner": owner, "filters.state": "active", "pagination.limit": 1000},
            )
            r.raise_for_status()
            for d in r.json().get("deployments", []):
                dep = d.get("deployment", {})
                if dep.get("state") != "active":
                    continue
                try:
                    c.close_deployment(owner, int(dep["id"]["dseq"]))
                    closed += 1
                except ClientError as exc:
                    if "state" not in str(exc):  # closed meanwhile
                        raise
    if closed:
        get_run_logger().warning("closed %d deployment(s) the load generator left active", closed)
    return closed


@task(name="load-plot", cache_policy=NO_CACHE)
def plot(data: res.LoadData, scenario: Scenario, path: str, title: str) -> str | None:
    ps = res.per_second(data.select(scenario.primary), data.t0)  # to the last completion: the drain shows too
    target = scenario.profile() if scenario.model == "open" else None
    png = plots.plot_load(
        ps, data.phases, data.t0, Path(path), title=title, target_rate=target, p95_budget=scenario.p95_budget
    )
    return str(png) if png else None


@task(name="load-candidate", cache_policy=NO_CACHE)
def load_run(run_id: str) -> RunRecord:
    return regression.find_run(ResultsStore(), run_id)


@task(name="find-baseline", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def baseline_for(candidate: RunRecord, baseline_id: str | None) -> RunRecord | None:
    return regression.find_baseline(ResultsStore(), candidate, baseline_id)


# ------------------------------------------------------------------------------------------ the load flows' body


def run_load(flow_name: str, params: LoadParams, required_rate: float | None = None) -> dict:
    """Preflight → generate (Locust subprocess) → analyse → grade → plot → persist and publish."""
    scenario = params.scenario()
    env = resolve_environment(params.environment, params.config_path)
    record = new_record(flow_name, env.name, params, scenario=scenario.key)
    out_dir = artifacts_dir(record) / "locust"
    urls = preflight(env, scenario)
    try:
        generated = generate(scenario, urls, str(out_dir), params.processes)
        data = analyse(str(out_dir))
    finally:
        if scenario.target == "deployments":
            owners = leftover_owners(out_dir)
            if owners:
                close_leftover_deployments(env, owners)
    # the timeline may hold millions of samples: the grade task never hashes its inputs (no cache)
    record.finish(grade(data.timeline(), load_criteria(scenario, data, required_rate)))
    record.metrics = load_metrics(scenario, data, generated, required_rate)
    png = plot(
        data, scenario, str(artifacts_dir(record) / "load.png"), f"{flow_name} {scenario.key} — {record.outcome}"
    )
    if png:
        record.artifacts["load_png"] = png
    record.artifacts["locust_dir"] = str(out_dir)
    summary = per_second_timeline(data, scenario)
    thresholds = {f"per-second:{scenario.primary}": scenario.p95_budget}
    return persist_and_publish(record, summary, thresholds=thresholds).to_dict()
