"""SLURM value formats shared by every SLURM parser: durations, sizes, timestamps, TRES, host lists, states.

Sources: the "Time formats" and field descriptions of the squeue(1), sinfo(1), scontrol(1) and sacct(1) man
pages (SLURM 22.05-25.11). Every function returns ``None`` for values SLURM uses to mean "none/unknown"
(``N/A``, ``NONE``, ``Unknown``, ``(null)``, empty) and raises :class:`ValueError` for text that is not a value
of the expected format, so callers can count a parse error instead of exporting garbage.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

T = TypeVar("T")

_NULLS = frozenset({"", "n/a", "none", "unknown", "(null)", "null", "invalid"})

_DURATION = re.compile(r"^(?:(?P<days>\d+)-)?(?:(?P<h>\d+):)??(?:(?P<m>\d+):)?(?P<s>\d+(?:\.\d+)?)$")
# The common shapes only, ASCII digits, no surrounding space: [D-]HH:MM:SS[.f] (groups 1-4) or MM:SS[.f] (5-6).
# Anything else (nulls, UNLIMITED, D-HH, whitespace, out-of-range minutes) takes the general path.
_DURATION_FAST = re.compile(r"(?:(\d+)-)?(\d+):(\d+):(\d+(?:\.\d+)?)|(\d+):(\d+(?:\.\d+)?)", re.ASCII).fullmatch


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a parser builds a large number of long-lived records.

    Why: the records (dataclasses, lists, dicts of numbers) form no reference cycles, so a collection during the
    build cannot free anything; yet CPython 3.11 runs full collections as the heap grows, each one scanning every
    object built so far (measured: 2.7 s of 7 s for 200,000 sacct jobs, 9 full collections). The collector is
    re-enabled afterwards only if it was enabled before (a program that disabled it keeps it disabled). Other
    threads merely see a later collection; no result changes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_MISS = object()


def per_parse_cache(fn: Callable[[str], T]) -> Callable[[str], T]:
    """``fn`` (a pure function of one text) with a cache of its results, for one parse of a large output.

    Columns such as states, partitions, TRES strings or times repeat across thousands of lines; the cache makes
    each distinct text cost one call. Exceptions are not cached, so every bad field is still reported. Create
    one per parse (the cache is never pruned).
    """
    cache: dict[str, Any] = {}
    get = cache.get

    def cached(text: str) -> T:
        value = get(text, _MISS)
        if value is _MISS:
            value = cache[text] = fn(text)
        return value

    return cached


def is_null(text: str | None) -> bool:
    """Whether ``text`` is one of SLURM's spellings of "no value"."""
    return text is None or text.strip().lower() in _NULLS


