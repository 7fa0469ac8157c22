import json
from datetime import datetime

import pytest
from conftest import OWN_FIXTURES, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS, parse_sacct, parse_sacct_json
from nomade.exporter.parsers.slurm_units import is_null

GiB = 1024**3
MiB = 1024**2

HAND = "handwritten-22.05-steps-arrays-hetjobs.txt"

# Column lists of the captured headerless files, from their SOURCES.md rows / upstream READMEs.
SHARED_FIELDS = {
    "hbjobinfo-sacct-parsable-noheader-snowman-delim-37fields.txt": (
        "JobID,JobName,User,Partition,NodeList,NNodes,NCPUs,NTasks,State,Submit,Start,End,Timelimit,Elapsed,"
        "TotalCPU,CPUTime,UserCPU,SystemCPU,ReqMem,MaxRSS,MaxVMSize,ReqTRES,AllocTRES,TRESUsageInMax,"
        "TRESUsageInTot,TRESUsageOutTot,MaxDiskRead,MaxDiskWrite,MaxRSSNode,MaxRSSTask,MaxVMSizeNode,"
        "MaxVMSizeTask,MaxDiskReadNode,MaxDiskReadTask,MaxDiskWriteNode,MaxDiskWriteTask,Comment"
    ).split(","),
    "sckyzo-sacct-P-n-efficiency-steps-25.11.txt": (
        "JobID,User,Account,AllocCPUS,Elapsed,TotalCPU,CPUTime,MaxRSS,ReqMem".split(",")
    ),
}


