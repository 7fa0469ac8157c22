"""Parser for ``sinfo`` output: header-driven tables and ``--json``.

sinfo can print almost anything (``-o``/``-O`` format strings), so this parser only reads output that says
what its columns are:

* a table whose first line is sinfo's own header (``sinfo -o ...``/``-O ...`` without ``-h``): columns are
  mapped by their titles (sinfo(1) "--Format"/"--format" field titles, e.g. ``PARTITION``, ``STATE``,
  ``CPUS(A/I/O/T)``, ``GRES_USED``), delimited by 0x1F, ``|`` or padding (see
  :func:`~nomade.exporter.parsers.slurm_units.split_header_table`);
* ``sinfo --json`` in the old OpenAPI schema (``openapi/v0.0.37``..``v0.0.38``: top-level ``nodes`` list, one
  object per node) and in the data_parser schema (23.02+: top-level ``sinfo`` list, one object per
  partition/node-group with nested ``nodes``/``cpus``/``memory``/``gres``/``reason``).

Headerless output (``sinfo -h -o '%n,%T'``), JSON-lines emitted by a user's template, and anything else gives
one ``"unrecognised format"`` issue and no records, because the meaning of a headerless column cannot be
known from the text (DESIGN.md principle 2: absent beats wrong).

Caveat: ``-O`` columns without an explicit width are truncated by sinfo at 20 characters; a truncated value
with no space before the next column is caught (field-count mismatch), a truncated value that still leaves a
space is not detectable from the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .common import ParseResult
from .slurm_units import (
    expand_hostlist,
    is_null,
    normalise_gres,
    parse_duration,
    parse_gres,
    parse_node_state,
    parse_size,
    parse_timestamp,
    split_header_table,
)

# sinfo column titles (src/sinfo/print.c header strings) -> our field names.
HEADERS: dict[str, str] = {
    "PARTITION": "partition",
    "AVAIL": "avail",
    "TIMELIMIT": "timelimit",
    "NODES": "nodes",
    "STATE": "state",
    "NODELIST": "nodelist",
    "HOSTNAMES": "hostnames",
    "NODE_ADDR": "node_addr",
    "CPUS": "cpus",
    "CPUS(A/I/O/T)": "cpus_aiot",
    "NODES(A/I/O/T)": "nodes_aiot",
    "NODES(A/I)": "nodes_ai",
    "MEMORY": "memory",
    "ALLOCMEM": "alloc_mem",
    "FREE_MEM": "free_mem",
    "CPU_LOAD": "cpu_load",
    "GRES": "gres",
    "GRES_USED": "gres_used",
    "REASON": "reason",
    "USER": "user",
    "TIMESTAMP": "timestamp",
    "S:C:T": "sct",
    "TMP_DISK": "tmp_disk",
    "WEIGHT": "weight",
    "AVAIL_FEATURES": "features",
    "ACTIVE_FEATURES": "features_act",
    "ROOT": "root",
    "OVERSUBSCRIBE": "oversubscribe",
    "GROUPS": "groups",
    "JOB_SIZE": "job_size",
    "PRIO_TIER": "priority_tier",
    "SOCKETS": "sockets",
    "CORES": "cores",
    "THREADS": "threads",
    "VERSION": "version",
    "CLUSTER": "cluster",
    "COMMENT": "comment",
}
_FREE_TEXT_LAST = frozenset({"REASON", "COMMENT"})
_INT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class SinfoRow:
    """One sinfo line (a node with ``-N``, else a group of nodes with identical properties), or one JSON entry.

    Every numeric attribute is ``None`` when the column is absent, null (``N/A``) or a range (``1000+``,
    ``0.01-2.50`` on grouped lines): a range is not one value.

    Attributes:
        partitions: partition names with the default-partition ``*`` removed.
        default_partition: whether a partition name carried sinfo's ``*``.
        node_count: ``NODES`` (nodes on this line).
        nodes: host names from ``NODELIST`` (expanded), else ``HOSTNAMES``.
        state: base node state, lower-case (``None`` when there is no state column).
        flags: node state flags (``drain``, ``not_responding``... from ``+FLAG`` or the ``*~#!%$@^-`` suffixes).
        cpus: ``CPUS`` (per node).
        cpus_alloc, cpus_idle, cpus_other, cpus_total: from ``CPUS(A/I/O/T)``.
        memory_bytes: ``MEMORY`` (MiB) in bytes.
        memory_alloc_bytes: ``ALLOCMEM`` (MiB) in bytes.
        memory_free_bytes: ``FREE_MEM`` (MiB) in bytes.
        cpu_load: ``CPU_LOAD``.
        gres: configured GRES ``{(name, type): count}``.
        gres_used: GRES in use ``{(name, type): count}`` (``None`` when not reported).
        reason: ``REASON`` text (``None`` for ``none``).
        reason_user: ``USER`` who set the reason.
        reason_time: ``TIMESTAMP`` in Unix seconds.
        avail: partition availability lower-case (``up``, ``down``, ``drain``, ``inact``).
        timelimit_seconds: ``TIMELIMIT`` in seconds (``inf`` for ``infinite``).
        fields: the raw column texts by field name.

    """

    partitions: tuple[str, ...] = ()
    default_partition: bool = False
    node_count: int | None = None
    nodes: tuple[str, ...] = ()
    state: str | None = None
    flags: frozenset[str] = frozenset()
    cpus: int | None = None
    cpus_alloc: int | None = None
    cpus_idle: int | None = None
    cpus_other: int | None = None
    cpus_total: int | None = None
    memory_bytes: float | None = None
    memory_alloc_bytes: float | None = None
    memory_free_bytes: float | None = None
    cpu_load: float | None = None
    gres: dict[tuple[str, str], int] | None = None
    gres_used: dict[tuple[str, str], int] | None = None
    reason: str | None = None
    reason_user: str | None = None
    reason_time: float | None = None
    avail: str | None = None
    timelimit_seconds: float | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _row_from_fields(f: dict[str, str]) -> tuple[SinfoRow, list[str]]:
    """Type the raw column texts; return the row and the problems met (each one an issue)."""
    issues: list[str] = []
    vals: dict[str, Any] = {"fields": f}

    def integer(key: str) -> int | None:
        t = f.get(key)
        if t is None or is_null(t):
            return None
        if _INT.match(t):
            return int(t)
        if re.match(r"^\d+[+-]", t):  # range on a grouped line
            return None
        issues.append(f"{key} {t!r} is not an integer")
        return None

    def mib(key: str) -> float | None:
        t = f.get(key)
        if t is None or is_null(t) or re.match(r"^\d+(?:\.\d+)?[+-]", t):
            return None
        try:
            size = parse_size(t, "M")
        except ValueError:
            issues.append(f"{key} {t!r} is not a size")
            return None
        return None if size is None else size[0]

    if "partition" in f and not is_null(f["partition"]):
        names = [p for p in f["partition"].split(",") if p]
        vals["default_partition"] = any(p.endswith("*") for p in names)
        vals["partitions"] = tuple(p.rstrip("*") for p in names)
    vals["node_count"] = integer("nodes")
    for key in ("nodelist", "hostnames"):
        if key in f and not is_null(f[key]):
            try:
                vals["nodes"] = tuple(expand_hostlist(f[key]))
            except ValueError as exc:
                issues.append(str(exc))
            break
    if "state" in f:
        try:
            vals["state"], vals["flags"] = parse_node_state(f["state"])
        except ValueError as exc:
            issues.append(str(exc))
    vals["cpus"] = integer("cpus")
    if "cpus_aiot" in f:
        parts = f["cpus_aiot"].split("/")
        if len(parts) == 4 and all(_INT.match(p) for p in parts):
            vals["cpus_alloc"], vals["cpus_idle"], vals["cpus_other"], vals["cpus_total"] = map(int, parts)
        else:
            issues.append(f"CPUS(A/I/O/T) {f['cpus_aiot']!r} is not A/I/O/T")
    vals["memory_bytes"] = mib("memory")
    vals["memory_alloc_bytes"] = mib("alloc_mem")
    vals["memory_free_bytes"] = mib("free_mem")
    load = f.get("cpu_load")
    if load is not None and not is_null(load):
        try:
            vals["cpu_load"] = float(load)
        except ValueError:
            if not re.match(r"^\d+(?:\.\d+)?-\d", load):  # a min-max range on a grouped line
                issues.append(f"CPU_LOAD {load!r} is not a number")
    if "gres" in f:
        vals["gres"] = parse_gres(normalise_gres(f["gres"]))
    if "gres_used" in f:
        vals["gres_used"] = parse_gres(normalise_gres(f["gres_used"]))
    reason = f.get("reason")
    if reason is not None and not is_null(reason):
        vals["reason"] = reason
    user = f.get("user")
    if user is not None and not is_null(user):
        vals["reason_user"] = user
    ts = f.get("timestamp")
    if ts is not None:
        try:
            vals["reason_time"] = parse_timestamp(ts)
        except ValueError:
            issues.append(f"TIMESTAMP {ts!r} is not a timestamp")
    if "avail" in f and not is_null(f["avail"]):
        vals["avail"] = f["avail"].lower()
    tl = f.get("timelimit")
    if tl is not None:
        if tl.lower() in ("infinite", "unlimited"):
            vals["timelimit_seconds"] = float("inf")
        else:
            try:
                vals["timelimit_seconds"] = parse_duration(tl)
            except ValueError:
                issues.append(f"TIMELIMIT {tl!r} is not a duration")
    return SinfoRow(**vals), issues


def _num(value: Any) -> float | None:
    """A JSON number, or the data_parser ``{"set": true, "infinite": false, "number": N}`` wrapper."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict) and "number" in value:
        if value.get("infinite"):
            return float("inf")
        if not value.get("set", True):
            return None
        return _num(value["number"])
    return None


def _mib_json(value: Any) -> float | None:
    n = _num(value)
    return None if n is None else n * 1024**2


def _state_json(state: Any) -> tuple[str, frozenset[str]]:
    if isinstance(state, list):  # data_parser: ["IDLE", "DRAIN"]
        text = "+".join(str(s) for s in state)
    else:
        text = str(state)
    return parse_node_state(text)


def _gres_json(text: Any) -> dict[tuple[str, str], int] | None:
    if not isinstance(text, str):
        return None
    return parse_gres(normalise_gres(text))


def _parse_json(doc: dict[str, Any], result: ParseResult[SinfoRow]) -> None:
    if isinstance(doc.get("sinfo"), list):  # data_parser v0.0.39+ (23.02+)
        for i, entry in enumerate(doc["sinfo"], 1):
            try:
                result.records.append(_row_from_dataparser(entry))
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                result.skip(i, f"sinfo[{i - 1}]: {exc}")
        return
    for i, node in enumerate(doc["nodes"], 1):  # openapi v0.0.37/38 (21.08-22.05)
        try:
            result.records.append(_row_from_openapi(node))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            result.skip(i, f"nodes[{i - 1}]: {exc}")


def _row_from_openapi(node: dict[str, Any]) -> SinfoRow:
    state, flags = _state_json(node["state"])
    flags = flags | frozenset(str(f).lower() for f in node.get("state_flags") or [])
    cpus = _num(node.get("cpus"))
    alloc = _num(node.get("alloc_cpus"))
    idle = _num(node.get("idle_cpus"))
    reason = node.get("reason") or None
    changed = _num(node.get("reason_changed_at"))
    return SinfoRow(
        partitions=tuple(node.get("partitions") or ()),
        node_count=1,
        nodes=(str(node["name"]),),
        state=state,
        flags=flags,
        cpus=None if cpus is None else int(cpus),
        cpus_alloc=None if alloc is None else int(alloc),
        cpus_idle=None if idle is None else int(idle),
        cpus_total=None if cpus is None else int(cpus),
        memory_bytes=_mib_json(node.get("real_memory")),
        memory_alloc_bytes=_mib_json(node.get("alloc_memory")),
        memory_free_bytes=_mib_json(node.get("free_memory")),
        # openapi reports cpu_load in hundredths (the raw slurmctld value; scontrol divides by 100).
        cpu_load=None if _num(node.get("cpu_load")) is None else _num(node.get("cpu_load")) / 100.0,  # type: ignore[operator]
        gres=_gres_json(node.get("gres")),
        gres_used=_gres_json(node.get("gres_used")),
        reason=reason,
        reason_user=node.get("reason_set_by_user") or None,
        reason_time=changed if changed else None,
        fields={k: str(v) for k, v in node.items() if not isinstance(v, dict | list)},
    )


def _row_from_dataparser(entry: dict[str, Any]) -> SinfoRow:
    state, flags = _state_json(entry["node"]["state"])
    nodes = entry.get("nodes", {})
    cpus = entry.get("cpus", {})
    mem = entry.get("memory", {})
    part = entry.get("partition", {}) or {}
    reason = entry.get("reason") or {}
    names = tuple(str(n) for n in nodes.get("nodes") or ())
    count = _num(nodes.get("total"))
    single = count == 1
    # Per-node values are exact only when the entry covers one node (sinfo -N); otherwise min/max ranges.
    mem_min, mem_max = _num(mem.get("minimum")), _num(mem.get("maximum"))
    free = mem.get("free", {}) or {}
    free_min, free_max = _num(free.get("minimum")), _num(free.get("maximum"))
    load = cpus.get("load", {}) or {}
    load_min, load_max = _num(load.get("minimum")), _num(load.get("maximum"))

    def exact(lo: float | None, hi: float | None) -> float | None:
        return lo if (single and lo is not None and lo == hi) else None

    def as_int(v: Any) -> int | None:
        n = _num(v)
        return None if n is None else int(n)

    m = exact(mem_min, mem_max)
    fm = exact(free_min, free_max)
    ld = exact(load_min, load_max)
    alloc_mem = _num(mem.get("allocated")) if single else None
    r_time = _num(reason.get("time"))
    return SinfoRow(
        partitions=(str(part["name"]),) if part.get("name") else (),
        node_count=None if count is None else int(count),
        nodes=names,
        state=state,
        flags=flags,
        cpus_alloc=as_int(cpus.get("allocated")),
        cpus_idle=as_int(cpus.get("idle")),
        cpus_other=as_int(cpus.get("other")),
        cpus_total=as_int(cpus.get("total")),
        memory_bytes=None if m is None else m * 1024**2,
        memory_alloc_bytes=None if alloc_mem is None else alloc_mem * 1024**2,
        memory_free_bytes=None if fm is None else fm * 1024**2,
        # data_parser reports the load in hundredths, like the openapi plugin.
        cpu_load=None if ld is None else ld / 100.0,
        gres=_gres_json((entry.get("gres") or {}).get("total")),
        gres_used=_gres_json((entry.get("gres") or {}).get("used")),
        reason=reason.get("description") or None,
        reason_user=reason.get("user") or None,
        reason_time=r_time if r_time else None,
        fields={},
    )


def parse_sinfo(text: str) -> ParseResult[SinfoRow]:
    """Parse sinfo output that carries its own header, or ``sinfo --json``.

    Returns:
        One :class:`SinfoRow` per table line or JSON entry. A line whose field count does not match the header
        or with an unparseable value is an issue (the line is skipped when its field count is wrong; a bad
        value is left ``None``). Unrecognised text (headerless tables, template JSON-lines...) gives exactly
        one ``"unrecognised format"`` issue at line 0 and no records. Empty text gives nothing.

    """
    result: ParseResult[SinfoRow] = ParseResult()
    stripped = text.strip()
    if not stripped:
        return result
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested input
            doc = None
        if isinstance(doc, dict) and (isinstance(doc.get("sinfo"), list) or isinstance(doc.get("nodes"), list)):
            _parse_json(doc, result)
            return result
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
        return result
    table = split_header_table(text, frozenset(HEADERS), _FREE_TEXT_LAST)
    if table is None:
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
        return result
    headers, rows = table
    for no, line, values in rows:
        if values is None:
            result.skip(no, f"expected {len(headers)} fields", line)
            continue
        f: dict[str, str] = {}
        for h, v in zip(headers, values, strict=True):
            key = HEADERS.get(h, h.lower())
            f.setdefault(key, v)
        row, issues = _row_from_fields(f)
        for issue in issues:
            result.skip(no, issue, line)
        result.records.append(row)
    return result
