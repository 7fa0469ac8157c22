from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.job_hygiene import JobHygieneCollector
from nomade.exporter.collectors.slurm_accounting import ARRAY_METRICS, add_array_health
from nomade.exporter.metrics import MetricSet
from nomade.exporter.parsers.job_arrays import array_health, array_task_id
from nomade.exporter.parsers.job_hygiene import (
    DEFAULT_SCRATCH_PATTERN,
    FileEntry,
    scratch_job_id,
    slurmstepd_job,
    stale_summary,
)
from nomade.exporter.parsers.sacct import SACCT_FIELDS, SacctJob, parse_sacct
from nomade.exporter.runner import CommandRunner

V1 = OWN_FIXTURES / "cgroup" / "v1"
PAT = re.compile(DEFAULT_SCRATCH_PATTERN)
DAY = 86400.0


def make(root: Path, now: float = 1_800_000_000.0, **options) -> JobHygieneCollector:
    ctx = CollectorContext(
        CommandRunner(), options=options, proc_root=root / "proc", sys_root=root / "sys", clock=lambda: now
    )
    return JobHygieneCollector(ctx, start=False)


def test_scratch_names():
    for name, jid in [
        ("1234", "1234"),
        ("job_1234", "1234"),
        ("job1234", "1234"),
        ("slurm-1234", "1234"),
        ("slurm_1234", "1234"),
        ("1234.batch", "1234"),
        ("1234_alice", "1234"),
    ]:
        assert scratch_job_id(name, PAT) == jid, name
    for name in ("lost+found", "alice", "job_", "tmp.1234", "12a"):
        assert scratch_job_id(name, PAT) is None, name
    assert scratch_job_id("x-77", re.compile(r"^x-(\d+)$")) == "77"


def test_slurmstepd_titles():
    assert slurmstepd_job(b"slurmstepd: [34.batch]\0") == "34"
    assert slurmstepd_job(b"slurmstepd: [34.extern]") == "34"
    assert slurmstepd_job(b"slurmstepd: [1234.0]\0") == "1234"
    assert slurmstepd_job(b"/usr/sbin/slurmstepd\0") is None
    assert slurmstepd_job(b"") is None


def test_stale_summary_top_owners():
    now = 100 * DAY
    entries = [
        FileEntry(1001, 4096, atime=10 * DAY, mtime=5 * DAY),  # stale 90 days
        FileEntry(1001, 8192, atime=80 * DAY, mtime=1 * DAY),  # read 20 days ago: stale at 14 days
        FileEntry(1002, 1 << 20, atime=1 * DAY, mtime=2 * DAY),
        FileEntry(1003, 100, atime=3 * DAY, mtime=3 * DAY),
        FileEntry(1004, 999, atime=99 * DAY, mtime=99 * DAY),  # fresh
    ]
    s = stale_summary(entries, now, 14 * DAY, top_owners=1)
    assert set(s) == {"1002", "other"}
    assert (s["1002"].files, s["1002"].bytes, s["1002"].oldest) == (1, 1 << 20, 2 * DAY)
    assert (s["other"].files, s["other"].bytes, s["other"].oldest) == (3, 4096 + 8192 + 100, 3 * DAY)
    s = stale_summary(entries, now, 30 * DAY, top_owners=10)
    assert s["1001"].files == 1 and "1004" not in s


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1 << 30), st.floats(0, 1e9), st.floats(0, 1e9))))
def test_stale_summary_conserves_totals(rows):
    entries = [FileEntry(*r) for r in rows]
    s = stale_summary(entries, 1e9, 1e6, top_owners=2)
    stale = [e for e in entries if 1e9 - max(e.atime, e.mtime) >= 1e6]
    assert sum(o.files for o in s.values()) == len(stale)
    assert sum(o.bytes for o in s.values()) == sum(e.size for e in stale)
    assert len(s) <= 3


def test_orphaned_job_from_lab_capture():
    # job 31 has its slurmstepds' titles in the fixture, job 32's slurmstepd (pid 573) has none: orphaned
    c = make(V1)
    assert c.stepd_jobs() == {"31"}
    out = c.new_set()
    c.collect(out)
    assert out.value("nomade_job_hygiene_orphaned_jobs") == 1
    assert out.samples("nomade_job_hygiene_orphaned_processes") == {("32",): 2.0}


