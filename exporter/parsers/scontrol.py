"""Parsers for ``scontrol show node`` and ``scontrol show partition`` (one-line ``-o`` or multi-line form).

Format (scontrol(1); ``slurm_sprint_node_table`` in ``src/api/node_info.c`` and ``slurm_sprint_partition_info``
in ``src/api/partition_info.c``): one record per line with ``-o``, otherwise one record per block whose
continuation lines are indented by three spaces; each record is a run of ``Key=Value`` pairs separated by
spaces, the first key naming the record kind (``NodeName=``, ``PartitionName=``)::

    NodeName=c01 Arch=x86_64 CoresPerSocket=16 CPUAlloc=4 CPUTot=32 CPULoad=8.62 ... OS=Linux 5.15 #1 SMP ...
      RealMemory=15867 AllocMem=8192 FreeMem=406 ... State=MIXED+DRAIN ... Partitions=cpu,debug ...
      CfgTRES=cpu=32,mem=15867M,billing=32 AllocTRES=cpu=4,mem=8G ... Reason=bad dimm [root@2024-01-02T03:04:05]

Most values hold no spaces, so a new pair starts at every ``<space>Word=``. Four node values are free text
and may hold spaces, commas, quotes, pipes and ``=``: ``OS`` (``uname`` output), ``Reason`` (admin text,
followed by `` [user@time]`` when SLURM knows who set it), ``Comment`` and ``Extra`` (22.05+). A free-text value
ends only where a *known* node key that has not been seen yet in the record starts (so ``Reason=mem=12 State=x``
does not end at ``mem=`` nor at the already-seen ``State=``); ``Reason`` ends right after its ``[user@time]``
suffix when it has one. Keys a newer SLURM adds (``SuspendTime=`` in 26.05) are kept as ordinary pairs.

The parsers refuse anything else (``--json`` output, ``show job``, ``show lic``, reservations) with one
"unrecognised format" issue and no records: nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

from .common import ParseResult
from .slurm_units import (
    is_null,
    normalise_gres,
    parse_duration,
    parse_gres,
    parse_node_state,
    parse_size,
    parse_timestamp,
    parse_tres,
    per_parse_cache,
)

# Every key scontrol 20.11-26.05 prints in a node record (node_info.c of those releases).
NODE_KEYS = frozenset(
    """
    NodeName Arch CpuBind CoresPerSocket CPUAlloc CPUEfctv CPUTot CPULoad AvailableFeatures
    ActiveFeatures Gres GresDrain GresUsed NodeAddr NodeHostName Port Version OS RealMemory AllocMem
    FreeMem Sockets Boards CoreSpecCount CPUSpecList MemSpecLimit State ThreadsPerCore TmpDisk Weight
    Owner MCS_label NextState Partitions BootTime SlurmdStartTime LastBusyTime ResumeAfterTime
    SuspendTime CfgTRES AllocTRES CapWatts CurrentWatts AveWatts LowestJoules ConsumedJoules
    ExtSensorsJoules ExtSensorsWatts ExtSensorsTemp Reason Comment Extra InstanceId InstanceType
    Topology ReservationName TLS CertTime
    """.split()
)
_FREE_TEXT = frozenset({"OS", "Reason", "Comment", "Extra"})
# A key starts at the beginning or after whitespace; ``AllocNode:Sid`` (show job) keeps its colon.
_KEY_AT = re.compile(r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_]*(?::[A-Za-z]+)?)=")
# _KEY_AT with the "=" captured too, for re.split (see split_pairs); "not after a non-space" is _KEY_AT's "at the
# start or after a space", and a third cheaper to search for.
_KEY_SPLIT = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*(?::[A-Za-z]+)?)(=)")
# `` [user@2024-01-02T03:04:05]`` after the first reason line (node_info.c); the time may also be Unix seconds
# (SLURM_TIME_FORMAT=%s) or another strftime format, so anything without spaces or brackets is accepted.
_REASON_SUFFIX = re.compile(r"\s\[([^\[\]@\s]*)@([^\[\]\s]+)\](?=\s|$)")
_RECORD_KINDS = ("NodeName", "PartitionName")


@dataclass(frozen=True)
class NodeRecord:
    """One node of ``scontrol show node``.

    Attributes:
        name: ``NodeName``.
        state: base state, lower-case (``idle``, ``mixed``, ``allocated``, ``down``...), via
            :func:`~nomade.exporter.parsers.slurm_units.parse_node_state`.
        flags: state flags, lower-case (``drain``, ``not_responding``, ``completing``, ``powered_down``...).
        cpus_total: ``CPUTot``.
        cpus_alloc: ``CPUAlloc``.
        cpus_effective: ``CPUEfctv`` (23.02+: CPUs usable by jobs, i.e. without specialized cores), or ``None``.
        cpu_load: ``CPULoad`` (the node's 1-minute load average as slurmd reports it), ``None`` for ``N/A``.
        memory_bytes: ``RealMemory`` (MiB in the text) in bytes.
        memory_alloc_bytes: ``AllocMem`` in bytes.
        memory_free_bytes: ``FreeMem`` (free memory the OS reports, MiB) in bytes; ``None`` for ``N/A``.
        partitions: ``Partitions``, split on commas (empty when the node is in none).
        gres: configured GRES ``{(name, type): count}`` from ``Gres=`` (``type`` is ``""`` when untyped).
        gres_used: allocated GRES from ``GresUsed=`` (``scontrol -d``) or else from the ``gres/...`` entries of
            ``AllocTRES``; ``None`` when neither tells (``AllocTRES`` without any ``gres/`` entry cannot tell
            "none allocated" from "not tracked by AccountingStorageTRES").
        reason: ``Reason`` text without the ``[user@time]`` suffix, ``None`` when absent.
        reason_user: the user from the suffix.
        reason_time: the suffix's time in Unix seconds.
        boot_time: ``BootTime`` in Unix seconds.
        fields: every ``Key=Value`` pair as text (for fields not typed here).

    """

    name: str
    state: str
    flags: frozenset[str]
    cpus_total: int | None = None
    cpus_alloc: int | None = None
    cpus_effective: int | None = None
    cpu_load: float | None = None
    memory_bytes: float | None = None
    memory_alloc_bytes: float | None = None
    memory_free_bytes: float | None = None
    partitions: tuple[str, ...] = ()
    gres: dict[tuple[str, str], int] = field(default_factory=dict)
    gres_used: dict[tuple[str, str], int] | None = None
    reason: str | None = None
    reason_user: str | None = None
    reason_time: float | None = None
    boot_time: float | None = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionRecord:
    """One partition of ``scontrol show partition``.

    Attributes:
        name: ``PartitionName``.
        state: ``State`` lower-case (``up``, ``down``, ``drain``, ``inactive``).
        default: ``Default=YES``.
        max_time_seconds: ``MaxTime`` in seconds; ``inf`` for ``UNLIMITED``/``INFINITE``; ``None`` when absent.
        total_cpus: ``TotalCPUs``.
        total_nodes: ``TotalNodes``.
        nodes: ``Nodes`` expression as printed (``None`` for ``(null)``).
        tres: ``TRES`` parsed with :func:`~nomade.exporter.parsers.slurm_units.parse_tres`.
        fields: every pair as text.

    """

    name: str
    state: str | None
    default: bool
    max_time_seconds: float | None
    total_cpus: int | None
    total_nodes: int | None
    nodes: str | None
    tres: dict[str, float]
    fields: dict[str, str] = field(default_factory=dict)


def split_records(text: str) -> list[tuple[int, str]]:
    """Split ``scontrol show`` output into records.

    A record starts at a line that begins (unindented) with ``Word=``; indented lines continue the record
    (multi-line form); blank lines end it. Returns ``(first_line_no, record_text)`` pairs with continuation
    lines joined by single spaces. Lines that belong to no record (prose such as "No nodes in the system")
    come back as their own records so the caller can count them.
    """
    records: list[tuple[int, list[str]]] = []
    current: tuple[int, list[str]] | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            current = None
            continue
        if line[:1].isspace() and current is not None:
            current[1].append(line.strip())
            continue
        current = (no, [line.strip()])
        records.append(current)
    return [(no, " ".join(parts)) for no, parts in records]


def split_pairs(record: str, known: frozenset[str] | None = None) -> dict[str, str] | None:
    """Split one record into ``{key: value}``.

    Args:
        record: the record text (one line).
        known: the keys this record kind may hold; enables the free-text rules for ``OS``/``Reason``/
            ``Comment``/``Extra`` described in the module docstring. ``None`` splits at every ``Word=``.

    Returns:
        The pairs in order, or ``None`` when the text does not start with ``Key=``. A repeated key keeps its
        first value (scontrol prints each key once; a repeat can only come from free text).

    """
    # One C-level split instead of a match object per pair (a node record has about 40 pairs): parts are
    # [text before the first key, key, "=", raw value, key, "=", raw value, ...], and their running lengths
    # give each match's start and each value's start.
    parts = _KEY_SPLIT.split(record)
    if len(parts) == 1 or parts[0]:
        return None
    keys = parts[1::3]
    raw = parts[3::3]
    if known is None or _FREE_TEXT.isdisjoint(keys):
        # Every value ends where the next key starts.
        if len(set(keys)) == len(keys):
            return dict(zip(keys, map(str.strip, raw), strict=True))
        out: dict[str, str] = {}
        for key, value in zip(keys, raw, strict=True):
            if key not in out:
                out[key] = value.strip()
        return out
    offsets = list(accumulate(map(len, parts), initial=0))
    kstarts = offsets[1::3]  # one more than keys: the last is len(record)
    vstarts = offsets[3::3]
    n = len(keys)
    out = {}
    i = 0
    while i < n:
        key = keys[i]
        vstart = vstarts[i]
        j = i + 1
        if key in _FREE_TEXT:
            vend: int | None = None
            if key == "Reason":
                # The [user@time] suffix closes the first reason line; take the last one before the
                # free-text keys printed after Reason (22.05+), so that a reason quoting brackets still ends
                # at SLURM's own suffix.
                limit = next(
                    (kstarts[x] for x in range(j, n) if keys[x] in ("Comment", "Extra") and keys[x] not in out),
                    len(record),
                )
                suffixes = list(_REASON_SUFFIX.finditer(record, vstart, limit))
                if suffixes:
                    vend = suffixes[-1].end()
                    while j < n and kstarts[j] < vend:
                        j += 1
            if vend is None:
                while j < n and (keys[j] not in known or keys[j] in out or keys[j] == key):
                    j += 1
                vend = kstarts[j]
        else:
            vend = kstarts[j]
        if key not in out:
            out[key] = record[vstart:vend].strip()
        i = j
    return out


def _int(fields: dict[str, str], key: str, issues: list[str]) -> int | None:
    text = fields.get(key)
    if text is None or is_null(text):
        return None
    try:
        return int(text)
    except ValueError:
        issues.append(f"{key}={text!r} is not an integer")
        return None


def _float(fields: dict[str, str], key: str, issues: list[str]) -> float | None:
    text = fields.get(key)
    if text is None or is_null(text):
        return None
    try:
        return float(text)
    except ValueError:
        issues.append(f"{key}={text!r} is not a number")
        return None


def _mib(fields: dict[str, str], key: str, issues: list[str]) -> float | None:
    text = fields.get(key)
    if text is None:
        return None
    try:
        size = parse_size(text, "M")  # scontrol prints node memory in MiB (slurm.conf RealMemory unit)
    except ValueError:
        issues.append(f"{key}={text!r} is not a size")
        return None
    return None if size is None else size[0]


def _time(fields: dict[str, str], key: str, issues: list[str]) -> float | None:
    text = fields.get(key)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        issues.append(f"{key}={text!r} is not a timestamp")
        return None


def _gres_from_tres(tres: dict[str, float]) -> dict[tuple[str, str], int] | None:
    """``AllocTRES`` ``gres/gpu=2,gres/gpu:a100=2`` -> ``{("gpu", ""): 2, ("gpu", "a100"): 2}``."""
    out: dict[tuple[str, str], int] = {}
    for key, value in tres.items():
        if not key.startswith("gres/"):
            continue
        name, _, gtype = key[len("gres/") :].partition(":")
        out[(name, gtype)] = int(value)
    return out or None


def _gres_of(text: str) -> dict[tuple[str, str], int]:
    return parse_gres(normalise_gres(text))


def _node_from_fields(
    fields: dict[str, str],
    gres_of: Callable[[str], dict[tuple[str, str], int]] = _gres_of,
    state_of: Callable[[str], tuple[str, frozenset[str]]] = parse_node_state,
) -> tuple[NodeRecord | None, list[str]]:
    """One node record from its pairs, and the issues met (texts without the line).

    ``gres_of`` and ``state_of`` may be per-parse caches of :func:`_gres_of` and
    :func:`~nomade.exporter.parsers.slurm_units.parse_node_state` (a cluster repeats a few GRES and state texts
    over all its nodes); ``gres_of``'s dicts are copied before use, so a cached one is never changed.
    """
    issues: list[str] = []
    name = fields.get("NodeName", "")
    if not name or is_null(name):
        return None, ["record without a NodeName"]
    state_text = fields.get("State")
    if state_text is None:
        return None, [f"node {name}: no State"]
    try:
        state, flags = state_of(state_text)
    except ValueError as exc:
        return None, [f"node {name}: {exc}"]
    gres_text = fields.get("Gres", "")
    gres = dict(gres_of(gres_text)) if gres_text else {}
    gres_used: dict[tuple[str, str], int] | None = None
    if "GresUsed" in fields:
        gres_used = dict(gres_of(fields["GresUsed"]))
    elif "AllocTRES" in fields:
        gres_used = _gres_from_tres(parse_tres(fields["AllocTRES"]))
        if gres_used is not None:
            # AllocTRES lists only GRES in use; a configured GRES absent from it has 0 allocated.
            for key in gres:
                gres_used.setdefault(key, 0)
                gres_used.setdefault((key[0], ""), 0)
    cpus_alloc = _int(fields, "CPUAlloc", issues)
    if gres_used is None and gres and cpus_alloc == 0:
        # Every job holds at least one CPU on each of its nodes, so a node with no allocated CPU has no
        # allocated GRES either, whatever AllocTRES tracks.
        gres_used = dict.fromkeys(gres, 0)
    reason = reason_user = None
    reason_time: float | None = None
    if "Reason" in fields and fields["Reason"]:
        text = fields["Reason"]
        m = _REASON_SUFFIX.search(text)
        if m is not None and m.end() == len(text):
            reason_user = m.group(1) or None
            try:
                reason_time = parse_timestamp(m.group(2))
            except ValueError:
                issues.append(f"node {name}: reason time {m.group(2)!r} is not a timestamp")
            text = text[: m.start()]
        reason = text.strip() or None
    partitions_text = fields.get("Partitions", "")
    partitions = tuple(p for p in partitions_text.split(",") if p and not is_null(p))
    rec = NodeRecord(
        name=name,
        state=state,
        flags=flags,
        cpus_total=_int(fields, "CPUTot", issues),
        cpus_alloc=cpus_alloc,
        cpus_effective=_int(fields, "CPUEfctv", issues),
        cpu_load=_float(fields, "CPULoad", issues),
        memory_bytes=_mib(fields, "RealMemory", issues),
        memory_alloc_bytes=_mib(fields, "AllocMem", issues),
        memory_free_bytes=_mib(fields, "FreeMem", issues),
        partitions=partitions,
        gres=gres,
        gres_used=gres_used,
        reason=reason,
        reason_user=reason_user,
        reason_time=reason_time,
        boot_time=_time(fields, "BootTime", issues),
        fields=fields,
    )
    return rec, [f"node {name}: {i}" for i in issues]


def _refuse(result: ParseResult, text: str) -> None:
    first = next((line for line in text.splitlines() if line.strip()), "")
    result.skip(0, "unrecognised format", first)


def _kind(text: str) -> str | None:
    """The record kind of the first unindented line that starts with a known record key, else ``None``."""
    for line in text.splitlines():
        m = _KEY_AT.match(line)
        if m and m.group(1) in _RECORD_KINDS:
            return m.group(1)
    return None


def parse_nodes(text: str) -> ParseResult[NodeRecord]:
    """Parse ``scontrol [-d] [-o] show node`` output.

    Returns:
        One :class:`NodeRecord` per node. A record without ``NodeName``/``State`` or with an unknown state is
        skipped as an issue; a field that does not parse (``CPUTot=abc``) is left ``None`` and counted as an
        issue. Text without any node record (no line starts with ``NodeName=``) gives one "unrecognised
        format" issue and no records. Empty text gives no records and no issues.

    """
    result: ParseResult[NodeRecord] = ParseResult()
    if not text.strip():
        return result
    if _kind(text) != "NodeName":
        _refuse(result, text)
        return result
    gres_of = per_parse_cache(_gres_of)
    state_of = per_parse_cache(parse_node_state)
    for no, rec in split_records(text):
        fields = split_pairs(rec, NODE_KEYS)
        if fields is None or "NodeName" not in fields:
            result.skip(no, "not a node record", rec)
            continue
        node, issues = _node_from_fields(fields, gres_of, state_of)
        for issue in issues:
            result.skip(no, issue, rec)
        if node is not None:
            result.records.append(node)
    return result


def parse_partitions(text: str) -> ParseResult[PartitionRecord]:
    """Parse ``scontrol [-o] show partition`` output.

    Returns:
        One :class:`PartitionRecord` per partition; unparseable numbers are left ``None`` and counted.
        Text without any line starting with ``PartitionName=`` gives one "unrecognised format" issue and no records.

    """
    result: ParseResult[PartitionRecord] = ParseResult()
    if not text.strip():
        return result
    if _kind(text) != "PartitionName":
        _refuse(result, text)
        return result
    for no, rec in split_records(text):
        fields = split_pairs(rec)
        if fields is None or not fields.get("PartitionName"):
            result.skip(no, "not a partition record", rec)
            continue
        issues: list[str] = []
        max_time: float | None = None
        mt = fields.get("MaxTime")
        if mt is not None:
            if mt.upper() in ("UNLIMITED", "INFINITE"):
                max_time = float("inf")  # a real limit value: no limit
            else:
                try:
                    max_time = parse_duration(mt)
                except ValueError:
                    issues.append(f"MaxTime={mt!r} is not a duration")
        nodes = fields.get("Nodes")
        state = fields.get("State")
        result.records.append(
            PartitionRecord(
                name=fields["PartitionName"],
                state=state.lower() if state and not is_null(state) else None,
                default=fields.get("Default", "NO").upper() == "YES",
                max_time_seconds=max_time,
                total_cpus=_int(fields, "TotalCPUs", issues),
                total_nodes=_int(fields, "TotalNodes", issues),
                nodes=None if nodes is None or is_null(nodes) else nodes,
                tres=parse_tres(fields.get("TRES", "")),
                fields=fields,
            )
        )
        for issue in issues:
            result.skip(no, f"partition {fields['PartitionName']}: {issue}", rec)
    return result


def parse_show(text: str) -> ParseResult[NodeRecord | PartitionRecord]:
    """Parse any ``scontrol show node|partition`` output, choosing the parser by the first record key.

    Everything else (``show job``, ``show lic``, reservations, ``--json``) gives one "unrecognised format"
    issue and no records.
    """
    kind = _kind(text)
    if kind == "NodeName":
        return parse_nodes(text)  # type: ignore[return-value]
    if kind == "PartitionName":
        return parse_partitions(text)  # type: ignore[return-value]
    result: ParseResult[NodeRecord | PartitionRecord] = ParseResult()
    if text.strip():
        _refuse(result, text)
    return result
