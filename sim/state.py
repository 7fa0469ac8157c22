"""The simulated cluster's state: the contract between the engine and the renderers.

The engine (:mod:`nomade.sim.engine`) owns and mutates one :class:`ClusterState`; renderers
(:mod:`nomade.sim.render_slurm`, :mod:`nomade.sim.render_node`) only read it and turn it into the texts a real
cluster's commands and kernel files would show at ``state.now``. Everything a renderer needs is here, so a
renderer never draws random numbers: the same state always renders to the same text (reproducibility lives in
the engine's seed).

Units: times are Unix seconds (float); memory and I/O in bytes unless a field name says ``_mib`` (MiB, as SLURM
prints RealMemory and ``--mem``); CPU time in seconds; cumulative counters only grow (a node reboot resets the
node's own counters and sets ``boot_time``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

USER_HZ = 100
"""Ticks per second of the rendered ``/proc/stat`` (``sysconf(_SC_CLK_TCK)`` on every Linux HPC node)."""

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
"""Column order of a ``/proc/stat`` cpu line (proc(5)); :attr:`NodeState.cpu_ticks` uses it."""

TERMINAL_STATES = ("COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED")
"""Job states the simulation ends jobs in (sacct(1) JOB STATE CODES)."""


@dataclass(frozen=True)
class NodeSpec:
    """A node as slurm.conf declares it.

    Attributes:
        name: NodeName (``c001``, ``g01``...).
        partitions: partitions the node belongs to.
        cpus: CPUs (= sockets x cores x threads).
        sockets, cores_per_socket, threads_per_core: topology.
        real_memory_mib: RealMemory, MiB.
        gpus: GRES gpu count (0 without GPUs).
        gpu_type: GRES type (``a100``) or ``None``.
        gpu_memory_mib: memory of one GPU, MiB (0 without GPUs).
        features: AvailableFeatures.
        local_disk: block device name of the node's local scratch disk (``nvme0n1``).

    """

    name: str
    partitions: tuple[str, ...]
    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mib: int
    gpus: int = 0
    gpu_type: str | None = None
    gpu_memory_mib: int = 0
    features: tuple[str, ...] = ()
    local_disk: str = "nvme0n1"


@dataclass(frozen=True)
class PartitionSpec:
    """A partition as slurm.conf declares it.

    Attributes:
        name: PartitionName.
        nodes: its NodeNames, in order.
        default: ``Default=YES``.
        max_time_s: MaxTime in seconds.
        default_time_s: DefaultTime in seconds.
        priority_tier: PriorityTier.

    """

    name: str
    nodes: tuple[str, ...]
    default: bool
    max_time_s: int
    default_time_s: int
    priority_tier: int = 1


@dataclass(frozen=True)
class FilesystemSpec:
    """A shared or local filesystem seen by the nodes.

    Attributes:
        mountpoint: where it is mounted (``/home``, ``/scratch``, ``/project``).
        source: mount source (``nfs01:/export/home`` for NFS, ``/dev/md0`` for a local one).
        fstype: ``nfs4``, ``xfs``, ``ext4``, ``lustre``.
        size_bytes: capacity.
        inodes: inode capacity.
        nfs_server: server host name for NFS mounts, else ``None``.

    """

    mountpoint: str
    source: str
    fstype: str
    size_bytes: int
    inodes: int
    nfs_server: str | None = None


@dataclass(frozen=True)
class AccountSpec:
    """A SLURM account (association tree node under ``root``).

    Attributes:
        name: account name.
        shares: RawShares (fairshare).
        users: user names in the account.

    """

    name: str
    shares: int
    users: tuple[str, ...]


@dataclass(frozen=True)
class ClusterSpec:
    """The static description of a simulated cluster.

    Attributes:
        name: ClusterName.
        slurm_version: version string the commands print (``23.02.7``).
        nodes: every node, in NodeName order.
        partitions: every partition.
        filesystems: shared and local filesystems (all mounted on every node).
        accounts: the association tree below root.
        uids: user name -> uid.
        instrumented: nodes that run a node-mode exporter in the simulation (their ``/proc`` is rendered).

    """

    name: str
    slurm_version: str
    nodes: tuple[NodeSpec, ...]
    partitions: tuple[PartitionSpec, ...]
    filesystems: tuple[FilesystemSpec, ...]
    accounts: tuple[AccountSpec, ...]
    uids: dict[str, int]
    instrumented: tuple[str, ...]

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``; raises KeyError for an unknown node."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


@dataclass
class NodeState:
    """A node's dynamic state.

    SLURM view:
        state: scontrol base state, lower case: ``idle``, ``mixed``, ``allocated``, ``down``.
        flags: scontrol state flags, upper case: ``DRAIN``, ``NOT_RESPONDING``, ``COMPLETING``.
        reason, reason_time, reason_user: ``Reason=`` text, when set and by whom (``root``), or ``None``.
        alloc_cpus, alloc_mem_mib, alloc_gpus: what running jobs hold (sum over the node's jobs).
        cpu_load: 1-minute load average (scontrol CPULoad).
        free_mem_mib: FreeMem as slurmd reports it.
        boot_time: Unix seconds of the last boot.
        last_busy: Unix seconds the node last had a job.

    Kernel view (cumulative since ``boot_time``):
        cpu_ticks: int64 array of shape (cpus, 10), USER_HZ ticks per core in :data:`CPU_MODES` order.
        core_busy: float array of shape (cpus,), the last step's busy ratio per core (1 - idle - iowait).
        mem_used_bytes, mem_cached_bytes, mem_buffers_bytes: memory use (used excludes cache and buffers).
        swap_used_bytes: swap in use; swap_total_bytes: swap size (0 = no swap).
        procs_running, procs_blocked: ``/proc/stat`` gauges.
        ctxt, forks, intr: ``/proc/stat`` counters.
        vmstat: ``/proc/vmstat`` counters (``pgfault``, ``pgmajfault``, ``pswpin``, ``pswpout``, ``pgpgin``,
            ``pgpgout``, ``oom_kill``).
        psi_us: ``(resource, kind) -> total microseconds`` for ``cpu``/``memory``/``io`` x ``some``/``full``.
        psi_avg: same keys -> avg10 percent of the last step.
        disk: local disk counters in ``/proc/diskstats`` field order (the 11 classic fields, names
            ``reads``, ``reads_merged``, ``sectors_read``, ``read_ms``, ``writes``, ``writes_merged``,
            ``sectors_written``, ``write_ms``, ``in_progress``, ``io_ms``, ``weighted_ms``).
        nfs: mountpoint -> op name (``READ``, ``WRITE``, ``GETATTR``...) -> ``[ops, trans, timeouts, bytes_sent,
            bytes_recv, queue_ms, rtt_ms, execute_ms]`` (mountstats per-op fields), plus byte counters under
            op name ``"bytes"``: ``[normal_read, normal_write, direct_read, direct_write, server_read,
            server_write, read_pages, write_pages]``.
        gpu_util, gpu_mem_used_mib, gpu_temp_c, gpu_power_w: float arrays of shape (gpus,).
        gpu_ecc_dbe: int array (gpus,), volatile double-bit ECC errors.
        gpu_xid: the last Xid error per GPU (0 = none).

    """

    name: str
    state: str = "idle"
    flags: set[str] = field(default_factory=set)
    reason: str | None = None
    reason_time: float | None = None
    reason_user: str | None = None
    alloc_cpus: int = 0
    alloc_mem_mib: int = 0
    alloc_gpus: int = 0
    cpu_load: float = 0.0
    free_mem_mib: int = 0
    boot_time: float = 0.0
    last_busy: float = 0.0
    cpu_ticks: np.ndarray = field(default_factory=lambda: np.zeros((1, 10), dtype=np.int64))
    core_busy: np.ndarray = field(default_factory=lambda: np.zeros(1))
    mem_used_bytes: int = 0
    mem_cached_bytes: int = 0
    mem_buffers_bytes: int = 0
    swap_used_bytes: int = 0
    swap_total_bytes: int = 0
    procs_running: int = 1
    procs_blocked: int = 0
    ctxt: int = 0
    forks: int = 0
    intr: int = 0
    vmstat: dict[str, int] = field(default_factory=dict)
    psi_us: dict[tuple[str, str], int] = field(default_factory=dict)
    psi_avg: dict[tuple[str, str], float] = field(default_factory=dict)
    disk: dict[str, int] = field(default_factory=dict)
    nfs: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    gpu_util: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_mem_used_mib: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_temp_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_ecc_dbe: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gpu_xid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class JobStep:
    """One finished or running step of a job, for sacct's step lines (``.batch``, ``.extern``, ``.0``).

    Attributes:
        step: step id suffix (``batch``, ``extern``, ``0``).
        state: step state (``COMPLETED``, ``FAILED``, ``OUT_OF_MEMORY``, ``CANCELLED``, ``RUNNING``).
        exit_code, signal: ``ExitCode=exit:signal``.
        max_rss_bytes: MaxRSS of the step (largest task).
        cpu_s: TotalCPU of the step, seconds.

    """

    step: str
    state: str
    exit_code: int
    signal: int
    max_rss_bytes: int
    cpu_s: float


@dataclass
class Job:
    """A job, from submission to its end.

    Request (what the user asked for):
        job_id: JobIDRaw (unique); array_job_id/array_task_id for array tasks, else ``None``.
        name, user, account, partition, qos: as sbatch sets them.
        submit_time, eligible_time: Unix seconds.
        time_limit_s: TimeLimit.
        req_nodes, req_cpus (total), req_mem_mib (per node, ``--mem``), req_gpus (total): the request.
        workdir: the filesystem mountpoint the job writes to (``/scratch`` or ``/home``...).
        kind: the workload-model class that generated it (``normal``, ``oom_growth``, ``timeout``,
            ``nfs_writer``, ``crash``, ``gpu_train``, ``short_test``...); never rendered, used by tests and the
            evaluation of the demo's risk scores.

    Life:
        state: ``PENDING``, ``RUNNING`` or a :data:`TERMINAL_STATES` value.
        reason: squeue Reason (``Priority``, ``Resources``, ``Dependency``, ``QOSMaxJobsPerUserLimit``, ``None``).
        priority: the job's priority (sprio / squeue).
        start_time, end_time: Unix seconds or ``None``.
        nodes: allocated NodeNames (empty while pending).
        cores: NodeName -> allocated core indices on that node.
        gpus: NodeName -> allocated GPU indices on that node.
        exit_code, signal: of the job (``ExitCode=``).
        steps: the job's steps (sacct step lines).

    Usage (cumulative, all nodes summed unless noted):
        cpu_user_s, cpu_system_s: CPU time.
        mem_bytes: NodeName -> current memory of the job's cgroup on that node (``memory.current``).
        mem_peak_bytes: NodeName -> peak on that node (``memory.peak``).
        swap_bytes: NodeName -> swap in use.
        oom_kills: OOM kills so far (``memory.events`` oom_kill).
        read_bytes, write_bytes: mountpoint -> bytes read / written (``/proc/<pid>/io``, mapped to the job's
            filesystem).
        pids: NodeName -> the job's process ids on that node (first is the batch shell), for ``cgroup.procs``
            and ``/proc/<pid>/io``.
        gpu_util: the job's mean GPU utilisation in [0, 1] (its GPUs' share of ``NodeState.gpu_util``).

    """

    job_id: int
    name: str
    user: str
    account: str
    partition: str
    submit_time: float
    time_limit_s: int
    req_nodes: int
    req_cpus: int
    req_mem_mib: int
    req_gpus: int = 0
    qos: str = "normal"
    eligible_time: float | None = None
    array_job_id: int | None = None
    array_task_id: int | None = None
    workdir: str = "/home"
    kind: str = "normal"
    state: str = "PENDING"
    reason: str = "Priority"
    priority: int = 0
    start_time: float | None = None
    end_time: float | None = None
    nodes: tuple[str, ...] = ()
    cores: dict[str, tuple[int, ...]] = field(default_factory=dict)
    gpus: dict[str, tuple[int, ...]] = field(default_factory=dict)
    exit_code: int = 0
    signal: int = 0
    steps: list[JobStep] = field(default_factory=list)
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    mem_bytes: dict[str, int] = field(default_factory=dict)
    mem_peak_bytes: dict[str, int] = field(default_factory=dict)
    swap_bytes: dict[str, int] = field(default_factory=dict)
    oom_kills: int = 0
    read_bytes: dict[str, int] = field(default_factory=dict)
    write_bytes: dict[str, int] = field(default_factory=dict)
    pids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    gpu_util: float = 0.0

    @property
    def max_rss_bytes(self) -> int:
        """Peak memory on the job's largest node (sacct MaxRSS semantics: the largest task's peak)."""
        return max(self.mem_peak_bytes.values(), default=0)


@dataclass
class FilesystemState:
    """A filesystem's fill level.

    Attributes:
        used_bytes: bytes in use (statvfs ``(f_blocks - f_bfree) * f_frsize``).
        files_used: inodes in use.
        group_used_bytes: account -> bytes used (for ``repquota``/``lfs quota`` style group quotas).
        group_limit_bytes: account -> hard limit.

    """

    used_bytes: int
    files_used: int
    group_used_bytes: dict[str, int] = field(default_factory=dict)
    group_limit_bytes: dict[str, int] = field(default_factory=dict)


@dataclass
class SchedulerState:
    """slurmctld's statistics as sdiag prints them (counters since ``stats_reset``).

    Attributes:
        server_start: slurmctld start, Unix s.
        stats_reset: last statistics reset (sdiag resets at midnight), Unix s.
        jobs_submitted, jobs_started, jobs_completed, jobs_canceled, jobs_failed: counters since the reset.
        agent_queue_size, server_thread_count: gauges.
        cycles, last_cycle_us, mean_cycle_us, max_cycle_us, last_depth: main scheduler.
        bf_cycles, bf_last_cycle_us, bf_mean_cycle_us, bf_max_cycle_us, bf_backfilled_jobs, bf_last_depth:
            backfill scheduler.
        rpc_by_type: message type name -> ``[count, total_time_us]``.
        rpc_by_user: user -> ``[count, total_time_us]``.

    """

    server_start: float
    stats_reset: float
    jobs_submitted: int = 0
    jobs_started: int = 0
    jobs_completed: int = 0
    jobs_canceled: int = 0
    jobs_failed: int = 0
    agent_queue_size: int = 0
    server_thread_count: int = 3
    cycles: int = 0
    last_cycle_us: int = 0
    mean_cycle_us: int = 0
    max_cycle_us: int = 0
    last_depth: int = 0
    bf_cycles: int = 0
    bf_last_cycle_us: int = 0
    bf_mean_cycle_us: int = 0
    bf_max_cycle_us: int = 0
    bf_backfilled_jobs: int = 0
    bf_last_depth: int = 0
    rpc_by_type: dict[str, list[int]] = field(default_factory=dict)
    rpc_by_user: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class ClusterState:
    """Everything the renderers read, at time ``now``.

    Attributes:
        spec: the static layout.
        now: simulated wall clock, Unix seconds.
        nodes: NodeName -> state.
        active: job_id -> pending or running job.
        finished: finished jobs in end-time order (the engine keeps at least ``finished_keep_s`` of them).
        filesystems: mountpoint -> state.
        scheduler: sdiag's figures.
        usage: (account, user) -> decayed raw usage in CPU-seconds (sshare RawUsage); user ``""`` = the
            account's own line.
        next_job_id: the id the next submission gets.

    """

    spec: ClusterSpec
    now: float
    nodes: dict[str, NodeState]
    active: dict[int, Job]
    finished: list[Job]
    filesystems: dict[str, FilesystemState]
    scheduler: SchedulerState
    usage: dict[tuple[str, str], float] = field(default_factory=dict)
    next_job_id: int = 1000

    def finished_between(self, start: float, end: float) -> list[Job]:
        """Finished jobs whose end time lies in ``[start, end]`` (sacct ``-S``/``-E`` with terminal states)."""
        return [j for j in self.finished if j.end_time is not None and start <= j.end_time <= end]
