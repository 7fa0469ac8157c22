"""SLURM command outputs rendered from a simulated :class:`~nomade.sim.state.ClusterState`.

Every function here is pure: it reads the state and returns the text the real command would print on stdout at
``state.now``, in exactly the form NØMADE's collectors ask for, so that the real parsers read it back with zero
issues. Formats and their sources:

* :func:`squeue`: ``squeue --all --Format=<field>:<0x1F>,...`` (:data:`~nomade.exporter.parsers.squeue.SQUEUE_ARGV`
  and :data:`~nomade.exporter.parsers.squeue.SQUEUE_JOBS_ARGV`); titles from ``src/squeue/print.c`` as captured in
  ``tests/fixtures/squeue/lab-squeue-jobs-Format-us-22.05.8.txt``: ``JobID`` is the raw job id (each array task
  has its own), pending tasks of an array not yet split off are ONE line whose ``ArrayTaskID`` is the full index
  expression (``SLURM_BITSTR_LEN=0``), times are ``SLURM_TIME_FORMAT=standard`` local time.
* :func:`scontrol_nodes` / :func:`scontrol_partitions`: ``scontrol --details --oneliner show node`` and
  ``scontrol --oneliner show partition`` in the 22.05-23.x key order (``src/api/node_info.c``,
  ``src/api/partition_info.c``; fixtures ``tests/fixtures/scontrol/``).
* :func:`sacct`: the accounting collector's ``sacct --parsable2 --noheader --delimiter=<0x1F>
  --format=<SACCT_FIELDS>`` (sacct(1); fixture ``tests/fixtures/sacct/lab-22.05-exact-command.txt``).
* :func:`sshare` (sshare(1), Fair Tree figures), :func:`sprio` (sprio(1) ``--format``), :func:`sdiag`
  (``_print_stats`` in ``src/sdiag/sdiag.c``), :func:`sacctmgr_associations` (sacctmgr(1) ``--parsable2``),
  :func:`scontrol_reservations` and :func:`scontrol_licenses` (scontrol(1)).

The low-level format helpers (:func:`ts`, :func:`duration`, :func:`squeue_duration`, :func:`cpu_time`,
:func:`hostlist_range`, :func:`compress_hostlist`) are shared with ``bench/synth.py``.

Values the state does not hold are derived deterministically and documented where they are made (sprio factor
split, license use, the weekly maintenance reservation); nothing here draws random numbers.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS
from nomade.exporter.parsers.squeue import US
from nomade.exporter.parsers.sshare import SSHARE_FIELDS

from .state import ClusterState, Job, JobStep

__all__ = [
    "compress_hostlist",
    "cpu_time",
    "duration",
    "hostlist_range",
    "sacct",
    "sacctmgr_associations",
    "scontrol_licenses",
    "scontrol_nodes",
    "scontrol_partitions",
    "scontrol_reservations",
    "sdiag",
    "sprio",
    "squeue",
    "squeue_duration",
    "sshare",
    "ts",
]

# --- low-level formats ---------------------------------------------------------------------------------------


def ts(t: float) -> str:
    """``SLURM_TIME_FORMAT=standard`` local time (``YYYY-MM-DDTHH:MM:SS``, ``time.localtime``), as the runner gets."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def _ts_memo() -> Callable[[float], str]:
    """:func:`ts` with a per-render cache keyed by whole seconds (many jobs share submit/start seconds)."""
    cache: dict[int, str] = {}

    def conv(t: float) -> str:
        k = int(t)
        s = cache.get(k)
        if s is None:
            s = cache[k] = ts(k)
        return s

    return conv


def duration(seconds: float) -> str:
    """SLURM duration ``[D-]HH:MM:SS`` (sacct ``Elapsed``/``Timelimit``, scontrol ``MaxTime``); whole seconds."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def squeue_duration(seconds: float) -> str:
    """The squeue ``TimeLimit`` (``secs2time_str``, src/common/parse_time.c): ``M:SS``, ``H:MM:SS``, ``D-HH:MM:SS``.

    The lab capture shows ``10:00`` for 10 minutes, ``2:00`` for 2 minutes and ``1-00:00:00`` for a day.
    """
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}-{h:02d}:{m:02d}:{s:02d}"
    if h:
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m}:{s:02d}"


def cpu_time(seconds: float) -> str:
    """The sacct ``TotalCPU``: ``MM:SS.mmm`` under an hour (milliseconds, truncated), else ``[D-]HH:MM:SS``."""
    if seconds < 3600:
        ms = int(seconds * 1000)
        m, ms = divmod(ms, 60000)
        return f"{m:02d}:{ms // 1000:02d}.{ms % 1000:03d}"
    return duration(seconds)


def hostlist_range(prefix: str, width: int, lo: int, hi: int) -> str:
    """Compact SLURM host list ``prefix[lo-hi]`` (zero-padded to ``width``), a single name when lo == hi."""
    if lo == hi:
        return f"{prefix}{lo:0{width}d}"
    return f"{prefix}[{lo:0{width}d}-{hi:0{width}d}]"


_NAME_NUM = re.compile(r"^(.*?)(\d+)$")


def _ranges(nums: Iterable[int], width: int = 0) -> str:
    """``1,3,5-9`` from integers (sorted, de-duplicated), each zero-padded to ``width``."""
    out: list[str] = []
    vals = sorted(set(nums))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        lo, hi = vals[i], vals[j]
        out.append(f"{lo:0{width}d}" if lo == hi else f"{lo:0{width}d}-{hi:0{width}d}")
        i = j + 1
    return ",".join(out)


@lru_cache(maxsize=8192)
def _compress(names: tuple[str, ...]) -> str:
    groups: dict[tuple[str, int], list[int]] = {}
    plain: dict[str, None] = {}
    order: list[tuple[str, int] | str] = []
    for n in names:
        m = _NAME_NUM.match(n)
        if m is None:
            if n not in plain:
                plain[n] = None
                order.append(n)
            continue
        key = (m.group(1), len(m.group(2)))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(m.group(2)))
    parts = []
    for key in order:
        if isinstance(key, str):
            parts.append(key)
            continue
        prefix, width = key
        nums = groups[key]
        if len(set(nums)) == 1:
            parts.append(f"{prefix}{nums[0]:0{width}d}")
        else:
            parts.append(f"{prefix}[{_ranges(nums, width)}]")
    return ",".join(parts)


def compress_hostlist(names: Iterable[str]) -> str:
    """SLURM's compressed host list (``c[001-004,010],g01``): names grouped by prefix and digit width.

    ``hostlist_ranged_string`` (src/common/hostlist.c) order: groups in order of first appearance, numbers sorted.
    An empty input gives ``""``.
    """
    return _compress(tuple(names))


def _f6(x: float) -> str:
    """``%f`` as sshare prints doubles; ``inf`` for infinity."""
    return "inf" if math.isinf(x) else f"{x:.6f}"


def _req_tres(cpus: int, mem_mib: int, nodes: int, gpus: int) -> str:
    """A TRES string in squeue's ``tres-alloc`` order (TRES id order: cpu, mem, node, billing, then GRES)."""
    out = f"cpu={cpus},mem={mem_mib}M,node={nodes},billing={cpus}"
    return out + (f",gres/gpu={gpus}" if gpus else "")


