r"""Days of simulated history, written as OpenMetrics and backfilled into a Prometheus TSDB with promtool.

One :class:`~nomade.sim.world.SimWorld` is stepped from ``start = end - days * 86400`` to ``end`` every ``step``
seconds; at each step :meth:`SimWorld.collect` gives the scrape the live exporter would have served at that
simulated time, and :class:`OpenMetricsWriter` appends it, with timestamps, to the current chunk. A chunk covers one
2 h window aligned like Prometheus' blocks (``[k * 7200, (k + 1) * 7200)`` s from the epoch: the TSDB's default
block range, ``tsdb/db.go`` ``DefaultBlockDuration``) and is written as one file in which every metric family is
contiguous, because promtool's OpenMetrics parser refuses a family that appears twice (``model/textparse/
openmetricsparse.go``: "second TYPE line"); each file is then handed to
``promtool tsdb create-blocks-from openmetrics FILE TSDB_DIR`` (argv list, never a shell), at most two at a time
while the next chunk is generated.

Format (OpenMetrics 1.0, https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md):
``# HELP``/``# TYPE`` per family; counters as family ``name`` with samples ``name_total``; ``*_info`` gauges of
:class:`~nomade.exporter.metrics.MetricSet` as ``info`` families (``# TYPE name info``, samples ``name_info``);
histograms as ``_bucket``/``_sum``/``_count``; label values escaped (``\\``, ``\"``, ``\n``); sample lines
``name{labels} value timestamp`` with the timestamp in seconds; ``# EOF`` last.

Labels: every series gets the ``job`` and ``instance`` labels the live scrape attaches (``job="nomade"``, the
default ``exporter_job`` of :class:`nomade.alerting.config.MonitoringConfig`; ``instance`` = the live exporter's
``host:port``), so backfilled and live samples are one series. The demo's cardinality rule
(:data:`PER_CORE_DROP_REGEX`, the same regex as the live scrape's ``metric_relabel_configs``) drops per-core CPU
series before writing.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import Metric

log = logging.getLogger("nomade.sim.history")

BLOCK_SECONDS = 7200
"""Prometheus' default block range (2 h); chunks are aligned to it from the Unix epoch."""

DEFAULT_DAYS = 2.0
DEFAULT_STEP = 120.0
DEFAULT_JOB = "nomade"
"""``job`` label of the exporter's series: MonitoringConfig.exporter_job's default (alerting/config.py)."""

PER_CORE_FAMILIES = ("nomade_cpu_seconds_total", "nomade_cpu_core_busy_ratio", "nomade_cpu_guest_seconds_total")
"""Sample names whose per-core series the demo drops (the ``cpu`` label is a core number)."""

PER_CORE_DROP_REGEX = "(" + "|".join(PER_CORE_FAMILIES) + ");[0-9]+"
"""Regex over ``__name__;cpu`` (Prometheus ``relabel_config`` source_labels ``[__name__, cpu]``, separator ``;``,
fully anchored like every relabel regex): the demo's ``metric_relabel_configs`` drop rule, applied identically by
:func:`per_core_dropped` to the backfilled history. A CPU label other than a core number (an aggregate) is kept."""

_DROP_RE = re.compile(PER_CORE_DROP_REGEX)

MAX_PROMTOOL_JOBS = 2

GC_THRESHOLD = (100_000, 50, 100)
"""Cyclic-GC thresholds while history is generated (CPython's default is ``(700, 10, 10)``). A step allocates
hundreds of thousands of short-lived objects (parsed records, label dicts, samples), almost none in reference
cycles; at the default gen-0 threshold the collector ran hundreds of times a step and cost a sixth of the CPU
time. Long-lived objects (the simulation, the collectors) are frozen out of collection before the loop
(:func:`gc.freeze`)."""


class HistoryError(RuntimeError):
    """The history cannot be generated or backfilled (promtool missing or failing, bad arguments)."""


