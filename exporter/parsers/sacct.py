r"""Parse SLURM accounting output (``sacct``) into finished-job records with their steps merged in.

Input formats (auto-detected by :func:`parse_sacct`):

- ``--parsable2``/``--parsable`` text with a header line (or, with ``--noheader``, a caller-given field list), any
  of the delimiters :data:`DELIMITERS` (the collector's own ``\x1f``, ``|``, and the ``☃`` some sites use); the
  trailing delimiter of ``--parsable`` is accepted. When ``JobName`` is the last column, surplus columns are
  joined back into it, so a job name containing the delimiter does not break the line.
- ``sacct --json`` (openapi dbv0.0.37 of SLURM 21.08 and the data_parser v0.0.39+ layout of 23.02+, where numbers
  may be ``{"set", "infinite", "number"}`` objects and states lists).

Anything else (a headerless table without a field list, unknown text) gives one :class:`ParseIssue` at line 0
and no records.

Semantics (sacct(1), SLURM 22.05, "Job Accounting Fields"):

- A job's lines: the allocation line (``JobIDRaw`` without a dot) and its step lines ``<id>.batch``,
  ``<id>.extern``, ``<id>.<n>``. ``MaxRSS`` is recorded on steps only; the job's peak is the maximum over them.
- ``JobID`` displays array tasks as ``<array job>_<task>`` and heterogeneous components as ``<id>+<offset>``;
  ``JobIDRaw`` is the unique numeric id of the record (each array task and each het component has its own).
  Records are keyed by ``JobIDRaw`` (by ``JobID`` when the output lacks it), one record per key (the last wins).
- ``ReqMem``: since SLURM 21.08 the job's total requested memory (sacct's print.c takes it from the job's
  requested TRES ``mem``), in MiB unless suffixed; before 21.08 it carried ``n`` (per node) or ``c`` (per CPU).
- ``TotalCPU`` = UserCPU + SystemCPU of the job's steps, ``[D-[HH:]]MM:SS[.mmm]``.
- ``Timelimit`` ``UNLIMITED``/``Partition_Limit``/``INVALID`` are not durations: left out (``None``).
- ``End`` is ``Unknown`` for jobs that have not ended; ``Start`` is ``None``/``Unknown`` for jobs that never ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import ParseIssue, ParseResult
from .slurm_outcome import classify, parse_exit_code, parse_state
from .slurm_units import gc_paused, is_null, parse_duration, parse_size, parse_timestamp, parse_tres, per_parse_cache

#: The columns the accounting collector asks for, ``JobName`` last (see module docstring).
SACCT_FIELDS: tuple[str, ...] = (
    "JobIDRaw",
    "JobID",
    "User",
    "Account",
    "Partition",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Submit",
    "Start",
    "End",
    "Elapsed",
    "Timelimit",
    "AllocCPUS",
    "ReqCPUS",
    "ReqMem",
    "MaxRSS",
    "TotalCPU",
    "AllocTRES",
    "ReqTRES",
    "NNodes",
    "NodeList",
    "JobName",
)

#: The collector's delimiter: ASCII unit separator (0x1F), a control character that job names, account and
#: partition names do not contain in practice (``sbatch -J`` takes it only through deliberate quoting).
SACCT_DELIMITER = "\x1f"

#: Delimiters tried, in order, when the caller does not name one.
DELIMITERS: tuple[str, ...] = (SACCT_DELIMITER, "\u2603", "|")

# Column aliases (sacct(1) accepts NCPUS for AllocCPUS).
_ALIASES = {"ncpus": "alloccpus"}


@dataclass(frozen=True)
class SacctStep:
    """One step line of a job.

    Attributes:
        step_id: the part after the dot: ``batch``, ``extern``, ``interactive``, ``0``...
        state: step state, upper-case (``COMPLETED``, ``OUT_OF_MEMORY``, ``CANCELLED``...).
        exit_code: exit status from ``ExitCode`` (``None`` when absent).
        exit_signal: signal number from ``ExitCode``.
        max_rss_bytes: ``MaxRSS`` in bytes.
        total_cpu_seconds: ``TotalCPU`` in seconds.

    """

    step_id: str
    state: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    max_rss_bytes: float | None = None
    total_cpu_seconds: float | None = None


@dataclass
class SacctJob:
    """One job (allocation line) with its steps.

    Every attribute is ``None`` (or empty) when the output did not have the column or SLURM printed a null.

    Attributes:
        job_id: displayed id (``123``, ``123_4`` for array tasks, ``123+0`` for het components).
        job_id_raw: unique record id (``JobIDRaw``; ``job_id`` when the output lacks it) - the dedup key.
        name, user, account, partition, nodelist: text fields (``NodeList`` ``None assigned`` -> ``None``).
        state: upper-case state without ``by <uid>``; ``cancelled_by``: the uid of ``CANCELLED by <uid>``.
        exit_code, exit_signal: the job's ``ExitCode`` ``code:signal``.
        derived_exit_code, derived_exit_signal: ``DerivedExitCode`` (highest over the steps).
        submit, start, end: Unix seconds.
        elapsed_seconds, timelimit_seconds, total_cpu_seconds: seconds.
        alloc_cpus, req_cpus, nnodes: counts.
        req_mem: ``(bytes, per)`` from ``ReqMem``; ``per`` is ``"n"``, ``"c"`` or ``""`` (total).
        own_max_rss_bytes: ``MaxRSS`` printed on the allocation line itself (usually empty).
        alloc_tres, req_tres: parsed ``AllocTRES``/``ReqTRES`` (``mem`` in bytes).
        steps: the job's step lines.

    """

    job_id: str
    job_id_raw: str
    name: str | None = None
    user: str | None = None
    account: str | None = None
    partition: str | None = None
    state: str | None = None
    cancelled_by: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    derived_exit_code: int | None = None
    derived_exit_signal: int | None = None
    submit: float | None = None
    start: float | None = None
    end: float | None = None
    elapsed_seconds: float | None = None
    timelimit_seconds: float | None = None
    total_cpu_seconds: float | None = None
    alloc_cpus: int | None = None
    req_cpus: int | None = None
    req_mem: tuple[float, str] | None = None
    own_max_rss_bytes: float | None = None
    alloc_tres: dict[str, float] = field(default_factory=dict)
    req_tres: dict[str, float] = field(default_factory=dict)
    nnodes: int | None = None
    nodelist: str | None = None
    steps: list[SacctStep] = field(default_factory=list)

    @property
    def max_rss_bytes(self) -> float | None:
        """Peak resident set size: the maximum ``MaxRSS`` over the steps (and the allocation line), bytes.

        A ``MaxRSS`` of 0 means the accounting gatherer never sampled the step (it ended within
        ``JobAcctGatherFrequency``; the lab's OOM-killed job shows ``0``), not that it used no memory, so zeros
        are ignored and a job whose steps all report 0 has no peak (``None``).
        """
        vals = [s.max_rss_bytes for s in self.steps if s.max_rss_bytes]
        if self.own_max_rss_bytes:
            vals.append(self.own_max_rss_bytes)
        return max(vals) if vals else None

    @property
    def requested_memory_bytes(self) -> float | None:
        """Total requested memory of the job in bytes.

        ``ReqMem`` per node (``n``) x ``NNodes``, per CPU (``c``) x ``AllocCPUS`` (``ReqCPUS`` when the job never
        got an allocation), or the plain total of SLURM >= 21.08; ``ReqTRES`` ``mem`` when ``ReqMem`` is absent.
        """
        if self.req_mem is None:
            return self.req_tres.get("mem")
        value, per = self.req_mem
        if per == "n":
            return value * self.nnodes if self.nnodes else None
        if per == "c":
            cpus = self.alloc_cpus or self.req_cpus
            return value * cpus if cpus else None
        return value

    @property
    def requested_gpus(self) -> float | None:
        """GPUs requested: ``gres/gpu`` of ``ReqTRES``, else of ``AllocTRES``.

        When a TRES string is present but names no GPU the job asked for none (0); with no TRES at all the
        count is unknown (``None``). Typed entries (``gres/gpu:a100=2``) count only when the untyped total is
        missing.
        """
        for tres in (self.req_tres, self.alloc_tres):
            n = _gpus(tres)
            if n is not None:
                return n
        if self.req_tres or self.alloc_tres:
            return 0.0
        return None

    @property
    def cpu_efficiency(self) -> float | None:
        """``TotalCPU / (Elapsed x AllocCPUS)``, the figure seff(1) (SLURM contribs/seff) reports as "CPU Efficiency".

        ``None`` when a term is missing or the denominator is 0 (a job that never ran). Not clamped: values
        a little above 1 happen when accounting samples overlap.
        """
        if self.total_cpu_seconds is None or not self.elapsed_seconds or not self.alloc_cpus:
            return None
        return self.total_cpu_seconds / (self.elapsed_seconds * self.alloc_cpus)

    @property
    def memory_efficiency(self) -> float | None:
        """Peak step ``MaxRSS`` / :attr:`requested_memory_bytes`.

        ``MaxRSS`` is the largest RSS of one task (sacct(1)), so for multi-node or multi-task jobs this
        understates the job's total use. It can exceed 1 when the memory limit is not enforced. ``None`` when a
        term is missing or nothing was requested (``--mem=0``).
        """
        rss, req = self.max_rss_bytes, self.requested_memory_bytes
        if rss is None or not req:
            return None
        return rss / req

    @property
    def failure_class(self) -> str:
        """The job's failure class (:func:`nomade.exporter.parsers.slurm_outcome.classify`)."""
        return classify(
            self.state,
            self.exit_code,
            self.exit_signal,
            step_states=[s.state for s in self.steps],
            derived_exit_code=self.derived_exit_code,
            derived_exit_signal=self.derived_exit_signal,
        )


def _gpus(tres: dict[str, float]) -> float | None:
    if "gres/gpu" in tres:
        return tres["gres/gpu"]
    typed = [v for k, v in tres.items() if k.startswith("gres/gpu:")]
    return sum(typed) if typed else None


def parse_sacct(
    text: str | bytes, fields: Sequence[str] | None = None, delimiter: str | None = None
) -> ParseResult[SacctJob]:
    """Parse sacct output (parsable text with header or ``fields``, or ``--json``) into :class:`SacctJob` records.

    Args:
        text: the command's standard output; bytes are decoded as UTF-8 with invalid bytes replaced, as the
            command runner does.
        fields: column names for ``--noheader`` output (``sacct --format`` names, case-insensitive). When the
            first line is a header it wins.
        delimiter: the column delimiter; detected from :data:`DELIMITERS` when ``None``.

    Returns:
        Records in input order of their allocation lines; issues for skipped lines and unparseable fields
        (the field is then ``None``, the record kept). Empty text gives no records and no issues.

    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stripped = text.strip()
    if not stripped:
        return ParseResult()
    if stripped.startswith("{"):
        return parse_sacct_json(text)
    return _parse_parsable(text, fields, delimiter)


def _canon(name: str) -> str:
    n = name.strip().lower()
    n = n.split("%", 1)[0]  # "JobName%30" in a --format list
    return _ALIASES.get(n, n)


_HEADER_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def _is_header(tokens: list[str]) -> bool:
    canon = [_canon(t) for t in tokens]
    return (
        bool(canon) and all(_HEADER_WORD.match(t.strip()) for t in tokens) and ("jobid" in canon or "jobidraw" in canon)
    )


_JOB_KEY = re.compile(r"^\d+(?:[_+][^.\s]*)?(?:\.\S+)?$")


#: Characters per block when the text is split into lines: lines are produced block by block so that the whole
#: output is never held twice (once as text, once as a list of lines).
_BLOCK_CHARS = 1 << 20


def _blocks(text: str) -> Iterator[str]:
    """Consecutive pieces of ``text`` that end at a newline (the newline itself dropped), about 1 MiB each."""
    pos, n = 0, len(text)
    while pos < n:
        end = text.find("\n", pos + _BLOCK_CHARS)
        if end < 0:
            yield text[pos:]
            return
        yield text[pos:end]
        pos = end + 1


_memo = per_parse_cache


def _memo_tres() -> Callable[[str], dict[str, float]]:
    """:func:`parse_tres` with a per-parse cache; every call returns a fresh dict (records never share one)."""
    cache: dict[str, dict[str, float]] = {}
    get = cache.get

    def conv(raw: str) -> dict[str, float]:
        v = get(raw)
        if v is None:
            v = cache[raw] = parse_tres(raw)
        return dict(v)

    return conv


def _none(raw: str) -> None:
    """Converter of a column the output does not have."""
    return None


def _parse_parsable(text: str, fields: Sequence[str] | None, delimiter: str | None) -> ParseResult[SacctJob]:
    res: ParseResult[SacctJob] = ParseResult()
    blocks = _blocks(text)
    lines: list[str] = []
    pos = 0  # index in ``lines`` of the next line to read
    line_no = 0  # 1-based number of the line last read
    first: str | None = None
    for block in blocks:
        lines = block.split("\n")
        for pos, ln in enumerate(lines, 1):  # noqa: B007 - pos is used after the loop
            line_no += 1
            if ln and not ln.isspace():  # ``ln.strip()`` is empty exactly for "" and all-whitespace lines
                first = ln.rstrip("\r")
                break
        if first is not None:
            break
    if first is None:
        return res
    if delimiter is None:
        delimiter = next((d for d in DELIMITERS if d in first), None)
        if delimiter is None and fields is not None and len(fields) == 1:
            delimiter = "|"
    if delimiter is None:
        res.skip(0, "unrecognised sacct output: no known delimiter", first)
        return res
    head = first.split(delimiter)
    if head and head[-1] == "":
        head = head[:-1]
    header = _is_header(head)
    if header:
        cols = [_canon(t) for t in head]
    elif fields is not None:
        cols = [_canon(f) for f in fields]
    else:
        res.skip(0, "sacct output without header and no field list: columns unknown", first)
        return res
    if "jobidraw" not in cols and "jobid" not in cols:
        res.skip(0, "sacct output lacks JobID and JobIDRaw", first)
        return res
    builder = _Builder(cols, delimiter, res)
    with gc_paused():
        if not header:
            builder.feed([first], line_no)
        line_no = builder.feed(lines[pos:], line_no + 1)
        for block in blocks:
            line_no = builder.feed(block.split("\n"), line_no)
        builder.finish()
    return res


def _text(raw: str) -> str | None:
    t = raw.strip()
    return None if is_null(t) or t == "None assigned" else t


def _count(raw: str) -> int | None:
    """A count as sacct prints it: digits, possibly with a 1024-based suffix from convert_num_unit (``1K``)."""
    t = raw.strip()
    if is_null(t):
        return None
    size = parse_size(t)
    if size is None or size[1]:
        raise ValueError(f"bad count {raw!r}")
    if size[0] != int(size[0]):
        raise ValueError(f"bad count {raw!r}")
    return int(size[0])


def _bytes(raw: str) -> float | None:
    if raw.isascii():  # the usual MaxRSS "123456K" / "0": parse_size's fast paths, without the tuple
        if raw.isdigit():
            return float(raw)
        if raw[-1:] in _SIZE_UNITS and raw[:-1].isdigit():
            return float(raw[:-1]) * _SIZE_UNITS[raw[-1]]
    size = parse_size(raw)
    if size is None:
        return None
    if size[1]:
        raise ValueError(f"bad size {raw!r}")
    return size[0]


_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def _reqmem(raw: str) -> tuple[float, str] | None:
    return parse_size(raw, "M")


class _Builder:
    """Turns the lines of one parsable sacct output into :class:`SacctJob` records as they arrive.

    Semantics (the module docstring): records keyed by ``JobIDRaw`` (``JobID`` without it), the last allocation
    line of a key wins and keeps its place in input order, every step line of a key belongs to that last
    allocation line wherever it appears, and step lines whose job never appears are reported at the end, in
    the order their keys first appeared. A field that does not parse is ``None`` plus one issue
    ``"<column>: <reason>"``, in the order of the record's attributes. Issue order is that of the former
    two-pass parser: wrong field counts first, then bad ids and fields in line order, then orphaned steps.

    Speed: columns are resolved to positions once; field converters are cached per parse for columns with few
    distinct values (states, exit codes, counts, TRES, memory requests, limits, times), and a line is converted
    without any per-field exception handling; only a line whose conversion raises is converted again field by
    field to record which fields failed (the converters are pure, so the retry sees the same values).
    """

    def __init__(self, cols: list[str], delimiter: str, res: ParseResult[SacctJob]) -> None:
        self.res = res
        self.delimiter = delimiter
        self.n = len(cols)
        self.jobname_last = cols[-1] == "jobname"
        # dict(zip(cols, parts)) semantics: a repeated column name takes the LAST position.
        self.index = idx = {c: i for i, c in enumerate(cols)}
        ts = _memo(parse_timestamp)
        exit_code = _memo(parse_exit_code)
        count = _memo(_count)
        memo_text = _memo(_text)
        duration = _memo(parse_duration)
        # In the order the attributes of a job are read, which is the order of its field issues.
        self.conv: dict[str, Callable[[str], Any]] = {
            "state": _memo(parse_state),
            "exitcode": exit_code,
            "derivedexitcode": exit_code,
            "jobname": _text,
            "user": memo_text,
            "account": memo_text,
            "partition": memo_text,
            "submit": ts,
            "start": ts,
            "end": ts,
            "elapsed": duration,
            "timelimit": duration,
            "totalcpu": parse_duration,  # many distinct values (milliseconds under an hour): not cached
            "alloccpus": count,
            "reqcpus": count,
            "reqmem": _memo(_reqmem),
            "maxrss": _bytes,
            "alloctres": _memo_tres(),
            "reqtres": _memo_tres(),
            "nnodes": count,
            "nodelist": _text,
        }
        # (position, converter) per attribute; a missing column reads position 0 through a converter giving None.
        self.cols = {name: (idx[name], fn) if name in idx else (0, _none) for name, fn in self.conv.items()}
        self.i_raw = idx.get("jobidraw")
        self.i_id = idx.get("jobid")
        self.jobs: dict[str, SacctJob] = {}
        self.shape_issues: list[ParseIssue] = []
        # Step lines of keys without an allocation line so far: key -> [(line number, step)].
        self.pending: dict[str, list[tuple[int, SacctStep]]] = {}
        self.match_key = _JOB_KEY.match

    def feed(self, lines: list[str], first_no: int) -> int:
        """Add consecutive lines of the output, the first being line ``first_no`` (1-based).

        Blank lines are skipped. Returns the number of the line after them.
        """
        n, delimiter, res = self.n, self.delimiter, self.res
        i_raw, i_id = self.i_raw, self.i_id
        jobs, pending, match_key = self.jobs, self.pending, self.match_key
        (i_st, f_st), (i_ec, f_ec), (i_rss, f_rss), (i_cpu, f_cpu) = (
            self.cols[k] for k in ("state", "exitcode", "maxrss", "totalcpu")
        )
        job_cols = tuple(self.cols.values())
        line_no = first_no - 1
        for line in lines:
            line_no += 1
            if not line or line.isspace():  # ``line.strip()`` is empty exactly then
                continue
            if line[-1] == "\r":
                line = line.rstrip("\r")
            parts = line.split(delimiter)
            if len(parts) != n:
                parts = self._fit(parts, line_no, line)
                if parts is None:
                    continue
            key = (parts[i_raw].strip() if i_raw is not None else "") or (
                parts[i_id].strip() if i_id is not None else ""
            )
            if not match_key(key):
                res.skip(line_no, f"bad job id {key!r}", key)
                continue
            base, dot, step_id = key.partition(".")
            if dot:
                try:
                    st, ec, rss, cpu = f_st(parts[i_st]), f_ec(parts[i_ec]), f_rss(parts[i_rss]), f_cpu(parts[i_cpu])
                except (ValueError, OverflowError):
                    get = self._checked(parts, line_no)
                    st, ec, rss, cpu = get("state"), get("exitcode"), get("maxrss"), get("totalcpu")
                step = SacctStep(
                    step_id=step_id,
                    state=st[0] if st else None,
                    exit_code=ec[0] if ec else None,
                    exit_signal=ec[1] if ec else None,
                    max_rss_bytes=rss,
                    total_cpu_seconds=cpu,
                )
                job = jobs.get(base)
                if job is not None:
                    job.steps.append(step)
                else:
                    pending.setdefault(base, []).append((line_no, step))
                continue
            try:
                v = [f(parts[i]) for i, f in job_cols]
            except (ValueError, OverflowError):
                get = self._checked(parts, line_no)
                v = [get(name) for name in self.cols]
            self._add_job(base, (parts[i_id].strip() if i_id is not None else "") or base, v)
        return line_no + 1

    def _fit(self, parts: list[str], line_no: int, line: str) -> list[str] | None:
        """Fix a line with the wrong field count, or count it as an issue (``None``)."""
        n = self.n
        if len(parts) == n + 1 and parts[-1] == "":
            parts.pop()  # --parsable: trailing delimiter
        if len(parts) > n and self.jobname_last:
            parts = parts[: n - 1] + [self.delimiter.join(parts[n - 1 :])]
        if len(parts) != n:
            self.shape_issues.append(ParseIssue.at(line_no, f"expected {n} fields, got {len(parts)}", line))
            return None
        return parts

    def _add_job(self, base: str, job_id: str, v: list[Any]) -> None:
        (st, ec, dec, name, user, account, partition, submit, start, end, elapsed, timelimit, cpu, alloc_cpus,
         req_cpus, req_mem, rss, alloc_tres, req_tres, nnodes, nodelist) = v  # fmt: skip
        old = self.jobs.pop(base, None)  # keep input order of the last duplicate
        if old is not None:
            steps = old.steps  # every step of the key belongs to its last allocation line
        else:
            waiting = self.pending.pop(base, None)
            steps = [s for _, s in waiting] if waiting else []
        self.jobs[base] = SacctJob(
            job_id=job_id,
            job_id_raw=base,
            name=name,
            user=user,
            account=account,
            partition=partition,
            state=st[0] if st else None,
            cancelled_by=st[1] if st else None,
            exit_code=ec[0] if ec else None,
            exit_signal=ec[1] if ec else None,
            derived_exit_code=dec[0] if dec else None,
            derived_exit_signal=dec[1] if dec else None,
            submit=submit,
            start=start,
            end=end,
            elapsed_seconds=elapsed,
            timelimit_seconds=timelimit,
            total_cpu_seconds=cpu,
            alloc_cpus=alloc_cpus,
            req_cpus=req_cpus,
            req_mem=req_mem,
            own_max_rss_bytes=rss,
            alloc_tres=alloc_tres or {},
            req_tres=req_tres or {},
            nnodes=nnodes,
            nodelist=nodelist,
            steps=steps,
        )

    def _checked(self, parts: list[str], line_no: int) -> Callable[[str], Any]:
        """Field getter that turns a conversion error into an issue ``"<column>: <reason>"`` and ``None``."""

        def get(name: str) -> Any:
            i = self.index.get(name)
            if i is None:
                return None
            raw = parts[i]
            try:
                return self.conv[name](raw)
            except (ValueError, OverflowError) as exc:
                self.res.skip(line_no, f"{name}: {exc}", raw)
                return None

        return get

    def finish(self) -> None:
        """Report step lines whose job never appeared and hand the records over, in input order."""
        for base, items in self.pending.items():
            for line_no, step in items:
                self.res.skip(line_no, "step line without its job's allocation line", f"{base}.{step.step_id}")
        self.res.records.extend(self.jobs.values())
        # Lines with the wrong field count are reported before every other issue, as when all lines were split
        # before any record was built.
        self.res.issues[:0] = self.shape_issues


# --- sacct --json ------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """A JSON number, or a data_parser ``{"set", "infinite", "number"}`` object (unset/infinite -> None)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, dict) and "number" in v:
        if not v.get("set", True) or v.get("infinite", False):
            return None
        return _num(v["number"])
    raise ValueError(f"not a number: {v!r}")


