"""Chaos: database failure. Hypothesis: the system handles a database outage with a degraded mode (seed experiment 4):
the API serves cached reads, queues writes and applies every one of them when the database returns.

On the sandbox the fault blocks the Postgres port; on Kubernetes iptables in the database pod (by exec, the seed's
way) drops or resets it (``kubernetes``). A write canary writes through the API all along; once the observation is
over every acknowledged write is read back and the API's own database health is awaited.

Graded from the client's side as well: the canary's history is checked (each acknowledged write applied exactly once,
in acknowledgement order: ``drillbit.history.check_writes`` over the records as the API lists them), and reads after
recovery must be fresh (the marketplace read users make reflects the chain within ``max_read_lag`` blocks, and every
write queued during the outage is in the records listing), not only "database up" on the API's health endpoint.
"""

from __future__ import annotations

import time
import uuid

from pydantic import Field

from drillbit import criteria, history, probes
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient, client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.port_block import PortBlock
from drillbit.model import Criterion, Outcome, Verdict
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.poll import PollTimeout, wait_until
from drillbit.runner import Experiment, Hook, Run
from drillbit.scenarios.chaos import kubernetes


class DbFailureParams(ExperimentParams):
    duration: float = Field(300.0, gt=0, le=86_400, description="Seconds the database port stays blocked (seed: 5 min)")
    recovery: float = Field(30.0, ge=0, le=3600)
    action: str = Field("drop", pattern="^(drop|reject)$", description="drop (silent) or reject (TCP reset)")
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="Error budget of API calls during the outage (seed 5 %)"
    )
    min_cached: float = Field(0.9, ge=0, le=1, description="Share of reads that must be answered during the outage")
    verify_timeout: float = Field(60.0, gt=0, description="Seconds for queued writes to appear after recovery")
    max_read_lag: int = Field(
        5, ge=0, le=10_000, description="Blocks a marketplace read after recovery may trail the chain's height"
    )
    db_role: str = Field("database", description="Kubernetes: role whose selector finds the database pod")
    pod: str | None = Field(None, description="Kubernetes: the database pod, when the selector matches several")
    container: str | None = Field(None, description="Kubernetes: container to exec iptables in (default: the pod's)")
    # the experiment is the database's outage: its only replica's port is blocked on purpose
    full_outage: bool = Field(
        True, description="Kubernetes: allow blocking the database's only Ready replica (the outage under test)"
    )


FRESH = "reads fresh after recovery"
EXACTLY_ONCE = "each acknowledged write applied exactly once, in order"
STALE_LIMIT = 10  # stale reads kept as evidence
READ_ERRORS = (probes.CheckFailed, ValueError, *probes.POLL_ERRORS)  # a read that did not answer: "not yet"


def _seq_of(value: object) -> object:
    return value.get("seq") if isinstance(value, dict) else value


def write_history(canary: probes.WriteCanary) -> dict:
    """Read the canary's records back through the API's listing and check its history (event ``write_history``)."""
    # a write is known by its key and the seq it carries (the value read back holds it; its float ts is left out)
    writes = [history.Write(a["key"], a["seq"], a["outcome"], a["seq"]) for a in canary.history()]
    try:
        back = canary.read_back()
    except READ_ERRORS as exc:
        return {"read": False, "error": f"{exc.__class__.__name__}: {exc}"[:300], "acknowledged": len(canary.acked)}
    applied = [
        history.Applied(d["key"], _seq_of(d.get("value")), d.get("version"), d.get("applied_at"))
        for d in back["records"]
    ]
    result = history.check_writes(writes, applied)
    return {
        "read": True,
        "summary": result.summary(),
        "queued": len(canary.queued),
        "truncated": back["truncated"],
        "version_known": any(a.version is not None for a in applied),
        "order_known": any(a.applied_at is not None for a in applied),
        **result.to_dict(limit=10),
    }


