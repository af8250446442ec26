"""Named defects the sandbox can be started with, so that a good reliability test has something to catch.

Adding one: add a line to ``WEAKNESSES`` naming the component that honours it, then check
``"<name>" in config["weaknesses"]`` in that component (the launcher passes every active weakness to every
component's config; ``supervisor`` weaknesses are applied by the launcher itself).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Weakness:
    name: str
    component: str
    doc: str


WEAKNESSES: dict[str, Weakness] = {
    w.name: w
    for w in [
        Weakness(
            "no-circuit-breaker",
            "provider",
            "The provider's bid engine has no circuit breaker: under overload requests queue without bound and wait "
            "for the slow dependency instead of failing fast.",
        ),
        Weakness(
            "no-read-cache",
            "api",
            "The marketplace API never serves cached reads: with its database unreachable every query fails (503).",
        ),
        Weakness(
            "no-write-queue",
            "api",
            "The marketplace API does not queue writes: with its database unreachable every write fails (503) "
            "and is lost.",
        ),
        Weakness(
            "no-restart",
            "supervisor",
            "Killed processes stay dead: the supervisor does not restart them (a pod that is never rescheduled).",
        ),
        Weakness(
            "leaky-memory",
            "node",
            "Every node leaks about 1 MB of memory per block.",
        ),
        Weakness(
            "async-replication-loses-writes",
            "replica",
            "Replication is asynchronous over a slow link (WAL reaches the replica 5 s late): a failover loses the "
            "last seconds of acknowledged writes.",
        ),
        Weakness(
            "broken-wal-archive",
            "wal-archive",
            "The WAL archive command reports success but uploads nothing: point-in-time recovery loses everything "
            "after the last base backup.",
        ),
        Weakness(
            "no-alert-rules",
            "prometheus",
            "Prometheus runs with no alert rules: it scrapes every component, but no alert ever fires or pages.",
        ),
    ]
}


def validate(names: list[str]) -> list[str]:
    """Return the names unchanged, or raise ValueError naming the unknown ones and the known ones."""
    unknown = [n for n in names if n not in WEAKNESSES]
    if unknown:
        known = ", ".join(sorted(WEAKNESSES))
        raise ValueError(f"unknown weakness {', '.join(unknown)}; known weaknesses: {known}")
    return list(dict.fromkeys(names))
