"""Parser for ``squeue`` output: header-driven tables and ``--json``.

The collector runs (see :data:`SQUEUE_ARGV`)::

    squeue --all --Format=JobID:<US>,ArrayJobID:<US>,ArrayTaskID:<US>,Partition:<US>,State:<US>,...

``--Format`` fields with an empty width and a suffix are printed whole (no padding, no truncation: squeue(1)
"type[:[.][size][suffix]]", ``_print_str`` with width 0) and followed by the suffix, here the ASCII unit
separator 0x1F, which cannot occur in partition names, states, times, numbers or TRES strings. The header line
is kept so that columns are mapped by title, whatever order or SLURM version. No free-text field is requested
except ``Reason``, which is reduced to a bounded token (:func:`reason_token`). Job names are not requested.

The per-job command :data:`SQUEUE_JOBS_ARGV` (``[collector.slurm_queue] per_job = true``) adds ``UserName``,
``Account``, ``StartTime``, ``TimeLimit``, ``NodeList`` and, last, the free-text ``Name``; it is parsed by
:func:`parse_squeue_jobs` into :class:`QueueJobDetail` records whose ``job`` part equals what :func:`parse_squeue`
gives for the same line.

Pending tasks of a job array are printed as ONE line whose ``ArrayTaskID`` is an index expression
(``1-100%5``: tasks 1..100, at most 5 running at once); ``squeue -r`` would print one line per task, which is
what this design avoids. SLURM truncates that expression to ``SLURM_BITSTR_LEN`` bytes (default 64, so 63
characters; ``bit_fmt`` in ``src/common/bitstring.c`` cuts silently, possibly inside a number). An expression
that long is therefore reported with an unknown task count (``tasks=None``) and an issue, unless the caller
says that ``SLURM_BITSTR_LEN=0`` (no limit) was in effect.

Also recognised, for the captured fixtures of other sites: any squeue table with its own header (default
format, ``-o`` with ``|`` or 0x1F delimiters, padded ``-O``) and ``squeue --json`` (old OpenAPI schema with a
top-level ``jobs`` list of plain values, and the data_parser schema with ``{"set", "number"}`` wrappers and
``job_state`` lists). Headerless formats and template JSON-lines give one "unrecognised format" issue and no
records: the meaning of a headerless column cannot be known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .common import ParseResult
from .slurm_units import (
    gc_paused,
    is_null,
    parse_duration,
    parse_timestamp,
    parse_tres,
    per_parse_cache,
    split_header_table,
)

US = "\x1f"
# Fields the collector asks for; titles as squeue prints them (src/squeue/print.c).
SQUEUE_FIELDS = (
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "Partition",
    "State",
    "Reason",
    "SubmitTime",
    "EligibleTime",
    "NumCPUs",
    "NumNodes",
    "tres-alloc",
)
SQUEUE_ARGV: tuple[str, ...] = ("squeue", "--all", "--Format=" + ",".join(f"{f}:{US}" for f in SQUEUE_FIELDS))
# The per-job command (``[collector.slurm_queue] per_job = true``): the same fields plus the job's owner, times,
# limit, nodes and name. ``Name`` is free text and comes LAST, so a name that contains the delimiter is joined
# back (see :func:`parse_squeue_jobs`). Titles as printed: USER, ACCOUNT, START_TIME, TIME_LIMIT, NODELIST, NAME.
SQUEUE_JOB_FIELDS = (*SQUEUE_FIELDS, "UserName", "Account", "StartTime", "TimeLimit", "NodeList", "Name")
SQUEUE_JOBS_ARGV: tuple[str, ...] = (
    "squeue",
    "--all",
    "--Format=" + ",".join(f"{f}:{US}" for f in SQUEUE_JOB_FIELDS),
)

HEADERS = frozenset({
    "JOBID", "ARRAY_JOB_ID", "ARRAY_TASK_ID", "PARTITION", "STATE", "ST", "REASON", "NODELIST(REASON)",
    "SUBMIT_TIME", "ELIGIBLE_TIME", "START_TIME", "CPUS", "NODES", "TASKS", "TRES_ALLOC", "USER", "NAME", "TIME",
    "ACCOUNT", "TIME_LIMIT", "NODELIST",
})  # fmt: skip

# squeue(1) "JOB STATE CODES": compact code -> long state.
STATE_CODES = {
    "BF": "BOOT_FAIL", "CA": "CANCELLED", "CD": "COMPLETED", "CF": "CONFIGURING", "CG": "COMPLETING",
    "DL": "DEADLINE", "F": "FAILED", "NF": "NODE_FAIL", "OOM": "OUT_OF_MEMORY", "PD": "PENDING",
    "PR": "PREEMPTED", "R": "RUNNING", "RD": "RESV_DEL_HOLD", "RF": "REQUEUE_FED", "RH": "REQUEUE_HOLD",
    "RQ": "REQUEUED", "RS": "RESIZING", "RV": "REVOKED", "SI": "SIGNALING", "SE": "SPECIAL_EXIT",
    "SO": "STAGE_OUT", "ST": "STOPPED", "S": "SUSPENDED", "TO": "TIMEOUT",
}  # fmt: skip
LONG_STATES = frozenset(STATE_CODES.values())

_ARRAY_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")
_JOBID = re.compile(r"^(?P<id>\d+)(?:_(?P<task>\[[^\]]*\]?|\d+))?(?:\+\d+)?$")
_REASON_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
MAX_REASON_LEN = 64


@dataclass(frozen=True)
class QueueJob:
    """One squeue line (one job, one running/finished array task, or one group of pending array tasks).

    Attributes:
        job_id: the job id as printed (``"123"``, ``"123_4"``, ``"123_[1-100%5]"``); unique per queue entry
            and identical on the per-partition copies ``squeue -P`` prints, so it is the de-duplication key.
        partitions: partition names (``"p1,p2"`` split; a ``*`` default marker stripped).
        state: long job state, lower-case (``pending``, ``running``, ``completing``...).
        reason: bounded reason token (:func:`reason_token`), ``None`` when not reported.
        array_job_id: the array's job id when the line belongs to a job array, else ``None``.
        array_tasks: the pending-task index expression (``1-100%5``) of a grouped line, else ``None``.
        tasks: number of jobs the line stands for (1, or the task count of a grouped pending array line);
            ``None`` when the expression may have been truncated by SLURM.
        submit_time: ``SubmitTime`` in Unix seconds.
        eligible_time: ``EligibleTime`` in Unix seconds (``None`` while a dependency or hold keeps the job
            ineligible).
        cpus: ``NumCPUs`` (requested when pending, allocated when running), per task for grouped lines.
        nodes: ``NumNodes``, per task.
        gpus: GPUs from ``tres-alloc`` (``gres/gpu=N``; allocated when running, requested otherwise), per task;
            ``0`` when the TRES string has no GPU, ``None`` when there is no TRES string.
        fields: raw column texts by upper-case title.

    """

    job_id: str
    partitions: tuple[str, ...]
    state: str
    reason: str | None = None
    array_job_id: str | None = None
    array_tasks: str | None = None
    tasks: int | None = 1
    submit_time: float | None = None
    eligible_time: float | None = None
    cpus: int | None = None
    nodes: int | None = None
    gpus: float | None = None
    fields: dict[str, str] = field(default_factory=dict)


def reason_token(text: str | None) -> str | None:
    """Reduce a job reason to a bounded token suitable as a label value.

    ``squeue`` prints the job's ``state_desc`` when slurmctld set one, else ``job_reason_string()``
    (``_print_job_reason`` in src/squeue/print.c), so the text may be a CamelCase code (``Priority``), a code
    followed by details (``ReqNodeNotAvail, UnavailableNodes:cs[100-102]``, scontrol's
    ``ReqNodeNotAvail,_UnavailableNodes:...``) or a sentence. Rules, in order:

    * surrounding parentheses are removed (the ``%R`` form ``(Priority)``);
    * "Nodes required for job are DOWN, DRAINED..." is slurmctld's description of reason ``Resources``
      (src/slurmctld/node_scheduler.c sets ``WAIT_RESOURCES`` with that text) and gives ``Resources``;
    * otherwise the leading ``[A-Za-z][A-Za-z0-9_]*`` token, when it is the whole text or is followed by
      ``,``, ``:`` or ``(``;
    * any other free text gives ``"other"``.

    The result is at most :data:`MAX_REASON_LEN` characters; empty text gives ``None``.
    """
    if text is None:
        return None
    t = text.strip()
    while t.startswith("(") and t.endswith(")"):
        t = t[1:-1].strip()
    if not t:
        return None
    if t.startswith("Nodes required for job are DOWN"):
        return "Resources"
    m = _REASON_TOKEN.match(t)
    if m is None:
        return "other"
    rest = t[m.end() :]
    if rest and rest[0] not in ",:(":
        return "other"
    return m.group()[:MAX_REASON_LEN]


def count_array_tasks(expr: str, bitstr_len: int = 64) -> int:
    """Count the tasks of a job-array index expression (``1-100%5``, ``[1,3,5-9:2]``).

    Grammar (sbatch(1) ``--array``; printed by ``bit_fmt``): comma-separated items ``N``, ``A-B`` or
    ``A-B:S``, optionally in brackets, optionally followed by ``%M`` (the concurrency limit, which does not
    change the count).

    Args:
        expr: the expression.
        bitstr_len: the ``SLURM_BITSTR_LEN`` in effect (default 64; 0 = unlimited). An expression of
            ``bitstr_len - 1`` characters or more may have been cut by SLURM and is refused.

    Raises:
        ValueError: for a malformed or possibly truncated expression.

    """
    t = expr.strip()
    if t.startswith("["):
        if not t.endswith("]"):
            raise ValueError(f"unbalanced array expression {expr!r}")
        t = t[1:-1]
    t, _, limit = t.partition("%")
    if limit and not limit.isdigit():
        raise ValueError(f"bad array task limit in {expr!r}")
    if bitstr_len > 0 and len(t) >= bitstr_len - 1:
        raise ValueError(f"array expression may be truncated at SLURM_BITSTR_LEN={bitstr_len}: {expr!r}")
    total = 0
    for item in t.split(","):
        m = _ARRAY_ITEM.match(item)
        if not m:
            raise ValueError(f"bad array expression {expr!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1:
            raise ValueError(f"bad array range {item!r}")
        total += (hi - lo) // step + 1
    return total


def _gpus_from_tres(text: str | None) -> float | None:
    if text is None or is_null(text):
        return None
    tres = parse_tres(text)
    if not tres:
        return None
    if "gres/gpu" in tres:
        return tres["gres/gpu"]
    typed = [v for k, v in tres.items() if k.startswith("gres/gpu:")]
    return sum(typed) if typed else 0.0


def _memory_from_tres(text: str | None) -> float | None:
    """Total job memory in bytes from a TRES string (``mem=600M``), ``None`` without ``mem``."""
    if text is None or is_null(text):
        return None
    return parse_tres(text).get("mem")


def _split_partitions(text: str | None) -> tuple[str, ...]:
    if text is None or is_null(text):
        return ()
    return tuple(p.strip().rstrip("*") for p in text.split(",") if p.strip())


def _state(text: str | None) -> str | None:
    if text is None:
        return None
    t = text.strip().upper()
    t = t.split()[0] if t else t  # "CANCELLED by 1000" (sacct spelling) -> CANCELLED
    if t in STATE_CODES:
        return STATE_CODES[t].lower()
    if t in LONG_STATES:
        return t.lower()
    return None


class _TableConverters:
    """Per-parse caches of the pure conversions of squeue table values.

    States, partitions, reasons, TRES strings, times and array expressions repeat across thousands of lines;
    each distinct text is converted once. Exceptions are never cached.
    """

    def __init__(self, bitstr_len: int) -> None:
        self.state = per_parse_cache(_state)
        self.partitions = per_parse_cache(_split_partitions)
        self.reason = per_parse_cache(reason_token)
        self.gpus = per_parse_cache(_gpus_from_tres)
        self.time = per_parse_cache(parse_timestamp)
        self.tasks = per_parse_cache(lambda expr: count_array_tasks(expr, bitstr_len))
        self.duration = per_parse_cache(parse_duration)
        self.memory = per_parse_cache(_memory_from_tres)


def _job_from_table(
    f: dict[str, str], bitstr_len: int, conv: _TableConverters | None = None
) -> tuple[QueueJob | None, list[str]]:
    issues: list[str] = []
    if conv is None:
        conv = _TableConverters(bitstr_len)
    raw_id = f.get("JOBID", "")
    m = _JOBID.match(raw_id)
    if not m:
        return None, [f"bad job id {raw_id!r}"]
    state_text = f.get("STATE", f.get("ST"))
    state = conv.state(state_text) if state_text is not None else None
    if state is None:
        return None, [f"job {raw_id}: unknown state {state_text!r}"]
    array_job_id = f.get("ARRAY_JOB_ID")
    task = f.get("ARRAY_TASK_ID")
    if task is None and m.group("task") is not None:
        task = m.group("task")
        array_job_id = m.group("id")
    array_tasks: str | None = None
    tasks: int | None = 1
    if task is not None and not is_null(task):
        if task.isdigit():
            pass  # one task of an array
        else:
            array_tasks = task.strip("[]")
            try:
                tasks = conv.tasks(task)
            except ValueError as exc:
                tasks = None
                issues.append(f"job {raw_id}: {exc}")
    else:
        array_job_id = None
    if array_job_id is not None and (is_null(array_job_id) or array_job_id == "0"):
        array_job_id = None

    reason_text = f.get("REASON")
    if reason_text is None and "NODELIST(REASON)" in f:
        nl = f["NODELIST(REASON)"]
        reason_text = nl if nl.startswith("(") else None  # running jobs show their node list here
    gpus: float | None = None
    if "TRES_ALLOC" in f:
        try:
            gpus = conv.gpus(f["TRES_ALLOC"])
        except ValueError:
            issues.append(f"job {raw_id}: bad TRES {f['TRES_ALLOC']!r}")
    times = []
    for key in ("SUBMIT_TIME", "ELIGIBLE_TIME"):
        t = f.get(key)
        value = None
        if t is not None:
            try:
                value = conv.time(t)
            except ValueError:
                issues.append(f"job {raw_id}: {key} {t!r} is not a timestamp")
        times.append(value)
    ints = []
    for key in ("CPUS", "NODES"):
        t = f.get(key)
        value = None
        if t is not None and not is_null(t):
            if t.isdigit():
                value = int(t)
            else:
                issues.append(f"job {raw_id}: {key} {t!r} is not an integer")
        ints.append(value)
    part_text = f.get("PARTITION")
    job = QueueJob(
        job_id=raw_id,
        partitions=conv.partitions(part_text) if part_text is not None else (),
        state=state,
        reason=conv.reason(reason_text) if reason_text is not None else None,
        array_job_id=array_job_id,
        array_tasks=array_tasks,
        tasks=tasks,
        submit_time=times[0],
        eligible_time=times[1],
        cpus=ints[0],
        nodes=ints[1],
        gpus=gpus,
        fields=f,
    )
    return job, issues


def _num(value: Any) -> float | None:
    """A JSON number or a data_parser ``{"set": bool, "infinite": bool, "number": N}`` wrapper."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict) and "number" in value:
        if not value.get("set", True) or value.get("infinite"):
            return None
        return _num(value["number"])
    return None


def _job_from_json(job: dict[str, Any], bitstr_len: int) -> tuple[QueueJob | None, list[str]]:
    issues: list[str] = []
    job_id = _num(job.get("job_id"))
    if job_id is None:
        return None, ["job without job_id"]
    st = job.get("job_state")
    if isinstance(st, list):  # data_parser: ["PENDING"] or ["RUNNING", "..."]: the base state comes first
        st = st[0] if st else None
    state = _state(str(st)) if st is not None else None
    if state is None:
        return None, [f"job {int(job_id)}: unknown state {job.get('job_state')!r}"]
    array_job = _num(job.get("array_job_id"))
    array_task = _num(job.get("array_task_id"))
    task_str = job.get("array_task_string") or ""
    array_job_id = str(int(array_job)) if array_job else None
    tasks: int | None = 1
    array_tasks: str | None = None
    shown = str(int(job_id))
    if array_job_id and task_str:
        array_tasks = task_str
        shown = f"{array_job_id}_[{task_str}]"
        try:
            tasks = count_array_tasks(task_str, bitstr_len)
        except ValueError as exc:
            tasks = None
            issues.append(f"job {shown}: {exc}")
    elif array_job_id and array_task is not None:
        shown = f"{array_job_id}_{int(array_task)}"
    submit = _num(job.get("submit_time"))
    eligible = _num(job.get("eligible_time"))
    cpus = _num(job.get("cpus"))
    nodes = _num(job.get("node_count"))
    tres = job.get("tres_alloc_str") or job.get("tres_req_str")
    part = job.get("partition")
    return (
        QueueJob(
            job_id=shown,
            partitions=_split_partitions(part if isinstance(part, str) else None),
            state=state,
            reason=reason_token(job.get("state_description") or job.get("state_reason")),
            array_job_id=array_job_id,
            array_tasks=array_tasks,
            tasks=tasks,
            submit_time=submit or None,
            eligible_time=eligible or None,
            cpus=None if cpus is None else int(cpus),
            nodes=None if nodes is None else int(nodes),
            gpus=_gpus_from_tres(tres) if isinstance(tres, str) else None,
            fields={},
        ),
        issues,
    )


def parse_squeue(text: str, bitstr_len: int = 64) -> ParseResult[QueueJob]:
    """Parse squeue output that carries its own header (such as :data:`SQUEUE_ARGV`'s) or ``squeue --json``.

    Args:
        text: the command output.
        bitstr_len: the ``SLURM_BITSTR_LEN`` squeue ran with (64 by default, 0 for unlimited); see
            :func:`count_array_tasks`.

    Returns:
        One :class:`QueueJob` per line or JSON job. A line with the wrong field count, a bad job id or an
        unknown state is skipped as an issue; a bad value inside a line is left ``None`` and counted.
        Unrecognised text gives one "unrecognised format" issue and no records; empty text gives nothing.

    """
    result: ParseResult[QueueJob] = ParseResult()
    stripped = text.strip()
    if not stripped:
        return result
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested input
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("jobs"), list):
            for i, job in enumerate(doc["jobs"], 1):
                if not isinstance(job, dict):
                    result.skip(i, "job entry is not an object")
                    continue
                try:
                    rec, issues = _job_from_json(job, bitstr_len)
                except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                    rec, issues = None, [str(exc)]
                for issue in issues:
                    result.skip(i, issue)
                if rec is not None:
                    result.records.append(rec)
            return result
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
        return result
    table = split_header_table(text, HEADERS)
    if table is None or "JOBID" not in table[0] or not ({"STATE", "ST"} & set(table[0])):
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
        return result
    headers, rows = table
    unique = len(set(headers)) == len(headers)
    conv = _TableConverters(bitstr_len)
    with gc_paused():
        for no, line, values in rows:
            if values is None:
                result.skip(no, f"expected {len(headers)} fields", line)
                continue
            if unique:
                f = dict(zip(headers, values, strict=True))
            else:
                f = {}
                for h, v in zip(headers, values, strict=True):
                    f.setdefault(h, v)  # a repeated title keeps its first value
            rec, issues = _job_from_table(f, bitstr_len, conv)
            for issue in issues:
                result.skip(no, issue, line)
            if rec is not None:
                result.records.append(rec)
    return result


