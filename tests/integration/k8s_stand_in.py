"""The local Kubernetes API stand-in of the driver's request tests (tests/unit/test_kubernetes_driver_requests.py),
served for the crash soak: three node pods, and every Chaos Mesh object reports itself injected. Not a cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.unit.test_kubernetes_driver_requests import INJECTED, NODE, Handler, LocalApiStandIn, pod, serve


@contextlib.contextmanager
def chaos_mesh_stand_in() -> Iterator[LocalApiStandIn]:
    stand_in = LocalApiStandIn()
    for i in range(3):
        labels = NODE | {"app.kubernetes.io/component": "blockchain"}
        stand_in.pods[f"node-{i}"] = pod(f"node-{i}", labels, f"uid-node-{i}")
    stand_in.statuses = [INJECTED]  # one status: answered to every poll
    with serve(type("SoakHandler", (Handler,), {"api": stand_in})) as url:
        stand_in.url = url
        yield stand_in
