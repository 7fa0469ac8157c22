"""rlmstat parser: the captured Foundry server, our own two-ISV and unreachable fixtures, mangled input."""

from __future__ import annotations

import calendar
import math

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.rlmstat import parse_rlmstat

CAPTURED = shared_files("rlmstat")


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.name)
def test_every_captured_file_parses_without_issues(path):
    result = parse_rlmstat(path.read_text())
    report = result.records[0]
    assert result.issues == []
    assert report.host and report.isvs and report.pools
    for pool in report.pools:
        assert pool.count is not None and pool.inuse is not None and pool.inuse <= pool.count


def test_foundry_capture_values():
    report = parse_rlmstat(
        shared_file("rlmstat", "rlmexp-rlmutil-rlmstat-a-foundry-v12.2-windows.txt").read_text()
    ).records[0]
    assert (report.host, report.port, report.version, report.error) == ("rlm-server.domain.domain", 4101, "12.2", "")
    assert report.isvs == {"foundry": True}
    assert len(report.pools) == 12
    nuke = [p for p in report.pools if p.product == "nuke_i"]
    assert [(p.version, p.count, p.inuse, p.expiry_text) for p in nuke] == [
        ("2024.0331", 1, 1, "permanent"),
        ("2024.0701", 22, 3, "permanent"),
        ("2024.0416", 4, 0, "16-apr-2024"),
    ]
    assert nuke[0].expiry == math.inf
    assert nuke[2].expiry == calendar.timegm((2024, 4, 16, 0, 0, 0))
    assert len(report.checkouts) == 10
    first = report.checkouts[0]
    assert (first.isv, first.product, first.version, first.user, first.host, first.count) == (
        "foundry",
        "nuke_i",
        "2024.0331",
        "user1.lastname",
        "mocked-computer-01",
        1,
    )


def test_own_two_isv_fixture():
    result = parse_rlmstat(own_fixture("rlmstat", "rlmstat-a-two-isv.txt"))
    assert result.issues == []
    report = result.records[0]
    assert report.host == "rlmhost" and report.version == "15.2"
    assert report.isvs == {"sidefx": True, "foundry": False}
    render = report.pools[-1]
    assert (render.product, render.count, render.inuse, render.expiry) == ("render", None, 1, math.inf)
    assert [(c.user, c.count) for c in report.checkouts if c.product == "houdini"] == [
        ("alice", 1),
        ("alice", 2),
        ("bob", 1),
        ("carol", 1),
    ]


def test_unreachable_server():
    report = parse_rlmstat(own_fixture("rlmstat", "rlmstat-a-unreachable.txt")).records[0]
    assert report.host is None and report.pools == []
    assert report.error == 'Error connecting to "rlm" server'


def test_unknown_pool_line_is_counted():
    text = "foundry license pool status on H (port 1)\nnuke_i v1.0, pool: 1\n\tgarbage here\n"
    result = parse_rlmstat(text)
    assert [i.line_no for i in result.issues] == [3]
    assert result.records[0].pools[0].product == "nuke_i"


_LINES = [line for p in CAPTURED for line in p.read_text().splitlines()] or ["nuke_i v1.0, pool: 1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.text(max_size=80)), max_size=40))
def test_mangled_input_never_raises(lines):
    assert len(parse_rlmstat("\n".join(lines)).records) == 1
