"""DR: complete data-centre loss (seed DR scenario 1). Region A (the primary database and the services using it) dies
at once; the drill fails over to region B (promote the replica, repoint the database Service, start the API there)
and measures RTO from the probes and RPO from the write canary (seed: RTO < 15 min, RPO < 1 min).

``mode="partition"``: a data-centre loss is often a partition, not a power cut. Region A stays up but is cut off:
an nftables table of Drillbit's own (in the fault ledger, reverted in ``finally``, by its reaper and by ``drillbit
cleanup``) drops the replication link (the PostgreSQL user's connections to the primary's port and to the
replication relay), the API (the service that fails over) is stopped and its ``api-db`` link disabled, and a
*stranded writer* on region A's own side keeps writing straight to the old primary, recording every attempt, its
acknowledgement and its time. The API's write canary keeps running through the failover.

**Fencing** is a step of the failover procedure (STONITH before promote, as Pacemaker does and as an operator's
runbook does when there is no consensus store to demote the old primary): "fence the old primary" runs the
platform's fence agent (the sandbox's: ``storage.primary.fence`` in endpoints.json, which makes the server refuse
writes with ``default_transaction_read_only`` and ends every client session; on a real environment, whatever stops
or demotes the instance, e.g. a cloud API's stop-instance), *then* the replica is promoted. It was chosen over a
sandbox-side lease because the procedure, not the sandbox, is what a real environment's drill exercises: the same
step and the same criteria test a real fence agent. The agent's answer is evidence; the verdict comes from the
stranded writer's acknowledgements: after the failover completed plus ``fence_grace`` seconds, the old primary may
acknowledge nothing ("exactly one primary accepts writes after failover"), and every write acknowledged after the
partition began (by either writer, by either primary) must be in the surviving primary's history ("no acknowledged
write discarded"). Afterwards the old primary is retired (stopped, as the power cut leaves it) and the partition
removed: the sandbox is in the same post-failover state as after the power cut.
"""

from __future__ import annotations

import contextlib
import pwd
import shlex
import subprocess
import threading
import time
import uuid
from typing import Any, Literal

from pydantic import Field

from drillbit.config import ResolvedEnvironment
from drillbit.faults.base import Fault, FaultError, Plan, revert
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import sandbox as nft
from drillbit.poll import PollTimeout, wait_until
from drillbit.runner import Experiment
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr import operations as ops
from drillbit.scenarios.dr.harness import DrParams, DrRun, alerts_since

REGION_A = ["postgres", "api", "backup", "replica-link"]
FAILOVER_STEPS = ["promote replica in region B", "repoint api-db to region B", "start api in region B"]
FENCE_STEP = "fence the old primary"
STRANDED_AFTER_CUTOFF = 3  # partition mode: stranded writes finished after the fence's grace before grading
FAILS_OVER = ["api"]  # partition mode: region A's services that fail over (stopped in A, started in B)


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
    mode: Literal["power-cut", "partition"] = Field(
        "power-cut",
        description="power-cut: region A's processes die at once. partition: region A stays up but is cut off from "
        "region B and from the services that fail over; a stranded writer keeps writing to the old primary, the "
        "failover fences it, and two more criteria grade that exactly one primary accepts writes",
    )
    fence_grace: float = Field(
        2.0, ge=0, le=600, description="Partition mode: seconds after the failover the fence may take to take effect"
    )
    stranded_interval: float = Field(
        0.2, gt=0, le=60, description="Partition mode: seconds between the stranded writer's writes"
    )


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
    out = {"region_a": lost, "replica": status}
    if params.mode == "partition":
        if not (ep["storage"].get("primary") or {}).get("fence"):
            raise ops.PreflightError(
                "partition mode: the platform has no fence agent for the primary (storage.primary)"
            )
        try:
            nft.require_nft("partition mode (cutting region A off)")
        except FaultError as exc:
            raise ops.PreflightError(str(exc)) from exc
        out["fence"] = ep["storage"]["primary"]["fence"]
    return out


def build(env: ResolvedEnvironment, params: DcLossParams) -> Experiment:
    """The data-centre loss: preflight now; approval, baseline, loss of region A and the failover in the run."""
    run = DrRun.begin("dr-dc-loss", "dc-loss", env, params, preflight)
    lost = run.evidence["preflight"]["region_a"]
    sup = ops.Supervisor(run.ep["supervisor"])
    if params.mode == "partition":
        return build_partition(run, sup, params, lost)

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


# --------------------------------------------------------------------------------------------- partition mode


