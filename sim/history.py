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
import queue as queue_module
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

MIN_CATCH_UP_STEP = 15.0
"""Shortest step run in several workers: :data:`nomade.sim.world.MIN_CATCH_UP_STEP` (the simulated runners'
cache lifetime); shorter steps run in one."""

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
        self.series_seen: set[str] = set()
        """Rendered ``name{labels}`` of every series written (strings, not hashes: workers' sets are merged and
        string hashes differ between processes)."""

    def _render_prefix(self, name: str, labels: Mapping[str, str]) -> str | None:
        if self.drop is not None and self.drop(name, labels):
            return None
        parts = [f'{k}="{escape_label_value(v)}"' for k, v in labels.items() if k not in self.extra]
        if self._extra_text:
            parts.append(self._extra_text)
        prefix = f"{name}{{{','.join(parts)}}} " if parts else f"{name} "
        self.series_seen.add(prefix)
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
        workers: worker processes that generated it (1: this process).
        generate_s: wall seconds spent simulating, collecting and writing (with several workers: until the last
            worker ended, its promtool runs included).
        promtool_s: wall seconds spent waiting for promtool after generation ended (0 with several workers:
            each waits for its own runs).
        promtool_total_s: sum of every promtool run's wall time (they overlap generation; measured to within
            one step).
        promtool_cpu_s: CPU seconds (user + system) of the promtool runs.
        wall_s: the whole run.

    """

    start: float
    end: float
    step: float
    workers: int = 1
    steps: int = 0
    series: int = 0
    samples: int = 0
    chunks: int = 0
    generate_s: float = 0.0
    promtool_s: float = 0.0
    promtool_total_s: float = 0.0
    promtool_cpu_s: float = 0.0
    wall_s: float = 0.0


def _promtool_exe(promtool: str) -> str:
    """The promtool executable's path; HistoryError when it cannot be found."""
    exe = shutil.which(promtool)
    if exe is None:
        raise HistoryError(
            f"{promtool} not found: install Prometheus' promtool (Debian/Ubuntu: apt-get install prometheus)"
        )
    return exe


class _Promtool:
    """promtool runs of finished chunk files, at most :data:`MAX_PROMTOOL_JOBS` at once."""

    def __init__(self, promtool: str, tsdb_dir: Path, keep_files: bool, max_jobs: int = MAX_PROMTOOL_JOBS) -> None:
        self.exe = _promtool_exe(promtool)
        self.tsdb_dir = tsdb_dir
        self.keep_files = keep_files
        self.max_jobs = max_jobs
        self.running: list[tuple[subprocess.Popen[bytes], Path, float, object]] = []
        self.total_s = 0.0

    def poll(self) -> None:
        """Reap the runs that have ended (so their wall time is measured to within one call)."""
        for entry in [e for e in self.running if e[0].poll() is not None]:
            self._reap(entry)

    def submit(self, path: Path) -> None:
        self.poll()
        while len(self.running) >= self.max_jobs:
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


def default_workers() -> int:
    """History workers by default: the CPUs this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_ranges(start: float, step: float, n: int, workers: int) -> list[tuple[int, int]]:
    """Split the step indices ``0 .. n`` into at most ``workers`` contiguous ranges ``(first, last)``.

    Range boundaries fall on 2 h block boundaries (:func:`chunk_index`), so no two workers write the same
    block window; ranges hold about equal numbers of steps (a range is closed once it reaches its share).

    Returns:
        Inclusive ``(first, last)`` index pairs in time order, covering ``0 .. n`` exactly once.

    """
    chunks: list[list[int]] = []  # [first, last] step index of each block window
    for i in range(n + 1):
        k = chunk_index(start + i * step)
        if chunks and chunk_index(start + chunks[-1][0] * step) == k:
            chunks[-1][1] = i
        else:
            chunks.append([i, i])
    workers = max(1, min(workers, len(chunks)))
    ranges: list[tuple[int, int]] = []
    first = 0
    for j, (_, last) in enumerate(chunks):
        left_chunks = len(chunks) - j - 1
        left_workers = workers - len(ranges) - 1
        share = (n + 1 - first) / (workers - len(ranges))
        if left_workers > 0 and (last - first + 1 >= share or left_chunks == left_workers):
            ranges.append((first, last))
            first = last + 1
    ranges.append((first, n))
    return ranges


@dataclass
class _Range:
    """One worker's part of a history (pickled to a spawned process)."""

    index: int
    seed: int
    start: float
    step: float
    first: int
    last: int
    tsdb_dir: Path
    workdir: Path
    om_dir: Path
    instance: str
    job: str
    promtool: str
    world_factory: Callable[[int, float, Path], object] | None
    keep_files: bool
    max_promtool: int


