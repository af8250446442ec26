"""``drillbit list`` (the flow catalogue, without importing a flow) and ``drillbit run NAME`` (one flow now)."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import build_params, check_flow_name, console, fail, load_flow, parse_sets, print_verdicts
from drillbit import catalog
from drillbit import sandbox as sbx


def list_flows(
    params: bool = typer.Option(False, "--params", help="Also list each flow's parameters (imports every scenario)"),
) -> None:
    """Every flow Drillbit can run, by name."""
    table = Table(title="flows (drillbit run NAME)")
    for col in ("name", "test type", "what it tests", *(["parameters"] if params else [])):
        table.add_column(col)
    for spec in catalog.CATALOG:
        fields = [", ".join(catalog.params_model(spec.name).model_fields)] if params else []
        table.add_row(spec.name, spec.test_type, spec.description, *fields)
    console.print(table)


def run_flow(
    name: str = typer.Argument(..., help="Flow name (see `drillbit list`)"),
    env: str | None = typer.Option(None, "--env", help="Environment from drillbit.yaml (default: the sandbox)"),
    sets: list[str] = typer.Option([], "--set", help="Parameter as key=value (repeatable)"),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run and inject nothing"),
) -> None:
    """Run one flow now and print its verdict table; exit code 1 when any criterion fails."""
    from drillbit import config as cfg

    check_flow_name(name)
    params = build_params(name, parse_sets(sets), env, config_path)
    try:
        resolved = cfg.load(params.config_path).environment(params.environment)
    except (cfg.ConfigError, sbx.SandboxNotRunning) as exc:
        raise fail(str(exc)) from None
    if dry_run:
        console.print(f"[bold]plan[/]: flow {name} on environment {resolved.name} ({resolved.platform})")
        console.print_json(
            data={
                "parameters": params.model_dump(mode="json"),
                "endpoints": resolved.endpoints.model_dump(exclude_none=True),
            }
        )
        if "dry_run" in type(params).model_fields:
            # an experiment plans for real (selected targets, fault, criteria) and stops before injecting
            flow = load_flow(name)
            try:
                record = flow(params=params.model_copy(update={"dry_run": True}))
            except Exception as exc:
                raise fail(f"{exc.__class__.__name__}: {exc}") from None
            metrics = record.get("metrics", {})
            console.print_json(data={"plan": metrics.get("plan"), "criteria": metrics.get("criteria", [])})
        console.print("dry run: nothing was injected")
        return
    flow = load_flow(name)
    try:
        record = flow(params=params)
    except Exception as exc:  # the flow itself broke (not a failed criterion)
        raise fail(f"flow {name} did not complete: {exc.__class__.__name__}: {exc}", 3) from None
    print_verdicts(record)
    raise typer.Exit(0 if record["outcome"] == "pass" else 1)