@dataclass(frozen=True)
class QueueJobDetail:
    """One squeue line of the per-job command (:data:`SQUEUE_JOBS_ARGV`): the queue record plus its attributes.

    Attributes:
        job: the :class:`QueueJob` of the line (what the aggregate gauges use).
        user: ``UserName`` (``None`` when empty).
        account: ``Account`` (``None`` when empty).
        name: ``Name``, the job name as free text (``""`` when empty); never parsed, only carried as a label.
        partition: the partition text as squeue prints it (``"p1,p2"`` for a multi-partition pending job), with
            the default marker ``*`` removed.
        start_time: ``StartTime`` in Unix seconds for jobs that have started; ``None`` for pending jobs, whose
            StartTime is the scheduler's estimate (squeue(1) ``%S``: "expected start time"), not a fact.
        timelimit_seconds: ``TimeLimit`` in seconds; ``None`` for ``UNLIMITED``/``Partition_Limit``/``N/A``.
        memory_bytes: total memory of the job, from ``mem=`` of ``tres-alloc`` (requested TRES while pending,
            allocated once running). On SLURM 22.05 this is the job's total: ``--mem`` x nodes, or
            ``--mem-per-cpu`` x CPUs (lab capture: ``-N 2 --mem=300M`` shows ``mem=600M``, ``-n 3
            --mem-per-cpu=100M`` shows ``mem=300M``). ``MinMemory`` is not used: it is per node OR per CPU
            without saying which. ``None`` when the TRES string has no ``mem``.
        nodelist: ``NodeList`` of a started job in SLURM's compressed form (``c[01-02]``), ``""`` while pending.

    """

    job: QueueJob
    user: str | None = None
    account: str | None = None
    name: str = ""
    partition: str = ""
    start_time: float | None = None
    timelimit_seconds: float | None = None
    memory_bytes: float | None = None
    nodelist: str = ""


