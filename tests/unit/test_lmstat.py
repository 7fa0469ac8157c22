"""lmstat parsers: every captured lmstat file, our own triad/multi-vendor fixtures, and mangled input."""

from __future__ import annotations

import calendar
import math

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.lmstat import parse_expiry, parse_lmstat, parse_lmstat_info, server_hosts

CAPTURED = shared_files("lmstat")


def _day(y: int, m: int, d: int) -> float:
    return float(calendar.timegm((y, m, d, 0, 0, 0)))


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.name)
def test_every_captured_file_parses_without_issues(path):
    text = path.read_text()
    if "-i-" in path.name:
        result = parse_lmstat_info(text)
        assert result.records, "an lmstat -i table has rows"
        assert all(r.expiry is not None for r in result.records)
    else:
        result = parse_lmstat(text)
        report = result.records[0]
        if "-a-" in path.name:
            assert report.server_status and all(s.up for s in report.server_status)
            assert report.daemons and all(d.up for d in report.daemons)
        for f in report.features:
            if f.uncounted:  # MATLAB's TMW_Archive: "(Uncounted, node-locked)"
                assert f.issued is None and f.used is None
            else:
                assert f.issued is not None and f.used is not None and f.used <= f.issued
    assert result.issues == []


def test_triad_with_reservations_app1():
    report = parse_lmstat(shared_file("lmstat", "flexlm-lmstat-a-app1-triad-reservations.txt").read_text()).records[0]
    assert report.servers == ["host-1.domain.net", "host2.domain.net", "host3.domain.net"]
    assert [(s.host, s.master, s.version) for s in report.server_status] == [
        ("host-1.domain.net", False, "11.7"),
        ("host2.domain.net", True, "11.7"),
        ("host3.domain.net", False, "11.7"),
    ]
    assert report.vendor_host == "host2.domain.net"
    assert [(d.vendor, d.up, d.version) for d in report.daemons] == [("VENDOR1", True, "11.6")]
    assert len(report.features) == 54
    by = {f.feature: f for f in report.features}
    assert len(by) == 53  # feature42 is listed twice in this (hand-edited) capture
    f1 = by["feature1"]
    assert (f1.issued, f1.used) == (1814, 1206)
    # 1 + 10 host reservations and 121 group reservations
    assert f1.reserved == 132
    assert f1.checkouts["user10"] == 12 + 14 * 6  # seven checkout lines with ", N licenses"
    assert f1.checkouts["USER9"] == 5
    assert f1.versions[0].version == "61.9" and f1.versions[0].vendor == "VENDOR1"
    # queued lines are not checkouts
    f5 = by["feature5"]
    assert f5.queued == 2 and f5.checkouts == {"user3": 2} and f5.vendor == "vendor1"
    # display fields with parentheses and user names with spaces: the first token is the user
    assert by["feature100"].checkouts == {"user13": 1, "Administrator": 1, "John": 1, "Jane": 1}


def test_matlab_blank_lines_and_expiry():
    report = parse_lmstat(shared_file("lmstat", "flexlm-lmstat-a-app6-matlab-blanklines.txt").read_text()).records[0]
    matlab = next(f for f in report.features if f.feature == "MATLAB")
    assert (matlab.issued, matlab.used, matlab.reserved) == (420, 60, 1)
    # FlexNet counts the reservation as in use: 59 checkouts + 1 reservation = 60
    assert sum(matlab.checkouts.values()) == 59
    assert [(v.version, v.expiry_text) for v in matlab.versions] == [
        ("12", "01-jan-0000"),
        ("53", "01-jan-2099"),
        ("52", "01-jan-2099"),
    ]
    assert matlab.versions[0].expiry == math.inf
    assert matlab.versions[1].expiry == _day(2099, 1, 1)


def test_windows_server_listed_twice_in_different_case():
    report = parse_lmstat(shared_file("lmstat", "flexlm-lmstat-a-server-up-windows.txt").read_text()).records[0]
    assert report.servers == ["bvs15004"]
    assert [(s.host, s.up, s.master) for s in report.server_status] == [("bvs15004", True, True)]
    assert [(d.vendor, d.version) for d in report.daemons] == [("ptc_d", "11.14.0")]


def test_multi_vendor_app3():
    report = parse_lmstat(shared_file("lmstat", "flexlm-lmstat-a-app3-multi-vendor.txt").read_text()).records[0]
    assert [d.vendor for d in report.daemons] == ["daemon1", "DAEMON2"]
    f7 = next(f for f in report.features if f.feature == "feature7")
    assert (f7.issued, f7.used, f7.checkout_lines, sum(f7.checkouts.values())) == (600, 163, 163, 163)


