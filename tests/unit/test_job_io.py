from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES

from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.job_io import JobIoAccumulator, JobIoCollector, ProcReading, parse_listpids
from nomade.exporter.parsers.mounts import parse_mountinfo
from nomade.exporter.parsers.proc_pid_io import ProcIo
from nomade.exporter.runner import CommandResult, CommandRunner

V2 = OWN_FIXTURES / "cgroup" / "v2"
MIB = 1024 * 1024


def io(w: int, r: int = 0) -> ProcIo:
    return ProcIo(rchar=r, wchar=w, syscr=0, syscw=0, read_bytes=r, write_bytes=w, cancelled_write_bytes=0)


def rd(pid: int, ppid: int, w: int, start: int | None = None, share: float = 0.0) -> ProcReading:
    return ProcReading(pid, ppid, start if start is not None else pid * 10, io(w), share)


def written(acc: JobIoAccumulator, job: str = "1") -> float:
    return acc.totals[job].values["write_bytes"]


def test_child_reaped_by_tracked_parent_counts_once_and_keeps_its_tail():
    acc = JobIoAccumulator()
    acc.update("1", [rd(100, 1, 0), rd(101, 100, 50 * MIB)])  # dd half-way
    assert written(acc) == 50 * MIB
    # dd wrote 200 MiB in all, exited and was reaped by the shell: the shell's counter now holds 200 MiB
    acc.update("1", [rd(100, 1, 200 * MIB)])
    assert written(acc) == 200 * MIB
    acc.update("1", [rd(100, 1, 200 * MIB + 4096)])  # the shell's own bytes afterwards
    assert written(acc) == 200 * MIB + 4096


def test_child_not_reaped_yet_is_a_debt_not_a_loss():
    acc = JobIoAccumulator()
    acc.update("1", [rd(100, 1, 1000), rd(101, 100, 5000)])
    acc.update("1", [rd(100, 1, 1200)])  # child gone from the cgroup, parent has not reaped it yet
    assert written(acc) == 6000  # the parent's 200 pay part of the debt, nothing counted twice
    acc.update("1", [rd(100, 1, 1200 + 5000 + 300)])  # reaped: child's 5000 + its 300 unseen tail
    assert written(acc) == 1200 + 5300  # the parent's own 1200 and the child's whole 5300, once each


def test_parent_outside_job_loses_only_the_tail():
    acc = JobIoAccumulator()
    acc.update("1", [rd(200, 1, 10)])  # parent 1 (slurmstepd) is not a job process
    acc.update("1", [rd(200, 1, 30)])
    acc.update("1", [])  # exited (its last 20 bytes after the last reading are lost)
    assert written(acc) == 30
    assert acc.totals["1"].processes == 0


def test_pid_reuse_is_a_new_process():
    acc = JobIoAccumulator()
    acc.update("1", [rd(300, 1, 1000, start=5)])
    acc.update("1", [rd(300, 1, 10, start=9)])  # same pid, new start time: a new process with 10 bytes
    assert written(acc) == 1010


def test_counters_never_decrease_and_fs_split():
    acc = JobIoAccumulator()
    acc.update("1", [rd(100, 1, 1000, share=1.0)])
    acc.update("1", [rd(100, 1, 3000, share=0.25)])
    t = acc.totals["1"]
    assert t.written_network == pytest.approx(1000 + 500)
    assert t.written_local == pytest.approx(1500)
    acc.update("1", [rd(100, 1, 2000, share=0.25)])  # impossible drop: ignored, not subtracted
    assert written(acc) == 3000
    acc.forget_except(set())
    assert acc.totals == {}


def test_grandchild_debt_passes_up():
    acc = JobIoAccumulator()
    acc.update("1", [rd(1, 0, 0), rd(2, 1, 0), rd(3, 2, 700)])
    acc.update("1", [rd(1, 0, 0), rd(2, 1, 0)])  # 3 gone, 2 not reaped it yet (debt 700 on 2)
    acc.update("1", [rd(1, 0, 0)])  # 2 gone with its debt unpaid: 1 inherits 700 of debt
    acc.update("1", [rd(1, 0, 750)])  # 1 reaped 2, whose counter held 3's 700 + 50 of its own
    assert written(acc) == 750


def test_listpids_parser():
    text = (
        "PID      JOBID    STEPID   LOCALID GLOBALID\n"
        "31476    30       batch    0       0\n"
        "31497    30       batch    -       -\n"
        "9 x\n"
    )
    jobs, issues = parse_listpids(text)
    assert jobs == {"30": [31476, 31497]} and issues == 1
    assert parse_listpids("No job steps exist on this node.\n") == ({}, 0)


