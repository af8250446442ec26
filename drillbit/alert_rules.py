"""Alert roles and an environment's Prometheus alerting rules: which of its alerts play each role Drillbit waits
for, whether those alerts exist, and how soon each can be relied on to fire.

**Roles.** A scenario does not wait for an alert name but for an alert that means something ("a validator node is
down"): ``ROLES`` names each meaning once. An environment maps roles to its own alert names (``alerts.roles`` in
drillbit.yaml; the sandbox has a built-in profile, ``drillbit.config.SANDBOX_ALERTS``). ``FLOW_ROLES`` says which
built-in flows wait for which roles.

**Rules.** Read from Prometheus rule files (a mapping with ``groups:``, or a Kubernetes ``PrometheusRule`` object
holding the same groups under ``spec:``), or from a running Prometheus (``GET /api/v1/rules``). A file Prometheus
would refuse (not YAML, wrong shape, unknown keys, a bad duration, a group name twice in one file) is a problem and
none of its rules count. An alert name defined twice is a problem too, but both definitions count, as in Prometheus.

**Earliest firing time**, in seconds after the alert's condition starts to hold::

    ceil(for / interval) * interval  +  interval  +  group_wait

- ``interval`` is how often the rule's group is evaluated: the group's ``interval``, else Prometheus's global
  ``evaluation_interval`` (default 1m). The condition may start just after an evaluation; the next one, up to one
  interval later, is the first to see it and makes the alert pending (firing at once when ``for`` is 0).
- ``for``: Prometheus fires a pending alert once it has stayed active at every evaluation for ``for`` (Prometheus
  docs, configuration/alerting_rules, "the for clause"); evaluations come every interval, so that is the first
  evaluation at least ``for`` after the one that made it pending. For every VirtEngine rule ``for`` is a multiple
  of the interval, and the formula reads ``for + interval + group_wait``.
- ``group_wait``: Prometheus sends a firing alert to Alertmanager after that evaluation; Alertmanager holds the
  first notification of a new group for the route's ``group_wait`` (Alertmanager docs, configuration, route:
  default 30s). The alert is listed by Alertmanager's API before that; the page (the notification) comes after.

It agrees with what was measured on this kind of machine (../shared/notes/recipes.md, Monitoring: 1 s evaluation,
``for: 5s``, ``group_wait: 0s``: in Alertmanager about 6 s after the condition starts). It leaves out the time the
expression needs to become true after a fault (scrape interval, range windows such as ``[5m]``, thresholds on
elapsed time such as ChainHalted's ``> 30`` seconds without a block) and an alert joining a group that already
notified (it waits ``group_interval`` instead of ``group_wait``). So it is the least a criterion may wait: a shorter
wait fails a healthy system; this wait may still be short by those amounts.
"""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = "prometheus"  # the rules source that means: ask the environment's Prometheus (GET /api/v1/rules)
PROMETHEUS_DEFAULT_INTERVAL_S = 60.0  # Prometheus's global evaluation_interval when its config sets none
ALERTMANAGER_DEFAULT_GROUP_WAIT_S = 30.0  # Alertmanager's route group_wait when its config sets none
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Role:
    name: str
    meaning: str


ROLES: tuple[Role, ...] = (
    Role("node-down", "a validator node stops answering (its metrics target is down)"),
    Role("pod-restarted", "a VirtEngine process or pod was restarted"),
    Role("disk", "a data volume is nearly full"),
    Role("memory", "a process, container or host is close to its memory limit"),
    Role("database-down", "the marketplace API has lost its database"),
    Role("chain-halted", "the chain produces no new block (consensus stopped)"),
    Role("breaker-open", "the provider's bid-engine circuit breaker is open"),
    Role("high-error-rate", "too many requests to the API fail"),
    Role("service-down", "a service other than a validator (API, provider daemon, etcd, ...) stops answering"),
    Role("replication", "a database replica lags behind its primary"),
    Role("backup", "no backup has succeeded for too long"),
)
ROLE_NAMES: tuple[str, ...] = tuple(r.name for r in ROLES)