def read_freshness(
    client: VirtEngineClient, canary: probes.WriteCanary, timeout: float, max_lag: int, path: str
) -> dict:
    """After recovery, read as a user does until the answer is fresh, for at most ``timeout`` s (event
    ``read_freshness``): the marketplace read's own ``indexed_height`` within ``max_lag`` blocks of the chain's
    height (read from the node, not from the API), and every write queued during the outage in the records listing.
    Every stale read on the way is kept (the first few) with its height against the chain's."""
    stale: list[dict] = []
    reads = 0
    last: dict = {}
    t0 = time.monotonic()

    def fresh() -> bool:
        nonlocal last, reads
        reads += 1
        doc = probes.api_read_doc(client, path)
        chain = client.height()
        doc.update(chain_height=chain, at_s=round(time.monotonic() - t0, 1))
        if doc["indexed_height"] is not None:
            doc["lag_blocks"] = chain - doc["indexed_height"]
        last = doc
        listed = {d["key"] for d in canary.read_back()["records"]} if canary.queued else set()
        unseen = sorted(canary.queued - listed)
        doc["queued_unseen"] = len(unseen)
        doc["queued_unseen_keys"] = unseen[:STALE_LIMIT]
        ok = doc["status"] == 200 and doc.get("lag_blocks") is not None and doc["lag_blocks"] <= max_lag
        if not (ok and not unseen) and len(stale) < STALE_LIMIT:
            stale.append(doc)
        return ok and not unseen

    try:
        ok = wait_until(fresh, timeout, "fresh reads", interval=0.5, errors=READ_ERRORS)
    except PollTimeout:
        ok = False
    measured = bool(last) and last.get("indexed_height") is not None
    return {
        "fresh": ok,
        "measured": measured,
        "reads": reads,
        "waited_s": round(time.monotonic() - t0, 1),
        "max_lag_blocks": max_lag,
        "queued": len(canary.queued),
        "last": last,
        "stale_reads": stale,
        "stale_count": reads - 1 if ok else reads,
    }


def verify_writes(
    client: VirtEngineClient,
    canary: probes.WriteCanary,
    timeout: float,
    max_lag: int = 5,
    read_path: str = "/api/v1/market/orders",
) -> Hook:
    """The hook run once the observation is over: read back every acknowledged write (event
    ``write_verification``), check the canary's history (event ``write_history``), read as a user until the reads
    are fresh (event ``read_freshness``), then wait for the API to report its database up (event
    ``recovery_check``)."""

    def api_database_up() -> bool:
        r = client.api_get("/health")
        return r.status_code == 200 and r.json().get("database") == "up"

    def verify(run: Run) -> None:
        tl = run.timeline
        result = canary.verify(timeout)
        tl.event(
            "write_verification",
            f"{len(result['missing'])} of {result['acknowledged']} acknowledged writes missing",
            **result,
        )
        h = write_history(canary)
        tl.event("write_history", h.get("summary") or h.get("error", ""), **h)
        f = read_freshness(client, canary, timeout, max_lag, read_path)
        tl.event("read_freshness", f"{'fresh' if f['fresh'] else 'stale'} after {f['waited_s']} s", **f)
        t0 = time.monotonic()
        try:  # full recovery: the API on its database again
            up = wait_until(api_database_up, timeout, "API database up", interval=0.5, errors=())
        except PollTimeout:
            up = False
        waited = round(time.monotonic() - t0, 1)
        tl.event(
            "recovery_check", f"API database {'up' if up else 'still down'} after {waited} s", up=up, waited_s=waited
        )

    return verify


def none_lost(e: dict) -> Verdict:
    """Grade the ``write_verification`` event: writes were acknowledged, some queued, and none is missing."""
    ev = {"acknowledged": e["acknowledged"], "queued": e["queued"], "missing": e["missing"][:20]}
    if e["acknowledged"] == 0:
        return Verdict("writes queued, none lost", Outcome.FAIL, "no write was acknowledged during the run", ev)
    if e["missing"]:
        return Verdict(
            "writes queued, none lost", Outcome.FAIL, f"{len(e['missing'])} acknowledged writes were lost", ev
        )
    if e["queued"] == 0:
        return Verdict("writes queued, none lost", Outcome.FAIL, "no write was queued during the outage", ev)
    return Verdict(
        "writes queued, none lost",
        Outcome.PASS,
        f"all {e['acknowledged']} acknowledged writes present ({e['queued']} were queued)",
        ev,
    )


def exactly_once(e: dict) -> Verdict:
    """Grade the ``write_history`` event: the canary's history read back through the API has no lost, duplicated,
    reordered or phantom write."""
    keys = ("acknowledged", "queued", "observed", "truncated", "version_known", "order_known")
    ev = {k: e[k] for k in keys if k in e}
    for kind in history.WriteCheck.KINDS:
        if f"{kind}_count" in e:
            ev[f"{kind}_count"], ev[kind] = e[f"{kind}_count"], e[kind]
    if not e["read"]:
        return Verdict(EXACTLY_ONCE, Outcome.FAIL, f"the records could not be read back: {e['error']}", ev)
    if e["acknowledged"] == 0:
        return Verdict(EXACTLY_ONCE, Outcome.INCONCLUSIVE, "no write was acknowledged: no history to check", ev)
    if not e["valid"]:
        return Verdict(EXACTLY_ONCE, Outcome.FAIL, e["summary"], ev)
    unchecked = [n for n, k in (("duplicates", "version_known"), ("order", "order_known")) if not e.get(k)]
    if unchecked:  # the API does not say: only the set half (lost, phantom) was checked
        return Verdict(
            EXACTLY_ONCE,
            Outcome.INCONCLUSIVE,
            f"the API's records carry no {' / '.join(unchecked)} information (version, applied_at)",
            ev,
        )
    return Verdict(EXACTLY_ONCE, Outcome.PASS, f"{e['summary']} ({e['queued']} were queued)", ev)


