"""Kernel and GPU views of the simulated cluster: ``/proc`` files, the cgroup v2 job tree and ``nvidia-smi``.

The real node collectors (:mod:`nomade.exporter.collectors` ``cpu``, ``memory``, ``diskstats``, ``nfs``,
``filesystem``, ``job_usage``, ``job_io``, ``gpu``) read files under ``CollectorContext.proc_root`` /
``sys_root`` and run ``nvidia-smi`` through the command runner. This module writes those files from a
:class:`~nomade.sim.state.ClusterState` so the collectors read a simulated node exactly as a real one, through
the same parsers. A renderer is correct when the parser returns the state's values with zero parse issues.

Formats (each function names its source):

* ``/proc/stat``, ``/proc/meminfo``, ``/proc/vmstat``, ``/proc/loadavg``, ``/proc/<pid>/stat``, ``io``,
  ``environ``, ``mountinfo``: proc(5) and ``Documentation/filesystems/proc.rst``; meminfo's column layout from
  ``fs/proc/meminfo.c`` (``show_val_kb``: a 16-character label, the value right-aligned in 8, `` kB``).
* ``/proc/diskstats``: ``Documentation/admin-guide/iostats.rst`` (20 fields per line, kernel >= 5.5), the
  line layout of ``block/genhd.c`` ``diskstats_show()`` (``%4d %7d %s ...``).
* ``/proc/pressure/*``: ``Documentation/accounting/psi.rst``.
* ``/proc/self/mountstats``: ``fs/nfs/super.c`` ``nfs_show_stats()`` and ``net/sunrpc/stats.c``
  ``rpc_clnt_show_stats()`` (the text nfs-utils' ``mountstats``/``nfsiostat`` read); NFSv4 operation order of
  ``fs/nfs/nfs4xdr.c`` ``nfs4_procedures``.
* cgroup v2 files: ``Documentation/admin-guide/cgroup-v2.rst``; the SLURM layout
  ``system.slice/<NodeName>_slurmstepd.scope/job_<id>/step_batch/user/task_0`` of SLURM's cgroup/v2 plugin
  (cgroup_v2.html "Hierarchy overview"; ``<NodeName>_`` is the multiple-slurmd form).
* ``nvidia-smi -q -x`` (DTD v12, driver 535) and ``--query-gpu``/``--query-compute-apps`` CSV: nvidia-smi(1)
  and ``nvidia-smi --help-query-gpu``, laid out like the captures in ``tests/fixtures/nvidia-smi``.

Conventions and documented simplifications:

* Everything is a pure function of the state (no random numbers): the same state renders to the same bytes.
* Files are replaced atomically (written to ``.<name>.tmp`` in the same directory, then ``os.replace``), so a
  collector's background sampler never reads half a file; a file whose text did not change since the last
  call of this process is not rewritten (a per-process cache of what was written).
* Quantities the state does not carry are derived deterministically and said so where they are made
  (PSI avg60/avg300 repeat avg10; meminfo's kernel lines; NFS ``events:`` from the per-op counts...).

Wiring the real collectors to these trees (what :mod:`nomade.sim.world` has to set):

* per node tree: ``proc_root=<root>/proc``, ``sys_root=<root>/sys``; gpu collector options
  ``source = "nvidia-smi"`` (or ``"nvidia-smi-csv"``; ``auto`` would try NVML first and read a real GPU of the
  host if pynvml loads) and ``job_dir = "<root>/run/nomade/gpu-jobs"``;
* job tree: job_usage, job_io (and filesystem with ``statvfs=statvfs_for(...)``) on ``<root>/proc`` and
  ``<root>/sys``; ``clock`` = the simulated clock. Node collectors' samplers take their readings through
  ``sampler.sample_once(now=...)`` after each render (with a large ``sample_interval`` so their threads stay
  idle), which makes every derived figure cover the simulated interval.
* Speed: an atomic replace creates an inode; on tmpfs that is ~15 us per file, on a journalled ext4 disk
  ~0.1-0.5 ms (``auto_da_alloc`` on replace). Put the trees on tmpfs (``/dev/shm``) when the job tree is
  rewritten every step.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nomade.exporter.collectors.job_io import NETWORK_FS_TYPES

from .state import USER_HZ, ClusterState, FilesystemSpec, Job, NodeSpec, NodeState

KIB = 1024
MIB = 1024 * 1024

PID_SPACE = 1 << 22
"""``PID_MAX_LIMIT`` on 64-bit Linux (``include/linux/threads.h``): no node's pid reaches it. The cluster-wide
job tree holds the processes of every node in ONE ``/proc``, where pids of different nodes could collide, so a
process ``pid`` of the node at position ``k`` of ``spec.nodes`` appears there as ``k * PID_SPACE + pid``
(:func:`cluster_pid`); node trees and ``nvidia-smi`` keep the node's own pids."""

FRSIZE = 4096
"""Fragment size of the simulated ``statvfs`` results (bytes)."""

EXT4_RESERVED_RATIO = 0.05
"""Root-reserved share of an ext4 filesystem (mke2fs(8) ``-m``, default 5 %). XFS has no such reserve: its
``statfs`` reports ``f_bavail == f_bfree`` (``fs/xfs/xfs_super.c`` ``xfs_fs_statfs``), as do NFS and Lustre
clients here."""

SYSTEM_MOUNTS: dict[str, tuple[str, int, int, int]] = {
    "/": ("ext4", 480 * 10**9, 60 * 10**9, 30_000_000),
    "/run": ("tmpfs", 26 * 2**30, 40 * MIB, 6_000_000),
}
"""Mount points every rendered mount table has besides ``spec.filesystems``: ``(fstype, size bytes, used
bytes, inodes)`` that :func:`statvfs_for` answers for them (the system disk and ``/run`` are not part of the
simulation's state, so they are fixed)."""

SLURM_SCOPE = "{node}_slurmstepd.scope"
GPU_JOB_DIR = "run/nomade/gpu-jobs"
"""Where :func:`write_node_tree` writes the prolog GPU-job files below a node root: the gpu collector's
``job_dir`` option must be ``<node root>/run/nomade/gpu-jobs`` (format of ``deploy/slurm/prolog-gpu.sh``)."""

DRIVER_VERSION = "535.129.03"
CUDA_VERSION = "12.2"

_CACHE: dict[str, dict[str, str]] = {}
"""directory -> {file name: text last written there by this process}."""


# --------------------------------------------------------------------------------------------------- files


def _put(d: str, name: str, text: str) -> None:
    """Write ``d/name`` atomically unless this process already wrote exactly ``text`` there."""
    files = _CACHE.setdefault(d, {})
    if files.get(name) == text:
        return
    tmp = f"{d}/.{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)
    os.replace(tmp, f"{d}/{name}")
    files[name] = text


def _mkdir(d: str) -> None:
    if d not in _CACHE:
        os.makedirs(d, exist_ok=True)
        _CACHE[d] = {}


def _rmtree(d: str) -> None:
    shutil.rmtree(d, ignore_errors=True)
    prefix = d + "/"
    for key in [k for k in _CACHE if k == d or k.startswith(prefix)]:
        del _CACHE[key]


def _forget_if_gone(d: str) -> None:
    # Someone removed the tree behind our back (a fresh work directory): forget what we believe is written.
    if not os.path.isdir(d):
        prefix = d + "/"
        for key in [k for k in _CACHE if k == d or k.startswith(prefix)]:
            del _CACHE[key]


# ------------------------------------------------------------------------------------------------- mounts


def _partition(disk: str, n: int) -> str:
    return f"{disk}p{n}" if disk[-1].isdigit() else f"{disk}{n}"


def _block_dev(source: str) -> tuple[int, int] | None:
    """major:minor of a local block device path, following Documentation/admin-guide/devices.txt numbering."""
    name = source.removeprefix("/dev/")
    if name.startswith("nvme"):
        base, _, part = name.partition("p")
        return 259, int(part) if part.isdigit() else 0
    if name.startswith(("sd", "vd")) and len(name) >= 3:
        major = 8 if name[0] == "s" else 252
        part = name[3:]
        return major, (ord(name[2]) - ord("a")) * 16 + (int(part) if part.isdigit() else 0)
    if name.startswith("md") and name[2:].isdigit():
        return 9, int(name[2:])
    return None


