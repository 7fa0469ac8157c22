from __future__ import annotations

from conftest import own_fixture
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.cgroup import (
    DeviceRule,
    environ_value,
    keyed_dict,
    limit_bytes,
    nvidia_gpus_from_devices,
    parse_devices_list,
    parse_flat_keyed,
    parse_gpu_index_list,
    parse_job_cgroup_path,
    parse_pid_list,
    parse_single_value,
    single_value,
)

V1 = ("cgroup", "v1", "sys", "fs", "cgroup")
J31 = ("slurm_gpu01", "uid_1002", "job_31")
J32 = ("slurm_c01", "uid_1001", "job_32")


def test_job_paths():
    n = parse_job_cgroup_path(("slurm_c01", "uid_1001", "job_29"))
    assert (n.job_id, n.slurm_node, n.uid, n.version) == ("29", "c01", 1001, 1)
    n = parse_job_cgroup_path(("slurm", "uid_0", "job_7"))
    assert (n.job_id, n.slurm_node, n.uid) == ("7", "", 0)
    n = parse_job_cgroup_path(("system.slice", "slurmstepd.scope", "job_4242"))
    assert (n.job_id, n.slurm_node, n.uid, n.version) == ("4242", "", None, 2)
    n = parse_job_cgroup_path(("system.slice", "node12_slurmstepd.scope", "job_5"))
    assert (n.job_id, n.slurm_node) == ("5", "node12")
    assert parse_job_cgroup_path(("slurm_c01", "uid_1001", "job_29", "step_batch")) is None
    assert parse_job_cgroup_path(("slurm_c01", "uid_x", "job_29")) is None
    assert parse_job_cgroup_path(("system.slice", "slurmd.service", "job_1")) is None
    assert parse_job_cgroup_path(("system.slice", "slurmstepd.scope", "job_")) is None


def test_lab_v1_memory_files():
    base = (*V1, "memory", *J31)
    assert single_value(parse_single_value(own_fixture(*base, "memory.usage_in_bytes"))) == 93949952
    assert single_value(parse_single_value(own_fixture(*base, "memory.max_usage_in_bytes"))) == 94515200
    assert limit_bytes(single_value(parse_single_value(own_fixture(*base, "memory.limit_in_bytes")))) == 2097152000
    stat = parse_flat_keyed(own_fixture(*base, "memory.stat"))
    assert stat.issues == []
    d = keyed_dict(stat)
    assert d["total_rss"] == 91557888 and d["total_cache"] == 802816 and d["hierarchical_memory_limit"] == 2097152000
    # the v1 "unlimited" marker of a task cgroup
    task = (*V1, "memory", *J31, "step_0", "task_0", "memory.limit_in_bytes")
    assert limit_bytes(single_value(parse_single_value(own_fixture(*task)))) is None


def test_lab_v1_oom_control_is_local():
    job = keyed_dict(parse_flat_keyed(own_fixture(*V1, "memory", *J32, "memory.oom_control")))
    task = keyed_dict(parse_flat_keyed(own_fixture(*V1, "memory", *J32, "step_batch", "task_0", "memory.oom_control")))
    assert job == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 0}
    assert task["oom_kill"] == 1


def test_lab_v1_cpuacct_and_procs():
    assert single_value(parse_single_value(own_fixture(*V1, "cpuacct", *J32, "cpuacct.usage"))) == 129088662
    assert keyed_dict(parse_flat_keyed(own_fixture(*V1, "cpuacct", *J32, "cpuacct.stat"))) == {"user": 1, "system": 11}
    procs = parse_pid_list(own_fixture(*V1, "freezer", *J31, "step_0", "cgroup.procs"))
    assert procs.issues == [] and procs.records == [31495, 31496]


def test_single_value_forms():
    assert parse_single_value("max\n").records == [None]
    assert single_value(parse_single_value("0\n")) == 0
    bad = parse_single_value("12 kB")
    assert bad.records == [] and len(bad.issues) == 1
    assert limit_bytes(9223372036854771712) is None
    assert limit_bytes(None) is None
    assert limit_bytes(4096) == 4096


def test_flat_keyed_bad_lines():
    res = parse_flat_keyed("usage_usec 10\nuser_usec\nsystem_usec x\n\nnr_periods 0 1\n")
    assert res.records == [("usage_usec", 10)]
    assert [i.line_no for i in res.issues] == [2, 3, 5]


def test_pid_list_bad_lines():
    res = parse_pid_list("12\n\n0\nabc\n-3\n٣\n7\n")
    assert res.records == [12, 7]
    assert len(res.issues) == 4


def test_devices_list():
    res = parse_devices_list("c 195:0 rwm\nc 195:255 rwm\nc 195:254 rw\nc 195:2 rw\nb 8:* r\nc 1:3 rwm\nbogus\n")
    assert len(res.issues) == 1
    assert nvidia_gpus_from_devices(res.records) == [0, 2]
    assert nvidia_gpus_from_devices(parse_devices_list("a *:* rwm\n").records) is None
    assert nvidia_gpus_from_devices([DeviceRule("c", 1, 3, "rwm")]) == []


def test_gpu_index_list_and_environ():
    assert parse_gpu_index_list("1,3") == [1, 3]
    assert parse_gpu_index_list("2,0,2") == [0, 2]
    assert parse_gpu_index_list("") == []
    assert parse_gpu_index_list("NoDevFiles") is None
    assert parse_gpu_index_list("0,N/A") is None
    env = b"A=1\0SLURM_JOB_GPUS=0,1\0SLURM_JOB_GPUS_X=9\0"
    assert environ_value(env, "SLURM_JOB_GPUS") == "0,1"
    assert environ_value(env, "CUDA_VISIBLE_DEVICES") is None


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    for parse in (parse_flat_keyed, parse_pid_list, parse_devices_list):
        res = parse(text)
        assert len(res.records) + len(res.issues) == len([ln for ln in text.splitlines() if ln.strip()])
    res = parse_single_value(text)
    assert len(res.records) + len(res.issues) == 1
    parse_gpu_index_list(text)


@given(st.lists(st.text(max_size=20), max_size=5))
def test_random_paths_never_raise(parts):
    n = parse_job_cgroup_path(parts)
    assert n is None or n.job_id.isdigit()
