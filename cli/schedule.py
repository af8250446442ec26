"""``drillbit calendar`` (the testing calendar and its next runs; no Prefect) and ``drillbit deploy`` (serve every
calendar deployment to a Prefect server)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from cli.common import console, fail, prefect_env

TargetOpt = typer.Option(None, "--target", help="Retarget every entry to one environment (e.g. sandbox)")
ConfigOpt = typer.Option(None, "--config", help="Path to drillbit.yaml")


def calendar_cmd(
    target: str | None = TargetOpt,
    runs: int = typer.Option(3, "--next", help="How many next runs to show"),
    config_path: str | None = ConfigOpt,
    write_prefect_yaml: Path | None = typer.Option(None, "--write-prefect-yaml", help="Write prefect.yaml here"),
) -> None:
    """The testing calendar with each deployment's next runs (and why an entry is not deployed here)."""
    from drillbit import config as cfg
    from drillbit.calendar import load_calendar, next_runs, plan, render_prefect_yaml

    if write_prefect_yaml:
        write_prefect_yaml.write_text(render_prefect_yaml())
        console.print(f"wrote {write_prefect_yaml}")
        return

    calendar = load_calendar()
    deploy, skipped = plan(cfg.load(config_path), target, calendar)
    deployed = {e.name: env for e, env in deploy}
    why = {e.name: reason for e, reason in skipped}
    table = Table(title="testing calendar (UTC)")
    for col in ("table", "deployment", "flow", "frequency", "environment", "schedule", "next runs", "here"):
        table.add_column(col, overflow="fold")
    for e in calendar.entries():
        nxt = ", ".join(d.strftime("%Y-%m-%d %H:%M") for d in next_runs(e, runs)) or "—"
        here = f"[green]deployed → {deployed[e.name]}[/]" if e.name in deployed else f"[dim]{why.get(e.name, '')}[/]"
        table.add_row(e.table, e.name, e.flow or "—", e.frequency, e.environment, e.schedule_text, nxt, here)
    console.print(table)


def deploy_cmd(
    target: str | None = TargetOpt,
    config_path: str | None = ConfigOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="List the deployments; serve nothing"),
    paused: bool = typer.Option(False, "--paused", help="Register with schedules paused (ad-hoc runs only)"),
) -> None:
    """Serve every calendar deployment from this process (Ctrl-C stops; needs a Prefect server via PREFECT_API_URL)."""
    from drillbit import config as cfg
    from drillbit.calendar import plan

    deploy, skipped = plan(cfg.load(config_path), target)
    for entry, reason in skipped:
        console.print(f"[dim]skip {entry.name}: {reason}[/]")
    if not deploy:
        raise fail("nothing to deploy for the environments in drillbit.yaml (try --target sandbox)")
    for entry, env in deploy:
        console.print(f"deploy {entry.name}: {entry.flow} on {env}, {entry.schedule_text}")
    if dry_run:
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise fail("set PREFECT_API_URL to a Prefect server (e.g. `prefect server start`)")
    prefect_env()
    from prefect import serve

    from deployments.build import build

    serve(*build(deploy, paused=paused))
