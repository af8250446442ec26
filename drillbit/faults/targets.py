"""Target selection shared by every platform: Chaos Mesh's selection modes and the blast-radius rule.

- ``mode_count``: how many of the matching candidates a mode picks (``one``, ``all``, ``fixed`` N,
  ``fixed-percent`` P, and ``random-max-percent`` P counted at its maximum);
- ``check_blast_radius``: the one rule every fault's choice must satisfy — at most ``max_targets`` targets, and at
  most ``max_percent`` of the matching set (one target is always allowed by the percentage);
- ``select_targets``: components (sandbox programs, Kubernetes pods) whose labels match a selector, picked by mode
  and checked against the blast radius. A Chaos Mesh experiment (which picks its own pods) is checked with
  ``mode_count`` + ``check_blast_radius`` on the pods its selector matches now.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal, get_args

from drillbit.faults.errors import FaultError

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


def select_targets(
    components: dict[str, dict[str, Any]],
    selector: dict[str, str],
    mode: Mode = "one",
    value: float | None = None,
    *,
    max_targets: int | None = None,
    max_percent: float | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    """Pick components whose labels match every selector label, per Chaos Mesh's selection modes.

    Raises FaultError when the selector matches nothing, the mode/value is invalid, or the choice exceeds the blast
    radius (``max_targets`` absolute, ``max_percent`` of the matching set).
    """
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
    return sorted((rng or random.Random()).sample(matching, count))


class Selecting:
    """A fault that picks its targets by label selector and mode within its blast radius (sandbox programs and
    Kubernetes pods alike): it holds the selection's settings, ``select`` applies them to the candidates."""

    selector: dict[str, str]
    mode: Mode
    value: float | None
    max_targets: int | None
    max_percent: float | None
    rng: random.Random

    def select(self, candidates: dict[str, dict[str, Any]]) -> list[str]:
        return select_targets(
            candidates,
            self.selector,
            self.mode,
            self.value,
            max_targets=self.max_targets,
            max_percent=self.max_percent,
            rng=self.rng,
        )
