"""DR: database corruption (seed DR scenario 2). The primary goes down and its storage returns garbage for the
``records`` table (heap and index pages overwritten, extra segments removed): restarted on it, reads really fail. The
drill fences the broken database, salvages its WAL into the archive, restores the latest base backup from S3 and
replays the archived WAL to just before the corruption, starts it, repoints and restarts the API, and grades RPO 0
(no acknowledged write missing), the API's indexed state against the chain's, and RTO (seed: < 2 h)."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from drillbit import sandbox as sbx
from drillbit.config import ResolvedEnvironment
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.probes import next_dseq
from drillbit.runner import Experiment
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr import operations as ops
from drillbit.scenarios.dr.harness import DrParams, DrRun

RESTORE_STEPS = ["restore base backup + WAL", "restore to the end of the archive"]
TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


class DbCorruptionParams(DrParams):
    rto_target: float = Field(7200.0, gt=0, description="Seconds (seed: restore within 2 h)")
    rpo_target: float = Field(0.0, ge=0, description="Seconds of acknowledged writes that may be lost (seed: 0)")
    table: str = Field("records", pattern=r"^[a-z_][a-z0-9_]*$", description="Table whose files are corrupted")
    remove_segments: bool = Field(True, description="Also remove the table's extra 1 GB segments, if any")
    deployments: int = Field(2, ge=0, le=20, description="Deployments created before the disaster (chain state)")
    restore_port: int | None = Field(None, ge=1, le=65535, description="Port of the restored server (default: +20)")
    restart_api: bool = Field(True, description="Restart the API after repointing (as a rollout would)")
    consistency_timeout: float = Field(60.0, gt=0, description="Seconds for the API's index to match the chain")
    seed: int | None = Field(None, description="Seed of the garbage bytes")


def preflight(ep: dict[str, Any], params: DbCorruptionParams) -> dict[str, Any]:
    """A usable bucket and a base backup of *this* database system (the one the API uses now: after a failover,
    the promoted replica) must exist, and the archive must hold no later timeline; nothing is destroyed here."""
    s3 = ops.s3_settings(ep, params.backups_bucket)
    client = ops.s3_client(s3)
    ops.check_bucket(client, s3["bucket"], s3["endpoint"])
    live = ops.live_database(ep)
    if live["component"] is None:
        raise ops.PreflightError(
            f"the API's database on port {live['port']} runs outside the supervisor: it cannot be crashed and "
            "restarted by the drill (reset the sandbox first)"
        )
    system = str(ops.pg_one(live["port"], "SELECT system_identifier FROM pg_control_system()")[0])
    timeline = ops.current_timeline(live["port"])
    files = ops.relation_files(live["port"], live["data_dir"], params.table)
    if not files:
        raise ops.PreflightError(f"table {params.table!r} has no data files to corrupt")
    backup = ops.latest_backup(client, s3["bucket"], system)
    archive = ops.wal_archive_prefix(ep, system, backup)  # this system's archive: another cluster's is not read
    later = ops.later_timelines(client, s3["bucket"], timeline, archive)
    if later:
        raise ops.PreflightError(
            f"the WAL archive s3://{s3['bucket']}/{archive} holds history of timelines after the database's "
            f"({timeline}): {', '.join(later[:3])}; a restore would follow them, not this database; use a clean archive"
        )
    return {
        "bucket": s3["bucket"],
        "database": live,
        "system_identifier": system,
        "wal_archive": f"s3://{s3['bucket']}/{archive}",
        "timeline": timeline,
        "latest_backup": backup["id"],
        "files": [str(f) for f in files],
    }


def build(env: ResolvedEnvironment, params: DbCorruptionParams) -> Experiment:
    """The corruption: preflight now; approval, chain state, baseline, corruption, restore and checks in the run."""
    run = DrRun.begin("dr-db-corruption", "db-corruption", env, params, preflight)
    pre = run.evidence["preflight"]
    sup = ops.Supervisor(run.ep["supervisor"])
    db = pre["database"]

    def create_chain_state() -> None:
        owner = f"drillbit-dr-{run.record.run_id[:8]}"
        with run.steps.step("create chain state", f"{params.deployments} deployments of {owner}"):
            for _ in range(params.deployments):
                run.client.create_deployment(owner, next_dseq())

    def procedure() -> None:
        with run.steps.step("primary down, storage corrupted", f"{db['component']}: {params.table}") as step:
            sup.stop(db["component"])
            stopped_at = time.time()  # the corruption comes after this: the point to restore to
            files = ops.segments_now([Path(f) for f in pre["files"]])
            step.evidence.update(ops.corrupt(files, random.Random(params.seed), params.remove_segments))
            step.evidence["recovery_target"] = stopped_at
        run.disaster(step.started_at, f"primary down with corrupted {params.table} files")
        run.recover(lambda: restore_service(run, sup, params, stopped_at, db))

    def compare_states() -> None:
        with run.steps.step("compare API and chain state") as step:
            agreement = ops.states_agree(run.ep["nodes"][0]["rest"], run.ep["api"], params.consistency_timeout)
            run.timeline.event("state_agreement", "equal" if agreement.get("equal") else "different", **agreement)
            step.detail = "equal" if agreement.get("equal") else "DIFFERENT"

    grading = [
        *run.criteria(params.rto_target, params.rpo_target),
        dr.step_criterion("restore completes", RESTORE_STEPS, params.rto_target),
        corruption_real("corruption broke reads"),
        state_consistent("state matches the chain"),
        pitr_reached("WAL replayed to just before the corruption"),
    ]
    what = f"corrupt {params.table} on {db['component']} and restore it from s3://{pre['bucket']}"
    return run.experiment(
        what, procedure, grading, params.rto_target, params.rpo_target, create_chain_state, compare_states
    )


def restore_service(
    run: DrRun, sup: ops.Supervisor, params: DbCorruptionParams, target_time: float, db: dict[str, Any]
) -> None:
    """The runbook: fence, diagnose, salvage WAL, stop the broken primary, restore to before the corruption, repoint
    the database Service and restart the API (its durable queue then applies the writes of the outage)."""
    ep, pg_port, name = run.ep, db["port"], db["component"]
    restored_dir = Path(ep["run_dir"]) / "data" / "postgres-restored"
    port = params.restore_port or ep["postgres"]["port"] + 20
    with run.steps.step("fence the database", "api-db link cut: the API queues writes durably"):
        ops.set_enabled(ep["faultproxy"], "api-db", False)
    with run.steps.step("diagnose", "restart on the corrupted storage, read the table") as step:
        sup.start(name)
        ops.wait_accepting(pg_port)
        error = ops.read_error(pg_port, params.table)
        run.evidence["read_error"] = error
        if error is None:
            raise ops.DrError(f"the corruption did not break reads of {params.table}: the drill is not valid")
        step.detail = error
    with run.steps.step("salvage WAL", "marker transaction + segment switch, wait for the archive") as step:
        step.evidence.update(ops.salvage_wal(pg_port))
    with run.steps.step("stop the corrupted primary"):
        sup.stop(name)
    restore(run, restored_dir, port, target_time)
    with run.steps.step("repoint api-db to the restored server", f"127.0.0.1:{port}") as step:
        step.evidence["proxy"] = ops.set_upstreams(ep["faultproxy"], "api-db", [f"127.0.0.1:{port}"])
    if params.restart_api:
        with run.steps.step("restart api"):
            sup.stop("api")
            sup.start("api")
    with run.steps.step("api back on its database"):
        ops.wait_api_on_database(run.client)
    run.wait_restored()


def restore(run: DrRun, target: Path, port: int, at: float) -> None:
    """Point-in-time restore to ``at``; if the archive cannot reach it, restore to the archive's end (and say so)."""
    endpoints = sbx.run_dir() / "endpoints.json"
    try:
        with run.steps.step("restore base backup + WAL", f"recovery_target_time = disaster, port {port}") as step:
            step.evidence.update(ops.restore_postgres(endpoints, target, port, at, timeout=run.params.restore_timeout))
        run.timeline.event("pitr", "reached the point before the corruption", reached=True)
        return
    except ops.RestoreFailed as exc:
        reason = ops.server_log_fatal(target) or str(exc)  # the server's own words, whatever the tool reported
        run.evidence["pitr_error"] = reason
        run.timeline.event("pitr", f"target not reached: {reason}", reached=False, error=reason)
        if TARGET_NOT_REACHED not in reason:
            raise
    ops.stop_postmaster(target)
    shutil.rmtree(target, ignore_errors=True)
    (target.parent / f"{target.name}.log").unlink(missing_ok=True)
    with run.steps.step("restore to the end of the archive", "the archive ends before the disaster") as step:
        step.evidence.update(ops.restore_postgres(endpoints, target, port, None, timeout=run.params.restore_timeout))


