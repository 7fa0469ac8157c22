"""slurm_queue collector, per-job series (``per_job = true``) over lab captures of SLURM 22.05.8."""

from __future__ import annotations

import functools

import pytest
from conftest import MappedRunner, own_fixture
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest

from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_queue import (
    JOB_DROPPED,
    JOB_INFO,
    SlurmQueueCollector,
    select_jobs,
)
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.parsers.squeue import SQUEUE_ARGV, SQUEUE_JOBS_ARGV, US, parse_squeue_jobs

NOW = parse_timestamp("2026-11-29T17:47:30")
JOBS = own_fixture("squeue", "lab-squeue-jobs-Format-us-22.05.8.txt")
DEFAULT = own_fixture("squeue", "lab-squeue-Format-us-22.05.8-default.txt")
MiB = 1 << 20
P = "nomade_slurm_queue_"

FakeRunner = functools.partial(MappedRunner, missing=("exit", "slurm_load_jobs error"), finished_at=NOW)


def collect(**options):
    runner = FakeRunner({SQUEUE_ARGV: DEFAULT, SQUEUE_JOBS_ARGV: JOBS})
    col = SlurmQueueCollector(CollectorContext(runner=runner, options=options, clock=lambda: NOW))
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def _aggregates(out):
    return {f.name: sorted((tuple(sorted(s.labels.items())), s.value) for s in f.samples) for f in out.families()
            if not f.name.startswith(P + "job_")}  # fmt: skip


def test_default_is_off_and_runs_the_default_command_only():
    col, out, runner = collect()
    assert runner.calls == [SQUEUE_ARGV] and col.per_job is False and col.max_jobs == 5000
    names = {f.name for f in out.families()}
    assert not any(n.startswith(P + "job_") for n in names)
    assert out.samples(JOB_INFO) == {} and out.value(JOB_DROPPED) is None


def test_per_job_runs_one_command_and_keeps_the_aggregates_identical():
    col, on, runner = collect(per_job=True)
    assert runner.calls == [SQUEUE_JOBS_ARGV] and col.parse_errors == 0
    _, off, _ = collect()
    assert _aggregates(on) == _aggregates(off)
    assert on.value(P + "cluster_jobs", state="pending") == 13  # 8 pending jobs + the 5 tasks of array 10
    assert on.value(P + "jobs", partition="short", state="pending") == 6  # array (5) + multi-partition job 13


def test_per_job_values():
    _, out, _ = collect(per_job=True)
    info = out.samples(JOB_INFO)
    assert len(info) == 13 and out.value(JOB_DROPPED) == 0
    assert ("1", "alice", "physics", "compute", "RUNNING", "run_mem", "c01") in info
    assert ("13", "bob", "chemistry", "compute,short", "PENDING", "naïve ünïcode", "") in info
    assert ("12", "bob", "chemistry", "compute", "PENDING", "us\x1fin name", "") in info
    v = out.value
    assert v(P + "job_requested_memory_bytes", job_id="3") == 600 * MiB  # -N 2 --mem=300M
    assert v(P + "job_requested_memory_bytes", job_id="4") == 300 * MiB  # -n 3 --mem-per-cpu=100M
    assert v(P + "job_requested_cpus", job_id="4") == 3 and v(P + "job_requested_nodes", job_id="3") == 2
    assert v(P + "job_requested_gpus", job_id="8") == 2 and v(P + "job_requested_gpus", job_id="1") == 0
    assert v(P + "job_timelimit_seconds", job_id="1") == 600
    assert v(P + "job_timelimit_seconds", job_id="9") is None  # UNLIMITED
    assert v(P + "job_submit_timestamp_seconds", job_id="9") == parse_timestamp("2026-11-29T17:46:06")
    assert v(P + "job_start_timestamp_seconds", job_id="11") == parse_timestamp("2026-11-29T17:46:22")
    assert v(P + "job_start_timestamp_seconds", job_id="10") is None  # pending
    assert len(out.samples(P + "job_start_timestamp_seconds")) == 4  # the four running jobs


def test_max_jobs_keeps_running_first_then_oldest_pending():
    _, out, _ = collect(per_job=True, max_jobs=6)
    kept = sorted(k[0] for k in out.samples(JOB_INFO))
    # running 1, 2, 6 (started 17:46:07), 11 (17:46:22); then pending by submit time (17:46:06), ties by id: 3, 4
    assert kept == sorted(["1", "2", "6", "11", "3", "4"])
    assert out.value(JOB_DROPPED) == 7
    assert set(out.samples(P + "job_requested_cpus")) == {(k,) for k in kept}
    _, none, _ = collect(per_job=True, max_jobs=0)
    assert none.samples(JOB_INFO) == {} and none.value(JOB_DROPPED) == 13


def test_select_jobs_order_and_duplicates():
    hdr = US.join(["JOBID", "PARTITION", "STATE", "SUBMIT_TIME", "START_TIME", "NAME"]) + US
    rows = [
        ["5", "a", "PENDING", "2024-01-01T00:00:05", "2024-01-01T09:00:00", "p5"],
        ["5", "b", "PENDING", "2024-01-01T00:00:05", "N/A", "p5"],  # squeue -P copy
        ["4", "a", "PENDING", "2024-01-01T00:00:09", "N/A", "p4"],
        ["3", "a", "RUNNING", "2024-01-01T00:00:01", "2024-01-01T00:00:30", "r3"],
        ["2", "a", "COMPLETING", "2024-01-01T00:00:01", "2024-01-01T00:00:20", "c2"],
        ["1", "a", "PENDING", "N/A", "N/A", "p1"],
    ]
    parsed = parse_squeue_jobs(hdr + "\n" + "\n".join(US.join(r) + US for r in rows) + "\n")
    kept, dropped = select_jobs(parsed.records, 10)
    assert [d.job.job_id for d in kept] == ["2", "3", "5", "4", "1"] and dropped == 0
    kept, dropped = select_jobs(parsed.records, 3)
    assert [d.job.job_id for d in kept] == ["2", "3", "5"] and dropped == 2


def test_free_text_names_survive_exposition():
    hdr = US.join(["JOBID", "PARTITION", "STATE", "USER", "NAME"]) + US
    name = 'a "quoted"\\name\udcff'  # a lone surrogate, as surrogateescape-decoded bytes would give
    runner = FakeRunner({SQUEUE_JOBS_ARGV: hdr + "\n" + US.join(["7", "p", "RUNNING", "u", name]) + US + "\n"})
    col = SlurmQueueCollector(CollectorContext(runner=runner, options={"per_job": True}, clock=lambda: NOW))
    out = col.new_set()
    col.collect(out)

    class _One:
        def collect(self):
            return out.families()

    reg = CollectorRegistry()
    reg.register(_One())
    text = generate_latest(reg).decode()
    (line,) = [x for x in text.splitlines() if x.startswith("nomade_slurm_queue_job_info{")]
    assert 'job_id="7"' in line and 'job_name="a \\"quoted\\"\\\\name\ufffd"' in line and line.endswith(" 1.0")


def test_negative_max_jobs_is_refused():
    with pytest.raises(ValueError, match="max_jobs"):
        SlurmQueueCollector(CollectorContext(runner=FakeRunner({}), options={"max_jobs": -1}))
