"""sshare parser: captured outputs of other sites (headerless -P -n), the lab's (priority/basic) and our own."""

from __future__ import annotations

import math

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sshare import SSHARE_ARGV, SSHARE_FIELDS, parse_sshare, parse_tres_counts

# SOURCES.md: these captures were made with -o Account,User,RawShares,NormShares,RawUsage,NormUsage,FairShare -n.
SHARED_FIELDS = ("Account", "User", "RawShares", "NormShares", "RawUsage", "NormUsage", "FairShare")


@pytest.mark.parametrize("path", shared_files("sshare"), ids=lambda p: p.name)
def test_every_captured_file_parses_with_its_fields(path):
    res = parse_sshare(path.read_text(), fields=SHARED_FIELDS)
    assert res.issues == [] and res.records
    assert all(r.account for r in res.records)


def test_tree_with_parent_shares():
    rows = parse_sshare(shared_file("sshare", "sckyzo-sshare-a-P-n-tree-parent.txt").read_text(), SHARED_FIELDS).records
    by = {(r.account, r.user): r for r in rows}
    assert len(rows) == 10
    assert by[("root", "")].depth == 0 and by[("root", "")].raw_usage == 500000
    ci = by[("root", "ci-bot")]
    assert ci.uses_parent_shares and ci.raw_shares is None and ci.fairshare == 0.5 and ci.depth == 1
    a = by[("account_a", "")]
    assert (a.raw_shares, a.norm_shares, a.raw_usage, a.norm_usage, a.fairshare) == (1, 0.5, 100000, 0.2, 0.6)
    assert by[("account_b", "")].raw_shares == 1000 and by[("account_b", "")].fairshare is None
    assert by[("account_a", "user2")].depth == 2 and by[("account_c", "user5")].fairshare == 0.75


def test_headerless_text_without_fields_is_refused():
    res = parse_sshare(shared_file("sshare", "sckyzo-sshare-a-P-n-24.11.7-minimal.txt").read_text())
    assert res.records == [] and len(res.issues) == 1 and res.issues[0].reason == "unrecognised format"


def test_own_fair_tree_capture_with_header():
    res = parse_sshare(own_fixture("sshare", "sshare-fairtree-multifactor-25.05.txt"))
    assert res.issues == []
    by = {(r.account, r.user, r.partition): r for r in res.records}
    root = by[("root", "", "")]
    assert root.raw_shares is None and root.raw_usage == 98765432 and root.effective_usage == 1.0
    assert math.isinf(by[("root", "root", "")].level_fs)
    chem = by[("chemistry", "", "")]
    assert chem.level_fs == 1.333333 and chem.fairshare is None and chem.grp_tres_mins == {"cpu": 2000000}
    assert chem.grp_tres_raw["mem"] == 1685504000 and chem.tres_run_mins["cpu"] == 0
    assert by[("chemistry", "bob", "")].uses_parent_shares and by[("chemistry", "bob", "")].level_fs is None
    assert by[("physics", "carol", "gpu")].partition == "gpu"
    assert by[("physics", "alice", "")].fairshare == 0.25 and by[("physics", "alice", "")].grp_tres_mins == {}


def test_lab_capture_under_priority_basic():
    res = parse_sshare(own_fixture("sshare", "lab-sshare-basic-22.05.8.txt"))
    assert res.issues == []
    assert [(r.account, r.user) for r in res.records] == [
        ("root", ""), ("root", "root"), ("chemistry", ""), ("chemistry", "bob"), ("physics", ""), ("physics", "alice")
    ]  # fmt: skip
    assert all(r.norm_shares is None for r in res.records)  # priority/basic: nothing normalised


def test_parsable_with_trailing_pipe():
    text = "Account|User|RawShares|FairShare|\nacct|u1|5|0.5|\n"
    rows = parse_sshare(text).records
    assert len(rows) == 1 and rows[0].raw_shares == 5 and rows[0].fairshare == 0.5


def test_bad_values_and_lines_are_counted():
    text = (
        "Account|User|RawShares|NormShares|GrpTRESRaw\nacct||x|0.5|cpu=1\nacct|u|1|nan|cpu=1,gr\nshort|line\n|u|1|1|\n"
    )
    res = parse_sshare(text)
    reasons = [i.reason for i in res.issues]
    assert len(reasons) == 5, reasons
    acct, user = res.records
    assert acct.raw_shares is None and acct.norm_shares == 0.5 and acct.grp_tres_raw == {"cpu": 1}
    assert user.norm_shares is None and user.grp_tres_raw is None


def test_argv_and_tres_helper():
    assert SSHARE_ARGV[:3] == ("sshare", "--all", "--parsable2")
    assert SSHARE_ARGV[3] == "--format=" + ",".join(SSHARE_FIELDS)
    assert parse_tres_counts("cpu=1,gres/gpu=2.5") == {"cpu": 1, "gres/gpu": 2.5}
    assert parse_tres_counts("") == {}
    for bad in ("cpu", "cpu=x", "cpu=inf"):
        with pytest.raises(ValueError):
            parse_tres_counts(bad)


CELLS = st.sampled_from(["Account", "User", "RawShares", "LevelFS", "GrpTRESRaw", "parent", "inf", "nan", "0.5",
                         " acct", "u", "", "cpu=1,mem", "cpu=2", "-1", "99999999999999999999", "\ufffd"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.lists(CELLS, max_size=8).map("|".join), max_size=10).map("\n".join),
    ),
    st.sampled_from([None, SHARED_FIELDS, SSHARE_FIELDS]),
)
def test_property_no_exception_escapes(text, fields):
    res = parse_sshare(text, fields)
    for r in res.records:
        assert r.account and r.account == r.account.strip()
