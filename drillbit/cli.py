"""The ``drillbit`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from drillbit import sandbox as sbx

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Drillbit: reliability testing for VirtEngine.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Start, inspect and stop the local VirtEngine sandbox.")
app.add_typer(sandbox_app, name="sandbox")
console = Console(width=None if sys.stdout.isatty() else 160)

RunDirOpt = typer.Option(
    None, "--run-dir", help="Sandbox run directory (default $DRILLBIT_SANDBOX_DIR or /tmp/vesandbox)"
)
OffsetOpt = typer.Option(
    None, "--port-offset", help="Shift every sandbox port by N (default $DRILLBIT_SANDBOX_PORT_OFFSET)"
)


@sandbox_app.command("up")
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


@sandbox_app.command("status")
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


@sandbox_app.command("down")
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


@sandbox_app.command("logs")
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


@sandbox_app.command("weaknesses")
def sandbox_weaknesses() -> None:
    """The named defects `sandbox up --weaken NAME` can start the sandbox with."""
    result = sbx.launcher(["weaknesses"], capture=True)
    print(result.stdout, end="")


# ------------------------------------------------------------------------------------------------------ flows


def _prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _flows() -> dict[str, Any]:
    _prefect_env()
    # flows live outside the core library (they import Prefect); the CLI is their entry point
    from flows.registry import FLOWS

    return FLOWS


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


def build_params(flow: Any, sets: dict[str, Any], env: str | None, config_path: str | None):
    from pydantic import ValidationError

    from flows.registry import params_model

    model = params_model(flow)
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
                msg = f"unknown parameter; {flow.name} takes: {', '.join(model.model_fields)}"
            console.print(f"[red]error:[/] parameter {field}: {msg}", highlight=False)
        raise typer.Exit(2) from None


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


@app.command("list")
def list_flows() -> None:
    """Every flow Drillbit can run, by name."""
    from flows.registry import describe, params_model

    table = Table(title="flows (drillbit run NAME)")
    table.add_column("name")
    table.add_column("what it tests")
    table.add_column("parameters")
    for name, flow in _flows().items():
        table.add_row(name, describe(flow), ", ".join(params_model(flow).model_fields))
    console.print(table)


@app.command("run")
def run_flow(
    name: str = typer.Argument(..., help="Flow name (see `drillbit list`)"),
    env: str | None = typer.Option(None, "--env", help="Environment from drillbit.yaml (default: the sandbox)"),
    sets: list[str] = typer.Option([], "--set", help="Parameter as key=value (repeatable)"),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run and inject nothing"),
) -> None:
    """Run one flow now and print its verdict table; exit code 1 when any criterion fails."""
    from drillbit import config as cfg

    flows = _flows()
    if name not in flows:
        console.print(f"[red]error:[/] unknown flow {name!r}; known: {', '.join(flows)}", highlight=False)
        raise typer.Exit(2)
    flow = flows[name]
    params = build_params(flow, parse_sets(sets), env, config_path)
    try:
        resolved = cfg.load(params.config_path).environment(params.environment)
    except (cfg.ConfigError, sbx.SandboxNotRunning) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
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
            try:
                record = flow(params=params.model_copy(update={"dry_run": True}))
            except Exception as exc:
                console.print(f"[red]error:[/] {exc.__class__.__name__}: {exc}", highlight=False)
                raise typer.Exit(2) from None
            metrics = record.get("metrics", {})
            console.print_json(data={"plan": metrics.get("plan"), "criteria": metrics.get("criteria", [])})
        console.print("dry run: nothing was injected")
        return
    try:
        record = flow(params=params)
    except Exception as exc:  # the flow itself broke (not a failed criterion)
        console.print(f"[red]error:[/] flow {name} did not complete: {exc.__class__.__name__}: {exc}", highlight=False)
        raise typer.Exit(3) from None
    print_verdicts(record)
    raise typer.Exit(0 if record["outcome"] == "pass" else 1)


@app.command("runs")
def list_runs(
    flow: str | None = typer.Option(None, "--flow"),
    env: str | None = typer.Option(None, "--env"),
    limit: int = typer.Option(20, "--limit"),
) -> None:
    """Stored runs, newest first."""
    from datetime import UTC, datetime

    from drillbit.store import ResultsStore

    store = ResultsStore()
    table = Table(title=f"runs in {store.url}")
    for col in ("started (UTC)", "flow", "environment", "outcome", "took", "failed criteria", "run"):
        table.add_column(col, overflow="fold")
    for r in store.list(flow=flow, environment=env, limit=limit):
        took = f"{(r.finished_at or r.started_at) - r.started_at:.1f} s"
        failed = ", ".join(v.criterion for v in r.verdicts if not v.passed)
        started = datetime.fromtimestamp(r.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(started, r.flow, r.environment, r.outcome, took, failed, r.run_id[:12])
    console.print(table)


@app.command("report")
def write_report(
    out: Path = typer.Option(Path("drillbit-report.html"), "--out", help="Where to write the page"),
) -> None:
    """Write one HTML page over the stored runs: latest verdicts, trends, SLOs and error budgets, plots."""
    from drillbit import report
    from drillbit.config import DEFAULT_SLOS
    from drillbit.store import ResultsStore

    slos = {s.id: s.target for s in DEFAULT_SLOS}
    targets = {
        "tx-submission": slos["SLO-NODE-003"],
        "chain-query": slos["SLO-NODE-001"],
        "market-query": slos["SLO-API-001"],
        "deployment-provisioning": slos["SLO-PROV-003"],
    }
    _prefect_env()
    from deployments.calendar import periods_s

    path = report.html_report(ResultsStore(), out, targets, periods_s())
    console.print(f"report written to {path}")


@app.command("score")
def score_cmd(env: str = typer.Option("sandbox", "--env", help="Environment to score")) -> None:
    """The resilience score (0-100) of an environment from its latest verdicts (rule: drillbit/score.py)."""
    from drillbit.score import resilience_score
    from drillbit.store import ResultsStore

    _prefect_env()
    from deployments.calendar import periods_s

    score, parts = resilience_score(ResultsStore().list(environment=env, limit=5000), periods_s(), environment=env)
    table = Table(title=f"resilience score of {env}: {score:.0f} / 100")
    for col in ("test type", "weight", "latest", "age (h)", "freshness", "points"):
        table.add_column(col)
    for p in parts:
        age = "—" if p.age_s is None else f"{p.age_s / 3600:.1f}"
        table.add_row(p.test_type, f"{p.weight:g}", p.outcome, age, f"{p.freshness:.2f}", f"{p.points:.1f}")
    console.print(table)


@app.command("cleanup")
def cleanup_cmd(
    expired_only: bool = typer.Option(False, "--expired-only", help="Only faults whose time-to-live has passed"),
) -> None:
    """Revert every fault the ledger still holds (after a crash or SIGKILL of a run). Exit 1 if one could not be."""
    from datetime import UTC, datetime

    from drillbit.faults.base import cleanup
    from drillbit.faults.ledger import Ledger

    ledger = Ledger()
    results = cleanup(ledger, only_expired=expired_only)
    if not results:
        console.print(f"nothing to clean up (ledger {ledger.root} is empty)")
        return
    table = Table(title="cleanup")
    for col in ("fault", "target", "injected (UTC)", "result"):
        table.add_column(col, overflow="fold")
    for handle, result in results:
        when = datetime.fromtimestamp(handle.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(f"{handle.kind} {handle.id}", handle.target, when, result)
    console.print(table)
    raise typer.Exit(0 if all(r == "reverted" for _, r in results) else 1)


@app.command("calendar")
def calendar_cmd(
    target: str | None = typer.Option(None, "--target", help="Retarget every entry to one environment (e.g. sandbox)"),
    runs: int = typer.Option(3, "--next", help="How many next runs to show"),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
    write_prefect_yaml: Path | None = typer.Option(None, "--write-prefect-yaml", help="Write prefect.yaml here"),
) -> None:
    """The testing calendar with each deployment's next runs (and why an entry is not deployed here)."""
    from drillbit import config as cfg

    _prefect_env()
    from deployments.calendar import load_calendar, next_runs, plan, render_prefect_yaml

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


