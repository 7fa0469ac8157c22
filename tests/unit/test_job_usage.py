from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES

from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.job_usage import JobUsageCollector, find_job_cgroups
from nomade.exporter.runner import CommandRunner

V1 = OWN_FIXTURES / "cgroup" / "v1"
V2 = OWN_FIXTURES / "cgroup" / "v2"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(root: Path, clock=None, **options) -> JobUsageCollector:
    ctx = CollectorContext(
        CommandRunner(), options=options, proc_root=root / "proc", sys_root=root / "sys", clock=clock or Clock()
    )
    return JobUsageCollector(ctx)


def collect(c: JobUsageCollector):
    out = c.new_set()
    c.collect(out)
    return out


def test_find_v1_lab_layout():
    jobs = find_job_cgroups(V1 / "sys")
    assert sorted(jobs) == ["31", "32"]
    j = jobs["31"]
    assert (j.version, j.slurm_node, j.uid) == (1, "gpu01", 1002)
    assert sorted(j.dirs) == ["cpuacct", "freezer", "memory"]
    assert j.proc_dir().parts[-4:] == ("freezer", "slurm_gpu01", "uid_1002", "job_31")


def test_v1_lab_values():
    out = collect(make(V1))
    assert out.value("nomade_job_usage_jobs") == 2
    assert out.value("nomade_job_usage_cpu_seconds_total", job_id="31") == pytest.approx(0.054012483)
    assert out.value("nomade_job_usage_cpu_seconds_total", job_id="32") == pytest.approx(0.129088662)
    assert out.value("nomade_job_usage_memory_usage_bytes", job_id="31") == 93949952
    assert out.value("nomade_job_usage_memory_peak_bytes", job_id="31") == 94515200
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="31") == 2097152000
    assert out.value("nomade_job_usage_memory_rss_bytes", job_id="31") == 91557888
    assert out.value("nomade_job_usage_memory_cache_bytes", job_id="31") == 802816
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="32") == 209715200
    assert out.value("nomade_job_usage_memory_peak_bytes", job_id="32") == 209715200
    # the OOM kill recorded in step_batch/task_0 only (v1 counts per memcg)
    assert out.value("nomade_job_usage_oom_kills_total", job_id="32") == 1
    assert out.value("nomade_job_usage_oom_kills_total", job_id="31") == 0
    # job 31: script, 2 x srun, python, 2 x sleep; its two slurmstepds are not counted
    assert out.value("nomade_job_usage_processes", job_id="31") == 6
    assert out.value("nomade_job_usage_processes", job_id="32") == 2
    assert out.value("nomade_job_usage_threads", job_id="31") == 18
    assert out.value("nomade_job_usage_gpu_info", job_id="31", gpu="0") == 1
    assert out.samples("nomade_job_usage_gpu_info") == {("31", "0"): 1.0}
    info = out.samples("nomade_job_usage_info")
    assert set(info) == {("31", info_user(1002), "gpu01", "1"), ("32", info_user(1001), "c01", "1")}


def info_user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def test_v2_values():
    out = collect(make(V2))
    assert out.value("nomade_job_usage_jobs") == 1
    j = "4242"
    assert out.value("nomade_job_usage_cpu_seconds_total", job_id=j) == pytest.approx(7.25)
    assert out.value("nomade_job_usage_cpu_user_seconds_total", job_id=j) == pytest.approx(7.0)
    assert out.value("nomade_job_usage_cpu_system_seconds_total", job_id=j) == pytest.approx(0.25)
    assert out.value("nomade_job_usage_memory_usage_bytes", job_id=j) == 1572864000
    assert out.value("nomade_job_usage_memory_peak_bytes", job_id=j) == 2040109465
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id=j) == 2147483648
    assert out.value("nomade_job_usage_memory_rss_bytes", job_id=j) == 1480589312
    assert out.value("nomade_job_usage_memory_cache_bytes", job_id=j) == 88080384
    assert out.value("nomade_job_usage_swap_bytes", job_id=j) == 4096
    assert out.value("nomade_job_usage_oom_kills_total", job_id=j) == 2
    assert out.value("nomade_job_usage_processes", job_id=j) == 3  # 7010, 7011, 7030
    assert out.value("nomade_job_usage_threads", job_id=j) == 7
    assert set(out.samples("nomade_job_usage_gpu_info")) == {(j, "1"), (j, "3")}
    ((key, _),) = out.samples("nomade_job_usage_info").items()
    assert key[0] == j and key[2] == "" and key[3] == "2"


def test_v2_unlimited_and_missing_peak(tmp_path):
    shutil.copytree(V2, tmp_path / "v2")
    job = tmp_path / "v2" / "sys" / "fs" / "cgroup" / "system.slice" / "slurmstepd.scope" / "job_4242"
    (job / "memory.max").write_text("max\n")
    (job / "memory.peak").unlink()  # kernels before 5.19
    out = collect(make(tmp_path / "v2"))
    assert out.value("nomade_job_usage_memory_limit_bytes", job_id="4242") is None
    assert out.value("nomade_job_usage_memory_peak_bytes", job_id="4242") is None
    assert out.value("nomade_job_usage_memory_usage_bytes", job_id="4242") == 1572864000