def local(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S").timestamp()


def hand_bytes() -> bytes:
    return (OWN_FIXTURES / "sacct" / HAND).read_bytes()


@pytest.fixture(scope="module")
def hand():
    res = parse_sacct(hand_bytes(), fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    return res, {j.job_id: j for j in res.records}


def test_handwritten_parses_cleanly(hand):
    res, jobs = hand
    assert res.issues == []
    assert list(jobs) == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
        "1006",
        "1007",
        "1010_1",
        "1010_2",
        "1020+0",
        "1020+1",
        "1030",
        "1040",
        "1041",
        "1042",
        "1043",
        "1044",
        "1045",
        "1050",
    ]


def test_steps_merged_and_maxrss_is_max_over_steps(hand):
    _, jobs = hand
    j = jobs["1001"]
    assert [s.step_id for s in j.steps] == ["batch", "extern", "0"]
    assert j.own_max_rss_bytes is None  # empty on the allocation line
    assert j.max_rss_bytes == 2 * GiB
    assert j.total_cpu_seconds == 1800.0  # MM:SS.mmm
    assert j.elapsed_seconds == 600.0
    assert j.alloc_cpus == 4 and j.req_cpus == 4
    assert j.requested_memory_bytes == 4 * GiB
    assert j.cpu_efficiency == pytest.approx(0.75)
    assert j.memory_efficiency == pytest.approx(0.5)
    assert j.submit == local("2024-05-01T09:50:00")
    assert j.start == local("2024-05-01T09:50:05")
    assert j.end == local("2024-05-01T10:00:05")
    assert j.timelimit_seconds == 3600
    assert (j.user, j.account, j.partition, j.nodelist, j.name) == ("alice", "physics", "cpu", "c01", "relax_run")
    assert j.exit_code == 0 and j.exit_signal == 0
    assert j.requested_gpus == 0
    assert j.failure_class == "success"


def test_outcomes_of_the_lab_cases(hand):
    _, jobs = hand
    assert (jobs["1002"].state, jobs["1002"].exit_code, jobs["1002"].failure_class) == ("FAILED", 3, "failed")
    oom = jobs["1003"]
    assert (oom.state, oom.exit_code, oom.exit_signal, oom.failure_class) == ("OUT_OF_MEMORY", 0, 125, "out_of_memory")
    assert oom.steps[0].state == "OUT_OF_MEMORY"
    assert (jobs["1004"].exit_signal, jobs["1004"].failure_class) == (11, "segfault")
    assert (jobs["1005"].exit_code, jobs["1005"].failure_class) == (139, "segfault")
    assert jobs["1044"].failure_class == "abort"
    assert jobs["1045"].failure_class == "out_of_memory"  # FAILED 0:9, but step .0 hit OUT_OF_MEMORY
    assert jobs["1006"].failure_class == "timeout"
    assert jobs["1040"].failure_class == "node_fail"
    assert jobs["1041"].failure_class == "preempted"
    assert jobs["1042"].failure_class == "boot_fail"
    assert jobs["1043"].failure_class == "deadline"


def test_cancelled_by_uid_and_never_started(hand):
    _, jobs = hand
    j = jobs["1007"]
    assert (j.state, j.cancelled_by, j.failure_class) == ("CANCELLED", 1001, "cancelled")
    assert j.start is None  # "None"
    assert j.nodelist is None  # "None assigned"
    assert j.alloc_cpus == 0 and j.req_cpus == 2
    assert j.cpu_efficiency is None  # never ran: no denominator
    assert j.requested_gpus == 0  # ReqTRES present without gres/gpu
    assert j.alloc_tres == {}
    assert jobs["1050"].cancelled_by == 0


def test_unknown_end(hand):
    _, jobs = hand
    j = jobs["1050"]
    assert j.end is None
    assert j.start == local("2024-05-01T09:59:10")


def test_array_tasks_keyed_by_raw_id(hand):
    _, jobs = hand
    a1, a2 = jobs["1010_1"], jobs["1010_2"]
    assert (a1.job_id_raw, a2.job_id_raw) == ("1011", "1012")
    assert [s.step_id for s in a1.steps] == ["batch"]  # "1011.batch" joins raw id 1011
    assert a1.max_rss_bytes == 8 * GiB
    assert a1.total_cpu_seconds == 3 * 3600
    assert a1.timelimit_seconds == 86400  # D-HH:MM:SS
    assert a1.requested_gpus == 2  # gres/gpu, not double-counted with gres/gpu:a100
    assert a2.max_rss_bytes is None and a2.memory_efficiency is None  # absent, not 0


def test_hetjob_components(hand):
    _, jobs = hand
    c0, c1 = jobs["1020+0"], jobs["1020+1"]
    assert (c0.job_id_raw, c1.job_id_raw) == ("1020", "1021")
    assert (c0.partition, c1.partition) == ("cpu", "gpu")
    assert c1.requested_gpus == 1


def test_old_reqmem_suffixes_and_odd_timelimits(hand):
    _, jobs = hand
    per_cpu = jobs["1030"]
    assert per_cpu.req_mem == (2000 * MiB, "c")
    assert per_cpu.requested_memory_bytes == 2 * 2000 * MiB
    assert per_cpu.memory_efficiency == pytest.approx(3000 / 4000)
    assert per_cpu.timelimit_seconds is None  # UNLIMITED
    per_node = jobs["1045"]
    assert per_node.req_mem == (8 * GiB, "n")
    assert per_node.requested_memory_bytes == 16 * GiB  # 8G per node x 2 nodes
    assert per_node.nodelist == "c[10-11]"
    assert per_node.max_rss_bytes == 9 * GiB
    assert jobs["1041"].timelimit_seconds is None  # Partition_Limit
    assert jobs["1044"].timelimit_seconds is None  # INVALID


def test_job_name_with_pipe_and_invalid_utf8(hand):
    _, jobs = hand
    assert jobs["1030"].name == "train|resnet\ufffd50"


def test_header_driven_pipe_output_rejoins_job_name():
    text = (
        "JobIDRaw|JobID|State|ExitCode|Elapsed|AllocCPUS|TotalCPU|JobName\n"
        "77|77|COMPLETED|0:0|00:01:40|2|00:50|a|b|c\n"
        "77.batch|77.batch|COMPLETED|0:0|00:01:40|2|00:50|batch\n"
    )
    res = parse_sacct(text)
    assert res.issues == []
    (j,) = res.records
    assert j.name == "a|b|c"
    assert j.cpu_efficiency == pytest.approx(50 / (100 * 2))
    assert j.steps[0].step_id == "batch"


def test_parsable_trailing_delimiter_and_header_detection():
    text = "JobID|State|ExitCode|\n5|FAILED|1:0|\n6|TIMEOUT|0:15|\n"
    res = parse_sacct(text)
    assert res.issues == []
    assert [(j.job_id, j.failure_class) for j in res.records] == [("5", "failed"), ("6", "timeout")]


def test_bad_lines_and_fields_are_counted():
    good = hand_bytes().decode("utf-8", "replace").splitlines()[0]
    lines = [
        good,
        "1001.9" + SACCT_DELIMITER + "only two",  # wrong field count
        SACCT_DELIMITER.join(["xyz"] * len(SACCT_FIELDS)),  # not a job id
        SACCT_DELIMITER.join(["9999.batch"] + [""] * (len(SACCT_FIELDS) - 1)),  # step without its job
    ]
    bad_elapsed = good.split(SACCT_DELIMITER)
    bad_elapsed[0] = bad_elapsed[1] = "2002"
    bad_elapsed[SACCT_FIELDS.index("Elapsed")] = "ten minutes"
    lines.append(SACCT_DELIMITER.join(bad_elapsed))
    res = parse_sacct("\n".join(lines), fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert [j.job_id for j in res.records] == ["1001", "2002"]
    assert res.records[1].elapsed_seconds is None  # unparseable -> absent, record kept
    assert res.records[1].cpu_efficiency is None
    assert len(res.issues) == 4
    reasons = " ".join(i.reason for i in res.issues)
    assert "expected 23 fields" in reasons and "bad job id" in reasons and "without its job" in reasons
    assert "elapsed" in reasons


def test_unrecognised_formats_give_one_issue_and_no_records():
    for text in ("hello world\nthis is not sacct\n", "1|2|3\n4|5|6\n"):
        res = parse_sacct(text)
        assert res.records == []
        assert len(res.issues) == 1 and res.issues[0].line_no == 0
    assert parse_sacct("").records == [] and parse_sacct("").issues == []
    bad_json = parse_sacct('{"jobs": 3}')
    assert bad_json.records == [] and len(bad_json.issues) == 1


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("sacct"), ids=lambda p: p.name)
def test_every_shared_sacct_file(path):
    data = path.read_bytes()
    auto = parse_sacct(data)
    # auto-detection: JSON and header-driven text parse; headerless text is refused, never guessed
    if auto.records:
        assert auto.issues == []
    else:
        assert len(auto.issues) == 1 and auto.issues[0].line_no == 0
    if path.name in SHARED_FIELDS:
        res = parse_sacct(data, fields=SHARED_FIELDS[path.name])
        assert res.records and res.issues == []
    for job in auto.records:
        assert job.failure_class


@pytest.mark.fixtures
def test_shared_snowman_values():
    name = "hbjobinfo-sacct-parsable-noheader-snowman-delim-37fields.txt"
    res = parse_sacct(shared_file("sacct", name).read_bytes(), fields=SHARED_FIELDS[name])
    jobs = {j.job_id: j for j in res.records}
    j = jobs["4034541"]
    assert (j.state, j.cancelled_by, j.failure_class) == ("CANCELLED", 10304007, "cancelled")
    assert j.timelimit_seconds == 19 * 3600 + 50 * 60
    assert j.req_mem == (199 * GiB, "")
    assert jobs["4047445"].nodelist is None and jobs["4047445"].start is None
    mpi = jobs["7818766"]
    assert [s.step_id for s in mpi.steps] == ["batch", "extern", "0"]
    assert mpi.max_rss_bytes == 53592 * 1024
    assert mpi.nnodes == 2 and mpi.alloc_cpus == 128
    assert mpi.elapsed_seconds == 86400 + 6 * 3600 + 46 * 60 + 42
    assert mpi.total_cpu_seconds == 163 * 86400 + 18 * 60 + 41
    assert mpi.cpu_efficiency == pytest.approx(mpi.total_cpu_seconds / (mpi.elapsed_seconds * 128))
    assert jobs["5908801_3"].failure_class == "success"  # array task display id kept
    gpu = jobs["7965768"]
    assert gpu.requested_gpus == 1
    assert gpu.steps[0].total_cpu_seconds == pytest.approx(15 * 3600 + 33 * 60 + 59)


@pytest.mark.fixtures
def test_shared_sckyzo_efficiencies():
    name = "sckyzo-sacct-P-n-efficiency-steps-25.11.txt"
    res = parse_sacct(shared_file("sacct", name).read_text(), fields=SHARED_FIELDS[name])
    jobs = {j.job_id: j for j in res.records}
    assert jobs["1"].cpu_efficiency == pytest.approx(3.75 / 4)  # 03:45:00 / (01:00:00 x 4)
    assert jobs["1"].memory_efficiency == pytest.approx(3 / 4)  # 3072M / 4G
    assert jobs["3"].total_cpu_seconds == 60 * 3600  # TotalCPU over 24 h printed as 60:00:00
    assert jobs["3"].requested_memory_bytes == 1024**4
    assert jobs["3"].max_rss_bytes == 768 * GiB
    assert jobs["4"].memory_efficiency is None  # no MaxRSS anywhere


@pytest.mark.fixtures
def test_shared_json_values():
    res = parse_sacct(shared_file("sacct", "mila-sacct-X-json-21.08.8-2-dbv0.0.37-edited.json").read_text())
    assert res.issues == []
    a, b = res.records
    assert (a.job_id, a.job_id_raw, a.state, a.failure_class) == ("1_7", "10", "NODE_FAIL", "node_fail")
    assert a.end is None  # end 0 = unknown
    assert a.start == 1680193504 and a.elapsed_seconds == 20615
    assert a.timelimit_seconds == 1440 * 60
    assert a.alloc_cpus == 4 and a.requested_gpus == 1
    assert a.requested_memory_bytes == 40960 * MiB
    assert (a.nodelist, a.partition, a.user, a.name) == ("cdr1", "partition1", "nobody", "test-job-1")
    assert (b.state, b.failure_class) == ("REQUEUED", "other")


def test_json_data_parser_layout_with_steps():
    doc = {
        "jobs": [
            {
                "job_id": 42,
                "name": "train",
                "user": "u",
                "account": "a",
                "partition": "gpu",
                "nodes": "g01",
                "allocation_nodes": 1,
                "array": {"job_id": 0, "task_id": {"set": False, "infinite": False, "number": 0}},
                "het": {"job_id": 0, "job_offset": {"set": False, "infinite": False, "number": 0}},
                "state": {"current": ["FAILED"], "reason": "None"},
                "exit_code": {
                    "status": ["SIGNALED"],
                    "return_code": {"set": True, "infinite": False, "number": 0},
                    "signal": {"id": {"set": True, "infinite": False, "number": 11}, "name": "SEGV"},
                },
                "time": {
                    "elapsed": 100,
                    "start": 1700000000,
                    "end": 1700000100,
                    "submission": 1699999990,
                    "limit": {"set": True, "infinite": False, "number": 60},
                    "total": {"seconds": 150, "microseconds": 500000},
                },
                "required": {"CPUs": 2},
                "tres": {
                    "allocated": [{"type": "cpu", "count": 2}, {"type": "mem", "count": 1024}],
                    "requested": [{"type": "cpu", "count": 2}, {"type": "mem", "count": 1024}],
                },
                "steps": [
                    {
                        "step": {"id": "42.batch", "name": "batch"},
                        "state": ["FAILED"],
                        "exit_code": {
                            "status": ["SIGNALED"],
                            "return_code": {"set": True, "number": 0},
                            "signal": {"id": {"set": True, "number": 11}, "name": "SEGV"},
                        },
                        "tres": {"requested": {"max": [{"type": "mem", "count": 536870912}]}},
                        "time": {"total": {"seconds": 150, "microseconds": 500000}},
                    }
                ],
            },
            {"job_id": {"bad": 1}},
        ]
    }
    res = parse_sacct_json(json.dumps(doc))
    assert len(res.issues) == 1  # the unreadable second job
    (j,) = res.records
    assert (j.job_id, j.exit_code, j.exit_signal, j.failure_class) == ("42", 0, 11, "segfault")
    assert j.timelimit_seconds == 3600
    assert j.total_cpu_seconds == pytest.approx(150.5)
    assert j.max_rss_bytes == 512 * MiB
    assert j.memory_efficiency == pytest.approx(0.5)
    assert j.cpu_efficiency == pytest.approx(150.5 / 200)
    assert j.steps[0].step_id == "batch" and j.steps[0].exit_signal == 11
    assert j.requested_gpus == 0


# --- property tests ----------------------------------------------------------------------------------------

_durations = st.tuples(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))


