"""The experiment model every test type shares: Sample → Timeline (phases) → Criterion → Verdict → RunRecord.

No Prefect here: flows and tasks wrap this, so a run can be re-graded from stored data without an orchestrator.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """One look at the target by one probe."""

    probe: str
    ts: float  # unix seconds when the look started
    ok: bool
    latency: float | None = None  # seconds
    value: float | None = None  # what the probe measured, when it measures a number (height, lag, depth ...)
    error: str | None = None
    phase: str | None = None  # set by the Timeline when not given


class Phase(StrEnum):
    BASELINE = "baseline"
    INJECTION = "injection"
    RECOVERY = "recovery"
    RAMP = "ramp"
    STEADY = "steady"


SAMPLE_COLUMNS = ["probe", "ts", "ok", "latency", "value", "error", "phase"]


class Timeline:
    """Samples over time with phase boundaries; everything graded is computed from it.

    Phases are half-open intervals ``[start, end)`` in unix seconds, in order. A sample belongs to the phase its
    timestamp falls in (samples outside every phase keep the phase they were given, or ``None``).
    """

    def __init__(self) -> None:
        self._rows: list[Sample] = []
        self._frames: list[pd.DataFrame] = []  # bulk samples (load tests, stored runs) kept columnar
        self.phases: list[tuple[str, float, float | None]] = []  # (name, start, end)
        self.events: list[dict[str, Any]] = []  # machine events: injection, revert, alert fired, ...
        self._frame: pd.DataFrame | None = None

    # ---- building
    def begin_phase(self, name: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        if self.phases and self.phases[-1][2] is None:
            prev_name, prev_start, _ = self.phases[-1]
            self.phases[-1] = (prev_name, prev_start, at)
        self.phases.append((str(name), at, None))
        self._frame = None

    def end(self, at: float | None = None) -> None:
        if self.phases and self.phases[-1][2] is None:
            name, start, _ = self.phases[-1]
            self.phases[-1] = (name, start, time.time() if at is None else at)
            self._frame = None

    def add(self, sample: Sample) -> None:
        self._rows.append(sample)
        self._frame = None

    def extend(self, samples: Iterable[Sample]) -> None:
        self._rows.extend(samples)
        self._frame = None

    def event(self, kind: str, detail: str = "", at: float | None = None, **data: Any) -> None:
        self.events.append({"ts": time.time() if at is None else at, "kind": kind, "detail": detail, **data})

    # ---- reading
    def last_event(self, kind: str) -> dict[str, Any] | None:
        """The most recent event of ``kind`` (events are appended in time order), or None."""
        return next((e for e in reversed(self.events) if e["kind"] == kind), None)

    def last_event_ts(self, kind: str) -> float | None:
        e = self.last_event(kind)
        return None if e is None else e["ts"]

    def phase_of(self, ts: float) -> str | None:
        for name, start, end in self.phases:
            if ts >= start and (end is None or ts < end):
                return name
        return None

    def phase_bounds(self, name: str) -> tuple[float, float | None] | None:
        for n, start, end in self.phases:
            if n == name:
                return start, end
        return None

    @property
    def frame(self) -> pd.DataFrame:
        """A DataFrame with SAMPLE_COLUMNS, sorted by time, phases assigned."""
        if self._frame is None:
            parts = [f for f in self._frames if not f.empty]
            if self._rows:
                parts.append(pd.DataFrame([asdict(s) for s in self._rows], columns=SAMPLE_COLUMNS))
            if len(parts) == 1:
                df = parts[0]
            elif parts:
                df = pd.concat(parts, ignore_index=True)
            else:
                df = pd.DataFrame(columns=SAMPLE_COLUMNS)
            self._frame = self.assign_phases(df, self.phases)
        return self._frame

    @staticmethod
    def assign_phases(df: pd.DataFrame, phases: list[tuple[str, float, float | None]]) -> pd.DataFrame:
        """Sort by time and label each sample with the phase its timestamp falls in (vectorised)."""
        if df.empty:
            return df
        if not df["ts"].is_monotonic_increasing:
            df = df.sort_values("ts", kind="stable")
        if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0:
            df = df.reset_index(drop=True)
        else:
            df = df.copy(deep=False)  # new columns below must not touch the caller's frame
        # categoricals make the per-probe / per-phase selections of grading cheap on millions of rows
        if not isinstance(df["probe"].dtype, pd.CategoricalDtype):
            df["probe"] = df["probe"].astype("category")
        given = df["phase"]
        if phases:
            ts = df["ts"].to_numpy(dtype=float)
            starts = np.array([p[1] for p in phases], dtype=float)
            ends = np.array([p[2] if p[2] is not None else math.inf for p in phases], dtype=float)
            idx = np.searchsorted(starts, ts, side="right") - 1
            valid = (idx >= 0) & (ts < ends[np.clip(idx, 0, None)])
            names = list(dict.fromkeys(p[0] for p in phases))
            code_of = np.array([names.index(p[0]) for p in phases])
            codes = np.where(valid, code_of[np.clip(idx, 0, None)], -1)
            phase = pd.Categorical.from_codes(codes, categories=names)
            outside = ~valid & given.notna().to_numpy()
            if outside.any():  # keep the phase a sample was given when it falls outside every phase
                phase = pd.Series(phase, dtype=object).where(~outside, given).astype("category").array
            df["phase"] = phase
        elif not isinstance(given.dtype, pd.CategoricalDtype):
            df["phase"] = given.astype("category")
        return df

    @classmethod
    def from_frame(cls, df: pd.DataFrame, phases: list[tuple[str, float, float | None]] | None = None) -> Timeline:
        """A timeline over existing samples (kept columnar: millions of samples are fine)."""
        tl = cls()
        tl.phases = list(phases or [])
        tl._frames.append(df.reindex(columns=SAMPLE_COLUMNS))
        return tl

    def samples(self) -> list[Sample]:
        """Every sample as a Sample (for storing); prefer ``frame`` for computation."""
        return [Sample(**{k: _none(r[k]) for k in SAMPLE_COLUMNS}) for r in self.frame.to_dict("records")]

    def select(self, probe: str | None = None, phase: str | None = None) -> pd.DataFrame:
        df = self.frame
        if df.empty:
            return df
        if probe is not None:
            df = df[df["probe"] == probe]
        if phase is not None:
            df = df[df["phase"] == phase]
        return df

    def readings(self, probe: str, phase: str | None = None) -> pd.Series:
        """The values of the probe's successful checks (in the phase), in time order; failed checks carry none."""
        df = self.select(probe=probe, phase=phase)
        if df.empty:
            return pd.Series(dtype=float)
        return df.loc[df["ok"].astype(bool), "value"].dropna()

    def __len__(self) -> int:
        return len(self._rows) + sum(len(f) for f in self._frames)


