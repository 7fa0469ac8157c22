"""slurm_priority collector over a fake runner: sprio summaries, and the priority/basic refusal."""

from __future__ import annotations

import logging

import pytest
from conftest import TextRunner, own_fixture

from nomade.exporter.collectors import slurm_priority
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_priority import SlurmPriorityCollector, plugin_unsupported
from nomade.exporter.parsers.sprio import SPRIO_ARGV
from nomade.exporter.runner import CommandError

P = "nomade_slurm_priority_"
BASIC = own_fixture("sprio", "lab-sprio-priority-basic-22.05.8.stderr.txt")


FakeRunner = TextRunner


def test_module_exposes_collector():
    assert slurm_priority.COLLECTOR is SlurmPriorityCollector and SlurmPriorityCollector.mode == "controller"


def test_per_partition_quantiles_and_means():
    runner = FakeRunner(own_fixture("sprio", "sprio-format-pipe-multifactor-23.11.txt"))
    col = SlurmPriorityCollector(CollectorContext(runner=runner))
    out = col.new_set()
    col.collect(out)
    assert runner.calls == [(SPRIO_ARGV, 60.0)] and col.parse_errors == 0
    v = out.value
    assert v(P + "source_available") == 1
    assert v(P + "pending_jobs", partition="compute") == 3 and v(P + "pending_jobs", partition="short") == 1
    # compute priorities 2150, 1650, 1250
    assert v(P + "job_priority", partition="compute", quantile="0") == 1250
    assert v(P + "job_priority", partition="compute", quantile="0.5") == 1650
    assert v(P + "job_priority", partition="compute", quantile="1") == 2150
    assert v(P + "job_priority_mean", partition="compute") == pytest.approx(5050 / 3)
    assert v(P + "factor", partition="compute", factor="age", quantile="0.9") == 400
    assert v(P + "factor_mean", partition="compute", factor="fairshare") == pytest.approx(1400 / 3)
    assert v(P + "factor_mean", partition="gpu", factor="tres") == 1000
    assert v(P + "factor_mean", partition="compute", factor="tres") is None  # no TRES weights there


def test_priority_basic_is_reported_once_not_failed(caplog):
    err = CommandError(SPRIO_ARGV, "exit", "status 1: " + BASIC)
    assert plugin_unsupported(err)
    col = SlurmPriorityCollector(CollectorContext(runner=FakeRunner(None, err)))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            out = col.new_set()
            col.collect(out)
    assert out.value(P + "source_available") == 0 and out.series_count() == 1
    assert sum("multifactor" in r.getMessage() for r in caplog.records) == 1


def test_other_failures_propagate():
    err = CommandError(SPRIO_ARGV, "exit", "status 1: slurm_load_jobs error: Unable to contact slurm controller")
    assert not plugin_unsupported(err)
    col = SlurmPriorityCollector(CollectorContext(runner=FakeRunner(None, err)))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
    missing = SlurmPriorityCollector(CollectorContext(runner=FakeRunner(None, CommandError(["sprio"], "missing"))))
    out = missing.new_set()
    missing.collect(out)
    assert out.value(P + "source_available") == 0


def test_no_pending_jobs_gives_no_partition_series():
    col = SlurmPriorityCollector(CollectorContext(runner=FakeRunner("JOBID|PARTITION|PRIORITY\n")))
    out = col.new_set()
    col.collect(out)
    assert out.series_count() == 1 and col.parse_errors == 0


def test_bad_quantiles_option():
    with pytest.raises(ValueError):
        SlurmPriorityCollector(CollectorContext(runner=FakeRunner(""), options={"quantiles": [1.5]}))