@settings(max_examples=200)
@given(
    raw=st.integers(1, 10**9),
    state=st.sampled_from(["COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED by 1234"]),
    code=st.integers(0, 255),
    sig=st.integers(0, 64),
    elapsed=_durations,
    cpus=st.integers(1, 512),
    rss_kib=st.integers(0, 10**9),
    name=st.text(alphabet=st.characters(blacklist_characters="\n\r\x1f", blacklist_categories=("Cs",)), max_size=30),
)
def test_generated_rows_round_trip(raw, state, code, sig, elapsed, cpus, rss_kib, name):
    d, h, m, s = elapsed
    row = dict.fromkeys(SACCT_FIELDS, "")
    row.update(
        JobIDRaw=str(raw),
        JobID=str(raw),
        State=state,
        ExitCode=f"{code}:{sig}",
        Elapsed=f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}",
        AllocCPUS=str(cpus),
        JobName=name,
    )
    step = dict.fromkeys(SACCT_FIELDS, "")
    step.update(JobIDRaw=f"{raw}.batch", JobID=f"{raw}.batch", State="COMPLETED", MaxRSS=f"{rss_kib}K")
    text = "\n".join(SACCT_DELIMITER.join(r[f] for f in SACCT_FIELDS) for r in (row, step))
    res = parse_sacct(text, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert res.issues == []
    (j,) = res.records
    assert j.job_id_raw == str(raw)
    assert (j.exit_code, j.exit_signal) == (code, sig)
    assert j.elapsed_seconds == ((d * 24 + h) * 60 + m) * 60 + s
    assert j.alloc_cpus == cpus
    assert j.max_rss_bytes == (rss_kib * 1024 or None)  # 0 = never sampled
    expected_name = None if is_null(name) or name.strip() == "None assigned" else name.strip()
    assert j.name == expected_name


@settings(max_examples=300)
@given(st.lists(st.text(max_size=120), max_size=20))
def test_random_text_never_raises(lines):
    text = "\n".join(lines)
    for kwargs in ({}, {"fields": SACCT_FIELDS, "delimiter": SACCT_DELIMITER}):
        res = parse_sacct(text, **kwargs)
        for j in res.records:
            _ = (j.failure_class, j.cpu_efficiency, j.memory_efficiency, j.requested_gpus, j.max_rss_bytes)


@settings(max_examples=300)
@given(data=st.data())
def test_mangled_fixture_lines_never_raise(data):
    lines = hand_bytes().decode("utf-8", "replace").splitlines()
    idx = data.draw(st.integers(0, len(lines) - 1))
    parts = lines[idx].split(SACCT_DELIMITER)
    col = data.draw(st.integers(0, len(parts) - 1))
    parts[col] = data.draw(st.text(max_size=25))
    lines[idx] = SACCT_DELIMITER.join(parts)
    res = parse_sacct("\n".join(lines), fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    # A mangled JobIDRaw can turn a step line into a job of its own: at most one record more than the 19 jobs.
    assert len(res.records) <= 20
    for j in res.records:
        assert j.failure_class


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=5),
        max_leaves=30,
    )
)
def test_random_json_never_raises(value):
    jobs = value if isinstance(value, list) else [value]
    res = parse_sacct(json.dumps({"jobs": jobs}))
    assert len(res.records) + len(res.issues) <= len(jobs)
    for j in res.records:
        assert j.failure_class


