"""Synthetic monitoring's core: the seed's checks (plus a chain query) as monitors, their parameters, which SLOs grade
each check, and the criteria: availability and p95 latency per check, and the error-budget burn over the stored
history of every synthetic run in the SLO window plus this run."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import Field

from drillbit import criteria, probes, slo
from drillbit.client import VirtEngineClient
from drillbit.config import ResolvedEnvironment
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.monitor import Monitor, monitor
from drillbit.params import FlowParams
from drillbit.store import ResultsStore

CheckName = Literal["tx-submission", "chain-query", "market-query", "deployment-provisioning"]
SYNTHETIC_CHECKS: tuple[str, ...] = get_args(CheckName)

# check → (availability SLO, latency SLO); the latency SLO carries latency_p95_s
CHECK_SLOS: dict[str, tuple[str, str]] = {
    "tx-submission": ("SLO-NODE-003", "SLO-NODE-005"),
    "chain-query": ("SLO-NODE-001", "SLO-NODE-006"),
    "market-query": ("SLO-API-001", "SLO-API-004"),
    "deployment-provisioning": ("SLO-PROV-003", "SLO-PROV-005"),
}

# check → its probe on a client
CHECKS: dict[str, Callable[[VirtEngineClient], probes.Check]] = {
    "tx-submission": probes.tx_submission,
    "chain-query": probes.chain_query,
    "market-query": probes.market_query,
    "deployment-provisioning": probes.deployment_provisioning,
}


class SyntheticParams(FlowParams):
    checks: list[CheckName] = Field(default_factory=lambda: list(SYNTHETIC_CHECKS), description="Checks to run")
    rounds: int = Field(1, ge=1, le=10_000, description="Rounds of checks in this run")
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between rounds")


def monitors(client: VirtEngineClient, checks: list[str], interval: float) -> list[Monitor]:
    """One monitor per check, each running its probe every ``interval`` seconds."""
    return [monitor(name, interval, CHECKS[name](client)) for name in checks]


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


def synthetic_criteria(
    env: ResolvedEnvironment, checks: list[str], timeline: Timeline, store: ResultsStore | None = None
) -> tuple[list[Criterion], dict[str, float]]:
    """Each check's availability and p95 latency against its SLOs, then the burn rate; and the latency thresholds
    (per check) drawn on the timeline plot."""
    crits, targets, thresholds = [], {}, {}
    for check in checks:
        avail_slo, latency_slo = (env.slo(i) for i in CHECK_SLOS[check])
        targets[check] = avail_slo.target
        thresholds[check] = latency_slo.latency_p95_s
        crits.append(criteria.availability(f"{check} availability", check, avail_slo.target))
        crits.append(criteria.latency(f"{check} latency", check, 95, latency_slo.latency_p95_s))
    crits.append(burn_criterion(store or ResultsStore(), env.name, targets, timeline.frame))
    return crits, thresholds


def synthetic_metrics(timeline: Timeline, checks: list[str]) -> dict[str, Any]:
    """Checks run and checks passed, per check."""
    frame = timeline.frame
    return {
        check: {
            "checks": int((frame["probe"] == check).sum()),
            "ok": int(frame.loc[frame["probe"] == check, "ok"].sum()),
        }
        for check in checks
    }