# Built-in flows whose criteria wait for an alert, and the roles whose alerts they accept: like the criteria
# (criteria.alerts_fired, criteria.paged, dc_loss's detection step), a flow is served when any one of them fires.
FLOW_ROLES: dict[str, tuple[str, ...]] = {
    "chaos-pod-kill": ("pod-restarted", "node-down"),  # PodKillParams.expected_alerts
    "chaos-disk-pressure": ("disk",),  # DiskPressureParams.expected_alerts
    "resource-exhaustion": ("memory",),  # ResourceExhaustionParams.expected_alerts
    "split-brain": ("chain-halted",),  # "ChainHalted fires" (no-majority scenarios)
    "dr-dc-loss": ("service-down", "database-down"),  # DcLossParams.detect_alerts
    "dr-drill": ("service-down", "database-down"),  # runs dr-dc-loss
}

_GROUP_KEYS = {"name", "interval", "query_offset", "limit", "rules", "labels"}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")


class RulesUnavailable(Exception):
    """The rules source cannot be read at all (no file matches, Prometheus unreachable or answering nonsense)."""


class _Refused(Exception):
    """One reason a rule file does not load."""


def parse_duration(value: object) -> float:
    """Seconds of a Prometheus duration (``30s``, ``1m``, ``1h30m``, ``0``; units y w d h m s ms, in that order)."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a Prometheus duration (e.g. 30s, 1m, 1h30m)")
    return float(sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS.values(), strict=True) if n))


@dataclass
class AlertRule:
    name: str
    expr: str
    for_s: float
    keep_firing_for_s: float
    group: str
    interval_s: float | None  # the group's own interval; None: Prometheus's global evaluation_interval applies
    source: str  # the rule file, or "<Prometheus URL> <its rule file>"
    labels: dict[str, str] = field(default_factory=dict)

    def earliest_firing_s(self, default_interval_s: float, group_wait_s: float) -> float:
        """Seconds from the condition starting to hold until the alert is sure to have fired and notified (module
        docstring: ceil(for / interval) * interval + interval + group_wait)."""
        interval = self.interval_s or default_interval_s
        return math.ceil(self.for_s / interval) * interval + interval + group_wait_s


@dataclass
class RuleProblem:
    source: str
    reason: str
    loaded: bool = False  # True when the source's rules still count (a duplicated name), False when none do


@dataclass
class RuleSet:
    rules: list[AlertRule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # every file read, or the Prometheus URL

    def by_name(self) -> dict[str, list[AlertRule]]:
        out: dict[str, list[AlertRule]] = {}
        for rule in self.rules:
            out.setdefault(rule.name, []).append(rule)
        return out


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _duration_of(rule: dict[str, Any], key: str, where: str) -> float:
    if rule.get(key) is None:
        return 0.0
    try:
        return parse_duration(rule[key])
    except ValueError as exc:
        raise _Refused(f"{where}.{key}: {exc}") from None


def _groups_of(doc: Any) -> list[Any]:
    """The rule groups of one YAML document: a rule file, or a PrometheusRule object wrapping one."""
    doc = _mapping(doc, "(top level)")
    if doc.get("kind") == "PrometheusRule":
        spec = _mapping(doc.get("spec"), "spec")
        groups = spec.get("groups")
        where = "spec.groups"
    else:
        unknown = sorted(set(doc) - {"groups"})
        if unknown:
            raise _Refused(f"(top level): unknown key(s) {', '.join(map(str, unknown))}; a rule file holds groups:")
        groups = doc.get("groups")
        where = "groups"
    if groups is None:
        return []
    if not isinstance(groups, list):
        raise _Refused(f"{where}: expected a list of rule groups")
    return groups


def _rules_of(doc: Any, source: str) -> list[AlertRule]:
    out: list[AlertRule] = []
    seen_groups: set[str] = set()
    for i, raw_group in enumerate(_groups_of(doc)):
        group = _mapping(raw_group, f"groups[{i}]")
        name = group.get("name")
        if not isinstance(name, str) or not name:
            raise _Refused(f"groups[{i}]: a group needs a name")
        if name in seen_groups:
            raise _Refused(f"group {name!r} is repeated in the same file")
        seen_groups.add(name)
        unknown = sorted(set(group) - _GROUP_KEYS)
        if unknown:
            raise _Refused(f"group {name!r}: unknown key(s) {', '.join(map(str, unknown))}")
        interval = _duration_of(group, "interval", f"group {name!r}") or None
        rules = group.get("rules") or []
        if not isinstance(rules, list):
            raise _Refused(f"group {name!r}.rules: expected a list")
        for j, raw_rule in enumerate(rules):
            where = f"group {name!r} rule {j + 1}"
            rule = _mapping(raw_rule, where)
            unknown = sorted(set(rule) - _RULE_KEYS)
            if unknown:
                raise _Refused(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
            if ("alert" in rule) == ("record" in rule):
                raise _Refused(f"{where}: give exactly one of alert and record")
            if not isinstance(rule.get("expr"), str | int | float) or not str(rule["expr"]).strip():
                raise _Refused(f"{where}: expr is missing")
            if "record" in rule:
                continue
            alert = rule["alert"]
            if not isinstance(alert, str) or not alert.strip():
                raise _Refused(f"{where}: alert needs a name")
            where = f"alert {alert!r} (group {name!r})"
            labels = rule.get("labels") or {}
            out.append(
                AlertRule(
                    name=alert,
                    expr=str(rule["expr"]),
                    for_s=_duration_of(rule, "for", where),
                    keep_firing_for_s=_duration_of(rule, "keep_firing_for", where),
                    group=name,
                    interval_s=interval,
                    source=source,
                    labels={str(k): str(v) for k, v in _mapping(labels, f"{where}.labels").items()},
                )
            )
    return out


def _yaml_reason(exc: yaml.YAMLError, text: str) -> str:
    """One line: what the YAML parser refused, where, and the text of that line."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return "not valid YAML: " + " ".join(str(exc).split())
    problem, context = exc.problem_mark, exc.context_mark
    what = str(exc.problem)
    if exc.context and context is not None:
        what += f" ({exc.context} at line {context.line + 1})"
    lines = text.splitlines()
    quoted = (context or problem).line
    shown = lines[quoted].strip() if quoted < len(lines) else ""
    return f"not valid YAML at line {problem.line + 1}: {what}: {shown[:60]!r}"


