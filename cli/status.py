"""``nomade status``: a one-screen overview of the cluster, read from Prometheus through its HTTP API.

Two halves, so that the screen can be tested without a server and the queries without a terminal:

* :func:`gather` issues one PromQL query per metric family (six in all, whatever the number of nodes,
  DESIGN.md principle 6) at one evaluation time and folds the samples into a :class:`StatusSnapshot`;
* :func:`render` is a pure function of the snapshot, the width and the colour switch.

Label values are operator-controlled text (a drain reason can hold quotes, newlines, escape sequences or
right-to-left overrides): every label is passed through :func:`sanitize` before layout, and column widths count
terminal cells (wide East Asian characters take two), so no label can break or forge the layout.
"""

from __future__ import annotations

import math
import re
import time as _time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nomade.analytics.promapi import PrometheusClient, PromQLError, Sample

# -- data model ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesystemRow:
    """One mounted filesystem.

    Attributes:
        node: the ``node`` label (machine reporting it), ``""`` when absent or when collapsed (``nodes`` > 1).
        nodes: number of nodes reporting this shared (network) filesystem; 1 for a local one.
        size_bytes, avail_bytes, free_bytes: statvfs figures (``f_blocks``, ``f_bavail``, ``f_bfree`` × frsize).

    """

    mountpoint: str
    device: str = ""
    fstype: str = ""
    node: str = ""
    size_bytes: float | None = None
    avail_bytes: float | None = None
    free_bytes: float | None = None
    cluster: str = ""
    nodes: int = 1

    @property
    def used_bytes(self) -> float | None:
        """``size - free`` (as df's "Used"); ``size - avail`` when free is unknown (overstates by the root reserve)."""
        if self.size_bytes is None:
            return None
        other = self.free_bytes if self.free_bytes is not None else self.avail_bytes
        return None if other is None else max(0.0, self.size_bytes - other)

    @property
    def used_ratio(self) -> float | None:
        """Fraction full as df's "Use%": used / (used + avail), so the root-reserved blocks count as unavailable.

        Source: GNU coreutils df.c (``pct = used * 100 / (used + available)``). ``None`` when unknown.
        """
        used = self.used_bytes
        if used is None:
            return None
        if self.avail_bytes is None or self.free_bytes is None:
            return used / self.size_bytes if self.size_bytes else None
        denom = used + self.avail_bytes
        return used / denom if denom > 0 else None


@dataclass(frozen=True)
class QueueRow:
    """Jobs of one partition by SLURM state (long names: ``RUNNING``, ``PENDING``, ``COMPLETING``...).

    Attributes:
        states: job count per state.
        oldest_pending_age_seconds: age of the oldest pending job, ``None`` when not reported.

    """

    partition: str
    states: Mapping[str, float] = field(default_factory=dict)
    oldest_pending_age_seconds: float | None = None
    cluster: str = ""

    @property
    def running(self) -> float:
        """Jobs in state RUNNING."""
        return self.states.get("RUNNING", 0.0)

    @property
    def pending(self) -> float:
        """Jobs in state PENDING."""
        return self.states.get("PENDING", 0.0)

    @property
    def other(self) -> float:
        """Jobs in any other state (COMPLETING, CONFIGURING, SUSPENDED, REQUEUED...)."""
        return sum(v for k, v in self.states.items() if k not in ("RUNNING", "PENDING"))


@dataclass(frozen=True)
class NodeRow:
    """One SLURM node.

    Attributes:
        state: base state, lower case as SLURM's parser gives it (``idle``, ``mixed``, ``down``...), or ``None``.
        flags: state flags, lower case (``drain``, ``not_responding``...), sorted.
        cpu_load: SLURM's CPULoad (the node's 1-minute load average); ``None`` when not reported.
        reason, reason_user: the drain/down reason and who set it.

    """

    node: str
    state: str | None = None
    flags: tuple[str, ...] = ()
    cpu_load: float | None = None
    cpus: float | None = None
    cpus_allocated: float | None = None
    reason: str | None = None
    reason_user: str | None = None
    cluster: str = ""

    @property
    def problem(self) -> bool:
        """True when the node cannot take work or needs attention (down/fail state, drain or unresponsive)."""
        return (self.state or "") in PROBLEM_STATES or bool(PROBLEM_FLAGS.intersection(self.flags))


@dataclass(frozen=True)
class FinishedRow:
    """Finished jobs of one failure class (``SUCCESS``, ``FAILED``, ``TIMEOUT``, ``OUT_OF_MEMORY``...).

    Attributes:
        last_hour: ``increase(...[1h])`` (extrapolated by Prometheus, hence possibly fractional).
        total: the counter's value (since the collector's counter started).

    """

    failure_class: str
    last_hour: float | None = None
    total: float | None = None
    cluster: str = ""