def _mount_rows(spec_fs: Sequence[FilesystemSpec], disk: str, client_ip: str) -> list[tuple]:
    """``(mount id, parent, (major, minor), mountpoint, mount opts, fstype, source, super opts)`` in mount order."""
    sources = {fs.source for fs in spec_fs}
    root_src = next(f"/dev/{_partition(disk, n)}" for n in range(2, 10) if f"/dev/{_partition(disk, n)}" not in sources)
    rows: list[tuple] = [
        (22, 1, _block_dev(root_src) or (8, 2), "/", "rw,relatime", "ext4", root_src, "rw,errors=remount-ro"),
        (23, 22, (0, 21), "/sys", "rw,nosuid,nodev,noexec,relatime", "sysfs", "sysfs", "rw"),
        (24, 22, (0, 22), "/proc", "rw,nosuid,nodev,noexec,relatime", "proc", "proc", "rw"),
        (25, 22, (0, 5), "/dev", "rw,nosuid,relatime", "devtmpfs", "udev", "rw,mode=755,inode64"),
        (26, 25, (0, 24), "/dev/shm", "rw,nosuid,nodev", "tmpfs", "tmpfs", "rw,inode64"),
        (27, 22, (0, 25), "/run", "rw,nosuid,nodev,noexec,relatime", "tmpfs", "tmpfs", "rw,mode=755,inode64"),
        (28, 23, (0, 26), "/sys/fs/cgroup", "rw,nosuid,nodev,noexec,relatime", "cgroup2", "cgroup2", "rw,nsdelegate"),
        (60, 27, (0, 48), "/run/rpc_pipefs", "rw,relatime", "rpc_pipefs", "sunrpc", "rw"),
    ]
    anon = 52
    mount_id = 100
    for i, fs in enumerate(spec_fs):
        if fs.fstype in ("nfs", "nfs4"):
            dev = (0, anon)
            anon += 1
            vers = "4.2" if fs.fstype == "nfs4" else "3"
            sopts = (
                f"rw,vers={vers},rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,"
                f"sec=sys,clientaddr={client_ip},local_lock=none,addr={_server_ip(fs, i)}"
            )
        elif fs.fstype == "lustre":
            dev = (0, anon)
            anon += 1
            sopts = "rw,flock,lazystatfs"
        else:
            dev = _block_dev(fs.source) or (0, anon)
            if dev[0] == 0:
                anon += 1
            sopts = "rw,attr2,inode64,logbufs=8,logbsize=32k,noquota" if fs.fstype == "xfs" else "rw"
        rows.append((mount_id + i, 22, dev, fs.mountpoint, "rw,relatime", fs.fstype, fs.source, sopts))
    return rows


def _server_ip(fs: FilesystemSpec, i: int) -> str:
    return f"10.10.0.{10 + i}"


def _escape(path: str) -> str:
    # fs/proc_namespace.c mangle(): space, tab, newline and backslash as octal escapes.
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def _mountinfo(rows: list[tuple]) -> str:
    out = []
    for k, (mid, parent, (major, minor), mp, opts, fstype, source, sopts) in enumerate(rows):
        out.append(
            f"{mid} {parent} {major}:{minor} / {_escape(mp)} {opts} shared:{k + 1} - {fstype} {_escape(source)} {sopts}"
        )
    return "\n".join(out) + "\n"


_INDEX: list[tuple[object, dict[str, int]]] = []
"""The last spec seen and its NodeName -> position map (a spec is immutable; the map is rebuilt for a new one)."""


def _node_index(state: ClusterState, node: str) -> int:
    """Position of ``node`` in ``spec.nodes``; raises KeyError for an unknown node."""
    if not _INDEX or _INDEX[0][0] is not state.spec:
        _INDEX[:] = [(state.spec, {n.name: i for i, n in enumerate(state.spec.nodes)})]
    return _INDEX[0][1][node]


def _client_ip(index: int) -> str:
    return f"10.1.{index // 250}.{index % 250 + 1}"


# ----------------------------------------------------------------------------------------------- /proc


def render_stat(spec: NodeSpec, ns: NodeState) -> str:
    """``/proc/stat`` (proc(5)): the all-CPU line (column sums), one ``cpuN`` line per CPU, then the counters.

    ``softirq`` is not in the state: its total repeats ``intr`` (all counted as TIMER), a documented stand-in.
    """
    ticks = np.asarray(ns.cpu_ticks, dtype=np.int64)  # integer ticks whatever dtype the engine used
    total = ticks.sum(axis=0).tolist()
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{i} " + " ".join(map(str, row)) for i, row in enumerate(ticks.tolist())]
    lines.append(f"intr {ns.intr}" + " 0" * 16)
    lines.append(f"ctxt {ns.ctxt}")
    lines.append(f"btime {int(ns.boot_time)}")
    lines.append(f"processes {ns.forks}")
    lines.append(f"procs_running {ns.procs_running}")
    lines.append(f"procs_blocked {ns.procs_blocked}")
    lines.append(f"softirq {ns.intr} 0 {ns.intr} 0 0 0 0 0 0 0 0")
    return "\n".join(lines) + "\n"


