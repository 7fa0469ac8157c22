"""Parser for ``repquota`` (Linux quota-tools 4.x) reports: default layout and ``-O csv``.

The collector runs ``repquota -u -g -p -n <mountpoint>`` (repquota(8)): ``-p`` prints grace times as Unix
seconds (``0`` when no grace period runs), ``-n`` prints ``#<id>`` instead of resolving names (no NSS lookups
against LDAP at every scrape). Layout (``report_it``/``print`` in quota-tools ``repquota.c``)::

    *** Report for user quotas on device /dev/sdb1
    Block grace time: 7days; Inode grace time: 7days
                            Block limits                File limits
    User            used    soft    hard  grace    used  soft  hard  grace
    ----------------------------------------------------------------------
    #0        --      20       0       0      0       2     0     0      0
    #1001     +-  120000  100000  150000 1709600000     310     0     0      0

Space figures are 1 KiB blocks (``qb2kb``); file figures are inode counts; a limit of 0 means "no limit". The
two status characters are ``+`` when over the soft limit (or over the hard limit when no soft limit is set).
Without ``-p`` the grace columns hold relative text (``6days``, ``13:05``, ``none``) or nothing at all, so a row
has 8, 9 or 10 fields; the parser tells the 9-field case apart by whether the 6th field is a number. Relative
grace text is kept as text only (it is rounded by repquota, so no timestamp is derived from it).

``-O csv`` (quota-tools 4.02+) prints a header ``User,BlockStatus,FileStatus,BlockUsed,...`` and no device line;
its status words are ``ok``/``soft``/``hard``. ``-s`` (human-readable, rounded figures) is refused row by row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ParseResult

KIB = 1024
_REPORT = re.compile(r"^\*\*\* Report for (?P<type>user|group|project) quotas on device (?P<device>\S+)", re.I)
_CSV_HEADER = re.compile(r"^(?P<type>User|Group|Project),(?:Block|Space)Status,FileStatus,", re.I)
_IGNORED = re.compile(
    r"^(Block grace time|Block limits|Space limits|(User|Group|Project)\s+used|-{5,}|Statistics:|"
    r"Total blocks:|Data blocks:|Entries:|Used average:)",
    re.I,
)
_FLAGS = re.compile(r"^[-+]{2}$")


@dataclass(frozen=True)
class QuotaEntry:
    """One user/group/project row of a repquota report.

    Attributes:
        type: ``user``, ``group`` or ``project``.
        name: the name as printed (``#1001`` for an id without a name or under ``-n``).
        device: the device of the ``*** Report`` line (``None`` in CSV output).
        used_bytes: space used (1 KiB blocks x 1024).
        soft_limit_bytes: space soft limit, ``None`` when 0 (no limit).
        hard_limit_bytes: space hard limit, ``None`` when 0.
        grace_expiry: Unix seconds at which the space grace period ends (raw ``-p`` output), ``None`` when no
            grace period runs or the report is not raw.
        used_files: inodes used.
        file_soft_limit: inode soft limit, ``None`` when 0.
        file_hard_limit: inode hard limit, ``None`` when 0.
        file_grace_expiry: like ``grace_expiry`` for inodes.
        grace_text: relative space grace text of non-raw output (``6days``, ``none``), else ``""``.
        file_grace_text: the same for inodes.

    """

    type: str
    name: str
    device: str | None
    used_bytes: float
    soft_limit_bytes: float | None
    hard_limit_bytes: float | None
    grace_expiry: float | None
    used_files: int
    file_soft_limit: int | None
    file_hard_limit: int | None
    file_grace_expiry: float | None
    grace_text: str = ""
    file_grace_text: str = ""

    @property
    def over_limit(self) -> bool:
        """Over a soft limit (or over a hard limit where no soft limit is set) for space or files.

        Same test as repquota's ``overlim()``: ``usage > soft && soft`` or ``usage > hard && hard``.
        """
        return any(
            lim is not None and used > lim
            for used, lim in (
                (self.used_bytes, self.soft_limit_bytes),
                (self.used_bytes, self.hard_limit_bytes),
                (self.used_files, self.file_soft_limit),
                (self.used_files, self.file_hard_limit),
            )
        )


def _limit(value: int, scale: int = 1) -> float | None:
    return None if value == 0 else float(value * scale)


def _grace(text: str) -> tuple[float | None, str]:
    """``(expiry, text)``: raw epoch seconds give an expiry (0 = none); anything else is kept as text."""
    if text.isdigit():
        value = int(text)
        return (float(value) if value > 0 else None), ""
    return None, text


def _row(tokens: list[str], qtype: str, device: str | None) -> QuotaEntry | str:
    """Build an entry from whitespace-split fields; a string is the reason for refusing the row."""
    if len(tokens) < 8 or not _FLAGS.match(tokens[1]):
        return f"expected name, +-/-- flags and at least 6 figures, got {len(tokens)} fields"
    name, rest = tokens[0], tokens[2:]
    space = rest[:3]
    if len(rest) == 8:
        bgrace, files, fgrace = rest[3], rest[4:7], rest[7]
    elif len(rest) == 7:
        # One grace column is empty (non-raw output): a number in the 4th place is the inode count.
        if rest[3].isdigit():
            bgrace, files, fgrace = "", rest[3:6], rest[6]
        else:
            bgrace, files, fgrace = rest[3], rest[4:7], ""
    elif len(rest) == 6:
        bgrace, files, fgrace = "", rest[3:6], ""
    else:
        return f"expected 8 to 10 fields, got {len(tokens)}"
    numbers = space + files
    if not all(n.isdigit() for n in numbers):
        return "non-integer figure (human-readable -s output is not accepted)"
    used, soft, hard = (int(n) for n in space)
    fused, fsoft, fhard = (int(n) for n in files)
    b_exp, b_text = _grace(bgrace)
    f_exp, f_text = _grace(fgrace)
    return QuotaEntry(
        type=qtype,
        name=name,
        device=device,
        used_bytes=float(used * KIB),
        soft_limit_bytes=_limit(soft, KIB),
        hard_limit_bytes=_limit(hard, KIB),
        grace_expiry=b_exp,
        used_files=fused,
        file_soft_limit=None if fsoft == 0 else fsoft,
        file_hard_limit=None if fhard == 0 else fhard,
        file_grace_expiry=f_exp,
        grace_text=b_text,
        file_grace_text=f_text,
    )


def parse_repquota(text: str) -> ParseResult[QuotaEntry]:
    """Parse one or more repquota reports (default layout or ``-O csv``).

    Returns:
        One :class:`QuotaEntry` per row; an issue per row that does not have the documented fields (including
        rows met before any ``*** Report`` or CSV header, whose type is unknown).

    """
    result: ParseResult[QuotaEntry] = ParseResult()
    qtype: str | None = None
    device: str | None = None
    csv = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _REPORT.match(line)
        if m:
            qtype, device, csv = m["type"].lower(), m["device"], False
            continue
        m = _CSV_HEADER.match(line)
        if m:
            qtype, device, csv = m["type"].lower(), None, True
            continue
        if _IGNORED.match(line):
            continue
        if qtype is None:
            result.skip(no, "row before any report header", raw)
            continue
        if csv:
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 11:
                result.skip(no, f"expected 11 CSV fields, got {len(fields)}", raw)
                continue
            # Map the ok/soft/hard words onto the +/- flags of the default layout and reuse its row reader.
            flags = "".join("-" if s == "ok" else "+" for s in (fields[1].lower(), fields[2].lower()))
            tokens = [fields[0], flags, *fields[3:6], fields[6] or "0", *fields[7:10], fields[10] or "0"]
        else:
            tokens = line.split()
        entry = _row(tokens, qtype, device)
        if isinstance(entry, str):
            result.skip(no, entry, raw)
        else:
            result.records.append(entry)
    return result
