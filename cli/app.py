"""The ``drillbit`` command: the typer app (every command, registered from its group's module) and ``main()``.

Importing this module imports neither Prefect nor a flow: the commands that run flows import them when they run."""

from __future__ import annotations

import sys

import typer

from cli import demo, doctor, results, run, sandbox, schedule, validate, verify

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Drillbit: reliability testing for VirtEngine.")
app.add_typer(sandbox.app, name="sandbox")
app.command("list")(run.list_flows)
app.command("run")(run.run_flow)
app.command("runs")(results.list_runs)
app.command("report")(results.write_report)
app.command("score")(results.score_cmd)
app.command("cleanup")(results.cleanup_cmd)
app.command("calendar")(schedule.calendar_cmd)
app.command("deploy")(schedule.deploy_cmd)
app.command("validate")(validate.validate_cmd)
app.command("verify")(verify.verify_cmd)
app.command("demo")(demo.demo)
app.command("doctor")(doctor.doctor_cmd)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
