"""Secrets never reach logs, artifacts or reports: every resolved secret is registered and redacted on output."""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "***"
_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember a secret value so that ``redact`` hides it (values shorter than 4 characters are not tracked)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))


def redact(text: str) -> str:
    pattern = _pattern
    return pattern.sub(REDACTED, text) if pattern and text else text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts registered secrets from every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            record.msg = redact(record.getMessage())
            record.args = ()
        return True
