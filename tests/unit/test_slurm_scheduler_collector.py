"""slurm_scheduler collector over a fake runner fed with sdiag captures."""

from __future__ import annotations

import logging

import pytest
from conftest import own_fixture, shared_file

from nomade.exporter.collectors import slurm_scheduler
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_scheduler import SlurmSchedulerCollector
from nomade.exporter.runner import CommandError, CommandResult, CommandRunner

P = "nomade_slurm_scheduler_"


class FakeRunner(CommandRunner):
    def __init__(self, outputs, error: CommandError | None = None):
        super().__init__()
        self.outputs = outputs
        self.error = error
        self.calls: list[tuple[tuple[str, ...], float | None]] = []

    def run(self, argv, *, timeout=None, ttl=None):
        key = tuple(argv)
        self.calls.append((key, ttl))
        if self.error is not None:
            raise self.error
        return CommandResult(key, self.outputs[key], "", 0.01, 0.0)


def collect(text: str, argv=("sdiag",), **options):
    runner = FakeRunner({argv: text})
    col = SlurmSchedulerCollector(CollectorContext(runner=runner, options=options))
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def test_module_exposes_collector():
    assert slurm_scheduler.COLLECTOR is SlurmSchedulerCollector
    assert SlurmSchedulerCollector.name == "slurm_scheduler" and SlurmSchedulerCollector.mode == "controller"


def test_gauges_units_and_counters_from_a_busy_report():
    col, out, runner = collect(own_fixture("sdiag", "sdiag-25.05-busy-backfill-active.txt"), interval=45)
    assert runner.calls == [(("sdiag",), 45.0)]
    assert col.parse_errors == 0
    v = out.value
    assert v(P + "jobs_submitted") == 48211 and v(P + "jobs_failed") == 3 and v(P + "jobs_pending") == 1893
    assert v(P + "server_threads") == 17 and v(P + "dbd_agent_queue_size") == 1250 and v(P + "agents") == 2
    assert v(P + "main_cycle_last_seconds") == pytest.approx(0.120433)
    assert v(P + "main_cycle_max_seconds") == pytest.approx(2.981102)
    assert v(P + "main_cycles") == 14402 and v(P + "main_cycle_mean_depth") == 211
    assert v(P + "backfill_cycle_mean_seconds") == pytest.approx(5.012345)
    assert v(P + "backfill_last_cycle_timestamp_seconds") == 1741089570
    assert v(P + "backfilled_jobs_since_reset") == 20567
    assert v(P + "backfilled_jobs_since_start_total") == 901234
    assert v(P + "backfill_active") == 1
    assert v(P + "stats_reset_timestamp_seconds") == 1741046400
    assert v(P + "main_cycle_exits", reason="default_queue_depth") == 380
    assert v(P + "backfill_cycle_exits", reason="bf_max_job_test") == 290
    assert v(P + "rpc_calls_total", message_type="REQUEST_JOB_INFO") == 912345
    assert v(P + "rpc_time_seconds_total", message_type="REQUEST_JOB_INFO") == pytest.approx(1386.7644)
    assert v(P + "rpc_user_calls_total", user="alice") == 150000
    assert v(P + "rpc_user_time_seconds_total", user="bob") == pytest.approx(283.33)
    assert v(P + "pending_rpcs", message_type="REQUEST_TERMINATE_JOB") == 3
    assert v(P + "source_available") == 1
    assert v(P + "rpc_users_dropped") == 0


def test_rpc_users_are_bounded_or_switched_off():
    text = own_fixture("sdiag", "sdiag-25.05-busy-backfill-active.txt")
    _, out, _ = collect(text, max_rpc_users=2)
    assert set(out.samples(P + "rpc_user_calls_total")) == {("root",), ("alice",)}
    assert out.value(P + "rpc_users_dropped") == 2
    _, off, _ = collect(text, rpc_per_user=False)
    assert off.samples(P + "rpc_user_calls_total") == {} and off.value(P + "rpc_users_dropped") is None


def test_values_sdiag_did_not_print_are_absent():
    _, out, _ = collect(shared_file("sdiag", "sckyzo-sdiag-24.11.7.txt").read_text())
    assert out.value(P + "backfill_cycles") == 0
    assert out.value(P + "backfill_cycle_mean_seconds") is None  # printed only after a cycle
    assert out.value(P + "backfill_last_cycle_timestamp_seconds") is None  # "N/A"
    assert out.value(P + "jobs_submitted") == 15


def test_json_option():
    text = shared_file("sdiag", "rivos-sdiag-json-23.02.4.json").read_text()
    _, out, runner = collect(text, argv=("sdiag", "--json"), json=True)
    assert runner.calls[0][0] == ("sdiag", "--json")
    assert out.value(P + "jobs_running") == 4993
    assert out.value(P + "backfill_cycle_last_seconds") == pytest.approx(4.097505)
    assert out.value(P + "rpc_user_calls_total", user="root") == 141368


def test_cached_output_is_parsed_once():
    text = own_fixture("sdiag", "lab-sdiag-22.05.8.txt").replace("Jobs failed:    0", "Jobs failed:    x")
    runner = FakeRunner({("sdiag",): text})
    col = SlurmSchedulerCollector(CollectorContext(runner=runner))
    fixed = CommandResult(("sdiag",), text, "", 0.0, 0.0)
    runner.run = lambda argv, *, timeout=None, ttl=None: fixed  # the runner's cache hands back the same object
    for _ in range(3):
        out = col.new_set()
        col.collect(out)
    assert col.parse_errors == 1 and out.value(P + "jobs_failed") is None and out.value(P + "jobs_submitted") == 2


def test_failure_propagates_and_missing_command_is_reported_once(caplog):
    col = SlurmSchedulerCollector(CollectorContext(runner=FakeRunner({}, CommandError(["sdiag"], "exit", "down"))))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
    col = SlurmSchedulerCollector(CollectorContext(runner=FakeRunner({}, CommandError(["sdiag"], "missing"))))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            out = col.new_set()
            col.collect(out)
    assert out.value(P + "source_available") == 0 and out.series_count() == 1
    assert sum("not found" in r.getMessage() for r in caplog.records) == 1


def test_unrecognised_output_counts_one_error():
    col, out, _ = collect("No data available. Probably slurmctld is not working\n")
    assert col.parse_errors == 1 and out.series_count() == 1  # only source_available
