"""Parser for ``sdiag`` output: the text report (SLURM 17.x-26.x) and ``sdiag --json`` (23.02+).

Text layout (``_print_stats`` in ``src/sdiag/sdiag.c``): a banner with ``sdiag output at <ctime>`` and
``Data since <ctime>`` (since SLURM 23.x each followed by `` (<epoch>)``), unindented ``Key: value`` lines for
threads, agents and job counts, then sections whose title is unindented and whose lines are indented (8 spaces
in 17.x, a tab later)::

    Main schedule statistics (microseconds):
            Last cycle:   97209
    Main scheduler exit:                      (20.11+)
            End of job queue: 5
    Backfilling stats [(WARNING: data obtained in the middle of backfilling execution.)]
    Backfill exit                             (20.11+)
    Remote Procedure Call statistics by message type
            REQUEST_PARTITION_INFO                  ( 2009) count:48     ave_time:189    total_time:9096
    Remote Procedure Call statistics by user
            alice           (    1001) count:10     ave_time:853    total_time:8531
    Pending RPC statistics
            No pending RPCs | REQUEST_TERMINATE_JOB  ( 6011) count:3

Every value is keyed by the name the JSON output uses for it (``statistics`` object of ``sdiag --json``,
data_parser v0.0.39+), so both forms fill the same :class:`SdiagStats`. Notes from the source, where the man
page is misleading:

* main-scheduler ``Total cycles`` is ``schedule_cycle_counter``, the NUMBER of cycles (sdiag(1) calls it a
  total run time; sdiag.c prints the counter and computes ``Mean cycle`` as sum / counter);
* ``Mean cycle``, ``Mean depth cycle``, ``Depth Mean``... are integer divisions done by sdiag and are printed only
  when at least one cycle ran; ``Cycles per minute`` only when the statistics are older than 60 s;
* everything except the RPC tables and ``Total backfilled jobs (since last slurm start)`` is zeroed by
  slurmctld's ``reset_stats()`` at midnight UTC and by ``sdiag --reset`` (``src/slurmctld/statistics.c``).

Unknown ``Key: value`` lines (fields a newer SLURM adds) are ignored; a known key whose value is not a number
and any line of another shape inside a known section count as issues. Text that is not an sdiag report
(``No data available. Probably slurmctld is not working``) gives one "unrecognised format" issue and no record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .common import ParseResult

# (section, label as printed) -> JSON statistics key. Section "" is the unindented top block.
_TEXT_KEYS: dict[tuple[str, str], str] = {
    ("", "Server thread count"): "server_thread_count",
    ("", "Agent queue size"): "agent_queue_size",
    ("", "Agent count"): "agent_count",
    ("", "Agent thread count"): "agent_thread_count",
    ("", "DBD Agent queue size"): "dbd_agent_queue_size",
    ("", "Jobs submitted"): "jobs_submitted",
    ("", "Jobs started"): "jobs_started",
    ("", "Jobs completed"): "jobs_completed",
    ("", "Jobs canceled"): "jobs_canceled",
    ("", "Jobs failed"): "jobs_failed",
    ("", "Jobs pending"): "jobs_pending",
    ("", "Jobs running"): "jobs_running",
    ("main", "Last cycle"): "schedule_cycle_last",
    ("main", "Max cycle"): "schedule_cycle_max",
    ("main", "Total cycles"): "schedule_cycle_total",
    ("main", "Mean cycle"): "schedule_cycle_mean",
    ("main", "Mean depth cycle"): "schedule_cycle_mean_depth",
    ("main", "Cycles per minute"): "schedule_cycle_per_minute",
    ("main", "Last queue length"): "schedule_queue_length",
    ("bf", "Total backfilled jobs (since last slurm start)"): "bf_backfilled_jobs",
    ("bf", "Total backfilled jobs (since last stats cycle start)"): "bf_last_backfilled_jobs",
    ("bf", "Total backfilled heterogeneous job components"): "bf_backfilled_het_jobs",
    ("bf", "Total cycles"): "bf_cycle_counter",
    ("bf", "Last cycle"): "bf_cycle_last",
    ("bf", "Max cycle"): "bf_cycle_max",
    ("bf", "Mean cycle"): "bf_cycle_mean",
    ("bf", "Last depth cycle"): "bf_last_depth",
    ("bf", "Last depth cycle (try sched)"): "bf_last_depth_try",
    ("bf", "Depth Mean"): "bf_depth_mean",
    ("bf", "Depth Mean (try depth)"): "bf_depth_mean_try",
    ("bf", "Last queue length"): "bf_queue_len",
    ("bf", "Queue length mean"): "bf_queue_len_mean",
    ("bf", "Last table size"): "bf_table_size",
    ("bf", "Mean table size"): "bf_table_size_mean",
}
# Timestamps: (section, label) -> key. Printed as ctime, with " (<epoch>)" since 23.x, or "N/A".
_TEXT_TIMES: dict[tuple[str, str], str] = {
    ("", "Job states ts"): "job_states_ts",
    ("bf", "Last cycle when"): "bf_when_last_cycle",
}
_TIME_KEYS = frozenset({"req_time", "req_time_start", "job_states_ts", "bf_when_last_cycle"})
# Every numeric JSON key understood (the text keys plus those only the JSON form has).
NUMERIC_KEYS: frozenset[str] = frozenset(
    {*_TEXT_KEYS.values(), *_TEXT_TIMES.values(), "req_time", "req_time_start", "gettimeofday_latency"}
)

# Exit-reason labels (schedule_exit2string / bf_exit2string in src/common/slurm_protocol_defs.c) -> the keys
# of the JSON ``schedule_exit`` / ``bf_exit`` objects (data_parser v0.0.40+).
MAIN_EXIT_KEYS = {
    "End of job queue": "end_job_queue",
    "Hit default_queue_depth": "default_queue_depth",
    "Hit sched_max_job_start": "max_job_start",
    "Blocked on licenses": "blocked_on_licenses",
    "Hit max_rpc_cnt": "max_rpc_cnt",
    "Timeout (max_sched_time)": "max_sched_time",
}
BF_EXIT_KEYS = {
    "End of job queue": "end_job_queue",
    "Hit bf_max_job_start": "bf_max_job_start",
    "Hit bf_max_job_test": "bf_max_job_test",
    "System state changed": "state_changed",
    "Hit table size limit (bf_node_space_size)": "bf_node_space_size",
    "Timeout (bf_max_time)": "bf_max_time",
}

_SECTIONS = (
    ("Main schedule statistics", "main"),
    ("Main scheduler exit", "main_exit"),
    ("Backfilling stats", "bf"),
    ("Backfill exit", "bf_exit"),
    ("Remote Procedure Call statistics by message type", "rpc_type"),
    ("Remote Procedure Call statistics by user", "rpc_user"),
    ("Pending RPC statistics", "pending"),
    ("Pending RPCs", "pending_dump"),
)
# "\t%-40s(%5u) count:%-6u ave_time:%-6lu total_time:%lu" (types) and "\t%-16s(%8u) ..." (users).
_RPC = re.compile(r"^(?P<name>\S(?:.*?\S)?)\s*\(\s*(?P<id>\d+)\)\s+count:(?P<count>\d+)"
                  r"(?:\s+ave_time:(?P<ave>\d+))?(?:\s+total_time:(?P<total>\d+))?\s*$")  # fmt: skip
_EPOCH = re.compile(r"\((\d+)\)\s*$")
_LATENCY = re.compile(r"^Latency for 1000 calls to gettimeofday\(\):\s*(\d+)\s*microseconds")


@dataclass(frozen=True)
class RpcStat:
    """One row of an sdiag RPC table.

    Attributes:
        name: message type (``REQUEST_JOB_INFO``) or user name as sdiag resolved it.
        id: message type number or uid.
        count: calls since slurmctld start or ``sdiag --reset``.
        total_time_us: total time of those calls in microseconds (``None`` when not printed).

    """

    name: str
    id: int
    count: int
    total_time_us: float | None


@dataclass
class SdiagStats:
    """One sdiag report.

    Attributes:
        values: numbers by JSON key (see :data:`NUMERIC_KEYS`): counts as printed, durations in microseconds,
            timestamps in Unix seconds (``req_time`` = report time, ``req_time_start`` = "Data since").
        main_exit: main-scheduler exit reasons (JSON ``schedule_exit`` keys) -> cycles that ended so.
        bf_exit: backfill exit reasons (JSON ``bf_exit`` keys) -> cycles.
        bf_active: whether a backfill cycle was running when the report was taken (``None``: not said).
        rpc_by_type: the "by message type" table.
        rpc_by_user: the "by user" table.
        pending_rpcs: pending outgoing RPCs by message type (empty when none).

    """

    values: dict[str, float] = field(default_factory=dict)
    main_exit: dict[str, float] = field(default_factory=dict)
    bf_exit: dict[str, float] = field(default_factory=dict)
    bf_active: bool | None = None
    rpc_by_type: list[RpcStat] = field(default_factory=list)
    rpc_by_user: list[RpcStat] = field(default_factory=list)
    pending_rpcs: dict[str, float] = field(default_factory=dict)


def slug(label: str) -> str:
    """A label text reduced to ``[a-z0-9_]`` (``"Timeout (bf_max_time)"`` -> ``"timeout_bf_max_time"``)."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "other"


