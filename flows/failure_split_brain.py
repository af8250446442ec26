"""Failure mode: split brain. Hypothesis: a partition of the validator network never forks the chain or loses an
acknowledged transaction: a majority keeps going while an isolated node stalls (isolate-one), without a majority
consensus stops and ChainHalted fires (no-majority), and after healing blocks resume with every node on one history.

The workload records every transaction it submits (to each node's own RPC, round robin) with its outcome; after
the run a history checker (``drillbit.history``) reads every node's chain and verifies it, Jepsen-style.
Chaos Mesh equivalent: ``chaos_mesh_partition`` below (a NetworkChaos ``partition``, direction both).
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
from prefect import flow
from prefect.logging import get_run_logger
from pydantic import Field

from drillbit import criteria, history, probes
from drillbit import sandbox as sbx
from drillbit.client import ClientError, VirtEngineClient
from drillbit.faults import chaosmesh
from drillbit.faults.partition import Partition
from drillbit.model import Criterion, Outcome, Sample, Timeline, Verdict
from drillbit.synthetic import Monitor
from flows.experiment import Experiment, ExperimentParams, run_experiment
from tasks.recover import revert_on_crash
from tasks.targets import resolve_environment

SIGNER = "drillbit-splitbrain"
Scenario = Literal["isolate-one", "no-majority"]


class SplitBrainParams(ExperimentParams):
    duration: float = Field(60.0, gt=0, le=3600, description="Seconds the partition lasts (seed: 60 s)")
    recovery: float = Field(30.0, ge=0, le=3600, description="Seconds observed after healing")
    scenario: Scenario = Field("isolate-one", description="isolate-one: one member cut off; no-majority: every one")
    member: str | None = Field(
        None, description="isolate-one: etcd member to cut off (name, or 'leader'; default: last)"
    )
    resume_within: float = Field(30.0, gt=0, description="Seconds after healing for blocks to resume on every node")
    alert_within: float = Field(30.0, gt=0, description="no-majority: seconds for ChainHalted to fire")
    confirm_timeout: float = Field(5.0, gt=0, le=120, description="Seconds a tx may take to be confirmed")
    settle: float = Field(3.0, ge=0, le=60, description="Seconds after the partition before 'during' is judged")
    min_majority_tx: float = Field(0.5, ge=0, le=1, description="isolate-one: share of majority txs confirmed")
    converge_timeout: float = Field(60.0, gt=0, description="Seconds for the nodes to agree before reading history")


# ------------------------------------------------------------------------------------------------ workload


class TxHistory(Monitor):
    """Submits a tx every ``interval`` s to the next node (round robin) and records every op in ``ops``.

    Confirmation (``/tx`` on the node it was sent to) is awaited in a small pool, so a node that never confirms does
    not hold back the others. Each op becomes a sample of probe ``tx:<node>`` when it completes.
    """

    def __init__(self, nodes: dict[str, VirtEngineClient], interval: float, confirm_timeout: float) -> None:
        super().__init__("tx", interval, self.probe)
        self.nodes, self.confirm_timeout = nodes, confirm_timeout
        self.ops: list[history.Op] = []
        self._lock = threading.Lock()
        self._next = 0

    def _pick(self) -> str:
        with self._lock:
            name = list(self.nodes)[self._next % len(self.nodes)]
            self._next += 1
        return name

    def _send(self, node: str) -> tuple[float, str | None, history.Op | None]:
        """Broadcast one tx; returns (invoked_at, hash to confirm or None, the op if already decided)."""
        msg = {"owner": SIGNER, "host_uri": "https://split-brain.drillbit.invalid"}
        msg["attributes"] = [{"key": "seq", "value": str(time.time_ns())}]
        c = self.nodes[node]
        raw = c.tx_builder.build("provider/update", SIGNER, msg)
        tx_hash = hashlib.sha256(raw).hexdigest().upper()
        t0 = time.time()
        try:
            sent = c.broadcast(raw)
        except ClientError as exc:  # it may or may not have reached the mempool
            return t0, None, history.Op(tx_hash, node, t0, "info", time.time(), error=str(exc)[:200])
        if sent.code != 0:
            return t0, None, history.Op(tx_hash, node, t0, "fail", time.time(), error=f"CheckTx {sent.code}")
        return t0, tx_hash, None

    def _confirm(self, node: str, tx_hash: str, t0: float) -> history.Op:
        try:
            result = self.nodes[node].wait_tx(tx_hash, timeout=self.confirm_timeout)
        except ClientError as exc:
            return history.Op(tx_hash, node, t0, "info", time.time(), error=str(exc)[:200])
        return history.Op(tx_hash, node, t0, "ok", time.time(), result.height)

    def _record(self, op: history.Op) -> Sample:
        with self._lock:
            self.ops.append(op)
        took = (op.completed_at or time.time()) - op.invoked_at
        return Sample(f"tx:{op.node}", op.invoked_at, op.outcome == "ok", took, op.height, op.error)

    def _one(self, node: str, on_sample: Callable[[Sample], None]) -> None:
        t0, tx_hash, op = self._send(node)
        on_sample(self._record(op or self._confirm(node, tx_hash or "", t0)))

    def probe(self) -> Sample:
        """One op, submitted and confirmed synchronously (the steady-state check)."""
        node = self._pick()
        t0, tx_hash, op = self._send(node)
        return self._record(op or self._confirm(node, tx_hash or "", t0))

    def run(self, on_sample, *, duration=None, count=None, stop: threading.Event | None = None) -> int:
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration if duration is not None else math.inf
        n = 0
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="tx-confirm") as pool:
            while not stop.is_set() and time.monotonic() < deadline and (count is None or n < count):
                pool.submit(self._one, self._pick(), on_sample)
                n += 1
                stop.wait(self.interval)
        return n


# ------------------------------------------------------------------------------------------------ chain reading


def read_block(http: httpx.Client, rpc: str, height: int) -> history.Block:
    body = http.get(f"{rpc}/block", params={"height": height}).json()
    if "error" in body:
        raise ClientError(f"block {height} from {rpc}: {body['error'].get('data')}")
    res = body["result"]
    txs = res["block"]["data"].get("txs") or []
    hashes = tuple(hashlib.sha256(base64.b64decode(t)).hexdigest().upper() for t in txs)
    last = (res["block"]["header"].get("last_block_id") or {}).get("hash", "")
    return history.Block(int(res["block"]["header"]["height"]), res["block_id"]["hash"], last, hashes)


def read_chain(rpc: str, lo: int, hi: int) -> list[history.Block]:
    """Blocks lo..hi as one node serves them (a height it cannot serve is simply missing)."""
    out = []
    with httpx.Client(timeout=5.0) as http:
        for height in range(lo, hi + 1):
            try:
                out.append(read_block(http, rpc, height))
            except (ClientError, httpx.HTTPError, KeyError, ValueError):
                continue
    return out


def heights(nodes: dict[str, VirtEngineClient]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, c in nodes.items():
        try:
            out[name] = c.height()
        except ClientError:
            out[name] = None
    return out


def wait_converged(nodes: dict[str, VirtEngineClient], at_least: int, timeout: float) -> dict[str, int | None]:
    """Wait (bounded) until every node is at ``at_least`` or beyond; returns the last heights read."""
    deadline = time.monotonic() + timeout
    while True:
        hs = heights(nodes)
        if all(h is not None and h >= at_least for h in hs.values()) or time.monotonic() > deadline:
            return hs
        time.sleep(0.5)


def leader_member(etcd: list[dict[str, Any]]) -> str:
    """The etcd member that is the Raft leader now (asked through each member's client API)."""
    for m in etcd:
        try:
            st = httpx.post(f"{m['client']}/v3/maintenance/status", json={}, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            continue
        if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
            return m["name"]
    raise ValueError("no etcd member reports itself as the leader")


def chaos_mesh_partition(
    scenario: Scenario, run_id: str, namespace: str = "virtengine", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The Chaos Mesh equivalent: validators cut off from every validator, both directions."""
    labels = labels or {"app.kubernetes.io/name": "virtengine-node"}
    mode, value = ("one", None) if scenario == "isolate-one" else ("fixed", 2)
    return chaosmesh.network_partition(
        namespace=namespace, labels=labels, target_labels=labels, run_id=run_id, mode=mode, value=value, duration="60s"
    )


# ------------------------------------------------------------------------------------------------ criteria


def _window(tl: Timeline, settle: float) -> tuple[float, float] | None:
    """The partition, from its 'injected' event (+ settle) to its 'revert' event."""
    t_in, t_out = tl.last_event_ts("injected"), tl.last_event_ts("revert")
    if t_in is None or t_out is None or t_out - t_in <= settle:
        return None
    return t_in + settle, t_out


def _heights_in(tl: Timeline, node: str, start: float, end: float):
    df = tl.select(probe=f"height:{node}")
    df = df[(df["ts"] >= start) & (df["ts"] < end) & df["ok"].astype(bool)]
    return df["value"].dropna()


def height_stalls(name: str, nodes: list[str], settle: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        w = _window(tl, settle)
        if w is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"partition shorter than the {settle:g} s settle time")
        grew = {}
        for node in nodes:
            vals = _heights_in(tl, node, *w)
            if len(vals) < 2:
                return Verdict(name, Outcome.INCONCLUSIVE, f"fewer than 2 height readings of {node} in the partition")
            grew[node] = int(vals.max() - vals.min())
        outcome = Outcome.PASS if not any(grew.values()) else Outcome.FAIL
        moved = [f"{n} +{g}" for n, g in grew.items() if g]
        why = f"no new block on {', '.join(nodes)}" if not moved else f"blocks during the partition: {', '.join(moved)}"
        return Verdict(name, outcome, why, {"new_blocks": grew, "window_s": round(w[1] - w[0], 1)})

    return Criterion(name, "no new block after the partition settled", check)


def keeps_producing(name: str, nodes: list[str], settle: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        w = _window(tl, settle)
        if w is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"partition shorter than the {settle:g} s settle time")
        need = max(1, math.floor((w[1] - w[0]) / 4))  # ~1 block/s; a leader election costs a few seconds
        grew = {}
        for n in nodes:
            vals = _heights_in(tl, n, *w)
            grew[n] = int(vals.max() - vals.min()) if len(vals) > 1 else 0
        outcome = Outcome.PASS if all(g >= need for g in grew.values()) else Outcome.FAIL
        return Verdict(name, outcome, f"new blocks: {grew}", {"new_blocks": grew, "needed": need})

    return Criterion(name, "≥ 1 block per 4 s on every majority node", check)


def _ops_in(ops: list[history.Op], nodes: list[str], start: float, end: float) -> list[history.Op]:
    return [o for o in ops if o.node in nodes and start <= o.invoked_at < end]


def no_confirmations(name: str, workload: TxHistory, nodes: list[str], settle: float) -> Criterion:
    """No tx sent to these nodes was confirmed while the partition held (small margin before the heal)."""

    def check(tl: Timeline) -> Verdict:
        w = _window(tl, settle)
        if w is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"partition shorter than the {settle:g} s settle time")
        start, end = w[0], w[1] - 0.5
        sent = _ops_in(workload.ops, nodes, start, end)
        confirmed = [
            o for o in workload.ops if o.node in nodes and o.outcome == "ok" and start <= (o.completed_at or 0) < end
        ]
        ev = {"sent": len(sent), "confirmed": len(confirmed), "examples": [o.tx_hash for o in confirmed[:3]]}
        if not sent:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no tx was sent to {', '.join(nodes)} during the partition", ev)
        outcome = Outcome.PASS if not confirmed else Outcome.FAIL
        return Verdict(name, outcome, f"{len(confirmed)} of the txs sent to {', '.join(nodes)} confirmed", ev)

    return Criterion(name, "no confirmation during the partition", check)


def confirms(name: str, workload: TxHistory, nodes: list[str], settle: float, confirm_timeout: float, share: float):
    def check(tl: Timeline) -> Verdict:
        w = _window(tl, settle)
        if w is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"partition shorter than the {settle:g} s settle time")
        sent = _ops_in(workload.ops, nodes, w[0], w[1] - confirm_timeout)
        if not sent:
            return Verdict(name, Outcome.INCONCLUSIVE, "no majority tx had time to confirm during the partition")
        ok = sum(o.outcome == "ok" and (o.completed_at or math.inf) < w[1] for o in sent)
        outcome = Outcome.PASS if ok / len(sent) >= share else Outcome.FAIL
        return Verdict(
            name, outcome, f"{ok} of {len(sent)} txs to the majority confirmed", {"sent": len(sent), "ok": ok}
        )

    return Criterion(name, f"≥ {share:.0%} confirmed", check)


def blocks_resume(name: str, nodes: list[str], within: float) -> Criterion:
    """Every node reaches a height above the highest any node had at the heal, within ``within`` s."""

    def check(tl: Timeline) -> Verdict:
        t_out = tl.last_event_ts("revert")
        if t_out is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no revert event")
        before = [v for n in nodes for v in _heights_in(tl, n, 0, t_out)]
        if not before:
            return Verdict(name, Outcome.INCONCLUSIVE, "no height reading before the heal")
        target = int(max(before)) + 1
        took = {}
        for n in nodes:
            df = tl.select(probe=f"height:{n}")
            hit = df[(df["ts"] >= t_out) & df["ok"].astype(bool) & (df["value"] >= target)]
            took[n] = round(float(hit["ts"].iloc[0] - t_out), 2) if len(hit) else None
        ev = {"height_at_heal": int(target - 1), "seconds": took}
        if any(v is None for v in took.values()):
            stuck = [n for n, v in took.items() if v is None]
            return Verdict(name, Outcome.FAIL, f"no new block on {', '.join(stuck)} after the heal", ev)
        slowest = max(took.values())
        outcome = Outcome.PASS if slowest <= within else Outcome.FAIL
        return Verdict(name, outcome, f"every node past height {target - 1} {slowest:.1f} s after the heal", ev)

    return Criterion(name, f"within {within:g} s on every node", check)


def history_verdict(name: str, part: Literal["data", "agreement"]) -> Criterion:
    def judge(e: dict[str, Any]) -> Verdict:
        if part == "data":
            keys = ("lost", "moved", "duplicated", "failed_committed")
            bad = {k: e[f"{k}_count"] for k in keys if e[f"{k}_count"]}
            ev = {"acknowledged": e["acknowledged"], "unknown_committed": e["unknown_committed"], **bad}
            ev |= {k: e[k][:3] for k in bad}
            if not e["acknowledged"]:
                return Verdict(name, Outcome.INCONCLUSIVE, "no tx was acknowledged", ev)
            why = f"all {e['acknowledged']} acknowledged txs in every chain exactly once"
            return Verdict(name, Outcome.FAIL if bad else Outcome.PASS, e["summary"] if bad else why, ev)
        bad = {k: e[f"{k}_count"] for k in ("diverged", "broken_links") if e[f"{k}_count"]}
        if e["missing_blocks"]:
            bad["missing_blocks"] = e["missing_blocks"]
        lo, hi = e["heights"]
        ev = {"heights": [lo, hi], **bad, "diverged": e["diverged"][:3]}
        why = f"every node has the same blocks {lo}..{hi}, hash-linked"
        return Verdict(name, Outcome.FAIL if bad else Outcome.PASS, e["summary"] if bad else why, ev)

    threshold = "every acknowledged tx exactly once" if part == "data" else "same heights and hashes on every node"
    return criteria.event_check(name, "history_check", threshold, judge)


# ------------------------------------------------------------------------------------------------ the flow


def _isolated(params: SplitBrainParams, etcd: list[dict[str, Any]]) -> list[str]:
    names = [m["name"] for m in etcd]
    if params.scenario == "no-majority":
        return names[1:]  # every member alone: the isolated ones, and the one left behind
    if params.member == "leader":
        return [leader_member(etcd)]
    if params.member and params.member not in names:
        raise ValueError(f"member {params.member!r} is not an etcd member; choose one of {', '.join(names)}")
    return [params.member or names[-1]]


@flow(name="split-brain", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def split_brain(params: SplitBrainParams = SplitBrainParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    if env.platform != "sandbox":
        raise NotImplementedError(
            "split brain on Kubernetes: apply flows.failure_split_brain.chaos_mesh_partition(...) with "
            "drillbit.faults.kubernetes.ChaosMeshFault; the per-node history needs each validator's RPC"
        )
    ep = sbx.endpoints()
    nodes = {n["name"]: VirtEngineClient(n["rpc"], n["rest"], timeout=5.0) for n in ep["nodes"]}
    try:
        return _run(params, env, ep, nodes)
    finally:
        for c in nodes.values():
            c.close()


def _run(params: SplitBrainParams, env, ep: dict[str, Any], nodes: dict[str, VirtEngineClient]) -> dict:
    if params.scenario == "no-majority" and params.duration < 15:
        get_run_logger().warning(
            "ChainHalted needs > 10 s without a block: %.0f s of partition may be too short", params.duration
        )
    isolate = _isolated(params, ep["etcd"])
    fault = Partition(ep["etcd"], isolate, max_isolated=len(ep["etcd"]) - 1)
    by_member = {n["etcd"]: n["name"] for n in ep["nodes"]}
    cut = [by_member[m] for m in isolate]
    rest = [n for n in nodes if n not in cut]
    workload = TxHistory(nodes, params.interval, params.confirm_timeout)
    monitors: list[Monitor] = [workload]
    for name, c in nodes.items():
        monitors.append(Monitor(f"height:{name}", params.interval, probes.as_probe(f"height:{name}", _height(c))))
    start = {} if params.dry_run else heights(nodes)

    def verify(tl: Timeline) -> None:
        acked = [o.height for o in workload.ops if o.outcome == "ok" and o.height]
        at = wait_converged(nodes, max([*acked, 0]), params.converge_timeout)
        lo = min((h for h in start.values() if h is not None), default=1)
        hi = min((h for h in at.values() if h is not None), default=lo)
        chains = {n["name"]: read_chain(n["rpc"], lo, hi) for n in ep["nodes"]}
        result = history.check(list(workload.ops), chains, lo, hi)
        dupes = history.duplicate_submissions(workload.ops)
        tl.event("history_check", result.summary(), **result.to_dict(), summary=result.summary(), resubmitted=dupes)

    def grade_with(_detail: dict) -> list[Criterion]:
        s = params.settle
        if params.scenario == "isolate-one":
            out = [
                keeps_producing("majority keeps producing blocks", rest, s),
                height_stalls("isolated node's height stalls", cut, s),
                no_confirmations("isolated node confirms no tx", workload, cut, s),
                confirms("majority confirms txs", workload, rest, s, params.confirm_timeout, params.min_majority_tx),
            ]
        else:
            out = [
                height_stalls("no new blocks on any node", list(nodes), s),
                no_confirmations("tx confirmation fails", workload, list(nodes), s),
                criteria.alerts_fired("ChainHalted fires", ["ChainHalted"], within=params.alert_within),
            ]
        return [
            *out,
            blocks_resume(f"blocks resume within {params.resume_within:g} s", list(nodes), params.resume_within),
            history_verdict("no acknowledged tx lost", "data"),
            history_verdict("nodes agree on one history", "agreement"),
        ]

    exp = Experiment(
        "split-brain", env, params, fault, monitors, grade_with, after_revert=verify, scenario=params.scenario
    )
    return run_experiment(exp)


def _height(c: VirtEngineClient) -> probes.Check:
    def check() -> float:
        return float(c.height())

    return check
