"""The local Kubernetes API stand-in of the driver's request tests (tests/unit/test_kubernetes_driver_requests.py),
served for the crash soak: three node pods, and every Chaos Mesh object reports itself injected. Not a cluster."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

from tests.unit.test_kubernetes_driver_requests import INJECTED, NODE, Handler, LocalApiStandIn, pod


@contextlib.contextmanager
def chaos_mesh_stand_in() -> Iterator[LocalApiStandIn]:
    stand_in = LocalApiStandIn()
    for i in range(3):
        labels = NODE | {"app.kubernetes.io/component": "blockchain"}
        stand_in.pods[f"node-{i}"] = pod(f"node-{i}", labels, f"uid-node-{i}")
    stand_in.statuses = [INJECTED]  # one status: answered to every poll
    handler = type("SoakHandler", (Handler,), {"api": stand_in})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