@dataclass
class _RangeDone:
    """Figures of one range: as :class:`HistoryResult`'s, plus the distinct series written."""

    steps: int = 0
    samples: int = 0
    series: set[str] = field(default_factory=set)
    chunks: int = 0
    generate_s: float = 0.0
    promtool_s: float = 0.0
    promtool_total_s: float = 0.0
    promtool_cpu_s: float = 0.0


def _run_range(r: _Range, progress: Callable[[float, int], None] | None = None) -> _RangeDone:
    """Generate steps ``r.first .. r.last`` (a fresh world, caught up when ``r.first > 0``) and backfill them."""
    t0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    runner = _Promtool(r.promtool, r.tsdb_dir, r.keep_files, r.max_promtool)
    trees: str | None = None
    if r.world_factory is None:
        from .world import SimWorld

        trees = _tmpfs_dir()
        world = SimWorld(r.seed, r.start, r.workdir, tree_dir=Path(trees) if trees else None, sequential=True)
    else:
        world = r.world_factory(r.seed, r.start, r.workdir)
    writer = OpenMetricsWriter({"job": r.job, "instance": r.instance})
    done = _RangeDone()
    try:
        with _gc_tuned():
            if r.first > 0:
                earlier = [r.start + i * r.step for i in range(r.first)]
                catch_up = getattr(world, "catch_up", None)
                if catch_up is not None:
                    catch_up(earlier)
                else:  # a world without memory between scrapes (test doubles)
                    world.advance(earlier[-1])  # type: ignore[attr-defined]
            current: int | None = None
            for i in range(r.first, r.last + 1):
                t = r.start + i * r.step
                k = chunk_index(t)
                if current is not None and k != current:
                    _flush(writer, r.om_dir, current, runner)
                    done.chunks += 1
                current = k
                world.advance(t)  # type: ignore[attr-defined]
                writer.add(world.collect(), t)  # type: ignore[attr-defined]
                done.steps += 1
                if runner.running:
                    runner.poll()
                if progress is not None:
                    progress(t, writer.samples)
            if current is not None:
                _flush(writer, r.om_dir, current, runner)
                done.chunks += 1
        done.generate_s = time.monotonic() - t0
        t_wait = time.monotonic()
        runner.drain()
        done.promtool_s = time.monotonic() - t_wait
    except BaseException:
        runner.abort()
        raise
    finally:
        world.close()  # type: ignore[attr-defined]
        if trees is not None:
            shutil.rmtree(trees, ignore_errors=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.promtool_total_s = runner.total_s
    done.promtool_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    done.samples = writer.samples
    done.series = writer.series_seen
    return done


def _range_main(r: _Range, queue: Any) -> None:
    """Body of a worker process: run its range, report progress, the result or the error on ``queue``."""
    # SIGTERM from the parent (another worker failed): unwind, so promtool runs are killed and trees removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    last = [0.0]

    def progress(t: float, samples: int) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            queue.put(("progress", r.index, t, samples))

    try:
        done = _run_range(r, progress)
    except BaseException as exc:
        queue.put(("error", r.index, f"{type(exc).__name__}: {exc}" if not isinstance(exc, HistoryError) else str(exc)))
        return
    queue.put(("done", r.index, done))


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
    workers: int = 1,
) -> HistoryResult:
    """Simulate ``[start, end]`` every ``step`` seconds and backfill it into ``tsdb_dir``.

    Args:
        seed: the simulation's seed.
        start: Unix seconds where the simulation begins (its warm-up runs before it).
        end: Unix seconds of the last step (``start`` plus a whole number of steps, or less than a step after).
        step: seconds between scrapes (> 0).
        tsdb_dir: Prometheus TSDB directory the blocks are created in (created when missing).
        workdir: the world's working directory (rendered trees, collector state); the OpenMetrics chunks are
            written under ``workdir/openmetrics``. With several workers, the one simulating the end of the
            history works in ``workdir`` (its accounting store is the history's) and the others in
            ``workdir/part-<k>``.
        instance: the ``instance`` label of the live scrape (``host:port`` of ``nomade sim serve``).
        job: the ``job`` label of the live scrape.
        promtool: promtool executable (name on PATH or path).
        world_factory: ``(seed, start, workdir) -> world`` with ``advance(t)``, ``collect()`` and ``close()``,
            and optionally ``catch_up(times)`` (default :class:`nomade.sim.world.SimWorld`, its rendered trees in
            a private ``/dev/shm`` directory removed at the end, when ``/dev/shm`` is writable). With
            ``workers > 1`` it is pickled to the worker processes: a module-level callable.
        keep_files: keep the OpenMetrics chunk files after promtool read them.
        progress: called with ``(t, samples so far)``: after each step with one worker; with several, about
            once a second, ``t`` being the start plus the simulated span all workers have done.
        workers: processes simulating consecutive parts of the span at once (at most one per 2 h block). Each
            builds its own world and catches it up to its first step (:meth:`nomade.sim.world.SimWorld.catch_up`:
            the collectors with their own polling interval replayed over the earlier steps, about 10 ms per step),
            so the samples are those of one uninterrupted run. 1 (default) runs in this process; steps shorter
            than :data:`MIN_CATCH_UP_STEP` always do.

    Returns:
        The run's figures.

    Raises:
        HistoryError: bad span, step or worker count, promtool missing, a promtool run that failed (its stderr
            included), or a worker that failed or died.

    """
    if not step > 0:
        raise HistoryError(f"step must be > 0, got {step}")
    if not end >= start:
        raise HistoryError(f"end ({end}) is before start ({start})")
    if workers < 1:
        raise HistoryError(f"workers must be >= 1, got {workers}")
    t_wall = time.monotonic()
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir)
    om_dir = workdir / "openmetrics"
    om_dir.mkdir(parents=True, exist_ok=True)
    _promtool_exe(promtool)  # fail before any worker starts
    n = int(math.floor((end - start) / step + 1e-9))
    if step < MIN_CATCH_UP_STEP:
        workers = 1  # a worker starting part-way could not reproduce the runners' cache hits
    ranges = plan_ranges(start, step, n, workers)
    parts = [
        _Range(
            index=j,
            seed=seed,
            start=start,
            step=step,
            first=first,
            last=last,
            tsdb_dir=tsdb_dir,
            workdir=workdir if j == len(ranges) - 1 else workdir / f"part-{j}",
            om_dir=om_dir,
            instance=instance,
            job=job,
            promtool=promtool,
            world_factory=world_factory,
            keep_files=keep_files,
            max_promtool=MAX_PROMTOOL_JOBS if len(ranges) == 1 else 1,
        )
        for j, (first, last) in enumerate(ranges)
    ]
    result = HistoryResult(start=start, end=end, step=step, workers=len(parts))
    if len(parts) == 1:
        dones = [_run_range(parts[0], progress)]
        result.generate_s, result.promtool_s = dones[0].generate_s, dones[0].promtool_s
    else:
        # each worker waits for its own promtool runs: that wait is inside the wall time, promtool_s stays 0
        dones, result.generate_s = _run_parallel(parts, progress)
    series: set[str] = set()
    for d in dones:
        result.steps += d.steps
        result.samples += d.samples
        result.chunks += d.chunks
        result.promtool_total_s += d.promtool_total_s
        result.promtool_cpu_s += d.promtool_cpu_s
        series |= d.series
    result.series = len(series)
    result.wall_s = time.monotonic() - t_wall
    return result


