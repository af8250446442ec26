"""Synthetic monitoring: the seed's three checks (plus a chain query), graded against VirtEngine's SLOs.

Each run does ``rounds`` rounds of checks; the calendar runs it every 1-5 minutes, so the error budget and burn rates
are computed from the stored history of every run in the 28-day window.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Literal

import pandas as pd
from prefect import flow
from pydantic import Field

from drillbit import criteria, slo
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.store import ResultsStore
from flows.base import FlowParams, new_record
from tasks.grade import grade
from tasks.observe import SYNTHETIC_CHECKS, synthetic_checks
from tasks.report import persist_and_publish
from tasks.targets import resolve_environment

CheckName = Literal["tx-submission", "chain-query", "market-query", "deployment-provisioning"]

# check → (availability SLO, latency SLO); the latency SLO carries latency_p95_s
CHECK_SLOS: dict[str, tuple[str, str]] = {
    "tx-submission": ("SLO-NODE-003", "SLO-NODE-005"),
    "chain-query": ("SLO-NODE-001", "SLO-NODE-006"),
    "market-query": ("SLO-API-001", "SLO-API-004"),
    "deployment-provisioning": ("SLO-PROV-003", "SLO-PROV-005"),
}


class SyntheticParams(FlowParams):
    checks: list[CheckName] = Field(default_factory=lambda: list(SYNTHETIC_CHECKS), description="Checks to run")
    rounds: int = Field(1, ge=1, le=10_000, description="Rounds of checks in this run")
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between rounds")


def burn_criterion(
    store: ResultsStore, env_name: str, targets: dict[str, float], run_samples: pd.DataFrame
) -> Criterion:
    """Fails when a paging burn-rate rule fires for any check over the stored history plus this run."""

    def check(_tl: Timeline) -> Verdict:
        since = time.time() - timedelta(days=slo.WINDOW_DAYS).total_seconds()
        firing, evidence = [], {}
        for probe, target in targets.items():
            hist = store.samples(env_name, probe=probe, since=since, flow="synthetic")
            both = pd.concat([hist[["ts", "ok"]], run_samples.loc[run_samples["probe"] == probe, ["ts", "ok"]]])
            if both.empty:
                continue
            ok = pd.Series(both["ok"].astype(bool).to_numpy(), index=pd.to_datetime(both["ts"], unit="s")).sort_index()
            budget = slo.budget_report(ok, target)
            rules = slo.multiwindow_burn(ok, target)
            evidence[probe] = (
                f"budget left {budget.remaining_fraction:.1%} ({budget.status}), "
                f"burn 5m {rules[0].short_rate:.1f}x / 1h {rules[0].long_rate:.1f}x"
            )
            firing += [f"{probe}: {r.rule} ({r.severity})" for r in rules if r.firing and r.severity.startswith("page")]
        if firing:
            return Verdict("error budget burn", Outcome.FAIL, "paging burn rate: " + "; ".join(firing), evidence)
        return Verdict("error budget burn", Outcome.PASS, "no paging burn-rate rule fires", evidence)

    return Criterion("error budget burn", "no 5x/15 min or 10x/5 min burn (1 h confirmation)", check)


@flow(name="synthetic", log_prints=True)
def synthetic(params: SyntheticParams = SyntheticParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path)
    record = new_record("synthetic", env.name, params)
    timeline = Timeline()
    timeline.begin_phase("steady")
    samples = synthetic_checks(env, list(params.checks), params.rounds, params.interval)
    timeline.extend(samples)
    timeline.end()

    crits, targets, thresholds = [], {}, {}
    for check in params.checks:
        avail_slo, latency_slo = (env.slo(i) for i in CHECK_SLOS[check])
        targets[check] = avail_slo.target
        thresholds[check] = latency_slo.latency_p95_s
        crits.append(criteria.availability(f"{check} availability", check, avail_slo.target))
        crits.append(criteria.latency(f"{check} latency", check, 95, latency_slo.latency_p95_s))
    store = ResultsStore()
    crits.append(burn_criterion(store, env.name, targets, timeline.frame))
    record.finish(grade(timeline, crits))
    record.metrics = {
        check: {
            "checks": int((timeline.frame["probe"] == check).sum()),
            "ok": int(timeline.frame.loc[timeline.frame["probe"] == check, "ok"].sum()),
        }
        for check in params.checks
    }
    return persist_and_publish(record, timeline, thresholds=thresholds).to_dict()
