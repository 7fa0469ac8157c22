from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_vmstat import parse_vmstat, vmstat_dict


def test_own_fixture():
    res = parse_vmstat(own_fixture("proc", "t1", "vmstat"))
    assert res.issues == []
    vm = vmstat_dict(res)
    assert vm["pswpin"] == 1250 and vm["pgpgout"] == 110000 and vm["oom_kill"] == 2


def test_bad_lines():
    res = parse_vmstat("pswpin 1\npswpout\npgpgin 1 2\npgfault x\n\npgmajfault 7\n")
    assert vmstat_dict(res) == {"pswpin": 1, "pgmajfault": 7}
    assert [i.line_no for i in res.issues] == [2, 3, 4]


def test_shared_jc_vmstat_values():
    res = parse_vmstat(shared_file("proc-vmstat", "jc-proc-vmstat.txt").read_text())
    assert res.issues == []
    vm = vmstat_dict(res)
    assert vm["nr_free_pages"] == 615337
    assert vm["pgpgin"] == 625466 and vm["pgpgout"] == 706252
    assert vm["pswpin"] == 0 and vm["pswpout"] == 0
    assert vm["pgfault"] == 1195623 and vm["pgmajfault"] == 1713


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("proc-vmstat"), ids=lambda p: p.name)
def test_shared_vmstat_sweep(path):
    res = parse_vmstat(path.read_text())
    assert res.issues == []
    assert "pgpgin" in vmstat_dict(res)


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    res = parse_vmstat(text)
    assert len(res.records) + len(res.issues) == len([ln for ln in text.splitlines() if ln.split()])
