"""Per-job usage collector (node mode): CPU, memory, OOM kills, processes and GPUs of each SLURM job from its cgroup.

These are the live series behind running-job trends (time-to-OOM = projection of ``memory_usage_bytes`` to
``memory_limit_bytes``) and run-time risk. One exporter per compute node reads the job cgroups SLURM's
``task/cgroup`` / ``proctrack/cgroup`` / ``jobacct_gather/cgroup`` plugins create.

**Layouts found** (see :mod:`nomade.exporter.parsers.cgroup`), under ``<sys_root>/fs/cgroup``:

* cgroup v1: ``<controller>/slurm[_<NodeName>]/uid_<uid>/job_<id>``. Values come from the ``cpuacct``
  (CPU) and ``memory`` hierarchies; processes from the first of ``freezer`` (proctrack/cgroup, which holds
  every process of the job), ``cpuacct``, ``memory``, ``pids`` that has the job. The ``slurm_<NodeName>``
  form is what several slurmd on one host create (the lab: ``slurm_c01`` ... ``slurm_gpu01``, verified
  live with SLURM 22.05.8 on kernel 6.18 with the v1 controllers mounted).
* cgroup v2: ``system.slice/[<NodeName>_]slurmstepd.scope/job_<id>`` (SLURM >= 22.05 ``cgroup/v2``); also
  any ``*.slice/*slurmstepd.scope`` and ``slurmstepd.scope`` at the root (``IgnoreSystemd=yes``).
* Layouts where the cgroup path carries no job id (a site's own hierarchy, containers with a cgroup
  namespace) are not readable here; the job I/O collector maps processes through ``scontrol listpids`` in
  that case, but per-job cgroup figures stay absent (absent beats wrong).

**OOM kills** (verified live): in v1 the ``oom_kill`` line of ``memory.oom_control`` counts only kills of
tasks in that very cgroup (the lab's OOM job shows 1 in ``step_batch/task_0`` and 0 at the job level), so
the job figure is the sum over the job's whole subtree. In v2 ``memory.events`` is hierarchical (unless the
hierarchy is mounted with ``memory_localevents``), so the job-level file is read.

**Memory**: v1 ``memory.usage_in_bytes`` / ``max_usage_in_bytes`` / ``limit_in_bytes`` (the limit SLURM
enforces with ``ConstrainRAMSpace``; page cache included, as in the limit check); v2 ``memory.current`` /
``memory.peak`` (kernel 5.19+, absent before) / ``memory.max``. Unlimited gives no limit sample. RSS and page
cache: v1 ``memory.stat`` ``total_rss`` / ``total_cache``, v2 ``anon`` / ``file``.

**CPU**: v1 ``cpuacct.usage`` (ns) and ``cpuacct.stat`` user/system (USER_HZ ticks, ``sysconf(_SC_CLK_TCK)``);
v2 ``cpu.stat`` ``usage_usec`` / ``user_usec`` / ``system_usec``.

**Stuck jobs**: ``nomade_job_usage_cpu_idle_seconds`` is the time since the job's CPU counter last grew by at
least ``cpu_progress_seconds`` (option, default 1 CPU-second), measured across scrapes from the exporter's
clock; it restarts at 0 when the exporter restarts. An alert on ``> 3600`` finds running jobs with no CPU
progress (a hung MPI rank, a job waiting on a dead license server).

**GPU mapping** (``nomade_job_usage_gpu_info{job_id,gpu}``): v1 ``devices.list`` of the job when SLURM
constrains devices (``ConstrainDevices=yes``; NVIDIA minors of major 195), else ``SLURM_JOB_GPUS`` from the
environment of one process of the job (root only; the GRES index on the node, equal to the ``/dev/nvidia``
minor when gres.conf lists ``File=`` in minor order). v2 devices are eBPF programs that cannot be read, so
v2 uses the environment. Option ``gpu_source``: ``auto`` (default), ``devices``, ``environ``, ``off``.

**Processes and threads** exclude ``slurmstepd`` itself (v1 ``memory`` and ``freezer`` place it inside the
job's cgroup).

**Graceful skip**: without any SLURM cgroup directory the collector is not *available* (mode ``auto`` leaves
it off); enabled anyway on a node with no job it exports ``nomade_job_usage_jobs 0``: no job is a valid
state of a compute node, not a failure. It fails (``up`` 0) only when ``/sys/fs/cgroup`` itself is missing.

**Cardinality**: about 14 series per running job (+1 per GPU), removed when the job ends.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from ..metrics import MetricSet, MetricSpec
from ..parsers.cgroup import (
    environ_value,
    keyed_dict,
    limit_bytes,
    nvidia_gpus_from_devices,
    parse_devices_list,
    parse_flat_keyed,
    parse_gpu_index_list,
    parse_job_cgroup_path,
    parse_pid_list,
    parse_single_value,
    single_value,
)
from ..parsers.proc_pid_io import parse_pid_stat
from .base import Collector, CollectorContext, CollectorError

V1_PROC_CONTROLLERS = ("freezer", "cpuacct", "memory", "pids", "cpuset", "devices")
"""v1 hierarchies searched for a job's processes, in order of preference."""

