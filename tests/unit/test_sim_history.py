"""The history writer of the simulated cluster (nomade.sim.history): OpenMetrics text, chunks, promtool runs.

The written files are read back with prometheus_client's OpenMetrics parser where it can (it enforces one
contiguous block per family, contiguous metrics with increasing timestamps, ``_total``/``_info`` suffixes and
``# EOF``; it rejects a histogram with several timestamps, a limitation of its ``_check_histogram``), with a small
line reader that checks the same grouping rules otherwise, and, when installed, with promtool itself. Expected
values are the values that were added, never a copy of the writer's output.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from nomade.exporter.metrics import MetricSet, MetricSpec
from nomade.sim.history import (
    BLOCK_SECONDS,
    PER_CORE_DROP_REGEX,
    HistoryError,
    OpenMetricsWriter,
    chunk_index,
    format_value,
    generate_history,
    per_core_dropped,
    plan_ranges,
)

REPO = Path(__file__).resolve().parents[2]

SPECS = (
    MetricSpec("nomade_test_jobs", "gauge", "Jobs.", ("state",)),
    MetricSpec("nomade_test_done_total", "counter", "Done.", ("partition",)),
    MetricSpec("nomade_test_build_info", "info", "Build.", ("version",)),
    MetricSpec("nomade_test_eff", "histogram", "Efficiency.", ("partition",), "ratio"),
    MetricSpec("nomade_cpu_seconds_total", "counter", "CPU.", ("cpu", "mode"), "seconds"),
)


def scrape(t: float, label: str = "a") -> list:
    """A scrape built through the exporter's own MetricSet, values derived from ``t``."""
    ms = MetricSet(SPECS)
    ms.add("nomade_test_jobs", t / 10, state="running")
    ms.add("nomade_test_jobs", 3, state=label)
    ms.add("nomade_test_done_total", t, partition="cpu")
    ms.info("nomade_test_build_info", version="1.2")
    ms.histogram("nomade_test_eff", [(0.5, 1.0), (1.0, 3.0), (math.inf, 4.0)], 2.5, 4.0, partition="cpu")
    ms.add("nomade_cpu_seconds_total", t, cpu="0", mode="user")
    ms.add("nomade_cpu_seconds_total", t, cpu="1", mode="user")
    return ms.families()


def parse(path: Path) -> dict:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+) (\S+)$")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def read_om(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float, float]]]]:
    """``{family: (type, [(sample name, labels, value, timestamp)])}``, asserting the grouping rules: one TYPE
    line per family, its samples right after it, each metric (labels without ``le``) contiguous and in time order."""
    fams: dict[str, tuple[str, list]] = {}
    current = None
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("# HELP"):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in fams, f"family {name} twice"
            fams[name] = (typ, [])
            current = name
            continue
        m = _LINE.match(line)
        assert m and current is not None and m.group(1).startswith(current), line
        labels = {k: v for k, v in _PAIR.findall(m.group(2) or "")}
        fams[current][1].append((m.group(1), labels, float(m.group(3)), float(m.group(4))))
    for name, (_, samples) in fams.items():
        order: list[tuple] = []
        for _, labels, _, t in samples:
            g = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            if not order or order[-1][0] != g:
                assert g not in [o[0] for o in order], f"{name}: metric {g} not contiguous"
                order.append((g, t))
            assert t >= order[-1][1], f"{name}: timestamps go backwards in {g}"
            order[-1] = (g, t)
    return fams


