"""Filesystem quotas (controller mode, opt-in): ``repquota`` and, on Lustre, ``lfs quota``.

Mode: ``controller``. Quotas are a fact of a filesystem, not of a compute node: exported from every node that
mounts ``/home`` they would be duplicated once per node. One exporter reports each filesystem once, and it must
run where the tool can read the quotas: ``repquota`` only reports *local* filesystems (it skips NFS mounts),
so for NFS homes enable this collector on the file server's exporter; ``lfs quota`` works from any Lustre
client, the controller included. The collector is disabled by default (it needs a list of filesystems and,
without ``-n``, resolving names can be slow); enable it with ``--collector.quota`` or ``enabled = true``.

Options (``[collector.quota]``)::

    filesystems = ["/home", "/projects"]   # repquota mount points; [] = `repquota -a` (every quota-enabled
                                           #   local filesystem, labelled by mount point via mountinfo)
    types = ["user", "group"]              # and/or "project" (repquota -P, quota-tools 4.05+)
    top_n = 50                             # entries exported per (filesystem, type)
    repquota = "repquota"                  # path of the tool
    lustre_mounts = ["/lustre/scratch"]    # lfs quota mount points
    lustre_users = ["alice", "1001"]       # ids or names queried with `lfs quota -u` (one command each)
    lustre_groups = []                     # `lfs quota -g`
    lustre_projects = []                   # `lfs quota -p`
    lfs = "lfs"

Commands (argv, no shell): ``repquota -u -g [-P] -p -n <mountpoint>`` (raw grace times, numeric ids: names are
``#<id>`` and no NSS lookups are made) and ``lfs quota -u|-g|-p <id> <mountpoint>``.

Cardinality: per (filesystem, type) at most ``top_n`` entries x 8 series, plus 7 totals. Entries are ranked
over-limit first (over a soft limit, or a hard limit where no soft limit is set, for space or inodes), then by
space used, so a small user over quota is never hidden by the cap. Totals (``total_used_bytes``,
``total_used_files``, ``entries``, ``over_limit_entries``) cover every entry, exported or not.

Limits of 0 ("no limit" for both tools) are left out, so ``used / limit`` ratios exist only where a limit
does. Grace expiry: repquota's ``-p`` gives it as a timestamp; lfs prints the time left, added to the clock.

Graceful skip: ``available()`` is true when ``repquota`` or ``lfs`` is on ``PATH``. When enabled on a machine
without the configured tool, the collector logs it once and exports ``nomade_quota_source_available{tool} 0``
instead of failing every scrape. A filesystem whose query fails sets ``nomade_quota_query_success`` to 0;
``up`` becomes 0 only when every query failed.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import ConfigError
from ..metrics import MetricSet, MetricSpec
from ..parsers.lfs_quota import parse_lfs_quota
from ..parsers.mounts import parse_mountinfo
from ..parsers.repquota import parse_repquota
from ..runner import CommandError
from .base import Collector, CollectorContext, CollectorError

_P = "nomade_quota_"
_E = ("filesystem", "type", "name")
_T = ("filesystem", "type")
DEFAULT_TOP_N = 50
_REPQUOTA_TYPE_FLAG = {"user": "-u", "group": "-g", "project": "-P"}
_LFS_TYPE_FLAG = {"user": "-u", "group": "-g", "project": "-p"}


@dataclass(frozen=True)
class Usage:
    """One quota entry, tool-independent (what the collector exports).

    Attributes:
        filesystem: mount point label.
        type: ``user``, ``group`` or ``project``.
        name: user/group/project as the tool printed it (``#1001`` for repquota ``-n``).
        used_bytes ... file_grace_expiry: see the metric help texts; ``None`` is left out.
        over_limit: over a soft limit (or a hard limit where no soft limit is set).

    """

    filesystem: str
    type: str
    name: str
    used_bytes: float | None
    soft_limit_bytes: float | None
    hard_limit_bytes: float | None
    used_files: float | None
    file_soft_limit: float | None
    file_hard_limit: float | None
    grace_expiry: float | None
    file_grace_expiry: float | None
    over_limit: bool


def _str_list(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ConfigError(f"[collector.quota] {key} must be a list of strings")
    return [str(v) for v in value]


def rank(entries: Iterable[Usage], top_n: int) -> list[Usage]:
    """The ``top_n`` entries to export: over-limit ones first, then by space used (descending), then name."""
    return sorted(entries, key=lambda u: (not u.over_limit, -(u.used_bytes or 0.0), u.name))[:top_n]


class QuotaCollector(Collector):
    """Per-user/group/project usage and limits from repquota and lfs quota."""

    name = "quota"
    mode = "controller"
    default_enabled = False
    description = "Filesystem quotas (repquota, lfs quota): usage, limits, grace; top N entries plus totals."
    metrics = (
        MetricSpec(_P + "used_bytes", "gauge", "Space used (repquota/lfs 1 KiB blocks x 1024).", _E, "bytes"),
        MetricSpec(_P + "soft_limit_bytes", "gauge", "Space soft limit; absent when none is set.", _E, "bytes"),
        MetricSpec(_P + "hard_limit_bytes", "gauge", "Space hard limit; absent when none is set.", _E, "bytes"),
        MetricSpec(_P + "used_files", "gauge", "Inodes used.", _E),
        MetricSpec(_P + "file_soft_limit", "gauge", "Inode soft limit; absent when none is set.", _E),
        MetricSpec(_P + "file_hard_limit", "gauge", "Inode hard limit; absent when none is set.", _E),
        MetricSpec(_P + "grace_expiry_timestamp_seconds", "gauge", "End of the running space grace period "
                   "(over the soft limit); absent when none runs.", _E, "seconds"),
        MetricSpec(_P + "file_grace_expiry_timestamp_seconds", "gauge", "End of the running inode grace period; "
                   "absent when none runs.", _E, "seconds"),
        MetricSpec(_P + "total_used_bytes", "gauge", "Space used summed over every entry of the report (exported "
                   "or not).", _T, "bytes"),
        MetricSpec(_P + "total_used_files", "gauge", "Inodes used summed over every entry of the report.", _T),
        MetricSpec(_P + "entries", "gauge", "Entries in the report (repquota lists ids with usage).", _T),
        MetricSpec(_P + "exported_entries", "gauge", "Entries exported with per-name series (top_n cap).", _T),
        MetricSpec(_P + "dropped_entries", "gauge", "Entries left out by the top_n cap.", _T),
        MetricSpec(_P + "over_limit_entries", "gauge", "Entries over a soft limit (or a hard limit where no soft "
                   "limit is set), for space or inodes.", _T),
        MetricSpec(_P + "query_success", "gauge", "1 if the quota command for this filesystem ran and gave "
                   "output, 0 if it failed or timed out.", ("filesystem", "tool")),
        MetricSpec(_P + "source_available", "gauge", "1 if the quota tool is installed, 0 if it is missing "
                   "(the collector then exports nothing else for it).", ("tool",)),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.filesystems = _str_list(self.option("filesystems", []), "filesystems")
        self.types = _str_list(self.option("types", ["user", "group"]), "types")
        bad = [t for t in self.types if t not in _REPQUOTA_TYPE_FLAG]
        if bad:
            raise ConfigError(f"[collector.quota] unknown type(s) {', '.join(bad)}: use user, group, project")
        self.top_n = int(self.option("top_n", DEFAULT_TOP_N))
        if self.top_n < 0:
            raise ConfigError("[collector.quota] top_n must be >= 0")
        self.repquota = str(self.option("repquota", "repquota"))
        self.lfs = str(self.option("lfs", "lfs"))
        self.lustre_mounts = _str_list(self.option("lustre_mounts", []), "lustre_mounts")
        self.lustre_ids = {
            "user": _str_list(self.option("lustre_users", []), "lustre_users"),
            "group": _str_list(self.option("lustre_groups", []), "lustre_groups"),
            "project": _str_list(self.option("lustre_projects", []), "lustre_projects"),
        }
        self._missing_logged: set[str] = set()
        self._failing: set[tuple[str, str]] = set()

    @classmethod
    def available(cls) -> bool:
        """Whether ``repquota`` or ``lfs`` is on ``PATH``."""
        return shutil.which("repquota") is not None or shutil.which("lfs") is not None

    # --- sources ------------------------------------------------------------------------------------------

    def repquota_argv(self, filesystem: str | None) -> tuple[str, ...]:
        """``repquota -u -g [-P] -p -n <fs>`` (``-a`` instead of a mount point when ``filesystem`` is None)."""
        flags = tuple(_REPQUOTA_TYPE_FLAG[t] for t in self.types)
        return (self.repquota, *flags, "-p", "-n", filesystem or "-a")

    def lfs_argv(self, qtype: str, qid: str, mount: str) -> tuple[str, ...]:
        """``lfs quota -u|-g|-p <id> <mount>``."""
        return (self.lfs, "quota", _LFS_TYPE_FLAG[qtype], qid, mount)

    def _device_mounts(self) -> dict[str, str]:
        """``{device: mount point}`` from mountinfo, to label ``repquota -a`` reports by mount point."""
        try:
            text = (self.ctx.proc_root / "self" / "mountinfo").read_text(errors="replace")
        except OSError:
            return {}
        out: dict[str, str] = {}
        for m in parse_mountinfo(text).records:
            out.setdefault(m.source, m.mount_point)
        return out

    def _run(self, argv: tuple[str, ...], label: str, tool: str, out: MetricSet) -> str | None:
        """Run one command; ``None`` when it failed (its failure is recorded and logged once)."""
        try:
            res = self.ctx.runner.run(argv)
        except CommandError as exc:
            if exc.reason == "missing":
                raise
            out.add(_P + "query_success", 0, filesystem=label, tool=tool)
            if (label, tool) not in self._failing:
                self._failing.add((label, tool))
                self.log.warning("%s on %s failed: %s", tool, label, exc)
            return None
        self._failing.discard((label, tool))
        out.add(_P + "query_success", 1, filesystem=label, tool=tool)
        return res.stdout

    def _tool_missing(self, tool: str, exc: CommandError, out: MetricSet) -> None:
        out.add(_P + "source_available", 0, tool=tool)
        if tool not in self._missing_logged:
            self._missing_logged.add(tool)
            self.log.warning("%s is not installed (%s): its quotas are skipped", tool, exc)

    def _collect_repquota(self, out: MetricSet) -> tuple[list[Usage], int, int]:
        entries: list[Usage] = []
        tried = failed = 0
        targets: list[str | None] = list(self.filesystems) or [None]
        devices = self._device_mounts() if not self.filesystems else {}
        for fs in targets:
            tried += 1
            try:
                text = self._run(self.repquota_argv(fs), fs or "all", "repquota", out)
            except CommandError as exc:
                self._tool_missing("repquota", exc, out)
                return entries, 0, 0
            if text is None:
                failed += 1
                continue
            parsed = parse_repquota(text)
            self.count_parse_errors(len(parsed.issues))
            for e in parsed.records:
                label = fs or devices.get(e.device or "", e.device or "")
                entries.append(
                    Usage(label, e.type, e.name, e.used_bytes, e.soft_limit_bytes, e.hard_limit_bytes,
                          float(e.used_files), _f(e.file_soft_limit), _f(e.file_hard_limit), e.grace_expiry,
                          e.file_grace_expiry, e.over_limit)
                )  # fmt: skip
        out.add(_P + "source_available", 1, tool="repquota")
        return entries, tried, failed

    def _collect_lfs(self, out: MetricSet) -> tuple[list[Usage], int, int]:
        entries: list[Usage] = []
        tried = failed = 0
        now = self.ctx.clock()
        for mount in self.lustre_mounts:
            for qtype, ids in self.lustre_ids.items():
                for qid in ids:
                    tried += 1
                    try:
                        text = self._run(self.lfs_argv(qtype, qid, mount), mount, "lfs", out)
                    except CommandError as exc:
                        self._tool_missing("lfs", exc, out)
                        return entries, 0, 0
                    if text is None:
                        failed += 1
                        continue
                    parsed = parse_lfs_quota(text)
                    self.count_parse_errors(len(parsed.issues))
                    for e in parsed.records:
                        over = e.over_space or e.over_files
                        entries.append(
                            Usage(mount, e.type, e.name, e.used_bytes, e.soft_limit_bytes, e.hard_limit_bytes,
                                  e.used_files, e.file_soft_limit, e.file_hard_limit,
                                  None if e.grace_seconds is None else now + e.grace_seconds,
                                  None if e.file_grace_seconds is None else now + e.file_grace_seconds, over)
                        )  # fmt: skip
        if tried:
            out.add(_P + "source_available", 1, tool="lfs")
        return entries, tried, failed

    # --- export -------------------------------------------------------------------------------------------

    def collect(self, out: MetricSet) -> None:
        """Query repquota (and lfs quota when Lustre mounts are configured) and fill ``out``.

        Raises:
            CollectorError: every query that was attempted failed (``up`` becomes 0). A missing tool is not a
                failure (``source_available 0``).

        """
        # repquota runs for the listed filesystems, or with -a when nothing at all is listed (Lustre-only
        # configurations do not ask repquota).
        entries: list[Usage] = []
        tried = failed = 0
        if self.filesystems or not self.lustre_mounts:
            entries, tried, failed = self._collect_repquota(out)
        lentries, ltried, lfailed = self._collect_lfs(out)
        entries += lentries
        tried, failed = tried + ltried, failed + lfailed
        if tried and failed == tried:
            raise CollectorError(f"all {tried} quota queries failed")
        self.fill(out, entries)

    def fill(self, out: MetricSet, entries: list[Usage]) -> None:
        """Export totals for every (filesystem, type) and per-name series for the ranked top N."""
        groups: dict[tuple[str, str], list[Usage]] = defaultdict(list)
        for e in entries:
            groups[(e.filesystem, e.type)].append(e)
        for (fs, qtype), group in groups.items():
            t = {"filesystem": fs, "type": qtype}
            used = [e.used_bytes for e in group]
            files = [e.used_files for e in group]
            out.add(_P + "total_used_bytes", None if None in used else sum(u or 0.0 for u in used), **t)
            out.add(_P + "total_used_files", None if None in files else sum(f or 0.0 for f in files), **t)
            out.add(_P + "entries", len(group), **t)
            out.add(_P + "over_limit_entries", sum(e.over_limit for e in group), **t)
            kept = rank(group, self.top_n)
            out.add(_P + "exported_entries", len(kept), **t)
            out.add(_P + "dropped_entries", len(group) - len(kept), **t)
            # MetricSet.add() takes the metric name as its first argument, so a label called ``name`` cannot
            # be passed as a keyword: per-entry series go through extend() with label tuples instead.
            series: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
            for e in kept:
                key = (fs, qtype, e.name)
                for metric, value in (
                    ("used_bytes", e.used_bytes),
                    ("soft_limit_bytes", e.soft_limit_bytes),
                    ("hard_limit_bytes", e.hard_limit_bytes),
                    ("used_files", e.used_files),
                    ("file_soft_limit", e.file_soft_limit),
                    ("file_hard_limit", e.file_hard_limit),
                    ("grace_expiry_timestamp_seconds", e.grace_expiry),
                    ("file_grace_expiry_timestamp_seconds", e.file_grace_expiry),
                ):
                    if value is not None:  # absent beats wrong (extend() does not drop None)
                        series[metric][key] = float(value)
            for metric, samples in series.items():
                out.extend(_P + metric, samples)


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


COLLECTOR = QuotaCollector
