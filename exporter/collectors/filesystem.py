"""Filesystem collector (node mode): size, free and available bytes and inodes per mount point.

Mount points come from ``<proc_root>/1/mountinfo`` (the host's mount table when the exporter shares PID 1's
mount namespace; falls back to ``self/mountinfo``), as node_exporter does. Each ``statvfs(3)`` runs in its own
daemon thread under a per-mount timeout (option ``timeout``): a mount whose call has not returned in time
(hung NFS/Lustre server) is reported with ``nomade_filesystem_stuck 1`` and is **not probed again until that
stuck call returns** (node_exporter's ``stuckMounts`` behaviour), so a dead server never piles up threads or
blocks a scrape for more than one timeout.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..metrics import MetricSet, MetricSpec
from ..parsers.mounts import MountInfo, parse_mountinfo
from .base import Collector, CollectorContext, CollectorError

DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
"""node_exporter's default ``--collector.filesystem.mount-points-exclude`` (v1.8, ``filesystem_linux.go``)."""

DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|"
    r"overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$"
)
"""node_exporter's default ``--collector.filesystem.fs-types-exclude``: pseudo and read-only image
filesystems. Real local (ext4, xfs, btrfs, zfs, tmpfs...) and network/parallel (nfs, nfs4, lustre, gpfs,
beegfs, cifs, fuse.*) filesystems stay."""

DEFAULT_TIMEOUT = 5.0

_L = ("mountpoint", "device", "fstype")

StatFs = Callable[[str], os.statvfs_result]


@dataclass
class _Call:
    """One statvfs call in flight."""

    done: threading.Event = field(default_factory=threading.Event)
    result: os.statvfs_result | None = None
    error: OSError | None = None
    started: float = 0.0


@dataclass(frozen=True)
class FsUsage:
    """Space and inode figures of one filesystem (bytes and counts).

    ``used_ratio`` follows ``df``'s Use% (coreutils ``df.c``): ``used / (used + avail)`` with
    ``used = size - free``; the root-reserved blocks count neither as used nor as available, so a full
    filesystem reads 1.0 even while root can still write. None when ``used + avail`` is 0.
    """

    size: int
    free: int
    avail: int
    files: int
    files_free: int
    used_ratio: float | None


def fs_usage(st: os.statvfs_result) -> FsUsage:
    """Convert a ``statvfs`` result to :class:`FsUsage` (block counts × ``f_frsize``, per ``statvfs(3)``)."""
    frsize = st.f_frsize or st.f_bsize
    size, free, avail = st.f_blocks * frsize, st.f_bfree * frsize, st.f_bavail * frsize
    used = size - free
    denom = used + avail
    return FsUsage(size, free, avail, st.f_files, st.f_ffree, used / denom if denom > 0 else None)