def meminfo_values(spec: NodeSpec, ns: NodeState) -> dict[str, int]:
    """The ``/proc/meminfo`` lines in kernel order: name -> value (KiB for ``kB`` lines, counts for HugePages_*).

    Model (consistent with the state, in bytes before the floor division to KiB): MemTotal = RealMemory;
    Buffers, Cached, swap from the state; MemFree = total - used - cached - buffers (>= 0); MemAvailable =
    total - used (so ``nomade_memory_used_bytes`` = MemTotal - MemAvailable is the state's ``mem_used_bytes``);
    of ``used``, ``min(used, total/256)`` is unreclaimable slab, the rest AnonPages. No huge pages, no shmem.
    """
    total = spec.real_memory_mib * MIB
    used = min(ns.mem_used_bytes, total)
    cached, buffers = ns.mem_cached_bytes, ns.mem_buffers_bytes
    free = max(0, total - used - cached - buffers)
    avail = total - used
    slab = min(used, total // 256)
    anon = used - slab
    swap_total, swap_used = ns.swap_total_bytes, ns.swap_used_bytes
    b = {
        "MemTotal": total,
        "MemFree": free,
        "MemAvailable": avail,
        "Buffers": buffers,
        "Cached": cached,
        "SwapCached": 0,
        "Active": anon + cached // 2,
        "Inactive": cached - cached // 2 + buffers,
        "Active(anon)": anon,
        "Inactive(anon)": 0,
        "Active(file)": cached // 2,
        "Inactive(file)": cached - cached // 2 + buffers,
        "Unevictable": 0,
        "Mlocked": 0,
        "SwapTotal": swap_total,
        "SwapFree": max(0, swap_total - swap_used),
        "Dirty": 0,
        "Writeback": 0,
        "AnonPages": anon,
        "Mapped": cached // 10,
        "Shmem": 0,
        "KReclaimable": 0,
        "Slab": slab,
        "SReclaimable": 0,
        "SUnreclaim": slab,
        "KernelStack": 0,
        "PageTables": 0,
        "CommitLimit": total // 2 + swap_total,
        "Committed_AS": used + swap_used,
        "VmallocTotal": 34359738367 * KIB,
        "VmallocUsed": 0,
        "VmallocChunk": 0,
        "HardwareCorrupted": 0,
        "AnonHugePages": 0,
    }
    out = {k: int(v) // KIB for k, v in b.items()}
    out.update({"HugePages_Total": 0, "HugePages_Free": 0, "HugePages_Rsvd": 0, "HugePages_Surp": 0})
    out["Hugepagesize"] = 2048
    out["Hugetlb"] = 0
    return out


def render_meminfo(spec: NodeSpec, ns: NodeState) -> str:
    """``/proc/meminfo`` text of :func:`meminfo_values` in ``fs/proc/meminfo.c``'s column layout."""
    lines = []
    for name, v in meminfo_values(spec, ns).items():
        if name.startswith("HugePages_"):
            lines.append(f"{name + ':':<19}{v:>5}")
        else:
            lines.append(f"{name + ':':<16}{v:>8} kB")
    return "\n".join(lines) + "\n"


_VMSTAT_ORDER = (
    "nr_free_pages",
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pgfault",
    "pgmajfault",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgscan_direct",
    "oom_kill",
)
"""A subset of ``mm/vmstat.c`` ``vmstat_text`` names, in the kernel's order (gauges first, then events)."""


def render_vmstat(spec: NodeSpec, ns: NodeState) -> str:
    """``/proc/vmstat``: the state's counters (``ns.vmstat``) and page-count gauges derived from meminfo."""
    mi = meminfo_values(spec, ns)
    pages = {  # KiB -> 4 KiB pages
        "nr_free_pages": mi["MemFree"] // 4,
        "nr_inactive_anon": mi["Inactive(anon)"] // 4,
        "nr_active_anon": mi["Active(anon)"] // 4,
        "nr_inactive_file": mi["Inactive(file)"] // 4,
        "nr_active_file": mi["Active(file)"] // 4,
        "nr_slab_unreclaimable": mi["SUnreclaim"] // 4,
        "nr_anon_pages": mi["AnonPages"] // 4,
        "nr_mapped": mi["Mapped"] // 4,
        "nr_file_pages": (mi["Cached"] + mi["Buffers"]) // 4,
    }
    values = {name: 0 for name in _VMSTAT_ORDER}
    values.update(pages)
    values.update({k: int(v) for k, v in ns.vmstat.items()})
    extra = sorted(set(ns.vmstat) - set(_VMSTAT_ORDER))
    return "".join(f"{k} {values[k]}\n" for k in (*_VMSTAT_ORDER, *extra))


_DISK_FIELDS = (
    "reads",
    "reads_merged",
    "sectors_read",
    "read_ms",
    "writes",
    "writes_merged",
    "sectors_written",
    "write_ms",
    "in_progress",
    "io_ms",
    "weighted_ms",
)


def render_diskstats(spec: NodeSpec, ns: NodeState) -> str:
    """``/proc/diskstats``: one line for the node's local disk (``spec.local_disk``).

    The 11 classic counters come from ``NodeState.disk``; discard (4) and flush (2) counters are 0 (20 fields,
    kernel 5.5+; line layout of ``block/genhd.c`` ``diskstats_show``).
    """
    major, minor = _block_dev(spec.local_disk) or (8, 0)
    nums = [int(ns.disk.get(k, 0)) for k in _DISK_FIELDS] + [0] * 6
    return f"{major:4d} {minor:7d} {spec.local_disk} " + " ".join(map(str, nums)) + "\n"


def render_pressure(ns: NodeState, resource: str) -> str:
    """``/proc/pressure/<resource>`` (psi.rst). The state keeps avg10 only: avg60 and avg300 repeat it."""
    lines = []
    for kind in ("some", "full"):
        avg = min(100.0, max(0.0, float(ns.psi_avg.get((resource, kind), 0.0))))
        total = int(ns.psi_us.get((resource, kind), 0))
        lines.append(f"{kind} avg10={avg:.2f} avg60={avg:.2f} avg300={avg:.2f} total={total}")
    return "\n".join(lines) + "\n"


def render_loadavg(ns: NodeState, nprocs: int, last_pid: int) -> str:
    """``/proc/loadavg`` (proc(5)); the state has the 1-minute load only, repeated for 5 and 15 minutes."""
    load = max(0.0, ns.cpu_load)
    return f"{load:.2f} {load:.2f} {load:.2f} {ns.procs_running}/{nprocs} {last_pid}\n"


# NFSv4 client operations in mountstats order (fs/nfs/nfs4xdr.c nfs4_procedures, Linux 6.x).
NFS4_OPS = (
    "NULL READ WRITE COMMIT OPEN OPEN_CONFIRM OPEN_NOATTR OPEN_DOWNGRADE CLOSE SETATTR FSINFO RENEW SETCLIENTID "
    "SETCLIENTID_CONFIRM LOCK LOCKT LOCKU ACCESS GETATTR LOOKUP LOOKUP_ROOT REMOVE RENAME LINK SYMLINK CREATE "
    "PATHCONF STATFS READLINK READDIR SERVER_CAPS DELEGRETURN GETACL SETACL FS_LOCATIONS RELEASE_LOCKOWNER "
    "SECINFO FSID_PRESENT EXCHANGE_ID CREATE_SESSION DESTROY_SESSION SEQUENCE GET_LEASE_TIME RECLAIM_COMPLETE "
    "LAYOUTGET GETDEVICEINFO LAYOUTCOMMIT LAYOUTRETURN SECINFO_NO_NAME TEST_STATEID FREE_STATEID GETDEVICELIST "
    "BIND_CONN_TO_SESSION DESTROY_CLIENTID SEEK ALLOCATE DEALLOCATE LAYOUTSTATS CLONE COPY OFFLOAD_CANCEL LOOKUPP "
    "LAYOUTERROR COPY_NOTIFY GETXATTR SETXATTR LISTXATTRS REMOVEXATTR READ_PLUS"
).split()
# NFSv3 procedures (RFC 1813 order, fs/nfs/nfs3xdr.c nfs3_procedures).
NFS3_OPS = (
    "NULL GETATTR SETATTR LOOKUP ACCESS READLINK READ WRITE CREATE MKDIR SYMLINK MKNOD REMOVE RMDIR RENAME LINK "
    "READDIR READDIRPLUS FSSTAT FSINFO PATHCONF COMMIT"
).split()


def _nfs_events(ops: dict[str, list[int]], byte_counts: list[int]) -> list[int]:
    """The 27 ``events:`` counters (include/linux/nfs_iostat.h order), derived from per-op counts.

    inoderevalidate = GETATTR, vfsopen = OPEN, vfslookup = LOOKUP, vfsaccess = ACCESS, vfsreadpage = read
    pages, vfswritepage = write pages, vfsgetdents = READDIR(+PLUS), vfssetattr = SETATTR, vfsflush = vfsrelease
    = CLOSE, vfsfsync = COMMIT; the rest 0.
    """

    def n(op: str) -> int:
        return int(ops.get(op, [0])[0])

    ev = [0] * 27
    ev[0] = n("GETATTR")
    ev[4] = n("OPEN")
    ev[5] = n("LOOKUP")
    ev[6] = n("ACCESS")
    ev[8] = int(byte_counts[6])
    ev[10] = int(byte_counts[7])
    ev[12] = n("READDIR") + n("READDIRPLUS")
    ev[13] = n("SETATTR")
    ev[14] = n("CLOSE")
    ev[15] = n("COMMIT")
    ev[17] = n("CLOSE")
    return ev


def render_mountstats(state: ClusterState, node: str, rows: list[tuple], mount_age: int) -> str:
    """``/proc/self/mountstats``: a ``device`` line per mount, the NFS statistics block for nfs/nfs4 mounts.

    Per-op counters come from ``NodeState.nfs[mountpoint][op]`` (8 fields; the ninth, ``errors``, is 0) and the
    ``bytes:`` line from ``NodeState.nfs[mountpoint]["bytes"]``; operations the state lacks print zeros.
    """
    ns = state.nodes[node]
    out: list[str] = []
    for _mid, _parent, _dev, mp, _opts, fstype, source, sopts in rows:
        if fstype not in ("nfs", "nfs4"):
            out.append(f"device {_escape(source)} mounted on {_escape(mp)} with fstype {fstype}\n")
            continue
        stats = ns.nfs.get(mp, {})
        byte_counts = [int(v) for v in stats.get("bytes", [0] * 8)]
        v4 = fstype == "nfs4"
        order = NFS4_OPS if v4 else NFS3_OPS
        names = [*order, *sorted(k for k in stats if k != "bytes" and k not in order)]
        sends = sum(int(stats[k][1]) for k in stats if k != "bytes")
        lines = [f"device {_escape(source)} mounted on {_escape(mp)} with fstype {fstype} statvers=1.1"]
        lines.append(f"\topts:\t{sopts}")
        lines.append(f"\tage:\t{mount_age}")
        if v4:
            lines.append("\timpl_id:\tname='',domain='',date='0,0'")
        lines.append("\tcaps:\tcaps=0x3ffbffff,wtmult=512,dtsize=1048576,bsize=0,namlen=255")
        if v4:
            lines.append(
                "\tnfsv4:\tbm0=0xfdffbfff,bm1=0x40fdbe3e,bm2=0x60803,acl=0x3,sessions,pnfs=not configured,"
                "lease_time=90,lease_expired=0"
            )
        lines.append("\tsec:\tflavor=1,pseudoflavor=1")
        lines.append("\tevents:\t" + " ".join(map(str, _nfs_events(stats, byte_counts))))
        lines.append("\tbytes:\t" + " ".join(map(str, byte_counts)))
        lines.append(f"\tRPC iostats version: 1.1  p/v: 100003/{4 if v4 else 3} (nfs)")
        # xs_tcp_print_stats(): srcport bind_count connect_count connect_time idle_time sends recvs bad_xids
        # req_u bklog_u max_slots sending_u pending_u
        lines.append(f"\txprt:\ttcp 0 0 1 0 0 {sends} {sends} 0 {sends} 0 64 0 0")
        lines.append("\tper-op statistics")
        for op in names:
            vals = [int(x) for x in stats.get(op, [0] * 8)][:8]
            lines.append(f"\t{op:>12}: " + " ".join(map(str, vals)) + " 0")
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def _running(state: ClusterState) -> list[Job]:
    return [j for j in state.active.values() if j.state == "RUNNING" and j.nodes]


def write_node_tree(state: ClusterState, node: str, root: Path) -> None:
    """Write the ``/proc`` view of one instrumented node under ``root`` (``root/proc``, ``root/sys``, ``root/run``).

    Files: ``proc/{stat,meminfo,vmstat,diskstats,loadavg}``, ``proc/pressure/{cpu,memory,io}``,
    ``proc/self/mountinfo`` and ``proc/1/mountinfo`` (``/``, system mounts, then ``spec.filesystems``),
    ``proc/self/mountstats``, and one prolog file per job holding GPUs on the node in ``root/run/nomade/gpu-jobs``
    (``gpus=<indexes>`` / ``user=<name>``, the gpu collector's ``job_dir``; files of jobs gone are removed).
    ``root/sys`` is created empty (no node collector of the simulation reads sysfs).

    Raises:
        KeyError: ``node`` is not in the spec or the state.

    """
    spec = state.spec.node(node)
    ns = state.nodes[node]
    index = _node_index(state, node)
    base = str(root)
    _forget_if_gone(base)
    proc = f"{base}/proc"
    for d in (proc, f"{proc}/pressure", f"{proc}/self", f"{proc}/1", f"{base}/sys", f"{base}/{GPU_JOB_DIR}"):
        _mkdir(d)
    _put(proc, "stat", render_stat(spec, ns))
    _put(proc, "meminfo", render_meminfo(spec, ns))
    _put(proc, "vmstat", render_vmstat(spec, ns))
    _put(proc, "diskstats", render_diskstats(spec, ns))
    for res in ("cpu", "memory", "io"):
        _put(f"{proc}/pressure", res, render_pressure(ns, res))
    rows = _mount_rows(state.spec.filesystems, spec.local_disk, _client_ip(index))
    info = _mountinfo(rows)
    _put(f"{proc}/self", "mountinfo", info)
    _put(f"{proc}/1", "mountinfo", info)
    _put(f"{proc}/self", "mountstats", render_mountstats(state, node, rows, max(0, int(state.now - ns.boot_time))))
    jobs = [j for j in _running(state) if node in j.nodes]
    pids = [p for j in jobs for p in j.pids.get(node, ())]
    _put(proc, "loadavg", render_loadavg(ns, 400 + len(pids), max(pids, default=1)))
    # GPU-job prolog files (deploy/slurm/prolog-gpu.sh format).
    gdir = f"{base}/{GPU_JOB_DIR}"
    want = {}
    for j in jobs:
        idx = j.gpus.get(node)
        if idx:
            want[str(j.job_id)] = f"gpus={','.join(map(str, sorted(idx)))}\nuser={j.user}\n"
    for name in os.listdir(gdir):
        if name not in want:
            os.unlink(f"{gdir}/{name}")
            _CACHE.get(gdir, {}).pop(name, None)
    for name, text in want.items():
        _put(gdir, name, text)


# ------------------------------------------------------------------------------------------- job tree


def cluster_pid(state: ClusterState, node: str, pid: int) -> int:
    """The pid of a node's process in the cluster-wide job tree (see :data:`PID_SPACE`).

    Raises:
        ValueError: ``pid`` is not in ``2 .. PID_SPACE - 1`` (1 is init, never a job's process).

    """
    if not 1 < pid < PID_SPACE:
        raise ValueError(f"pid {pid} of {node} outside 2..{PID_SPACE - 1} (1 is init)")
    return _node_index(state, node) * PID_SPACE + pid


def _fs_class(spec_fs: Sequence[FilesystemSpec], path: str) -> bool:
    """True when ``path`` lies on a network filesystem (longest mount-point prefix; ``/`` is local)."""
    best, net = -1, False
    for fs in spec_fs:
        mp = fs.mountpoint.rstrip("/") or "/"
        if (path == mp or path.startswith(mp + "/") or mp == "/") and len(mp) > best:
            best, net = len(mp), fs.fstype in NETWORK_FS_TYPES
    return net


def _anchors(root: Path) -> tuple[str, os.stat_result, str, os.stat_result]:
    """Two real directories on different devices: one for local filesystems, one for network ones.

    The job I/O collector classifies a process's writes by the device (``st_dev``) of its working directory,
    looked up in ``mountinfo``; the rendered job tree therefore points ``/proc/<pid>/cwd`` at a real directory
    whose device the rendered mountinfo assigns to the filesystem the job writes to.
    """
    local = str(root)
    st_local = os.stat(local)
    for cand in ("/proc", "/sys", "/dev", "/run", "/"):
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if st.st_dev != st_local.st_dev:
            return local, st_local, cand, st
    raise RuntimeError(f"no directory on another device than {local} to stand for network filesystems")


def _job_tree_mountinfo(state: ClusterState, st_local: os.stat_result, st_net: os.stat_result) -> str:
    rows = _mount_rows(state.spec.filesystems, "sda", "10.1.255.254")
    loc = (os.major(st_local.st_dev), os.minor(st_local.st_dev))
    net = (os.major(st_net.st_dev), os.minor(st_net.st_dev))
    fixed = []
    n_sys = len(rows) - len(state.spec.filesystems)
    for k, r in enumerate(rows):
        if k == 0:
            r = (*r[:2], loc, *r[3:])
        elif k >= n_sys:
            r = (*r[:2], net if r[5] in NETWORK_FS_TYPES else loc, *r[3:])
        fixed.append(r)
    return _mountinfo(fixed)


def _stat_line(pid: int, comm: str, ppid: int, starttime: int) -> str:
    """``/proc/<pid>/stat`` (proc(5), 52 fields; CPU times and memory left at 0)."""
    rest = [0] * 49
    rest[0] = ppid  # field 4
    rest[1] = pid  # pgrp
    rest[2] = pid  # session
    rest[4] = -1  # tpgid
    rest[5] = 4194560  # flags
    rest[14] = 20  # priority
    rest[16] = 1  # num_threads
    rest[18] = starttime  # field 22
    rest[21] = 18446744073709551615 % (1 << 64)  # rsslim
    return f"{pid} ({comm}) S " + " ".join(map(str, rest)) + "\n"


def _io_text(read: int, write: int) -> str:
    """``/proc/<pid>/io`` (proc.rst): rchar/wchar equal the storage bytes, one syscall per started MiB."""
    syscr = (read + MIB - 1) // MIB
    syscw = (write + MIB - 1) // MIB
    return (
        f"rchar: {read}\nwchar: {write}\nsyscr: {syscr}\nsyscw: {syscw}\n"
        f"read_bytes: {read}\nwrite_bytes: {write}\ncancelled_write_bytes: 0\n"
    )


def job_io_split(state: ClusterState, job: Job) -> list[tuple[int, str, int, int, bool]]:
    """How the job tree spreads a job's I/O over its processes: ``(cluster pid, node, read, write, network)``.

    The batch shell (first pid of the first node) carries every read byte and the written bytes of the class
    (network or local) of ``job.workdir``; when the job also writes to the other class (a mount point of
    ``job.write_bytes`` on it: the keys are fixed for the job's life), the next pid in ``job.pids`` order carries
    those bytes. Only these one or two processes are returned: the job tree lists no process without I/O, so the
    collectors read as few ``/proc`` files as the mapping needs (history generation reads them at every step).
    The class of a pid is fixed for the job's life, so per-pid counters only grow and the job I/O collector's
    per-job totals equal ``sum(job.read_bytes)`` and, per ``fs`` label, the sums of ``job.write_bytes`` over
    network / local mount points. A job with a single process that writes to both classes cannot be split this
    way: everything is attributed to its workdir's class (documented gap).
    """
    spec_fs = state.spec.filesystems
    net_main = _fs_class(spec_fs, job.workdir)
    both = any(_fs_class(spec_fs, mp) != net_main for mp in job.write_bytes)
    procs: list[tuple[int, str]] = []
    for n in job.nodes:
        for p in job.pids.get(n, ()):
            procs.append((cluster_pid(state, n, p), n))
            if len(procs) == 1 + both:
                break
        if len(procs) == 1 + both:
            break
    if not procs:
        return []
    w_net = sum(v for mp, v in job.write_bytes.items() if _fs_class(spec_fs, mp))
    w_loc = sum(v for mp, v in job.write_bytes.items() if not _fs_class(spec_fs, mp))
    main_w, other_w = (w_net, w_loc) if net_main else (w_loc, w_net)
    read = sum(job.read_bytes.values())
    if len(procs) == 1:
        return [(procs[0][0], procs[0][1], read, main_w + other_w, net_main)]
    return [(procs[0][0], procs[0][1], read, main_w, net_main), (procs[1][0], procs[1][1], 0, other_w, not net_main)]


def _comm(job: Job, k: int) -> str:
    # TASK_COMM_LEN is 16: comm is at most 15 bytes. The batch step runs SLURM's copy of the script.
    return "slurm_script" if k == 0 else (job.name or "task")[:15]


def write_job_tree(state: ClusterState, root: Path) -> None:
    """Write the cluster-wide cgroup v2 view of every running job under ``root`` (``root/sys``, ``root/proc``).

    Layout: ``sys/fs/cgroup/cgroup.controllers`` (so the tree is recognised as a pure v2 hierarchy) and, per
    running job, ``sys/fs/cgroup/system.slice/<FirstNode>_slurmstepd.scope/job_<id>`` with ``cpu.stat``
    (``usage_usec``/``user_usec``/``system_usec`` from ``cpu_user_s``/``cpu_system_s``), ``memory.current``
    (sum of ``mem_bytes``), ``memory.peak`` (sum of ``mem_peak_bytes``), ``memory.max`` (``req_mem_mib`` x
    number of nodes in bytes; ``--mem=0`` gives the nodes' RealMemory), ``memory.stat`` (``anon`` = current,
    ``file`` 0: the simulation models no per-job page cache), ``memory.swap.current`` (sum of ``swap_bytes``),
    ``memory.events`` (``oom``/``oom_kill`` = ``oom_kills``), ``pids.current``, and the processes of
    :func:`job_io_split` (the one or two carrying the job's I/O) in ``step_batch/user/task_0/cgroup.procs``
    (``cgroup.threads``: one thread each). All figures are the SUM over the job's nodes (one cgroup per job), so a
    ``sum by (job_id)`` equals the job's total.

    Processes: ``proc/<cluster pid>/{stat,io,comm,environ}``, an empty ``fd/`` and a ``cwd`` link (see
    :func:`job_io_split` and :func:`_anchors`); ``environ`` carries ``SLURM_JOB_ID``, ``SLURM_JOB_USER`` and,
    for GPU jobs, ``SLURM_JOB_GPUS`` (indexes on the first node). When run as root the process directories are
    given the job owner's uid from ``spec.uids`` (the job usage collector's ``user`` label reads it).
    ``proc/self/mountinfo`` and ``proc/1/mountinfo`` list the cluster's filesystems for the job I/O and
    filesystem collectors. Directories of jobs that are no longer running are removed.

    Not thread-safe: one writer per tree (readers may run concurrently, every file is replaced atomically).

    Raises:
        ValueError: a job pid outside ``2 .. PID_SPACE - 1`` (pid 1 is init).

    """
    base = str(root)
    _forget_if_gone(base)
    cg = f"{base}/sys/fs/cgroup"
    proc = f"{base}/proc"
    for d in (cg, f"{cg}/system.slice", proc, f"{proc}/self", f"{proc}/1"):
        _mkdir(d)
    _put(cg, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    local, st_local, net_anchor, st_net = _anchors(root)
    info = _job_tree_mountinfo(state, st_local, st_net)
    _put(f"{proc}/self", "mountinfo", info)
    _put(f"{proc}/1", "mountinfo", info)
    as_root = os.geteuid() == 0
    want_jobs: dict[str, str] = {}
    want_pids: set[str] = set()
    for job in _running(state):
        first = job.nodes[0]
        scope = f"{cg}/system.slice/{SLURM_SCOPE.format(node=first)}"
        jdir = f"{scope}/job_{job.job_id}"
        want_jobs[jdir] = scope
        split = job_io_split(state, job)
        if jdir not in _CACHE:
            _mkdir(scope)
            task = f"{jdir}/step_batch/user/task_0"
            os.makedirs(task, exist_ok=True)
            for d in (jdir, f"{jdir}/step_batch", f"{jdir}/step_batch/user", task):
                _CACHE.setdefault(d, {})
            for d in (jdir, f"{jdir}/step_batch", f"{jdir}/step_batch/user"):
                _put(d, "cgroup.procs", "")
                _put(d, "cgroup.threads", "")
        user_us = round(job.cpu_user_s * 1e6)
        sys_us = round(job.cpu_system_s * 1e6)
        _put(
            jdir,
            "cpu.stat",
            f"usage_usec {user_us + sys_us}\nuser_usec {user_us}\nsystem_usec {sys_us}\n"
            "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
        )
        current = sum(job.mem_bytes.values())
        _put(jdir, "memory.current", f"{current}\n")
        _put(jdir, "memory.peak", f"{sum(job.mem_peak_bytes.values())}\n")
        if job.req_mem_mib > 0:
            limit = job.req_mem_mib * MIB * len(job.nodes)
        else:
            limit = sum(state.spec.node(n).real_memory_mib for n in job.nodes) * MIB
        _put(jdir, "memory.max", f"{limit}\n")
        _put(jdir, "memory.stat", f"anon {current}\nfile 0\nkernel 0\nsock 0\nshmem 0\nfile_mapped 0\nfile_dirty 0\n")
        _put(jdir, "memory.swap.current", f"{sum(job.swap_bytes.values())}\n")
        k = job.oom_kills
        _put(jdir, "memory.events", f"low 0\nhigh 0\nmax {k}\noom {k}\noom_kill {k}\noom_group_kill 0\n")
        _put(jdir, "pids.current", f"{len(split)}\n")
        plist = "".join(f"{p[0]}\n" for p in split)
        task = f"{jdir}/step_batch/user/task_0"
        _put(task, "cgroup.procs", plist)
        _put(task, "cgroup.threads", plist)
        gpus = job.gpus.get(first)
        env = f"SLURM_JOB_ID={job.job_id}\0SLURM_JOB_USER={job.user}\0"
        if gpus:
            env += f"SLURM_JOB_GPUS={','.join(map(str, sorted(gpus)))}\0"
        uid = state.spec.uids.get(job.user)
        for k_, (pid, n, read, write, net) in enumerate(split):
            pdir = f"{proc}/{pid}"
            want_pids.add(str(pid))
            if pdir not in _CACHE:
                _mkdir(pdir)
                os.makedirs(f"{pdir}/fd", exist_ok=True)
                link = f"{pdir}/cwd"
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(net_anchor if net else local, link)
                if as_root and uid is not None:
                    os.chown(pdir, uid, -1)
                boot = state.nodes[n].boot_time if n in state.nodes else 0.0
                start = max(0, int(((job.start_time or state.now) - boot) * USER_HZ)) + k_
                comm = _comm(job, k_)
                _put(pdir, "stat", _stat_line(pid, comm, 1, start))
                _put(pdir, "comm", comm + "\n")
                _put(pdir, "environ", env)
            _put(pdir, "io", _io_text(read, write))
    # Remove what belongs to jobs no longer running (also left over by an earlier process).
    sl = f"{cg}/system.slice"
    for scope_entry in os.scandir(sl):
        if not scope_entry.is_dir(follow_symlinks=False):
            continue
        for e in os.scandir(scope_entry.path):
            if e.name.startswith("job_") and e.path not in want_jobs:
                _rmtree(e.path)
    for e in os.scandir(proc):
        # proc/1 holds init's mountinfo (read by the filesystem collector), never a job's process.
        if e.name.isdigit() and e.name != "1" and e.name not in want_pids:
            _rmtree(e.path)


# ------------------------------------------------------------------------------------------- nvidia-smi

_PCI_BUSES = ("07", "0F", "47", "4E", "87", "90", "B7", "BD")
_BOARDS = {  # gpu_type -> (name pattern, power limit W, max SM clock MHz, memory clock MHz)
    "a100": ("NVIDIA A100-SXM4-{gib}GB", 400.0, 1410, 1593),
    "h100": ("NVIDIA H100 80GB HBM3", 700.0, 1980, 2619),
    "v100": ("Tesla V100-SXM2-{gib}GB", 300.0, 1530, 877),
}
_IDLE_CLOCK = 210
_SLOWDOWN_C, _SHUTDOWN_C, _MAX_GPU_C, _MAX_MEM_C = 89, 92, 85, 95


def _gpu_rows(state: ClusterState, node: str) -> list[dict]:
    """One dict per GPU of ``node`` with everything the three output formats print."""
    spec = state.spec.node(node)
    ns = state.nodes[node]
    gib = spec.gpu_memory_mib // 1024
    name_pat, plimit, max_sm, mem_clk = _BOARDS.get(
        (spec.gpu_type or "").lower(), (f"NVIDIA {(spec.gpu_type or 'GPU').upper()}", 300.0, 1410, 1215)
    )
    holders: dict[int, list[tuple[Job, list[int]]]] = {}
    for j in _running(state):
        idx = j.gpus.get(node)
        if not idx:
            continue
        pids = list(j.pids.get(node, ()))
        workers = pids[1:] if len(pids) > 1 else pids  # the batch shell itself does not use the GPU
        for i in idx:
            holders.setdefault(int(i), []).append((j, workers))
    rows = []
    for i in range(spec.gpus):
        util = min(1.0, max(0.0, float(ns.gpu_util[i]))) if i < len(ns.gpu_util) else 0.0
        used = int(round(float(ns.gpu_mem_used_mib[i]))) if i < len(ns.gpu_mem_used_mib) else 0
        used = min(max(0, used), spec.gpu_memory_mib)
        temp = int(round(float(ns.gpu_temp_c[i]))) if i < len(ns.gpu_temp_c) else 30
        power = float(ns.gpu_power_w[i]) if i < len(ns.gpu_power_w) else 50.0
        dbe = int(ns.gpu_ecc_dbe[i]) if i < len(ns.gpu_ecc_dbe) else 0
        util_pct = int(round(util * 100))
        clock = int(round(_IDLE_CLOCK + util * (max_sm - _IDLE_CLOCK)))
        procs = []
        for job, workers in holders.get(i, []):
            if not workers:
                continue
            share, rem = divmod(used, len(workers))
            for k, pid in enumerate(workers):
                procs.append((pid, (job.name or "python")[:64], share + (1 if k < rem else 0)))
        rows.append(
            {
                "index": i,
                "uuid": "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{state.spec.name}.{node}.gpu{i}")),
                "name": name_pat.format(gib=gib),
                "bus": f"00000000:{_PCI_BUSES[i % len(_PCI_BUSES)]}:00.0",
                "minor": i,
                "util": util_pct,
                "mem_util": util_pct // 2,  # memory-controller busy share: half the SM share (stand-in)
                "total": spec.gpu_memory_mib,
                "used": used,
                "free": spec.gpu_memory_mib - used,
                "temp": temp,
                "power": power,
                "plimit": plimit,
                "clock": clock,
                "max_clock": max_sm,
                "mem_clock": mem_clk,
                "dbe": dbe,
                "idle": util_pct == 0,
                "power_cap": power >= 0.98 * plimit,
                "thermal": temp >= _SLOWDOWN_C,
                "procs": procs,
            }
        )
    return rows


def _flag(b: bool) -> str:
    return "Active" if b else "Not Active"


def _smi_xml(state: ClusterState, node: str) -> str:
    rows = _gpu_rows(state, node)
    out = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
        "<nvidia_smi_log>",
        "\t<timestamp>" + _ctime(state.now) + "</timestamp>",
        f"\t<driver_version>{DRIVER_VERSION}</driver_version>",
        f"\t<cuda_version>{CUDA_VERSION}</cuda_version>",
        f"\t<attached_gpus>{len(rows)}</attached_gpus>",
    ]
    for g in rows:
        reasons = {
            "gpu_idle": g["idle"],
            "applications_clocks_setting": False,
            "sw_power_cap": g["power_cap"],
            "hw_slowdown": g["thermal"],
            "hw_thermal_slowdown": g["thermal"],
            "hw_power_brake_slowdown": False,
            "sync_boost": False,
            "sw_thermal_slowdown": g["thermal"],
            "display_clocks_setting": False,
        }
        procs = "".join(
            "\t\t\t<process_info>\n"
            "\t\t\t\t<gpu_instance_id>N/A</gpu_instance_id>\n"
            "\t\t\t\t<compute_instance_id>N/A</compute_instance_id>\n"
            f"\t\t\t\t<pid>{pid}</pid>\n"
            "\t\t\t\t<type>C</type>\n"
            f"\t\t\t\t<process_name>{_xml_escape(name)}</process_name>\n"
            f"\t\t\t\t<used_memory>{mem} MiB</used_memory>\n"
            "\t\t\t</process_info>\n"
            for pid, name, mem in g["procs"]
        )
        dbe = g["dbe"]
        out.append(
            f"""\t<gpu id="{g["bus"]}">
\t\t<product_name>{g["name"]}</product_name>
\t\t<product_brand>NVIDIA</product_brand>
\t\t<product_architecture>Ampere</product_architecture>
\t\t<persistence_mode>Enabled</persistence_mode>
\t\t<mig_mode>
\t\t\t<current_mig>Disabled</current_mig>
\t\t\t<pending_mig>Disabled</pending_mig>
\t\t</mig_mode>
\t\t<mig_devices>
\t\t\tNone
\t\t</mig_devices>
\t\t<accounting_mode>Disabled</accounting_mode>
\t\t<uuid>{g["uuid"]}</uuid>
\t\t<minor_number>{g["minor"]}</minor_number>
\t\t<vbios_version>92.00.45.00.03</vbios_version>
\t\t<pci>
\t\t\t<pci_bus_id>{g["bus"]}</pci_bus_id>
\t\t\t<pci_gpu_link_info>
\t\t\t\t<pcie_gen>
\t\t\t\t\t<max_link_gen>4</max_link_gen>
\t\t\t\t\t<current_link_gen>4</current_link_gen>
\t\t\t\t</pcie_gen>
\t\t\t\t<link_widths>
\t\t\t\t\t<max_link_width>16x</max_link_width>
\t\t\t\t\t<current_link_width>16x</current_link_width>
\t\t\t\t</link_widths>
\t\t\t</pci_gpu_link_info>
\t\t\t<replay_counter>0</replay_counter>
\t\t</pci>
\t\t<fan_speed>N/A</fan_speed>
\t\t<performance_state>P0</performance_state>
\t\t<clocks_event_reasons>
"""
            + "".join(
                f"\t\t\t<clocks_event_reason_{r}>{_flag(v)}</clocks_event_reason_{r}>\n" for r, v in reasons.items()
            )
            + f"""\t\t</clocks_event_reasons>
\t\t<fb_memory_usage>
\t\t\t<total>{g["total"]} MiB</total>
\t\t\t<reserved>0 MiB</reserved>
\t\t\t<used>{g["used"]} MiB</used>
\t\t\t<free>{g["free"]} MiB</free>
\t\t</fb_memory_usage>
\t\t<bar1_memory_usage>
\t\t\t<total>131072 MiB</total>
\t\t\t<used>1 MiB</used>
\t\t\t<free>131071 MiB</free>
\t\t</bar1_memory_usage>
\t\t<compute_mode>Default</compute_mode>
\t\t<utilization>
\t\t\t<gpu_util>{g["util"]} %</gpu_util>
\t\t\t<memory_util>{g["mem_util"]} %</memory_util>
\t\t\t<encoder_util>0 %</encoder_util>
\t\t\t<decoder_util>0 %</decoder_util>
\t\t\t<jpeg_util>0 %</jpeg_util>
\t\t\t<ofa_util>0 %</ofa_util>
\t\t</utilization>
\t\t<ecc_mode>
\t\t\t<current_ecc>Enabled</current_ecc>
\t\t\t<pending_ecc>Enabled</pending_ecc>
\t\t</ecc_mode>
\t\t<ecc_errors>
\t\t\t<volatile>
\t\t\t\t<sram_correctable>0</sram_correctable>
\t\t\t\t<sram_uncorrectable>0</sram_uncorrectable>
\t\t\t\t<dram_correctable>0</dram_correctable>
\t\t\t\t<dram_uncorrectable>{dbe}</dram_uncorrectable>
\t\t\t</volatile>
\t\t\t<aggregate>
\t\t\t\t<sram_correctable>0</sram_correctable>
\t\t\t\t<sram_uncorrectable>0</sram_uncorrectable>
\t\t\t\t<dram_correctable>0</dram_correctable>
\t\t\t\t<dram_uncorrectable>{dbe}</dram_uncorrectable>
\t\t\t</aggregate>
\t\t</ecc_errors>
\t\t<retired_pages>
\t\t\t<multiple_single_bit_retirement>
\t\t\t\t<retired_count>N/A</retired_count>
\t\t\t\t<retired_pagelist>N/A</retired_pagelist>
\t\t\t</multiple_single_bit_retirement>
\t\t\t<double_bit_retirement>
\t\t\t\t<retired_count>N/A</retired_count>
\t\t\t\t<retired_pagelist>N/A</retired_pagelist>
\t\t\t</double_bit_retirement>
\t\t\t<pending_blacklist>N/A</pending_blacklist>
\t\t\t<pending_retirement>N/A</pending_retirement>
\t\t</retired_pages>
\t\t<remapped_rows>
\t\t\t<remapped_row_corr>0</remapped_row_corr>
\t\t\t<remapped_row_unc>{dbe}</remapped_row_unc>
\t\t\t<remapped_row_pending>{"Yes" if dbe else "No"}</remapped_row_pending>
\t\t\t<remapped_row_failure>No</remapped_row_failure>
\t\t</remapped_rows>
\t\t<temperature>
\t\t\t<gpu_temp>{g["temp"]} C</gpu_temp>
\t\t\t<gpu_temp_max_threshold>{_SHUTDOWN_C} C</gpu_temp_max_threshold>
\t\t\t<gpu_temp_slow_threshold>{_SLOWDOWN_C} C</gpu_temp_slow_threshold>
\t\t\t<gpu_temp_max_gpu_threshold>{_MAX_GPU_C} C</gpu_temp_max_gpu_threshold>
\t\t\t<gpu_target_temperature>N/A</gpu_target_temperature>
\t\t\t<memory_temp>N/A</memory_temp>
\t\t\t<gpu_temp_max_mem_threshold>{_MAX_MEM_C} C</gpu_temp_max_mem_threshold>
\t\t</temperature>
\t\t<gpu_power_readings>
\t\t\t<power_state>P0</power_state>
\t\t\t<power_draw>{g["power"]:.2f} W</power_draw>
\t\t\t<current_power_limit>{g["plimit"]:.2f} W</current_power_limit>
\t\t\t<requested_power_limit>{g["plimit"]:.2f} W</requested_power_limit>
\t\t\t<default_power_limit>{g["plimit"]:.2f} W</default_power_limit>
\t\t\t<min_power_limit>100.00 W</min_power_limit>
\t\t\t<max_power_limit>{g["plimit"]:.2f} W</max_power_limit>
\t\t</gpu_power_readings>
\t\t<clocks>
\t\t\t<graphics_clock>{g["clock"]} MHz</graphics_clock>
\t\t\t<sm_clock>{g["clock"]} MHz</sm_clock>
\t\t\t<mem_clock>{g["mem_clock"]} MHz</mem_clock>
\t\t\t<video_clock>{g["clock"]} MHz</video_clock>
\t\t</clocks>
\t\t<max_clocks>
\t\t\t<graphics_clock>{g["max_clock"]} MHz</graphics_clock>
\t\t\t<sm_clock>{g["max_clock"]} MHz</sm_clock>
\t\t\t<mem_clock>{g["mem_clock"]} MHz</mem_clock>
\t\t\t<video_clock>{g["max_clock"]} MHz</video_clock>
\t\t</max_clocks>
\t\t<processes>
{procs}\t\t</processes>
\t\t<accounted_processes>
\t\t</accounted_processes>
\t</gpu>"""
        )
    out.append("</nvidia_smi_log>")
    return "\n".join(out) + "\n"


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ctime(t: float) -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(t))


