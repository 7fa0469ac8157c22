"""sprio parser: documentation captures of other sites (padded layouts), our pipe format, the lab's refusal."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sprio import SPRIO_ARGV, parse_sprio, tres_sum


@pytest.mark.parametrize("path", shared_files("sprio"), ids=lambda p: p.name)
def test_every_captured_file_parses(path):
    res = parse_sprio(path.read_text())
    # only the USC capture has a TRES cell cut by the default %20T width
    assert len(res.issues) == (1 if "usc" in path.name else 0)
    for r in res.records:
        assert r.job_id.isdigit() and r.priority is not None


def test_archer2_long_format():
    rows = parse_sprio(shared_file("sprio", "archer2-docs-sprio-l.txt").read_text()).records
    assert len(rows) == 11 and {r.partition for r in rows} == {"standard"}
    last = rows[-1]
    assert last.job_id == "828806" and last.priority == 1154
    assert last.factors == {"site": 0, "age": 150, "fairshare": 0, "jobsize": 4, "qos": 1000}
    assert not last.normalized


def test_weights_row_is_not_a_job():
    res = parse_sprio(shared_file("sprio", "biocloud-docs-sprio-w-weights-24.11.txt").read_text())
    assert res.records == [] and res.issues == []


def test_normalised_output_with_two_partition_columns_and_cut_tres():
    res = parse_sprio(shared_file("sprio", "usc-docs-sprio-j-n-normalized.txt").read_text())
    (row,) = res.records
    assert row.normalized and row.partition == "main" and row.priority == 0.00000029
    assert row.factors["partition"] == 1.0 and row.factors["age"] == 0.0700661
    assert "tres" not in row.factors  # "cpu=0.01,mem=0.01,gr" is truncated: left out, counted
    assert "truncated" in res.issues[0].reason


def test_own_pipe_format():
    res = parse_sprio(own_fixture("sprio", "sprio-format-pipe-multifactor-23.11.txt"))
    assert res.issues == []
    rows = res.records
    assert [(r.job_id, r.partition) for r in rows] == [
        ("501", "compute"), ("502", "compute"), ("503", "compute"), ("503", "short"), ("504", "gpu")
    ]  # fmt: skip
    assert rows[0].user == "alice" and rows[0].factors["partition"] == 1000 and rows[0].factors["fairshare"] == 1000
    assert "tres" not in rows[0].factors and rows[4].factors["tres"] == 1000
    assert rows[3].priority == 3250


def test_single_partition_column_numeric_is_the_factor():
    text = "JOBID PRIORITY AGE FAIRSHARE JOBSIZE PARTITION QOS\n65539 62664 0 51664 1000 10000 0\n"
    (row,) = parse_sprio(text).records
    assert row.partition is None and row.factors["partition"] == 10000


@pytest.mark.parametrize(
    "text",
    [own_fixture("sprio", "lab-sprio-priority-basic-22.05.8.stderr.txt"), "JOBID STATE\n1 R\n", "1|2|3\n"],
)
def test_unrecognised_text(text):
    res = parse_sprio(text)
    assert res.records == [] and [i.reason for i in res.issues] == ["unrecognised format"]


def test_bad_lines_are_counted():
    text = "JOBID|PARTITION|PRIORITY|AGE|TRES\nx1|p|5|1|\n7|p|five|1|cpu=1\n8|p|5|old|\n9|p\n"
    res = parse_sprio(text)
    assert len(res.issues) == 4
    assert [(r.job_id, r.priority, r.factors) for r in res.records] == [("7", None, {"age": 1, "tres": 1}),
                                                                        ("8", 5, {})]  # fmt: skip


def test_argv_and_tres_sum():
    assert SPRIO_ARGV == ("sprio", "--format=%i|%r|%u|%Y|%S|%A|%B|%F|%J|%P|%Q|%N|%T")
    assert tres_sum("cpu=1.5,gres/gpu=2") == 3.5 and tres_sum(" ") is None
    with pytest.raises(ValueError):
        tres_sum("cpu=1,gr")


CELLS = st.sampled_from(["JOBID", "PARTITION", "PRIORITY", "TRES", "AGE", "Weights", "12", "1.5", "x", "", "inf",
                         "cpu=1", "cpu=", "=3", " ", "\ufffd", "1_2"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.lists(CELLS, max_size=8).map("|".join), max_size=8).map("\n".join),
                 st.lists(st.lists(CELLS, max_size=8).map(" ".join), max_size=8).map("\n".join)))  # fmt: skip
def test_property_no_exception_escapes(text):
    for r in parse_sprio(text).records:
        assert r.job_id