def _sacct_tres(cpus: int, mem_mib: int, nodes: int, gpus: int) -> str:
    """sacct-style ``AllocTRES``/``ReqTRES``: names sorted (lab: ``billing=1,cpu=1,mem=200M,node=1``)."""
    gpu = f",gres/gpu={gpus}" if gpus else ""
    return f"billing={cpus},cpu={cpus}{gpu},mem={mem_mib}M,node={nodes}"


def _job_nodes(job: Job) -> int:
    return len(job.nodes) if job.nodes else job.req_nodes


# --- squeue ----------------------------------------------------------------------------------------------------

# squeue --Format field -> title squeue prints (src/squeue/print.c; tests/fixtures/squeue).
SQUEUE_TITLES: dict[str, str] = {
    "JobID": "JOBID",
    "ArrayJobID": "ARRAY_JOB_ID",
    "ArrayTaskID": "ARRAY_TASK_ID",
    "Partition": "PARTITION",
    "State": "STATE",
    "Reason": "REASON",
    "SubmitTime": "SUBMIT_TIME",
    "EligibleTime": "ELIGIBLE_TIME",
    "NumCPUs": "CPUS",
    "NumNodes": "NODES",
    "tres-alloc": "TRES_ALLOC",
    "UserName": "USER",
    "Account": "ACCOUNT",
    "StartTime": "START_TIME",
    "TimeLimit": "TIME_LIMIT",
    "NodeList": "NODELIST",
    "Name": "NAME",
}


def squeue_fields(argv: Sequence[str]) -> tuple[str, ...]:
    """The ``--Format`` field names of an squeue argv (``--Format=JobID:<US>,...`` or ``-O ...``).

    Raises:
        ValueError: when there is no ``--Format``, a field is not in :data:`SQUEUE_TITLES`, or a field is not
            printed whole with the 0x1F suffix (``name:<US>``), the only form rendered.

    """
    spec: str | None = None
    args = list(argv[1:])
    for i, a in enumerate(args):
        if a.startswith("--Format="):
            spec = a[len("--Format=") :]
        elif a in ("--Format", "-O") and i + 1 < len(args):
            spec = args[i + 1]
    if spec is None:
        raise ValueError("squeue without --Format")
    fields = []
    for item in spec.split(","):
        name, sep, suffix = item.partition(":")
        if name not in SQUEUE_TITLES or sep != ":" or suffix != US:
            raise ValueError(f"unsupported squeue field {item!r}")
        fields.append(name)
    return tuple(fields)


def _squeue_row(job: Job, tsc: Callable[[float], str]) -> dict[str, str]:
    """Column texts of one job line (a pending array group is adjusted by the caller)."""
    running = job.state != "PENDING"
    nodes = _job_nodes(job)
    if job.array_job_id is not None:
        array_job, task = str(job.array_job_id), str(job.array_task_id)
    else:
        array_job, task = str(job.job_id), "N/A"
    if job.eligible_time is not None:
        eligible = tsc(job.eligible_time)
    else:
        eligible = "N/A" if not running else tsc(job.submit_time)
    return {
        "JobID": str(job.job_id),
        "ArrayJobID": array_job,
        "ArrayTaskID": task,
        "Partition": job.partition,
        "State": job.state,
        "Reason": job.reason if not running else "None",
        "SubmitTime": tsc(job.submit_time),
        "EligibleTime": eligible,
        "NumCPUs": str(job.req_cpus),
        "NumNodes": str(nodes),
        "tres-alloc": _req_tres(job.req_cpus, job.req_mem_mib * nodes, nodes, job.req_gpus),
        "UserName": job.user,
        "Account": job.account,
        "StartTime": tsc(job.start_time) if running and job.start_time is not None else "N/A",
        "TimeLimit": squeue_duration(job.time_limit_s),
        "NodeList": compress_hostlist(job.nodes) if running else "",
        "Name": job.name,
    }


def array_group_id(state: ClusterState, array_job_id: int, pending: Sequence[Job]) -> int:
    """The job id shown for the pending remainder of a job array (squeue ``JobID``, sprio ``JOBID``).

    SLURM keeps the pending tasks in the array's meta record, whose id is the array job id while tasks are split
    off into records of their own (lab capture: array 10, running task as job 11, pending ``2-6%1`` as job 10).
    When the simulation gave the array job id to a task that is no longer pending (the engine numbers tasks from
    the array job id), the highest job id of the pending tasks is shown instead, so that no two lines of one
    squeue output share a job id (the queue collector de-duplicates by it).
    """
    other = state.active.get(array_job_id)
    if other is None or any(j is other for j in pending):
        return array_job_id
    return max(j.job_id for j in pending)