def _int(v: Any) -> int | None:
    n = _num(v)
    return None if n is None else int(n)


def _epoch(v: Any) -> float | None:
    n = _num(v)
    return n if n else None  # 0 means "not set" in slurmdbd records


def _json_state(v: Any) -> str | None:
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None or not isinstance(v, str):
        return None
    parsed = parse_state(v)
    return parsed[0] if parsed else None


def _json_exit(v: Any) -> tuple[int | None, int | None]:
    if not isinstance(v, dict):
        return None, None
    code = _int(v.get("return_code"))
    sig = None
    s = v.get("signal")
    if isinstance(s, dict):
        sig = _int(s.get("signal_id", s.get("id")))
    status = v.get("status")
    if isinstance(status, list):
        status = status[0] if status else None
    if sig is None and status not in ("SIGNALED",):
        sig = 0 if code is not None else None
    return code, sig


def _json_tres(items: Any) -> dict[str, float]:
    """TRES list ``[{"type": "gres", "name": "gpu", "count": 1}, ...]`` -> parse_tres-style dict (mem in bytes)."""
    out: dict[str, float] = {}
    if not isinstance(items, list):
        return out
    for it in items:
        if not isinstance(it, dict) or "type" not in it:
            continue
        key = str(it["type"]) + (f"/{it['name']}" if it.get("name") else "")
        count = _num(it.get("count"))
        if count is None:
            continue
        out[key] = count * 1024 * 1024 if key == "mem" else count  # job TRES mem is MiB in slurmdbd
    return out


