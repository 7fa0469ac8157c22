"""nfs collector on fixture proc trees: dedup of shared superblocks, op folding, nfsiostat figures near 2**64."""

from __future__ import annotations

import logging

import pytest
from conftest import own_fixture, shared_files

from nomade.exporter.collectors import nfs
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.nfs import NfsCollector, fold_operations, nfs_op_rates
from nomade.exporter.parsers.mountstats import MAX_COUNTER, NfsOpStats, parse_mountstats
from nomade.exporter.runner import CommandRunner

T0, T1 = 500.0, 510.0
HOME = {"server": "fs01.cluster", "export": "/export/home", "mountpoint": "/home"}
SCRATCH = {"server": "10.1.0.5", "export": "/scratch", "mountpoint": "/scratch"}
DIRECT = {"server": "10.1.0.5", "export": "/scratch", "mountpoint": "/mnt/scratch-direct"}
ARCHIVE = {"server": "nas1", "export": "/archive", "mountpoint": "/archive"}


def tree(tmp_path, mountstats: str, mountinfo: str | None = None):
    root = tmp_path / "proc"
    (root / "self").mkdir(parents=True)
    (root / "self" / "mountstats").write_text(mountstats)
    if mountinfo is not None:
        (root / "self" / "mountinfo").write_text(mountinfo)
    return root


def make(root, **opts):
    c = NfsCollector(
        CollectorContext(runner=CommandRunner(), options={"sample_interval": 3600, **opts}, proc_root=root)
    )
    c.sampler.clock = lambda: T1
    return c


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


@pytest.fixture
def shared(tmp_path):
    root = tree(
        tmp_path,
        own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt"),
        own_fixture("mountstats", "mountinfo-nfs3-nfs4-shared-superblock.txt"),
    )
    c = make(root)
    yield c
    c.close()


def test_module_exposes_collector():
    assert nfs.COLLECTOR is NfsCollector
    assert NfsCollector.name == "nfs" and NfsCollector.mode == "node"


def test_counters_and_dedup(shared):
    out = collect(shared)
    assert shared.parse_errors == 0
    assert out.value("nomade_nfs_source_available") == 1
    # /home2 shows the same superblock as /home: one series set, labelled with the shorter mount point.
    mounts = {k[2] for k in out.samples("nomade_nfs_mount_points")}
    assert mounts == {"/home", "/scratch", "/mnt/scratch-direct"}
    assert out.value("nomade_nfs_mount_points", **HOME) == 2
    assert out.value("nomade_nfs_mount_points", **DIRECT) == 1
    assert out.value("nomade_nfs_mount_info", **HOME, fstype="nfs4", version="4.2", protocol="tcp") == 1
    assert out.value("nomade_nfs_mount_age_seconds", **SCRATCH) == 3600
    v = out.value
    assert v("nomade_nfs_operations_total", **HOME, op="WRITE") == 5120  # not 10240: not summed over /home2
    assert v("nomade_nfs_retransmissions_total", **HOME, op="WRITE") == 5
    assert v("nomade_nfs_timeouts_total", **HOME, op="WRITE") == 2
    assert v("nomade_nfs_errors_total", **HOME, op="LOOKUP") == 410
    assert v("nomade_nfs_rpc_received_bytes_total", **HOME, op="READ") == 4295491584
    assert v("nomade_nfs_rtt_seconds_total", **HOME, op="WRITE") == pytest.approx(51.2)
    assert v("nomade_nfs_execute_seconds_total", **HOME, op="WRITE") == pytest.approx(56.32)
    assert v("nomade_nfs_queue_seconds_total", **HOME, op="WRITE") == pytest.approx(1.024)
    assert v("nomade_nfs_read_bytes_total", **HOME) == 4294967296
    assert v("nomade_nfs_written_bytes_total", **HOME) == 5368709120
    assert v("nomade_nfs_application_read_bytes_total", **HOME, io="buffered") == 10737418240
    assert v("nomade_nfs_application_read_bytes_total", **HOME, io="direct") == 1048576
    assert v("nomade_nfs_application_read_bytes_total", **DIRECT, io="direct") == 8589934592
    assert v("nomade_nfs_operations_total", **DIRECT, op="READ") == 8192
    # No second reading yet: no figures.
    assert out.samples("nomade_nfs_operations_per_second") == {}


