"""Per-job I/O collector (node mode): ``/proc/<pid>/io`` of each job's processes, summed into per-job counters.

**Mapping processes to jobs.** The job's cgroups (v1 and v2 layouts of
:func:`nomade.exporter.collectors.job_usage.find_job_cgroups`) list its processes; ``slurmstepd`` itself is
left out. When no SLURM job cgroup exists at all (``proctrack/linuxproc``, or a hierarchy whose directory
names carry no job id), ``scontrol listpids`` (which asks the local slurmstepds) is the fallback; option
``listpids_fallback`` (default true). It is not run on a node that has SLURM's cgroup directories but no job
in them (an idle node).

**Counters that survive process exit.** A background sampler (option ``sample_interval``, default 15 s) reads
``/proc/<pid>/stat`` (ppid, start time) and ``/proc/<pid>/io`` of every job process and adds each process's
growth since the previous reading to the job's totals, so a total never goes down when a process exits. The
kernel adds a reaped child's counters to its parent's (``kernel/exit.c`` ``wait_task_zombie``), which makes
the sum exact for the usual job tree (a batch script running ``dd``, ``srun``, ``mpirun``):

* a process seen for the first time counts with everything it has (a new process starts at 0; a job seen
  first after an exporter restart gets the history of its live processes, reaped children included);
* when a process disappears and its parent is a live process of the same job, its last-read counters become
  a *debt* of the parent: the parent's next growth includes the child's whole counters (the final bytes
  written between our last reading and the exit included, so nothing is lost), and the part already
  counted is subtracted from it instead of being counted twice;
* when a process disappears and its parent is not in the job (reparented to init, or the batch script
  reaped by slurmstepd), its bytes up to the last reading stay counted and **what it did between that
  reading and its exit is lost**: at most ``sample_interval`` seconds of its I/O. Short-lived processes
  whose parent is outside the job and that live less than one interval are missed entirely.

A pid reused by a new process is told apart by its start time. The totals of a job are kept while its
cgroup exists and dropped when it ends (the series disappear with the job, Prometheus keeps the history).

**Which byte counts.** ``nomade_job_io_written_bytes_total`` is ``write_bytes``: bytes the job's processes
caused to be sent to the storage layer, accounted when a page-cache page is dirtied or a direct I/O is
submitted (``Documentation/filesystems/proc.rst``), so it measures what reaches filesystems and not pipes,
sockets or terminals, unlike ``wchar`` (exported as ``nomade_job_io_syscall_written_bytes_total``).
Rewriting the same dirty page counts once per dirtying; bytes truncated or deleted before writeback are
counted in ``write_bytes`` and again in ``cancelled_write_bytes`` (exported; net = written - cancelled).
Filesystems that bypass the page-cache dirty accounting (GPFS's own page pool, some FUSE filesystems) show
little or nothing in ``write_bytes``; their traffic is still in the ``wchar`` figure. tmpfs writes are not
storage writes and do not appear.

**Network versus local attribution** (``fs`` label, option ``fs_attribution``, default true). At each
reading the collector looks at the process's open file descriptors: for every regular file it has open for
writing (the ``/proc/<pid>/fd/<n>`` link's mode says so, ``fs/proc/fd.c``) it takes the file's device
(``st_dev``) and finds the filesystem type from ``mountinfo``. The process's write growth over the interval
is split in proportion to the number of such files on network filesystems (option ``network_fs_types``,
default :data:`NETWORK_FS_TYPES`) versus local ones; with no file open for writing it goes to the
filesystem of its working directory. Limits: it is a sampling heuristic, not per-write accounting - files
opened and closed between two readings are not seen, a process writing a lot to one local file and a little
to one NFS file is split 50/50, and bytes a reaped child wrote are attributed by the child's readings (the
unseen tail by the parent's). Up to ``max_fds`` (default 1024) descriptors are examined per process.

**Permissions**: reading another user's ``/proc/<pid>/io`` needs root (or ``CAP_SYS_PTRACE``); when every
process of every job is unreadable the collector fails (``up`` 0) with that reason.

**Cardinality**: 7 series per running job (8 with both ``fs`` values), removed when the job ends.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..metrics import MetricSet, MetricSpec
from ..parsers.mounts import parse_mountinfo
from ..parsers.proc_pid_io import ProcIo, parse_pid_io, parse_pid_stat
from ..runner import CommandError
from ..sampler import Sampler
from .base import Collector, CollectorContext, CollectorError
from .job_usage import (
    SLURMSTEPD_COMM,
    find_job_cgroups,
    list_job_pids,
    read_text,
    read_text_checked,
    slurm_cgroups_present,
)

NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "ceph",
        "fuse.ceph",
        "fuse.cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "panfs",
        "wekafs",
        "fuse.sshfs",
        "afs",
        "orangefs",
        "pvfs2",
        "9p",
    }
)
"""Filesystem types counted as network/parallel filesystems (mountinfo field 9)."""

COUNTED = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes")

_J = ("job_id",)


@dataclass(frozen=True)
class ProcReading:
    """One process of a job at one reading.

    Attributes:
        pid, ppid, starttime: from ``/proc/<pid>/stat``.
        io: counters from ``/proc/<pid>/io`` (missing fields as 0 is never assumed: ``None`` stays None).
        network_share: share (0-1) of this interval's writes attributed to network filesystems.

    """

    pid: int
    ppid: int
    starttime: int
    io: ProcIo
    network_share: float = 0.0


@dataclass
class _Proc:
    starttime: int
    ppid: int
    io: dict[str, int]
    debt: dict[str, int] = field(default_factory=dict)


@dataclass
class JobIoTotals:
    """Cumulative counters of one job.

    Attributes:
        values: ``{io field: total}`` over :data:`COUNTED`, bytes or syscall counts.
        written_local, written_network: ``write_bytes`` split by filesystem class.
        processes: processes in the last reading.

    """

    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0.0))
    written_local: float = 0.0
    written_network: float = 0.0
    processes: int = 0


class JobIoAccumulator:
    """Turns successive per-process readings into per-job counters that never go down (see module doc).

    Not thread-safe by itself: the sampler thread is its only writer; :meth:`snapshot` copies.
    """

    def __init__(self) -> None:
        self._procs: dict[str, dict[int, _Proc]] = {}
        self.totals: dict[str, JobIoTotals] = {}

    def update(self, job_id: str, readings: list[ProcReading]) -> None:
        """Add one reading of every process of ``job_id``."""
        prev = self._procs.get(job_id, {})
        tot = self.totals.setdefault(job_id, JobIoTotals())
        cur: dict[int, _Proc] = {}
        for r in readings:
            io = {k: v for k in COUNTED if (v := getattr(r.io, k)) is not None}
            old = prev.get(r.pid)
            debt = dict(old.debt) if old is not None and old.starttime == r.starttime else {}
            cur[r.pid] = _Proc(r.starttime, r.ppid, io, debt)
        # Processes gone since the last reading whose parent is still a live process of the job: the parent
        # will report their whole counters once it reaps them, so what was already counted becomes its debt.
        # Invariant: what the job total holds for a live process's subtree is its counters plus its debt.
        for pid, old in prev.items():
            if pid in cur and cur[pid].starttime == old.starttime:
                continue
            parent = cur.get(old.ppid)
            if parent is not None and (old.ppid not in prev or prev[old.ppid].starttime == parent.starttime):
                for k, v in old.io.items():
                    parent.debt[k] = parent.debt.get(k, 0) + v + old.debt.get(k, 0)
        for r in readings:
            proc = cur[r.pid]
            old = prev.get(r.pid)
            same = old is not None and old.starttime == r.starttime
            for k, v in proc.io.items():
                grown = max(0, v - old.io.get(k, v)) if same and old is not None else max(0, v)
                owed = proc.debt.get(k, 0)
                paid = min(owed, grown)
                if owed:
                    proc.debt[k] = owed - paid
                counted = grown - paid
                tot.values[k] += counted
                if k == "write_bytes":
                    share = min(1.0, max(0.0, r.network_share))
                    tot.written_network += counted * share
                    tot.written_local += counted * (1.0 - share)
        tot.processes = len(readings)
        self._procs[job_id] = cur

    def forget_except(self, job_ids: set[str]) -> None:
        """Drop the state of jobs that no longer exist on the node."""
        for jid in set(self._procs) - job_ids:
            del self._procs[jid]
        for jid in set(self.totals) - job_ids:
            del self.totals[jid]

    def snapshot(self) -> dict[str, JobIoTotals]:
        """A copy of the totals, safe to hand to scrapers."""
        return {
            j: JobIoTotals(dict(t.values), t.written_local, t.written_network, t.processes)
            for j, t in self.totals.items()
        }


def parse_listpids(text: str) -> tuple[dict[str, list[int]], int]:
    """Parse ``scontrol listpids`` output (``PID JOBID STEPID LOCALID GLOBALID`` columns).

    Returns:
        ``({job_id: [pid, ...]}, number of unusable lines)``. The header and "No job steps exist" prose
        are not issues.

    """
    jobs: dict[str, list[int]] = {}
    issues = 0
    for line in text.splitlines():
        f = line.split()
        if not f or f[0] == "PID" or not f[0].isdigit():
            if f and f[0] != "PID" and not line.strip().startswith(("No job", "There are no")):
                issues += 1
            continue
        if len(f) < 2 or not f[1].isdigit():
            issues += 1
            continue
        jobs.setdefault(f[1], []).append(int(f[0]))
    return jobs, issues


class JobIoCollector(Collector):
    """Per-job read/written bytes from ``/proc/<pid>/io``, as counters that survive process exit.

    Options (``[collector.job_io]``):
        sample_interval: seconds between readings (default 15; the lab uses 5).
        fs_attribution: split written bytes into ``fs="local"``/``"network"`` (default true); when false,
            everything is reported as ``fs="unknown"`` and no descriptor is examined.
        network_fs_types: list of filesystem types counted as network (default :data:`NETWORK_FS_TYPES`).
        max_fds: descriptors examined per process for the attribution (default 1024).
        listpids_fallback: use ``scontrol listpids`` when no job cgroup exists (default true).
    """

    name = "job_io"
    mode = "node"
    description = "Per-job I/O from /proc/<pid>/io of each job's processes (mapped through job cgroups)."
    metrics = (
        MetricSpec(
            "nomade_job_io_read_bytes_total",
            "counter",
            "Bytes the job's processes caused to be read from the storage layer (/proc/<pid>/io read_bytes).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_io_written_bytes_total",
            "counter",
            "Bytes the job's processes caused to be sent to the storage layer (/proc/<pid>/io write_bytes), "
            "by filesystem class (local, network, or unknown when attribution is off).",
            ("job_id", "fs"),
            "bytes",
        ),
        MetricSpec(
            "nomade_job_io_cancelled_written_bytes_total",
            "counter",
            "Dirty bytes never written because the file was truncated or deleted (cancelled_write_bytes).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_io_syscall_read_bytes_total",
            "counter",
            "Bytes passed to read syscalls by the job's processes, cache hits, pipes and sockets included (rchar).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_io_syscall_written_bytes_total",
            "counter",
            "Bytes passed to write syscalls by the job's processes, pipes and sockets included (wchar).",
            _J,
            "bytes",
        ),
        MetricSpec("nomade_job_io_read_syscalls_total", "counter", "Read syscalls of the job (syscr).", _J),
        MetricSpec("nomade_job_io_write_syscalls_total", "counter", "Write syscalls of the job (syscw).", _J),
        MetricSpec(
            "nomade_job_io_processes",
            "gauge",
            "Processes of the job read at the last sampling (slurmstepd excluded).",
            _J,
        ),
        MetricSpec(
            "nomade_job_io_unreadable_processes",
            "gauge",
            "Processes of the job whose /proc/<pid>/io could not be read at the last sampling (permissions).",
            _J,
        ),
        MetricSpec(
            "nomade_job_io_sample_interval_seconds",
            "gauge",
            "Seconds between the job I/O readings.",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext, *, start: bool = True) -> None:
        super().__init__(ctx)
        self.fs_attribution = bool(self.option("fs_attribution", True))
        self.network_fs = frozenset(self.option("network_fs_types", sorted(NETWORK_FS_TYPES)))
        self.max_fds = int(self.option("max_fds", 1024))
        self.listpids_fallback = bool(self.option("listpids_fallback", True))
        self.acc = JobIoAccumulator()
        self._unreadable: dict[str, int] = {}
        self._error: str | None = None
        self._state_lock = threading.Lock()
        self._dev_fs: dict[int, str] = {}
        self.sampler: Sampler[dict[str, JobIoTotals]] = Sampler(
            self.sample, float(self.option("sample_interval", 15.0)), name="job_io"
        )
        if start:
            self.sampler.start()

    # ------------------------------------------------------------------------------------------ sampling

    def job_pids(self) -> dict[str, list[int]]:
        """``{job_id: [pid, ...]}`` from the job cgroups, or from ``scontrol listpids`` without any."""
        jobs = find_job_cgroups(self.ctx.sys_root)
        if jobs:
            out: dict[str, list[int]] = {}
            for jid, job in jobs.items():
                listing = list_job_pids(job)
                if listing is not None:
                    self.count_parse_errors(listing.issues)
                    out[jid] = listing.pids
            return out
        # SLURM's cgroup directories without any job: an idle node, nothing to ask slurmstepd about.
        if not self.listpids_fallback or slurm_cgroups_present(self.ctx.sys_root):
            return {}
        try:
            res = self.ctx.runner.run(["scontrol", "listpids"], ttl=0)
        except CommandError as exc:
            if exc.reason == "missing":
                return {}
            raise
        pids, issues = parse_listpids(res.stdout)
        self.count_parse_errors(issues)
        return pids

    def sample(self) -> dict[str, JobIoTotals]:
        """Take one reading of every job process and return the updated totals (the sampler's read())."""
        mapping = self.job_pids()
        self._dev_fs = self._mount_types(self.ctx.proc_root / "self" / "mountinfo")
        unreadable: dict[str, int] = {}
        readable_any = False
        for jid, pids in mapping.items():
            readings: list[ProcReading] = []
            bad = 0
            for pid in pids:
                r, denied = self._read_proc(pid)
                if r is not None:
                    readings.append(r)
                    readable_any = True
                bad += denied
            unreadable[jid] = bad
            self.acc.update(jid, readings)
        self.acc.forget_except(set(mapping))
        with self._state_lock:
            self._unreadable = unreadable
            nbad = sum(unreadable.values())
            self._error = (
                f"/proc/<pid>/io unreadable for {nbad} job processes: run as root or with CAP_SYS_PTRACE"
                if nbad and not readable_any
                else None
            )
            return self.acc.snapshot()

    def _read_proc(self, pid: int) -> tuple[ProcReading | None, int]:
        # Path strings, not Path objects: this runs for every job process at every reading.
        base = f"{self.ctx.proc_root}/{pid}"
        st_text = read_text(f"{base}/stat")
        if st_text is None:
            return None, 0  # exited between listing and reading
        st = parse_pid_stat(st_text)
        self.count_parse_errors(len(st.issues))
        if not st.records or st.records[0].comm == SLURMSTEPD_COMM:
            return None, 0
        try:
            io_text = read_text_checked(f"{base}/io")
        except PermissionError:
            return None, 1
        except OSError:
            return None, 0
        io = parse_pid_io(io_text)
        self.count_parse_errors(len(io.issues))
        if not io.records:
            return None, 0
        share = self._network_share(base) if self.fs_attribution else 0.0
        s = st.records[0]
        return ProcReading(pid, s.ppid, s.starttime, io.records[0], share), 0

    def _mount_types(self, path: Path) -> dict[int, str]:
        text = read_text(path)
        if text is None:
            return {}
        res = parse_mountinfo(text)
        return {os.makedev(m.major, m.minor): m.fstype for m in res.records}

    def _fs_of_dev(self, dev: int, base: Path | str) -> str | None:
        fs = self._dev_fs.get(dev)
        if fs is None:
            # A mount only in the job's mount namespace (job_container/tmpfs): look at the process's view.
            self._dev_fs.update(self._mount_types(Path(base) / "mountinfo"))
            fs = self._dev_fs.get(dev)
            if fs is None:
                self._dev_fs[dev] = ""  # unknown: do not re-read for every descriptor
        return fs or None

    def _network_share(self, base: Path | str) -> float:
        net = local = 0
        fd_dir = f"{base}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            fds = []
        for name in fds[: self.max_fds]:
            link = f"{fd_dir}/{name}"
            try:
                if not os.lstat(link).st_mode & stat.S_IWUSR:
                    continue  # not open for writing
                st = os.stat(link)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            fs = self._fs_of_dev(st.st_dev, base)
            if fs is None:
                continue
            if fs in self.network_fs:
                net += 1
            else:
                local += 1
        if net + local:
            return net / (net + local)
        try:
            fs = self._fs_of_dev(os.stat(f"{base}/cwd").st_dev, base)
        except OSError:
            return 0.0
        return 1.0 if fs in self.network_fs else 0.0

    # ------------------------------------------------------------------------------------------ collect

    def collect(self, out: MetricSet) -> None:
        """Export the totals of the last reading; raises CollectorError when job processes are unreadable."""
        with self._state_lock:
            error, unreadable = self._error, dict(self._unreadable)
        if error is not None:
            raise CollectorError(error)
        pair = self.sampler.pair(max_age=3 * self.sampler.interval + 1)
        if pair is None:
            if self.sampler.errors and self.sampler.pair() is None:
                raise CollectorError("job I/O sampling failed (see the exporter log)")
            return
        prev, cur = pair
        out.add("nomade_job_io_sample_interval_seconds", cur.taken_at - prev.taken_at)
        fs_names: tuple[tuple[str, Callable[[JobIoTotals], float]], ...]
        if self.fs_attribution:
            fs_names = (("local", lambda t: t.written_local), ("network", lambda t: t.written_network))
        else:
            fs_names = (("unknown", lambda t: t.values["write_bytes"]),)
        for jid, t in cur.value.items():
            v = t.values
            out.add("nomade_job_io_read_bytes_total", v["read_bytes"], job_id=jid)
            for fs, get in fs_names:
                out.add("nomade_job_io_written_bytes_total", get(t), job_id=jid, fs=fs)
            out.add("nomade_job_io_cancelled_written_bytes_total", v["cancelled_write_bytes"], job_id=jid)
            out.add("nomade_job_io_syscall_read_bytes_total", v["rchar"], job_id=jid)
            out.add("nomade_job_io_syscall_written_bytes_total", v["wchar"], job_id=jid)
            out.add("nomade_job_io_read_syscalls_total", v["syscr"], job_id=jid)
            out.add("nomade_job_io_write_syscalls_total", v["syscw"], job_id=jid)
            out.add("nomade_job_io_processes", t.processes, job_id=jid)
            out.add("nomade_job_io_unreadable_processes", unreadable.get(jid), job_id=jid)

    @classmethod
    def available(cls) -> bool:
        """True when this host has SLURM job cgroups (see :class:`JobUsageCollector`)."""
        return slurm_cgroups_present(Path("/sys"))

    def close(self) -> None:
        """Stop the background sampler."""
        self.sampler.stop()


COLLECTOR = JobIoCollector
