"""Deployment load: each user keeps one deployment lifecycle in flight (create, bid, lease, running, close).

The seed's deployment scenario is a *concurrency* ("50 concurrent deployments for 30 min"), so every Locust user is
one slot that starts the next lifecycle when its previous one ends. Records, per lifecycle:

- ``deployment``: provisioning, from the create call to the provider reporting the workload ``running``; ok when it
  got there within ``--drillbit-provision-timeout`` s (the seed's success rate is over these);
- ``deployment:create`` / ``:bid`` / ``:lease`` / ``:running`` / ``:close``: each step (a tx step is broadcast plus
  confirmation by polling ``/tx``). A created deployment is always closed.

The node RPC is ``--host``; the REST gateway and the provider are ``--drillbit-rest`` and ``--drillbit-provider``.
Standalone:

    locust -f infra/load/locustfiles/deployments.py --headless -u 5 -r 5 -t 90s --host http://127.0.0.1:36657 \
        --drillbit-rest http://127.0.0.1:31317 --drillbit-provider http://127.0.0.1:38443 --drillbit-duration 60
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
import uuid
from typing import Any

import gevent
from locust import events
from openloop import OpenLoopUser, check_loopback

NAME = "deployment"
_dseq = itertools.count(int(time.time() * 1000) % 10**11 * 100 + os.getpid() % 100)


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    g = parser.add_argument_group("drillbit deployment load")
    g.add_argument("--drillbit-rest", default="http://127.0.0.1:31317", help="Cosmos REST gateway")
    g.add_argument("--drillbit-provider", default="http://127.0.0.1:38443", help="provider daemon")
    g.add_argument("--drillbit-owner", default="drillbit-load", help="tenant account prefix (a suffix per process)")
    g.add_argument("--drillbit-confirm-timeout", type=float, default=30.0, help="seconds to see a tx committed")
    g.add_argument("--drillbit-bid-timeout", type=float, default=30.0, help="seconds to receive a bid")
    g.add_argument("--drillbit-provision-timeout", type=float, default=300.0, help="seconds to reach running")
    g.add_argument("--drillbit-poll", type=float, default=0.5, help="seconds between status polls")


@events.init.add_listener
def _check_hosts(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is not None and not getattr(opts, "drillbit_allow_remote", False):
        for url in (getattr(opts, "drillbit_rest", ""), getattr(opts, "drillbit_provider", "")):
            if url:
                check_loopback(url)


class StepFailed(Exception):
    pass


class DeploymentUser(OpenLoopUser):
    model = "concurrency"
    primary = NAME

    def on_start(self) -> None:
        super().on_start()
        o = self.engine.env.parsed_options
        self.rest = getattr(o, "drillbit_rest", "").rstrip("/")
        self.provider = getattr(o, "drillbit_provider", "").rstrip("/")
        self.owner = f"{getattr(o, 'drillbit_owner', 'drillbit-load')}-{os.getpid()}"
        self.confirm_timeout = float(getattr(o, "drillbit_confirm_timeout", 30.0))
        self.bid_timeout = float(getattr(o, "drillbit_bid_timeout", 30.0))
        self.provision_timeout = float(getattr(o, "drillbit_provision_timeout", 300.0))
        self.poll = float(getattr(o, "drillbit_poll", 0.5))
        owners = self.engine.extra.setdefault("owners", [])
        if self.owner not in owners:
            owners.append(self.owner)  # so that a cut-off run's leftovers can be closed afterwards

    # ---- one lifecycle
    def arrive(self, intended: float) -> None:
        dseq = next(_dseq)
        created = False
        try:
            self.step("create", self.create, dseq)
            created = True
            bid = self.step("bid", self.wait_bid, dseq)
            self.step("lease", self.submit, "market/lease/create", {"bid_id": bid["id"]})
            self.step("running", self.wait_running, bid["id"], intended)
            took = time.time() - intended
            self.engine.record(NAME, intended, intended, time.time(), True, 200, None, took)
        except StepFailed as exc:
            self.engine.record(NAME, intended, intended, time.time(), False, 0, str(exc))
        finally:
            if created:
                with contextlib.suppress(StepFailed):  # recorded as a failed close step
                    self.step("close", self.submit, "deployment/close", {"owner": self.owner, "dseq": dseq})

    def step(self, name: str, fn: Any, *args: Any) -> Any:
        start = time.time()
        try:
            value = fn(*args)
        except StepFailed as exc:
            self.engine.record(f"{NAME}:{name}", start, start, time.time(), False, 0, str(exc))
            raise StepFailed(f"{name}: {exc}") from None
        self.engine.record(f"{NAME}:{name}", start, start, time.time(), True, 200)
        return value

    def create(self, dseq: int) -> None:
        group = {
            "name": "web",
            "resources": {"cpu": 500, "memory": 512 * 2**20, "storage": 2**30},
            "count": 1,
            "price": {"denom": "uve", "amount": "100"},
        }
        msg = {"owner": self.owner, "dseq": dseq, "groups": [group], "deposit": {"denom": "uve", "amount": "5000000"}}
        self.submit("deployment/create", msg)

    def submit(self, type_: str, msg: dict[str, Any]) -> None:
        tx = {"type": type_, "signer": self.owner, "nonce": uuid.uuid4().hex, "msg": msg}
        raw = json.dumps(tx, separators=(",", ":"), sort_keys=True).encode()
        ok, _, error, r, _ = self.call("/broadcast_tx_sync", "GET", f"/broadcast_tx_sync?tx=0x{raw.hex()}")
        if not ok:
            raise StepFailed(f"broadcast {type_}: {error}")
        res = r.json().get("result") or {}
        if int(res.get("code", 0)) != 0:
            raise StepFailed(f"{type_} rejected at CheckTx (code {res.get('code')}): {res.get('log', '')}"[:200])
        tx_hash = res["hash"]
        deadline = time.time() + self.confirm_timeout
        while time.time() < deadline:
            ok, _, _, r, _ = self.call("/tx", "GET", f"/tx?hash=0x{tx_hash}", poll=True)
            if ok:
                code = int(r.json()["result"]["tx_result"]["code"])
                if code != 0:
                    raise StepFailed(f"{type_} failed in its block (code {code})")
                return
            gevent.sleep(self.poll)
        raise StepFailed(f"{type_} not confirmed within {self.confirm_timeout:g} s")

    def wait_bid(self, dseq: int) -> dict[str, Any]:
        url = (
            f"{self.rest}/virtengine/market/v1beta5/bids/list"
            f"?filters.owner={self.owner}&filters.dseq={dseq}&filters.state=open"
        )
        deadline = time.time() + self.bid_timeout
        while time.time() < deadline:
            ok, _, _, r, _ = self.call("REST bids/list", "GET", url, poll=True)
            if ok:
                bids = r.json().get("bids") or []
                if bids:
                    return bids[0]["bid"]
            gevent.sleep(self.poll)
        raise StepFailed(f"no bid within {self.bid_timeout:g} s")

    def wait_running(self, bid_id: dict[str, Any], intended: float) -> None:
        path = f"{bid_id['owner']}/{bid_id['dseq']}/{bid_id['gseq']}/{bid_id['oseq']}"
        url = f"{self.provider}/api/v1/leases/{path}"
        deadline = intended + self.provision_timeout
        while time.time() < deadline:
            ok, _, _, r, _ = self.call("provider lease", "GET", url, poll=True)
            if ok and r.json().get("state") == "running":
                return
            gevent.sleep(self.poll)
        raise StepFailed(f"not running within {self.provision_timeout:g} s of creation")
