"""The commands that run no flow stay cheap: in a fresh process they import neither Prefect nor a flow (nor the
tasks and deployments built on them), and the catalogue commands not even the data stack (pandas, SQLAlchemy,
matplotlib, kubernetes, httpx). Known errors are one line with exit code 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATION = {"prefect", "flows", "tasks", "deployments"}
DATA_STACK = {"pandas", "sqlalchemy", "matplotlib", "kubernetes", "httpx"}

# run the typer app in-process as `drillbit ARGS`, then report which top-level packages got imported
PROBE = """
import json, sys
from cli.app import app
sys.argv = ["drillbit", *json.loads(sys.argv[1])]
code = 0
try:
    app()
except SystemExit as exc:
    code = exc.code
print("\\nIMPORTED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
print("CODE " + json.dumps(code), file=sys.stderr)
"""


def drillbit(tmp_path: Path, *args: str) -> tuple[set[str], int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DRILLBIT_HOME": str(tmp_path / "home")}
    env["DRILLBIT_SANDBOX_DIR"] = str(tmp_path / "no-sandbox")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = out.stderr.splitlines()
    imported = set(json.loads(next(ln for ln in lines if ln.startswith("IMPORTED ")).removeprefix("IMPORTED ")))
    code = json.loads(next(ln for ln in lines if ln.startswith("CODE ")).removeprefix("CODE "))
    return imported, code or 0, out.stdout, out.stderr


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["calendar"], ["calendar", "--target", "sandbox"], ["sandbox", "--help"], ["run", "--help"]],
)
def test_the_catalogue_commands_import_neither_prefect_nor_the_data_stack(tmp_path, args):
    imported, code, out, _ = drillbit(tmp_path, *args)
    assert code == 0, out
    assert imported & (ORCHESTRATION | DATA_STACK) == set()


@pytest.mark.parametrize(
    "args",
    [["runs"], ["report", "--out", "REPORT"], ["score"], ["sandbox", "status"], ["sandbox", "weaknesses"], ["cleanup"]],
)
def test_the_reading_commands_import_neither_prefect_nor_a_flow(tmp_path, args):
    args = [str(tmp_path / "r.html") if a == "REPORT" else a for a in args]
    imported, code, out, err = drillbit(tmp_path, *args)
    assert code in (0, 1), out + err  # `sandbox status` is 1: no sandbox runs here
    assert imported & ORCHESTRATION == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "error: unknown flow 'nope'; known: synthetic, e2e,"),
        (["run", "synthetic", "--set", "nope=1"], "error: parameter nope: unknown parameter; synthetic takes:"),
        (["verify", "--weakness", "no-such-thing"], "error: no catching flow registered for no-such-thing"),
    ],
)
def test_a_known_error_is_one_line_exit_2_before_prefect_is_imported(tmp_path, args, message):
    imported, code, out, err = drillbit(tmp_path, *args)
    assert code == 2, out + err
    assert message in " ".join(out.split()), out
    assert "Traceback" not in out + err
    assert imported & ORCHESTRATION == set()