@dataclass(frozen=True)
class CollectorRow:
    """Health of one collector across every exporter that runs it.

    Attributes:
        up: exporters whose last scrape had ``nomade_collector_up == 1``.
        targets: exporters reporting the collector at all.
        down_on: the ``node`` (else ``instance``) of the exporters where it is down, sorted.
        last_success_oldest, last_success_newest: Unix times of the stalest and freshest last success.

    """

    collector: str
    up: int = 0
    targets: int = 0
    down_on: tuple[str, ...] = ()
    last_success_oldest: float | None = None
    last_success_newest: float | None = None
    cluster: str = ""


@dataclass
class StatusSnapshot:
    """Everything the status screen shows, at one evaluation time.

    Attributes:
        prometheus_url: the endpoint read.
        time: evaluation time, Unix seconds.
        clusters: distinct ``cluster`` label values seen (empty when no series carries one).
        errors: section name → message, for sections whose query the server rejected.
        queries: number of PromQL queries issued to build it.

    """

    prometheus_url: str
    time: float
    clusters: tuple[str, ...] = ()
    filesystems: list[FilesystemRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    finished: list[FinishedRow] = field(default_factory=list)
    collectors: list[CollectorRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    queries: int = 0


# Which collector feeds which section (names of nomade.exporter.collectors), for the "no data" message.
SECTION_COLLECTOR = {
    "filesystems": "filesystem",
    "queue": "slurm_queue",
    "nodes": "slurm_nodes",
    "finished": "slurm_accounting",
}

# Node conditions that put a node on top of the list. States and flags as parsed by
# nomade.exporter.parsers.slurm_units.parse_node_state (sinfo(1)/scontrol(1) NODE STATE CODES, lower case).
PROBLEM_STATES = frozenset({"down", "fail", "failing", "unknown", "inval"})
PROBLEM_FLAGS = frozenset(
    {"drain", "not_responding", "fail", "maint", "maintenance", "reboot_requested", "reboot_issued", "invalid_reg"}
)
_RED_STATES = frozenset({"down", "fail", "failing", "inval"})
_RED_FLAGS = frozenset({"not_responding", "fail"})

# Network/parallel filesystem types: the same export mounted on many nodes is one filesystem, shown once.
SHARED_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "ceph",
        "cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "panfs",
        "wekafs",
        "fuse.cephfs",
        "orangefs",
        "pvfs2",
    }
)
# Classes counted as a good outcome in the failure share (DESIGN.md "Job outcome model": COMPLETED exit 0).
SUCCESS_CLASSES = frozenset({"success", "completed"})

# -- gathering ----------------------------------------------------------------------------------------------------


def _selector(names: Iterable[str], cluster: str | None) -> str:
    """``{__name__=~"a|b", cluster="x"}``: one query for a metric family, however many nodes report it."""
    matchers = [f'__name__=~"{"|".join(names)}"']
    if cluster is not None:
        matchers.append(f"cluster={_promql_string(cluster)}")
    return "{" + ", ".join(matchers) + "}"


