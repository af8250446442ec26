"""Chaos Mesh's admission webhook as rules over plain dicts: what the API server refuses a ``chaos-mesh.org/v1alpha1``
object for beyond its CRD schema. Read from Chaos Mesh's source (``api/v1alpha1/*_webhook.go``, the generic walker in
``api/genericwebhook``, and the parsers they call) at commit 608b61e of chaos-mesh/chaos-mesh, whose CRDs are the
ones in ``../shared/schemas/chaos-mesh`` byte for byte.

How the webhook works, and so how these rules apply:

- The mutating webhook fills defaults first (``direction: to``, ``correlation: "0"``, ``jitter: 0ms``, the selector's
  namespaces from the object's own, a StatusCheck's mode); the rules here read a spec as if defaulted.
- The validating webhook then walks every field of the object (``genericwebhook.Validate``) and calls the validator
  of the field's type or of its ``webhook:"…"`` struct tag. An absent pointer field is skipped; a value field (a plain
  string or number) is checked even when absent, so an HTTPChaos without ``port`` is refused (port 0).
- Schedule and Workflow have hand-written ``ValidateCreate`` methods; the chaos they embed is checked by
  ``EmbedChaos.Validate``, the same walk over a fresh object of the embedded kind.

Each rule is a function commented with the Go function it mirrors. ``findings(kind, spec)`` applies every rule of a
kind and returns ``Finding(path, reason)`` pairs, paths in the manifest's JSON names (``spec.delay.correlation``,
``spec.templates[2].name``). Nothing here assumes a field has the right type: a field of the wrong type is the schema
check's (``chaosmesh.schema_errors``) to report, and is skipped here. Checks Chaos Mesh makes later (when it selects
pods or injects) and Drillbit's own rules are in ``chaosmesh``; this module imports nothing from the project.

The Go parsers are mirrored too: ``time.ParseDuration``, ``strconv.Atoi`` / ``ParseUint`` / ``ParseFloat``, go-units
v0.5.0's ``FromHumanSize``, robfig/cron v3.0.1 as Chaos Mesh configures it (``StandardCronParser``), and the checks of
``net/url.ParseRequestURI`` a URL can fail.
"""

from __future__ import annotations

import math
import re
import struct
import zoneinfo
from collections.abc import Iterator
from typing import Any, NamedTuple


class Finding(NamedTuple):
    """One refusal: the field's path and why."""

    path: str
    reason: str


# The json name of each kind's spec inside EmbedChaos (zz_generated.workflow.chaosmesh.go), so inside a Schedule and
# a Workflow template; ``type`` / ``templateType`` names the kind.
EMBED_FIELDS = {
    "AWSChaos": "awsChaos",
    "AzureChaos": "azureChaos",
    "BlockChaos": "blockChaos",
    "DNSChaos": "dnsChaos",
    "GCPChaos": "gcpChaos",
    "HTTPChaos": "httpChaos",
    "IOChaos": "ioChaos",
    "JVMChaos": "jvmChaos",
    "KernelChaos": "kernelChaos",
    "NetworkChaos": "networkChaos",
    "PhysicalMachineChaos": "physicalmachineChaos",
    "PodChaos": "podChaos",
    "StressChaos": "stressChaos",
    "TimeChaos": "timeChaos",
}
SCHEDULE_TYPES = {**EMBED_FIELDS, "Workflow": "workflow"}  # a Schedule's type → the field holding its spec
TEMPLATE_SPECS = {**EMBED_FIELDS, "Schedule": "schedule", "StatusCheck": "statusCheck"}  # the same, for templates
# The kinds whose spec holds a PodSelector (selector, mode, value): their rules are here; the other chaos kinds
# (cloud, JVM, kernel, block, physical machine) have no CRD in the shared schemas and no rules here.
SELECTOR_KINDS = ("PodChaos", "NetworkChaos", "StressChaos", "IOChaos", "TimeChaos", "DNSChaos", "HTTPChaos")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def spec_field(table: dict[str, str], kind: Any) -> str | None:
    """The field of ``table`` (SCHEDULE_TYPES, TEMPLATE_SPECS) holding the spec of ``kind``; None for another kind or
    a value that is no kind at all."""
    return table.get(kind) if isinstance(kind, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------------------------------ Go's parsers

_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_DURATION_UNITS["h"] = 3600 * 10**9


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text`` as Go's ``time.ParseDuration`` reads it (``[-+]?([0-9]*(\\.[0-9]*)?unit)+`` or ``0``,
    units ns us µs ms s m h); ValueError with Go's message otherwise."""
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0
    while rest:
        number = re.match(r"([0-9]*)(?:\.([0-9]*))?", rest)
        whole, fraction = number[1], number[2] or ""
        if not whole and not fraction:
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[number.end() :]
        unit = re.match(r"[^0-9.]*", rest)[0]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        rest = rest[len(unit) :]
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
        if total > 2**63:
            raise ValueError(f'time: invalid duration "{text}"')
    if not negative and total > 2**63 - 1:
        raise ValueError(f'time: invalid duration "{text}"')
    return -total if negative else total


