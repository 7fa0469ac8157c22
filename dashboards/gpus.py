"""GPUs dashboard: utilisation, memory, power, temperature, throttling, ECC health and the jobs holding each GPU.

Reads the ``gpu`` collector (node mode: ``nomade_gpu_*``, one series per ``node`` and ``gpu`` index) and the
analytics service's ``gpu_temperature`` watch (``nomade_trend_*{watch="gpu_temperature"}``). The temperature
threshold is ``[monitoring.thresholds] gpu_temperature_celsius`` (83 °C, the seed's gpu_temp_warning), the same value
the GPU temperature alert uses. XID errors are not exported (NVML delivers them only as events; see
``exporter/collectors/gpu.py``), so this dashboard has no XID panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "gpus"
TITLE = "NØMADE / GPUs"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The GPUs dashboard's JSON model (see :func:`nomade.dashboards.common.dashboard`)."""
    f = c.Sel(cfg)
    t = cfg.thresholds
    temp_steps = c.steps("green", (t.gpu_temperature_celsius - 10.0, "orange"), (t.gpu_temperature_celsius, "red"))
    gpu = "{{node}} GPU {{gpu}}"
    node_link = [c.data_link(cfg, "node-resources", "Node resources of ${__field.labels.node}",
                             params="var-node=${__field.labels.node}")]  # fmt: skip
    panels = [
        c.row("Overview"),
        c.stat(
            "GPUs",
            [c.query(f"count(nomade_gpu_info{f(node=True)})", instant=True)],
            unit="short",
            no_value="0",
            graph_mode="none",
            description="GPUs reported by NVML or nvidia-smi on the selected nodes (nomade_gpu_info).",
        ),
        c.stat(
            "Nodes without a GPU source",
            [c.query(f"sum(1 - nomade_gpu_source_available{f(node=True)})", instant=True)],
            unit="short",
            graph_mode="none",
            thresholds=c.steps("green", (1.0, "orange")),
            description="Nodes whose gpu collector found neither NVML nor nvidia-smi "
            "(nomade_gpu_source_available = 0): expected on CPU-only nodes, a driver problem on GPU nodes.",
        ),
        c.stat(
            "Mean GPU utilisation",
            [c.query(f"avg(nomade_gpu_utilization_ratio{f(node=True, engine='gpu')})")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Mean share of the sample period the GPUs' compute engines were busy (NVML utilization.gpu).",
        ),
        c.stat(
            "Hottest GPU",
            [c.query(f"max(nomade_gpu_temperature_celsius{f(node=True, sensor='gpu')})")],
            unit="celsius",
            thresholds=temp_steps,
            description=f"Highest GPU core temperature; red from {t.gpu_temperature_celsius:g} °C "
            "([monitoring.thresholds] gpu_temperature_celsius, the GPU temperature alert's threshold).",
        ),
        c.stat(
            "GPUs held by jobs",
            [c.query(f"count(nomade_gpu_job_info{f(node=True)})", instant=True)],
            unit="short",
            no_value="0",
            graph_mode="none",
            description="GPUs a SLURM job holds (prolog files or cgroup devices.list: nomade_gpu_job_info).",
        ),
        c.stat(
            "GPUs needing a reset",
            [
                c.query(
                    f"count(max by (node, gpu) (nomade_gpu_remapped_rows_pending{f(node=True)} == 1 "
                    f"or nomade_gpu_remapped_rows_failure{f(node=True)} == 1 "
                    f"or nomade_gpu_retired_pages_pending{f(node=True)} == 1))",
                    instant=True,
                )
            ],
            unit="short",
            no_value="0",
            graph_mode="none",
            thresholds=c.steps("green", (1.0, "red")),
            description="GPUs with a row remap or page retirement awaiting a reset/reboot, or a failed row remap.",
        ),
        c.row("Utilisation and memory"),
        c.timeseries(
            "GPU utilisation",
            [c.query(f"nomade_gpu_utilization_ratio{f(node=True, engine='gpu')}", gpu)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            data_links=node_link,
            description="Share of the driver's sample period the compute engine was busy (per GPU).",
        ),
        c.timeseries(
            "Memory-controller utilisation",
            [c.query(f"nomade_gpu_utilization_ratio{f(node=True, engine='memory')}", gpu)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Share of the sample period device memory was read or written (NVML utilization.memory).",
        ),
        c.timeseries(
            "Framebuffer used",
            [c.query(f"nomade_gpu_memory_used_bytes{f(node=True)} / nomade_gpu_memory_total_bytes{f(node=True)}", gpu)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("green", (0.9, "orange"), (0.98, "red")),
            threshold_style="dashed",
            description="Framebuffer memory used / total per GPU.",
        ),
        c.timeseries(
            "Power draw and enforced limit",
            [
                c.query(f"nomade_gpu_power_draw_watts{f(node=True)}", gpu),
                c.query(f"nomade_gpu_power_limit_watts{f(node=True, limit='enforced')}", gpu + " limit"),
            ],
            unit="watt",
            min=0.0,
            description="Board power draw (nvidia-smi power.draw) and the enforced power limit.",
        ),
        c.row("Temperature and throttling"),
        c.timeseries(
            "GPU temperature",
            [
                c.query(f"nomade_gpu_temperature_celsius{f(node=True, sensor='gpu')}", gpu),
                c.query(
                    f"nomade_gpu_temperature_threshold_celsius{f(node=True, threshold='slowdown')}", gpu + " slowdown"
                ),
            ],
            unit="celsius",
            thresholds=temp_steps,
            threshold_style="dashed",
            description=f"GPU core temperature and the driver's slowdown temperature; the dashed line is the alert "
            f"threshold {t.gpu_temperature_celsius:g} °C.",
        ),
        c.timeseries(
            "GPU temperature trend",
            [
                c.query(
                    f"3600 * nomade_trend_slope_per_second{f(node=True, watch='gpu_temperature')}",
                    "{{node}} GPU {{gpu}}",
                )
            ],
            unit="suffix: °C/h",
            description="Slope of the analytics service's fit of the GPU temperature (watch gpu_temperature), "
            "in degrees per hour.",
        ),
        c.state_timeline(
            "Clock throttle reasons",
            [c.query(f"max by (node, gpu, reason) (nomade_gpu_throttle_reason{f(node=True)})", gpu + " {{reason}}")],
            unit="none",
            mappings=c.value_mapping({0: ("no", "transparent"), 1: ("active", "orange")}),
            description="Reasons the clocks are held down (nvidia-smi clocks_event_reasons): 1 while active.",
        ),
        c.timeseries(
            "Time throttled",
            [
                c.query(
                    f"sum by (node, gpu, reason) "
                    f"(rate(nomade_gpu_throttle_duration_seconds_total{f(node=True, reason='!gpu_idle')}"
                    f"[$__rate_interval]))",
                    gpu + " {{reason}}",
                )
            ],
            unit="percentunit",
            min=0.0,
            description="Share of the time the clocks were held down, by reason (driver 535+ counters; idle left out).",
        ),
        c.row("Errors"),
        c.timeseries(
            "Volatile ECC errors",
            [
                c.query(
                    f"max by (node, gpu, type) (nomade_gpu_ecc_volatile_errors{f(node=True)})",
                    gpu + " {{type}}",
                )
            ],
            unit="short",
            min=0.0,
            description="ECC errors since driver load; the largest over the (overlapping) memory locations.",
        ),
        c.timeseries(
            "PCIe replays",
            [c.query(f"rate(nomade_gpu_pcie_replays_total{f(node=True)}[$__rate_interval])", gpu)],
            unit="ops",
            min=0.0,
            description="PCIe replays per second (link errors corrected by retransmission).",
        ),
        c.row("Inventory and jobs"),
        c.table(
            "GPU inventory",
            [c.query(f"nomade_gpu_info{f(node=True)}", instant=True, table=True)],
            unit="none",
            transformations=c.info_table_transformations(),
            description="GPU identity: model, driver, PCI bus, VBIOS (nomade_gpu_info).",
            width=14,
        ),
        c.table(
            "Jobs on GPUs",
            [c.query(f"nomade_gpu_job_info{f(node=True)}", instant=True, table=True)],
            unit="none",
            transformations=c.info_table_transformations(),
            description="The SLURM job holding each GPU (nomade_gpu_job_info; user empty when unknown).",
            width=10,
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="GPU utilisation, memory, power, temperature, throttling, ECC health and jobs (gpu collector).",
        panels=panels,
        variables=c.standard_variables(cfg),
        tags=("gpu",),
    )