def test_families_contiguous_with_suffixes_and_timestamps(tmp_path):
    w = OpenMetricsWriter({"job": "nomade", "instance": "127.0.0.1:9196"})
    kept = w.add(scrape(100.0), 100) + w.add(scrape(220.0), 220)
    out = tmp_path / "c.om"
    w.write(out)
    fams = read_om(out.read_text())
    assert [(n, t) for n, (t, _) in fams.items()] == [
        ("nomade_test_jobs", "gauge"),
        ("nomade_test_done", "counter"),
        ("nomade_test_build", "info"),
        ("nomade_test_eff", "histogram"),
    ]
    jobs = sorted((lab["state"], t, v) for _, lab, v, t in fams["nomade_test_jobs"][1])
    assert jobs == [("a", 100, 3.0), ("a", 220, 3.0), ("running", 100, 10.0), ("running", 220, 22.0)]
    done = [(n, v, t) for n, _, v, t in fams["nomade_test_done"][1]]
    assert done == [("nomade_test_done_total", 100.0, 100), ("nomade_test_done_total", 220.0, 220)]
    info = [(n, lab["version"], v) for n, lab, v, _ in fams["nomade_test_build"][1]]
    assert info == [("nomade_test_build_info", "1.2", 1.0)] * 2
    hist = [(n, lab.get("le"), v, t) for n, lab, v, t in fams["nomade_test_eff"][1]]
    one = [
        ("nomade_test_eff_bucket", "0.5", 1.0),
        ("nomade_test_eff_bucket", "1.0", 3.0),
        ("nomade_test_eff_bucket", "+Inf", 4.0),
        ("nomade_test_eff_sum", None, 2.5),
        ("nomade_test_eff_count", None, 4.0),
    ]
    assert hist == [(*x, 100) for x in one] + [(*x, 220) for x in one]
    # every series carries the live scrape's job and instance labels
    for _, samples in fams.values():
        for _, lab, _, _ in samples:
            assert (lab["job"], lab["instance"]) == ("nomade", "127.0.0.1:9196")
    # per-core CPU series dropped by the demo's rule: 2 scrapes x (2 jobs + 1 done + 1 info + 5 histogram lines)
    assert "nomade_cpu_seconds" not in fams
    assert kept == w.samples == 2 * 9
    # without the histogram, prometheus_client's own OpenMetrics parser accepts the file with the same values
    text = out.read_text()
    start = text.index("# HELP nomade_test_eff")
    only = tmp_path / "nohist.om"
    only.write_text(text[:start] + "# EOF\n")
    parsed = parse(only)
    assert sorted((s.labels["state"], s.timestamp.sec, s.value) for s in parsed["nomade_test_jobs"].samples) == jobs
    # the buffer is empty after writing
    w.write(out)
    assert out.read_text() == "# EOF\n"


def test_label_escaping_round_trips(tmp_path):
    odd = 'back\\slash "quoted"\nnext line'
    w = OpenMetricsWriter({"job": "nomade"})
    w.add(scrape(5.0, label=odd), 5)
    out = tmp_path / "e.om"
    w.write(out)
    states = {s.labels["state"] for s in parse(out)["nomade_test_jobs"].samples}
    assert states == {"running", odd}


def test_extra_labels_replace_the_samples_own(tmp_path):
    ms = MetricSet((MetricSpec("nomade_test_x", "gauge", "X.", ("instance", "node")),))
    ms.add("nomade_test_x", 1, instance="inside", node="c001")
    w = OpenMetricsWriter({"job": "nomade", "instance": "h:1"})
    w.add(ms.families(), 0)
    out = tmp_path / "x.om"
    w.write(out)
    assert 'nomade_test_x{node="c001",job="nomade",instance="h:1"} 1.0 0\n' in out.read_text()


def test_values_and_chunks():
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert float(format_value(1e-300)) == 1e-300
    assert chunk_index(BLOCK_SECONDS - 1) == 0
    assert chunk_index(BLOCK_SECONDS) == 1
    assert chunk_index(-1) == -1


def test_drop_rule_is_the_live_scrapes():
    assert per_core_dropped("nomade_cpu_seconds_total", {"cpu": "12", "mode": "user"})
    assert per_core_dropped("nomade_cpu_core_busy_ratio", {"cpu": "0"})
    assert per_core_dropped("nomade_cpu_guest_seconds_total", {"cpu": "3", "mode": "nice"})
    assert not per_core_dropped("nomade_cpu_seconds_total", {"cpu": "all", "mode": "user"})
    assert not per_core_dropped("nomade_cpu_busy_average_ratio", {})
    conf = yaml.safe_load((REPO / "deploy/sim/prometheus.yml.in").read_text())
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "nomade")
    assert job["metric_relabel_configs"] == [
        {"source_labels": ["__name__", "cpu"], "regex": PER_CORE_DROP_REGEX, "action": "drop"}
    ]