def _promql_string(s: str) -> str:
    """A PromQL double-quoted string literal (Go escaping: backslash and double quote)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def status_queries(cluster: str | None = None) -> dict[str, str]:
    """The PromQL expressions :func:`gather` issues, by section (``finished`` has two: ``finished_1h``, ``_total``).

    The finished-job counters are first reduced with ``max by`` the counter's own labels, so that two exporters
    reporting the same sacct data (a primary and a backup controller) are not counted twice.
    """
    cm = "" if cluster is None else f"{{cluster={_promql_string(cluster)}}}"
    fin = f"nomade_slurm_job_finished_total{cm}"
    inner = "cluster, partition, state, failure_class"
    return {
        "filesystems": _selector(
            ["nomade_filesystem_size_bytes", "nomade_filesystem_avail_bytes", "nomade_filesystem_free_bytes"], cluster
        ),
        "queue": _selector(
            ["nomade_slurm_queue_jobs", "nomade_slurm_queue_oldest_pending_age_seconds", "nomade_slurm_partition_info"],
            cluster,
        ),
        "nodes": _selector(
            [
                "nomade_slurm_node_state",
                "nomade_slurm_node_flag",
                "nomade_slurm_node_cpu_load",
                "nomade_slurm_node_cpus",
                "nomade_slurm_node_cpus_allocated",
                "nomade_slurm_node_reason_info",
            ],
            cluster,
        ),
        # Exact where per-job series exist (jobs whose end is within the hour); else the counters' increase,
        # which misses jobs counted before the counter's first sample (Prometheus extrapolates from there).
        "finished_1h": (
            f"count by (cluster, failure_class) (max by (cluster, job_id, failure_class) (nomade_slurm_job_info{cm})"
            f" and on (cluster, job_id) ((time() - max by (cluster, job_id) "
            f"(nomade_slurm_job_end_timestamp_seconds{cm})) < 3600))"
            f" or sum by (cluster, failure_class) (max by ({inner}) (increase({fin}[1h])))"
        ),
        "finished_total": f"sum by (cluster, failure_class) (max by ({inner}) ({fin}))",
        "collectors": _selector(["nomade_collector_up", "nomade_collector_last_success_timestamp_seconds"], cluster),
    }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _slurm_node(labels: Mapping[str, str]) -> str:
    """SLURM's node name on a controller metric.

    A scrape job that attaches a ``node`` target label to the controller exporter (without ``honor_labels``)
    makes Prometheus rename the metric's own ``node`` to ``exported_node``; that one is then the SLURM node.
    """
    return labels.get("exported_node") or labels.get("node", "")


def _fold_filesystems(samples: list[Sample]) -> list[FilesystemRow]:
    fields = {
        "nomade_filesystem_size_bytes": "size_bytes",
        "nomade_filesystem_avail_bytes": "avail_bytes",
        "nomade_filesystem_free_bytes": "free_bytes",
    }
    per: dict[tuple[str, str, str, str, str], dict[str, float | None]] = defaultdict(dict)
    for s in samples:
        f = fields.get(s.name)
        if f is None:
            continue
        lb = s.labels
        key = (
            lb.get("cluster", ""),
            lb.get("node", ""),
            lb.get("mountpoint", ""),
            lb.get("device", ""),
            lb.get("fstype", ""),
        )
        per[key][f] = _finite(s.value)
    local: list[FilesystemRow] = []
    shared: dict[tuple[str, str, str, str], list[FilesystemRow]] = defaultdict(list)
    for (cluster, node, mnt, dev, fstype), vals in per.items():
        row = FilesystemRow(
            mnt, dev, fstype, node, vals.get("size_bytes"), vals.get("avail_bytes"), vals.get("free_bytes"), cluster
        )
        if fstype.lower() in SHARED_FSTYPES:
            shared[(cluster, mnt, dev, fstype)].append(row)
        else:
            local.append(row)
    out = list(local)
    for rows in shared.values():
        if len(rows) == 1:
            out.append(rows[0])
            continue
        # nodes see the same export at slightly different scrape times: show the least available (conservative)
        worst = min(rows, key=lambda r: math.inf if r.avail_bytes is None else r.avail_bytes)
        out.append(
            FilesystemRow(
                worst.mountpoint,
                worst.device,
                worst.fstype,
                "",
                worst.size_bytes,
                worst.avail_bytes,
                worst.free_bytes,
                worst.cluster,
                nodes=len(rows),
            )
        )
    out.sort(key=lambda r: (r.cluster, r.nodes == 1, natural_key(r.node), r.mountpoint))
    return out


def _fold_queue(samples: list[Sample]) -> list[QueueRow]:
    # max, not sum, across exporters: two controller exporters (primary, backup) report the same queue
    states: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    oldest: dict[tuple[str, str], float] = {}
    for s in samples:
        key = (s.labels.get("cluster", ""), s.labels.get("partition", ""))
        v = _finite(s.value)
        if v is None:
            continue
        if s.name == "nomade_slurm_queue_jobs":
            st = s.labels.get("state", "").upper()
            states[key][st] = max(v, states[key].get(st, v))
        elif s.name == "nomade_slurm_partition_info":
            states.setdefault(key, {})  # every partition gets a row, also one with an empty queue
        elif s.name == "nomade_slurm_queue_oldest_pending_age_seconds":
            states.setdefault(key, {})
            oldest[key] = max(v, oldest.get(key, v))
    rows = [QueueRow(p, dict(st), oldest.get((c, p)), c) for (c, p), st in states.items()]
    rows.sort(key=lambda r: (r.cluster, natural_key(r.partition)))
    return rows


def _fold_nodes(samples: list[Sample]) -> list[NodeRow]:
    data: dict[tuple[str, str], dict[str, object]] = defaultdict(lambda: {"flags": set(), "states": set()})
    for s in samples:
        node = _slurm_node(s.labels)
        if not node:
            continue
        d = data[(s.labels.get("cluster", ""), node)]
        v = _finite(s.value)
        name = s.name
        if name == "nomade_slurm_node_state":
            if v is not None and v >= 0.5:  # 1 marks the current state; tolerate 0-valued siblings
                d["states"].add(s.labels.get("state", ""))
        elif name == "nomade_slurm_node_flag":
            if v is not None and v >= 0.5:
                d["flags"].add(s.labels.get("flag", ""))
        elif name == "nomade_slurm_node_reason_info":
            d["reason"] = s.labels.get("reason") or None
            d["reason_user"] = s.labels.get("user") or None
        elif name in ("nomade_slurm_node_cpu_load", "nomade_slurm_node_cpus", "nomade_slurm_node_cpus_allocated"):
            d[name.removeprefix("nomade_slurm_node_")] = v
    rows = []
    for (cluster, node), d in data.items():
        states = sorted(x for x in d["states"] if x)
        rows.append(
            NodeRow(
                node=node,
                state="+".join(states) or None,
                flags=tuple(sorted(x for x in d["flags"] if x)),
                cpu_load=d.get("cpu_load"),
                cpus=d.get("cpus"),
                cpus_allocated=d.get("cpus_allocated"),
                reason=d.get("reason"),
                reason_user=d.get("reason_user"),
                cluster=cluster,
            )
        )
    rows.sort(key=lambda r: (r.cluster, natural_key(r.node)))
    return rows


def _fold_finished(last_hour: list[Sample], total: list[Sample]) -> list[FinishedRow]:
    lh = {(s.labels.get("cluster", ""), s.labels.get("failure_class", "")): _finite(s.value) for s in last_hour}
    tot = {(s.labels.get("cluster", ""), s.labels.get("failure_class", "")): _finite(s.value) for s in total}
    rows = [FinishedRow(fc, lh.get((c, fc)), tot.get((c, fc)), c) for c, fc in set(lh) | set(tot)]
    rows.sort(
        key=lambda r: (r.cluster, r.failure_class.lower() not in SUCCESS_CLASSES, -(r.total or 0), r.failure_class)
    )
    return rows


def _fold_collectors(samples: list[Sample]) -> list[CollectorRow]:
    up: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    last: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for s in samples:
        key = (s.labels.get("cluster", ""), s.labels.get("collector", ""))
        where = s.labels.get("node") or s.labels.get("instance") or "?"
        v = _finite(s.value)
        if v is None:
            continue
        if s.name == "nomade_collector_up":
            up[key][where] = v
        elif s.name == "nomade_collector_last_success_timestamp_seconds":
            last[key][where] = v
    rows = []
    for key in set(up) | set(last):
        ups = up.get(key, {})
        times = list(last.get(key, {}).values())
        rows.append(
            CollectorRow(
                collector=key[1],
                up=sum(1 for v in ups.values() if v >= 0.5),
                targets=len(ups),
                down_on=tuple(sorted((w for w, v in ups.items() if v < 0.5), key=natural_key)),
                last_success_oldest=min(times) if times else None,
                last_success_newest=max(times) if times else None,
                cluster=key[0],
            )
        )
    rows.sort(key=lambda r: (r.cluster, r.collector))
    return rows


def gather(client: PrometheusClient, now: float | None = None, cluster: str | None = None) -> StatusSnapshot:
    """Read the status figures from Prometheus in six queries, all evaluated at ``now``.

    Args:
        client: the query client.
        now: evaluation time (Unix seconds); the local clock when ``None``.
        cluster: keep only series whose ``cluster`` label equals it; all clusters when ``None``.

    Returns:
        The snapshot. A section whose query the server rejects (:class:`PromQLError`) is left empty and its
        message stored in ``errors``, so one unsupported expression does not blank the whole screen.

    Raises:
        PrometheusUnavailable: the server cannot be reached or answers 5xx (after the client's retries).

    """
    t = _time.time() if now is None else float(now)
    queries = status_queries(cluster)
    before = client.queries_issued
    results: dict[str, list[Sample]] = {}
    errors: dict[str, str] = {}
    for key, expr in queries.items():
        try:
            results[key] = client.query(expr, time=t)
        except PromQLError as exc:
            section = "finished" if key.startswith("finished") else key
            errors.setdefault(section, str(exc))
            results[key] = []
    clusters = sorted({s.labels["cluster"] for v in results.values() for s in v if s.labels.get("cluster")})
    return StatusSnapshot(
        prometheus_url=client.base_url,
        time=t,
        clusters=tuple(clusters),
        filesystems=_fold_filesystems(results["filesystems"]),
        queue=_fold_queue(results["queue"]),
        nodes=_fold_nodes(results["nodes"]),
        finished=_fold_finished(results["finished_1h"], results["finished_total"]),
        collectors=_fold_collectors(results["collectors"]),
        errors=errors,
        queries=client.queries_issued - before,
    )


# -- text helpers -------------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Bidirectional controls (Unicode TR9): they reorder what follows on the line, so a label could disguise itself.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def natural_key(s: str) -> tuple[object, ...]:
    """Sort key that orders ``node2`` before ``node10``."""
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses
    return tuple((0, int(p), "") if "0" <= p[0] <= "9" else (1, 0, p) for p in re.split(r"([0-9]+)", s) if p)


def sanitize(text: str) -> str:
    r"""Make label text safe to lay out on one terminal line; printable characters, quotes included, are kept.

    Control characters (C0, DEL, C1: newlines, ESC of ANSI sequences), line/paragraph separators, lone
    surrogates and bidirectional controls are replaced by visible escapes (``\n``, ``\x1b``, ``\u202e``).
    """
    out = []
    for ch in text:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _char_width(ch: str) -> int:
    """Terminal cells of one character (after :func:`sanitize`): 0 for combining marks, 2 for wide/full-width."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal cells that ``text`` occupies, ignoring the SGR colour sequences this module emits."""
    return sum(_char_width(ch) for ch in _ANSI.sub("", text))


def fit(text: str, width: int, align: str = "<", ellipsis: str = "…") -> str:
    """Truncate (with ``ellipsis``) or pad plain ``text`` to exactly ``width`` cells; ``align`` is ``<`` or ``>``."""
    if width <= 0:
        return ""
    w = display_width(text)
    if w > width:
        keep, used = [], 0
        room = width - display_width(ellipsis)
        for ch in text:
            cw = _char_width(ch)
            if used + cw > room:
                break
            keep.append(ch)
            used += cw
        text = "".join(keep) + ellipsis
        w = used + display_width(ellipsis)
    pad = " " * (width - w)
    return pad + text if align == ">" else text + pad


def _clip_line(line: str, width: int, ellipsis: str) -> str:
    """Cut a rendered line (which may hold SGR sequences) to ``width`` cells, resetting colour if cut."""
    if display_width(line) <= width:
        return line.rstrip()
    out, used, room = [], 0, width - display_width(ellipsis)
    pos = 0
    had_sgr = False
    while pos < len(line):
        m = _ANSI.match(line, pos)
        if m:
            out.append(m.group())
            had_sgr = True
            pos = m.end()
            continue
        cw = _char_width(line[pos])
        if used + cw > room:
            break
        out.append(line[pos])
        used += cw
        pos += 1
    return "".join(out) + ellipsis + ("\x1b[0m" if had_sgr else "")


def format_bytes(n: float | None) -> str:
    """IEC binary units with one decimal: ``34.0 GiB``; ``?`` when unknown."""
    if n is None:
        return "?"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    v, i = float(n), 0
    while abs(v) >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.0f} {units[i]}" if i == 0 else f"{v:.1f} {units[i]}"