def per_core_dropped(sample_name: str, labels: Mapping[str, str]) -> bool:
    """Whether the demo's relabel rule drops this sample (see :data:`PER_CORE_DROP_REGEX`)."""
    if sample_name not in PER_CORE_FAMILIES:
        return False
    return _DROP_RE.fullmatch(f"{sample_name};{labels.get('cpu', '')}") is not None


def escape_label_value(value: str) -> str:
    """A label value escaped for the exposition formats: backslash, double quote and line feed."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    """A sample value as OpenMetrics text: ``repr`` of the float, with ``+Inf``, ``-Inf`` and ``NaN`` spelled out."""
    r = repr(float(v))
    if r[-1] in "fn":  # inf, -inf, nan
        if v != v:
            return "NaN"
        return "+Inf" if v > 0 else "-Inf"
    return r


def chunk_index(t: float) -> int:
    """Index of the 2 h block window holding time ``t`` (Unix seconds)."""
    return int(math.floor(t / BLOCK_SECONDS))


def _om_family(m: Metric) -> tuple[str, str]:
    """``(OpenMetrics family name, type)`` of a prometheus_client family."""
    if m.type == "gauge" and m.name.endswith("_info"):
        return m.name[: -len("_info")], "info"  # MetricSet exposes info metrics as gauges named *_info
    if m.type in ("counter", "gauge", "histogram", "summary", "info", "stateset", "gaugehistogram"):
        return m.name, m.type
    return m.name, "unknown"


_GROUPED_TYPES = ("histogram", "summary", "gaugehistogram")
"""Families whose samples of one child (buckets, sum, count at one time) form one OpenMetrics MetricPoint."""
_GROUP_EXCLUDED = ("le", "quantile")


class _Series:
    """One series of a chunk: its rendered ``name{labels} `` and its samples (compact arrays)."""

    __slots__ = ("prefix", "times", "values")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.values = array("d")
        self.times = array("d")


class _Group:
    """One child of a histogram or summary: its sample lines, already rendered, in time order."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = []


@dataclass
class _Family:
    header: str
    grouped: bool
    members: list[_Series | _Group] = field(default_factory=list)