def fresh_after_recovery(e: dict) -> Verdict:
    """Grade the ``read_freshness`` event: reads after recovery reflect the chain and the writes queued meanwhile."""
    last = e.get("last") or {}
    ev = {k: e[k] for k in ("reads", "waited_s", "max_lag_blocks", "queued", "stale_count")}
    ev.update(last=last, stale_reads=e["stale_reads"])
    if e["fresh"]:
        why = (
            f"read fresh after {e['waited_s']} s: {last.get('path')} at indexed height {last.get('indexed_height')} "
            f"vs chain {last.get('chain_height')} (X-Cache {last.get('x_cache')}); all {e['queued']} writes queued "
            "during the outage listed"
        )
        return Verdict(FRESH, Outcome.PASS, why, ev)
    if last.get("status") == 200 and not e["measured"]:
        return Verdict(FRESH, Outcome.INCONCLUSIVE, "the API's reads carry no indexed_height to compare", ev)
    if not last:
        return Verdict(FRESH, Outcome.FAIL, f"no read answered within {e['waited_s']} s after recovery", ev)
    parts = []
    if last.get("status") != 200:
        parts.append(f"{last.get('path')} answered HTTP {last.get('status')}")
    elif last.get("lag_blocks", 0) > e["max_lag_blocks"]:
        parts.append(
            f"{last.get('path')} still served indexed height {last.get('indexed_height')} against the chain's "
            f"{last.get('chain_height')} ({last.get('lag_blocks')} blocks behind, X-Cache {last.get('x_cache')})"
        )
    if last.get("queued_unseen"):
        parts.append(f"{last['queued_unseen']} of {e['queued']} writes queued during the outage not listed")
    why = "; ".join(parts) or "reads stale"
    return Verdict(FRESH, Outcome.FAIL, f"{why}, {e['waited_s']} s after recovery ({e['stale_count']} stale reads)", ev)


def build(env: ResolvedEnvironment, params: DbFailureParams, run_id: str | None = None) -> Experiment:
    """The database-failure experiment (``run_id`` is unused: the exec'd iptables rule carries no label)."""
    if env.platform == "kubernetes":
        fault = kubernetes.db_port_block(env, params)  # iptables in the database pod, by exec (the seed's way)
    else:
        fault = PortBlock(sbx.endpoints()["postgres"]["port"], params.action, label="postgres")
    client = client_for(env, timeout=5.0)
    canary = probes.WriteCanary(client, f"drillbit-canary-{uuid.uuid4().hex[:8]}")
    iv = params.interval
    monitors = [monitor("api-read", iv, probes.api_read(client)), monitor("api-write", iv, canary.check)]

    def criteria_for(_detail: dict) -> list[Criterion]:
        return [
            criteria.availability("cached responses", "api-read", params.min_cached, phase="injection"),
            criteria.event_check(
                "writes queued, none lost", "write_verification", "every acknowledged write applied", none_lost
            ),
            criteria.error_rate("error rate", "api-read", params.max_error_rate, phase="injection"),
            criteria.error_rate("write error rate", "api-write", params.max_error_rate, phase="injection"),
            criteria.event_check(
                EXACTLY_ONCE, "write_history", "no lost, duplicated, reordered or phantom write", exactly_once
            ),
            criteria.event_check(
                FRESH,
                "read_freshness",
                f"within {params.verify_timeout:g} s: reads within {params.max_read_lag} blocks of the chain, "
                "queued writes listed",
                fresh_after_recovery,
            ),
            criteria.event_check(
                "full recovery",
                "recovery_check",
                f"API back on its database within {params.verify_timeout:g} s",
                lambda e: Verdict(
                    "full recovery", Outcome.PASS if e["up"] else Outcome.FAIL, e["detail"], {"waited_s": e["waited_s"]}
                ),
            ),
        ]

    return Experiment(
        "chaos-db-failure",
        env,
        params,
        fault,
        monitors,
        criteria_for,
        scenario=params.action,
        collect=verify_writes(client, canary, params.verify_timeout, params.max_read_lag),
        close=[client.close],
    )
