"""PostgreSQL WAL archiving to the sandbox's S3 endpoint (``archive_command``) and fetching back (``restore_command``).

One archive per database cluster, as pgBackRest keys its archive by stanza and database id: every file lives
under ``s3://<bucket>/<prefix><system_identifier>/<f>`` (``wal/7301234567890123456/000000010000000000000003``), so a
new cluster (a new ``initdb``, a sandbox started again on the same object store) never mixes its WAL or its timeline
history with an old one's, and a promotion (which picks its new timeline from the history files it can fetch) in a
fresh cluster starts clean. ``archive_key`` is the rule.

Push (archive_command, run by PostgreSQL as user postgres, cwd = the data directory)::

    python -m vesandbox.wal_archive --config FILE %p %f

uploads the file to its system's archive (gzip-compressed; a forced segment switch leaves the rest of a segment
unused, which compresses to almost nothing) and exits 0 only once the object is stored, so PostgreSQL retries on
failure. The system identifier comes from the segment's own first page header (WAL segments, ``.partial``); a history
or backup-label file has none, so it comes from the archiving cluster's ``global/pg_control`` (its first 8 bytes),
else from the config's ``system_identifier``. An object already there with the same content is success (a re-archive
after a crash); a different segment under the same name is refused (exit 1); history and backup-label files are
overwritten.

Fetch (restore_command)::

    python -m vesandbox.wal_archive --config FILE --fetch %f %p

writes the (decompressed) object from the archive of the config's ``system_identifier`` (required: a restore reads
the archive of its base backup's system) to ``%p``; exit 1 when it is not in the archive (normal at the end of the
archive) or when a segment there belongs to another database system.

Config (JSON): ``{"name", "weaknesses", "s3": {"endpoint", "access_key", "secret_key", "region", "bucket"},
"prefix": "wal/", "system_identifier"?: "<digits>"}``. Weakness ``broken-wal-archive``: the push reports success
and uploads nothing.

It speaks S3 through a small SigV4 client of its own (standard library only, about 30 ms a call): PostgreSQL
starts one process per WAL segment, and creating a boto3 client costs about 0.9 s of CPU each time, which would
dominate both the primary's CPU under write load and the time a restore spends fetching segments. PostgreSQL runs it
as user postgres, possibly with the system interpreter (see ``postgres_command``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
DEFAULT_PREFIX = "wal/"
GZIP_MAGIC = b"\x1f\x8b"
SYSID_OFFSET = 24  # XLogLongPageHeaderData.xlp_sysid follows the 24-byte short page header
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class ArchiveError(Exception):
    """One-line reason why a push or fetch failed."""


class S3:
    """Minimal S3 client (path-style GET/PUT of one object, AWS Signature V4) for the sandbox endpoint."""

    def __init__(self, s3: dict[str, Any], timeout: float = 20.0) -> None:
        url = urlsplit(s3["endpoint"])
        self.https = url.scheme == "https"
        self.host = url.netloc
        self.base = url.path.rstrip("/")
        self.bucket = s3["bucket"]
        self.access_key, self.secret_key = s3["access_key"], s3["secret_key"]
        self.region = s3.get("region", "us-east-1")
        self.timeout = timeout

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        now = datetime.now(UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def request(self, method: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
        path = quote(f"{self.base}/{self.bucket}/{key}", safe="/-_.~")
        conn_cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = conn_cls(self.host, timeout=self.timeout)
        try:
            conn.request(method, path, body=body or None, headers=self._headers(method, path, body))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get(self, key: str) -> bytes | None:
        status, data = self.request("GET", key)
        if status == 404:
            return None
        if status != 200:
            raise ArchiveError(f"GET s3://{self.bucket}/{key}: HTTP {status}: {_s3_error(data)}")
        return data

    def put(self, key: str, body: bytes) -> None:
        status, data = self.request("PUT", key, body)
        if status != 200:
            raise ArchiveError(f"PUT s3://{self.bucket}/{key}: HTTP {status}: {_s3_error(data)}")


def _s3_error(body: bytes) -> str:
    match = re.search(rb"<Message>(.*?)</Message>", body) or re.search(rb"<Code>(.*?)</Code>", body)
    return (match.group(1) if match else body[:200]).decode(errors="replace")


def system_identifier(segment: bytes) -> int | None:
    """The database system identifier in a WAL segment's first (long) page header, or None."""
    if len(segment) < SYSID_OFFSET + 8:
        return None
    return struct.unpack_from("<Q", segment, SYSID_OFFSET)[0]


def decode(body: bytes) -> bytes:
    return gzip.decompress(body) if body[:2] == GZIP_MAGIC else body


def archive_prefix(config: dict[str, Any], system: int | str) -> str:
    """The folder of one database system's archive: ``<prefix><system_identifier>/``."""
    return f"{config.get('prefix', DEFAULT_PREFIX)}{system}/"


def archive_key(config: dict[str, Any], system: int | str, name: str) -> str:
    """Where file ``name`` of database system ``system`` is archived."""
    return archive_prefix(config, system) + name