@app.command("deploy")
def deploy_cmd(
    target: str | None = typer.Option(None, "--target", help="Retarget every entry to one environment (e.g. sandbox)"),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the deployments; serve nothing"),
    paused: bool = typer.Option(False, "--paused", help="Register with schedules paused (ad-hoc runs only)"),
) -> None:
    """Serve every calendar deployment from this process (Ctrl-C stops; needs a Prefect server via PREFECT_API_URL)."""
    from drillbit import config as cfg

    _prefect_env()
    from deployments.calendar import build, plan

    deploy, skipped = plan(cfg.load(config_path), target)
    for entry, reason in skipped:
        console.print(f"[dim]skip {entry.name}: {reason}[/]")
    if not deploy:
        console.print("[red]error:[/] nothing to deploy for the environments in drillbit.yaml (try --target sandbox)")
        raise typer.Exit(2)
    for entry, env in deploy:
        console.print(f"deploy {entry.name}: {entry.flow} on {env}, {entry.schedule_text}")
    if dry_run:
        return
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[red]error:[/] set PREFECT_API_URL to a Prefect server (e.g. `prefect server start`)")
        raise typer.Exit(2)
    from prefect import serve

    serve(*build(deploy, paused=paused))


@app.command("verify")
def verify_cmd(
    weakness: list[str] = typer.Option([], "--weakness", help="Only these weaknesses (repeatable; default: all)"),
    repeats: int = typer.Option(1, "--repeats", help="Rounds of every flow on the healthy sandbox"),
    healthy: list[str] = typer.Option(
        [], "--healthy", help="Only these flows on the healthy sandbox (repeatable; default: every flow)"
    ),
) -> None:
    """The weakness matrix: every weakness caught by its flow, no false alarm on the healthy sandbox."""
    flows = _flows()
    from flows.verify import HEALTHY, MATRIX, run_matrix

    unknown = [w for w in weakness if w not in MATRIX]
    if unknown:
        console.print(
            f"[red]error:[/] no catching flow registered for {', '.join(unknown)}; known: {', '.join(MATRIX)}"
        )
        raise typer.Exit(2)
    known_healthy = [f for f, _ in HEALTHY]
    if bad := [f for f in healthy if f not in known_healthy]:
        console.print(
            f"[red]error:[/] --healthy {', '.join(bad)}: not in the healthy round; known: {', '.join(known_healthy)}"
        )
        raise typer.Exit(2)

    def run(name: str, sets: dict[str, Any]) -> dict[str, Any]:
        return flows[name](params=build_params(flows[name], sets, None, None))

    matrix = run_matrix(
        run,
        weakness or None,
        repeats,
        progress=lambda m: console.print(m, highlight=False),
        healthy_flows=healthy or None,
    )
    table = Table(title="weakness matrix (weakness × flow)")
    for col in ("weakness", "flow", "result", "failed criteria / detail"):
        table.add_column(col, overflow="fold")
    colour = {"caught": "green", "ok": "green", "missed": "red", "false alarm": "red", "error": "red"}
    for c in matrix.cells:
        table.add_row(c.weakness, c.flow, f"[{colour[c.result]}]{c.result}[/]", c.detail)
    console.print(table)
    raise typer.Exit(0 if matrix.ok else 1)


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


@app.command("demo")
def demo(
    keep: bool = typer.Option(False, "--keep", help="Leave the sandbox running afterwards"),
    out: Path = typer.Option(Path("drillbit-report.html"), "--out", help="Where to write the HTML report"),
) -> None:
    """Start the sandbox, run every available test type once (compressed), print a scorecard, write the report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    flows = _flows()
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
            for name, sets in [(n, s) for n, s in DEMO_PLAN if n in flows]:
                t = prog.add_task(f"running {name}", total=None)
                try:
                    record = flows[name](params=build_params(flows[name], sets, None, None))
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
