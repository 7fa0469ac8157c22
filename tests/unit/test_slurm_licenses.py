"""SLURM license table: parser on captured text/JSON and own forms, and the slurm_licenses collector."""

from __future__ import annotations

import functools

import pytest
from conftest import MappedRunner, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.collectors import slurm_licenses
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_licenses import LICENSES_ARGV, SlurmLicensesCollector
from nomade.exporter.parsers.slurm_licenses import parse_slurm_licenses
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.runner import CommandError

LIC_FILES = [p for p in shared_files("scontrol") if "lic" in p.name]
MULTILINE = """LicenseName=fluent
    Total=10 Used=2 Free=8 Reserved=1 Remote=no

LicenseName=matlab
    Total=5 Used=5 Free=0 Remote=no
"""


@pytest.mark.parametrize("path", LIC_FILES, ids=lambda p: p.name)
def test_every_captured_license_file(path):
    result = parse_slurm_licenses(path.read_text())
    assert result.issues == []
    assert result.records
    for lic in result.records:
        assert lic.total is not None and lic.used is not None and lic.used <= lic.total


def test_oneliner_capture_values():
    recs = parse_slurm_licenses(shared_file("scontrol", "sckyzo-scontrol-show-licenses-o.txt").read_text()).records
    assert [(r.name, r.total, r.used, r.free, r.reserved, r.remote) for r in recs] == [
        ("ansys@flex", 100, 20, 80, 0, True),
        ("fluent@flex", 30, 10, 20, 5, True),
    ]
    assert recs[0].last_update == parse_timestamp("2025-08-16T10:10:00")


def test_json_capture_values():
    (lic,) = parse_slurm_licenses(
        shared_file("scontrol", "rivos-scontrol-show-lic-json-23.02.4.json").read_text()
    ).records
    assert (lic.name, lic.total, lic.used, lic.free, lic.reserved) == ("AscentLintBase", 420, 213, 205, 357)
    assert (lic.remote, lic.last_consumed, lic.last_deficit) == (True, 218, 2)


def test_multiline_and_older_fields():
    recs = parse_slurm_licenses(MULTILINE).records
    assert [(r.name, r.total, r.used, r.free, r.reserved, r.remote) for r in recs] == [
        ("fluent", 10, 2, 8, 1, False),
        ("matlab", 5, 5, 0, None, False),
    ]
    assert recs[1].last_consumed is None and recs[1].last_update is None


def test_no_licenses_sentence_is_empty_not_an_error():
    result = parse_slurm_licenses("No licenses configured in Slurm.\n")
    assert result.records == [] and result.issues == []


def test_wrapped_json_numbers_and_bad_records():
    text = '{"licenses": [{"name": "x", "total": {"set": true, "number": 4}, "used": 1}, {"Total": 3}]}'
    result = parse_slurm_licenses(text)
    assert [(r.name, r.total, r.used) for r in result.records] == [("x", 4, 1)]
    assert len(result.issues) == 1
    assert len(parse_slurm_licenses("{not json").issues) == 1
    bad = parse_slurm_licenses("NodeName=c01 State=IDLE\nLicenseName=y Total=abc Used=0\n")
    assert len(bad.issues) == 2 and bad.records[0].total is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_mangled_input_never_raises(text):
    parse_slurm_licenses(text)
    parse_slurm_licenses("{" + text)
    parse_slurm_licenses("LicenseName=" + text)


FakeRunner = functools.partial(
    MappedRunner, missing=("exit", "slurm_load_licenses error: Unable to contact slurm controller")
)


def _collect(text):
    col = SlurmLicensesCollector(CollectorContext(runner=FakeRunner({LICENSES_ARGV: text})))
    out = col.new_set()
    col.collect(out)
    return col, out


def test_collector_exports_every_field():
    assert slurm_licenses.COLLECTOR is SlurmLicensesCollector
    assert SlurmLicensesCollector.mode == "controller" and SlurmLicensesCollector.default_enabled
    col, out = _collect(shared_file("scontrol", "sckyzo-scontrol-show-licenses-o.txt").read_text())
    v = out.value
    assert v("nomade_license_slurm_issued", license="fluent@flex") == 30
    assert v("nomade_license_slurm_used", license="fluent@flex") == 10
    assert v("nomade_license_slurm_free", license="fluent@flex") == 20
    assert v("nomade_license_slurm_reserved", license="fluent@flex") == 5
    assert v("nomade_license_slurm_remote", license="ansys@flex") == 1
    assert v("nomade_license_slurm_last_update_timestamp_seconds", license="ansys@flex") == parse_timestamp(
        "2025-08-16T10:10:00"
    )
    assert col.parse_errors == 0


def test_collector_missing_fields_are_absent_and_empty_table_is_fine():
    _, out = _collect(MULTILINE)
    assert out.value("nomade_license_slurm_reserved", license="matlab") is None
    assert out.value("nomade_license_slurm_remote", license="matlab") == 0
    _, empty = _collect("No licenses configured in Slurm.\n")
    assert empty.series_count() == 0


def test_collector_raises_when_slurmctld_is_down():
    col = SlurmLicensesCollector(CollectorContext(runner=FakeRunner({})))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
