from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_diskstats import parse_diskstats


def test_own_fixture_all_kernel_layouts():
    res = parse_diskstats(own_fixture("proc", "t0", "diskstats"))
    assert res.issues == []
    by = {d.device: d for d in res.records}
    assert list(by) == ["loop0", "sda", "sda1", "nvme0n1", "dm-0"]
    sda = by["sda"]  # 20 fields (kernel >= 5.5)
    assert (sda.major, sda.minor) == (8, 0)
    assert (sda.reads_completed, sda.reads_merged, sda.sectors_read, sda.read_time_ms) == (1000, 10, 80000, 5000)
    assert (sda.writes_completed, sda.sectors_written, sda.write_time_ms) == (2000, 160000, 8000)
    assert (sda.io_in_progress, sda.io_time_ms, sda.io_weighted_time_ms) == (0, 3000, 13000)
    assert (sda.discards_completed, sda.sectors_discarded, sda.discard_time_ms) == (100, 8192, 50)
    assert (sda.flushes_completed, sda.flush_time_ms) == (400, 200)
    nvme = by["nvme0n1"]  # 18 fields (4.18 - 5.4): discards, no flushes
    assert nvme.io_in_progress == 2 and nvme.discards_completed == 0 and nvme.flushes_completed is None
    dm = by["dm-0"]  # 14 fields (before 4.18)
    assert dm.io_weighted_time_ms == 150 and dm.discards_completed is None and dm.flushes_completed is None


def test_bad_lines_are_counted_not_guessed():
    text = (
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n"
        "   8       1 sda1 35713 1122730 106304 850432\n"  # 2.6.x short partition format
        "   8       2 sdb x 2 3 4 5 6 7 8 9 10 11\n"
        "\n"
        "   8       3 sdc 1 2 3 4 5 6 7 8 -9 10 11\n"
    )
    res = parse_diskstats(text)
    assert [d.device for d in res.records] == ["sda"]
    assert [i.line_no for i in res.issues] == [2, 3, 5]


def test_shared_jc_diskstats_values():
    res = parse_diskstats(shared_file("diskstats", "jc-proc-diskstats.txt").read_text())
    assert res.issues == []
    assert len(res.records) == 15
    sda = next(d for d in res.records if d.device == "sda")
    assert (sda.reads_completed, sda.reads_merged, sda.sectors_read, sda.read_time_ms) == (14200, 3361, 892828, 5058)
    assert (sda.writes_completed, sda.writes_merged, sda.sectors_written, sda.write_time_ms) == (
        18736,
        13416,
        715384,
        12604,
    )
    assert (sda.io_time_ms, sda.io_weighted_time_ms, sda.flushes_completed) == (24940, 17663, 0)
    dm0 = next(d for d in res.records if d.device == "dm-0")
    assert dm0.writes_completed == 31994 and dm0.sectors_written == 715168


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("diskstats"), ids=lambda p: p.name)
def test_shared_diskstats_sweep(path):
    text = path.read_text()
    res = parse_diskstats(text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(res.records) + len(res.issues) == len(lines)
    assert res.records, "a real diskstats file has at least one usable line"
    for d in res.records:
        assert d.reads_completed >= 0 and d.io_time_ms >= 0


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_random_text_never_raises(text):
    res = parse_diskstats(text)
    assert len(res.records) + len(res.issues) <= len([ln for ln in text.splitlines() if ln.split()])


@given(st.lists(st.integers(min_value=-5, max_value=2**64), min_size=0, max_size=22), st.sampled_from(["sda", "x"]))
def test_mangled_numeric_lines(nums, dev):
    line = " ".join(str(n) for n in nums[:2]) + f" {dev} " + " ".join(str(n) for n in nums[2:])
    res = parse_diskstats(line)
    assert len(res.records) + len(res.issues) == 1
