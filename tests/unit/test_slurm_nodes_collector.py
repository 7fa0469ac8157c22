"""slurm_nodes collector over a fake runner fed with our own scontrol fixtures."""

from __future__ import annotations

import functools
import math

import pytest
from conftest import MappedRunner, own_fixture

from nomade.exporter.collectors import slurm_nodes
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_nodes import NODES_ARGV, PARTITIONS_ARGV, SlurmNodesCollector
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.runner import CommandError

MIB = 1024**2


FakeRunner = functools.partial(MappedRunner, missing=("timeout", "no answer within 10 s"))


def collect(nodes="show-node-d-o-22.05.txt", parts="show-partition-o-22.05.txt", **options):
    runner = FakeRunner({NODES_ARGV: own_fixture("scontrol", nodes), PARTITIONS_ARGV: own_fixture("scontrol", parts)})
    col = SlurmNodesCollector(CollectorContext(runner=runner, options=options))
    out = col.new_set()
    col.collect(out)
    return col, out


def test_module_exposes_collector():
    assert slurm_nodes.COLLECTOR is SlurmNodesCollector
    assert SlurmNodesCollector.name == "slurm_nodes" and SlurmNodesCollector.mode == "controller"
    assert NODES_ARGV == ("scontrol", "--details", "--oneliner", "show", "node")


def test_node_series():
    col, out = collect()
    assert col.parse_errors == 0
    v = out.value
    assert out.samples("nomade_slurm_node_state")[("c03", "idle")] == 1
    assert len([k for k in out.samples("nomade_slurm_node_state") if k[0] == "c03"]) == 1  # base state only
    assert v("nomade_slurm_node_flag", node="c03", flag="drain") == 1
    assert v("nomade_slurm_node_flag", node="c04", flag="not_responding") == 1
    assert v("nomade_slurm_node_cpus", node="c02") == 16
    assert v("nomade_slurm_node_cpus_allocated", node="c02") == 4
    assert v("nomade_slurm_node_cpus_idle", node="c02") == 12
    assert v("nomade_slurm_node_cpu_load", node="c02") == 3.1
    assert v("nomade_slurm_node_cpu_load", node="c04") is None  # N/A: absent
    assert v("nomade_slurm_node_memory_bytes", node="c01") == 64000 * MIB
    assert v("nomade_slurm_node_memory_allocated_bytes", node="c01") == 32000 * MIB
    assert v("nomade_slurm_node_memory_free_bytes", node="c01") == 20480 * MIB
    assert v("nomade_slurm_node_memory_free_bytes", node="c04") is None
    assert v("nomade_slurm_node_reason_info", node="c03", reason='bad DIMM, "slot 3" | see ticket=42', user="root") == 1
    assert v("nomade_slurm_node_reason_since_timestamp_seconds", node="c03") == parse_timestamp("2024-03-02T09:15:00")
    assert v("nomade_slurm_node_gres", node="g01", gres="gpu", type="a100") == 4
    assert v("nomade_slurm_node_gres_allocated", node="g01", gres="gpu", type="a100") == 3
    assert v("nomade_slurm_node_partition_info", node="c01", partition="long") == 1


def test_partition_series():
    _, out = collect()
    v = out.value
    # cpu: c01 16/16 alloc, c02 4/16, c03 drained (16 free -> other), c04 down (16 free -> other)
    assert v("nomade_slurm_partition_cpus", partition="cpu") == 64
    assert v("nomade_slurm_partition_cpus_allocated", partition="cpu") == 20
    assert v("nomade_slurm_partition_cpus_other", partition="cpu") == 32
    assert v("nomade_slurm_partition_cpus_idle", partition="cpu") == 12
    assert v("nomade_slurm_partition_nodes", partition="cpu", state="idle") == 1
    assert v("nomade_slurm_partition_nodes", partition="cpu", state="down") == 1
    assert v("nomade_slurm_partition_nodes", partition="cpu", state="mixed") == 1
    assert v("nomade_slurm_partition_nodes", partition="gpu", state="allocated") == 0
    assert v("nomade_slurm_partition_nodes_flag", partition="cpu", flag="drain") == 1
    assert v("nomade_slurm_partition_memory_bytes", partition="long") == 2 * 64000 * MIB
    assert v("nomade_slurm_partition_memory_allocated_bytes", partition="long") == 40000 * MIB
    assert v("nomade_slurm_partition_gpus", partition="gpu") == 8
    assert v("nomade_slurm_partition_gpus_allocated", partition="gpu") == 3
    # g01 drains with 8 free CPUs: other, not idle
    assert v("nomade_slurm_partition_cpus_idle", partition="gpu") == 32
    assert v("nomade_slurm_partition_info", partition="cpu", state="up", default="yes") == 1
    assert v("nomade_slurm_partition_info", partition="maint", state="down", default="no") == 1
    assert v("nomade_slurm_partition_max_time_seconds", partition="cpu") == 2 * 86400
    assert math.isinf(v("nomade_slurm_partition_max_time_seconds", partition="long"))
    assert v("nomade_slurm_partition_cpus", partition="maint") == 0  # TotalNodes=0: a true zero


def test_per_node_off_keeps_partition_totals():
    _, out = collect(per_node=False)
    node_series = [s.name for s in SlurmNodesCollector.metrics if s.name.startswith("nomade_slurm_node_")]
    assert all(out.samples(name) == {} for name in node_series)
    assert out.value("nomade_slurm_partition_cpus", partition="cpu") == 64


def test_per_node_series_budget():
    _, on = collect()
    _, off = collect(per_node=False)
    per_node = (on.series_count() - off.series_count()) / 6
    assert 11 <= per_node <= 16  # documented: ~11 per CPU node, +2 per GRES type, +2 with a reason


def test_lab_capture():
    col, out = collect("lab-show-node-d-o-22.05.8.txt", "lab-show-partition-o-22.05.8.txt")
    assert col.parse_errors == 0
    assert out.value("nomade_slurm_node_flag", node="gpu01", flag="invalid_reg") == 1
    assert out.value("nomade_slurm_partition_cpus_other", partition="gpu") == 2  # gpu01 drains
    assert out.value("nomade_slurm_partition_cpus_idle", partition="gpu") == 2  # ghost01: unknown, not drained
    assert out.value("nomade_slurm_partition_cpus_allocated", partition="compute") == 1
    assert out.value("nomade_slurm_partition_gpus", partition="gpu") == 2
    assert out.value("nomade_slurm_partition_gpus_allocated", partition="gpu") == 0


@pytest.mark.parametrize("missing", [NODES_ARGV, PARTITIONS_ARGV])
def test_failing_command_propagates(missing):
    outputs = {NODES_ARGV: own_fixture("scontrol", "show-node-d-o-22.05.txt"), PARTITIONS_ARGV: ""}
    del outputs[missing]
    col = SlurmNodesCollector(CollectorContext(runner=FakeRunner(outputs)))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