def _seconds(v: Any) -> float | None:
    if isinstance(v, dict) and "seconds" in v:
        s, us = _num(v.get("seconds")), _num(v.get("microseconds")) or 0.0
        return None if s is None else s + us / 1e6
    return _num(v)


def parse_sacct_json(text: str) -> ParseResult[SacctJob]:
    """Parse ``sacct --json`` output (openapi dbv0.0.37 and data_parser v0.0.39+) into :class:`SacctJob` records.

    Mapping: ``time.limit`` is minutes (as ``TimelimitRaw``), other times Unix seconds (0 = unknown);
    ``tres.requested`` ``mem`` counts are MiB; step ``tres.requested.max`` ``mem`` (the step's MaxRSS) is bytes.
    A job that cannot be read is skipped with an issue (``line_no`` = 0, the JSON has no useful line numbers).
    """
    res: ParseResult[SacctJob] = ParseResult()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        res.skip(0, f"bad JSON: {exc}", text[:200])
        return res
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, list):
        res.skip(0, "JSON without a jobs list", text[:200])
        return res
    out: dict[str, SacctJob] = {}
    for j in jobs:
        try:
            job = _json_job(j)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            res.skip(0, f"unreadable job: {exc}", str(j)[:200])
            continue
        out.pop(job.job_id_raw, None)
        out[job.job_id_raw] = job
    res.records.extend(out.values())
    return res


