"""sim.render_node: the REAL node collectors read the rendered /proc, cgroup v2 and nvidia-smi views of a small
hand-built ClusterState and return exactly the state's values, with zero parse errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.cpu import CpuCollector
from nomade.exporter.collectors.diskstats import DiskstatsCollector
from nomade.exporter.collectors.filesystem import FilesystemCollector
from nomade.exporter.collectors.gpu import GpuCollector
from nomade.exporter.collectors.job_io import JobIoCollector
from nomade.exporter.collectors.job_usage import JobUsageCollector
from nomade.exporter.collectors.memory import MemoryCollector
from nomade.exporter.collectors.nfs import DEFAULT_OPERATIONS, NfsCollector
from nomade.exporter.parsers.nvidia_smi import MIB, QUERY_APPS_FIELDS, QUERY_GPU_FIELDS
from nomade.exporter.runner import CommandError, CommandResult, CommandRunner
from nomade.sim import render_node as rn
from nomade.sim.state import (
    CPU_MODES,
    USER_HZ,
    ClusterSpec,
    ClusterState,
    FilesystemSpec,
    FilesystemState,
    Job,
    NodeSpec,
    NodeState,
    SchedulerState,
)

GIB = 1024**3
TIB = 1024**4
T0 = 1_700_000_000.0
BOOT = T0 - 86_400.0
NFS_OPS = ("READ", "WRITE", "GETATTR", "LOOKUP", "ACCESS", "OPEN", "CLOSE", "COMMIT", "SEQUENCE", "READDIR")


# ------------------------------------------------------------------------------------------------ the state


def _spec() -> ClusterSpec:
    nodes = (
        NodeSpec("c001", ("cpu",), 8, 2, 4, 1, 257000),
        NodeSpec("c002", ("cpu",), 8, 2, 4, 1, 257000),
        NodeSpec("g01", ("gpu",), 16, 2, 8, 1, 515000, gpus=4, gpu_type="a100", gpu_memory_mib=81920),
    )
    fss = (
        FilesystemSpec("/home", "nfs01:/export/home", "nfs4", 200 * TIB, 2_000_000_000, "nfs01"),
        FilesystemSpec("/project", "nfs02:/export/project", "nfs4", 1024 * TIB, 8_000_000_000, "nfs02"),
        FilesystemSpec("/scratch", "10.10.0.50@o2ib:/scratch", "lustre", 2048 * TIB, 12_000_000_000),
        FilesystemSpec("/tmp", "/dev/nvme0n1p1", "xfs", int(1.8 * TIB), 900_000_000),
    )
    return ClusterSpec(
        name="simclus",
        slurm_version="23.02.7",
        nodes=nodes,
        partitions=(),
        filesystems=fss,
        accounts=(),
        uids={"alice": 2001, "bob": 2002, "carol": 2003},
        instrumented=("c001", "c002", "g01"),
    )


def _node_state(spec: NodeSpec, k: int) -> NodeState:
    ns = NodeState(spec.name, state="mixed", boot_time=BOOT, cpu_load=3.25)
    # Distinct ticks per CPU and mode so a swapped column or row cannot pass.
    ns.cpu_ticks = (np.arange(spec.cpus * 10, dtype=np.int64).reshape(spec.cpus, 10) + 1) * (1000 + 37 * k)
    ns.mem_used_bytes = 100 * GIB + 12345 * 1024
    ns.mem_cached_bytes = 20 * GIB + 4096
    ns.mem_buffers_bytes = 1 * GIB
    ns.swap_total_bytes = 8 * GIB
    ns.swap_used_bytes = 3 * 1024 * 1024
    ns.procs_running, ns.procs_blocked = 9, 2
    ns.ctxt, ns.forks, ns.intr = 987654321 + k, 43210 + k, 123456789 + k
    ns.vmstat = {
        "pgfault": 10**9 + k,
        "pgmajfault": 3000,
        "pswpin": 10,
        "pswpout": 20,
        "pgpgin": 5 * 10**6,
        "pgpgout": 7 * 10**6,
        "oom_kill": 2 + k,
    }
    ns.psi_us = {
        ("cpu", "some"): 5_000_000 + k,
        ("cpu", "full"): 0,
        ("memory", "some"): 700_000,
        ("memory", "full"): 300_000,
        ("io", "some"): 2_500_000,
        ("io", "full"): 1_250_000,
    }
    ns.psi_avg = {("cpu", "some"): 12.5, ("memory", "some"): 1.25, ("io", "some"): 3.0}
    ns.disk = {
        "reads": 5000,
        "reads_merged": 10,
        "sectors_read": 400_000,
        "read_ms": 2500,
        "writes": 6000,
        "writes_merged": 20,
        "sectors_written": 480_000,
        "write_ms": 3000,
        "in_progress": 2,
        "io_ms": 4000,
        "weighted_ms": 5500,
    }
    ns.nfs = {}
    for j, mp in enumerate(("/home", "/project")):
        ops = {
            op: [
                100 * (i + 1) + j,
                100 * (i + 1) + j + i % 3,
                i % 2,
                1000 * (i + 1),
                2000 * (i + 1),
                5 * i,
                7 * i + 1,
                9 * i + 2,
            ]
            for i, op in enumerate(NFS_OPS)
        }
        ops["bytes"] = [10**9 + j, 2 * 10**9, 4096, 0, 9 * 10**8, 2 * 10**9 - 7, 1000, 2000]
        ns.nfs[mp] = ops
    if spec.gpus:
        ns.gpu_util = np.array([0.0, 0.87, 0.5, 0.994])
        ns.gpu_mem_used_mib = np.array([0.0, 30722.4, 1000.0, 80000.0])
        ns.gpu_temp_c = np.array([31.0, 71.6, 55.0, 90.0])
        ns.gpu_power_w = np.array([55.0, 352.104, 200.0, 399.5])
        ns.gpu_ecc_dbe = np.array([0, 0, 2, 0], dtype=np.int64)
        ns.gpu_xid = np.array([0, 0, 48, 0], dtype=np.int64)
    return ns


def _jobs() -> dict[int, Job]:
    start = T0 - 3600
    j1 = Job(
        101,
        "sim_a",
        "alice",
        "acc1",
        "cpu",
        start - 60,
        7200,
        1,
        4,
        4096,
        workdir="/scratch",
        state="RUNNING",
        start_time=start,
        nodes=("c001",),
        cores={"c001": (0, 1, 2, 3)},
    )
    j1.pids = {"c001": (5000, 5001, 5002)}
    j1.cpu_user_s, j1.cpu_system_s = 1234.567891, 12.5
    j1.mem_bytes, j1.mem_peak_bytes, j1.swap_bytes = {"c001": 3 * GIB + 4096}, {"c001": 3 * GIB + 8192}, {"c001": 0}
    j1.oom_kills = 1
    j1.write_bytes = {"/scratch": 10 * MIB + 7, "/tmp": 12345}
    j1.read_bytes = {"/home": 999, "/scratch": 1}
    # Two nodes; pid 5000 on c002 collides with job 101's on c001 unless the tree separates the nodes.
    j2 = Job(
        102,
        "mpi_b",
        "bob",
        "acc2",
        "cpu",
        start - 60,
        7200,
        2,
        16,
        2000,
        workdir="/home",
        state="RUNNING",
        start_time=start + 60,
        nodes=("c001", "c002"),
    )
    j2.pids = {"c001": (6000,), "c002": (5000, 5001)}
    j2.cpu_user_s, j2.cpu_system_s = 99.0, 1.0
    j2.mem_bytes, j2.mem_peak_bytes = {"c001": GIB, "c002": 2 * GIB}, {"c001": GIB, "c002": 3 * GIB}
    j2.swap_bytes = {"c001": 4096, "c002": 8192}
    j2.write_bytes = {"/home": 777_777}
    j3 = Job(
        103,
        "train",
        "carol",
        "acc3",
        "gpu",
        start - 60,
        7200,
        1,
        8,
        64000,
        req_gpus=2,
        workdir="/tmp",
        state="RUNNING",
        start_time=start,
        nodes=("g01",),
        gpus={"g01": (1, 3)},
    )
    j3.pids = {"g01": (7000, 7001, 7002)}
    j3.cpu_user_s, j3.cpu_system_s = 50.25, 0.75
    j3.mem_bytes, j3.mem_peak_bytes = {"g01": 40 * GIB}, {"g01": 41 * GIB}
    j3.write_bytes = {"/tmp": 5 * GIB, "/project": 3 * MIB}
    j4 = Job(
        104,
        "one",
        "alice",
        "acc1",
        "cpu",
        start,
        600,
        1,
        1,
        0,
        workdir="/project",
        state="RUNNING",
        start_time=start + 10,
        nodes=("c002",),
    )
    j4.pids = {"c002": (8000,)}
    j4.write_bytes = {"/project": 4242}
    pending = Job(105, "wait", "bob", "acc2", "cpu", T0, 600, 1, 1, 100)
    return {j.job_id: j for j in (j1, j2, j3, j4, pending)}


def make_state() -> ClusterState:
    spec = _spec()
    return ClusterState(
        spec=spec,
        now=T0,
        nodes={n.name: _node_state(n, k) for k, n in enumerate(spec.nodes)},
        active=_jobs(),
        finished=[],
        filesystems={
            "/home": FilesystemState(150 * TIB + 12345, 1_000_000),
            "/project": FilesystemState(512 * TIB, 2_000_000),
            "/scratch": FilesystemState(1900 * TIB + 1, 9_000_000),
            "/tmp": FilesystemState(100 * GIB, 1000),
        },
        scheduler=SchedulerState(server_start=BOOT, stats_reset=T0 - 600),
    )


# ------------------------------------------------------------------------------------------------ harness


class SmiRunner(CommandRunner):
    """Answers nvidia-smi from the renderer, as the simulated runner does (ValueError -> CommandError)."""

    def __init__(self, state: ClusterState, node: str) -> None:
        super().__init__(ttl=0)
        self.state, self.node = state, node

    def _execute(self, argv, timeout):
        try:
            out = rn.nvidia_smi(self.state, self.node, argv)
        except ValueError as exc:
            raise CommandError(argv, "missing", str(exc)) from exc
        return CommandResult(tuple(argv), out, "", 0.0, self.state.now)


def ctx(root: Path, tmp_path: Path, state: ClusterState, runner=None, **options) -> CollectorContext:
    return CollectorContext(
        runner=runner or CommandRunner(),
        options={"sample_interval": 3600, **options},
        state_dir=tmp_path / "state",
        proc_root=root / "proc",
        sys_root=root / "sys",
        clock=lambda: state.now,
        statvfs=rn.statvfs_for(lambda: state),
    )


def collect(c):
    out = c.new_set()
    c.collect(out)
    out.families()
    return out


@pytest.fixture
def state():
    return make_state()


# ---------------------------------------------------------------------------------------------- node tree


def test_cpu_and_memory_collectors_read_the_state(state, tmp_path):
    root = tmp_path / "c001"
    rn.write_node_tree(state, "c001", root)
    ns, spec = state.nodes["c001"], state.spec.node("c001")
    cpu = CpuCollector(ctx(root, tmp_path, state, user_hz=USER_HZ))
    mem = MemoryCollector(ctx(root, tmp_path, state, page_size=4096))
    try:
        out = collect(cpu)
        assert out.value("nomade_cpu_count") == spec.cpus
        for c in range(spec.cpus):
            for m, mode in enumerate(CPU_MODES[:8]):
                assert out.value("nomade_cpu_seconds_total", cpu=str(c), mode=mode) == ns.cpu_ticks[c, m] / USER_HZ
            assert out.value("nomade_cpu_guest_seconds_total", cpu=str(c), mode="user") == ns.cpu_ticks[c, 8] / 100
        assert out.value("nomade_cpu_context_switches_total") == ns.ctxt
        assert out.value("nomade_cpu_forks_total") == ns.forks
        assert out.value("nomade_cpu_interrupts_total") == ns.intr
        assert out.value("nomade_cpu_boot_time_seconds") == int(BOOT)
        assert out.value("nomade_cpu_pressure_stalled_seconds_total", kind="some") == 5_000_000 / 1e6
        assert out.value("nomade_cpu_pressure_average_ratio", kind="some", window="10s") == 0.125
        assert cpu.parse_errors == 0

        out = collect(mem)
        total = spec.real_memory_mib * MIB
        assert out.value("nomade_memory_total_bytes") == total
        assert out.value("nomade_memory_used_bytes") == ns.mem_used_bytes // 1024 * 1024
        assert out.value("nomade_memory_cached_bytes") == ns.mem_cached_bytes // 1024 * 1024
        assert out.value("nomade_memory_buffers_bytes") == ns.mem_buffers_bytes
        free = (total - ns.mem_used_bytes - ns.mem_cached_bytes - ns.mem_buffers_bytes) // 1024 * 1024
        assert out.value("nomade_memory_free_bytes") == free
        assert out.value("nomade_memory_swap_total_bytes") == ns.swap_total_bytes
        assert out.value("nomade_memory_swap_free_bytes") == ns.swap_total_bytes - ns.swap_used_bytes
        assert out.value("nomade_memory_page_faults_total") == ns.vmstat["pgfault"]
        assert out.value("nomade_memory_major_page_faults_total") == 3000
        assert out.value("nomade_memory_paged_in_bytes_total") == 5 * 10**6 * 1024
        assert out.value("nomade_memory_oom_kills_total") == ns.vmstat["oom_kill"]
        assert out.value("nomade_memory_procs_running") == 9 and out.value("nomade_memory_procs_blocked") == 2
        assert out.value("nomade_memory_pressure_stalled_seconds_total", kind="full") == 0.3
        assert out.value("nomade_memory_hugepages", state="total") == 0
        assert mem.parse_errors == 0
    finally:
        cpu.close()
        mem.close()


def test_diskstats_counters_and_iostat_figures_over_two_renders(state, tmp_path):
    root = tmp_path / "c001"
    rn.write_node_tree(state, "c001", root)
    c = DiskstatsCollector(ctx(root, tmp_path, state))
    try:
        base = time.monotonic()
        c.sampler.sample_once(now=base)
        d0 = dict(state.nodes["c001"].disk)
        step = {
            "reads": 600,
            "sectors_read": 48_000,
            "read_ms": 1200,
            "writes": 300,
            "sectors_written": 96_000,
            "write_ms": 900,
            "io_ms": 45_000,
            "weighted_ms": 90_000,
        }
        dt = 60.0
        state.now += dt
        for k, v in step.items():
            state.nodes["c001"].disk[k] += v
        state.nodes["c001"].psi_us[("io", "some")] += 6_000_000
        rn.write_node_tree(state, "c001", root)
        c.sampler.sample_once(now=base + dt)
        out = collect(c)
        d1 = state.nodes["c001"].disk
        dev = "nvme0n1"
        assert out.value("nomade_disk_reads_completed_total", device=dev) == d1["reads"]
        assert out.value("nomade_disk_written_bytes_total", device=dev) == d1["sectors_written"] * 512
        assert out.value("nomade_disk_io_now", device=dev) == d1["in_progress"]
        assert out.value("nomade_disk_io_time_weighted_seconds_total", device=dev) == d1["weighted_ms"] / 1000
        assert out.value("nomade_disk_read_iops", device=dev) == (d1["reads"] - d0["reads"]) / dt
        assert out.value("nomade_disk_write_bytes_per_second", device=dev) == step["sectors_written"] * 512 / dt
        assert out.value("nomade_disk_read_await_seconds", device=dev) == pytest.approx(1200 / 600 / 1000)
        assert out.value("nomade_disk_utilization_ratio", device=dev) == pytest.approx(45_000 / (dt * 1000))
        assert out.value("nomade_disk_queue_size", device=dev) == pytest.approx(90_000 / (dt * 1000))
        assert out.value("nomade_disk_pressure_stall_ratio", kind="some") == pytest.approx(0.1)
        assert out.value("nomade_disk_pressure_stalled_seconds_total", kind="full") == 1.25
        assert c.parse_errors == 0
    finally:
        c.close()


def test_nfs_per_op_counters_per_mount(state, tmp_path):
    root = tmp_path / "c002"
    rn.write_node_tree(state, "c002", root)
    c = NfsCollector(ctx(root, tmp_path, state, operations="all"))
    try:
        out = collect(c)
        assert c.parse_errors == 0
        ns = state.nodes["c002"]
        mounts = {k[:3] for k in out.samples("nomade_nfs_mount_points")}
        assert mounts == {("nfs01", "/export/home", "/home"), ("nfs02", "/export/project", "/project")}
        for server, export, mp in mounts:
            lab = {"server": server, "export": export, "mountpoint": mp}
            for op in NFS_OPS:
                o = ns.nfs[mp][op]
                assert out.value("nomade_nfs_operations_total", **lab, op=op) == o[0]
                assert out.value("nomade_nfs_retransmissions_total", **lab, op=op) == o[1] - o[0]
                assert out.value("nomade_nfs_timeouts_total", **lab, op=op) == o[2]
                assert out.value("nomade_nfs_rpc_sent_bytes_total", **lab, op=op) == o[3]
                assert out.value("nomade_nfs_rpc_received_bytes_total", **lab, op=op) == o[4]
                assert out.value("nomade_nfs_rtt_seconds_total", **lab, op=op) == o[6] * 1e-3
                assert out.value("nomade_nfs_execute_seconds_total", **lab, op=op) == o[7] * 1e-3
            assert out.value("nomade_nfs_operations_total", **lab, op="RENAME") == 0  # listed by the kernel, idle
            b = ns.nfs[mp]["bytes"]
            assert out.value("nomade_nfs_read_bytes_total", **lab) == b[4]
            assert out.value("nomade_nfs_written_bytes_total", **lab) == b[5]
            assert out.value("nomade_nfs_application_read_bytes_total", **lab, io="direct") == b[2]
            assert out.value("nomade_nfs_mount_age_seconds", **lab) == 86_400
            assert out.samples("nomade_nfs_mount_info")[(server, export, mp, "nfs4", "4.2", "tcp")] == 1
    finally:
        c.close()
    # Default operation folding: everything not in DEFAULT_OPERATIONS sums into op="other".
    c = NfsCollector(ctx(root, tmp_path, state))
    try:
        out = collect(c)
        other = sum(
            v[0] for op, v in state.nodes["c002"].nfs["/home"].items() if op != "bytes" and op not in DEFAULT_OPERATIONS
        )
        assert (
            out.value(
                "nomade_nfs_operations_total", server="nfs01", export="/export/home", mountpoint="/home", op="other"
            )
            == other
        )
    finally:
        c.close()


def test_static_files_are_not_rewritten_and_changed_ones_are_replaced(state, tmp_path):
    root = tmp_path / "c001"
    rn.write_node_tree(state, "c001", root)
    info, stat = root / "proc/self/mountinfo", root / "proc/stat"
    ino_info, ino_stat = info.stat().st_ino, stat.stat().st_ino
    state.nodes["c001"].cpu_ticks[0, 0] += 100
    rn.write_node_tree(state, "c001", root)
    assert info.stat().st_ino == ino_info  # unchanged text: untouched
    assert stat.stat().st_ino != ino_stat  # new text: a new file renamed over the old one
    assert f"cpu0 {state.nodes['c001'].cpu_ticks[0, 0]} " in stat.read_text()
    assert not [p for p in (root / "proc").rglob(".*.tmp")]


# ---------------------------------------------------------------------------------------------- job tree


def test_job_usage_reads_per_job_sums(state, tmp_path):
    root = tmp_path / "jobs"
    rn.write_job_tree(state, root)
    c = JobUsageCollector(ctx(root, tmp_path, state))
    out = collect(c)
    assert c.parse_errors == 0
    running = [j for j in state.active.values() if j.state == "RUNNING"]
    assert out.value("nomade_job_usage_jobs") == len(running) == 4
    for j in running:
        jid = str(j.job_id)
        assert out.value("nomade_job_usage_cpu_user_seconds_total", job_id=jid) == round(j.cpu_user_s * 1e6) / 1e6
        assert out.value("nomade_job_usage_cpu_seconds_total", job_id=jid) == pytest.approx(
            j.cpu_user_s + j.cpu_system_s, abs=1e-6
        )
        assert out.value("nomade_job_usage_memory_usage_bytes", job_id=jid) == sum(j.mem_bytes.values())
        assert out.value("nomade_job_usage_memory_peak_bytes", job_id=jid) == sum(j.mem_peak_bytes.values())
        assert out.value("nomade_job_usage_swap_bytes", job_id=jid) == sum(j.swap_bytes.values())
        assert out.value("nomade_job_usage_oom_kills_total", job_id=jid) == j.oom_kills
        # Only the processes carrying I/O are listed: 2 when the job writes to network and local filesystems.
        pids = IO_PROCESSES[j.job_id]
        assert out.value("nomade_job_usage_processes", job_id=jid) == pids
        assert out.value("nomade_job_usage_threads", job_id=jid) == pids
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="101") == 4096 * MIB
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="102") == 2000 * MIB * 2  # per-node x nodes
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="104") == 257000 * MIB  # --mem=0
    info = out.samples("nomade_job_usage_info")
    assert {(k[0], k[2]) for k in info} == {("101", "c001"), ("102", "c001"), ("103", "g01"), ("104", "c002")}
    assert set(out.samples("nomade_job_usage_gpu_info")) == {("103", "1"), ("103", "3")}


def test_job_io_written_bytes_per_job_and_fs_class(state, tmp_path):
    root = tmp_path / "jobs"
    rn.write_job_tree(state, root)
    c = JobIoCollector(ctx(root, tmp_path, state), start=False)
    base = time.monotonic()
    c.sampler.sample_once(now=base)
    # The jobs keep writing; the collector's per-job totals follow the state exactly.
    state.now += 60
    state.active[101].write_bytes["/scratch"] += 5 * MIB
    state.active[101].write_bytes["/tmp"] += 100
    state.active[103].write_bytes["/project"] += 1
    rn.write_job_tree(state, root)
    c.sampler.sample_once(now=base + 60)
    out = collect(c)
    assert c.parse_errors == 0
    expected = {  # network: /home /project (nfs4), /scratch (lustre); local: /tmp (xfs)
        "101": (10 * MIB + 7 + 5 * MIB, 12345 + 100),
        "102": (777_777, 0),
        "103": (3 * MIB + 1, 5 * GIB),
        "104": (4242, 0),
    }
    for jid, (net, loc) in expected.items():
        assert out.value("nomade_job_io_written_bytes_total", job_id=jid, fs="network") == net
        assert out.value("nomade_job_io_written_bytes_total", job_id=jid, fs="local") == loc
        j = state.active[int(jid)]
        assert out.value("nomade_job_io_read_bytes_total", job_id=jid) == sum(j.read_bytes.values())
        assert out.value("nomade_job_io_processes", job_id=jid) == IO_PROCESSES[j.job_id]
    c.close()


IO_PROCESSES = {101: 2, 102: 1, 103: 2, 104: 1}
"""Processes the job tree lists per fixture job: 101 writes to /scratch (lustre) and /tmp (xfs), 103 to /tmp and
/project (nfs4): two each; 102 (/home) and 104 (/project) write to one class: one each."""


def test_job_io_split_lists_only_the_processes_carrying_io(state, tmp_path):
    j1, j2, j3 = state.active[101], state.active[102], state.active[103]
    # 101: workdir /scratch (network) carries reads and network writes; the second pid the /tmp (local) writes.
    assert rn.job_io_split(state, j1) == [
        (5000, "c001", 999 + 1, 10 * MIB + 7, True),
        (5001, "c001", 0, 12345, False),
    ]
    # 102: one class only: its first pid on its first node, none of c002's processes.
    assert rn.job_io_split(state, j2) == [(6000, "c001", 0, 777_777, True)]
    # 103: workdir /tmp (local) first, /project (network) on the second pid of g01.
    g01 = rn.cluster_pid(state, "g01", 7000)
    assert rn.job_io_split(state, j3) == [(g01, "g01", 0, 5 * GIB, False), (g01 + 1, "g01", 0, 3 * MIB, True)]
    rn.write_job_tree(state, tmp_path)
    task = tmp_path / "sys/fs/cgroup/system.slice/c001_slurmstepd.scope/job_101/step_batch/user/task_0"
    assert (task / "cgroup.procs").read_text() == "5000\n5001\n"
    assert not (tmp_path / "proc" / "5002").exists()
    assert sorted(int(p.name) for p in (tmp_path / "proc").iterdir() if p.name.isdigit() and p.name != "1") == sorted(
        p for j in state.active.values() if j.state == "RUNNING" for p, *_ in rn.job_io_split(state, j)
    )


def test_job_that_ends_leaves_the_tree(state, tmp_path):
    root = tmp_path / "jobs"
    rn.write_job_tree(state, root)
    scope = root / "sys/fs/cgroup/system.slice/c001_slurmstepd.scope"
    assert (scope / "job_101").is_dir()
    gone = [rn.cluster_pid(state, "c001", p) for p in state.active[101].pids["c001"][:2]]
    assert all((root / "proc" / str(p)).is_dir() for p in gone)
    state.active[101].state = "COMPLETED"
    state.finished.append(state.active.pop(101))
    rn.write_job_tree(state, root)
    assert not (scope / "job_101").exists()
    assert not any((root / "proc" / str(p)).exists() for p in gone)
    assert (scope / "job_102").is_dir()
    c = JobUsageCollector(ctx(root, tmp_path, state))
    assert collect(c).value("nomade_job_usage_jobs") == 3


def test_cluster_pids_keep_nodes_apart(state):
    assert rn.cluster_pid(state, "c001", 5000) == 5000
    assert rn.cluster_pid(state, "c002", 5000) == rn.PID_SPACE + 5000
    for bad in (rn.PID_SPACE, 1, 0):
        with pytest.raises(ValueError):
            rn.cluster_pid(state, "c001", bad)


# -------------------------------------------------------------------------------------------- filesystem


def test_filesystem_collector_through_statvfs_for(state, tmp_path):
    root = tmp_path / "jobs"
    rn.write_job_tree(state, root)
    rn.write_job_tree(state, root)  # a second call must keep init's mount table
    assert (root / "proc/1/mountinfo").read_text() == (root / "proc/self/mountinfo").read_text()
    c = FilesystemCollector(ctx(root, tmp_path, state))
    out = collect(c)
    assert c.parse_errors == 0
    for fs in state.spec.filesystems:
        lab = {"mountpoint": fs.mountpoint, "device": fs.source, "fstype": fs.fstype}
        used = state.filesystems[fs.mountpoint].used_bytes
        blocks = fs.size_bytes // 4096
        free = (fs.size_bytes - used) // 4096 * 4096
        assert out.value("nomade_filesystem_size_bytes", **lab) == blocks * 4096
        assert out.value("nomade_filesystem_free_bytes", **lab) == free
        assert out.value("nomade_filesystem_avail_bytes", **lab) == free  # no root reserve on xfs/nfs/lustre
        assert out.value("nomade_filesystem_files", **lab) == fs.inodes
        assert (
            out.value("nomade_filesystem_files_free", **lab) == fs.inodes - state.filesystems[fs.mountpoint].files_used
        )
        assert out.value("nomade_filesystem_device_error", **lab) == 0
    errors = out.samples("nomade_filesystem_device_error")
    assert sum(errors.values()) == 0 and len(errors) == len(state.spec.filesystems) + len(rn.SYSTEM_MOUNTS)
    # A filesystem filling up is seen at the next call.
    state.filesystems["/scratch"].used_bytes += 10 * TIB
    lab = {"mountpoint": "/scratch", "device": "10.10.0.50@o2ib:/scratch", "fstype": "lustre"}
    assert collect(c).value("nomade_filesystem_free_bytes", **lab) == (2048 - 1910) * TIB - 4096


def test_statvfs_ext4_reserve_and_unknown_path(state):
    st = rn.statvfs_for(lambda: state)
    root = st("/")
    assert root.f_bavail == root.f_bfree - int(root.f_blocks * 0.05)
    assert st("/tmp/").f_blocks == st("/tmp").f_blocks
    with pytest.raises(FileNotFoundError):
        st("/nonexistent")


# ----------------------------------------------------------------------------------------------------- GPU


@pytest.mark.parametrize("source", ["nvidia-smi", "nvidia-smi-csv"])
def test_gpu_collector_reads_the_gpus_and_their_jobs(state, tmp_path, source):
    root = tmp_path / "g01"
    rn.write_node_tree(state, "g01", root)
    options = {"source": source, "job_dir": str(root / rn.GPU_JOB_DIR)}
    c = GpuCollector(ctx(root, tmp_path, state, runner=SmiRunner(state, "g01"), **options))
    out = collect(c)
    assert c.parse_errors == 0
    ns = state.nodes["g01"]
    assert out.value("nomade_gpu_source_info", source=source) == 1
    for i in range(4):
        g = str(i)
        assert out.value("nomade_gpu_utilization_ratio", gpu=g, engine="gpu") == round(ns.gpu_util[i] * 100) / 100
        assert out.value("nomade_gpu_memory_used_bytes", gpu=g) == round(ns.gpu_mem_used_mib[i]) * MIB
        assert out.value("nomade_gpu_memory_total_bytes", gpu=g) == 81920 * MIB
        assert out.value("nomade_gpu_temperature_celsius", gpu=g, sensor="gpu") == round(ns.gpu_temp_c[i])
        assert out.value("nomade_gpu_power_draw_watts", gpu=g) == round(ns.gpu_power_w[i], 2)
        loc = "total" if source == "nvidia-smi-csv" else "dram"
        assert out.value("nomade_gpu_ecc_volatile_errors", gpu=g, type="uncorrected", location=loc) == ns.gpu_ecc_dbe[i]
    # job 103 holds GPUs 1 and 3 with its two worker processes (the batch shell is not a GPU process)
    assert set(out.samples("nomade_gpu_job_info")) == {("1", "103", "carol"), ("3", "103", "carol")}
    assert [out.value("nomade_gpu_processes", gpu=str(i)) for i in range(4)] == [0, 2, 0, 2]
    c.close()


def test_nvidia_smi_forms(state):
    xml = rn.nvidia_smi(state, "g01", ["nvidia-smi", "-q", "-x"])
    assert xml.startswith('<?xml version="1.0" ?>') and xml.count("<gpu id=") == 4
    csv = rn.nvidia_smi(state, "g01", ["/usr/bin/nvidia-smi", "--query-gpu=index,memory.used", "--format=csv"])
    assert csv.splitlines() == ["index, memory.used [MiB]", "0, 0 MiB", "1, 30722 MiB", "2, 1000 MiB", "3, 80000 MiB"]
    apps = rn.nvidia_smi(
        state, "g01", ["nvidia-smi", "--query-compute-apps=" + ",".join(QUERY_APPS_FIELDS), "--format=csv,noheader"]
    ).splitlines()
    assert [line.split(", ")[1:] for line in apps] == [
        ["7001", "train", "15361 MiB"],
        ["7002", "train", "15361 MiB"],
        ["7001", "train", "40000 MiB"],
        ["7002", "train", "40000 MiB"],
    ]
    full = rn.nvidia_smi(state, "g01", ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=csv"])
    assert len(full.splitlines()) == 5
    for argv in (
        ["nvidia-smi"],
        ["nvidia-smi", "-L"],
        ["nvidia-smi", "--query-gpu=bogus.field", "--format=csv"],
        ["nvidia-smi", "--query-gpu=index", "--format=json"],
    ):
        with pytest.raises(ValueError):
            rn.nvidia_smi(state, "g01", argv)


def test_gpu_job_files_follow_the_jobs(state, tmp_path):
    root = tmp_path / "g01"
    rn.write_node_tree(state, "g01", root)
    jobs = root / rn.GPU_JOB_DIR
    assert os.listdir(jobs) == ["103"]
    assert (jobs / "103").read_text() == "gpus=1,3\nuser=carol\n"
    state.active[103].state = "TIMEOUT"
    rn.write_node_tree(state, "g01", root)
    assert os.listdir(jobs) == []