def atoi(text: str) -> int:
    """Go's ``strconv.Atoi``: an optional sign and decimal digits, within int64."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    if not -(2**63) <= int(text) < 2**63:
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return int(text)


def parse_uint(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 10, 64)``: decimal digits only, below 2**64."""
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    if int(text) >= 2**64:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return int(text)


_FLOAT_SPECIAL = re.compile(r"[+-]?(inf|infinity)|nan", re.IGNORECASE)
_FLOAT_DECIMAL = re.compile(r"[+-]?([0-9_]+\.?[0-9_]*|\.[0-9_]+)([eE][+-]?[0-9_]+)?")
_FLOAT_HEX = re.compile(r"[+-]?0[xX]([0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")


def _underscores_ok(text: str) -> bool:
    """Go's ``strconv.underscoreOK``: an underscore only between digits, or between a base prefix and a digit."""
    body = text[1:] if text[:1] in ("+", "-") else text
    saw, i, hexadecimal = "^", 0, False
    if len(body) >= 2 and body[0] == "0" and body[1].lower() in "box":
        saw, i, hexadecimal = "0", 2, body[1].lower() == "x"
    for c in body[i:]:
        if c.isdigit() or (hexadecimal and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_float(text: str, bits: int = 64) -> float:
    """Go's ``strconv.ParseFloat(text, bits)``: decimal or hexadecimal (``0x1p-2``) literals with Go's underscores,
    ``inf`` / ``infinity`` / ``nan``; a finite literal beyond the float32 (``bits=32``) or float64 range is an
    error."""
    if _FLOAT_SPECIAL.fullmatch(text):
        return float(text.lower().replace("infinity", "inf"))
    hexadecimal = _FLOAT_HEX.fullmatch(text)
    if not (hexadecimal or _FLOAT_DECIMAL.fullmatch(text)) or ("_" in text and not _underscores_ok(text)):
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    plain = text.replace("_", "")
    value = float.fromhex(plain) if hexadecimal else float(plain)
    try:
        if math.isinf(value) or (bits == 32 and math.isinf(struct.unpack("f", struct.pack("f", value))[0])):
            raise OverflowError  # beyond the range once rounded to the bit size: Go's ErrRange
    except OverflowError:
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": value out of range') from None
    return value


_SIZE_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def from_human_size(text: str) -> int:
    """Bytes in ``text`` as go-units v0.5.0's ``FromHumanSize`` reads it: a number, an optional space, then nothing,
    ``b``, or k/m/g/t/p with an optional ``b`` or ``ib`` (any case): ``256MB``, ``1.5 GiB``, ``4096``."""
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    number, suffix = (text[: sep + 1], text[sep + 1 :]) if text[sep] != " " else (text[:sep], text[sep + 1 :])
    size = parse_float(number)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    lower = suffix.lower()
    if not suffix or lower == "b":
        return int(size)
    if len(lower) > 3 or lower[0] not in _SIZE_UNITS or lower[1:] not in ("", "b", "ib"):
        raise ValueError(f"invalid suffix: '{lower}'")
    return int(size * _SIZE_UNITS[lower[0]])


_RATE_UNITS = ("kbit", "mbit", "gbit", "tbit", "tbps", "gbps", "mbps", "kbps", "bps", "bit")


def check_rate(text: str) -> None:
    """``isValidRateUnit`` (networkchaos_webhook.go): a whole number followed by one of tc's rate units, any case."""
    normalised = text.strip().lower()
    for unit in _RATE_UNITS:
        if normalised.endswith(unit):
            parse_uint(normalised.removesuffix(unit).strip())
            return
    raise ValueError("invalid unit")


class CronError(ValueError):
    """A schedule robfig/cron refuses; ``part`` says which: zone, descriptor, every, fields or field."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct"))}
_MONTHS |= {"nov": 11, "dec": 12}
_WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (first, last, names) of second, minute, hour, day of month, month, day of week (robfig/cron's spec.go bounds)
_CRON_FIELDS = ((0, 59, {}), (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _WEEKDAYS))
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def parse_cron(spec: str) -> None:
    """``StandardCronParser.Parse`` (schedule_types.go): robfig/cron v3.0.1 with an optional seconds field, then
    minute hour day-of-month month day-of-week, descriptors (``@daily``, ``@every 6h``) and a ``TZ=`` / ``CRON_TZ=``
    prefix; CronError otherwise."""
    if not spec:
        raise CronError("empty spec string", "fields")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        zone = spec[spec.find("=") + 1 : space] if space != -1 else spec[spec.find("=") + 1 :]
        if space == -1 or not _known_zone(zone):
            raise CronError(f"provided bad location {zone}: unknown time zone {zone}", "zone")
        spec = spec[space:].strip()
    if spec.startswith("@every "):
        try:
            parse_duration(spec.removeprefix("@every "))
        except ValueError as exc:
            raise CronError(f"failed to parse duration {spec}: {exc}", "every") from None
        return
    if spec.startswith("@"):
        if spec not in CRON_DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}", "descriptor")
        return
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        raise CronError(f"expected 5 to 6 fields, found {len(fields)}: [{' '.join(fields)}]", "fields")
    if len(fields) == 5:
        fields.insert(0, "0")
    for text, (first, last, names) in zip(fields, _CRON_FIELDS, strict=True):
        for expr in (part for part in text.split(",") if part):
            _cron_range(expr, first, last, names)


def _known_zone(zone: str) -> bool:
    """Whether Go's ``time.LoadLocation`` knows ``zone`` ("" and "UTC" are UTC, "Local" the host's zone)."""
    if zone in ("", "UTC", "Local"):
        return True
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _cron_range(expr: str, first: int, last: int, names: dict[str, int]) -> None:
    """robfig/cron's ``getRange``: ``*``, ``?``, ``N``, ``N-M``, each with an optional ``/step``."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end = first, last
    else:
        start = _cron_int(low_and_high[0], names)
        if len(low_and_high) > 2:
            raise CronError(f"too many hyphens: {expr}", "field")
        end = _cron_int(low_and_high[1], names) if len(low_and_high) == 2 else start
    if len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}", "field")
    step = _cron_int(range_and_step[1], {}) if len(range_and_step) == 2 else 1
    if len(range_and_step) == 2 and len(low_and_high) == 1:
        end = last  # "N/step" means "N-last/step"
    if start < first:
        raise CronError(f"beginning of range ({start}) below minimum ({first}): {expr}", "field")
    if end > last:
        raise CronError(f"end of range ({end}) above maximum ({last}): {expr}", "field")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}", "field")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}", "field")


