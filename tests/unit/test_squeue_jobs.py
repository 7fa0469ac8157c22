"""Per-job squeue parser (``parse_squeue_jobs``): lab captures of SLURM 22.05.8, free-text names, property tests."""

from __future__ import annotations

import dataclasses

from conftest import own_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.parsers.squeue import (
    SQUEUE_ARGV,
    SQUEUE_JOB_FIELDS,
    SQUEUE_JOBS_ARGV,
    US,
    parse_squeue,
    parse_squeue_jobs,
)

JOBS = "lab-squeue-jobs-Format-us-22.05.8.txt"
DEFAULT = "lab-squeue-Format-us-22.05.8-default.txt"  # captured at the same moment, with SQUEUE_ARGV
MiB = 1 << 20


def _details(name: str = JOBS):
    res = parse_squeue_jobs(own_fixture("squeue", name))
    assert res.issues == []
    return {d.job.job_id: d for d in res.records}


def test_argv_extends_the_default_fields_with_name_last():
    assert SQUEUE_JOBS_ARGV[:2] == SQUEUE_ARGV[:2]
    fmt = SQUEUE_JOBS_ARGV[2]
    assert fmt.startswith(SQUEUE_ARGV[2] + ",")  # the aggregate columns first, unchanged
    assert fmt.endswith(f",Name:{US}") and fmt.count(US) == len(SQUEUE_JOB_FIELDS) == 17
    assert "Name" not in SQUEUE_ARGV[2]  # the default command carries no free text


def test_lab_capture_values():
    d = _details()
    assert len(d) == 13
    run = d["1"]  # sbatch --mem=300M -t 10, running on c01
    assert (run.user, run.account, run.name, run.partition) == ("alice", "physics", "run_mem", "compute")
    assert run.job.state == "running" and run.nodelist == "c01"
    assert run.start_time == parse_timestamp("2026-11-29T17:46:07")
    assert run.job.submit_time == parse_timestamp("2026-11-29T17:46:06")
    assert run.timelimit_seconds == 600 and run.memory_bytes == 300 * MiB
    assert (run.job.cpus, run.job.nodes, run.job.gpus) == (1, 1, 0)
    # -c 2 --mem-per-cpu=150M: the TRES holds the job's total
    assert d["2"].memory_bytes == 300 * MiB and d["2"].job.cpus == 2 and d["2"].timelimit_seconds == 86400
    # pending -N 2 --mem=300M (per node): 600M in total; the estimate in StartTime is not reported
    assert d["3"].memory_bytes == 600 * MiB and d["3"].job.nodes == 2 and d["3"].start_time is None
    assert d["3"].nodelist == ""
    # pending -n 3 --mem-per-cpu=100M
    assert d["4"].memory_bytes == 300 * MiB and d["4"].job.cpus == 3
    # GPUs: --gres=gpu:2, --gpus-per-node=1 -N 1, --gpus=2 (pending) and --gres=gpu:1 running on gpu01
    assert (d["5"].job.gpus, d["7"].job.gpus, d["8"].job.gpus, d["6"].job.gpus) == (2, 1, 2, 1)
    assert d["6"].nodelist == "gpu01" and d["6"].memory_bytes == 100 * MiB
    # -t UNLIMITED: absent; the default memory (DefMemPerCPU=1000)
    assert d["9"].timelimit_seconds is None and d["9"].memory_bytes == 1000 * MiB
    assert d["9"].name == 'odd name|x "q"'
    # a name holding the delimiter keeps its line and its text
    assert d["12"].name == "us\x1fin name" and d["12"].user == "bob" and d["12"].timelimit_seconds == 86400
    assert d["13"].name == "naïve ünïcode" and d["13"].partition == "compute,short"
    assert d["13"].timelimit_seconds == 120 and d["13"].memory_bytes == 50 * MiB
    # array: the grouped pending tasks under the meta job id, and one running task with its own id
    assert d["10"].job.array_tasks == "2-6%1" and d["10"].job.tasks == 5 and d["10"].name == "arr"
    assert d["11"].job.array_job_id == "10" and d["11"].nodelist == "c01"


def test_queue_records_equal_the_default_commands():
    """The aggregate gauges see the same QueueJob whichever command ran (captured at the same moment)."""
    default = parse_squeue(own_fixture("squeue", DEFAULT))
    assert default.issues == []
    a = {j.job_id: dataclasses.replace(j, fields={}) for j in default.records}
    b = {
        d.job.job_id: dataclasses.replace(d.job, fields={})
        for d in parse_squeue_jobs(own_fixture("squeue", JOBS)).records
    }
    assert a == b and len(a) == 13


def test_newline_in_a_name_costs_its_line_only():
    text = own_fixture("squeue", JOBS)
    lines = text.splitlines()
    broken = lines[1].replace("us\x1fin name", "us\nin name")
    res = parse_squeue_jobs("\n".join([lines[0], broken, *lines[2:]]))
    assert len(res.issues) == 2 and len(res.records) == 12
    assert "12" not in {d.job.job_id for d in res.records}


