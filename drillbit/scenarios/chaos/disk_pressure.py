"""Chaos: disk pressure on a validator's data volume. Hypothesis: the system handles disk pressure gracefully
(seed experiment 3: 4 workers, 1 GB): the pressure is detected, the alert fires, degradation is graceful and the
system recovers once the pressure is gone.

On the sandbox the fault fills one selected component's bounded data volume and its used ratio is read from
Prometheus; on Kubernetes a Chaos Mesh IOChaos slows or fails the file operations on the target's data volume
(``kubernetes``): it does not fill it, so detection is graded only from a configured ``detect_query``.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.base import FaultError
from drillbit.faults.disk import DiskPressure
from drillbit.faults.targets import select_targets
from drillbit.model import Criterion
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment
from drillbit.scenarios.chaos import kubernetes, query_monitors


class DiskPressureParams(ExperimentParams):
    duration: float = Field(1800.0, gt=0, le=86_400, description="Seconds of pressure (seed: 30 min)")
    target: str = Field("node", description="Role whose data volume is filled")
    workers: int = Field(4, ge=0, le=64, description="I/O workers (seed: 4)")
    size_bytes: int = Field(1 << 30, gt=0, description="Most bytes written to fill the volume (seed: 1 GB)")
    fill_percent: float = Field(90.0, gt=0, lt=100, description="Fill the volume up to this share")
    io_bytes: int = Field(32 << 20, gt=0, description="Bytes each worker writes per pass")
    expected_alerts: list[str] = Field(
        default_factory=lambda: ["DiskSpaceLow", "DiskSpaceCritical"],
        description="Any of these must fire; on Kubernetes (IOChaos, no filling) name your slow/failing-I/O alerts",
    )
    detect_above: float = Field(0.85, gt=0, lt=1, description="Used ratio that counts as pressure detected")
    max_error_rate: float = Field(0.05, ge=0, le=1, description="Graceful: client error rate during the pressure")
    recover_within: float = Field(30.0, gt=0, description="Seconds to be healthy again after the pressure ends")
    seed: int | None = None
    volume_path: str = Field("/root/.virtengine", description="Kubernetes: mountPath of the target's data volume")
    io_action: Literal["latency", "fault"] = Field(
        "latency", description="Kubernetes IOChaos: slow file operations, or fail them with ENOSPC (disk full)"
    )
    io_delay_ms: float = Field(100.0, gt=0, le=60_000, description="Kubernetes IOChaos latency per file operation")
    io_percent: int = Field(50, ge=1, le=100, description="Kubernetes IOChaos: percent of file operations hit")
    detect_query: str | None = Field(
        None, description="Kubernetes: PromQL whose value rises above detect_above while the I/O fault is in place"
    )


def on_sandbox(env: ResolvedEnvironment, params: DiskPressureParams) -> tuple[DiskPressure, str, str]:
    """Fill the data volume of one component the selector matches; returns the fault, the component's name and
    the PromQL of its volume's used ratio."""
    ep = sbx.endpoints()
    volumes = ep.get("volumes", {})
    with_volume = {n: c for n, c in ep["components"].items() if n in volumes}
    if not with_volume:
        raise FaultError("this sandbox has no bounded data volumes; restart it with the current launcher")
    safety = env.spec.safety
    (name,) = select_targets(
        with_volume,
        env.selector(params.target),
        "one",
        max_targets=safety.max_targets,
        rng=random.Random(params.seed),
    )
    volume = volumes[name]
    fault = DiskPressure(
        volume["path"],
        params.fill_percent,
        params.size_bytes,
        params.workers,
        params.io_bytes,
        params.duration + 30,
    )
    return fault, name, f'max(virtengine_filesystem_used_ratio{{component="{volume["holds"]}"}})'


def build(env: ResolvedEnvironment, params: DiskPressureParams, run_id: str | None = None) -> Experiment:
    """The disk-pressure experiment; ``run_id`` labels the Kubernetes objects (default: a fresh id)."""
    prom = env.endpoints.prometheus
    if env.platform == "kubernetes":
        # IOChaos on the data volume: it slows or fails file operations but does not fill the volume
        fault = kubernetes.io_pressure(env, params, run_id)
        name, query = params.target, params.detect_query
    else:
        fault, name, query = on_sandbox(env, params)
    detect = bool(prom and query)
    client = client_for(env, timeout=10.0)
    iv = params.interval
    monitors = [monitor("tx-submission", max(iv, 2.0), probes.tx_submission(client)), *query_monitors(env, client, iv)]
    if detect:
        monitors.append(monitor("disk-used-ratio", iv, probes.prometheus_value(prom, query)))

    def criteria_for(_detail: dict) -> list[Criterion]:
        out = []
        if detect:
            out.append(criteria.value_above("pressure detected", "disk-used-ratio", params.detect_above, "injection"))
        elif env.platform == "kubernetes":
            why = "IOChaos does not fill the volume; set detect_query (and prometheus) to grade detection"
            out.append(kubernetes.not_exercised("pressure detected", why))
        out += [
            criteria.alerts_fired("alerts fired", params.expected_alerts),
            criteria.error_rate("graceful degradation: tx", "tx-submission", params.max_error_rate, phase="injection"),
            criteria.error_rate(
                "graceful degradation: queries", "chain-query", params.max_error_rate, phase="injection"
            ),
            criteria.recovered_within("recovered", "tx-submission", "revert", params.recover_within),
        ]
        if detect:
            out.append(criteria.value_below("volume freed", "disk-used-ratio", params.detect_above, "recovery"))
        return out

    return Experiment(
        "chaos-disk-pressure",
        env,
        params,
        fault,
        monitors,
        criteria_for,
        guarded_probes=["chain-query"],
        scenario=name,
        close=[client.close],
    )