class FakeWorld:
    """advance/collect/close over a counter equal to the simulated time (what the history must reproduce)."""

    def __init__(self, seed: int, start: float, workdir: Path) -> None:
        self.now = start
        self.closed = False

    def advance(self, t: float) -> None:
        assert t >= self.now
        self.now = t

    def collect(self) -> list:
        return scrape(self.now)

    def close(self) -> None:
        self.closed = True


def fake_promtool(tmp_path: Path, rc: int = 0) -> Path:
    log = tmp_path / "promtool.args"
    exe = tmp_path / "promtool"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "boom on $5" >&2\nexit {rc}\n')
    exe.chmod(0o755)
    return exe


def test_generate_history_chunks_are_block_aligned(tmp_path):
    exe = fake_promtool(tmp_path)
    start = 3 * BLOCK_SECONDS - 600  # 10 minutes before a block boundary
    end = start + 5 * 3600
    res = generate_history(
        1, start, end, 300, tmp_path / "tsdb", tmp_path / "work", instance="h:9", promtool=str(exe),
        world_factory=FakeWorld, keep_files=True,
    )  # fmt: skip
    assert res.steps == 5 * 12 + 1
    files = sorted((tmp_path / "work/openmetrics").glob("chunk-*.om"))
    assert res.chunks == len(files) == 4  # [3,4), [4,5), [5,6) and [6,7) x 2 h windows
    seen = []
    for f in files:
        k0 = int(f.stem.split("-")[1])
        stamps = {t for _, samples in read_om(f.read_text()).values() for *_, t in samples}
        assert all(k0 <= t < k0 + BLOCK_SECONDS for t in stamps)
        seen.extend(sorted(stamps))
    assert seen == [start + i * 300 for i in range(res.steps)]
    calls = (tmp_path / "promtool.args").read_text().splitlines()  # two runs at a time: any order
    assert sorted(calls) == [f"tsdb create-blocks-from openmetrics {f} {tmp_path / 'tsdb'}" for f in files]
    assert res.samples == res.steps * 9
    # distinct series: jobs x2, done, build_info, eff_bucket x3, eff_sum, eff_count (per-core CPU dropped)
    assert res.series == 9


def test_promtool_failure_and_absence(tmp_path):
    exe = fake_promtool(tmp_path, rc=3)
    with pytest.raises(HistoryError, match="exited with 3: boom on"):
        generate_history(
            1, 0, 600, 300, tmp_path / "tsdb", tmp_path / "work", instance="h:9", promtool=str(exe),
            world_factory=FakeWorld,
        )  # fmt: skip
    with pytest.raises(HistoryError, match="not found: install"):
        generate_history(
            1, 0, 600, 300, tmp_path / "tsdb", tmp_path / "work", instance="h:9",
            promtool=str(tmp_path / "no-such-promtool"), world_factory=FakeWorld,
        )  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_real_promtool_accepts_the_chunks(tmp_path):
    start = 100 * BLOCK_SECONDS
    res = generate_history(
        7, start, start + 3 * 3600, 600, tmp_path / "tsdb", tmp_path / "work", instance="h:9",
        world_factory=FakeWorld,
    )  # fmt: skip
    (tmp_path / "tsdb" / "wal").mkdir()  # promtool tsdb dump opens the TSDB, WAL included
    dump = subprocess.run(
        ["promtool", "tsdb", "dump", str(tmp_path / "tsdb")], capture_output=True, text=True, check=True
    ).stdout
    done = [line for line in dump.splitlines() if line.startswith('{__name__="nomade_test_done_total"')]
    # one sample per step, value = its own timestamp (FakeWorld), promtool's timestamps in ms
    got = sorted((int(line.split()[-1]), float(line.split()[-2])) for line in done)
    assert got == [((start + i * 600) * 1000, float(start + i * 600)) for i in range(res.steps)]
    assert 'instance="h:9"' in done[0] and 'job="nomade"' in done[0]


