"""``drillbit sandbox ...``: start, inspect and stop the local VirtEngine sandbox (through its launcher)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from cli.common import console
from drillbit import sandbox as sbx

app = typer.Typer(no_args_is_help=True, help="Start, inspect and stop the local VirtEngine sandbox.")

RunDirOpt = typer.Option(
    None, "--run-dir", help="Sandbox run directory (default $DRILLBIT_SANDBOX_DIR or /tmp/vesandbox)"
)
OffsetOpt = typer.Option(
    None, "--port-offset", help="Shift every sandbox port by N (default $DRILLBIT_SANDBOX_PORT_OFFSET)"
)


@app.command("up")
def sandbox_up(
    weaken: list[str] = typer.Option([], "--weaken", help="Start with a named defect (repeatable); see `weaknesses`"),
    run_dir: Path | None = RunDirOpt,
    port_offset: int | None = OffsetOpt,
) -> None:
    """Start every sandbox component and wait until all are healthy; prints the endpoints."""
    args = ["up"]
    for w in weaken:
        args += ["--weaken", w]
    with console.status("starting the sandbox (etcd validators, nodes, PostgreSQL, API, provider, fault proxy)"):
        result = sbx.launcher(args, run=run_dir, offset=port_offset, capture=True)
    if result.stdout:
        console.print(result.stdout.rstrip(), highlight=False)
    if result.returncode != 0:
        console.print(result.stderr.rstrip(), style="red", highlight=False)
        raise typer.Exit(result.returncode)
    ep = sbx.endpoints(run_dir)
    table = Table(title="sandbox endpoints (clients go through the fault proxy)")
    table.add_column("surface")
    table.add_column("address")
    for key in ("node_rpc", "node_rest", "api", "provider", "faultproxy"):
        table.add_row(key, ep[key])
    console.print(table)


@app.command("status")
def sandbox_status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    run_dir: Path | None = RunDirOpt,
    port_offset: int | None = OffsetOpt,
) -> None:
    """Components, state, health, pid and endpoint. Exit code 1 when not running or anything is unhealthy."""
    result = sbx.launcher(["status", "--json"], run=run_dir, offset=port_offset, capture=True)
    rows = json.loads(result.stdout or "[]")
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        console.print("sandbox is not running")
    else:
        table = Table(title=f"sandbox {run_dir or sbx.run_dir()}")
        for col in ("component", "state", "health", "pid", "endpoint"):
            table.add_column(col)
        for r in rows:
            health = "[green]healthy[/]" if r["healthy"] else "[red]unhealthy[/]"
            table.add_row(r["name"], r["state"], health, str(r["pid"] or "-"), r["endpoint"])
        console.print(table)
    raise typer.Exit(0 if rows and all(r["healthy"] for r in rows) else 1)


@app.command("down")
def sandbox_down(
    purge: bool = typer.Option(False, "--purge", help="Also remove the object store (backups survive otherwise)"),
    run_dir: Path | None = RunDirOpt,
    port_offset: int | None = OffsetOpt,
) -> None:
    """Stop everything the sandbox started and remove its run directory (a second call is a no-op)."""
    with console.status("stopping the sandbox"):
        result = sbx.launcher(["down", *(["--purge"] if purge else [])], run=run_dir, offset=port_offset, capture=True)
    console.print((result.stdout + result.stderr).rstrip(), highlight=False)
    raise typer.Exit(result.returncode)


@app.command("logs")
def sandbox_logs(
    component: str = typer.Argument(..., help="e.g. node-0, etcd-1, api, provider, postgres, faultproxy"),
    lines: int = typer.Option(50, "-n", "--lines"),
    run_dir: Path | None = RunDirOpt,
    port_offset: int | None = OffsetOpt,
) -> None:
    """The last lines of one component's log."""
    result = sbx.launcher(["logs", component, "-n", str(lines)], run=run_dir, offset=port_offset, capture=True)
    print(result.stdout, end="")
    if result.returncode != 0:
        console.print(result.stderr.rstrip(), style="red", highlight=False)
    raise typer.Exit(result.returncode)


@app.command("weaknesses")
def sandbox_weaknesses() -> None:
    """The named defects `sandbox up --weaken NAME` can start the sandbox with."""
    result = sbx.launcher(["weaknesses"], capture=True)
    print(result.stdout, end="")
