"""Parser for ``sacctmgr show associations`` in parsable form: the limits of accounts and users.

The collector runs (see :data:`ASSOC_ARGV`)::

    sacctmgr --readonly --parsable2 show associations
             format=Cluster,Account,User,Partition,GrpTRES,GrpJobs,GrpSubmit,GrpWall,MaxTRES,MaxJobs,MaxSubmit,MaxWall

sacctmgr(1): one header line of titles, then one ``|``-separated line per association. An ACCOUNT association
has an empty ``User``; a USER association names its user and account; ``Partition`` is set only for
partition-specific associations. An empty limit means "no limit"; a limit is removed by setting it to ``-1``
(sacctmgr(1) "GrpTRES ... To clear a previously set value use the modify command with a new value of -1"),
so a displayed negative value is not a limit and is counted as an issue.

Values: ``GrpTRES``/``MaxTRES`` are TRES lists (``cpu=100,mem=200G,gres/gpu=4``; ``mem`` without a suffix is
MiB and is converted to bytes); ``Grp/MaxJobs`` and ``Grp/MaxSubmit`` are integers; ``GrpWall``/``MaxWall``
are durations (``[D-]HH:MM:SS``, ``MM:SS``). Pre-15.08 titles ``GrpCPUs``/``GrpCPU`` and ``GrpMem`` are read as
the ``cpu`` and ``mem`` entries of GrpTRES (``MaxCPUs`` likewise for MaxTRES).

Output without a header (``--noheader``) is read only when the caller names the fields. Anything else gives
one "unrecognised format" issue and no records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .common import ParseResult
from .slurm_units import parse_duration, parse_size

ASSOC_FIELDS: tuple[str, ...] = (
    "Cluster",
    "Account",
    "User",
    "Partition",
    "GrpTRES",
    "GrpJobs",
    "GrpSubmit",
    "GrpWall",
    "MaxTRES",
    "MaxJobs",
    "MaxSubmit",
    "MaxWall",
)
ASSOC_ARGV: tuple[str, ...] = (
    "sacctmgr",
    "--readonly",
    "--parsable2",
    "show",
    "associations",
    "format=" + ",".join(ASSOC_FIELDS),
)

_TRES_TITLES = {"GRPTRES": "grp_tres", "MAXTRES": "max_tres", "MAXTRESPERJOB": "max_tres"}
# Old single-TRES titles -> (record attribute, TRES name).
_OLD_TRES = {
    "GRPCPUS": ("grp_tres", "cpu"),
    "GRPCPU": ("grp_tres", "cpu"),
    "GRPMEM": ("grp_tres", "mem"),
    "GRPNODES": ("grp_tres", "node"),
    "MAXCPUS": ("max_tres", "cpu"),
    "MAXCPU": ("max_tres", "cpu"),
    "MAXNODES": ("max_tres", "node"),
}
_INTS = {"GRPJOBS": "grp_jobs", "GRPSUBMIT": "grp_submit", "GRPSUBMITJOBS": "grp_submit", "MAXJOBS": "max_jobs",
         "MAXSUBMIT": "max_submit", "MAXSUBMITJOBS": "max_submit"}  # fmt: skip
_WALLS = {"GRPWALL": "grp_wall_seconds", "MAXWALL": "max_wall_seconds", "MAXWALLDURATIONPERJOB": "max_wall_seconds"}
TITLES = frozenset({"CLUSTER", "ACCOUNT", "USER", "PARTITION", "SHARE", "PRIORITY", "QOS", "DEF QOS", "LFT", "RGT",
                    "ID", "PAR NAME", "GRPTRESMINS", "GRPTRESRUNMINS", "MAXTRESMINS", "MAXTRESPERNODE",
                    *_TRES_TITLES, *_OLD_TRES, *_INTS, *_WALLS})  # fmt: skip


@dataclass
class Association:
    """One association with its limits; ``None``/absent entries mean "no limit".

    Attributes:
        account: account name.
        user: user name, ``""`` for an account association.
        partition: partition of a partition-specific association, else ``""``.
        cluster: cluster name when printed, else ``""``.
        grp_tres: GrpTRES per TRES name (``mem`` in bytes, others as counts).
        max_tres: MaxTRES (per job) per TRES name, same units.
        grp_jobs, grp_submit, max_jobs, max_submit: job-count limits.
        grp_wall_seconds, max_wall_seconds: wall-time limits in seconds.

    """

    account: str
    user: str = ""
    partition: str = ""
    cluster: str = ""
    grp_tres: dict[str, float] = field(default_factory=dict)
    max_tres: dict[str, float] = field(default_factory=dict)
    grp_jobs: int | None = None
    grp_submit: int | None = None
    max_jobs: int | None = None
    max_submit: int | None = None
    grp_wall_seconds: float | None = None
    max_wall_seconds: float | None = None


def parse_tres_limits(text: str) -> dict[str, float]:
    """Parse a TRES limit list (``cpu=100,mem=200G,gres/gpu=4``); ``mem`` becomes bytes (bare number: MiB).

    Raises:
        ValueError: for an item without ``=``, a non-numeric or negative value.

    """
    out: dict[str, float] = {}
    t = text.strip()
    if not t:
        return out
    for item in t.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"bad TRES item {item!r}")
        out[key] = _tres_value(key, val)
    return out


def _tres_value(key: str, val: str) -> float:
    if key == "mem":
        size = parse_size(val.strip(), "M")
        if size is None:
            raise ValueError(f"bad mem limit {val!r}")
        return size[0]
    num = float(val)
    if not num >= 0 or num == float("inf"):
        raise ValueError(f"bad {key} limit {val!r}")
    return num


def _fill(rec: Association, f: dict[str, str]) -> list[str]:
    issues: list[str] = []
    who = f"{rec.account}/{rec.user}"
    for title, text in f.items():
        t = text.strip()
        if not t:
            continue
        try:
            if title in _TRES_TITLES:
                getattr(rec, _TRES_TITLES[title]).update(parse_tres_limits(t))
            elif title in _OLD_TRES:
                attr, name = _OLD_TRES[title]
                getattr(rec, attr)[name] = _tres_value(name, t)
            elif title in _INTS:
                if not (t.isascii() and t.isdigit()):
                    raise ValueError(f"{t!r} is not a limit")
                setattr(rec, _INTS[title], int(t))
            elif title in _WALLS:
                setattr(rec, _WALLS[title], parse_duration(t))
        except ValueError as exc:
            issues.append(f"{who}: {title}: {exc}")
    return issues


def parse_associations(text: str, fields: Sequence[str] | None = None) -> ParseResult[Association]:
    """Parse ``sacctmgr --parsable2 show associations`` output (header kept, :data:`ASSOC_ARGV`).

    Args:
        text: the output.
        fields: the ``format=`` field names, for output printed with ``--noheader`` only.

    Returns:
        One :class:`Association` per line with an account. A line with the wrong field count or no account
        is skipped as an issue; a bad limit is left out and counted.

    """
    result: ParseResult[Association] = ParseResult()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return result
    first = lines[start].rstrip("\r\n")
    head = [h.strip().upper() for h in first.split("|")]
    trailing = len(head) > 1 and head[-1] == ""
    if trailing:
        head.pop()
    if "|" in first and "ACCOUNT" in head and all(h in TITLES for h in head):
        headers, body = head, range(start + 1, len(lines))
    elif fields is not None and "|" in first and "ACCOUNT" in {f.upper() for f in fields}:
        headers = [f.strip().upper() for f in fields]
        body = range(start, len(lines))
        trailing = first.endswith("|") and len(first.split("|")) == len(headers) + 1
    else:
        result.skip(0, "unrecognised format", first.strip())
        return result
    for idx in body:
        line = lines[idx].rstrip("\r\n")
        if not line.strip():
            continue
        values = line.split("|")
        if trailing and values and values[-1] == "":
            values.pop()
        if len(values) != len(headers):
            result.skip(idx + 1, f"expected {len(headers)} fields, got {len(values)}", line)
            continue
        f = dict(zip(headers, values, strict=True))
        account = f.get("ACCOUNT", "").strip()
        if not account:
            result.skip(idx + 1, "association without account", line)
            continue
        rec = Association(
            account=account,
            user=f.get("USER", "").strip(),
            partition=f.get("PARTITION", "").strip(),
            cluster=f.get("CLUSTER", "").strip(),
        )
        for issue in _fill(rec, f):
            result.skip(idx + 1, issue, line)
        result.records.append(rec)
    return result
