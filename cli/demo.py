"""``drillbit demo``: start the sandbox, run every test type once (compressed: seconds instead of minutes or hours),
print a scorecard and write the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import console, load_flow, run_flow
from cli.results import write_report
from drillbit import sandbox as sbx

# every test type once, compressed (seconds instead of minutes/hours); the calendar keeps the real durations
DEMO_PLAN: list[tuple[str, dict[str, Any]]] = [
    ("synthetic", {"rounds": 2, "interval": 2.0}),
    ("e2e", {}),
    ("load-smoke", {"time_scale": 0.05}),
    ("chaos-pod-kill", {"duration": 10.0, "baseline": 3.0, "recovery": 8.0}),
    (
        "chaos-network-latency",
        {"duration": 15.0, "baseline": 10.0, "recovery": 3.0, "latency_ms": 200.0, "metrics_window": 6.0},
    ),
    ("chaos-disk-pressure", {"duration": 12.0, "baseline": 3.0, "recovery": 8.0, "workers": 2, "io_bytes": 8 << 20}),
    ("chaos-db-failure", {"duration": 10.0, "baseline": 3.0, "recovery": 5.0}),
    (
        "cascading-failure",
        {"duration": 6.0, "baseline": 3.0, "recovery": 12.0, "rate": 400, "target": "direct"},
    ),
    ("split-brain", {"duration": 12.0, "baseline": 3.0, "recovery": 8.0, "scenario": "isolate-one"}),
    ("resource-exhaustion", {"duration": 15.0, "baseline": 4.0, "recovery": 6.0, "size_mb": 128}),
    ("gameday", {"duration": 10.0, "interactive": False}),
    # last: the drill's rebuild replaces the whole sandbox (from its backups)
    (
        "dr-drill",
        {
            "require_approval": False,
            "dc_loss": {"interval": 0.5, "baseline": 4.0, "settle": 3.0},
            "db_corruption": {"interval": 0.5, "baseline": 4.0, "settle": 3.0, "deployments": 1},
            "rebuild": {"interval": 0.5, "baseline": 4.0, "settle": 3.0},
        },
    ),
]


def demo(
    keep: bool = typer.Option(False, "--keep", help="Leave the sandbox running afterwards"),
    out: Path = typer.Option(Path("drillbit-report.html"), "--out", help="Where to write the HTML report"),
) -> None:
    """Start the sandbox, run every available test type once (compressed), print a scorecard, write the report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    for name, _ in DEMO_PLAN:
        load_flow(name)  # every import before the sandbox starts
    started_here = False
    scorecard: list[tuple[str, str, str]] = []
    try:
        if not sbx.status_ok():
            with console.status("starting the sandbox"):
                result = sbx.launcher(["up"], capture=True)
            if result.returncode != 0:
                console.print(result.stderr.rstrip(), style="red", highlight=False)
                raise typer.Exit(result.returncode)
            started_here = True
            console.print("[green]sandbox up[/]")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
            for name, sets in DEMO_PLAN:
                t = prog.add_task(f"running {name}", total=None)
                try:
                    record = run_flow(name, sets)
                    outcome = record["outcome"]
                    failed = ", ".join(v["criterion"] for v in record["verdicts"] if v["outcome"] != "pass")
                    figures = ", ".join(f"{k}={v}" for k, v in list(_key_figures(record).items())[:4])
                    scorecard.append((name, outcome, failed or figures))
                except Exception as exc:
                    scorecard.append((name, "error", f"{exc.__class__.__name__}: {exc}"))
                prog.update(t, description=f"{name}: {scorecard[-1][1]}", completed=1, total=1)
        table = Table(title="Drillbit demo scorecard")
        for col in ("test type", "verdict", "key figures / failed criteria"):
            table.add_column(col, overflow="fold")
        colour = {"pass": "green", "fail": "red"}
        for name, outcome, detail in scorecard:
            table.add_row(name, f"[{colour.get(outcome, 'yellow')}]{outcome}[/]", detail)
        console.print(table)
        write_report(out)
    finally:
        if started_here and not keep:
            with console.status("stopping the sandbox"):
                sbx.launcher(["down"], capture=True)
            console.print("sandbox stopped")
    raise typer.Exit(0 if all(o == "pass" for _, o, _ in scorecard) else 1)


def _key_figures(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in record["verdicts"]:
        for k, x in v.get("evidence", {}).items():
            if isinstance(x, int | float) and k not in out and k != "samples":
                out[k] = x
    return out
