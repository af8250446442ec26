"""Work resumes after a provider kill (chaos-pod-kill, target provider): on the healthy sandbox its leases run again
and the orders open at the kill get bids; each restart weakness of the provider daemon fails exactly its criterion,
naming the leases / orders; every deployment the workload created is closed afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillbit.scenarios.chaos import provider_workload as pw
from tests.integration.helpers import client_for, running_sandbox

pytestmark = pytest.mark.integration

RUN_DIR = Path("/tmp/drillbit-test-e3")
OFFSET = 4000  # E3's; test_flows_load's module-scoped weak sandbox uses it too, torn down before this module runs
# the only provider daemon is killed on purpose: a full outage of that workload
PARAMS = {
    "target": "provider",
    "duration": 12.0,
    "baseline": 3.0,
    "recovery": 8.0,
    "resume_within": 15.0,
    "full_outage": True,
}


def kill_provider() -> dict:
    from flows.chaos_pod_kill import PodKillParams, chaos_pod_kill

    return chaos_pod_kill(params=PodKillParams(**PARAMS))


def verdicts(record: dict) -> dict[str, dict]:
    return {v["criterion"]: v for v in record["verdicts"]}


def assert_cleaned_up(ep: dict) -> None:
    with client_for(ep) as c:
        assert c.leases(owner=pw.OWNER, state="active") == []
        assert c.orders(owner=pw.OWNER, state="open") == []


def test_a_killed_provider_resumes_its_leases_and_bids_on_the_healthy_sandbox(prefect_server, sandbox):
    record = kill_provider()
    v = verdicts(record)
    leases, bids = v[pw.LEASES_RESUMED], v[pw.BIDS_SETTLED]
    assert leases["outcome"] == "pass", leases
    assert leases["evidence"]["leases"] == 2 and 0 < leases["evidence"]["resumed_s"] <= 15
    assert bids["outcome"] == "pass", bids
    assert bids["evidence"]["orders"] == 2 and bids["evidence"]["provider"] == "provider1"
    assert [x for x in v.values() if x["outcome"] == "fail"] == []
    assert_cleaned_up(sandbox)


@pytest.fixture
def weak(prefect_server, monkeypatch, request):
    """A sandbox with the test's weakness (offset 4000, E3's run dir); flows resolve it from DRILLBIT_SANDBOX_DIR."""
    with running_sandbox(RUN_DIR, OFFSET, [request.param]) as ep:
        monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(RUN_DIR))
        yield ep


@pytest.mark.parametrize("weak", ["provider-forgets-leases"], indirect=True)
def test_provider_forgets_leases_fails_the_leases_criterion_naming_them(weak):
    record = kill_provider()
    v = verdicts(record)
    leases = v[pw.LEASES_RESUMED]
    assert record["outcome"] == "fail"
    assert leases["outcome"] == "fail", leases
    listed = leases["evidence"]["not_running"]
    assert len(listed) == 2 and {x["state"] for x in listed} == {"unknown"}
    assert all(x["lease"].startswith(f"{pw.OWNER}/") and x["lease"].endswith("/1/1") for x in listed)  # owner/dseq/1/1
    assert v[pw.BIDS_SETTLED]["outcome"] == "pass"  # the weakness changes nothing else
    assert_cleaned_up(weak)


@pytest.mark.parametrize("weak", ["bids-lost-on-restart"], indirect=True)
def test_bids_lost_on_restart_fails_the_bids_criterion_naming_the_orders(weak):
    record = kill_provider()
    v = verdicts(record)
    bids = v[pw.BIDS_SETTLED]
    assert record["outcome"] == "fail"
    assert bids["outcome"] == "fail", bids
    assert len(bids["evidence"]["without_bid"]) == 2
    assert all(o.startswith(f"{pw.OWNER}/") for o in bids["evidence"]["without_bid"])
    assert v[pw.LEASES_RESUMED]["outcome"] == "pass"  # the weakness changes nothing else
    assert_cleaned_up(weak)