def parse_sdiag_time(text: str) -> float | None:
    """Parse an sdiag time: ``Fri Jul 31 04:00:28 2026 (1785470428)``, a bare ctime, or ``N/A`` (``None``).

    The epoch in parentheses is used when present; a bare ctime (SLURM < 23.x) is read in the local zone,
    as ``slurm_ctime2`` printed it.

    Raises:
        ValueError: for other text.

    """
    t = text.strip()
    if not t or t.upper() in ("N/A", "NONE", "UNKNOWN"):
        return None
    m = _EPOCH.search(t)
    if m:
        return float(m.group(1))
    try:
        return datetime.strptime(t, "%a %b %d %H:%M:%S %Y").timestamp()
    except ValueError as exc:
        raise ValueError(f"bad sdiag time {text!r}") from exc


def _section_of(line: str) -> tuple[str, bool] | None:
    for title, name in _SECTIONS:
        if line.startswith(title) and (name != "pending" or not line.startswith("Pending RPCs")):
            return name, "WARNING" in line
    return None


def _parse_text(text: str, result: ParseResult[SdiagStats]) -> SdiagStats | None:
    stats = SdiagStats()
    section = ""
    recognised = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("****"):
            continue
        indented = line[:1].isspace()
        if not indented:
            if stripped.startswith("sdiag output at"):
                recognised = True
                _time_into(stats, "req_time", stripped[len("sdiag output at") :], no, line, result)
                continue
            if stripped.startswith("Data since"):
                _time_into(stats, "req_time_start", stripped[len("Data since") :], no, line, result)
                continue
            sec = _section_of(stripped)
            if sec is not None:
                section = sec[0]
                recognised = True
                if section == "bf":
                    stats.bf_active = sec[1]
                continue
            m = _LATENCY.match(stripped)
            if m:
                stats.values["gettimeofday_latency"] = float(m.group(1))
                continue
            section = ""  # an unindented "Key: value" belongs to the top block
        if section in ("rpc_type", "rpc_user", "pending"):
            if stripped == "No pending RPCs":
                continue
            m = _RPC.match(stripped)
            if not m:
                result.skip(no, "bad RPC statistics line", line)
                continue
            if section == "pending":
                stats.pending_rpcs[m["name"]] = stats.pending_rpcs.get(m["name"], 0.0) + int(m["count"])
                continue
            row = RpcStat(m["name"], int(m["id"]), int(m["count"]), float(m["total"]) if m["total"] else None)
            (stats.rpc_by_type if section == "rpc_type" else stats.rpc_by_user).append(row)
            continue
        if section == "pending_dump":
            continue  # "  1: REQUEST_X  hostlist": the first 25 queued RPCs, not a statistic
        label, sep, value = stripped.partition(":")
        if not sep:
            if section:
                result.skip(no, "expected 'label: value'", line)
            continue
        label, value = label.strip(), value.strip()
        if section in ("main_exit", "bf_exit"):
            keys = MAIN_EXIT_KEYS if section == "main_exit" else BF_EXIT_KEYS
            num = _number(value)
            if num is None:
                result.skip(no, f"bad count {value!r}", line)
                continue
            target = stats.main_exit if section == "main_exit" else stats.bf_exit
            target[keys.get(label) or slug(label)] = num
            continue
        tkey = _TEXT_TIMES.get((section, label))
        if tkey is not None:
            _time_into(stats, tkey, value, no, line, result)
            continue
        key = _TEXT_KEYS.get((section, label))
        if key is None:
            continue  # a field this parser does not know (newer SLURM): not an error
        num = _number(value)
        if num is None:
            result.skip(no, f"{label}: {value!r} is not a number", line)
            continue
        recognised = True
        stats.values[key] = num
    return stats if recognised else None


