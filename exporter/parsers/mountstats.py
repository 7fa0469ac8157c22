r"""Parser for ``/proc/self/mountstats``: the NFS client's per-mount counters (what ``nfsiostat`` reads).

Format (kernel ``fs/nfs/super.c`` ``nfs_show_stats()`` and ``net/sunrpc/stats.c`` ``rpc_clnt_show_stats()``;
every mount gets a ``device`` line, only NFS mounts get the indented block)::

    device srv:/export mounted on /mnt with fstype nfs4 statvers=1.1
        opts:   rw,vers=4.2,rsize=1048576,...,proto=tcp,...
        age:    1234                                   seconds since the mount
        events: 27 counters (NFSIOS_* in include/linux/nfs_iostat.h)
        bytes:  normalread normalwrite directread directwrite serverread serverwrite readpages writepages
        RPC iostats version: 1.1  p/v: 100003/4 (nfs)
        xprt:   tcp <srcport> ...                      one line per transport (several with nconnect=)
        per-op statistics
                READ: ops ntrans timeouts bytes_sent bytes_recv queue_ms rtt_ms execute_ms [errors]

Per-op fields (``_print_rpc_iostats()``): ``ops`` RPC requests completed, ``ntrans`` transmissions (so
``ntrans - ops`` are retransmissions, nfsiostat's "retrans"), ``timeouts`` major timeouts, bytes sent and
received *including RPC headers*, and cumulative milliseconds spent queued before transmission, waiting for the
reply (RTT) and in total from submission to completion ("execute"). The ninth field, ``errors`` (requests that
completed with an error status), exists since RPC iostats version 1.1 (Linux 5.3).

The ``bytes:`` counters (``enum nfs_stat_bytecounters``): ``normal*`` bytes applications read/wrote with
buffered ``read(2)``/``write(2)`` (page-cache hits included), ``direct*`` with ``O_DIRECT``, ``server*`` bytes
actually carried by READ/WRITE RPC payloads to or from the server (excluding RPC headers).

Counter widths: ``events`` and per-op counts are ``unsigned long``, bytes ``unsigned long long``, times are
``ktime_to_ms()`` of 64-bit ktimes: all 64-bit on 64-bit kernels. Python ints hold them exactly; a value of
2**64 or more cannot come from a kernel and is reported as an issue.

Paths in the ``device`` line are escaped by ``seq_escape()`` (octal ``\040`` for a space), undone here.
Only ``nfs`` and ``nfs4`` mounts produce records; other ``device`` lines are skipped silently (they are valid).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .common import ParseResult
from .mounts import MountInfo, unescape_mount_field

NFS_FSTYPES = frozenset({"nfs", "nfs4"})
"""Filesystem types whose mountstats entries carry NFS counters."""

MAX_COUNTER = 2**64 - 1
"""Largest value a 64-bit kernel counter can print."""

_DEVICE = re.compile(r"^device (\S+) mounted on (\S+) with fstype (\S+)(?: statvers=(\S+))?\s*$")
_OP = re.compile(r"^([A-Za-z0-9_]+):((?:\s+\d+)+)\s*$")
_KEY = re.compile(r"^([A-Za-z0-9_ /]+):(.*)$")
BYTES_FIELDS = 8


@dataclass(frozen=True)
class NfsOpStats:
    """Cumulative counters of one RPC operation on one mount (``per-op statistics`` line).

    Attributes:
        op: operation name as the kernel prints it (``READ``, ``GETATTR``, ``OPEN_CONFIRM``...).
        ops: requests completed.
        transmissions: transmissions, retransmissions included (``ntrans``).
        timeouts: major timeouts.
        bytes_sent: bytes sent, RPC headers included.
        bytes_received: bytes received, RPC headers included.
        queue_ms: cumulative milliseconds queued before the first transmission.
        rtt_ms: cumulative milliseconds from transmission to reply.
        execute_ms: cumulative milliseconds from submission to completion (queue + RTT + client overhead).
        errors: requests completed with an error status; None before RPC iostats 1.1.

    """

    op: str
    ops: int
    transmissions: int
    timeouts: int
    bytes_sent: int
    bytes_received: int
    queue_ms: int
    rtt_ms: int
    execute_ms: int
    errors: int | None = None

    @property
    def retransmissions(self) -> int | None:
        """``ntrans - ops`` (nfsiostat "retrans"); None if negative (cannot happen on a sane kernel)."""
        d = self.transmissions - self.ops
        return d if d >= 0 else None


@dataclass(frozen=True)
class NfsBytes:
    """The ``bytes:`` line (``enum nfs_stat_bytecounters``), all cumulative.

    Attributes:
        normal_read: bytes read by applications with buffered reads (cache hits included).
        normal_write: bytes written with buffered writes.
        direct_read: bytes read with ``O_DIRECT``.
        direct_write: bytes written with ``O_DIRECT``.
        server_read: payload bytes received from the server by READ requests.
        server_write: payload bytes sent to the server by WRITE requests.
        read_pages: pages read (readpage/readpages).
        write_pages: pages written.

    """

    normal_read: int
    normal_write: int
    direct_read: int
    direct_write: int
    server_read: int
    server_write: int
    read_pages: int
    write_pages: int


@dataclass(frozen=True)
class NfsMount:
    """One NFS entry of mountstats.

    Attributes:
        device: the mount source as printed (``server:/export``).
        server: host part of ``device`` (brackets of an IPv6 literal removed).
        export: path part of ``device``.
        mount_point: where it is mounted.
        fstype: ``nfs`` or ``nfs4``.
        statvers: the ``statvers=`` value (``1.1``), empty when absent.
        options: the ``opts:`` line as ``{key: value}`` (flags map to ``""``).
        age_seconds: seconds since the mount (``age:``), None when absent.
        events: the ``events:`` counters in kernel order (27 on current kernels), empty when absent.
        bytes: the ``bytes:`` counters, None when absent.
        transports: the first word of each ``xprt:`` line (``tcp``, ``udp``, ``rdma``, ``local``).
        ops: per-op counters by operation name, in file order.

    """

    device: str
    server: str
    export: str
    mount_point: str
    fstype: str
    statvers: str = ""
    options: dict[str, str] = field(default_factory=dict)
    age_seconds: int | None = None
    events: tuple[int, ...] = ()
    bytes: NfsBytes | None = None
    transports: tuple[str, ...] = ()
    ops: dict[str, NfsOpStats] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """NFS protocol version from ``vers=`` (``3``, ``4.2``), or ``""`` when not printed."""
        return self.options.get("vers", "")

    @property
    def protocol(self) -> str:
        """Transport from ``proto=`` (``tcp``, ``rdma``...), else the first ``xprt:`` word, else ``""``."""
        return self.options.get("proto") or (self.transports[0] if self.transports else "")

    def counters_fingerprint(self) -> tuple[object, ...]:
        """Every counter of the entry, for telling apart entries that print the same superblock."""
        return (self.events, self.bytes, tuple(sorted(self.ops.items())))


def split_device(device: str) -> tuple[str, str]:
    """Split an NFS mount source into ``(server, export)``.

    ``srv:/a/b`` -> ``("srv", "/a/b")``; ``[fe80::1]:/x`` -> ``("fe80::1", "/x")``; a source without a colon
    gives ``("", device)``. The export keeps any further colons.
    """
    if device.startswith("["):
        end = device.find("]")
        if end > 0 and device[end + 1 : end + 2] == ":":
            return device[1:end], device[end + 2 :]
    server, colon, export = device.partition(":")
    if not colon:
        return "", device
    return server, export


def _ints(text: str) -> list[int] | None:
    try:
        values = [int(w) for w in text.split()]
    except ValueError:
        return None
    # min/max instead of a generator over every value: an NFS entry has about 70 per-op lines.
    if values and (min(values) < 0 or max(values) > MAX_COUNTER):
        return None
    return values


class _Builder:
    """Mutable state of the NFS entry being read."""

    def __init__(self, device: str, mount_point: str, fstype: str, statvers: str) -> None:
        self.device = device
        self.mount_point = mount_point
        self.fstype = fstype
        self.statvers = statvers
        self.options: dict[str, str] = {}
        self.age: int | None = None
        self.events: tuple[int, ...] = ()
        self.bytes: NfsBytes | None = None
        self.transports: list[str] = []
        self.ops: dict[str, NfsOpStats] = {}
        self.in_ops = False

    def build(self) -> NfsMount:
        server, export = split_device(self.device)
        return NfsMount(
            device=self.device,
            server=server,
            export=export,
            mount_point=self.mount_point,
            fstype=self.fstype,
            statvers=self.statvers,
            options=self.options,
            age_seconds=self.age,
            events=self.events,
            bytes=self.bytes,
            transports=tuple(self.transports),
            ops=self.ops,
        )


def _parse_options(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if item:
            key, _, value = item.partition("=")
            out[key] = value
    return out


def parse_mountstats(text: str) -> ParseResult[NfsMount]:
    """Parse the text of ``/proc/<pid>/mountstats``.

    Returns:
        One :class:`NfsMount` per ``nfs``/``nfs4`` entry, in file order (two mounts of one superblock give two
        records with equal counters, see :func:`group_by_superblock`). Issues: a line of an NFS block that is
        not ``key: value``; an ``events:``/``bytes:``/``age:``/per-op line with non-integer, negative or
        over-64-bit values or the wrong number of fields (8 or 9 per op, 8 bytes); a repeated operation within
        one entry (the first one is kept); an indented line outside any NFS block. Unknown keys (``caps:``,
        ``sec:``, ``nfsv4:``, ``fsc:``, ``impl_id:``...) are ignored.

    """
    result: ParseResult[NfsMount] = ParseResult()
    cur: _Builder | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if raw.startswith("device "):
            if cur is not None:
                result.records.append(cur.build())
                cur = None
            m = _DEVICE.match(raw)
            if m is None:
                result.skip(no, "malformed device line", raw)
                continue
            device, mnt, fstype, statvers = m.groups()
            if fstype in NFS_FSTYPES:
                cur = _Builder(unescape_mount_field(device), unescape_mount_field(mnt), fstype, statvers or "")
            continue
        if cur is None:
            # Indented lines under a non-NFS device (no kernel prints any) or before the first device line.
            result.skip(no, "line outside an NFS entry", raw)
            continue
        _parse_block_line(cur, line, no, raw, result)
    if cur is not None:
        result.records.append(cur.build())
    return result


def _parse_block_line(cur: _Builder, line: str, no: int, raw: str, result: ParseResult[NfsMount]) -> None:
    if line == "per-op statistics":
        cur.in_ops = True
        return
    if line.startswith("RPC iostats version:"):
        return
    if cur.in_ops:
        m = _OP.match(line)
        if m is None:
            result.skip(no, "malformed per-op line", raw)
            return
        values = _ints(m.group(2))
        if values is None or len(values) not in (8, 9):
            result.skip(no, "per-op line needs 8 or 9 non-negative 64-bit integers", raw)
            return
        op = m.group(1)
        if op in cur.ops:
            result.skip(no, f"operation {op} repeated in one entry", raw)
            return
        cur.ops[op] = NfsOpStats(op, *values[:8], errors=values[8] if len(values) == 9 else None)
        return
    m = _KEY.match(line)
    if m is None:
        result.skip(no, "expected 'key: value'", raw)
        return
    key, value = m.group(1).strip(), m.group(2).strip()
    if key == "opts":
        cur.options = _parse_options(value)
    elif key == "age":
        ages = _ints(value)
        if ages is None or len(ages) != 1:
            result.skip(no, "age is not one integer", raw)
        else:
            cur.age = ages[0]
    elif key == "events":
        events = _ints(value)
        if events is None:
            result.skip(no, "events: non-integer or out-of-range value", raw)
        else:
            cur.events = tuple(events)
    elif key == "bytes":
        counts = _ints(value)
        if counts is None or len(counts) != BYTES_FIELDS:
            result.skip(no, f"bytes: needs {BYTES_FIELDS} non-negative 64-bit integers", raw)
        else:
            cur.bytes = NfsBytes(*counts)
    elif key == "xprt":
        words = value.split()
        if words:
            cur.transports.append(words[0])


# ------------------------------------------------------------------------------------------------ dedup


@dataclass(frozen=True)
class NfsMountGroup:
    """Mountstats entries that print the counters of one NFS superblock.

    Attributes:
        mount: the representative entry (its counters are the group's counters).
        mount_points: every mount point of the group, sorted (shortest first, then by text).

    """

    mount: NfsMount
    mount_points: tuple[str, ...]

    @property
    def mount_point(self) -> str:
        """The label mount point: the shortest (then alphabetically first) of the group."""
        return self.mount_points[0]


def superblock_ids(mounts: Sequence[NfsMount], mountinfo: Sequence[MountInfo]) -> list[tuple[int, int] | None]:
    """The superblock (``st_dev`` major:minor from mountinfo) of each mountstats entry, or None if unknown.

    Both files walk the same mount list of the reader's namespace (``fs/proc_namespace.c``), so the k-th NFS
    entry on a mount point in mountstats is the k-th NFS line on that mount point in mountinfo (k > 1 only for
    mounts stacked on one path). A mount that appeared or vanished between the two reads stays unmatched
    (None), or, stacked on a reused path, could be matched to its neighbour: both then show NFS counters.
    """
    by_path: dict[str, list[tuple[int, int]]] = {}
    for mi in mountinfo:
        if mi.fstype in NFS_FSTYPES:
            by_path.setdefault(mi.mount_point, []).append((mi.major, mi.minor))
    seen: dict[str, int] = {}
    out: list[tuple[int, int] | None] = []
    for m in mounts:
        k = seen.get(m.mount_point, 0)
        seen[m.mount_point] = k + 1
        devs = by_path.get(m.mount_point, [])
        out.append(devs[k] if k < len(devs) else None)
    return out


def group_by_superblock(
    mounts: Sequence[NfsMount], superblocks: Sequence[tuple[int, int] | None] | None = None
) -> list[NfsMountGroup]:
    """Merge the entries that show one superblock's counters, so one export mounted twice is counted once.

    Why: ``nfs_show_stats()`` prints ``NFS_SB(sb)->io_stats`` and the RPC client of that ``nfs_server``, both
    per superblock, once per *mount*. Two mounts of the same export with equal options (the default
    ``sharecache``), bind mounts, and mounts of two directories of one server filesystem share a superblock
    and print identical numbers; summing them would double-count. ``nosharecache`` or differing options
    (``rsize``, ``sec``...) give separate superblocks with their own counters, which must stay separate.

    Grouping key: the superblock device number when known (``superblocks[i]``, from
    :func:`superblock_ids`), which is exact. Without it: ``(server, export)`` plus identical counters, which
    merges every real duplicate and can only wrongly merge separate superblocks of one export whose counters
    are all identical at that moment (idle ones: no number is lost then, but the label may move once they
    diverge).

    Returns:
        One group per superblock, in order of first appearance.

    """
    keys: list[object] = []
    for i, m in enumerate(mounts):
        sb = superblocks[i] if superblocks is not None and i < len(superblocks) else None
        keys.append(("sb", sb) if sb is not None else ("fp", m.server, m.export, m.counters_fingerprint()))
    members: dict[object, list[NfsMount]] = {}
    for key, m in zip(keys, mounts, strict=True):
        members.setdefault(key, []).append(m)
    groups: list[NfsMountGroup] = []
    for ms in members.values():
        points = tuple(sorted({m.mount_point for m in ms}, key=lambda p: (len(p), p)))
        rep = next(m for m in ms if m.mount_point == points[0])
        groups.append(NfsMountGroup(rep, points))
    return groups
