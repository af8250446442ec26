"""End-to-end deployment lifecycle: the seed's seven steps, each a task with its own timing and verdict."""

from __future__ import annotations

from prefect import flow
from pydantic import Field

from drillbit import criteria
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.probes import next_dseq
from flows.base import FlowParams, new_record
from tasks import observe
from tasks.grade import grade
from tasks.report import persist_and_publish
from tasks.targets import resolve_environment

STEPS = [
    ("create-deployment", "deployment created"),
    ("wait-for-bids", "bids received"),
    ("accept-bid", "bid accepted"),
    ("wait-for-running", "deployment running"),
    ("check-health", "deployment healthy"),
    ("close-deployment", "deployment closed"),
    ("verify-settlement", "settled"),
]


class E2EParams(FlowParams):
    owner: str = Field("drillbit-e2e", description="Tenant account used for the test deployment")
    bid_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds to wait for bids (seed: 30 s)")
    running_timeout: float = Field(300.0, gt=0, le=7200, description="Seconds to reach running (seed: 5 min)")
    settle_timeout: float = Field(60.0, gt=0, le=3600, description="Seconds to see the settlement")


def step_criterion(step: str, name: str, limit: float | None) -> Criterion:
    base = criteria.all_ok(name, f"e2e:{step}", what=step)

    def check(tl: Timeline) -> Verdict:
        if tl.select(probe=f"e2e:{step}").empty:
            return Verdict(name, Outcome.INCONCLUSIVE, "not reached: an earlier step failed")
        v = base.check(tl)
        took = float(tl.select(probe=f"e2e:{step}")["latency"].iloc[0])
        v.evidence["duration_s"] = round(took, 3)
        return v

    return Criterion(name, f"succeeds{f' within {limit:g} s' if limit else ''}", check)


@flow(name="e2e", log_prints=True)
def e2e(params: E2EParams = E2EParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path)
    record = new_record("e2e", env.name, params, scenario="deployment-lifecycle")
    timeline = Timeline()
    timeline.begin_phase("steady")
    owner, dseq = params.owner, next_dseq()
    created = observe.create_deployment(env, owner, dseq)
    timeline.add(created)
    try:
        if created.ok:
            bids_sample, bids = observe.wait_for_bids(env, owner, dseq, params.bid_timeout)
            timeline.add(bids_sample)
            if bids:
                lease_id = bids[0]["id"]
                accepted = observe.accept_bid(env, lease_id)
                timeline.add(accepted)
                if accepted.ok:
                    running = observe.wait_for_running(env, lease_id, params.running_timeout)
                    timeline.add(running)
                    if running.ok:
                        timeline.add(observe.check_health(env, lease_id))
    finally:
        if created.ok:  # always close what we created
            closed = observe.close_deployment(env, owner, dseq)
            timeline.add(closed)
            if closed.ok:
                timeline.add(observe.verify_settlement(env, owner, dseq, params.settle_timeout))
    timeline.end()
    limits = {"wait-for-bids": params.bid_timeout, "wait-for-running": params.running_timeout}
    crits = [step_criterion(step, name, limits.get(step)) for step, name in STEPS]
    record.finish(grade(timeline, crits))
    steps = timeline.frame
    record.metrics = {
        "dseq": dseq,
        "owner": owner,
        "step_seconds": {
            p.removeprefix("e2e:"): round(float(t), 3) for p, t in zip(steps["probe"], steps["latency"], strict=True)
        },
    }
    return persist_and_publish(record, timeline).to_dict()