def test_gc_tuning_is_restored():
    import gc

    from nomade.sim.history import GC_THRESHOLD, _gc_tuned

    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with _gc_tuned():
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > frozen  # the objects alive at entry are out of the collector's way
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_plan_ranges_cover_every_step_once_on_block_boundaries():
    start = 10 * BLOCK_SECONDS - 600
    n = 12 * 30  # 12 h of 120 s steps: 7 block windows, the first one 5 steps long
    for workers in (1, 2, 3, 7, 50):
        ranges = plan_ranges(start, 120, n, workers)
        assert len(ranges) == min(workers, 7)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
        for first, _ in ranges[1:]:  # every range but the first begins a block window
            assert chunk_index(start + first * 120) != chunk_index(start + (first - 1) * 120)
    # balanced: two workers split 361 steps at the block boundary nearest past the middle
    assert plan_ranges(start, 120, n, 2) == [(0, 184), (185, 360)]
    assert plan_ranges(start, 120, 0, 4) == [(0, 0)]


def _timing_free(path: Path) -> list[str]:
    """A chunk's lines without the collectors' wall-clock durations (the only values that differ run to run)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("nomade_collector_duration_seconds")]


def test_workers_write_what_one_uninterrupted_run_writes(tmp_path):
    # Two worker processes, the second caught up to its first step (SimWorld.catch_up), must write the very lines
    # of a run in one process: same series, values and timestamps, the counters of every collector included.
    from test_sim_world import small_cluster, small_workload

    from nomade.sim.world import build_world

    factory = functools.partial(build_world, spec=small_cluster(), workload=small_workload(), sequential=True)
    start = 900 * BLOCK_SECONDS - 1200
    out = {}
    for workers in (1, 2):
        (tmp_path / f"w{workers}").mkdir()
        exe = fake_promtool(tmp_path / f"w{workers}")
        res = generate_history(
            5, start, start + 3 * 3600, 300, tmp_path / f"w{workers}/tsdb", tmp_path / f"w{workers}/work",
            instance="h:9", promtool=str(exe), world_factory=factory, keep_files=True, workers=workers,
        )  # fmt: skip
        files = sorted((tmp_path / f"w{workers}/work/openmetrics").glob("chunk-*.om"))
        assert res.chunks == len(files) == 3 and res.steps == 37 and res.workers == workers
        out[workers] = ({f.name: _timing_free(f) for f in files}, res.samples, res.series)
        calls = (tmp_path / f"w{workers}/promtool.args").read_text().splitlines()
        assert sorted(calls) == [
            f"tsdb create-blocks-from openmetrics {f} {tmp_path / f'w{workers}/tsdb'}" for f in files
        ]
    assert out[2] == out[1]
    text = "\n".join(out[1][0][f"chunk-{901 * BLOCK_SECONDS}.om"])
    assert "nomade_slurm_job_finished_total{" in text and "nomade_exporter_command_runs_total{" in text
    # the second worker worked in the history's own directory (its accounting store is the history's)
    assert (tmp_path / "w2/work/state/slurm_accounting.sqlite3").exists()
    assert (tmp_path / "w2/work/part-0/state/slurm_accounting.sqlite3").exists()


def test_a_failing_worker_fails_the_history(tmp_path):
    exe = fake_promtool(tmp_path, rc=4)
    start = 900 * BLOCK_SECONDS - 1200
    with pytest.raises(HistoryError, match=r"history worker \d: .*exited with 4"):
        generate_history(
            5, start, start + 3 * 3600, 600, tmp_path / "tsdb", tmp_path / "work", instance="h:9",
            promtool=str(exe), world_factory=FakeWorld, workers=2,
        )  # fmt: skip
    with pytest.raises(HistoryError, match="workers must be >= 1"):
        generate_history(5, start, start + 600, 600, tmp_path / "t", tmp_path / "w", instance="h:9", workers=0)
