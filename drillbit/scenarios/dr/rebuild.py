"""DR: complete system rebuild (seed DR scenario 3). From blank infrastructure (the sandbox torn down: every process
and all data gone except the object store's backups), rebuild from the code in ``infra/`` (the sandbox launcher's
``up --restore-from-backups``: PostgreSQL from the latest base backup + WAL, the validator set from the latest etcd
snapshot), rejoin (the nodes replay the restored chain and blocks continue from the restored height), check that
monitoring works (every Prometheus target up, a test alert reaches Alertmanager and the pager), and grade the total
time (seed: < 4 h) and each step's."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from drillbit import sandbox as sbx
from drillbit.chain import Block, read_block
from drillbit.config import ResolvedEnvironment
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.poll import wait_until
from drillbit.runner import Experiment
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr import operations as ops
from drillbit.scenarios.dr.harness import PROBES, DrParams, DrRun

MILESTONES = {  # the seed's exercise timeline: infrastructure at T+1 h, core services T+2 h, full restoration T+4 h
    "rebuild from code and backups": 3600.0,
    "rejoin the network": 3600.0,
    "monitoring functional": 7200.0,
}


class RebuildParams(DrParams):
    rto_target: float = Field(14_400.0, gt=0, description="Seconds for the whole rebuild (seed: < 4 h)")
    step_budgets: dict[str, float] = Field(
        default_factory=lambda: dict(MILESTONES), description="Seconds each step may take"
    )
    rpo_target: float | None = Field(None, ge=0, description="Grade the canary's RPO too (default: report only)")
    rebuild_timeout: float = Field(1800.0, gt=0, description="Seconds the launcher may take to rebuild")
    rejoin_timeout: float = Field(300.0, gt=0, description="Seconds for the nodes to replay and produce blocks")
    monitoring_timeout: float = Field(120.0, gt=0, description="Seconds for targets to be up and the alert to arrive")

    @field_validator("step_budgets")
    @classmethod
    def known_steps(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(MILESTONES))
        if unknown:
            raise ValueError(f"unknown steps {unknown}; the steps are {sorted(MILESTONES)}")
        return {**MILESTONES, **v}


def preflight(ep: dict[str, Any], params: RebuildParams) -> dict[str, Any]:
    """Backups of the live database's system and of the validator set must be there: checked before anything is torn
    down."""
    s3 = ops.s3_settings(ep, params.backups_bucket)
    client = ops.s3_client(s3)
    ops.check_bucket(client, s3["bucket"], s3["endpoint"])
    live = ops.live_database(ep)  # the database the API uses now (after a failover or a restore: not the first)
    system = str(ops.pg_one(live["port"], "SELECT system_identifier FROM pg_control_system()")[0])
    backup = ops.latest_backup(client, s3["bucket"], system)
    snapshots = ops.etcd_snapshots(client, s3["bucket"])
    if not snapshots:
        raise ops.PreflightError(f"no etcd snapshot in s3://{s3['bucket']}/etcd/: the validator set cannot be restored")
    if s3["bucket"] != ep["storage"]["s3"]["bucket"]:
        raise ops.PreflightError(
            f"the sandbox launcher restores from s3://{ep['storage']['s3']['bucket']} only, not {s3['bucket']}"
        )
    return {"bucket": s3["bucket"], "latest_backup": backup["id"], "latest_etcd_snapshot": snapshots[-1]["key"]}


def chain_marks(rpc: str) -> dict[int, str]:
    """Block hashes at a few heights, to recognise the same chain after the rebuild."""
    top = read_block(rpc).height
    return {h: read_block(rpc, h).hash for h in sorted({1, max(1, top // 2), top})}


def build(env: ResolvedEnvironment, params: RebuildParams) -> Experiment:
    """The rebuild: preflight now; approval, baseline, tear-down, rebuild and checks in the run."""
    run = DrRun.begin("dr-rebuild", "rebuild", env, params, preflight)
    ep = run.ep
    run_dir, offset = sbx.run_dir(), int(ep["port_offset"])

    def procedure() -> None:
        before = {"marks": chain_marks(ep["nodes"][0]["rpc"]), "nodes": ops.node_statuses(ep["nodes"])}
        run.evidence["before"] = before
        with run.steps.step("blank infrastructure", "sandbox down: every process and all data gone, backups kept") as s:
            result = sbx.launcher(["down"], run=run_dir, offset=offset, capture=True)
            if result.returncode != 0 or run_dir.exists():
                raise ops.DrError(f"tear-down incomplete: {(result.stderr or result.stdout).strip()[-300:]}")
        run.disaster(s.started_at, "every component and all data lost (object store kept)")
        run.recover(lambda: rebuild(run, params, before["marks"]))

    def services() -> None:
        run.timeline.event("services", "status", components=sbx_status(run_dir, offset))

    grading = [
        dr.rto_criterion("RTO", params.rto_target, PROBES),
        dr.span_criterion("rebuild completes", [*MILESTONES, "steady state restored"], params.rto_target),
        *[dr.step_criterion(f"step: {name}", [name], budget) for name, budget in params.step_budgets.items()],
        all_services("all services operational"),
        consensus("consensus participation resumed"),
        monitoring("monitoring fully functional"),
    ]
    if params.rpo_target is not None:
        grading.append(dr.rpo_criterion("RPO", params.rpo_target))
    what = "tear the whole sandbox down and rebuild it from code and backups"
    return run.experiment(what, procedure, grading, params.rto_target, params.rpo_target, after_restore=services)


def rebuild(run: DrRun, params: RebuildParams, marks: dict[int, str]) -> None:
    """Infrastructure as code (the sandbox launcher) restoring from the backups, then rejoin and monitoring checks."""
    ep, run_dir, offset = run.ep, sbx.run_dir(), int(run.ep["port_offset"])
    args = ["up", "--restore-from-backups"] + [a for w in ep.get("weaknesses", []) for a in ("--weaken", w)]
    with run.steps.step("rebuild from code and backups", "vesandbox up --restore-from-backups") as step:
        result = sbx.launcher(args, run=run_dir, offset=offset, capture=True)
        if result.returncode != 0:
            raise ops.DrError(f"rebuild failed: {(result.stderr or result.stdout).strip()[-400:]}")
        restored = sbx.endpoints(run_dir).get("restored_from", {})
        step.evidence.update({k: v for k, v in restored.items() if k != "steps"})
    for sub in restored.get("steps", []):
        run.steps.record(
            f"rebuild: {sub['name']}",
            sub["started_at"],
            sub["started_at"] + sub["seconds"],
            parent="rebuild from code and backups",
        )
    with run.steps.step("rejoin the network", "nodes replay the restored chain, blocks continue") as step:
        step.evidence.update(rejoin(ep["nodes"][0]["rpc"], ep["nodes"], marks, run.evidence["disaster_at"], params))
        run.timeline.event("rejoined", step.evidence["summary"], **step.evidence)
    with run.steps.step("monitoring functional", "targets up, test alert to Alertmanager and the pager") as step:
        step.evidence.update(check_monitoring(ep, run.record.run_id, params.monitoring_timeout))
        run.timeline.event("monitoring", "ok", **step.evidence)
    run.wait_restored()


def rejoin(
    rpc: str, nodes: list[dict[str, Any]], marks: dict[int, str], lost_at: float, params: RebuildParams
) -> dict[str, Any]:
    """Every node caught up on the restored chain, the same chain as before, and new blocks on top of it."""

    def caught_up() -> list[dict[str, Any]] | None:
        st = ops.node_statuses(nodes)
        return st if all("height" in s and not s["catching_up"] for s in st) else None

    statuses = wait_until(caught_up, params.rejoin_timeout, "every node caught up", 0.5, raises=ops.DrError)

    def block_time(b: Block) -> float:
        return datetime.fromisoformat(b.time.replace("Z", "+00:00")).timestamp()

    tip = read_block(rpc)
    restored = tip
    for _ in range(10_000):  # walk back to the last block made before the loss (bounded)
        if block_time(restored) < lost_at or restored.height <= 1:
            break
        restored = read_block(rpc, restored.height - 1)
    height = restored.height
    wait_until(
        lambda: read_block(rpc).height > height + 1,
        params.rejoin_timeout,
        "new blocks after the restore",
        0.2,
        raises=ops.DrError,
    )
    nxt = read_block(rpc, height + 1)
    same = {h: read_block(rpc, h).hash == want for h, want in marks.items() if h <= height}
    lost = max(marks) - height
    return {
        "restored_height": height,
        "blocks_lost": max(0, lost),
        "continues": nxt.last_hash == restored.hash,
        "same_chain": same,
        "nodes": statuses,
        "summary": f"restored at height {height} ({max(0, lost)} blocks lost), continuing at {nxt.height}",
    }


def check_monitoring(ep: dict[str, Any], run_id: str, timeout: float) -> dict[str, Any]:
    targets = wait_until(
        lambda: (t := ops.prometheus_targets(ep["prometheus"])) and not t["down"] and t,
        timeout,
        "every Prometheus target up",
        1.0,
        raises=ops.DrError,
    )
    labels = {"alertname": "DrillbitDrTestAlert", "severity": "warning", "component": "drillbit", "drill_run": run_id}
    alert = ops.test_alert(ep["alertmanager"], ep.get("pager"), labels, timeout)
    return {"targets": targets["targets"], "alert": alert}


def sbx_status(run_dir: Any, offset: int) -> list[dict[str, Any]]:
    result = sbx.launcher(["status", "--json"], run=run_dir, offset=offset, capture=True)
    try:
        return [{"name": r["name"], "state": r["state"], "healthy": r["healthy"]} for r in json.loads(result.stdout)]
    except ValueError:
        return []


def all_services(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        found = tl.last_event("services")
        if found is None:
            return Verdict(name, Outcome.FAIL, "the sandbox was not rebuilt")
        comps = found["components"]
        bad = [c["name"] for c in comps if not c["healthy"] or c["state"] != "RUNNING"]
        if not comps or bad:
            return Verdict(name, Outcome.FAIL, f"not operational: {', '.join(bad) or 'no component'}", {"bad": bad})
        return Verdict(name, Outcome.PASS, f"all {len(comps)} components running and healthy", {"count": len(comps)})

    return Criterion(name, "every component running and healthy", check)


def consensus(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        e = tl.last_event("rejoined")
        if e is None:
            return Verdict(name, Outcome.FAIL, "the nodes did not rejoin")
        ev = {k: e[k] for k in ("restored_height", "blocks_lost", "continues", "same_chain")}
        if not e["continues"] or not all(e["same_chain"].values()):
            return Verdict(name, Outcome.FAIL, f"not the same chain continuing: {e['summary']}", ev)
        return Verdict(name, Outcome.PASS, e["summary"], ev)

    return Criterion(name, "same chain, every node caught up, new blocks", check)


def monitoring(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        e = tl.last_event("monitoring")
        if e is None:
            steps = [s for s in dr.steps_of(tl) if s["name"] == "monitoring functional"]
            reason = steps[-1]["error"] if steps else "not checked (the rebuild did not get that far)"
            return Verdict(name, Outcome.FAIL, reason)
        return Verdict(
            name,
            Outcome.PASS,
            f"{e['targets']} targets up; test alert in Alertmanager after {e['alert']['alertmanager_s']} s, "
            f"paged after {e['alert'].get('pager_s')} s",
            {"targets": e["targets"], "alert": e["alert"]},
        )

    return Criterion(name, "targets up, a test alert reaches Alertmanager and the pager", check)