def test_gpu_source_off():
    out = collect(make(V2, gpu_source="off"))
    assert out.samples("nomade_job_usage_gpu_info") == {}
    with pytest.raises(ValueError):
        make(V2, gpu_source="nvml")


def test_cpu_idle_seconds(tmp_path):
    shutil.copytree(V2, tmp_path / "v2")
    stat = tmp_path / "v2" / "sys" / "fs" / "cgroup" / "system.slice" / "slurmstepd.scope" / "job_4242" / "cpu.stat"
    clock = Clock(1000.0)
    c = make(tmp_path / "v2", clock=clock, cpu_progress_seconds=1.0)
    assert collect(c).value("nomade_job_usage_cpu_idle_seconds", job_id="4242") == 0
    clock.t = 1600.0
    stat.write_text("usage_usec 7750000\n")  # +0.5 s CPU: below the progress threshold
    assert collect(c).value("nomade_job_usage_cpu_idle_seconds", job_id="4242") == 600
    clock.t = 1700.0
    stat.write_text("usage_usec 9250000\n")  # +2 s since the reference: progress
    assert collect(c).value("nomade_job_usage_cpu_idle_seconds", job_id="4242") == 0
    clock.t = 1760.0
    assert collect(c).value("nomade_job_usage_cpu_idle_seconds", job_id="4242") == 60


def test_no_jobs_is_zero_not_failure(tmp_path):
    (tmp_path / "sys" / "fs" / "cgroup" / "memory").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    out = collect(make(tmp_path))
    assert out.value("nomade_job_usage_jobs") == 0


def test_missing_cgroup_fs_fails(tmp_path):
    with pytest.raises(CollectorError):
        collect(make(tmp_path))


def test_job_vanishing_mid_read(tmp_path):
    shutil.copytree(V1, tmp_path / "v1")
    shutil.rmtree(tmp_path / "v1" / "sys" / "fs" / "cgroup" / "memory" / "slurm_c01" / "uid_1001" / "job_32")
    out = collect(make(tmp_path / "v1"))
    assert out.value("nomade_job_usage_memory_usage_bytes", job_id="32") is None
    assert out.value("nomade_job_usage_cpu_seconds_total", job_id="32") == pytest.approx(0.129088662)


def test_v2_memory_max_absent_or_bad(tmp_path):
    """No memory.max: no limit series and no parse error; an unreadable value is a counted parse error."""
    shutil.copytree(V2, tmp_path / "v2")
    job = tmp_path / "v2" / "sys" / "fs" / "cgroup" / "system.slice" / "slurmstepd.scope" / "job_4242"
    (job / "memory.max").write_text("8589934592\n")
    c = make(tmp_path / "v2")
    assert collect(c).value("nomade_job_usage_memory_limit_bytes", job_id="4242") == 8589934592
    errors = c.parse_errors
    (job / "memory.max").unlink()
    assert collect(c).value("nomade_job_usage_memory_limit_bytes", job_id="4242") is None
    assert c.parse_errors == errors
    (job / "memory.max").write_text("lots\n")
    assert collect(c).value("nomade_job_usage_memory_limit_bytes", job_id="4242") is None
    assert c.parse_errors == errors + 1


def test_read_text_checked_reads_to_the_end(tmp_path):
    """Empty, one-read and many-read files, CRLF and undecodable bytes, a missing file."""
    from nomade.exporter.collectors.job_usage import read_bytes_checked, read_text, read_text_checked

    big = b"".join(b"%d\n" % i for i in range(60_000))  # over two 64 KiB reads
    for name, data in (("empty", b""), ("small", b"1\r\n2\r3\n"), ("big", big), ("bad", b"a\xffb\n")):
        (tmp_path / name).write_bytes(data)
        assert read_bytes_checked(tmp_path / name) == data
        assert (
            read_text_checked(str(tmp_path / name)) == open(tmp_path / name, encoding="utf-8", errors="replace").read()
        )
    assert read_text(tmp_path / "missing") is None
    with pytest.raises(FileNotFoundError):
        read_bytes_checked(tmp_path / "missing")


def test_walk_order_and_subdir_listing(tmp_path):
    """The string walk and the job directory listing give walk_cgroup's / _subdirs' order, links not followed."""
    from nomade.exporter.collectors.job_usage import _subdir_paths, _subdirs, _walk_paths, walk_cgroup

    root = tmp_path / "job_1"
    for d in ("step_b/task_1", "step_b/task_0", "step_a", "step_a/x/y", "step_10", "zz"):
        (root / d).mkdir(parents=True)
    (root / "cgroup.procs").write_text("")
    (root / "link").symlink_to(root / "step_a")
    assert list(_walk_paths(str(root))) == [str(p) for p in walk_cgroup(root)]
    assert [str(p) for p in walk_cgroup(root)][:3] == [str(root), str(root / "step_10"), str(root / "step_a")]
    for prefix in ("", "step_", "nothing"):
        assert [p for _, p in _subdir_paths(str(root), prefix)] == [str(p) for p in _subdirs(root, prefix)]
        assert [n for n, _ in _subdir_paths(str(root), prefix)] == [p.name for p in _subdirs(root, prefix)]
    assert _subdir_paths(str(tmp_path / "missing"), "") == []