def test_unrecognised_and_empty_text():
    assert parse_squeue_jobs("").records == [] and parse_squeue_jobs("").issues == []
    res = parse_squeue_jobs("15451729,RUNNING\n")
    assert res.records == [] and len(res.issues) == 1


def test_bad_values_are_counted_and_left_out():
    hdr = US.join(["JOBID", "STATE", "START_TIME", "TIME_LIMIT", "TRES_ALLOC", "NAME"]) + US
    row = US.join(["7", "RUNNING", "yesterday", "forever", "cpu=1,mem=2G", "x"]) + US
    res = parse_squeue_jobs(hdr + "\n" + row + "\n")
    (d,) = res.records
    assert len(res.issues) == 2
    assert d.start_time is None and d.timelimit_seconds is None and d.memory_bytes == 2 << 30


# ------------------------------------------------------------------------------------------ property tests

_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=30,
)


@st.composite
def _queue(draw):
    jobs = []
    for i in range(draw(st.integers(0, 8))):
        running = draw(st.booleans())
        submit = draw(st.integers(1_700_000_000, 1_800_000_000))
        jobs.append({
            "id": str(100 + i),
            "state": "RUNNING" if running else "PENDING",
            "submit": submit,
            "start": submit + draw(st.integers(0, 5000)) if running else None,
            "limit_min": draw(st.none() | st.integers(1, 5000)),
            "cpus": draw(st.integers(1, 64)),
            "nodes": draw(st.integers(1, 8)),
            "mem_m": draw(st.integers(1, 500_000)),
            "gpus": draw(st.integers(0, 8)),
            "name": draw(_names),
            "user": draw(st.sampled_from(["alice", "bob", "u1"])),
        })  # fmt: skip
    return jobs


def _fmt_time(t: float) -> str:
    # Unix seconds (SLURM_TIME_FORMAT=%s): local-time ISO text would not round-trip through a DST fold.
    return str(int(t))


def _render(jobs) -> str:
    titles = ["JOBID", "ARRAY_JOB_ID", "ARRAY_TASK_ID", "PARTITION", "STATE", "REASON", "SUBMIT_TIME",
              "ELIGIBLE_TIME", "CPUS", "NODES", "TRES_ALLOC", "USER", "ACCOUNT", "START_TIME", "TIME_LIMIT",
              "NODELIST", "NAME"]  # fmt: skip
    lines = [US.join(titles) + US]
    for j in jobs:
        lim = j["limit_min"]
        limit = "UNLIMITED" if lim is None else f"{lim // 1440}-{lim // 60 % 24:02d}:{lim % 60:02d}:00"
        tres = f"cpu={j['cpus']},mem={j['mem_m']}M,node={j['nodes']}" + (f",gres/gpu={j['gpus']}" if j["gpus"] else "")
        start = _fmt_time(j["start"]) if j["start"] is not None else "N/A"
        node = "c01" if j["start"] else ""
        row = [j["id"], j["id"], "N/A", "p", j["state"], "None", _fmt_time(j["submit"]), "N/A", str(j["cpus"]),
               str(j["nodes"]), tres, j["user"], "acct", start, limit, node, j["name"]]  # fmt: skip
        lines.append(US.join(row) + US)
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(_queue())
def test_rendered_queue_round_trips(jobs):
    res = parse_squeue_jobs(_render(jobs))
    assert res.issues == []
    got = {d.job.job_id: d for d in res.records}
    assert list(got) == [j["id"] for j in jobs]
    for j in jobs:
        d = got[j["id"]]
        assert d.name == j["name"].strip(" \t") or d.name == j["name"]
        assert d.user == j["user"] and d.account == "acct"
        assert d.memory_bytes == j["mem_m"] * MiB and d.job.gpus == j["gpus"]
        assert (d.job.cpus, d.job.nodes) == (j["cpus"], j["nodes"])
        assert d.timelimit_seconds == (None if j["limit_min"] is None else j["limit_min"] * 60)
        assert d.job.submit_time == j["submit"]
        assert d.start_time == j["start"]
        assert d.nodelist == ("c01" if j["start"] else "")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    assert isinstance(parse_squeue_jobs(text).records, list)


_OWN = own_fixture("squeue", JOBS).splitlines()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_OWN[1:]), st.integers(0, 200), st.integers(0, 20), st.text(max_size=20))
def test_mangled_lines_never_raise_and_spare_the_others(line, pos, cut, junk):
    res = parse_squeue_jobs("\n".join([_OWN[0], line[:pos] + junk + line[pos + cut :], _OWN[5]]))
    assert any(d.job.job_id == "1" and d.name == "run_mem" for d in res.records)
