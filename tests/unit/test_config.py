import pytest

from drillbit import config
from drillbit.config import ConfigError
from drillbit.secrets import redact

STAGING = {
    "platform": "kubernetes",
    "endpoints": {"node_rpc": "http://rpc.staging:26657", "node_rest": "http://rest.staging:1317"},
}


def problems(data):
    with pytest.raises(ConfigError) as exc:
        config.parse(data)
    return exc.value.problems


def test_default_is_the_sandbox():
    cfg = config.parse({})
    assert cfg.default_environment == "sandbox" and cfg.environments["sandbox"].platform == "sandbox"
    slos = {s.id: s for s in cfg.environments["sandbox"].slos}
    assert slos["SLO-API-001"].target == 0.999 and slos["SLO-NODE-001"].window_days == 28


def test_wrong_type_names_the_field_path():
    (p,) = problems(
        {"environments": {"staging": {**STAGING, "safety": {"max_targets": "many"}}}, "default_environment": "staging"}
    )
    assert p.startswith("environments.staging.safety.max_targets:") and "whole number" in p


def test_unknown_key_is_refused_with_the_fix():
    (p,) = problems({"environments": {"sandbox": {"platform": "sandbox", "endpont": {}}}})
    assert p.startswith("environments.sandbox.endpont:") and "unknown key" in p


def test_missing_endpoint_is_named():
    data = {
        "environments": {"staging": {"platform": "kubernetes", "endpoints": {"node_rpc": "http://x:26657"}}},
        "default_environment": "staging",
    }
    (p,) = problems(data)
    assert p.startswith("environments.staging.endpoints.node_rest:") and "required" in p.lower()


def test_every_problem_is_reported_at_once():
    data = {
        "environments": {"staging": {"platform": "kubernetes", "endpoints": {"node_rpc": "rpc:26657", "node_rest": 3}}},
        "default_environment": "nope",
    }
    ps = problems(data)
    assert len(ps) >= 2
    assert any("node_rpc" in p and "http(s) URL" in p for p in ps)


def test_empty_selector_is_refused():
    env = {**STAGING, "kubernetes": {"selectors": {"node": {}}}}
    (p,) = problems({"environments": {"staging": env}, "default_environment": "staging"})
    assert "environments.staging.kubernetes.selectors" in p and "every pod" in p


def test_production_needs_opt_in_before_anything_destructive():
    env = {**STAGING, "safety": {"production": True}}
    cfg = config.parse({"environments": {"production": env}, "default_environment": "production"})
    assert cfg.environment("production").name == "production"  # read-only use is fine
    with pytest.raises(ConfigError, match=r"environments.production.safety.opt_in"):
        cfg.environment("production", destructive=True)
    env["safety"]["opt_in"] = True
    cfg = config.parse({"environments": {"production": env}, "default_environment": "production"})
    assert cfg.environment("production", destructive=True).spec.safety.production


def test_change_windows_are_enforced_for_production():
    from datetime import UTC, datetime

    env = {
        **STAGING,
        "safety": {
            "production": True,
            "opt_in": True,
            "change_windows": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
        },
    }
    cfg = config.parse({"environments": {"prod": env}, "default_environment": "prod"})
    inside = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # a Saturday
    outside = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert cfg.environment("prod", destructive=True, now=inside)
    with pytest.raises(ConfigError, match="outside every change window"):
        cfg.environment("prod", destructive=True, now=outside)


def test_secret_comes_from_env_and_is_redacted(monkeypatch):
    monkeypatch.setenv("STAGING_DB_PASSWORD", "hunter2-very-secret")
    env = {**STAGING, "database": {"host": "db", "password": {"env": "STAGING_DB_PASSWORD"}}}
    cfg = config.parse({"environments": {"staging": env}, "default_environment": "staging"})
    assert cfg.environments["staging"].database.password.resolve() == "hunter2-very-secret"
    assert redact("connecting with hunter2-very-secret now") == "connecting with *** now"


def test_a_secret_value_in_the_file_is_refused():
    env = {**STAGING, "database": {"host": "db", "password": "plaintext"}}
    (p,) = problems({"environments": {"staging": env}, "default_environment": "staging"})
    assert p.startswith("environments.staging.database.password")


def test_yaml_file_errors_name_the_file(tmp_path):
    f = tmp_path / "drillbit.yaml"
    f.write_text("environments: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(f)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")
