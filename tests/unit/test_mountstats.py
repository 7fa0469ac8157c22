"""Parser of /proc/self/mountstats: own fixtures (NFSv3 + v4.2, shared superblock, counters near 2**64) and the
captured telegraf file."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.mounts import parse_mountinfo
from nomade.exporter.parsers.mountstats import (
    MAX_COUNTER,
    group_by_superblock,
    parse_mountstats,
    split_device,
    superblock_ids,
)

OWN = own_fixture("mountstats", "nfs3-nfs4-shared-superblock.txt")
OWN_MOUNTINFO = own_fixture("mountstats", "mountinfo-nfs3-nfs4-shared-superblock.txt")


def test_own_fixture_entries_and_fields():
    r = parse_mountstats(OWN)
    assert r.issues == []
    assert [(m.server, m.export, m.mount_point, m.fstype, m.version) for m in r.records] == [
        ("fs01.cluster", "/export/home", "/home", "nfs4", "4.2"),
        ("fs01.cluster", "/export/home", "/home2", "nfs4", "4.2"),
        ("10.1.0.5", "/scratch", "/scratch", "nfs", "3"),
        ("10.1.0.5", "/scratch", "/mnt/scratch-direct", "nfs", "3"),
    ]
    home = r.records[0]
    assert home.statvers == "1.1" and home.age_seconds == 86400
    assert home.protocol == "tcp"
    assert home.transports == ("tcp", "tcp")  # nconnect=2: one xprt line per connection
    assert len(home.events) == 27 and home.events[0] == 52310
    assert home.bytes is not None
    assert home.bytes.server_read == 4294967296 and home.bytes.normal_write == 5368709120
    assert home.bytes.direct_read == 1048576
    write = home.ops["WRITE"]
    assert (write.ops, write.transmissions, write.timeouts) == (5120, 5125, 2)
    assert write.retransmissions == 5
    assert (write.queue_ms, write.rtt_ms, write.execute_ms, write.errors) == (1024, 51200, 56320, 3)
    assert len(home.ops) == 68
    scratch = r.records[2]
    assert scratch.ops["COMMIT"].execute_ms == 2600
    assert scratch.ops["LOOKUP"].errors == 25


def test_captured_telegraf_file_values():
    r = parse_mountstats(shared_file("mountstats", "telegraf-nfsclient-mountstats-multi-mount.txt").read_text())
    assert [m.mount_point for m in r.records] == ["/A", "/B", "/C", "/D"]
    a, b, c, d = r.records
    assert (a.server, a.export, a.fstype, a.version) == ("1.2.3.4", "/storage/NFS", "nfs", "3")
    assert a.bytes is not None and a.bytes.server_read == 1134399088816
    assert a.ops["READ"].rtt_ms == 606 and a.ops["READ"].errors is None  # RPC iostats 1.0: 8 fields
    assert b.export == "/nfsdata/" and b.ops["READ"].ops == 9797
    assert c.server == "nfsserver1" and c.ops["ACCESS"].ops == 596338
    assert d.version == "4.2" and d.ops["LOOKUP"].errors == 2  # RPC iostats 1.1: errors column
    # The maintainers appended a stray 8-field LAYOUTRETURN line after /D's own one: counted, first one kept.
    assert len(r.issues) == 1 and "repeated" in r.issues[0].reason
    assert d.ops["LAYOUTRETURN"].errors == 0


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("mountstats"), ids=lambda p: p.name)
def test_every_captured_file_parses(path):
    r = parse_mountstats(path.read_text())
    assert r.records, "every captured mountstats file holds NFS mounts"
    assert len(r.issues) <= 1
    for m in r.records:
        assert m.fstype in ("nfs", "nfs4") and m.server and m.export.startswith("/")
        for s in m.ops.values():
            assert s.transmissions >= s.ops


def test_counters_near_2_64_are_exact_and_2_64_is_refused():
    r = parse_mountstats(own_fixture("mountstats", "near-2e64-t1.txt"))
    assert r.issues == []
    (m,) = r.records
    assert m.ops["GETATTR"].ops == MAX_COUNTER == 18446744073709551615
    assert m.events[0] == MAX_COUNTER
    bad = own_fixture("mountstats", "near-2e64-t1.txt").replace(
        "GETATTR: 18446744073709551615", "GETATTR: 18446744073709551616"
    )
    r = parse_mountstats(bad)
    assert len(r.issues) == 1 and "64-bit" in r.issues[0].reason
    assert "GETATTR" not in r.records[0].ops and "READ" in r.records[0].ops


def test_float_view_of_values_near_2_64_is_monotonic():
    # Prometheus samples are float64: rounding to nearest never inverts an order (documented in nfs.py).
    values = [MAX_COUNTER - k for k in (5000, 2049, 2048, 1025, 1024, 1, 0)]
    floats = [float(v) for v in values]
    assert floats == sorted(floats)
    assert float(MAX_COUNTER) == 2.0**64


def test_escaped_mount_point_and_ipv6_server():
    text = (
        "device [fd00::5]:/data\\040set mounted on /mnt/my\\040data with fstype nfs4 statvers=1.1\n"
        "\topts:\trw,vers=4.1,proto=tcp6\n"
        "\tbytes:\t1 2 3 4 5 6 7 8\n"
    )
    r = parse_mountstats(text)
    assert r.issues == []
    (m,) = r.records
    assert (m.server, m.export, m.mount_point, m.protocol) == ("fd00::5", "/data set", "/mnt/my data", "tcp6")
    assert m.ops == {}


def test_split_device():
    assert split_device("srv:/a:b") == ("srv", "/a:b")
    assert split_device("[::1]:/x") == ("::1", "/x")
    assert split_device("nocolon") == ("", "nocolon")


def test_malformed_lines_are_counted():
    text = (
        "stray line before any device\n"
        "device s:/e mounted on /m with fstype nfs statvers=1.1\n"
        "\tage:\tlots\n"
        "\tbytes:\t1 2 3\n"
        "\tevents:\t1 -2 3\n"
        "\tgarbage without colon\n"
        "\tper-op statistics\n"
        "\t        READ: 1 2 3\n"
        "\t        WRITE: 1 1 0 10 10 1 2 3\n"
        "device broken\n"
    )
    r = parse_mountstats(text)
    assert len(r.issues) == 7
    (m,) = r.records
    assert m.age_seconds is None and m.bytes is None and m.events == ()
    assert list(m.ops) == ["WRITE"]


def test_shared_superblock_grouped_with_mountinfo():
    r = parse_mountstats(OWN)
    info = parse_mountinfo(OWN_MOUNTINFO)
    sbs = superblock_ids(r.records, info.records)
    assert sbs == [(0, 52), (0, 52), (0, 53), (0, 54)]
    groups = group_by_superblock(r.records, sbs)
    assert [(g.mount.export, g.mount_points) for g in groups] == [
        ("/export/home", ("/home", "/home2")),
        ("/scratch", ("/scratch",)),
        ("/scratch", ("/mnt/scratch-direct",)),  # nosharecache: its own superblock and counters
    ]
    assert groups[0].mount_point == "/home"


def test_grouping_without_mountinfo_uses_identical_counters():
    groups = group_by_superblock(parse_mountstats(OWN).records)
    assert [g.mount_points for g in groups] == [("/home", "/home2"), ("/scratch",), ("/mnt/scratch-direct",)]


def test_idle_separate_superblocks_stay_separate_with_mountinfo():
    entry = "device s:/e mounted on {} with fstype nfs statvers=1.1\n\tbytes:\t0 0 0 0 0 0 0 0\n"
    text = entry.format("/b/long") + entry.format("/a")
    mounts = parse_mountstats(text).records
    # Identical counters: without superblock ids they are merged (label = shortest mount point) ...
    (g,) = group_by_superblock(mounts)
    assert g.mount_points == ("/a", "/b/long") and g.mount.mount_point == "/a"
    # ... with distinct superblocks they are not.
    info = parse_mountinfo(
        "50 1 0:60 / /b/long rw - nfs s:/e rw\n51 1 0:61 / /a rw - nfs s:/e rw,nosharecache\n"
    ).records
    groups = group_by_superblock(mounts, superblock_ids(mounts, info))
    assert [gr.mount_points for gr in groups] == [("/b/long",), ("/a",)]


TOKENS = st.sampled_from(
    [
        "device s:/e mounted on /m with fstype nfs4 statvers=1.1\n",
        "device x mounted on /y with fstype ext4\n",
        "\topts:\trw,vers=3\n",
        "\tage:\t12\n",
        "\tevents:\t",
        "\tbytes:\t",
        "\tper-op statistics\n",
        "\t  READ: ",
        "\txprt:\ttcp 1 2\n",
        "18446744073709551615 ",
        "18446744073709551616 ",
        "1 ",
        "-1 ",
        "x ",
        "\n",
        ":",
        "\\040",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=60).map("".join)))
def test_parser_never_raises(text):
    r = parse_mountstats(text)
    for m in r.records:
        assert m.fstype in ("nfs", "nfs4")
        for s in m.ops.values():
            assert 0 <= s.ops <= MAX_COUNTER
    group_by_superblock(r.records)
