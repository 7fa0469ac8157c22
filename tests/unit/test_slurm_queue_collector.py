"""slurm_queue collector over a fake runner fed with our own squeue fixture."""

from __future__ import annotations

import functools

import pytest
from conftest import MappedRunner, own_fixture

from nomade.exporter.collectors import slurm_queue
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_queue import SlurmQueueCollector, weighted_quantile
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.parsers.squeue import SQUEUE_ARGV, US
from nomade.exporter.runner import CommandError

NOW = parse_timestamp("2024-03-04T12:00:00")


FakeRunner = functools.partial(
    MappedRunner,
    missing=("exit", "status 1: slurm_load_jobs error: Unable to contact slurm controller"),
    finished_at=NOW,
)


def collect(text: str, **options):
    runner = FakeRunner({SQUEUE_ARGV: text})
    col = SlurmQueueCollector(CollectorContext(runner=runner, options=options, clock=lambda: NOW))
    out = col.new_set()
    col.collect(out)
    assert runner.calls == [SQUEUE_ARGV]
    return col, out


def test_module_exposes_collector():
    assert slurm_queue.COLLECTOR is SlurmQueueCollector
    assert SlurmQueueCollector.name == "slurm_queue" and SlurmQueueCollector.mode == "controller"


def test_jobs_by_partition_and_state():
    col, out = collect(own_fixture("squeue", "squeue-Format-us-22.05.txt"))
    assert col.parse_errors == 0
    v = out.value
    # cpu pending: 110 (cpu,long), 111, 112 and the 10 pending tasks of array 120
    assert v("nomade_slurm_queue_jobs", partition="cpu", state="pending") == 13
    assert v("nomade_slurm_queue_jobs", partition="long", state="pending") == 1  # multi-partition job 110
    assert v("nomade_slurm_queue_jobs", partition="cpu", state="running") == 3
    assert v("nomade_slurm_queue_jobs", partition="cpu", state="completing") == 1
    # cluster-wide: job 110 once, not twice
    assert v("nomade_slurm_queue_cluster_jobs", state="pending") == 14
    assert v("nomade_slurm_queue_cluster_jobs", state="running") == 4


def test_reasons_arrays_and_resources():
    _, out = collect(own_fixture("squeue", "squeue-Format-us-22.05.txt"))
    v = out.value
    assert v("nomade_slurm_queue_pending_jobs_by_reason", partition="cpu", reason="JobArrayTaskLimit") == 10
    assert v("nomade_slurm_queue_pending_jobs_by_reason", partition="gpu", reason="ReqNodeNotAvail") == 1
    assert v("nomade_slurm_queue_pending_jobs_by_reason", partition="long", reason="Resources") == 1
    assert v("nomade_slurm_queue_arrays", partition="cpu", state="pending") == 1
    assert v("nomade_slurm_queue_arrays", partition="cpu", state="running") == 1
    assert v("nomade_slurm_queue_arrays", partition="gpu", state="running") == 0
    # 8 (110) + 2 (111) + 1 (112) + 10 x 1 (array tasks)
    assert v("nomade_slurm_queue_requested_cpus", partition="cpu", state="pending") == 21
    assert v("nomade_slurm_queue_requested_nodes", partition="cpu", state="pending") == 13
    assert v("nomade_slurm_queue_requested_gpus", partition="gpu", state="running") == 3
    assert v("nomade_slurm_queue_requested_gpus", partition="gpu", state="pending") == 2
    assert v("nomade_slurm_queue_requested_gpus", partition="cpu", state="pending") == 0


def test_ages_and_wait_quantiles():
    _, out = collect(own_fixture("squeue", "squeue-Format-us-22.05.txt"))
    v = out.value
    # oldest pending in cpu: job 112 submitted 07:00 (its dependency does not matter for the age)
    assert v("nomade_slurm_queue_oldest_pending_age_seconds", partition="cpu") == 5 * 3600
    # eligible waits in cpu: 1800 s (111) x1, 7200 s (array) x10, 10800 s (110) x1; 112 is not eligible
    assert v("nomade_slurm_queue_pending_eligible_jobs", partition="cpu") == 12
    assert v("nomade_slurm_queue_pending_wait_seconds", partition="cpu", quantile="0.5") == 7200
    assert v("nomade_slurm_queue_pending_wait_seconds", partition="cpu", quantile="0.99") == 10800
    assert v("nomade_slurm_queue_pending_wait_seconds", partition="cpu", quantile="1") == 10800
    assert v("nomade_slurm_queue_pending_wait_seconds", partition="gpu", quantile="0.5") == 600


def test_future_eligible_time_is_not_a_wait():
    _, out = collect(own_fixture("squeue", "lab-squeue-Format-us-22.05.8.txt"))
    # lab jobs 1 and 2 wait for --begin (EligibleTime in the future), job 6 for a dependency
    assert out.value("nomade_slurm_queue_pending_eligible_jobs", partition="compute") == 0
    assert out.value("nomade_slurm_queue_pending_wait_seconds", partition="compute", quantile="0.5") is None
    assert out.value("nomade_slurm_queue_jobs", partition="compute", state="pending") == 3


def test_squeue_minus_p_copies_are_not_double_counted():
    hdr = US.join(["JOBID", "PARTITION", "STATE", "CPUS"]) + US
    rows = [
        US.join(r) + US for r in (["5", "a", "PENDING", "4"], ["5", "b", "PENDING", "4"], ["6", "a", "RUNNING", "1"])
    ]
    _, out = collect("\n".join([hdr, *rows]) + "\n")
    assert out.value("nomade_slurm_queue_jobs", partition="a", state="pending") == 1
    assert out.value("nomade_slurm_queue_jobs", partition="b", state="pending") == 1
    assert out.value("nomade_slurm_queue_cluster_jobs", state="pending") == 1


def test_unknown_task_count_omits_instead_of_undercounting():
    expr = ",".join(str(i) for i in range(0, 60, 2))
    hdr = US.join(["JOBID", "ARRAY_TASK_ID", "PARTITION", "STATE", "CPUS"])
    text = "\n".join([hdr, US.join(["9", expr, "p", "PENDING", "1"]), US.join(["10", "N/A", "p", "PENDING", "2"])])
    col, out = collect(text, bitstr_len=64)
    assert col.parse_errors == 1
    assert out.value("nomade_slurm_queue_jobs", partition="p", state="pending") is None
    assert out.value("nomade_slurm_queue_cluster_jobs", state="pending") is None
    _, trusted = collect(text, bitstr_len=0)
    assert trusted.value("nomade_slurm_queue_jobs", partition="p", state="pending") == 31


def test_failing_command_propagates():
    runner = FakeRunner({})
    col = SlurmQueueCollector(CollectorContext(runner=runner, clock=lambda: NOW))
    with pytest.raises(CommandError):
        col.collect(col.new_set())


def test_unrecognised_output_counts_one_error_and_exports_nothing():
    col, out = collect("15451729,RUNNING\n")
    assert col.parse_errors == 1 and out.series_count() == 0


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1)], 0.5, 2.0), ([(5.0, 3), (1.0, 1)], 0.5, 5.0), ([], 0.5, None),
     ([(7.0, 2)], 0.0, 7.0), ([(1.0, 99), (100.0, 1)], 0.99, 1.0), ([(1.0, 99), (100.0, 1)], 1.0, 100.0)],
)  # fmt: skip
def test_weighted_quantile(values, q, expected):
    assert weighted_quantile(values, q) == expected
