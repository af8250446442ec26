"""Reports: the verdict table (markdown / rows), the timeline plot (PNG) and the HTML page over stored runs.

Every string that leaves Drillbit goes through ``redact`` so that secrets never reach an artifact.
"""

from __future__ import annotations

import base64
import html
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from drillbit import slo
from drillbit.model import RunRecord, Timeline
from drillbit.score import resilience_score
from drillbit.secrets import redact
from drillbit.store import ResultsStore

PHASE_COLOURS = {
    "baseline": "#e8f1fb",
    "injection": "#fde2e1",
    "recovery": "#e5f5e0",
    "ramp": "#fff3d6",
    "steady": "#eeeeee",
}
OUTCOME_ICON = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive"}


def _fmt_evidence(evidence: dict[str, Any]) -> str:
    parts = []
    for k, v in evidence.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, list | dict):
            v = json.dumps(v)[:120]
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def verdict_rows(record: RunRecord) -> list[dict[str, str]]:
    return [
        {
            "criterion": v.criterion,
            "outcome": str(v.outcome),
            "threshold": v.threshold,
            "measured": redact(_fmt_evidence(v.evidence)),
            "reason": redact(v.reason),
        }
        for v in record.verdicts
    ]


def verdict_markdown(record: RunRecord) -> str:
    started = datetime.fromtimestamp(record.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    took = (record.finished_at or time.time()) - record.started_at
    lines = [
        f"# {record.flow}{' / ' + record.scenario if record.scenario else ''} — {record.outcome.upper()}",
        "",
        f"Environment **{record.environment}**, started {started}, took {took:.1f} s, run `{record.run_id}`.",
        "",
        "| Criterion | Outcome | Threshold | Measured | Reason |",
        "|---|---|---|---|---|",
    ]
    for row in verdict_rows(record):
        cells = [row["criterion"], OUTCOME_ICON.get(row["outcome"], row["outcome"]), row["threshold"], row["measured"]]
        cells.append(row["reason"])
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if record.metrics:
        lines += ["", "## Metrics", "", "```json", redact(json.dumps(record.metrics, indent=2, default=str)), "```"]
    if record.events:
        lines += ["", "## Timeline", ""]
        for e in record.events:
            at = datetime.fromtimestamp(e["ts"], UTC).strftime("%H:%M:%S.%f")[:-3]
            lines.append(f"- `{at}` **{e['kind']}** {redact(str(e.get('detail', '')))}")
    return "\n".join(lines)


def plot_timeline(
    timeline: Timeline, path: Path, title: str = "", thresholds: dict[str, float] | None = None
) -> Path | None:
    """Latency and success over time per probe, phases shaded, latency thresholds drawn. None without samples."""
    df = timeline.frame
    if df.empty:
        return None
    t0 = float(df["ts"].min())
    if timeline.phases:
        t0 = min(t0, timeline.phases[0][1])
    probes = list(dict.fromkeys(df["probe"]))
    fig, axes = plt.subplots(len(probes), 1, figsize=(10, 2.4 * len(probes) + 0.6), sharex=True, squeeze=False)
    for ax, probe in zip(axes[:, 0], probes, strict=True):
        sub = df[df["probe"] == probe]
        x = sub["ts"] - t0
        for name, start, end in timeline.phases:
            ax.axvspan(start - t0, (end or float(df["ts"].max())) - t0, color=PHASE_COLOURS.get(name, "#f4f4f4"))
        ok = sub["ok"].astype(bool)
        ax.plot(x[ok], sub["latency"][ok], "o", ms=3, color="#2b6cb0", label="ok")
        if (~ok).any():
            ax.plot(x[~ok], sub["latency"][~ok].fillna(0), "x", ms=6, color="#c53030", label="failed")
        if thresholds and probe in thresholds:
            ax.axhline(thresholds[probe], color="#c05621", ls="--", lw=1, label=f"threshold {thresholds[probe]:g} s")
        ax.set_ylabel(f"{probe}\nlatency (s)", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    for e in timeline.events:
        for ax in axes[:, 0]:
            ax.axvline(e["ts"] - t0, color="#555", lw=0.8, ls=":")
    axes[-1, 0].set_xlabel("seconds since start (phases: " + ", ".join(n for n, _, _ in timeline.phases) + ")")
    return save_figure(fig, path, title)


def save_figure(fig: Any, path: Path, title: str) -> Path:
    """Title, lay out, write as PNG (the folder is made) and free the figure."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------------- the HTML report


def _img(path: str | None) -> str:
    if not path or not Path(path).exists():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def slo_status(store: ResultsStore, environment: str, probe_targets: dict[str, float]) -> list[dict[str, Any]]:
    """Error budget and burn status per synthetic probe, from the stored samples of the last 28 days."""
    since = time.time() - timedelta(days=slo.WINDOW_DAYS).total_seconds()
    rows = []
    for probe, target in probe_targets.items():
        df = store.samples(environment, probe=probe, since=since, flow="synthetic")
        if df.empty:
            continue
        ok = pd.Series(df["ok"].astype(bool).to_numpy(), index=pd.to_datetime(df["ts"], unit="s"))
        budget = slo.budget_report(ok, target)
        burning = [b.rule for b in slo.multiwindow_burn(ok, target) if b.firing]
        rows.append(
            {
                "probe": probe,
                "target": target,
                "checks": budget.total_events,
                "sli": budget.sli,
                "budget_remaining": budget.remaining_fraction,
                "status": str(budget.status),
                "burn_alerts": ", ".join(burning) or "none",
            }
        )
    return rows


def html_report(
    store: ResultsStore,
    path: Path,
    probe_targets: dict[str, float] | None = None,
    periods_s: dict[str, float] | None = None,
) -> Path:
    records = store.list(limit=2000)
    envs = sorted({r.environment for r in records})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Drillbit report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
        ".pass{background:#e6f4ea}.fail{background:#fde2e1}.inconclusive{background:#fff3d6}"
        ".aborted,.error{background:#eee}</style></head><body>",
        "<h1>Drillbit reliability report</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from {len(records)} stored runs.</p>",
    ]
    for env in envs:
        env_records = [r for r in records if r.environment == env]
        parts.append(f"<h2>Environment: {html.escape(env)}</h2>")
        score, components = resilience_score(env_records, periods_s or {}, environment=env)
        parts.append(
            f"<h3>Resilience score: {score:.0f} / 100</h3><table><tr><th>test type</th><th>weight</th>"
            "<th>latest</th><th>age</th><th>freshness</th><th>points</th></tr>"
        )
        for c in components:
            age = "—" if c.age_s is None else f"{c.age_s / 3600:.1f} h"
            parts.append(
                f"<tr><td>{c.test_type}</td><td>{c.weight:g}</td><td class='{c.outcome}'>{c.outcome}</td>"
                f"<td>{age}</td><td>{c.freshness:.2f}</td><td>{c.points:.1f}</td></tr>"
            )
        parts.append("</table><p><small>Scoring rule: drillbit/score.py.</small></p>")
        parts.append("<h3>Latest verdict per test type</h3>")
        parts.append(
            "<table><tr><th>test type</th><th>outcome</th><th>when</th><th>failed criteria</th>"
            "<th>runs</th><th>pass rate</th><th>trend (oldest → newest)</th></tr>"
        )
        by_flow: dict[str, list[RunRecord]] = {}
        for r in env_records:
            by_flow.setdefault(r.flow, []).append(r)
        for flow, runs_ in sorted(by_flow.items()):
            latest = runs_[0]
            failed = ", ".join(v.criterion for v in latest.verdicts if v.outcome == "fail") or "—"
            done = [r for r in runs_ if r.status == "completed"]
            rate = sum(r.passed for r in done) / len(done) if done else 0.0
            trend = "".join({"pass": "▪", "fail": "✖"}.get(r.outcome, "·") for r in reversed(runs_[:30]))
            when = datetime.fromtimestamp(latest.started_at, UTC).strftime("%Y-%m-%d %H:%M")
            parts.append(
                f"<tr><td>{html.escape(flow)}</td><td class='{latest.outcome}'>{latest.outcome}</td><td>{when}</td>"
                f"<td>{html.escape(redact(failed))}</td><td>{len(runs_)}</td><td>{rate:.0%}</td><td>{trend}</td></tr>"
            )
        parts.append("</table>")
        if probe_targets:
            rows = slo_status(store, env, probe_targets)
            if rows:
                parts.append(
                    "<h3>SLOs and error budgets (28-day window, synthetic checks)</h3><table><tr>"
                    "<th>check</th><th>target</th><th>checks</th><th>SLI</th><th>budget left</th>"
                    "<th>status</th><th>burn alerts</th></tr>"
                )
                for r in rows:
                    parts.append(
                        f"<tr><td>{r['probe']}</td><td>{r['target']:.3%}</td><td>{r['checks']}</td>"
                        f"<td>{r['sli']:.3%}</td><td>{r['budget_remaining']:.1%}</td><td>{r['status']}</td>"
                        f"<td>{r['burn_alerts']}</td></tr>"
                    )
                parts.append("</table>")
        parts.append("<h3>Latest runs</h3>")
        for r in env_records[:10]:
            parts.append(
                f"<h4>{html.escape(r.flow)} — <span class='{r.outcome}'>{r.outcome}</span> "
                f"<small>{r.run_id}</small></h4>"
            )
            parts.append(
                "<table><tr><th>criterion</th><th>outcome</th><th>threshold</th><th>measured</th><th>reason</th></tr>"
            )
            for row in verdict_rows(r):
                parts.append(
                    f"<tr><td>{html.escape(row['criterion'])}</td><td class='{row['outcome']}'>{row['outcome']}</td>"
                    f"<td>{html.escape(row['threshold'])}</td><td>{html.escape(row['measured'])}</td>"
                    f"<td>{html.escape(row['reason'])}</td></tr>"
                )
            parts.append("</table>")
            parts.append(_img(r.artifacts.get("timeline_png")))
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact("\n".join(parts)))
    return path
