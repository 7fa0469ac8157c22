"""The simulated cluster's SLURM renderers and SimRunner, read back through the REAL parsers and collectors.

The state is built by hand here (no engine): 7 nodes in 3 partitions (cpu default, long overlapping cpu, gpu
with 4 a100 per node), running and pending jobs (a multi-node job, a GPU job, a job array with running tasks and
a non-contiguous pending remainder, a lone pending array task, a multi-partition pending job), finished jobs in
every terminal state with steps, a DOWN+NOT_RESPONDING node and a drained node with reasons, usage for sshare and
sdiag counters. Every assertion compares a parsed value with the state field it was rendered from.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_accounting import FINISHED, SlurmAccountingCollector
from nomade.exporter.collectors.slurm_nodes import NODES_ARGV, PARTITIONS_ARGV, SlurmNodesCollector
from nomade.exporter.collectors.slurm_queue import SlurmQueueCollector
from nomade.exporter.parsers.reservations import RESERVATION_ARGV, parse_reservations
from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS, parse_sacct
from nomade.exporter.parsers.sacctmgr import ASSOC_ARGV, parse_associations
from nomade.exporter.parsers.scontrol import parse_nodes, parse_partitions
from nomade.exporter.parsers.sdiag import parse_sdiag
from nomade.exporter.parsers.slurm_licenses import parse_slurm_licenses
from nomade.exporter.parsers.slurm_outcome import classify
from nomade.exporter.parsers.slurm_units import expand_hostlist, parse_duration
from nomade.exporter.parsers.sprio import SPRIO_ARGV, parse_sprio
from nomade.exporter.parsers.squeue import SQUEUE_ARGV, SQUEUE_JOBS_ARGV, parse_squeue, parse_squeue_jobs
from nomade.exporter.parsers.sshare import SSHARE_ARGV, parse_sshare
from nomade.exporter.runner import CommandError
from nomade.sim import render_slurm as rs
from nomade.sim.runner import SimRunner, parse_sacct_time
from nomade.sim.state import (
    AccountSpec,
    ClusterSpec,
    ClusterState,
    FilesystemSpec,
    FilesystemState,
    Job,
    JobStep,
    NodeSpec,
    NodeState,
    PartitionSpec,
    SchedulerState,
)

NOW = 1_790_000_000.0
GIB = 1024**3


def _node(name: str, parts: tuple[str, ...], gpus: int = 0) -> NodeSpec:
    if gpus:
        return NodeSpec(name, parts, 16, 2, 8, 1, 64000, gpus=gpus, gpu_type="a100", gpu_memory_mib=81920)
    return NodeSpec(name, parts, 8, 2, 4, 1, 32000, features=("cpu", "ib"))


def _job(job_id: int, **kw: object) -> Job:
    base: dict[str, object] = {
        "name": f"job{job_id}",
        "user": "alice",
        "account": "physics",
        "partition": "cpu",
        "submit_time": NOW - 3600 - job_id,
        "time_limit_s": 4 * 3600,
        "req_nodes": 1,
        "req_cpus": 2,
        "req_mem_mib": 4000,
    }
    base.update(kw)
    return Job(job_id=job_id, **base)  # type: ignore[arg-type]


def _running(job_id: int, nodes: tuple[str, ...], cpus_per_node: int, **kw: object) -> Job:
    return _job(
        job_id,
        state="RUNNING",
        reason="None",
        start_time=NOW - 1800 - job_id,
        eligible_time=NOW - 3600 - job_id,
        nodes=nodes,
        req_nodes=len(nodes),
        req_cpus=cpus_per_node * len(nodes),
        cores={n: tuple(range(cpus_per_node)) for n in nodes},
        **kw,
    )


def _steps(state: str, code: int, sig: int, rss: int, cpu: float, srun: JobStep | None = None) -> list[JobStep]:
    steps = [JobStep("batch", state, code, sig, rss, cpu), JobStep("extern", "COMPLETED", 0, 0, 1024 * 900, 0.002)]
    if srun is not None:
        steps.append(srun)
    return steps


# Finished jobs: job id -> the failure class the state was designed to have.
DESIGNED_CLASS = {
    401: "success",
    402: "failed",
    403: "timeout",
    404: "out_of_memory",
    405: "node_fail",
    406: "cancelled",
    407: "cancelled",
    408: "segfault",
    409: "success",
    411: "success",
}


def _finished() -> list[Job]:
    def fin(job_id: int, state: str, code: int, sig: int, steps: list[JobStep], **kw: object) -> Job:
        end = NOW - 600 - job_id
        kw.setdefault("nodes", ("c01",))
        nodes = kw["nodes"]
        start = None if not nodes else end - 1000 - job_id
        return _job(
            job_id,
            state=state,
            reason="None",
            exit_code=code,
            signal=sig,
            steps=steps,
            start_time=start,
            end_time=end,
            req_nodes=max(1, len(nodes)),  # type: ignore[arg-type]
            cpu_user_s=123.456 + job_id,
            cpu_system_s=1.5,
            mem_peak_bytes={n: (job_id % 7 + 1) * GIB for n in nodes},  # type: ignore[union-attr]
            **kw,
        )

    return [
        fin(410, "COMPLETED", 0, 0, _steps("COMPLETED", 0, 0, GIB, 10.0)),  # moved 3 days back below
        fin(401, "COMPLETED", 0, 0, _steps("COMPLETED", 0, 0, 50 * 1024 * 1024, 0.5,
                                           JobStep("0", "COMPLETED", 0, 0, 3 * GIB + 12345, 240.25))),
        fin(402, "FAILED", 1, 0, _steps("FAILED", 1, 0, 2 * GIB, 30.0)),
        fin(403, "TIMEOUT", 0, 0, _steps("CANCELLED", 0, 15, GIB, 3000.0)),
        fin(404, "OUT_OF_MEMORY", 0, 125, _steps("OUT_OF_MEMORY", 0, 125, 4 * GIB, 12.0,
                                                  JobStep("0", "OUT_OF_MEMORY", 0, 125, 4 * GIB - 4096, 11.0))),
        fin(405, "NODE_FAIL", 0, 0, _steps("CANCELLED", 0, 0, GIB, 5.0), nodes=("c01", "c02", "c03")),
        fin(406, "CANCELLED", 0, 0, _steps("CANCELLED", 0, 15, GIB, 5.0), user="bob", account="chemistry"),
        fin(407, "CANCELLED", 0, 0, [], nodes=(), user="bob", account="chemistry"),
        fin(408, "FAILED", 0, 11, _steps("FAILED", 0, 11, GIB, 5.0, JobStep("0", "FAILED", 0, 11, GIB, 4.0))),
        fin(409, "COMPLETED", 0, 0, _steps("COMPLETED", 0, 0, GIB, 2.0), array_job_id=500, array_task_id=3),
        fin(411, "COMPLETED", 0, 0, _steps("COMPLETED", 0, 0, GIB, 5000.0), nodes=("g01",), partition="gpu",
            req_gpus=1, gpus={"g01": (0,)}),
    ]  # fmt: skip


def make_state() -> ClusterState:
    """The hand-built cluster described in the module docstring."""
    names = ("c01", "c02", "c03", "c04", "c05")
    nodes = tuple(_node(n, ("cpu", "long") if n in ("c04", "c05") else ("cpu",)) for n in names) + (
        _node("g01", ("gpu",), gpus=4),
        _node("g02", ("gpu",), gpus=4),
    )
    spec = ClusterSpec(
        name="simclus",
        slurm_version="23.02.7",
        nodes=nodes,
        partitions=(
            PartitionSpec("cpu", names, True, 2 * 86400, 3600, 1),
            PartitionSpec("long", ("c04", "c05"), False, 7 * 86400, 3600, 1),
            PartitionSpec("gpu", ("g01", "g02"), False, 2 * 86400, 3600, 2),
        ),
        filesystems=(
            FilesystemSpec("/home", "nfs01:/export/home", "nfs4", 200 * 1024**4, 10**9, "nfs01"),
            FilesystemSpec("/scratch", "mds01@tcp:/scratch", "lustre", 2 * 1024**5, 10**10),
        ),
        accounts=(
            AccountSpec("physics", 2, ("alice", "carol")),
            AccountSpec("chemistry", 1, ("bob",)),
            AccountSpec("biology", 1, ("dave",)),
        ),
        uids={"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004},
        instrumented=("c01", "g01"),
    )
    active: dict[int, Job] = {}

    def add(job: Job) -> None:
        active[job.job_id] = job

    add(_running(101, ("c01",), 4, req_mem_mib=8000))
    add(_running(102, ("c02",), 8, user="bob", account="chemistry"))
    add(_running(105, ("c01", "c03"), 2, name="mpi run"))
    add(_running(104, ("g01",), 8, partition="gpu", req_gpus=2, gpus={"g01": (1, 2)}, req_mem_mib=64000))
    add(_running(103, ("c04",), 2, partition="long", time_limit_s=5 * 86400 + 7))
    add(_job(110, state="PENDING", reason="Priority", eligible_time=NOW - 900, priority=5400))
    add(_job(111, state="PENDING", reason="Resources", partition="gpu", req_gpus=4, req_cpus=16,
             eligible_time=NOW - 100, priority=9000))  # fmt: skip
    add(_job(112, state="PENDING", reason="Dependency", user="carol", priority=120))
    add(_job(113, state="PENDING", reason="Priority", partition="cpu,long", eligible_time=NOW - 50, priority=700))
    # Array 200: tasks 1, 2 and 6 running (own job ids), tasks 3-5 and 7-10 pending.
    for task in range(1, 11):
        jid = 200 + task
        if task in (1, 2, 6):
            add(_running(jid, ("c03",), 1, array_job_id=200, array_task_id=task, submit_time=NOW - 5000))
        else:
            add(_job(jid, state="PENDING", reason="Priority", array_job_id=200, array_task_id=task,
                     submit_time=NOW - 5000, eligible_time=NOW - 5000, priority=3000))  # fmt: skip
    # Array 300: one pending task left.
    add(_job(305, state="PENDING", reason="Priority", array_job_id=300, array_task_id=5, eligible_time=NOW - 10,
             priority=2500))  # fmt: skip

    node_states = {
        "c01": NodeState("c01", "mixed", alloc_cpus=6, alloc_mem_mib=12000, cpu_load=5.5, free_mem_mib=15000),
        "c02": NodeState("c02", "allocated", alloc_cpus=8, alloc_mem_mib=4000, cpu_load=8.02, free_mem_mib=20000),
        "c03": NodeState("c03", "mixed", {"DRAIN"}, "NHC: /scratch not mounted", NOW - 7200, "hpcops",
                         alloc_cpus=5, alloc_mem_mib=16000, cpu_load=4.75, free_mem_mib=9000),
        "c04": NodeState("c04", "idle", {"DRAIN"}, "bad DIMM B2", NOW - 86400, "root", alloc_cpus=2,
                         alloc_mem_mib=4000, cpu_load=0.1, free_mem_mib=30000),
        "c05": NodeState("c05", "down", {"NOT_RESPONDING"}, "Not responding", NOW - 4000, "slurm"),
        "g01": NodeState("g01", "mixed", alloc_cpus=8, alloc_mem_mib=64000, alloc_gpus=2, cpu_load=7.9,
                         free_mem_mib=40000),
        "g02": NodeState("g02", "idle", cpu_load=0.0, free_mem_mib=62000),
    }  # fmt: skip
    for i, ns in enumerate(node_states.values()):
        ns.boot_time = NOW - 10 * 86400 - i * 3600
        ns.last_busy = NOW - 60 * i
    finished = _finished()
    old = finished.pop(0)  # 410: ended 3 days ago, outside any window asked for below
    old.end_time, old.start_time = NOW - 3 * 86400, NOW - 3 * 86400 - 100
    finished.sort(key=lambda j: j.end_time or 0.0)
    finished.insert(0, old)
    sched = SchedulerState(
        server_start=NOW - 5 * 86400,
        stats_reset=NOW - 7200,
        jobs_submitted=812,
        jobs_started=790,
        jobs_completed=700,
        jobs_canceled=31,
        jobs_failed=12,
        agent_queue_size=2,
        server_thread_count=5,
        cycles=240,
        last_cycle_us=1500,
        mean_cycle_us=1320,
        max_cycle_us=98000,
        last_depth=17,
        bf_cycles=120,
        bf_last_cycle_us=45000,
        bf_mean_cycle_us=40000,
        bf_max_cycle_us=300000,
        bf_backfilled_jobs=66,
        bf_last_depth=19,
        rpc_by_type={"REQUEST_JOB_INFO": [500, 750000], "REQUEST_SUBMIT_BATCH_JOB": [812, 1624000],
                     "REQUEST_NODE_INFO": [250, 100000]},
        rpc_by_user={"root": [1200, 1800000], "alice": [300, 450000], "bob": [62, 124000]},
    )  # fmt: skip
    return ClusterState(
        spec=spec,
        now=NOW,
        nodes=node_states,
        active=active,
        finished=finished,
        filesystems={"/home": FilesystemState(10 * 1024**4, 10**6), "/scratch": FilesystemState(1024**5, 10**8)},
        scheduler=sched,
        usage={
            ("physics", ""): 36000.0,
            ("physics", "alice"): 30000.0,
            ("physics", "carol"): 6000.0,
            ("chemistry", ""): 12000.0,
            ("chemistry", "bob"): 12000.0,
        },
        next_job_id=600,
    )


@pytest.fixture
def state() -> ClusterState:
    return make_state()


def ctx_for(state: ClusterState, tmp_path, **options) -> CollectorContext:
    runner = SimRunner(lambda: state)
    return CollectorContext(runner=runner, options=options, state_dir=tmp_path / "state", clock=lambda: state.now)


# --- low-level formats -----------------------------------------------------------------------------------------


def test_hostlist_compression_round_trips():
    names = ["c001", "c002", "c003", "c010", "g01", "c012", "m1"]
    text = rs.compress_hostlist(names)
    assert text == "c[001-003,010,012],g01,m1"
    assert sorted(expand_hostlist(text)) == sorted(names)
    assert rs.compress_hostlist(["c05"]) == "c05"
    assert rs.compress_hostlist([]) == ""


@pytest.mark.parametrize("seconds", [0, 59, 61, 3599, 3600, 86399, 86400, 5 * 86400 + 7])
def test_durations_round_trip(seconds):
    assert parse_duration(rs.duration(seconds)) == seconds
    assert parse_duration(rs.squeue_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [0.0, 0.002, 59.999, 61.5, 3599.999, 3600.0, 5000.0, 90061.0])
def test_cpu_time_round_trips_to_the_millisecond(seconds):
    parsed = parse_duration(rs.cpu_time(seconds))
    assert parsed == pytest.approx(seconds, abs=1e-3 if seconds < 3600 else 1.0)
    assert parsed <= seconds + 1e-9  # truncated, never rounded up past the value


# --- squeue ----------------------------------------------------------------------------------------------------


def _expected_queue(state: ClusterState) -> tuple[Counter, Counter, Counter]:
    by_state: Counter = Counter()
    by_part_state: Counter = Counter()
    reasons: Counter = Counter()
    for j in state.active.values():
        by_state[j.state.lower()] += 1
        for p in j.partition.split(","):
            by_part_state[(p, j.state.lower())] += 1
            if j.state == "PENDING":
                reasons[(p, j.reason)] += 1
    return by_state, by_part_state, reasons


def test_squeue_aggregate_layout_parses_to_the_state(state):
    res = parse_squeue(rs.squeue(state, SQUEUE_ARGV), bitstr_len=0)
    assert res.issues == []
    by_state, by_part_state, reasons = _expected_queue(state)
    got_state: Counter = Counter()
    got_part: Counter = Counter()
    got_reasons: Counter = Counter()
    for r in res.records:
        got_state[r.state] += r.tasks
        for p in r.partitions:
            got_part[(p, r.state)] += r.tasks
            if r.state == "pending":
                got_reasons[(p, r.reason)] += r.tasks
    assert got_state == by_state
    assert got_part == by_part_state
    assert got_reasons == reasons
    groups = [r for r in res.records if r.array_tasks is not None]
    pending_200 = sorted(
        j.array_task_id for j in state.active.values() if j.array_job_id == 200 and j.state == "PENDING"
    )
    assert [(g.job_id, g.array_job_id, g.array_tasks, g.tasks) for g in groups] == [
        ("200", "200", "3-5,7-10", len(pending_200))
    ]
    lone = next(r for r in res.records if r.job_id == "305")
    assert (lone.array_job_id, lone.array_tasks, lone.tasks) == ("300", None, 1)
    by_id = {r.job_id: r for r in res.records}
    for j in state.active.values():
        if j.state == "PENDING" and j.array_job_id == 200:
            continue
        r = by_id[str(j.job_id)]
        assert r.cpus == j.req_cpus and r.nodes == j.req_nodes and r.gpus == j.req_gpus
        assert r.submit_time == int(j.submit_time)
        assert r.eligible_time == (None if j.eligible_time is None else int(j.eligible_time))
        assert r.partitions == tuple(j.partition.split(","))


def test_array_numbered_from_its_own_id_keeps_job_ids_unique(state):
    # The engine gives task 0 the array job id itself; once it runs, the pending rest must not reuse that id.
    for task in range(4):
        jid = 700 + task
        if task == 0:
            job = _running(jid, ("c03",), 1, array_job_id=700, array_task_id=0)
        else:
            job = _job(jid, state="PENDING", array_job_id=700, array_task_id=task, eligible_time=NOW, priority=10)
        state.active[jid] = job
    res = parse_squeue(rs.squeue(state, SQUEUE_ARGV), bitstr_len=0)
    assert res.issues == []
    ids = [r.job_id for r in res.records]
    assert len(ids) == len(set(ids))
    group = next(r for r in res.records if r.array_job_id == "700" and r.state == "pending")
    assert (group.job_id, group.array_tasks, group.tasks) == ("703", "1-3", 3)
    prio = parse_sprio(rs.sprio(state))
    assert [r.job_id for r in prio.records if r.job_id in ("700", "703")] == ["703"]


def test_squeue_per_job_layout_parses_to_the_state(state):
    res = parse_squeue_jobs(rs.squeue(state, SQUEUE_JOBS_ARGV), bitstr_len=0)
    assert res.issues == []
    by_id = {d.job.job_id: d for d in res.records}
    for j in state.active.values():
        if j.state == "PENDING" and j.array_job_id == 200:
            continue
        d = by_id[str(j.job_id)]
        assert (d.user, d.account, d.name) == (j.user, j.account, j.name)
        assert d.timelimit_seconds == j.time_limit_s
        assert d.memory_bytes == j.req_mem_mib * j.req_nodes * 1024**2
        if j.state == "RUNNING":
            assert d.start_time == int(j.start_time)
            assert expand_hostlist(d.nodelist) == list(j.nodes)
        else:
            assert d.start_time is None and d.nodelist == ""


def test_queue_collector_through_simrunner(state, tmp_path):
    col = SlurmQueueCollector(ctx_for(state, tmp_path, per_job=True))
    out = col.new_set()
    col.collect(out)
    assert col.parse_errors == 0
    _, by_part_state, _ = _expected_queue(state)
    for (part, st), n in by_part_state.items():
        assert out.value("nomade_slurm_queue_jobs", partition=part, state=st) == n
    assert out.value("nomade_slurm_queue_arrays", partition="cpu", state="pending") == 2  # arrays 200 and 300


# --- scontrol --------------------------------------------------------------------------------------------------


def test_scontrol_nodes_parse_to_the_state(state):
    res = parse_nodes(rs.scontrol_nodes(state))
    assert res.issues == []
    assert [r.name for r in res.records] == [n.name for n in state.spec.nodes]
    for r in res.records:
        ns, spec = state.nodes[r.name], state.spec.node(r.name)
        assert r.state == ns.state
        assert r.flags == frozenset(f.lower() for f in ns.flags)
        assert (r.cpus_total, r.cpus_alloc) == (spec.cpus, ns.alloc_cpus)
        assert r.memory_bytes == spec.real_memory_mib * 1024**2
        assert r.memory_alloc_bytes == ns.alloc_mem_mib * 1024**2
        responding = "NOT_RESPONDING" not in ns.flags
        assert r.memory_free_bytes == (ns.free_mem_mib * 1024**2 if responding else None)
        assert r.cpu_load == (pytest.approx(ns.cpu_load) if responding else None)
        assert r.partitions == spec.partitions
        assert r.boot_time == int(ns.boot_time)
        assert (r.reason, r.reason_user) == (ns.reason, ns.reason_user)
        assert r.reason_time == (None if ns.reason_time is None else int(ns.reason_time))
        if spec.gpus:
            assert r.gres == {("gpu", "a100"): spec.gpus}
            assert r.gres_used == {("gpu", "a100"): ns.alloc_gpus}
    g01 = next(r for r in res.records if r.name == "g01")
    assert "IDX:1-2" in g01.fields["GresUsed"]  # the indices job 104 holds
    states = {r.name: r.fields["State"] for r in res.records}
    assert (states["c03"], states["c04"], states["c05"]) == ("MIXED+DRAIN", "IDLE+DRAIN", "DOWN+NOT_RESPONDING")


def test_scontrol_partitions_parse_to_the_spec(state):
    res = parse_partitions(rs.scontrol_partitions(state))
    assert res.issues == []
    for r, p in zip(res.records, state.spec.partitions, strict=True):
        members = [state.spec.node(n) for n in p.nodes]
        assert r.name == p.name and r.default == p.default and r.max_time_seconds == p.max_time_s
        assert r.total_nodes == len(members) and r.total_cpus == sum(n.cpus for n in members)
        assert expand_hostlist(r.nodes) == list(p.nodes)
        assert r.tres.get("gres/gpu", 0) == sum(n.gpus for n in members)


def test_nodes_collector_through_simrunner(state, tmp_path):
    col = SlurmNodesCollector(ctx_for(state, tmp_path))
    out = col.new_set()
    col.collect(out)
    assert col.parse_errors == 0
    for p in state.spec.partitions:
        alloc = sum(state.nodes[n].alloc_cpus for n in p.nodes)
        assert out.value("nomade_slurm_partition_cpus_allocated", partition=p.name) == alloc
    # sinfo's "other": free CPUs of the drained c03/c04 and the down c05 in the cpu partition.
    other = sum(8 - state.nodes[n].alloc_cpus for n in ("c03", "c04", "c05"))
    assert out.value("nomade_slurm_partition_cpus_other", partition="cpu") == other
    assert out.value("nomade_slurm_partition_gpus_allocated", partition="gpu") == 2


# --- sacct -----------------------------------------------------------------------------------------------------


def test_sacct_parses_to_the_finished_jobs(state):
    start, end = NOW - 86400, NOW
    expected = state.finished_between(start, end)
    assert {j.job_id for j in expected} == set(DESIGNED_CLASS)  # the 3-day-old job is outside
    res = parse_sacct(rs.sacct(state, start, end), fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert res.issues == []
    by_raw = {r.job_id_raw: r for r in res.records}
    assert set(by_raw) == {str(j.job_id) for j in expected}
    for j in expected:
        r = by_raw[str(j.job_id)]
        assert r.failure_class == DESIGNED_CLASS[j.job_id]
        assert r.failure_class == classify(
            j.state, j.exit_code, j.signal, step_states=[s.state for s in j.steps],
            derived_exit_code=max((s.exit_code for s in j.steps if s.step.isdigit()), default=0),
            derived_exit_signal=max((s.signal for s in j.steps if s.step.isdigit()), default=0),
        )  # fmt: skip
        assert r.state == j.state and (r.exit_code, r.exit_signal) == (j.exit_code, j.signal)
        assert r.user == j.user and r.account == j.account and r.partition == j.partition
        assert r.end == int(j.end_time)
        assert r.total_cpu_seconds == pytest.approx(j.cpu_user_s + j.cpu_system_s, abs=1e-3)
        assert r.requested_memory_bytes == j.req_mem_mib * j.req_nodes * 1024**2
        assert r.timelimit_seconds == j.time_limit_s
        assert len(r.steps) == len(j.steps)
        if j.nodes:
            assert r.start == int(j.start_time)
            assert r.elapsed_seconds == int(j.end_time) - int(j.start_time)
            assert expand_hostlist(r.nodelist) == list(j.nodes)
            assert r.max_rss_bytes == max((s.max_rss_bytes // 1024) * 1024 for s in j.steps)
            for rstep, jstep in zip(r.steps, j.steps, strict=True):
                assert rstep.step_id == jstep.step and rstep.state == jstep.state
                assert rstep.total_cpu_seconds == pytest.approx(jstep.cpu_s, abs=1e-3 if jstep.cpu_s < 3600 else 1)
        else:
            assert r.start is None and r.nodelist is None and r.alloc_cpus == 0
        if j.state == "CANCELLED":
            assert r.cancelled_by == state.spec.uids[j.user]
        if j.array_job_id is not None:
            assert r.job_id == f"{j.array_job_id}_{j.array_task_id}"
        if j.req_gpus:
            assert r.requested_gpus == j.req_gpus


def test_accounting_collector_through_simrunner(state, tmp_path):
    col = SlurmAccountingCollector(ctx_for(state, tmp_path, lookback=86400))
    out = col.new_set()
    col.collect(out)
    assert col.parse_errors == 0
    assert out.value("nomade_slurm_accounting_window_jobs") == len(DESIGNED_CLASS)
    assert _by_label(out, FINISHED, "failure_class") == Counter(DESIGNED_CLASS.values())
    partitions = Counter(j.partition for j in state.finished_between(NOW - 86400, NOW))
    assert _by_label(out, FINISHED, "partition") == partitions


def _by_label(out, name: str, label: str) -> Counter:
    spec = next(s for s in SlurmAccountingCollector.metrics if s.name == name)
    i = spec.labels.index(label)
    c: Counter = Counter()
    for labels, v in out.samples(name).items():
        c[labels[i]] += v
    return c


def test_sacct_window_follows_the_runner_argv(state):
    runner = SimRunner(lambda: state)
    col = SlurmAccountingCollector(CollectorContext(runner=runner, options={"lookback": 1500}))
    res = runner.run(col.argv())
    parsed = parse_sacct(res.stdout, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert {r.job_id_raw for r in parsed.records} == {
        str(j.job_id) for j in state.finished if j.end_time is not None and NOW - 1500 <= j.end_time <= NOW
    }
    assert res.finished_at == NOW
    assert parse_sacct_time("now-2hours", NOW) == NOW - 7200
    assert parse_sacct_time(rs.ts(NOW - 5), NOW) == int(NOW - 5)


# --- sshare, sprio, sdiag, sacctmgr, reservations, licenses ----------------------------------------------------


def test_sshare_parses_to_the_usage(state):
    res = parse_sshare(rs.sshare(state))
    assert res.issues == []
    rows = {(r.account, r.user): r for r in res.records}
    assert rows[("root", "")].raw_usage == 48000
    assert rows[("physics", "")].raw_usage == 36000 and rows[("physics", "alice")].raw_usage == 30000
    total_shares = sum(a.shares for a in state.spec.accounts) + 1
    for a in state.spec.accounts:
        r = rows[(a.name, "")]
        assert r.raw_shares == a.shares and r.depth == 1
        assert r.norm_shares == pytest.approx(a.shares / total_shares, abs=1e-6)
        own = state.usage.get((a.name, ""), 0.0)
        assert r.norm_usage == pytest.approx(own / 48000, abs=1e-6)
        for u in a.users:
            assert rows[(a.name, u)].depth == 2
    assert math.isinf(rows[("biology", "")].level_fs)
    assert rows[("physics", "alice")].effective_usage == pytest.approx(30000 / 36000, abs=1e-6)
    # Fair Tree: the unused biology account's user ranks first; physics (over-served) ranks last.
    fs = {u: rows[(a, u)].fairshare for a, u in rows if u and a != "root"}
    assert fs["dave"] == 1.0 and fs["alice"] < fs["carol"] < fs["bob"] < fs["dave"]


def test_sprio_factors_sum_to_the_priority(state):
    res = parse_sprio(rs.sprio(state))
    assert res.issues == []
    pending = [j for j in state.active.values() if j.state == "PENDING"]
    arrays = {j.array_job_id for j in pending if j.array_job_id is not None}
    lines = sum(len(j.partition.split(",")) for j in pending if j.array_job_id is None) + len(arrays)
    assert len(res.records) == lines
    group_size = Counter(j.array_job_id for j in pending if j.array_job_id is not None)
    prio = {str(j.array_job_id if group_size[j.array_job_id] > 1 else j.job_id): j.priority for j in pending}
    for r in res.records:
        assert r.priority == prio[r.job_id]
        assert sum(r.factors.values()) == r.priority


def test_sdiag_parses_to_the_scheduler_state(state):
    res = parse_sdiag(rs.sdiag(state))
    assert res.issues == []
    (st,) = res.records
    s = state.scheduler
    v = st.values
    assert v["req_time"] == NOW and v["req_time_start"] == s.stats_reset
    assert (v["jobs_submitted"], v["jobs_started"], v["jobs_completed"]) == (812, 790, 700)
    assert (v["jobs_canceled"], v["jobs_failed"]) == (31, 12)
    assert v["jobs_pending"] == sum(j.state == "PENDING" for j in state.active.values())
    assert v["jobs_running"] == sum(j.state == "RUNNING" for j in state.active.values())
    assert (v["schedule_cycle_total"], v["schedule_cycle_last"], v["schedule_cycle_max"]) == (240, 1500, 98000)
    assert v["schedule_cycle_mean"] == 1320 and v["schedule_cycle_per_minute"] == 2
    assert (v["bf_cycle_counter"], v["bf_backfilled_jobs"], v["bf_cycle_mean"]) == (120, 66, 40000)
    assert {r.name: (r.count, r.total_time_us) for r in st.rpc_by_type} == {
        k: (c, t) for k, (c, t) in s.rpc_by_type.items()
    }
    users = {r.name: (r.id, r.count) for r in st.rpc_by_user}
    assert users == {"root": (0, 1200), "alice": (1001, 300), "bob": (1002, 62)}


def test_sacctmgr_associations(state):
    res = parse_associations(rs.sacctmgr_associations(state))
    assert res.issues == []
    got = {(a.account, a.user) for a in res.records}
    want = {("root", ""), ("root", "root")} | {(a.name, "") for a in state.spec.accounts}
    want |= {(a.name, u) for a in state.spec.accounts for u in a.users}
    assert got == want


def test_reservation_and_licenses(state):
    res = parse_reservations(rs.scontrol_reservations(state))
    assert res.issues == []
    (r,) = res.records
    start, end = rs.maintenance_window(NOW)
    assert (r.start_time, r.end_time, r.duration_seconds) == (start, end, rs.MAINT_DURATION_S)
    assert start <= NOW < end or start > NOW
    assert r.state == ("ACTIVE" if start <= NOW < end else "INACTIVE")
    assert r.node_count == rs.MAINT_NODES and expand_hostlist(r.nodes) == ["c01", "c02", "c03", "c04"]
    state.now = start + 60
    assert parse_reservations(rs.scontrol_reservations(state)).records[0].state == "ACTIVE"
    lic = parse_slurm_licenses(rs.scontrol_licenses(state))
    assert lic.issues == []
    running = [j.job_id for j in state.active.values() if j.state == "RUNNING"]
    for rec in lic.records:
        _, total, mod = next(x for x in rs.LICENSES if x[0] == rec.name)
        assert rec.used == min(total, sum(1 for i in running if i % mod == 0))
        assert rec.free == total - rec.used


# --- SimRunner -------------------------------------------------------------------------------------------------


def test_runner_cache_follows_simulated_time(state):
    runner = SimRunner(lambda: state, ttl=15.0)
    first = runner.run(SQUEUE_ARGV)
    state.now += 10
    assert runner.run(SQUEUE_ARGV) is first  # within the TTL of simulated time
    state.now += 6
    again = runner.run(SQUEUE_ARGV)
    assert again is not first and again.finished_at == state.now
    assert runner.runs["squeue"] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ("nosuchcmd",),
        ("sdiag", "--json"),
        ("squeue", "--all", "--Format=JobID:,State:"),
        ("scontrol", "show", "job"),
        ("sacct", "--format=JobID"),
        ("nvidia-smi", "--query-gpu=index", "--format=csv"),
    ],
)
def test_runner_refuses_unknown_forms_as_missing(state, argv):
    runner = SimRunner(lambda: state)
    with pytest.raises(CommandError) as exc:
        runner.run(argv)
    assert exc.value.reason == "missing"
    assert runner.errors[(argv[0], "missing")] == 1


def test_runner_renders_every_controller_command(state):
    runner = SimRunner(lambda: state)
    for argv in (NODES_ARGV, PARTITIONS_ARGV, RESERVATION_ARGV, SSHARE_ARGV, SPRIO_ARGV, ASSOC_ARGV, ("sdiag",),
                 ("scontrol", "--oneliner", "show", "licenses"), SQUEUE_JOBS_ARGV):  # fmt: skip
        assert runner.run(argv).stdout


def test_node_arrays_untouched_by_rendering(state):
    before = state.nodes["c01"].cpu_ticks.copy()
    rs.scontrol_nodes(state)
    assert np.array_equal(before, state.nodes["c01"].cpu_ticks)


def test_sacct_state_filter_and_separate_option_values(state):
    runner = SimRunner(lambda: state)
    argv = (
        "sacct", "--allusers", "--parsable2", "--noheader", f"--delimiter={SACCT_DELIMITER}",
        "--format=" + ",".join(SACCT_FIELDS), "--state", "CD,OOM", "-S", "now-1days", "-E", "now",
    )  # fmt: skip
    parsed = parse_sacct(runner.run(argv).stdout, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert parsed.issues == []
    want = {
        str(j.job_id) for j in state.finished_between(NOW - 86400, NOW) if j.state in ("COMPLETED", "OUT_OF_MEMORY")
    }
    assert {r.job_id_raw for r in parsed.records} == want
    assert sum(len(r.steps) for r in parsed.records) == sum(
        len(j.steps) for j in state.finished if str(j.job_id) in want
    )
