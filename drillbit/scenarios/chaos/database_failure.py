"""Chaos: database failure. Hypothesis: the system handles a database outage with a degraded mode (seed experiment 4):
the API serves cached reads, queues writes and applies every one of them when the database returns.

On the sandbox the fault blocks the Postgres port; on Kubernetes iptables in the database pod (by exec, the seed's
way) drops or resets it (``kubernetes``). A write canary writes through the API all along; once the observation is
over every acknowledged write is read back and the API's own database health is awaited.
"""

from __future__ import annotations

import time
import uuid

from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient, client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.port_block import PortBlock
from drillbit.model import Criterion, Outcome, Verdict
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.poll import PollTimeout, wait_until
from drillbit.runner import Experiment, Hook, Run
from drillbit.scenarios.chaos import kubernetes


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


def verify_writes(client: VirtEngineClient, canary: probes.WriteCanary, timeout: float) -> Hook:
    """The hook run once the observation is over: read back every acknowledged write (event
    ``write_verification``), then wait for the API to report its database up (event ``recovery_check``)."""

    def api_database_up() -> bool:
        r = client.api_get("/health")
        return r.status_code == 200 and r.json().get("database") == "up"

    def verify(run: Run) -> None:
        tl = run.timeline
        result = canary.verify(timeout)
        tl.event(
            "write_verification",
            f"{len(result['missing'])} of {result['acknowledged']} acknowledged writes missing",
            **result,
        )
        t0 = time.monotonic()
        try:  # full recovery: the API on its database again
            up = wait_until(api_database_up, timeout, "API database up", interval=0.5, errors=())
        except PollTimeout:
            up = False
        waited = round(time.monotonic() - t0, 1)
        tl.event(
            "recovery_check", f"API database {'up' if up else 'still down'} after {waited} s", up=up, waited_s=waited
        )

    return verify


def none_lost(e: dict) -> Verdict:
    """Grade the ``write_verification`` event: writes were acknowledged, some queued, and none is missing."""
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


def build(env: ResolvedEnvironment, params: DbFailureParams, run_id: str | None = None) -> Experiment:
    """The database-failure experiment (``run_id`` is unused: the exec'd iptables rule carries no label)."""
    if env.platform == "kubernetes":
        fault = kubernetes.db_port_block(env, params)  # iptables in the database pod, by exec (the seed's way)
    else:
        fault = PortBlock(sbx.endpoints()["postgres"]["port"], params.action, label="postgres")
    client = client_for(env, timeout=5.0)
    canary = probes.WriteCanary(client, f"drillbit-canary-{uuid.uuid4().hex[:8]}")
    iv = params.interval
    monitors = [monitor("api-read", iv, probes.api_read(client)), monitor("api-write", iv, canary.check)]

    def criteria_for(_detail: dict) -> list[Criterion]:
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

    return Experiment(
        "chaos-db-failure",
        env,
        params,
        fault,
        monitors,
        criteria_for,
        scenario=params.action,
        collect=verify_writes(client, canary, params.verify_timeout),
        close=[client.close],
    )