def test_scratch_leftovers(tmp_path):
    shutil.copytree(V1, tmp_path / "root")
    scratch = tmp_path / "scratch"
    now = 1_800_000_000.0
    for name, size, age in [("job_31", 5000, 3600), ("job_9", 3 * 4096, 3600), ("10", 4096, 3600), ("11", 1, 60)]:
        d = scratch / name
        d.mkdir(parents=True)
        (d / "data").write_bytes(b"x" * size)
        os.utime(d, (now - age, now - age))
    (scratch / "alice").mkdir()
    os.utime(scratch / "alice", (now - 9999, now - 9999))
    c = make(tmp_path / "root", now=now, scratch_dirs=[str(scratch), str(tmp_path / "absent")])
    c.scan_scratch()
    out = c.new_set()
    c.collect(out)
    root = str(scratch)
    # job_31 runs here (cgroup), "11" is within the grace time, "alice" is not a job directory
    assert out.value("nomade_job_hygiene_scratch_leftover_dirs", root=root) == 2
    blocks = sum(os.stat(scratch / n / "data").st_blocks * 512 for n in ("job_9", "10"))
    assert out.value("nomade_job_hygiene_scratch_leftover_bytes", root=root) == blocks
    assert out.value("nomade_job_hygiene_scratch_scan_truncated", root=root) == 0
    assert out.value("nomade_job_hygiene_scratch_leftover_dirs", root=str(tmp_path / "absent")) is None

    small = make(tmp_path / "root", now=now, scratch_dirs=[root], max_files=1)
    small.scan_scratch()
    out = small.new_set()
    small.collect(out)
    assert out.value("nomade_job_hygiene_scratch_scan_truncated", root=root) == 1


def test_stale_scan(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    now = 1_800_000_000.0
    old = data / "sub" / "old.bin"
    old.write_bytes(b"y" * 10000)
    os.utime(old, (now - 60 * DAY, now - 90 * DAY))
    (data / "new.txt").write_text("fresh")
    os.utime(data / "new.txt", (now, now))
    os.symlink(old, data / "link")  # never followed, never counted
    c = make(V1, now=now, stale_scan_paths=[str(data)], stale_min_age_days=30, owner_names=False)
    c.scan_stale()
    out = c.new_set()
    c.collect(out)
    p, uid = str(data), str(os.getuid())
    assert out.value("nomade_job_hygiene_stale_files", path=p, owner=uid) == 1
    assert out.value("nomade_job_hygiene_stale_bytes", path=p, owner=uid) == old.stat().st_blocks * 512
    assert out.value("nomade_job_hygiene_stale_oldest_use_timestamp_seconds", path=p, owner=uid) == now - 60 * DAY
    assert out.value("nomade_job_hygiene_stale_scan_files", path=p) == 2
    assert out.value("nomade_job_hygiene_stale_scan_truncated", path=p) == 0
    assert out.value("nomade_job_hygiene_stale_scan_timestamp_seconds", path=p) == now

    capped = make(V1, now=now, stale_scan_paths=[str(data)], stale_max_files=1)
    capped.scan_stale()
    out = capped.new_set()
    capped.collect(out)
    assert out.value("nomade_job_hygiene_stale_scan_truncated", path=p) == 1


def test_background_thread_off_by_default():
    c = JobHygieneCollector(CollectorContext(CommandRunner(), proc_root=V1 / "proc", sys_root=V1 / "sys"))
    assert c._thread is None
    c.close()


def job(job_id: str, state: str, exit_code: int = 0, raw: str | None = None) -> SacctJob:
    return SacctJob(job_id, raw or job_id, state=state, exit_code=exit_code, exit_signal=0)


def test_array_health():
    jobs = [
        job("100_1", "COMPLETED", raw="101"),
        job("100_2", "FAILED", 1, raw="102"),
        job("100_3", "OUT_OF_MEMORY", raw="103"),
        job("100_4", "CANCELLED", raw="104"),
        job("100_5", "RUNNING", raw="105"),
        job("100_[6-9]", "PENDING", raw="100"),
        job("200_1", "COMPLETED", raw="201"),
        job("300", "FAILED", 1),
        job("200_2", "CANCELLED", raw="202"),
    ]
    health = {a.array_job_id: a for a in array_health(jobs)}
    a = health["100"]
    assert (a.finished, a.succeeded, a.failed, a.cancelled) == (4, 1, 2, 1)
    assert a.failed_ratio == pytest.approx(2 / 3)
    assert health["200"].failed_ratio == 0.0
    assert "300" not in health
    only_cancelled = array_health([job("7_1", "CANCELLED", raw="8")])
    assert only_cancelled[0].failed_ratio is None
    assert [a.array_job_id for a in array_health(jobs, min_tasks=3)] == ["100"]
    assert array_task_id("100_[6-9]") is None and array_task_id("5_0") == ("5", "0")


def test_array_health_metrics_from_lab_sacct():
    text = (OWN_FIXTURES / "sacct" / "handwritten-22.05-steps-arrays-hetjobs.txt").read_bytes()
    jobs = parse_sacct(text, fields=SACCT_FIELDS).records
    out = MetricSet(ARRAY_METRICS)
    add_array_health(out, array_health(jobs, min_tasks=1))
    expected = array_health(jobs)
    assert [a.array_job_id for a in expected] == ["1010"]
    assert (expected[0].finished, expected[0].succeeded, expected[0].failed_ratio) == (2, 2, 0.0)
    for a in expected:
        assert out.value("nomade_job_hygiene_array_failed_ratio", array_job_id=a.array_job_id) == a.failed_ratio
        assert out.value("nomade_job_hygiene_array_tasks", array_job_id=a.array_job_id, outcome="failed") == a.failed