LAB = "lab-22.05-exact-command.txt"


def test_real_lab_capture_of_the_collector_command():
    res = parse_sacct((OWN_FIXTURES / "sacct" / LAB).read_bytes(), fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert res.issues == []
    jobs = {j.job_id: j for j in res.records}
    assert {k: j.failure_class for k, j in jobs.items()} == {
        "1": "node_fail",
        "2": "node_fail",
        "3": "success",
        "4": "success",
        "5": "failed",  # exit 3 -> FAILED 3:0
        "7": "timeout",
        "8": "cancelled",  # CANCELLED by 1001
        "9": "out_of_memory",  # OUT_OF_MEMORY 0:125
        "10": "segfault",  # FAILED 0:11, its batch step CANCELLED 0:11
        "11": "success",
        "13": "success",
    }
    assert jobs["8"].cancelled_by == 1001
    assert (jobs["9"].exit_code, jobs["9"].exit_signal) == (0, 125)
    assert jobs["13"].name == "odd `double` 'single' back\\slash|pipe"  # '|' survives: 0x1F delimiter
    multi = jobs["11"]
    assert [s.step_id for s in multi.steps] == ["batch", "0"]
    assert multi.max_rss_bytes == 3880 * 1024
    assert multi.requested_memory_bytes == 400 * MiB  # 22.05 ReqMem: job total, no suffix
    assert multi.memory_efficiency == pytest.approx(3880 * 1024 / (400 * MiB))
    assert (multi.nnodes, multi.nodelist, multi.alloc_cpus) == (2, "c[01,03]", 2)
    assert multi.total_cpu_seconds == pytest.approx(0.013)
    to = jobs["7"]
    assert to.timelimit_seconds == 60 and to.elapsed_seconds == 81
    assert to.end - to.start == 81
    assert to.partition == "short"
    assert jobs["9"].steps[0].max_rss_bytes == 0
    assert jobs["9"].max_rss_bytes is None  # OOM-killed before the gatherer sampled it: 0 is not a peak
    assert jobs["9"].memory_efficiency is None
    assert jobs["1"].steps[0].exit_code is None  # step with an empty ExitCode
    assert jobs["1"].timelimit_seconds == 86400
