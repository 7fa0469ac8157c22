from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_pressure import parse_pressure, pressure_by_kind


def test_own_fixture():
    res = parse_pressure(own_fixture("proc", "t1", "pressure", "memory"))
    assert res.issues == []
    psi = pressure_by_kind(res)
    assert psi["some"].avg10 == pytest.approx(0.225)
    assert psi["some"].avg300 == pytest.approx(0.0205)
    assert psi["some"].total_us == 3500000
    assert psi["full"].avg60 == pytest.approx(0.033)
    assert psi["full"].total_us == 1400000


def test_shared_memory_values():
    psi = pressure_by_kind(parse_pressure(shared_file("pressure", "procfs-pressure-memory.txt").read_text()))
    assert psi["some"].avg10 == pytest.approx(0.001) and psi["some"].avg60 == pytest.approx(0.02)
    assert psi["some"].avg300 == pytest.approx(0.0385) and psi["some"].total_us == 15
    assert psi["full"].avg300 == pytest.approx(0.0495) and psi["full"].total_us == 25


def test_shared_cpu_some_only():
    psi = pressure_by_kind(parse_pressure(shared_file("pressure", "procfs-pressure-cpu-some-only.txt").read_text()))
    assert list(psi) == ["some"]


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("pressure"), ids=lambda p: p.name)
def test_shared_pressure_sweep(path):
    res = parse_pressure(path.read_text())
    assert res.issues == []
    assert {r.kind for r in res.records} <= {"some", "full"}
    assert "some" in pressure_by_kind(res)


def test_bad_lines():
    res = parse_pressure(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        "half avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        "full avg10=0.00 avg60=0.00 total=1\n"
        "full avg10=x avg60=0.00 avg300=0.00 total=1\n"
        "full avg10=101.00 avg60=0.00 avg300=0.00 total=1\n"
    )
    assert [r.kind for r in res.records] == ["some"]
    assert [i.line_no for i in res.issues] == [2, 3, 4, 5]


@given(st.text(max_size=200))
def test_random_text_never_raises(text):
    res = parse_pressure(text)
    assert len(res.records) + len(res.issues) == len([ln for ln in text.splitlines() if ln.split()])


@given(
    st.sampled_from(["some", "full", "x"]),
    st.lists(st.sampled_from(["avg10=1.0", "avg60=2", "avg300=nan", "avg300=3", "total=-1", "total=9", "=", "a"])),
)
def test_mangled_fields(kind, fields):
    res = parse_pressure(" ".join([kind, *fields]))
    assert len(res.records) + len(res.issues) == 1
    for r in res.records:
        assert 0 <= r.avg10 <= 1 and r.total_us >= 0