def squeue(state: ClusterState, argv: Sequence[str]) -> str:
    """``squeue --all --Format=<field>:<0x1F>,...`` for the jobs in ``state.active``.

    Args:
        state: the cluster state.
        argv: the command line; its ``--Format`` list chooses the columns (:data:`SQUEUE_TITLES`), so both the
            aggregate layout (``SQUEUE_ARGV``) and the per-job layout (``SQUEUE_JOBS_ARGV``) are rendered.

    Returns:
        The header line and one line per running job or running array task, and one line per job array for its
        pending tasks (``JobID`` from :func:`array_group_id`, ``ArrayTaskID`` = the task ids as ``5-200`` / ``1,3,7-9``,
        printed whole as with ``SLURM_BITSTR_LEN=0``); every line ends with 0x1F. A pending array with a single
        pending task is a plain line with its task id.

    Raises:
        ValueError: for an argv without a supported ``--Format`` (see :func:`squeue_fields`).

    """
    fields = squeue_fields(argv)
    tsc = _ts_memo()
    lines = [US.join(SQUEUE_TITLES[f] for f in fields) + US]
    groups: dict[int, list[Job]] = {}
    order: list[Job | int] = []
    for job in state.active.values():
        if job.state == "PENDING" and job.array_job_id is not None:
            if job.array_job_id not in groups:
                groups[job.array_job_id] = []
                order.append(job.array_job_id)
            groups[job.array_job_id].append(job)
        else:
            order.append(job)
    for item in order:
        if isinstance(item, int):
            tasks = groups[item]
            first = min(tasks, key=lambda j: j.array_task_id or 0)
            row = _squeue_row(first, tsc)
            if len(tasks) > 1:
                row["JobID"] = str(array_group_id(state, item, tasks))
                row["ArrayTaskID"] = _ranges(j.array_task_id or 0 for j in tasks)
        else:
            row = _squeue_row(item, tsc)
        lines.append(US.join([row[f] for f in fields]) + US)
    return "\n".join(lines) + "\n"


# --- scontrol ----------------------------------------------------------------------------------------------------

OS_TEXT = "Linux 4.18.0-513.9.1.el8_9.x86_64 #1 SMP Thu Nov 16 10:29:54 EST 2023"

# Flag order of node_state_string_complete() (src/common/slurm_protocol_defs.c); unknown flags follow, sorted.
_FLAG_ORDER = (
    "CLOUD",
    "COMPLETING",
    "DRAIN",
    "DYNAMIC_FUTURE",
    "DYNAMIC_NORM",
    "INVALID_REG",
    "FAIL",
    "MAINTENANCE",
    "POWER_DOWN",
    "POWER_UP",
    "NOT_RESPONDING",
    "PLANNED",
    "POWERED_DOWN",
    "REBOOT_ISSUED",
    "REBOOT_REQUESTED",
    "RESERVED",
    "POWERING_DOWN",
    "POWERING_UP",
)
_FLAG_RANK = {f: i for i, f in enumerate(_FLAG_ORDER)}


def node_state_text(base: str, flags: Iterable[str]) -> str:
    """The scontrol ``State=`` text (``IDLE+DRAIN``, ``DOWN+NOT_RESPONDING``) from a base state and upper-case flags."""
    ordered = sorted({f.upper() for f in flags}, key=lambda f: (_FLAG_RANK.get(f, len(_FLAG_RANK)), f))
    return "+".join([base.upper(), *ordered])


def _gpu_indices(state: ClusterState) -> dict[str, list[int]]:
    """NodeName -> GPU indices held by running jobs (from ``Job.gpus``)."""
    out: dict[str, list[int]] = defaultdict(list)
    for job in state.active.values():
        if job.state == "RUNNING" and job.gpus:
            for node, idx in job.gpus.items():
                out[node].extend(idx)
    return out


def scontrol_nodes(state: ClusterState) -> str:
    """``scontrol --details --oneliner show node``: one ``NodeName=...`` line per node of ``state.spec``.

    ``State`` from :attr:`NodeState.state` and :attr:`NodeState.flags` (:func:`node_state_text`); ``CPULoad`` and
    ``FreeMem`` are ``N/A`` on a NOT_RESPONDING node (slurmd does not answer); ``GresUsed`` carries the indices
    the running jobs hold (``Job.gpus``; the first ``alloc_gpus`` indices when the jobs do not say);
    ``Reason=<text> [<user>@<time>]`` when a reason is set.
    """
    tsc = _ts_memo()
    idx_by_node = _gpu_indices(state)
    version = state.spec.slurm_version
    lines = []
    for spec in state.spec.nodes:
        ns = state.nodes[spec.name]
        cpus = spec.cpus
        responding = "NOT_RESPONDING" not in {f.upper() for f in ns.flags}
        load = f"{ns.cpu_load:.2f}" if responding else "N/A"
        free = str(ns.free_mem_mib) if responding else "N/A"
        if spec.gpus:
            gtype = spec.gpu_type or "gpu"
            idx = sorted(set(idx_by_node.get(spec.name, ())))
            if len(idx) != ns.alloc_gpus:
                idx = list(range(ns.alloc_gpus))
            used_idx = _ranges(idx) if idx else "N/A"
            gres = f"gpu:{gtype}:{spec.gpus}(S:0-{spec.sockets - 1})"
            gres_used = f"gpu:{gtype}:{ns.alloc_gpus}(IDX:{used_idx})"
            cfg_gres = f",gres/gpu={spec.gpus},gres/gpu:{gtype}={spec.gpus}"
            alloc_gres = f",gres/gpu={ns.alloc_gpus},gres/gpu:{gtype}={ns.alloc_gpus}" if ns.alloc_gpus else ""
        else:
            gres, gres_used, cfg_gres, alloc_gres = "(null)", "gpu:0", "", ""
        features = ",".join(spec.features) or "(null)"
        alloc_tres = f"cpu={ns.alloc_cpus},mem={ns.alloc_mem_mib}M{alloc_gres}" if ns.alloc_cpus else ""
        reason = ""
        if ns.reason:
            when = ns.reason_time if ns.reason_time is not None else state.now
            reason = f" Reason={ns.reason} [{ns.reason_user or 'root'}@{tsc(when)}]"
        boot = ns.boot_time
        busy = ns.last_busy if ns.last_busy else boot
        lines.append(
            f"NodeName={spec.name} Arch=x86_64 CoresPerSocket={spec.cores_per_socket} CPUAlloc={ns.alloc_cpus} "
            f"CPUEfctv={cpus} CPUTot={cpus} CPULoad={load} AvailableFeatures={features} ActiveFeatures={features} "
            f"Gres={gres} GresDrain=N/A GresUsed={gres_used} NodeAddr={spec.name} NodeHostName={spec.name} "
            f"Version={version} OS={OS_TEXT} RealMemory={spec.real_memory_mib} AllocMem={ns.alloc_mem_mib} "
            f"FreeMem={free} Sockets={spec.sockets} Boards=1 State={node_state_text(ns.state, ns.flags)} "
            f"ThreadsPerCore={spec.threads_per_core} TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
            f"Partitions={','.join(spec.partitions)} BootTime={tsc(boot)} SlurmdStartTime={tsc(boot + 60)} "
            f"LastBusyTime={tsc(busy)} ResumeAfterTime=None "
            f"CfgTRES=cpu={cpus},mem={spec.real_memory_mib}M,billing={cpus}{cfg_gres} AllocTRES={alloc_tres} "
            f"CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s"
            f"{reason}"
        )
    return "\n".join(lines) + "\n"


