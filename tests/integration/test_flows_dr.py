"""Disaster-recovery drills end to end on this module's own sandboxes (offsets 6000 and 7000, torn down with
``down --purge`` afterwards): real region loss and promotion, real corruption and restore from S3, a real rebuild
from blank; RTO checked against the test's own clock.

A drill leaves its sandbox in its post-disaster state and the next drill starts from there, as disasters follow each
other (no failback in between): on each sandbox the data-centre loss comes first, then the corruption of the database
the API now uses (the promoted replica), then (healthy sandbox, in the quarterly drill) the rebuild from blank.
"""

from __future__ import annotations

import contextlib
import contextvars
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx
import pytest

from drillbit.scenarios.dr import operations as ops
from drillbit.store import ResultsStore
from tests.integration.helpers import running_sandbox, wait_for

pytestmark = pytest.mark.integration

HEALTHY_DIR, HEALTHY_OFFSET = Path("/tmp/drillbit-test-dr-healthy"), 6000
WEAK_DIR, WEAK_OFFSET = Path("/tmp/drillbit-test-dr-weak"), 7000
WEAKNESSES = ["async-replication-loses-writes", "broken-wal-archive"]
FAST = {"interval": 0.5, "baseline": 4.0, "settle": 3.0, "restore_timeout": 180.0}


def verdicts(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["criterion"]: v for v in record["verdicts"]}


def wait_backups(ep: dict[str, Any]) -> None:
    """The sandbox's first base backup and etcd snapshot exist (the restore scenarios need them)."""

    def done() -> bool:
        status = httpx.get(f"{ep['storage']['backup']['url']}/api/v1/status", timeout=3).json()["backups"]
        return bool(status["base"]["last_success"] and status["etcd"]["last_success"])

    wait_for(done, 90, 0.5, "first base backup and etcd snapshot")


@contextlib.contextmanager
def own_sandbox(run_dir: Path, offset: int, weaknesses: list[str] = ()) -> Any:
    """``running_sandbox``, tried twice: on a loaded shared box one component can miss the start-up deadline
    (a failed start is already torn down again by running_sandbox)."""
    for attempt in (1, 2):
        cm = running_sandbox(run_dir, offset, weaknesses)
        try:
            ep = cm.__enter__()
        except AssertionError:
            if attempt == 2:
                raise
            continue
        try:
            wait_backups(ep)
            yield ep
        finally:
            cm.__exit__(None, None, None)
        return


@pytest.fixture(scope="class")
def weak_sandbox(prefect_server):
    """One at a time (the weak one is down before the healthy one starts): the box has 2 shared cores."""
    with own_sandbox(WEAK_DIR, WEAK_OFFSET, WEAKNESSES) as ep:
        yield ep


@pytest.fixture
def healthy_sandbox(prefect_server):
    with own_sandbox(HEALTHY_DIR, HEALTHY_OFFSET) as ep:
        yield ep


@pytest.fixture
def on_weak(weak_sandbox, monkeypatch):
    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(WEAK_DIR))
    return weak_sandbox


# ------------------------------------------------------------------------------------------- refused up front


def untouched(ep: dict[str, Any]) -> dict[str, Any]:
    """What a refused drill must leave as it was: the primary running and readable, its files, the run dir."""
    sup = xmlrpc.client.ServerProxy(ep["supervisor"]).supervisor
    port = ep["postgres"]["port"]
    files = ops.relation_files(port, ep["postgres"]["data_dir"], "records")
    return {
        "states": {n: sup.getProcessInfo(n)["statename"] for n in ("postgres", "api", "backup", "replica")},
        "read_error": ops.read_error(port, "records"),
        "rows": ops.pg_one(port, "SELECT count(*) FROM records")[0],
        "files": {str(f): f.stat().st_size for f in files},
        "proxy": httpx.get(f"{ep['faultproxy']}/proxies/api-db", timeout=3).json(),
    }


