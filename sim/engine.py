"""The time-stepped simulation of a SLURM cluster: one :class:`Simulation` owns one :class:`ClusterState`.

Determinism: the state at time ``t`` depends only on ``(spec, workload, seed, start, warmup_s, t)``, never on how
:meth:`Simulation.advance` calls were spaced. To get there:

* every random draw comes from ``numpy.random.default_rng([seed, block])`` for one-hour blocks of simulated time
  counted from ``start - warmup_s`` (arrivals, surges, node failures, admin drains, Xid errors and every
  parameter of the jobs they submit are drawn when a block is generated, whatever the caller's step);
* discrete events (submissions, job ends, cancellations, node crashes/returns) run in ``(time, class, key)``
  order with integer keys derived from job ids and block indices, and scheduling passes run on a fixed 30 s grid
  from ``start`` (sched/backfill intervals in the spirit of slurm.conf(5) ``sched_interval``/``bf_interval``);
* usage is closed-form: a job's CPU time, memory, I/O and GPU figures are functions of its parameters and its
  elapsed time; a node's kernel counters integrate piecewise-constant rates whose segments only change at
  events, so ``base + rate * (t - segment_start)`` is the same expression however ``t`` was reached;
* fairshare usage decays with PriorityDecayHalfLife (slurm.conf(5), default ``7-0`` = 7 days), also in closed
  form: ``U(t) = U(t0) 2^-(t-t0)/H + r H/ln 2 (1 - 2^-(t-t0)/H)`` for a constant allocation rate ``r``.

Scheduling is a multifactor-like priority (age, fairshare, job size, partition tier; integer weights as sprio
shows them) with first-fit placement over numpy arrays of free CPUs/memory/GPUs, at most 200 pending jobs a pass
(``default_queue_depth``) and a simple backfill: the first job of a partition that cannot start gets Reason
``Resources`` and a reservation on the nodes expected to free first; lower-priority jobs may use reserved nodes
only if their time limit ends before the reservation (``bf_backfilled_jobs`` counts jobs started behind a blocked
one).

Conventions the renderers can rely on (free-form fields of :mod:`nomade.sim.state`): ``NodeState.gpu_util`` is in
percent (0-100, as nvidia-smi prints it) and ``Job.gpu_util`` a fraction in [0, 1]; ``NodeState.psi_avg`` is a
percentage; ``NodeState.reason_user`` is ``slurm`` for "Not responding" and ``root`` for admin reasons; pending
jobs cancelled before starting have ``start_time is None`` and no steps; running jobs have ``reason == "None"``;
pids are unique cluster-wide among running jobs (``100000 + (job_id % 400000) * 10 + k``, k < 10).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from nomade.sim.model import DAY, HOUR, JobKind, WorkloadModel
from nomade.sim.state import (
    USER_HZ,
    ClusterSpec,
    ClusterState,
    FilesystemState,
    Job,
    JobStep,
    NodeState,
    SchedulerState,
)

BLOCK_S = 3600.0
"""Length of one random-number block (each block has its own ``default_rng([seed, block])``)."""
PASS_S = 30.0
"""Scheduling pass interval (slurm.conf(5) ``bf_interval`` default 30 s)."""
QUEUE_DEPTH = 200
"""Pending jobs examined per pass (``SchedulerParameters=default_queue_depth``, default 100; sites raise it)."""
BACKLOG_H = 16.0
"""Hours of arrivals already queued at the warm-up's origin (see :meth:`Simulation._gen_backlog`)."""
FINISHED_KEEP_S = 50 * HOUR
"""How long finished jobs stay in :attr:`ClusterState.finished` (at least the 48 h the renderers need)."""
MIB = 1 << 20
GIB = 1 << 30
PRIORITY_MAX_AGE_S = 7 * DAY
"""PriorityMaxAge (slurm.conf(5) default ``7-0``): the age factor saturates at 1 after that."""
W_AGE, W_FAIRSHARE, W_SIZE, W_PARTITION = 1000, 10000, 1000, 1000
"""PriorityWeight{Age,FairShare,JobSize,Partition} of the simulated slurm.conf."""
SURGE_BROKEN_P = {"array_scan": 0.4, "param_sweep": 0.15, "bootstrap": 0.1}
"""Probability that a surge array is broken (most of its tasks fail fast), by job name: the demo's own choice."""

# Event classes, in the order events at the same instant run: ends free resources before a crash, a crash before
# submissions, and the scheduling pass sees all of them.
_EV_END, _EV_NODE, _EV_CANCEL, _EV_SUBMIT, _EV_PHASE = 0, 1, 2, 3, 4

VMSTAT_KEYS = ("pgfault", "pgmajfault", "pswpin", "pswpout", "pgpgin", "pgpgout", "oom_kill")
PSI_KEYS = (("cpu", "some"), ("cpu", "full"), ("memory", "some"), ("memory", "full"), ("io", "some"), ("io", "full"))
DISK_KEYS = ("reads", "reads_merged", "sectors_read", "read_ms", "writes", "writes_merged", "sectors_written",
             "write_ms", "in_progress", "io_ms", "weighted_ms")  # fmt: skip
NFS_OPS = ("READ", "WRITE", "GETATTR", "LOOKUP", "ACCESS", "OPEN", "CLOSE", "COMMIT")
"""NFS ops kept per mount (``/proc/self/mountstats`` per-op statistics, nfs(5)/nfsstat(8) op names)."""


@dataclass(slots=True)
class _Params:
    """Hidden per-job parameters (drawn at generation; never rendered)."""

    kind: str
    runtime: float  # seconds from start to the planned end
    outcome: str  # terminal state at the planned end
    exit_code: int
    signal: int
    eff: float  # CPU efficiency of the allocated cores
    eff_late: float  # efficiency after t_stuck (stuck jobs)
    t_stuck: float  # seconds after start; inf = never
    sys_frac: float
    mem0: float  # bytes per node at start (flat jobs: the plateau)
    growth: float  # bytes/s per node (oom_growth), else 0
    limit_b: float  # --mem in bytes
    read_bps: float  # at the workdir
    write_bps: float
    tmp_bps: float  # local /tmp writes
    iowait: float  # fraction of the job's cores waiting on I/O
    meta_ops: float  # NFS metadata ops/s
    gpu_util: float  # [0, 1]
    gpu_mem_mib: float
    cancel_after: float  # seconds after submission; inf = never
    accept_u: float  # thinning draw
    dep: bool
    cpn: int  # cpus per node
    gpn: int  # gpus per node


@dataclass(slots=True)
class _NodeCounters:
    """Piecewise-linear kernel counters of an instrumented node: value(t) = base + rate * (t - t0)."""

    t0: float
    base: np.ndarray  # scalar counters (layout _COUNTER_NAMES)
    rate: np.ndarray
    ticks: np.ndarray  # (cpus, 10) float
    tick_rate: np.ndarray


def _counter_names(nfs_mounts: tuple[str, ...]) -> list[tuple]:
    names: list[tuple] = [("stat", "ctxt"), ("stat", "forks"), ("stat", "intr")]
    names += [("vmstat", k) for k in VMSTAT_KEYS]
    names += [("psi", k) for k in PSI_KEYS]
    names += [("disk", k) for k in DISK_KEYS]
    for m in nfs_mounts:
        for op in NFS_OPS:
            names += [("nfs", m, op, f) for f in range(8)]
        names += [("nfs", m, "bytes", f) for f in range(8)]
    return names


