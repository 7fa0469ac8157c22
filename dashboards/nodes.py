"""Nodes: SLURM's view of each node — base state and flags over time, drain/down reasons, load, CPU and memory
allocation, and an inventory table that links to the node's I/O, CPU and memory dashboard.

The ``node`` variable lists the nodes of the selected partitions (``nomade_slurm_node_partition_info``), and "All"
expands to exactly those nodes, so the partition selection filters every panel.
"""  # noqa: D205

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomade.dashboards import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "nodes"
TITLE = "NØMADE / Nodes"


# Base states (lower-case, nomade.exporter.parsers.slurm_units.parse_node_state) encoded as numbers for the state
# timeline, with the colour each is drawn in. Any other base state is drawn as "other".
NODE_STATE_CODES: tuple[tuple[str, int, str], ...] = (
    ("idle", 1, "green"),
    ("mixed", 2, "blue"),
    ("allocated", 3, "purple"),
    ("completing", 4, "light-blue"),
    ("reserved", 5, "yellow"),
    ("planned", 6, "light-yellow"),
    ("future", 7, "text"),
    ("down", 8, "red"),
    ("fail", 9, "dark-red"),
    ("failing", 10, "orange"),
    ("unknown", 11, "dark-orange"),
)
OTHER_STATE_CODE = 12
"""Number of the base states not listed in :data:`NODE_STATE_CODES`."""