def _cron_int(text: str, names: dict[str, int]) -> int:
    """robfig/cron's ``parseIntOrName``: a month or weekday name, or a non-negative whole number."""
    if text.lower() in names:
        return names[text.lower()]
    try:
        number = atoi(text)
    except ValueError as exc:
        raise CronError(f"failed to parse int from {text}: {exc}", "field") from None
    if number < 0:
        raise CronError(f"negative number ({number}) not allowed: {text}", "field")
    return number


_URL_HOST = re.compile(r"[A-Za-z0-9\-_.~!$&'()*+,;=:\[\]<>\"%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def check_request_uri(raw: str) -> None:
    """What Go's ``net/url.ParseRequestURI`` refuses: control characters, an empty URL, no scheme and no leading
    ``/``, an empty scheme, a port that is not a number, a host with characters a host cannot hold, a bad ``%``
    escape."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("net/url: invalid control character in URL")
    if raw == "":
        raise ValueError("empty url")
    if raw == "*":
        return
    scheme, rest = "", raw
    if scheme_end := re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", raw):
        scheme, rest = raw[: scheme_end.end() - 1], raw[scheme_end.end() :]
    elif raw.startswith(":"):
        raise ValueError("missing protocol scheme")
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return  # an opaque URL such as mailto:someone
        raise ValueError("invalid URI for request")
    if scheme and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        _check_host(authority.rpartition("@")[2])
        rest = slash + path
    if bad := _BAD_ESCAPE.search(rest):
        raise ValueError(f'invalid URL escape "{rest[bad.start() : bad.start() + 3]}"')


def _check_host(hostport: str) -> None:
    """``net/url.parseHost``: an optional ``:port`` of digits after the host (after the ``]`` of an IPv6 address),
    and only characters a host may hold."""
    host, port = hostport, ""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise ValueError("missing ']' in host")
        host, port = hostport[: close + 1], hostport[close + 1 :]
    elif ":" in hostport:
        host, port = hostport[: hostport.rfind(":")], hostport[hostport.rfind(":") :]
    if port and not re.fullmatch(r":[0-9]*", port):
        raise ValueError(f'invalid port "{port}" after host')
    if not _URL_HOST.fullmatch(host) or _BAD_ESCAPE.search(host):
        raise ValueError(f'invalid character in host name "{host}"')


# ------------------------------------------------------------------------------------------------ common_webhook.go


def duration(holder: dict[str, Any], key: str, path: str) -> list[Finding]:
    """``Duration.Validate``: a Go duration, or empty (the fields tagged ``webhook:"Duration"``)."""
    value = holder.get(key)
    if not isinstance(value, str) or not value:
        return []
    try:
        parse_duration(value)
    except ValueError as exc:
        reason = f"{value!r} is not a duration ({exc}); use a Go duration such as 30s or 1h30m"
        return [Finding(f"{path}.{key}", reason)]
    return []


def pod_selector(holder: dict[str, Any], path: str) -> list[Finding]:
    """``PodSelector.Validate``: modes fixed, fixed-percent and random-max-percent need a ``value`` that
    ``strconv.Atoi`` reads — a number of pods ≥ 1, or a percentage within (0, 100]."""
    mode, value = holder.get("mode"), holder.get("value", "")
    if mode not in ("fixed", "fixed-percent", "random-max-percent") or not isinstance(value, str):
        return []
    where = f"{path}.value"
    try:
        number = atoi(value)
    except ValueError as exc:
        what = "a number of pods" if mode == "fixed" else "a percentage"
        return [Finding(where, f"mode {mode} needs a whole number value ({what}, as a string), got {value!r}: {exc}")]
    if mode == "fixed" and number <= 0:
        return [Finding(where, f"mode fixed needs a value ≥ 1 (number of pods), got {number}")]
    if mode != "fixed" and not 0 < number <= 100:
        return [Finding(where, f"mode {mode} needs a percentage within 1..100, got {number}")]
    return []


def percent(holder: dict[str, Any], key: str, path: str) -> list[Finding]:
    """``Percent.Validate``: a whole number within 0..100."""
    value = _int(holder.get(key))
    if value is not None and not 0 <= value <= 100:
        return [Finding(f"{path}.{key}", f"{value} is not a percentage; the percent field should be within 0..100")]
    return []


def float_str(holder: dict[str, Any], key: str, path: str, *, defaulted: bool = False) -> list[Finding]:
    """``FloatStr.Validate``: a number ``strconv.ParseFloat(value, 32)`` reads. A correlation (``defaulted``) left
    empty is "0" first (``FloatStr.Default``); an empty probability is refused."""
    value = holder.get(key, "")
    if not isinstance(value, str) or (defaulted and value == ""):
        return []
    try:
        parse_float(value, 32)
    except ValueError as exc:
        return [Finding(f"{path}.{key}", f'{value!r} is not a number ({exc}); write it as a string such as "25"')]
    return []


# ------------------------------------------------------------------------------------------------ the chaos kinds


def pod_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """``PodChaosSpec.Validate`` (podchaos_webhook.go): container-kill needs ``containerNames``."""
    if spec.get("action") == "container-kill" and not spec.get("containerNames"):
        return [Finding(f"{path}.containerNames", "the name of container is required on container-kill action")]
    return []


def network_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """networkchaos_webhook.go and the tags of networkchaos_types.go: the target's mode and value
    (``PodSelector.Validate``), latency and jitter (``Duration``), every probability and correlation (``FloatStr``),
    bandwidth and rate (``Rate.Validate``), and ``NetworkChaosSpec.Validate``'s direction rules."""
    out = pod_selector(spec["target"], f"{path}.target") if isinstance(spec.get("target"), dict) else []
    if isinstance(delay := spec.get("delay"), dict):
        out += duration(delay, "latency", f"{path}.delay") + duration(delay, "jitter", f"{path}.delay")
        out += float_str(delay, "correlation", f"{path}.delay", defaulted=True)
        if isinstance(reorder := delay.get("reorder"), dict):
            out += float_str(reorder, "reorder", f"{path}.delay.reorder")
            out += float_str(reorder, "correlation", f"{path}.delay.reorder", defaulted=True)
    for block in ("loss", "duplicate", "corrupt"):
        if isinstance(holder := spec.get(block), dict):
            out += float_str(holder, block, f"{path}.{block}")
            out += float_str(holder, "correlation", f"{path}.{block}", defaulted=True)
    for block in ("bandwidth", "rate"):
        if isinstance(holder := spec.get(block), dict):
            out += rate(holder, f"{path}.{block}")
    return out + network_directions(spec, path)


