"""What the commands share: the console, ``--set key=value`` parsing into a flow's parameter model, the verdict
table, and loading one flow (the only place the CLI imports Prefect's flows from)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from drillbit import catalog

console = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red error line; the caller raises the returned ``typer.Exit`` (exit code 2: a known error)."""
    console.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def check_flow_name(name: str) -> None:
    """Refuse a name the catalogue does not hold (before anything heavy is imported)."""
    if name not in catalog.BY_NAME:
        raise fail(str(catalog.UnknownFlow(name)))


def prefect_env() -> None:
    """Prefect settings the CLI defaults (set before Prefect is first imported)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def load_flow(name: str) -> Any:
    """The Prefect flow object of ``name`` (imports Prefect and that one flow module)."""
    prefect_env()
    from flows.registry import load

    return load(name)


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they parse (numbers, true/false, lists), else strings."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set {item!r}: expected key=value")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.split(",") if "," in raw else raw
        out[key.strip()] = value
    return out


def build_params(name: str, sets: dict[str, Any], env: str | None, config_path: str | None):
    """The flow's parameter model filled from ``sets`` (and --env / --config); each refused field is one line."""
    from pydantic import ValidationError

    model = catalog.params_model(name)
    data = dict(sets)
    if env:
        data["environment"] = env
    if config_path:
        data["config_path"] = config_path
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(parameters)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown parameter; {name} takes: {', '.join(model.model_fields)}"
            console.print(f"[red]error:[/] parameter {field}: {msg}", highlight=False)
        raise typer.Exit(2) from None


def run_flow(name: str, sets: dict[str, Any]) -> dict[str, Any]:
    """Run one flow with ``sets`` as its parameters; its run record."""
    return load_flow(name)(params=build_params(name, sets, None, None))


def print_verdicts(record: dict[str, Any]) -> None:
    from drillbit.model import RunRecord
    from drillbit.report import verdict_rows

    rec = RunRecord.from_dict(record)
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
    table = Table(title=f"{rec.flow} on {rec.environment}: {rec.outcome.upper()}  (run {rec.run_id[:12]})")
    for col in ("criterion", "outcome", "threshold", "measured", "reason"):
        table.add_column(col, overflow="fold")
    for row in verdict_rows(rec):
        c = colour.get(row["outcome"], "white")
        table.add_row(row["criterion"], f"[{c}]{row['outcome']}[/]", row["threshold"], row["measured"], row["reason"])
    console.print(table)
    if rec.artifacts.get("timeline_png"):
        console.print(f"timeline plot: {rec.artifacts['timeline_png']}")
