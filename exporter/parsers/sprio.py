"""Parser for ``sprio`` output: the priority factors of pending jobs (multifactor priority plugin only).

The collector runs (see :data:`SPRIO_ARGV`)::

    sprio --format=%i|%r|%u|%Y|%S|%A|%B|%F|%J|%P|%Q|%N|%T

sprio(1) ``--format``: a field spec without a width is printed whole (``_print_str`` in ``src/sprio/print.c``
with width 0), and any text after a spec is printed after it on the header line as on job lines, so this
gives a ``|``-separated table with its header::

    JOBID|PARTITION|USER|PRIORITY|SITE|AGE|ASSOC|FAIRSHARE|JOBSIZE|PARTITION|QOS|NICE|TRES

``%Y`` etc. are the WEIGHTED factors (integers, ``%.0f``; the job priority is their sum plus the TRES factors,
minus the nice value, ``get_priority_from_factors``); ``%r`` (partition name) and ``%P`` (partition factor)
share the title ``PARTITION``: when it appears twice the first is the name and the second the factor, when it
appears once it is the name unless every value is a number. ``%T`` is a list ``cpu=12,mem=3`` whose values are
summed into one ``tres`` factor; a TRES cell cut by a width (``%20T`` in the default format:
``cpu=0.01,mem=0.01,gr``) is counted as an issue and left out.

Also read: sprio's own padded layouts (default, ``-l``, ``-n`` normalised, ``-w`` weights row; the ``Weights``
row is not a job and is skipped). A header that is not made of sprio titles, or lacks JOBID or PRIORITY, gives
one "unrecognised format" issue and no records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .common import ParseResult

SPRIO_FORMAT = "%i|%r|%u|%Y|%S|%A|%B|%F|%J|%P|%Q|%N|%T"
SPRIO_ARGV: tuple[str, ...] = ("sprio", f"--format={SPRIO_FORMAT}")

# Header titles printed by src/sprio/print.c (sprio 17.x-25.x).
TITLES = frozenset(
    {"JOBID", "PARTITION", "USER", "ACCOUNT", "PRIORITY", "SITE", "AGE", "ASSOC", "FAIRSHARE", "JOBSIZE", "QOS",
     "QOSNAME", "NICE", "TRES", "CLUSTER"}
)  # fmt: skip
# Numeric factor columns -> factor name used in metrics (PARTITION is handled apart).
FACTOR_TITLES = {
    "SITE": "site",
    "AGE": "age",
    "ASSOC": "assoc",
    "FAIRSHARE": "fairshare",
    "JOBSIZE": "jobsize",
    "QOS": "qos",
    "NICE": "nice",
}


@dataclass
class PriorityRow:
    """One sprio line: one pending job in one partition.

    Attributes:
        job_id: the job id as printed.
        partition: the partition name (``None`` when the output has no partition-name column).
        user: user name when printed.
        priority: the job priority (weighted: an integer; normalised output: 0-1).
        factors: factor name (``age``, ``assoc``, ``fairshare``, ``jobsize``, ``partition``, ``qos``,
            ``site``, ``nice``, ``tres``) -> value, only those printed and readable.
        normalized: the output was ``sprio -n`` (values 0-1) rather than weighted.

    """

    job_id: str
    partition: str | None = None
    user: str | None = None
    priority: float | None = None
    factors: dict[str, float] = field(default_factory=dict)
    normalized: bool = False


def _num(text: str) -> float:
    v = float(text.strip())
    if not math.isfinite(v):
        raise ValueError(f"not finite: {text!r}")
    return v


def _is_num(text: str) -> bool:
    try:
        _num(text)
    except ValueError:
        return False
    return True


def tres_sum(text: str) -> float | None:
    """Sum the values of a sprio TRES factor list (``cpu=12,mem=3``); empty text gives ``None``.

    Raises:
        ValueError: for an item without ``=`` or a non-numeric value (a truncated list).

    """
    t = text.strip()
    if not t:
        return None
    total = 0.0
    for item in t.split(","):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad TRES factor item {item!r} (truncated?)")
        total += _num(val)
    return total


def parse_sprio(text: str) -> ParseResult[PriorityRow]:
    """Parse sprio output that starts with its header (:data:`SPRIO_ARGV`'s, or sprio's padded layouts).

    Returns:
        One :class:`PriorityRow` per job line. A line with the wrong field count or a bad job id is skipped
        as an issue; a bad number leaves that factor out and is counted. Unrecognised text gives one
        "unrecognised format" issue and no records; empty text gives nothing.

    """
    result: ParseResult[PriorityRow] = ParseResult()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return result
    header_line = lines[start]
    delim: str | None = "|" if "|" in header_line else None

    def split(line: str) -> list[str]:
        if delim is None:
            return line.split()
        return [p.strip() for p in line.rstrip("\r\n").split(delim)]

    headers = [h.upper() for h in split(header_line)]
    if not headers or not set(headers) <= TITLES or "JOBID" not in headers or "PRIORITY" not in headers:
        result.skip(0, "unrecognised format", header_line.strip())
        return result
    rows: list[tuple[int, str, list[str]]] = []
    for idx in range(start + 1, len(lines)):
        line = lines[idx]
        if not line.strip():
            continue
        values = split(line)
        if values and values[0] == "Weights":
            continue  # sprio -w: the configured weights, not a job
        if len(values) != len(headers):
            result.skip(idx + 1, f"expected {len(headers)} fields, got {len(values)}", line)
            continue
        rows.append((idx + 1, line, values))
    part_cols = [i for i, h in enumerate(headers) if h == "PARTITION"]
    name_col: int | None = None
    factor_col: int | None = None
    if len(part_cols) >= 2:
        name_col, factor_col = part_cols[0], part_cols[1]
    elif part_cols:
        col = part_cols[0]
        if rows and all(_is_num(v[col]) for _, _, v in rows):
            factor_col = col
        else:
            name_col = col
    prio_col = headers.index("PRIORITY")
    normalized = any("." in v[prio_col] for _, _, v in rows)
    for no, line, values in rows:
        job_id = values[headers.index("JOBID")]
        if not job_id or not job_id.replace("_", "").isdigit():
            result.skip(no, f"bad job id {job_id!r}", line)
            continue
        row = PriorityRow(job_id=job_id, normalized=normalized)
        if name_col is not None:
            row.partition = values[name_col] or None
        if "USER" in headers:
            row.user = values[headers.index("USER")] or None
        try:
            row.priority = _num(values[prio_col])
        except ValueError:
            result.skip(no, f"job {job_id}: bad priority {values[prio_col]!r}", line)
        for i, h in enumerate(headers):
            name = "partition" if i == factor_col else FACTOR_TITLES.get(h)
            if name is None or (h == "PARTITION" and i != factor_col):
                continue
            try:
                row.factors[name] = _num(values[i])
            except ValueError:
                result.skip(no, f"job {job_id}: bad {h} {values[i]!r}", line)
        if "TRES" in headers:
            try:
                tres = tres_sum(values[headers.index("TRES")])
            except ValueError as exc:
                result.skip(no, f"job {job_id}: {exc}", line)
            else:
                if tres is not None:
                    row.factors["tres"] = tres
        result.records.append(row)
    return result
