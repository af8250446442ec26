"""Self-verification: the weakness matrix. For each sandbox weakness, run the flows that should catch it on a sandbox
started with that weakness (caught = the expected criterion fails); on the healthy sandbox run every flow (any failure
is a false alarm). ``drillbit verify`` prints the matrix and exits non-zero on any miss or false alarm.

``--repeats N`` runs every cell N times: each weakness's flows on a fresh sandbox with it each round (a weakness may
leave its sandbox broken), every healthy flow N times on one sandbox, the last round after a ``sandbox down`` +
``sandbox up`` (same input, same verdict, lifetime after lifetime). The summary counts each weakness's catches per
run, the false alarms, the inconclusive verdicts by reason (figures stripped) and every verdict that differed between
rounds. ``--hog`` runs each flow beside a CPU hog on every core: a healthy flow must still never fail and a weakness
may come out inconclusive (the harness could not measure) but never passed.

The matrix is data and ``run_matrix`` takes the function that runs a flow, so reading this module (as the unit test
does) imports no flow; the ``verify`` command below runs them through Prefect."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import console, fail, load_flow, run_flow
from drillbit import sandbox as sbx

# its own sandboxes, beside a developer's (offset 0) and the tests' (1000-8000); override to run two at once
VERIFY_OFFSET = int(os.environ.get("DRILLBIT_VERIFY_OFFSET", "9000"))
VERIFY_RUN_DIR = Path(os.environ.get("DRILLBIT_VERIFY_RUN_DIR", "/tmp/drillbit-verify-sandbox"))

HOG_SECONDS = 900.0  # the CPU hog's own bound per flow run (--hog); longer than any compressed flow below
SHORT = {"baseline": 3.0, "recovery": 8.0}
CASCADE = {"duration": 6.0, "baseline": 3.0, "recovery": 12.0, "rate": 400, "target": "direct"}
EXHAUST = {"duration": 15.0, "baseline": 4.0, "recovery": 6.0, "size_mb": 128, "alert_within": 25}
SPLIT = {"duration": 12.0, "baseline": 3.0, "recovery": 8.0, "scenario": "isolate-one", "confirm_timeout": 4.0}
DR_FAST = {"interval": 0.5, "baseline": 4.0, "settle": 3.0, "restore_timeout": 180.0}
PARTITION = {**DR_FAST, "mode": "partition", "wait_for_alert": False}
DB_CORRUPTION = {**DR_FAST, "deployments": 1, "consistency_timeout": 30.0}
# the sandbox has one provider daemon: killing it is a full outage of that workload, and the point of these cells
PROVIDER_KILL = {"duration": 12.0, **SHORT, "target": "provider", "resume_within": 15.0, "full_outage": True}


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
    "no-fencing": [Catch("dr-dc-loss", PARTITION, "exactly one primary accepts writes after failover")],
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
    # the DR scenarios last, in the drill's order: a data-centre loss leaves region A lost, dr-rebuild restores
    # the whole sandbox; the partitioned loss needs region A back, so it comes after a rebuild, and another rebuild
    # leaves the next round a whole sandbox
    ("dr-dc-loss", DR_FAST),
    ("dr-db-corruption", DB_CORRUPTION),
    ("dr-rebuild", DR_FAST),
    ("dr-dc-loss", PARTITION),
    ("dr-rebuild", DR_FAST),
]


@dataclass
class Cell:
    weakness: str
    flow: str
    result: str  # caught | inconclusive | missed | ok | false alarm | error
    detail: str = ""
    round: int = 1
    lifetime: int = 1  # which sandbox lifetime the cell ran in (healthy rounds: a down + up before the last round)
    inconclusive: list[str] = field(default_factory=list)  # "criterion: reason" of every inconclusive verdict
    outcomes: dict[str, str] = field(default_factory=dict)  # criterion → outcome, to compare rounds


@dataclass
class Matrix:
    cells: list[Cell] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.result in ("caught", "ok") for c in self.cells)

    def inconclusive_reasons(self) -> dict[str, int]:
        """Every inconclusive verdict's "criterion: reason" (figures stripped) → how many cells gave it."""
        counts: dict[str, int] = {}
        for c in self.cells:
            for item in c.inconclusive:
                counts[item] = counts.get(item, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def differences(self) -> list[str]:
        """Cells of the same weakness, flow and parameters whose verdicts differ between rounds (same input, same
        verdict): "weakness / flow: criterion pass in round 1, inconclusive in round 3 (lifetime 2)". A criterion
        named after a target the fault drew at random ("node-2 back within 30 s") is compared as the same
        criterion whichever node was drawn ("node-N back within 30 s"); the rounds' own names are in the line."""
        groups: dict[tuple[str, str, int], list[Cell]] = {}
        for i, c in enumerate(self.cells):
            groups.setdefault((c.weakness, c.flow, _slot(self.cells, i)), []).append(c)
        out = []
        for (weakness, flow, _), cells in groups.items():
            first = _by_role(cells[0].outcomes)
            for other in cells[1:]:
                theirs = _by_role(other.outcomes)
                for crit in sorted(set(first) | set(theirs)):
                    (a, names_a), (b, names_b) = first.get(crit, ("absent", [])), theirs.get(crit, ("absent", []))
                    if a != b:
                        drawn = (
                            f" [{', '.join(names_a) or '-'} / {', '.join(names_b) or '-'}]"
                            if crit not in (names_a + names_b)
                            else ""
                        )
                        out.append(
                            f"{weakness} / {flow}: {crit}{drawn} {a} in round {cells[0].round}, {b} in round "
                            f"{other.round} (sandbox lifetime {other.lifetime})"
                        )
        return out


_DRAWN = re.compile(r"\b(node|validator|etcd)-\d+\b")  # targets a fault's mode draws at random


def _by_role(outcomes: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """Outcomes keyed by criterion with drawn target names replaced by N: (the outcomes joined, the real names)."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for crit, outcome in outcomes.items():
        grouped.setdefault(_DRAWN.sub(lambda m: f"{m.group(1)}-N", crit), []).append((crit, outcome))
    return {k: ("+".join(sorted(o for _, o in v)), sorted(c for c, _ in v)) for k, v in grouped.items()}


def _slot(cells: list[Cell], i: int) -> int:
    """Which of the same (weakness, flow) pair within one round cell ``i`` is (a flow may run twice, e.g. pod
    kill on a node and on the provider), so rounds compare like with like."""
    c = cells[i]
    return sum(1 for o in cells[:i] if (o.weakness, o.flow, o.round) == (c.weakness, c.flow, c.round))


def _criterion_failed(record: dict[str, Any], prefix: str) -> bool:
    return any(v["criterion"].startswith(prefix) and v["outcome"] == "fail" for v in record["verdicts"])


def _classify(weakness: str, flow: str, round_: int, lifetime: int, record: dict[str, Any], catch: str | None) -> Cell:
    """One flow's run record as a cell: caught / missed when ``catch`` (the criterion prefix that must fail) is
    given, else ok / false alarm (any failed criterion on the healthy sandbox)."""
    failed = [v["criterion"] for v in record["verdicts"] if v["outcome"] == "fail"]
    if catch is not None:
        mine = [v["outcome"] for v in record["verdicts"] if v["criterion"].startswith(catch)]
        if "fail" in mine:
            result = "caught"
        elif "inconclusive" in mine:
            result = "inconclusive"  # the harness could not measure: not caught, not passed either
        else:
            result = "missed"
    else:
        result = "false alarm" if failed else "ok"
    inconclusive = [
        f"{v['criterion']}: {_reason(v.get('reason', ''))}"
        for v in record["verdicts"]
        if v["outcome"] == "inconclusive"
    ]
    outcomes = {v["criterion"]: v["outcome"] for v in record["verdicts"]}
    return Cell(weakness, flow, result, ", ".join(failed), round_, lifetime, inconclusive, outcomes)


def _reason(text: str) -> str:
    """A verdict's reason without its figures, so the same cause counts once across runs."""
    return re.sub(r"\d+(\.\d+)?", "N", text)[:160]


def run_matrix(
    run_flow: Callable[[str, dict[str, Any]], dict[str, Any]],
    weaknesses: list[str] | None = None,
    healthy_repeats: int = 1,
    progress: Callable[[str], None] = print,
    healthy_flows: list[str] | None = None,
    weakness_repeats: int | None = None,
    sandbox: Callable[[list[str]], Any] | None = None,
    load: Callable[[], Any] | None = None,
) -> Matrix:
    """Start a sandbox per weakness and round, and one healthy sandbox; run the flows, classify each result.

    ``weakness_repeats`` (default: ``healthy_repeats``, at least one) rounds of each weakness's flows;
    ``healthy_repeats`` rounds of every healthy flow, the last of them (with two or more) after a ``sandbox down``
    + ``sandbox up`` (a second sandbox lifetime: the same verdicts are expected). ``load`` (a context manager
    factory, e.g. a CPU hog) wraps every flow run."""
    matrix = Matrix()
    make = sandbox or _sandbox
    wrap = load or contextlib.nullcontext
    rounds_w = weakness_repeats if weakness_repeats is not None else max(1, healthy_repeats)
    old = os.environ.get("DRILLBIT_SANDBOX_DIR")
    os.environ["DRILLBIT_SANDBOX_DIR"] = str(VERIFY_RUN_DIR)

    def one(weakness: str, flow: str, params: dict[str, Any], round_: int, life: int, catch: str | None) -> None:
        try:
            with wrap():
                record = run_flow(flow, params)
            cell = _classify(weakness, flow, round_, life, record, catch)
        except Exception as exc:
            cell = Cell(weakness, flow, "error", f"{exc.__class__.__name__}: {exc}", round_, life)
        matrix.cells.append(cell)
        extra = f" ({len(cell.inconclusive)} inconclusive)" if cell.inconclusive else ""
        progress(f"  round {round_}: {flow}: {cell.result}{extra}")

    try:
        for weakness in weaknesses if weaknesses is not None else list(MATRIX):
            # a fresh sandbox each round: a weakness may leave its sandbox broken (no-restart: the node stays dead)
            for round_ in range(1, rounds_w + 1):
                progress(f"sandbox with {weakness}, round {round_} of {rounds_w}")
                with make([weakness]):
                    for catch in MATRIX[weakness]:
                        one(weakness, catch.flow, catch.parameters, round_, round_, catch.criterion)
        chosen = [(f, p) for f, p in HEALTHY if healthy_flows is None or f in healthy_flows]
        if chosen and healthy_repeats > 0:
            progress(f"healthy sandbox, {healthy_repeats} round(s)")
            box = make([])
            box.__enter__()
            life = 1
            try:
                for round_ in range(1, healthy_repeats + 1):
                    if round_ == healthy_repeats and round_ > 1:
                        progress("sandbox down + up (a second lifetime, its data kept) before the last round")
                        box.restart()
                        life = 2
                    for flow, params in chosen:
                        one("(healthy)", flow, params, round_, life, None)
            finally:
                box.__exit__(None, None, None)
    finally:
        if old is None:
            os.environ.pop("DRILLBIT_SANDBOX_DIR", None)
        else:
            os.environ["DRILLBIT_SANDBOX_DIR"] = old
    return matrix


class _sandbox:
    """One verify sandbox: up on enter (with the first base backups taken), ``down --purge`` on exit; ``restart``
    is ``down`` (data kept) + ``up``, a second lifetime of the same sandbox."""

    def __init__(self, weaknesses: list[str]) -> None:
        self.args = ["up", *[a for w in weaknesses for a in ("--weaken", w)]]

    def _up(self) -> None:
        result = sbx.launcher(self.args, run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox up failed: {result.stderr.strip()}")
        # as a deployed environment has: the DR scenarios restore from the first base backup
        from drillbit.scenarios.dr.harness import wait_first_backups

        wait_first_backups()

    def __enter__(self) -> _sandbox:
        self._up()
        return self

    def restart(self) -> None:
        result = sbx.launcher(["down"], run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox down failed: {result.stderr.strip()}")
        self._up()

    def __exit__(self, *exc: object) -> None:
        sbx.launcher(["down", "--purge"], run=VERIFY_RUN_DIR, offset=VERIFY_OFFSET, capture=True)


@contextlib.contextmanager
def cpu_hog(seconds: float = HOG_SECONDS) -> Iterator[None]:
    """stress-ng on every core for one flow run, bounded by its own ``--timeout`` and ended by its PID (the
    session it leads: stress-ng and its workers) afterwards, even when the flow fails."""
    if shutil.which("stress-ng") is None:
        raise RuntimeError("--hog needs stress-ng (apt-get install stress-ng)")
    cmd = ["stress-ng", "--cpu", str(os.cpu_count() or 1), "--timeout", f"{math.ceil(seconds)}s", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def verify_cmd(
    weakness: list[str] = typer.Option([], "--weakness", help="Only these weaknesses (repeatable; default: all)"),
    repeats: int = typer.Option(
        1,
        "--repeats",
        min=1,
        max=10,
        help="Rounds of every cell: each weakness's flows on its sandbox, and every healthy flow (the last healthy "
        "round after a sandbox down + up)",
    ),
    healthy: list[str] = typer.Option(
        [], "--healthy", help="Only these flows on the healthy sandbox (repeatable; default: every flow)"
    ),
    no_healthy: bool = typer.Option(False, "--no-healthy", help="Only the weakness sandboxes"),
    hog: bool = typer.Option(
        False,
        "--hog",
        help="Every flow run with a CPU hog on every core (stress-ng): fail or inconclusive, never a "
        "false alarm on the healthy sandbox; a weakness still fails or is inconclusive, never passes",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write every cell (and the summary) to this file"),
) -> None:
    """The weakness matrix: every weakness caught by its flow, no false alarm on the healthy sandbox."""
    unknown = [w for w in weakness if w not in MATRIX]
    if unknown:
        raise fail(f"no catching flow registered for {', '.join(unknown)}; known: {', '.join(MATRIX)}")
    known_healthy = [f for f, _ in HEALTHY]
    if bad := [f for f in healthy if f not in known_healthy]:
        raise fail(f"--healthy {', '.join(bad)}: not in the healthy round; known: {', '.join(known_healthy)}")
    if hog and shutil.which("stress-ng") is None:
        raise fail("--hog needs stress-ng (apt-get install stress-ng)")
    # import every flow the matrix will run before the first sandbox starts (a broken import fails here, at once)
    for w in weakness or MATRIX:
        for catch in MATRIX[w]:
            load_flow(catch.flow)
    for name in [] if no_healthy else healthy or known_healthy:
        load_flow(name)

    matrix = run_matrix(
        run_flow,
        weakness or None,
        0 if no_healthy else repeats,
        progress=lambda m: console.print(m, highlight=False),
        healthy_flows=healthy or None,
        weakness_repeats=repeats,
        load=cpu_hog if hog else None,
    )
    table = Table(title="weakness matrix (weakness × flow)" + (" under a CPU hog" if hog else ""))
    for col in ("weakness", "flow", "round", "result", "inconclusive", "failed criteria / detail"):
        table.add_column(col, overflow="fold")
    colour = {"caught": "green", "ok": "green", "inconclusive": "yellow", "missed": "red", "false alarm": "red"}
    for c in matrix.cells:
        res = f"[{colour.get(c.result, 'red')}]{c.result}[/]"
        table.add_row(c.weakness, c.flow, str(c.round), res, str(len(c.inconclusive)), c.detail)
    console.print(table)
    summary = summarize(matrix, hog)
    for line in summary["lines"]:
        console.print(line, highlight=False)
    if json_out is not None:
        payload = {"summary": summary, "cells": [asdict(c) for c in matrix.cells]}
        json_out.write_text(json.dumps(payload, indent=2))
    raise typer.Exit(0 if summary["ok"] else 1)


def summarize(matrix: Matrix, hog: bool = False) -> dict[str, Any]:
    """The figures a reader wants: each weakness caught in how many rounds, false alarms on the healthy sandbox,
    inconclusive verdicts by reason, and verdicts that differed between rounds. Under a CPU hog a weakness may be
    inconclusive (the harness could not measure) but never pass its criterion; quiet, it must be caught."""
    weak = [c for c in matrix.cells if c.weakness != "(healthy)"]
    healthy = [c for c in matrix.cells if c.weakness == "(healthy)"]
    lines: list[str] = []
    by_weakness: dict[str, list[Cell]] = {}
    for c in weak:
        by_weakness.setdefault(c.weakness, []).append(c)
    missed = []
    for name, cells in by_weakness.items():
        caught = sum(c.result == "caught" for c in cells)
        if caught < len(cells):
            missed.append(name)
        lines.append(f"{name}: caught in {caught} of {len(cells)} runs")
    false_alarms = [c for c in healthy if c.result == "false alarm"]
    errors = [c for c in matrix.cells if c.result == "error"]
    if healthy:
        lines.append(f"healthy sandbox: {len(healthy)} flow runs, {len(false_alarms)} false alarm(s)")
    reasons = matrix.inconclusive_reasons()
    lines.append(f"inconclusive verdicts: {sum(reasons.values())}")
    lines += [f"  {n} × {reason}" for reason, n in reasons.items()]
    diffs = matrix.differences()
    lines.append(f"verdicts that differed between rounds: {len(diffs)}")
    lines += [f"  {d}" for d in diffs]
    if errors:
        lines.append(f"errors: {len(errors)}")
    if hog:  # under the hog a weakness may be inconclusive (the harness could not measure), never missed
        missed = [n for n, cs in by_weakness.items() if any(c.result == "missed" for c in cs)]
    ok = not missed and not false_alarms and not errors
    return {
        "ok": ok,
        "hog": hog,
        "caught": {n: sum(c.result == "caught" for c in cs) for n, cs in by_weakness.items()},
        "runs": {n: len(cs) for n, cs in by_weakness.items()},
        "healthy_runs": len(healthy),
        "false_alarms": len(false_alarms),
        "inconclusive": reasons,
        "differences": diffs,
        "errors": [f"{c.weakness} / {c.flow}: {c.detail}" for c in errors],
        "lines": lines,
    }
