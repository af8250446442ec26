"""Failure mode: resource exhaustion. Hypothesis: memory pressure on a validator node raises the high-memory alert,
degrades gracefully (clients mostly still served), never OOM-kills the node, and the node recovers afterwards; its
own memory does not grow over the run (a leak shows as MB/min)."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import Field

from drillbit import criteria, probes, runner
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient
from drillbit.config import ResolvedEnvironment
from drillbit.faults.memory import MemoryPressure, memory_cgroup, oom_kills, read_int
from drillbit.faults.undo import process_identity
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment, Run

OOM_METRIC = 'max_over_time(virtengine_cgroup_memory_oom_kills_total{{component="{name}"}}[{w}s])'


class ResourceExhaustionParams(ExperimentParams):
    duration: float = Field(60.0, gt=0, le=86_400, description="Seconds of memory pressure (seed: 1 min)")
    target: str = Field("node-0", description="Supervised component under pressure (a validator node)")
    size_mb: float = Field(8192.0, ge=1, le=1_048_576, description="Memory stress-ng holds, MiB (seed: 8 GB)")
    headroom_fraction: float = Field(0.05, ge=0, lt=1, description="Limit = what the group holds × (1 + this)")
    churn: bool = Field(False, description="stress-ng rewrites its memory all the time (burns a core)")
    expected_alerts: list[str] = Field(default_factory=lambda: ["CgroupMemoryHigh", "NodeMemoryHigh"])
    alert_within: float = Field(60.0, gt=0, description="Seconds for a high-memory alert to fire")
    max_error_rate: float = Field(0.05, ge=0, le=1, description="Client error budget during the pressure")
    max_growth_mb_per_min: float = Field(5.0, gt=0, description="Most the node's own memory may grow (MB/min)")


# ------------------------------------------------------------------------------------------------ probes


def _identity(supervisor: str, component: str) -> dict[str, Any]:
    info = xmlrpc.client.ServerProxy(supervisor).supervisor.getProcessInfo(component)
    pid = int(info.get("pid") or 0)
    return {"pid": pid, "start_time": process_identity(pid)["start_time"] if pid else None}


def same_process(supervisor: str, component: str, first: dict[str, Any]) -> probes.Check:
    """The component still runs as the very process it was at the start (no OOM kill + restart). Value: pid."""

    def check() -> float:
        now = _identity(supervisor, component)
        if now != first:
            raise probes.CheckFailed(f"{component} is now {now}, was {first}")
        return float(now["pid"])

    return check


def rss_anon_mb(first: dict[str, Any]) -> probes.Check:
    """The anonymous resident memory (its own allocations), MB, of the process the run started with, from /proc.

    Fails once that process is gone: a restarted process starts small again and would hide the growth.
    """

    def check() -> float:
        pid = first["pid"]
        if process_identity(pid)["start_time"] != first["start_time"]:
            raise probes.CheckFailed(f"process {pid} is gone")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        raise probes.CheckFailed(f"no RssAnon for pid {pid}")

    return check


def cgroup_reading(path: Path, what: str) -> probes.Check:
    """``oom`` (the oom_kill counter) or ``fill`` (usage / limit) of the fault's group; NaN before it exists."""

    def check() -> float:
        if not path.exists():
            return float("nan")
        if what == "oom":
            return float(oom_kills(path) or 0)
        return read_int(path / "memory.usage_in_bytes") / read_int(path / "memory.limit_in_bytes")

    return check


# ------------------------------------------------------------------------------------------------ criteria