class GroundTruth(threading.Thread):
    """The test's own clock: when postgres stopped being RUNNING, then the first write the API applied again."""

    def __init__(self, ep: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.ep, self.stop = ep, threading.Event()
        self.disaster: float | None = None
        self.first_ok: float | None = None

    def run(self) -> None:
        sup = xmlrpc.client.ServerProxy(self.ep["supervisor"]).supervisor
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline and self.disaster is None:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if sup.getProcessInfo("postgres")["statename"] != "RUNNING":
                    self.disaster = time.time()
            time.sleep(0.05)
        n = 0
        with httpx.Client(timeout=2) as http:
            while not self.stop.is_set() and time.monotonic() < deadline and self.first_ok is None:
                n += 1
                ts = time.time()
                with contextlib.suppress(httpx.HTTPError):
                    r = http.post(f"{self.ep['api']}/api/v1/records", json={"key": f"truth-{n}", "value": n})
                    if r.status_code == 201:
                        self.first_ok = ts
                time.sleep(0.1)


# ----------------------------------------------------------------------------------------- weak sandbox


class TestWeakSandbox:
    """The weak sandbox (async replication over a slow link, a WAL archive that uploads nothing): refused
    parameters first, then the data-centre loss, then the corruption of the database the API uses after it."""

    def test_bad_parameters_are_refused_before_anything_is_destroyed(self, on_weak, tmp_path):
        from flows.dr_db_corruption import DbCorruptionParams, dr_db_corruption
        from flows.dr_rebuild import RebuildParams, dr_rebuild

        before = untouched(on_weak)
        assert before["read_error"] is None and set(before["states"].values()) == {"RUNNING"}
        with pytest.raises(ops.PreflightError, match="bucket 'no-such-bucket' does not exist"):
            dr_db_corruption(params=DbCorruptionParams(backups_bucket="no-such-bucket", **FAST))
        with pytest.raises(
            ops.PreflightError, match=r"no base backup of database system \d+ in s3://drillbit-results/"
        ):
            dr_db_corruption(params=DbCorruptionParams(backups_bucket="drillbit-results", **FAST))
        with pytest.raises(ops.PreflightError, match="bucket 'no-such-bucket' does not exist"):
            dr_rebuild(params=RebuildParams(backups_bucket="no-such-bucket", **FAST))
        # the launcher's own check: nothing to restore from → one line, nothing created
        empty, run = tmp_path / "s3-{offset}", tmp_path / "run"
        cmd = [sys.executable, "-m", "vesandbox", "--run-dir", str(run), "--port-offset", str(WEAK_OFFSET)]
        result = subprocess.run(
            [*cmd, "up", "--restore-from-backups"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"VESANDBOX_S3_DIR": str(empty), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        assert result.returncode == 2 and "no base backup in s3://virtengine-backups/base/" in result.stderr
        assert not run.exists()
        assert untouched(on_weak) == before
        assert httpx.get(f"{on_weak['api']}/health", timeout=5).json()["database"] == "up"

    def test_dc_loss_catches_async_replication_losing_writes_and_measures_rto_against_the_test_clock(self, on_weak):
        from flows.dr_dc_loss import DcLossParams, dr_dc_loss

        truth = GroundTruth(on_weak)
        truth.start()
        try:
            # RPO target compressed with the sandbox's time scale: its replication link lags 5 s (a WAN lag stand-in)
            params = DcLossParams(rpo_target=1.0, wait_for_alert=False, **{**FAST, "baseline": 8.0})
            record = dr_dc_loss(params=params)
        finally:
            truth.stop.set()
            truth.join(10)
        v = verdicts(record)
        rpo = v["RPO"]["evidence"]
        assert record["outcome"] == "fail" and v["RPO"]["outcome"] == "fail", v
        assert rpo["missing_count"] > 0 and rpo["lost_tail"] and "acknowledged writes lost" in v["RPO"]["reason"]
        assert all(k.startswith("drillbit-dr-dc-loss") for k in rpo["missing"])
        # what was lost is what the slow link still held: about its 5 s delay (more on a loaded box, never less)
        assert 4.0 <= rpo["rpo_s"] <= 9.0, rpo
        assert record["metrics"]["dr"]["missing"] == rpo["missing"]
        assert v["RTO"]["outcome"] == "pass" and v["failover completes"]["outcome"] == "pass", v
        assert truth.disaster is not None and truth.first_ok is not None
        measured, ground = v["RTO"]["evidence"]["rto_s"], truth.first_ok - truth.disaster
        assert abs(measured - ground) <= params.interval + 0.3, (measured, ground)

    def test_db_corruption_catches_a_broken_wal_archive(self, on_weak):
        from flows.dr_db_corruption import DbCorruptionParams, dr_db_corruption

        # after the dc-loss drill the API runs on the promoted replica (region B): that database gets corrupted now
        record = dr_db_corruption(params=DbCorruptionParams(deployments=1, consistency_timeout=30.0, **FAST))
        v = verdicts(record)
        assert record["outcome"] == "fail", v
        assert (
            v["corruption broke reads"]["outcome"] == "pass" and "invalid page" in v["corruption broke reads"]["reason"]
        )
        assert v["WAL replayed to just before the corruption"]["outcome"] == "fail"
        assert "recovery target" in v["WAL replayed to just before the corruption"]["reason"]
        assert v["RPO"]["outcome"] == "fail" and v["RPO"]["evidence"]["missing_count"] > 0, v["RPO"]
        assert all(k.startswith("drillbit-dr-db-corruption") for k in v["RPO"]["evidence"]["missing"])
        assert v["RTO"]["outcome"] == "pass", v["RTO"]  # the service came back (from the base backup alone)
        assert record["metrics"]["dr"]["evidence"]["preflight"]["database"]["component"] == "replica"


# --------------------------------------------------------------------------------- healthy sandbox: the drill


def paused_drill_runs() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["dr-drill"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
        )


def test_the_quarterly_drill_runs_the_three_scenarios_with_approvals_given_through_the_api(
    healthy_sandbox, monkeypatch
):
    import boto3
    from prefect.flow_runs import resume_flow_run

    from flows.dr_db_corruption import DbCorruptionParams
    from flows.dr_dc_loss import DcLossParams
    from flows.dr_drill import DrillParams, dr_drill
    from flows.dr_rebuild import RebuildParams

    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(HEALTHY_DIR))
    params = DrillParams(
        require_approval=True,
        approval_timeout=300,
        dc_loss=DcLossParams(**FAST),
        db_corruption=DbCorruptionParams(deployments=1, consistency_timeout=30.0, **FAST),
        rebuild=RebuildParams(**FAST),
    )
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["record"] = dr_drill(params=params)
        except BaseException as exc:
            out["error"] = exc

    drill = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    drill.start()
    approved = 0
    deadline = time.monotonic() + 900
    while drill.is_alive() and time.monotonic() < deadline:
        for fr in paused_drill_runs():
            with contextlib.suppress(Exception):  # a run still shown paused just after its resume
                resume_flow_run(fr.id, run_input={"approve": True, "approver": "drill-test", "comment": "CI"})
                approved += 1
        time.sleep(1.0)
    drill.join(5)
    assert "error" not in out, out.get("error")
    record = out["record"]
    v = verdicts(record)
    assert record["outcome"] == "pass", v
    assert approved >= 3 and [a["approver"] for a in record["metrics"]["approvals"]] == ["drill-test"] * 3
    rows = {r["scenario"]: r for r in record["metrics"]["drill"]}
    assert set(rows) == {"dc-loss", "db-corruption", "rebuild"}
    assert rows["dc-loss"]["rpo_s"] == 0 and rows["db-corruption"]["lost_writes"] == 0
    assert all(r["rto_s"] is not None and r["rto_s"] < r["rto_target_s"] for r in rows.values())
    # stored in the results store and uploaded to the results bucket
    assert ResultsStore().get(record["run_id"]).outcome == "pass"
    bucket, key = record["artifacts"]["report_s3"].removeprefix("s3://").split("/", 1)
    s3 = healthy_sandbox["storage"]["s3"]
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
    )
    report = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert bucket == "drillbit-results" and "| Scenario | Outcome | RTO | RTO target | RPO |" in report
    for scenario in ("dc-loss", "db-corruption", "rebuild"):
        assert f"## {scenario} — PASS" in report
    assert "approved by drill-test" in report and "promote replica in region B" in report


# ------------------------------------------------------------- healthy sandbox: the same verdicts on every run


def scenario_outcomes(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each scenario of a drill record with its criteria's outcomes (read back from the results store)."""
    out = {}
    for row in record["metrics"]["drill"]:
        stored = ResultsStore().get(row["run_id"])
        out[row["scenario"]] = {v.criterion: str(v.outcome) for v in stored.verdicts}
    return out


def db_corruption_preflight(record: dict[str, Any]) -> dict[str, Any]:
    row = next(r for r in record["metrics"]["drill"] if r["scenario"] == "db-corruption")
    return ResultsStore().get(row["run_id"]).metrics["dr"]["evidence"]["preflight"]


@pytest.mark.slow
def test_the_drill_gives_the_same_verdicts_twice_in_a_row_and_after_sandbox_down_and_up(healthy_sandbox, monkeypatch):
    """The demo's repeatability: the quarterly drill twice on one sandbox, then ``down`` + ``up`` (same run dir,
    the object store kept with the earlier cluster's backups, WAL and later timelines) and the drill again: the
    same verdicts each time, and the new cluster's restore reads an archive of its own."""
    from drillbit.scenarios.dr.harness import reset_sandbox
    from flows.dr_db_corruption import DbCorruptionParams
    from flows.dr_dc_loss import DcLossParams
    from flows.dr_drill import DrillParams, dr_drill
    from flows.dr_rebuild import RebuildParams

    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(HEALTHY_DIR))
    params = DrillParams(
        require_approval=False,
        dc_loss=DcLossParams(**FAST),
        db_corruption=DbCorruptionParams(deployments=1, consistency_timeout=30.0, **FAST),
        rebuild=RebuildParams(**FAST),
    )
    records = [dr_drill(params=params), dr_drill(params=params)]
    old_system = db_corruption_preflight(records[0])["system_identifier"]
    assert db_corruption_preflight(records[1])["system_identifier"] == old_system  # one cluster, restored twice

    ep = reset_sandbox()  # sandbox down + up: a new cluster (new initdb), the object store kept
    client = ops.s3_client(ops.s3_settings(ep, None))
    bucket = ep["storage"]["s3"]["bucket"]
    systems = {str(m["system_identifier"]) for m in ops.base_backups(client, bucket)}
    assert old_system in systems and len(systems) == 2, systems  # the earlier cluster's backups are still there
    assert ops.later_timelines(client, bucket, 1, f"wal/{old_system}/"), "the earlier cluster left later timelines"
    records.append(dr_drill(params=params))

    outcomes = [scenario_outcomes(r) for r in records]
    assert [r["outcome"] for r in records] == ["pass"] * 3, outcomes
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes
    assert set(outcomes[0]) == {"dc-loss", "db-corruption", "rebuild"}
    new = db_corruption_preflight(records[2])
    assert new["system_identifier"] != old_system
    assert new["wal_archive"] == f"s3://{bucket}/wal/{new['system_identifier']}/", new


# -------------------------------------------------------------------------- partition mode: one writer after failover

NOFENCE_DIR = Path("/tmp/drillbit-test-dr-nofence")  # offset 7000 again: the weak sandbox above is down by then
PARTITION = {**FAST, "mode": "partition", "wait_for_alert": False, "fence_grace": 2.0}
ONE_WRITER, NO_DISCARD = "exactly one primary accepts writes after failover", "no acknowledged write discarded"


def nothing_left_behind(ep: dict[str, Any]) -> None:
    """No nft table, ledger entry or stranded session of the drill survives it; the old primary is retired."""
    from drillbit.faults.ledger import Ledger

    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert "drillbit_dc_" not in tables, tables
    assert not [h for h in Ledger().pending() if h.kind == "dc-partition"]
    sup = xmlrpc.client.ServerProxy(ep["supervisor"]).supervisor
    assert sup.getProcessInfo("postgres")["statename"] in ("STOPPED", "EXITED")
    assert httpx.get(f"{ep['api']}/health", timeout=5).json()["database"] == "up"  # the API serves from region B


def test_dc_loss_partition_mode_fences_the_old_primary_and_loses_no_acknowledged_write(healthy_sandbox, monkeypatch):
    from flows.dr_dc_loss import DcLossParams, dr_dc_loss

    monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(HEALTHY_DIR))
    record = dr_dc_loss(params=DcLossParams(**PARTITION))
    v = verdicts(record)
    assert record["outcome"] == "pass", v
    one, kept = v[ONE_WRITER]["evidence"], v[NO_DISCARD]["evidence"]
    assert v[ONE_WRITER]["outcome"] == "pass" and v[NO_DISCARD]["outcome"] == "pass", v
    assert one["old_primary_attempted_after_failover"] > 0 and one["old_primary_acknowledged_after_failover"] == 0
    assert one["new_primary_acknowledged_after_failover"] > 0
    assert kept["attempted"]["api"] > 0 and kept["attempted"]["stranded"] > 0 and kept["lost_count"] == 0
    fence = next(s for s in record["metrics"]["dr"]["steps"] if s["name"] == "fence the old primary")
    assert fence["ok"] and fence["evidence"]["fence"]["returncode"] == 0
    assert v["RTO"]["outcome"] == "pass" and v["RPO"]["outcome"] == "pass", v
    nothing_left_behind(healthy_sandbox)