def is_segment(name: str) -> bool:
    """A WAL segment (or a partial one): a file that starts with a long page header carrying the system id."""
    return bool(SEGMENT_RE.match(name)) or (name.endswith(".partial") and bool(SEGMENT_RE.match(name[:24])))


def control_system_identifier(data_dir: Path) -> int | None:
    """The system identifier in a data directory's ``global/pg_control`` (its first 8 bytes), or None."""
    try:
        with (data_dir / "global" / "pg_control").open("rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return struct.unpack("<Q", head)[0] if len(head) == 8 else None


def file_system_identifier(config: dict[str, Any], path: Path, name: str, data: bytes) -> int:
    """Which database system the file belongs to (see the module docstring); ArchiveError when none can tell."""
    if is_segment(name):
        found = system_identifier(data)
        if found:
            return found
    # %p is relative to the data directory (pg_wal/<f>); without it, the archiver's cwd is the data directory
    candidates = [Path(os.path.abspath(path)).parent.parent, Path.cwd()]
    for data_dir in candidates:
        found = control_system_identifier(data_dir)
        if found:
            return found
    if config.get("system_identifier"):
        return int(config["system_identifier"])
    raise ArchiveError(f"cannot tell which database system {name} belongs to (no pg_control, no system_identifier)")


def push(config: dict[str, Any], path: Path, name: str) -> str:
    """Archive one file; return what was done ("uploaded", "already archived", "skipped", ...)."""
    if "broken-wal-archive" in config.get("weaknesses", []):
        return "skipped"  # the silent bug: success without an upload
    data = path.read_bytes()
    key = archive_key(config, file_system_identifier(config, path, name, data), name)
    client = S3(config["s3"])
    stored = client.get(key)
    old = decode(stored) if stored is not None else None
    if old is not None:
        if old == data:
            return "already archived"
        if is_segment(name):
            raise ArchiveError(f"refusing to overwrite s3://{client.bucket}/{key}: it holds a different segment")
    client.put(key, gzip.compress(data, compresslevel=1))
    return "uploaded" if old is None else "replaced"


def fetch(config: dict[str, Any], name: str, path: Path) -> None:
    """Write the archived file ``name`` of the config's system to ``path``; ArchiveError when it is missing."""
    expected = config.get("system_identifier")
    if not expected:
        raise ArchiveError("the fetch config names no system_identifier: which database system's archive to read?")
    key = archive_key(config, expected, name)
    client = S3(config["s3"])
    stored = client.get(key)
    if stored is None:
        raise ArchiveError(f"{name} not in s3://{client.bucket}/{key}")
    data = decode(stored)
    if is_segment(name) and str(system_identifier(data)) != str(expected):
        found = system_identifier(data)
        raise ArchiveError(f"{name} in the archive belongs to database system {found}, not {expected}")
    tmp = path.with_name(path.name + ".vesbx-tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ command builders


def _python_for_postgres() -> tuple[str, str]:
    """An interpreter the postgres user can execute, and the PYTHONPATH that finds vesandbox."""
    pythonpath = str(PACKAGE_PARENT)
    candidates = [sys.executable, "/usr/bin/python3"]
    for exe in candidates:
        if os.geteuid() != 0:
            return exe, pythonpath
        probe = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "env",
                f"PYTHONPATH={pythonpath}",
                exe,
                "-c",
                "import vesandbox.wal_archive",
            ],
            capture_output=True,
            timeout=60,
        )
        if probe.returncode == 0:
            return exe, pythonpath
    raise ArchiveError(
        f"no Python interpreter usable by user postgres (tried {', '.join(candidates)}): install python3 "
        f"or make {PACKAGE_PARENT} readable"
    )


_PYTHON_CACHE: list[tuple[str, str]] = []


def postgres_command(config_path: Path, *args: str) -> str:
    """Shell command line (for archive_command / restore_command) running this module as user postgres."""
    if not _PYTHON_CACHE:
        _PYTHON_CACHE.append(_python_for_postgres())
    exe, pythonpath = _PYTHON_CACHE[0]
    quoted = " ".join(a if a.startswith("%") else shlex.quote(a) for a in args)
    return (
        f"env PYTHONPATH={shlex.quote(pythonpath)} {shlex.quote(exe)} -m vesandbox.wal_archive "
        f"--config {shlex.quote(str(config_path))} {quoted}"
    )


def conf_quote(value: str) -> str:
    """Quote a value for postgresql.conf."""
    return "'" + value.replace("'", "''") + "'"


# ----------------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vesandbox.wal_archive", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--fetch", action="store_true", help="restore_command mode: NAME PATH")
    parser.add_argument("first", help="%%p when archiving, %%f with --fetch")
    parser.add_argument("second", help="%%f when archiving, %%p with --fetch")
    args = parser.parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        print(f"wal_archive: cannot read config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.fetch:
            fetch(config, args.first, Path(args.second))
        else:
            outcome = push(config, Path(args.first), args.second)
            if outcome not in ("uploaded", "skipped", "replaced"):
                print(f"wal_archive: {args.second}: {outcome}", file=sys.stderr)
    except ArchiveError as exc:
        print(f"wal_archive: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # network/file errors: PostgreSQL must retry
        print(
            f"wal_archive: {'fetch' if args.fetch else 'archive'} failed: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
