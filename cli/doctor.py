"""``drillbit doctor``: does an environment have the alerts Drillbit's flows wait for, and how soon can each fire?

Reads the environment's alert profile (drillbit.yaml ``alerts:``; the sandbox's is built in) and its rules (rule
files, or its Prometheus), and prints one row per role. Exit 0: every flow that waits for an alert has one; 1: some
flow has none; 2: a known error (unknown environment, rules source unreadable)."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import console, fail


def _seconds(value: float) -> str:
    return f"{value:g}"


def doctor_cmd(
    env: str | None = typer.Option(None, "--env", help="Environment from drillbit.yaml (default: default_environment)"),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
) -> None:
    """Check the environment's alert roles against its alerting rules; exit 1 when a flow has no alert to wait for."""
    from drillbit import alert_rules as ar
    from drillbit import config as cfg
    from drillbit import sandbox as sbx

    try:
        resolved = cfg.load(config_path).environment(env)
        profile = resolved.alert_profile()
        rules = ar.load_rules(profile)
    except (cfg.ConfigError, sbx.SandboxNotRunning, ar.RulesUnavailable) as exc:
        raise fail(" ".join(str(exc).split())) from None
    interval, interval_from = ar.default_interval(profile, rules)
    checks = ar.check_roles(profile, rules, interval)

    source = "Prometheus " + profile.prometheus if profile.rules == ar.PROMETHEUS else ", ".join(profile.rules)
    table = Table(title=f"alert roles of {resolved.name} ({resolved.platform}); rules: {source}")
    for col in ("role", "alerts", "earliest firing (s)", "wait (s)", "status", "flows waiting for it"):
        table.add_column(col, overflow="fold")
    for check in checks:  # one line per alert; the role, its wait, status and flows on the first
        colour = "green" if check.status == "ok" else ("red" if check.missing else "yellow")
        wait = "-" if check.wait_s is None else _seconds(check.wait_s)
        first = [check.role, wait, f"[{colour}]{check.status}[/]", ", ".join(ar.flows_of(check.role)) or "-"]
        names = check.names or ("-",)
        for i, name in enumerate(names):
            role, wait, status, flows = first if i == 0 else ["", "", "", ""]
            firing = _seconds(check.firing_s[name]) if name in check.firing_s else "-"
            table.add_row(role, name, firing, wait, status, flows, end_section=i == len(names) - 1)
    console.print(table)
    if any(r.interval_s is None for r in rules.rules):
        intervals = f"groups without their own interval: {_seconds(interval)} s ({interval_from})"
    else:
        intervals = "every group sets its own evaluation interval"
    console.print(
        f"{len(rules.rules)} alerting rules ({len(rules.by_name())} names) from {len(rules.sources)} source(s); "
        f"earliest firing = for (in whole evaluation intervals) + evaluation interval + group_wait "
        f"({_seconds(profile.group_wait_s)} s); a role's wait is the longest of its alerts'; {intervals}",
        highlight=False,
    )
    if rules.problems:
        problems = Table(title="rule sources with problems")
        for col in ("source", "problem", "its rules"):
            problems.add_column(col, overflow="fold")
        for p in rules.problems:
            problems.add_row(p.source, p.reason, "counted" if p.loaded else "[red]not loaded[/]")
        console.print(problems)
    uncovered = ar.uncovered_flows(checks)
    for flow, roles in uncovered.items():
        console.print(f"[red]no alert[/] for flow {flow}: map one of role(s) {', '.join(roles)}", highlight=False)
    raise typer.Exit(1 if uncovered else 0)