def corruption_real(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        steps = [s for s in dr.steps_of(tl) if s["name"] == "diagnose"]
        if not steps:
            return Verdict(name, Outcome.INCONCLUSIVE, "not diagnosed")
        s = steps[-1]
        if not s["ok"]:
            return Verdict(name, Outcome.FAIL, s["error"] or "diagnosis failed")
        return Verdict(name, Outcome.PASS, f"reads fail: {s['detail']}", {"error": s["detail"]})

    return Criterion(name, "reading the table fails after the corruption", check)


def state_consistent(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        e = tl.last_event("state_agreement")
        if e is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "not compared (the service was not restored)")
        kinds = e.get("kinds", {})
        counts = {k: f"{v['api']}/{v['chain']}" for k, v in kinds.items()}
        ev = {"api/chain": counts, "api_indexed_height": e.get("api_indexed_height"), "error": e.get("error")}
        if e.get("equal"):
            return Verdict(name, Outcome.PASS, f"API and chain agree ({counts})", ev)
        ev["differences"] = {
            k: {x: v[x] for x in ("missing_in_api", "extra_in_api", "different")} for k, v in kinds.items()
        }
        return Verdict(name, Outcome.FAIL, f"API and chain differ ({e.get('error') or counts})", ev)

    return Criterion(name, "deployments, orders and bids equal in the API and on chain", check)


def pitr_reached(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        found = [e for e in tl.events if e["kind"] == "pitr"]
        if not found:
            return Verdict(name, Outcome.INCONCLUSIVE, "no restore attempted")
        e = found[0]
        return Verdict(name, Outcome.PASS if e["reached"] else Outcome.FAIL, e["detail"], {"error": e.get("error")})

    return Criterion(name, "recovery_target_time reached", check)