class OpenMetricsWriter:
    """Buffer timestamped scrapes and write them as one OpenMetrics file, grouped as the format requires.

    Args:
        extra_labels: labels added to every series (``job``, ``instance``); they replace a sample's own label of
            the same name, as Prometheus' target labels do without ``honor_labels``.
        drop: ``(sample name, labels) -> bool``; True drops the sample (default :func:`per_core_dropped`; None keeps
            everything).

    OpenMetrics requires every family to be one contiguous block and, inside it, every metric (label set; for
    histograms and summaries the label set without ``le``/``quantile``) to be contiguous with its timestamps in
    increasing order. The writer therefore keeps, per chunk, one entry per series: its rendered
    ``name{labels} `` prefix (computed once, when the series first appears in the chunk) and two arrays of values
    and timestamps, so a sample costs a dict lookup and two appends. :meth:`write` renders the text and empties
    the buffer (series of ended jobs do not accumulate across chunks).

    """

    def __init__(
        self,
        extra_labels: Mapping[str, str] | None = None,
        drop: Callable[[str, Mapping[str, str]], bool] | None = per_core_dropped,
    ) -> None:
        self.extra = dict(extra_labels or {})
        self._extra_text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in self.extra.items())
        self.drop = drop
        self._families: dict[str, _Family] = {}
        self._series: dict[tuple, _Series | None] = {}
        self._groups: dict[tuple, _Group] = {}
        self._prefix: dict[tuple, str | None] = {}
        self._ts_text: dict[float, str] = {}
        self.samples = 0
        self.series_seen: set[int] = set()

    def _render_prefix(self, name: str, labels: Mapping[str, str]) -> str | None:
        if self.drop is not None and self.drop(name, labels):
            return None
        parts = [f'{k}="{escape_label_value(v)}"' for k, v in labels.items() if k not in self.extra]
        if self._extra_text:
            parts.append(self._extra_text)
        prefix = f"{name}{{{','.join(parts)}}} " if parts else f"{name} "
        self.series_seen.add(hash(prefix))
        return prefix

    def add(self, families: Iterable[Metric], timestamp: float) -> int:
        """Append one scrape taken at ``timestamp`` (Unix seconds, not before the previous one).

        Returns:
            The number of samples kept (after the drop rule).

        """
        ts = float(timestamp)
        if ts not in self._ts_text:
            self._ts_text[ts] = str(int(ts)) if ts.is_integer() else repr(ts)
        series = self._series
        render = self._render_prefix
        kept = 0
        for m in families:
            om_name, om_type = _om_family(m)
            fam = self._families.get(om_name)
            if fam is None:
                fam = self._families[om_name] = _Family(
                    f"# HELP {om_name} {_escape_help(m.documentation)}\n# TYPE {om_name} {om_type}\n",
                    om_type in _GROUPED_TYPES,
                )
            if fam.grouped:
                kept += self._add_grouped(fam, om_name, m, ts)
                continue
            members = fam.members
            for s in m.samples:
                key = (s.name, *s.labels.items())
                entry = series.get(key, False)
                if entry is False:
                    prefix = render(s.name, s.labels)
                    entry = series[key] = _Series(prefix) if prefix is not None else None
                    if entry is not None:
                        members.append(entry)
                if entry is None:
                    continue
                entry.values.append(s.value)
                entry.times.append(ts)
                kept += 1
        self.samples += kept
        return kept

    def _add_grouped(self, fam: _Family, om_name: str, m: Metric, ts: float) -> int:
        tstext = " " + self._ts_text[ts] + "\n"
        kept = 0
        for s in m.samples:
            if s.name.endswith("_created"):
                continue  # prometheus_client's creation timestamps; NØMADE families have none
            key = (s.name, *s.labels.items())
            prefix = self._prefix.get(key, "")
            if prefix == "":
                prefix = self._prefix[key] = self._render_prefix(s.name, s.labels)
            if prefix is None:
                continue
            gkey = (om_name, *((k, v) for k, v in s.labels.items() if k not in _GROUP_EXCLUDED))
            group = self._groups.get(gkey)
            if group is None:
                group = self._groups[gkey] = _Group()
                fam.members.append(group)
            group.lines.append(prefix + format_value(s.value) + tstext)
            kept += 1
        return kept

    def write(self, path: Path) -> int:
        """Write the buffered families to ``path`` (``# EOF`` last) and empty the buffer; returns bytes written."""
        n = 0
        tsmap = self._ts_text
        with open(path, "w", encoding="utf-8") as f:
            for fam in self._families.values():
                if not fam.members:
                    continue
                n += f.write(fam.header)
                for member in fam.members:
                    if isinstance(member, _Group):
                        n += f.write("".join(member.lines))
                        continue
                    p = member.prefix
                    n += f.write(
                        "".join(
                            [
                                f"{p}{format_value(v)} {tsmap[t]}\n"
                                for v, t in zip(member.values, member.times, strict=True)
                            ]
                        )
                    )
            n += f.write("# EOF\n")
        self._families.clear()
        self._series.clear()
        self._groups.clear()
        self._prefix.clear()
        self._ts_text.clear()
        return n