def _none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------------------------------------------- verdicts


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass
class Verdict:
    criterion: str
    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    threshold: str = ""
    required: bool = True  # an inconclusive optional criterion is shown but does not block a pass

    @property
    def passed(self) -> bool:
        return self.outcome == Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "outcome": str(self.outcome),
            "reason": self.reason,
            "threshold": self.threshold,
            "evidence": _jsonable(self.evidence),
            "required": self.required,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(
            d["criterion"],
            Outcome(d["outcome"]),
            d["reason"],
            d.get("evidence", {}),
            d.get("threshold", ""),
            d.get("required", True),
        )


@dataclass
class Criterion:
    """A named predicate with a threshold over a Timeline (or any graded context) that yields a Verdict."""

    name: str
    threshold: str
    check: Callable[[Any], Verdict]
    required: bool = True

    def grade(self, context: Any) -> Verdict:
        try:
            verdict = self.check(context)
        except Exception as exc:  # a criterion that cannot be computed is inconclusive, never a pass
            verdict = Verdict(self.name, Outcome.INCONCLUSIVE, f"could not evaluate: {exc.__class__.__name__}: {exc}")
        verdict.criterion = self.name
        verdict.threshold = verdict.threshold or self.threshold
        verdict.required = self.required
        return verdict


def overall(verdicts: list[Verdict]) -> Outcome:
    """FAIL if any failed; otherwise INCONCLUSIVE if a required one was; PASS when every required criterion passed.

    An optional criterion (``required=False``) that is inconclusive — e.g. on-call acknowledgement where no
    acknowledgement source is configured — is reported but does not hold back a pass; if it fails, the run fails.
    """
    if any(v.outcome == Outcome.FAIL for v in verdicts):
        return Outcome.FAIL
    if not verdicts or any(v.outcome == Outcome.INCONCLUSIVE and v.required for v in verdicts):
        return Outcome.INCONCLUSIVE
    return Outcome.PASS


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


# ---------------------------------------------------------------------------------------------------------- records


@dataclass
class RunRecord:
    """Everything about one run, persisted before the verdict is reported."""

    flow: str
    environment: str
    parameters: dict[str, Any]
    started_at: float
    finished_at: float | None = None
    scenario: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    verdicts: list[Verdict] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = "running"  # running | completed | aborted | error
    outcome: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # name → path / url
    events: list[dict[str, Any]] = field(default_factory=list)
    flow_run_id: str | None = None

    def finish(self, verdicts: list[Verdict], status: str = "completed") -> RunRecord:
        self.verdicts = verdicts
        self.finished_at = time.time()
        self.status = status
        self.outcome = str(overall(verdicts)) if status == "completed" else status
        return self

    @property
    def passed(self) -> bool:
        return self.outcome == Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdicts"] = [v.to_dict() for v in self.verdicts]
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        d = dict(d)
        d["verdicts"] = [Verdict.from_dict(v) for v in d.get("verdicts", [])]
        return cls(**d)
