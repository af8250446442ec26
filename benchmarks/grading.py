"""Grading 10 million samples: percentiles per phase plus availability/latency criteria, through Drillbit's model.

Prints the time and the ratio to a bare numpy computation of the same percentiles measured in the same run (these
machines are noisy; compare ratios, not seconds). Goal: under 2 s for 10 M samples here.

    .venv/bin/python benchmarks/grading.py [N]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from drillbit import criteria
from drillbit.model import Timeline


def make_frame(n: int, seed: int = 7) -> tuple[pd.DataFrame, list[tuple[str, float, float]]]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, 3000, n))
    latency = rng.lognormal(mean=-2.0, sigma=0.6, size=n)
    ok = rng.random(n) > 0.002
    # producers of bulk samples (load generators, stored runs) hand over categorical probe/phase columns
    probe = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=["api"])
    phase = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=["baseline"])
    df = pd.DataFrame(
        {"probe": probe, "ts": ts, "ok": ok, "latency": latency, "value": np.nan, "error": None, "phase": phase}
    )
    phases = [("baseline", 0.0, 1000.0), ("injection", 1000.0, 2000.0), ("recovery", 2000.0, 3000.1)]
    return df, phases


def main(n: int = 10_000_000) -> None:
    df, phases = make_frame(n)
    t0 = time.perf_counter()
    tl = Timeline.from_frame(df, phases)
    frame = tl.frame
    table = criteria.percentiles_by_phase(frame)
    verdicts = []
    for phase in ("baseline", "injection", "recovery"):
        verdicts.append(criteria.availability(f"avail {phase}", "api", 0.99, phase=phase).grade(tl))
        verdicts.append(criteria.latency(f"p95 {phase}", "api", 95, 1.0, phase=phase).grade(tl))
    drillbit_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    ts, lat = df["ts"].to_numpy(), df["latency"].to_numpy()
    for _, start, end in phases:
        part = lat[(ts >= start) & (ts < end)]
        np.percentile(part, [50, 95, 99])
    numpy_s = time.perf_counter() - t1

    print(table.round(4).to_string())
    print(f"verdicts: {[(v.criterion, str(v.outcome)) for v in verdicts]}")
    print(f"samples: {n:,}")
    print(f"drillbit grading (phases + percentiles + 6 criteria): {drillbit_s:.2f} s (goal < 2 s)")
    print(f"bare numpy percentiles per phase:                     {numpy_s:.2f} s")
    print(f"ratio drillbit / numpy: {drillbit_s / numpy_s:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
