"""NVIDIA GPU collector (node mode): NVML through nvidia-ml-py when it loads, ``nvidia-smi`` otherwise.

Sources, in the order ``source = "auto"`` tries them:

1. **NVML** via the ``pynvml`` module of nvidia-ml-py (optional extra ``nomade-hpc[gpu]``), imported lazily so
   the exporter never needs it. One ``nvmlInit`` for the collector's lifetime, ``nvmlShutdown`` in :meth:`close`.
2. ``nvidia-smi -q -x`` (:func:`~nomade.exporter.parsers.nvidia_smi.parse_smi_xml`): everything, processes
   included, in one command.
3. ``source = "nvidia-smi-csv"`` (explicit only): ``--query-gpu`` with
   :data:`~nomade.exporter.parsers.nvidia_smi.QUERY_GPU_FIELDS` plus ``--query-compute-apps``; cheaper than
   ``-q -x`` on many-GPU nodes, without MIG instances or thresholds.

Graceful skip: :meth:`GpuCollector.available` is False when neither NVML loads nor ``nvidia-smi`` is on PATH, so
``--mode auto`` leaves the collector off. Enabled anyway (``--mode all``, the lab), it logs that once and
exports ``nomade_gpu_source_available 0`` with ``up 1`` on every scrape. A source that exists but fails (driver
not loaded: nvidia-smi exits non-zero; NVML cannot count devices) raises, so ``up`` becomes 0.

XID errors are **not** exported: NVML only delivers them as events (``nvmlEventSetWait``), which needs a
blocking background listener and loses events while the exporter is down, and nvidia-smi does not print them.
Counting ``NVRM: Xid`` lines from the kernel log (dmesg/journal) is out of scope for this collector.

Counter or gauge: aggregate ECC counts, retired pages and remapped rows live in the InfoROM and only grow:
counters. Volatile ECC counts are reset at driver reload and are read as a level ("errors since the driver
loaded", cleared by a reset): gauges. Throttle durations, energy and PCIe replays are monotonic since driver
load / GPU reset, used through ``rate()``: counters, whose resets at driver reload Prometheus handles like the
reset of node counters at reboot.

GPU-to-job mapping (``nomade_gpu_job_info``), on compute nodes:

- prolog files (``job_dir``, default ``/run/nomade/gpu-jobs``): one file per job named by the job id, format in
  :func:`~nomade.exporter.parsers.nvidia_smi.parse_gpu_job_file`, written and removed by
  ``deploy/slurm/prolog-gpu.sh`` (used as Prolog and Epilog). A file the epilog failed to remove stays mapped
  until removed.
- cgroup v1 device controller: ``<cgroup_devices_root>/slurm*/uid_<uid>/job_<id>/devices.list`` with
  ``ConstrainDevices=yes`` lists ``c 195:<minor> rwm`` for each GPU of the job; the minor is matched to the
  GPU's device minor (``minor_number`` from NVML / ``-q -x``, else ``/proc/driver/nvidia/gpus/<bus>/information``).
  A job whose list allows every device (``a *:* rwm``) is not mapped. cgroup v2 has no ``devices.list``: its
  device controller is an eBPF program attached to the cgroup, not readable without CAP_SYS_ADMIN and
  bpftool, so on cgroup v2 only the prolog files map jobs. MIG instances (``/dev/nvidia-caps``) are not mapped.

Cardinality per node: about 60 series per GPU (fewer on consumer boards), plus 4 per MIG instance, plus one per
(GPU, job); per-process series (``per_process = true``) add one per GPU process.
"""

from __future__ import annotations

import importlib
import os
import pwd
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..metrics import MetricSet, MetricSpec
from ..parsers.nvidia_smi import (
    QUERY_APPS_FIELDS,
    QUERY_GPU_FIELDS,
    GpuDevice,
    GpuProcess,
    MigDevice,
    parse_compute_apps_csv,
    parse_devices_list,
    parse_gpu_job_file,
    parse_query_gpu_csv,
    parse_smi_xml,
)
from ..runner import CommandError
from .base import Collector, CollectorContext, CollectorError

DEFAULT_JOB_DIR = "/run/nomade/gpu-jobs"

_G = ("gpu",)
_MIG = ("gpu", "gpu_instance", "compute_instance")

# nvml.h nvmlClocksEventReason* bits (named nvmlClocksThrottleReason* before driver 535).
NVML_THROTTLE_BITS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clocks_setting": 0x100,
}

# nvml.h enum values, used when the pynvml module lacks the constant (old nvidia-ml-py).
_NVML_NOT_SUPPORTED = 3
_NVML_NO_PERMISSION = 4
_NVML_NOT_FOUND = 6
_NVML_CLOCKS = {"graphics": 0, "sm": 1, "memory": 2, "video": 3}
_NVML_THRESHOLDS = {"shutdown": 0, "slowdown": 1, "memory_max_operating": 2, "max_operating": 3}
_NVML_LOCATIONS = {"dram": 2, "sram": 7}
_NVML_NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId of a process outside MIG