V2_SCOPE_GLOBS = ("system.slice/*slurmstepd.scope", "*.slice/*slurmstepd.scope", "*slurmstepd.scope")

SLURMSTEPD_COMM = "slurmstepd"

_J = ("job_id",)


@dataclass
class JobCgroup:
    """One job's cgroup directories on this node.

    Attributes:
        job_id: SLURM job id.
        version: 1 or 2.
        slurm_node: NodeName from the directory name (``""`` when a single slurmd runs on the host).
        uid: owner uid (v1 ``uid_<uid>``; in v2 the owner of one of the job's processes, when any).
        dirs: v1: ``{controller: job directory}``; v2: ``{"unified": job directory}``.

    """

    job_id: str
    version: int
    slurm_node: str
    uid: int | None
    dirs: dict[str, Path] = field(default_factory=dict)

    def proc_dir(self) -> Path | None:
        """The directory whose subtree lists the job's processes."""
        if self.version == 2:
            return self.dirs.get("unified")
        for ctrl in V1_PROC_CONTROLLERS:
            if ctrl in self.dirs:
                return self.dirs[ctrl]
        return None


def cgroup_root(sys_root: Path) -> Path:
    """``<sys_root>/fs/cgroup``."""
    return sys_root / "fs" / "cgroup"


def find_job_cgroups(sys_root: Path) -> dict[str, JobCgroup]:
    """Find every SLURM job cgroup on this node (v1 and v2 layouts, see the module docstring).

    Returns:
        ``{job_id: JobCgroup}``; a job present in several v1 hierarchies is one entry with several dirs.
        When the same job id appears under two NodeNames (impossible within one cluster) the first wins.

    Raises:
        CollectorError: ``<sys_root>/fs/cgroup`` does not exist.

    """
    root = cgroup_root(sys_root)
    if not root.is_dir():
        raise CollectorError(f"{root} does not exist: no cgroup filesystem")
    jobs: dict[str, JobCgroup] = {}
    # v1: <controller>/slurm*/uid_*/job_*
    for ctrl_dir in _subdirs(root):
        if (ctrl_dir / "cgroup.controllers").exists():
            continue  # a cgroup2 mount (hybrid "unified"), searched below
        for top in _subdirs(ctrl_dir, "slurm"):
            for uid_dir in _subdirs(top, "uid_"):
                for job_dir in _subdirs(uid_dir, "job_"):
                    name = parse_job_cgroup_path((top.name, uid_dir.name, job_dir.name))
                    if name is None:
                        continue
                    job = jobs.setdefault(name.job_id, JobCgroup(name.job_id, 1, name.slurm_node, name.uid))
                    if job.version == 1 and job.slurm_node == name.slurm_node:
                        job.dirs[ctrl_dir.name] = job_dir
    # v2: only on a pure unified hierarchy (SLURM refuses hybrid setups for cgroup/v2).
    if (root / "cgroup.controllers").exists():
        seen: set[Path] = set()
        root_parts = root.parts
        for pattern in V2_SCOPE_GLOBS:
            # Sorting by parts is the order of Path's own comparison (component lists), without its __lt__ calls.
            for scope in sorted(root.glob(pattern), key=_parts):
                if scope in seen or not scope.is_dir():
                    continue
                seen.add(scope)
                # scope.relative_to(root).parts: glob's results extend root's parts (pathlib is costly per job).
                scope_parts = scope.parts[len(root_parts) :]
                # Strings first: a Path is made only for the job directories kept.
                for name_text, path in _subdir_paths(str(scope), "job_"):
                    name = parse_job_cgroup_path((*scope_parts, name_text))
                    if name is None or name.job_id in jobs:
                        continue
                    jobs[name.job_id] = JobCgroup(name.job_id, 2, name.slurm_node, None, {"unified": Path(path)})
    return jobs


