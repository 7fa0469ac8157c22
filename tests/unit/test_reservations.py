"""scontrol show reservation parser: captures of another site (multi-line, prose when empty), the lab's, ours."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.reservations import RESERVATION_ARGV, parse_reservations
from nomade.exporter.parsers.slurm_units import parse_timestamp


def test_multi_line_capture():
    res = parse_reservations(shared_file("scontrol", "sckyzo-scontrol-show-reservation.txt").read_text())
    assert res.issues == []
    (r,) = res.records
    assert r.name == "pre-reservation-maintenance"
    assert r.start_time == parse_timestamp("2025-08-26T07:00:00")
    assert r.end_time - r.start_time == r.duration_seconds == 3 * 86400 + 13 * 3600
    assert (r.node_count, r.core_count, r.state) == (102, 25152, "INACTIVE")
    assert r.flags == ("SPEC_NODES", "ALL_NODES") and r.users == "user01" and r.accounts == ""
    assert r.nodes == "node[001-102]" and r.partition == ""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(lambda: shared_file("scontrol", "sckyzo-scontrol-show-reservation-empty.txt").read_text(),
                     id="other-site"),
        pytest.param(lambda: own_fixture("reservations", "lab-scontrol-show-res-o-empty-22.05.8.txt"), id="lab"),
        pytest.param(lambda: "", id="empty"),
    ],
)  # fmt: skip
def test_no_reservations_is_not_an_error(text):
    res = parse_reservations(text())
    assert res.records == [] and res.issues == []


def test_one_liner_two_reservations():
    res = parse_reservations(own_fixture("reservations", "scontrol-show-res-o-two-23.11.txt"))
    assert res.issues == []
    maint, course = res.records
    assert maint.flags == ("MAINT", "IGNORE_JOBS", "SPEC_NODES") and maint.partition == "compute"
    assert maint.duration_seconds == 12 * 3600 and maint.users == "root" and maint.state == "INACTIVE"
    assert course.state == "ACTIVE" and course.accounts == "chemistry,physics" and course.users == ""
    assert (course.node_count, course.core_count) == (4, 256)
    assert course.fields["TRES"] == "cpu=512"


def test_bad_values_and_foreign_records_are_counted():
    text = "ReservationName=r StartTime=never NodeCnt=many CoreCnt=4 State=ACTIVE\nNodeName=c01 State=IDLE\n"
    res = parse_reservations(text)
    assert len(res.issues) == 3
    (r,) = res.records
    assert r.start_time is None and r.node_count is None and r.core_count == 4


def test_argv():
    assert RESERVATION_ARGV == ("scontrol", "--oneliner", "show", "reservation")


TOKENS = st.sampled_from(["ReservationName=r", " ", "\n", "   ", "StartTime=2024-01-01T00:00:00", "EndTime=x",
                          "NodeCnt=3", "CoreCnt=-1", "Duration=UNLIMITED", "Flags=A,,B", "State=", "=", "(null)",
                          "No reservations in the system", "Users=a b", "\ufffd"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=30).map("".join)))
def test_property_no_exception_escapes(text):
    for r in parse_reservations(text).records:
        assert isinstance(r.name, str)
