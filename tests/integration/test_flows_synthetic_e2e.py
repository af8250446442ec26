"""Synthetic monitoring and the E2E lifecycle flows against the real sandbox, graded verdicts read back."""

from __future__ import annotations

import asyncio
import xmlrpc.client
from pathlib import Path

import pytest

from drillbit.store import ResultsStore
from flows.e2e import E2EParams, e2e
from flows.synthetic import SyntheticParams, synthetic
from tests.integration.helpers import toxic, wait_for

pytestmark = pytest.mark.integration


def verdicts(record: dict) -> dict[str, dict]:
    return {v["criterion"]: v for v in record["verdicts"]}


def test_synthetic_passes_on_the_healthy_sandbox_and_persists(prefect_server, drillbit_home):
    record = synthetic(params=SyntheticParams(rounds=2, interval=1.0))
    v = verdicts(record)
    assert record["outcome"] == "pass", v
    assert v["tx-submission availability"]["evidence"]["samples"] == 2
    assert v["deployment-provisioning latency"]["outcome"] == "pass"
    stored = ResultsStore().get(record["run_id"])
    assert stored is not None and stored.outcome == "pass"
    assert len(ResultsStore().samples("sandbox", run_id=record["run_id"])) == 8
    assert Path(record["artifacts"]["timeline_png"]).stat().st_size > 1000

    from prefect.client.orchestration import get_client

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    assert {"synthetic-verdicts", "synthetic-criteria"} <= asyncio.run(artifact_keys())


def test_synthetic_latency_criteria_fail_with_3s_on_the_node_rpc_path(prefect_server, sandbox):
    with toxic(sandbox, "node-rpc", "latency", latency=3000):
        record = synthetic(params=SyntheticParams(checks=["chain-query", "tx-submission"], rounds=1, interval=1.0))
    v = verdicts(record)
    assert record["outcome"] == "fail"
    assert v["chain-query latency"]["outcome"] == "fail"
    assert v["chain-query latency"]["evidence"]["p95_s"] >= 3.0
    assert v["tx-submission latency"]["evidence"]["p95_s"] >= 6.0  # submit and confirm each cross the slow link


def test_e2e_lifecycle_passes_every_step(prefect_server):
    record = e2e(params=E2EParams())
    v = verdicts(record)
    assert record["outcome"] == "pass", v
    assert list(v) == [
        "deployment created",
        "bids received",
        "bid accepted",
        "deployment running",
        "deployment healthy",
        "deployment closed",
        "settled",
    ]
    assert all(x["evidence"]["duration_s"] >= 0 for x in v.values())


def test_e2e_fails_on_bids_when_the_provider_is_stopped(prefect_server, sandbox):
    sup = xmlrpc.client.ServerProxy(sandbox["supervisor"]).supervisor
    sup.stopProcess("provider")
    try:
        record = e2e(params=E2EParams(bid_timeout=5.0))
    finally:
        sup.startProcess("provider")
        wait_for(lambda: sup.getProcessInfo("provider")["statename"] == "RUNNING", 15, what="provider back")
    v = verdicts(record)
    assert record["outcome"] == "fail"
    assert v["deployment created"]["outcome"] == "pass"
    assert v["bids received"]["outcome"] == "fail"
    assert "no bids received within 5 s" in " ".join(v["bids received"]["evidence"]["errors"])
    assert v["deployment running"]["outcome"] == "inconclusive"
    assert v["deployment closed"]["outcome"] == "pass"  # cleanup still ran
