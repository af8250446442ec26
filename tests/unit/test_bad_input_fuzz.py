"""Property-based fuzzing of user input: configuration, flow parameters and CLI arguments.

No traceback reaches the user, every error names the field, and nothing is injected.
"""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.app import app
from drillbit import config
from drillbit.config import ConfigError
from drillbit.faults.ledger import Ledger

KEYS = [
    "platform",
    "endpoints",
    "node_rpc",
    "node_rest",
    "api",
    "kubernetes",
    "selectors",
    "safety",
    "production",
    "opt_in",
    "max_targets",
    "max_percent",
    "slos",
    "target",
    "database",
    "host",
    "port",
    "password",
    "env",
    "default_environment",
    "environments",
    "results",
    "url",
    "change_windows",
    "days",
    "start",
    "end",
    "bogus",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["sandbox", "kubernetes", "http://x:1", "UTC", "mon", "02:00"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)
PATH = re.compile(r"^(\(top level\)|[A-Za-z_0-9.\-]+|environment '.*'.*)")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_any_config_is_accepted_or_refused_with_named_fields(data):
    try:
        cfg = config.parse(data)
    except ConfigError as exc:
        assert exc.problems
        for p in exc.problems:
            assert PATH.match(p), p
            assert ":" in p
        return
    assert cfg.default_environment in cfg.environments


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [
            "synthetic",
            "e2e",
            "chaos-pod-kill",
            "chaos-db-failure",
            "chaos-disk-pressure",
            "chaos-network-latency",
            "gameday",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "duration",
                "rounds",
                "interval",
                "mode",
                "value",
                "checks",
                "latency_ms",
                "fill_percent",
                "nope",
                "environment",
                "budget_share",
                "workers",
            ]
        ),
        scalars,
        max_size=4,
    ),
)
def test_any_flow_parameters_are_accepted_or_refused_with_named_fields(name, data):
    from flows.registry import FLOWS, params_model

    model = params_model(FLOWS[name])
    try:
        model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            assert err["loc"], err  # every error names the field


runner = CliRunner()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["chaos-db-failure", "chaos-pod-kill", "synthetic", "nope"]),
    st.lists(st.tuples(st.text(min_size=0, max_size=8), st.text(max_size=10)), max_size=3),
)
def test_any_cli_arguments_give_a_clear_error_and_inject_nothing(tmp_path_factory, name, pairs):
    home = tmp_path_factory.mktemp("home")
    env = {"DRILLBIT_HOME": str(home), "DRILLBIT_SANDBOX_DIR": str(home / "no-sandbox")}
    args = ["run", name, "--dry-run"]
    for k, v in pairs:
        args += ["--set", f"{k}={v}"]
    result = runner.invoke(app, args, env=env)
    out = result.output + (
        str(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else ""
    )
    assert "Traceback" not in out, out
    assert result.exit_code in (0, 2), (args, out)
    if result.exit_code == 2:
        assert "error" in out.lower(), out
    assert Ledger(home / "ledger").pending() == []


def test_secrets_never_reach_reports_or_artifacts(tmp_path, monkeypatch):
    """A secret resolved from the environment is redacted from markdown, table rows and the HTML report."""
    from drillbit import report
    from drillbit.model import Outcome, RunRecord, Verdict
    from drillbit.store import ResultsStore

    secret = "s3cr3t-Pa55word-xyz"
    monkeypatch.setenv("STAGING_DB_PASSWORD", secret)
    cfg = config.parse(
        {
            "environments": {
                "staging": {
                    "platform": "kubernetes",
                    "endpoints": {"node_rpc": "http://n:1", "node_rest": "http://n:2"},
                    "database": {"host": "db", "password": {"env": "STAGING_DB_PASSWORD"}},
                }
            },
            "default_environment": "staging",
        }
    )
    assert cfg.environments["staging"].database.password.resolve() == secret
    # a leak path: an error message that carries a connection string with the password
    leak = f"connection to postgresql://drillbit:{secret}@db:5432 failed"
    rec = RunRecord("chaos-db-failure", "staging", {"dsn": leak}, started_at=1.0)
    rec.finish([Verdict("full recovery", Outcome.FAIL, leak, {"error": leak})])
    rec.metrics = {"last_error": leak}
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    store.save(rec)
    outputs = [
        report.verdict_markdown(rec),
        json.dumps(report.verdict_rows(rec)),
        report.html_report(store, tmp_path / "report.html").read_text(),
    ]
    for text in outputs:
        assert secret not in text
        assert "***" in text
