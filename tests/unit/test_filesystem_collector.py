"""filesystem collector on a fixture mount table with a fake statfs (including one that hangs)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from conftest import OWN_FIXTURES

from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.filesystem import FilesystemCollector, fs_usage
from nomade.exporter.runner import CommandRunner


def st(blocks=1000, bfree=400, bavail=300, files=5000, ffree=4000, frsize=4096):
    return os.statvfs_result((4096, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(OWN_FIXTURES / "proc" / "t0", root)
    return root


def make(root, **opts):
    return FilesystemCollector(CollectorContext(runner=CommandRunner(), options=opts, proc_root=root))


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


def test_default_filters_follow_node_exporter(proc):
    c = make(proc)
    mounts = [m.mount_point for m in c.read_mounts()]
    # proc/sys/cgroup2/devtmpfs/dev/overlay/squashfs go; tmpfs /run stays; /home2 appears once (last mount).
    assert mounts == ["/", "/run", "/home", "/scratch", "/mnt/my disk", "/home2"]
    home2 = c.read_mounts()[-1]
    assert home2.source == "nas02:/export/home"


def test_mount_points_option_overrides_filters(proc):
    c = make(proc, mount_points=["/scratch", "/proc", "/not/mounted"])
    assert [m.mount_point for m in c.read_mounts()] == ["/scratch", "/proc"]


def test_values_and_labels(proc):
    c = make(proc, mount_points=["/", "/mnt/my disk", "/home"])
    c.statfs = lambda p: st() if p != "/home" else st(blocks=0, bfree=0, bavail=0, frsize=0)
    out = collect(c)
    root = {"mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4"}
    assert out.value("nomade_filesystem_size_bytes", **root) == 1000 * 4096
    assert out.value("nomade_filesystem_free_bytes", **root) == 400 * 4096
    assert out.value("nomade_filesystem_avail_bytes", **root) == 300 * 4096
    assert out.value("nomade_filesystem_used_ratio", **root) == pytest.approx(600 / 900)  # df: used/(used+avail)
    assert out.value("nomade_filesystem_files", **root) == 5000
    assert out.value("nomade_filesystem_files_free", **root) == 4000
    assert out.value("nomade_filesystem_readonly", **root) == 0
    assert out.value("nomade_filesystem_stuck", **root) == 0
    assert out.value("nomade_filesystem_device_error", **root) == 0
    spaced = {"mountpoint": "/mnt/my disk", "device": "/dev/sda4", "fstype": "ext4"}
    assert out.value("nomade_filesystem_readonly", **spaced) == 1
    home = {"mountpoint": "/home", "device": "/dev/sda3", "fstype": "xfs"}
    assert out.value("nomade_filesystem_size_bytes", **home) == 0
    assert out.value("nomade_filesystem_used_ratio", **home) is None  # 0/0: absent, not 0


def test_statfs_error_is_reported(proc):
    c = make(proc, mount_points=["/", "/home2"])

    def statfs(p):
        if p == "/home2":
            raise OSError(116, "Stale file handle")
        return st()

    c.statfs = statfs
    out = collect(c)
    nfs = {"mountpoint": "/home2", "device": "nas02:/export/home", "fstype": "nfs4"}
    assert out.value("nomade_filesystem_device_error", **nfs) == 1
    assert out.value("nomade_filesystem_size_bytes", **nfs) is None
    assert out.value("nomade_filesystem_stuck", **nfs) == 0


def test_hung_mount_is_skipped_until_the_call_returns(proc):
    c = make(proc, mount_points=["/", "/scratch"], timeout=0.2)
    release = threading.Event()
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def statfs(p):
        with lock:
            calls[p] = calls.get(p, 0) + 1
        if p == "/scratch":
            release.wait(10)
        return st()

    c.statfs = statfs
    lustre = {"mountpoint": "/scratch", "device": "10.1.0.5@o2ib:/scratch", "fstype": "lustre"}
    root = {"mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4"}
    try:
        t = time.monotonic()
        out = collect(c)
        assert time.monotonic() - t < 2.0  # bounded by the timeout, not by the hung call
        assert out.value("nomade_filesystem_stuck", **lustre) == 1
        assert out.value("nomade_filesystem_size_bytes", **lustre) is None
        assert out.value("nomade_filesystem_size_bytes", **root) == 1000 * 4096
        assert c.stuck_mounts() == ["/scratch"]

        # Next scrape: the stuck mount is not probed again (no second blocked thread), and returns at once.
        t = time.monotonic()
        out = collect(c)
        assert time.monotonic() - t < 0.15
        assert out.value("nomade_filesystem_stuck", **lustre) == 1
        assert calls == {"/": 2, "/scratch": 1}
    finally:
        release.set()

    deadline = time.monotonic() + 5
    while c.stuck_mounts() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.stuck_mounts() == []
    out = collect(c)
    assert out.value("nomade_filesystem_stuck", **lustre) == 0
    assert out.value("nomade_filesystem_size_bytes", **lustre) == 1000 * 4096
    assert calls["/scratch"] == 2


def test_missing_mountinfo_raises(tmp_path):
    with pytest.raises(CollectorError):
        collect(make(tmp_path))


def test_self_mountinfo_fallback(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text("22 1 8:2 / / rw - ext4 /dev/sda2 rw\n")
    c = make(tmp_path)
    c.statfs = lambda p: st()
    assert collect(c).value("nomade_filesystem_size_bytes", mountpoint="/", device="/dev/sda2", fstype="ext4") > 0


def test_fs_usage_uses_frsize():
    u = fs_usage(st(blocks=10, bfree=5, bavail=5, frsize=1024))
    assert (u.size, u.free, u.avail, u.used_ratio) == (10240, 5120, 5120, 0.5)


def test_real_root_filesystem():
    # This machine's own mount table: / must be there with a positive size.
    c = FilesystemCollector(CollectorContext(runner=CommandRunner()))
    out = collect(c)
    sizes = {k[0]: v for k, v in out.samples("nomade_filesystem_size_bytes").items()}
    assert sizes.get("/", 0) > 0