def rate(holder: dict[str, Any], path: str) -> list[Finding]:
    """``Rate.Validate`` (networkchaos_webhook.go): ``rate`` as tc writes it, e.g. ``1mbps``, ``100kbit``."""
    value = holder.get("rate", "")
    if not isinstance(value, str):
        return []
    try:
        check_rate(value)
    except ValueError as exc:
        reason = f"{value!r} is not a rate ({exc}); write a whole number and a unit: bit, kbit, mbit, gbit, tbit, bps"
        return [Finding(f"{path}.rate", reason + ", kbps, mbps, gbps or tbps (e.g. 1mbps)")]
    return []


def network_directions(spec: dict[str, Any], path: str) -> list[Finding]:
    """``NetworkChaosSpec.Validate``: outside partitions, ``from`` and ``both`` need a target and no
    ``externalTargets``."""
    if spec.get("action") == "partition" or spec.get("direction", "to") not in ("from", "both"):
        return []
    out, direction = [], spec.get("direction")
    if spec.get("externalTargets") is not None:
        reason = f"direction {direction}: external targets cannot be used with `from` and `both` in netem actions yet"
        out.append(Finding(f"{path}.direction", reason))
    if spec.get("target") is None:
        reason = f"direction {direction} cannot be used when target is empty in netem actions; give a target"
        out.append(Finding(f"{path}.direction", reason))
    return out