def test_lmstat_i_both_column_orders():
    rows = parse_lmstat_info(shared_file("lmstat", "flexlm-lmstat-i-app1.txt").read_text()).records
    assert len(rows) == 17
    assert (rows[0].feature, rows[0].version, rows[0].count, rows[0].vendor) == ("feature1", "2018.12", 2, "vendor1")
    assert rows[0].expiry == _day(2018, 12, 31)
    assert rows[-2].expiry_text == "1-jan-0" and rows[-2].expiry == math.inf
    assert rows[-1].expiry_text == "01-jan-0000" and rows[-1].expiry == math.inf
    swapped = parse_lmstat_info(shared_file("lmstat", "flexlm-lmstat-i-app2-cols-swapped.txt").read_text()).records
    assert (swapped[0].vendor, swapped[0].expiry) == ("VENDOR", _day(2020, 6, 12))
    assert (swapped[-2].vendor, swapped[-2].expiry_text) == ("vendor", "permanent(no expiration date)")
    assert swapped[-2].expiry == math.inf


def test_own_triad_with_down_server_and_daemon():
    result = parse_lmstat(own_fixture("lmstat", "lmstat-a-triad-down-multivendor.txt"))
    assert result.issues == []
    report = result.records[0]
    assert report.servers == ["lic1.example.org", "lic2.example.org", "lic3.example.org"]
    status = {s.host: s for s in report.server_status}
    assert status["lic1.example.org"].master and status["lic1.example.org"].up
    assert not status["lic3.example.org"].up and "Cannot connect" in status["lic3.example.org"].detail
    assert [(d.vendor, d.up) for d in report.daemons] == [("cdslmd", True), ("snpslmd", False)]
    by = {f.feature: f for f in report.features}
    vs = by["Virtuoso_Schematic"]
    assert (vs.issued, vs.used, vs.reserved, vs.queued) == (20, 6, 2, 3)
    # PID suffix, ", 2 licenses" and linger suffix
    assert vs.checkouts == {"alice": 3, "bob": 1}
    assert by["VCS"].versions[0].expiry == math.inf and by["VCS"].vendor == "snpslmd"
    assert by["Spectre"].versions == [] and by["Spectre"].vendor is None
    assert by["hostid_tool"].uncounted and by["hostid_tool"].issued is None
    assert by["Legacy_Feature"].issued is None and "No such feature" in by["Legacy_Feature"].error


def test_lmgrd_down():
    report = parse_lmstat(own_fixture("lmstat", "lmstat-a-lmgrd-down.txt")).records[0]
    assert report.servers == ["matlab-lic"]
    assert report.server_status == []
    assert report.error.startswith("lmgrd is not running")


def test_own_lmstat_i_counts_bad_date():
    result = parse_lmstat_info(own_fixture("lmstat", "lmstat-i-multivendor.txt"))
    assert len(result.records) == 6
    assert [i.reason for i in result.issues] == ["unreadable expiry 'someday'"]
    assert result.records[-1].expiry is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("31-dec-2018", _day(2018, 12, 31)),
        ("1-JUL-2024", _day(2024, 7, 1)),
        ("permanent", math.inf),
        ("1-jan-0", math.inf),
        ("01-jan-0000", math.inf),
        ("1-jan-00", math.inf),
        ("1-jan-24", None),
        ("31-foo-2020", None),
        ("", None),
    ],
)
def test_parse_expiry(text, expected):
    assert parse_expiry(text) == expected


def test_server_hosts():
    assert server_hosts("27000@A,27000@b.example.org;1717@c:5053@d") == ["a", "b.example.org", "c", "d"]


def test_unknown_line_in_feature_section_is_counted():
    text = "Feature usage info:\nUsers of f:  (Total of 2 licenses issued;  Total of 1 license in use)\nbogus\n"
    result = parse_lmstat(text)
    assert len(result.issues) == 1 and result.issues[0].line_no == 3
    assert result.records[0].features[0].issued == 2


_LINES = [line for p in CAPTURED for line in p.read_text().splitlines()[:80]] or [
    "Users of f:  (Total of 2 licenses issued;  Total of 1 license in use)"
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.text(max_size=80)), max_size=40))
def test_mangled_input_never_raises(lines):
    text = "\n".join(lines)
    assert len(parse_lmstat(text).records) == 1
    parse_lmstat_info(text)
    for line in lines:
        parse_expiry(line)