_JOB_TITLES = ("JOBID", "STATE", "USER", "NAME")


def _detail(job: QueueJob, f: dict[str, str], conv: _TableConverters) -> tuple[QueueJobDetail, list[str]]:
    """The per-job attributes of one parsed line (``f``: column texts by title)."""
    issues: list[str] = []
    start = None
    if job.state != "pending":
        text = f.get("START_TIME")
        if text is not None:
            try:
                start = conv.time(text)
            except ValueError:
                issues.append(f"job {job.job_id}: START_TIME {text!r} is not a timestamp")
    limit = None
    text = f.get("TIME_LIMIT")
    if text is not None:
        try:
            limit = conv.duration(text)
        except ValueError:
            issues.append(f"job {job.job_id}: TIME_LIMIT {text!r} is not a duration")
    tres = f.get("TRES_ALLOC")
    memory = None if tres is None else conv.memory(tres)  # parse_tres skips bad items, never raises
    user = f.get("USER", "").strip()
    account = f.get("ACCOUNT", "").strip()
    nodelist = f.get("NODELIST", "").strip()
    return (
        QueueJobDetail(
            job=job,
            user=None if is_null(user) else user,
            account=None if is_null(account) else account,
            name=f.get("NAME", ""),
            partition=",".join(job.partitions),
            start_time=start,
            timelimit_seconds=limit,
            memory_bytes=memory,
            nodelist="" if is_null(nodelist) or nodelist.startswith("(") else nodelist,
        ),
        issues,
    )


