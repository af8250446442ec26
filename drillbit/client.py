"""A client for VirtEngine's surfaces: CometBFT RPC (tx submit / confirm, status), Cosmos REST (market, deployment,
escrow, settlement queries), the marketplace API and the provider daemon.

It speaks the real paths, so the same client works against the sandbox and a real node. Building a transaction is
an interface (``TxBuilder``): the sandbox's unsigned JSON builder is the default; a real chain plugs in a signer that
returns the signed tx bytes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx

if TYPE_CHECKING:
    from drillbit.config import ResolvedEnvironment


class ClientError(RuntimeError):
    """A surface answered with an error (or not at all)."""


class TxBuilder(Protocol):
    def build(self, type_: str, signer: str, msg: dict[str, Any]) -> bytes: ...


class SandboxTxBuilder:
    """Unsigned JSON transactions, as the sandbox's chain accepts them (see infra/sandbox/PROTOCOL.md)."""

    def build(self, type_: str, signer: str, msg: dict[str, Any]) -> bytes:
        tx = {"type": type_, "signer": signer, "nonce": uuid.uuid4().hex, "msg": msg}
        return json.dumps(tx, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class BroadcastResult:
    hash: str
    code: int
    log: str


@dataclass
class TxResult:
    hash: str
    height: int
    code: int
    log: str
    events: list[dict[str, Any]]


def order_id_path(order_id: dict[str, Any]) -> str:
    return f"{order_id['owner']}/{order_id['dseq']}/{order_id['gseq']}/{order_id['oseq']}"


class VirtEngineClient:
    """Synchronous client; every call is bounded by ``timeout`` seconds."""

    def __init__(
        self,
        rpc: str,
        rest: str,
        api: str | None = None,
        provider: str | None = None,
        *,
        timeout: float = 10.0,
        tx_builder: TxBuilder | None = None,
    ) -> None:
        self.rpc_url, self.rest_url, self.api_url, self.provider_url = rpc, rest, api, provider
        self.tx_builder = tx_builder or SandboxTxBuilder()
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> VirtEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- CometBFT RPC
    def _rpc(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.http.get(f"{self.rpc_url}/{path}", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ClientError(f"RPC {path}: {exc.__class__.__name__}: {exc}") from exc
        if "error" in body:
            err = body["error"]
            raise ClientError(f"RPC {path}: {err.get('data') or err.get('message')}")
        return body["result"]

    def health(self) -> bool:
        self._rpc("health")
        return True

    def status(self) -> dict[str, Any]:
        return self._rpc("status")

    def height(self) -> int:
        return int(self.status()["sync_info"]["latest_block_height"])

    def block(self, height: int | None = None) -> dict[str, Any]:
        return self._rpc("block", {"height": height} if height else None)

    def broadcast(self, tx: bytes) -> BroadcastResult:
        result = self._rpc("broadcast_tx_sync", {"tx": "0x" + tx.hex()})
        return BroadcastResult(hash=result["hash"], code=int(result["code"]), log=result.get("log", ""))

    def tx(self, tx_hash: str) -> TxResult | None:
        """The committed tx, or None when it is not (yet) in a block."""
        try:
            r = self._rpc("tx", {"hash": "0x" + tx_hash})
        except ClientError as exc:
            if "not found" in str(exc):
                return None
            raise
        res = r["tx_result"]
        return TxResult(r["hash"], int(r["height"]), int(res["code"]), res.get("log", ""), res.get("events", []))

    def wait_tx(self, tx_hash: str, timeout: float = 30.0, interval: float = 0.2) -> TxResult:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                found = self.tx(tx_hash)
            except ClientError as exc:
                found, last_error = None, exc
            if found is not None:
                return found
            time.sleep(interval)
        raise ClientError(
            f"tx {tx_hash} not confirmed within {timeout:.0f} s" + (f" ({last_error})" if last_error else "")
        )

    def submit(self, type_: str, signer: str, msg: dict[str, Any], *, confirm_timeout: float = 30.0) -> TxResult:
        """Build, broadcast and wait for the tx; raises ClientError when CheckTx or DeliverTx fails."""
        sent = self.broadcast(self.tx_builder.build(type_, signer, msg))
        if sent.code != 0:
            raise ClientError(f"{type_} rejected at CheckTx (code {sent.code}): {sent.log}")
        result = self.wait_tx(sent.hash, timeout=confirm_timeout)
        if result.code != 0:
            raise ClientError(f"{type_} failed in block {result.height} (code {result.code}): {result.log}")
        return result

    # ---- marketplace transactions (the tenant's side of the deployment lifecycle)
    def create_deployment(
        self,
        owner: str,
        dseq: int,
        *,
        max_price: int = 100,
        deposit: int = 5_000_000,
        resources: dict[str, int] | None = None,
        confirm_timeout: float = 30.0,
    ) -> TxResult:
        group = {
            "name": "web",
            "resources": resources or {"cpu": 500, "memory": 512 * 2**20, "storage": 2**30},
            "count": 1,
            "price": {"denom": "uve", "amount": str(max_price)},
        }
        msg = {"owner": owner, "dseq": dseq, "groups": [group], "deposit": {"denom": "uve", "amount": str(deposit)}}
        return self.submit("deployment/create", owner, msg, confirm_timeout=confirm_timeout)

    def create_lease(self, bid_id: dict[str, Any], *, confirm_timeout: float = 30.0) -> TxResult:
        return self.submit("market/lease/create", bid_id["owner"], {"bid_id": bid_id}, confirm_timeout=confirm_timeout)

    def close_deployment(self, owner: str, dseq: int, *, confirm_timeout: float = 30.0) -> TxResult:
        msg = {"owner": owner, "dseq": dseq}
        return self.submit("deployment/close", owner, msg, confirm_timeout=confirm_timeout)

    # ---- Cosmos REST
    def _rest(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.http.get(f"{self.rest_url}{path}", params={k: v for k, v in (params or {}).items() if v})
        except httpx.HTTPError as exc:
            raise ClientError(f"REST {path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ClientError(f"REST {path}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def orders(self, **filters: Any) -> list[dict[str, Any]]:
        return self._rest("/virtengine/market/v1beta5/orders/list", _filters(filters))["orders"]

    def bids(self, **filters: Any) -> list[dict[str, Any]]:
        return [b["bid"] for b in self._rest("/virtengine/market/v1beta5/bids/list", _filters(filters))["bids"]]

    def leases(self, **filters: Any) -> list[dict[str, Any]]:
        return self._rest("/virtengine/market/v1beta5/leases/list", _filters(filters))["leases"]

    def deployment(self, owner: str, dseq: int) -> dict[str, Any]:
        return self._rest("/virtengine/deployment/v1beta4/deployments/info", {"id.owner": owner, "id.dseq": dseq})

    def escrow_accounts(self, **filters: Any) -> list[dict[str, Any]]:
        return self._rest("/virtengine/escrow/v1/types/accounts", _filters(filters))["accounts"]

    def escrow_payments(self, **filters: Any) -> list[dict[str, Any]]:
        return self._rest("/virtengine/escrow/v1/types/payments", _filters(filters))["payments"]

    def settlements(self, order_id: dict[str, Any]) -> list[dict[str, Any]]:
        return self._rest(f"/virtengine/settlement/v1/settlements/by-order/{order_id_path(order_id)}")["settlements"]

    # ---- marketplace API and provider daemon
    def api_get(self, path: str, **params: Any) -> httpx.Response:
        if not self.api_url:
            raise ClientError("no marketplace API endpoint configured")
        return self.http.get(f"{self.api_url}{path}", params=params)

    def api_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if not self.api_url:
            raise ClientError("no marketplace API endpoint configured")
        return self.http.post(f"{self.api_url}{path}", json=body)

    def lease_status(self, lease_id: dict[str, Any]) -> dict[str, Any] | None:
        if not self.provider_url:
            raise ClientError("no provider endpoint configured")
        r = self.http.get(f"{self.provider_url}/api/v1/leases/{order_id_path(lease_id)}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()


def client_for(env: ResolvedEnvironment, timeout: float = 10.0) -> VirtEngineClient:
    """A client of the environment's node, marketplace API and provider endpoints."""
    ep = env.endpoints
    return VirtEngineClient(ep.node_rpc, ep.node_rest, ep.api, ep.provider, timeout=timeout)


def _filters(filters: dict[str, Any]) -> dict[str, Any]:
    return {f"filters.{k}": v for k, v in filters.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
