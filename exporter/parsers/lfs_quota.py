"""Parser for Lustre ``lfs quota -u|-g|-p <id> <mountpoint>`` output.

Layout (``print_quota_title``/``print_quota`` in lustre-release ``lustre/utils/lfs.c``, 2.x)::

    Disk quotas for usr bob (uid 1001):
         Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace
        /mnt/lustre  123456* 100000  200000 6d23h59m58s   12       0       0       -

* Type words are ``usr``/``grp``/``prj`` (older releases: ``user``/``group``); the id kind is ``uid``/``gid``/
  ``pid``.
* A mount point longer than 15 characters is printed alone on its line and the figures follow on the next.
* ``*`` glued to a usage figure marks it over a limit; ``[n]`` marks a figure lfs could not get from every
  target (inaccurate): it is returned as ``None`` (absent beats wrong) with ``inaccurate`` set.
* Space is in KiB (``kbytes``); with ``-h`` figures carry a binary suffix (``k``/``K``, ``M``, ``G``, ``T``,
  ``P``, ``E``) and are rounded by lfs, so they are accepted but less exact.
* A limit of 0 means "no limit" and is returned as ``None``.
* Grace: ``-`` when no grace period runs, ``none`` when it has run out, otherwise the time left as
  ``[Nw][Nd][Nh][Nm]Ns`` (``__sec2str``), returned in seconds. Older releases printed ``6days``/``13:05``
  (rounded): kept as text only.
* ``--delimiter=,`` output (same columns separated by commas) is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ParseResult

KIB = 1024
_TITLE = re.compile(
    r"^Disk quotas for (?P<type>usr|grp|prj|user|group|project) (?P<name>.+?) \((?P<kind>[ugp])id (?P<id>\d+)\):",
    re.I,
)
_TYPES = {"usr": "user", "user": "user", "grp": "group", "group": "group", "prj": "project", "project": "project"}
_HEADER = re.compile(r"^Filesystem[\s,]", re.I)
_NUMBER = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<suf>[kKMGTPE]?)$")
_SUFFIX = {"": 0, "k": 0, "K": 0, "M": 1, "G": 2, "T": 3, "P": 4, "E": 5}
_GRACE = re.compile(r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_NOTE = re.compile(r"^(Some errors happened|Total allocated|\w+ quotas are not enabled|Permission denied)", re.I)


@dataclass(frozen=True)
class LfsQuotaEntry:
    """One filesystem row of one ``Disk quotas for`` block.

    Attributes:
        type: ``user``, ``group`` or ``project``.
        name: name as printed in the title (the numeric id when unresolved).
        id: numeric uid/gid/project id.
        filesystem: mount point of the row.
        used_bytes: space used, or ``None`` when inaccurate or unreadable.
        soft_limit_bytes / hard_limit_bytes: space limits, ``None`` for 0 (no limit) or unreadable.
        grace_seconds: space grace time left, ``None`` when none runs (``-``), has run out, or is rounded text.
        grace_expired: ``none`` was printed: the space grace period has run out.
        used_files, file_soft_limit, file_hard_limit, file_grace_seconds, file_grace_expired: the same for
            inodes (limits ``None`` for 0).
        over_space / over_files: a ``*`` was glued to the usage figure.
        inaccurate: lfs bracketed at least one figure of the row.

    """

    type: str
    name: str
    id: int
    filesystem: str
    used_bytes: float | None
    soft_limit_bytes: float | None
    hard_limit_bytes: float | None
    grace_seconds: float | None
    grace_expired: bool
    used_files: float | None
    file_soft_limit: float | None
    file_hard_limit: float | None
    file_grace_seconds: float | None
    file_grace_expired: bool
    over_space: bool
    over_files: bool
    inaccurate: bool


def _figure(text: str, scale: int) -> tuple[float | None, bool, bool]:
    """``(value, over, inaccurate)`` of one figure; ``scale`` is the byte size of its unit (1 for counts)."""
    over = text.endswith("*")
    text = text.rstrip("*")
    if text.startswith("[") and text.endswith("]"):
        return None, over, True
    m = _NUMBER.match(text)
    if not m:
        raise ValueError(text)
    return float(m["num"]) * scale * 1024 ** _SUFFIX[m["suf"]], over, False


def _limit(text: str, scale: int) -> tuple[float | None, bool]:
    if text == "-":  # per-target rows print '-' for the soft limit
        return None, False
    value, _, inaccurate = _figure(text, scale)
    return (None if value == 0 else value), inaccurate


def _grace(text: str) -> tuple[float | None, bool]:
    """``(seconds left, expired)``."""
    if text in ("-", ""):
        return None, False
    if text.lower() == "none":
        return None, True
    m = _GRACE.match(text)
    if not m or not any(m.groupdict().values()):
        return None, False  # bracketed or old rounded text (6days, 13:05): not exact, left out
    w, d, h, mi, s = (int(m[k] or 0) for k in ("w", "d", "h", "m", "s"))
    return float((((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s), False


def _row(fields: list[str], qtype: str, name: str, qid: int, fs: str) -> LfsQuotaEntry:
    used, over_s, inacc_u = _figure(fields[0], KIB)
    soft, inacc_s = _limit(fields[1], KIB)
    hard, inacc_h = _limit(fields[2], KIB)
    grace, g_expired = _grace(fields[3])
    files, over_f, inacc_f = _figure(fields[4], 1)
    fsoft, inacc_fs = _limit(fields[5], 1)
    fhard, inacc_fh = _limit(fields[6], 1)
    fgrace, fg_expired = _grace(fields[7])
    return LfsQuotaEntry(
        type=qtype,
        name=name,
        id=qid,
        filesystem=fs,
        used_bytes=used,
        soft_limit_bytes=soft,
        hard_limit_bytes=hard,
        grace_seconds=grace,
        grace_expired=g_expired,
        used_files=files,
        file_soft_limit=fsoft,
        file_hard_limit=fhard,
        file_grace_seconds=fgrace,
        file_grace_expired=fg_expired,
        over_space=over_s,
        over_files=over_f,
        inaccurate=any((inacc_u, inacc_s, inacc_h, inacc_f, inacc_fs, inacc_fh)),
    )


def parse_lfs_quota(text: str) -> ParseResult[LfsQuotaEntry]:
    """Parse the output of one or more ``lfs quota`` runs for single ids.

    Returns:
        One :class:`LfsQuotaEntry` per filesystem row; an issue for rows outside a ``Disk quotas for`` block,
        rows without the 9 columns (8 after a wrapped mount point) and figures that are not numbers.

    """
    result: ParseResult[LfsQuotaEntry] = ParseResult()
    title: tuple[str, str, int] | None = None
    pending_fs: str | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _TITLE.match(line)
        if m:
            title = (_TYPES[m["type"].lower()], m["name"], int(m["id"]))
            pending_fs = None
            continue
        if _HEADER.match(line) or _NOTE.match(line):
            continue
        if title is None:
            result.skip(no, "row before any 'Disk quotas for' title", raw)
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        if len(fields) == 1 and pending_fs is None:
            pending_fs = fields[0]  # long mount point: the figures follow on the next line
            continue
        if pending_fs is not None and len(fields) == 8:
            fs, figures = pending_fs, fields
        elif len(fields) == 9:
            fs, figures = fields[0], fields[1:]
        else:
            result.skip(no, f"expected 9 columns, got {len(fields)}", raw)
            pending_fs = None
            continue
        pending_fs = None
        try:
            result.records.append(_row(figures, *title, fs))
        except ValueError as exc:
            result.skip(no, f"unreadable figure {exc}", raw)
    return result
