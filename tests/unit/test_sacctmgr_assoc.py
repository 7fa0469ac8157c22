"""sacctmgr show associations parser: another site's headerless capture, the lab's, our own with limits."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sacctmgr import ASSOC_ARGV, ASSOC_FIELDS, parse_associations, parse_tres_limits

MIB = 1024**2
# SOURCES.md: format=User,Account,GrpCPU,GrpMem,GrpJobs,GrpSubmit -n -P (pre-GrpTRES titles).
RIVOS_FIELDS = ("User", "Account", "GrpCPU", "GrpMem", "GrpJobs", "GrpSubmit")


@pytest.mark.parametrize("path", shared_files("sacctmgr"), ids=lambda p: p.name)
def test_every_captured_file_parses(path):
    res = parse_associations(path.read_text(), fields=RIVOS_FIELDS)
    assert res.issues == [] and res.records


def test_rivos_capture_and_its_user_line():
    rows = parse_associations(
        shared_file("sacctmgr", "rivos-sacctmgr-show-assoc-parsable2-noheader.txt").read_text(), RIVOS_FIELDS
    ).records
    assert [r.account for r in rows] == ["root", "account1", "account2", "account3", "account4", "account5",
                                         "account5"]  # fmt: skip
    a4 = rows[4]
    assert a4.user == "" and a4.grp_tres == {"cpu": 7948, "mem": 95505000 * MIB}
    assert (a4.grp_jobs, a4.grp_submit) == (8000, 60000)
    assert rows[3].grp_tres == {} and rows[3].grp_jobs is None  # empty = no limit
    # The maintainers' negative line has a User: for us it is a valid USER association of account5, kept apart
    # from the account association (the collector drops it with per_user = false).
    user_line = rows[6]
    assert user_line.user == "shouldignore" and user_line.grp_jobs == 405 and user_line.grp_tres["cpu"] == 3978


def test_headerless_without_fields_is_refused():
    res = parse_associations(shared_file("sacctmgr", "rivos-sacctmgr-show-assoc-parsable2-noheader.txt").read_text())
    assert res.records == [] and [i.reason for i in res.issues] == ["unrecognised format"]


def test_lab_capture():
    res = parse_associations(own_fixture("sacctmgr", "lab-sacctmgr-assoc-22.05.8.txt"))
    assert res.issues == []
    assert [(r.cluster, r.account, r.user) for r in res.records] == [
        ("lab", "root", ""), ("lab", "root", "root"), ("lab", "chemistry", ""), ("lab", "chemistry", "bob"),
        ("lab", "physics", ""), ("lab", "physics", "alice"),
    ]  # fmt: skip
    assert all(not r.grp_tres and r.max_jobs is None for r in res.records)


def test_own_limits():
    res = parse_associations(own_fixture("sacctmgr", "sacctmgr-assoc-limits-23.11.txt"))
    by = {(r.account, r.user, r.partition): r for r in res.records}
    chem = by[("chemistry", "", "")]
    assert chem.grp_tres == {"cpu": 512, "mem": 2 * 1024**4, "gres/gpu": 8}
    assert (chem.grp_jobs, chem.grp_submit) == (200, 1000)
    bob = by[("chemistry", "bob", "")]
    assert bob.max_tres == {"cpu": 64, "mem": 256000 * MIB} and (bob.max_jobs, bob.max_submit) == (20, 100)
    assert bob.max_wall_seconds == 2 * 86400
    assert by[("physics", "", "")].grp_wall_seconds == 7 * 86400
    alice = by[("physics", "alice", "gpu")]
    assert alice.grp_tres == {"gres/gpu": 4} and alice.max_jobs == 10 and alice.max_wall_seconds == 12 * 3600
    # "-1" is how a limit is cleared, never a displayed limit: counted, left out
    assert by[("physics", "dave", "")].max_jobs is None and len(res.issues) == 1 and "-1" in res.issues[0].reason


def test_bad_lines():
    text = "Account|User|GrpJobs|MaxWall|GrpTRES\n|u|1||\na|b\na||x|1-xx|cpu=1,mem\n"
    res = parse_associations(text)
    assert len(res.issues) == 5
    (r,) = res.records
    assert r.grp_jobs is None and r.max_wall_seconds is None and r.grp_tres == {}


def test_argv_and_tres():
    assert ASSOC_ARGV[:5] == ("sacctmgr", "--readonly", "--parsable2", "show", "associations")
    assert ASSOC_ARGV[5] == "format=" + ",".join(ASSOC_FIELDS)
    assert parse_tres_limits("cpu=4,mem=1G,gres/gpu:a100=2") == {"cpu": 4, "mem": 1024**3, "gres/gpu:a100": 2}
    for bad in ("cpu=-1", "mem=lots", "cpu", "node=inf"):
        with pytest.raises(ValueError):
            parse_tres_limits(bad)


CELLS = st.sampled_from(["Cluster", "Account", "User", "GrpTRES", "MaxWall", "GrpJobs", "a", "", "cpu=1",
                         "mem=1Q", "-1", "1-00:00:00", "UNLIMITED", "99999999999999999999", "\ufffd", "GrpMem",
                         "inf"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.lists(CELLS, max_size=8).map("|".join), max_size=8).map("\n".join)),
       st.sampled_from([None, RIVOS_FIELDS, ASSOC_FIELDS]))  # fmt: skip
def test_property_no_exception_escapes(text, fields):
    for r in parse_associations(text, fields).records:
        assert r.account