def _json_job(j: dict[str, Any]) -> SacctJob:
    raw = _int(j["job_id"])
    if raw is None:
        raise ValueError("job without job_id")
    job_id = str(raw)
    arr = j.get("array") or {}
    het = j.get("het") or {}
    task = _int(arr.get("task_id")) if isinstance(arr, dict) else None
    arr_job = _int(arr.get("job_id")) if isinstance(arr, dict) else None
    if arr_job and task is not None:
        job_id = f"{arr_job}_{task}"
    het_id = _int(het.get("job_id")) if isinstance(het, dict) else None
    het_off = _int(het.get("job_offset")) if isinstance(het, dict) else None
    if het_id and het_off is not None:
        job_id = f"{het_id}+{het_off}"
    t = j.get("time") or {}
    limit = _num(t.get("limit"))
    st = j.get("state") or {}
    ec, sig = _json_exit(j.get("exit_code"))
    dec, dsig = _json_exit(j.get("derived_exit_code"))
    tres = j.get("tres") or {}
    alloc = _json_tres(tres.get("allocated"))
    req = _json_tres(tres.get("requested"))
    required = j.get("required") or {}
    steps = []
    for s in j.get("steps") or []:
        sid = (s.get("step") or {}).get("id")
        if isinstance(sid, dict):
            sid = sid.get("step_id", sid.get("id"))
        sid = str(sid if sid is not None else (s.get("step") or {}).get("name", ""))
        sid = sid.split(".", 1)[1] if "." in sid else sid
        sec, ssig = _json_exit(s.get("exit_code"))
        rss = None
        stres = s.get("tres") or {}
        mx = (stres.get("requested") or {}).get("max") if isinstance(stres, dict) else None
        for it in mx or []:
            if isinstance(it, dict) and it.get("type") == "mem":
                rss = _num(it.get("count"))
        st_time = s.get("time") or {}
        steps.append(
            SacctStep(
                step_id=sid,
                state=_json_state(s.get("state")),
                exit_code=sec,
                exit_signal=ssig,
                max_rss_bytes=rss,
                total_cpu_seconds=_seconds(st_time.get("total")),
            )
        )
    return SacctJob(
        job_id=job_id,
        job_id_raw=str(raw),
        name=j.get("name") or None,
        user=j.get("user") or None,
        account=j.get("account") or None,
        partition=j.get("partition") or None,
        state=_json_state(st.get("current") if isinstance(st, dict) else st),
        exit_code=ec,
        exit_signal=sig,
        derived_exit_code=dec,
        derived_exit_signal=dsig,
        submit=_epoch(t.get("submission")),
        start=_epoch(t.get("start")),
        end=_epoch(t.get("end")),
        elapsed_seconds=_num(t.get("elapsed")),
        timelimit_seconds=None if limit is None else limit * 60,
        total_cpu_seconds=_seconds(t.get("total")),
        alloc_cpus=int(alloc["cpu"]) if "cpu" in alloc else None,
        req_cpus=_int(required.get("CPUs")) if isinstance(required, dict) else None,
        req_mem=None,
        alloc_tres=alloc,
        req_tres=req,
        nnodes=_int(j.get("allocation_nodes")),
        nodelist=_text(j.get("nodes") or ""),
        steps=steps,
    )