def _run_parallel(parts: list[_Range], progress: Callable[[float, int], None] | None) -> tuple[list[_RangeDone], float]:
    """Run each range in a spawned process; returns the ranges' figures in order and the wall time."""
    import multiprocessing

    t0 = time.monotonic()
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_range_main, args=(p, queue), name=f"nomade-history-{p.index}", daemon=True) for p in parts
    ]
    results: dict[int, _RangeDone] = {}
    at: dict[int, tuple[float, int]] = {}
    try:
        for proc in procs:
            proc.start()
        while len(results) < len(parts):
            try:
                msg = queue.get(timeout=1.0)
            except queue_module.Empty:  # check that no worker died without a word
                for p, proc in zip(parts, procs, strict=True):
                    if p.index not in results and not proc.is_alive() and proc.exitcode not in (0, None):
                        raise HistoryError(f"history worker {p.index} died (exit code {proc.exitcode})") from None
                continue
            kind, idx = msg[0], msg[1]
            p = parts[idx]
            if kind == "error":
                raise HistoryError(f"history worker {idx}: {msg[2]}")
            if kind == "done":
                results[idx] = msg[2]
                at[idx] = ((p.last - p.first) * p.step, msg[2].samples)
            else:
                at[idx] = (msg[2] - (p.start + p.first * p.step), msg[3])
            if progress is not None:  # simulated seconds done by all workers, samples written by all
                progress(parts[0].start + sum(d for d, _ in at.values()), sum(n for _, n in at.values()))
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            if proc.pid is not None:  # started
                proc.join(timeout=30)
    return [results[p.index] for p in parts], time.monotonic() - t0


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


def _flush(writer: OpenMetricsWriter, om_dir: Path, k: int, runner: _Promtool) -> None:
    path = om_dir / f"chunk-{k * BLOCK_SECONDS}.om"
    writer.write(path)
    runner.submit(path)
