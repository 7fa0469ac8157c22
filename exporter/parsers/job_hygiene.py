"""Pure helpers of the job hygiene collector: scratch names, slurmstepd titles, stale-data summaries.

* ``slurmstepd`` renames itself ``slurmstepd: [<job id>.<step>]`` (SLURM ``src/slurmd/slurmstepd/slurmstepd.c``
  sets its process title; ``ps`` shows ``slurmstepd: [1234.batch]``, ``[1234.extern]``, ``[1234.0]``).
* Per-job scratch directories are named by the site's prolog; the default pattern
  (:data:`DEFAULT_SCRATCH_PATTERN`) accepts ``1234``, ``job_1234``, ``job1234``, ``slurm-1234``, ``slurm_1234``,
  ``1234.batch`` and ``1234_alice`` style names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SCRATCH_PATTERN = r"^(?:job[_-]?|slurm[_-]?)?(?P<job_id>\d+)(?:[._-].*)?$"
"""Regex of a per-job scratch directory name with a ``job_id`` group (option ``scratch_pattern``)."""

_STEPD = re.compile(r"^slurmstepd: \[(?P<job>\d+)\.(?P<step>[^\]]+)\]")


def scratch_job_id(name: str, pattern: re.Pattern[str]) -> str | None:
    """The job id a scratch directory name refers to, ``None`` when the name does not match.

    The pattern must have a ``job_id`` group (or, failing that, its first group is used).
    """
    m = pattern.match(name)
    if not m:
        return None
    try:
        jid = m.group("job_id")
    except IndexError:
        jid = m.group(1) if m.groups() else None
    return jid if jid and jid.isdigit() else None


def slurmstepd_job(cmdline: bytes) -> str | None:
    """The job id of a ``slurmstepd`` from its ``/proc/<pid>/cmdline`` (NUL-separated), else ``None``."""
    text = cmdline.split(b"\0", 1)[0].decode("utf-8", "replace")
    m = _STEPD.match(text)
    return m["job"] if m else None


@dataclass(frozen=True)
class FileEntry:
    """One regular file seen by the stale scan.

    Attributes:
        uid: owner uid.
        size: bytes allocated (``st_blocks * 512``), so sparse files count what they really use.
        atime, mtime: Unix seconds.

    """

    uid: int
    size: int
    atime: float
    mtime: float


@dataclass
class OwnerSummary:
    """Stale data of one owner: file count, bytes and the oldest last use (Unix seconds)."""

    files: int = 0
    bytes: int = 0
    oldest: float | None = None


def stale_summary(
    entries: Iterable[FileEntry], now: float, min_age_seconds: float, top_owners: int
) -> dict[str, OwnerSummary]:
    """Sum the files not used for ``min_age_seconds`` per owner uid.

    "Used" is the later of access and modification time: with ``relatime`` (the Linux default) atime still
    moves on the first read after a modification and at least once a day, so a 30-day threshold is reliable;
    with ``noatime`` only writes count.

    Args:
        entries: scanned files.
        now: Unix seconds.
        min_age_seconds: a file is stale when ``now - max(atime, mtime) >= min_age_seconds``.
        top_owners: owners kept by stale bytes; the others are summed under ``"other"`` (bounded labels).

    Returns:
        ``{uid as text or "other": OwnerSummary}``.

    """
    per: dict[int, OwnerSummary] = {}
    for e in entries:
        last = max(e.atime, e.mtime)
        if now - last < min_age_seconds:
            continue
        s = per.setdefault(e.uid, OwnerSummary())
        s.files += 1
        s.bytes += e.size
        s.oldest = last if s.oldest is None else min(s.oldest, last)
    ranked = sorted(per.items(), key=lambda kv: (-kv[1].bytes, kv[0]))
    out: dict[str, OwnerSummary] = {str(uid): s for uid, s in ranked[: max(0, top_owners)]}
    rest = ranked[max(0, top_owners) :]
    if rest:
        other = OwnerSummary()
        for _, s in rest:
            other.files += s.files
            other.bytes += s.bytes
            if s.oldest is not None:
                other.oldest = s.oldest if other.oldest is None else min(other.oldest, s.oldest)
        out["other"] = other
    return out