def load_nvml() -> ModuleType | None:
    """Import ``pynvml`` (nvidia-ml-py) and initialise NVML; None when either fails (no module, no driver)."""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - ImportError, NVMLError (library not found, driver not loaded), OSError
        return None
    return nvml


class GpuCollector(Collector):
    """Per-GPU utilisation, memory, temperature, power, clocks, throttling, ECC, MIG, processes and jobs.

    Options (``[collector.gpu]``):
        source: ``auto`` (NVML, else ``nvidia-smi -q -x``), ``nvml``, ``nvidia-smi`` or ``nvidia-smi-csv``.
        nvidia_smi: path or name of nvidia-smi (default ``nvidia-smi``).
        timeout: nvidia-smi timeout in seconds (default: the runner's).
        per_process: export ``nomade_gpu_process_memory_used_bytes{gpu,pid,process}`` (default false).
        job_mapping: export ``nomade_gpu_job_info`` (default true).
        job_dir: directory of the prolog files (default ``/run/nomade/gpu-jobs``).
        job_file_ids: ``index`` (default: ids in the files are nvidia-smi indexes) or ``minor`` (device minors,
            for gres.conf ``File=/dev/nvidia[..]`` lists not in PCI order).
        cgroup_devices_root: cgroup v1 devices hierarchy (default ``<sys_root>/fs/cgroup/devices``).
    """

    name = "gpu"
    mode = "node"
    description = "NVIDIA GPUs through NVML (nvidia-ml-py) or nvidia-smi, with the GPU-to-job mapping."
    metrics = (
        MetricSpec(
            "nomade_gpu_source_available",
            "gauge",
            "1 when NVML or nvidia-smi answered, 0 when neither exists on this node (collector enabled anyway).",
        ),
        MetricSpec("nomade_gpu_source_info", "info", "Which source the GPU figures come from.", ("source",)),
        MetricSpec(
            "nomade_gpu_info",
            "info",
            "GPU identity; minor_number is the /dev/nvidia<N> minor.",
            ("gpu", "uuid", "name", "driver_version", "pci_bus_id", "vbios_version", "minor_number"),
        ),
        MetricSpec(
            "nomade_gpu_utilization_ratio",
            "gauge",
            "Share of the driver's sample period the engine was busy (engine=memory: memory read/written).",
            ("gpu", "engine"),
            "ratio",
        ),
        MetricSpec("nomade_gpu_memory_total_bytes", "gauge", "Framebuffer memory size.", _G, "bytes"),
        MetricSpec("nomade_gpu_memory_used_bytes", "gauge", "Framebuffer memory used.", _G, "bytes"),
        MetricSpec("nomade_gpu_memory_free_bytes", "gauge", "Framebuffer memory free.", _G, "bytes"),
        MetricSpec("nomade_gpu_memory_reserved_bytes", "gauge", "Framebuffer reserved by the driver.", _G, "bytes"),
        MetricSpec("nomade_gpu_bar1_memory_total_bytes", "gauge", "BAR1 aperture size.", _G, "bytes"),
        MetricSpec("nomade_gpu_bar1_memory_used_bytes", "gauge", "BAR1 aperture used.", _G, "bytes"),
        MetricSpec(
            "nomade_gpu_temperature_celsius",
            "gauge",
            "Temperature by sensor (gpu, memory).",
            ("gpu", "sensor"),
            "celsius",
        ),
        MetricSpec(
            "nomade_gpu_temperature_threshold_celsius",
            "gauge",
            "Temperature thresholds (shutdown, slowdown, max_operating, memory_max_operating).",
            ("gpu", "threshold"),
            "celsius",
        ),
        MetricSpec(
            "nomade_gpu_temperature_margin_celsius",
            "gauge",
            "T.Limit: degrees below the slowdown temperature (Hopper and later).",
            _G,
            "celsius",
        ),
        MetricSpec(
            "nomade_gpu_power_draw_watts",
            "gauge",
            "Board power draw (nvidia-smi power.draw: 1 s average on Ampere and later, instantaneous before).",
            _G,
            "watts",
        ),
        MetricSpec("nomade_gpu_power_draw_instant_watts", "gauge", "Instantaneous board power draw.", _G, "watts"),
        MetricSpec(
            "nomade_gpu_power_limit_watts",
            "gauge",
            "Power limits (enforced, requested by software, default, min, max).",
            ("gpu", "limit"),
            "watts",
        ),
        MetricSpec("nomade_gpu_energy_joules_total", "counter", "Energy used since driver load (NVML).", _G, "joules"),
        MetricSpec(
            "nomade_gpu_clock_hertz", "gauge", "Current clock (graphics, sm, memory, video).", ("gpu", "clock"), "hertz"
        ),
        MetricSpec("nomade_gpu_clock_max_hertz", "gauge", "Maximum clock.", ("gpu", "clock"), "hertz"),
        MetricSpec(
            "nomade_gpu_throttle_reason",
            "gauge",
            "1 while the clocks are held down for this reason (nvidia-smi clocks_event_reasons), else 0.",
            ("gpu", "reason"),
        ),
        MetricSpec(
            "nomade_gpu_throttle_duration_seconds_total",
            "counter",
            "Time clocks were held down for this reason since driver load (driver 535+).",
            ("gpu", "reason"),
            "seconds",
        ),
        MetricSpec("nomade_gpu_fan_speed_ratio", "gauge", "Intended fan speed (0-1).", _G, "ratio"),
        MetricSpec("nomade_gpu_performance_state", "gauge", "P-state number (0 = maximum performance).", _G),
        MetricSpec("nomade_gpu_pcie_link_generation", "gauge", "PCIe link generation.", ("gpu", "kind")),
        MetricSpec("nomade_gpu_pcie_link_width", "gauge", "PCIe link width in lanes.", ("gpu", "kind")),
        MetricSpec("nomade_gpu_pcie_replays_total", "counter", "PCIe replays since the GPU reset.", _G),
        MetricSpec("nomade_gpu_ecc_mode_enabled", "gauge", "1 when ECC is on.", _G),
        MetricSpec(
            "nomade_gpu_ecc_volatile_errors",
            "gauge",
            "ECC errors since driver load (reset at reload). Locations overlap: do not sum over location.",
            ("gpu", "type", "location"),
        ),
        MetricSpec(
            "nomade_gpu_ecc_aggregate_errors_total",
            "counter",
            "Lifetime ECC errors (InfoROM). Locations overlap: do not sum over location.",
            ("gpu", "type", "location"),
        ),
        MetricSpec(
            "nomade_gpu_retired_pages_total",
            "counter",
            "Framebuffer pages retired (pre-Ampere), by cause single_bit_ecc / double_bit_ecc.",
            ("gpu", "cause"),
        ),
        MetricSpec("nomade_gpu_retired_pages_pending", "gauge", "1 when a page retirement awaits a reboot.", _G),
        MetricSpec(
            "nomade_gpu_remapped_rows_total",
            "counter",
            "Memory rows remapped (Ampere+), by cause correctable / uncorrectable.",
            ("gpu", "cause"),
        ),
        MetricSpec("nomade_gpu_remapped_rows_pending", "gauge", "1 when a row remap awaits a GPU reset.", _G),
        MetricSpec("nomade_gpu_remapped_rows_failure", "gauge", "1 when a row remap failed.", _G),
        MetricSpec("nomade_gpu_mig_mode_enabled", "gauge", "1 when MIG mode is on (absent: no MIG support).", _G),
        MetricSpec(
            "nomade_gpu_mig_instance_info",
            "info",
            "A MIG device: GPU instance and compute instance ids, MIG index and UUID (empty when unknown).",
            (*_MIG, "mig_index", "uuid"),
        ),
        MetricSpec("nomade_gpu_mig_memory_total_bytes", "gauge", "Framebuffer of the MIG instance.", _MIG, "bytes"),
        MetricSpec("nomade_gpu_mig_memory_used_bytes", "gauge", "Framebuffer used in the MIG instance.", _MIG, "bytes"),
        MetricSpec("nomade_gpu_mig_multiprocessors", "gauge", "Streaming multiprocessors of the MIG instance.", _MIG),
        MetricSpec("nomade_gpu_processes", "gauge", "Processes using the GPU (compute and graphics).", _G),
        MetricSpec(
            "nomade_gpu_process_memory_used_bytes",
            "gauge",
            "GPU memory used by one process (option per_process).",
            ("gpu", "pid", "process"),
            "bytes",
        ),
        MetricSpec(
            "nomade_gpu_job_info",
            "info",
            "A SLURM job holds this GPU (prolog files or cgroup v1 devices.list); user empty when unknown.",
            ("gpu", "job_id", "user"),
        ),
    )

    def __init__(self, ctx: CollectorContext, nvml: Any = None) -> None:
        """Create the collector; ``nvml`` injects an initialised pynvml-like module (tests)."""
        super().__init__(ctx)
        self.source = str(self.option("source", "auto"))
        if self.source not in ("auto", "nvml", "nvidia-smi", "nvidia-smi-csv"):
            raise ValueError(f"[collector.gpu] source: unknown value {self.source!r}")
        self.smi = str(self.option("nvidia_smi", "nvidia-smi"))
        timeout = self.option("timeout", None)
        self.timeout = float(timeout) if timeout is not None else None
        self.per_process = bool(self.option("per_process", False))
        self.job_mapping = bool(self.option("job_mapping", True))
        self.job_dir = Path(str(self.option("job_dir", DEFAULT_JOB_DIR)))
        self.job_file_ids = str(self.option("job_file_ids", "index"))
        if self.job_file_ids not in ("index", "minor"):
            raise ValueError(f"[collector.gpu] job_file_ids: unknown value {self.job_file_ids!r}")
        self.cgroup_root = Path(str(self.option("cgroup_devices_root", ctx.sys_root / "fs/cgroup/devices")))
        self._nvml = nvml
        self._nvml_tried = nvml is not None
        self._said_unavailable = False
        self._users: dict[int, str] = {}

    @classmethod
    def available(cls) -> bool:
        """NVML loads (nvidia-ml-py installed and the driver present) or ``nvidia-smi`` is on PATH."""
        if shutil.which("nvidia-smi") is not None:
            return True
        nvml = load_nvml()
        if nvml is None:
            return False
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down a probe; nothing to report
            pass
        return True

    # ------------------------------------------------------------------------------------------------ reading

    def _nvml_module(self) -> Any:
        if not self._nvml_tried:
            self._nvml_tried = True
            self._nvml = load_nvml()
        return self._nvml

    def _read(self) -> tuple[list[GpuDevice], str] | None:
        """Devices and the source name; None when no source exists on this node."""
        if self.source in ("auto", "nvml"):
            nvml = self._nvml_module()
            if nvml is not None:
                return self._read_nvml(nvml), "nvml"
            if self.source == "nvml":
                return None
        try:
            if self.source == "nvidia-smi-csv":
                return self._read_csv(), "nvidia-smi-csv"
            result = self.ctx.runner.run([self.smi, "-q", "-x"], timeout=self.timeout)
        except CommandError as exc:
            if exc.reason == "missing":
                return None
            raise
        parsed = parse_smi_xml(result.stdout)
        self.count_parse_errors(len(parsed.issues))
        if not parsed.records:
            raise CollectorError(f"nvidia-smi -q -x: no GPU in the output ({len(parsed.issues)} issues)")
        return parsed.records, "nvidia-smi"

    def _read_csv(self) -> list[GpuDevice]:
        gpus = self.ctx.runner.run(
            [self.smi, "--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=csv,nounits"], timeout=self.timeout
        )
        parsed = parse_query_gpu_csv(gpus.stdout)
        self.count_parse_errors(len(parsed.issues))
        if not parsed.records:
            raise CollectorError(f"nvidia-smi --query-gpu: no GPU in the output ({len(parsed.issues)} issues)")
        apps = self.ctx.runner.run(
            [self.smi, "--query-compute-apps=" + ",".join(QUERY_APPS_FIELDS), "--format=csv,nounits"],
            timeout=self.timeout,
        )
        procs = parse_compute_apps_csv(apps.stdout)
        self.count_parse_errors(len(procs.issues))
        by_uuid = {g.uuid: g for g in parsed.records if g.uuid}
        for g in parsed.records:
            g.processes = []
        for p in procs.records:
            owner = by_uuid.get(p.gpu_uuid)
            if owner is not None and owner.processes is not None:
                owner.processes.append(p)
        return parsed.records

    def _read_nvml(self, nvml: Any) -> list[GpuDevice]:
        """Read every GPU through NVML; raises CollectorError when the device count cannot be read."""
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001 - NVMLError and anything the binding raises
            raise CollectorError(f"NVML: nvmlDeviceGetCount failed: {exc}") from exc
        reader = _NvmlReader(nvml)
        driver = reader.text("nvmlSystemGetDriverVersion")
        devices = []
        for i in range(count):
            handle = reader.call("nvmlDeviceGetHandleByIndex", i)
            if handle is None:
                continue
            devices.append(reader.device(i, handle, driver))
        self.count_parse_errors(reader.errors)
        if not devices:
            raise CollectorError(f"NVML: none of {count} GPUs could be read")
        return devices

    # ------------------------------------------------------------------------------------------------ export

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CommandError/CollectorError when the source exists but fails."""
        read = self._read()
        if read is None:
            if not self._said_unavailable:
                self._said_unavailable = True
                self.log.warning(
                    "no GPU source on this node (source=%s: NVML not loadable / %s not found); "
                    "exporting nomade_gpu_source_available 0",
                    self.source,
                    self.smi,
                )
            out.add("nomade_gpu_source_available", 0)
            return
        devices, source = read
        out.add("nomade_gpu_source_available", 1)
        out.info("nomade_gpu_source_info", source=source)
        for g in devices:
            self._export_device(out, g)
        if self.job_mapping:
            for (gpu, job), user in sorted(self.job_map(devices).items()):
                out.info("nomade_gpu_job_info", gpu=gpu, job_id=job, user=user)

    def _export_device(self, out: MetricSet, g: GpuDevice) -> None:
        gpu = str(g.index)
        # extend(): a label called "name" cannot go through add()/info(), whose first parameter is "name".
        identity = (
            gpu,
            g.uuid or "",
            g.name or "",
            g.driver_version or "",
            g.pci_bus_id or "",
            g.vbios_version or "",
            "" if g.minor_number is None else str(g.minor_number),
        )
        out.extend("nomade_gpu_info", {identity: 1.0})
        for engine, v in g.utilization.items():
            out.add("nomade_gpu_utilization_ratio", v, gpu=gpu, engine=engine)
        for key in ("total", "used", "free", "reserved"):
            out.add(f"nomade_gpu_memory_{key}_bytes", g.memory.get(key), gpu=gpu)
        out.add("nomade_gpu_bar1_memory_total_bytes", g.bar1_memory.get("total"), gpu=gpu)
        out.add("nomade_gpu_bar1_memory_used_bytes", g.bar1_memory.get("used"), gpu=gpu)
        for sensor, v in g.temperature.items():
            out.add("nomade_gpu_temperature_celsius", v, gpu=gpu, sensor=sensor)
        for threshold, v in g.temperature_thresholds.items():
            out.add("nomade_gpu_temperature_threshold_celsius", v, gpu=gpu, threshold=threshold)
        out.add("nomade_gpu_temperature_margin_celsius", g.temperature_margin, gpu=gpu)
        out.add("nomade_gpu_power_draw_watts", g.power.get("draw"), gpu=gpu)
        out.add("nomade_gpu_power_draw_instant_watts", g.power.get("instant"), gpu=gpu)
        for limit, v in g.power_limits.items():
            out.add("nomade_gpu_power_limit_watts", v, gpu=gpu, limit=limit)
        out.add("nomade_gpu_energy_joules_total", g.energy_joules, gpu=gpu)
        for clock, v in g.clocks.items():
            out.add("nomade_gpu_clock_hertz", v, gpu=gpu, clock=clock)
        for clock, v in g.max_clocks.items():
            out.add("nomade_gpu_clock_max_hertz", v, gpu=gpu, clock=clock)
        for reason, active in g.throttle_reasons.items():
            out.add("nomade_gpu_throttle_reason", int(active), gpu=gpu, reason=reason)
        for reason, seconds in g.throttle_seconds.items():
            out.add("nomade_gpu_throttle_duration_seconds_total", seconds, gpu=gpu, reason=reason)
        out.add("nomade_gpu_fan_speed_ratio", g.fan_speed_ratio, gpu=gpu)
        out.add("nomade_gpu_performance_state", g.performance_state, gpu=gpu)
        for kind in ("current", "max"):
            out.add("nomade_gpu_pcie_link_generation", g.pcie.get(f"link_gen_{kind}"), gpu=gpu, kind=kind)
            out.add("nomade_gpu_pcie_link_width", g.pcie.get(f"link_width_{kind}"), gpu=gpu, kind=kind)
        out.add("nomade_gpu_pcie_replays_total", g.pcie.get("replays"), gpu=gpu)
        out.add("nomade_gpu_ecc_mode_enabled", _flag(g.ecc_mode_enabled), gpu=gpu)
        for (scope, kind, location), v in g.ecc_errors.items():
            name = "nomade_gpu_ecc_volatile_errors" if scope == "volatile" else "nomade_gpu_ecc_aggregate_errors_total"
            out.add(name, v, gpu=gpu, type=kind, location=location)
        for cause, v in g.retired_pages.items():
            out.add("nomade_gpu_retired_pages_total", v, gpu=gpu, cause=cause)
        out.add("nomade_gpu_retired_pages_pending", _flag(g.retired_pages_pending), gpu=gpu)
        for cause, v in g.remapped_rows.items():
            out.add("nomade_gpu_remapped_rows_total", v, gpu=gpu, cause=cause)
        out.add("nomade_gpu_remapped_rows_pending", _flag(g.remapped_rows_pending), gpu=gpu)
        out.add("nomade_gpu_remapped_rows_failure", _flag(g.remapped_rows_failure), gpu=gpu)
        out.add("nomade_gpu_mig_mode_enabled", _flag(g.mig_mode_enabled), gpu=gpu)
        for m in g.mig_devices:
            if m.gpu_instance_id is None or m.compute_instance_id is None:
                continue
            ids = {"gpu": gpu, "gpu_instance": m.gpu_instance_id, "compute_instance": m.compute_instance_id}
            mig_index = "" if m.index is None else m.index
            out.info("nomade_gpu_mig_instance_info", **ids, mig_index=mig_index, uuid=m.uuid or "")
            out.add("nomade_gpu_mig_memory_total_bytes", m.memory_total_bytes, **ids)
            out.add("nomade_gpu_mig_memory_used_bytes", m.memory_used_bytes, **ids)
            out.add("nomade_gpu_mig_multiprocessors", m.multiprocessor_count, **ids)
        if g.processes is not None:
            out.add("nomade_gpu_processes", len(g.processes), gpu=gpu)
            if self.per_process:
                for p in g.processes:
                    if p.pid is not None:
                        process = os.path.basename(p.name or self._comm(p.pid))
                        out.add(
                            "nomade_gpu_process_memory_used_bytes",
                            p.used_memory_bytes,
                            gpu=gpu,
                            pid=p.pid,
                            process=process,
                        )

    # ------------------------------------------------------------------------------------------------ jobs

    def job_map(self, devices: list[GpuDevice]) -> dict[tuple[str, str], str]:
        """``{(gpu index, job id): user}`` from the prolog files, completed by cgroup v1 ``devices.list``.

        Ids that match no GPU of ``devices`` are dropped (absent beats wrong). Unreadable files count as parse
        errors; a missing directory is normal (no prolog installed, no cgroup v1).
        """
        by_index = {g.index: g for g in devices if g.index is not None}
        by_minor = {}
        for g in devices:
            minor = g.minor_number if g.minor_number is not None else self._proc_minor(g.pci_bus_id)
            if minor is not None and g.index is not None:
                by_minor[minor] = g.index
        out: dict[tuple[str, str], str] = {}
        for job, ids, user in self._job_files():
            for gpu_id in ids:
                index = gpu_id if self.job_file_ids == "index" else by_minor.get(gpu_id)
                if index in by_index:
                    out[(str(index), job)] = user or ""
        for job, minors, user in self._cgroup_jobs():
            for minor in minors:
                index = by_minor.get(minor)
                if index is not None and (str(index), job) not in out:
                    out[(str(index), job)] = user
        return out

    def _job_files(self) -> list[tuple[str, tuple[int, ...], str | None]]:
        try:
            entries = sorted(self.job_dir.iterdir())
        except OSError:
            return []
        out = []
        for path in entries:
            if not re.fullmatch(r"\d+", path.name):
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue  # removed by the epilog between listing and reading
            parsed = parse_gpu_job_file(text)
            self.count_parse_errors(len(parsed.issues))
            for rec in parsed.records:
                out.append((path.name, rec.gpu_ids, rec.user))
        return out

    def _cgroup_jobs(self) -> list[tuple[str, tuple[int, ...], str]]:
        out = []
        for path in sorted(self.cgroup_root.glob("slurm*/uid_*/job_*/devices.list")):
            job = path.parent.name.removeprefix("job_")
            uid_text = path.parent.parent.name.removeprefix("uid_")
            if not (job.isdigit() and uid_text.isdigit()):
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue  # job ended between glob and read
            parsed = parse_devices_list(text)
            self.count_parse_errors(len(parsed.issues))
            rec = parsed.records[0]
            if rec.all_devices or not rec.gpu_minors:
                continue
            out.append((job, rec.gpu_minors, self._user(int(uid_text))))
        return out

    def _comm(self, pid: int) -> str:
        # NVML gives no process names: /proc/<pid>/comm (empty when the process is gone or not visible).
        try:
            return (self.ctx.proc_root / str(pid) / "comm").read_text(errors="replace").strip()
        except OSError:
            return ""

    def _user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]

    def _proc_minor(self, bus_id: str | None) -> int | None:
        """Device minor from ``/proc/driver/nvidia/gpus/<dddd:bb:dd.f>/information`` ("Device Minor: N")."""
        if not bus_id:
            return None
        short = bus_id.lower()
        if re.fullmatch(r"[0-9a-f]{8}:.*", short):
            short = short[4:]  # nvidia-smi prints an 8-digit domain, the kernel 4 digits
        try:
            text = (self.ctx.proc_root / "driver/nvidia/gpus" / short / "information").read_text(errors="replace")
        except OSError:
            return None
        m = re.search(r"^Device Minor:\s*(\d+)\s*$", text, re.MULTILINE)
        return int(m.group(1)) if m else None

    def close(self) -> None:
        """Shut NVML down if this collector initialised it."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            self._nvml = None


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


