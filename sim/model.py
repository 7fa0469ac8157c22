"""The simulated cluster's layout and its generative workload model (parameters only, no randomness here).

:func:`default_cluster` builds the ~312-node :class:`~nomade.sim.state.ClusterSpec` the demo runs on;
:func:`default_workload` returns the :class:`WorkloadModel` whose parameters :class:`nomade.sim.engine.Simulation`
samples with ``numpy.random.default_rng`` seeded from the simulation's seed. Behaviour that follows from a job
kind (how memory grows, how it ends) lives in the engine; this module only says how often, for whom, and how big.

Units: rates are events per hour (jobs) or per day (surges, node failures); memory in MiB (as ``--mem``);
times in seconds; CPU efficiency as a fraction of the allocated cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from nomade.sim.state import AccountSpec, ClusterSpec, FilesystemSpec, NodeSpec, PartitionSpec

HOUR = 3600
DAY = 86400
TIB = 1 << 40
PIB = 1 << 50

ACCOUNTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "physics": (20, ("alice", "bruno", "chen", "dmitri", "elena")),
    "chem": (15, ("farah", "gustav", "hana", "ivan", "jules")),
    "bio": (15, ("kenji", "laura", "mateo", "nadia", "omar")),
    "astro": (10, ("priya", "quentin", "rosa", "sven", "tariq")),
    "cs": (15, ("uma", "victor", "wei", "xenia", "yusuf")),
    "econ": (5, ("zara", "anton", "beatriz", "carlos", "dana")),
    "geo": (10, ("emil", "fiona", "goran", "helga", "ines")),
    "eng": (10, ("jonas", "kira", "lars", "mira", "nils")),
}
"""Account -> (RawShares, users): 40 users in 8 accounts (the association tree below ``root``)."""


def _names(prefix: str, first: int, last: int, width: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i:0{width}d}" for i in range(first, last + 1))


def default_cluster(instrumented: int = 8) -> ClusterSpec:
    """The default simulated cluster: 312 nodes in five partitions, four filesystems, 40 users in 8 accounts.

    Layout (slurm.conf terms): ``cpu`` c001-c256 (2 sockets x 32 cores, 64 CPUs, RealMemory 257000 MiB,
    ``Default=YES``, MaxTime 2 days); ``long`` c129-c256 (overlapping ``cpu``, MaxTime 7 days); ``bigmem``
    m01-m16 (64 CPUs, 1031000 MiB, 3 days); ``gpu`` g01-g32 (64 CPUs, 515000 MiB, 4 x a100 of 81920 MiB, 2 days);
    ``debug`` d01-d08 (32 CPUs, 128000 MiB, MaxTime 1 h, PriorityTier 2). Filesystems: ``/home`` (nfs4
    ``nfs01:/export/home``, 200 TiB), ``/project`` (nfs4 ``nfs02:/export/project``, 1 PiB), ``/scratch`` (lustre,
    2 PiB), ``/tmp`` (local xfs, 1.8 TiB).

    Args:
        instrumented: how many nodes run a node-mode exporter (their ``/proc`` is rendered). The first 8 are
            c001 c002 c129 c130 m01 g01 g02 d01 (every partition, GPU nodes included); more continue round-robin
            over cpu-only, long, bigmem, gpu and debug nodes.

    Returns:
        The :class:`ClusterSpec`.

    Raises:
        ValueError: ``instrumented`` is negative or larger than the node count.

    """
    cpu_nodes = _names("c", 1, 256, 3)
    big_nodes = _names("m", 1, 16, 2)
    gpu_nodes = _names("g", 1, 32, 2)
    dbg_nodes = _names("d", 1, 8, 2)
    nodes: list[NodeSpec] = []
    for name in cpu_nodes:
        parts = ("cpu", "long") if int(name[1:]) > 128 else ("cpu",)
        nodes.append(NodeSpec(name, parts, 64, 2, 32, 1, 257000, features=("cpu", "icelake")))
    for name in big_nodes:
        nodes.append(NodeSpec(name, ("bigmem",), 64, 2, 32, 1, 1031000, features=("bigmem", "icelake")))
    for name in gpu_nodes:
        nodes.append(
            NodeSpec(name, ("gpu",), 64, 2, 32, 1, 515000, gpus=4, gpu_type="a100", gpu_memory_mib=81920,
                     features=("gpu", "a100"))
        )  # fmt: skip
    for name in dbg_nodes:
        nodes.append(NodeSpec(name, ("debug",), 32, 2, 16, 1, 128000, features=("cpu", "debug")))
    partitions = (
        PartitionSpec("cpu", cpu_nodes, True, 2 * DAY, HOUR),
        PartitionSpec("long", cpu_nodes[128:], False, 7 * DAY, HOUR),
        PartitionSpec("bigmem", big_nodes, False, 3 * DAY, HOUR),
        PartitionSpec("gpu", gpu_nodes, False, 2 * DAY, HOUR),
        PartitionSpec("debug", dbg_nodes, False, HOUR, 1800, priority_tier=2),
    )
    filesystems = (
        FilesystemSpec("/home", "nfs01:/export/home", "nfs4", 200 * TIB, 2_000_000_000, "nfs01"),
        FilesystemSpec("/project", "nfs02:/export/project", "nfs4", PIB, 8_000_000_000, "nfs02"),
        FilesystemSpec("/scratch", "10.10.0.50@o2ib:/scratch", "lustre", 2 * PIB, 12_000_000_000),
        FilesystemSpec("/tmp", "/dev/nvme0n1p1", "xfs", int(1.8 * TIB), 900_000_000),
    )
    accounts = tuple(AccountSpec(a, s, u) for a, (s, u) in ACCOUNTS.items())
    users = [u for a in accounts for u in a.users]
    uids = {u: 20001 + i for i, u in enumerate(users)}
    first = ["c001", "c002", "c129", "c130", "m01", "g01", "g02", "d01"]
    groups = [list(cpu_nodes[2:128]), list(cpu_nodes[130:]), list(big_nodes[1:]), list(gpu_nodes[2:]),
              list(dbg_nodes[1:])]  # fmt: skip
    if not 0 <= instrumented <= len(nodes):
        raise ValueError(f"instrumented must be in [0, {len(nodes)}], got {instrumented}")
    chosen = first[:instrumented]
    gi = 0
    while len(chosen) < instrumented:
        g = groups[gi % len(groups)]
        if g:
            chosen.append(g.pop(0))
        gi += 1
    return ClusterSpec(
        name="nomade-sim",
        slurm_version="23.02.7",
        nodes=tuple(nodes),
        partitions=partitions,
        filesystems=filesystems,
        accounts=accounts,
        uids=uids,
        instrumented=tuple(chosen),
    )


@dataclass(frozen=True)
class JobKind:
    """One class of jobs of the generative model (its submit-time facts; the engine gives it its behaviour).

    Attributes:
        name: the kind (``Job.kind``): ``normal``, ``oom_growth``, ``timeout``, ``nfs_writer``, ``crash``,
            ``gpu_train``, ``gpu_idle``, ``cancelled``, ``short_test``.
        rate_per_hour: mean arrivals per hour at diurnal factor 1.
        users: who submits them (drawn uniformly).
        job_names: ``--job-name`` values (drawn uniformly).
        partitions: (partition, weight) pairs.
        shapes: (nodes, cpus per node, weight) pairs; cpus per node 64 means a whole node.
        mem_per_cpu_mib: (low, high) of ``--mem`` per allocated CPU; the request is capped by the node.
        time_limits_s: ``--time`` choices (drawn uniformly, capped by the partition's MaxTime).
        workdirs: (mountpoint, weight) pairs: where the job reads and writes.
        gpus_per_node: GPU counts per node (drawn uniformly); empty for CPU jobs.

    """

    name: str
    rate_per_hour: float
    users: tuple[str, ...]
    job_names: tuple[str, ...]
    partitions: tuple[tuple[str, float], ...]
    shapes: tuple[tuple[int, int, float], ...]
    mem_per_cpu_mib: tuple[int, int]
    time_limits_s: tuple[int, ...]
    workdirs: tuple[tuple[str, float], ...] = (("/scratch", 0.7), ("/home", 0.2), ("/project", 0.1))
    gpus_per_node: tuple[int, ...] = ()


@dataclass(frozen=True)
class WorkloadModel:
    """Parameters of the generative workload (sampled by :class:`nomade.sim.engine.Simulation`).

    Attributes:
        kinds: the job kinds and their arrival rates.
        diurnal_amplitude: arrival rate factor = ``1 + A*cos(2*pi*(hour - peak_hour)/24)``, A in [0, 1).
        peak_hour: UTC hour of the daily arrival peak (early afternoon).
        weekend_factor: arrival rate factor on Saturdays and Sundays.
        queue_soft_limit, queue_hard_limit: users hold back when the queue is long: a non-array submission is
            kept with probability 1 below ``soft`` pending jobs, falling linearly to ``min_accept`` at ``hard``.
        min_accept: the floor of that probability.
        surges_per_day: mean job-array surges per day (a Poisson process).
        surge_tasks: (low, high) tasks of a surge array.
        surge_users: who submits surge arrays.
        surge_limit_choices: ``%limit`` choices of a surge array (0 = none).
        node_failures_per_day: mean node crashes per day over the whole cluster (uniform over nodes).
        down_hours, drain_hours: (low, high) of a crashed node's down time, then of its post-crash drain.
        admin_drains_per_day: mean admin drains ("kernel update") per day; drain_hold_hours: (low, high).
        max_running_per_user: QOS MaxJobsPerUser (Reason ``QOSMaxJobsPerUserLimit`` beyond it).
        dependency_fraction: share of jobs submitted with ``--dependency=afterany`` on the user's previous job.
        scratch_fill_start, scratch_fill_2d, scratch_full_days: /scratch used fraction at ``start``, at
            ``start`` + 2 days, and the day count after ``start`` at which it reaches 100 % (the quadratic
            ``u0 + a*x + b*x**2`` through those three points, x in days).
        near_quota_account: the /project account whose group usage sits just under its quota.
        decay_half_life_s: PriorityDecayHalfLife (slurm.conf(5) default ``7-0``, 7 days).

    """

    kinds: tuple[JobKind, ...]
    diurnal_amplitude: float = 0.3
    peak_hour: float = 14.0
    weekend_factor: float = 0.7
    queue_soft_limit: int = 150
    queue_hard_limit: int = 300
    min_accept: float = 0.15
    surges_per_day: float = 3.0
    surge_tasks: tuple[int, int] = (100, 400)
    surge_users: tuple[str, ...] = ("kenji", "zara", "emil")
    surge_limit_choices: tuple[int, ...] = (0, 32, 50, 64)
    node_failures_per_day: float = 3.0
    down_hours: tuple[float, float] = (1.0, 6.0)
    drain_hours: tuple[float, float] = (0.5, 2.0)
    admin_drains_per_day: float = 0.5
    drain_hold_hours: tuple[float, float] = (3.0, 8.0)
    max_running_per_user: int = 36
    dependency_fraction: float = 0.03
    scratch_fill_start: float = 0.60
    scratch_fill_2d: float = 0.865
    scratch_full_days: float = 2.75
    near_quota_account: str = "bio"
    decay_half_life_s: float = 7 * DAY


def default_workload() -> WorkloadModel:
    """The default workload: ~2000-3000 jobs a day that keep the default cluster 70-95 % allocated.

    Each kind has its own users and job names (with a little overlap, e.g. the ``oom_growth`` users also run
    ``normal`` jobs) so that a model can learn risk from submit-time facts.

    Returns:
        The :class:`WorkloadModel`.

    """
    h = HOUR
    std_limits = (2 * h, 4 * h, 6 * h, 8 * h, 12 * h, 24 * h)
    kinds = (
        JobKind(
            "normal",
            30.0,
            (
                "alice",
                "bruno",
                "chen",
                "dmitri",
                "elena",
                "farah",
                "gustav",
                "ivan",
                "priya",
                "quentin",
                "rosa",
                "victor",
                "wei",
                "anton",
                "fiona",
                "jonas",
                "kira",
                "laura",
                "mateo",
            ),
            ("vasp_relax", "lammps_md", "gromacs", "wrf_run", "cp2k", "analysis", "postproc", "sim_sweep"),
            (("cpu", 0.72), ("long", 0.12), ("bigmem", 0.10), ("gpu", 0.06)),
            (
                (1, 8, 0.10),
                (1, 16, 0.14),
                (1, 32, 0.16),
                (1, 64, 0.35),
                (2, 64, 0.12),
                (4, 64, 0.08),
                (8, 64, 0.05),
            ),
            (1500, 3800),
            std_limits,
        ),
        JobKind(
            "oom_growth",
            3.5,
            ("laura", "mateo", "hana", "nadia"),
            ("trinity_asm", "spades", "dedup_reads", "pandas_merge"),
            (("cpu", 0.8), ("bigmem", 0.2)),
            ((1, 8, 0.3), (1, 16, 0.4), (1, 32, 0.3)),
            (2000, 4000),
            (4 * h, 8 * h, 12 * h, 24 * h),
        ),
        JobKind(
            "timeout",
            3.0,
            ("sven", "tariq", "omar", "dmitri"),
            ("md_equil", "relax_long", "mcmc_chain", "solver"),
            (("cpu", 0.8), ("long", 0.2)),
            ((1, 16, 0.3), (1, 32, 0.3), (1, 64, 0.3), (2, 64, 0.1)),
            (1500, 3000),
            (2 * h, 4 * h, 6 * h, 8 * h),
        ),
        JobKind(
            "nfs_writer",
            2.5,
            ("uma", "xenia", "helga", "goran"),
            ("checkpoint_dump", "rsync_out", "write_frames", "tar_results"),
            (("cpu", 1.0),),
            ((1, 4, 0.3), (1, 8, 0.4), (1, 16, 0.3)),
            (2000, 4000),
            (2 * h, 4 * h, 8 * h),
            workdirs=(("/home", 0.5), ("/project", 0.5)),
        ),
        JobKind(
            "crash",
            4.0,
            ("yusuf", "ines", "nils", "jules"),
            ("a.out", "test_mpi", "my_solver", "run.sh"),
            (("cpu", 0.9), ("long", 0.1)),
            ((1, 8, 0.3), (1, 32, 0.3), (1, 64, 0.2), (2, 64, 0.1), (4, 64, 0.1)),
            (1500, 3000),
            std_limits,
        ),
        JobKind(
            "gpu_train",
            4.5,
            ("wei", "victor", "uma", "lars", "mira"),
            ("train_resnet", "bert_ft", "diffusion", "ppo_agent", "llm_lora"),
            (("gpu", 1.0),),
            ((1, 16, 1.0),),
            (3000, 6000),
            (4 * h, 8 * h, 12 * h, 24 * h),
            gpus_per_node=(1, 1, 2, 2, 4),
        ),
        JobKind(
            "gpu_idle",
            0.8,
            ("carlos", "beatriz"),
            ("jupyter", "notebook", "interactive"),
            (("gpu", 1.0),),
            ((1, 8, 1.0),),
            (2000, 4000),
            (4 * h, 8 * h, 12 * h),
            workdirs=(("/home", 1.0),),
            gpus_per_node=(1, 2, 4),
        ),
        JobKind(
            "cancelled",
            4.0,
            ("carlos", "dana", "kira", "fiona"),
            ("test_run", "sweep", "job", "bench"),
            (("cpu", 1.0),),
            ((1, 8, 0.4), (1, 16, 0.4), (1, 64, 0.2)),
            (1500, 3000),
            (2 * h, 4 * h, 8 * h),
        ),
        JobKind(
            "short_test",
            12.0,
            ("alice", "jules", "nils", "zara", "emil"),
            ("debug", "test", "compile", "quick"),
            (("debug", 1.0),),
            ((1, 1, 0.3), (1, 4, 0.4), (1, 16, 0.3)),
            (1000, 3000),
            (900, 1800, 3600),
            workdirs=(("/home", 0.8), ("/scratch", 0.2)),
        ),
    )
    return WorkloadModel(kinds=kinds)
