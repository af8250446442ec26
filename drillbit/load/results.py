"""The generator's records → samples, coordinated-omission-corrected percentiles (HDR), per-second time series.

Every operation carries three times: *intended* (its slot in the schedule), *sent* and *done*. The corrected latency
``done - intended`` is what a user arriving on schedule waited; the uncorrected ``done - sent`` is what a closed-loop
tool reports (it starts the clock when it finally gets to send). In the Timeline a sample's ``ts`` is the intended
start, ``latency`` the corrected latency and ``value`` the uncorrected one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from drillbit.model import Sample, Timeline

RECORD_DTYPE = np.dtype(
    [
        ("name", "u1"),
        ("intended", "<f8"),
        ("sent", "<f8"),
        ("done", "<f8"),
        ("ok", "u1"),
        ("status", "<i2"),
        ("err", "<i4"),
        ("value", "<f8"),
    ]
)
PCTS = (50.0, 90.0, 95.0, 99.0, 99.9)
HDR_UNIT = 1e-6  # histograms count microseconds
HDR_MAX_US = 3_600_000_000  # one hour
HOST_SAMPLES = "host-samples.json"  # the harness's own health over the run (host-cpu, harness-cpu, lateness)
LATE_S = 1.0  # an operation sent this much after its intended start means the generator fell behind


# ------------------------------------------------------------------------------------------------ HDR histograms


def hdr(latencies_s: np.ndarray) -> HdrHistogram:
    """An HDR histogram (1 µs .. 1 h, 3 significant digits) of latencies in seconds (vectorised recording)."""
    h = HdrHistogram(1, HDR_MAX_US, 3)
    us = np.clip(np.rint(np.asarray(latencies_s, dtype=float) / HDR_UNIT), 1, HDR_MAX_US)
    us = us[~np.isnan(us)].astype(np.int64)
    if len(us):
        # group equal values first: record_value is per call, the counts per distinct microsecond are few
        values, counts = np.unique(_hdr_round(us), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            h.record_value(v, c)
    return h


def _hdr_round(us: np.ndarray) -> np.ndarray:
    """Round to 3 significant digits (below HDR's own resolution at that precision, so nothing changes)."""
    mag = np.floor(np.log10(np.maximum(us, 1))).astype(np.int64)
    scale = np.power(10, np.maximum(mag - 3, 0))
    return (us // scale) * scale


def hdr_percentiles(h: HdrHistogram, pcts: tuple[float, ...] = PCTS) -> dict[str, float]:
    """Percentiles (s) of an HDR histogram, plus mean, max and count."""
    n = h.get_total_count()
    if not n:
        return {"count": 0}
    out: dict[str, float] = {f"p{p:g}_s": h.get_value_at_percentile(p) * HDR_UNIT for p in pcts}
    out.update(mean_s=h.get_mean_value() * HDR_UNIT, max_s=h.get_max_value() * HDR_UNIT, count=int(n))
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def encode(h: HdrHistogram) -> str:
    raw = h.encode()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded)


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class LoadData:
    """Everything one generator run recorded (all processes merged)."""

    frame: pd.DataFrame  # probe, ts (intended), ok, latency (corrected), value (uncorrected), error, phase, sent, done
    t0: float
    profile: list[list[Any]]
    phases: list[tuple[str, float, float | None]]
    metas: list[dict[str, Any]]
    locust_stats: list[dict[str, Any]] = field(default_factory=list)
    host: list[Sample] = field(default_factory=list)  # host-cpu, harness-cpu, harness-lateness over the run

    @property
    def aborted(self) -> list[str]:
        return [m["aborted"] for m in self.metas if m.get("aborted")]

    @property
    def end(self) -> float:
        return self.phases[-1][2] or self.t0

    def events(self) -> list[dict[str, Any]]:
        return [
            {"ts": self.end, "kind": "aborted", "detail": f"generator stopped the schedule: {reason}"}
            for reason in dict.fromkeys(self.aborted)
        ]

    def timeline(self) -> Timeline:
        tl = Timeline.from_frame(self.frame, self.phases)
        tl.extend(self.host)  # what ``drillbit.soundness`` reads to tell a slow system from a slow harness
        tl.events = self.events()
        return tl

    def select(self, probe: str) -> pd.DataFrame:
        return self.frame[self.frame["probe"] == probe]


def read(out_dir: Path) -> LoadData:
    """Merge every process's records and meta file from a run directory."""
    metas = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("meta-*.json"))]
    if not metas:
        raise FileNotFoundError(f"no generator meta files in {out_dir}")
    parts = []
    for meta in metas:
        raw = np.fromfile(Path(out_dir) / meta["samples_file"], dtype=RECORD_DTYPE)
        if len(raw):
            parts.append(_frame(raw, meta["names"], meta["errors"]))
    t0s = [m["t0"] for m in metas if m.get("t0")]
    t0 = min(t0s) if t0s else (min(float(p["ts"].min()) for p in parts) if parts else 0.0)
    profile = metas[0]["profile"]
    frame = _concat(parts)
    stats_path = Path(out_dir) / "locust.json"
    locust_stats = json.loads(stats_path.read_text()) if stats_path.exists() else []
    host_path = Path(out_dir) / HOST_SAMPLES
    host = [Sample(**row) for row in json.loads(host_path.read_text())] if host_path.exists() else []
    return LoadData(frame, t0, profile, phases_of(profile, t0), metas, locust_stats, host)


def phases_of(profile: list[list[Any]], t0: float) -> list[tuple[str, float, float | None]]:
    out, t = [], t0
    for name, seconds, *_ in profile:
        out.append((str(name), t, t + float(seconds)))
        t += float(seconds)
    return out


