"""sinfo parser: header-driven tables, --json, refusal of headerless formats, property tests."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sinfo import parse_sinfo
from nomade.exporter.parsers.slurm_units import split_header_table

MIB = 1024**2


def test_own_node_oriented_pipe_table():
    res = parse_sinfo(own_fixture("sinfo", "sinfo-N-O-pipe-22.05.txt"))
    assert res.issues == []
    rows = {r.nodes[0]: r for r in res.records}
    c01 = rows["c01"]
    assert c01.partitions == ("cpu",) and c01.default_partition
    assert (c01.cpus_alloc, c01.cpus_idle, c01.cpus_other, c01.cpus_total) == (16, 0, 0, 16)
    assert c01.memory_bytes == 64000 * MIB and c01.memory_free_bytes == 20480 * MIB and c01.cpu_load == 15.92
    assert rows["c03"].state == "idle" and rows["c03"].flags == frozenset({"drain"})
    assert rows["c03"].reason == 'bad DIMM, "slot 3"'
    assert rows["c04"].flags == frozenset({"not_responding"}) and rows["c04"].memory_free_bytes is None
    g01 = rows["g01"]
    assert g01.flags == frozenset({"drain"}) and g01.state in ("mixed", "allocated")
    assert g01.gres == {("gpu", "a100"): 4} and g01.gres_used == {("gpu", "a100"): 3}
    assert rows["c01"].reason is None  # "none" means no reason


def test_lab_capture_default_and_pipe():
    default = parse_sinfo(own_fixture("sinfo", "lab-sinfo-default-22.05.8.txt"))
    assert default.issues == []
    first = default.records[0]
    assert first.partitions == ("compute",) and first.default_partition and first.avail == "up"
    assert first.timelimit_seconds == 86400 and first.node_count == 1 and first.state == "mixed"
    assert default.records[1].nodes == ("c01", "c03", "c04")
    pipe = parse_sinfo(own_fixture("sinfo", "lab-sinfo-N-O-pipe-22.05.8.txt"))
    assert pipe.issues == []
    gpu01 = next(r for r in pipe.records if r.nodes == ("gpu01",))
    assert gpu01.state == "inval" and gpu01.gres == {("gpu", ""): 2} and gpu01.gres_used == {("gpu", ""): 0}
    assert gpu01.reason == "gres/gpu count reported lower than configured (0 < 2)"


def test_wrong_field_count_is_an_issue():
    res = parse_sinfo("PARTITION|STATE|NODES\ncpu|idle|3\ncpu|idle\ncpu|idle|x\n")
    assert len(res.records) == 2 and res.records[0].node_count == 3
    assert res.records[1].node_count is None
    assert [i.line_no for i in res.issues] == [3, 4]


def test_header_table_helper_whitespace_and_free_text():
    table = split_header_table(
        "NODELIST STATE REASON\nc1 drained bad fan 3\n", frozenset({"STATE"}), frozenset({"REASON"})
    )
    assert table is not None
    headers, rows = table
    assert headers == ["NODELIST", "STATE", "REASON"] and rows[0][2] == ["c1", "drained", "bad fan 3"]
    assert split_header_table("c1|idle\n", frozenset({"STATE"})) is None


# --- captured fixtures of other sites -------------------------------------------------------------------------

PARSED = {
    "aalto-docs-sinfo-default-partition-debug-drain-star.txt": 3,
    "ood-sinfo-o-G-gres-header-osc.txt": 4,
    "rivos-sinfo-N-json-23.02.5-data-parser-v0.0.39.json": 1,
    "rivos-sinfo-json-21.08.5-openapi-v0.0.37.json": 4,
}


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("sinfo"), ids=lambda p: p.name)
def test_every_shared_file(path):
    res = parse_sinfo(path.read_text(errors="replace"))
    if path.name in PARSED:
        assert len(res.records) == PARSED[path.name] and res.issues == []
    else:  # headerless formats and template JSON-lines: refused, nothing guessed
        assert res.records == [] and [i.reason for i in res.issues] == ["unrecognised format"]


@pytest.mark.fixtures
def test_shared_values():
    aalto = parse_sinfo(shared_file("sinfo", "aalto-docs-sinfo-default-partition-debug-drain-star.txt").read_text())
    wsm1 = aalto.records[0]
    assert wsm1.nodes == ("wsm1",) and wsm1.flags == frozenset({"drain", "not_responding"})
    assert wsm1.timelimit_seconds == 3600
    old = parse_sinfo(shared_file("sinfo", "rivos-sinfo-json-21.08.5-openapi-v0.0.37.json").read_text())
    cs2 = old.records[0]
    assert cs2.nodes == ("cs2.example.company.com",) and cs2.partitions == ("hw",) and cs2.state == "mixed"
    assert (cs2.cpus_alloc, cs2.cpus_idle, cs2.cpus_total) == (4, 60, 64)
    assert cs2.memory_bytes == 500000 * MIB and cs2.memory_alloc_bytes == 114688 * MIB
    new = parse_sinfo(shared_file("sinfo", "rivos-sinfo-N-json-23.02.5-data-parser-v0.0.39.json").read_text())
    lh = new.records[0]
    assert lh.nodes == ("localhost",) and lh.state == "allocated" and lh.partitions == ("debug",)
    assert lh.cpus_total == 1 and lh.memory_free_bytes == 227 * MIB
    gres = parse_sinfo(shared_file("sinfo", "ood-sinfo-o-G-gres-header-osc.txt").read_text())
    # no_consume GRES keep their real type; the comma inside S:2,4,7 does not split the item
    assert gres.records[0].gres[("gpu", "a100")] == 3 and gres.records[0].gres[("pfsdir", "scratch")] == 1


# --- property tests -------------------------------------------------------------------------------------------

_OWN = own_fixture("sinfo", "sinfo-N-O-pipe-22.05.txt").splitlines()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    res = parse_sinfo(text)
    assert isinstance(res.records, list)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_OWN[1:]), st.integers(0, 200), st.integers(0, 20), st.text(max_size=20))
def test_mangled_lines_never_raise(line, pos, cut, junk):
    res = parse_sinfo("\n".join([_OWN[0], line[:pos] + junk + line[pos + cut :], _OWN[1]]))
    assert any(r.nodes == ("c01",) for r in res.records)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_mangled_json_never_raises(junk):
    doc = '{"sinfo": [{"node": {"state": ["IDLE"]}, "nodes": ' + junk + "}]}"
    parse_sinfo(doc)
    parse_sinfo('{"nodes": [' + junk + "]}")