def stress_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """stresschaos_webhook.go: ``StressChaosSpec.Validate`` and ``Stressors.Validate`` (some stressor is given),
    ``Bytes.Validate`` (memory size: a percentage or a size go-units reads)."""
    stressors = spec.get("stressors")
    if stressors is None and not spec.get("stressngStressors"):
        return [Finding(f"{path}.stressors", "missing stressors (cpu and/or memory, or stressngStressors)")]
    if not isinstance(stressors, dict):
        return []
    if stressors.get("memory") is None and stressors.get("cpu") is None:
        return [Finding(f"{path}.stressors", "missing stressors: give cpu and/or memory")]
    size = _dict(stressors.get("memory")).get("size", "")
    return memory_size(size, f"{path}.stressors.memory.size") if isinstance(size, str) and size else []


def memory_size(size: str, path: str) -> list[Finding]:
    """``Bytes.Validate``: ``N%`` (N within 0..100) or a size such as 256MB, 1GiB, 512k."""
    try:
        if size.endswith("%"):
            if not 0 <= atoi(size[:-1]) <= 100:
                raise ValueError("illegal proportion")
        else:
            from_human_size(size)
    except ValueError as exc:
        return [Finding(path, f"{size!r} is not a size (incorrect bytes format: {exc}); write e.g. 256MB, 1GiB or 25%")]
    return []


def io_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """iochaos_webhook.go and the tags of iochaos_types.go: ``delay`` (``Duration``), ``percent`` (``Percent``) and
    ``IOErrno.Validate``: action fault needs a non-zero errno."""
    out = duration(spec, "delay", path) + percent(spec, "percent", path)
    if spec.get("action") == "fault" and _int(spec.get("errno", 0)) == 0:
        reason = "action fault: errno 0 is not supported; give the errno to return (e.g. 5 for EIO, 28 for ENOSPC)"
        out.append(Finding(f"{path}.errno", reason))
    return out


def time_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """``TimeOffset.Validate`` (timechaos_webhook.go): ``timeOffset`` is a Go duration, signed (``-10m``) or not.
    TimeChaos's ``duration`` carries no webhook tag, so the webhook leaves it unchecked."""
    offset = spec.get("timeOffset", "")
    if not isinstance(offset, str):
        return []
    try:
        parse_duration(offset)
    except ValueError as exc:
        return [Finding(f"{path}.timeOffset", f"{offset!r} is not a time offset ({exc}); write e.g. -10m or 1h30m")]
    return []