def load_rule_text(text: str, source: str) -> tuple[list[AlertRule], RuleProblem | None]:
    """The alerting rules of one rule file's text, or no rules and the reason the file does not load."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [], RuleProblem(source, _yaml_reason(exc, text))
    if not docs:
        return [], RuleProblem(source, "holds no rule groups", loaded=True)
    try:
        return [rule for doc in docs for rule in _rules_of(doc, source)], None
    except _Refused as exc:
        return [], RuleProblem(source, str(exc))


def _note_duplicates(found: RuleSet) -> RuleSet:
    first: dict[str, AlertRule] = {}
    for rule in found.rules:
        if rule.name in first:
            was = first[rule.name]
            reason = f"alert {rule.name} (group {rule.group!r}) is also defined in {was.source} (group {was.group!r})"
            found.problems.append(RuleProblem(rule.source, reason, loaded=True))
        else:
            first[rule.name] = rule
    return found


def load_rule_files(patterns: list[str] | tuple[str, ...], base_dir: Path | None = None) -> RuleSet:
    """Every alerting rule in the files the paths or globs name (relative ones from ``base_dir``, else the current
    directory). Raises RulesUnavailable when no pattern matches any file."""
    found = RuleSet()
    files: list[Path] = []
    for pattern in patterns:
        full = Path(pattern).expanduser()
        if not full.is_absolute() and base_dir is not None:
            full = base_dir / full
        full = Path(os.path.normpath(full))
        matched = sorted(Path(p) for p in glob.glob(str(full)) if Path(p).is_file())
        if not matched:
            found.problems.append(RuleProblem(pattern, f"no file matches {full}"))
        files += [m for m in matched if m not in files]
    if not files:
        raise RulesUnavailable(f"no rule file found: {', '.join(patterns) or '(no paths given)'}")
    for path in files:
        found.sources.append(str(path))
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            found.problems.append(RuleProblem(str(path), f"cannot be read: {exc}"))
            continue
        rules, problem = load_rule_text(text, str(path))
        found.rules += rules
        if problem:
            found.problems.append(problem)
    return _note_duplicates(found)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Refused(f"{where}: expected seconds, got {value!r}")
    return float(value)


def parse_rules_api(payload: Any, source: str) -> RuleSet:
    """The alerting rules in a ``GET /api/v1/rules`` answer (``data.groups[]``: ``name``, ``file``, ``interval`` in
    seconds, ``rules[]`` with ``type``, ``name``, ``query``, ``duration`` and ``keepFiringFor`` in seconds). A group
    that does not parse is a problem; the others count. Raises RulesUnavailable on an answer that is not one."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error") if isinstance(payload, dict) else None
        raise RulesUnavailable(f"{source}: not a successful rules answer{f' ({error})' if error else ''}")
    groups = payload.get("data", {}).get("groups") if isinstance(payload.get("data"), dict) else None
    if not isinstance(groups, list):
        raise RulesUnavailable(f"{source}: the answer has no data.groups list")
    found = RuleSet(sources=[source])
    for i, raw in enumerate(groups):
        group_source = f"{source} group {i + 1}"
        try:
            group = _mapping(raw, "group")
            name, file = group.get("name"), group.get("file") or "(no file)"
            if not isinstance(name, str) or not name:
                raise _Refused("a group needs a name")
            group_source = f"{source} {file}"
            interval = _seconds(group.get("interval"), f"group {name!r}.interval") or None
            for raw_rule in group.get("rules") or []:
                rule = _mapping(raw_rule, f"group {name!r} rule")
                if rule.get("type") != "alerting":
                    continue
                alert = rule.get("name")
                if not isinstance(alert, str) or not alert:
                    raise _Refused(f"group {name!r}: an alerting rule without a name")
                where = f"alert {alert!r}"
                found.rules.append(
                    AlertRule(
                        name=alert,
                        expr=str(rule.get("query", "")),
                        for_s=_seconds(rule.get("duration", 0), f"{where}.duration"),
                        keep_firing_for_s=_seconds(rule.get("keepFiringFor", 0), f"{where}.keepFiringFor"),
                        group=name,
                        interval_s=interval,
                        source=group_source,
                        labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                    )
                )
        except _Refused as exc:
            found.problems.append(RuleProblem(group_source, str(exc)))
    return _note_duplicates(found)


