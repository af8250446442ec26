"""What the disaster-recovery drills *measure* (``operations`` does the destroying and restoring): RTO from probes,
RPO from a write canary, the timeline of recovery steps, their criteria, and the drill report.

Nothing here is inferred from configuration: RTO is read off the probes' samples, RPO off which acknowledged canary
writes are really present after recovery. No Prefect here (flows wrap it), so a stored drill can be re-graded.

- **RTO** = from the disaster moment to the moment the service's steady state is restored: for each steady-state
  probe, the first successful sample after its last failure (after the disaster); the latest of those over all
  probes. A probe whose last sample failed is not restored.
- **RPO** = the data-loss window measured from the canary: for every acknowledged write that is missing after
  recovery, the time from the newest acknowledged write still present before it (or the canary's start) to its own
  acknowledgement; the largest such window. With a lost tail this is "last acknowledged write minus newest
  acknowledged write present"; a hole (writes missing between present ones) counts with its own width. No write
  missing → RPO 0.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from drillbit.client import VirtEngineClient
from drillbit.model import Criterion, Outcome, Sample, Timeline, Verdict
from drillbit.probes import CheckFailed, WriteCanary

DISASTER = "disaster"  # timeline event kind marking the disaster moment
STEP = "step"  # timeline event kind of a finished recovery step
RPO_EVENT = "rpo_measured"

# ------------------------------------------------------------------------------------------------------------ steps


@dataclass
class Step:
    """One timed step of a drill (disaster, promote, restore, ...)."""

    name: str
    started_at: float
    finished_at: float | None = None
    ok: bool | None = None
    detail: str = ""
    error: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = None if self.seconds is None else round(self.seconds, 3)
        return d


class StepLog:
    """Times every step and mirrors it into the timeline as a ``step`` event (so grading needs only the Timeline)."""

    def __init__(self, timeline: Timeline | None = None) -> None:
        self.steps: list[Step] = []
        self.timeline = timeline

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "", started_at: float | None = None) -> Iterator[Step]:
        """Time the block as step ``name`` (from ``started_at`` if it began earlier); a raising block fails it."""
        s = Step(name, time.time() if started_at is None else started_at, detail=detail)
        self.steps.append(s)
        try:
            yield s
        except BaseException as exc:
            s.ok, s.error = False, f"{exc.__class__.__name__}: {exc}"[:500]
            raise
        else:
            s.ok = True
        finally:
            s.finished_at = time.time()
            self._mirror(s)

    def record(
        self, name: str, started_at: float, finished_at: float, ok: bool = True, detail: str = "", **evidence: Any
    ) -> Step:
        """A step timed elsewhere (e.g. a sub-step reported by the sandbox launcher: ``evidence["parent"]``)."""
        s = Step(name, started_at, finished_at, ok, detail, evidence=dict(evidence))
        self.steps.append(s)
        self._mirror(s)
        return s

    def _mirror(self, s: Step) -> None:
        if self.timeline is not None:
            took = f" in {s.seconds:.2f} s" if s.seconds is not None else ""
            text = (
                f"{s.name}{took}" + (f": {s.detail}" if s.detail else "") + (f" — FAILED {s.error}" if s.error else "")
            )
            self.timeline.event(STEP, text, at=s.started_at, **{"step": s.to_dict()})

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]


def steps_of(timeline: Timeline) -> list[dict[str, Any]]:
    """The steps recorded in a timeline, in start order."""
    return sorted((e["step"] for e in timeline.events if e["kind"] == STEP), key=lambda s: s["started_at"])


def disaster_at(timeline: Timeline) -> float | None:
    marks = [e["ts"] for e in timeline.events if e["kind"] == DISASTER]
    return marks[-1] if marks else None


# -------------------------------------------------------------------------------------------------------------- RTO


@dataclass
class RtoResult:
    disaster_at: float
    restored_at: float | None
    per_probe: dict[str, float | None]
    observed_until: float | None

    @property
    def rto_s(self) -> float | None:
        return None if self.restored_at is None else self.restored_at - self.disaster_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "disaster_at": self.disaster_at,
            "restored_at": self.restored_at,
            "rto_s": None if self.rto_s is None else round(self.rto_s, 3),
            "per_probe_s": {
                p: None if t is None else round(t - self.disaster_at, 3) for p, t in self.per_probe.items()
            },
            "observed_until": self.observed_until,
        }


def _frame(samples: pd.DataFrame | Iterable[Sample]) -> pd.DataFrame:
    if isinstance(samples, pd.DataFrame):
        return samples
    rows = [{"probe": s.probe, "ts": s.ts, "ok": s.ok} for s in samples]
    return pd.DataFrame(rows, columns=["probe", "ts", "ok"])


def probe_restored_at(df: pd.DataFrame, probe: str, disaster: float) -> float | None:
    """First success of ``probe`` after its last failure since ``disaster`` (None if its last sample failed)."""
    after = df[(df["probe"] == probe) & (df["ts"] >= disaster)].sort_values("ts", kind="stable")
    if after.empty:
        return None
    ok = after["ok"].astype(bool)
    if not bool(ok.iloc[-1]):
        return None
    failed = after.loc[~ok, "ts"]
    later = after[ok] if failed.empty else after[ok & (after["ts"] > failed.max())]
    return float(later["ts"].iloc[0])


def measure_rto(samples: pd.DataFrame | Iterable[Sample], disaster: float, probes: Sequence[str]) -> RtoResult:
    """Steady state restored = every probe succeeds again (and stays so); RTO = that moment - ``disaster``."""
    df = _frame(samples)
    per = {p: probe_restored_at(df, p, disaster) for p in probes}
    restored = None if not per or any(t is None for t in per.values()) else max(t for t in per.values() if t)
    until = float(df["ts"].max()) if len(df) else None
    return RtoResult(disaster, restored, per, until)


# -------------------------------------------------------------------------------------------------------------- RPO


@dataclass
class Gap:
    """Consecutive acknowledged writes that are missing, and the window of data they stand for."""

    first: str
    last: str
    count: int
    since: float  # acknowledgement of the newest write still present before the gap (or the canary's start)
    until: float  # acknowledgement of the gap's last write

    @property
    def span_s(self) -> float:
        return max(0.0, self.until - self.since)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "span_s": round(self.span_s, 3)}


@dataclass
class RpoResult:
    rpo_s: float
    acknowledged: int
    present: int
    missing: list[str]
    gaps: list[Gap]
    last_acknowledged: tuple[str, float] | None  # the last one before the disaster, when it was given
    newest_present: tuple[str, float] | None  # likewise

    @property
    def lost_tail(self) -> bool:
        """The last write acknowledged (before the disaster) is missing: the newest data was lost."""
        return self.last_acknowledged is not None and self.last_acknowledged[0] in set(self.missing)

    def to_dict(self, limit: int = 200) -> dict[str, Any]:
        return {
            "rpo_s": round(self.rpo_s, 3),
            "acknowledged": self.acknowledged,
            "present": self.present,
            "missing_count": len(self.missing),
            "missing": self.missing[:limit],
            "gaps": [g.to_dict() for g in self.gaps],
            "lost_tail": self.lost_tail,
            "last_acknowledged": list(self.last_acknowledged) if self.last_acknowledged else None,
            "newest_present": list(self.newest_present) if self.newest_present else None,
        }


def measure_rpo(
    acked: Mapping[str, float], present: Iterable[str], since: float | None = None, disaster: float | None = None
) -> RpoResult:
    """RPO and the missing acknowledged writes, from the canary's acknowledgements and the keys found afterwards.

    ``acked`` maps each acknowledged key to its acknowledgement time; ``present`` are the keys read back after
    recovery; ``since`` is when the canary started (the start of a gap with no earlier present write);
    ``disaster`` (optional) makes ``last_acknowledged`` / ``newest_present`` the last ones before it.
    """
    found = set(present)
    order = sorted(acked.items(), key=lambda kv: (kv[1], kv[0]))
    start = since if since is not None else (order[0][1] if order else 0.0)
    gaps: list[Gap] = []
    last_present: tuple[str, float] | None = None
    current: Gap | None = None
    for key, ts in order:
        if key in found:
            last_present, current = (key, ts), None
            continue
        if current is None:
            current = Gap(key, key, 0, last_present[1] if last_present else start, ts)
            gaps.append(current)
        current.last, current.count, current.until = key, current.count + 1, ts
    missing = [k for k, _ in order if k not in found]
    before = [kv for kv in order if disaster is None or kv[1] < disaster]
    kept = [kv for kv in before if kv[0] in found]
    return RpoResult(
        rpo_s=max((g.span_s for g in gaps), default=0.0),
        acknowledged=len(order),
        present=len(order) - len(missing),
        missing=missing,
        gaps=gaps,
        last_acknowledged=before[-1] if before else None,
        newest_present=kept[-1] if kept else None,
    )


class DrCanary(WriteCanary):
    """The write canary of a drill: monotonically numbered records through the API.

    A write counts as *acknowledged* when the API answered 201 (applied) or 202 (queued durably): either way the API
    promised it. As a steady-state probe, though, only 201 succeeds: a queued write means the service is not back on
    its database yet.
    """

    def __init__(self, client: VirtEngineClient, prefix: str) -> None:
        super().__init__(client, prefix)
        self.started_at = time.time()

    def key(self, seq: int) -> str:
        return f"{self.prefix}-{seq:08d}"

    def check(self) -> float:
        seq = super().check()
        if self.key(int(seq)) in self.queued:
            raise CheckFailed(f"write {self.key(int(seq))} queued (202): the API is not writing to its database")
        return seq

    def present(self, timeout: float = 30.0) -> set[str]:
        """The canary's keys readable through the API now (a listing; per-key reads beyond the listing's limit)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                r = self.client.api_get("/api/v1/records", prefix=f"{self.prefix}-", limit=1000)
                if r.status_code == 200:
                    keys = {item["key"] for item in r.json().get("items", [])}
                    if len(keys) >= 1000:
                        keys |= {k for k in self.acked if k not in keys and self._exists(k)}
                    return keys
                last = f"HTTP {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            time.sleep(0.5)
        raise CheckFailed(f"cannot read the canary's records back within {timeout:.0f} s ({last})")

    def _exists(self, key: str) -> bool:
        return self.client.api_get(f"/api/v1/records/{key}").status_code == 200

    def measure(self, timeout: float = 30.0, disaster: float | None = None) -> RpoResult:
        with self._lock:
            acked = dict(self.acked)
        return measure_rpo(acked, self.present(timeout), since=self.started_at, disaster=disaster)