def not_oom_killed(name: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        df = tl.select(probe="cgroup-oom")
        seen = df["value"].dropna()
        final = tl.last_event("node_after") or {}
        prom = (tl.last_event("prometheus_oom") or {}).get("max")
        ident = tl.select(probe="node-identity")
        changed = int((~ident["ok"].astype(bool)).sum())
        peak = max([float(seen.max()) if len(seen) else 0.0, float(prom or 0)])
        ev = {"oom_kills": int(peak), "readings": len(seen), "prometheus_max": prom, "identity_changes": changed}
        ev |= {"same_process_at_end": final.get("same_process"), "pid": final.get("pid")}
        if seen.empty and prom is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no reading of the group's oom_kill counter", ev)
        problems = []
        if peak > 0:
            problems.append(f"{int(peak)} OOM kill(s) in the group")
        if changed or final.get("same_process") is False:
            problems.append("the node's process changed (killed and restarted)")
        if problems:
            return Verdict(name, Outcome.FAIL, "; ".join(problems), ev)
        return Verdict(name, Outcome.PASS, "oom_kill stayed 0 and the node kept its PID and start time", ev)

    return Criterion(name, "oom_kill = 0, same PID and start time", check)


def recovers(name: str, query_probe: str, tx_probe: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        q = tl.select(probe=query_probe, phase="recovery")
        tx = tl.select(probe=tx_probe, phase="recovery")
        after = tl.last_event("node_after") or {}
        if q.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, "no reading of the node after the pressure")
        ok_q, ok_tx = q["ok"].astype(bool), tx["ok"].astype(bool)
        heights = q.loc[ok_q, "value"].dropna()
        grew = float(heights.max() - heights.min()) if len(heights) > 1 else 0.0
        last_ok = bool(ok_q.iloc[-1]) and (tx.empty or bool(ok_tx.iloc[-1]))
        ev = {
            "queries_ok": f"{int(ok_q.sum())}/{len(q)}",
            "txs_ok": f"{int(ok_tx.sum())}/{len(tx)}",
            "new_blocks": grew,
        }
        ev |= {k: after.get(k) for k in ("cgroup_removed", "stress_gone", "back_in")}
        clean = after.get("cgroup_removed") and after.get("stress_gone") is not False
        if last_ok and grew >= 1 and clean:
            return Verdict(name, Outcome.PASS, f"serving and {grew:.0f} new blocks after the pressure", ev)
        why = "the node is not serving at the end" if not last_ok else "its height did not advance"
        return Verdict(name, Outcome.FAIL, why if grew < 1 or not last_ok else "the fault was not fully removed", ev)

    return Criterion(name, "serving, height advancing, fault removed", check)


def growth_rate(values: np.ndarray, ts: np.ndarray) -> float:
    """Least-squares slope in units per minute."""
    return float(np.polyfit(ts - ts[0], values, 1)[0] * 60) if len(values) >= 3 and np.ptp(ts) > 0 else float("nan")


def memory_growth(name: str, maximum: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        all_rss = tl.select(probe="node-rss")
        df = all_rss[all_rss["ok"].astype(bool)].dropna(subset=["value"])
        if len(df) < 3 or float(df["ts"].max() - df["ts"].min()) < 10:
            failed = len(all_rss) - len(df)
            ev = {"readings": len(df), "failed_readings": failed}
            if failed:  # the node stopped answering (its process gone): the system failed, not the measurement
                errors = all_rss.loc[~all_rss["ok"].astype(bool), "error"].dropna()
                ev["example_error"] = str(errors.iloc[0])[:200] if len(errors) else None
                why = f"the node's memory could not be read in {failed} of {len(all_rss)} readings (its process gone)"
                return Verdict(name, Outcome.FAIL, why, ev)
            return Verdict(name, Outcome.INCONCLUSIVE, f"only {len(df)} memory readings", ev)
        vals, ts = df["value"].to_numpy(dtype=float), df["ts"].to_numpy(dtype=float)
        slope = growth_rate(vals, ts)
        ev = {"mb_per_min": round(slope, 2), "from_mb": round(vals[0], 1), "to_mb": round(vals[-1], 1)}
        ev["over_s"] = round(float(ts[-1] - ts[0]), 1)
        ev["process_replaced"] = bool(len(df) < len(all_rss))  # readings stop when the process is gone
        outcome = Outcome.PASS if slope <= maximum else Outcome.FAIL
        return Verdict(name, outcome, f"the node's own memory grew {slope:.1f} MB/min over the run", ev)

    return Criterion(name, f"≤ {maximum:g} MB/min", check)


# ------------------------------------------------------------------------------------------------ the experiment


def build(env: ResolvedEnvironment, params: ResourceExhaustionParams, ep: dict[str, Any] | None = None) -> Experiment:
    """The resource-exhaustion experiment on the sandbox (``ep``: its endpoints.json, default: the running
    sandbox's); the clients talk to the target node's own RPC and REST when the target is a validator node."""
    if env.platform != "sandbox":
        raise NotImplementedError("memory pressure on Kubernetes is a Chaos Mesh StressChaos (chaosmesh.stress)")
    ep = ep or sbx.endpoints()
    node = next((n for n in ep["nodes"] if n["name"] == params.target), None)
    if node is None and params.target not in ep["components"]:
        raise ValueError(f"unknown component {params.target!r}; known: {', '.join(sorted(ep['components']))}")
    rpc = node["rpc"] if node else env.endpoints.node_rpc
    rest = node["rest"] if node else env.endpoints.node_rest
    client = VirtEngineClient(rpc, rest, timeout=5.0)
    return runner.closing(lambda: _experiment(env, params, ep, client), client.close)


def _experiment(
    env: ResolvedEnvironment, params: ResourceExhaustionParams, ep: dict[str, Any], client: VirtEngineClient
) -> Experiment:
    sup, target = ep["supervisor"], params.target
    fault = MemoryPressure(
        sup,
        target,
        int(params.size_mb * 2**20),
        params.duration,
        headroom_fraction=params.headroom_fraction,
        churn=params.churn,
    )
    first = {} if params.dry_run else _identity(sup, target)
    iv = params.interval
    query, tx = f"node-query:{target}", f"tx:{target}"
    monitors = [
        monitor(query, iv, probes.chain_query(client)),
        monitor(tx, iv, probes.tx_submission(client, "drillbit-memory", timeout=10)),
        monitor("node-identity", iv, same_process(sup, target, first)),
        monitor("node-rss", iv, rss_anon_mb(first)),
        monitor("cgroup-oom", min(iv, 0.5), cgroup_reading(fault.path, "oom")),
        monitor("cgroup-fill", iv, cgroup_reading(fault.path, "fill")),
    ]

    def after(run: Run) -> None:
        """The observation is over: the node's process and the fault's remains, and Prometheus' OOM counter."""
        tl = run.timeline
        now = _identity(sup, target)
        stress = getattr(fault, "stress_pid", None)
        back = memory_cgroup(now["pid"]) if now["pid"] else None
        tl.event(
            "node_after",
            f"{target} pid {now['pid']}",
            same_process=now == first,
            pid=now["pid"],
            back_in=back,
            cgroup_removed=not fault.path.exists(),
            stress_gone=None if stress is None else (not Path(f"/proc/{stress}").exists() or _zombie(stress)),
        )
        inject, revert = tl.last_event("inject"), tl.last_event("revert")
        if env.endpoints.prometheus and inject and revert:
            tl.event("prometheus_oom", "", max=_prom_max(env.endpoints.prometheus, fault.name, inject, revert))

    def grade_with(_detail: dict) -> list[Criterion]:
        return [
            criteria.value_above("pressure applied", "cgroup-fill", 0.9, "injection"),
            criteria.alerts_fired("high-memory alert fires", params.expected_alerts, within=params.alert_within),
            not_oom_killed("not OOM-killed"),
            criteria.error_budget("degrades gracefully", [query, tx], params.max_error_rate, "injection"),
            recovers("recovers", query, tx),
            memory_growth("node memory growth", params.max_growth_mb_per_min),
        ]

    return Experiment(
        "resource-exhaustion",
        env,
        params,
        fault,
        monitors,
        grade_with,
        guarded_probes=[query],
        scenario=f"{target}/{params.size_mb:g}MiB",
        collect=after,
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _prom_max(prometheus: str, name: str, inject: dict, revert: dict) -> float | None:
    window = max(1, int(revert["ts"] - inject["ts"]) + 2)
    params = {"query": OOM_METRIC.format(name=name, w=window), "time": revert["ts"]}
    try:
        result = httpx.get(f"{prometheus}/api/v1/query", params=params, timeout=5).json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return max((float(r["value"][1]) for r in result), default=None)