def _get_json(url: str, timeout: float) -> Any:
    import httpx  # imported here: the CLI's cheap commands import this module's names and must not load httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RulesUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from None
    try:
        return response.json()
    except ValueError:
        raise RulesUnavailable(f"{url}: HTTP {response.status_code}, not JSON: {response.text[:120]!r}") from None


def fetch_rules(prometheus: str, timeout: float = HTTP_TIMEOUT_S) -> RuleSet:
    """The alerting rules a running Prometheus has loaded (``GET /api/v1/rules?type=alert``)."""
    base = prometheus.rstrip("/")
    return parse_rules_api(_get_json(f"{base}/api/v1/rules?type=alert", timeout), base)


def fetch_global_interval(prometheus: str, timeout: float = HTTP_TIMEOUT_S) -> float | None:
    """Prometheus's global ``evaluation_interval`` in seconds, from ``GET /api/v1/status/config`` (its default when
    the config sets none); None when Prometheus cannot be asked or answers something else."""
    try:
        payload = _get_json(f"{prometheus.rstrip('/')}/api/v1/status/config", timeout)
        config = yaml.safe_load(payload["data"]["yaml"]) or {}
        value = (config.get("global") or {}).get("evaluation_interval")
        return PROMETHEUS_DEFAULT_INTERVAL_S if value is None else parse_duration(value)
    except (RulesUnavailable, KeyError, TypeError, AttributeError, ValueError, yaml.YAMLError):
        return None


@dataclass(frozen=True)
class AlertProfile:
    """An environment's alerts, as drillbit.config resolves them (``ResolvedEnvironment.alert_profile()``)."""

    roles: dict[str, tuple[str, ...]]
    rules: str | tuple[str, ...]  # PROMETHEUS, or rule file paths / globs
    evaluation_interval_s: float | None  # Prometheus's global one; None: ask Prometheus, else its default (1m)
    group_wait_s: float = ALERTMANAGER_DEFAULT_GROUP_WAIT_S
    prometheus: str | None = None  # the environment's Prometheus URL
    base_dir: Path | None = None  # relative rule paths start here (the config file's folder)


