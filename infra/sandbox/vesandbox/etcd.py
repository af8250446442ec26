"""A tiny async client for etcd v3's JSON gRPC gateway (etcd 3.4), every call bounded in time.

A partitioned member makes writes (and linearizable reads) hang until quorum returns, so each call is wrapped in
``asyncio.wait_for``: callers see ``EtcdError`` after ``timeout`` seconds and carry on.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import httpx

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops


class EtcdError(Exception):
    """An etcd call failed, timed out or was refused."""


@dataclass
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1]).decode("latin-1")
    return "\x00"


def put_op(key: str, value: str | bytes) -> dict[str, Any]:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def absent(key: str) -> dict[str, Any]:
    """Txn compare: ``key`` does not exist (its create_revision is 0)."""
    return {"target": "CREATE", "key": b64(key), "result": "EQUAL", "create_revision": "0"}


class Etcd:
    """Async etcd v3 JSON gateway client (one member URL)."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), limits=httpx.Limits(max_connections=16, max_keepalive_connections=8)
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>``; bounded by ``timeout``; raise ``EtcdError`` on any failure."""
        limit = timeout or self.timeout
        try:
            resp = await asyncio.wait_for(self.client.post(f"{self.url}/v3/{path}", json=body), limit)
        except TimeoutError:
            raise EtcdError(f"{path}: timed out after {limit:.1f}s") from None
        except httpx.HTTPError as exc:
            raise EtcdError(f"{path}: {type(exc).__name__}: {exc}") from None
        try:
            data = resp.json()
        except ValueError:
            raise EtcdError(f"{path}: HTTP {resp.status_code}: {resp.text[:200]}") from None
        if resp.status_code != 200 or "error" in data:
            raise EtcdError(f"{path}: HTTP {resp.status_code}: {data.get('error') or data.get('message') or data}")
        return data

    async def get(self, key: str, serializable: bool = False) -> KV | None:
        kvs = await self.range(key, serializable=serializable)
        return kvs[0] if kvs else None

    async def range(
        self,
        key: str,
        range_end: str | None = None,
        limit: int = 0,
        sort_by_create: bool = False,
        serializable: bool = False,
    ) -> list[KV]:
        """Keys in ``[key, range_end)`` (or just ``key``), by key or by creation revision."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end.encode("latin-1"))
        if limit:
            body["limit"] = str(limit)
        if sort_by_create:
            body.update(sort_order="ASCEND", sort_target="CREATE")
        if serializable:
            body["serializable"] = True
        data = await self.call("kv/range", body)
        return [_kv(item) for item in data.get("kvs", [])]

    async def range_prefix(self, prefix: str, limit: int = 0, sort_by_create: bool = False) -> list[KV]:
        return await self.range(prefix, prefix_end(prefix), limit=limit, sort_by_create=sort_by_create)

    async def put(self, key: str, value: str | bytes) -> None:
        await self.call("kv/put", {"key": b64(key), "value": b64(value)})

    async def delete(self, key: str, range_end: str | None = None) -> int:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end.encode("latin-1"))
        data = await self.call("kv/deleterange", body)
        return int(data.get("deleted", 0))

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Run one transaction; True when the compares held (the success ops ran)."""
        if len(success) > MAX_TXN_OPS or len(failure or []) > MAX_TXN_OPS:
            raise EtcdError(f"txn with more than {MAX_TXN_OPS} ops")
        data = await self.call("kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(data.get("succeeded", False))

    async def status(self) -> dict[str, Any]:
        """The member's status (``leader`` is "0" or absent when it knows no leader)."""
        return await self.call("maintenance/status", {})

    async def has_leader(self) -> bool:
        data = await self.status()
        return int(data.get("leader", 0) or 0) != 0


def _kv(item: dict[str, Any]) -> KV:
    return KV(
        key=base64.b64decode(item["key"]).decode("latin-1"),
        value=base64.b64decode(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
    )
