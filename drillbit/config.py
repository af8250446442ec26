"""``drillbit.yaml``: environments (targets), SLOs, safety and where results go — validated before anything runs.

Secrets never live in the file: a field like ``password_env: NAME`` names an environment variable (or, in flows, a
Prefect Secret block via ``password_block: NAME``); values are resolved when used and registered for redaction.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from drillbit import alert_rules
from drillbit import sandbox as sbx
from drillbit.secrets import register_secret

CONFIG_ENV = "DRILLBIT_CONFIG"

FIX_HINTS = {
    "missing": "add it",
    "extra_forbidden": "remove it (unknown key; check the spelling)",
    "url_parsing": "give a full URL such as http://host:port",
    "float_parsing": "give a number",
    "int_parsing": "give a whole number",
    "bool_parsing": "give true or false",
    "literal_error": "use one of the allowed values",
    "string_type": "give a string",
    "dict_type": "give a mapping (key: value)",
    "list_type": "give a list",
}


class ConfigError(Exception):
    """One or more problems, each naming the field path and the fix."""

    def __init__(self, problems: list[str], source: str = "drillbit.yaml") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"invalid configuration ({self.source}), {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(Strict):
    """Where a secret comes from: an environment variable or a Prefect Secret block (resolved in flows)."""

    env: str | None = None
    block: str | None = None

    @model_validator(mode="after")
    def one_source(self) -> SecretRef:
        if bool(self.env) == bool(self.block):
            raise ValueError("give exactly one of env (an environment variable name) or block (a Prefect Secret block)")
        return self

    def resolve(self) -> str | None:
        if self.env:
            value = os.environ.get(self.env)
            if value:
                register_secret(value)
            return value
        return None  # Prefect blocks are resolved by the tasks layer (tasks.secrets)


def _url(v: str | None) -> str | None:
    if v is None:
        return v
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} is not an http(s) URL; give a full URL such as http://host:port")
    return v.rstrip("/")


class Endpoints(Strict):
    node_rpc: str = Field(description="CometBFT RPC of a node (e.g. http://node:26657)")
    node_rest: str = Field(description="Cosmos REST gateway (e.g. http://node:1317)")
    api: str | None = Field(None, description="Marketplace API")
    provider: str | None = Field(None, description="Provider daemon")
    prometheus: str | None = None
    alertmanager: str | None = None
    pager: str | None = Field(None, description="Paging integration that records pages (sandbox: pager receiver)")
    faultproxy: str | None = Field(None, description="Toxiproxy-compatible control API (sandbox fault proxy)")

    @field_validator("*")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return _url(v)


class KubernetesTarget(Strict):
    context: str | None = None
    namespace: str = "virtengine"
    chaos_namespace: str = "chaos-testing"
    selectors: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "node": {"app.kubernetes.io/name": "virtengine-node"},
            "provider": {"app.kubernetes.io/name": "provider-daemon"},
            "database": {"app.kubernetes.io/name": "postgres"},
        }
    )

    @field_validator("selectors")
    @classmethod
    def non_empty(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, labels in v.items():
            if not labels:
                raise ValueError(f"selector {name!r} is empty and would match every pod; give at least one label")
        return v


class Database(Strict):
    host: str
    port: int = Field(5432, ge=1, le=65535)
    name: str = "marketplace"
    user: str = "postgres"
    password: SecretRef | None = None


class ObjectStore(Strict):
    endpoint: str | None = None
    region: str = "us-east-1"
    backups_bucket: str = "drillbit-backups"
    results_bucket: str = "drillbit-results"
    access_key: SecretRef | None = None
    secret_key: SecretRef | None = None


class SLO(Strict):
    """One service level objective (VirtEngine SLI_SLO_SLA)."""

    id: str
    description: str
    tier: Literal["node", "provider", "api"]
    target: float = Field(gt=0, lt=1, description="good-event ratio, e.g. 0.999")
    window_days: int = Field(28, ge=1, le=366)
    latency_p95_s: float | None = Field(None, gt=0)


DEFAULT_SLOS = [
    SLO(id="SLO-NODE-001", description="Node uptime", tier="node", target=0.9995),
    SLO(id="SLO-NODE-003", description="Transaction processing availability", tier="node", target=0.999),
    SLO(
        id="SLO-NODE-005", description="Transaction confirmation p95 < 10 s", tier="node", target=0.95, latency_p95_s=10
    ),
    SLO(id="SLO-NODE-006", description="Query response p95 < 2 s", tier="node", target=0.95, latency_p95_s=2),
    SLO(id="SLO-PROV-001", description="Provider daemon uptime", tier="provider", target=0.999),
    SLO(id="SLO-PROV-003", description="Deployment success rate", tier="provider", target=0.99),
    SLO(
        id="SLO-PROV-005",
        description="Provisioning latency p95 < 300 s",
        tier="provider",
        target=0.95,
        latency_p95_s=300,
    ),
    SLO(id="SLO-API-001", description="API availability", tier="api", target=0.999),
    SLO(id="SLO-API-004", description="Query latency p95 < 1 s", tier="api", target=0.95, latency_p95_s=1),
]


class ChangeWindow(Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    start: time
    end: time

    def contains(self, at: datetime) -> bool:
        at = at.astimezone(UTC)
        day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][at.weekday()]
        return day in self.days and self.start <= at.time().replace(tzinfo=None) < self.end


class Safety(Strict):
    production: bool = False
    opt_in: bool = Field(False, description="production targets need this set to true to run anything destructive")
    max_targets: int = Field(1, ge=1, description="blast radius: most pods/processes one fault may hit")
    max_percent: float = Field(34.0, gt=0, le=100, description="blast radius: most percent of matching targets")
    change_windows: list[ChangeWindow] = Field(default_factory=list, description="UTC windows faults may run in")
    abort_availability: float = Field(0.5, ge=0, le=1, description="abort a fault when availability falls below")


class Alerts(Strict):
    """The environment's alerts: which of its alert names play each of Drillbit's roles (drillbit.alert_rules.ROLES),
    where its alerting rules are, and the timings that decide how soon an alert can fire. ``drillbit doctor`` checks
    it. Durations are Prometheus durations (30s, 1m, 1h30m) or seconds."""

    roles: dict[str, list[str]] = Field(
        default_factory=dict, description="role → this environment's alert names (any one of them serves the role)"
    )
    rules: str | list[str] = Field(
        alert_rules.PROMETHEUS,
        description="'prometheus' (GET /api/v1/rules of endpoints.prometheus), or rule file paths / globs "
        "(relative ones from the config file's folder)",
    )
    evaluation_interval: float | None = Field(
        None,
        gt=0,
        description="Prometheus's global evaluation_interval, for rule groups without their own interval "
        "(default: asked from Prometheus's /api/v1/status/config, else Prometheus's default 1m)",
    )
    group_wait: float = Field(
        alert_rules.ALERTMANAGER_DEFAULT_GROUP_WAIT_S, ge=0, description="Alertmanager's route group_wait"
    )

    @field_validator("evaluation_interval", "group_wait", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return alert_rules.parse_duration(v) if isinstance(v, str) else v

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(alert_rules.ROLE_NAMES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(alert_rules.ROLE_NAMES)}")
        for role, names in v.items():
            if any(not n.strip() for n in names) or len(set(names)) != len(names):
                raise ValueError(f"role {role}: alert names must be non-empty and listed once each")
        return v

    @field_validator("rules")
    @classmethod
    def _rules_source(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and (not v or any(not p.strip() for p in v)):
            raise ValueError("give 'prometheus' or at least one rule file path or glob")
        return v


# The sandbox's alerts (infra/sandbox/monitoring/: alerts.yml.tmpl for the names, prometheus.yml.tmpl for the 1 s
# evaluation interval, alertmanager.yml.tmpl for group_wait 0s); the names are the scenarios' defaults.
SANDBOX_ALERTS = Alerts(
    roles={
        "node-down": ["NodeDown"],
        "pod-restarted": ["PodRestarted"],
        "disk": ["DiskSpaceLow", "DiskSpaceCritical"],
        "memory": ["CgroupMemoryHigh", "NodeMemoryHigh"],
        "database-down": ["APIDatabaseDown"],
        "chain-halted": ["ChainHalted"],
        "breaker-open": ["CircuitBreakerOpen"],
        "high-error-rate": ["HighErrorRate"],
        "service-down": ["ServiceDown"],
        "replication": ["ReplicationLagHigh"],
        "backup": ["BackupStale"],
    },
    rules=alert_rules.PROMETHEUS,
    evaluation_interval=1.0,
    group_wait=0.0,
)


class Environment(Strict):
    platform: Literal["sandbox", "kubernetes"]
    endpoints: Endpoints | None = None
    kubernetes: KubernetesTarget | None = None
    database: Database | None = None
    object_store: ObjectStore | None = None
    slos: list[SLO] = Field(default_factory=lambda: list(DEFAULT_SLOS))
    safety: Safety = Field(default_factory=Safety)
    alerts: Alerts | None = Field(None, description="alert roles, rules and timings (sandbox: built in)")

    @model_validator(mode="after")
    def platform_needs(self) -> Environment:
        if self.platform == "kubernetes":
            if self.endpoints is None:
                raise ValueError("a kubernetes environment needs endpoints (node_rpc, node_rest, ...)")
            if self.kubernetes is None:
                self.kubernetes = KubernetesTarget()
            if self.alerts and self.alerts.rules == alert_rules.PROMETHEUS and not self.endpoints.prometheus:
                raise ValueError(
                    "alerts.rules is 'prometheus' (the default) but endpoints.prometheus is not set; set it, or give "
                    "rule files in alerts.rules"
                )
        return self


class Results(Strict):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite in $DRILLBIT_HOME")
    artifacts_dir: str | None = None


class DrillbitConfig(Strict):
    default_environment: str = "sandbox"
    environments: dict[str, Environment] = Field(default_factory=lambda: {"sandbox": Environment(platform="sandbox")})
    results: Results = Field(default_factory=Results)
    _source_dir: Path | None = PrivateAttr(None)  # the config file's folder (set by load)

    @model_validator(mode="after")
    def default_exists(self) -> DrillbitConfig:
        if self.default_environment not in self.environments:
            raise ValueError(
                f"default_environment {self.default_environment!r} is not among environments "
                f"({', '.join(self.environments)}); add it or change default_environment"
            )
        return self

    def environment(self, name: str | None = None, *, destructive: bool = False, now: datetime | None = None):
        """The named environment, resolved (sandbox endpoints filled in) and checked for safety."""
        name = name or self.default_environment
        if name not in self.environments:
            raise ConfigError([f"environment {name!r} is not defined; known: {', '.join(self.environments)}"])
        env = self.environments[name]
        if destructive and env.safety.production:
            if not env.safety.opt_in:
                raise ConfigError(
                    [
                        f"environments.{name}.safety.opt_in: {name!r} is a production target; set opt_in: true to "
                        "allow Drillbit to inject faults there"
                    ]
                )
            now = now or datetime.now(UTC)
            windows = env.safety.change_windows
            if windows and not any(w.contains(now) for w in windows):
                raise ConfigError(
                    [f"environments.{name}.safety.change_windows: {now:%a %H:%M} UTC is outside every change window"]
                )
        if env.platform == "sandbox" and env.endpoints is None:
            env = env.model_copy(update={"endpoints": sandbox_endpoints()})
        return ResolvedEnvironment(name=name, spec=env, config_dir=self._source_dir)


class ResolvedEnvironment(BaseModel):
    name: str
    spec: Environment
    config_dir: Path | None = None  # relative paths in the config start here (None: the current directory)

    @property
    def endpoints(self) -> Endpoints:
        assert self.spec.endpoints is not None
        return self.spec.endpoints

    @property
    def platform(self) -> str:
        return self.spec.platform

    def selector(self, role: str) -> dict[str, str]:
        """Label selector of a role (node, provider, database, ...) — the same labels on the sandbox and Kubernetes."""
        selectors = (self.spec.kubernetes or KubernetesTarget()).selectors
        if role not in selectors:
            raise ConfigError([f"environments.{self.name}.kubernetes.selectors: no selector for role {role!r}"])
        return selectors[role]

    def alert_profile(self) -> alert_rules.AlertProfile:
        """The environment's alerts: its ``alerts:`` section; on the sandbox, SANDBOX_ALERTS with whatever that
        section sets on top (roles replaced role by role)."""
        base = SANDBOX_ALERTS if self.platform == "sandbox" else Alerts()
        own = self.spec.alerts
        merged = base.model_copy(update=own.model_dump(include=own.model_fields_set)) if own else base
        if own and "roles" in own.model_fields_set:
            merged = merged.model_copy(update={"roles": {**base.roles, **own.roles}})
        rules = merged.rules
        if rules != alert_rules.PROMETHEUS:
            rules = (rules,) if isinstance(rules, str) else tuple(rules)
        return alert_rules.AlertProfile(
            roles={role: tuple(names) for role, names in merged.roles.items()},
            rules=rules,
            evaluation_interval_s=merged.evaluation_interval,
            group_wait_s=merged.group_wait,
            prometheus=self.spec.endpoints.prometheus if self.spec.endpoints else None,
            base_dir=self.config_dir,
        )

    def slo(self, slo_id: str) -> SLO:
        for s in self.spec.slos:
            if s.id == slo_id:
                return s
        raise ConfigError([f"environments.{self.name}.slos: no SLO with id {slo_id}"])


def sandbox_endpoints(run: Path | None = None) -> Endpoints:
    ep = sbx.endpoints(run)
    return Endpoints(
        node_rpc=ep["node_rpc"],
        node_rest=ep["node_rest"],
        api=ep.get("api"),
        provider=ep.get("provider"),
        prometheus=ep.get("prometheus"),
        alertmanager=ep.get("alertmanager"),
        pager=ep.get("pager"),
        faultproxy=ep.get("faultproxy"),
    )


def format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        hint = FIX_HINTS.get(err["type"])
        problems.append(f"{path}: {msg}" + (f" — {hint}" if hint and hint not in msg else ""))
    return problems


def parse(data: Any, source: str = "drillbit.yaml") -> DrillbitConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"], source)
    try:
        return DrillbitConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc), source) from None


def load(path: str | Path | None = None) -> DrillbitConfig:
    """Load ``path``, else $DRILLBIT_CONFIG, else ./drillbit.yaml; with no file, the built-in sandbox default."""
    candidate = Path(path) if path else Path(os.environ.get(CONFIG_ENV, "drillbit.yaml"))
    if not candidate.exists():
        if path or os.environ.get(CONFIG_ENV):
            raise ConfigError([f"config file {candidate} does not exist"], str(candidate))
        return DrillbitConfig()
    try:
        data = yaml.safe_load(candidate.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}".replace("\n", " ")], str(candidate)) from None
    cfg = parse(data, str(candidate))
    cfg._source_dir = candidate.resolve().parent
    return cfg
