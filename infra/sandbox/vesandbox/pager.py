"""A small on-call pager: receives Alertmanager webhooks and records one page per alert firing.

``python -m vesandbox.pager --config FILE``. Config: ``{"name", "weaknesses", "listen": {"host", "port"},
"data_dir"}``; pages are kept in ``data_dir/pages.sqlite3`` so a restart keeps them.

- ``POST /webhook``: Alertmanager v4 webhook payload. A firing alert opens a page unless a page for the same
  fingerprint is still firing (repeated notifications are counted on that page); a resolved alert resolves the
  open page. An alert that fires again after resolving opens a new page.
- ``GET /api/v1/pages?alertname=&status=&component=&severity=&since=`` → ``{"pages": [...]}`` (oldest first;
  ``since`` = RFC 3339 or unix seconds, compared with ``received_at``); ``GET /api/v1/pages/{id}``.
- ``POST /api/v1/pages/{id}/ack {"by": "name"}`` → the page (idempotent: the first ack is kept).
- ``GET /health``, ``GET /metrics`` (``pager_pages_total{alertname,status}``, ``pager_acks_total``,
  ``pager_notifications_total{status}``, ``pager_pages_open``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox.common import load_config, metrics_response, now_rfc3339, serve, setup_logging

log = setup_logging("pager")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    component TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    received_at TEXT NOT NULL,
    received_ts REAL NOT NULL,
    resolved_at TEXT,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    notifications INTEGER NOT NULL DEFAULT 1,
    last_notified_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pages_open ON pages (fingerprint, status);
"""


class BadRequest(Exception):
    """A malformed request; answered 400."""


def parse_time(value: str) -> float:
    """RFC 3339 (any fraction length, Z or offset) or unix seconds → unix seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"bad time {value!r}: use RFC 3339 or unix seconds") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def fingerprint_of(alert: dict[str, Any]) -> str:
    """Alertmanager's fingerprint, or a stable hash of the labels when the payload has none."""
    given = alert.get("fingerprint")
    if isinstance(given, str) and given:
        return given
    return hashlib.sha256(json.dumps(alert.get("labels", {}), sort_keys=True).encode()).hexdigest()[:16]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.pages = Counter("pager_pages", "Pages opened (firing) and resolved", ["alertname", "status"], registry=r)
        self.acks = Counter("pager_acks", "Pages acknowledged", registry=r)
        self.notifications = Counter(
            "pager_notifications", "Alerts received in webhooks (duplicates included)", ["status"], registry=r
        )
        self.open = Gauge("pager_pages_open", "Pages still firing", registry=r)


