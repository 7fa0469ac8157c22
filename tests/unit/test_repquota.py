"""repquota parser: raw (-p -n) reports, non-raw text graces, CSV, mangled input."""

from __future__ import annotations

import pytest
from conftest import own_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.repquota import parse_repquota

RAW = own_fixture("repquota", "repquota-u-g-p-n-ext4.txt")


def test_raw_user_and_group_reports():
    result = parse_repquota(RAW)
    assert result.issues == []
    users = [e for e in result.records if e.type == "user"]
    groups = [e for e in result.records if e.type == "group"]
    assert [e.name for e in users] == ["#0", "#1001", "#1002", "#1003", "#1004"]
    assert [e.name for e in groups] == ["#0", "#2000", "#2001"]
    u = users[1]
    assert u.device == "/dev/mapper/vg0-home"
    assert u.used_bytes == 10485860 * 1024
    assert u.soft_limit_bytes == 10485760 * 1024 and u.hard_limit_bytes == 12582912 * 1024
    assert u.grace_expiry == 1709805600 and u.file_grace_expiry is None
    assert u.used_files == 48211 and u.file_soft_limit is None and u.file_hard_limit is None
    assert u.over_limit
    # limits of 0 mean "no limit": None, never 0
    root = users[0]
    assert (root.soft_limit_bytes, root.hard_limit_bytes, root.grace_expiry) == (None, None, None)
    assert not root.over_limit
    inode_over = users[3]
    assert inode_over.over_limit and inode_over.file_grace_expiry == 1709719200
    assert inode_over.file_soft_limit == 1000 and inode_over.file_hard_limit == 2000
    assert not users[2].over_limit


def test_non_raw_graces_are_text_and_empty_columns_are_handled():
    result = parse_repquota(own_fixture("repquota", "repquota-u-nonraw-names.txt"))
    assert result.issues == []
    by = {e.name: e for e in result.records}
    assert set(by) == {"root", "alice", "bob", "averyverylongname"}
    assert by["alice"].grace_text == "6days" and by["alice"].grace_expiry is None
    assert by["alice"].used_files == 310
    assert by["bob"].file_grace_text == "none" and by["bob"].used_files == 1200 and by["bob"].over_limit
    assert by["root"].used_bytes == 20 * 1024 and by["root"].grace_text == ""


def test_csv_output_matches_default_layout():
    csv = parse_repquota(own_fixture("repquota", "repquota-u-p-n-O-csv.txt"))
    assert csv.issues == []
    raw = {e.name: e for e in parse_repquota(RAW).records if e.type == "user"}
    for e in csv.records:
        r = raw[e.name]
        assert e.device is None
        assert (e.used_bytes, e.soft_limit_bytes, e.hard_limit_bytes, e.grace_expiry, e.used_files) == (
            r.used_bytes,
            r.soft_limit_bytes,
            r.hard_limit_bytes,
            r.grace_expiry,
            r.used_files,
        )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("#1 -- 1 2 3 0 4 5 6 0", "row before any report header"),
    ],
)
def test_row_before_header(line, reason):
    result = parse_repquota(line)
    assert [i.reason for i in result.issues] == [reason]


def test_bad_rows_are_counted_and_skipped():
    text = RAW.replace("#1002     -- 2097152", "#1002     -- 2.0G") + "#9 xx 1 2\n"
    result = parse_repquota(text)
    assert len(result.issues) == 2
    assert "#1002" not in {e.name for e in result.records if e.type == "user"}


_LINES = RAW.splitlines()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.text(max_size=60)), max_size=30))
def test_mangled_input_never_raises(lines):
    result = parse_repquota("\n".join(lines))
    for e in result.records:
        assert e.used_bytes >= 0 and e.used_files >= 0