def http_chaos(spec: dict[str, Any], path: str) -> list[Finding]:
    """httpchaos_webhook.go: ``PodHttpChaosTarget.Validate`` (Request or Response), ``Port.Validate`` (port > 0,
    and an absent port is 0), ``HTTPMethod.Validate`` (a request's method is a standard one, upper case) and
    ``Delay.Validate`` (a Go duration)."""
    out = []
    target = spec.get("target", "")
    if isinstance(target, str) and target not in ("Request", "Response"):
        out.append(Finding(f"{path}.target", f"target {target!r} is not supported; use Request or Response"))
    port = _int(spec.get("port", 0))
    if port is not None and port <= 0:
        out.append(Finding(f"{path}.port", f"port {port} is not supported; give the port the pods serve HTTP on"))
    method = spec.get("method")
    if isinstance(method, str) and target == "Request" and method not in HTTP_METHODS:
        reason = f"method {method!r} is not supported; use one of {', '.join(HTTP_METHODS)}"
        out.append(Finding(f"{path}.method", reason))
    delay = spec.get("delay")
    if isinstance(delay, str):
        try:
            parse_duration(delay)
        except ValueError as exc:
            out.append(Finding(f"{path}.delay", f"invalid duration {delay!r} ({exc})"))
    return out


_KIND_RULES = {
    "PodChaos": pod_chaos,
    "NetworkChaos": network_chaos,
    "StressChaos": stress_chaos,
    "IOChaos": io_chaos,
    "TimeChaos": time_chaos,
    "DNSChaos": lambda spec, path: [],  # dnschaos_type.go has no validator of its own
    "HTTPChaos": http_chaos,
}


def chaos(kind: str, spec: Any, path: str) -> list[Finding]:
    """The generated ``<Kind>.Validate`` (``genericwebhook.Validate`` over the object), which is also what
    ``EmbedChaos.Validate`` runs on the chaos a Schedule or a Workflow template embeds: the selector's mode and value,
    ``duration`` (every kind but TimeChaos tags it), then the kind's own rules. Kinds without rules here pass."""
    if not isinstance(kind, str) or kind not in _KIND_RULES or not isinstance(spec, dict):
        return []
    out = pod_selector(spec, path)
    if kind != "TimeChaos":
        out += duration(spec, "duration", path)
    return out + _KIND_RULES[kind](spec, path)


# ------------------------------------------------------------------------------------------------ StatusCheck


def status_check(spec: Any, path: str) -> list[Finding]:
    """statuscheck_webhook.go: ``StatusCheckSpec.Validate`` (type HTTP needs ``http``; the CRD defaults the type to
    HTTP), ``HTTPStatusCheck.Validate`` (a URL ``ParseRequestURI`` reads), ``StatusCode.Validate`` (a code or a
    range ``200-299`` of codes within 1..999), and ``duration`` (``Duration``)."""
    if not isinstance(spec, dict):
        return []
    out = duration(spec, "duration", path)
    kind = spec.get("type") or "HTTP"
    if kind != "HTTP":
        return [*out, Finding(f"{path}.type", f"unrecognized type: {kind}")]
    http = spec.get("http")
    if http is None:
        return [*out, Finding(f"{path}.http", "the detail of http status check is required")]
    if not isinstance(http, dict):
        return out
    url = http.get("url", "")
    if url == "":
        out.append(Finding(f"{path}.http.url", "request url is required"))
    elif isinstance(url, str):
        try:
            check_request_uri(url)
        except ValueError as exc:
            out.append(Finding(f"{path}.http.url", f"{url!r} is an invalid http request url ({exc})"))
    code = _dict(http.get("criteria")).get("statusCode", "")
    return out + (status_code(code, f"{path}.http.criteria.statusCode") if isinstance(code, str) else [])


def status_code(code: str, path: str) -> list[Finding]:
    """``StatusCode.Validate``: ``200`` or ``200-299``, every code within 1..999."""
    if code == "":
        return [Finding(path, "status code is required (e.g. 200 or 200-299)")]
    parts = [code] if re.fullmatch(r"[+-]?[0-9]+", code) else code.split("-", 1)
    if len(parts) == 1 and not re.fullmatch(r"[+-]?[0-9]+", code):
        return [Finding(path, f"{code!r}: incorrect status code format: not a single number or a range")]
    for part in parts:
        try:
            number = atoi(part)
        except ValueError as exc:
            return [Finding(path, f"{code!r}: incorrect status code format: {exc}")]
        if not 0 < number < 1000:
            return [Finding(path, f"{code!r}: incorrect status code format: invalid status code {number}")]
    return []


# ------------------------------------------------------------------------------------------------ Schedule


