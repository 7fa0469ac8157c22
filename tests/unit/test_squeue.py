"""squeue parser: the collector's own format, captured formats of other sites, arrays, reasons, property tests."""

from __future__ import annotations

import json

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.parsers.squeue import SQUEUE_ARGV, US, count_array_tasks, parse_squeue, reason_token


def _jobs(name: str):
    res = parse_squeue(own_fixture("squeue", name))
    assert res.issues == []
    return {j.job_id: j for j in res.records}


def test_argv_is_our_documented_format():
    assert SQUEUE_ARGV[:2] == ("squeue", "--all")
    assert "-r" not in SQUEUE_ARGV and "--array" not in SQUEUE_ARGV
    fmt = SQUEUE_ARGV[2]
    assert fmt.startswith("--Format=") and fmt.count(US) == 11 and "Name" not in fmt


def test_own_fixture_values():
    jobs = _jobs("squeue-Format-us-22.05.txt")
    j110 = jobs["110"]
    assert j110.partitions == ("cpu", "long") and j110.state == "pending" and j110.reason == "Resources"
    assert j110.submit_time == parse_timestamp("2024-03-04T09:00:00") and (j110.cpus, j110.nodes) == (8, 1)
    arr = jobs["120"]
    assert arr.array_job_id == "120" and arr.array_tasks == "1-10%2" and arr.tasks == 10
    task = jobs["121"]
    assert task.array_job_id == "120" and task.tasks == 1 and task.state == "running"
    assert jobs["112"].eligible_time is None  # N/A while the dependency is pending
    assert jobs["130"].gpus == 3 and jobs["131"].gpus == 2 and jobs["101"].gpus == 0
    assert jobs["131"].reason == "ReqNodeNotAvail"
    assert jobs["101"].array_job_id is None


def test_lab_capture_22_05_8():
    jobs = _jobs("lab-squeue-Format-us-22.05.8.txt")
    assert jobs["12"].reason == "ReqNodeNotAvail" and jobs["12"].gpus == 1 and jobs["12"].partitions == ("gpu",)
    assert jobs["6"].reason == "DependencyNeverSatisfied" and jobs["6"].eligible_time is None
    assert jobs["7"].state == "running" and jobs["2"].nodes == 2


@pytest.mark.parametrize(
    ("expr", "n"),
    [("5", 1), ("1-100%5", 100), ("[1-100%5]", 100), ("1-7:2", 4), ("0,3,5-9:2", 5), ("1-3,7,9-10", 6)],
)
def test_count_array_tasks(expr, n):
    assert count_array_tasks(expr) == n


@pytest.mark.parametrize("expr", ["1-", "a-3", "3-1", "[1-3", "1-5:0", "1-3%x", ""])
def test_count_array_tasks_rejects(expr):
    with pytest.raises(ValueError):
        count_array_tasks(expr)


def test_possibly_truncated_array_expression_has_unknown_count():
    expr = ",".join(str(i) for i in range(0, 60, 2))  # 83 characters: SLURM would have cut it at 63
    line = US.join(["JOBID", "ARRAY_TASK_ID", "PARTITION", "STATE"]) + "\n" + US.join(["9", expr, "p", "PENDING"])
    res = parse_squeue(line)
    assert res.records[0].tasks is None and len(res.issues) == 1
    assert parse_squeue(line, bitstr_len=0).records[0].tasks == 30  # SLURM_BITSTR_LEN=0: full expression


def test_pending_array_from_jobid_column():
    res = parse_squeue("JOBID PARTITION ST\n123_[1-100%5] main PD\n124_7 main R\n")
    a, b = res.records
    assert (a.array_job_id, a.tasks, a.state) == ("123", 100, "pending")
    assert (b.array_job_id, b.tasks, b.state) == ("124", 1, "running")


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("(Priority)", "Priority"),
        ("((ReqNodeNotAvail, UnavailableNodes:cs[100,101,102]))", "ReqNodeNotAvail"),
        ("ReqNodeNotAvail,_UnavailableNodes:node8", "ReqNodeNotAvail"),
        ("Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions", "Resources"),
        ("launch failed requeued held", "other"),
        ("Priority,Resources", "Priority"),
        ("", None),
        ("x" * 200, "x" * 64),
    ],
)
def test_reason_token(text, token):
    assert reason_token(text) == token


# --- captured fixtures of other sites -------------------------------------------------------------------------

PARSED = {  # file -> (records, issues)
    "ood-squeue-O-unit-separator-null-submit-invalid-timeleft.txt": (3, 1),  # one row has one field too many
    "rivos-squeue-json-21.08.5-openapi-v0.0.37.json": (2, 0),
    "usc-docs-squeue-u-default-array-tasks-truncated-name.txt": (3, 0),
    "usc-docs-squeue-u-default-dependency.txt": (2, 0),
}


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("squeue"), ids=lambda p: p.name)
def test_every_shared_file(path):
    res = parse_squeue(path.read_text(errors="replace"))
    if path.name in PARSED:
        assert (len(res.records), len(res.issues)) == PARSED[path.name]
    else:  # headerless -o formats and template JSON-lines: refused, nothing guessed
        assert res.records == [] and [i.reason for i in res.issues] == ["unrecognised format"]


@pytest.mark.fixtures
def test_shared_values():
    js = parse_squeue(shared_file("squeue", "rivos-squeue-json-21.08.5-openapi-v0.0.37.json").read_text())
    run, arr = js.records
    assert (run.job_id, run.state, run.partitions, run.cpus) == ("26515966", "running", ("hw-l",), 1)
    assert (arr.array_job_id, arr.tasks, arr.state, arr.reason) == ("58948420", 10, "pending", "Dependency")
    dep = parse_squeue(shared_file("squeue", "usc-docs-squeue-u-default-dependency.txt").read_text())
    assert [(j.job_id, j.state, j.reason) for j in dep.records] == [
        ("3353549", "pending", "Dependency"),
        ("3353548", "running", None),
    ]
    ood = parse_squeue(
        shared_file("squeue", "ood-squeue-O-unit-separator-null-submit-invalid-timeleft.txt").read_text()
    )
    first = ood.records[0]
    assert (first.job_id, first.partitions, first.state, first.cpus) == ("6787542", ("quick",), "running", 1)
    assert first.submit_time == parse_timestamp("2026-03-10T16:02:37")


# --- property tests -------------------------------------------------------------------------------------------

_OWN = own_fixture("squeue", "squeue-Format-us-22.05.txt").splitlines()
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
_job_keys = st.sampled_from(
    ["job_id", "job_state", "array_job_id", "array_task_id", "array_task_string", "partition", "submit_time",
     "eligible_time", "cpus", "node_count", "tres_alloc_str", "state_reason", "state_description"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    assert isinstance(parse_squeue(text).records, list)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_OWN[1:]), st.integers(0, 200), st.integers(0, 20), st.text(max_size=20))
def test_mangled_lines_never_raise(line, pos, cut, junk):
    res = parse_squeue("\n".join([_OWN[0], line[:pos] + junk + line[pos + cut :], _OWN[1]]))
    assert any(j.job_id == "101" for j in res.records)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_job_keys, _json_values, max_size=8), max_size=4))
def test_random_json_jobs_never_raise(jobs):
    parse_squeue(json.dumps({"jobs": jobs}))
