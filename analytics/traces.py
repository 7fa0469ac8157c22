"""Job-trace loaders: sacct dumps, SWF logs and the two public SLURM samples -> the shared job table.

Every loader returns a :class:`pandas.DataFrame` with exactly the columns of :data:`JOB_COLUMNS` (one row per
finished job; missing values NaN/None):

- ``job_id``, ``user``, ``account``, ``partition``, ``job_name``: str (None when unknown);
- ``submit_time``, ``start_time``, ``end_time``: float Unix seconds;
- ``req_cpus``, ``req_nodes``, ``req_gpus``: float counts; ``req_mem_bytes``: float, per-job total;
- ``timelimit_s``: float seconds, NaN = unlimited/unknown; ``elapsed_s``; ``cpu_s`` (TotalCPU, all CPUs summed);
- ``max_rss_bytes``: float; ``state``: SLURM-like upper case; ``exit_code``: float;
- ``failure_class``: one of :data:`nomade.exporter.parsers.slurm_outcome.FAILURE_CLASSES`;
- ``failed``: bool, ``failure_class != "success"`` in every dataset (so ``cancelled`` counts as a failure; callers
  that want "cancelled before start" out filter on ``failure_class == "cancelled"`` and ``elapsed_s == 0``);
- ``dataset``: the dataset name.

Loader-specific diagnostics go to ``df.attrs`` (``parse_issues``: int, ``dropped``: dict reason -> count).

LEAKAGE (applies to every dataset): ``start_time``, ``end_time``, ``elapsed_s``, ``cpu_s``, ``max_rss_bytes``,
``state``, ``exit_code``, ``failure_class``, ``failed`` are only known after the job ended (``start_time`` after it
started); they are labels or post-hoc usage and must never become submit-time features. Submit-time features are
``user``, ``account``, ``partition``, ``job_name``, ``submit_time`` and the ``req_*``/``timelimit_s`` columns, with
per-dataset exceptions documented on each loader.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from nomade.exporter.parsers.sacct import SACCT_FIELDS, parse_sacct
from nomade.exporter.parsers.slurm_outcome import STATE_CODES, TERMINAL_STATES, classify, parse_exit_code

#: Columns of the shared job table, in order.
JOB_COLUMNS: tuple[str, ...] = (
    "job_id",
    "user",
    "account",
    "partition",
    "job_name",
    "submit_time",
    "start_time",
    "end_time",
    "req_cpus",
    "req_nodes",
    "req_gpus",
    "req_mem_bytes",
    "timelimit_s",
    "elapsed_s",
    "cpu_s",
    "max_rss_bytes",
    "state",
    "exit_code",
    "failure_class",
    "failed",
    "dataset",
)

_STR_COLS = ("job_id", "user", "account", "partition", "job_name", "state", "failure_class", "dataset")
_FLOAT_COLS = tuple(c for c in JOB_COLUMNS if c not in _STR_COLS and c != "failed")

#: Long names of the sacct(1) terminal state codes.
_TERMINAL = frozenset(STATE_CODES[c] for c in TERMINAL_STATES)

#: SWF status -> SLURM-like state (Feitelson, "The Standard Workload Format", PWA swf.html, field 11: "1 if the
#: job was completed, 0 if it failed, and 5 if cancelled"; 2/3/4 are partial executions of checkpointed or
#: swapped jobs: 3 = last partial and completed, 4 = last partial and failed; 2 = a partial execution followed
#: by another, i.e. not the job's end).
SWF_STATUS: dict[int, str] = {1: "COMPLETED", 0: "FAILED", 5: "CANCELLED", 3: "COMPLETED", 4: "FAILED"}


def _frame(rows: list[dict[str, Any]], dataset: str) -> pd.DataFrame:
    """Rows -> the shared schema with the right dtypes; ``failed`` derived from ``failure_class``."""
    df = pd.DataFrame(rows, columns=list(JOB_COLUMNS))
    for c in _FLOAT_COLS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in _STR_COLS:
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    df["dataset"] = pd.Series([dataset] * len(df), index=df.index, dtype=object)
    df["failed"] = (df["failure_class"] != "success").astype(bool)
    return df.reset_index(drop=True)


def _read_text(path_or_text: str | Path | bytes) -> str:
    """Text of a path (``.gz`` decompressed) or the argument itself when it is not an existing path."""
    if isinstance(path_or_text, bytes):
        return path_or_text.decode("utf-8", "replace")
    if isinstance(path_or_text, Path) or ("\n" not in path_or_text and Path(path_or_text).is_file()):
        p = Path(path_or_text)
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8", "replace")
    return path_or_text


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


# --------------------------------------------------------------------------------------------------- sacct


def load_sacct_dump(
    path_or_text: str | Path | bytes, dataset: str = "sacct", fields: Sequence[str] | None = None
) -> pd.DataFrame:
    """Load a ``sacct -P`` dump (header line, any field order, any :data:`DELIMITERS`) or ``sacct --json``.

    Parsing is :func:`nomade.exporter.parsers.sacct.parse_sacct`: step lines (``<id>.batch``, ``<id>.0``...) are
    folded into their job; ``max_rss_bytes`` is the maximum ``MaxRSS`` over the steps (zeros ignored: unsampled);
    ``failure_class`` is :func:`nomade.exporter.parsers.slurm_outcome.classify` of the job state, ``ExitCode``,
    step states and ``DerivedExitCode`` (OOM in a step -> ``out_of_memory``, exit 139/signal 11 -> ``segfault``...).

    Column mapping: ``job_id`` = ``JobID`` (``123_4`` for array tasks); ``req_cpus`` = ``ReqCPUS`` (``AllocCPUS``
    when absent); ``req_nodes`` = ``NNodes``; ``req_gpus`` = ``gres/gpu`` of ``ReqTRES`` (else ``AllocTRES``);
    ``req_mem_bytes`` = total ``ReqMem`` (per-node/per-CPU forms multiplied out); ``timelimit_s`` NaN for
    ``UNLIMITED``; ``cpu_s`` = ``TotalCPU``; ``exit_code`` = the status part of ``ExitCode``.

    Only jobs in a terminal state (sacct(1) "JOB STATE CODES": CA CD DL F NF OOM PR TO BF) are kept; others are
    counted in ``df.attrs["dropped"]["non_terminal"]``. ``df.attrs["parse_issues"]`` is the parser's issue count.

    Leakage: ``NNodes`` and ``AllocCPUS`` are allocation values (known at start); ``State``, ``ExitCode``,
    ``Elapsed``, ``TotalCPU``, ``MaxRSS`` only after the end. ``cancelled`` counts as failed.

    Args:
        path_or_text: a file path (``.gz`` ok) or the dump text itself.
        dataset: value of the ``dataset`` column.
        fields: column names of a ``--noheader`` dump; default :data:`~nomade.exporter.parsers.sacct.SACCT_FIELDS`
            (the accounting collector's layout). A header line, when present, wins.

    """
    res = parse_sacct(_read_text(path_or_text), fields=SACCT_FIELDS if fields is None else fields)
    rows: list[dict[str, Any]] = []
    dropped = 0
    for j in res.records:
        if j.state not in _TERMINAL:
            dropped += 1
            continue
        req_cpus = j.req_cpus if j.req_cpus is not None else j.alloc_cpus
        rows.append(
            {
                "job_id": j.job_id,
                "user": j.user,
                "account": j.account,
                "partition": j.partition,
                "job_name": j.name,
                "submit_time": _nan(j.submit),
                "start_time": _nan(j.start),
                "end_time": _nan(j.end),
                "req_cpus": _nan(req_cpus),
                "req_nodes": _nan(j.nnodes),
                "req_gpus": _nan(j.requested_gpus),
                "req_mem_bytes": _nan(j.requested_memory_bytes),
                "timelimit_s": _nan(j.timelimit_seconds),
                "elapsed_s": _nan(j.elapsed_seconds),
                "cpu_s": _nan(j.total_cpu_seconds),
                "max_rss_bytes": _nan(j.max_rss_bytes),
                "state": j.state,
                "exit_code": _nan(j.exit_code),
                "failure_class": j.failure_class,
            }
        )
    df = _frame(rows, dataset)
    df.attrs["parse_issues"] = len(res.issues)
    df.attrs["dropped"] = {"non_terminal": dropped}
    return df


# ----------------------------------------------------------------------------------------------------- SWF

_SWF_HEADER = re.compile(r"^;\s*(?P<key>[A-Za-z]+)\s*:\s*(?P<value>.*?)\s*$")
_SWF_QUEUE = re.compile(r"^\s*(?P<num>-?\d+)\s+(?P<name>\S+)")


def load_swf(path_or_text: str | Path | bytes, dataset: str | None = None) -> pd.DataFrame:
    """Load a Standard Workload Format log (Parallel Workloads Archive, Feitelson; ``.gz`` ok).

    Format (PWA "The Standard Workload Format" swf.html): ``;`` lines are header comments (``; Key: value``);
    every other non-blank line has 18 whitespace-separated fields: 1 job number, 2 submit time (s since
    ``UnixStartTime``), 3 wait (s), 4 run time (s), 5 allocated processors, 6 average CPU time used per processor
    (s), 7 used memory (KB per processor), 8 requested processors, 9 requested time (s), 10 requested memory (KB
    per processor), 11 status, 12 user id, 13 group id, 14 executable number, 15 queue number, 16 partition
    number, 17 preceding job, 18 think time. ``-1`` means unknown (-> NaN/None).

    Mapping: ``submit_time`` = ``UnixStartTime`` header + field 2 (header absent -> 0, times then relative);
    ``start_time`` = submit + wait; ``end_time`` = start + run; ``elapsed_s`` = run; ``req_cpus`` = field 8;
    ``req_nodes`` NaN (processors only); ``req_gpus`` = 0 (these machines predate GPUs); ``req_mem_bytes`` =
    field 10 x 1024 x field 8 (total); ``timelimit_s`` = field 9; ``cpu_s`` = field 6 x field 5;
    ``max_rss_bytes`` = field 7 x 1024 x field 5 (average used memory per processor times the allocated
    processors: a job total, so that ``max_rss_bytes / req_mem_bytes`` compares like with like; not a peak);
    ``user`` = field 12; ``account`` = field 13; ``job_name`` = field 14; ``partition`` = field 16, or the queue's
    name from the ``; Queue: <n> <name>`` header (field 15) when the partition is unknown.

    Labels (:data:`SWF_STATUS`): 1 -> COMPLETED/success, 0 -> FAILED/failed (generic, not split by cause), 5 ->
    CANCELLED/cancelled, 3 -> COMPLETED, 4 -> FAILED. Status 2 (partial execution, job continues) and -1
    (unknown) rows are dropped (``df.attrs["dropped"]``). There is no OOM/TIMEOUT/NODE_FAIL distinction.

    Leakage: fields 3-7, 11 are post-hoc. Field 5 (allocated processors) is known only at start. On LANL-CM5
    the time limit was not a hard kill (SOURCES.md: 37 % of jobs ran >= 0.99 x req_time, most still status 1)
    and memory was not cgroup-enforced: run/limit and used/req memory are features, never labels.

    Args:
        path_or_text: file path (``.swf`` or ``.swf.gz``) or the log text.
        dataset: ``dataset`` column; default: the file name without ``.swf[.gz]`` (``"swf"`` for text).

    """
    if dataset is None:
        dataset = "swf"
        if isinstance(path_or_text, Path) or (
            isinstance(path_or_text, str) and "\n" not in path_or_text and Path(path_or_text).is_file()
        ):
            dataset = re.sub(r"\.swf(\.gz)?$", "", Path(path_or_text).name)
    text = _read_text(path_or_text)
    epoch = 0.0
    queues: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    issues = 0
    dropped = {"status_partial": 0, "status_unknown": 0}
    for line in io.StringIO(text):
        s = line.strip()
        if not s:
            continue
        if s.startswith(";"):
            m = _SWF_HEADER.match(s)
            if m and m["key"] == "UnixStartTime":
                try:
                    epoch = float(m["value"])
                except ValueError:
                    issues += 1
            elif m and m["key"] == "Queue":
                q = _SWF_QUEUE.match(m["value"])
                if q:
                    queues[int(q["num"])] = q["name"]
            continue
        parts = s.split()
        if len(parts) != 18:
            issues += 1
            continue
        try:
            f = [float(p) for p in parts]
        except ValueError:
            issues += 1
            continue

        def v(i: int, f: list[float] = f) -> float:
            x = f[i - 1]  # 1-based field numbers, as in the SWF definition
            return math.nan if x < 0 else x

        status = int(f[10])
        state = SWF_STATUS.get(status)
        if state is None:
            dropped["status_partial" if status == 2 else "status_unknown"] += 1
            continue
        submit = epoch + v(2)
        start = submit + v(3)
        part = None if f[15] < 0 else str(int(f[15]))
        if part is None and f[14] >= 0:
            part = queues.get(int(f[14]), str(int(f[14])))
        rows.append(
            {
                "job_id": str(int(f[0])),
                "user": None if f[11] < 0 else str(int(f[11])),
                "account": None if f[12] < 0 else str(int(f[12])),
                "partition": part,
                "job_name": None if f[13] < 0 else str(int(f[13])),
                "submit_time": submit,
                "start_time": start,
                "end_time": start + v(4),
                "req_cpus": v(8),
                "req_nodes": math.nan,
                "req_gpus": 0.0,
                "req_mem_bytes": v(10) * 1024 * v(8),
                "timelimit_s": v(9),
                "elapsed_s": v(4),
                "cpu_s": v(6) * v(5),
                "max_rss_bytes": v(7) * 1024 * v(5),
                "state": state,
                "exit_code": math.nan,
                "failure_class": classify(state),
            }
        )
    df = _frame(rows, dataset)
    df.attrs["parse_issues"] = issues
    df.attrs["dropped"] = dropped
    return df


# ------------------------------------------------------------------------------------------------ Deucalion


def _iso_utc(text: Any) -> float:
    """``2023-10-17T14:39:08`` (no zone) -> Unix seconds, read as UTC; NaN when missing/unparseable."""
    if not isinstance(text, str) or not text:
        return math.nan
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _load_es_array(text: str) -> tuple[list[Any], bool]:
    """Parse a JSON array; when truncated, cut at the last complete top-level ``    },`` and close it.

    Returns ``(items, repaired)``. Raises ``ValueError`` when no complete element exists.
    """
    try:
        return json.loads(text), False
    except json.JSONDecodeError:
        pass
    cut = text.rfind("\n    },")
    if cut < 0:
        raise ValueError("truncated JSON array without a complete element")
    return json.loads(text[:cut] + "\n    }\n]"), True


def load_deucalion_json(path_or_text: str | Path | bytes, dataset: str = "deucalion") -> pd.DataFrame:
    """Load the Deucalion SLURM jobcomp Elasticsearch export (``slurm_first_50k.json``, see SOURCES.md).

    The file is a JSON array of ``{"_source": {...}}`` hits, truncated mid-record: it is cut at the last complete
    element (``df.attrs["repaired"]``). ``_source`` -> schema: ``jobid`` -> ``job_id``; ``@submit``/``@start``/
    ``@end`` (ISO without zone, read as UTC) -> times; ``elapsed`` -> ``elapsed_s``; ``time_limit`` (seconds:
    TIMEOUT rows end at 305-329 s against 300) -> ``timelimit_s``; ``total_cpus`` -> ``req_cpus``;
    ``total_nodes`` -> ``req_nodes`` (0 for jobs that never ran -> NaN; same for ``total_cpus``); ``partition``;
    ``exit_code`` ``code:sig`` -> ``exit_code`` and, with ``derived_ec`` and ``state``, ``failure_class`` via
    :func:`~nomade.exporter.parsers.slurm_outcome.classify`. No user/account/job name, no memory request or
    usage, no TotalCPU (``cpu_hours`` is allocated CPU x time, not used CPU): those columns are None/NaN.

    Labels: native SLURM states. Non-terminal rows (3 PENDING) are dropped; job ids repeat (requeues after
    NODE_FAIL...): the last terminal record per ``jobid`` (latest ``@end``) is kept (``df.attrs["dropped"]``).
    ``cancelled`` counts as failed, but most CANCELLED jobs never started (``elapsed_s == 0``); filter them when
    the question is "will a started job fail".

    Leakage: ``total_cpus``/``total_nodes`` are the allocation as recorded at completion (whole nodes for
    exclusive partitions; ``total_nodes`` is 0 exactly for jobs that never ran, hence mapped to NaN) and
    ``@queue_wait``/``nodes``/``cpu_hours`` are post-hoc and not exported.

    Args:
        path_or_text: path to the JSON file or its text.
        dataset: ``dataset`` column.

    """
    items, repaired = _load_es_array(_read_text(path_or_text))
    rows: list[dict[str, Any]] = []
    dropped = {"non_terminal": 0, "duplicate_jobid": 0, "malformed": 0}
    for it in items:
        src = it.get("_source") if isinstance(it, dict) else None
        if not isinstance(src, dict) or src.get("jobid") is None:
            dropped["malformed"] += 1
            continue
        state = str(src.get("state") or "").split(" ")[0].upper() or None
        if state not in _TERMINAL:
            dropped["non_terminal"] += 1
            continue
        ec = dc = None
        try:
            ec = parse_exit_code(str(src.get("exit_code") or ""))
            dc = parse_exit_code(str(src.get("derived_ec") or ""))
        except ValueError:
            pass
        nodes = src.get("total_nodes")
        rows.append(
            {
                "job_id": str(src["jobid"]),
                "user": None,
                "account": None,
                "partition": src.get("partition"),
                "job_name": None,
                "submit_time": _iso_utc(src.get("@submit")),
                "start_time": _iso_utc(src.get("@start")),
                "end_time": _iso_utc(src.get("@end")),
                "req_cpus": src.get("total_cpus") or math.nan,
                "req_nodes": nodes if nodes else math.nan,
                "req_gpus": math.nan,
                "req_mem_bytes": math.nan,
                "timelimit_s": src.get("time_limit"),
                "elapsed_s": src.get("elapsed"),
                "cpu_s": math.nan,
                "max_rss_bytes": math.nan,
                "state": state,
                "exit_code": ec[0] if ec else math.nan,
                "failure_class": classify(
                    state,
                    ec[0] if ec else None,
                    ec[1] if ec else None,
                    derived_exit_code=dc[0] if dc else None,
                    derived_exit_signal=dc[1] if dc else None,
                ),
            }
        )
    df = _frame(rows, dataset)
    n = len(df)
    df = df.sort_values(["end_time"], kind="stable").drop_duplicates("job_id", keep="last")
    df = df.sort_values(["submit_time", "job_id"], kind="stable").reset_index(drop=True)
    dropped["duplicate_jobid"] = n - len(df)
    df.attrs["dropped"] = dropped
    df.attrs["repaired"] = repaired
    df.attrs["parse_issues"] = dropped["malformed"]
    return df


# ---------------------------------------------------------------------------------------------------- Eagle


def load_eagle_csv(path_or_text: str | Path | bytes, dataset: str = "eagle") -> pd.DataFrame:
    """Load the NREL Eagle job CSV (``sample_eagle_data.csv`` / the OEDI full set, see SOURCES.md).

    Columns -> schema: ``job_id``, ``user``, ``account``, ``partition``, ``name`` -> ``job_name``;
    ``submit_time``/``start_time``/``end_time`` (``YYYY-MM-DD HH:MM:SS`` without zone, read as UTC; only
    differences are meaningful); ``wallclock_req`` (s) -> ``timelimit_s``; ``nodes_req``, ``processors_req``,
    ``gpus_req`` -> ``req_nodes``, ``req_cpus``, ``req_gpus``; ``mem_req`` -> ``req_mem_bytes`` read as MiB
    (SLURM's default ``--mem`` unit; the unit is not documented by the source) with 0 (= the partition default,
    988 of 1000 sample rows) -> NaN; ``run_time`` (s) -> ``elapsed_s``; ``state``. ``qos``, ``work_dir``,
    ``submit_line`` are not in the schema. No exit code, TotalCPU or MaxRSS.

    Job arrays: the sample prints every task of an array under the array's ``job_id`` without a task index (452
    rows share ``532939``). A ``job_id`` that repeats becomes ``<job_id>_<n>``, ``n`` = 0, 1, ... in order of
    (``start_time``, ``end_time``, row): a stand-in for the unknown task index that keeps one row per task, so the
    store (keyed by cluster, job id and submit time) does not fold the tasks into one.

    Labels: ``failure_class`` = :func:`~nomade.exporter.parsers.slurm_outcome.classify` of ``state`` (the
    sample has only COMPLETED and TIMEOUT); non-terminal states are dropped. ``cancelled`` counts as failed.

    Leakage: ``start_time``, ``end_time``, ``run_time``, ``state`` are post-hoc; ``run_time`` vs.
    ``wallclock_req`` equals the TIMEOUT label by construction.

    Args:
        path_or_text: path to the CSV (``.gz`` ok) or its text.
        dataset: ``dataset`` column.

    """
    raw = pd.read_csv(io.StringIO(_read_text(path_or_text)), dtype={"job_id": str, "user": str, "account": str})

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw else pd.Series([None] * len(raw), index=raw.index)

    def times(name: str) -> pd.Series:
        t = pd.to_datetime(col(name), errors="coerce", utc=True)
        out = (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return out

    state = col("state").astype(str).str.split(" ").str[0].str.upper()
    mem = pd.to_numeric(col("mem_req"), errors="coerce")
    out = pd.DataFrame(
        {
            "job_id": col("job_id").astype(str),
            "user": col("user"),
            "account": col("account"),
            "partition": col("partition"),
            "job_name": col("name"),
            "submit_time": times("submit_time"),
            "start_time": times("start_time"),
            "end_time": times("end_time"),
            "req_cpus": col("processors_req"),
            "req_nodes": col("nodes_req"),
            "req_gpus": col("gpus_req"),
            "req_mem_bytes": mem.where(mem > 0) * 1024 * 1024,
            "timelimit_s": col("wallclock_req"),
            "elapsed_s": col("run_time"),
            "cpu_s": math.nan,
            "max_rss_bytes": math.nan,
            "state": state,
            "exit_code": math.nan,
            "failure_class": [classify(s) for s in state],
        }
    )
    dup = out["job_id"].duplicated(keep=False)
    if dup.any():
        order = out[dup].sort_values(["start_time", "end_time"], kind="stable")
        task = order.groupby("job_id").cumcount()
        out.loc[task.index, "job_id"] = order["job_id"] + "_" + task.astype(str)
    keep = state.isin(_TERMINAL)
    df = _frame(out[keep].to_dict("records"), dataset)
    df.attrs["dropped"] = {"non_terminal": int((~keep).sum())}
    df.attrs["parse_issues"] = 0
    return df


# -------------------------------------------------------------------------------------------------- dispatch


def load_trace(path: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Load a trace file, choosing the loader by name/extension.

    ``*.swf``/``*.swf.gz`` -> :func:`load_swf`; ``*.json`` whose text starts with ``[`` -> :func:`load_deucalion_json`
    (a ``{`` document is ``sacct --json`` -> :func:`load_sacct_dump`); ``*.csv[.gz]`` -> :func:`load_eagle_csv`;
    anything else (``.txt``, ``.psv``, ``.sacct``...) -> :func:`load_sacct_dump`.

    Args:
        path: the trace file.
        dataset: ``dataset`` column; default: the loader's (SWF: the file name), for sacct the file stem.

    Raises:
        FileNotFoundError: when ``path`` does not exist.

    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(str(p))
    name = p.name.lower()
    kw: dict[str, Any] = {} if dataset is None else {"dataset": dataset}
    if name.endswith((".swf", ".swf.gz")):
        return load_swf(p, **kw)
    if name.endswith((".csv", ".csv.gz")):
        return load_eagle_csv(p, **kw)
    text = _read_text(p)
    if name.endswith((".json", ".json.gz")) and text.lstrip().startswith("["):
        return load_deucalion_json(text, **kw)
    return load_sacct_dump(text, **({"dataset": re.sub(r"(\.(txt|psv|sacct|json|gz))+$", "", p.name)} | kw))


def summarize(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Per-dataset summary of loaded traces.

    Returns:
        one row per frame: ``dataset``, ``jobs`` (rows), ``failure_rate`` (mean of ``failed``) and one count column
        per failure class present in any frame (0 where absent).

    """
    parts = []
    for df in frames:
        counts = df["failure_class"].value_counts().to_dict()
        parts.append(
            {"dataset": df["dataset"].iat[0] if len(df) else None, "jobs": len(df)}
            | {"failure_rate": float(df["failed"].mean()) if len(df) else math.nan}
            | counts
        )
    return pd.DataFrame(parts).fillna(0)
