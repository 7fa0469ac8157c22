"""The SLURM nodes and partitions collector.

Sources: ``scontrol --details --oneliner show node`` (``--details`` adds ``GresUsed``, the only per-type GRES
allocation that does not depend on ``AccountingStorageTRES``) and ``scontrol --oneliner show partition``, both
through the shared runner cache.

Definitions:

* Node CPUs: ``cpus`` = ``CPUTot``, ``cpus_allocated`` = ``CPUAlloc``, ``cpus_idle`` = ``CPUTot - CPUAlloc``
  (whatever the node state; the state is exported beside it).
* Partition CPUs follow sinfo's ``%C`` A/I/O/T (``_update_sinfo`` in src/sinfo/sinfo.c): the free CPUs of a
  node that is DOWN or carries the DRAIN flag are "other", not idle, because nothing can be scheduled on
  them; so ``partition_cpus_idle`` = schedulable free CPUs and ``partition_cpus_other`` = free but unusable.
  ``cpus = allocated + idle + other``. A node in several partitions counts in each.
* Memory: ``RealMemory``/``AllocMem``/``FreeMem`` are MiB in scontrol and exported in bytes; ``FreeMem`` is the
  OS's free memory as slurmd last reported it (``N/A`` is left out).
* GRES: configured from ``Gres=``, allocated from ``GresUsed=`` (or the ``gres/`` entries of ``AllocTRES``);
  a node with no allocated CPU has no allocated GRES. Partition GPUs sum the ``gpu`` GRES of every type.
* Reason: ``nomade_slurm_node_reason_info{reason,user}`` carries the admin text (bounded by the number of
  nodes with a reason) and ``reason_since_timestamp_seconds`` the time from its ``[user@time]`` suffix.

Series per node with ``per_node = true``: 1 state + 1 per state flag (usually 0-2) + 3 CPU + 1 load + 3 memory
+ 1 boot time + 1 per partition the node is in + 2 per GRES type (+2 when a reason is set): about 11 for a CPU
node in one partition, 13 for a one-GPU-type node. ``per_node = false`` drops all of them; the partition
series (about 12 + node states + flags per partition) stay.

Options (``[collector.slurm_nodes]``):
    per_node (bool, default true): export the per-node series.
"""

from __future__ import annotations

from collections import defaultdict

from ..metrics import MetricSet, MetricSpec
from ..parsers.scontrol import NodeRecord, PartitionRecord, parse_nodes, parse_partitions
from .base import Collector

NODES_ARGV: tuple[str, ...] = ("scontrol", "--details", "--oneliner", "show", "node")
PARTITIONS_ARGV: tuple[str, ...] = ("scontrol", "--oneliner", "show", "partition")
_N = "nomade_slurm_node_"
_PT = "nomade_slurm_partition_"
# Base states every partition reports (0 when no node is in them), so that sums and alerts have no gaps.
CORE_STATES = ("allocated", "down", "idle", "mixed", "unknown")
_UNUSABLE_BASE = frozenset({"down"})


def cpus_other(node: NodeRecord) -> int | None:
    """Free CPUs of ``node`` that sinfo counts as "other": all free CPUs when the node is DOWN or drains."""
    if node.cpus_total is None or node.cpus_alloc is None:
        return None
    if node.state in _UNUSABLE_BASE or "drain" in node.flags:
        return node.cpus_total - node.cpus_alloc
    return 0


