from __future__ import annotations

from conftest import own_fixture
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_meminfo import meminfo_dict, parse_meminfo


def test_own_fixture_units():
    res = parse_meminfo(own_fixture("proc", "t0", "meminfo"))
    assert res.issues == []
    mi = meminfo_dict(res)
    assert mi["MemTotal"] == 16384000 * 1024
    assert mi["Active(anon)"] == 2048000 * 1024
    assert mi["HugePages_Total"] == 16  # a count, no unit
    assert mi["Hugepagesize"] == 2 * 1024 * 1024
    flags = {r.name: r.is_bytes for r in res.records}
    assert flags["HugePages_Free"] is False and flags["SwapFree"] is True


def test_bad_lines():
    res = parse_meminfo("MemTotal: 10 kB\nnocolon 5\nMemFree: x kB\nBuffers: 5 MB\nCached:\nShmem: 1 kB extra\n")
    assert meminfo_dict(res) == {"MemTotal": 10240}
    assert [i.line_no for i in res.issues] == [2, 3, 4, 5, 6]


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    res = parse_meminfo(text)
    assert len(res.records) + len(res.issues) == len([ln for ln in text.splitlines() if ln.strip()])