def slurm_cgroups_present(sys_root: Path) -> bool:
    """Whether this host has any SLURM cgroup top directory (v1 ``slurm*`` or v2 ``*slurmstepd.scope``)."""
    root = cgroup_root(sys_root)
    if not root.is_dir():
        return False
    for ctrl_dir in _subdirs(root):
        if any(True for _ in _subdirs(ctrl_dir, "slurm")):
            return True
    return any(any(True for _ in root.glob(p)) for p in V2_SCOPE_GLOBS)


_parts = attrgetter("parts")


def _subdir_paths(path: str, prefix: str = "") -> list[tuple[str, str]]:
    """``(name, path)`` of the subdirectories of ``path`` whose name starts with ``prefix``, by name.

    Links are not followed; an unreadable directory or entry is skipped.
    """
    out: list[tuple[str, str]] = []
    try:
        entries = list(os.scandir(path))
    except OSError:
        return out
    for e in entries:
        try:
            if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
                out.append((e.name, e.path))
        except OSError:
            continue
    out.sort()
    return out


def _subdirs(path: Path, prefix: str = "") -> Iterator[Path]:
    """:func:`_subdir_paths` as Paths."""
    for _, sub in _subdir_paths(str(path), prefix):
        yield Path(sub)


def read_text_checked(path: Path | str) -> str:
    """A cgroup or proc file's text, decoded as UTF-8 with replacement and with universal newlines.

    Exactly what ``open(path, encoding="utf-8", errors="replace").read()`` returns, but read with
    ``os.open``/``os.read``: the per-job collectors read several small files per job and process, where the
    text-file object's setup was most of the cost.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` when it vanished, ``PermissionError``...).

    """
    text = read_bytes_checked(path).decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_bytes_checked(path: Path | str) -> bytes:
    """A file's whole content, read with ``os.open``/``os.read`` until ``read`` returns nothing.

    A kernel file (seq_file) may return less than asked before its end, so only an empty read ends it.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` when it vanished, ``PermissionError``...).

    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(path: Path | str) -> str | None:
    """:func:`read_text_checked`, or ``None`` when the file does not exist, vanished (the job ended) or errs."""
    try:
        return read_text_checked(path)
    except OSError:
        return None


def walk_cgroup(job_dir: Path) -> Iterator[Path]:
    """The job directory and every cgroup below it (steps, tasks), depth first, without following links."""
    stack = [job_dir]
    while stack:
        d = stack.pop()
        yield d
        stack.extend(reversed(list(_subdirs(d))))


def _walk_paths(job_dir: str) -> Iterator[str]:
    """:func:`walk_cgroup` on path strings (same order: depth first, names sorted, links not followed)."""
    stack = [job_dir]
    while stack:
        d = stack.pop()
        yield d
        # Only the subdirectories are sorted (a cgroup directory is mostly files); sorting by name or by
        # path (one parent) gives the same order.
        subdirs = []
        try:
            for e in os.scandir(d):
                try:
                    if e.is_dir(follow_symlinks=False):
                        subdirs.append(e.path)
                except OSError:
                    continue
        except OSError:
            continue
        subdirs.sort(reverse=True)
        stack.extend(subdirs)


@dataclass
class PidListing:
    """Processes and threads listed in a job's cgroup subtree.

    Attributes:
        pids: process ids (``cgroup.procs``), slurmstepd included.
        threads: number of thread ids listed (v1 ``tasks``, v2 ``cgroup.threads``).
        issues: unparsable lines met.

    """

    pids: list[int] = field(default_factory=list)
    threads: int = 0
    issues: int = 0


def list_job_pids(job: JobCgroup) -> PidListing | None:
    """Read ``cgroup.procs`` and the thread list of every cgroup of the job; ``None`` when it vanished."""
    d = job.proc_dir()
    if d is None or not d.is_dir():
        return None
    out = PidListing()
    thread_file = "cgroup.threads" if job.version == 2 else "tasks"
    seen: set[int] = set()
    # An empty file (every cgroup but the leaves holding processes) lists nothing: no parse for it.
    for cg in _walk_paths(str(d)):
        text = read_text(f"{cg}/cgroup.procs")
        if text:
            res = parse_pid_list(text)
            out.issues += len(res.issues)
            for pid in res.records:
                if pid not in seen:
                    seen.add(pid)
                    out.pids.append(pid)
        text = read_text(f"{cg}/{thread_file}")
        if text:
            res = parse_pid_list(text)
            out.issues += len(res.issues)
            out.threads += len(res.records)
    return out


def pid_comm(proc_root: Path, pid: int) -> str | None:
    """``comm`` of a process from ``/proc/<pid>/stat``; ``None`` when it is gone."""
    text = read_text(f"{proc_root}/{pid}/stat")
    if text is None:
        return None
    res = parse_pid_stat(text)
    return res.records[0].comm if res.records else None


def user_name(uid: int | None) -> str:
    """Login name of ``uid`` (the uid as text when unknown to NSS, ``""`` when ``uid`` is None)."""
    if uid is None:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class JobUsageCollector(Collector):
    """Per-job CPU, memory, OOM kills, process/thread counts and GPUs from SLURM job cgroups.

    Options (``[collector.job_usage]``):
        cpu_progress_seconds: CPU-seconds a job must gain to count as progressing (default 1.0), see
            ``nomade_job_usage_cpu_idle_seconds``.
        gpu_source: ``auto`` | ``devices`` | ``environ`` | ``off`` (default ``auto``).
        user_label: put the login name in ``nomade_job_usage_info`` (default true).
    """

    name = "job_usage"
    mode = "node"
    description = "Per-job CPU, memory, OOM kills, processes and GPUs from SLURM job cgroups (v1 and v2)."
    metrics = (
        MetricSpec(
            "nomade_job_usage_info",
            "info",
            "A SLURM job with a cgroup on this node: owner and the NodeName of its cgroup directory.",
            ("job_id", "user", "slurm_node", "cgroup_version"),
        ),
        MetricSpec("nomade_job_usage_jobs", "gauge", "Number of SLURM job cgroups on this node."),
        MetricSpec(
            "nomade_job_usage_cpu_seconds_total",
            "counter",
            "CPU time used by the job's processes (v1 cpuacct.usage, v2 cpu.stat usage_usec).",
            _J,
            "seconds",
        ),
        MetricSpec(
            "nomade_job_usage_cpu_user_seconds_total",
            "counter",
            "User-mode CPU time of the job (v1 cpuacct.stat user / USER_HZ, v2 user_usec).",
            _J,
            "seconds",
        ),
        MetricSpec(
            "nomade_job_usage_cpu_system_seconds_total",
            "counter",
            "Kernel-mode CPU time of the job (v1 cpuacct.stat system / USER_HZ, v2 system_usec).",
            _J,
            "seconds",
        ),
        MetricSpec(
            "nomade_job_usage_cpu_idle_seconds",
            "gauge",
            "Seconds since the job's CPU time last grew by cpu_progress_seconds (stuck-job signal; "
            "restarts at 0 with the exporter).",
            _J,
            "seconds",
        ),
        MetricSpec(
            "nomade_job_usage_memory_usage_bytes",
            "gauge",
            "Memory charged to the job, page cache included (v1 usage_in_bytes, v2 memory.current).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_memory_peak_bytes",
            "gauge",
            "Highest memory charge of the job (v1 max_usage_in_bytes, v2 memory.peak on 5.19+).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_memory_limit_bytes",
            "gauge",
            "Memory limit of the job's cgroup (v1 limit_in_bytes, v2 memory.max); absent when unlimited.",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_memory_rss_bytes",
            "gauge",
            "Anonymous (resident, non-file) memory of the job (v1 memory.stat total_rss, v2 anon).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_memory_cache_bytes",
            "gauge",
            "Page cache charged to the job (v1 memory.stat total_cache, v2 file).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_swap_bytes",
            "gauge",
            "Swap used by the job (v1 memory.stat total_swap, v2 memory.swap.current).",
            _J,
            "bytes",
        ),
        MetricSpec(
            "nomade_job_usage_oom_kills_total",
            "counter",
            "Processes of the job killed by the cgroup OOM killer (v1 sum of memory.oom_control oom_kill over "
            "the job's cgroups, v2 memory.events oom_kill).",
            _J,
        ),
        MetricSpec(
            "nomade_job_usage_processes",
            "gauge",
            "Processes in the job's cgroups, slurmstepd excluded.",
            _J,
        ),
        MetricSpec(
            "nomade_job_usage_threads",
            "gauge",
            "Threads in the job's cgroups (v1 tasks, v2 cgroup.threads), slurmstepd's included.",
            _J,
        ),
        MetricSpec(
            "nomade_job_usage_gpu_info",
            "info",
            "A GPU the job may use: index on the node (v1 devices.list minor or SLURM_JOB_GPUS).",
            ("job_id", "gpu"),
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.cpu_progress = float(self.option("cpu_progress_seconds", 1.0))
        self.gpu_source = str(self.option("gpu_source", "auto"))
        if self.gpu_source not in ("auto", "devices", "environ", "off"):
            raise ValueError(f"job_usage.gpu_source must be auto|devices|environ|off, not {self.gpu_source!r}")
        self.user_label = bool(self.option("user_label", True))
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        # job_id -> (CPU seconds at the last progress, clock then)
        self._progress: dict[str, tuple[float, float]] = {}

    @classmethod
    def available(cls) -> bool:
        """True when this host has SLURM job cgroup directories (a compute node using cgroup plugins)."""
        return slurm_cgroups_present(Path("/sys"))

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when the cgroup filesystem is missing."""
        jobs = find_job_cgroups(self.ctx.sys_root)
        now = self.ctx.clock()
        out.add("nomade_job_usage_jobs", len(jobs))
        with self._lock:
            for gone in set(self._progress) - set(jobs):
                del self._progress[gone]
        for job in jobs.values():
            if job.version == 1:
                cpu = self._v1(out, job)
            else:
                cpu = self._v2(out, job)
            listing = list_job_pids(job)
            # Each process's comm is read once per collection (counting slurmstepd and finding a job process).
            comms: dict[int, str | None] = {}
            if listing is not None:
                self.count_parse_errors(listing.issues)
                comms = {p: pid_comm(self.ctx.proc_root, p) for p in listing.pids}
                stepds = sum(1 for c in comms.values() if c == SLURMSTEPD_COMM)
                out.add("nomade_job_usage_processes", len(listing.pids) - stepds, job_id=job.job_id)
                out.add("nomade_job_usage_threads", listing.threads, job_id=job.job_id)
                if job.uid is None and self.user_label:  # the owner only names the user label
                    job.uid = self._owner(listing.pids)
            else:
                listing = PidListing()
            out.info(
                "nomade_job_usage_info",
                job_id=job.job_id,
                user=user_name(job.uid) if self.user_label else "",
                slurm_node=job.slurm_node,
                cgroup_version=str(job.version),
            )
            if cpu is not None:
                out.add("nomade_job_usage_cpu_idle_seconds", self._idle(job.job_id, cpu, now), job_id=job.job_id)
            for gpu in self._gpus(job, listing.pids, comms) or ():
                out.info("nomade_job_usage_gpu_info", job_id=job.job_id, gpu=str(gpu))

    # ------------------------------------------------------------------------------------------ readers

    def _value(self, path: Path | str) -> int | None:
        text = read_text(path)
        if text is None:
            return None
        res = parse_single_value(text)
        self.count_parse_errors(len(res.issues))
        return single_value(res)

    def _keyed(self, path: Path | str) -> dict[str, int]:
        text = read_text(path)
        if text is None:
            return {}
        res = parse_flat_keyed(text)
        self.count_parse_errors(len(res.issues))
        return keyed_dict(res)

    def _v1(self, out: MetricSet, job: JobCgroup) -> float | None:
        jid = job.job_id
        cpu: float | None = None
        acct = job.dirs.get("cpuacct")
        if acct is not None:
            usage = self._value(acct / "cpuacct.usage")
            if usage is not None:
                cpu = usage / 1e9
                out.add("nomade_job_usage_cpu_seconds_total", cpu, job_id=jid)
            stat = self._keyed(acct / "cpuacct.stat")
            if "user" in stat:
                out.add("nomade_job_usage_cpu_user_seconds_total", stat["user"] / self.clk_tck, job_id=jid)
            if "system" in stat:
                out.add("nomade_job_usage_cpu_system_seconds_total", stat["system"] / self.clk_tck, job_id=jid)
        mem = job.dirs.get("memory")
        if mem is not None:
            out.add("nomade_job_usage_memory_usage_bytes", self._value(mem / "memory.usage_in_bytes"), job_id=jid)
            out.add("nomade_job_usage_memory_peak_bytes", self._value(mem / "memory.max_usage_in_bytes"), job_id=jid)
            out.add(
                "nomade_job_usage_memory_limit_bytes",
                limit_bytes(self._value(mem / "memory.limit_in_bytes")),
                job_id=jid,
            )
            stat = self._keyed(mem / "memory.stat")
            out.add("nomade_job_usage_memory_rss_bytes", stat.get("total_rss"), job_id=jid)
            out.add("nomade_job_usage_memory_cache_bytes", stat.get("total_cache"), job_id=jid)
            out.add("nomade_job_usage_swap_bytes", stat.get("total_swap"), job_id=jid)
            # v1 oom_kill is local to each memcg (verified live): sum over the subtree.
            kills: int | None = None
            for cg in walk_cgroup(mem):
                n = self._keyed(cg / "memory.oom_control").get("oom_kill")
                if n is not None:
                    kills = (kills or 0) + n
            out.add("nomade_job_usage_oom_kills_total", kills, job_id=jid)
        return cpu

    def _v2(self, out: MetricSet, job: JobCgroup) -> float | None:
        jid = job.job_id
        d = str(job.dirs["unified"])  # path strings: seven files per job and collection
        cpu: float | None = None
        stat = self._keyed(f"{d}/cpu.stat")
        if "usage_usec" in stat:
            cpu = stat["usage_usec"] / 1e6
            out.add("nomade_job_usage_cpu_seconds_total", cpu, job_id=jid)
        if "user_usec" in stat:
            out.add("nomade_job_usage_cpu_user_seconds_total", stat["user_usec"] / 1e6, job_id=jid)
        if "system_usec" in stat:
            out.add("nomade_job_usage_cpu_system_seconds_total", stat["system_usec"] / 1e6, job_id=jid)
        out.add("nomade_job_usage_memory_usage_bytes", self._value(f"{d}/memory.current"), job_id=jid)
        out.add("nomade_job_usage_memory_peak_bytes", self._value(f"{d}/memory.peak"), job_id=jid)
        # A missing memory.max reads as None like "max" (no limit): no sample, no existence check needed.
        out.add("nomade_job_usage_memory_limit_bytes", limit_bytes(self._value(f"{d}/memory.max")), job_id=jid)
        mstat = self._keyed(f"{d}/memory.stat")
        out.add("nomade_job_usage_memory_rss_bytes", mstat.get("anon"), job_id=jid)
        out.add("nomade_job_usage_memory_cache_bytes", mstat.get("file"), job_id=jid)
        out.add("nomade_job_usage_swap_bytes", self._value(f"{d}/memory.swap.current"), job_id=jid)
        out.add("nomade_job_usage_oom_kills_total", self._keyed(f"{d}/memory.events").get("oom_kill"), job_id=jid)
        return cpu

    def _idle(self, job_id: str, cpu: float, now: float) -> float:
        with self._lock:
            ref = self._progress.get(job_id)
            if ref is None or cpu - ref[0] >= self.cpu_progress or cpu < ref[0]:
                self._progress[job_id] = ref = (cpu, now)
        return max(0.0, now - ref[1])

    def _owner(self, pids: list[int]) -> int | None:
        for pid in pids:
            try:
                uid = (self.ctx.proc_root / str(pid)).stat().st_uid
            except OSError:
                continue
            if uid != 0:
                return uid
        return None

    def _gpus(self, job: JobCgroup, pids: list[int], comms: dict[int, str | None] | None = None) -> list[int] | None:
        if self.gpu_source == "off":
            return None
        if self.gpu_source in ("auto", "devices") and job.version == 1 and "devices" in job.dirs:
            text = read_text(job.dirs["devices"] / "devices.list")
            if text is not None:
                res = parse_devices_list(text)
                self.count_parse_errors(len(res.issues))
                gpus = nvidia_gpus_from_devices(res.records)
                if gpus is not None:
                    return gpus
        if self.gpu_source in ("auto", "environ"):
            for pid in pids:
                comm = comms[pid] if comms is not None and pid in comms else pid_comm(self.ctx.proc_root, pid)
                if comm == SLURMSTEPD_COMM:
                    continue
                try:
                    blob = read_bytes_checked(f"{self.ctx.proc_root}/{pid}/environ")
                except OSError:
                    continue
                value = environ_value(blob, "SLURM_JOB_GPUS")
                # A process without the variable (a job without GPUs) says []: nothing to report.
                return parse_gpu_index_list(value) if value is not None else None
        return None


COLLECTOR = JobUsageCollector
