r"""Parser for ``/proc/<pid>/mountinfo``.

Format (``proc(5)``, ``/proc/pid/mountinfo``)::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)

(1) mount ID, (2) parent ID, (3) major:minor of st_dev, (4) root of the mount within the filesystem,
(5) mount point, (6) per-mount options, (7) zero or more optional ``tag[:value]`` fields, (8) a ``-``
separator, (9) filesystem type (``type.subtype`` for FUSE), (10) mount source, (11) per-superblock options.
Spaces, tabs, newlines and backslashes inside paths are written as octal escapes (``\040``, ``\011``,
``\012``, ``\134``; ``fs/proc_namespace.c`` ``mangle()``), undone here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ParseResult

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape_mount_field(text: str) -> str:
    r"""Undo the kernel's octal escaping of a mountinfo path field (``\040`` -> space)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class MountInfo:
    """One mountinfo line.

    Attributes:
        mount_id: the mount's unique ID.
        parent_id: the parent mount's ID.
        major: device major number of st_dev.
        minor: device minor number.
        root: path within the filesystem that forms the root of this mount.
        mount_point: mount point relative to the process's root.
        options: per-mount options (``rw``, ``noatime``...).
        fstype: filesystem type (``ext4``, ``nfs4``, ``fuse.sshfs``).
        source: mount source (``/dev/sda1``, ``server:/export``), ``"none"`` if the kernel wrote none.
        super_options: per-superblock options.

    """

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def readonly(self) -> bool:
        """Whether the mount is read-only (``ro`` among the per-mount or superblock options)."""
        return "ro" in self.options or "ro" in self.super_options


def parse_mountinfo(text: str) -> ParseResult[MountInfo]:
    """Parse the text of ``/proc/<pid>/mountinfo``.

    Returns:
        One :class:`MountInfo` per valid line, in file order (later lines mount over earlier ones); a line
        without the ``-`` separator, with too few fields or non-numeric IDs is an issue.

    """
    result: ParseResult[MountInfo] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split(" ")
        if not line.strip():
            continue
        try:
            sep = parts.index("-", 6)
        except ValueError:
            result.skip(no, "no ' - ' separator after the optional fields", line)
            continue
        if len(parts) < sep + 3:
            result.skip(no, "too few fields after the separator", line)
            continue
        try:
            mount_id, parent_id = int(parts[0]), int(parts[1])
            major_s, colon, minor_s = parts[2].partition(":")
            if not colon:
                raise ValueError(parts[2])
            major, minor = int(major_s), int(minor_s)
        except ValueError:
            result.skip(no, "non-numeric mount ID or device number", line)
            continue
        super_opts = parts[sep + 3] if len(parts) > sep + 3 else ""
        result.records.append(
            MountInfo(
                mount_id=mount_id,
                parent_id=parent_id,
                major=major,
                minor=minor,
                root=unescape_mount_field(parts[3]),
                mount_point=unescape_mount_field(parts[4]),
                options=tuple(parts[5].split(",")),
                fstype=parts[sep + 1],
                source=unescape_mount_field(parts[sep + 2]),
                super_options=tuple(o for o in super_opts.split(",") if o),
            )
        )
    return result