@pytest.fixture
def nofence_sandbox(prefect_server, monkeypatch):
    with own_sandbox(NOFENCE_DIR, WEAK_OFFSET, ["no-fencing"]) as ep:
        monkeypatch.setenv("DRILLBIT_SANDBOX_DIR", str(NOFENCE_DIR))
        yield ep


def test_dc_loss_partition_mode_catches_an_old_primary_that_is_not_fenced(nofence_sandbox):
    from flows.dr_dc_loss import DcLossParams, dr_dc_loss

    record = dr_dc_loss(params=DcLossParams(**PARTITION))
    v = verdicts(record)
    assert record["outcome"] == "fail" and v[ONE_WRITER]["outcome"] == "fail", v
    one = v[ONE_WRITER]["evidence"]
    listed = one["first_acknowledged_by_old_primary"]
    assert one["old_primary_acknowledged_after_failover"] > 0 and 0 < len(listed) <= 10
    cutoff = one["failover_at"] + one["grace_s"]
    assert all(w["primary"] == "old" and w["acked_at"] >= cutoff for w in listed)
    assert all(w["key"].startswith("drillbit-dr-stranded-") for w in listed)
    assert listed[0]["key"] in v[ONE_WRITER]["reason"]
    assert v[NO_DISCARD]["outcome"] == "fail" and v[NO_DISCARD]["evidence"]["lost_count"] > 0  # discarded on rejoin
    nothing_left_behind(nofence_sandbox)