class SlurmNodesCollector(Collector):
    """Node and partition state from ``scontrol`` (controller mode)."""

    name = "slurm_nodes"
    mode = "controller"
    description = "Node states, flags, CPUs, memory, GRES, reasons; partition totals and settings."
    metrics = (
        MetricSpec(_N + "state", "gauge", "1 for the node's current base state (idle, mixed, allocated, down...).",
                   ("node", "state")),
        MetricSpec(_N + "flag", "gauge", "1 per state flag the node carries (drain, not_responding, completing...).",
                   ("node", "flag")),
        MetricSpec(_N + "cpus", "gauge", "CPUs of the node (CPUTot).", ("node",)),
        MetricSpec(_N + "cpus_allocated", "gauge", "CPUs allocated to jobs (CPUAlloc).", ("node",)),
        MetricSpec(_N + "cpus_idle", "gauge", "CPUs not allocated (CPUTot - CPUAlloc), whatever the state.",
                   ("node",)),
        MetricSpec(_N + "cpu_load", "gauge", "Load average reported by slurmd (CPULoad).", ("node",)),
        MetricSpec(_N + "memory_bytes", "gauge", "Configured memory (RealMemory).", ("node",), "bytes"),
        MetricSpec(_N + "memory_allocated_bytes", "gauge", "Memory allocated to jobs (AllocMem).", ("node",),
                   "bytes"),
        MetricSpec(_N + "memory_free_bytes", "gauge", "Free memory reported by the OS through slurmd (FreeMem).",
                   ("node",), "bytes"),
        MetricSpec(_N + "reason_info", "info", "Why the node is down/drained, and who said so.",
                   ("node", "reason", "user")),
        MetricSpec(_N + "reason_since_timestamp_seconds", "gauge", "When the reason was set (Unix time).",
                   ("node",), "seconds"),
        MetricSpec(_N + "gres", "gauge", "Configured generic resources by name and type.", ("node", "gres", "type")),
        MetricSpec(_N + "gres_allocated", "gauge", "Allocated generic resources by name and type.",
                   ("node", "gres", "type")),
        MetricSpec(_N + "partition_info", "info", "Partition membership of the node.", ("node", "partition")),
        MetricSpec(_N + "boot_timestamp_seconds", "gauge", "When the node booted (BootTime, Unix time).",
                   ("node",), "seconds"),
        MetricSpec(_PT + "cpus", "gauge", "CPUs of the partition's nodes.", ("partition",)),
        MetricSpec(_PT + "cpus_allocated", "gauge", "Allocated CPUs in the partition.", ("partition",)),
        MetricSpec(_PT + "cpus_idle", "gauge", "Free CPUs on schedulable nodes (sinfo %C idle).", ("partition",)),
        MetricSpec(_PT + "cpus_other", "gauge", "Free CPUs on DOWN or draining nodes (sinfo %C other).",
                   ("partition",)),
        MetricSpec(_PT + "nodes", "gauge", "Nodes of the partition by base state.", ("partition", "state")),
        MetricSpec(_PT + "nodes_flag", "gauge", "Nodes of the partition carrying each state flag.",
                   ("partition", "flag")),
        MetricSpec(_PT + "memory_bytes", "gauge", "Configured memory of the partition's nodes.", ("partition",),
                   "bytes"),
        MetricSpec(_PT + "memory_allocated_bytes", "gauge", "Memory allocated to jobs in the partition.",
                   ("partition",), "bytes"),
        MetricSpec(_PT + "gpus", "gauge", "GPUs (GRES gpu, all types) of the partition's nodes.", ("partition",)),
        MetricSpec(_PT + "gpus_allocated", "gauge", "Allocated GPUs in the partition.", ("partition",)),
        MetricSpec(_PT + "info", "info", "Partition state and whether it is the default partition.",
                   ("partition", "state", "default")),
        MetricSpec(_PT + "max_time_seconds", "gauge", "Partition MaxTime (+Inf when UNLIMITED).", ("partition",),
                   "seconds"),
    )  # fmt: skip

    def collect(self, out: MetricSet) -> None:
        """Run the two scontrol commands and fill node and partition metrics.

        Raises:
            CommandError: when either command is missing, times out or fails (``up`` becomes 0).

        """
        nodes_res = self.ctx.runner.run(NODES_ARGV)
        parts_res = self.ctx.runner.run(PARTITIONS_ARGV)
        nodes = parse_nodes(nodes_res.stdout)
        parts = parse_partitions(parts_res.stdout)
        self.count_parse_errors(len(nodes.issues) + len(parts.issues))
        fill(out, nodes.records, parts.records, per_node=bool(self.option("per_node", True)))


def _add_opt(acc: dict[str, float | None], key: str, value: float | None) -> None:
    if value is None or acc.get(key, 0.0) is None:
        acc[key] = None
    else:
        acc[key] = acc.get(key, 0.0) + value


