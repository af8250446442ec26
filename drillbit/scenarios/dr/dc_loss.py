"""DR: complete data-centre loss (seed DR scenario 1). Region A (the primary database and the services using it) dies
at once; the drill fails over to region B (promote the replica, repoint the database Service, start the API there)
and measures RTO from the probes and RPO from the write canary (seed: RTO < 15 min, RPO < 1 min)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from drillbit.config import ResolvedEnvironment
from drillbit.poll import wait_until
from drillbit.runner import Experiment
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr import operations as ops
from drillbit.scenarios.dr.harness import DrParams, DrRun, alerts_since

REGION_A = ["postgres", "api", "backup", "replica-link"]
FAILOVER_STEPS = ["promote replica in region B", "repoint api-db to region B", "start api in region B"]


class DcLossParams(DrParams):
    rto_target: float = Field(900.0, gt=0, description="Seconds (seed: failover and RTO within 15 min)")
    rpo_target: float = Field(60.0, ge=0, description="Seconds of acknowledged writes that may be lost (seed: 1 min)")
    region_a: list[str] = Field(
        default_factory=lambda: list(REGION_A),
        description="Components of the lost region (those the sandbox runs; replica-link is the primary's end of the "
        "slow replication link of the async weakness)",
    )
    wait_for_alert: bool = Field(True, description="Fail over once monitoring reports the loss (as on-call would)")
    detect_timeout: float = Field(120.0, gt=0, le=3600, description="Seconds to wait for that alert")
    detect_alerts: list[str] = Field(default_factory=lambda: ["ServiceDown", "APIDatabaseDown"])
    region_b_timeout: float = Field(60.0, gt=0, le=3600, description="Seconds region B may take to be following")


def preflight(ep: dict[str, Any], params: DcLossParams) -> dict[str, Any]:
    """Region B must exist and follow region A; every region-A component must be running. Destroys nothing."""
    sup = ops.Supervisor(ep["supervisor"])
    present = set(sup.names())
    lost = [n for n in params.region_a if n in present]
    if "postgres" not in lost:
        raise ops.PreflightError("region_a must contain the primary database (postgres)")
    for name in lost:
        if sup.state(name) != "RUNNING":
            raise ops.PreflightError(f"{name} is {sup.state(name)}, not RUNNING: the region is not in steady state")
    replica = ep.get("storage", {}).get("replica")
    if not replica:
        raise ops.PreflightError("the sandbox has no replica (region B): nothing to fail over to")

    def following() -> dict[str, Any] | None:
        st = ops.replica_status(ep["postgres"]["port"], replica["port"])
        streaming = any(
            s["application_name"] == replica["application_name"] and s["state"] == "streaming" for s in st["streams"]
        )
        return st if st["in_recovery"] and streaming else None

    try:  # a replica that is still catching up (a fresh sandbox) gets a bounded wait, not a refusal
        what = "replica streaming from the primary"
        status = wait_until(following, params.region_b_timeout, what, 0.5, raises=ops.DrError)
    except ops.DrError as exc:
        raise ops.PreflightError(f"region B's replica on port {replica['port']} is not following: {exc}") from exc
    return {"region_a": lost, "replica": status}


def build(env: ResolvedEnvironment, params: DcLossParams) -> Experiment:
    """The data-centre loss: preflight now; approval, baseline, loss of region A and the failover in the run."""
    run = DrRun.begin("dr-dc-loss", "dc-loss", env, params, preflight)
    lost = run.evidence["preflight"]["region_a"]
    sup = ops.Supervisor(run.ep["supervisor"])

    def procedure() -> None:
        with run.steps.step("lose region A", ", ".join(lost)) as step:
            at, killed = ops.lose_components(sup, lost)
            step.evidence["killed_pids"] = killed
        run.disaster(at, f"region A lost: {', '.join(lost)}")
        run.recover(lambda: fail_over(run, sup, params, at))

    grading = [
        *run.criteria(params.rto_target, params.rpo_target),
        dr.step_criterion("failover completes", FAILOVER_STEPS, params.rto_target),
    ]
    what = f"stop {', '.join(lost)} and fail over to the replica"
    return run.experiment(what, procedure, grading, params.rto_target, params.rpo_target)


def fail_over(run: DrRun, sup: ops.Supervisor, params: DcLossParams, at: float) -> None:
    """On-call's procedure: (see the loss,) promote region B's replica, repoint the database Service, start the API."""
    replica = run.ep["storage"]["replica"]
    if params.wait_for_alert:
        with run.steps.step("loss detected", "alert from monitoring") as step:
            fired = wait_until(
                lambda: alerts_since(run.timeline, at - 1, params.detect_alerts),
                params.detect_timeout,
                f"alert ({', '.join(params.detect_alerts)})",
                0.25,
                raises=ops.DrError,
            )
            step.detail = f"{fired[0]['alertname']} ({fired[0].get('component')})"
    with run.steps.step(FAILOVER_STEPS[0], replica["promote"].split(" -- ")[-1]) as step:
        step.evidence["promote_s"] = round(ops.promote(replica["promote"], replica["port"]), 3)
    with run.steps.step(FAILOVER_STEPS[1], f"127.0.0.1:{replica['port']}") as step:
        step.evidence["proxy"] = ops.set_upstreams(run.ep["faultproxy"], "api-db", [f"127.0.0.1:{replica['port']}"])
    with run.steps.step(FAILOVER_STEPS[2]):
        sup.start("api")
        ops.wait_api_on_database(run.client)
    run.wait_restored()