class PageStore:
    """Pages in SQLite; every method is short and serialised by one lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def to_json(row: sqlite3.Row) -> dict[str, Any]:
        page = dict(row)
        page["labels"] = json.loads(page["labels"])
        page["annotations"] = json.loads(page["annotations"])
        del page["received_ts"]
        return page

    def get(self, page_id: int) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM pages WHERE id = ?", (page_id,)).fetchone()
        return self.to_json(row) if row else None

    def query(self, filters: dict[str, str], since: float | None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM pages WHERE 1 = 1", []
        for column, value in filters.items():
            sql += f" AND {column} = ?"
            args.append(value)
        if since is not None:
            sql += " AND received_ts >= ?"
            args.append(since)
        with self.lock:
            rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [self.to_json(r) for r in rows]

    def _open_page(self, fingerprint: str) -> sqlite3.Row | None:
        return self.db.execute(
            "SELECT * FROM pages WHERE fingerprint = ? AND status = 'firing' ORDER BY id DESC LIMIT 1", (fingerprint,)
        ).fetchone()

    def record(self, alert: dict[str, Any], status: str) -> tuple[str, dict[str, Any] | None]:
        """Apply one alert of a webhook: returns (outcome, page) with outcome opened|duplicate|resolved|ignored."""
        fingerprint, now = fingerprint_of(alert), now_rfc3339()
        labels = alert.get("labels") or {}
        with self.lock:
            row = self._open_page(fingerprint)
            if status == "firing" and row is not None:
                self.db.execute(
                    "UPDATE pages SET notifications = notifications + 1, last_notified_at = ? WHERE id = ?",
                    (now, row["id"]),
                )
                outcome, page_id = "duplicate", row["id"]
            elif status == "firing":
                cursor = self.db.execute(
                    "INSERT INTO pages (fingerprint, alertname, status, severity, component, labels, annotations,"
                    " starts_at, ends_at, received_at, received_ts, last_notified_at)"
                    " VALUES (?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fingerprint,
                        str(labels.get("alertname", "")),
                        str(labels.get("severity", "")),
                        str(labels.get("component", "")),
                        json.dumps(labels, sort_keys=True),
                        json.dumps(alert.get("annotations") or {}, sort_keys=True),
                        alert.get("startsAt"),
                        alert.get("endsAt"),
                        now,
                        time.time(),
                        now,
                    ),
                )
                outcome, page_id = "opened", cursor.lastrowid
            elif row is not None:
                self.db.execute(
                    "UPDATE pages SET status = 'resolved', resolved_at = ?, ends_at = ?, last_notified_at = ?"
                    " WHERE id = ?",
                    (now, alert.get("endsAt"), now, row["id"]),
                )
                outcome, page_id = "resolved", row["id"]
            else:
                return "ignored", None
            page = self.db.execute("SELECT * FROM pages WHERE id = ?", (page_id,)).fetchone()
        return outcome, self.to_json(page)

    def ack(self, page_id: int, by: str) -> tuple[bool, dict[str, Any] | None]:
        """Acknowledge a page; returns (newly_acknowledged, page)."""
        with self.lock:
            cursor = self.db.execute(
                "UPDATE pages SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL",
                (now_rfc3339(), by, page_id),
            )
            row = self.db.execute("SELECT * FROM pages WHERE id = ?", (page_id,)).fetchone()
        return cursor.rowcount == 1, self.to_json(row) if row else None

    def counts(self) -> tuple[list[sqlite3.Row], int, int]:
        """(per-alertname opened/resolved counts, acknowledged pages, open pages) to seed the metrics."""
        with self.lock:
            per_alert = self.db.execute(
                "SELECT alertname, COUNT(*) AS opened, COUNT(resolved_at) AS resolved FROM pages GROUP BY alertname"
            ).fetchall()
            acked = self.db.execute("SELECT COUNT(*) FROM pages WHERE acknowledged_at IS NOT NULL").fetchone()[0]
            open_ = self.db.execute("SELECT COUNT(*) FROM pages WHERE status = 'firing'").fetchone()[0]
        return per_alert, acked, open_


class Pager:
    def __init__(self, store: PageStore) -> None:
        self.store = store
        self.metrics = Metrics()
        per_alert, acked, open_ = store.counts()
        for row in per_alert:
            self.metrics.pages.labels(row["alertname"], "firing").inc(row["opened"])
            self.metrics.pages.labels(row["alertname"], "resolved").inc(row["resolved"])
        self.metrics.acks.inc(acked)
        self.metrics.open.set(open_)

    def receive(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise BadRequest("expected an Alertmanager webhook payload with an 'alerts' list")
        opened, resolved, duplicates = [], [], 0
        for alert in payload["alerts"]:
            if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
                raise BadRequest("every alert must be an object with 'labels'")
            status = alert.get("status") or payload.get("status")
            if status not in ("firing", "resolved"):
                raise BadRequest(f"alert status must be firing or resolved, not {status!r}")
            self.metrics.notifications.labels(status).inc()
            outcome, page = self.store.record(alert, status)
            if outcome == "opened" and page:
                opened.append(page["id"])
                self.metrics.pages.labels(page["alertname"], "firing").inc()
                self.metrics.open.inc()
                log.info("page %d opened: %s %s", page["id"], page["alertname"], page["labels"])
            elif outcome == "resolved" and page:
                resolved.append(page["id"])
                self.metrics.pages.labels(page["alertname"], "resolved").inc()
                self.metrics.open.dec()
                log.info("page %d resolved: %s", page["id"], page["alertname"])
            elif outcome == "duplicate":
                duplicates += 1
        return {"received": len(payload["alerts"]), "opened": opened, "resolved": resolved, "duplicates": duplicates}

    def list_pages(self, params: dict[str, str]) -> list[dict[str, Any]]:
        filters = {k: params[k] for k in ("alertname", "status", "component", "severity") if params.get(k)}
        since = parse_time(params["since"]) if params.get("since") else None
        return self.store.query(filters, since)

    def ack(self, page_id: int, body: Any) -> dict[str, Any] | None:
        by = body.get("by") if isinstance(body, dict) else None
        if not isinstance(by, str) or not by.strip():
            raise BadRequest('body must be {"by": "<name>"}')
        new, page = self.store.ack(page_id, by.strip())
        if new and page:
            self.metrics.acks.inc()
            log.info("page %d acknowledged by %s", page_id, page["acknowledged_by"])
        return page


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc


def page_id_of(request: Request) -> int | None:
    raw = request.path_params["page_id"]
    return int(raw) if raw.isdigit() else None


def build_app(pager: Pager) -> Starlette:
    async def webhook(request: Request) -> Response:
        try:
            return JSONResponse(pager.receive(await json_body(request)))
        except BadRequest as exc:
            return error(400, str(exc))

    async def list_pages(request: Request) -> Response:
        try:
            return JSONResponse({"pages": pager.list_pages(dict(request.query_params))})
        except BadRequest as exc:
            return error(400, str(exc))

    async def get_page(request: Request) -> Response:
        page_id = page_id_of(request)
        page = pager.store.get(page_id) if page_id is not None else None
        return JSONResponse(page) if page else error(404, "page not found")

    async def ack(request: Request) -> Response:
        page_id = page_id_of(request)
        try:
            page = pager.ack(page_id, await json_body(request)) if page_id is not None else None
        except BadRequest as exc:
            return error(400, str(exc))
        return JSONResponse(page) if page else error(404, "page not found")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "open_pages": pager.store.counts()[2]})

    async def metrics(request: Request) -> Response:
        return metrics_response(pager.metrics.registry)

    return Starlette(
        routes=[
            Route("/webhook", webhook, methods=["POST"]),
            Route("/api/v1/pages", list_pages),
            Route("/api/v1/pages/{page_id}", get_page),
            Route("/api/v1/pages/{page_id}/ack", ack, methods=["POST"]),
            Route("/health", health),
            Route("/metrics", metrics),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    config = load_config(argv)
    try:
        listen = config["listen"]
        host, port, data_dir = str(listen["host"]), int(listen["port"]), Path(config["data_dir"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"error: pager config needs listen.host, listen.port and data_dir ({exc!r})") from exc
    store = PageStore(data_dir / "pages.sqlite3")
    try:
        serve(build_app(Pager(store)), host, port, log)
    finally:
        store.close()


if __name__ == "__main__":
    main()
