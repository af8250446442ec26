"""Throughput and latency percentiles over time for one load run (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from drillbit.report import PHASE_COLOURS, save_figure


def plot_load(
    per_second: pd.DataFrame,
    phases: list[tuple[str, float, float | None]],
    t0: float,
    path: Path,
    *,
    title: str = "",
    target_rate: list[list] | None = None,
    p95_budget: float | None = None,
) -> Path | None:
    """Two panels: operations per second (target, sent, ok, failed) and corrected p50/p95/p99 with the uncorrected
    p99 dashed, phases shaded and the p95 budget drawn. None when there is nothing to plot."""
    if per_second.empty:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    x = per_second["second"].to_numpy(float) + 0.5
    for ax in (top, bottom):
        for i, (name, start, end) in enumerate(phases):
            colour = PHASE_COLOURS.get(name, ("#e6e6e6", "#f7f7f7")[i % 2])  # steps alternate
            ax.axvspan(start - t0, (end or start) - t0, color=colour, alpha=0.8, lw=0)
        ax.grid(alpha=0.3)
    if target_rate:
        tx, ty, t = [], [], 0.0
        for _phase, seconds, r0, r1 in target_rate:
            tx += [t, t + float(seconds)]
            ty += [float(r0), float(r1)]
            t += float(seconds)
        top.plot(tx, ty, color="#555", ls="--", lw=1, label="target rate")
    top.plot(x, per_second["sent"], color="#2b6cb0", lw=1, label="sent/s")
    top.plot(x, per_second["ok"], color="#2f855a", lw=1.2, label="ok/s (completed)")
    if per_second["failed"].any():
        top.plot(x, per_second["failed"], color="#c53030", lw=1, label="failed/s")
    top.set_ylabel("operations per second")
    top.legend(loc="upper left", fontsize=7, ncol=4)
    for col, colour, label in (("p50", "#2f855a", "p50"), ("p95", "#dd6b20", "p95"), ("p99", "#c53030", "p99")):
        bottom.plot(x, per_second[col], color=colour, lw=1.1, label=f"{label} (corrected)")
    bottom.plot(x, per_second["p99_uncorrected"], color="#c53030", lw=0.9, ls=":", label="p99 (uncorrected)")
    if p95_budget:
        bottom.axhline(p95_budget, color="#744210", ls="--", lw=1, label=f"p95 budget {p95_budget:g} s")
    values = per_second[["p50", "p95", "p99"]].to_numpy(float)
    if np.isfinite(values).any() and np.nanmin(values) > 0 and np.nanmax(values) / np.nanmin(values) > 50:
        bottom.set_yscale("log")
    bottom.set_ylabel("latency (s), by intended start")
    bottom.set_xlabel("seconds since the schedule started (phases: " + ", ".join(p[0] for p in phases[:6]) + ")")
    bottom.legend(loc="upper left", fontsize=7, ncol=5)
    return save_figure(fig, path, title)
