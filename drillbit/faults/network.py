"""Network latency: every packet of a link delayed (latency, jitter, correlation), nothing dropped.

- sandbox: ``NetworkLatency`` adds a latency toxic to each named link of the fault proxy (Toxiproxy API); revert
  removes it (undo driver ``toxic``);
- Chaos Mesh: ``network_delay(...)`` builds the NetworkChaos ``delay`` manifest (on the selected pods' traffic, or
  only on the link to ``target_labels``), run by ``chaos_mesh.ChaosMeshFault``.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform import sandbox as sbx

# ------------------------------------------------------------------------------------------------ sandbox


class NetworkLatency(Fault):
    """A latency toxic on each named fault-proxy link (Toxiproxy API; jitter and correlation as Chaos Mesh's delay)."""

    kind = "network-latency"

    def __init__(
        self,
        faultproxy: str,
        proxies: list[str],
        latency_ms: float,
        jitter_ms: float = 0.0,
        correlation: float = 0.0,
        stream: Literal["downstream", "upstream"] = "downstream",
    ) -> None:
        self.api, self.proxies = faultproxy.rstrip("/"), list(proxies)
        self.latency_ms, self.jitter_ms, self.correlation, self.stream = latency_ms, jitter_ms, correlation, stream
        self.toxic = f"drillbit-latency-{uuid.uuid4().hex[:8]}"

    def plan(self) -> Plan:
        if self.latency_ms < 0 or self.jitter_ms < 0 or not 0 <= self.correlation <= 100:
            raise FaultError("latency and jitter must be ≥ 0 ms and correlation within 0..100 %")
        if not self.proxies:
            raise FaultError("no link (proxy) to slow down")
        known = sbx.proxies(self.api)
        missing = [p for p in self.proxies if p not in known]
        if missing:
            raise FaultError(f"unknown link(s) {', '.join(missing)}; the fault proxy has: {', '.join(sorted(known))}")
        detail = {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "correlation": self.correlation}
        return Plan(self.kind, self.proxies, detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [sbx.toxic_step(self.api, p, self.toxic) for p in plan.targets]

    def apply(self, plan: Plan, handle: Handle) -> None:
        body = {
            "name": self.toxic,
            "type": "latency",
            "stream": self.stream,
            "toxicity": 1.0,
            "attributes": {"latency": self.latency_ms, "jitter": self.jitter_ms, "correlation": self.correlation},
        }
        for proxy in plan.targets:
            sbx.add_toxic(self.api, proxy, body)


# ------------------------------------------------------------------------------------------------ Chaos Mesh


def network_delay(
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    latency: str | float = "100ms",
    jitter: str | float = "0ms",
    correlation: float = 0,
    direction: str = "to",
    target_labels: dict[str, str] | None = None,
    target_namespace: str | None = None,
    target_mode: str = "all",
    target_value: float | None = None,
    mode: str = "one",
    value: float | None = None,
    duration: str | float = "10m",
    chaos_namespace: str = "chaos-testing",
    name: str | None = None,
) -> dict[str, Any]:
    """NetworkChaos ``delay`` on the selected pods' traffic; with ``target_labels``, only on that link."""
    delay = {
        "latency": chaosmesh.latency(latency, "spec.delay.latency"),
        "jitter": chaosmesh.latency(jitter, "spec.delay.jitter"),
        "correlation": chaosmesh.percent(correlation, "spec.delay.correlation"),
    }
    spec = {"action": "delay", **chaosmesh.base_spec(namespace, labels, mode, value, duration), "delay": delay}
    spec["direction"] = chaosmesh.check_direction(direction)
    if target_labels is not None:
        spec["target"] = chaosmesh.link_target(target_namespace or namespace, target_labels, target_mode, target_value)
    elif direction != "to":
        raise FaultError(f"spec.target: direction {direction} needs a target (target_labels) to define the link")
    return chaosmesh.build_manifest("NetworkChaos", "network-delay", spec, run_id, chaos_namespace, name)