def parse_duration(text: str) -> float | None:
    """Parse a SLURM duration into seconds.

    Accepted forms (sacct(1) "Elapsed"/"TotalCPU", squeue(1) ``%l``/``%M``): ``D-HH:MM:SS``, ``D-HH:MM``,
    ``D-HH``, ``HH:MM:SS``, ``MM:SS``, ``MM:SS.mmm`` (TotalCPU under an hour), ``SS``, and a bare number of
    minutes is **not** accepted (only squeue input options use that). ``UNLIMITED``, ``INFINITE``,
    ``Partition_Limit`` and nulls give ``None``.

    Raises:
        ValueError: for any other text.

    """
    m = _DURATION_FAST(text)
    if m is not None:
        # Fast path for the plain ASCII forms sacct and squeue print (D-HH:MM:SS, HH:MM:SS, MM:SS[.mmm]): the same
        # arithmetic as below, in the same order, so the float result is identical.
        d, h, mm, s, mm2, s2 = m.groups()
        if mm is None:  # MM:SS
            h, mm, s = "0", mm2, s2
        mi, sf = int(mm), float(s)
        if mi < 60 and sf < 61:
            return (int(d) if d else 0) * 86400 + int(h) * 3600 + mi * 60 + sf
    t = text.strip()
    if is_null(t) or t.upper() in ("UNLIMITED", "INFINITE", "PARTITION_LIMIT", "NOT_SET"):
        return None
    days = 0
    if "-" in t:
        d, _, rest = t.partition("-")
        if not d.isdigit():
            raise ValueError(f"bad duration {text!r}")
        days = int(d)
        parts = rest.split(":")
        # D-HH, D-HH:MM, D-HH:MM:SS
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"bad duration {text!r}")
        parts += ["0"] * (3 - len(parts))
        h, m, s = parts
    else:
        parts = t.split(":")
        if len(parts) == 3:
            h, m, s = parts
        elif len(parts) == 2:
            h, (m, s) = "0", parts
        elif len(parts) == 1:
            h, m, s = "0", "0", parts[0]
        else:
            raise ValueError(f"bad duration {text!r}")
    try:
        hi, mi, sf = int(h), int(m), float(s)
    except ValueError as exc:
        raise ValueError(f"bad duration {text!r}") from exc
    if hi < 0 or mi < 0 or sf < 0 or mi >= 60 or sf >= 61:
        raise ValueError(f"bad duration {text!r}")
    return days * 86400 + hi * 3600 + mi * 60 + sf


_SIZE_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_UNITS = frozenset("KMGTP")
_SIZE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<suf>[KMGTP]?)(?P<per>[nc]?)$", re.IGNORECASE)


def parse_size(text: str, default_unit: str = "") -> tuple[float, str] | None:
    """Parse a SLURM size such as ``MaxRSS`` ``1234K``, ``ReqMem`` ``4000Mn`` or ``2Gc``.

    Args:
        text: the field text.
        default_unit: suffix assumed when the text has none (``"M"`` for ``ReqMem``/``RealMemory``, ``""``
            for byte counts).

    Returns:
        ``(bytes, per)`` where ``per`` is ``"n"`` (per node), ``"c"`` (per CPU) or ``""``; ``None`` for nulls.
        ``K`` means KiB as in SLURM's own output (powers of 1024, sacct(1) ``--units``).

    Raises:
        ValueError: for other text.

    """
    if text.isascii():
        # Fast paths, same results as the regular expression below: plain ASCII digits ("0", "123456") and
        # digits with an upper-case unit (MaxRSS "50732K", ReqMem "4000M").
        if text.isdigit():
            return float(text) * _SIZE_SUFFIX[default_unit.upper()], ""
        if text[-1:] in _UNITS and text[:-1].isdigit():
            return float(text[:-1]) * _SIZE_SUFFIX[text[-1]], ""
    t = text.strip()
    if is_null(t):
        return None
    m = _SIZE.match(t)
    if not m:
        raise ValueError(f"bad size {text!r}")
    suf = (m["suf"] or default_unit).upper()
    return float(m["num"]) * _SIZE_SUFFIX[suf], m["per"].lower()


def parse_timestamp(text: str, tz: timezone | None = None) -> float | None:
    """Parse a ``SLURM_TIME_FORMAT=standard`` timestamp (``YYYY-MM-DDTHH:MM:SS``) into Unix seconds.

    SLURM prints local time without a zone; ``tz=None`` interprets it in the machine's local zone, as SLURM
    itself does. ``Unknown``, ``None`` and ``N/A`` give ``None``; a bare integer is taken as Unix seconds
    (``SLURM_TIME_FORMAT=%s``).

    Raises:
        ValueError: for other text.

    """
    if tz is None and len(text) == 19 and text[16] == ":" and not text[0].isspace():
        # Fast path for the usual ``YYYY-MM-DDTHH:MM:SS``: strip() would not change the text, and the
        # seconds are two ASCII digits below 60, so the value is the (cached) value of second 0 of that
        # minute plus the seconds whenever local time runs linearly through the minute.
        sec = text[17:]
        if sec.isdigit() and sec.isascii() and sec < "60":
            base = _minute_start(text[:16])
            if base is not None:
                return base + int(sec)
    t = text.strip()
    if is_null(t):
        return None
    if t.isdigit():
        return float(t)
    try:
        dt = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S")
    except ValueError as exc:
        raise ValueError(f"bad timestamp {text!r}") from exc
    if tz is not None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


