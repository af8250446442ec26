"""Self-verification: the weakness matrix. For each sandbox weakness, run the flows that should catch it on a sandbox
started with that weakness (caught = the expected criterion fails); on the healthy sandbox run every flow (any failure
is a false alarm). ``drillbit verify`` prints the matrix and exits non-zero on any miss or false alarm.

The matrix is data and ``run_matrix`` takes the function that runs a flow, so reading this module (as the unit test
does) imports no flow; the ``verify`` command below runs them through Prefect."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import console, fail, load_flow, run_flow
from drillbit import sandbox as sbx

# its own sandboxes, beside a developer's (offset 0) and the tests' (1000-8000); override to run two at once
VERIFY_OFFSET = int(os.environ.get("DRILLBIT_VERIFY_OFFSET", "9000"))
VERIFY_RUN_DIR = Path(os.environ.get("DRILLBIT_VERIFY_RUN_DIR", "/tmp/drillbit-verify-sandbox"))

SHORT = {"baseline": 3.0, "recovery": 8.0}
CASCADE = {"duration": 6.0, "baseline": 3.0, "recovery": 12.0, "rate": 400, "target": "direct"}
EXHAUST = {"duration": 15.0, "baseline": 4.0, "recovery": 6.0, "size_mb": 128, "alert_within": 25}
SPLIT = {"duration": 12.0, "baseline": 3.0, "recovery": 8.0, "scenario": "isolate-one", "confirm_timeout": 4.0}
DR_FAST = {"interval": 0.5, "baseline": 4.0, "settle": 3.0, "restore_timeout": 180.0}
DB_CORRUPTION = {**DR_FAST, "deployments": 1, "consistency_timeout": 30.0}
PROVIDER_KILL = {"duration": 12.0, **SHORT, "target": "provider", "resume_within": 15.0}


@dataclass(frozen=True)
class Catch:
    flow: str
    parameters: dict[str, Any]
    criterion: str  # the criterion (prefix) that must fail when the weakness is present


# weakness → the flows (with compressed parameters) that must catch it, and by which criterion
MATRIX: dict[str, list[Catch]] = {
    "no-restart": [Catch("chaos-pod-kill", {"duration": 12.0, **SHORT}, "node-")],
    "no-alert-rules": [Catch("chaos-pod-kill", {"duration": 12.0, **SHORT}, "alerts fired")],
    "node-stuck-after-restart": [Catch("chaos-pod-kill", {"duration": 12.0, **SHORT}, "node-")],
    "alerts-not-routed": [Catch("chaos-pod-kill", {"duration": 12.0, **SHORT}, "on-call paged")],
    "no-read-cache": [
        Catch("chaos-db-failure", {"duration": 10.0, "verify_timeout": 15.0, **SHORT}, "cached responses")
    ],
    "no-write-queue": [
        Catch("chaos-db-failure", {"duration": 10.0, "verify_timeout": 15.0, **SHORT}, "writes queued, none lost")
    ],
    "stale-cache-after-recovery": [
        Catch("chaos-db-failure", {"duration": 10.0, "verify_timeout": 15.0, **SHORT}, "reads fresh after recovery")
    ],
    "duplicate-queued-writes": [
        Catch("chaos-db-failure", {"duration": 10.0, "verify_timeout": 15.0, **SHORT}, "each acknowledged write")
    ],
    "reordered-queued-writes": [
        Catch("chaos-db-failure", {"duration": 10.0, "verify_timeout": 15.0, **SHORT}, "each acknowledged write")
    ],
    "no-circuit-breaker": [Catch("cascading-failure", CASCADE, "breaker opens")],
    "leaky-memory": [Catch("resource-exhaustion", EXHAUST, "node memory growth")],
    "async-replication-loses-writes": [
        Catch("dr-dc-loss", {**DR_FAST, "baseline": 8.0, "rpo_target": 1.0, "wait_for_alert": False}, "RPO")
    ],
    "broken-wal-archive": [Catch("dr-db-corruption", DB_CORRUPTION, "WAL replayed to just before the corruption")],
    "provider-forgets-leases": [
        Catch("chaos-pod-kill", PROVIDER_KILL, "leases running before the kill are running after it")
    ],
    "bids-lost-on-restart": [Catch("chaos-pod-kill", PROVIDER_KILL, "bids in flight are settled or retried")],
}

# flows run on the healthy sandbox (compressed); none may fail. The longer load scenarios (load, stress, soak,
# sustained, burst, deployments, breaking-point, perf-regression) are left to their flow tests: minutes each even
# compressed; load-smoke stands for them here.
HEALTHY: list[tuple[str, dict[str, Any]]] = [
    ("synthetic", {"rounds": 2, "interval": 1.0}),
    ("e2e", {}),
    ("chaos-pod-kill", {"duration": 12.0, **SHORT}),
    ("chaos-pod-kill", PROVIDER_KILL),
    ("load-smoke", {"time_scale": 0.05}),
    ("chaos-network-latency", {"duration": 15.0, "baseline": 10.0, "recovery": 3.0, "latency_ms": 200.0}),
    ("chaos-disk-pressure", {"duration": 12.0, **SHORT, "workers": 2, "io_bytes": 8 << 20}),
    ("chaos-db-failure", {"duration": 10.0, **SHORT}),
    ("cascading-failure", {**CASCADE, "min_availability": 0.8}),
    ("split-brain", SPLIT),
    ("resource-exhaustion", EXHAUST),
    ("gameday", {"duration": 10.0, "interactive": False}),
    # the DR scenarios last: each leaves the sandbox restored, as the drill does
    ("dr-dc-loss", DR_FAST),
    ("dr-db-corruption", DB_CORRUPTION),
    ("dr-rebuild", DR_FAST),
]


@dataclass
class Cell:
    weakness: str
    flow: str
    result: str  # caught | missed | false alarm | ok | error
    detail: str = ""


@dataclass
class Matrix:
    cells: list[Cell] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.result in ("caught", "ok") for c in self.cells)


def _criterion_failed(record: dict[str, Any], prefix: str) -> bool:
    return any(v["criterion"].startswith(prefix) and v["outcome"] == "fail" for v in record["verdicts"])


def run_matrix(
    run_flow: Callable[[str, dict[str, Any]], dict[str, Any]],
    weaknesses: list[str] | None = None,
    healthy_repeats: int = 1,
    progress: Callable[[str], None] = print,
    healthy_flows: list[str] | None = None,
) -> Matrix:
    """Start a sandbox per weakness (and one healthy), run the flows, classify each result."""
    matrix = Matrix()
    old = os.environ.get("DRILLBIT_SANDBOX_DIR")
    os.environ["DRILLBIT_SANDBOX_DIR"] = str(VERIFY_RUN_DIR)
    try:
        for weakness in weaknesses if weaknesses is not None else list(MATRIX):
            progress(f"sandbox with {weakness}")
            with _sandbox([weakness]):
                for catch in MATRIX[weakness]:
                    try:
                        record = run_flow(catch.flow, catch.parameters)
                        caught = _criterion_failed(record, catch.criterion)
                        failed = [v["criterion"] for v in record["verdicts"] if v["outcome"] == "fail"]
                        cell = Cell(weakness, catch.flow, "caught" if caught else "missed", ", ".join(failed))
                    except Exception as exc:
                        cell = Cell(weakness, catch.flow, "error", f"{exc.__class__.__name__}: {exc}")
                    matrix.cells.append(cell)
                    progress(f"  {catch.flow}: {cell.result}")
        progress(f"healthy sandbox, {healthy_repeats} round(s)")
        with _sandbox([]):
            for round_ in range(healthy_repeats):
                for flow, params in [(f, p) for f, p in HEALTHY if healthy_flows is None or f in healthy_flows]:
                    try:
                        record = run_flow(flow, params)
                        failed = [v["criterion"] for v in record["verdicts"] if v["outcome"] == "fail"]
                        cell = Cell("(healthy)", flow, "false alarm" if failed else "ok", ", ".join(failed))
                    except Exception as exc:
                        cell = Cell("(healthy)", flow, "error", f"{exc.__class__.__name__}: {exc}")
                    cell.detail = (f"round {round_ + 1}: " + cell.detail).strip(": ")
                    matrix.cells.append(cell)
                    progress(f"  {flow}: {cell.result}")
    finally:
        if old is None:
            os.environ.pop("DRILLBIT_SANDBOX_DIR", None)
        else:
            os.environ["DRILLBIT_SANDBOX_DIR"] = old
    return matrix


class _sandbox:
    def __init__(self, weaknesses: list[str]) -> None:
        self.args = ["up", *[a for w in weaknesses for a in ("--weaken", w)]]

    def __enter__(self) -> None:
        result = sbx.launcher(self.args, run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox up failed: {result.stderr.strip()}")
        # as a deployed environment has: the DR scenarios restore from the first base backup
        from drillbit.scenarios.dr.harness import wait_first_backups

        wait_first_backups()

    def __exit__(self, *exc: object) -> None:
        sbx.launcher(["down", "--purge"], run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)


def verify_cmd(
    weakness: list[str] = typer.Option([], "--weakness", help="Only these weaknesses (repeatable; default: all)"),
    repeats: int = typer.Option(1, "--repeats", help="Rounds of every flow on the healthy sandbox"),
    healthy: list[str] = typer.Option(
        [], "--healthy", help="Only these flows on the healthy sandbox (repeatable; default: every flow)"
    ),
) -> None:
    """The weakness matrix: every weakness caught by its flow, no false alarm on the healthy sandbox."""
    unknown = [w for w in weakness if w not in MATRIX]
    if unknown:
        raise fail(f"no catching flow registered for {', '.join(unknown)}; known: {', '.join(MATRIX)}")
    known_healthy = [f for f, _ in HEALTHY]
    if bad := [f for f in healthy if f not in known_healthy]:
        raise fail(f"--healthy {', '.join(bad)}: not in the healthy round; known: {', '.join(known_healthy)}")
    # import every flow the matrix will run before the first sandbox starts (a broken import fails here, at once)
    for w in weakness or MATRIX:
        for catch in MATRIX[w]:
            load_flow(catch.flow)
    for name in healthy or known_healthy:
        load_flow(name)

    matrix = run_matrix(
        run_flow,
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
