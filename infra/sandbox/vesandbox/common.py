"""Small helpers shared by the sandbox's services (never by Drillbit)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def now_rfc3339() -> str:
    """Current UTC time as RFC 3339 with a Z, microsecond precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_config(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``--config PATH`` and return the JSON object in it; exit 2 with one line on a bad file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="JSON config written by the launcher")
    args = parser.parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read config {args.config}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if not isinstance(config, dict) or "name" not in config:
        print(f"error: config {args.config} must be a JSON object with a 'name'", file=sys.stderr)
        raise SystemExit(2)
    config.setdefault("weaknesses", [])
    return config


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    return logging.getLogger(name)


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def rpc_result(result: Any, request_id: Any = -1) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})


def rpc_error(data: str, request_id: Any = -1, code: int = -32603, message: str = "Internal error") -> JSONResponse:
    return JSONResponse(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message, "data": data}},
        status_code=500,
    )


def rest_not_found(what: str) -> JSONResponse:
    return JSONResponse({"code": 5, "message": f"{what} not found", "details": []}, status_code=404)


def query_param(request: Request, name: str, default: str | None = None) -> str | None:
    value = request.query_params.get(name)
    return value if value not in (None, "") else default


def serve(app: Any, host: str, port: int, log: logging.Logger) -> None:
    """Run a Starlette app with uvicorn (one process, asyncio loop, no access log)."""
    import uvicorn

    log.info("listening on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
