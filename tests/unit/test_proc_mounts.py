from __future__ import annotations

from conftest import own_fixture
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.mounts import parse_mountinfo, unescape_mount_field


def test_own_fixture():
    res = parse_mountinfo(own_fixture("proc", "t0", "1", "mountinfo"))
    assert res.issues == []
    assert len(res.records) == 14
    root = res.records[0]
    assert (root.mount_id, root.parent_id, root.major, root.minor) == (22, 1, 8, 2)
    assert (root.mount_point, root.fstype, root.source) == ("/", "ext4", "/dev/sda2")
    assert root.options == ("rw", "relatime") and root.super_options == ("rw", "errors=remount-ro")
    assert root.readonly is False
    spaced = next(m for m in res.records if m.mount_id == 32)
    assert spaced.mount_point == "/mnt/my disk" and spaced.readonly is True
    lustre = next(m for m in res.records if m.fstype == "lustre")
    assert lustre.source == "10.1.0.5@o2ib:/scratch"


def test_no_optional_fields_and_bad_lines():
    text = (
        "33 22 0:50 / /a rw - overlay overlay rw\n"
        "34 22 0:50 / /b rw no-separator here\n"
        "x 22 0:50 / /c rw - tmpfs tmpfs rw\n"
        "35 22 050 / /d rw - tmpfs tmpfs rw\n"
        "36 22 0:1 / /e rw - tmpfs\n"
    )
    res = parse_mountinfo(text)
    assert [m.mount_point for m in res.records] == ["/a"]
    assert [i.line_no for i in res.issues] == [2, 3, 4, 5]


def test_unescape():
    assert unescape_mount_field(r"/mnt/a\040b\011c\134d") == "/mnt/a b\tc\\d"


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    res = parse_mountinfo(text)
    assert len(res.records) + len(res.issues) <= len(text.splitlines())
