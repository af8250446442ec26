"""Target selection shared by every platform: Chaos Mesh's selection modes, the blast-radius rule, and the rule that
a fault never takes a whole workload down unless the experiment says it means to.

- ``mode_count``: how many of the matching candidates a mode picks (``one``, ``all``, ``fixed`` N,
  ``fixed-percent`` P, and ``random-max-percent`` P counted at its maximum);
- ``check_blast_radius``: the one rule every fault's choice must satisfy — at most ``max_targets`` targets, and at
  most ``max_percent`` of the matching set (one target is always allowed by the percentage);
- ``select_targets``: components (sandbox programs, Kubernetes pods) whose labels match a selector, picked by mode
  and checked against the blast radius and the whole-workload rule. A Chaos Mesh experiment (which picks its own
  pods) is checked with ``mode_count`` + ``check_blast_radius`` + ``workload_shares`` on the pods its selector
  matches now;
- workloads: a target belongs to a ``Workload`` (on Kubernetes its controller, read by
  ``platform.kubernetes.pod_workloads``: Pod → ReplicaSet → Deployment, StatefulSet, DaemonSet; a bare pod is its
  own workload of one; on the sandbox ``sandbox_workloads``: the components sharing the ``app.kubernetes.io/name``
  and ``app.kubernetes.io/component`` labels, e.g. the validators node-0..2). Its ``replicas`` are its live members
  now (Ready pods, RUNNING programs): what users are served by. ``workload_shares`` says, per workload, how many of
  its live replicas the selection takes down at most (judged on what the mode may pick, not on one random draw, so
  that the same selection is always allowed or always refused); taking all of them (1 of 1 included) is a full
  outage, refused with ``FullOutageRefused`` unless the experiment sets ``full_outage``. The plan's ``workloads``
  detail lists every row and flags each full outage (refused, or allowed by full_outage), dry runs included.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from drillbit.faults.errors import FaultError, FullOutageRefused

Mode = Literal["one", "all", "fixed", "fixed-percent"]
MODES: tuple[str, ...] = get_args(Mode)


def mode_count(mode: str, value: float | None, matching: int) -> int:
    """How many of ``matching`` candidates ``mode`` picks (``random-max-percent``: at most); FaultError if invalid."""
    if mode == "one":
        count = 1
    elif mode == "all":
        count = matching
    elif mode == "fixed":
        if value is None or value < 1 or int(value) != value:
            raise FaultError(f"mode fixed needs a whole number value ≥ 1, got {value}")
        count = int(value)
    elif mode in ("fixed-percent", "random-max-percent"):
        if value is None or not 0 < value <= 100:
            raise FaultError(f"mode {mode} needs a value in (0, 100], got {value}")
        count = max(1, math.floor(matching * value / 100))
    else:
        raise FaultError(f"unknown mode {mode!r}; use one, all, fixed or fixed-percent")
    if count > matching:
        raise FaultError(f"mode {mode} asks for {count} targets but the selector matches only {matching}")
    return count


def check_blast_radius(
    count: int,
    matching: int,
    max_targets: int | None = None,
    max_percent: float | None = None,
    *,
    noun: str = "targets",
    limit: str = "safety.max_targets",
) -> None:
    """FaultError if ``count`` of ``matching`` exceeds ``max_targets`` (named ``limit``) or ``max_percent``."""
    if max_targets is not None and count > max_targets:
        raise FaultError(f"blast radius: {count} {noun} exceed {limit}={max_targets}")
    if max_percent is not None and matching and count / matching * 100 > max_percent + 1e-9 and count > 1:
        raise FaultError(f"blast radius: {count}/{matching} {noun} exceed safety.max_percent={max_percent:g}")


# ------------------------------------------------------------------------------------------------ workloads

NAME_LABEL, ROLE_LABEL = "app.kubernetes.io/name", "app.kubernetes.io/component"


@dataclass(frozen=True)
class Workload:
    """What serves users as one thing: a Deployment, StatefulSet, DaemonSet, ReplicaSet or bare Pod on Kubernetes; on
    the sandbox, the components sharing a name and a role (``kind`` is the role, e.g. ``blockchain``).
    ``replicas``: its live members now (Ready pods, RUNNING programs)."""

    kind: str
    name: str
    replicas: int
    namespace: str = ""

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Share:
    """One workload's part in a selection: its live ``members`` the selector matches and how many of them the mode
    takes down at most (``up_to``: the mode's count is spread over several workloads, so this one may get fewer)."""

    workload: Workload
    members: tuple[str, ...]
    taken: int
    up_to: bool = False

    @property
    def full(self) -> bool:
        """Every live replica of the workload taken down (1 of 1 included)."""
        return self.workload.replicas > 0 and self.taken >= self.workload.replicas

    def describe(self, full_outage: bool) -> str:
        w = self.workload
        row = f"{w}: {'up to ' if self.up_to else ''}{self.taken} of {w.replicas} live replicas down"
        if self.full:
            verdict = "allowed by full_outage" if full_outage else "refused: full_outage=false"
            row += f" — full outage of {w} ({verdict})"
        return row


def sandbox_workloads(components: Mapping[str, Mapping[str, Any]]) -> dict[str, Workload]:
    """The workload of each sandbox component (by name): the components sharing ``app.kubernetes.io/name`` and
    ``app.kubernetes.io/component``; one without a name label is a workload of its own. ``replicas`` counts the
    components given (``PodKill`` gives the RUNNING ones)."""

    def key(name: str, labels: Mapping[str, str]) -> tuple[str, str]:
        if NAME_LABEL not in labels:
            return ("component", name)
        return (labels.get(ROLE_LABEL, "component"), labels[NAME_LABEL])

    keys = {n: key(n, c.get("labels") or {}) for n, c in components.items()}
    counts = Counter(keys.values())
    return {n: Workload(kind, name, counts[(kind, name)]) for n, (kind, name) in keys.items()}


def workload_shares(
    matching: Sequence[str],
    count: int,
    workloads: Mapping[str, Workload],
    live: Collection[str] | None = None,
) -> list[Share]:
    """Per workload of the ``matching`` candidates: its live members among them and the most of those a pick of
    ``count`` of the matching set can take down. ``live``: the matching candidates that serve now (default: all)."""
    alive = set(matching) if live is None else set(live)
    members: dict[Workload, list[str]] = defaultdict(list)
    for name in matching:
        members[workloads[name]].extend([name] if name in alive else [])
    shares = [Share(w, tuple(sorted(m)), min(count, len(m))) for w, m in members.items()]
    spread = sum(s.taken for s in shares) > count
    return sorted((Share(s.workload, s.members, s.taken, spread) for s in shares), key=lambda s: str(s.workload))


def describe_shares(shares: Sequence[Share], full_outage: bool) -> str:
    """The plan's ``workloads`` detail: one row per workload, "; "-separated."""
    return "; ".join(s.describe(full_outage) for s in shares)


def refuse_full_outage(
    shares: Sequence[Share], full_outage: bool, plan: Any = None, what: str = "the selection"
) -> None:
    """FullOutageRefused (carrying ``plan``) for the first workload the selection takes entirely down, unless
    ``full_outage``."""
    if full_outage:
        return
    for s in shares:
        if s.full:
            w = s.workload
            raise FullOutageRefused(
                f"full outage refused: {what} can take down every live replica of {w} (replicas {w.replicas}, "
                f"targets {s.taken}: {', '.join(s.members)}); narrow the selector or mode, or set full_outage=true "
                "if the experiment means a full outage",
                plan,
            )


# ------------------------------------------------------------------------------------------------ selection


@dataclass
class Choice:
    """A selection: the targets picked, and each workload's share of what the mode may take down."""

    targets: list[str]
    shares: list[Share] = field(default_factory=list)


def choose(
    components: dict[str, dict[str, Any]],
    selector: dict[str, str],
    mode: Mode = "one",
    value: float | None = None,
    *,
    max_targets: int | None = None,
    max_percent: float | None = None,
    rng: random.Random | None = None,
    workloads: Mapping[str, Workload] | None = None,
    live: Collection[str] | None = None,
) -> Choice:
    """``select_targets`` without the whole-workload refusal: the targets and the workloads' shares (the caller puts
    them in its plan, then calls ``refuse_full_outage``). ``workloads`` default: ``sandbox_workloads(components)``."""
    if not selector:
        raise FaultError("selector is empty: it would match every component; give at least one label")
    matching = sorted(n for n, c in components.items() if all(c["labels"].get(k) == v for k, v in selector.items()))
    if not matching:
        known = sorted({f"{k}={v}" for c in components.values() for k, v in c["labels"].items()})
        raise FaultError(f"selector {selector} matches no component; labels in use: {', '.join(known[:12])}")
    if mode not in MODES:  # random-max-percent is for Chaos Mesh to draw; a fault here picks a definite number
        raise FaultError(f"unknown mode {mode!r}; use one, all, fixed or fixed-percent")
    count = mode_count(mode, value, len(matching))
    check_blast_radius(count, len(matching), max_targets, max_percent)
    shares = workload_shares(matching, count, workloads or sandbox_workloads(components), live)
    return Choice(sorted((rng or random.Random()).sample(matching, count)), shares)


def select_targets(
    components: dict[str, dict[str, Any]],
    selector: dict[str, str],
    mode: Mode = "one",
    value: float | None = None,
    *,
    max_targets: int | None = None,
    max_percent: float | None = None,
    rng: random.Random | None = None,
    workloads: Mapping[str, Workload] | None = None,
    full_outage: bool = False,
) -> list[str]:
    """Pick components whose labels match every selector label, per Chaos Mesh's selection modes.

    Raises FaultError when the selector matches nothing, the mode/value is invalid, or the choice exceeds the blast
    radius (``max_targets`` absolute, ``max_percent`` of the matching set); FullOutageRefused when it can take every
    replica of a workload (``workloads``, default ``sandbox_workloads(components)``) down and not ``full_outage``.
    """
    choice = choose(
        components,
        selector,
        mode,
        value,
        max_targets=max_targets,
        max_percent=max_percent,
        rng=rng,
        workloads=workloads,
    )
    refuse_full_outage(choice.shares, full_outage)
    return choice.targets


class Selecting:
    """A fault that picks its targets by label selector and mode within its blast radius (sandbox programs and
    Kubernetes pods alike): it holds the selection's settings, ``select`` applies them to the candidates, ``refuse``
    applies the whole-workload rule once the plan (with its ``workloads`` detail) is built."""

    selector: dict[str, str]
    mode: Mode
    value: float | None
    max_targets: int | None
    max_percent: float | None
    rng: random.Random
    full_outage: bool = False  # the experiment means to take a whole workload down

    def select(
        self,
        candidates: dict[str, dict[str, Any]],
        workloads: Mapping[str, Workload] | None = None,
        live: Collection[str] | None = None,
    ) -> Choice:
        return choose(
            candidates,
            self.selector,
            self.mode,
            self.value,
            max_targets=self.max_targets,
            max_percent=self.max_percent,
            rng=self.rng,
            workloads=workloads,
            live=live,
        )

    def workload_detail(self, choice: Choice) -> dict[str, Any]:
        """The plan detail describing the workloads' shares (empty when there is none)."""
        return {"workloads": describe_shares(choice.shares, self.full_outage)} if choice.shares else {}

    def refuse(self, choice: Choice, plan: Any) -> None:
        refuse_full_outage(choice.shares, self.full_outage, plan)
