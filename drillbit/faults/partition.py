"""Network partition of the sandbox's validator (etcd) peer network, in one nftables table of Drillbit's own.

Loopback connections leave from 127.0.0.1 whatever address a member binds, so source addresses cannot tell members
apart. Every member runs under its own uid instead; isolating member (uid U, peer host H, peer port P) takes two rules
on the output hook of ``lo``:

- ``meta skuid U tcp dport P drop``: nothing the member sends reaches another member's peer port;
- ``ip daddr H tcp dport P drop``: nothing reaches the member's own peer port.

Together they cut both directions (a symmetric partition); the client port (2379) stays open, so each node still
talks to its own member and sees it lose its leader. Reverting is one ``nft delete table``.

Chaos Mesh equivalent: ``drillbit.faults.chaosmesh.network_partition`` (``direction: both``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import Any

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle


def partition_rules(table: str, members: list[dict[str, Any]]) -> str:
    """The nft script for one table isolating each of ``members`` (dicts with uid, peer_host, peer_port)."""
    lines = [f"table inet {table} {{", "  chain output {", "    type filter hook output priority -10; policy accept;"]
    for m in members:
        uid, host, port = int(m["uid"]), str(m["peer_host"]), int(m["peer_port"])
        lines.append(f'    oifname "lo" meta skuid {uid} tcp dport {port} drop')
        lines.append(f'    oifname "lo" ip daddr {host} tcp dport {port} drop')
    return "\n".join([*lines, "  }", "}", ""])


class Partition(Fault):
    """Isolate the named etcd members from every other member (each isolated member ends up alone)."""

    kind = "network-partition"

    def __init__(self, etcd: list[dict[str, Any]], isolate: list[str], max_isolated: int | None = None) -> None:
        self.etcd, self.isolate = list(etcd), list(dict.fromkeys(isolate))
        self.max_isolated = max_isolated
        self.table = f"drillbit_part_{uuid.uuid4().hex[:8]}"

    def plan(self) -> Plan:
        known = {m["name"]: m for m in self.etcd}
        unknown = [n for n in self.isolate if n not in known]
        if unknown:
            raise FaultError(f"unknown member(s) {', '.join(unknown)}; the cluster has {', '.join(sorted(known))}")
        if not self.isolate:
            raise FaultError("no member to isolate")
        if self.max_isolated is not None and len(self.isolate) > self.max_isolated:
            raise FaultError(f"blast radius: isolating {len(self.isolate)} members exceeds {self.max_isolated}")
        for name in self.isolate:
            missing = {"uid", "peer_host", "peer_port"} - set(known[name])
            if missing:
                raise FaultError(f"{name} has no {', '.join(sorted(missing))} in endpoints.json: cannot isolate it")
        if shutil.which("nft") is None:
            raise FaultError("nft not found: install nftables (apt-get install -y nftables)")
        if os.geteuid() != 0:
            raise FaultError("a network partition needs root (nftables)")
        majority = len(self.etcd) // 2 + 1
        connected = len(self.etcd) - len(self.isolate)
        detail = {"table": self.table, "isolated": self.isolate, "quorum_remains": connected >= majority}
        return Plan(self.kind, [f"etcd member {n}" for n in self.isolate], detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "nft_table", "family": "inet", "table": self.table}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        members = [m for m in self.etcd if m["name"] in self.isolate]
        rules = partition_rules(self.table, members)
        r = subprocess.run(["nft", "-f", "-"], input=rules, text=True, capture_output=True)
        if r.returncode != 0:
            raise FaultError(f"nft failed: {r.stderr.strip()}")