def schedule_cron(cron: str, path: str) -> list[Finding]:
    """``ScheduleSpec.validateSchedule`` (schedule_webhook.go): ``StandardCronParser.Parse`` reads the schedule."""
    try:
        parse_cron(cron)
    except CronError as exc:
        if exc.part == "every":
            every = cron.rpartition("@every ")[2]
            return [Finding(path, f"{every!r} is not a duration ({exc}); write e.g. @every 6h")]
        if exc.part == "descriptor":
            listed = ", ".join(CRON_DESCRIPTORS)
            return [Finding(path, f"unknown descriptor {cron!r}; use {listed} or @every <duration>")]
        if exc.part == "fields":
            reason = f"{cron!r} is not a 5-field cron expression (minute hour day-of-month month weekday, "
            return [Finding(path, reason + f"optionally a seconds field first): {exc}")]
        return [Finding(path, f"{cron!r} is not a cron schedule: {exc}")]
    return []


def schedule(spec: Any, path: str) -> list[Finding]:
    """``ScheduleSpec.Validate`` (schedule_webhook.go): the cron (``validateSchedule``), then the embedded chaos of
    the schedule's ``type`` (``validateChaos`` → ``EmbedChaos.Validate``; without that spec, ``SpawnNewObject``
    dereferences nil and the webhook fails). Type Workflow is skipped by the Schedule webhook, but every Workflow the
    schedule creates passes the Workflow webhook, so its rules are applied to ``workflow`` here."""
    if not isinstance(spec, dict):
        return []
    out = schedule_cron(spec["schedule"], f"{path}.schedule") if isinstance(spec.get("schedule"), str) else []
    kind = spec.get("type")
    field = spec_field(SCHEDULE_TYPES, kind)
    if field is None:  # SpawnNewObject's "unknown template type" (the CRD has no enum for it); a missing type is
        if not isinstance(kind, str):  # the schema's to report
            return out
        known = ", ".join([*EMBED_FIELDS, "Workflow"])
        return [*out, Finding(f"{path}.type", f"unknown template type {kind!r}; use one of {known}")]
    if not isinstance(spec.get(field), dict):
        present = [f for f in SCHEDULE_TYPES.values() if f in spec]
        return [*out, Finding(f"{path}.{field}", f"type {kind} needs exactly this embedded spec, found {present}")]
    if kind == "Workflow":
        return out + workflow(spec[field], f"{path}.{field}")
    return out + chaos(kind, spec[field], f"{path}.{field}")


# ------------------------------------------------------------------------------------------------ Workflow

_NOT_ALLOWED = {  # what validateTemplate's shouldBeNo* calls refuse, by template type
    "Suspend": ("task", "children", "conditionalBranches", "chaos", "schedule"),
    "Serial": ("task", "conditionalBranches", "chaos", "schedule"),
    "Parallel": ("task", "conditionalBranches", "chaos", "schedule"),
    "Schedule": ("task", "children", "conditionalBranches", "chaos"),
    "Task": ("children", "chaos", "schedule"),
    "StatusCheck": ("task", "children", "conditionalBranches", "chaos", "schedule"),
    "chaos": ("task", "children", "conditionalBranches", "schedule"),
}


def workflow(spec: Any, path: str) -> list[Finding]:
    """``Workflow.ValidateCreate`` (workflow_webhook.go): ``entryMustExists`` and ``validateTemplates``."""
    if not isinstance(spec, dict):
        return []
    templates = [t for t in _list(spec.get("templates")) if isinstance(t, dict)]
    names = [t.get("name", "") for t in templates]
    out = []
    entry = spec.get("entry", "")
    if entry == "":
        out.append(Finding(f"{path}.entry", "the entry of workflow is required; name the template to start with"))
    elif isinstance(entry, str) and entry not in names:
        out.append(Finding(f"{path}.entry", f"can not find a template with name {entry}"))
    return out + validate_templates(_list(spec.get("templates")), names, f"{path}.templates")


def validate_templates(templates: list[Any], names: list[Any], path: str) -> list[Finding]:
    """``validateTemplates``: at least one template, unique names (``namesCouldNotBeDuplicated``), and
    ``validateTemplate`` on each."""
    if not templates:
        return [Finding(path, "templates in workflow could not be empty")]
    out = []
    duplicated = sorted({str(n) for n in names if names.count(n) > 1})
    if duplicated:
        out.append(Finding(path, f"template name must be unique, duplicated names: {duplicated}"))
    for i, template in enumerate(templates):
        if isinstance(template, dict):
            out += validate_template(template, names, f"{path}[{i}]")
    return out