def test_operations_folded_into_other(shared):
    out = collect(shared)
    ops = {k[3] for k in out.samples("nomade_nfs_operations_total") if k[2] == "/home"}
    assert ops == {*nfs.DEFAULT_OPERATIONS, "other"} - {"READDIRPLUS"}  # NFSv4 has no READDIRPLUS
    # NULL 1 + FSINFO 2 + LOCKU 55 + PATHCONF 1 + STATFS 44 + SERVER_CAPS 3 + DELEGRETURN 210 + EXCHANGE_ID 2
    # + CREATE_SESSION 1 + SEQUENCE 2880 + RECLAIM_COMPLETE 1 + SECINFO_NO_NAME 1
    assert out.value("nomade_nfs_operations_total", **HOME, op="other") == 3201
    assert out.value("nomade_nfs_errors_total", **HOME, op="other") == 0
    total = sum(v for k, v in out.samples("nomade_nfs_operations_total").items() if k[2] == "/home")
    assert total == sum(
        s.ops
        for s in parse_mountstats(own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt")).records[0].ops.values()
    )


def test_all_operations_option(tmp_path):
    root = tree(tmp_path, own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt"))
    c = make(root, operations="all")
    try:
        out = collect(c)
        ops = {k[3] for k in out.samples("nomade_nfs_operations_total") if k[2] == "/home"}
        assert len(ops) == 68 and "other" not in ops and "SEQUENCE" in ops
        # No mountinfo in this tree: identical counters still merge /home and /home2.
        assert out.value("nomade_nfs_mount_points", **HOME) == 2
    finally:
        c.close()
    with pytest.raises(ValueError):
        make(root, operations="some")


def test_mountpoint_include(tmp_path):
    root = tree(tmp_path, own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt"))
    c = make(root, mountpoint_include="^/scratch")
    try:
        assert {k[2] for k in collect(c).samples("nomade_nfs_mount_points")} == {"/scratch"}
    finally:
        c.close()


def test_rates_near_2_64(tmp_path):
    root = tree(tmp_path, own_fixture("mountstats", "near-2e64-t0.txt"))
    c = make(root)
    try:
        c.sampler.sample_once(now=T0)
        (root / "self" / "mountstats").write_text(own_fixture("mountstats", "near-2e64-t1.txt"))
        c.sampler.sample_once(now=T1)
        out = collect(c)
        v = out.value
        assert v("nomade_nfs_sample_interval_seconds") == 10.0
        assert v("nomade_nfs_operations_total", **ARCHIVE, op="GETATTR") == 2.0**64  # float view of 2**64-1
        # Deltas taken on exact ints: 999 READs, 49999 ms RTT, 59999 ms exe, 10 MiB in 10 s.
        assert v("nomade_nfs_operations_per_second", **ARCHIVE, op="READ") == pytest.approx(99.9)
        assert v("nomade_nfs_rtt_average_seconds", **ARCHIVE, op="READ") == pytest.approx(49999 / 999 / 1000)
        assert v("nomade_nfs_execute_average_seconds", **ARCHIVE, op="READ") == pytest.approx(59999 / 999 / 1000)
        assert v("nomade_nfs_queue_average_seconds", **ARCHIVE, op="READ") == 0
        assert v("nomade_nfs_retransmission_ratio", **ARCHIVE, op="READ") == 0
        assert v("nomade_nfs_read_bytes_per_second", **ARCHIVE) == pytest.approx(1048576.0)
        assert v("nomade_nfs_write_bytes_per_second", **ARCHIVE) == 0
        assert v("nomade_nfs_mount_operations_per_second", **ARCHIVE) == pytest.approx(99.9)
        # GETATTR did not move: rate 0, averages absent (nfsiostat prints 0.0; absent beats wrong).
        assert v("nomade_nfs_operations_per_second", **ARCHIVE, op="GETATTR") == 0
        assert v("nomade_nfs_rtt_average_seconds", **ARCHIVE, op="GETATTR") is None
    finally:
        c.close()


def test_wrap_gives_no_figures():
    big = NfsOpStats("READ", MAX_COUNTER, MAX_COUNTER, 0, 0, 0, 0, 10, 10)
    wrapped = NfsOpStats("READ", 5, 5, 0, 0, 0, 0, 1, 1)
    assert nfs_op_rates(big, wrapped, 10.0) is None
    assert nfs_op_rates(wrapped, wrapped, 0.0) is None
    r = nfs_op_rates(NfsOpStats("W", 10, 10, 0, 0, 0, 0, 0, 0), NfsOpStats("W", 20, 22, 0, 1024, 1024, 5, 30, 40), 2)
    assert r is not None
    assert (r.ops_per_second, r.bytes_per_second, r.retransmission_ratio) == (5.0, 1024.0, 0.2)
    assert r.rtt_seconds == pytest.approx(0.003) and r.execute_seconds == pytest.approx(0.004)


def test_fold_errors_absent_when_some_ops_lack_the_field():
    ops = {
        "READ": NfsOpStats("READ", 1, 1, 0, 0, 0, 0, 0, 0, 0),
        "X": NfsOpStats("X", 2, 2, 0, 0, 0, 0, 0, 0, 4),
        "Y": NfsOpStats("Y", 3, 3, 0, 0, 0, 0, 0, 0, None),
    }
    folded = fold_operations(ops, frozenset({"READ"}))
    assert folded["other"].ops == 5 and folded["other"].errors is None
    assert fold_operations(ops, None) == ops


def test_no_nfs_reports_unavailable_once(tmp_path, caplog):
    root = tree(
        tmp_path, "device /dev/sda1 mounted on / with fstype ext4\ndevice proc mounted on /proc with fstype proc\n"
    )
    c = make(root)
    try:
        with caplog.at_level(logging.INFO, logger="nomade.exporter.nfs"):
            out = collect(c)
            collect(c)
        assert out.value("nomade_nfs_source_available") == 0
        assert out.series_count() == 1
        assert sum("no NFS mount" in r.message for r in caplog.records) == 1
    finally:
        c.close()


def test_missing_mountstats_is_a_source_failure(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    c = make(root)
    try:
        with pytest.raises(CollectorError):
            collect(c)
    finally:
        c.close()


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("mountstats"), ids=lambda p: p.name)
def test_captured_files_through_collector(tmp_path, path):
    c = make(tree(tmp_path, path.read_text()))
    try:
        out = collect(c)
        assert out.value("nomade_nfs_source_available") == 1
        assert len(out.samples("nomade_nfs_mount_points")) == len(parse_mountstats(path.read_text()).records)
        out.families()
    finally:
        c.close()


@pytest.mark.parametrize(
    ("mountstats", "filesystems", "expected"),
    [
        ("device s:/e mounted on /m with fstype nfs4 statvers=1.1\n", "nodev\tproc\n", True),
        ("device /dev/sda1 mounted on / with fstype ext4\n", "nodev\tnfs\nnodev\tnfs4\n", False),
        # autofs may mount NFS later (on-demand home directories) once the NFS client is registered
        ("device auto.home mounted on /home with fstype autofs\n", "nodev\tnfs\nnodev\tnfs4\n", True),
        ("device auto.home mounted on /home with fstype autofs\n", "nodev\tproc\n", False),
    ],
)
def test_available(tmp_path, monkeypatch, mountstats, filesystems, expected):
    (tmp_path / "mountstats").write_text(mountstats)
    (tmp_path / "filesystems").write_text(filesystems)
    real = nfs.Path
    monkeypatch.setattr(nfs, "Path", lambda p: real(tmp_path / real(p).name))
    assert NfsCollector.available() is expected


def test_unchanged_files_reuse_the_parse(tmp_path, monkeypatch):
    """The sampler and collect() read the same files: an unchanged pair is parsed once, a change reparses."""
    root = tree(
        tmp_path,
        own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt"),
        own_fixture("mountstats", "mountinfo-nfs3-nfs4-shared-superblock.txt"),
    )
    calls = []
    real = nfs.parse_mountstats
    monkeypatch.setattr(nfs, "parse_mountstats", lambda text: calls.append(1) or real(text))
    c = make(root)
    try:
        first = c.read_groups()
        second = c.read_groups()
        assert len(calls) == 1 and second == first and second[0] is not first[0]
        # mountinfo changing alone (a mount stacked elsewhere) reparses: the grouping depends on it.
        (root / "self" / "mountinfo").write_text("")
        assert c.read_groups() == c.read_groups() and len(calls) == 2
        (root / "self" / "mountstats").write_text(own_fixture("mountstats", "near-2e64-t0.txt"))
        fresh = c.read_groups()
        assert len(calls) == 3 and fresh[0] != first[0]
        assert {g.mount_point for g in fresh[0]} == {g.mount_point for g in real_groups(root)}
    finally:
        c.close()


def real_groups(root):
    c = make(root)
    try:
        return c.read_groups()[0]
    finally:
        c.close()
