"""The benchmark's synthetic controller outputs parse cleanly through the real parsers and collectors."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from nomade.exporter.collectors import slurm_nodes, slurm_queue
from nomade.exporter.metrics import MetricSet
from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS, parse_sacct
from nomade.exporter.parsers.scontrol import parse_nodes, parse_partitions
from nomade.exporter.parsers.squeue import parse_squeue

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_717_000_000.0  # fixed so the texts are the same on every run


def _load_synth():
    spec = importlib.util.spec_from_file_location("nomade_bench_synth", ROOT / "bench" / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


synth = _load_synth()


@pytest.fixture(scope="module")
def workload():
    return synth.generate(60, 1500, sacct_jobs=1200, now=NOW, seed=7)


def test_generation_is_deterministic(workload):
    again = synth.generate(60, 1500, sacct_jobs=1200, now=NOW, seed=7)
    assert again.sacct_text == workload.sacct_text
    assert again.squeue_text == workload.squeue_text
    assert again.nodes_text == workload.nodes_text


def test_nodes_parse_with_expected_states(workload):
    exp = workload.expected
    res = parse_nodes(workload.nodes_text)
    assert res.issues == []
    assert len(res.records) == exp.nodes == 60
    assert Counter(n.state for n in res.records) == exp.node_states
    flags = Counter(f for n in res.records for f in n.flags)
    assert flags == exp.node_flags
    assert sum(n.reason is not None for n in res.records) == exp.nodes_with_reason
    # Every reason carries its [user@time] suffix, so user and time are split off.
    assert all(n.reason_user and n.reason_time for n in res.records if n.reason is not None)
    gpu = [n for n in res.records if n.gres]
    assert len(gpu) == exp.gpu_nodes == 6
    assert all(n.gres_used is not None for n in gpu)
    assert all(sum(n.gres_used.values()) <= sum(n.gres.values()) for n in gpu)
    # The mix holds more than one base state and drained nodes.
    assert exp.node_states["mixed"] > 0 and exp.node_flags["drain"] > 0


def test_partitions_parse(workload):
    res = parse_partitions(workload.partitions_text)
    assert res.issues == []
    assert [p.name for p in res.records] == ["cpu", "long", "debug", "gpu", "bigmem", "preempt", "maint"]
    by_name = {p.name: p for p in res.records}
    assert by_name["preempt"].total_nodes == 60
    assert by_name["maint"].total_nodes == 0 and by_name["maint"].state == "down"
    assert by_name["cpu"].default and by_name["long"].max_time_seconds == 7 * 86400


def test_nodes_and_partitions_fill_without_gaps(workload):
    nodes = parse_nodes(workload.nodes_text).records
    parts = parse_partitions(workload.partitions_text).records
    out = MetricSet(slurm_nodes.SlurmNodesCollector.metrics)
    slurm_nodes.fill(out, nodes, parts)
    # Every CPU of every node is in the cpu/gpu/bigmem partitions and in preempt.
    total = sum(n.cpus_total for n in nodes)
    assert out.value("nomade_slurm_partition_cpus", partition="preempt") == total
    assert len(out.samples("nomade_slurm_node_state")) == 60


def test_squeue_parses_with_expected_counts(workload):
    exp = workload.expected
    res = parse_squeue(workload.squeue_text)
    assert res.issues == []
    assert len(res.records) == exp.squeue_lines
    assert sum(j.tasks for j in res.records) == exp.queue_jobs == 1500
    by_state = Counter()
    for j in res.records:
        by_state[j.state] += j.tasks
    assert by_state == exp.queue_jobs_by_state
    assert sum(j.array_tasks is not None for j in res.records) == exp.pending_array_lines
    assert sum(len(j.partitions) > 1 for j in res.records) == exp.multi_partition_lines > 0
    assert {"running", "pending"} <= set(by_state)


def test_squeue_fill_counts_each_job_once(workload):
    jobs = parse_squeue(workload.squeue_text).records
    out = MetricSet(slurm_queue.SlurmQueueCollector.metrics)
    slurm_queue.fill(out, jobs, NOW, [0.5, 1.0])
    cluster = out.samples("nomade_slurm_queue_cluster_jobs")
    assert sum(cluster.values()) == 1500


def test_sacct_parses_with_expected_outcomes(workload):
    exp = workload.expected
    res = parse_sacct(workload.sacct_text, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
    assert res.issues == []
    assert len(res.records) == exp.sacct_jobs == 1200
    assert sum(len(j.steps) for j in res.records) == exp.sacct_steps
    assert Counter(j.failure_class for j in res.records) == exp.failure_classes
    # The mix covers the common failure classes.
    assert {"success", "failed", "timeout", "cancelled", "out_of_memory"} <= set(exp.failure_classes)
    # Every job ended inside the accounting window before NOW.
    assert all(NOW - 3600 <= j.end <= NOW for j in res.records)
    # Jobs that ran have steps and a MaxRSS; efficiencies are computable for most of them.
    ran = [j for j in res.records if j.steps]
    assert len(ran) > 0.8 * len(res.records)
    assert all(j.max_rss_bytes for j in ran)
    assert sum(j.memory_efficiency is not None for j in res.records) == len(ran)


def test_write_puts_four_files(tmp_path, workload):
    paths = synth.write(workload, tmp_path)
    assert sorted(paths) == ["nodes", "partitions", "sacct", "squeue"]
    assert paths["sacct"].read_text() == workload.sacct_text