def _csv_gpu_field(name: str, g: dict) -> tuple[str | None, str, str]:
    """``(header unit, bare value, unit suffix)`` of one ``--query-gpu`` field; raises KeyError when unknown."""
    reasons = {
        "gpu_idle": g["idle"],
        "applications_clocks_setting": False,
        "sw_power_cap": g["power_cap"],
        "hw_slowdown": g["thermal"],
        "hw_thermal_slowdown": g["thermal"],
        "hw_power_brake_slowdown": False,
        "sw_thermal_slowdown": g["thermal"],
        "sync_boost": False,
        "display_clocks_setting": False,
    }
    for prefix in ("clocks_throttle_reasons.", "clocks_event_reasons."):
        if name.startswith(prefix) and name[len(prefix) :] in reasons:
            return None, _flag(reasons[name[len(prefix) :]]), ""
    mib = ("MiB", " MiB")
    table: dict[str, tuple[str | None, object, str]] = {
        "index": (None, g["index"], ""),
        "uuid": (None, g["uuid"], ""),
        "name": (None, g["name"], ""),
        "pci.bus_id": (None, g["bus"], ""),
        "driver_version": (None, DRIVER_VERSION, ""),
        "vbios_version": (None, "92.00.45.00.03", ""),
        "pstate": (None, "P0", ""),
        "fan.speed": ("%", "[N/A]", ""),
        "memory.total": (mib[0], g["total"], mib[1]),
        "memory.used": (mib[0], g["used"], mib[1]),
        "memory.free": (mib[0], g["free"], mib[1]),
        "utilization.gpu": ("%", g["util"], " %"),
        "utilization.memory": ("%", g["mem_util"], " %"),
        "temperature.gpu": (None, g["temp"], ""),
        "power.draw": ("W", f"{g['power']:.2f}", " W"),
        "power.limit": ("W", f"{g['plimit']:.2f}", " W"),
        "enforced.power.limit": ("W", f"{g['plimit']:.2f}", " W"),
        "power.default_limit": ("W", f"{g['plimit']:.2f}", " W"),
        "power.min_limit": ("W", "100.00", " W"),
        "power.max_limit": ("W", f"{g['plimit']:.2f}", " W"),
        "clocks.current.graphics": ("MHz", g["clock"], " MHz"),
        "clocks.current.sm": ("MHz", g["clock"], " MHz"),
        "clocks.current.memory": ("MHz", g["mem_clock"], " MHz"),
        "clocks.current.video": ("MHz", g["clock"], " MHz"),
        "clocks.max.graphics": ("MHz", g["max_clock"], " MHz"),
        "clocks.max.sm": ("MHz", g["max_clock"], " MHz"),
        "clocks.max.memory": ("MHz", g["mem_clock"], " MHz"),
        "ecc.mode.current": (None, "Enabled", ""),
        "ecc.errors.corrected.volatile.total": (None, 0, ""),
        "ecc.errors.uncorrected.volatile.total": (None, g["dbe"], ""),
        "ecc.errors.corrected.aggregate.total": (None, 0, ""),
        "ecc.errors.uncorrected.aggregate.total": (None, g["dbe"], ""),
        "retired_pages.single_bit_ecc.count": (None, "[N/A]", ""),
        "retired_pages.double_bit.count": (None, "[N/A]", ""),
        "retired_pages.pending": (None, "[N/A]", ""),
        "remapped_rows.correctable": (None, 0, ""),
        "remapped_rows.uncorrectable": (None, g["dbe"], ""),
        "remapped_rows.pending": (None, "Yes" if g["dbe"] else "No", ""),
        "remapped_rows.failure": (None, "No", ""),
        "mig.mode.current": (None, "Disabled", ""),
        "pcie.link.gen.current": (None, 4, ""),
        "pcie.link.gen.max": (None, 4, ""),
        "pcie.link.width.current": (None, 16, ""),
        "pcie.link.width.max": (None, 16, ""),
    }
    unit, value, suffix = table[name]
    text = str(value)
    return unit, text, "" if text.startswith("[") else suffix