def format_age(seconds: float | None) -> str:
    """A compact duration: ``45s``, ``12m``, ``3h05m``, ``2d04h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_count(v: float | None) -> str:
    """A job count rounded to an integer with thousands separators (``increase()`` extrapolates fractions)."""
    return "-" if v is None else f"{round(v):,}"


# -- rendering ----------------------------------------------------------------------------------------------------

# Usage colour bands for bars (display only; alerting thresholds live in nomade.alerting's config).
WARN_RATIO = 0.80
CRIT_RATIO = 0.90


@dataclass(frozen=True)
class _Style:
    color: bool
    ascii_only: bool

    def sgr(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, t: str) -> str:
        return self.sgr(t, "1")

    def dim(self, t: str) -> str:
        return self.sgr(t, "2")

    def red(self, t: str) -> str:
        return self.sgr(t, "31")

    def yellow(self, t: str) -> str:
        return self.sgr(t, "33")

    def green(self, t: str) -> str:
        return self.sgr(t, "32")

    def by_ratio(self, t: str, ratio: float | None) -> str:
        if ratio is None:
            return t
        return self.red(t) if ratio >= CRIT_RATIO else self.yellow(t) if ratio >= WARN_RATIO else self.green(t)

    @property
    def full(self) -> str:
        return "#" if self.ascii_only else "█"

    @property
    def empty(self) -> str:
        return "." if self.ascii_only else "░"

    @property
    def rule(self) -> str:
        return "=" if self.ascii_only else "═"

    @property
    def branch(self) -> str:
        return "`-" if self.ascii_only else "└─"

    @property
    def ellipsis(self) -> str:
        return "~" if self.ascii_only else "…"

    @property
    def dot(self) -> str:
        return "|" if self.ascii_only else "·"

    def fit(self, text: str, width: int, align: str = "<") -> str:
        return fit(text, width, align, self.ellipsis)

    def label(self, text: str) -> str:
        """Label text made safe for one line (:func:`sanitize`), and ASCII-escaped on ASCII terminals."""
        clean = sanitize(text)
        return clean.encode("ascii", "backslashreplace").decode("ascii") if self.ascii_only else clean


def bar(ratio: float | None, cells: int, full: str = "█", empty: str = "░") -> str:
    """A usage bar of ``cells`` characters, ``round(ratio × cells)`` of them full; blank-filled when unknown."""
    if ratio is None:
        return " " * cells
    n = min(cells, max(0, round(min(max(ratio, 0.0), 1.0) * cells)))
    return full * n + empty * (cells - n)


def _qualify(st: _Style, cluster: str, name: str, multi: bool) -> str:
    """``cluster/name`` when the snapshot spans several clusters, else ``name`` (already sanitised)."""
    return f"{st.label(cluster)}/{name}" if multi and cluster else name


def _partial_error(snap: StatusSnapshot, section: str, st: _Style) -> list[str]:
    """A note under a section that has rows but whose other query failed (``finished``: 1 h vs total)."""
    return [f"  query failed: {st.label(snap.errors[section])}"] if section in snap.errors else []


def _no_data(snap: StatusSnapshot, section: str, st: _Style) -> str:
    """Why a section is empty: its query failed, its collector is absent or down, or it reports no series."""
    if section in snap.errors:
        return f"query failed: {st.label(snap.errors[section])}"
    name = SECTION_COLLECTOR[section]
    rows = [c for c in snap.collectors if c.collector == name]
    if not rows or sum(c.up for c in rows) == 0:
        down = [w for c in rows for w in c.down_on]
        where = f": down on {', '.join(st.label(w) for w in down[:5])}" if down else ""
        return f"no data (collector {name} not reporting{where})"
    return f"no series (collector {name} is up)"


def _header(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    title = f" {'NOMADE' if st.ascii_only else 'NØMADE'} status "
    left = st.rule * 3
    right = st.rule * max(3, width - display_width(title) - 3)
    when = _time.strftime("%Y-%m-%d %H:%M:%S %z", _time.localtime(snap.time))
    parts = []
    if snap.clusters:
        parts.append(
            ("cluster " if len(snap.clusters) == 1 else "clusters ") + ", ".join(st.label(c) for c in snap.clusters)
        )
    parts += [when, f"prometheus {st.label(snap.prometheus_url)}"]
    return [st.bold(left + title + right), f" {st.dot} ".join(parts)]


def _render_filesystems(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    lines = [st.bold("Filesystems:")]
    rows = snap.filesystems
    if not rows:
        return lines + ["  " + _no_data(snap, "filesystems", st)]
    multi = len(snap.clusters) > 1
    grouped = any(r.node or r.nodes > 1 for r in rows)
    indent = 4 if grouped else 2
    size_w = 23  # "1023.9 GiB / 1023.9 GiB"
    mount_w = min(32, max(12, width // 5))
    type_w = 7
    bar_w = min(40, max(5, width - (indent + mount_w + 1 + type_w + 1 + 2 + 1 + 6 + 2 + size_w)))
    shown = rows
    hidden = 0
    if max_rows and len(rows) > max_rows:
        # keep the fullest filesystems, then show them in the usual grouped order
        keep = sorted(rows, key=lambda r: -(r.used_ratio if r.used_ratio is not None else -1))[:max_rows]
        keep_ids = {id(r) for r in keep}
        shown = [r for r in rows if id(r) in keep_ids]
        hidden = len(rows) - len(shown)
    group = None
    for r in shown:
        if grouped:
            g = (r.cluster, r.node, r.nodes)
            if g != group:
                group = g
                label = (
                    _qualify(st, r.cluster, f"shared ({r.nodes} nodes)", multi)
                    if r.nodes > 1
                    else _qualify(st, r.cluster, st.label(r.node), multi) or "(no node label)"
                )
                lines.append("  " + st.fit(label, width - 2))
        ratio = r.used_ratio
        pct = "  n/a" if ratio is None else f"{ratio * 100:5.1f}%"
        sizes = f"{format_bytes(r.used_bytes)} / {format_bytes(r.size_bytes)}"
        lines.append(
            " " * indent
            + st.fit(st.label(r.mountpoint), mount_w)
            + " "
            + st.dim(st.fit(st.label(r.fstype), type_w))
            + " ["
            + st.by_ratio(bar(ratio, bar_w, st.full, st.empty), ratio)
            + "] "
            + st.by_ratio(fit(pct, 6, ">"), ratio)
            + "  "
            + sizes
        )
    if hidden:
        lines.append(f"  {st.ellipsis} {hidden} more filesystem{'s' if hidden != 1 else ''} less full")
    return lines


def _render_queue(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Queue:")]
    rows = snap.queue
    if not rows:
        return lines + ["  " + _no_data(snap, "queue", st)]
    multi = len(snap.clusters) > 1
    part_w = min(30, max(10, width - 2 - 37 - 16))
    lines.append(
        st.dim("  " + fit("partition", part_w) + f" {'running':>9} {'pending':>9} {'other':>7}" + "  oldest pending")
    )

    def row(name: str, running: float, pending: float, other: float, age: float | None) -> str:
        age_s = format_age(age)
        return (
            "  " + st.fit(name, part_w) + f" {format_count(running):>9} {format_count(pending):>9}"
            f" {format_count(other):>7}  " + (st.yellow(age_s) if age is not None and age >= 86400 else age_s)
        )

    for r in rows:
        lines.append(
            row(
                _qualify(st, r.cluster, st.label(r.partition), multi),
                r.running,
                r.pending,
                r.other,
                r.oldest_pending_age_seconds,
            )
        )
    if len(rows) > 1:
        ages = [r.oldest_pending_age_seconds for r in rows if r.oldest_pending_age_seconds is not None]
        lines.append(
            st.dim(
                row(
                    "total",
                    sum(r.running for r in rows),
                    sum(r.pending for r in rows),
                    sum(r.other for r in rows),
                    max(ages) if ages else None,
                )
            )
        )
    return lines


def _node_state_text(r: NodeRow) -> str:
    """SLURM's compound notation, as scontrol prints it: ``IDLE+DRAIN+NOT_RESPONDING``."""
    return "+".join([(r.state or "?").upper()] + [f.upper() for f in r.flags])