def validate_template(template: dict[str, Any], names: list[Any], path: str) -> list[Finding]:
    """``validateTemplate``: a DNS-1123 name; per type what it must hold (Suspend a deadline, Serial and Parallel
    children that exist, a chaos type its chaos without a duration — ``shouldNotSetupDurationInTheChaos`` — checked
    by ``EmbedChaos.Validate``) and what it must not (``shouldBeNo*``)."""
    out = []
    name = template.get("name", "")
    if name == "":
        out.append(Finding(f"{path}.name", "name of template is required"))
    elif isinstance(name, str) and (len(name) > 253 or not DNS_SUBDOMAIN.match(name)):
        reason = f"{name!r}: field name must be DNS-1123 subdomain (lowercase letters, digits, '-' and '.')"
        out.append(Finding(f"{path}.name", reason))
    kind = template.get("templateType")
    group = "chaos" if spec_field(EMBED_FIELDS, kind) else kind
    if not isinstance(group, str) or group not in _NOT_ALLOWED:
        return [*out, Finding(f"{path}.templateType", f"unrecognized template type: {kind}")]
    out += _should_be_no(template, kind, _NOT_ALLOWED[group], path)
    if kind == "Suspend" and not template.get("deadline"):
        out.append(Finding(f"{path}.deadline", "deadline in template with type Suspend could not be empty"))
    if kind in ("Serial", "Parallel"):
        for i, child in enumerate(_list(template.get("children"))):
            if child not in names:
                out.append(Finding(f"{path}.children[{i}]", f"can not find a template with name {child}"))
    if group == "chaos":
        out += _embedded_chaos(template, kind, path)
    # What the workflow creates passes its own webhook when it is created: a Schedule template's schedule the
    # Schedule webhook's rules, a StatusCheck template's status check the StatusCheck webhook's.
    if kind == "Schedule":
        out += schedule(template.get("schedule"), f"{path}.schedule")
    if kind == "StatusCheck":
        out += status_check(template.get("statusCheck"), f"{path}.statusCheck")
    return out


def _should_be_no(template: dict[str, Any], kind: Any, refused: tuple[str, ...], path: str) -> list[Finding]:
    """``shouldBeNoTask`` / ``…Children`` / ``…ConditionalBranches`` / ``…EmbedChaos`` / ``…Schedule``."""
    out = []
    for field in refused:
        if field == "chaos":
            held = [f for f in EMBED_FIELDS.values() if template.get(f) is not None]
            out += [Finding(f"{path}.{f}", f"a template of type {kind} should not contain any chaos") for f in held]
        elif (template.get(field) is not None) if field in ("task", "schedule") else template.get(field):
            out.append(Finding(f"{path}.{field}", f"a template of type {kind} should not contain {field}"))
    return out


def _embedded_chaos(template: dict[str, Any], kind: str, path: str) -> list[Finding]:
    """``shouldNotSetupDurationInTheChaos`` (the chaos is there, without a duration: the template's deadline bounds
    it) and ``EmbedChaos.Validate``."""
    field = EMBED_FIELDS[kind]
    spec = template.get(field)
    if not isinstance(spec, dict):
        return [Finding(f"{path}.{field}", f"the value of chaos {kind} is required")]
    out = []
    if spec.get("duration") is not None:
        reason = "should not define duration in chaos when using Workflow, use the template's deadline instead"
        out.append(Finding(f"{path}.{field}.duration", reason))
    return out + chaos(kind, spec, f"{path}.{field}")


# ------------------------------------------------------------------------------------------------ any object


def findings(kind: str, spec: Any, path: str = "spec") -> list[Finding]:
    """Every refusal of the admission webhook for an object of ``kind`` whose spec is ``spec``."""
    if kind == "Schedule":
        return schedule(spec, path)
    if kind == "Workflow":
        return workflow(spec, path)
    if kind == "StatusCheck":
        return status_check(spec, path)
    return chaos(kind, spec, path)


def embedded_objects(kind: str, spec: Any, path: str = "spec") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, kind, spec) of the object itself and of every spec it embeds, at any depth: a Schedule's chaos (its
    type's) or workflow, a Workflow's templates' chaos, schedules and status checks."""
    if not isinstance(spec, dict):
        return
    yield path, kind, spec
    if kind == "Schedule":
        inner = spec.get("type")
        if field := spec_field(SCHEDULE_TYPES, inner):
            yield from embedded_objects(inner, spec.get(field), f"{path}.{field}")
    elif kind == "Workflow":
        for i, template in enumerate(_list(spec.get("templates"))):
            inner = _dict(template).get("templateType")
            if field := spec_field(TEMPLATE_SPECS, inner):
                yield from embedded_objects(inner, template.get(field), f"{path}.templates[{i}].{field}")
