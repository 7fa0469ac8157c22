"""Unit tests of the simulated cluster's engine (nomade.sim.engine) and default model (nomade.sim.model)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from nomade.sim.engine import Simulation
from nomade.sim.model import default_cluster, default_workload
from nomade.sim.state import CPU_MODES, TERMINAL_STATES

T0 = 1764547200.0  # 2025-12-01 00:00:00 UTC, a Monday
DAY = 86400.0
MIB = 1 << 20


def _snapshot(sim: Simulation) -> dict:
    st = sim.state
    jobs = {}
    for job in [*st.finished, *st.active.values()]:
        jobs[job.job_id] = (
            job.state, job.reason, job.priority, job.start_time, job.end_time, job.nodes, tuple(job.cores.items()),
            job.cpu_user_s, job.cpu_system_s, tuple(job.mem_bytes.items()), tuple(job.mem_peak_bytes.items()),
            tuple(job.write_bytes.items()), job.exit_code, job.signal,
            tuple((s.step, s.state, s.exit_code, s.signal, s.max_rss_bytes, s.cpu_s) for s in job.steps),
        )  # fmt: skip
    nodes = {}
    for name, ns in st.nodes.items():
        nodes[name] = (
            ns.state, tuple(sorted(ns.flags)), ns.reason, ns.alloc_cpus, ns.alloc_mem_mib, ns.alloc_gpus,
            ns.cpu_load, ns.free_mem_mib, ns.boot_time, ns.cpu_ticks.tobytes(), ns.mem_used_bytes,
            tuple(sorted(ns.vmstat.items())), tuple(sorted(ns.psi_us.items())), tuple(sorted(ns.disk.items())),
            repr(sorted(ns.nfs.items())), ns.gpu_util.tobytes(),
        )  # fmt: skip
    s = st.scheduler
    sched = (s.jobs_submitted, s.jobs_started, s.cycles, s.bf_backfilled_jobs, s.last_cycle_us, s.mean_cycle_us,
             repr(sorted(s.rpc_by_type.items())), repr(sorted(s.rpc_by_user.items())))  # fmt: skip
    fs = {m: (f.used_bytes, f.files_used, tuple(sorted(f.group_used_bytes.items()))) for m, f in st.filesystems.items()}
    return {"now": st.now, "jobs": jobs, "nodes": nodes, "sched": sched, "fs": fs,
            "usage": tuple(sorted(st.usage.items())), "next": st.next_job_id}  # fmt: skip


def test_same_seed_same_state_however_advanced_and_other_seed_differs():
    spec, wl = default_cluster(), default_workload()
    a = Simulation(spec, wl, seed=7, start=T0, warmup_s=3600)
    a.advance(T0 + 4 * 3600)
    b = Simulation(spec, wl, seed=7, start=T0, warmup_s=3600)
    t = T0
    for dt in [1.0, 29.0, 0.5, 3599.5, 7.25, 600.0, 45.0, 2000.0, 1.0, 1.0, 3000.0]:
        t += dt
        b.advance(t)
    rng = np.random.default_rng(0)
    while t < T0 + 4 * 3600:
        t = min(T0 + 4 * 3600, t + float(rng.uniform(1, 900)))
        b.advance(t)
    sa, sb = _snapshot(a), _snapshot(b)
    assert len(sa["jobs"]) > 300  # a busy cluster, not a vacuous comparison
    assert sa == sb
    c = Simulation(spec, wl, seed=8, start=T0, warmup_s=3600)
    c.advance(T0 + 4 * 3600)
    sc = _snapshot(c)
    assert sc["jobs"] != sa["jobs"]
    assert {j[0] for j in sc["jobs"].values()} <= {"PENDING", "RUNNING", *TERMINAL_STATES}


def test_advance_backwards_raises():
    sim = Simulation(default_cluster(), default_workload(), seed=1, start=T0, warmup_s=0)
    sim.advance(T0 + 60)
    with pytest.raises(ValueError):
        sim.advance(T0 + 59)


def test_default_cluster_layout():
    spec = default_cluster()
    assert len(spec.nodes) == 312
    assert spec.instrumented == ("c001", "c002", "c129", "c130", "m01", "g01", "g02", "d01")
    parts = {p.name: p for p in spec.partitions}
    assert len(parts["cpu"].nodes) == 256 and parts["cpu"].default
    assert parts["long"].nodes == parts["cpu"].nodes[128:]
    assert spec.node("g01").gpus == 4 and spec.node("g01").gpu_memory_mib == 81920
    assert parts["debug"].max_time_s == 3600
    assert sum(len(a.users) for a in spec.accounts) == 40 and len(spec.accounts) == 8
    more = default_cluster(12).instrumented
    assert len(set(more)) == 12 and more[:8] == spec.instrumented
    with pytest.raises(ValueError):
        default_cluster(-1)


def _check_conservation(sim: Simulation) -> None:
    st = sim.state
    running = [j for j in st.active.values() if j.state == "RUNNING"]
    per_node: dict[str, list] = {n: [] for n in st.nodes}
    for j in running:
        for n in j.nodes:
            per_node[n].append(j)
    for name, ns in st.nodes.items():
        spec = sim.spec.node(name)
        jobs = per_node[name]
        cpus = sum(len(j.cores[name]) for j in jobs)
        assert ns.alloc_cpus == cpus <= spec.cpus
        assert ns.alloc_mem_mib == sum(j.req_mem_mib for j in jobs) <= spec.real_memory_mib
        assert ns.alloc_gpus == sum(len(j.gpus.get(name, ())) for j in jobs) <= spec.gpus
        cores = [c for j in jobs for c in j.cores[name]]
        assert len(cores) == len(set(cores))
        if ns.state == "down":
            assert not jobs
        if "DRAIN" in ns.flags or ns.state == "down":
            assert all(j.start_time <= ns.reason_time for j in jobs), name
        want = "idle" if cpus == 0 else ("allocated" if cpus == spec.cpus else "mixed")
        assert ns.state in (want, "down")


@pytest.fixture(scope="module")
def two_days():
    """Seed 1, default model, 2 days in 10-minute steps, with per-step checks recorded."""
    sim = Simulation(default_cluster(), default_workload(), seed=1, start=T0)
    scratch = []
    monotone_breaks = []
    reboots = 0
    prev = {}
    t = T0
    while True:
        _check_conservation(sim)
        st = sim.state
        scratch.append((st.now, st.filesystems["/scratch"].used_bytes))
        for name in sim.spec.instrumented:
            ns = st.nodes[name]
            cur = (ns.boot_time, ns.cpu_ticks.copy(), dict(ns.vmstat), dict(ns.psi_us), dict(ns.disk),
                   {m: {op: list(v) for op, v in ops.items()} for m, ops in ns.nfs.items()}, ns.ctxt)  # fmt: skip
            if name in prev:
                old = prev[name]
                if old[0] != cur[0]:
                    reboots += 1
                    if cur[1].sum() >= old[1].sum():  # a reboot restarts the kernel counters from 0
                        monotone_breaks.append((name, st.now, "reboot without reset"))
                else:
                    if (cur[1] < old[1]).any() or cur[6] < old[6]:
                        monotone_breaks.append((name, st.now, "ticks"))
                    for i in (2, 3, 4):
                        for k, v in cur[i].items():
                            if k != "in_progress" and v < old[i][k]:
                                monotone_breaks.append((name, st.now, k))
                    for m, ops in cur[5].items():
                        for op, v in ops.items():
                            if any(x < y for x, y in zip(v, old[5][m][op], strict=True)):
                                monotone_breaks.append((name, st.now, m, op))
            prev[name] = cur
        if t >= T0 + 2 * DAY:
            break
        t += 600.0
        sim.advance(t)
    return sim, scratch, monotone_breaks, reboots


def test_every_failure_mode_appears_with_exact_end_times(two_days):
    sim, *_ = two_days
    fin = [j for j in sim.state.finished if j.end_time >= T0]
    states = Counter(j.state for j in fin)
    assert set(states) == set(TERMINAL_STATES)
    assert 4000 <= len(fin) <= 6000  # 2000-3000 a day
    oom = [j for j in fin if j.state == "OUT_OF_MEMORY"]
    for j in oom:
        p = sim.planned(j.job_id)
        limit = j.req_mem_mib * MIB
        assert j.max_rss_bytes == limit == p["limit_bytes"]
        t_oom = (p["limit_bytes"] - p["mem0_bytes"]) / p["growth_bytes_per_s"]
        assert j.end_time == pytest.approx(j.start_time + t_oom, abs=1e-6)
        assert j.end_time - j.start_time < j.time_limit_s
        assert (j.exit_code, j.signal, j.oom_kills) == (0, 125, 1)
        assert j.steps[0].step == "batch" and j.steps[0].state == "OUT_OF_MEMORY"
    near = [j for j in fin if j.kind == "oom_growth" and j.state == "COMPLETED"]
    assert near and all(j.max_rss_bytes < j.req_mem_mib * MIB for j in near)
    for j in (j for j in fin if j.state == "TIMEOUT"):
        assert j.end_time == j.start_time + j.time_limit_s
        assert (j.exit_code, j.signal) == (0, 0) and j.steps[0].state == "CANCELLED"
    for j in (j for j in fin if j.state == "NODE_FAIL"):
        assert (j.exit_code, j.signal) == (0, 0)
    run_cancel = [j for j in fin if j.state == "CANCELLED" and j.start_time is not None]
    pend_cancel = [j for j in fin if j.state == "CANCELLED" and j.start_time is None]
    assert run_cancel and pend_cancel
    assert all((j.exit_code, j.signal) == (0, 15) for j in run_cancel)
    assert all(not j.steps for j in pend_cancel)
    ok = [j for j in fin if j.state == "COMPLETED"]
    assert all((j.exit_code, j.signal) == (0, 0) for j in ok)
    multi = [j for j in fin if j.req_nodes > 1 and j.start_time is not None]
    assert multi and all([s.step for s in j.steps] == ["batch", "extern", "0"] for j in multi)
    fails = Counter((j.exit_code, j.signal) for j in fin if j.state == "FAILED")
    assert {(1, 0), (139, 0), (0, 11), (5, 0)} <= set(fails)


def test_conservation_and_monotone_counters(two_days):
    sim, _, breaks, reboots = two_days
    assert breaks == []
    st = sim.state
    ticks = st.nodes["c001"].cpu_ticks
    assert ticks.shape == (64, len(CPU_MODES)) and ticks[:, CPU_MODES.index("user")].sum() > 0
    nfs = st.nodes["c001"].nfs
    assert set(nfs) == {"/home", "/project"} and len(nfs["/home"]["WRITE"]) == 8
    assert st.nodes["g01"].gpu_util.shape == (4,)
    assert reboots >= 1  # seed 1 crashes an instrumented node (g02) within the 2 days: the reset path runs
    down_or_drained = [n for n in st.nodes.values() if n.state == "down" or "DRAIN" in n.flags]
    for ns in down_or_drained:
        assert ns.reason in ("Not responding", "hardware check after crash", "kernel update")


def test_node_failures_kill_running_jobs(two_days):
    sim, *_ = two_days
    nf = [j for j in sim.state.finished if j.state == "NODE_FAIL" and j.end_time >= T0]
    assert nf
    # every NODE_FAIL job's end shares its instant with the other jobs killed by the same crash (or is alone)
    by_time = Counter(j.end_time for j in nf)
    crashes = len(by_time)
    assert 2 <= crashes <= 16  # ~3 a day over 2 days (Poisson), counting only crashes of busy nodes


def test_scratch_accelerates_to_calibrated_fractions(two_days):
    sim, scratch, *_ = two_days
    size = next(fs.size_bytes for fs in sim.spec.filesystems if fs.mountpoint == "/scratch")
    used = dict(scratch)
    assert used[T0] / size == pytest.approx(0.60, abs=0.01)
    assert 0.85 <= used[T0 + 2 * DAY] / size <= 0.88
    for w in (0.5 * DAY, DAY):
        pts = [T0 + k * 600.0 for k in range(0, int(2 * DAY / 600) + 1)]
        for t in pts:
            if t + 2 * w <= T0 + 2 * DAY:
                assert used[t + 2 * w] - 2 * used[t + w] + used[t] > 0
    # a linear trend over the last 6 h projects "full in well under a day"
    last = [(t, u) for t, u in scratch if t >= T0 + 2 * DAY - 6 * 3600]
    slope = np.polyfit([t for t, _ in last], [u for _, u in last], 1)[0]
    assert (size - used[T0 + 2 * DAY]) / slope < DAY


def test_surge_arrays_and_scheduler_figures(two_days):
    sim, *_ = two_days
    st = sim.state
    every = [*st.finished, *st.active.values()]
    arrays = Counter(j.array_job_id for j in every if j.array_job_id is not None and j.submit_time >= T0)
    assert arrays and max(arrays.values()) >= 100
    for aid in arrays:
        tasks = [j for j in every if j.array_job_id == aid]
        assert len({j.submit_time for j in tasks}) == 1
        assert sorted(j.array_task_id for j in tasks) == list(range(len(tasks)))
    running = [j for j in st.active.values() if j.state == "RUNNING"]
    pending = [j for j in st.active.values() if j.state == "PENDING"]
    assert 150 <= len(running) <= 400
    alloc = sum(n.alloc_cpus for n in st.nodes.values()) / sum(n.cpus for n in sim.spec.nodes)
    assert 0.7 <= alloc <= 0.97
    reasons = Counter(j.reason for j in pending)
    assert reasons["Priority"] > 0 and reasons["Resources"] >= 1
    assert all(j.priority > 0 for j in pending)
    s = st.scheduler
    assert s.rpc_by_type["REQUEST_SUBMIT_BATCH_JOB"][0] > 0
    assert s.rpc_by_type["REQUEST_COMPLETE_BATCH_SCRIPT"][0] >= sum(1 for j in st.finished if j.start_time)
    assert s.cycles > 0 and s.mean_cycle_us > 0 and s.bf_backfilled_jobs >= 0
    tot = sum(v for (a, u), v in st.usage.items() if u)
    assert tot == pytest.approx(sum(v for (a, u), v in st.usage.items() if not u))
    assert not math.isnan(tot) and tot > 0
    assert all(type(j.cpu_user_s) is float for j in running)


def test_filesystems_and_quota(two_days):
    sim, *_ = two_days
    fs = sim.state.filesystems
    sizes = {f.mountpoint: f.size_bytes for f in sim.spec.filesystems}
    for m in ("/home", "/project"):
        assert 0.5 < fs[m].used_bytes / sizes[m] < 0.7
    proj = fs["/project"]
    ratio = {a: proj.group_used_bytes[a] / proj.group_limit_bytes[a] for a in proj.group_limit_bytes}
    assert max(ratio, key=ratio.get) == sim.workload.near_quota_account
    assert 0.95 < ratio[sim.workload.near_quota_account] < 1.0
    assert all(v < 0.9 for a, v in ratio.items() if a != sim.workload.near_quota_account)


def test_array_failures_are_correlated_within_an_array():
    # Healthy arrays lose about 2 % of their tasks; broken ones about 60 %, each within 2 minutes. Which arrays are
    # broken depends on the job name (SURGE_BROKEN_P), so the name carries signal a model can learn.
    from nomade.sim.engine import SURGE_BROKEN_P

    sim = Simulation(default_cluster(), default_workload(), seed=3, start=T0, warmup_s=0)
    shares: dict[str, list[float]] = {name: [] for name in SURGE_BROKEN_P}
    for k in range(300):
        _user, name, _cpus, _limit, _lim, tasks = sim._draw_surge(np.random.default_rng([99, k]))
        failed = [p for p in tasks if p.outcome == "FAILED"]
        share = len(failed) / len(tasks)
        shares[name].append(share)
        if share > 0.3:  # broken: its failures are fast
            assert all(30 <= p.runtime <= 120 for p in failed)
        else:
            assert share < 0.1
    for name, p_broken in SURGE_BROKEN_P.items():
        n = len(shares[name])
        broken = sum(s > 0.3 for s in shares[name])
        # binomial(n, p) within 4 standard deviations
        assert abs(broken - n * p_broken) <= 4 * math.sqrt(n * p_broken * (1 - p_broken)) + 1, (name, broken, n)
    assert sum(s > 0.3 for s in shares["array_scan"]) / len(shares["array_scan"]) > 2 * (
        sum(s > 0.3 for s in shares["bootstrap"]) / len(shares["bootstrap"])
    )
