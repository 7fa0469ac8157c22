from __future__ import annotations

from conftest import own_fixture
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_stat import CpuTimes, parse_stat


def test_own_fixture():
    res = parse_stat(own_fixture("proc", "t0", "stat"))
    assert res.issues == []
    stat = res.records[0]
    assert [c.cpu for c in stat.cpus] == ["all", "0", "1"]
    assert stat.cpu("all") == CpuTimes("all", 10000, 200, 3000, 80000, 500, 100, 200, 50, 1000, 0)
    assert stat.cpu("1").as_dict()["guest"] == 500
    assert stat.values == {
        "intr": 123456,
        "ctxt": 987654,
        "btime": 1700000000,
        "processes": 4321,
        "procs_running": 3,
        "procs_blocked": 1,
        "softirq": 55555,
    }


def test_old_kernel_short_cpu_lines_and_bad_lines():
    text = "cpu 1 2 3 4\ncpu0 1 2 3 4 5 6 7\ncpuX 1 2 3 4\ncpu1 1 2 3\ncpu2 1 a 3 4\nprocs_blocked x\npage 5 6\n"
    res = parse_stat(text)
    stat = res.records[0]
    assert stat.cpu("all").as_dict() == {"user": 1, "nice": 2, "system": 3, "idle": 4}
    assert stat.cpu("all").steal == 0
    assert stat.cpu("0").fields == 7 and stat.cpu("0").softirq == 7 and stat.cpu("0").steal == 0
    assert [i.line_no for i in res.issues] == [3, 4, 5, 6]
    assert "procs_blocked" not in stat.values


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    res = parse_stat(text)
    assert len(res.records) == 1


@given(
    st.lists(st.sampled_from(["cpu", "cpu0", "cpu 1 2 3 4 5", "ctxt", "ctxt 5", "intr -", "9", "-1", "x"]), max_size=20)
)
def test_mangled_tokens(tokens):
    res = parse_stat("\n".join(tokens) + "\n" + " ".join(tokens))
    assert len(res.records) == 1