class RegionCut(Fault):
    """Region A cut off from region B: an nftables table of Drillbit's own drops what the PostgreSQL user (the
    replica's walreceiver) sends to the primary's port and to the replication relay's. Region A's own side (here:
    the stranded writer, the backup agent, running as other users) still reaches its primary."""

    kind = "dc-partition"

    def __init__(self, pg_uid: int, ports: list[int]) -> None:
        self.pg_uid, self.ports = pg_uid, sorted(set(ports))
        self.table = f"drillbit_dc_{uuid.uuid4().hex[:8]}"

    def plan(self) -> Plan:
        nft.require_nft("a region partition")
        return Plan(self.kind, [f"replication to 127.0.0.1:{p}" for p in self.ports], {"table": self.table})

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [nft.nft_table_step(self.table)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        dports = "{ " + ", ".join(map(str, self.ports)) + " }"
        nft.nft_apply(nft.output_table(self.table, [f'oifname "lo" meta skuid {self.pg_uid} tcp dport {dports} drop']))


class StrandedWriter:
    """Region A's own side during the partition: writes numbered records straight to the old primary (one
    connection per write, as a service reconnecting), remembering each attempt and whether it was acknowledged."""

    def __init__(self, port: int, prefix: str, interval: float) -> None:
        self.port, self.prefix, self.interval = port, prefix, interval
        self.writes: list[dr.WriteAttempt] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stranded-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                w = dr.WriteAttempt(f"{self.prefix}-{seq:08d}", "stranded", time.time())
                self.writes.append(w)
                try:
                    with ops.pg(self.port, timeout=2) as conn:
                        conn.execute(
                            "INSERT INTO records (key, value, written_at) VALUES (%s, '{}'::jsonb, now())", (w.key,)
                        )
                    w.acked_at, w.primary = time.time(), "old"
                except Exception as exc:  # refused, fenced, cut: not acknowledged
                    w.error = f"{exc.__class__.__name__}: {exc}"[:200]
                self._stop.wait(self.interval)
        except Exception as exc:  # the harness itself failed: the criteria say inconclusive with this
            self.error = f"{exc.__class__.__name__}: {exc}"

    def finished_since(self, cutoff: float) -> int:
        """How many writes attempted at or after ``cutoff`` have been answered (acknowledged or refused)."""
        return sum(1 for w in list(self.writes) if w.at >= cutoff and (w.acked_at is not None or w.error))

    def halt(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop writing; a write still unanswered then stays unacknowledged (the session is ended by the caller)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or f"a write to the old primary was still unanswered after {timeout:g} s"


def build_partition(run: DrRun, sup: ops.Supervisor, params: DcLossParams, lost: list[str]) -> Experiment:
    """Partition mode (see the module docstring): cut region A off, fail over with a fence, grade both writers."""
    storage = run.ep["storage"]
    primary = storage.get("primary") or {"port": run.ep["postgres"]["port"]}
    replica = storage["replica"]
    ports = [int(primary["port"])] + ([int(replica["link"]["port"])] if replica.get("link") else [])
    prefix = f"drillbit-dr-stranded-{uuid.uuid4().hex[:8]}"
    writer = StrandedWriter(int(primary["port"]), prefix, params.stranded_interval)
    state: dict[str, Any] = {}

    def procedure() -> None:
        cut = RegionCut(pwd.getpwnam("postgres").pw_uid, ports)
        try:
            with run.steps.step("partition region A", f"replication to {ports}; api fails over") as step:
                at = time.time()
                run_id = run.record.run_id if run.record is not None else None
                state["handle"] = cut.inject(ttl=params.restore_timeout + 600, run_id=run_id)
                ops.set_enabled(run.ep["faultproxy"], "api-db", False)
                _, killed = ops.lose_components(sup, [n for n in FAILS_OVER if n in lost])
                writer.start()
                step.evidence |= {"table": cut.table, "killed_pids": killed, "stranded_prefix": writer.prefix}
            run.disaster(at, f"region A partitioned ({', '.join(lost)} still up, cut off)")
            state["partition_at"] = at
            run.recover(lambda: fail_over(run, sup, params, at, fence=primary.get("fence")))
            state["failover_at"] = next(
                (s.finished_at for s in run.steps.steps if s.name == FAILOVER_STEPS[-1] and s.ok), None
            )
            if state["failover_at"] is not None:  # the old side keeps writing past the fence's grace until it has
                # answered (or refused) a few writes there, so that "after the failover" has attempts to grade; if it
                # never gets that far, the criterion says so with the writer's figures
                cutoff = state["failover_at"] + params.fence_grace
                with contextlib.suppress(PollTimeout):
                    wait_until(
                        lambda: writer.finished_since(cutoff) >= STRANDED_AFTER_CUTOFF,
                        params.fence_grace + 30.0,
                        "stranded writes finished after the fence's grace",
                        params.stranded_interval,
                    )
        finally:
            writer.halt()
            retire(run, sup, int(primary["port"]), state)  # ends a write still waiting on the old primary
            writer.stop()
            record(None, writer.error or "the service was not restored: the surviving history was not read")

    def record(present: list[str] | None, error: str | None) -> None:
        api = api_writes(run.canary, state.get("failover_at"))
        run.timeline.event(
            dr.WRITERS_EVENT,
            f"{len(writer.writes)} stranded and {len(api)} API writes",
            partition_at=state.get("partition_at"),
            failover_at=state.get("failover_at"),
            grace_s=params.fence_grace,
            writes=[w.to_dict() for w in [*api, *writer.writes]],
            present=present,
            harness_error=error,
        )

    def collect() -> None:
        present, error = None, writer.error
        try:
            with ops.pg(int(replica["port"])) as conn:
                rows = conn.execute(
                    "SELECT key FROM records WHERE key LIKE %s OR key LIKE %s",
                    (f"{run.canary.prefix}-%", f"{writer.prefix}-%"),
                ).fetchall()
            present = [r[0] for r in rows]
        except Exception as exc:  # the surviving history could not be read: inconclusive, with this
            error = f"reading the surviving primary: {exc.__class__.__name__}: {exc}"
        record(present, error)

    grading = [
        *run.criteria(params.rto_target, params.rpo_target),
        dr.step_criterion("failover completes", [FENCE_STEP, *FAILOVER_STEPS], params.rto_target),
        dr.one_writer_criterion(),
        dr.no_discarded_ack_criterion(),
    ]
    what = f"cut region A ({', '.join(lost)}) off, fence its primary and fail over to the replica"
    return run.experiment(what, procedure, grading, params.rto_target, params.rpo_target, after_restore=collect)


def api_writes(canary: dr.DrCanary, failover_at: float | None) -> list[dr.WriteAttempt]:
    """The write canary's attempts as a writers' history (acknowledged before the failover: by the old primary)."""
    out = []
    for a in canary.history():
        acked = canary.acked.get(a["key"])
        who = None if acked is None else ("new" if failover_at is not None and acked >= failover_at else "old")
        out.append(dr.WriteAttempt(a["key"], "api", float(a["value"]["ts"]), acked, who))
    return out


def run_command(command: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run a platform command (a fence agent); DrError unless it exits 0; its exit code and output are evidence."""
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=timeout)
    ev = {"command": command, "returncode": result.returncode, "output": (result.stdout + result.stderr)[-500:]}
    if result.returncode != 0:
        raise ops.DrError(f"fence agent exited {result.returncode}: {ev['output'].strip()[-300:]}")
    return ev


def retire(run: DrRun, sup: ops.Supervisor, port: int, state: dict[str, Any]) -> None:
    """After the drill: end the old primary's sessions, stop what is left of region A (the state a power cut leaves)
    and remove the partition (its ledger entry with it)."""
    with contextlib.suppress(Exception), ops.pg(port) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    for name in run.evidence["preflight"]["region_a"]:
        if name not in FAILS_OVER:
            with contextlib.suppress(ops.DrError):
                sup.stop(name)
    if "handle" in state:
        revert(state.pop("handle"))


def fail_over(run: DrRun, sup: ops.Supervisor, params: DcLossParams, at: float, fence: str | None = None) -> None:
    """On-call's procedure: (see the loss,) (fence the old primary,) promote region B's replica, repoint the
    database Service, start the API."""
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
    if params.mode == "partition":
        with run.steps.step(FENCE_STEP, "the platform's fence agent") as step:
            if not fence:
                raise ops.DrError("the platform has no fence agent for the old primary (storage.primary.fence)")
            step.evidence["fence"] = run_command(fence)
    with run.steps.step(FAILOVER_STEPS[0], replica["promote"].split(" -- ")[-1]) as step:
        step.evidence["promote_s"] = round(ops.promote(replica["promote"], replica["port"]), 3)
    with run.steps.step(FAILOVER_STEPS[1], f"127.0.0.1:{replica['port']}") as step:
        step.evidence["proxy"] = ops.set_upstreams(run.ep["faultproxy"], "api-db", [f"127.0.0.1:{replica['port']}"])
    with run.steps.step(FAILOVER_STEPS[2]):
        sup.start("api")
        ops.wait_api_on_database(run.client)
    run.wait_restored()