# ------------------------------------------------------------------------------------------------- state agreement


ID_FIELDS = ("owner", "dseq", "gseq", "oseq", "provider")
WRAPPERS = ("deployment", "bid", "lease")


def entity_states(items: Iterable[dict[str, Any]]) -> dict[str, str]:
    """``{id: state}`` of marketplace entities as served by Cosmos REST lists and by the API (same JSON shapes)."""
    out = {}
    for item in items:
        entity = item
        if "id" not in item:
            entity = next((item[w] for w in WRAPPERS if isinstance(item.get(w), dict)), item)
        ident = entity.get("id") or {}
        key = "/".join(str(ident[k]) for k in ID_FIELDS if k in ident)
        out[key] = str(entity.get("state", ""))
    return out


def compare_states(api: Mapping[str, Mapping[str, str]], chain: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Per kind: entities missing from the API, extra in the API, and with a different state."""
    out: dict[str, Any] = {"equal": True, "kinds": {}}
    for kind in sorted(set(api) | set(chain)):
        a, c = api.get(kind, {}), chain.get(kind, {})
        diff = {
            "chain": len(c),
            "api": len(a),
            "missing_in_api": sorted(set(c) - set(a)),
            "extra_in_api": sorted(set(a) - set(c)),
            "different": [{"id": k, "api": a[k], "chain": c[k]} for k in sorted(set(a) & set(c)) if a[k] != c[k]],
        }
        if diff["missing_in_api"] or diff["extra_in_api"] or diff["different"]:
            out["equal"] = False
        out["kinds"][kind] = diff
    return out


# --------------------------------------------------------------------------------------------------------- criteria


def rto_criterion(name: str, target_s: float, probes: Sequence[str]) -> Criterion:
    """RTO (disaster → every steady-state probe succeeding again) under ``target_s``."""

    def check(tl: Timeline) -> Verdict:
        t0 = disaster_at(tl)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no disaster recorded (the drill stopped before it)")
        result = measure_rto(tl.frame, t0, probes)
        ev = result.to_dict()
        if result.rto_s is None:
            waiting = [p for p, t in result.per_probe.items() if t is None]
            return Verdict(name, Outcome.FAIL, f"steady state not restored ({', '.join(waiting)} still failing)", ev)
        outcome = Outcome.PASS if result.rto_s < target_s else Outcome.FAIL
        return Verdict(name, outcome, f"service restored {result.rto_s:.1f} s after the disaster", ev)

    return Criterion(name, f"RTO < {_duration(target_s)}", check)


def rpo_criterion(name: str, target_s: float) -> Criterion:
    """RPO (from the canary) under ``target_s`` (0 = no acknowledged write may be missing)."""

    def check(tl: Timeline) -> Verdict:
        e = tl.last_event(RPO_EVENT)
        if e is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "the canary's writes were not read back")
        ev = {k: e[k] for k in ("rpo_s", "acknowledged", "present", "missing_count", "missing", "gaps", "lost_tail")}
        ev["missing"] = ev["missing"][:50]
        if e["acknowledged"] == 0:
            return Verdict(name, Outcome.INCONCLUSIVE, "no write was acknowledged before the disaster", ev)
        ok = e["missing_count"] == 0 if target_s <= 0 else e["rpo_s"] < target_s
        if e["missing_count"]:
            first, last = e["missing"][0], e["missing"][-1]
            reason = (
                f"RPO {e['rpo_s']:.1f} s: {e['missing_count']} of {e['acknowledged']} acknowledged writes lost "
                f"({first} … {last})"
            )
        else:
            reason = f"RPO 0: all {e['acknowledged']} acknowledged writes present"
        return Verdict(name, Outcome.PASS if ok else Outcome.FAIL, reason, ev)

    threshold = "no acknowledged write missing (RPO 0)" if target_s <= 0 else f"RPO < {_duration(target_s)}"
    return Criterion(name, threshold, check)


def step_criterion(name: str, steps: Sequence[str], budget_s: float) -> Criterion:
    """The named steps (together) succeeded within ``budget_s`` seconds."""

    def check(tl: Timeline) -> Verdict:
        done = [s for s in steps_of(tl) if s["name"] in steps]
        if not done:
            return Verdict(name, Outcome.INCONCLUSIVE, f"not reached: {', '.join(steps)}")
        failed = [s for s in done if not s["ok"]]
        took = sum(s["seconds"] or 0.0 for s in done)
        ev = {"seconds": round(took, 3), "steps": {s["name"]: s["seconds"] for s in done}}
        if failed:
            return Verdict(name, Outcome.FAIL, f"{failed[0]['name']} failed: {failed[0]['error']}", ev)
        outcome = Outcome.PASS if took < budget_s else Outcome.FAIL
        return Verdict(name, outcome, f"{', '.join(s['name'] for s in done)} took {took:.1f} s", ev)

    return Criterion(name, f"< {_duration(budget_s)}", check)


def span_criterion(name: str, until: Sequence[str], budget_s: float) -> Criterion:
    """Wall-clock time from the disaster to the end of the last of the ``until`` steps, under ``budget_s``."""

    def check(tl: Timeline) -> Verdict:
        t0 = disaster_at(tl)
        done = [s for s in steps_of(tl) if s["name"] in until]
        if t0 is None or not done:
            return Verdict(name, Outcome.INCONCLUSIVE, "not reached")
        failed = [s for s in done if not s["ok"]]
        end = max(s["finished_at"] for s in done)
        took = end - t0
        ev = {"seconds": round(took, 3), "until": until[-1]}
        if failed or len(done) < len(until):
            why = (
                failed[0]["error"]
                if failed
                else f"not reached: {', '.join(sorted(set(until) - {s['name'] for s in done}))}"
            )
            return Verdict(name, Outcome.FAIL, why, ev)
        outcome = Outcome.PASS if took < budget_s else Outcome.FAIL
        return Verdict(name, outcome, f"done {took:.1f} s after the disaster", ev)

    return Criterion(name, f"< {_duration(budget_s)} from the disaster", check)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# ----------------------------------------------------------------------------------------------------- the report


def scenario_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The drill-report row of one scenario's run record (``metrics["dr"]`` written by the DR flows)."""
    dr = (record.get("metrics") or {}).get("dr", {})
    return {
        "scenario": dr.get("scenario") or record.get("scenario") or record.get("flow"),
        "flow": record.get("flow"),
        "run_id": record.get("run_id"),
        "outcome": record.get("outcome"),
        "rto_s": dr.get("rto_s"),
        "rto_target_s": dr.get("rto_target_s"),
        "rpo_s": dr.get("rpo_s"),
        "rpo_target_s": dr.get("rpo_target_s"),
        "lost_writes": dr.get("missing_count"),
    }


def _fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _at(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def drill_report(drill: dict[str, Any]) -> str:
    """The quarterly drill report (markdown): RTO/RPO against targets, each scenario's timeline, evidence, verdicts."""
    lines = [
        f"# DR drill — {str(drill.get('outcome', '')).upper()}",
        "",
        f"Environment **{drill.get('environment')}**, run `{drill.get('run_id')}`, "
        f"from {_at(drill.get('started_at'))} to {_at(drill.get('finished_at'))}.",
        "",
        "## RTO / RPO against targets",
        "",
        "| Scenario | Outcome | RTO | RTO target | RPO | RPO target | Lost writes |",
        "|---|---|---|---|---|---|---|",
    ]
    scenarios = drill.get("scenarios", [])
    skipped = {x["scenario"]: x for x in drill.get("skipped", [])}
    order = drill.get("order") or [scenario_summary(r)["scenario"] for r in scenarios] + list(skipped)
    by_name = {scenario_summary(r)["scenario"]: r for r in scenarios}
    for name in order:
        if name in skipped:
            lines.append(f"| {name} | not run: {skipped[name]['why']} | — | — | — | — | — |".replace("\n", " "))
            continue
        if name not in by_name:
            continue
        s = scenario_summary(by_name[name])
        lost = "—" if s["lost_writes"] is None else s["lost_writes"]
        lines.append(
            f"| {s['scenario']} | {s['outcome']} | {_fmt_s(s['rto_s'])} | {_fmt_s(s['rto_target_s'])} | "
            f"{_fmt_s(s['rpo_s'])} | {_fmt_s(s['rpo_target_s'])} | {lost} |"
        )
    if drill.get("approvals"):
        lines += ["", "## Approvals", ""]
        for a in drill["approvals"]:
            verdict = "approved" if a.get("approve") else "REFUSED"
            lines.append(f"- {a['scenario']}: {verdict} by {a.get('approver') or '?'} at {_at(a.get('at'))}")
    for rec in scenarios:
        lines += _scenario_section(rec)
    return "\n".join(lines) + "\n"


def _scenario_section(rec: dict[str, Any]) -> list[str]:
    dr = (rec.get("metrics") or {}).get("dr", {})
    t0 = dr.get("disaster_at")
    lines = ["", f"## {dr.get('scenario') or rec.get('flow')} — {str(rec.get('outcome', '')).upper()}", ""]
    lines += ["| Step | Start (s from disaster) | Took | Result |", "|---|---|---|---|"]
    for s in dr.get("steps", []):
        rel = "—" if t0 is None else f"{s['started_at'] - t0:+.2f}"
        result = "ok" if s.get("ok") else f"FAILED: {s.get('error')}"
        detail = f" ({s['detail']})" if s.get("detail") else ""
        lines.append(f"| {s['name']}{detail} | {rel} | {_fmt_s(s.get('seconds'))} | {result} |".replace("\n", " "))
    lines += ["", "| Criterion | Outcome | Threshold | Reason |", "|---|---|---|---|"]
    for v in rec.get("verdicts", []):
        cells = [v["criterion"], v["outcome"], v.get("threshold", ""), v.get("reason", "")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    evidence = dr.get("evidence")
    if evidence:
        lines += ["", "Evidence:", "", "```json", json.dumps(evidence, indent=2, default=str)[:6000], "```"]
    return lines


# ------------------------------------------------------------------------------------ one writer after a failover

WRITERS_EVENT = "writers_history"  # timeline event: every write of both writers, and what survived (see below)
HISTORY_LIMIT = 10  # writes listed in a verdict's evidence


@dataclass
class WriteAttempt:
    """One write of a failover drill's workload, as its client saw it.

    ``side`` is who wrote it: ``api`` (the write canary, through the API that fails over) or ``stranded`` (region A's
    own side, writing straight to the old primary during a partition). ``acked_at`` is when the server acknowledged
    it (None: refused, failed or unanswered); ``primary`` which primary acknowledged it (``old`` / ``new``) when the
    writer knows."""

    key: str
    side: str
    at: float
    acked_at: float | None = None
    primary: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _writes(event: Mapping[str, Any]) -> list[WriteAttempt]:
    return [WriteAttempt(**w) for w in event.get("writes", [])]


def _listed(writes: Sequence[WriteAttempt], since: float | None = None) -> list[dict[str, Any]]:
    return [
        {
            "key": w.key,
            "side": w.side,
            "primary": w.primary,
            "acked_at": w.acked_at,
            **({} if since is None or w.acked_at is None else {"s_after": round(w.acked_at - since, 3)}),
        }
        for w in sorted(writes, key=lambda w: (w.acked_at or w.at, w.key))[:HISTORY_LIMIT]
    ]


def one_writer_criterion(name: str = "exactly one primary accepts writes after failover") -> Criterion:
    """After the failover completed (plus the event's ``grace_s``, the bounded time the fence may take), the old
    primary acknowledged no write of the stranded writer. Graded from the writer's own acknowledgements (a client
    reading its answers), never from the primary's health or role."""

    def check(tl: Timeline) -> Verdict:
        e = tl.last_event(WRITERS_EVENT)
        if e is None:
            return Verdict(
                name, Outcome.INCONCLUSIVE, "the writers' history was not recorded (the drill stopped early)"
            )
        writes, failover_at, grace = _writes(e), e.get("failover_at"), float(e.get("grace_s", 0.0))
        if failover_at is None:
            why = "the failover did not complete: there is no 'after the failover' to grade"
            return Verdict(name, Outcome.INCONCLUSIVE, why, {"harness_error": e.get("harness_error")})
        cutoff = float(failover_at) + grace
        old = [w for w in writes if w.side == "stranded"]
        after = [w for w in old if w.at >= cutoff or (w.acked_at is not None and w.acked_at >= cutoff)]
        acked_after = [w for w in after if w.acked_at is not None and w.acked_at >= cutoff]
        new_acked = [w for w in writes if w.side == "api" and w.acked_at is not None and w.acked_at >= failover_at]
        ev = {
            "failover_at": failover_at,
            "grace_s": grace,
            "old_primary_attempted": len(old),
            "old_primary_attempted_after_failover": len(after),
            "old_primary_acknowledged_after_failover": len(acked_after),
            "old_primary_acknowledged_total": sum(1 for w in old if w.acked_at is not None),
            "new_primary_acknowledged_after_failover": len(new_acked),
            "first_acknowledged_by_old_primary": _listed(acked_after, cutoff),
            "harness_error": e.get("harness_error"),
        }
        if acked_after:
            first = ev["first_acknowledged_by_old_primary"][0]
            reason = (
                f"the old primary acknowledged {len(acked_after)} of {len(after)} writes after the failover (+"
                f"{grace:g} s grace), the first {first['key']} {first['s_after']:.2f} s after it: two primaries "
                "accepted writes"
            )
            return Verdict(name, Outcome.FAIL, reason, ev)
        if not after:
            why = e.get("harness_error") or "the stranded writer made no attempt after the failover"
            return Verdict(name, Outcome.INCONCLUSIVE, f"nothing to grade: {why}", ev)
        reason = (
            f"the old primary refused all {len(after)} writes attempted after the failover (+{grace:g} s grace); "
            f"the new primary acknowledged {len(new_acked)}"
        )
        return Verdict(name, Outcome.PASS, reason, ev)

    return Criterion(name, "no write acknowledged by the old primary after the failover (+ fence grace)", check)


def no_discarded_ack_criterion(name: str = "no acknowledged write discarded") -> Criterion:
    """Every write acknowledged (by either writer, by either primary) after the partition began is in the surviving
    primary's history after the drill (the event's ``present`` keys, read from it). No write attempted at all is not
    a pass: inconclusive (the harness did not run the workload), or FAIL when every attempt was refused."""

    def check(tl: Timeline) -> Verdict:
        e = tl.last_event(WRITERS_EVENT)
        if e is None:
            return Verdict(
                name, Outcome.INCONCLUSIVE, "the writers' history was not recorded (the drill stopped early)"
            )
        if e.get("present") is None:
            why = e.get("harness_error") or "the surviving primary's history was not read"
            return Verdict(name, Outcome.INCONCLUSIVE, f"cannot compare: {why}")
        since = float(e.get("partition_at") or 0.0)
        present = set(e["present"])
        writes = [w for w in _writes(e) if w.at >= since or (w.acked_at is not None and w.acked_at >= since)]
        acked = [w for w in writes if w.acked_at is not None]
        lost = [w for w in acked if w.key not in present]
        ev = {
            "partition_at": e.get("partition_at"),
            "attempted": {s: sum(1 for w in writes if w.side == s) for s in ("api", "stranded")},
            "acknowledged": {s: sum(1 for w in acked if w.side == s) for s in ("api", "stranded")},
            "lost_count": len(lost),
            "lost": _listed(lost),
            "harness_error": e.get("harness_error"),
        }
        if lost:
            first = lost[0]
            reason = (
                f"{len(lost)} of {len(acked)} writes acknowledged after the partition began are not in the surviving "
                f"primary's history (first {first.key}, acknowledged by the {first.primary or '?'} primary)"
            )
            return Verdict(name, Outcome.FAIL, reason, ev)
        if not writes:
            why = e.get("harness_error") or "no write was attempted after the partition began"
            return Verdict(name, Outcome.INCONCLUSIVE, f"nothing to grade: {why}", ev)
        if not acked:
            reason = f"the system refused all {len(writes)} writes attempted after the partition began"
            return Verdict(name, Outcome.FAIL, reason, ev)
        return Verdict(name, Outcome.PASS, f"all {len(acked)} acknowledged writes are in the surviving primary", ev)

    return Criterion(name, "every write acknowledged after the partition is in the surviving primary", check)