def _limit(seconds: int) -> str:
    return "UNLIMITED" if seconds <= 0 else duration(seconds)


def scontrol_partitions(state: ClusterState) -> str:
    """``scontrol --oneliner show partition``: one ``PartitionName=...`` line per partition of ``state.spec``.

    ``TotalCPUs``/``TotalNodes``/``TRES`` are sums over the partition's nodes; ``MaxTime``/``DefaultTime`` from the
    spec (``UNLIMITED`` for 0); every partition is ``State=UP``.
    """
    specs = {n.name: n for n in state.spec.nodes}
    lines = []
    for p in state.spec.partitions:
        members = [specs[n] for n in p.nodes]
        cpus = sum(n.cpus for n in members)
        mem = sum(n.real_memory_mib for n in members)
        gpus = sum(n.gpus for n in members)
        tres = f"cpu={cpus},mem={mem}M,node={len(members)},billing={cpus}" + (f",gres/gpu={gpus}" if gpus else "")
        node_expr = compress_hostlist(p.nodes) or "(null)"
        lines.append(
            f"PartitionName={p.name} AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
            f"Default={'YES' if p.default else 'NO'} QoS=N/A DefaultTime={_limit(p.default_time_s)} "
            f"DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
            f"MaxTime={_limit(p.max_time_s)} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes={node_expr} "
            f"PriorityJobFactor=1 PriorityTier={p.priority_tier} RootOnly=NO ReqResv=NO OverSubscribe=NO "
            f"OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs={cpus} TotalNodes={len(members)} "
            f"SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
            f"TRES={tres}"
        )
    return "\n".join(lines) + "\n"


WEEK_S = 7 * 86400
MAINT_NAME = "maint_weekly"
MAINT_OFFSET_S = 5 * 86400 + 6 * 3600
"""Start of the weekly maintenance window within the Unix week (weeks start Thursday 00:00 UTC, so Tuesday
06:00 UTC)."""
MAINT_DURATION_S = 4 * 3600
MAINT_NODES = 4
"""The maintenance reservation holds the first nodes of the cluster (rolling firmware updates), not the whole
cluster, so the simulated scheduler, which does not honour reservations, stays plausible."""


def maintenance_window(now: float) -> tuple[float, float]:
    """``(start, end)`` of the weekly maintenance window in progress at ``now``, else of the next one."""
    week = math.floor((now - MAINT_OFFSET_S - MAINT_DURATION_S) / WEEK_S) + 1
    start = week * WEEK_S + MAINT_OFFSET_S
    return float(start), float(start + MAINT_DURATION_S)


