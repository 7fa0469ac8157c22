"""Parser for ``sshare --all --parsable2`` (``-P``) and ``--parsable`` (``-p``) output.

The collector runs (see :data:`SSHARE_ARGV`)::

    sshare --all --parsable2 --format=Account,User,Partition,RawShares,NormShares,RawUsage,NormUsage,
                                      EffectvUsage,FairShare,LevelFS,GrpTRESMins,GrpTRESRaw,TRESRunMins

Layout (``process()`` in ``src/sshare/process.c``; sshare(1)): one header line of field titles, then one line
per association, ``|``-separated. The association tree is shown by leading spaces in the Account column
(one per level, also in parsable output); a USER association has its user name in ``User`` and its parent
account in ``Account``; an ACCOUNT association has an empty ``User``. Values:

* ``RawShares``: an integer, ``parent`` (the association uses its parent's shares: no value of its own), or
  empty (the root association);
* ``NormShares``, ``NormUsage``, ``EffectvUsage``, ``FairShare``, ``LevelFS``: ``%f`` doubles, empty when
  unset; ``FairShare`` is empty on account rows under Fair Tree; ``LevelFS`` may be ``inf`` (no usage, Fair
  Tree: sshare(1) "Level FS ... Associations with no usage receive the highest possible value, infinity");
* ``RawUsage``: decayed usage in TRES-billing-seconds (an integer);
* ``GrpTRESMins``, ``GrpTRESRaw``, ``TRESRunMins``: TRES strings ``cpu=N,mem=N,...`` in TRES-minutes
  (``GrpTRESRaw`` and ``TRESRunMins`` are seconds / 60 truncated by sshare; ``mem`` is in MiB).

Titles are matched case-insensitively, so any ``--format`` order works. Output without a header (``-n``) is
read only when the caller names the fields; the padded non-parsable layout (empty cells cannot be told apart)
and anything else give one "unrecognised format" issue and no records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .common import ParseResult

SSHARE_FIELDS: tuple[str, ...] = (
    "Account",
    "User",
    "Partition",
    "RawShares",
    "NormShares",
    "RawUsage",
    "NormUsage",
    "EffectvUsage",
    "FairShare",
    "LevelFS",
    "GrpTRESMins",
    "GrpTRESRaw",
    "TRESRunMins",
)
SSHARE_ARGV: tuple[str, ...] = ("sshare", "--all", "--parsable2", "--format=" + ",".join(SSHARE_FIELDS))

# Every title sshare's --helpformat lists (22.05-25.11), upper case.
TITLES = frozenset(
    {"ACCOUNT", "CLUSTER", "EFFECTVUSAGE", "FAIRSHARE", "GRPTRESMINS", "GRPTRESRAW", "ID", "LEVELFS",
     "NORMSHARES", "NORMUSAGE", "PARTITION", "RAWSHARES", "RAWUSAGE", "TRESRUNMINS", "USER"}
)  # fmt: skip
_FLOATS = {
    "NORMSHARES": "norm_shares",
    "NORMUSAGE": "norm_usage",
    "EFFECTVUSAGE": "effective_usage",
    "FAIRSHARE": "fairshare",
    "LEVELFS": "level_fs",
}
_TRES = {"GRPTRESMINS": "grp_tres_mins", "GRPTRESRAW": "grp_tres_raw", "TRESRUNMINS": "tres_run_mins"}


@dataclass
class ShareRow:
    """One sshare association line.

    Attributes:
        account: account name without the tree indentation (for a user row: the user's account).
        user: user name, ``""`` on account rows.
        partition: partition of a partition-specific association, else ``""``.
        depth: tree depth (leading spaces of the Account column; root is 0).
        raw_shares: ``RawShares``; ``None`` when empty or ``parent``.
        uses_parent_shares: ``RawShares`` was ``parent``.
        norm_shares: ``NormShares`` (0-1).
        raw_usage: ``RawUsage`` (decayed TRES-billing-seconds).
        norm_usage: ``NormUsage`` (0-1).
        effective_usage: ``EffectvUsage`` (0-1).
        fairshare: ``FairShare`` factor (0-1).
        level_fs: ``LevelFS`` (0 to +inf).
        grp_tres_mins: ``GrpTRESMins`` limit per TRES name (TRES-minutes), ``None`` when not shown.
        grp_tres_raw: ``GrpTRESRaw`` decayed usage per TRES (TRES-minutes).
        tres_run_mins: ``TRESRunMins`` per TRES (TRES-minutes of running jobs' remaining time).

    """

    account: str
    user: str = ""
    partition: str = ""
    depth: int = 0
    raw_shares: float | None = None
    uses_parent_shares: bool = False
    norm_shares: float | None = None
    raw_usage: float | None = None
    norm_usage: float | None = None
    effective_usage: float | None = None
    fairshare: float | None = None
    level_fs: float | None = None
    grp_tres_mins: dict[str, float] | None = None
    grp_tres_raw: dict[str, float] | None = None
    tres_run_mins: dict[str, float] | None = None
    fields: dict[str, str] = field(default_factory=dict, repr=False)


def parse_tres_counts(text: str) -> dict[str, float]:
    """Parse a TRES count string (``cpu=10,mem=2048,gres/gpu=1``) into ``{name: number}`` without unit changes.

    Empty text gives ``{}``.

    Raises:
        ValueError: for an item without ``=`` or with a non-numeric value (e.g. a truncated string).

    """
    out: dict[str, float] = {}
    t = text.strip()
    if not t:
        return out
    for item in t.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"bad TRES item {item!r}")
        num = float(val)
        if not math.isfinite(num):
            raise ValueError(f"bad TRES value {item!r}")
        out[key] = num
    return out


def _float(text: str) -> float:
    t = text.strip()
    v = float(t)  # accepts "inf" (LevelFS); raises ValueError otherwise
    if math.isnan(v):
        raise ValueError(f"NaN {text!r}")
    return v


def _row(f: dict[str, str]) -> tuple[ShareRow | None, list[str]]:
    issues: list[str] = []
    raw_acct = f.get("ACCOUNT", "")
    account = raw_acct.strip()
    if not account:
        return None, ["empty Account"]
    row = ShareRow(
        account=account,
        user=f.get("USER", "").strip(),
        partition=f.get("PARTITION", "").strip(),
        depth=len(raw_acct) - len(raw_acct.lstrip(" ")),
        fields=f,
    )
    raws = f.get("RAWSHARES", "").strip()
    if raws.lower() == "parent":
        row.uses_parent_shares = True
    elif raws:
        try:
            row.raw_shares = _float(raws)
        except ValueError:
            issues.append(f"{account}/{row.user}: RawShares {raws!r} is not a number")
    rawu = f.get("RAWUSAGE", "").strip()
    if rawu:
        try:
            row.raw_usage = _float(rawu)
        except ValueError:
            issues.append(f"{account}/{row.user}: RawUsage {rawu!r} is not a number")
    for title, attr in _FLOATS.items():
        text = f.get(title, "").strip()
        if not text:
            continue
        try:
            setattr(row, attr, _float(text))
        except ValueError:
            issues.append(f"{account}/{row.user}: {title} {text!r} is not a number")
    for title, attr in _TRES.items():
        if title not in f:
            continue
        try:
            setattr(row, attr, parse_tres_counts(f[title]))
        except ValueError as exc:
            issues.append(f"{account}/{row.user}: {title}: {exc}")
    return row, issues


def parse_sshare(text: str, fields: Sequence[str] | None = None) -> ParseResult[ShareRow]:
    """Parse parsable sshare output.

    Args:
        text: the output of ``sshare -P`` or ``-p``, header included (:data:`SSHARE_ARGV`).
        fields: the ``--format`` field names, for output printed with ``--noheader`` only; ignored when the
            text starts with a header line.

    Returns:
        One :class:`ShareRow` per association line. A line with the wrong field count or an empty Account is
        skipped as an issue; a bad value is left ``None`` and counted. Unrecognised text gives one
        "unrecognised format" issue and no records; empty text gives nothing.

    """
    result: ParseResult[ShareRow] = ParseResult()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return result
    first = lines[start]

    def split(line: str, trailing: bool) -> list[str]:
        parts = line.rstrip("\r\n").split("|")
        if trailing and parts and parts[-1].strip() == "":
            parts.pop()
        return parts

    head = [h.strip().upper() for h in first.rstrip("\r\n").split("|")]
    trailing = bool(head) and head[-1] == ""
    if trailing:
        head.pop()
    if "|" in first and head and all(h in TITLES for h in head) and "ACCOUNT" in head:
        headers, body = head, range(start + 1, len(lines))
    elif fields is not None and "|" in first:
        headers = [f.strip().upper() for f in fields]
        body = range(start, len(lines))
        # -p (--parsable) ends every line with a "|": one more cell than fields, the last one empty.
        trailing = len(first.rstrip("\r\n").split("|")) == len(headers) + 1 and first.rstrip().endswith("|")
        if "ACCOUNT" not in headers:
            result.skip(0, "fields without Account", ",".join(fields))
            return result
    else:
        result.skip(0, "unrecognised format", first)
        return result
    for idx in body:
        line = lines[idx]
        if not line.strip():
            continue
        values = split(line, trailing)
        if len(values) != len(headers):
            result.skip(idx + 1, f"expected {len(headers)} fields, got {len(values)}", line)
            continue
        f: dict[str, str] = {}
        for h, v in zip(headers, values, strict=True):
            f.setdefault(h, v)
        row, issues = _row(f)
        for issue in issues:
            result.skip(idx + 1, issue, line)
        if row is not None:
            result.records.append(row)
    return result