def load_rules(profile: AlertProfile) -> RuleSet:
    """The profile's rules, from its files or its Prometheus. Raises RulesUnavailable when the source is unreadable."""
    if profile.rules == PROMETHEUS:
        if not profile.prometheus:
            raise RulesUnavailable(
                "the rules come from Prometheus (alerts.rules: prometheus) but the environment has no "
                "endpoints.prometheus; set it, or give rule files in alerts.rules"
            )
        return fetch_rules(profile.prometheus)
    return load_rule_files(list(profile.rules), profile.base_dir)


def default_interval(profile: AlertProfile, rules: RuleSet) -> tuple[float, str]:
    """The evaluation interval of groups without their own, and where it comes from."""
    if profile.evaluation_interval_s:
        return profile.evaluation_interval_s, "alerts.evaluation_interval"
    if all(r.interval_s for r in rules.rules):
        return PROMETHEUS_DEFAULT_INTERVAL_S, "unused: every group sets its own"
    asked = fetch_global_interval(profile.prometheus) if profile.prometheus else None
    if asked:
        return asked, f"{profile.prometheus}/api/v1/status/config"
    return PROMETHEUS_DEFAULT_INTERVAL_S, "Prometheus's default"


@dataclass
class RoleAlerts:
    """One role in one environment: the alert names mapped to it, the earliest firing time of each that exists in
    the rules, and ``wait_s``, the longest of those: what a criterion waiting for this role should allow at least."""

    role: str
    names: tuple[str, ...]
    firing_s: dict[str, float]  # name → earliest firing time (the longest of its definitions when defined twice)
    missing: tuple[str, ...]

    @property
    def wait_s(self) -> float | None:
        return max(self.firing_s.values()) if self.firing_s else None

    @property
    def status(self) -> str:
        if not self.names:
            return "no alert mapped"
        if self.missing:
            return f"missing: {', '.join(self.missing)} (no such alert in the rules)"
        return "ok"


def _role_alerts(profile: AlertProfile, role: str, by_name: dict[str, list[AlertRule]], interval: float) -> RoleAlerts:
    if role not in ROLE_NAMES:
        raise KeyError(f"unknown alert role {role!r}; roles: {', '.join(ROLE_NAMES)}")
    names = tuple(profile.roles.get(role, ()))
    firing = {
        n: max(r.earliest_firing_s(interval, profile.group_wait_s) for r in by_name[n]) for n in names if n in by_name
    }
    return RoleAlerts(role, names, firing, tuple(n for n in names if n not in by_name))


def role_alerts(
    profile: AlertProfile, role: str, rules: RuleSet | None = None, default_interval_s: float | None = None
) -> RoleAlerts:
    """The alert names of ``role`` in this profile and the longest earliest firing time among them (``wait_s``), for
    a criterion to use as its wait. Reads the rules (and the default interval) when not given."""
    rules = rules if rules is not None else load_rules(profile)
    interval = default_interval_s or default_interval(profile, rules)[0]
    return _role_alerts(profile, role, rules.by_name(), interval)


def check_roles(profile: AlertProfile, rules: RuleSet, default_interval_s: float) -> list[RoleAlerts]:
    """Every role, in ROLES order, resolved against the rules."""
    by_name = rules.by_name()
    return [_role_alerts(profile, role, by_name, default_interval_s) for role in ROLE_NAMES]


def uncovered_flows(checks: list[RoleAlerts]) -> dict[str, tuple[str, ...]]:
    """Built-in flows none of whose roles has an alert in the rules: flow → the roles it accepts."""
    covered = {c.role for c in checks if c.firing_s}
    return {flow: roles for flow, roles in FLOW_ROLES.items() if not covered & set(roles)}


def flows_of(role: str) -> list[str]:
    """The built-in flows that wait for this role's alerts."""
    return [flow for flow, roles in FLOW_ROLES.items() if role in roles]