def _number(text: str) -> float | None:
    t = text.strip()
    if t.isascii() and t.isdigit():
        return float(t)
    return None


def _time_into(stats: SdiagStats, key: str, text: str, no: int, line: str, result: ParseResult[SdiagStats]) -> None:
    try:
        value = parse_sdiag_time(text)
    except ValueError as exc:
        result.skip(no, str(exc), line)
        return
    if value is not None and value > 0:
        stats.values[key] = value


def _num(value: Any) -> float | None:
    """A JSON number or a data_parser ``{"set": bool, "infinite": bool, "number": N}`` wrapper."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, dict) and "number" in value:
        if not value.get("set", True) or value.get("infinite"):
            return None
        return _num(value["number"])
    return None


def _rpc_rows(items: Any, name_key: str, id_key: str, result: ParseResult[SdiagStats]) -> list[RpcStat]:
    rows: list[RpcStat] = []
    if not isinstance(items, list):
        return rows
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            result.skip(i, "RPC entry is not an object")
            continue
        name, ident, count = item.get(name_key), _num(item.get(id_key)), _num(item.get("count"))
        if not isinstance(name, str) or ident is None or count is None:
            result.skip(i, f"RPC entry without {name_key}/{id_key}/count", str(item))
            continue
        rows.append(RpcStat(name, int(ident), int(count), _num(item.get("total_time"))))
    return rows


def _parse_json(doc: dict[str, Any], result: ParseResult[SdiagStats]) -> SdiagStats | None:
    st = doc.get("statistics")
    if not isinstance(st, dict):
        return None
    stats = SdiagStats()
    for key in NUMERIC_KEYS:
        if key in st:
            v = _num(st[key])
            if v is None and st[key] is not None and not isinstance(st[key], dict):
                result.skip(0, f"{key}: {st[key]!r} is not a number")
            elif v is not None and not (key in _TIME_KEYS and v <= 0):  # a 0 time means "never"
                stats.values[key] = v
    # Newer data_parser versions give sums and counters only; the means are sdiag's integer divisions.
    for mean, total, count in (
        ("schedule_cycle_mean", "schedule_cycle_sum", "schedule_cycle_total"),
        ("bf_cycle_mean", "bf_cycle_sum", "bf_cycle_counter"),
    ):
        t, c = _num(st.get(total)), stats.values.get(count)
        if mean not in stats.values and t is not None and c is not None and c >= 1:
            stats.values[mean] = float(int(t) // int(c))
    for src, dst in (("schedule_exit", stats.main_exit), ("bf_exit", stats.bf_exit)):
        exits = st.get(src)
        if isinstance(exits, dict):
            for k, v in exits.items():
                n = _num(v)
                if n is not None:
                    dst[slug(str(k))] = n
    if isinstance(st.get("bf_active"), bool):
        stats.bf_active = st["bf_active"]
    stats.rpc_by_type = _rpc_rows(st.get("rpcs_by_message_type"), "message_type", "type_id", result)
    stats.rpc_by_user = _rpc_rows(st.get("rpcs_by_user"), "user", "user_id", result)
    pending = st.get("pending_rpcs")
    if isinstance(pending, list):
        for item in pending:
            if isinstance(item, dict) and isinstance(item.get("message_type"), str):
                n = _num(item.get("count"))
                if n is not None:
                    stats.pending_rpcs[item["message_type"]] = stats.pending_rpcs.get(item["message_type"], 0) + n
    return stats


def parse_sdiag(text: str) -> ParseResult[SdiagStats]:
    """Parse one ``sdiag`` report (text or ``--json``).

    Returns:
        A result with one :class:`SdiagStats` record, or no record and one "unrecognised format" issue for
        anything else (empty text gives neither). Bad lines inside the report are counted as issues.

    """
    result: ParseResult[SdiagStats] = ParseResult()
    stripped = text.strip()
    if not stripped:
        return result
    stats: SdiagStats | None
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):
            doc = None
        stats = _parse_json(doc, result) if isinstance(doc, dict) else None
    else:
        stats = _parse_text(text, result)
    if stats is None:
        result.issues.clear()
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
    else:
        result.records.append(stats)
    return result
