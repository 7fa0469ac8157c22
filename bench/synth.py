"""Synthetic SLURM controller outputs in the exact formats the NØMADE controller collectors ask for.

One call to :func:`generate` builds a consistent, seeded cluster of ``nodes`` nodes and a workload of ``jobs``
queued jobs plus ``sacct_jobs`` jobs that finished within the accounting window, and renders the four outputs:

* ``scontrol --details --oneliner show node``: one ``NodeName=...`` line per node in the 22.05-23.x key order
  (``GresUsed`` from ``--details``); a realistic state mix: mixed, allocated, idle, drained (``IDLE+DRAIN``),
  draining (``MIXED+DRAIN``, ``ALLOCATED+DRAIN``), ``down*`` (``DOWN+NOT_RESPONDING``), admin-down
  (``DOWN+DRAIN``), powered-down (``IDLE+POWERED_DOWN``), completing, reserved, never-registered
  (``UNKNOWN+NOT_RESPONDING``); free-text ``Reason=... [user@time]`` on drained and down nodes; typed GPU
  GRES (``gpu:a100:4(S:0-1)``, ``GresUsed=gpu:a100:2(IDX:0-1)``) on GPU nodes.
* ``scontrol --oneliner show partition``: cpu (default), long, debug, gpu, bigmem, preempt (every node) and an
  empty, DOWN ``maint`` partition.
* ``squeue --all --Format=<field>:<0x1F>,...``: the header line and one 0x1F-terminated line per job in the
  column order of :data:`nomade.exporter.parsers.squeue.SQUEUE_FIELDS`: running, pending (many reasons,
  dependencies with no eligible time, ``--begin`` in the future, multi-partition ``cpu,long`` requests),
  grouped pending array lines (``1-200%20``), running array tasks, completing, configuring and suspended jobs,
  GPU TRES on GPU jobs.
* ``sacct --parsable2 --noheader --delimiter=<0x1F> --format=<SACCT_FIELDS>``: for every finished job its
  allocation line and step lines (``.batch``, ``.extern``, ``.0`` and sometimes ``.1``; none for jobs that never
  started), array tasks (``JobID`` ``A_i`` with their own ``JobIDRaw``), and a failure-class mix close to a
  busy site's: success, failed (non-zero exit), out-of-memory (job state and OOM-killed step), timeout,
  cancelled by a user (some before starting), segfault (``139:0`` and ``0:11``), abort (``134:0``), killed by a
  signal, node failure, preemption, boot failure and deadline. End times lie inside ``lookback`` seconds
  before ``now`` so that every job is in the collector's window.

The expected counts (:class:`Expected`) are what the real parsers must return for the texts; the unit test
``tests/unit/test_bench_synth.py`` checks them. The formats follow the hand-written fixtures under
``tests/fixtures/{scontrol,squeue,sacct}`` and the parsers' docstrings; the column lists are imported from the
parsers, so a change there shows up here (an unknown column raises :class:`KeyError`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS
from nomade.exporter.parsers.squeue import SQUEUE_FIELDS, US

# The low-level SLURM text formats are shared with the simulated cluster's renderers (one implementation).
from nomade.sim.render_slurm import SQUEUE_TITLES, cpu_time, duration, ts
from nomade.sim.render_slurm import hostlist_range as hostlist

OS_TEXT = "Linux 4.18.0-513.9.1.el8_9.x86_64 #1 SMP Thu Nov 16 10:29:54 EST 2023"
VERSION = "23.02.7"

# (scontrol State, weight). Base states and flags as scontrol -o prints them (node_info.c).
NODE_STATES: tuple[tuple[str, float], ...] = (
    ("MIXED", 50),
    ("ALLOCATED", 24),
    ("IDLE", 11),
    ("IDLE+DRAIN", 3),
    ("MIXED+DRAIN", 2),
    ("ALLOCATED+DRAIN", 1),
    ("DOWN+NOT_RESPONDING", 1.5),
    ("DOWN+DRAIN", 0.5),
    ("DOWN+DRAIN+NOT_RESPONDING", 0.5),
    ("IDLE+POWERED_DOWN", 2),
    ("MIXED+COMPLETING", 1),
    ("ALLOCATED+COMPLETING", 0.5),
    ("IDLE+MAINTENANCE+RESERVED", 1),
    ("IDLE+NOT_RESPONDING", 0.3),
    ("UNKNOWN+NOT_RESPONDING", 0.2),
)

DRAIN_REASONS = (
    "Kill task failed",
    "NHC: check_fs_mount: /scratch not mounted",
    "NHC: check_hw_eth: eth0 link down",
    "bad DIMM slot B2, ticket #4411",
    "xid 79 on GPU 2",
    "gres/gpu count reported lower than configured (3 < 4)",
    "Node unexpectedly rebooted boot_time=1717000000 last response=1716999000",
    "Prolog error",
    "batch job complete failure",
    "kernel update 2024-06, see maint calendar",
    "ib0 errors: symbol errors > 100",
    "Low RealMemory (reported:191000 < 100.00% of configured:192000)",
)

# (reason text as squeue prints it, weight, eligible: "now" | "none" | "future")
PENDING_REASONS: tuple[tuple[str, float, str], ...] = (
    ("Priority", 45, "now"),
    ("Resources", 12, "now"),
    ("Dependency", 10, "none"),
    ("QOSMaxJobsPerUserLimit", 6, "now"),
    ("AssocGrpCPULimit", 4, "now"),
    ("AssocGrpCPURunMinutesLimit", 2, "now"),
    ("ReqNodeNotAvail, UnavailableNodes:{nodes}", 3, "now"),
    ("ReqNodeNotAvail, Reserved for maintenance", 1, "now"),
    ("BeginTime", 3, "future"),
    ("JobHeldUser", 2, "none"),
    ("JobHeldAdmin", 1, "none"),
    ("PartitionTimeLimit", 1, "now"),
    ("DependencyNeverSatisfied", 1, "none"),
    ("launch failed requeued held", 0.5, "none"),
)

# Failure class -> weight (share of finished jobs in the sacct window).
FAILURE_MIX: tuple[tuple[str, float], ...] = (
    ("success", 70),
    ("failed", 7),
    ("out_of_memory", 4.5),
    ("timeout", 5),
    ("cancelled", 6),
    ("segfault", 1),
    ("abort", 0.5),
    ("signal", 0.5),
    ("node_fail", 0.5),
    ("preempted", 1),
    ("boot_fail", 0.1),
    ("deadline", 0.1),
)

JOB_NAMES = (
    "run.sh",
    "train_resnet50",
    "md_equil",
    "vasp_relax",
    "snakejob.align.42.sh",
    "interactive",
    "wrap",
    "cp2k_opt",
    "gromacs-prod",
    "nextflow_task",
    "R_analysis",
    "post process",
)


@dataclass
class Expected:
    """Counts the parsers must find in a :class:`Workload` (zero parse issues expected).

    Attributes:
        nodes: node records.
        node_states: base state (lower case) -> nodes.
        node_flags: flag (lower case) -> nodes carrying it.
        nodes_with_reason: nodes with a ``Reason``.
        gpu_nodes: nodes with a ``gpu`` GRES.
        partitions: partition records.
        squeue_lines: squeue data lines (records).
        queue_jobs: jobs those lines stand for (a grouped pending array line counts its tasks).
        queue_jobs_by_state: state (lower case) -> jobs.
        pending_array_lines: grouped pending array lines.
        multi_partition_lines: pending lines asking for several partitions.
        sacct_jobs: allocation lines (= finished jobs, all in the window).
        sacct_steps: step lines.
        failure_classes: failure class -> jobs.

    """

    nodes: int = 0
    node_states: Counter[str] = field(default_factory=Counter)
    node_flags: Counter[str] = field(default_factory=Counter)
    nodes_with_reason: int = 0
    gpu_nodes: int = 0
    partitions: int = 0
    squeue_lines: int = 0
    queue_jobs: int = 0
    queue_jobs_by_state: Counter[str] = field(default_factory=Counter)
    pending_array_lines: int = 0
    multi_partition_lines: int = 0
    sacct_jobs: int = 0
    sacct_steps: int = 0
    failure_classes: Counter[str] = field(default_factory=Counter)


@dataclass
class Workload:
    """The four command outputs and what they contain."""

    nodes_text: str
    partitions_text: str
    squeue_text: str
    sacct_text: str
    expected: Expected
    now: float


@dataclass(frozen=True)
class _Node:
    name: str
    kind: str  # cpu | gpu | bigmem
    partitions: tuple[str, ...]


def _layout(n: int) -> tuple[list[_Node], dict[str, tuple[str, int, int, int]], dict[str, list[str]]]:
    """Node names and partition membership for ``n`` nodes: 85 % CPU, 10 % GPU, 5 % big-memory nodes."""
    n_gpu = max(1, round(n * 0.10)) if n >= 3 else 0
    n_big = max(1, round(n * 0.05)) if n >= 3 else 0
    n_cpu = n - n_gpu - n_big
    width = max(4, len(str(n)))
    n_long = max(1, round(n_cpu * 0.30))
    n_debug = max(1, round(n_cpu * 0.02))
    nodes: list[_Node] = []
    for i in range(1, n_cpu + 1):
        parts = ["cpu"]
        if i <= n_debug:
            parts.append("debug")
        if i <= n_long:
            parts.append("long")
        parts.append("preempt")
        nodes.append(_Node(f"c{i:0{width}d}", "cpu", tuple(parts)))
    for i in range(1, n_gpu + 1):
        nodes.append(_Node(f"g{i:0{width}d}", "gpu", ("gpu", "preempt")))
    for i in range(1, n_big + 1):
        nodes.append(_Node(f"m{i:0{width}d}", "bigmem", ("bigmem", "preempt")))
    ranges = {
        "cpu": ("c", width, 1, n_cpu),
        "debug": ("c", width, 1, n_debug),
        "long": ("c", width, 1, n_long),
        "gpu": ("g", width, 1, n_gpu),
        "bigmem": ("m", width, 1, n_big),
    }
    members: dict[str, list[str]] = {}
    for node in nodes:
        for p in node.partitions:
            members.setdefault(p, []).append(node.name)
    return nodes, ranges, members


_HW = {  # kind -> (sockets, cores per socket, RealMemory MiB, gres type, gpus)
    "cpu": (2, 32, 256000, "", 0),
    "gpu": (2, 24, 512000, "a100", 4),
    "bigmem": (4, 24, 2048000, "", 0),
}


def _node_line(rng: random.Random, node: _Node, state: str, now: float, idx: int) -> tuple[str, bool]:
    sockets, cores, real_mem, gtype, ngpu = _HW[node.kind]
    if node.kind == "gpu" and idx % 2:
        gtype, ngpu = "h100", 8
    cpus = sockets * cores
    base, *flags = state.split("+")
    responding = "NOT_RESPONDING" not in flags and base != "UNKNOWN"
    powered = "POWERED_DOWN" not in flags
    if base == "ALLOCATED":
        alloc = cpus
    elif base == "MIXED":
        alloc = rng.randint(1, cpus - 1)
    else:
        alloc = 0
    alloc_mem = 0 if alloc == 0 else min(real_mem, int(real_mem * alloc / cpus * rng.uniform(0.5, 1.2)) // 1000 * 1000)
    gpu_used = 0 if alloc == 0 or not ngpu else rng.randint(1, ngpu)
    load = f"{max(0.0, alloc + rng.uniform(-2, 2)):.2f}" if responding and powered else "N/A"
    free = str(max(1024, real_mem - alloc_mem - rng.randint(2000, 20000))) if responding and powered else "N/A"
    boot = now - rng.uniform(2, 60) * 86400
    boot_s = ts(boot) if base != "UNKNOWN" else "None"
    slurmd_s = ts(boot + rng.uniform(60, 600)) if base != "UNKNOWN" else "None"
    busy_s = ts(now - rng.uniform(0, 3600)) if base != "UNKNOWN" else "Unknown"
    if ngpu:
        gres = f"gpu:{gtype}:{ngpu}(S:0-{sockets - 1})"
        gres_used = f"gpu:{gtype}:{gpu_used}(IDX:{f'0-{gpu_used - 1}' if gpu_used > 1 else '0' if gpu_used else 'N/A'})"
        cfg_gres = f",gres/gpu={ngpu},gres/gpu:{gtype}={ngpu}"
        alloc_gres = f",gres/gpu={gpu_used},gres/gpu:{gtype}={gpu_used}" if gpu_used else ""
    else:
        gres, gres_used, cfg_gres, alloc_gres = "(null)", "gpu:0", "", ""
    features = {"cpu": "cpu,icelake,ib", "gpu": f"gpu,{gtype},ib", "bigmem": "bigmem,cascadelake"}[node.kind]
    alloc_tres = f"cpu={alloc},mem={alloc_mem}M{alloc_gres}" if alloc else ""
    reason = ""
    has_reason = False
    if base == "DOWN" and "NOT_RESPONDING" in flags and "DRAIN" not in flags:
        reason = f" Reason=Not responding [slurm@{ts(now - rng.uniform(600, 86400 * 3))}]"
        has_reason = True
    elif "DRAIN" in flags or (base == "DOWN"):
        text = rng.choice(DRAIN_REASONS)
        user = rng.choice(("root", "slurm", "admin1", "hpcops"))
        reason = f" Reason={text} [{user}@{ts(now - rng.uniform(600, 86400 * 14))}]"
        has_reason = True
    line = (
        f"NodeName={node.name} Arch=x86_64 CoresPerSocket={cores} CPUAlloc={alloc} CPUEfctv={cpus} CPUTot={cpus} "
        f"CPULoad={load} AvailableFeatures={features} ActiveFeatures={features} Gres={gres} GresDrain=N/A "
        f"GresUsed={gres_used} NodeAddr={node.name} NodeHostName={node.name} Version={VERSION} OS={OS_TEXT} "
        f"RealMemory={real_mem} AllocMem={alloc_mem} FreeMem={free} Sockets={sockets} Boards=1 State={state} "
        f"ThreadsPerCore=1 TmpDisk=800000 Weight=1 Owner=N/A MCS_label=N/A Partitions={','.join(node.partitions)} "
        f"BootTime={boot_s} SlurmdStartTime={slurmd_s} LastBusyTime={busy_s} ResumeAfterTime=None "
        f"CfgTRES=cpu={cpus},mem={real_mem}M,billing={cpus}{cfg_gres} AllocTRES={alloc_tres} CapWatts=n/a "
        f"CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s{reason}"
    )
    return line, has_reason


def _partition_lines(
    nodes: list[_Node], ranges: dict[str, tuple[str, int, int, int]], members: dict[str, list[str]]
) -> list[str]:
    by_name = {n.name: n for n in nodes}
    settings = {  # name -> (Default, MaxTime, PreemptMode, PriorityTier)
        "cpu": ("YES", "2-00:00:00", "OFF", 1),
        "long": ("NO", "7-00:00:00", "OFF", 1),
        "debug": ("NO", "00:30:00", "OFF", 2),
        "gpu": ("NO", "2-00:00:00", "OFF", 1),
        "bigmem": ("NO", "4-00:00:00", "OFF", 1),
        "preempt": ("NO", "1-00:00:00", "REQUEUE", 0),
    }
    lines = []
    for name, (default, max_time, preempt, tier) in settings.items():
        names = members.get(name, [])
        if name in ranges:
            prefix, width, lo, hi = ranges[name]
            node_expr = hostlist(prefix, width, lo, hi) if hi >= lo else "(null)"
        else:  # preempt: every node
            node_expr = ",".join(
                hostlist(p, w, lo, hi) for p, w, lo, hi in (ranges["cpu"], ranges["gpu"], ranges["bigmem"]) if hi >= lo
            )
        cpus = mem = gpus = 0
        for n in names:
            sockets, cores, real_mem, _, ngpu = _HW[by_name[n].kind]
            cpus += sockets * cores
            mem += real_mem
            gpus += ngpu
        tres = f"cpu={cpus},mem={mem}M,node={len(names)},billing={cpus}" + (f",gres/gpu={gpus}" if gpus else "")
        lines.append(
            f"PartitionName={name} AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default={default} "
            f"QoS=N/A DefaultTime=01:00:00 DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO "
            f"MaxNodes=UNLIMITED MaxTime={max_time} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes={node_expr} "
            f"PriorityJobFactor=1 PriorityTier={tier} RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE "
            f"PreemptMode={preempt} State=UP TotalCPUs={cpus} TotalNodes={len(names)} SelectTypeParameters=NONE "
            f"JobDefaults=(null) DefMemPerCPU=3900 MaxMemPerNode=UNLIMITED TRES={tres}"
        )
    lines.append(
        "PartitionName=maint AllowGroups=admins AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
        "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
        "MaxTime=00:30:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=(null) PriorityJobFactor=1 "
        "PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=DOWN "
        "TotalCPUs=0 TotalNodes=0 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
        "MaxMemPerNode=UNLIMITED TRES=(null)"
    )
    return lines


def _job_shape(rng: random.Random, part: str) -> tuple[int, int, int, int]:
    """(cpus, nodes, mem MiB, gpus) of one job in partition ``part``."""
    if part == "gpu":
        gpus = rng.choice((1, 1, 2, 4, 8))
        nodes = 1 if gpus <= 4 else rng.choice((1, 2))
        return gpus * 12, nodes, gpus * 64000, gpus
    if part == "bigmem":
        cpus = rng.choice((8, 16, 32, 96))
        return cpus, 1, rng.choice((256000, 512000, 1024000)), 0
    if rng.random() < 0.05:
        nodes = rng.choice((2, 4, 8, 16))
        return nodes * 64, nodes, nodes * 240000, 0
    cpus = rng.choice((1, 1, 1, 2, 4, 4, 8, 16, 32, 64))
    return cpus, 1, cpus * 3900, 0


def _tres(cpus: int, nodes: int, mem: int, gpus: int) -> str:
    out = f"cpu={cpus},mem={mem}M,node={nodes},billing={cpus}"
    return out + (f",gres/gpu={gpus}" if gpus else "")


def _squeue(rng: random.Random, jobs: int, nodes: list[_Node], now: float, first_id: int) -> tuple[list[str], Expected]:
    exp = Expected()
    titles = [SQUEUE_TITLES[f] for f in SQUEUE_FIELDS]  # KeyError: a new squeue column needs a generator here
    lines = [US.join(titles) + US]
    reasons = [r for r, _, _ in PENDING_REASONS]
    reason_w = [w for _, w, _ in PENDING_REASONS]
    elig = {r: e for r, _, e in PENDING_REASONS}
    parts = ("cpu", "long", "gpu", "bigmem", "debug", "preempt")
    part_w = (60, 10, 12, 3, 3, 7)
    cpu_names = [n.name for n in nodes if n.kind == "cpu"] or [n.name for n in nodes]
    next_id = first_id
    remaining = jobs

    def emit(row: dict[str, str], state: str, tasks: int) -> None:
        lines.append(US.join(row[f] for f in SQUEUE_FIELDS) + US)
        exp.squeue_lines += 1
        exp.queue_jobs += tasks
        exp.queue_jobs_by_state[state.lower()] += tasks

    while remaining > 0:
        part = rng.choices(parts, part_w)[0]
        cpus, nnodes, mem, gpus = _job_shape(rng, part)
        submit = now - rng.expovariate(1 / 14400)
        r = rng.random()
        row = {
            "Partition": part,
            "NumCPUs": str(cpus),
            "NumNodes": str(nnodes),
            "tres-alloc": _tres(cpus, nnodes, mem, gpus),
            "SubmitTime": ts(submit),
            "EligibleTime": ts(submit),
            "Reason": "None",
        }
        job_id = next_id
        next_id += 1
        if r < 0.002 and remaining > 1:  # a job array: grouped pending tasks plus some running tasks
            size = min(remaining, rng.choice((10, 20, 50, 100, 200, 500, 1000)))
            running = min(size - 1, rng.randint(0, 20))
            pending = size - running
            limit = rng.choice(("", "%10", "%20", "%50"))
            first_pending = running + 1
            expr = f"{first_pending}-{size}{limit}" if pending > 1 else f"{first_pending}{limit}"
            if pending == 1 and not limit:
                expr = f"{first_pending}"  # a lone pending task is printed like a plain job of the array
            row |= {"JobID": str(job_id), "ArrayJobID": str(job_id), "ArrayTaskID": expr, "State": "PENDING"}
            row["Reason"] = "JobArrayTaskLimit" if limit else rng.choice(("Priority", "Resources"))
            emit(row, "PENDING", pending)
            if pending > 1 or limit:
                exp.pending_array_lines += 1
            for task in range(1, running + 1):
                tid = next_id
                next_id += 1
                emit(
                    row
                    | {
                        "JobID": str(tid),
                        "ArrayTaskID": str(task),
                        "State": "RUNNING",
                        "Reason": "None",
                        "tres-alloc": _tres(cpus, nnodes, mem, gpus),
                    },
                    "RUNNING",
                    1,
                )
            remaining -= size
            continue
        row |= {"JobID": str(job_id), "ArrayJobID": str(job_id), "ArrayTaskID": "N/A"}
        if r < 0.45:
            row["State"] = "RUNNING"
        elif r < 0.47:
            row["State"] = "COMPLETING"
            row["Reason"] = rng.choice(("None", "NonZeroExitCode"))
        elif r < 0.475:
            row["State"] = "CONFIGURING"
        elif r < 0.477:
            row["State"] = "SUSPENDED"
            row["Reason"] = "Preempted"
        else:
            row["State"] = "PENDING"
            reason = rng.choices(reasons, reason_w)[0]
            when = elig[reason]
            if "{nodes}" in reason:
                i = rng.randrange(len(cpu_names))
                reason = reason.format(nodes=f"{cpu_names[i]},{cpu_names[(i + 7) % len(cpu_names)]}")
            row["Reason"] = reason
            if when == "none":
                row["EligibleTime"] = "N/A"
            elif when == "future":
                row["EligibleTime"] = ts(now + rng.uniform(600, 86400))
            if part == "cpu" and rng.random() < 0.10:
                row["Partition"] = rng.choice(("cpu,long", "cpu,preempt"))
                exp.multi_partition_lines += 1
        emit(row, row["State"], 1)
        remaining -= 1
    return lines, exp


def _sacct_jobs(
    rng: random.Random,
    count: int,
    nodes: list[_Node],
    now: float,
    first_raw: int,
    lookback: int,
    exp: Expected,
) -> list[str]:
    fields: Sequence[str] = SACCT_FIELDS
    d = SACCT_DELIMITER
    classes = [c for c, _ in FAILURE_MIX]
    class_w = [w for _, w in FAILURE_MIX]
    n_users = max(10, min(2000, count // 100))
    users = [(f"u{i:04d}", 10000 + i, f"proj{i % max(3, n_users // 5):03d}") for i in range(n_users)]
    by_kind: dict[str, list[str]] = {}
    for n in nodes:
        by_kind.setdefault(n.kind, []).append(n.name)
    width = max(4, len(str(len(nodes))))
    out: list[str] = []

    def line(row: dict[str, str]) -> None:
        out.append(d.join(row.get(f, "") for f in fields))

    raw = first_raw
    array_left = 0
    array_id = 0
    array_task = 0
    array_base: dict[str, object] = {}
    done = 0
    while done < count:
        raw += 1
        cls = rng.choices(classes, class_w)[0]
        if array_left > 0:
            array_left -= 1
            array_task += 1
            user, uid, account = array_base["user"]  # type: ignore[misc]
            part = str(array_base["part"])
            job_id = f"{array_id}_{array_task}"
        else:
            user, uid, account = rng.choice(users)
            part = rng.choices(("cpu", "long", "gpu", "bigmem", "debug", "preempt"), (60, 8, 14, 3, 8, 7))[0]
            job_id = str(raw)
            if rng.random() < 0.01:  # start an array: this task and up to 49 more
                array_left = rng.randint(5, 49)
                array_id, array_task = raw, 0
                array_base = {"user": (user, uid, account), "part": part}
                job_id = f"{array_id}_{array_task}"
        if cls == "preempted":
            part = "preempt"
        cpus, nnodes, mem, gpus = _job_shape(rng, part)
        kind = {"gpu": "gpu", "bigmem": "bigmem"}.get(part, "cpu")
        pool = by_kind.get(kind) or [n.name for n in nodes]
        first = rng.randrange(len(pool))
        if nnodes == 1 or len(pool) < nnodes:
            nnodes = 1
            nodelist = pool[first]
        else:
            first = min(first, len(pool) - nnodes)
            prefix = pool[first][0]
            lo = int(pool[first][1:])
            nodelist = hostlist(prefix, width, lo, lo + nnodes - 1)
        limit = rng.choice((1800, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400))
        never_ran = cls == "deadline" or (cls == "cancelled" and rng.random() < 0.35)
        end = now - rng.uniform(5, lookback - 120)
        if cls == "timeout":
            elapsed = float(limit + rng.randint(1, 90))
        elif cls in ("segfault", "abort"):
            elapsed = rng.uniform(0, 120)
        elif cls == "boot_fail":
            elapsed = 0.0
        elif never_ran:
            elapsed = 0.0
        else:
            elapsed = min(limit * rng.uniform(0.02, 0.98), rng.expovariate(1 / 5400))
        elapsed = float(int(elapsed))
        start = end - elapsed
        submit = start - rng.expovariate(1 / 1200)
        cpu_eff = rng.betavariate(5, 2) if cls != "signal" else rng.uniform(0.1, 0.9)
        total_cpu = elapsed * cpus * cpu_eff
        rss_frac = rng.betavariate(2, 3)
        state, exit_code, step_state, step_exit = "COMPLETED", "0:0", "COMPLETED", "0:0"
        step0_state, step0_exit = "COMPLETED", "0:0"
        if cls == "failed":
            code = rng.choice((1, 1, 1, 2, 127, 255))
            state, exit_code, step_state, step_exit = "FAILED", f"{code}:0", "FAILED", f"{code}:0"
        elif cls == "out_of_memory":
            rss_frac = rng.uniform(0.98, 1.02)
            if rng.random() < 0.8:
                state, exit_code, step_state, step_exit = "OUT_OF_MEMORY", "0:125", "OUT_OF_MEMORY", "0:125"
                step0_state, step0_exit = "OUT_OF_MEMORY", "0:125"
            else:  # the batch script survives an OOM-killed srun step but fails afterwards
                state, exit_code, step_state, step_exit = "FAILED", "1:0", "FAILED", "1:0"
                step0_state, step0_exit = "OUT_OF_MEMORY", "0:125"
        elif cls == "timeout":
            state, step_state, step_exit = "TIMEOUT", "CANCELLED", "0:15"
            step0_state, step0_exit = "CANCELLED", "0:15"
        elif cls == "cancelled":
            state = f"CANCELLED by {uid if rng.random() < 0.9 else 0}"
            step_state, step_exit, step0_state, step0_exit = "CANCELLED", "0:15", "CANCELLED", "0:15"
        elif cls == "segfault":
            if rng.random() < 0.5:
                state, exit_code, step_state, step_exit = "FAILED", "139:0", "FAILED", "139:0"
            else:
                state, exit_code, step_state, step_exit = "FAILED", "0:11", "FAILED", "0:11"
            step0_state, step0_exit = "FAILED", "0:11"
        elif cls == "abort":
            state, exit_code, step_state, step_exit = "FAILED", "134:0", "FAILED", "134:0"
            step0_state, step0_exit = "FAILED", "0:6"
        elif cls == "signal":
            state, exit_code, step_state, step_exit = "FAILED", "0:9", "FAILED", "0:9"
            step0_state, step0_exit = "CANCELLED", "0:9"
        elif cls == "node_fail":
            state, exit_code, step_state, step_exit = "NODE_FAIL", "0:0", "CANCELLED", "0:0"
            step0_state, step0_exit = "CANCELLED", "0:0"
        elif cls == "preempted":
            state, exit_code, step_state, step_exit = "PREEMPTED", "0:15", "CANCELLED", "0:15"
            step0_state, step0_exit = "CANCELLED", "0:15"
        elif cls == "boot_fail":
            state, exit_code = "BOOT_FAIL", "0:0"
        elif cls == "deadline":
            state = "DEADLINE"
        alloc_cpus = 0 if never_ran else cpus
        mem_s = f"{mem}M"
        req_tres = f"billing={cpus},cpu={cpus}" + (f",gres/gpu={gpus}" if gpus else "") + f",mem={mem_s},node={nnodes}"
        alloc_tres = "" if never_ran else req_tres
        name = rng.choice(JOB_NAMES)
        line(
            {
                "JobIDRaw": str(raw),
                "JobID": job_id,
                "User": user,
                "Account": account,
                "Partition": part,
                "State": state,
                "ExitCode": exit_code,
                "DerivedExitCode": step0_exit if cls in ("abort", "signal") else "0:0",
                "Submit": ts(submit),
                "Start": "None" if never_ran else ts(start),
                "End": ts(end),
                "Elapsed": duration(elapsed),
                "Timelimit": duration(limit) if part != "preempt" else "Partition_Limit",
                "AllocCPUS": str(alloc_cpus),
                "ReqCPUS": str(cpus),
                "ReqMem": mem_s,
                "MaxRSS": "",
                "TotalCPU": cpu_time(total_cpu),
                "AllocTRES": alloc_tres,
                "ReqTRES": req_tres,
                "NNodes": str(nnodes),
                "NodeList": "None assigned" if never_ran else nodelist,
                "JobName": name,
            }
        )
        exp.sacct_jobs += 1
        exp.failure_classes[cls] += 1
        done += 1
        if never_ran or cls == "boot_fail":
            continue
        rss_kib = max(1024, int(mem * 1024 * rss_frac))
        first_node = nodelist if nnodes == 1 else f"{nodelist[0]}{int(nodelist.split('[')[1].split('-')[0]):0{width}d}"
        steps: list[tuple[str, str, str, float, int, float, int, str]] = []
        # (step id, state, exit, elapsed, cpus, cpu seconds, MaxRSS KiB, node list)
        srun = rng.random() < 0.6 or nnodes > 1 or cls in ("signal",) or step0_state == "OUT_OF_MEMORY"
        batch_rss = rss_kib if not srun else rng.randint(4000, 60000)
        batch_cpu = total_cpu if not srun else rng.uniform(0.1, 5.0)
        steps.append(("batch", step_state, step_exit, elapsed, cpus // nnodes, batch_cpu, batch_rss, first_node))
        steps.append(("extern", "COMPLETED", "0:0", elapsed, cpus, 0.002, rng.randint(800, 1200), nodelist))
        if srun:
            steps.append(("0", step0_state, step0_exit, max(0.0, elapsed - 2), cpus, total_cpu, rss_kib, nodelist))
            if rng.random() < 0.15 and step0_state == "COMPLETED":
                steps.append(("1", "COMPLETED", "0:0", 1.0, cpus, 0.5, rng.randint(2000, 9000), nodelist))
        for sid, st, ec, el, scpus, scpu, srss, snodes in steps:
            line(
                {
                    "JobIDRaw": f"{raw}.{sid}",
                    "JobID": f"{job_id}.{sid}",
                    "Account": account,
                    "State": st,
                    "ExitCode": ec,
                    "Submit": ts(start),
                    "Start": ts(start),
                    "End": ts(start + el),
                    "Elapsed": duration(el),
                    "AllocCPUS": str(scpus),
                    "ReqCPUS": str(scpus),
                    "MaxRSS": f"{srss}K",
                    "TotalCPU": cpu_time(scpu),
                    "AllocTRES": f"cpu={scpus},mem={mem_s},node={1 if sid == 'batch' else nnodes}",
                    "NNodes": "1" if sid == "batch" else str(nnodes),
                    "NodeList": snodes,
                    "JobName": {"batch": "batch", "extern": "extern"}.get(sid, name.split()[0]),
                }
            )
            exp.sacct_steps += 1
    return out


def generate(
    nodes: int,
    jobs: int,
    *,
    sacct_jobs: int | None = None,
    now: float | None = None,
    lookback: int = 3600,
    seed: int = 1,
) -> Workload:
    """Build the synthetic outputs of a cluster.

    Args:
        nodes: nodes in the cluster (at least 1).
        jobs: jobs in the queue (squeue), counting each array task.
        sacct_jobs: finished jobs in the accounting window (default: ``jobs``).
        now: the Unix time the outputs describe (default: the current time).
        lookback: the accounting window in seconds; every finished job ends inside it.
        seed: the random seed (the same arguments give the same texts).

    Returns:
        The texts and their :class:`Expected` counts.

    Raises:
        KeyError: when a collector asks for a squeue column this generator does not know.

    """
    if nodes < 1 or jobs < 0:
        raise ValueError("need at least one node and a non-negative job count")
    rng = random.Random(seed)
    now = time.time() if now is None else now
    layout, ranges, members = _layout(nodes)
    exp = Expected()
    node_lines = []
    states = [s for s, _ in NODE_STATES]
    weights = [w for _, w in NODE_STATES]
    for i, node in enumerate(layout):
        state = rng.choices(states, weights)[0]
        text, has_reason = _node_line(rng, node, state, now, i)
        node_lines.append(text)
        base, *flags = state.lower().split("+")
        exp.node_states[base] += 1
        for f in flags:
            exp.node_flags[f] += 1
        exp.nodes_with_reason += has_reason
        exp.gpu_nodes += node.kind == "gpu"
    exp.nodes = len(layout)
    part_lines = _partition_lines(layout, ranges, members)
    exp.partitions = len(part_lines)
    sq_lines, sq_exp = _squeue(rng, jobs, layout, now, first_id=5_000_000)
    for name in ("squeue_lines", "queue_jobs", "pending_array_lines", "multi_partition_lines"):
        setattr(exp, name, getattr(sq_exp, name))
    exp.queue_jobs_by_state = sq_exp.queue_jobs_by_state
    sa_lines = _sacct_jobs(
        rng, jobs if sacct_jobs is None else sacct_jobs, layout, now, first_raw=4_000_000, lookback=lookback, exp=exp
    )
    return Workload(
        nodes_text="\n".join(node_lines) + "\n",
        partitions_text="\n".join(part_lines) + "\n",
        squeue_text="\n".join(sq_lines) + "\n",
        sacct_text="\n".join(sa_lines) + ("\n" if sa_lines else ""),
        expected=exp,
        now=now,
    )


def write(workload: Workload, directory: Path) -> dict[str, Path]:
    """Write the four outputs under ``directory``; returns ``{kind: path}`` for nodes, partitions, squeue, sacct."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, text in (
        ("nodes", workload.nodes_text),
        ("partitions", workload.partitions_text),
        ("squeue", workload.squeue_text),
        ("sacct", workload.sacct_text),
    ):
        p = directory / f"{kind}.txt"
        p.write_text(text)
        paths[kind] = p
    return paths