_MINUTES: dict[str, float | None] = {}
_MINUTES_TZ: list[object] = [None]
_MINUTES_MAX = 100_000


def _minute_start(prefix: str) -> float | None:
    """Local-time Unix seconds of ``<prefix>:00`` (``prefix`` = ``YYYY-MM-DDTHH:MM``), cached per minute.

    ``None`` when the prefix is not a valid minute or local time does not advance exactly 59 s from second 0 to
    second 59 of it (a DST or zone-offset change inside the minute): the caller then takes the general
    ``datetime.timestamp()`` path. The cache is dropped when ``time.tzset()`` changed the zone (``time.tzname``
    is a new object then) and when it grows past :data:`_MINUTES_MAX` entries.
    """
    if _MINUTES_TZ[0] is not time.tzname or len(_MINUTES) > _MINUTES_MAX:
        _MINUTES.clear()
        _MINUTES_TZ[0] = time.tzname
    try:
        return _MINUTES[prefix]
    except KeyError:
        pass
    try:
        first = datetime.strptime(prefix + ":00", "%Y-%m-%dT%H:%M:%S").timestamp()
        last = datetime.strptime(prefix + ":59", "%Y-%m-%dT%H:%M:%S").timestamp()
    except (ValueError, OverflowError):
        value = None
    else:
        value = first if last - first == 59 else None
    _MINUTES[prefix] = value
    return value


def parse_tres(text: str) -> dict[str, float]:
    """Parse a TRES string (``cpu=4,mem=16G,node=1,billing=4,gres/gpu=2,gres/gpu:a100=2``) into numbers.

    Memory-like values with a size suffix (``mem=16G``, ``fs/disk=1T``) are converted to bytes (a bare
    ``mem`` number is MiB, as SLURM stores it). Entries that do not parse are left out.
    """
    out: dict[str, float] = {}
    if is_null(text):
        return out
    for item in text.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not key:
            continue
        try:
            if key == "mem" or key.startswith("fs/") or re.search(r"[KMGTP]$", val, re.IGNORECASE):
                size = parse_size(val, "M" if key == "mem" else "")
                if size is None:
                    continue
                out[key] = size[0]
            else:
                out[key] = float(val)
        except ValueError:
            continue
    return out


_GRES_ITEM = re.compile(r"^(?P<name>[^:(]+)(?::(?P<type>[^:(]+))?(?::(?P<count>\d+))?(?:\((?P<extra>[^)]*)\))?$")


def parse_gres(text: str) -> dict[tuple[str, str], int]:
    """Parse a GRES list (``gpu:a100:4(S:0-1),gpu:v100:2,shard:8``) into ``{(name, type): count}``.

    ``type`` is ``""`` when absent; a missing count means 1 (gres.conf(5)). Commas inside parentheses
    (``gpu:2(IDX:0,1)``) are handled. Unparseable items are left out.
    """
    out: dict[tuple[str, str], int] = {}
    if is_null(text):
        return out
    depth, cur, items = 0, "", []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    for item in items:
        item = item.strip()
        if item.startswith("gres/"):
            item = item[len("gres/") :]
        m = _GRES_ITEM.match(item)
        if not m or is_null(m["name"]):
            continue
        gtype, count = m["type"] or "", m["count"]
        if count is None and gtype.isdigit():
            gtype, count = "", gtype
        if gtype.lower() in ("(null)", "null"):
            gtype = ""
        key = (m["name"], gtype)
        out[key] = out.get(key, 0) + int(count or 1)
    return out