def node_state_expr(sel: str, node_sel_other: str, cluster_label: str) -> str:
    """PromQL giving each node one number: the code of its current base state (:data:`NODE_STATE_CODES`).

    Args:
        sel: matchers (in braces, without ``state``) for the listed states; ``state`` is added per state.
        node_sel_other: matchers (in braces) selecting the states that are not listed.
        cluster_label: the cluster label name (kept in the result).

    """
    inner = sel[1:-1]
    parts = [
        f'(nomade_slurm_node_state{{{inner},state="{state}"}} == 1) * {code}' for state, code, _ in NODE_STATE_CODES
    ]
    parts.append(f"(nomade_slurm_node_state{node_sel_other} == 1) * {OTHER_STATE_CODE}")
    return f"max by ({cluster_label}, node) (\n  " + "\n  or ".join(parts) + "\n)"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The nodes dashboard's JSON model (variables: datasource, cluster, partition, node)."""
    f = c.Sel(cfg)
    cl = cfg.cluster_label
    q = c.query
    n = f(node=True)
    listed = "|".join(s for s, _, _ in NODE_STATE_CODES)
    zero = f"max by ({cl}, node) (nomade_slurm_node_cpus{n}) * 0"  # every selected node, value 0
    state_map = {code: (state, color) for state, code, color in NODE_STATE_CODES}
    state_map[OTHER_STATE_CODE] = ("other", "text")
    to_node = c.data_link(cfg, "node-resources", "I/O, CPU and memory of ${__data.fields.node}",
                          params="var-node=${__data.fields.node}")  # fmt: skip
    inventory_columns = [
        ("A", "CPUs", "short"),
        ("B", "CPUs allocated", "short"),
        ("C", "Load", "short"),
        ("D", "Memory", "bytes"),
        ("E", "Memory allocated", "bytes"),
        ("F", "Free memory", "bytes"),
        ("G", "Up for", "s"),
    ]
    panels = [
        c.row("State"),
        c.bargauge(
            "Nodes by base state",
            [q(f"sum by ({cl}, state) (nomade_slurm_node_state{n})", "{{state}}", instant=True)],
            unit="short",
            min=0.0,
            width=8,
            description="Selected nodes per SLURM base state (scontrol show node).",
        ),
        c.bargauge(
            "Nodes by flag",
            [q(f"sum by ({cl}, flag) (nomade_slurm_node_flag{n})", "{{flag}}", instant=True)],
            unit="short",
            min=0.0,
            width=8,
            thresholds=c.steps("green", (1, "orange")),
            description="Selected nodes per state flag (drain, not_responding, maint, reboot_requested...).",
        ),
        c.stat(
            "Nodes drained or not responding",
            [
                q(f"sum(nomade_slurm_node_flag{f(node=True, flag='drain')}) or vector(0)", "drain"),
                q(f"sum(nomade_slurm_node_flag{f(node=True, flag='not_responding')}) or vector(0)", "not responding"),
                q(f"sum(nomade_slurm_node_state{f(node=True, state='down')}) or vector(0)", "down"),
            ],
            unit="short",
            width=8,
            height=8,
            thresholds=c.steps("green", (1, "red")),
            color_mode="background",
            graph_mode="none",
            text_mode="value_and_name",
            description="Counts of the selected nodes that are draining or drained, not responding, or down.",
        ),
        c.state_timeline(
            "Base state per node",
            [q(node_state_expr(n, f(node=True, state=f"!~{listed}"), cl), "{{node}}")],
            unit="none",
            height=10,
            mappings=c.value_mapping(state_map),
            thresholds=c.steps("text"),
            description="SLURM base state of each node over time (drain and other flags in the next panel).",
        ),
        c.state_timeline(
            "Drain and not-responding flags per node",
            [
                q(
                    f"(max by ({cl}, node) (nomade_slurm_node_flag{f(node=True, flag='drain')}) * 2 or {zero})\n"
                    f"+ (max by ({cl}, node) (nomade_slurm_node_flag{f(node=True, flag='not_responding')}) or {zero})",
                    "{{node}}",
                )
            ],
            unit="none",
            height=10,
            mappings=c.value_mapping(
                {
                    0: ("ok", "green"),
                    1: ("not responding", "orange"),
                    2: ("drain", "yellow"),
                    3: ("drain + not resp.", "red"),
                }
            ),
            thresholds=c.steps("text"),
            description="Per node: drain flag (2) plus not_responding flag (1); nodes without either show ok.",
        ),
        c.table(
            "Down and drained nodes: reasons",
            [
                q(
                    f"time() - (nomade_slurm_node_reason_since_timestamp_seconds{n} "
                    f"* on ({cl}, node) group_left (reason, user) nomade_slurm_node_reason_info{n})",
                    instant=True,
                    table=True,
                )
            ],
            unit="s",
            sort_by=[("Reason set for", True)],
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                        "indexByName": {"node": 0, "reason": 1, "user": 2, "Value": 3},
                        "renameByName": {"Value": "Reason set for"},
                    },
                }
            ],
            data_links=[to_node],
            description="Why each down or drained node is out (scontrol Reason), who set it, and how long ago.",
        ),
        c.row("Load and allocation"),
        c.timeseries(
            "Load per CPU",
            [q(f"nomade_slurm_node_cpu_load{n} / on ({cl}, node) (nomade_slurm_node_cpus{n} > 0)", "{{node}}")],
            unit="short",
            min=0.0,
            description="Load average reported by slurmd (CPULoad) divided by the node's CPUs: above 1, runnable "
            "tasks outnumber CPUs.",
        ),
        c.timeseries(
            "CPUs allocated",
            [
                q(
                    f"nomade_slurm_node_cpus_allocated{n} / on ({cl}, node) (nomade_slurm_node_cpus{n} > 0)",
                    "{{node}}",
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="CPUAlloc / CPUTot per node.",
        ),
        c.timeseries(
            "Memory allocated",
            [
                q(
                    f"nomade_slurm_node_memory_allocated_bytes{n} "
                    f"/ on ({cl}, node) (nomade_slurm_node_memory_bytes{n} > 0)",
                    "{{node}}",
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="AllocMem / RealMemory per node.",
        ),
        c.timeseries(
            "Free memory (OS)",
            [q(f"nomade_slurm_node_memory_free_bytes{n}", "{{node}}")],
            unit="bytes",
            min=0.0,
            description="Free memory reported by the node's OS through slurmd (FreeMem).",
        ),
        c.table(
            "Node inventory",
            [
                q(f"max by ({cl}, node) (nomade_slurm_node_cpus{n})", instant=True, table=True, ref_id="A"),
                q(f"max by ({cl}, node) (nomade_slurm_node_cpus_allocated{n})", instant=True, table=True, ref_id="B"),
                q(f"max by ({cl}, node) (nomade_slurm_node_cpu_load{n})", instant=True, table=True, ref_id="C"),
                q(f"max by ({cl}, node) (nomade_slurm_node_memory_bytes{n})", instant=True, table=True, ref_id="D"),
                q(
                    f"max by ({cl}, node) (nomade_slurm_node_memory_allocated_bytes{n})",
                    instant=True,
                    table=True,
                    ref_id="E",
                ),
                q(
                    f"max by ({cl}, node) (nomade_slurm_node_memory_free_bytes{n})",
                    instant=True,
                    table=True,
                    ref_id="F",
                ),
                q(
                    f"time() - max by ({cl}, node) (nomade_slurm_node_boot_timestamp_seconds{n})",
                    instant=True,
                    table=True,
                    ref_id="G",
                ),
            ],
            unit="short",
            height=10,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {f"Value #{ref}": name for ref, name, _ in inventory_columns},
                    },
                },
            ],
            overrides=[c.column_override(name, unit=unit) for _, name, unit in inventory_columns if unit != "short"],
            sort_by=[("node", False)],
            data_links=[to_node],
            filterable=True,
            description="Per node: configured and allocated CPUs and memory, load, free memory and time since boot "
            "(scontrol show node). Click a node for its I/O, CPU and memory.",
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="SLURM node states, flags, drain reasons, load and CPU/memory allocation.",
        panels=panels,
        variables=c.standard_variables(cfg),
    )