class Simulation:
    """A seeded, time-stepped simulation of a SLURM cluster and its workload.

    Args:
        spec: the cluster layout (:func:`nomade.sim.model.default_cluster`).
        workload: the generative model (:func:`nomade.sim.model.default_workload`).
        seed: the seed of every random draw.
        start: Unix seconds where the simulated history begins; the engine pre-runs ``warmup_s`` before it so the
            cluster is busy at ``start``; ``state.now == start`` afterwards.
        warmup_s: warm-up length in seconds (>= 0).

    Attributes:
        state: the :class:`ClusterState` (mutated in place by :meth:`advance`).

    Raises:
        ValueError: ``warmup_s`` is negative.

    """

    def __init__(self, spec: ClusterSpec, workload: WorkloadModel, seed: int, start: float,
                 warmup_s: float = 6 * 3600) -> None:  # fmt: skip
        if warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
        self.spec, self.workload, self.seed, self.start = spec, workload, int(seed), float(start)
        self._origin = self.start - warmup_s
        self._next_tick = self.start - math.floor(warmup_s / PASS_S) * PASS_S
        self._blocks = 0
        self._heap: list[tuple] = []
        n = len(spec.nodes)
        self._names = [s.name for s in spec.nodes]
        self._nidx = {s.name: i for i, s in enumerate(spec.nodes)}
        self._ncpus = np.array([s.cpus for s in spec.nodes], dtype=np.int64)
        self._nmem = np.array([s.real_memory_mib for s in spec.nodes], dtype=np.int64)
        self._ngpus = np.array([s.gpus for s in spec.nodes], dtype=np.int64)
        self._free_cpus = self._ncpus.copy()
        self._free_mem = self._nmem.copy()
        self._free_gpus = self._ngpus.copy()
        self._avail = np.ones(n, dtype=bool)
        self._free_at = np.zeros(n)
        self._res = np.full(n, np.inf)
        self._load = np.zeros(n)
        self._memuse = np.zeros(n)  # MiB used by jobs (plateau estimate) for FreeMem
        self._core_free = [np.ones(s.cpus, dtype=bool) for s in spec.nodes]
        self._gpu_free = [np.ones(s.gpus, dtype=bool) for s in spec.nodes]
        self._node_jobs: list[list[int]] = [[] for _ in range(n)]
        self._node_epoch = [0] * n
        self._node_phase = ["up"] * n  # up, down, crash_drain, admin_drain
        self._parts = {p.name: p for p in spec.partitions}
        self._pidx = {p.name: np.array([self._nidx[x] for x in p.nodes], dtype=np.int64) for p in spec.partitions}
        self._pmin_cpus = {p: int(self._ncpus[ix].min()) for p, ix in self._pidx.items()}
        self._pmax_cpus = {p: int(self._ncpus[ix].max()) for p, ix in self._pidx.items()}
        max_tier = max(p.priority_tier for p in spec.partitions)
        self._ptier = {p.name: p.priority_tier / max_tier for p in spec.partitions}
        self._total_cpus = int(self._ncpus.sum())
        self._acct_of = {u: a.name for a in spec.accounts for u in a.users}
        self._users = [u for a in spec.accounts for u in a.users]
        self._uidx = {u: i for i, u in enumerate(self._users)}
        tot_shares = sum(a.shares for a in spec.accounts)
        self._ushare = np.array([a.shares / tot_shares / len(a.users) for a in spec.accounts for _ in a.users])
        self._half_life = float(workload.decay_half_life_s)
        init_rng = np.random.default_rng([self.seed, 1 << 30])
        self._fs_u = self._ushare * init_rng.uniform(0.2, 1.8, len(self._users)) * self._total_cpus * 0.8 * DAY * 3
        self._fs_t = np.full(len(self._users), self._origin)
        self._fs_r = np.zeros(len(self._users))
        self._params: dict[int, _Params] = {}
        self._pending: dict[int, Job] = {}
        self._running: dict[int, Job] = {}
        self._deps: dict[int, int] = {}
        self._array_limit: dict[int, int] = {}
        self._array_running: dict[int, int] = {}
        self._user_running: dict[str, int] = {}
        self._last_job_of: dict[str, int] = {}
        self._n_pending_plain = 0
        self._written = {fs.mountpoint: 0.0 for fs in spec.filesystems}
        self._written_acct: dict[str, float] = {a.name: 0.0 for a in spec.accounts}
        self._rpc_ev: dict[str, list[int]] = {}
        self._rpc_user_ev: dict[str, list[int]] = {}
        self._kinds = {k.name: k for k in workload.kinds}
        self._nfs_mounts = tuple(fs.mountpoint for fs in spec.filesystems if fs.fstype.startswith("nfs"))
        self._cnames = _counter_names(self._nfs_mounts)
        self._cidx = {k: i for i, k in enumerate(self._cnames)}
        self._instr = {self._nidx[x] for x in spec.instrumented}
        self._counters: dict[int, _NodeCounters] = {}
        self._scratch_coef = self._scratch_quadratic()
        midnight = float(math.floor(self._origin / DAY) * DAY)
        self._next_midnight = midnight + DAY
        nodes = {}
        for i, s in enumerate(spec.nodes):
            ns = NodeState(name=s.name, boot_time=self._origin - DAY * (3 + (i * 7) % 20) - 137.0 * (i % 11))
            ns.free_mem_mib = s.real_memory_mib - 2048
            nodes[s.name] = ns
        sched = SchedulerState(server_start=self._origin - 3 * DAY, stats_reset=midnight)
        self.state = ClusterState(spec=spec, now=self._origin, nodes=nodes, active={}, finished=[],
                                  filesystems={}, scheduler=sched)  # fmt: skip
        for i in sorted(self._instr):
            ns = nodes[self._names[i]]
            ns.swap_total_bytes = 8 * GIB
            self._counters[i] = _NodeCounters(
                ns.boot_time, np.zeros(len(self._cnames)), np.zeros(len(self._cnames)),
                np.zeros((spec.nodes[i].cpus, 10)), np.zeros((spec.nodes[i].cpus, 10)),
            )  # fmt: skip
            self._set_rates(i, ns.boot_time)
        self._gen_backlog()
        self._finalize(self._origin)
        self.advance(self.start)

    # ------------------------------------------------------------------ public
    def advance(self, to: float) -> None:
        """Process everything up to ``to`` and bring every usage field and kernel counter exactly to ``to``.

        Args:
            to: Unix seconds, ``>= state.now``.

        Raises:
            ValueError: ``to`` is earlier than ``state.now``.

        """
        to = float(to)
        if to < self.state.now:
            raise ValueError(f"cannot advance backwards: {to} < now {self.state.now}")
        while self._origin + self._blocks * BLOCK_S <= to:
            self._gen_block(self._blocks)
            self._blocks += 1
        heap = self._heap
        while True:
            t_ev = heap[0][0] if heap else math.inf
            t_tick = self._next_tick
            if t_ev > to and t_tick > to:
                break
            if t_ev <= t_tick:
                ev = heapq.heappop(heap)
                self._maybe_reset(ev[0])
                self._handle(ev)
            else:
                self._maybe_reset(t_tick)
                self._pass(t_tick)
                self._next_tick = t_tick + PASS_S
        self._finalize(to)

    def planned(self, job_id: int) -> dict[str, float | str]:
        """The hidden generative parameters of a job still in the state (ground truth for tests and evaluation).

        Returns:
            ``kind``, ``outcome`` (the terminal state planned at start, before crashes or cancellations),
            ``runtime_s`` (planned seconds from start to that end), ``eff`` (CPU efficiency), ``t_stuck_s``
            (seconds after start when a stuck job's efficiency drops; ``inf`` if never), ``mem0_bytes`` and
            ``growth_bytes_per_s`` (memory per node: ``mem0 + growth * elapsed``), ``limit_bytes`` (``--mem``),
            ``write_bytes_per_s`` at the workdir, ``gpu_util`` in [0, 1], ``cancel_after_s`` (after submission).

        Raises:
            KeyError: the job is unknown or was pruned with :attr:`ClusterState.finished`.

        """
        p = self._params[job_id]
        return {
            "kind": p.kind, "outcome": p.outcome, "runtime_s": p.runtime, "eff": p.eff, "t_stuck_s": p.t_stuck,
            "mem0_bytes": p.mem0, "growth_bytes_per_s": p.growth, "limit_bytes": p.limit_b,
            "write_bytes_per_s": p.write_bps, "gpu_util": p.gpu_util, "cancel_after_s": p.cancel_after,
        }  # fmt: skip

    # ------------------------------------------------------------- generation
    def _diurnal(self, t: float) -> float:
        wl = self.workload
        hour = (t % DAY) / HOUR
        f = 1.0 + wl.diurnal_amplitude * math.cos(2 * math.pi * (hour - wl.peak_hour) / 24.0)
        weekday = (int(t // DAY) + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Saturday, Sunday
        return f * (wl.weekend_factor if weekday >= 5 else 1.0)

    def _gen_backlog(self) -> None:
        """The queue slurmctld already holds at the warm-up's origin, so the cluster is full from the first pass.

        ``BACKLOG_H`` hours of arrivals (every kind, no diurnal factor) submitted during the hours before the
        origin; they are events earlier than the origin and run before anything else.
        """
        rng = np.random.default_rng([self.seed, 1 << 31])
        for ki, kind in enumerate(self.workload.kinds):
            if kind.name in ("short_test", "cancelled"):
                continue
            n = int(rng.poisson(kind.rate_per_hour * BACKLOG_H))
            times = np.sort(self._origin - rng.random(n) * BACKLOG_H * HOUR)
            for i in range(n):
                heapq.heappush(self._heap, (float(times[i]), _EV_SUBMIT, -1, ki * 100000 + i, "job",
                                            self._draw(rng, kind)))  # fmt: skip

    def _gen_block(self, b: int) -> None:
        wl = self.workload
        rng = np.random.default_rng([self.seed, b])
        t0 = self._origin + b * BLOCK_S
        f = self._diurnal(t0 + BLOCK_S / 2)
        for ki, kind in enumerate(wl.kinds):
            n = int(rng.poisson(kind.rate_per_hour * f * BLOCK_S / HOUR))
            times = np.sort(t0 + rng.random(n) * BLOCK_S)
            for i in range(n):
                t = float(times[i])
                heapq.heappush(self._heap, (t, _EV_SUBMIT, b, ki * 100000 + i, "job", self._draw(rng, kind)))
        for i in range(int(rng.poisson(wl.surges_per_day * BLOCK_S / DAY))):
            t = float(t0 + rng.random() * BLOCK_S)
            heapq.heappush(self._heap, (t, _EV_SUBMIT, b, 10_000_000 + i, "surge", self._draw_surge(rng)))
        n_nodes = len(self.spec.nodes)
        for i in range(int(rng.poisson(wl.node_failures_per_day * BLOCK_S / DAY))):
            t = float(t0 + rng.random() * BLOCK_S)
            node = int(rng.integers(n_nodes))
            down = float(rng.uniform(*wl.down_hours)) * HOUR
            drain = float(rng.uniform(*wl.drain_hours)) * HOUR
            heapq.heappush(self._heap, (t, _EV_NODE, b, i, "crash", (node, down, drain)))
        for i in range(int(rng.poisson(wl.admin_drains_per_day * BLOCK_S / DAY))):
            t = float(t0 + rng.random() * BLOCK_S)
            node = int(rng.integers(n_nodes))
            hold = float(rng.uniform(*wl.drain_hold_hours)) * HOUR
            heapq.heappush(self._heap, (t, _EV_NODE, b, 1000 + i, "admin_drain", (node, hold)))
        if rng.random() < 0.5 * BLOCK_S / DAY:  # a rare GPU Xid error (about one every two days)
            gpu_nodes = [i for i, s in enumerate(self.spec.nodes) if s.gpus]
            instr = [i for i in gpu_nodes if i in self._instr]
            pool = instr if instr and rng.random() < 0.5 else gpu_nodes
            if pool:
                node = pool[int(rng.integers(len(pool)))]
                gpu = int(rng.integers(self.spec.nodes[node].gpus))
                xid = int(rng.choice((13, 31, 43, 63)))
                t = float(t0 + rng.random() * BLOCK_S)
                heapq.heappush(self._heap, (t, _EV_NODE, b, 2000, "xid", (node, gpu, xid)))

    def _draw(self, rng: np.random.Generator, kind: JobKind) -> tuple:
        """Every submit-time fact and hidden parameter of one job of ``kind``."""
        user = kind.users[int(rng.integers(len(kind.users)))]
        name = kind.job_names[int(rng.integers(len(kind.job_names)))]
        pw = np.array([w for _, w in kind.partitions])
        part = kind.partitions[int(rng.choice(len(pw), p=pw / pw.sum()))][0]
        sw = np.array([w for *_, w in kind.shapes])
        nodes, cpn, _ = kind.shapes[int(rng.choice(len(sw), p=sw / sw.sum()))]
        pmin = self._pmin_cpus[part]
        gpn = 0
        if part == "gpu":
            gpn = int(kind.gpus_per_node[int(rng.integers(len(kind.gpus_per_node)))]) if kind.gpus_per_node else 1
            cpn = min(pmin, max(cpn, 16 * gpn) if kind.name != "gpu_idle" else cpn)
            nodes = 1
        if part == "debug":
            nodes = 1
        cpn = min(cpn, pmin)
        node_mem = int(self._nmem[self._pidx[part]].min())
        if part == "bigmem":
            mem = int(rng.uniform(300_000, node_mem - 8000))
        elif cpn >= pmin:
            mem = node_mem - 7000
        else:
            mem = min(node_mem - 7000, int(cpn * rng.uniform(*kind.mem_per_cpu_mib)) // 1000 * 1000 + 1000)
        maxt = self._parts[part].max_time_s
        limit = int(kind.time_limits_s[int(rng.integers(len(kind.time_limits_s)))])
        if part == "long":
            limit = int(rng.choice((24 * HOUR, 36 * HOUR, 48 * HOUR)))
        limit = min(limit, maxt)
        ww = np.array([w for _, w in kind.workdirs])
        workdir = kind.workdirs[int(rng.choice(len(ww), p=ww / ww.sum()))][0]
        u = rng.random(12)
        limit_b = float(mem) * MIB
        eff = 0.5 + 0.48 * u[0]
        runtime = (0.1 + 0.8 * u[1]) * limit
        outcome, ex, sig = "COMPLETED", 0, 0
        eff_late, t_stuck, growth, iowait = eff, math.inf, 0.0, 0.0
        mem0 = limit_b * (0.2 + 0.6 * u[2])
        read_bps = 1e5 + 1e7 * u[3] ** 2
        write_bps = 1e5 + 5e6 * u[4] ** 2
        tmp_bps = 5e7 * u[5] if u[6] < 0.3 else 0.0
        meta = 1.0 + 20.0 * u[7]
        gpu_util, gpu_mem = 0.0, 0.0
        cancel_after = math.inf
        k = kind.name
        if k == "oom_growth":
            t_nat = (0.4 + 0.5 * u[1]) * limit
            mem0 = limit_b * (0.15 + 0.2 * u[2])
            r = 1.05 + 1.45 * u[8] if u[9] < 0.85 else 0.85 + 0.13 * u[8]
            growth = (r * limit_b - mem0) / t_nat
            eff = 0.6 + 0.35 * u[0]
            if r > 1.0:
                runtime, outcome, ex, sig = (limit_b - mem0) / growth, "OUT_OF_MEMORY", 0, 125
            else:
                runtime = t_nat
        elif k == "timeout":
            runtime, outcome = float(limit), "TIMEOUT"
            if u[8] < 0.4:
                t_stuck = (0.2 + 0.4 * u[9]) * limit
                eff_late = 0.03 * u[10]
        elif k == "nfs_writer":
            write_bps = 5e7 + 4.5e8 * u[3]
            read_bps = 1e6 + 2e7 * u[4]
            eff = 0.2 + 0.3 * u[0]
            iowait = 0.2 + 0.3 * u[10]
            meta = 50 + 200 * u[7]
            if u[8] < 0.35:
                runtime, outcome = float(limit), "TIMEOUT"
            elif u[8] < 0.55:
                runtime, outcome, ex = (0.2 + 0.6 * u[9]) * limit, "FAILED", 5
            else:
                runtime = (0.3 + 0.6 * u[9]) * limit
        elif k == "crash":
            runtime = (0.01 + 0.19 * u[1]) * 0.5 * limit
            outcome = "FAILED"
            ex, sig = ((1, 0), (139, 0), (0, 11))[int(u[8] * 3)]
            eff = 0.3 + 0.6 * u[0]
        elif k in ("gpu_train", "gpu_idle"):
            gpu_mem = 81920 * (0.2 + 0.75 * u[8])
            if k == "gpu_train":
                gpu_util = 0.6 + 0.39 * u[9]
                eff = 0.3 + 0.4 * u[0]
                if u[10] < 0.12:
                    runtime, outcome, ex = (0.02 + 0.28 * u[1]) * limit, "FAILED", 1
                    gpu_mem = 81920.0 * 0.99
                elif u[10] < 0.2:
                    runtime, outcome = float(limit), "TIMEOUT"
                else:
                    runtime = (0.3 + 0.65 * u[1]) * limit
            else:
                gpu_util, gpu_mem = 0.03 * u[9], 1024 + 1024 * u[8]
                eff = 0.01 + 0.04 * u[0]
                if u[10] < 0.4:
                    runtime, outcome = float(limit), "TIMEOUT"
        elif k == "cancelled":
            runtime = (0.3 + 0.6 * u[1]) * limit
            cancel_after = 60 + 1740 * u[8] if u[9] < 0.4 else 1800 + 4 * HOUR * u[8]
        elif k == "short_test":
            runtime = (0.1 + 0.7 * u[1]) * limit
            if u[8] < 0.15:
                outcome, ex = "FAILED", 1 + int(u[9] * 2)
        dep = bool(rng.random() < self.workload.dependency_fraction)
        accept_u = float(rng.random())
        p = _Params(k, float(runtime), outcome, ex, sig, float(eff), float(eff_late), float(t_stuck),
                    float(0.04 + 0.06 * u[11]), float(mem0), float(growth), limit_b, float(read_bps),
                    float(write_bps), float(tmp_bps),
                    float(iowait), float(meta), float(gpu_util), float(gpu_mem), float(cancel_after), accept_u, dep,
                    int(cpn), int(gpn))  # fmt: skip
        return (user, name, part, int(nodes), int(cpn * nodes), int(mem), int(gpn * nodes), limit, workdir, p)

    def _draw_surge(self, rng: np.random.Generator) -> tuple:
        wl = self.workload
        user = wl.surge_users[int(rng.integers(len(wl.surge_users)))]
        n = int(rng.integers(wl.surge_tasks[0], wl.surge_tasks[1] + 1))
        cpus = int(rng.choice((1, 2, 4)))
        lim = int(rng.choice(wl.surge_limit_choices))
        limit = int(rng.choice((1800, 3600)))
        name = str(rng.choice(("param_sweep", "array_scan", "bootstrap")))
        # Array failures are correlated, as at real sites: a bad input list or a broken script makes most tasks of
        # one array fail within a minute or two, while a healthy array loses a few tasks. Which array is broken is
        # drawn per array, more often for some job names (a submit-time fact a model can learn).
        broken = rng.random() < SURGE_BROKEN_P[name]
        p_fail = 0.6 if broken else 0.02
        u = rng.random((n, 4))
        tasks = []
        for i in range(n):
            failed = u[i, 2] < p_fail
            runtime = 30 + 90 * u[i, 0] if failed and broken else 300 + 1200 * u[i, 0]
            tasks.append(_Params("array", float(runtime), "FAILED" if failed else "COMPLETED",
                                 1 if failed else 0, 0, float(0.8 + 0.18 * u[i, 1]), 0.0, math.inf, 0.05,
                                 cpus * 1.0e9 * (0.3 + 0.5 * u[i, 3]), 0.0, cpus * 2000.0 * MIB, 1e6, 2e6, 0.0, 0.0,
                                 2.0, 0.0, 0.0, math.inf, 0.0, False, cpus, 0))  # fmt: skip
        return (user, name, cpus, limit, lim, tasks)

    # ----------------------------------------------------------------- events
    def _handle(self, ev: tuple) -> None:
        t, _, _, _, what, data = ev
        if what == "end":
            job = self._running.get(data)
            if job is not None:
                p = self._params[data]
                self._end_job(job, t, p.outcome, p.exit_code, p.signal)
        elif what == "job":
            self._submit(t, data)
        elif what == "surge":
            self._submit_surge(t, data)
        elif what == "cancel":
            if data in self._pending:
                self._cancel_pending(self._pending[data], t)
            elif data in self._running:
                self._end_job(self._running[data], t, "CANCELLED", 0, 15)
        elif what == "phase":
            job = self._running.get(data)
            if job is not None:
                self._rate_change(job, t)
        elif what == "crash":
            self._crash(t, *data)
        elif what == "admin_drain":
            self._admin_drain(t, *data)
        elif what in ("return", "undrain", "admin_resume"):
            node, epoch = data[0], data[1]
            if self._node_epoch[node] == epoch:
                getattr(self, "_" + what)(t, node, *data[2:])
        elif what == "xid":
            node, gpu, xid = data
            ns = self.state.nodes[self._names[node]]
            if node in self._instr and len(ns.gpu_xid) > gpu:
                ns.gpu_xid[gpu] = xid

    def _rpc(self, kind: str, user: str, n: int, us_each: int) -> None:
        c = self._rpc_ev.setdefault(kind, [0, 0])
        c[0] += n
        c[1] += n * us_each
        c = self._rpc_user_ev.setdefault(user, [0, 0])
        c[0] += n
        c[1] += n * us_each

    def _new_job(self, t: float, user: str, name: str, part: str, nodes: int, cpus: int, mem: int, gpus: int,
                 limit: int, workdir: str, p: _Params) -> Job:  # fmt: skip
        jid = self.state.next_job_id
        self.state.next_job_id += 1
        job = Job(job_id=jid, name=name, user=user, account=self._acct_of[user], partition=part, submit_time=t,
                  time_limit_s=limit, req_nodes=nodes, req_cpus=cpus, req_mem_mib=mem, req_gpus=gpus,
                  eligible_time=t, workdir=workdir, kind=p.kind)  # fmt: skip
        self._params[jid] = p
        self.state.active[jid] = job
        self._pending[jid] = job
        self.state.scheduler.jobs_submitted += 1
        if p.cancel_after != math.inf:
            heapq.heappush(self._heap, (t + p.cancel_after, _EV_CANCEL, jid, 2, "cancel", jid))
        return job

    def _submit(self, t: float, data: tuple) -> None:
        user, name, part, nodes, cpus, mem, gpus, limit, workdir, p = data
        wl = self.workload
        q = self._n_pending_plain
        if q > wl.queue_soft_limit:
            frac = min(1.0, (q - wl.queue_soft_limit) / (wl.queue_hard_limit - wl.queue_soft_limit))
            if p.accept_u > 1.0 - (1.0 - wl.min_accept) * frac:
                return  # the user sees a long queue and holds the job back
        job = self._new_job(t, user, name, part, nodes, cpus, mem, gpus, limit, workdir, p)
        self._n_pending_plain += 1
        self._rpc("REQUEST_SUBMIT_BATCH_JOB", user, 1, 900 + 3 * len(self._pending))
        if p.dep:
            parent = self._last_job_of.get(user)
            if parent is not None and parent in self.state.active:
                self._deps[job.job_id] = parent
                job.eligible_time = None
                job.reason = "Dependency"
        self._last_job_of[user] = job.job_id

    def _submit_surge(self, t: float, data: tuple) -> None:
        user, name, cpus, limit, lim, tasks = data
        first = self.state.next_job_id
        for i, p in enumerate(tasks):
            job = self._new_job(t, user, name, "cpu", 1, cpus, cpus * 2000, 0, limit, "/scratch", p)
            job.array_job_id, job.array_task_id = first, i
        if lim:
            self._array_limit[first] = lim
        # one sbatch --array, plus the submitting user's watch loop hammering squeue while it drains
        self._rpc("REQUEST_SUBMIT_BATCH_JOB", user, 1, 4000 + 20 * len(tasks))
        self._rpc("REQUEST_JOB_INFO", user, 2 * len(tasks), 2500 + 5 * len(self._pending))

    def _cancel_pending(self, job: Job, t: float) -> None:
        del self._pending[job.job_id]
        if job.array_job_id is None:
            self._n_pending_plain -= 1
        job.state, job.reason, job.end_time, job.exit_code, job.signal = "CANCELLED", "None", t, 0, 0
        del self.state.active[job.job_id]
        self._deps.pop(job.job_id, None)
        self.state.finished.append(job)
        self.state.scheduler.jobs_canceled += 1
        self._rpc("REQUEST_CANCEL_JOB_STEP", job.user, 1, 700)

    def _maybe_reset(self, t: float) -> None:
        """Reset the sdiag statistics at midnight (UTC here), like slurmctld's daily reset."""
        if t < self._next_midnight:
            return
        s = self.state.scheduler
        while self._next_midnight <= t:
            s.stats_reset = self._next_midnight
            self._next_midnight += DAY
        s.jobs_submitted = s.jobs_started = s.jobs_completed = s.jobs_canceled = s.jobs_failed = 0
        s.cycles = s.last_cycle_us = s.mean_cycle_us = s.max_cycle_us = s.last_depth = 0
        s.bf_cycles = s.bf_last_cycle_us = s.bf_mean_cycle_us = s.bf_max_cycle_us = 0
        s.bf_backfilled_jobs = s.bf_last_depth = 0

    # ------------------------------------------------------------- scheduling
    def _fs_usage_at(self, t: float) -> np.ndarray:
        d = np.exp2(-(t - self._fs_t) / self._half_life)
        return self._fs_u * d + self._fs_r * self._half_life / math.log(2) * (1.0 - d)

    def _fs_commit(self, ui: int, t: float, delta_rate: float) -> None:
        d = 2.0 ** (-(t - self._fs_t[ui]) / self._half_life)
        self._fs_u[ui] = self._fs_u[ui] * d + self._fs_r[ui] * self._half_life / math.log(2) * (1.0 - d)
        self._fs_t[ui] = t
        self._fs_r[ui] += delta_rate

    def _pass(self, t: float) -> None:
        s = self.state.scheduler
        s.cycles += 1
        s.bf_cycles += 1
        pend = self._pending
        if not pend:
            s.last_cycle_us, s.last_depth, s.bf_last_cycle_us, s.bf_last_depth = 150, 0, 300, 0
            self._cycle_stats()
            return
        usage = self._fs_usage_at(t)
        tot = float(usage.sum()) or 1.0
        fsf = np.exp2(-(usage / tot) / self._ushare)  # classic fairshare 2^(-U/S)
        uidx, ptier, total = self._uidx, self._ptier, self._total_cpus
        order = []
        for jid, job in pend.items():
            et = job.eligible_time
            age = min(max(t - et, 0.0) / PRIORITY_MAX_AGE_S, 1.0) if et is not None else 0.0
            prio = int(W_AGE * age + W_FAIRSHARE * fsf[uidx[job.user]] + W_SIZE * job.req_cpus / total
                       + W_PARTITION * ptier[job.partition])  # fmt: skip
            job.priority = prio
            order.append((-prio, jid))
        order.sort()
        self._res.fill(np.inf)
        blocked: set[str] = set()
        rejected: set[tuple] = set()
        pmax: dict[str, int] = {}
        examined = started = 0
        maxrun = self.workload.max_running_per_user
        for _, jid in order[:QUEUE_DEPTH]:
            job = pend[jid]
            examined += 1
            parent = self._deps.get(jid)
            if parent is not None:
                if parent in self.state.active:
                    job.reason = "Dependency"
                    continue
                del self._deps[jid]
                job.eligible_time = t
            aj = job.array_job_id
            if aj is not None and aj in self._array_limit and self._array_running.get(aj, 0) >= self._array_limit[aj]:
                job.reason = "JobArrayTaskLimit"
                continue
            if self._user_running.get(job.user, 0) >= maxrun:
                job.reason = "QOSMaxJobsPerUserLimit"
                continue
            part = job.partition
            p = self._params[jid]
            nodes = self._place(job, p, t, pmax, rejected)
            if nodes is not None:
                self._start_job(job, p, t, nodes)
                started += 1
                if part in blocked:
                    s.bf_backfilled_jobs += 1
                pmax.clear()
            elif part not in blocked:
                blocked.add(part)
                job.reason = "Resources"
                self._reserve(job, p, t)
            else:
                job.reason = "Priority"
        s.last_depth = s.bf_last_depth = examined
        s.last_cycle_us = 120 + 18 * examined + 2 * len(pend) + 60 * started
        s.bf_last_cycle_us = 400 + 45 * examined + 4 * len(pend) + 150 * len(blocked)
        self._cycle_stats()

    def _cycle_stats(self) -> None:
        s = self.state.scheduler
        s.max_cycle_us = max(s.max_cycle_us, s.last_cycle_us)
        s.mean_cycle_us = (s.mean_cycle_us * (s.cycles - 1) + s.last_cycle_us) // s.cycles
        s.bf_max_cycle_us = max(s.bf_max_cycle_us, s.bf_last_cycle_us)
        s.bf_mean_cycle_us = (s.bf_mean_cycle_us * (s.bf_cycles - 1) + s.bf_last_cycle_us) // s.bf_cycles

    def _place(self, job: Job, p: _Params, t: float, pmax: dict[str, int], rejected: set) -> np.ndarray | None:
        part = job.partition
        pi = self._pidx[part]
        if part not in pmax:
            ok = self._avail[pi]
            pmax[part] = int(self._free_cpus[pi][ok].max()) if ok.any() else 0
        if p.cpn > pmax[part]:
            return None
        key = (part, job.req_nodes, p.cpn, job.req_mem_mib, p.gpn, job.time_limit_s)
        if key in rejected:
            return None
        ok = (self._avail[pi] & (self._free_cpus[pi] >= p.cpn) & (self._free_mem[pi] >= job.req_mem_mib)
              & (self._free_gpus[pi] >= p.gpn) & (t + job.time_limit_s <= self._res[pi]))  # fmt: skip
        cand = pi[ok]
        if len(cand) < job.req_nodes:
            rejected.add(key)
            return None
        return cand[: job.req_nodes]

    def _reserve(self, job: Job, p: _Params, t: float) -> None:
        pi = self._pidx[job.partition]
        cap = (self._avail[pi] & (self._ncpus[pi] >= p.cpn) & (self._nmem[pi] >= job.req_mem_mib)
               & (self._ngpus[pi] >= p.gpn))  # fmt: skip
        idx = pi[cap]
        if len(idx) < job.req_nodes:
            return
        free_at = np.maximum(self._free_at[idx], t)
        pick = np.argsort(free_at, kind="stable")[: job.req_nodes]
        shadow = float(free_at[pick].max())
        nodes = idx[pick]
        self._res[nodes] = np.minimum(self._res[nodes], shadow)

    # -------------------------------------------------------------- job life
    def _start_job(self, job: Job, p: _Params, t: float, nodes: np.ndarray) -> None:
        jid = job.job_id
        del self._pending[jid]
        if job.array_job_id is None:
            self._n_pending_plain -= 1
        else:
            self._array_running[job.array_job_id] = self._array_running.get(job.array_job_id, 0) + 1
        self._running[jid] = job
        job.state, job.reason, job.start_time = "RUNNING", "None", t
        names = []
        base_pid = 100_000 + (jid % 400_000) * 10
        load = p.cpn * (p.eff + 0.5 * p.iowait)
        mem_mib = min(p.mem0 / MIB, job.req_mem_mib)
        for k, i in enumerate(nodes.tolist()):
            name = self._names[i]
            names.append(name)
            cores = np.flatnonzero(self._core_free[i])[: p.cpn]
            self._core_free[i][cores] = False
            job.cores[name] = tuple(cores.tolist())
            if p.gpn:
                g = np.flatnonzero(self._gpu_free[i])[: p.gpn]
                self._gpu_free[i][g] = False
                job.gpus[name] = tuple(g.tolist())
            self._free_cpus[i] -= p.cpn
            self._free_mem[i] -= job.req_mem_mib
            self._free_gpus[i] -= p.gpn
            self._load[i] += load
            self._memuse[i] += mem_mib
            self._node_jobs[i].append(jid)
            self._free_at[i] = max(self._free_at[i], t + job.time_limit_s)
            if k == 0:
                job.pids[name] = tuple(base_pid + j for j in range(2 + jid % 2))
            else:
                job.pids[name] = (base_pid + 2 + k,)
            self._sync_node(i, t)
            if i in self._instr:
                self._set_rates(i, t)
        job.nodes = tuple(names)
        self._user_running[job.user] = self._user_running.get(job.user, 0) + 1
        self._fs_commit(self._uidx[job.user], t, float(job.req_cpus))
        self.state.scheduler.jobs_started += 1
        heapq.heappush(self._heap, (t + p.runtime, _EV_END, jid, 0, "end", jid))
        if p.t_stuck < p.runtime:
            heapq.heappush(self._heap, (t + p.t_stuck, _EV_PHASE, jid, 1, "phase", jid))

    def _rate_change(self, job: Job, t: float) -> None:
        p = self._params[job.job_id]
        for name in job.nodes:
            i = self._nidx[name]
            self._load[i] += p.cpn * (p.eff_late - p.eff)
            if i in self._instr:
                self._set_rates(i, t)

    def _end_job(self, job: Job, t: float, state: str, exit_code: int, signal: int) -> None:
        jid = job.job_id
        p = self._params[jid]
        self._usage(job, p, t)
        if state == "OUT_OF_MEMORY":
            first = job.nodes[0]
            job.mem_peak_bytes[first] = int(p.limit_b)
            job.mem_bytes[first] = int(p.limit_b)
            job.oom_kills = 1
        job.state, job.exit_code, job.signal, job.end_time, job.reason = state, exit_code, signal, t, "None"
        job.steps = self._steps(job, p, state, exit_code, signal)
        del self._running[jid]
        del self.state.active[jid]
        load = p.cpn * ((p.eff_late if t - job.start_time >= p.t_stuck - 1e-6 else p.eff) + 0.5 * p.iowait)
        mem_mib = min(p.mem0 / MIB, job.req_mem_mib)
        for name in job.nodes:
            i = self._nidx[name]
            self._core_free[i][list(job.cores[name])] = True
            if name in job.gpus:
                self._gpu_free[i][list(job.gpus[name])] = True
            self._free_cpus[i] += p.cpn
            self._free_mem[i] += job.req_mem_mib
            self._free_gpus[i] += p.gpn
            self._load[i] = max(0.0, self._load[i] - load)
            self._memuse[i] = max(0.0, self._memuse[i] - mem_mib)
            jobs = self._node_jobs[i]
            jobs.remove(jid)
            self._free_at[i] = max((self._running[j].start_time + self._running[j].time_limit_s for j in jobs),
                                   default=0.0)  # fmt: skip
            if not jobs:
                self._load[i] = 0.0
                self._memuse[i] = 0.0
                self.state.nodes[name].last_busy = t
            if i in self._instr and self._node_phase[i] != "down":
                c = self._counters[i]
                self._set_rates(i, t, skip=jid)
                if state == "OUT_OF_MEMORY" and name == job.nodes[0]:
                    c.base[self._cidx[("vmstat", "oom_kill")]] += 1
            self._sync_node(i, t)
        if job.array_job_id is not None:
            self._array_running[job.array_job_id] -= 1
        self._user_running[job.user] -= 1
        self._fs_commit(self._uidx[job.user], t, -float(job.req_cpus))
        for m, v in job.write_bytes.items():
            self._written[m] += v
        if job.workdir == "/project":
            self._written_acct[job.account] += job.write_bytes.get("/project", 0)
        s = self.state.scheduler
        if state == "COMPLETED":
            s.jobs_completed += 1
        elif state == "CANCELLED":
            s.jobs_canceled += 1
        else:
            s.jobs_failed += 1
        self._rpc("REQUEST_COMPLETE_BATCH_SCRIPT", "root", 1, 450)
        self.state.finished.append(job)

    def _steps(self, job: Job, p: _Params, state: str, ex: int, sig: int) -> list[JobStep]:
        peak = job.max_rss_bytes
        cpu = job.cpu_user_s + job.cpu_system_s
        multi = job.req_nodes > 1
        extern = JobStep("extern", "CANCELLED" if state == "NODE_FAIL" else "COMPLETED", 0, 0, 1 << 20, 0.01)
        if state == "COMPLETED":
            bst, bex, bsig = "COMPLETED", 0, 0
        elif state == "OUT_OF_MEMORY":
            bst, bex, bsig = "OUT_OF_MEMORY", 0, 125
        elif state == "FAILED":
            bst, bex, bsig = "FAILED", ex, sig
        else:  # TIMEOUT, CANCELLED, NODE_FAIL: slurmstepd kills the batch script
            bst, bex, bsig = "CANCELLED", 0, 15 if state != "NODE_FAIL" else 9
        first = job.mem_peak_bytes.get(job.nodes[0], 0)
        if not multi:
            return [JobStep("batch", bst, bex, bsig, first, cpu), extern]
        return [JobStep("batch", bst if state != "FAILED" else "FAILED", bex, bsig, 64 << 20, cpu * 0.001), extern,
                JobStep("0", bst, bex, bsig, peak, cpu * 0.999)]  # fmt: skip

    def _crash(self, t: float, node: int, down: float, drain: float) -> None:
        if self._node_phase[node] in ("down", "crash_drain"):
            return
        name = self._names[node]
        for jid in list(self._node_jobs[node]):
            self._end_job(self._running[jid], t, "NODE_FAIL", 0, 0)
        if node in self._instr:
            self._set_rates(node, t, dead=True)
        self._node_epoch[node] += 1
        self._node_phase[node] = "down"
        self._avail[node] = False
        ns = self.state.nodes[name]
        ns.flags = {"NOT_RESPONDING"}
        ns.reason, ns.reason_time, ns.reason_user = "Not responding", t, "slurm"
        self._sync_node(node, t)
        heapq.heappush(self._heap, (t + down, _EV_NODE, 10**9 + node, self._node_epoch[node], "return",
                                    (node, self._node_epoch[node], drain)))  # fmt: skip

    def _reboot(self, node: int, t: float) -> None:
        ns = self.state.nodes[self._names[node]]
        ns.boot_time = t
        if node in self._instr:
            c = self._counters[node]
            c.base[:] = 0.0
            c.ticks[:] = 0.0
            c.t0 = t
            ns.gpu_xid = np.zeros(self.spec.nodes[node].gpus, dtype=np.int64)
            self._set_rates(node, t)
        self._rpc("MESSAGE_NODE_REGISTRATION_STATUS", "root", 1, 350)

    def _return(self, t: float, node: int, drain: float) -> None:
        self._node_epoch[node] += 1
        self._node_phase[node] = "crash_drain"
        ns = self.state.nodes[self._names[node]]
        ns.flags = {"DRAIN"}
        ns.reason, ns.reason_time, ns.reason_user = "hardware check after crash", t, "root"
        self._reboot(node, t)
        self._sync_node(node, t)
        heapq.heappush(self._heap, (t + drain, _EV_NODE, 10**9 + node, self._node_epoch[node], "undrain",
                                    (node, self._node_epoch[node])))  # fmt: skip

    def _undrain(self, t: float, node: int) -> None:
        self._node_epoch[node] += 1
        self._node_phase[node] = "up"
        self._avail[node] = True
        ns = self.state.nodes[self._names[node]]
        ns.flags = set()
        ns.reason = ns.reason_time = ns.reason_user = None
        self._sync_node(node, t)

    def _admin_drain(self, t: float, node: int, hold: float) -> None:
        if self._node_phase[node] != "up":
            return
        self._node_epoch[node] += 1
        self._node_phase[node] = "admin_drain"
        self._avail[node] = False
        ns = self.state.nodes[self._names[node]]
        ns.flags = {"DRAIN"}
        ns.reason, ns.reason_time, ns.reason_user = "kernel update", t, "root"
        heapq.heappush(self._heap, (t + hold, _EV_NODE, 10**9 + node, self._node_epoch[node], "admin_resume",
                                    (node, self._node_epoch[node])))  # fmt: skip

    def _admin_resume(self, t: float, node: int) -> None:
        if not self._node_jobs[node]:
            self._reboot(node, t)  # drained empty: the new kernel boots
        self._undrain(t, node)

    def _sync_node(self, i: int, t: float) -> None:
        ns = self.state.nodes[self._names[i]]
        spec_cpus = int(self._ncpus[i])
        ns.alloc_cpus = spec_cpus - int(self._free_cpus[i])
        ns.alloc_mem_mib = int(self._nmem[i] - self._free_mem[i])
        ns.alloc_gpus = int(self._ngpus[i] - self._free_gpus[i])
        if self._node_phase[i] == "down":
            ns.state = "down"
        elif ns.alloc_cpus == 0:
            ns.state = "idle"
        elif ns.alloc_cpus >= spec_cpus:
            ns.state = "allocated"
        else:
            ns.state = "mixed"

    # ------------------------------------------------------- closed-form usage
    def _usage(self, job: Job, p: _Params, t: float) -> None:
        e = max(t - job.start_time, 0.0)
        busy = p.eff * min(e, p.t_stuck) + p.eff_late * max(0.0, e - p.t_stuck)
        cpu = job.req_cpus * busy
        job.cpu_user_s = float(cpu * (1.0 - p.sys_frac))
        job.cpu_system_s = float(cpu * p.sys_frac)
        if p.growth:
            m = min(p.mem0 + p.growth * e, p.limit_b)
            swap = int(max(0.0, m - 0.9 * p.limit_b) * 0.25)
        else:
            m = p.mem0 * min(1.0, 0.5 + e / 1200.0)
            swap = 0
        for k, name in enumerate(job.nodes):
            v = int(m * (1.0 - 0.03 * k))
            job.mem_bytes[name] = v
            job.mem_peak_bytes[name] = v
            job.swap_bytes[name] = swap if k == 0 else 0
        n = job.req_nodes
        job.read_bytes = {job.workdir: int(p.read_bps * n * e)}
        job.write_bytes = {job.workdir: int(p.write_bps * n * e)}
        if p.tmp_bps:
            job.write_bytes["/tmp"] = int(p.tmp_bps * n * e)
            job.read_bytes["/tmp"] = int(0.3 * p.tmp_bps * n * e)
        job.gpu_util = p.gpu_util

    # ---------------------------------------------------------- node counters
    def _set_rates(self, i: int, t: float, skip: int | None = None, dead: bool = False) -> None:
        """Commit the node's counters to ``t`` and recompute its rates from the jobs now on it."""
        c = self._counters[i]
        dt = t - c.t0
        c.base += c.rate * dt
        c.ticks += c.tick_rate * dt
        c.t0 = t
        c.rate[:] = 0.0
        c.tick_rate[:] = 0.0
        if dead:
            return
        ix = self._cidx
        r = c.rate
        tr = c.tick_rate
        # idle cores: a little housekeeping
        tr[:, 0] = 0.002 * USER_HZ
        tr[:, 2] = 0.003 * USER_HZ
        tr[:, 6] = 0.0005 * USER_HZ
        tr[:, 3] = (1.0 - 0.0055) * USER_HZ
        busy_cores = 0.0
        n_io = 0
        oom_jobs = 0
        tmp = 0.0
        meta_home = 0.2
        name = self._names[i]
        for jid in self._node_jobs[i]:
            if jid == skip:
                continue
            job = self._running[jid]
            p = self._params[jid]
            e_now = t - job.start_time
            eff = p.eff_late if e_now >= p.t_stuck - 1e-6 else p.eff
            cores = list(job.cores[name])
            user = eff * (1.0 - p.sys_frac)
            system = eff * p.sys_frac
            iow = min(p.iowait, 1.0 - eff - 0.01)
            tr[cores, 0] = user * USER_HZ
            tr[cores, 2] = system * USER_HZ
            tr[cores, 4] = max(iow, 0.0) * USER_HZ
            tr[cores, 6] = 0.003 * USER_HZ
            tr[cores, 3] = max(0.0, 1.0 - user - system - max(iow, 0.0) - 0.003) * USER_HZ
            busy_cores += eff * len(cores)
            n_io += p.iowait > 0
            oom_jobs += p.growth > 0
            tmp += p.tmp_bps
            meta_home += 2.0
            if job.workdir in self._nfs_mounts:
                self._nfs_rates(r, job.workdir, p)
        r[ix[("stat", "ctxt")]] = 2000 + 3000 * busy_cores
        r[ix[("stat", "forks")]] = 0.5 + 0.1 * len(self._node_jobs[i])
        r[ix[("stat", "intr")]] = 1000 + 500 * busy_cores
        r[ix[("vmstat", "pgfault")]] = 500 + 200 * busy_cores
        r[ix[("vmstat", "pgmajfault")]] = 0.05 + 20 * oom_jobs
        r[ix[("vmstat", "pswpout")]] = 40.0 * oom_jobs
        r[ix[("vmstat", "pswpin")]] = 8.0 * oom_jobs
        r[ix[("vmstat", "pgpgin")]] = 0.3 * tmp / 1024 + 4
        r[ix[("vmstat", "pgpgout")]] = tmp / 1024 + 8
        ncpu = len(tr)
        r[ix[("psi", ("cpu", "some"))]] = 1e6 * min(0.9, 0.02 + 0.05 * busy_cores / ncpu)
        r[ix[("psi", ("memory", "some"))]] = 1e6 * min(0.9, 0.08 * oom_jobs)
        r[ix[("psi", ("memory", "full"))]] = 0.4e6 * min(0.9, 0.08 * oom_jobs)
        io_some = min(0.9, 0.005 + 0.25 * n_io)
        r[ix[("psi", ("io", "some"))]] = 1e6 * io_some
        r[ix[("psi", ("io", "full"))]] = 0.5e6 * io_some
        writes = tmp / 131072 + 0.5
        reads = 0.3 * tmp / 131072 + 0.2
        r[ix[("disk", "reads")]] = reads
        r[ix[("disk", "reads_merged")]] = 0.1 * reads
        r[ix[("disk", "sectors_read")]] = 0.3 * tmp / 512 + 40
        r[ix[("disk", "read_ms")]] = 0.15 * reads
        r[ix[("disk", "writes")]] = writes
        r[ix[("disk", "writes_merged")]] = 0.2 * writes
        r[ix[("disk", "sectors_written")]] = tmp / 512 + 80
        r[ix[("disk", "write_ms")]] = 0.25 * writes
        r[ix[("disk", "io_ms")]] = min(1000.0, 0.3 * (reads + writes))
        r[ix[("disk", "weighted_ms")]] = 0.15 * reads + 0.25 * writes
        if "/home" in self._nfs_mounts:
            r[ix[("nfs", "/home", "GETATTR", 0)]] += meta_home
            r[ix[("nfs", "/home", "GETATTR", 1)]] += meta_home
            r[ix[("nfs", "/home", "GETATTR", 3)]] += 120 * meta_home
            r[ix[("nfs", "/home", "GETATTR", 4)]] += 240 * meta_home
            r[ix[("nfs", "/home", "GETATTR", 6)]] += 0.4 * meta_home
            r[ix[("nfs", "/home", "GETATTR", 7)]] += 0.5 * meta_home

    def _nfs_rates(self, r: np.ndarray, mount: str, p: _Params) -> None:
        ix = self._cidx
        rtt_w = 3.0 + 15.0 * min(1.0, p.write_bps / 5e8)
        ops = {
            "WRITE": (p.write_bps / MIB, p.write_bps + 0.0, 0.0, rtt_w),
            "READ": (p.read_bps / MIB, 0.0, p.read_bps + 0.0, 1.5),
            "COMMIT": (p.write_bps / (16 * MIB), 0.0, 0.0, 4.0 * rtt_w),
            "GETATTR": (p.meta_ops, 0.0, 0.0, 0.4),
            "LOOKUP": (0.4 * p.meta_ops, 0.0, 0.0, 0.5),
            "ACCESS": (0.3 * p.meta_ops, 0.0, 0.0, 0.4),
            "OPEN": (0.1 * p.meta_ops, 0.0, 0.0, 0.8),
            "CLOSE": (0.1 * p.meta_ops, 0.0, 0.0, 0.6),
        }
        for op, (n, payload_sent, payload_recv, rtt) in ops.items():
            r[ix[("nfs", mount, op, 0)]] += n
            r[ix[("nfs", mount, op, 1)]] += n
            r[ix[("nfs", mount, op, 2)]] += n * 1e-5 if op == "WRITE" else 0.0
            r[ix[("nfs", mount, op, 3)]] += 150 * n + payload_sent
            r[ix[("nfs", mount, op, 4)]] += 200 * n + payload_recv
            r[ix[("nfs", mount, op, 5)]] += 0.05 * n
            r[ix[("nfs", mount, op, 6)]] += rtt * n
            r[ix[("nfs", mount, op, 7)]] += (rtt + 0.2) * n
        b = ("nfs", mount, "bytes")
        r[ix[(*b, 0)]] += p.read_bps
        r[ix[(*b, 1)]] += p.write_bps
        r[ix[(*b, 4)]] += p.read_bps
        r[ix[(*b, 5)]] += p.write_bps
        r[ix[(*b, 6)]] += p.read_bps / 4096
        r[ix[(*b, 7)]] += p.write_bps / 4096

    def _render_counters(self, i: int, t: float) -> None:
        c = self._counters[i]
        ns = self.state.nodes[self._names[i]]
        dt = t - c.t0
        vals = np.floor(c.base + c.rate * dt).astype(np.int64).tolist()
        ns.cpu_ticks = np.floor(c.ticks + c.tick_rate * dt).astype(np.int64)
        tr = c.tick_rate
        ns.core_busy = 1.0 - (tr[:, 3] + tr[:, 4]) / USER_HZ
        vm, psi, disk, nfs = {}, {}, {}, {}
        st = {}
        for key, v in zip(self._cnames, vals, strict=True):
            kind = key[0]
            if kind == "stat":
                st[key[1]] = v
            elif kind == "vmstat":
                vm[key[1]] = v
            elif kind == "psi":
                psi[key[1]] = v
            elif kind == "disk":
                disk[key[1]] = v
            else:
                nfs.setdefault(key[1], {}).setdefault(key[2], []).append(v)
        disk["in_progress"] = 0
        ns.ctxt, ns.forks, ns.intr = st["ctxt"], st["forks"], st["intr"]
        ns.vmstat, ns.psi_us, ns.disk, ns.nfs = vm, psi, disk, nfs
        ns.psi_avg = {k: round(float(c.rate[self._cidx[("psi", k)]]) / 1e4, 2) for k in PSI_KEYS}
        spec = self.spec.nodes[i]
        total = spec.real_memory_mib * MIB
        used = 3 * GIB
        swap = 0
        gutil = np.zeros(spec.gpus)
        gmem = np.zeros(spec.gpus)
        name = spec.name
        for jid in self._node_jobs[i]:
            job = self._running[jid]
            used += job.mem_bytes.get(name, 0)
            swap += job.swap_bytes.get(name, 0)
            if name in job.gpus:
                p = self._params[jid]
                g = list(job.gpus[name])
                gutil[g] = 100.0 * p.gpu_util
                gmem[g] = p.gpu_mem_mib
        ns.mem_used_bytes = int(min(used, total))
        ns.mem_buffers_bytes = 300 * MIB
        ns.mem_cached_bytes = int(max(0, min(8 * GIB + 0.2 * (total - used), total - used - 300 * MIB)))
        ns.swap_used_bytes = int(min(swap, ns.swap_total_bytes))
        busy = float(ns.core_busy.sum())
        ns.procs_running = 1 + round(busy)
        ns.procs_blocked = int(round(float(tr[:, 4].sum()) / USER_HZ))
        if spec.gpus:
            if len(ns.gpu_xid) != spec.gpus:
                ns.gpu_xid = np.zeros(spec.gpus, dtype=np.int64)
                ns.gpu_ecc_dbe = np.zeros(spec.gpus, dtype=np.int64)
            ns.gpu_util = gutil
            ns.gpu_mem_used_mib = np.round(gmem)
            ns.gpu_temp_c = np.round(32.0 + 0.45 * gutil, 1)
            ns.gpu_power_w = np.round(55.0 + 3.4 * gutil, 1)

    # ---------------------------------------------------------------- finalize
    def _scratch_quadratic(self) -> tuple[float, float, float]:
        wl = self.workload
        u0, u2, xf = wl.scratch_fill_start, wl.scratch_fill_2d, wl.scratch_full_days
        # u0 + a*2 + b*4 = u2 ; u0 + a*xf + b*xf^2 = 1
        b = ((1.0 - u0) - (u2 - u0) * xf / 2.0) / (xf * xf - 2.0 * xf)
        a = (u2 - u0 - 4.0 * b) / 2.0
        return u0, a, b

    def _finalize(self, t: float) -> None:
        st = self.state
        for job in self._running.values():
            self._usage(job, self._params[job.job_id], t)
        for i in self._instr:
            self._render_counters(i, t)
        nodes = st.nodes
        free_mem = (self._nmem - 2048 - self._memuse).astype(np.int64).tolist()
        load = np.round(self._load, 2).tolist()
        for i, name in enumerate(self._names):
            ns = nodes[name]
            if self._node_phase[i] == "down":
                ns.cpu_load, ns.free_mem_mib = 0.0, 0
                continue
            ns.cpu_load = load[i]
            ns.free_mem_mib = max(0, free_mem[i])
            if self._node_jobs[i]:
                ns.last_busy = t
        fin = st.finished
        cut = t - FINISHED_KEEP_S
        k = 0
        while k < len(fin) and fin[k].end_time < cut:
            k += 1
        if k:
            for job in fin[:k]:
                self._params.pop(job.job_id, None)
            del fin[:k]
        self._fill_filesystems(t)
        self._fill_rpc(t)
        s = st.scheduler
        s.agent_queue_size = min(64, len(self._pending) // 25)
        s.server_thread_count = 3 + min(30, len(self._pending) // 40)
        usage = self._fs_usage_at(t)
        st.usage = {}
        for a in self.spec.accounts:
            tot = 0.0
            for u in a.users:
                v = float(usage[self._uidx[u]])
                st.usage[(a.name, u)] = v
                tot += v
            st.usage[(a.name, "")] = tot
        st.now = t

    def _fill_filesystems(self, t: float) -> None:
        running = {m: 0.0 for m in self._written}
        running_acct = dict.fromkeys(self._written_acct, 0.0)
        for job in self._running.values():
            for m, v in job.write_bytes.items():
                running[m] += v
            if job.workdir == "/project":
                running_acct[job.account] += job.write_bytes.get("/project", 0)
        x = (t - self.start) / DAY
        u0, a, b = self._scratch_coef
        fss = self.state.filesystems
        for fs in self.spec.filesystems:
            m, size = fs.mountpoint, fs.size_bytes
            written = self._written[m] + running[m]
            if fs.fstype == "lustre":
                used = (u0 + a * x + b * x * x) * size + 0.02 * written
                avg_file = 8 * MIB
            elif fs.fstype.startswith("nfs"):
                base = 0.55 if m == "/home" else 0.62
                # checkpoints are mostly overwritten: 0.2 % of what NFS writers write stays
                used = (base + 0.0008 * x) * size + 0.002 * written
                avg_file = 2 * MIB
            else:
                used = (0.04 + 0.002 * x) * size
                avg_file = 16 * MIB
            used = int(min(max(used, 0.0), size - GIB))
            st = fss.get(m)
            if st is None:
                st = fss[m] = FilesystemState(used_bytes=used, files_used=0)
            st.used_bytes = used
            st.files_used = min(fs.inodes - 1, used // avg_file)
            if m == "/project":
                shares = {ac.name: ac.shares for ac in self.spec.accounts}
                tot = sum(shares.values())
                near = self.workload.near_quota_account
                for ac, sh in shares.items():
                    g_used = used * sh / tot * 0.7 + 0.002 * (self._written_acct[ac] + running_acct[ac])
                    if ac == near:
                        limit = int(0.7 * size * sh / tot / 0.95)
                        g_used = limit * (0.95 + 0.015 * x)
                    else:
                        limit = int(0.7 * size * sh / tot * 1.8)
                    st.group_limit_bytes[ac] = limit
                    st.group_used_bytes[ac] = int(min(g_used, limit))

    def _fill_rpc(self, t: float) -> None:
        s = self.state.scheduler
        el = max(0.0, t - s.server_start)
        n_nodes = len(self.spec.nodes)
        periodic = {  # type -> (per second, mean us, user)
            "REQUEST_JOB_INFO": (0.25, 2400, None),
            "REQUEST_NODE_INFO": (0.05, 1800, "root"),
            "REQUEST_PARTITION_INFO": (0.05, 300, "root"),
            "REQUEST_PING": (n_nodes / 100.0, 120, "root"),
            "REQUEST_STATS_INFO": (1 / 60.0, 200, "root"),
            "REQUEST_FED_INFO": (0.02, 90, "root"),
        }
        by_type = {k: list(v) for k, v in self._rpc_ev.items()}
        by_user = {k: list(v) for k, v in self._rpc_user_ev.items()}
        n_users = len(self._users)
        for kind, (rate, us, user) in periodic.items():
            n = int(rate * el)
            c = by_type.setdefault(kind, [0, 0])
            c[0] += n
            c[1] += n * us
            if user is not None:
                cu = by_user.setdefault(user, [0, 0])
                cu[0] += n
                cu[1] += n * us
            else:  # users' own squeue calls, spread with fixed weights
                for k, u in enumerate(self._users):
                    share = int(n * (k % 5 + 1) / (3 * n_users))
                    cu = by_user.setdefault(u, [0, 0])
                    cu[0] += share
                    cu[1] += share * us
        s.rpc_by_type = by_type
        s.rpc_by_user = by_user