@dataclass
class HistoryResult:
    """Figures of one history run.

    Attributes:
        start, end, step: the simulated span and step (Unix seconds, seconds).
        steps: scrapes generated.
        series: distinct series written (after the drop rule, job/instance included).
        samples: samples written.
        chunks: OpenMetrics files (2 h windows) backfilled.
        generate_s: wall seconds spent simulating, collecting and writing.
        promtool_s: wall seconds spent waiting for promtool after generation ended.
        promtool_total_s: sum of every promtool run's wall time (they overlap generation; measured to within
            one step).
        promtool_cpu_s: CPU seconds (user + system) of the promtool runs.
        wall_s: the whole run.

    """

    start: float
    end: float
    step: float
    steps: int = 0
    series: int = 0
    samples: int = 0
    chunks: int = 0
    generate_s: float = 0.0
    promtool_s: float = 0.0
    promtool_total_s: float = 0.0
    promtool_cpu_s: float = 0.0
    wall_s: float = 0.0


class _Promtool:
    """promtool runs of finished chunk files, at most :data:`MAX_PROMTOOL_JOBS` at once."""

    def __init__(self, promtool: str, tsdb_dir: Path, keep_files: bool) -> None:
        exe = shutil.which(promtool)
        if exe is None:
            raise HistoryError(
                f"{promtool} not found: install Prometheus' promtool (Debian/Ubuntu: apt-get install prometheus)"
            )
        self.exe = exe
        self.tsdb_dir = tsdb_dir
        self.keep_files = keep_files
        self.running: list[tuple[subprocess.Popen[bytes], Path, float, object]] = []
        self.total_s = 0.0

    def poll(self) -> None:
        """Reap the runs that have ended (so their wall time is measured to within one call)."""
        for entry in [e for e in self.running if e[0].poll() is not None]:
            self._reap(entry)

    def submit(self, path: Path) -> None:
        self.poll()
        while len(self.running) >= MAX_PROMTOOL_JOBS:
            self._reap(self.running[0])
        err = tempfile.TemporaryFile()
        argv = [self.exe, "tsdb", "create-blocks-from", "openmetrics", str(path), str(self.tsdb_dir)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        self.running.append((proc, path, time.monotonic(), err))

    def _reap(self, entry: tuple[subprocess.Popen[bytes], Path, float, object]) -> None:
        proc, path, t0, err = entry
        rc = proc.wait()
        self.total_s += time.monotonic() - t0
        self.running.remove(entry)
        err.seek(0)  # type: ignore[attr-defined]
        text = err.read().decode(errors="replace")  # type: ignore[attr-defined]
        err.close()  # type: ignore[attr-defined]
        if rc != 0:
            self.abort()
            raise HistoryError(
                f"promtool tsdb create-blocks-from openmetrics {path} {self.tsdb_dir} exited with {rc}: "
                f"{text.strip()[-2000:]}"
            )
        if not self.keep_files:
            path.unlink(missing_ok=True)

    def drain(self) -> None:
        while self.running:
            self._reap(self.running[0])

    def abort(self) -> None:
        for proc, _, _, err in self.running:
            proc.kill()
            proc.wait()
            err.close()  # type: ignore[attr-defined]
        self.running.clear()


def copy_sqlite(src: Path, dst: Path) -> None:
    """Copy a SQLite database (WAL included) with SQLite's online backup API; ``dst`` is replaced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    with sqlite3.connect(src) as s, sqlite3.connect(dst) as d:
        s.backup(d)
    s.close()
    d.close()


def generate_history(
    seed: int,
    start: float,
    end: float,
    step: float,
    tsdb_dir: Path,
    workdir: Path,
    *,
    instance: str,
    job: str = DEFAULT_JOB,
    promtool: str = "promtool",
    world_factory: Callable[[int, float, Path], object] | None = None,
    keep_files: bool = False,
    progress: Callable[[float, int], None] | None = None,
) -> HistoryResult:
    """Simulate ``[start, end]`` every ``step`` seconds and backfill it into ``tsdb_dir``.

    Args:
        seed: the simulation's seed.
        start: Unix seconds where the simulation begins (its warm-up runs before it).
        end: Unix seconds of the last step (``start`` plus a whole number of steps, or less than a step after).
        step: seconds between scrapes (> 0).
        tsdb_dir: Prometheus TSDB directory the blocks are created in (created when missing).
        workdir: the world's working directory (rendered trees, collector state); the OpenMetrics chunks are
            written under ``workdir/openmetrics``.
        instance: the ``instance`` label of the live scrape (``host:port`` of ``nomade sim serve``).
        job: the ``job`` label of the live scrape.
        promtool: promtool executable (name on PATH or path).
        world_factory: ``(seed, start, workdir) -> world`` with ``advance(t)``, ``collect()`` and ``close()``
            (default :class:`nomade.sim.world.SimWorld`, its rendered trees in a private ``/dev/shm`` directory
            removed at the end, when ``/dev/shm`` is writable).
        keep_files: keep the OpenMetrics chunk files after promtool read them.
        progress: called after each step with ``(t, samples so far)``.

    Returns:
        The run's figures.

    Raises:
        HistoryError: bad span or step, promtool missing, or a promtool run that failed (its stderr included).

    """
    if not step > 0:
        raise HistoryError(f"step must be > 0, got {step}")
    if not end >= start:
        raise HistoryError(f"end ({end}) is before start ({start})")
    t_wall = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    om_dir = Path(workdir) / "openmetrics"
    om_dir.mkdir(parents=True, exist_ok=True)
    runner = _Promtool(promtool, tsdb_dir, keep_files)
    trees: str | None = None
    if world_factory is None:
        from .world import SimWorld

        trees = _tmpfs_dir()
        world = SimWorld(seed, start, Path(workdir), tree_dir=Path(trees) if trees else None, sequential=True)
    else:
        world = world_factory(seed, start, Path(workdir))
    result = HistoryResult(start=start, end=end, step=step)
    writer = OpenMetricsWriter({"job": job, "instance": instance})
    try:
        current: int | None = None
        n = int(math.floor((end - start) / step + 1e-9))
        with _gc_tuned():
            for i in range(n + 1):
                t = start + i * step
                k = chunk_index(t)
                if current is not None and k != current:
                    _flush(writer, om_dir, current, runner, result)
                current = k
                world.advance(t)  # type: ignore[attr-defined]
                writer.add(world.collect(), t)  # type: ignore[attr-defined]
                result.steps += 1
                if runner.running:
                    runner.poll()
                if progress is not None:
                    progress(t, writer.samples)
        if current is not None:
            _flush(writer, om_dir, current, runner, result)
        result.generate_s = time.monotonic() - t_wall
        t_wait = time.monotonic()
        runner.drain()
        result.promtool_s = time.monotonic() - t_wait
    except BaseException:
        runner.abort()
        raise
    finally:
        world.close()  # type: ignore[attr-defined]
        if trees is not None:
            shutil.rmtree(trees, ignore_errors=True)
    result.promtool_total_s = runner.total_s
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.promtool_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result.samples = writer.samples
    result.series = len(writer.series_seen)
    result.wall_s = time.monotonic() - t_wall
    return result


@contextlib.contextmanager
def _gc_tuned() -> Iterator[None]:
    """Within the block: :data:`GC_THRESHOLD` and the objects alive at entry frozen; both restored at exit.

    Objects are unfrozen at exit only when none were frozen at entry (a caller's own freeze is left alone).
    """
    before = gc.get_threshold()
    was_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not was_frozen:
            gc.unfreeze()


def _tmpfs_dir() -> str | None:
    """A private directory on ``/dev/shm`` for the rendered trees (None when there is no writable tmpfs there)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
        return None
    try:
        return tempfile.mkdtemp(prefix="nomade-sim-", dir=shm)
    except OSError:
        return None


def _flush(writer: OpenMetricsWriter, om_dir: Path, k: int, runner: _Promtool, result: HistoryResult) -> None:
    path = om_dir / f"chunk-{k * BLOCK_SECONDS}.om"
    writer.write(path)
    result.chunks += 1
    runner.submit(path)