class FakeRunner(CommandRunner):
    def __init__(self, stdout: str) -> None:
        super().__init__()
        self.stdout = stdout
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, *, timeout=None, ttl=None):  # type: ignore[override]
        self.calls.append(tuple(argv))
        return CommandResult(tuple(argv), self.stdout, "", 0.0, 0.0)


def make(root: Path, runner=None, **options) -> JobIoCollector:
    ctx = CollectorContext(runner or CommandRunner(), options=options, proc_root=root / "proc", sys_root=root / "sys")
    c = JobIoCollector(ctx, start=False)
    c.sampler.clock = lambda: 0.0  # readings are stamped by the tests (sample_once(now=...))
    return c


def test_collector_on_v2_fixture():
    c = make(V2, fs_attribution=False)
    assert sorted(c.job_pids()["4242"]) == [7001, 7010, 7011, 7020, 7030]
    c.sampler.sample_once(now=0.0)
    c.sampler.sample_once(now=5.0)
    out = c.new_set()
    c.collect(out)
    # three job processes with 8192 written each; the two slurmstepds are left out
    assert out.value("nomade_job_io_written_bytes_total", job_id="4242", fs="unknown") == 3 * 8192
    assert out.value("nomade_job_io_read_bytes_total", job_id="4242") == 3 * 4096
    assert out.value("nomade_job_io_syscall_written_bytes_total", job_id="4242") == 3 * 2000
    assert out.value("nomade_job_io_write_syscalls_total", job_id="4242") == 60
    assert out.value("nomade_job_io_processes", job_id="4242") == 3
    assert out.value("nomade_job_io_unreadable_processes", job_id="4242") == 0
    assert out.value("nomade_job_io_sample_interval_seconds") == 5.0


def test_nothing_before_two_readings():
    c = make(V2, fs_attribution=False)
    c.sampler.sample_once(now=0.0)
    out = c.new_set()
    c.collect(out)
    assert out.series_count() == 0


def test_listpids_fallback_without_job_cgroups(tmp_path):
    (tmp_path / "sys" / "fs" / "cgroup").mkdir(parents=True)
    shutil.copytree(V2 / "proc", tmp_path / "proc")
    runner = FakeRunner("PID      JOBID    STEPID   LOCALID GLOBALID\n7011     77       batch    0       0\n")
    c = make(tmp_path, runner, fs_attribution=False)
    c.sampler.sample_once(now=0.0)
    c.sampler.sample_once(now=1.0)
    out = c.new_set()
    c.collect(out)
    assert runner.calls == [("scontrol", "listpids")] * 2
    assert out.value("nomade_job_io_written_bytes_total", job_id="77", fs="unknown") == 8192
    c2 = make(tmp_path, FakeRunner(""), fs_attribution=False, listpids_fallback=False)
    assert c2.job_pids() == {}


def test_unreadable_io_fails_the_collector(tmp_path):
    shutil.copytree(V2, tmp_path / "v2")
    c = make(tmp_path / "v2", fs_attribution=False)
    for p in (7010, 7011, 7030):
        (tmp_path / "v2" / "proc" / str(p) / "io").unlink()
        (tmp_path / "v2" / "proc" / str(p) / "io").mkdir()  # reading a directory: IsADirectoryError, not EACCES
    c.sampler.sample_once(now=0.0)
    c.sampler.sample_once(now=1.0)
    out = c.new_set()
    c.collect(out)
    assert out.value("nomade_job_io_processes", job_id="4242") == 0

    c._read_proc = lambda pid: (None, 1)  # type: ignore[method-assign]  # as with EACCES for every process
    c.sampler.sample_once(now=2.0)
    with pytest.raises(CollectorError, match="CAP_SYS_PTRACE"):
        c.collect(c.new_set())


def test_network_share_of_a_real_process(tmp_path):
    """Open a file for writing in this very process and classify it through /proc/self."""
    ctx = CollectorContext(CommandRunner(), options={}, proc_root=Path("/proc"), sys_root=tmp_path)
    with open(f"/proc/{os.getpid()}/mountinfo") as fh:
        mounts = parse_mountinfo(fh.read()).records
    fstype = {os.makedev(m.major, m.minor): m.fstype for m in mounts}[os.stat(tmp_path).st_dev]
    base = Path("/proc") / str(os.getpid())
    with open(tmp_path / "out.dat", "w"):
        local = JobIoCollector(ctx, start=False)
        local._dev_fs = local._mount_types(Path("/proc/self/mountinfo"))
        assert local._network_share(base) < 1.0  # tmp_path's fs is not a network type here
        ctx.options = {"network_fs_types": [fstype]}
        net = JobIoCollector(ctx, start=False)
        net._dev_fs = net._mount_types(Path("/proc/self/mountinfo"))
        share = net._network_share(base)
        assert share > 0.0  # the open file counts as network once its type is declared so
