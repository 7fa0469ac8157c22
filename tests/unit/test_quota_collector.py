"""quota collector over a fake runner: top-N ranking, totals, limits, Lustre graces, graceful skip."""

from __future__ import annotations

import functools

import pytest
from conftest import MappedRunner, own_fixture

from nomade.exporter.collectors import quota
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.quota import QuotaCollector
from nomade.exporter.config import ConfigError
from nomade.exporter.runner import CommandError

NOW = 1709700000.0
RAW = own_fixture("repquota", "repquota-u-g-p-n-ext4.txt")
KIB = 1024


FakeRunner = functools.partial(MappedRunner, finished_at=NOW)


def entry(out, metric, fs, qtype, name):
    """One per-name sample (MetricSet.value() cannot take a label called ``name`` as a keyword)."""
    return out.samples("nomade_quota_" + metric).get((fs, qtype, name))


def make(outputs, tmp_path=None, **options):
    runner = FakeRunner(outputs)
    ctx = CollectorContext(runner=runner, options=options, clock=lambda: NOW)
    if tmp_path is not None:
        ctx.proc_root = tmp_path
    return QuotaCollector(ctx), runner


def collect(outputs, tmp_path=None, **options):
    col, runner = make(outputs, tmp_path, **options)
    out = col.new_set()
    col.collect(out)
    return col, out, runner


HOME = ("repquota", "-u", "-g", "-p", "-n", "/home")


def test_module_and_defaults():
    assert quota.COLLECTOR is QuotaCollector
    assert QuotaCollector.mode == "controller" and not QuotaCollector.default_enabled


def test_repquota_values_and_totals():
    col, out, runner = collect({HOME: RAW}, filesystems=["/home"])
    assert runner.calls == [HOME]
    v = out.value
    u = {"filesystem": "/home", "type": "user"}
    assert entry(out, "used_bytes", u["filesystem"], u["type"], "#1001") == 10485860 * KIB
    assert entry(out, "soft_limit_bytes", u["filesystem"], u["type"], "#1001") == 10485760 * KIB
    assert entry(out, "hard_limit_bytes", u["filesystem"], u["type"], "#1001") == 12582912 * KIB
    assert entry(out, "grace_expiry_timestamp_seconds", u["filesystem"], u["type"], "#1001") == 1709805600
    assert entry(out, "file_grace_expiry_timestamp_seconds", u["filesystem"], u["type"], "#1003") == 1709719200
    assert entry(out, "file_soft_limit", u["filesystem"], u["type"], "#1003") == 1000
    # no limit -> absent (never 0)
    assert entry(out, "soft_limit_bytes", u["filesystem"], u["type"], "#0") is None
    assert entry(out, "grace_expiry_timestamp_seconds", u["filesystem"], u["type"], "#1002") is None
    assert v("nomade_quota_total_used_bytes", **u) == (1984 + 10485860 + 2097152 + 512 + 7340032) * KIB
    assert v("nomade_quota_total_used_files", **u) == 112 + 48211 + 1203 + 1500 + 20
    assert v("nomade_quota_entries", **u) == 5
    assert v("nomade_quota_over_limit_entries", **u) == 2
    assert v("nomade_quota_exported_entries", **u) == 5 and v("nomade_quota_dropped_entries", **u) == 0
    g = {"filesystem": "/home", "type": "group"}
    assert entry(out, "used_bytes", g["filesystem"], g["type"], "#2000") == 12583424 * KIB
    assert v("nomade_quota_query_success", filesystem="/home", tool="repquota") == 1
    assert v("nomade_quota_source_available", tool="repquota") == 1
    assert col.parse_errors == 0


def test_top_n_keeps_over_limit_entries_first():
    _, out, _ = collect({HOME: RAW}, filesystems=["/home"], top_n=3)
    names = {k[2] for k in out.samples("nomade_quota_used_bytes") if k[1] == "user"}
    # #1001 (space) and #1003 (inodes, 512 KiB only) are over a limit; then the largest: #1004
    assert names == {"#1001", "#1003", "#1004"}
    v = out.value
    assert v("nomade_quota_exported_entries", filesystem="/home", type="user") == 3
    assert v("nomade_quota_dropped_entries", filesystem="/home", type="user") == 2
    # totals still cover every entry
    assert v("nomade_quota_entries", filesystem="/home", type="user") == 5


def test_project_type_and_repquota_all_labelled_by_mount_point(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(
        "30 1 253:2 / /home rw,relatime shared:1 - ext4 /dev/mapper/vg0-home rw,usrquota,grpquota\n"
    )
    argv = ("repquota", "-u", "-g", "-P", "-p", "-n", "-a")
    _, out, runner = collect({argv: RAW}, tmp_path, types=["user", "group", "project"])
    assert runner.calls == [argv]
    assert out.value("nomade_quota_entries", filesystem="/home", type="group") == 3


def test_lustre_queries_one_command_per_id():
    outputs = {
        ("lfs", "quota", "-u", "alice", "/lustre/scratch"): own_fixture("lfs", "lfs-quota-u-g-scratch.txt"),
    }
    col, out, runner = collect(outputs, lustre_mounts=["/lustre/scratch"], lustre_users=["alice"])
    assert runner.calls == [("lfs", "quota", "-u", "alice", "/lustre/scratch")]  # no repquota for Lustre-only
    v = out.value
    s = {"filesystem": "/lustre/scratch"}
    assert entry(out, "used_bytes", s["filesystem"], "user", "bob") == 110100480 * KIB
    assert entry(out, "grace_expiry_timestamp_seconds", s["filesystem"], "user", "bob") == NOW + 604770
    # inaccurate usage is absent, and so is the total it would poison
    assert entry(out, "used_bytes", s["filesystem"], "group", "physics") is None
    assert v("nomade_quota_total_used_bytes", **s, type="group") is None
    assert entry(out, "used_files", s["filesystem"], "group", "physics") == 500
    assert v("nomade_quota_over_limit_entries", **s, type="user") == 1
    assert v("nomade_quota_source_available", tool="lfs") == 1


def test_missing_tool_is_a_graceful_skip(caplog):
    col, runner = make({}, filesystems=["/home"])
    for _ in range(2):
        out = col.new_set()
        col.collect(out)
        assert out.value("nomade_quota_source_available", tool="repquota") == 0
        assert out.samples("nomade_quota_used_bytes") == {}
    assert sum("repquota is not installed" in r.getMessage() for r in caplog.records) == 1


def test_one_failing_filesystem_and_all_failing():
    scratch = ("repquota", "-u", "-g", "-p", "-n", "/scratch")
    failing = CommandError(scratch, "exit", "repquota: Cannot stat() mounted device")
    col, _ = make({HOME: RAW, scratch: failing}, filesystems=["/home", "/scratch"])
    out = col.new_set()
    col.collect(out)
    assert out.value("nomade_quota_query_success", filesystem="/scratch", tool="repquota") == 0
    assert out.value("nomade_quota_entries", filesystem="/home", type="user") == 5
    col2, _ = make({scratch: failing}, filesystems=["/scratch"])
    with pytest.raises(CollectorError):
        col2.collect(col2.new_set())


@pytest.mark.parametrize(
    "options",
    [{"types": ["users"]}, {"top_n": -1}, {"filesystems": "/home"}, {"lustre_users": [1.5]}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError):
        make({}, **options)
