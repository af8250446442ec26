"""Failure mode: split brain. Hypothesis: a partition of the validator network never forks the chain or loses an
acknowledged transaction: a majority keeps going while an isolated node stalls (isolate-one), without a majority
consensus stops and ChainHalted fires (no-majority), and after healing blocks resume with every node on one history.

The workload (``drillbit.history.TxHistory``) records every transaction it submits (to each node's own RPC, round
robin) with its outcome; after the run the history checker (``drillbit.history.check``) reads every node's chain
and verifies it, Jepsen-style. Chaos Mesh equivalent: ``chaos_mesh_partition`` below (a NetworkChaos
``partition``, direction both).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import httpx
from pydantic import Field

from drillbit import chain, criteria, history, probes, runner
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient
from drillbit.config import ResolvedEnvironment
from drillbit.faults import topology
from drillbit.faults.partition import Partition, network_partition
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.monitor import Monitor, monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment, Run

SIGNER = "drillbit-splitbrain"
HOST_URI = "https://split-brain.drillbit.invalid"
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


# ------------------------------------------------------------------------------------------------ the fault


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


def groups(params: SplitBrainParams, etcd: list[dict[str, Any]]) -> list[list[str]]:
    """The partition as groups of etcd members that still reach each other: one member split off (by name, the
    leader, or the last), or every member alone (no majority)."""
    names = [m["name"] for m in etcd]
    if params.scenario == "no-majority":
        return topology.singletons(names)
    member = leader_member(etcd) if params.member == "leader" else params.member or names[-1]
    if member not in names:
        raise ValueError(f"member {params.member!r} is not an etcd member; choose one of {', '.join(names)}")
    return topology.split_one(names, member)


def isolated(params: SplitBrainParams, etcd: list[dict[str, Any]]) -> list[str]:
    """The members the sandbox's Partition cuts off from every other member to make those groups: the member split
    off, or all but the first (the one left behind is then alone as well)."""
    parts = groups(params, etcd)
    if params.scenario == "no-majority":
        return [m for g in parts[1:] for m in g]
    return parts[0]


def chaos_mesh_partition(
    scenario: Scenario, run_id: str, namespace: str = "virtengine", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The Chaos Mesh equivalent: validators cut off from every validator, both directions."""
    labels = labels or {"app.kubernetes.io/name": "virtengine-node"}
    mode, value = ("one", None) if scenario == "isolate-one" else ("fixed", 2)
    return network_partition(
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


def no_confirmations(name: str, workload: history.TxHistory, nodes: list[str], settle: float) -> Criterion:
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


def confirms(
    name: str, workload: history.TxHistory, nodes: list[str], settle: float, confirm_timeout: float, share: float
) -> Criterion:
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
            asked = [len(d[d["ts"] < t_out]) for d in (tl.select(probe=f"height:{n}") for n in nodes)]
            ev0 = {"height_checks_before_heal": sum(asked)}
            if sum(asked):  # asked, and no node answered: the system's silence, not the harness's
                why = f"no node answered any of {sum(asked)} height checks before the heal"
                return Verdict(name, Outcome.FAIL, why, ev0)
            return Verdict(name, Outcome.INCONCLUSIVE, "no height check ran before the heal", ev0)
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


def split_brain_criteria(
    params: SplitBrainParams, workload: history.TxHistory, nodes: list[str], cut: list[str]
) -> list[Criterion]:
    """The verdicts of one scenario: during the partition (by scenario), then the heal and the history."""
    s, rest = params.settle, [n for n in nodes if n not in cut]
    if params.scenario == "isolate-one":
        during = [
            keeps_producing("majority keeps producing blocks", rest, s),
            height_stalls("isolated node's height stalls", cut, s),
            no_confirmations("isolated node confirms no tx", workload, cut, s),
            confirms("majority confirms txs", workload, rest, s, params.confirm_timeout, params.min_majority_tx),
        ]
    else:
        during = [
            height_stalls("no new blocks on any node", nodes, s),
            no_confirmations("tx confirmation fails", workload, nodes, s),
            criteria.alerts_fired("ChainHalted fires", ["ChainHalted"], within=params.alert_within),
        ]
    return [
        *during,
        blocks_resume(f"blocks resume within {params.resume_within:g} s", nodes, params.resume_within),
        history_verdict("no acknowledged tx lost", "data"),
        history_verdict("nodes agree on one history", "agreement"),
    ]


# ------------------------------------------------------------------------------------------------ the experiment


def build(env: ResolvedEnvironment, params: SplitBrainParams, ep: dict[str, Any] | None = None) -> Experiment:
    """The split-brain experiment on the sandbox (``ep``: its endpoints.json, default: the running sandbox's)."""
    if env.platform != "sandbox":
        raise NotImplementedError(
            "split brain on Kubernetes: apply drillbit.scenarios.failure.split_brain.chaos_mesh_partition(...) with "
            "drillbit.faults.chaos_mesh.ChaosMeshFault; the per-node history needs each validator's RPC"
        )
    ep = ep or sbx.endpoints()
    nodes = {n["name"]: VirtEngineClient(n["rpc"], n["rest"], timeout=5.0) for n in ep["nodes"]}

    def close() -> None:
        for c in nodes.values():
            c.close()

    return runner.closing(lambda: _experiment(env, params, ep, nodes), close)


def _experiment(
    env: ResolvedEnvironment, params: SplitBrainParams, ep: dict[str, Any], nodes: dict[str, VirtEngineClient]
) -> Experiment:
    isolate = isolated(params, ep["etcd"])
    fault = Partition(ep["etcd"], isolate, max_isolated=len(ep["etcd"]) - 1)
    by_member = {n["etcd"]: n["name"] for n in ep["nodes"]}
    cut = [by_member[m] for m in isolate]
    workload = history.TxHistory(nodes, params.interval, params.confirm_timeout, SIGNER, HOST_URI)
    monitors: list[Monitor] = [workload]
    monitors += [monitor(f"height:{name}", params.interval, _height(c)) for name, c in nodes.items()]
    start = {} if params.dry_run else chain.heights(nodes)

    def warn_if_short(run: Run) -> None:
        if params.scenario == "no-majority" and params.duration < 15:
            run.log.warning(
                "ChainHalted needs > 10 s without a block: %.0f s of partition may be too short", params.duration
            )

    def verify(run: Run) -> None:
        """Once the nodes caught up, read every node's chain and check the workload's history against it."""
        acked = [o.height for o in workload.ops if o.outcome == "ok" and o.height]
        at = chain.wait_converged(nodes, max([*acked, 0]), params.converge_timeout)
        lo = min((h for h in start.values() if h is not None), default=1)
        hi = min((h for h in at.values() if h is not None), default=lo)
        chains = {name: chain.read_chain(c, lo, hi) for name, c in nodes.items()}
        result = history.check(list(workload.ops), chains, lo, hi)
        dupes = history.duplicate_submissions(workload.ops)
        summary = result.summary()
        run.timeline.event("history_check", summary, **result.to_dict(), summary=summary, resubmitted=dupes)

    return Experiment(
        "split-brain",
        env,
        params,
        fault,
        monitors,
        lambda _detail: split_brain_criteria(params, workload, list(nodes), cut),
        scenario=params.scenario,
        before_inject=warn_if_short,
        collect=verify,
    )


def _height(c: VirtEngineClient) -> probes.Check:
    def check() -> float:
        return float(c.height())

    return check
