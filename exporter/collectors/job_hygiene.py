"""Job hygiene collector (node mode): orphaned job processes, leftover local scratch, stale data on scratch.

**Orphaned jobs** (every scrape, cheap): a job cgroup that still holds processes while no ``slurmstepd`` of that
job runs on the host (``slurmstepd: [<job>.<step>]`` process titles in ``/proc/*/cmdline``). SLURM manages a job
on a node through its slurmstepds; processes left when they are gone are no longer tracked, limited or killed
by SLURM (an unkillable process after a cancelled job, a failed epilog). The check is purely local: no
``squeue`` per node and scrape, which at scale would multiply load on slurmctld.

**Stuck running jobs** are not computed here: ``nomade_job_usage_cpu_idle_seconds`` (job_usage collector) is
the per-job signal, and an alert rule compares it to a threshold. ``COMPLETING`` for too long is a controller
figure (squeue) and job-array health a sacct figure: see :mod:`nomade.exporter.parsers.job_arrays` and the
array-health figures that the accounting collector (:mod:`nomade.exporter.collectors.slurm_accounting`) exports.

**Leftover local scratch** (background, option ``scratch_dirs``, off when empty): entries of each scratch root
whose name matches ``scratch_pattern`` (default
:data:`~nomade.exporter.parsers.job_hygiene.DEFAULT_SCRATCH_PATTERN`) for a job that has neither a cgroup nor
a slurmstepd on this node, and whose modification time is older than ``scratch_min_age_seconds`` (default
600, so a prolog that creates the directory before the job's cgroup exists is not reported). Their count and
allocated bytes per root are exported; the size walk stops at ``max_files`` files per root (then the bytes
are a lower bound and ``..._scan_truncated`` is 1).

**Stale data** (background, option ``stale_scan_paths``, off by default): a bounded, rate-limited walk of each
path (``stale_max_files`` files at most, ``stale_files_per_second`` at most, every ``stale_scan_interval``
seconds) summing the files not used (max of atime and mtime) for ``stale_min_age_days`` per owner; the
``stale_top_owners`` owners with the most stale bytes get their own ``owner`` label, the rest ``other``. The walk
stays on the path's filesystem (does not cross mount points) and never follows symlinks.

**Cardinality**: 1 series + 1 per orphaned job; 3 per scratch root; 3 per stale path and owner (bounded).
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..metrics import MetricSet, MetricSpec
from ..parsers.job_hygiene import (
    DEFAULT_SCRATCH_PATTERN,
    FileEntry,
    OwnerSummary,
    scratch_job_id,
    slurmstepd_job,
    stale_summary,
)
from .base import Collector, CollectorContext
from .job_usage import SLURMSTEPD_COMM, find_job_cgroups, list_job_pids, pid_comm, user_name

# ------------------------------------------------------------------------------------------- scanning


@dataclass
class ScratchResult:
    """Leftover scratch of one root: directories, allocated bytes, whether the size walk was cut."""

    dirs: int = 0
    bytes: int = 0
    truncated: bool = False


@dataclass
class StaleResult:
    """One stale scan of one path."""

    owners: dict[str, OwnerSummary] = field(default_factory=dict)
    files_scanned: int = 0
    truncated: bool = False
    finished_at: float = 0.0
    duration: float = 0.0


class _RateLimiter:
    """Sleep so that at most ``rate`` items per second pass (``rate`` <= 0: unlimited)."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.rate, self.stop = rate, stop
        self.start, self.n = time.monotonic(), 0

    def tick(self) -> None:
        self.n += 1
        if self.rate > 0 and self.n % 256 == 0:
            ahead = self.n / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                self.stop.wait(ahead)


def walk_files(root: Path, stop: threading.Event, limiter: _RateLimiter | None = None) -> Iterator[os.stat_result]:
    """``lstat`` results of the regular files under ``root``: no symlinks followed, no mount point crossed."""
    try:
        dev = os.lstat(root).st_dev
    except OSError:
        return
    stack = [str(root)]
    while stack and not stop.is_set():
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == dev:
                        stack.append(e.path)
                elif stat.S_ISREG(st.st_mode):
                    if limiter is not None:
                        limiter.tick()
                    yield st