def _fill_node(out: MetricSet, n: NodeRecord) -> None:
    out.add(_N + "state", 1, node=n.name, state=n.state)
    for flag in sorted(n.flags):
        out.add(_N + "flag", 1, node=n.name, flag=flag)
    out.add(_N + "cpus", n.cpus_total, node=n.name)
    out.add(_N + "cpus_allocated", n.cpus_alloc, node=n.name)
    if n.cpus_total is not None and n.cpus_alloc is not None:
        out.add(_N + "cpus_idle", n.cpus_total - n.cpus_alloc, node=n.name)
    out.add(_N + "cpu_load", n.cpu_load, node=n.name)
    out.add(_N + "memory_bytes", n.memory_bytes, node=n.name)
    out.add(_N + "memory_allocated_bytes", n.memory_alloc_bytes, node=n.name)
    out.add(_N + "memory_free_bytes", n.memory_free_bytes, node=n.name)
    out.add(_N + "boot_timestamp_seconds", n.boot_time, node=n.name)
    if n.reason is not None:
        out.info(_N + "reason_info", node=n.name, reason=n.reason, user=n.reason_user or "")
        out.add(_N + "reason_since_timestamp_seconds", n.reason_time, node=n.name)
    for (gres, gtype), count in sorted(n.gres.items()):
        out.add(_N + "gres", count, node=n.name, gres=gres, type=gtype)
        if n.gres_used is not None:
            out.add(_N + "gres_allocated", n.gres_used.get((gres, gtype), 0), node=n.name, gres=gres, type=gtype)
    for part in n.partitions:
        out.info(_N + "partition_info", node=n.name, partition=part)


def _gpus(gres: dict[tuple[str, str], int] | None, configured: dict[tuple[str, str], int]) -> float | None:
    """GPUs in ``gres`` counted over the configured GPU types (so an untyped total is not added twice)."""
    if gres is None:
        return None if any(name == "gpu" for name, _ in configured) else 0.0
    return float(sum(gres.get(key, 0) for key in configured if key[0] == "gpu"))


def fill(out: MetricSet, nodes: list[NodeRecord], partitions: list[PartitionRecord], per_node: bool = True) -> None:
    """Fill node metrics (when ``per_node``) and partition aggregates (separated from :meth:`collect` for tests)."""
    cpus: dict[str, float | None] = {}
    alloc: dict[str, float | None] = {}
    other: dict[str, float | None] = {}
    mem: dict[str, float | None] = {}
    mem_alloc: dict[str, float | None] = {}
    gpus: dict[str, float | None] = {}
    gpus_alloc: dict[str, float | None] = {}
    states: dict[str, dict[str, int]] = defaultdict(dict)
    flags: dict[str, dict[str, int]] = defaultdict(dict)
    seen_states: set[str] = set(CORE_STATES)
    for n in nodes:
        if per_node:
            _fill_node(out, n)
        seen_states.add(n.state)
        for part in n.partitions:
            _add_opt(cpus, part, n.cpus_total)
            _add_opt(alloc, part, n.cpus_alloc)
            _add_opt(other, part, cpus_other(n))
            _add_opt(mem, part, n.memory_bytes)
            _add_opt(mem_alloc, part, n.memory_alloc_bytes)
            _add_opt(gpus, part, _gpus(n.gres, n.gres))
            _add_opt(gpus_alloc, part, _gpus(n.gres_used, n.gres))
            states[part][n.state] = states[part].get(n.state, 0) + 1
            for flag in n.flags:
                flags[part][flag] = flags[part].get(flag, 0) + 1
    names = {p.name for p in partitions} | set(cpus)
    empty = {p.name for p in partitions if p.total_nodes == 0}
    for part in sorted(names):
        if part not in cpus and part not in empty:
            continue  # nodes of the partition were not seen: absent beats a false zero
        total = cpus.get(part, 0.0)
        out.add(_PT + "cpus", total, partition=part)
        out.add(_PT + "cpus_allocated", alloc.get(part, 0.0), partition=part)
        out.add(_PT + "cpus_other", other.get(part, 0.0), partition=part)
        a, o = alloc.get(part, 0.0), other.get(part, 0.0)
        if total is not None and a is not None and o is not None:
            out.add(_PT + "cpus_idle", total - a - o, partition=part)
        out.add(_PT + "memory_bytes", mem.get(part, 0.0), partition=part)
        out.add(_PT + "memory_allocated_bytes", mem_alloc.get(part, 0.0), partition=part)
        out.add(_PT + "gpus", gpus.get(part, 0.0), partition=part)
        out.add(_PT + "gpus_allocated", gpus_alloc.get(part, 0.0), partition=part)
        for state in sorted(seen_states):
            out.add(_PT + "nodes", states[part].get(state, 0), partition=part, state=state)
        for flag, count in sorted(flags[part].items()):
            out.add(_PT + "nodes_flag", count, partition=part, flag=flag)
    for p in partitions:
        if p.state is not None:
            out.info(_PT + "info", partition=p.name, state=p.state, default="yes" if p.default else "no")
        out.add(_PT + "max_time_seconds", p.max_time_seconds, partition=p.name)


COLLECTOR = SlurmNodesCollector