def _render_nodes(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    lines = [st.bold("Nodes:")]
    rows = snap.nodes
    if not rows:
        return lines + ["  " + _no_data(snap, "nodes", st)]
    multi = len(snap.clusters) > 1
    by_state: dict[str, int] = defaultdict(int)
    by_flag: dict[str, int] = defaultdict(int)
    for r in rows:
        by_state[r.state or "unknown"] += 1
        for f in r.flags:
            by_flag[f] += 1
    summary = f"  {len(rows)} node{'s' if len(rows) != 1 else ''}: " + "  ".join(
        f"{st.label(k)} {v}" for k, v in sorted(by_state.items())
    )
    if by_flag:
        summary += f"  {st.dot}  " + "  ".join(f"{st.label(k)} {v}" for k, v in sorted(by_flag.items()))
    lines.append(summary)
    node_w = min(24, max(8, max(display_width(_qualify(st, r.cluster, st.label(r.node), multi)) for r in rows)))
    state_w = min(28, max(10, width - 2 - node_w - 1 - 22 - 12))
    ordered = sorted(rows, key=lambda r: (not r.problem, r.cluster, natural_key(r.node)))
    shown = ordered[:max_rows] if max_rows else ordered
    for r in shown:
        state = st.fit(st.label(_node_state_text(r)), state_w)
        if (r.state or "") in _RED_STATES or _RED_FLAGS.intersection(r.flags):
            state = st.red(state)
        elif r.problem:
            state = st.yellow(state)
        if r.cpus is not None and r.cpus_allocated is not None:
            pct = f" ({r.cpus_allocated / r.cpus * 100:.0f}%)" if r.cpus > 0 else ""
            cpu = f"CPU {r.cpus_allocated:.0f}/{r.cpus:.0f}{pct}"
        else:
            cpu = "CPU ?"
        load = "load -" if r.cpu_load is None else f"load {r.cpu_load:.2f}"
        lines.append(
            "  "
            + st.fit(_qualify(st, r.cluster, st.label(r.node), multi), node_w)
            + " "
            + state
            + " "
            + fit(cpu, 21)
            + " "
            + load
        )
        if r.reason:
            who = f" ({st.label(r.reason_user)})" if r.reason_user else ""
            lines.append(f"    {st.branch} Reason: {st.label(r.reason)}{who}")
    hidden = len(ordered) - len(shown)
    if hidden:
        lines.append(
            f"  {st.ellipsis} {hidden} more node{'s' if hidden != 1 else ''} "
            f"({sum(1 for r in ordered[len(shown) :] if r.problem)} with problems)"
        )
    return lines


def _render_finished(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Finished jobs:")]
    rows = snap.finished
    if not rows:
        return lines + ["  " + _no_data(snap, "finished", st)]
    multi = len(snap.clusters) > 1
    class_w = min(30, max(16, width - 2 - 24 - 10))
    lines.append(st.dim("  " + fit("failure class", class_w) + f" {'last 1h':>10} {'total':>12}"))
    for r in rows:
        name = _qualify(st, r.cluster, st.label(r.failure_class), multi)
        good = r.failure_class.lower() in SUCCESS_CLASSES
        lh = format_count(r.last_hour)
        if not good and r.last_hour is not None and round(r.last_hour) > 0:
            lh = st.yellow(fit(lh, 10, ">"))
        else:
            lh = fit(lh, 10, ">")
        lines.append("  " + st.fit(name, class_w) + " " + lh + f" {format_count(r.total):>12}")
    done = sum(round(r.last_hour) for r in rows if r.last_hour is not None)
    bad = sum(
        round(r.last_hour) for r in rows if r.last_hour is not None and r.failure_class.lower() not in SUCCESS_CLASSES
    )
    if done:
        lines.append(f"  not successful in the last hour: {bad / done * 100:.1f}% ({bad:,} of {done:,})")
    return lines + _partial_error(snap, "finished", st)


def _render_collectors(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Collectors:")]
    rows = snap.collectors
    if not rows:
        return lines + ["  no data (no nomade exporter reporting nomade_collector_up)"]
    multi = len(snap.clusters) > 1
    name_w = min(28, max(16, max(display_width(_qualify(st, r.cluster, st.label(r.collector), multi)) for r in rows)))
    for r in rows:
        ok = f"up {r.up}/{r.targets}"
        ok = (
            st.green(fit(ok, 11))
            if r.up == r.targets and r.targets
            else (st.red(fit(f"DOWN {r.up}/{r.targets}", 11)) if r.up == 0 else st.yellow(fit(ok, 11)))
        )
        if r.last_success_oldest is None:
            last = "never succeeded" if r.up == 0 else "last success unknown"
        elif (
            r.last_success_newest is not None
            and r.targets > 1
            and (r.last_success_newest - r.last_success_oldest) >= 60
        ):
            last = (
                f"last success {format_age(snap.time - r.last_success_newest)}"
                f"-{format_age(snap.time - r.last_success_oldest)} ago"
            )
        else:
            last = f"last success {format_age(snap.time - r.last_success_oldest)} ago"
        line = "  " + st.fit(_qualify(st, r.cluster, st.label(r.collector), multi), name_w) + " " + ok + " " + last
        if r.down_on:
            more = f" +{len(r.down_on) - 5}" if len(r.down_on) > 5 else ""
            line += "  down on: " + ", ".join(st.label(w) for w in r.down_on[:5]) + more
        lines.append(line)
    return lines


def render(
    snapshot: StatusSnapshot, width: int = 100, color: bool = False, *, max_rows: int = 40, ascii_only: bool = False
) -> str:
    """Lay the snapshot out as text for a terminal (pure: no I/O, no clock).

    Args:
        snapshot: what :func:`gather` returned (or a hand-built one).
        width: terminal columns; no output line is wider (lines are cut with an ellipsis). At least 40 is used.
        color: emit ANSI SGR colours (usage bands, down/drain states).
        max_rows: at most this many filesystem and node rows (fullest filesystems and problem nodes kept
            first); 0 shows all.
        ascii_only: use ASCII glyphs for bars and rules (terminals that cannot show UTF-8).

    Returns:
        The screen, lines joined by newlines, ending with a newline.

    """
    width = max(40, int(width))
    st = _Style(color, ascii_only)
    sections = [
        _header(snapshot, width, st),
        _render_filesystems(snapshot, width, st, max_rows),
        _render_queue(snapshot, width, st),
        _render_nodes(snapshot, width, st, max_rows),
        _render_finished(snapshot, width, st),
        _render_collectors(snapshot, width, st),
    ]
    lines: list[str] = []
    for i, sec in enumerate(sections):
        if i:
            lines.append("")
        lines.extend(sec)
    text = "\n".join(_clip_line(line, width, st.ellipsis) for line in lines) + "\n"
    if ascii_only:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text
