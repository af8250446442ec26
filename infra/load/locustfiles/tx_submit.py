"""Transaction load on a node's CometBFT RPC: ``broadcast_tx_sync`` on an open schedule, confirmations from blocks.

Each arrival broadcasts one ``provider/update`` transaction (an idempotent upsert of the signer's provider record,
the sandbox's tx format; a real chain plugs a signer in Drillbit's client instead). Records:

- ``tx-broadcast``: the broadcast (ok when CheckTx accepted it, code 0);
- ``tx``: submit-to-commit, ok when the tx is in a block with DeliverTx code 0 within ``--drillbit-confirm-timeout``
  seconds. Latency is measured from the arrival's intended start (coordinated-omission corrected).

Confirmations are not awaited per tx: one block watcher per process follows the latest ``/block`` (and reads
``/block_results`` for blocks holding our txs), so confirming every tx costs a few requests per second in all.
Standalone:

    locust -f infra/load/locustfiles/tx_submit.py --headless -u 2 -r 2 -t 40s --host http://127.0.0.1:36657 \
        --drillbit-rate 5 --drillbit-duration 30 --drillbit-out /tmp/tx-load
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from typing import Any

import gevent
import gevent.pool
from locust import events
from openloop import OpenLoopUser, engine

CONFIRM_NAME = "tx"
MAX_ASKS = 32
BROADCAST_NAME = "tx-broadcast"


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    g = parser.add_argument_group("drillbit tx load")
    g.add_argument("--drillbit-signer", default="drillbit-load", help="account that signs the provider/update txs")
    g.add_argument("--drillbit-confirm-timeout", type=float, default=30.0, help="seconds to see a tx in a block")
    g.add_argument("--drillbit-block-poll", type=float, default=0.25, help="seconds between latest-block polls")


class BlockWatcher:
    """Follows new blocks and confirms pending txs by hash (one per process).

    Every ``--drillbit-block-poll`` seconds it asks for the latest ``/block``, without waiting for earlier asks (up to
    ``MAX_ASKS`` in flight, evenly spaced), so a slow link delays what it sees by one round trip, not by a queue of
    them; heights it skipped are fetched by number.
    """

    def __init__(self, user: TxUser) -> None:
        eng = engine()
        self.user = user
        self.engine = eng
        opts = eng.env.parsed_options
        self.confirm_timeout = float(getattr(opts, "drillbit_confirm_timeout", 30.0))
        self.poll = float(getattr(opts, "drillbit_block_poll", 0.25))
        self.pending: dict[str, tuple[float, float]] = {}  # hash -> (intended, sent)
        self.last: int | None = None  # every height up to here is handled or being fetched
        self.top = 0  # highest height seen
        self.handled: set[int] = set()
        self.confirming = 0  # txs seen in a block whose DeliverTx codes are being read
        self.asks = gevent.pool.Pool(MAX_ASKS)
        self.ask_rtt = 0.0  # moving average of an ask's round trip (s)
        self.fetches = gevent.pool.Pool(8)
        self.greenlet = gevent.spawn(self.run)
        eng.drainers.append(self.drain)

    def add(self, tx_hash: str, intended: float, sent: float) -> None:
        self.pending[tx_hash] = (intended, sent)

    def run(self) -> None:
        eng = self.engine
        hard_end = (eng.t0 or time.time()) + eng.profile.duration + eng.drain + 10
        first = True
        while time.time() < hard_end and not (eng.finished or (eng.streams_done and self._drained())):
            if not self.asks.full():
                self.asks.spawn(self.latest, first)
                first = False
            self.expire()
            gevent.sleep(max(self.poll, self.ask_rtt / MAX_ASKS))  # evenly spaced asks, not bursts
        self.stop()

    def stop(self) -> None:
        for pool in (self.asks, self.fetches):  # blocking: a killed confirmation still records what it saw
            pool.kill(block=True, timeout=5)

    def latest(self, first: bool = False) -> None:
        """Ask for the latest block (and, alongside, the latest block results, so that a block's DeliverTx codes
        usually come with it); the first ask (sent before our first tx) says where the chain started."""
        for _ in range(100 if first else 1):  # the first ask must succeed (bounded)
            results = (
                None if first else gevent.spawn(self.user.call, "/block_results (watcher)", "GET", "/block_results")
            )
            ok, _, _, r, took = self.user.call("/block (watcher)", "GET", "/block")
            self.ask_rtt = took if not self.ask_rtt else 0.8 * self.ask_rtt + 0.2 * took
            seen = time.time()
            if ok:
                block = r.json()["result"]["block"]
                height = int(block["header"]["height"])
                if first:
                    self.last = height  # blocks up to here hold none of our txs
                    self.handled.add(height)
                else:
                    self.handle(height, block, seen, self._codes(results, height))
                self.fill_gaps()
                return
            gevent.sleep(self.poll)

    def _codes(self, results: gevent.Greenlet | None, height: int) -> list[int] | None:
        """The DeliverTx codes from the paired results ask, when it answered for the same height."""
        if results is None:
            return None
        results.join(timeout=self.engine.timeout)
        if not results.successful() or not results.value[0]:
            return None
        body = results.value[3].json()["result"]
        if int(body.get("height", -1)) != height:
            return None
        return [int(x.get("code", 0)) for x in body.get("txs_results") or []]

    def handle(self, height: int, block: dict[str, Any], seen: float, codes: list[int] | None = None) -> None:
        if height in self.handled:
            return
        self.handled.add(height)
        self.top = max(self.top, height)
        self.confirm(height, block["data"].get("txs") or [], seen, codes)

    def fill_gaps(self) -> None:
        """Fetch by number the heights between the start and the highest block seen that no ask returned."""
        if self.last is None:
            return
        for h in range(self.last + 1, self.top):
            if h not in self.handled:
                self.handled.add(h)
                self.fetches.spawn(self.fetch, h)
        self.last = max(self.last, self.top - 1)

    def fetch(self, height: int) -> None:
        for _ in range(20):  # a failed read: bounded retries
            ok, _, _, r, _ = self.user.call("/block (watcher)", "GET", f"/block?height={height}")
            if ok:
                block = r.json()["result"]["block"]
                self.confirm(height, block["data"].get("txs") or [], time.time())
                return
            gevent.sleep(self.poll)

    def confirm(self, height: int, txs: list[str], seen: float, codes: list[int] | None = None) -> None:
        ours = []
        for i, b64 in enumerate(txs):
            h = hashlib.sha256(base64.b64decode(b64)).hexdigest().upper()
            if h in self.pending:
                ours.append((i, h, *self.pending.pop(h)))
        if not ours:
            return
        self.confirming += len(ours)
        try:
            if codes is None:
                codes = self.results(height)
        finally:  # recorded even when the drain ends this greenlet: the tx was seen in a block
            for i, _h, intended, sent in ours:
                code = codes[i] if codes is not None and i < len(codes) else 0
                error = None if code == 0 else f"DeliverTx code {code}"
                self.engine.record(CONFIRM_NAME, intended, sent, seen, error is None, 200, error, float(height))
            self.confirming -= len(ours)

    def _drained(self) -> bool:
        eng = self.engine
        return not self.pending and not self.confirming and eng.streams_done >= eng.local_streams

    def results(self, height: int) -> list[int] | None:
        ok, _, _, r, _ = self.user.call("/block_results (watcher)", "GET", f"/block_results?height={height}")
        if not ok:
            return None
        return [int(x.get("code", 0)) for x in r.json()["result"].get("txs_results") or []]

    def expire(self) -> None:
        now = time.time()
        for h, (intended, sent) in list(self.pending.items()):
            if now - sent > self.confirm_timeout:
                self.pending.pop(h, None)
                error = f"not confirmed within {self.confirm_timeout:g} s"
                self.engine.record(CONFIRM_NAME, intended, sent, now, False, 0, error)

    def drain(self, deadline: float) -> None:
        limit = min(deadline, time.time() + self.confirm_timeout + 1)
        while (self.pending or self.confirming) and time.time() < limit:
            gevent.sleep(0.1)
        self.expire()
        for h, (intended, sent) in list(self.pending.items()):  # still pending at the drain limit
            self.pending.pop(h, None)
            self.engine.record(
                CONFIRM_NAME, intended, sent, time.time(), False, 0, "not confirmed before the drain ended"
            )
        self.greenlet.kill(block=False)
        self.stop()


WATCHER: BlockWatcher | None = None


class TxUser(OpenLoopUser):
    primary = CONFIRM_NAME

    def on_start(self) -> None:
        global WATCHER
        super().on_start()
        opts = self.engine.env.parsed_options
        self.signer = getattr(opts, "drillbit_signer", "drillbit-load")
        self.seq = 0
        if WATCHER is None:
            WATCHER = BlockWatcher(self)

    def build(self) -> bytes:
        self.seq += 1
        msg = {
            "owner": self.signer,
            "host_uri": "https://load.drillbit.invalid",
            "attributes": [{"key": "load", "value": f"{os.getpid()}-{self.seq}"}],
        }
        tx = {"type": "provider/update", "signer": self.signer, "nonce": uuid.uuid4().hex, "msg": msg}
        return json.dumps(tx, separators=(",", ":"), sort_keys=True).encode()

    def arrive(self, intended: float) -> None:
        tx = self.build()
        tx_hash = hashlib.sha256(tx).hexdigest().upper()
        sent = time.time()
        WATCHER.add(tx_hash, intended, sent)  # before the broadcast: its block may be read before the answer comes

        def accepted(r: Any) -> str | None:
            body = r.json()
            if "error" in body:
                err = body["error"]
                return f"RPC error: {err.get('data') or err.get('message')}"[:200]
            res = body["result"]
            if int(res.get("code", 0)) != 0:
                return f"CheckTx code {res['code']}: {res.get('log', '')}"[:200]
            return None

        ok, status, error, _, _ = self.call(BROADCAST_NAME, "GET", f"/broadcast_tx_sync?tx=0x{tx.hex()}", ok=accepted)
        done = time.time()
        self.engine.record(BROADCAST_NAME, intended, sent, done, ok, status, error)
        if not ok and WATCHER.pending.pop(tx_hash, None) is not None:
            self.engine.record(CONFIRM_NAME, intended, sent, done, False, status, error)
