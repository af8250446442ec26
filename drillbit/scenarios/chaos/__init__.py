"""The seed's four chaos experiments, one module each (pod kill, network latency, disk pressure, database failure),
their Kubernetes half in ``kubernetes``, and here what several of them share: the query monitors of the chain and
the marketplace API."""

from __future__ import annotations

from drillbit import probes
from drillbit.client import VirtEngineClient
from drillbit.config import ResolvedEnvironment
from drillbit.monitor import Monitor, monitor


def query_monitors(env: ResolvedEnvironment, client: VirtEngineClient, interval: float) -> list[Monitor]:
    """``chain-query`` (the node's status), plus ``market-query`` when the environment has a marketplace API."""
    out = [monitor("chain-query", interval, probes.chain_query(client))]
    if env.endpoints.api:
        out.append(monitor("market-query", interval, probes.market_query(client)))
    return out