def parse_squeue_jobs(text: str, bitstr_len: int = 64) -> ParseResult[QueueJobDetail]:
    """Parse the output of :data:`SQUEUE_JOBS_ARGV` (or any squeue table with a header and a ``NAME`` column).

    The table is split on 0x1F (or the delimiter its header uses). ``NAME`` is free text: when it is the last
    column and a line has more fields than the header, the surplus is joined back into the name with the
    delimiter, so a job name containing 0x1F keeps its line (sacct's parser does the same for ``JobName``). A
    name containing a newline splits its line in two; with the -O suffix delimiter (every complete line ends with
    it) both halves are then counted as issues and skipped.

    Args:
        text: the command output, header line first.
        bitstr_len: the ``SLURM_BITSTR_LEN`` squeue ran with (see :func:`count_array_tasks`).

    Returns:
        One :class:`QueueJobDetail` per line, in input order (the aggregate queue gauges are computed from the
        ``job`` attributes exactly as :func:`parse_squeue` would give them). Lines with a bad job id, unknown
        state or wrong field count are skipped as issues; a bad value inside a line is left ``None`` and
        counted. Text without a recognisable header (or without JOBID/STATE columns) gives one "unrecognised
        format" issue; empty text gives nothing.

    """
    result: ParseResult[QueueJobDetail] = ParseResult()
    if not text.strip():
        return result
    table = split_header_table(text, HEADERS)
    if table is None or "JOBID" not in table[0] or not ({"STATE", "ST"} & set(table[0])):
        result.skip(0, "unrecognised format", text.strip().splitlines()[0])
        return result
    headers, rows = table
    header_line = next(line for line in text.splitlines() if line.strip())
    delim = US if US in header_line else ("|" if "|" in header_line else None)
    name_last = headers[-1] == "NAME" and delim is not None
    # With -O suffixes every complete line ends with the delimiter; one that does not was cut (by a newline in
    # a job name) and would otherwise parse with a truncated name.
    terminated = delim is not None and header_line.rstrip("\r\n ").endswith(delim)
    conv = _TableConverters(bitstr_len)
    with gc_paused():
        for no, line, values in rows:
            if terminated and not line.rstrip("\r\n ").endswith(delim):
                result.skip(no, "line does not end with the delimiter (cut by a newline in a name?)", line)
                continue
            if values is None and name_last:
                parts = line.rstrip("\r\n").split(delim)
                if terminated and parts and parts[-1] == "":
                    parts.pop()  # the -O suffix after the last column
                if len(parts) > len(headers):
                    width = len(headers) - 1
                    # Surrounding blanks go, as split_header_table strips padded values.
                    values = [p.strip(" \t") for p in parts[:width]] + [delim.join(parts[width:]).strip(" \t")]
            if values is None:
                result.skip(no, f"expected {len(headers)} fields", line)
                continue
            f: dict[str, str] = {}
            for h, v in zip(headers, values, strict=True):
                f.setdefault(h, v)  # a repeated title keeps its first value
            job, issues = _job_from_table(f, bitstr_len, conv)
            if job is not None:
                detail, more = _detail(job, f, conv)
                issues += more
                result.records.append(detail)
            for issue in issues:
                result.skip(no, issue, line)
    return result