class _NvmlReader:
    """Read one :class:`GpuDevice` through pynvml calls.

    NOT_SUPPORTED, NO_PERMISSION and NOT_FOUND mean absent; other NVML errors mean absent and one counted error.
    """

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.errors = 0
        self.quiet = {
            getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", _NVML_NOT_SUPPORTED),
            getattr(nvml, "NVML_ERROR_NO_PERMISSION", _NVML_NO_PERMISSION),
            getattr(nvml, "NVML_ERROR_NOT_FOUND", _NVML_NOT_FOUND),
        }
        self.error_class = getattr(nvml, "NVMLError", Exception)

    def call(self, fn: str, *args: Any) -> Any:
        """``pynvml.<fn>(*args)``, or None when absent (old binding, unsupported) or failing."""
        func: Callable[..., Any] | None = getattr(self.nvml, fn, None)
        if func is None:
            return None
        try:
            return func(*args)
        except self.error_class as exc:
            if getattr(exc, "value", None) not in self.quiet:
                self.errors += 1
            return None

    def text(self, fn: str, *args: Any) -> str | None:
        value = self.call(fn, *args)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return None if value is None else str(value)

    def const(self, name: str, default: int) -> int:
        return int(getattr(self.nvml, name, default))

    def device(self, index: int, h: Any, driver: str | None) -> GpuDevice:
        g = GpuDevice(index=index, driver_version=driver)
        g.name = self.text("nvmlDeviceGetName", h)
        g.uuid = self.text("nvmlDeviceGetUUID", h)
        pci = self.call("nvmlDeviceGetPciInfo", h)
        bus = getattr(pci, "busId", None) if pci is not None else None
        g.pci_bus_id = bus.decode("ascii", "replace") if isinstance(bus, bytes) else bus
        g.vbios_version = self.text("nvmlDeviceGetVbiosVersion", h)
        g.minor_number = self.call("nvmlDeviceGetMinorNumber", h)
        util = self.call("nvmlDeviceGetUtilizationRates", h)
        if util is not None:
            g.utilization["gpu"] = util.gpu / 100
            g.utilization["memory"] = util.memory / 100
        for engine, fn in (
            ("encoder", "nvmlDeviceGetEncoderUtilization"),
            ("decoder", "nvmlDeviceGetDecoderUtilization"),
        ):
            value = self.call(fn, h)
            if value is not None:
                g.utilization[engine] = value[0] / 100  # [utilisation %, sampling period us]
        mem = self.call("nvmlDeviceGetMemoryInfo", h)
        if mem is not None:
            g.memory.update(total=float(mem.total), used=float(mem.used), free=float(mem.free))
            if getattr(mem, "reserved", None) is not None:  # nvmlMemory_v2 only
                g.memory["reserved"] = float(mem.reserved)
        bar1 = self.call("nvmlDeviceGetBAR1MemoryInfo", h)
        if bar1 is not None:
            g.bar1_memory.update(total=float(bar1.bar1Total), used=float(bar1.bar1Used), free=float(bar1.bar1Free))
        temp = self.call("nvmlDeviceGetTemperature", h, self.const("NVML_TEMPERATURE_GPU", 0))
        if temp is not None:
            g.temperature["gpu"] = float(temp)
        for name, default in _NVML_THRESHOLDS.items():
            const = (
                "NVML_TEMPERATURE_THRESHOLD_"
                + {
                    "shutdown": "SHUTDOWN",
                    "slowdown": "SLOWDOWN",
                    "memory_max_operating": "MEM_MAX",
                    "max_operating": "GPU_MAX",
                }[name]
            )
            value = self.call("nvmlDeviceGetTemperatureThreshold", h, self.const(const, default))
            if value is not None:
                g.temperature_thresholds[name] = float(value)
        mw = 1e-3
        power = self.call("nvmlDeviceGetPowerUsage", h)
        if power is not None:
            g.power["draw"] = power * mw
        for key, fn in (
            ("enforced", "nvmlDeviceGetEnforcedPowerLimit"),
            ("requested", "nvmlDeviceGetPowerManagementLimit"),
            ("default", "nvmlDeviceGetPowerManagementDefaultLimit"),
        ):
            value = self.call(fn, h)
            if value is not None:
                g.power_limits[key] = value * mw
        constraints = self.call("nvmlDeviceGetPowerManagementLimitConstraints", h)
        if constraints is not None:
            g.power_limits["min"], g.power_limits["max"] = constraints[0] * mw, constraints[1] * mw
        energy = self.call("nvmlDeviceGetTotalEnergyConsumption", h)
        if energy is not None:
            g.energy_joules = energy * 1e-3  # mJ
        for clock, default in _NVML_CLOCKS.items():
            const = self.const(
                "NVML_CLOCK_" + {"graphics": "GRAPHICS", "sm": "SM", "memory": "MEM", "video": "VIDEO"}[clock], default
            )
            value = self.call("nvmlDeviceGetClockInfo", h, const)
            if value is not None:
                g.clocks[clock] = value * 1e6
            value = self.call("nvmlDeviceGetMaxClockInfo", h, const)
            if value is not None:
                g.max_clocks[clock] = value * 1e6
        self._throttle(g, h)
        fan = self.call("nvmlDeviceGetFanSpeed", h)
        if fan is not None:
            g.fan_speed_ratio = fan / 100
        pstate = self.call("nvmlDeviceGetPerformanceState", h)
        if pstate is not None and 0 <= pstate <= 15:  # 32 = NVML_PSTATE_UNKNOWN
            g.performance_state = int(pstate)
        for key, fn in (
            ("link_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration"),
            ("link_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration"),
            ("link_width_current", "nvmlDeviceGetCurrPcieLinkWidth"),
            ("link_width_max", "nvmlDeviceGetMaxPcieLinkWidth"),
            ("replays", "nvmlDeviceGetPcieReplayCounter"),
        ):
            value = self.call(fn, h)
            if value is not None:
                g.pcie[key] = float(value)
        self._ecc(g, h)
        self._mig(g, h)
        g.processes = self._processes(h)
        return g

    def _throttle(self, g: GpuDevice, h: Any) -> None:
        current = self.call("nvmlDeviceGetCurrentClocksEventReasons", h)
        if current is None:
            current = self.call("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        supported = self.call("nvmlDeviceGetSupportedClocksEventReasons", h)
        if supported is None:
            supported = self.call("nvmlDeviceGetSupportedClocksThrottleReasons", h)
        if current is None:
            return
        for reason, bit in NVML_THROTTLE_BITS.items():
            if supported is None or supported & bit:
                g.throttle_reasons[reason] = bool(current & bit)

    def _ecc(self, g: GpuDevice, h: Any) -> None:
        mode = self.call("nvmlDeviceGetEccMode", h)
        if mode is not None:
            g.ecc_mode_enabled = bool(mode[0])  # [current, pending]
        if not g.ecc_mode_enabled:
            return
        types = {
            "corrected": self.const("NVML_MEMORY_ERROR_TYPE_CORRECTED", 0),
            "uncorrected": self.const("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1),
        }
        scopes = {"volatile": self.const("NVML_VOLATILE_ECC", 0), "aggregate": self.const("NVML_AGGREGATE_ECC", 1)}
        for kind, t in types.items():
            for scope, s in scopes.items():
                total = self.call("nvmlDeviceGetTotalEccErrors", h, t, s)
                if total is not None:
                    g.ecc_errors[(scope, kind, "total")] = float(total)
                for location, default in _NVML_LOCATIONS.items():
                    loc = self.const(f"NVML_MEMORY_LOCATION_{location.upper()}", default)
                    value = self.call("nvmlDeviceGetMemoryErrorCounter", h, t, s, loc)
                    if value is not None:
                        g.ecc_errors[(scope, kind, location)] = float(value)
        for cause, default in (("single_bit_ecc", 0), ("double_bit_ecc", 1)):
            name = "MULTIPLE_SINGLE_BIT_ECC_ERRORS" if cause == "single_bit_ecc" else "DOUBLE_BIT_ECC_ERROR"
            pages = self.call("nvmlDeviceGetRetiredPages", h, self.const(f"NVML_PAGE_RETIREMENT_CAUSE_{name}", default))
            if pages is not None:
                g.retired_pages[cause] = float(len(pages))
        pending = self.call("nvmlDeviceGetRetiredPagesPendingStatus", h)
        if pending is not None:
            g.retired_pages_pending = bool(pending)
        rows = self.call("nvmlDeviceGetRemappedRows", h)
        if rows is not None:
            corr, unc, pend, fail = rows[:4]
            g.remapped_rows.update(correctable=float(corr), uncorrectable=float(unc))
            g.remapped_rows_pending, g.remapped_rows_failure = bool(pend), bool(fail)

    def _mig(self, g: GpuDevice, h: Any) -> None:
        mode = self.call("nvmlDeviceGetMigMode", h)
        if mode is None:
            return
        g.mig_mode_enabled = bool(mode[0])
        if not g.mig_mode_enabled:
            return
        for i in range(int(self.call("nvmlDeviceGetMaxMigDeviceCount", h) or 0)):
            mh = self.call("nvmlDeviceGetMigDeviceHandleByIndex", h, i)
            if mh is None:
                continue  # empty slot: NVML_ERROR_NOT_FOUND
            m = MigDevice(index=i)
            m.gpu_instance_id = self.call("nvmlDeviceGetGpuInstanceId", mh)
            m.compute_instance_id = self.call("nvmlDeviceGetComputeInstanceId", mh)
            m.uuid = self.text("nvmlDeviceGetUUID", mh)
            mem = self.call("nvmlDeviceGetMemoryInfo", mh)
            if mem is not None:
                m.memory_total_bytes, m.memory_used_bytes = float(mem.total), float(mem.used)
                m.memory_free_bytes = float(mem.free)
            attrs = self.call("nvmlDeviceGetAttributes", mh)
            if attrs is not None:
                m.multiprocessor_count = int(attrs.multiprocessorCount)
            g.mig_devices.append(m)

    def _processes(self, h: Any) -> list[GpuProcess] | None:
        compute = self.call("nvmlDeviceGetComputeRunningProcesses", h)
        graphics = self.call("nvmlDeviceGetGraphicsRunningProcesses", h)
        if compute is None and graphics is None:
            return None
        by_pid: dict[int, GpuProcess] = {}
        for kind, procs in (("C", compute or []), ("G", graphics or [])):
            for p in procs:
                pid = int(p.pid)
                if pid in by_pid:
                    by_pid[pid].type = "C+G"
                    continue
                used = getattr(p, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE (no permission, WDDM)
                gi, ci = getattr(p, "gpuInstanceId", None), getattr(p, "computeInstanceId", None)
                by_pid[pid] = GpuProcess(
                    pid=pid,
                    type=kind,
                    used_memory_bytes=None if used is None else float(used),
                    gpu_instance_id=None if gi in (None, _NVML_NO_INSTANCE) else int(gi),
                    compute_instance_id=None if ci in (None, _NVML_NO_INSTANCE) else int(ci),
                )
        return list(by_pid.values())


COLLECTOR = GpuCollector
