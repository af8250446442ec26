"""A loopback stand-in for the two Prometheus endpoints Drillbit reads about alerting rules (``/api/v1/rules`` and
``/api/v1/status/config``), for the unit tests: canned JSON per path, on 127.0.0.1, started and stopped by the test.

What it shows: how Drillbit asks and how it reads the answers in the shape Prometheus documents (docs/querying/api.md:
groups with ``interval`` in seconds, alerting rules with ``duration`` and ``keepFiringFor`` in seconds). What it does
not show: that a real Prometheus loads the same rules the same way."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import yaml

_UNIT_S = {"s": 1, "m": 60, "h": 3600}


def _seconds(text: str | None) -> float:
    """Seconds of the simple durations the sandbox and the tests use (one number, one unit of s, m, h)."""
    return float(int(text[:-1]) * _UNIT_S[text[-1]]) if text else 0.0


def rules_answer(rule_text: str, file: str, interval_s: float) -> dict[str, Any]:
    """What Prometheus answers on ``/api/v1/rules`` after loading ``rule_text`` from ``file`` with a global evaluation
    interval of ``interval_s`` (groups without their own interval report that one)."""
    groups = []
    for group in yaml.safe_load(rule_text)["groups"]:
        rules = []
        for rule in group["rules"]:
            if "record" in rule:
                rules.append({"name": rule["record"], "query": rule["expr"], "health": "ok", "type": "recording"})
                continue
            rules.append(
                {
                    "state": "inactive",
                    "name": rule["alert"],
                    "query": rule["expr"],
                    "duration": _seconds(rule.get("for")),
                    "keepFiringFor": _seconds(rule.get("keep_firing_for")),
                    "labels": rule.get("labels", {}),
                    "annotations": rule.get("annotations", {}),
                    "alerts": [],
                    "health": "ok",
                    "type": "alerting",
                }
            )
        interval = _seconds(group["interval"]) if "interval" in group else interval_s
        groups.append({"name": group["name"], "file": file, "rules": rules, "interval": interval, "limit": 0})
    return {"status": "success", "data": {"groups": groups}}


def config_answer(prometheus_yml: str) -> dict[str, Any]:
    """What Prometheus answers on ``/api/v1/status/config``: its loaded configuration as YAML text."""
    return {"status": "success", "data": {"yaml": prometheus_yml}}


class PrometheusStandIn:
    """``with PrometheusStandIn({"/api/v1/rules": answer}) as prom:`` serves each path's answer (a JSON value, or a
    string sent as text) with status 200; any other path is a 404. ``prom.url`` is its base URL; ``prom.paths`` the
    paths asked, in order."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = dict(answers)
        self.paths: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                stand_in.paths.append(path)
                found = path in stand_in.answers
                answer = stand_in.answers.get(path, {"status": "error", "error": f"no {path}"})
                body = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PrometheusStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