class JobHygieneCollector(Collector):
    """Orphaned job processes, leftover per-job scratch and stale data (see the module docstring).

    Options (``[collector.job_hygiene]``):
        scratch_dirs: local scratch roots holding per-job directories (default ``[]``: off).
        scratch_pattern: regex of a per-job entry name with a ``job_id`` group.
        scratch_min_age_seconds: grace before an entry of a finished job counts (default 600).
        scratch_interval: seconds between scratch scans (default 300).
        max_files: files walked per scratch root for sizes (default 100000).
        stale_scan_paths: paths to scan for stale data (default ``[]``: off).
        stale_min_age_days: days without use for a file to be stale (default 30).
        stale_max_files: files scanned per path and pass at most (default 1000000).
        stale_files_per_second: rate limit of the walk (default 5000; 0 = unlimited).
        stale_scan_interval: seconds between passes (default 86400).
        stale_top_owners: owners with their own label (default 20).
        owner_names: report owners as login names instead of uids (default true).
    """

    name = "job_hygiene"
    mode = "node"
    description = "Orphaned job processes, leftover per-job scratch and stale scratch data."
    metrics = (
        MetricSpec(
            "nomade_job_hygiene_orphaned_jobs",
            "gauge",
            "Job cgroups holding processes while no slurmstepd of the job runs on this host.",
        ),
        MetricSpec(
            "nomade_job_hygiene_orphaned_processes",
            "gauge",
            "Processes of an orphaned job (its cgroup, slurmstepd excluded).",
            ("job_id",),
        ),
        MetricSpec(
            "nomade_job_hygiene_scratch_leftover_dirs",
            "gauge",
            "Per-job scratch entries whose job no longer runs on this node (older than the grace time).",
            ("root",),
        ),
        MetricSpec(
            "nomade_job_hygiene_scratch_leftover_bytes",
            "gauge",
            "Allocated bytes of those entries (a lower bound when the walk was truncated).",
            ("root",),
            "bytes",
        ),
        MetricSpec(
            "nomade_job_hygiene_scratch_scan_truncated",
            "gauge",
            "1 when the last scratch size walk of the root stopped at max_files.",
            ("root",),
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_files",
            "gauge",
            "Files under the path not used for stale_min_age_days, by owner (top owners, rest 'other').",
            ("path", "owner"),
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_bytes",
            "gauge",
            "Allocated bytes of those files, by owner.",
            ("path", "owner"),
            "bytes",
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_oldest_use_timestamp_seconds",
            "gauge",
            "Latest use (max atime, mtime) of the owner's oldest stale file, Unix seconds.",
            ("path", "owner"),
            "seconds",
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_scan_files",
            "gauge",
            "Files examined by the last stale scan of the path.",
            ("path",),
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_scan_truncated",
            "gauge",
            "1 when the last stale scan of the path stopped at stale_max_files.",
            ("path",),
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_scan_timestamp_seconds",
            "gauge",
            "When the last stale scan of the path finished, Unix seconds.",
            ("path",),
            "seconds",
        ),
        MetricSpec(
            "nomade_job_hygiene_stale_scan_duration_seconds",
            "gauge",
            "How long the last stale scan of the path took.",
            ("path",),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext, *, start: bool = True) -> None:
        super().__init__(ctx)
        self.scratch_dirs = [Path(p) for p in self.option("scratch_dirs", [])]
        self.scratch_pattern = re.compile(str(self.option("scratch_pattern", DEFAULT_SCRATCH_PATTERN)))
        self.scratch_min_age = float(self.option("scratch_min_age_seconds", 600))
        self.scratch_interval = float(self.option("scratch_interval", 300))
        self.max_files = int(self.option("max_files", 100_000))
        self.stale_paths = [Path(p) for p in self.option("stale_scan_paths", [])]
        self.stale_min_age = float(self.option("stale_min_age_days", 30)) * 86400.0
        self.stale_max_files = int(self.option("stale_max_files", 1_000_000))
        self.stale_rate = float(self.option("stale_files_per_second", 5000))
        self.stale_interval = float(self.option("stale_scan_interval", 86400))
        self.stale_top = int(self.option("stale_top_owners", 20))
        self.owner_names = bool(self.option("owner_names", True))
        self._scratch: dict[str, ScratchResult] = {}
        self._stale: dict[str, StaleResult] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start and (self.scratch_dirs or self.stale_paths):
            self._thread = threading.Thread(target=self._loop, name="nomade-job_hygiene", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------------------------------ local state

    def stepd_jobs(self) -> set[str]:
        """Job ids with a live ``slurmstepd`` on this host (from ``/proc/*/cmdline`` process titles)."""
        jobs: set[str] = set()
        try:
            names = os.listdir(self.ctx.proc_root)
        except OSError:
            return jobs
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(self.ctx.proc_root / name / "cmdline", "rb") as fh:
                    head = fh.read(256)
            except OSError:
                continue
            if head.startswith(b"slurmstepd: ["):
                jid = slurmstepd_job(head)
                if jid is not None:
                    jobs.add(jid)
        return jobs

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when the cgroup filesystem is missing."""
        jobs = find_job_cgroups(self.ctx.sys_root)
        stepds = self.stepd_jobs()
        orphans = 0
        for jid, job in jobs.items():
            if jid in stepds:
                continue
            listing = list_job_pids(job)
            if listing is None:
                continue
            self.count_parse_errors(listing.issues)
            n = sum(1 for p in listing.pids if pid_comm(self.ctx.proc_root, p) not in (None, SLURMSTEPD_COMM))
            if n:
                orphans += 1
                out.add("nomade_job_hygiene_orphaned_processes", n, job_id=jid)
        out.add("nomade_job_hygiene_orphaned_jobs", orphans)
        with self._lock:
            scratch, stale = dict(self._scratch), dict(self._stale)
        for root, r in scratch.items():
            out.add("nomade_job_hygiene_scratch_leftover_dirs", r.dirs, root=root)
            out.add("nomade_job_hygiene_scratch_leftover_bytes", r.bytes, root=root)
            out.add("nomade_job_hygiene_scratch_scan_truncated", int(r.truncated), root=root)
        for path, s in stale.items():
            for owner, o in s.owners.items():
                out.add("nomade_job_hygiene_stale_files", o.files, path=path, owner=owner)
                out.add("nomade_job_hygiene_stale_bytes", o.bytes, path=path, owner=owner)
                out.add("nomade_job_hygiene_stale_oldest_use_timestamp_seconds", o.oldest, path=path, owner=owner)
            out.add("nomade_job_hygiene_stale_scan_files", s.files_scanned, path=path)
            out.add("nomade_job_hygiene_stale_scan_truncated", int(s.truncated), path=path)
            out.add("nomade_job_hygiene_stale_scan_timestamp_seconds", s.finished_at, path=path)
            out.add("nomade_job_hygiene_stale_scan_duration_seconds", s.duration, path=path)

    # ------------------------------------------------------------------------------------------ background

    def _loop(self) -> None:
        next_scratch = next_stale = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.scratch_dirs and now >= next_scratch:
                self._guard(self.scan_scratch)
                next_scratch = time.monotonic() + self.scratch_interval
            if self.stale_paths and now >= next_stale:
                self._guard(self.scan_stale)
                next_stale = time.monotonic() + self.stale_interval
            due = min(
                next_scratch if self.scratch_dirs else float("inf"),
                next_stale if self.stale_paths else float("inf"),
            )
            self._stop.wait(max(1.0, due - time.monotonic()))

    def _guard(self, fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - a background scan must never kill the thread
            self.log.warning("job_hygiene background scan failed: %s", exc)

    def scan_scratch(self) -> None:
        """One pass over ``scratch_dirs`` (called by the background thread; public for tests)."""
        try:
            running = set(find_job_cgroups(self.ctx.sys_root)) | self.stepd_jobs()
        except Exception:  # noqa: BLE001 - without the running set nothing can be called leftover
            return
        now = self.ctx.clock()
        results: dict[str, ScratchResult] = {}
        for root in self.scratch_dirs:
            try:
                entries = list(os.scandir(root))
            except OSError:
                continue  # a missing root gives no series rather than a zero
            r = ScratchResult()
            budget = self.max_files
            for e in sorted(entries, key=lambda e: e.name):
                jid = scratch_job_id(e.name, self.scratch_pattern)
                if jid is None or jid in running:
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if now - st.st_mtime < self.scratch_min_age:
                    continue
                r.dirs += 1
                if stat.S_ISREG(st.st_mode):
                    r.bytes += st.st_blocks * 512
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    continue
                for fst in walk_files(Path(e.path), self._stop):
                    if budget <= 0:
                        r.truncated = True
                        break
                    budget -= 1
                    r.bytes += fst.st_blocks * 512
            results[str(root)] = r
        with self._lock:
            self._scratch = results

    def scan_stale(self) -> None:
        """One rate-limited pass over ``stale_scan_paths`` (background thread; public for tests)."""
        for path in self.stale_paths:
            if self._stop.is_set():
                return
            if not path.is_dir():
                continue
            t0 = time.monotonic()
            limiter = _RateLimiter(self.stale_rate, self._stop)
            entries: list[FileEntry] = []
            truncated = False
            for st in walk_files(path, self._stop, limiter):
                if len(entries) >= self.stale_max_files:
                    truncated = True
                    break
                entries.append(FileEntry(st.st_uid, st.st_blocks * 512, st.st_atime, st.st_mtime))
            owners = stale_summary(entries, self.ctx.clock(), self.stale_min_age, self.stale_top)
            if self.owner_names:
                owners = {(o if o == "other" else user_name(int(o))): s for o, s in owners.items()}
            res = StaleResult(owners, len(entries), truncated, self.ctx.clock(), time.monotonic() - t0)
            with self._lock:
                self._stale[str(path)] = res

    def close(self) -> None:
        """Stop the background scans."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


COLLECTOR = JobHygieneCollector
