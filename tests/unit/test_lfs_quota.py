"""lfs quota parser: over-quota stars, inaccurate brackets, wrapped mount points, graces, mangled input."""

from __future__ import annotations

from conftest import own_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.lfs_quota import parse_lfs_quota

TEXT = own_fixture("lfs", "lfs-quota-u-g-scratch.txt")


def test_users_and_group():
    result = parse_lfs_quota(TEXT)
    assert result.issues == []
    alice, bob, physics = result.records
    assert (alice.type, alice.name, alice.id, alice.filesystem) == ("user", "alice", 1001, "/lustre/scratch")
    assert alice.used_bytes == 5242880 * 1024
    assert alice.soft_limit_bytes == 104857600 * 1024 and alice.hard_limit_bytes == 125829120 * 1024
    assert alice.used_files == 3412 and alice.file_soft_limit is None and alice.file_hard_limit is None
    assert alice.grace_seconds is None and not alice.over_space
    assert bob.over_space and not bob.over_files
    assert bob.used_bytes == 110100480 * 1024
    assert bob.grace_seconds == 6 * 86400 + 23 * 3600 + 59 * 60 + 30
    # [n] = inaccurate: absent; none = grace ran out
    assert (physics.type, physics.id) == ("group", 3000)
    assert physics.used_bytes is None and physics.inaccurate
    assert physics.over_files and physics.file_grace_expired and physics.file_grace_seconds is None
    assert (physics.used_files, physics.file_soft_limit, physics.file_hard_limit) == (500, 400, 800)


def test_wrapped_mount_point_and_trailing_note():
    result = parse_lfs_quota(own_fixture("lfs", "lfs-quota-u-wrapped-mount.txt"))
    assert result.issues == []
    (e,) = result.records
    assert e.filesystem == "/lustre/projects-longname" and e.used_bytes == 1024 * 1024 and e.used_files == 12


def test_delimiter_human_readable_and_old_titles():
    text = (
        "Disk quotas for user carol (uid 1003):\n"
        "      Filesystem, kbytes, bquota, blimit, bgrace,  files, iquota, ilimit, igrace\n"
        "     /mnt/lustre,   1.5G,     2G,     3G, 1w2d,    265,      0,      0,      -\n"
        "Disk quotas for prj 42 (pid 42):\n"
        "     /mnt/lustre 4k 0 0 - 1 0 0 -\n"
    )
    result = parse_lfs_quota(text)
    assert result.issues == []
    carol, prj = result.records
    assert carol.used_bytes == 1.5 * 1024**3 and carol.soft_limit_bytes == 2 * 1024**3
    assert carol.grace_seconds == 9 * 86400
    assert (prj.type, prj.name, prj.id, prj.used_bytes) == ("project", "42", 42, 4096)


def test_bad_rows_are_counted():
    text = "/mnt/lustre 1 0 0 - 1 0 0 -\nDisk quotas for usr x (uid 1):\n/mnt/lustre 1 0 0\n/m abc 0 0 - 1 0 0 -\n"
    result = parse_lfs_quota(text)
    assert [i.line_no for i in result.issues] == [1, 3, 4]
    assert result.records == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TEXT.splitlines()), st.text(max_size=60)), max_size=30))
def test_mangled_input_never_raises(lines):
    parse_lfs_quota("\n".join(lines))