def scontrol_reservations(state: ClusterState) -> str:
    """``scontrol --oneliner show reservation``: the one weekly maintenance reservation (:func:`maintenance_window`).

    It covers the first :data:`MAINT_NODES` nodes of the spec with ``Flags=MAINT,IGNORE_JOBS,WEEKLY,SPEC_NODES``;
    ``State=ACTIVE`` while ``now`` lies inside it. No nodes: ``No reservations in the system``.
    """
    nodes = state.spec.nodes[:MAINT_NODES]
    if not nodes:
        return "No reservations in the system\n"
    start, end = maintenance_window(state.now)
    cores = sum(n.cpus // n.threads_per_core for n in nodes)
    cpus = sum(n.cpus for n in nodes)
    active = "ACTIVE" if start <= state.now < end else "INACTIVE"
    return (
        f"ReservationName={MAINT_NAME} StartTime={ts(start)} EndTime={ts(end)} Duration={duration(end - start)} "
        f"Nodes={compress_hostlist(n.name for n in nodes)} NodeCnt={len(nodes)} CoreCnt={cores} Features=(null) "
        f"PartitionName=(null) Flags=MAINT,IGNORE_JOBS,WEEKLY,SPEC_NODES TRES=cpu={cpus} Users=root "
        f"Groups=(null) Accounts=(null) Licenses=(null) State={active} BurstBuffer=(null) Watts=n/a "
        f"MaxStartDelay=(null)\n"
    )


LICENSES: tuple[tuple[str, int, int], ...] = (("matlab", 50, 11), ("ansys", 20, 17))
"""``(name, Total, modulus)``: slurm.conf ``Licenses=matlab:50,ansys:20``. The state records no license
requests, so a running job holds one license of a kind when ``job_id % modulus == 0`` (capped at Total): a
deterministic share of the running jobs that follows the load."""


def license_use(state: ClusterState) -> dict[str, int]:
    """License name -> licenses held by running jobs (see :data:`LICENSES`)."""
    used = dict.fromkeys((name for name, _, _ in LICENSES), 0)
    for job in state.active.values():
        if job.state == "RUNNING":
            for name, _, mod in LICENSES:
                if job.job_id % mod == 0:
                    used[name] += 1
    return {name: min(used[name], total) for name, total, _ in LICENSES}


def scontrol_licenses(state: ClusterState) -> str:
    """``scontrol --oneliner show licenses``: the local licenses of :data:`LICENSES` with their use."""
    used = license_use(state)
    return "".join(
        f"LicenseName={name} Total={total} Used={used[name]} Free={total - used[name]} Reserved=0 Remote=no\n"
        for name, total, _ in LICENSES
    )


# --- sacct -----------------------------------------------------------------------------------------------------


def _derived_exit(steps: Sequence[JobStep]) -> str:
    """DerivedExitCode: the highest ``exit:signal`` over the numbered (srun) steps, ``0:0`` without any."""
    best = (0, 0)
    for s in steps:
        if s.step.isdigit() and (s.exit_code, s.signal) > best:
            best = (s.exit_code, s.signal)
    return f"{best[0]}:{best[1]}"


_SI = {f: i for i, f in enumerate(SACCT_FIELDS)}  # a column dropped from SACCT_FIELDS fails loudly (KeyError)


def sacct(state: ClusterState, start: float, end: float) -> str:
    """The accounting collector's sacct output for the jobs that ended in ``[start, end]``.

    Columns :data:`~nomade.exporter.parsers.sacct.SACCT_FIELDS`, delimiter 0x1F, no header. Per job the allocation
    line (``JobID`` ``<array>_<task>`` for array tasks, ``State`` ``CANCELLED by <uid>`` for cancelled jobs,
    ``ReqMem`` the job's total ``--mem`` x nodes, ``TotalCPU`` = ``cpu_user_s + cpu_system_s``, ``AllocTRES``
    empty and ``NodeList`` ``None assigned`` when it never started) and then one line per :class:`JobStep`
    (``MaxRSS`` in KiB with a ``K`` suffix, as sacct prints it; the batch step on the first node only).
    Unix seconds in, local ``SLURM_TIME_FORMAT=standard`` times out.
    """
    tsc = _ts_memo()
    d = SACCT_DELIMITER
    uids = state.spec.uids
    out: list[str] = []
    for job in state.finished_between(start, end):
        started = job.start_time is not None and bool(job.nodes)
        job_start = job.start_time if job.start_time is not None else job.end_time
        job_end = job.end_time if job.end_time is not None else state.now
        # SLURM keeps whole seconds: Elapsed = End - Start of the printed times.
        elapsed = max(0, int(job_end) - int(job_start)) if started else 0  # type: ignore[arg-type]
        nnodes = _job_nodes(job)
        shown = f"{job.array_job_id}_{job.array_task_id}" if job.array_job_id is not None else str(job.job_id)
        st = job.state
        if st == "CANCELLED":
            st = f"CANCELLED by {uids.get(job.user, 0)}"
        mem_total = job.req_mem_mib * nnodes
        req_tres = _sacct_tres(job.req_cpus, mem_total, nnodes, job.req_gpus)
        nodelist = compress_hostlist(job.nodes) if started else "None assigned"
        row = {
            "JobIDRaw": str(job.job_id),
            "JobID": shown,
            "User": job.user,
            "Account": job.account,
            "Partition": job.partition,
            "State": st,
            "ExitCode": f"{job.exit_code}:{job.signal}",
            "DerivedExitCode": _derived_exit(job.steps),
            "Submit": tsc(job.submit_time),
            "Start": tsc(job_start) if started else "None",  # type: ignore[arg-type]
            "End": tsc(job_end),
            "Elapsed": duration(elapsed),
            "Timelimit": duration(job.time_limit_s),
            "AllocCPUS": str(job.req_cpus if started else 0),
            "ReqCPUS": str(job.req_cpus),
            "ReqMem": f"{mem_total}M",
            "MaxRSS": "",
            "TotalCPU": cpu_time(job.cpu_user_s + job.cpu_system_s),
            "AllocTRES": req_tres if started else "",
            "ReqTRES": req_tres,
            "NNodes": str(nnodes),
            "NodeList": nodelist,
            "JobName": job.name,
        }
        out.append(d.join([row[f] for f in SACCT_FIELDS]))
        if not started:
            continue
        first = job.nodes[0]
        per_node_cpus = max(1, len(job.cores.get(first, ())) or job.req_cpus // max(1, nnodes))
        s_start = row["Start"]
        # Step lines share most columns: one template list per job, a few positions set per step (fast path).
        base = ["" for _ in SACCT_FIELDS]
        base[_SI["Account"]] = job.account
        base[_SI["Submit"]] = base[_SI["Start"]] = s_start
        base[_SI["End"]] = row["End"]
        base[_SI["Elapsed"]] = row["Elapsed"]
        for step in job.steps:
            sid = step.step
            batch = sid == "batch"
            cpus = str(per_node_cpus if batch else job.req_cpus)
            n = 1 if batch else nnodes
            line = base.copy()
            line[_SI["JobIDRaw"]] = f"{job.job_id}.{sid}"
            line[_SI["JobID"]] = f"{shown}.{sid}"
            line[_SI["State"]] = step.state
            line[_SI["ExitCode"]] = f"{step.exit_code}:{step.signal}"
            line[_SI["AllocCPUS"]] = line[_SI["ReqCPUS"]] = cpus
            line[_SI["MaxRSS"]] = f"{step.max_rss_bytes // 1024}K" if step.max_rss_bytes else "0"
            line[_SI["TotalCPU"]] = cpu_time(step.cpu_s)
            line[_SI["AllocTRES"]] = f"cpu={cpus},mem={job.req_mem_mib * n}M,node={n}"
            line[_SI["NNodes"]] = str(n)
            line[_SI["NodeList"]] = first if batch else nodelist
            line[_SI["JobName"]] = sid if sid in ("batch", "extern") else job.name
            out.append(d.join(line))
    return "\n".join(out) + ("\n" if out else "")


# --- sshare ----------------------------------------------------------------------------------------------------

_TRES_ZERO_TAIL = "energy=0,node=0,billing={b},fs/disk=0,vmem=0,pages=0,gres/gpu={g}"


def _tres_minutes(cpu_s: float, mem_mib_s: float, node_s: float, gpu_s: float) -> str:
    """A TRES-minute list as sshare prints it (``GrpTRESRaw``/``TRESRunMins``): seconds / 60, truncated."""
    c = int(cpu_s // 60)
    return (
        f"cpu={c},mem={int(mem_mib_s // 60)},energy=0,node={int(node_s // 60)},billing={c},fs/disk=0,vmem=0,"
        f"pages=0,gres/gpu={int(gpu_s // 60)}"
    )


def sshare_figures(state: ClusterState) -> list[dict[str, object]]:
    """The association rows sshare prints, as numbers, in print order.

    Fair Tree semantics (sshare(1), ``src/plugins/priority/multifactor/fair_tree.c``).

    Each row: ``account``, ``user`` (``""`` for accounts and root), ``depth``, ``raw_shares`` (``None`` for root),
    ``norm_shares`` (shares / siblings' shares; ``None`` for root), ``raw_usage`` (``state.usage``; an account's is
    its own ``(account, "")`` entry, else the sum of its users), ``norm_usage`` (/ cluster total),
    ``effective_usage`` (/ the parent's usage), ``fairshare`` (users only: Fair Tree rank, 1 for the most
    under-served, (n - rank) / n), ``level_fs`` (norm_shares / effective_usage, +inf without usage), ``run``
    (cpu, mem MiB, node, gpu TRES-seconds of the remaining time limit of running jobs).
    """
    usage = state.usage
    accounts = state.spec.accounts
    acct_raw: dict[str, float] = {}
    for a in accounts:
        own = usage.get((a.name, ""))
        acct_raw[a.name] = own if own is not None else sum(usage.get((a.name, u), 0.0) for u in a.users)
    total = sum(acct_raw.values())
    run: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for job in state.active.values():
        if job.state != "RUNNING" or job.start_time is None:
            continue
        left = max(0.0, job.start_time + job.time_limit_s - state.now)
        n = _job_nodes(job)
        for key in ((job.account, job.user), (job.account, "")):
            r = run[key]
            r[0] += job.req_cpus * left
            r[1] += job.req_mem_mib * n * left
            r[2] += n * left
            r[3] += job.req_gpus * left
    sibling_shares = sum(a.shares for a in accounts) + 1  # the root user association is a sibling (RawShares 1)
    rows: list[dict[str, object]] = []
    all_run = [sum(r[i] for k, r in run.items() if k[1] == "") for i in range(4)]
    rows.append({"account": "root", "user": "", "depth": 0, "raw_shares": None, "norm_shares": None,
                 "raw_usage": total, "norm_usage": None, "effective_usage": 1.0, "fairshare": None,
                 "level_fs": None, "run": all_run})  # fmt: skip
    rows.append({"account": "root", "user": "root", "depth": 1, "raw_shares": 1, "norm_shares": 1 / sibling_shares,
                 "raw_usage": 0.0, "norm_usage": 0.0, "effective_usage": 0.0, "fairshare": None,
                 "level_fs": math.inf, "run": [0.0] * 4})  # fmt: skip
    user_rows: list[dict[str, object]] = []
    for a in accounts:
        raw = acct_raw[a.name]
        norm_shares = a.shares / sibling_shares
        eff = raw / total if total else 0.0
        acct_lfs = norm_shares / eff if eff else math.inf
        rows.append({"account": a.name, "user": "", "depth": 1, "raw_shares": a.shares, "norm_shares": norm_shares,
                     "raw_usage": raw, "norm_usage": eff, "effective_usage": eff, "fairshare": None,
                     "level_fs": acct_lfs, "run": run.get((a.name, ""), [0.0] * 4)})  # fmt: skip
        n_users = len(a.users)
        users_raw = {u: usage.get((a.name, u), 0.0) for u in a.users}
        users_total = sum(users_raw.values())
        for u in a.users:
            uraw = users_raw[u]
            ushare = 1 / n_users
            ueff = uraw / users_total if users_total else 0.0
            row = {"account": a.name, "user": u, "depth": 2, "raw_shares": 1, "norm_shares": ushare,
                   "raw_usage": uraw, "norm_usage": uraw / total if total else 0.0, "effective_usage": ueff,
                   "fairshare": None, "level_fs": ushare / ueff if ueff else math.inf, "acct_lfs": acct_lfs,
                   "run": run.get((a.name, u), [0.0] * 4)}  # fmt: skip
            rows.append(row)
            user_rows.append(row)
    # Fair Tree: users ranked by (account LevelFS, user LevelFS), highest first; ties share the better rank.
    ranked = sorted(user_rows, key=lambda r: (-r["acct_lfs"], -r["level_fs"]))  # type: ignore[operator]
    n = len(ranked)
    prev: tuple[object, object] | None = None
    value = 1.0
    for i, r in enumerate(ranked):
        key = (r["acct_lfs"], r["level_fs"])
        if key != prev:
            value = (n - i) / n
            prev = key
        r["fairshare"] = value
    for r in user_rows:
        del r["acct_lfs"]
    return rows


def sshare(state: ClusterState) -> str:
    """``sshare --all --parsable2 --format=<SSHARE_FIELDS>`` from :func:`sshare_figures`.

    Layout as ``tests/fixtures/sshare/sshare-fairtree-multifactor-25.05.txt``: tree depth as leading spaces in
    ``Account``, ``RawUsage`` an integer, ratios ``%f``, empty ``FairShare`` on account rows, ``GrpTRESMins``
    empty (no limits), ``GrpTRESRaw`` = RawUsage as cpu/billing minutes, ``TRESRunMins`` from running jobs.
    """
    if tuple(SSHARE_FIELDS)[:3] != ("Account", "User", "Partition"):
        raise RuntimeError("SSHARE_FIELDS changed: update sim.render_slurm.sshare")
    lines = ["|".join(SSHARE_FIELDS)]
    for r in sshare_figures(state):
        raw = float(r["raw_usage"])  # type: ignore[arg-type]
        run = r["run"]
        vals = {
            "Account": " " * int(r["depth"]) + str(r["account"]),  # type: ignore[call-overload]
            "User": str(r["user"]),
            "Partition": "",
            "RawShares": "" if r["raw_shares"] is None else str(r["raw_shares"]),
            "NormShares": "" if r["norm_shares"] is None else _f6(float(r["norm_shares"])),  # type: ignore[arg-type]
            "RawUsage": str(int(raw)),
            "NormUsage": "" if r["norm_usage"] is None else _f6(float(r["norm_usage"])),  # type: ignore[arg-type]
            "EffectvUsage": _f6(float(r["effective_usage"])),  # type: ignore[arg-type]
            "FairShare": "" if r["fairshare"] is None else _f6(float(r["fairshare"])),  # type: ignore[arg-type]
            "LevelFS": "" if r["level_fs"] is None else _f6(float(r["level_fs"])),  # type: ignore[arg-type]
            "GrpTRESMins": "",
            "GrpTRESRaw": _tres_minutes(raw, 0.0, 0.0, 0.0),
            "TRESRunMins": _tres_minutes(*run),  # type: ignore[misc]
        }
        lines.append("|".join(vals[f] for f in SSHARE_FIELDS))
    return "\n".join(lines) + "\n"


# --- sprio -----------------------------------------------------------------------------------------------------

PRIORITY_WEIGHT_AGE = 1000
PRIORITY_MAX_AGE_S = 7 * 86400
PRIORITY_WEIGHT_PARTITION = 1000
PRIORITY_WEIGHT_JOBSIZE = 100


def priority_factors(state: ClusterState, job: Job, tier_max: int, partition: str | None = None) -> dict[str, int]:
    """Weighted sprio factors of a pending job that sum exactly to ``job.priority``.

    ``age`` = 1000 x (queued time / 7 days, at most 1) and ``partition`` = 1000 x tier of ``partition`` (default:
    the job's first) / highest tier (PriorityWeightAge/Partition, PriorityMaxAge = 7-0), ``jobsize`` = 100 x
    requested share of the cluster's CPUs; ``fairshare`` is the rest of ``job.priority`` (the engine's priority is
    the truth; when those three already exceed it they are scaled down to fit and fairshare is 0). ``site``,
    ``assoc``, ``qos``, ``nice`` are 0.
    """
    eligible = job.eligible_time if job.eligible_time is not None else job.submit_time
    age = int(PRIORITY_WEIGHT_AGE * min(1.0, max(0.0, state.now - eligible) / PRIORITY_MAX_AGE_S))
    part_name = partition if partition is not None else job.partition.split(",")[0]
    tier = next((p.priority_tier for p in state.spec.partitions if p.name == part_name), 1)
    part = int(PRIORITY_WEIGHT_PARTITION * tier / max(1, tier_max))
    total_cpus = sum(n.cpus for n in state.spec.nodes) or 1
    size = int(PRIORITY_WEIGHT_JOBSIZE * min(1.0, job.req_cpus / total_cpus))
    prio = max(0, int(job.priority))
    base = age + part + size
    if base > prio:
        scale = prio / base if base else 0.0
        age, part = int(age * scale), int(part * scale)
        size = prio - age - part
        return {"age": age, "partition": part, "jobsize": size, "fairshare": 0}
    return {"age": age, "partition": part, "jobsize": size, "fairshare": prio - base}


def sprio(state: ClusterState) -> str:
    """``sprio --format=%i|%r|%u|%Y|%S|%A|%B|%F|%J|%P|%Q|%N|%T``: one line per pending job and partition.

    A job array's pending tasks are one line (the id of :func:`array_group_id`; a lone pending task shows its own
    id), as sprio lists the meta record. Factors from :func:`priority_factors`, ``PRIORITY`` = ``job.priority``,
    ``TRES`` empty (no TRES weights).
    """
    tier_max = max((p.priority_tier for p in state.spec.partitions), default=1)
    lines = ["JOBID|PARTITION|USER|PRIORITY|SITE|AGE|ASSOC|FAIRSHARE|JOBSIZE|PARTITION|QOS|NICE|TRES"]
    arrays: dict[int, list[Job]] = defaultdict(list)
    for job in state.active.values():
        if job.state == "PENDING" and job.array_job_id is not None:
            arrays[job.array_job_id].append(job)
    seen_arrays: set[int] = set()
    for job in state.active.values():
        if job.state != "PENDING":
            continue
        job_id = job.job_id
        if job.array_job_id is not None:
            if job.array_job_id in seen_arrays:
                continue
            seen_arrays.add(job.array_job_id)
            group = arrays[job.array_job_id]
            job_id = array_group_id(state, job.array_job_id, group) if len(group) > 1 else job.job_id
        for part in job.partition.split(","):
            f = priority_factors(state, job, tier_max, part)
            lines.append(
                f"{job_id}|{part}|{job.user}|{max(0, int(job.priority))}|0|{f['age']}|0|{f['fairshare']}|"
                f"{f['jobsize']}|{f['partition']}|0|0|"
            )
    return "\n".join(lines) + "\n"


# --- sdiag -----------------------------------------------------------------------------------------------------

# RPC message type numbers (src/common/slurm_protocol_defs.h, as in tests/fixtures/sdiag).
RPC_TYPE_IDS: dict[str, int] = {
    "MESSAGE_NODE_REGISTRATION_STATUS": 1002,
    "REQUEST_NODE_REGISTRATION_STATUS": 1001,
    "REQUEST_LICENSE_INFO": 1021,
    "REQUEST_JOB_INFO": 2003,
    "REQUEST_JOB_INFO_SINGLE": 2021,
    "REQUEST_NODE_INFO": 2007,
    "REQUEST_PARTITION_INFO": 2009,
    "REQUEST_SHARE_INFO": 2022,
    "REQUEST_RESERVATION_INFO": 2024,
    "REQUEST_PRIORITY_FACTORS": 2026,
    "REQUEST_STATS_INFO": 2035,
    "REQUEST_RESOURCE_ALLOCATION": 4001,
    "REQUEST_SUBMIT_BATCH_JOB": 4003,
    "REQUEST_JOB_READY": 4019,
    "REQUEST_HET_JOB_ALLOC_INFO": 4027,
    "REQUEST_JOB_STEP_CREATE": 5001,
    "REQUEST_CANCEL_JOB_STEP": 5005,
    "REQUEST_COMPLETE_JOB_ALLOCATION": 5017,
    "REQUEST_COMPLETE_BATCH_SCRIPT": 5018,
    "REQUEST_STEP_COMPLETE": 5016,
    "REQUEST_KILL_JOB": 5032,
    "REQUEST_TERMINATE_JOB": 6011,
    "MESSAGE_EPILOG_COMPLETE": 6012,
}


def _ctime(t: float) -> str:
    """A time as sdiag prints it: ``slurm_ctime2`` local time plus `` (<epoch>)`` (23.x+)."""
    return f"{time.strftime('%a %b %d %H:%M:%S %Y', time.localtime(t))} ({int(t)})"


def sdiag(state: ClusterState) -> str:
    """``sdiag`` text report from :attr:`ClusterState.scheduler` (layout of ``_print_stats`` in src/sdiag/sdiag.c).

    ``Jobs pending``/``running`` count ``state.active`` (each array task once); ``Mean cycle`` lines only when a
    cycle ran and ``Cycles per minute`` only when the statistics are older than a minute, as sdiag does; the RPC
    tables are sorted by count (message type ids from :data:`RPC_TYPE_IDS`, 0 when unknown; user ids from
    ``spec.uids``, root 0).
    """
    s = state.scheduler
    now = state.now
    pending = sum(1 for j in state.active.values() if j.state == "PENDING")
    running = sum(1 for j in state.active.values() if j.state == "RUNNING")
    age = now - s.stats_reset
    out = [
        "*******************************************************",
        f"sdiag output at {_ctime(now)}",
        f"Data since      {_ctime(s.stats_reset)}",
        "*******************************************************",
        f"Server thread count:  {s.server_thread_count}",
        f"Agent queue size:     {s.agent_queue_size}",
        "Agent count:          0",
        "Agent thread count:   0",
        "DBD Agent queue size: 0",
        "",
        f"Jobs submitted: {s.jobs_submitted}",
        f"Jobs started:   {s.jobs_started}",
        f"Jobs completed: {s.jobs_completed}",
        f"Jobs canceled:  {s.jobs_canceled}",
        f"Jobs failed:    {s.jobs_failed}",
        "",
        f"Job states ts:  {_ctime(now)}",
        f"Jobs pending:   {pending}",
        f"Jobs running:   {running}",
        "",
        "Main schedule statistics (microseconds):",
        f"\tLast cycle:   {s.last_cycle_us}",
        f"\tMax cycle:    {s.max_cycle_us}",
        f"\tTotal cycles: {s.cycles}",
    ]
    if s.cycles:
        out += [f"\tMean cycle:   {s.mean_cycle_us}", f"\tMean depth cycle:  {s.last_depth}"]
    if age > 60:
        out.append(f"\tCycles per minute: {int(s.cycles / (age / 60))}")
    out += [
        f"\tLast queue length: {pending}",
        "",
        "Backfilling stats",
        f"\tTotal backfilled jobs (since last slurm start): {s.bf_backfilled_jobs}",
        f"\tTotal backfilled jobs (since last stats cycle start): {s.bf_backfilled_jobs}",
        "\tTotal backfilled heterogeneous job components: 0",
        f"\tTotal cycles: {s.bf_cycles}",
        f"\tLast cycle when: {_ctime(now) if s.bf_cycles else 'N/A'}",
        f"\tLast cycle: {s.bf_last_cycle_us}",
        f"\tMax cycle:  {s.bf_max_cycle_us}",
    ]
    if s.bf_cycles:
        out.append(f"\tMean cycle: {s.bf_mean_cycle_us}")
    out += [f"\tLast depth cycle: {s.bf_last_depth}", f"\tLast depth cycle (try sched): {s.bf_last_depth}"]
    if s.bf_cycles:
        out += [f"\tDepth Mean: {s.bf_last_depth}", f"\tDepth Mean (try depth): {s.bf_last_depth}"]
    out += [
        f"\tLast queue length: {pending}",
        "\tLast table size: 1",
        "",
        "Remote Procedure Call statistics by message type",
    ]
    for name, (count, total) in sorted(s.rpc_by_type.items(), key=lambda kv: (-kv[1][0], kv[0])):
        ave = total // count if count else 0
        out.append(
            f"\t{name:<40s}({RPC_TYPE_IDS.get(name, 0):5d}) count:{count:<6d} ave_time:{ave:<6d} total_time:{total}"
        )
    out += ["", "Remote Procedure Call statistics by user"]
    uids = state.spec.uids
    for user, (count, total) in sorted(s.rpc_by_user.items(), key=lambda kv: (-kv[1][0], kv[0])):
        ave = total // count if count else 0
        uid = 0 if user == "root" else uids.get(user, 0)
        out.append(f"\t{user:<16s}({uid:8d}) count:{count:<6d} ave_time:{ave:<6d} total_time:{total}")
    out += ["", "Pending RPC statistics", "\tNo pending RPCs"]
    return "\n".join(out) + "\n"


# --- sacctmgr --------------------------------------------------------------------------------------------------


def sacctmgr_associations(state: ClusterState) -> str:
    """Render ``sacctmgr --readonly --parsable2 show associations format=<ASSOC_FIELDS>``.

    Root, root's user, then each account and its users, no limits set (empty fields: "no limit"), as in
    ``tests/fixtures/sacctmgr/lab-*``.
    """
    c = state.spec.name
    empty = "|" * 8
    lines = ["Cluster|Account|User|Partition|GrpTRES|GrpJobs|GrpSubmit|GrpWall|MaxTRES|MaxJobs|MaxSubmit|MaxWall"]
    lines.append(f"{c}|root||{empty}")
    lines.append(f"{c}|root|root|{empty}")
    for a in state.spec.accounts:
        lines.append(f"{c}|{a.name}||{empty}")
        lines.extend(f"{c}|{a.name}|{u}|{empty}" for u in a.users)
    return "\n".join(lines) + "\n"