def _frame(raw: np.ndarray, names: list[str], errors: list[str]) -> pd.DataFrame:
    err_idx = raw["err"].astype(np.int64)
    err_cats = pd.Categorical.from_codes(np.where(err_idx >= 0, err_idx, -1), categories=_unique(errors))
    return pd.DataFrame(
        {
            "probe": pd.Categorical.from_codes(raw["name"].astype(np.int64), categories=_unique(names)),
            "ts": raw["intended"],
            "ok": raw["ok"].astype(bool),
            "latency": raw["done"] - raw["intended"],
            "value": raw["done"] - raw["sent"],
            "error": err_cats,
            "phase": pd.Categorical.from_codes(np.full(len(raw), -1), categories=["_"]),
            "sent": raw["sent"],
            "done": raw["done"],
        }
    )


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:  # categories must be unique; a repeated label (never expected) gets a suffix
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label if n == 0 else f"{label} ({n})")
    return out or ["_"]


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        cols = ["probe", "ts", "ok", "latency", "value", "error", "phase", "sent", "done"]
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    if len(parts) == 1:
        df = parts[0]
    else:
        for col in ("probe", "error", "phase"):  # union the categories so the columns stay categorical
            cats = list(dict.fromkeys(c for p in parts for c in p[col].cat.categories))
            for p in parts:
                p[col] = p[col].cat.set_categories(cats)
        df = pd.concat(parts, ignore_index=True)
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- statistics


def latency_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Corrected and uncorrected percentiles (HDR) of one probe's samples, with the encoded histograms."""
    corrected, uncorrected = hdr(df["latency"].to_numpy(float)), hdr(df["value"].to_numpy(float))
    return {
        "corrected": hdr_percentiles(corrected),
        "uncorrected": hdr_percentiles(uncorrected),
        "hdr_corrected": encode(corrected),
        "hdr_uncorrected": encode(uncorrected),
    }


def throughput(df: pd.DataFrame, start: float, end: float) -> float:
    """Successful completions per second within ``[start, end)``."""
    if end <= start:
        return float("nan")
    done = df.loc[df["ok"].astype(bool), "done"].to_numpy(float)
    return float(((done >= start) & (done < end)).sum() / (end - start))


def offered(df: pd.DataFrame, start: float, end: float) -> float:
    """Operations the generator sent per second within ``[start, end)`` (by send time)."""
    if end <= start:
        return float("nan")
    sent = df["sent"].to_numpy(float)
    return float(((sent >= start) & (sent < end)).sum() / (end - start))


def lateness(df: pd.DataFrame) -> dict[str, float]:
    """How far behind its schedule the generator sent (s): p99, max and the fraction sent over LATE_S late."""
    late = (df["sent"] - df["ts"]).to_numpy(float)
    if not len(late):
        return {"p99_s": float("nan"), "max_s": float("nan"), "late_fraction": float("nan")}
    return {
        "p99_s": round(float(np.percentile(late, 99)), 4),
        "max_s": round(float(late.max()), 4),
        "late_fraction": round(float((late > LATE_S).mean()), 6),
    }


def per_second(df: pd.DataFrame, t0: float, end: float | None = None) -> pd.DataFrame:
    """One row per second since ``t0``: sent/s, ok and failed completions/s, corrected p50/p95/p99 and uncorrected
    p99 of the operations *intended* in that second."""
    if df.empty:
        return pd.DataFrame(columns=["second", "sent", "ok", "failed", "p50", "p95", "p99", "p99_uncorrected"])
    last = math.ceil((end if end is not None else float(df["done"].max())) - t0)
    index = pd.RangeIndex(0, max(last, 1), name="second")
    ok = df["ok"].astype(bool)
    sent = np.floor(df["sent"] - t0).astype(int).value_counts()
    done_ok = np.floor(df.loc[ok, "done"] - t0).astype(int).value_counts()
    done_bad = np.floor(df.loc[~ok, "done"] - t0).astype(int).value_counts()
    by = np.floor(df["ts"] - t0).astype(int)
    q = df.groupby(by.to_numpy())["latency"].quantile([0.5, 0.95, 0.99]).unstack()
    q.columns = ["p50", "p95", "p99"]
    unc = df.groupby(by.to_numpy())["value"].quantile(0.99).rename("p99_uncorrected")
    out = pd.DataFrame(index=index)
    out["sent"] = sent.reindex(index, fill_value=0).to_numpy()
    out["ok"] = done_ok.reindex(index, fill_value=0).to_numpy()
    out["failed"] = done_bad.reindex(index, fill_value=0).to_numpy()
    out = out.join(q).join(unc)
    return out.reset_index()


def locust_summary(stats: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What plain Locust reports (its own stats, latency from the actual send), per request name."""
    out = {}
    for entry in stats:
        times = {int(float(k)): int(v) for k, v in (entry.get("response_times") or {}).items()}
        n = int(entry.get("num_requests", 0))
        row: dict[str, Any] = {"requests": n, "failures": int(entry.get("num_failures", 0))}
        if n:
            row["avg_s"] = round(entry.get("total_response_time", 0) / n / 1000, 6)
            row["max_s"] = round(float(entry.get("max_response_time") or 0) / 1000, 6)
            for p in (50, 95, 99):
                row[f"p{p}_s"] = _hist_percentile(times, p) / 1000
        out[entry.get("name", "?")] = row
    return out


def _hist_percentile(times: dict[int, int], pct: float) -> float:
    """Locust's own percentile of its rounded response-time histogram (ms)."""
    total = sum(times.values())
    if not total:
        return 0.0
    rank = total * pct / 100
    seen = 0
    for value in sorted(times):
        seen += times[value]
        if seen >= rank:
            return float(value)
    return float(max(times))
