"""slurm_reservations collector over a fake runner fed with scontrol show reservation captures."""

from __future__ import annotations

import pytest
from conftest import TextRunner, own_fixture, shared_file

from nomade.exporter.collectors import slurm_reservations
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_reservations import MAX_LABEL, SlurmReservationsCollector
from nomade.exporter.parsers.reservations import RESERVATION_ARGV
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.runner import CommandError

R = "nomade_slurm_reservation_"


FakeRunner = TextRunner


def collect(text: str):
    runner = FakeRunner(text)
    col = SlurmReservationsCollector(CollectorContext(runner=runner))
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def test_module_exposes_collector():
    assert slurm_reservations.COLLECTOR is SlurmReservationsCollector


def test_two_reservations():
    col, out, runner = collect(own_fixture("reservations", "scontrol-show-res-o-two-23.11.txt"))
    assert runner.calls == [(RESERVATION_ARGV, 60.0)] and col.parse_errors == 0
    v = out.value
    assert v(R + "count") == 2
    assert v(R + "active", reservation="chem_course") == 1 and v(R + "active", reservation="maint_0305") == 0
    assert v(R + "start_timestamp_seconds", reservation="maint_0305") == parse_timestamp("2025-03-05T08:00:00")
    assert v(R + "end_timestamp_seconds", reservation="chem_course") == parse_timestamp("2025-03-07T17:00:00")
    assert v(R + "nodes", reservation="maint_0305") == 128 and v(R + "cores", reservation="chem_course") == 256
    info = out.samples(R + "info")
    assert ("chem_course", "active", "DAILY", "", "chemistry,physics", "", "c[129-132]") in info
    assert ("maint_0305", "inactive", "MAINT,IGNORE_JOBS,SPEC_NODES", "root", "", "compute", "c[001-128]") in info


def test_no_reservations_is_a_real_zero():
    _, out, _ = collect(shared_file("scontrol", "sckyzo-scontrol-show-reservation-empty.txt").read_text())
    assert out.value(R + "count") == 0 and out.value(R + "source_available") == 1


def test_unreadable_output_leaves_the_count_out():
    col, out, _ = collect("slurm_load_reservations error: something\n")
    assert col.parse_errors == 1 and out.value(R + "count") is None


def test_long_user_lists_are_cut():
    users = ",".join(f"user{i:04d}" for i in range(200))
    _, out, _ = collect(f"ReservationName=big Users={users} State=ACTIVE\n")
    (key,) = out.samples(R + "info")
    assert len(key[3]) == MAX_LABEL and key[3].endswith("...")


def test_failures():
    col = SlurmReservationsCollector(CollectorContext(runner=FakeRunner(None, CommandError(["scontrol"], "exit"))))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
    col = SlurmReservationsCollector(CollectorContext(runner=FakeRunner(None, CommandError(["scontrol"], "missing"))))
    out = col.new_set()
    col.collect(out)
    assert out.value(R + "source_available") == 0 and out.value(R + "count") is None