def _parse_format(argv: Sequence[str]) -> tuple[bool, bool]:
    fmt = [a for a in argv if a.startswith("--format=")]
    if len(fmt) != 1:
        raise ValueError(f"nvidia-smi: expected one --format=csv[,noheader][,nounits] in {list(argv)}")
    opts = fmt[0].removeprefix("--format=").split(",")
    if opts[0] != "csv" or any(o not in ("noheader", "nounits") for o in opts[1:]):
        raise ValueError(f"nvidia-smi: unsupported {fmt[0]}")
    return "noheader" not in opts, "nounits" not in opts


def nvidia_smi(state: ClusterState, node: str, argv: Sequence[str]) -> str:
    """The stdout of ``nvidia-smi`` on ``node`` for the argv forms the gpu collector runs.

    Forms: ``-q -x`` (XML, DTD v12 as driver 535 prints it), ``--query-gpu=<fields> --format=csv[,noheader]
    [,nounits]`` (the fields of :data:`~nomade.exporter.parsers.nvidia_smi.QUERY_GPU_FIELDS` and the
    ``remapped_rows.*`` ones) and ``--query-compute-apps=<gpu_uuid,pid,process_name,used_gpu_memory>
    --format=...``. Per GPU: utilisation (integer percent of ``NodeState.gpu_util``; memory-controller
    utilisation = half of it), framebuffer memory (``gpu_mem_used_mib`` rounded; total = ``gpu_memory_mib``, no
    reservation), temperature (rounded), power draw (2 decimals), double-bit ECC errors (``gpu_ecc_dbe``, as
    volatile and aggregate DRAM uncorrectable, and remapped rows). Xid errors are not printed (nvidia-smi has no
    such field). Compute processes: for every running job holding the GPU on this node, its processes on the
    node except the batch shell (all of them when it has one), the GPU's used memory split evenly among them.

    Raises:
        ValueError: an argv form or query field nvidia-smi would refuse or that is not supported here (the
            simulated runner turns it into a CommandError); KeyError: unknown node.

    """
    args = list(argv[1:])
    if sorted(args) == ["-q", "-x"]:
        return _smi_xml(state, node)
    queries = [a for a in args if a.startswith("--query-")]
    if len(queries) != 1 or len(args) != 2:
        raise ValueError(f"nvidia-smi: unsupported arguments {args}")
    header, units = _parse_format(args)
    key, _, field_text = queries[0].partition("=")
    fields = [f.strip() for f in field_text.split(",") if f.strip()]
    if not fields:
        raise ValueError(f"nvidia-smi: empty {key}")
    rows = _gpu_rows(state, node)
    lines: list[str] = []
    if key == "--query-gpu":
        cells: list[list[str]] = []
        head: list[str] = []
        for f in fields:
            try:
                unit = _csv_gpu_field(f, rows[0])[0] if rows else None
            except KeyError:
                raise ValueError(f'Field "{f}" is not a valid field to query.') from None
            head.append(f"{f} [{unit}]" if unit else f)
        for g in rows:
            row = []
            for f in fields:
                _, text, suffix = _csv_gpu_field(f, g)
                row.append(text + (suffix if units else ""))
            cells.append(row)
        if header:
            lines.append(", ".join(head))
        lines += [", ".join(r) for r in cells]
    elif key == "--query-compute-apps":
        known = {"gpu_uuid", "pid", "process_name", "used_gpu_memory", "used_memory", "gpu_name", "gpu_bus_id"}
        bad = [f for f in fields if f not in known]
        if bad:
            raise ValueError(f'Field "{bad[0]}" is not a valid field to query.')
        if header:
            lines.append(", ".join(f"{f} [MiB]" if f in ("used_gpu_memory", "used_memory") else f for f in fields))
        for g in rows:
            for pid, name, mem in g["procs"]:
                values = {
                    "gpu_uuid": g["uuid"],
                    "gpu_name": g["name"],
                    "gpu_bus_id": g["bus"],
                    "pid": str(pid),
                    "process_name": name,
                    "used_gpu_memory": f"{mem}{' MiB' if units else ''}",
                    "used_memory": f"{mem}{' MiB' if units else ''}",
                }
                lines.append(", ".join(values[f] for f in fields))
    else:
        raise ValueError(f"nvidia-smi: unsupported query {key}")
    return "\n".join(lines) + ("\n" if lines else "")


