"""Chaos: database failure. Hypothesis: the system handles a database outage with a degraded mode (seed experiment 4):
the API serves cached reads, queues writes and applies every one of them when the database returns."""

from __future__ import annotations

import time
import uuid

from prefect import flow
from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.faults.sandbox import PortBlock
from drillbit.model import Outcome, Timeline, Verdict
from drillbit.synthetic import Monitor
from flows import chaos_k8s
from flows.experiment import Experiment, ExperimentParams, run_experiment
from tasks.recover import revert_on_crash
from tasks.targets import client_for, resolve_environment


class DbFailureParams(ExperimentParams):
    duration: float = Field(300.0, gt=0, le=86_400, description="Seconds the database port stays blocked (seed: 5 min)")
    recovery: float = Field(30.0, ge=0, le=3600)
    action: str = Field("drop", pattern="^(drop|reject)$", description="drop (silent) or reject (TCP reset)")
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="Error budget of API calls during the outage (seed 5 %)"
    )
    min_cached: float = Field(0.9, ge=0, le=1, description="Share of reads that must be answered during the outage")
    verify_timeout: float = Field(60.0, gt=0, description="Seconds for queued writes to appear after recovery")
    db_role: str = Field("database", description="Kubernetes: role whose selector finds the database pod")
    pod: str | None = Field(None, description="Kubernetes: the database pod, when the selector matches several")
    container: str | None = Field(None, description="Kubernetes: container to exec iptables in (default: the pod's)")


@flow(name="chaos-db-failure", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_db_failure(params: DbFailureParams = DbFailureParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    if env.platform == "kubernetes":
        fault = chaos_k8s.db_port_block(env, params)  # iptables in the database pod, by exec (the seed's way)
    else:
        fault = PortBlock(sbx.endpoints()["postgres"]["port"], params.action, label="postgres")
    client = client_for(env, timeout=5.0)
    canary = probes.WriteCanary(client, f"drillbit-canary-{uuid.uuid4().hex[:8]}")
    iv = params.interval
    monitors = [
        Monitor("api-read", iv, probes.as_probe("api-read", probes.api_read(client))),
        Monitor("api-write", iv, probes.as_probe("api-write", canary.check)),
    ]

    def verify(tl: Timeline) -> None:
        result = canary.verify(params.verify_timeout)
        tl.event(
            "write_verification",
            f"{len(result['missing'])} of {result['acknowledged']} acknowledged writes missing",
            **result,
        )
        t0 = time.monotonic()
        up = False
        while not up and time.monotonic() - t0 < params.verify_timeout:  # full recovery: API on its database again
            r = client.api_get("/health")
            up = r.status_code == 200 and r.json().get("database") == "up"
            if not up:
                time.sleep(0.5)
        waited = round(time.monotonic() - t0, 1)
        tl.event(
            "recovery_check", f"API database {'up' if up else 'still down'} after {waited} s", up=up, waited_s=waited
        )

    def none_lost(e: dict) -> Verdict:
        ev = {"acknowledged": e["acknowledged"], "queued": e["queued"], "missing": e["missing"][:20]}
        if e["acknowledged"] == 0:
            return Verdict("writes queued, none lost", Outcome.FAIL, "no write was acknowledged during the run", ev)
        if e["missing"]:
            return Verdict(
                "writes queued, none lost", Outcome.FAIL, f"{len(e['missing'])} acknowledged writes were lost", ev
            )
        if e["queued"] == 0:
            return Verdict("writes queued, none lost", Outcome.FAIL, "no write was queued during the outage", ev)
        return Verdict(
            "writes queued, none lost",
            Outcome.PASS,
            f"all {e['acknowledged']} acknowledged writes present ({e['queued']} were queued)",
            ev,
        )

    def grade_with(_detail: dict) -> list:
        return [
            criteria.availability("cached responses", "api-read", params.min_cached, phase="injection"),
            criteria.event_check(
                "writes queued, none lost", "write_verification", "every acknowledged write applied", none_lost
            ),
            criteria.error_rate("error rate", "api-read", params.max_error_rate, phase="injection"),
            criteria.error_rate("write error rate", "api-write", params.max_error_rate, phase="injection"),
            criteria.event_check(
                "full recovery",
                "recovery_check",
                f"API back on its database within {params.verify_timeout:g} s",
                lambda e: Verdict(
                    "full recovery", Outcome.PASS if e["up"] else Outcome.FAIL, e["detail"], {"waited_s": e["waited_s"]}
                ),
            ),
        ]

    exp = Experiment(
        "chaos-db-failure", env, params, fault, monitors, grade_with, after_revert=verify, scenario=params.action
    )
    try:
        return run_experiment(exp)
    finally:
        client.close()
