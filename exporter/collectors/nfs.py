"""NFS client collector (node mode): per-mount counters from ``/proc/self/mountstats`` and nfsiostat figures.

**Counters** (fresh read on every scrape) are the kernel's cumulative numbers, see
:mod:`nomade.exporter.parsers.mountstats` for their meaning. Per operation: operations, retransmissions
(``ntrans - ops``), major timeouts, errors, RPC bytes sent/received, and queue, RTT and execution time. Per
mount: ``nomade_nfs_read_bytes_total``/``nomade_nfs_written_bytes_total`` are the ``bytes:`` line's
``serverreadbytes``/``serverwritebytes`` (READ/WRITE payload that crossed the network, what the server served),
while ``nomade_nfs_application_*_bytes_total{io}`` are what applications read or wrote (``normal*``: buffered,
page-cache hits included; ``direct*``: ``O_DIRECT``). The gap between the two is the client cache at work.

**Figures** over the interval between the last two readings of a background sampler (option
``sample_interval``), as ``nfsiostat`` computes them per operation (``nfs-utils`` ``tools/nfs-iostat/
nfs-iostat.py`` ``__print_rpc_op_stats()``): ops/s = Δops/Δt, kB/s = Δ(bytes_sent + bytes_recv)/1024/Δt
(here bytes/s), avg RTT = Δrtt_ms/Δops, avg exe = Δexecute_ms/Δops, avg queue = Δqueue_ms/Δops (here
seconds), retrans % = Δ(ntrans - ops)/Δops (here a ratio). Averages are absent when no request completed
(nfsiostat prints 0.0). One deliberate difference: nfsiostat's mount-level "ops/s" is Δ``xprt`` sends, but a
transport is shared by every mount of a server (and nconnect= gives several), so
``nomade_nfs_mount_operations_per_second`` is the sum of the per-op Δops of that mount instead.

**One export mounted twice** is reported once: entries sharing one superblock print the same counters (see
:func:`~nomade.exporter.parsers.mountstats.group_by_superblock`); the superblock comes from
``/proc/self/mountinfo`` (``st_dev``), and the ``mountpoint`` label is the shortest mount point of the group.
``nomade_nfs_mount_points`` says how many mount points share the counters.

**64-bit counters** are parsed exactly (Python ints) and deltas are taken on those ints, so the figures are
exact even at 2**64 - 1. The exposed counters are float64 (the Prometheus data model): ``float()`` rounds to
nearest, which is monotonic (a larger int never maps to a smaller float), and above 2**53 consecutive values
are 2**(e - 52) apart (2048 just below 2**64), so a counter near the limit is shown to ~1e-16 relative
precision and PromQL ``rate()`` over it loses increments smaller than that spacing. A counter that wraps at
2**64 goes back to 0: a reset for ``rate()``, and no figure for that interval here.

**Cardinality**: per mount, one series per operation in option ``operations`` (default
:data:`DEFAULT_OPERATIONS`, 15 names; the NFSv4 client knows ~70) plus ``op="other"``, which sums all the
rest, so ``sum by (mountpoint)`` over ``op`` is still the mount's total. ``operations = "all"`` keeps every
operation the kernel lists. With the defaults: 16 ops x (9 counters + 6 figures) + 12 per-mount series ≈ 250
series per mount.

**Without NFS** (``available()`` False: mountstats lists no nfs/nfs4 mount, and no autofs mount that could
bring one, see :meth:`NfsCollector.available`): if enabled anyway, the collector
stays ``up``, logs once and exports ``nomade_nfs_source_available 0``; the check is a read of mountstats
(memory counters only: reading it never waits on a server, unlike ``statfs()`` on a hung mount).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..metrics import MetricSet, MetricSpec
from ..parsers.mounts import parse_mountinfo
from ..parsers.mountstats import (
    NfsMount,
    NfsMountGroup,
    NfsOpStats,
    group_by_superblock,
    parse_mountstats,
    superblock_ids,
)
from ..sampler import Sampler
from .base import Collector, CollectorContext, CollectorError
from .memory import DEFAULT_SAMPLE_INTERVAL

DEFAULT_OPERATIONS = (
    "READ",
    "WRITE",
    "COMMIT",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READDIR",
    "READDIRPLUS",
    "CREATE",
    "REMOVE",
    "RENAME",
    "OPEN",
    "CLOSE",
    "LOCK",
)
"""Operations reported under their own ``op`` label by default: data (nfsiostat's default read/write view plus
COMMIT), attributes (``-a``: GETATTR/SETATTR), directories (``-d``: LOOKUP/READDIR/READDIRPLUS), permission
checks, namespace changes, and the NFSv4 open/close/lock state operations. Everything else is ``op="other"``."""

OTHER_OP = "other"

_M = ("server", "export", "mountpoint")
_MO = (*_M, "op")


@dataclass(frozen=True)
class NfsOpRates:
    """nfsiostat figures of one operation over one interval, in base units.

    Attributes:
        ops_per_second: Δops / interval (nfsiostat ``ops/s``).
        bytes_per_second: Δ(bytes sent + received) / interval, RPC headers included (``kB/s`` x 1024).
        rtt_seconds: mean RTT per request (``avg RTT (ms)`` / 1000); None without completed requests.
        execute_seconds: mean execution time (``avg exe (ms)`` / 1000); None without requests.
        queue_seconds: mean queueing time (``avg queue (ms)`` / 1000); None without requests.
        retransmission_ratio: Δretransmissions / Δops (``retrans`` % / 100); None without requests.

    """

    ops_per_second: float
    bytes_per_second: float
    rtt_seconds: float | None
    execute_seconds: float | None
    queue_seconds: float | None
    retransmission_ratio: float | None


def nfs_op_rates(prev: NfsOpStats, cur: NfsOpStats, interval: float) -> NfsOpRates | None:
    """Compute nfsiostat's per-operation figures (formulas in the module docstring) from exact int deltas.

    Returns:
        The figures, or None when ``interval`` is not positive or a counter went back (wrap at 2**64,
        remount, or a different superblock behind the same labels).

    """
    if not interval > 0:
        return None
    pairs = (
        (cur.ops, prev.ops),
        (cur.transmissions, prev.transmissions),
        (cur.bytes_sent, prev.bytes_sent),
        (cur.bytes_received, prev.bytes_received),
        (cur.queue_ms, prev.queue_ms),
        (cur.rtt_ms, prev.rtt_ms),
        (cur.execute_ms, prev.execute_ms),
    )
    d = [c - p for c, p in pairs]
    if any(v < 0 for v in d):
        return None
    ops, ntrans, sent, recv, queue, rtt, exe = d
    retrans = ntrans - ops
    return NfsOpRates(
        ops_per_second=ops / interval,
        bytes_per_second=(sent + recv) / interval,
        rtt_seconds=rtt / ops / 1000.0 if ops else None,
        execute_seconds=exe / ops / 1000.0 if ops else None,
        queue_seconds=queue / ops / 1000.0 if ops else None,
        retransmission_ratio=retrans / ops if ops and retrans >= 0 else None,
    )


def fold_operations(ops: Mapping[str, NfsOpStats], keep: frozenset[str] | None) -> dict[str, NfsOpStats]:
    """Keep the operations in ``keep`` under their own name and sum the others into ``op="other"``.

    Args:
        ops: per-operation counters of one mount.
        keep: operation names to keep, or None to keep all.

    Returns:
        ``{op label: counters}``; ``other`` exists when at least one operation was folded. Its ``errors`` is
        None unless every folded operation has the field (a sum of some would not be the total).

    """
    if keep is None:
        return dict(ops)
    out: dict[str, NfsOpStats] = {}
    folded: list[NfsOpStats] = []
    for name, st in ops.items():
        if name in keep:
            out[name] = st
        else:
            folded.append(st)
    if folded:
        errs = [s.errors for s in folded]
        out[OTHER_OP] = NfsOpStats(
            OTHER_OP,
            sum(s.ops for s in folded),
            sum(s.transmissions for s in folded),
            sum(s.timeouts for s in folded),
            sum(s.bytes_sent for s in folded),
            sum(s.bytes_received for s in folded),
            sum(s.queue_ms for s in folded),
            sum(s.rtt_ms for s in folded),
            sum(s.execute_ms for s in folded),
            None if any(e is None for e in errs) else sum(e for e in errs if e is not None),
        )
    return out


_NFS_LINE = re.compile(r" with fstype nfs4?(?: |$)", re.MULTILINE)


def _has_nfs(text: str) -> bool:
    # Cheap pre-check before parsing: an NFS entry's device line reads "... with fstype nfs[4] statvers=1.1".
    return _NFS_LINE.search(text) is not None


Snapshot = dict[tuple[str, str, str], tuple[NfsMount, dict[str, NfsOpStats]]]


class NfsCollector(Collector):
    """NFS client counters and nfsiostat figures per mount (superblock) and operation.

    Options (``[collector.nfs]``):
        operations: list of operation names reported individually (default :data:`DEFAULT_OPERATIONS`), or
            ``"all"``; the rest is summed into ``op="other"``.
        sample_interval: seconds between background readings for the figures (default 15).
        mountpoint_include: regex; when set, only groups whose label mount point matches are reported.
    """

    name = "nfs"
    mode = "node"
    description = "NFS client per-mount and per-operation counters and nfsiostat figures from /proc/self/mountstats."
    metrics = (
        MetricSpec(
            "nomade_nfs_source_available",
            "gauge",
            "1 when /proc/self/mountstats lists at least one nfs/nfs4 mount, else 0 (nothing else is exported).",
        ),
        MetricSpec(
            "nomade_nfs_mount_info",
            "info",
            "One NFS superblock: fstype, protocol version (vers=) and transport (proto=).",
            (*_M, "fstype", "version", "protocol"),
        ),
        MetricSpec(
            "nomade_nfs_mount_points",
            "gauge",
            "Number of mount points showing these counters (mounts sharing one superblock are reported once).",
            _M,
        ),
        MetricSpec(
            "nomade_nfs_mount_age_seconds", "gauge", "Seconds since the superblock was mounted (age:).", _M, "seconds"
        ),
        MetricSpec("nomade_nfs_operations_total", "counter", "RPC requests completed, by operation (per-op ops).", _MO),
        MetricSpec(
            "nomade_nfs_retransmissions_total",
            "counter",
            "RPC retransmissions, by operation (per-op ntrans - ops; nfsiostat retrans).",
            _MO,
        ),
        MetricSpec("nomade_nfs_timeouts_total", "counter", "RPC major timeouts, by operation.", _MO),
        MetricSpec(
            "nomade_nfs_errors_total",
            "counter",
            "RPC requests completed with an error status, by operation (RPC iostats 1.1, Linux 5.3+).",
            _MO,
        ),
        MetricSpec(
            "nomade_nfs_rpc_sent_bytes_total",
            "counter",
            "Bytes sent in RPC requests, headers included, by operation.",
            _MO,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_rpc_received_bytes_total",
            "counter",
            "Bytes received in RPC replies, headers included, by operation.",
            _MO,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_queue_seconds_total",
            "counter",
            "Time requests waited in the client queue before transmission, by operation.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_rtt_seconds_total",
            "counter",
            "Time from transmission to reply (round trip), by operation.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_execute_seconds_total",
            "counter",
            "Time from submission to completion (RPC execution: queue + RTT + client overhead), by operation.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_read_bytes_total",
            "counter",
            "Payload bytes received from the server by READ requests (bytes: serverreadbytes).",
            _M,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_written_bytes_total",
            "counter",
            "Payload bytes sent to the server by WRITE requests (bytes: serverwritebytes).",
            _M,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_application_read_bytes_total",
            "counter",
            "Bytes applications read, cache hits included (bytes: normalreadbytes for io=buffered, "
            "directreadbytes for io=direct).",
            (*_M, "io"),
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_application_written_bytes_total",
            "counter",
            "Bytes applications wrote (bytes: normalwritebytes for io=buffered, directwritebytes for io=direct).",
            (*_M, "io"),
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_operations_per_second",
            "gauge",
            "RPC requests completed per second over the sampling interval (nfsiostat ops/s), by operation.",
            _MO,
        ),
        MetricSpec(
            "nomade_nfs_rpc_bytes_per_second",
            "gauge",
            "RPC bytes sent plus received per second, headers included (nfsiostat kB/s x 1024), by operation.",
            _MO,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_rtt_average_seconds",
            "gauge",
            "Mean round-trip time per request over the interval (nfsiostat avg RTT / 1000); absent without requests.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_execute_average_seconds",
            "gauge",
            "Mean execution time per request over the interval (nfsiostat avg exe / 1000); absent without requests.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_queue_average_seconds",
            "gauge",
            "Mean queueing time per request over the interval (nfsiostat avg queue / 1000); absent without requests.",
            _MO,
            "seconds",
        ),
        MetricSpec(
            "nomade_nfs_retransmission_ratio",
            "gauge",
            "Retransmissions per completed request over the interval (nfsiostat retrans % / 100).",
            _MO,
            "ratio",
        ),
        MetricSpec(
            "nomade_nfs_mount_operations_per_second",
            "gauge",
            "RPC requests completed per second on the mount, all operations (sum of per-op deltas).",
            _M,
        ),
        MetricSpec(
            "nomade_nfs_read_bytes_per_second",
            "gauge",
            "READ payload bytes per second from the server over the interval (serverreadbytes delta).",
            _M,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_write_bytes_per_second",
            "gauge",
            "WRITE payload bytes per second to the server over the interval (serverwritebytes delta).",
            _M,
            "bytes",
        ),
        MetricSpec(
            "nomade_nfs_sample_interval_seconds",
            "gauge",
            "Length of the interval the NFS figures cover.",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        ops = self.option("operations", list(DEFAULT_OPERATIONS))
        if isinstance(ops, str):
            if ops != "all":
                raise ValueError('nfs: operations must be a list of names or "all"')
            self.keep: frozenset[str] | None = None
        else:
            self.keep = frozenset(str(o) for o in ops)
        include = self.option("mountpoint_include", None)
        self.include = re.compile(str(include)) if include else None
        self._said_absent = False
        # (mountstats text, mountinfo text or None, its groups, its issue count) of the last parse.
        self._parsed: tuple[str, str | None, tuple[NfsMountGroup, ...], int] | None = None
        self.sampler: Sampler[Snapshot] = Sampler(
            self._read_sample, float(self.option("sample_interval", DEFAULT_SAMPLE_INTERVAL)), name="nfs"
        )
        self.sampler.start()

    @classmethod
    def available(cls) -> bool:
        """Whether this node has NFS client mounts to report.

        True when ``/proc/self/mountstats`` lists an nfs or nfs4 mount now, and also when an ``autofs`` mount
        exists while the kernel's NFS client is registered (``nfs`` in ``/proc/filesystems``): HPC nodes
        often mount home and project directories on demand, so "no NFS mount at start-up" does not mean "no
        NFS". A node where that guess is wrong exports ``nomade_nfs_source_available 0`` and nothing else.
        """
        try:
            text = Path("/proc/self/mountstats").read_text(errors="replace")
        except OSError:
            return False
        if _has_nfs(text):
            return True
        if " with fstype autofs" not in text:
            return False
        try:
            filesystems = Path("/proc/filesystems").read_text(errors="replace").split()
        except OSError:
            return False
        return "nfs" in filesystems or "nfs4" in filesystems

    # ------------------------------------------------------------------------------------------- reading

    def _read_text(self, rel: str) -> str:
        path = self.ctx.proc_root / "self" / rel
        try:
            return path.read_text(errors="replace")
        except OSError as exc:
            raise CollectorError(f"cannot read {path}: {exc}") from exc

    def read_groups(self) -> tuple[list[NfsMountGroup], int]:
        """Read and parse mountstats (and mountinfo for the superblocks) into deduplicated groups.

        Returns:
            ``(groups after the mount point filter, number of parse issues)``; an empty list when no NFS
            mount exists. While both files read exactly as at the previous call, that call's parse is reused
            (same groups and issue count).

        Raises:
            CollectorError: mountstats cannot be read.

        """
        text = self._read_text("mountstats")
        if not _has_nfs(text):
            return [], 0
        try:
            info_text: str | None = (self.ctx.proc_root / "self" / "mountinfo").read_text(errors="replace")
        except OSError:
            info_text = None  # fall back to (server, export, identical counters), see group_by_superblock
        # The sampler and collect() read the same files: when neither changed since the last parse (an idle
        # mount read twice in one interval, the simulator's scrape right after its sample), the parse is reused.
        # Parsing is a pure function of the two texts and its results are not mutated.
        cached = self._parsed
        if cached is not None and cached[0] == text and cached[1] == info_text:
            groups, issues = list(cached[2]), cached[3]
        else:
            result = parse_mountstats(text)
            issues = len(result.issues)
            sbs = None
            if info_text is not None:
                sbs = superblock_ids(result.records, parse_mountinfo(info_text).records)
            groups = group_by_superblock(result.records, sbs)
            self._parsed = (text, info_text, tuple(groups), issues)
        if self.include is not None:
            groups = [g for g in groups if self.include.search(g.mount_point)]
        return groups, issues

    def _snapshot(self, groups: Iterable[NfsMountGroup]) -> Snapshot:
        snap: Snapshot = {}
        for g in groups:
            m = g.mount
            snap[(m.server, m.export, g.mount_point)] = (m, fold_operations(m.ops, self.keep))
        return snap

    def _read_sample(self) -> Snapshot:
        groups, _ = self.read_groups()
        return self._snapshot(groups)

    # ----------------------------------------------------------------------------------------- collect

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when mountstats cannot be read."""
        groups, issues = self.read_groups()
        self.count_parse_errors(issues)
        if not groups:
            if not self._said_absent:
                self.log.info(
                    "no NFS mount in %s/self/mountstats: exporting nomade_nfs_source_available 0", self.ctx.proc_root
                )
                self._said_absent = True
            out.add("nomade_nfs_source_available", 0)
            return
        self._said_absent = False
        out.add("nomade_nfs_source_available", 1)
        snap = self._snapshot(groups)
        for g in groups:
            m = g.mount
            key = (m.server, m.export, g.mount_point)
            self._add_counters(out, key, m, snap[key][1], len(g.mount_points))
        self._add_rates(out)

    @staticmethod
    def _add_counters(
        out: MetricSet, key: tuple[str, str, str], m: NfsMount, ops: Mapping[str, NfsOpStats], n_points: int
    ) -> None:
        lab = dict(zip(_M, key, strict=True))
        out.info("nomade_nfs_mount_info", **lab, fstype=m.fstype, version=m.version, protocol=m.protocol)
        out.add("nomade_nfs_mount_points", n_points, **lab)
        out.add("nomade_nfs_mount_age_seconds", m.age_seconds, **lab)
        if m.bytes is not None:
            b = m.bytes
            out.add("nomade_nfs_read_bytes_total", b.server_read, **lab)
            out.add("nomade_nfs_written_bytes_total", b.server_write, **lab)
            out.add("nomade_nfs_application_read_bytes_total", b.normal_read, **lab, io="buffered")
            out.add("nomade_nfs_application_read_bytes_total", b.direct_read, **lab, io="direct")
            out.add("nomade_nfs_application_written_bytes_total", b.normal_write, **lab, io="buffered")
            out.add("nomade_nfs_application_written_bytes_total", b.direct_write, **lab, io="direct")
        ms = 1e-3
        for op, s in ops.items():
            out.add("nomade_nfs_operations_total", s.ops, **lab, op=op)
            out.add("nomade_nfs_retransmissions_total", s.retransmissions, **lab, op=op)
            out.add("nomade_nfs_timeouts_total", s.timeouts, **lab, op=op)
            out.add("nomade_nfs_errors_total", s.errors, **lab, op=op)
            out.add("nomade_nfs_rpc_sent_bytes_total", s.bytes_sent, **lab, op=op)
            out.add("nomade_nfs_rpc_received_bytes_total", s.bytes_received, **lab, op=op)
            # ms -> s in float: relative error ~1e-16 at any magnitude, like every float64 sample.
            out.add("nomade_nfs_queue_seconds_total", s.queue_ms * ms, **lab, op=op)
            out.add("nomade_nfs_rtt_seconds_total", s.rtt_ms * ms, **lab, op=op)
            out.add("nomade_nfs_execute_seconds_total", s.execute_ms * ms, **lab, op=op)

    def _add_rates(self, out: MetricSet) -> None:
        pair = self.sampler.pair(max_age=3 * self.sampler.interval + 1)
        if pair is None:
            return
        prev, cur = pair
        dt = cur.taken_at - prev.taken_at
        if dt <= 0:
            return
        out.add("nomade_nfs_sample_interval_seconds", dt)
        for key, (m1, ops1) in cur.value.items():
            old = prev.value.get(key)
            if old is None:
                continue
            m0, ops0 = old
            lab = dict(zip(_M, key, strict=True))
            total = 0
            complete = True
            for op, s1 in ops1.items():
                s0 = ops0.get(op)
                r = None if s0 is None else nfs_op_rates(s0, s1, dt)
                if s0 is None or r is None:
                    complete = False
                    continue
                total += s1.ops - s0.ops
                out.add("nomade_nfs_operations_per_second", r.ops_per_second, **lab, op=op)
                out.add("nomade_nfs_rpc_bytes_per_second", r.bytes_per_second, **lab, op=op)
                out.add("nomade_nfs_rtt_average_seconds", r.rtt_seconds, **lab, op=op)
                out.add("nomade_nfs_execute_average_seconds", r.execute_seconds, **lab, op=op)
                out.add("nomade_nfs_queue_average_seconds", r.queue_seconds, **lab, op=op)
                out.add("nomade_nfs_retransmission_ratio", r.retransmission_ratio, **lab, op=op)
            if complete and ops1:
                out.add("nomade_nfs_mount_operations_per_second", total / dt, **lab)
            if m0.bytes is not None and m1.bytes is not None:
                dr = m1.bytes.server_read - m0.bytes.server_read
                dw = m1.bytes.server_write - m0.bytes.server_write
                out.add("nomade_nfs_read_bytes_per_second", dr / dt if dr >= 0 else None, **lab)
                out.add("nomade_nfs_write_bytes_per_second", dw / dt if dw >= 0 else None, **lab)

    def close(self) -> None:
        """Stop the background sampler."""
        self.sampler.stop()


COLLECTOR = NfsCollector
