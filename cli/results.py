"""Commands over what runs left behind: stored runs (``runs``), the HTML report (``report``), the resilience score
(``score``) and the fault ledger (``cleanup``). None of them imports Prefect or a flow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from cli.common import console


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_runs(
    flow: str | None = typer.Option(None, "--flow"),
    env: str | None = typer.Option(None, "--env"),
    limit: int = typer.Option(20, "--limit"),
) -> None:
    """Stored runs, newest first."""
    from drillbit.store import ResultsStore

    store = ResultsStore()
    table = Table(title=f"runs in {store.url}")
    for col in ("started (UTC)", "flow", "environment", "outcome", "took", "failed criteria", "run"):
        table.add_column(col, overflow="fold")
    for r in store.list(flow=flow, environment=env, limit=limit):
        took = f"{(r.finished_at or r.started_at) - r.started_at:.1f} s"
        failed = ", ".join(v.criterion for v in r.verdicts if not v.passed)
        table.add_row(_utc(r.started_at), r.flow, r.environment, r.outcome, took, failed, r.run_id[:12])
    console.print(table)


def write_report(
    out: Path = typer.Option(Path("drillbit-report.html"), "--out", help="Where to write the page"),
) -> None:
    """Write one HTML page over the stored runs: latest verdicts, trends, SLOs and error budgets, plots."""
    from drillbit import report
    from drillbit.calendar import periods_s
    from drillbit.config import DEFAULT_SLOS
    from drillbit.store import ResultsStore

    slos = {s.id: s.target for s in DEFAULT_SLOS}
    targets = {
        "tx-submission": slos["SLO-NODE-003"],
        "chain-query": slos["SLO-NODE-001"],
        "market-query": slos["SLO-API-001"],
        "deployment-provisioning": slos["SLO-PROV-003"],
    }
    path = report.html_report(ResultsStore(), out, targets, periods_s())
    console.print(f"report written to {path}")


def score_cmd(env: str = typer.Option("sandbox", "--env", help="Environment to score")) -> None:
    """The resilience score (0-100) of an environment from its latest verdicts (rule: drillbit/score.py)."""
    from drillbit.calendar import periods_s
    from drillbit.score import resilience_score
    from drillbit.store import ResultsStore

    score, parts = resilience_score(ResultsStore().list(environment=env, limit=5000), periods_s(), environment=env)
    table = Table(title=f"resilience score of {env}: {score:.0f} / 100")
    for col in ("test type", "weight", "latest", "age (h)", "freshness", "points"):
        table.add_column(col)
    for p in parts:
        age = "—" if p.age_s is None else f"{p.age_s / 3600:.1f}"
        table.add_row(p.test_type, f"{p.weight:g}", p.outcome, age, f"{p.freshness:.2f}", f"{p.points:.1f}")
    console.print(table)


def cleanup_cmd(
    expired_only: bool = typer.Option(False, "--expired-only", help="Only faults whose time-to-live has passed"),
) -> None:
    """Revert every fault the ledger still holds (after a crash or SIGKILL of a run). Exit 1 if one could not be."""
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
        table.add_row(f"{handle.kind} {handle.id}", handle.target, _utc(handle.created_at), result)
    console.print(table)
    raise typer.Exit(0 if all(r == "reverted" for _, r in results) else 1)
