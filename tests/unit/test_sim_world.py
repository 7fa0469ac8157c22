"""SimWorld (nomade.sim.world): the real collectors wired to a small simulated cluster.

Every expected value is derived from the simulation state the sources were rendered from (job counts by state,
per-job memory, /proc/stat ticks of the instrumented nodes, filesystem fill), so a renderer, a collector option or
the simulated clock that is wired wrongly shows as a mismatch. The cluster is a 16-node cut of the default one
with a workload scaled to it, a few 2-minute steps after the engine's warm-up.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from nomade.sim.model import default_cluster, default_workload
from nomade.sim.state import CPU_MODES, ClusterSpec
from nomade.sim.world import CLUSTER_COLLECTORS, CONTROLLER_COLLECTORS, NODE_COLLECTORS, SimWorld

START = 1_790_000_040.0  # a fixed Unix time on the 120 s grid (2026-09-21)
STEP = 120.0
KEEP = ("c001", "c002", "c003", "c004", "c005", "c006", "c129", "c130", "c131", "c132", "m01", "m02", "g01", "g02",
        "d01", "d02")  # fmt: skip
INSTRUMENTED = ("c001", "c129", "m01", "g01")


def small_cluster() -> ClusterSpec:
    full = default_cluster()
    nodes = tuple(n for n in full.nodes if n.name in KEEP)
    parts = tuple(
        dataclasses.replace(p, nodes=tuple(x for x in p.nodes if x in KEEP))
        for p in full.partitions
        if any(x in KEEP for x in p.nodes)
    )
    return dataclasses.replace(full, nodes=nodes, partitions=parts, instrumented=INSTRUMENTED)


def small_workload():
    wl = default_workload()
    scale = len(KEEP) / 312
    kinds = tuple(dataclasses.replace(k, rate_per_hour=k.rate_per_hour * scale) for k in wl.kinds)
    return dataclasses.replace(
        wl,
        kinds=kinds,
        surges_per_day=0.0,
        node_failures_per_day=1.0,
        queue_soft_limit=20,
        queue_hard_limit=40,
        max_running_per_user=8,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = SimWorld(11, START, tmp_path_factory.mktemp("world"), spec=small_cluster(), workload=small_workload())
    ticks = {}
    for i in range(1, 4):
        ticks = {n: w.state.nodes[n].cpu_ticks.copy() for n in INSTRUMENTED}
        w.advance(START + i * STEP)
    fams = w.collect()
    yield w, fams, ticks
    w.close()


def samples(fams, name):
    """``[(labels, value)]`` of one sample name across the families."""
    return [(s.labels, s.value) for m in fams for s in m.samples if s.name == name]


def test_every_collector_up_without_parse_errors(world):
    w, fams, _ = world
    up = {(lab.get("node"), lab["collector"]): v for lab, v in samples(fams, "nomade_collector_up")}
    expected = {(None, c) for c in (*CONTROLLER_COLLECTORS, *CLUSTER_COLLECTORS)}
    for n in INSTRUMENTED:
        expected |= {(n, c) for c in NODE_COLLECTORS}
        if w.spec.node(n).gpus:
            expected.add((n, "gpu"))
    assert set(up) == expected
    assert {k for k, v in up.items() if v != 1} == set()
    errors = {(lab.get("node"), lab["collector"]): v for lab, v in samples(fams, "nomade_collector_parse_errors_total")}
    assert set(errors) == expected
    assert {k: v for k, v in errors.items() if v} == {}
    # the simulated clock, not the host's, stamps the last success
    assert {v for _, v in samples(fams, "nomade_collector_last_success_timestamp_seconds")} == {START + 3 * STEP}


def test_each_family_once(world):
    _, fams, _ = world
    names = [m.name for m in fams]
    assert len(names) == len(set(names))


def test_queue_counts_equal_the_state(world):
    w, fams, _ = world
    want = Counter(j.state.lower() for j in w.state.active.values())
    got = {lab["state"]: v for lab, v in samples(fams, "nomade_slurm_queue_cluster_jobs")}
    assert {k: v for k, v in got.items() if v} == dict(want)
    assert want["running"] > 0 and want["pending"] > 0
    per_job = {lab["job_id"]: v for lab, v in samples(fams, "nomade_slurm_queue_job_requested_cpus")}
    assert per_job == {str(j.job_id): float(j.req_cpus) for j in w.state.active.values()}


def test_job_usage_equals_the_state(world):
    w, fams, _ = world
    running = {str(j.job_id): j for j in w.state.active.values() if j.state == "RUNNING"}
    mem = {lab["job_id"]: v for lab, v in samples(fams, "nomade_job_usage_memory_usage_bytes")}
    assert mem == {jid: float(sum(j.mem_bytes.values())) for jid, j in running.items()}
    # the node whose exporter reads the job's cgroup: its first node
    nodes = {lab["job_id"]: lab["node"] for lab, _ in samples(fams, "nomade_job_usage_memory_usage_bytes")}
    assert nodes == {jid: j.nodes[0] for jid, j in running.items()}
    per_node = {lab["node"]: v for lab, v in samples(fams, "nomade_job_usage_jobs")}
    first = Counter(j.nodes[0] for j in running.values())
    assert per_node == {n.name: float(first.get(n.name, 0)) for n in w.spec.nodes}
    users = {lab["job_id"]: lab["user"] for lab, _ in samples(fams, "nomade_job_usage_info")}
    assert users == {jid: j.user for jid, j in running.items()}
    assert {lab["job_id"] for lab, _ in samples(fams, "nomade_job_io_read_bytes_total")} == set(running)


def test_accounting_per_job_equals_finished_jobs(world):
    w, fams, _ = world
    now = w.state.now
    want = {str(j.job_id) for j in w.state.finished_between(now - 3600, now)}
    got = {lab["job_id"] for lab, _ in samples(fams, "nomade_slurm_job_info")}
    assert got == want and want
    elapsed = {lab["job_id"]: v for lab, v in samples(fams, "nomade_slurm_job_elapsed_seconds")}
    for j in w.state.finished_between(now - 3600, now):
        # sacct prints whole seconds: Elapsed = End - Start of the printed (truncated) times
        assert elapsed[str(j.job_id)] == math.floor(j.end_time) - math.floor(j.start_time)


def test_node_series_carry_node_and_ratios_of_the_simulated_interval(world):
    w, fams, before = world
    for n in INSTRUMENTED:
        spec = w.spec.node(n)
        count = [v for lab, v in samples(fams, "nomade_cpu_count") if lab.get("node") == n]
        assert count == [float(spec.cpus)]
        # mpstat figures over the last step, from the state's own tick counters
        d = (w.state.nodes[n].cpu_ticks - before[n]).astype(float)
        col = {m: i for i, m in enumerate(CPU_MODES)}
        counted = [col[m] for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")]
        total = d[:, counted].sum()
        ratios = {lab["mode"]: v for lab, v in samples(fams, "nomade_cpu_mode_ratio") if lab.get("node") == n}
        assert ratios["iowait"] == pytest.approx(d[:, col["iowait"]].sum() / total, abs=1e-12)
        assert ratios["idle"] == pytest.approx(d[:, col["idle"]].sum() / total, abs=1e-12)
        per_core = d[:, counted].sum(axis=1)
        busy = 1 - (d[:, col["idle"]] + d[:, col["iowait"]]) / per_core
        avg = [v for lab, v in samples(fams, "nomade_cpu_busy_average_ratio") if lab.get("node") == n]
        assert avg == [pytest.approx(float(np.mean(np.clip(busy, 0, 1))), abs=1e-12)]
        interval = [v for lab, v in samples(fams, "nomade_cpu_sample_interval_seconds") if lab.get("node") == n]
        assert interval == [STEP]
    # every node-mode family's series are labelled with an instrumented node
    for m in fams:
        if m.name.startswith(("nomade_cpu_", "nomade_memory_", "nomade_disk_", "nomade_nfs_", "nomade_gpu_")):
            assert {s.labels.get("node") for s in m.samples} <= set(INSTRUMENTED), m.name
    gpus = {lab["node"] for lab, _ in samples(fams, "nomade_gpu_temperature_celsius")}
    assert gpus == {n for n in INSTRUMENTED if w.spec.node(n).gpus}


def test_filesystems_equal_the_state(world):
    w, fams, _ = world
    size = {lab["mountpoint"]: v for lab, v in samples(fams, "nomade_filesystem_size_bytes")}
    free = {lab["mountpoint"]: v for lab, v in samples(fams, "nomade_filesystem_free_bytes")}
    assert set(size) == {fs.mountpoint for fs in w.spec.filesystems}
    for fs in w.spec.filesystems:
        used = w.state.filesystems[fs.mountpoint].used_bytes
        # statvfs counts whole fragments: the figures agree to within one 4 KiB fragment (f_frsize)
        assert abs(size[fs.mountpoint] - fs.size_bytes) <= 4096
        assert abs((size[fs.mountpoint] - free[fs.mountpoint]) - used) <= 2 * 4096


def test_same_seed_same_scrape(world, tmp_path):
    w, _, _ = world
    twin = SimWorld(11, START, tmp_path, spec=small_cluster(), workload=small_workload())
    try:
        twin.advance(w.state.now)
        a = {str(j.job_id): (j.state, j.nodes) for j in w.state.active.values()}
        b = {str(j.job_id): (j.state, j.nodes) for j in twin.state.active.values()}
        assert a == b
        mem = {s.labels["job_id"]: s.value for m in twin.collect() for s in m.samples
               if s.name == "nomade_job_usage_memory_usage_bytes"}  # fmt: skip
        assert mem == {jid: float(sum(j.mem_bytes.values())) for jid, j in
                       ((str(j.job_id), j) for j in twin.state.active.values() if j.state == "RUNNING")}  # fmt: skip
    finally:
        twin.close()


class _ClockWorld:
    """advance/collect/close recording what LiveWorld asks of a world."""

    def __init__(self, now: float) -> None:
        self.state = type("S", (), {"now": now})()
        self.advanced: list[float] = []
        self.closed = False

    def advance(self, t: float) -> None:
        self.advanced.append(t)
        self.state.now = t

    def collect(self) -> list:
        return [f"scrape at {self.state.now}"]

    def close(self) -> None:
        self.closed = True


def test_live_world_follows_the_wall_clock():
    from nomade.sim.serve import LiveWorld

    clock = [5000.0]
    world = _ClockWorld(now=1000.0)
    live = LiveWorld(world, step=5.0, clock=lambda: clock[0])
    live.tick()  # catches up at once
    assert world.advanced == [5000.0]
    live.tick()  # the clock did not move: nothing to do
    assert world.advanced == [5000.0]
    clock[0] = 5007.5
    live.tick()
    assert world.advanced == [5000.0, 5007.5]
    assert list(live.collect()) == ["scrape at 5007.5"]
    live.stop()
    assert world.closed
    with pytest.raises(ValueError):
        LiveWorld(world, step=0)


def test_history_span_is_on_the_step_grid():
    from nomade.cli.sim import history_span

    assert history_span(1_000_050.0, 1.0, 120.0) == (999_960.0 - 86400, 999_960.0)  # 8333 x 120 s
    start, end = history_span(1_000_050.0, 0.25, 300.0)
    assert (end % 300, (end - start) / 300) == (0.0, 72.0)


def _scrape(fams) -> dict[tuple, float]:
    """``{(sample name, sorted labels): value}`` of one scrape, without the wall-clock collector durations."""
    out = {}
    for m in fams:
        for s in m.samples:
            if s.name != "nomade_collector_duration_seconds":
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in out, key  # each series once
                out[key] = s.value
    return out


def test_sequential_world_scrapes_what_the_threaded_one_does(tmp_path):
    # History generation runs collectors inline (SimWorld(sequential=True)); the series and values must be the
    # live exporter's (thread pools), step after step, the self-metrics (up, scrapes, command runs) included.
    worlds = [
        SimWorld(11, START, tmp_path / name, spec=small_cluster(), workload=small_workload(), sequential=seq)
        for name, seq in (("threads", False), ("inline", True))
    ]
    try:
        for i in range(1, 4):
            for w in worlds:
                w.advance(START + i * STEP)
            threaded, inline = (_scrape(w.collect()) for w in worlds)
            assert inline == threaded
        up = {k: v for k, v in inline.items() if k[0] == "nomade_collector_up"}
        assert len(up) == len(worlds[1].collectors) and set(up.values()) == {1.0}
        assert inline[("nomade_exporter_scrapes_total", ())] == 3.0  # the controller group's own scrapes
        assert any(k[0] == "nomade_job_io_written_bytes_total" for k in inline)
    finally:
        for w in worlds:
            w.close()


def test_inline_executor_runs_at_once_and_keeps_exceptions():
    from nomade.sim.world import InlineExecutor

    calls = []
    ex = InlineExecutor()
    fut = ex.submit(lambda a, b=0: calls.append((a, b)) or a + b, 2, b=3)
    assert fut.done() and fut.result() == 5 and calls == [(2, 3)]
    failed = ex.submit(lambda: 1 / 0)
    assert failed.done() and isinstance(failed.exception(), ZeroDivisionError)
    ex.shutdown()


def test_catch_up_resumes_an_uninterrupted_run(tmp_path):
    # A history worker starting part-way builds a fresh world and catches it up: from then on its scrapes must be
    # the uninterrupted world's, counters included (accounting store, scrapes, command runs of collectors with
    # and without their own polling interval: sacctmgr polls every 300 s, sacct every 60 s, squeue every scrape).
    times = [START + i * STEP for i in range(1, 10)]
    whole = SimWorld(11, START, tmp_path / "whole", spec=small_cluster(), workload=small_workload(), sequential=True)
    part = SimWorld(11, START, tmp_path / "part", spec=small_cluster(), workload=small_workload(), sequential=True)
    try:
        expected = []
        for t in times:
            whole.advance(t)
            expected.append(_scrape(whole.collect()))
        part.catch_up(times[:5])
        for t, want in zip(times[5:], expected[5:], strict=True):
            part.advance(t)
            assert _scrape(part.collect()) == want
        runs = {
            k[1][0][1]: v for k, v in want.items() if k[0] == "nomade_exporter_command_runs_total" and len(k[1]) == 1
        }
        # one of each per scrape, sacctmgr every 300 s (3 of 9 scrapes), scontrol for nodes, partitions,
        # reservations and licenses
        assert runs == {"sacct": 9, "sacctmgr": 3, "scontrol": 36, "sdiag": 9, "sprio": 9, "squeue": 9, "sshare": 9}
        assert want[("nomade_exporter_scrapes_total", ())] == 9.0
        finished = sum(v for k, v in want.items() if k[0] == "nomade_slurm_job_finished_total")
        assert finished > 0  # the accounting store's counters were rebuilt, not restarted
        with pytest.raises(ValueError, match="at least 15 s apart"):
            whole.catch_up([START + 3600, START + 3610])
    finally:
        whole.close()
        part.close()