class FilesystemCollector(Collector):
    """Space and inode usage of mounted filesystems, each statvfs under its own timeout.

    Options (``[collector.filesystem]``):
        mount_points: list of mount points to report; when set it replaces the type and mount-point
            filters (a listed path that is not a mount point is skipped with a log line).
        mount_points_exclude: regex (default :data:`DEFAULT_MOUNT_POINTS_EXCLUDE`).
        fs_types_exclude: regex (default :data:`DEFAULT_FS_TYPES_EXCLUDE`).
        timeout: seconds one statvfs may take before the mount is reported stuck (default 5).

    ``statfs`` (an attribute, ``CollectorContext.statvfs`` = ``os.statvfs`` by default) can be replaced for tests.
    """

    name = "filesystem"
    mode = "node"
    description = "Filesystem size, free space and inodes per mount point (statvfs with per-mount timeout)."
    metrics = (
        MetricSpec("nomade_filesystem_size_bytes", "gauge", "Filesystem size (f_blocks x f_frsize).", _L, "bytes"),
        MetricSpec(
            "nomade_filesystem_free_bytes",
            "gauge",
            "Free space including root-reserved blocks (f_bfree x f_frsize).",
            _L,
            "bytes",
        ),
        MetricSpec(
            "nomade_filesystem_avail_bytes",
            "gauge",
            "Space available to unprivileged users (f_bavail x f_frsize).",
            _L,
            "bytes",
        ),
        MetricSpec(
            "nomade_filesystem_used_ratio",
            "gauge",
            "Used share as df Use%: (size - free) / (size - free + avail).",
            _L,
            "ratio",
        ),
        MetricSpec("nomade_filesystem_files", "gauge", "Inodes (f_files).", _L),
        MetricSpec("nomade_filesystem_files_free", "gauge", "Free inodes (f_ffree).", _L),
        MetricSpec("nomade_filesystem_readonly", "gauge", "1 if mounted read-only (ro mount option).", _L),
        MetricSpec(
            "nomade_filesystem_device_error",
            "gauge",
            "1 if statvfs failed with an error (permission, I/O error, stale handle) this scrape.",
            _L,
        ),
        MetricSpec(
            "nomade_filesystem_stuck",
            "gauge",
            "1 if statvfs did not return within the timeout, or an earlier stuck call is still "
            "pending (the mount is not probed again until it returns).",
            _L,
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        mps = self.option("mount_points", None)
        self.mount_points: list[str] | None = [str(p) for p in mps] if mps else None
        self.mp_exclude = re.compile(str(self.option("mount_points_exclude", DEFAULT_MOUNT_POINTS_EXCLUDE)))
        self.fs_exclude = re.compile(str(self.option("fs_types_exclude", DEFAULT_FS_TYPES_EXCLUDE)))
        self.timeout = float(self.option("timeout", DEFAULT_TIMEOUT))
        self.statfs: StatFs = ctx.statvfs
        self._stuck: dict[str, _Call] = {}
        self._stuck_lock = threading.Lock()

    def read_mounts(self) -> list[MountInfo]:
        """Parse the mount table and apply the filters; later mounts over the same point win.

        Raises:
            CollectorError: neither ``1/mountinfo`` nor ``self/mountinfo`` is readable.

        """
        text = None
        errors = []
        for rel in ("1/mountinfo", "self/mountinfo"):
            try:
                text = (self.ctx.proc_root / rel).read_text(errors="surrogateescape")
                break
            except OSError as exc:
                errors.append(str(exc))
        if text is None:
            raise CollectorError(f"cannot read mountinfo: {'; '.join(errors)}")
        result = parse_mountinfo(text)
        self.count_parse_errors(len(result.issues))
        by_point: dict[str, MountInfo] = {}
        for m in result.records:
            by_point.pop(m.mount_point, None)  # re-insert so the order follows the visible (last) mount
            by_point[m.mount_point] = m
        if self.mount_points is not None:
            wanted = []
            for p in self.mount_points:
                if p in by_point:
                    wanted.append(by_point[p])
                else:
                    self.log.info("configured mount point %s is not mounted", p)
            return wanted
        return [
            m
            for m in by_point.values()
            if not self.fs_exclude.search(m.fstype) and not self.mp_exclude.search(m.mount_point)
        ]

    def probe(self, mounts: Sequence[MountInfo]) -> dict[str, os.statvfs_result | OSError | None]:
        """Statvfs every mount concurrently, each under :attr:`timeout`.

        Returns:
            ``{mount_point: result}`` where the result is a ``statvfs_result``, the ``OSError`` it raised, or
            None for a stuck mount (timed out now, or still pending from an earlier scrape).

        """
        out: dict[str, Any] = {}
        calls: list[tuple[str, _Call]] = []
        for m in mounts:
            mp = m.mount_point
            with self._stuck_lock:
                if mp in self._stuck:
                    out[mp] = None
                    continue
            call = _Call(started=time.monotonic())
            threading.Thread(target=self._worker, args=(mp, call), name=f"statfs {mp}"[:60], daemon=True).start()
            calls.append((mp, call))
        deadline = time.monotonic() + self.timeout
        for mp, call in calls:
            call.done.wait(max(0.0, deadline - time.monotonic()))
            with self._stuck_lock:
                # Checked under the lock the worker takes to finish, so a call cannot end unnoticed between
                # the wait and the registration (it would then stay "stuck" forever).
                if not call.done.is_set():
                    self._stuck[mp] = call
                    self.log.warning(
                        "statfs(%s) did not return within %.1f s; skipping until it does", mp, self.timeout
                    )
                    out[mp] = None
                    continue
            out[mp] = call.error if call.error is not None else call.result
        return out

    def _worker(self, mp: str, call: _Call) -> None:
        try:
            result = self.statfs(mp)
            error = None
        except OSError as exc:
            result, error = None, exc
        with self._stuck_lock:
            call.result, call.error = result, error
            call.done.set()
            if self._stuck.get(mp) is call:
                del self._stuck[mp]
                self.log.info("statfs(%s) returned after %.1f s; probing again", mp, time.monotonic() - call.started)

    def stuck_mounts(self) -> list[str]:
        """Mount points whose statvfs call is still pending."""
        with self._stuck_lock:
            return sorted(self._stuck)

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when the mount table cannot be read."""
        mounts = self.read_mounts()
        results = self.probe(mounts)
        for m in mounts:
            labels = {"mountpoint": m.mount_point, "device": m.source, "fstype": m.fstype}
            res = results.get(m.mount_point)
            out.add("nomade_filesystem_readonly", 1 if m.readonly else 0, **labels)
            out.add("nomade_filesystem_stuck", 1 if res is None else 0, **labels)
            if res is None:
                continue
            if isinstance(res, OSError):
                self.log.debug("statfs(%s) failed: %s", m.mount_point, res)
                out.add("nomade_filesystem_device_error", 1, **labels)
                continue
            out.add("nomade_filesystem_device_error", 0, **labels)
            u = fs_usage(res)
            out.add("nomade_filesystem_size_bytes", u.size, **labels)
            out.add("nomade_filesystem_free_bytes", u.free, **labels)
            out.add("nomade_filesystem_avail_bytes", u.avail, **labels)
            out.add("nomade_filesystem_used_ratio", u.used_ratio, **labels)
            out.add("nomade_filesystem_files", u.files, **labels)
            out.add("nomade_filesystem_files_free", u.files_free, **labels)


COLLECTOR = FilesystemCollector
