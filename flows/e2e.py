"""End-to-end deployment lifecycle: the seed's seven steps, each a task with its own timing and verdict."""

from __future__ import annotations

from prefect import flow

from drillbit.model import Timeline
from drillbit.probes import next_dseq
from drillbit.scenarios.e2e import E2EParams, e2e_criteria, e2e_metrics
from tasks import observe
from tasks.grade import grade
from tasks.report import persist_and_publish
from tasks.runner import new_record
from tasks.targets import resolve_environment


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
    record.finish(grade(timeline, e2e_criteria(params)))
    record.metrics = e2e_metrics(timeline, owner, dseq)
    return persist_and_publish(record, timeline).to_dict()