# -------------------------------------------------------------------------------------------------- statvfs


def statvfs_for(state: Callable[[], ClusterState]) -> Callable[[str], os.statvfs_result]:
    """A ``statvfs`` stand-in for the filesystem collector (``CollectorContext.statvfs``).

    The returned callable maps a mount point of ``state().spec.filesystems`` to an ``os.statvfs_result`` from
    ``state().filesystems[mountpoint]``: ``f_frsize`` = ``f_bsize`` = 4096, ``f_blocks`` = size / 4096,
    ``f_bfree`` = (size - used) / 4096, ``f_bavail`` = ``f_bfree`` minus 5 % of ``f_blocks`` on ext4 (its root
    reserve) and equal to ``f_bfree`` on xfs, nfs and lustre; ``f_files`` = ``inodes``, ``f_ffree`` =
    ``f_favail`` = inodes - ``files_used``; ``f_flag`` 0 (read-write), ``f_namemax`` 255. The system mounts of
    the rendered mount table (:data:`SYSTEM_MOUNTS`: ``/`` and ``/run``) get fixed figures. The state is read
    at each call, so a filesystem filling up is seen at the next scrape.

    Raises (from the returned callable):
        FileNotFoundError: a path that is not one of those mount points.

    """

    def statvfs(path: str) -> os.statvfs_result:
        st = state()
        p = os.fspath(path)
        p = p.rstrip("/") or "/"
        for fs in st.spec.filesystems:
            if fs.mountpoint == p:
                fss = st.filesystems.get(p)
                used = fss.used_bytes if fss is not None else 0
                files_used = fss.files_used if fss is not None else 0
                return _statvfs(fs.fstype, fs.size_bytes, used, fs.inodes, files_used)
        if p in SYSTEM_MOUNTS:
            fstype, size, used, inodes = SYSTEM_MOUNTS[p]
            return _statvfs(fstype, size, used, inodes, inodes // 50)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    return statvfs


def _statvfs(fstype: str, size: int, used: int, inodes: int, files_used: int) -> os.statvfs_result:
    blocks = size // FRSIZE
    bfree = max(0, min(blocks, (size - used) // FRSIZE))
    reserve = int(blocks * EXT4_RESERVED_RATIO) if fstype == "ext4" else 0
    bavail = max(0, bfree - reserve)
    ffree = max(0, inodes - files_used)
    return os.statvfs_result((FRSIZE, FRSIZE, blocks, bfree, bavail, inodes, ffree, ffree, 0, 255))
