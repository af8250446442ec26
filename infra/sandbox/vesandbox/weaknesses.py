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
            "stale-cache-after-recovery",
            "api",
            "Once its database is back, the marketplace API keeps answering the queries it served stale during the "
            "outage from that cache, as fresh hits, instead of reading the database.",
        ),
        Weakness(
            "duplicate-queued-writes",
            "api",
            "When the database returns, the marketplace API applies each batch of queued writes twice, the second "
            "time as new writes (at least once, not exactly once).",
        ),
        Weakness(
            "reordered-queued-writes",
            "api",
            "When the database returns, the marketplace API applies each batch of queued writes newest first.",
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
        Weakness(
            "node-stuck-after-restart",
            "node",
            "A node restarted after a crash answers /health and RPC but never catches up: it keeps serving its "
            "pre-crash height.",
        ),
        Weakness(
            "alerts-not-routed",
            "alertmanager",
            "Alertmanager receives the alerts but routes them to a receiver that does nothing: the pager is never "
            "paged.",
        ),
        Weakness(
            "provider-forgets-leases",
            "provider",
            "A restarted provider daemon does not restore the workloads of its active leases: their status stays "
            "unknown (not running).",
        ),
        Weakness(
            "bids-lost-on-restart",
            "provider",
            "A restarted provider daemon never bids on orders that were already open (or in the mempool) when it "
            "started, only on orders created after.",
        ),
        Weakness(
            "no-fencing",
            "storage",
            "The primary database's fence agent reports success but keeps the primary writable (it drops the lost "
            "synchronous standby instead): an old primary cut off from region B keeps accepting writes after the "
            "failover.",
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