def expand_hostlist(text: str) -> list[str]:
    """Expand a SLURM host list (``c[01-03,07],gpu01``) into names, keeping zero padding.

    Raises:
        ValueError: for unbalanced brackets or a bad range.

    """
    hosts: list[str] = []
    if is_null(text):
        return hosts
    depth, cur, items = 0, "", []
    for ch in text.strip():
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"bad host list {text!r}")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ValueError(f"bad host list {text!r}")
    items.append(cur)
    for item in items:
        if not item:
            continue
        hosts.extend(_expand_one(item))
    return hosts


def _expand_one(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", item)
    if not m:
        return [item]
    prefix, body, rest = m.groups()
    out = []
    for part in body.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad host range {part!r}")
        width = len(lo)
        for n in range(int(lo), int(hi if sep else lo) + 1):
            out.extend(f"{prefix}{n:0{width}d}{tail}" for tail in _expand_one(rest))
    return out


# Node states: base states and flags, from sinfo(1) "NODE STATE CODES" and scontrol(1) "State".
BASE_STATES = frozenset(
    {
        "ALLOCATED",
        "ALLOC",
        "BLOCKED",
        "COMPLETING",
        "DOWN",
        "DRAINED",
        "DRAINING",
        "FAIL",
        "FAILING",
        "FUTURE",
        "IDLE",
        "INVAL",
        "MAINT",
        "MIXED",
        "PERFCTRS",
        "PLANNED",
        "POWER_DOWN",
        "POWERING_DOWN",
        "POWERED_DOWN",
        "POWERING_UP",
        "REBOOT",
        "RESERVED",
        "UNKNOWN",
        "UNK",
        "COMP",
        "DRAIN",
        "DRNG",
        "MIX",
        "NPC",
        "RESV",
        "PLND",
        "BLOCK",
        "FUTR",
    }
)
_ABBREV = {
    "ALLOC": "ALLOCATED",
    "MIX": "MIXED",
    "COMP": "COMPLETING",
    "DRNG": "DRAINING",
    "DRAIN": "DRAINED",
    "UNK": "UNKNOWN",
    "RESV": "RESERVED",
    "PLND": "PLANNED",
    "BLOCK": "BLOCKED",
    "FUTR": "FUTURE",
    "NPC": "PERFCTRS",
}
# sinfo suffix characters (sinfo(1) "NODE STATE CODES"):
SUFFIX_FLAGS = {
    "*": "NOT_RESPONDING",
    "~": "POWERED_DOWN",
    "#": "POWERING_UP",
    "!": "POWERING_DOWN",
    "%": "POWERING_DOWN",
    "$": "MAINTENANCE",
    "@": "REBOOT_REQUESTED",
    "^": "REBOOT_ISSUED",
    "-": "PLANNED",
}


def parse_node_state(text: str) -> tuple[str, frozenset[str]]:
    """Split a node state into ``(base, flags)``, both lower-case.

    Handles scontrol's compound form (``IDLE+DRAIN``, ``DOWN+NOT_RESPONDING``, ``MIXED+DRAIN+RESERVED``), sinfo's
    long form with suffix characters (``drained*``, ``idle~``, ``mixed-``) and sinfo's derived names
    (``draining`` = allocated/mixed + drain, ``drained`` = idle + drain, which give flag ``drain``).

    Raises:
        ValueError: when the base state is not a SLURM node state.

    """
    t = text.strip()
    flags: set[str] = set()
    while t and t[-1] in SUFFIX_FLAGS:
        flags.add(SUFFIX_FLAGS[t[-1]])
        t = t[:-1]
    parts = [p for p in t.upper().split("+") if p]
    if not parts:
        raise ValueError(f"empty node state {text!r}")
    base = _ABBREV.get(parts[0], parts[0])
    if base not in BASE_STATES:
        raise ValueError(f"unknown node state {text!r}")
    flags.update(_ABBREV.get(p, p) if p != "DRAIN" else "DRAIN" for p in parts[1:])
    if base in ("DRAINED", "DRAINING"):
        flags.add("DRAIN")
        base = "IDLE" if base == "DRAINED" else "ALLOCATED"
        if text.strip().lower().startswith("draining"):
            base = "MIXED"  # sinfo cannot tell allocated from mixed here; mixed is the common case
    if "DRAINED" in flags:
        flags.discard("DRAINED")
        flags.add("DRAIN")
    return base.lower(), frozenset(f.lower() for f in flags)


# --- Header-driven tables (added for the squeue/sinfo parsers) -------------------------------------------------

_HEADER_TOKEN = re.compile(r"^[A-Z][A-Z0-9_:()/%.]*$")


def split_header_table(
    text: str, known: frozenset[str], free_text_last: frozenset[str] = frozenset()
) -> tuple[list[str], list[tuple[int, str, list[str] | None]]] | None:
    """Split a SLURM table that starts with its header line (``squeue``/``sinfo`` without ``--noheader``).

    The delimiter is taken from the header: ASCII unit separator (0x1F), then ``|``, else runs of whitespace
    (the padded ``-o``/``-O`` layouts). A trailing delimiter (``-O field:|`` suffixes) is ignored. The header is
    recognised only when every token looks like a SLURM column title (upper case, digits, ``_:()/%.``) and at
    least one is in ``known``; otherwise ``None`` is returned so the caller can refuse the text.

    Args:
        text: the whole output.
        known: column titles the caller understands (upper case).
        free_text_last: titles whose value may contain the delimiter when they are the LAST column (whitespace
            layout: ``REASON``); surplus tokens are joined back into that column.

    Returns:
        ``(headers, rows)``: headers upper-cased in order; rows as ``(line_no, line, values)`` where ``values``
        has one string per header, or ``None`` when the field count does not match (the caller counts it).

    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return None
    header_line = lines[start]
    if "\x1f" in header_line:
        delim: str | None = "\x1f"
    elif "|" in header_line:
        delim = "|"
    else:
        delim = None

    def split(line: str) -> list[str]:
        if delim is None:
            return line.split()
        body = line.rstrip("\r\n ")
        parts = body.split(delim)
        if " " in body or "\t" in body:  # only then can a value carry padding
            parts = [p.strip(" \t") for p in parts]
        if trailing and parts and parts[-1] == "":
            parts.pop()
        return parts

    # rstrip() alone would also remove 0x1F, which Python counts as whitespace.
    trailing = delim is not None and header_line.rstrip("\r\n ").endswith(delim)
    headers = [h.upper() for h in split(header_line)]
    if not headers or not all(_HEADER_TOKEN.match(h) for h in headers) or not any(h in known for h in headers):
        return None
    rows: list[tuple[int, str, list[str] | None]] = []
    for idx in range(start + 1, len(lines)):
        line = lines[idx]
        if not line.strip():
            continue
        values = split(line)
        if len(values) > len(headers) and delim is None and headers[-1] in free_text_last:
            values = values[: len(headers) - 1] + [" ".join(values[len(headers) - 1 :])]
        rows.append((idx + 1, line, values if len(values) == len(headers) else None))
    return headers, rows


def normalise_gres(text: str) -> str:
    """Rewrite GRES spellings that :func:`parse_gres` does not read into ones it does.

    * ``gpu:(null):0(IDX:N/A)`` (21.08+ ``GresUsed`` of an untyped GRES) -> ``gpu:0(IDX:N/A)``;
    * ``pfsdir:scratch:no_consume:1`` (gres.conf(5) ``Flags=no_consume`` shown as a pseudo-type) ->
      ``pfsdir:scratch:1``, so the real type is kept and ``no_consume`` is not taken for a type.
    """
    text = re.sub(r":\(null\)(?=:)", "", text)
    return re.sub(r":no_consume(?=[:(,]|$)", "", text)
