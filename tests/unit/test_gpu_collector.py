"""gpu collector: nvidia-smi through a fake runner, NVML through a fake pynvml module, the GPU-to-job mapping."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import MappedRunner, own_fixture, shared_file

from nomade.exporter.collectors import gpu
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.gpu import GpuCollector
from nomade.exporter.parsers.nvidia_smi import MIB, QUERY_APPS_FIELDS, QUERY_GPU_FIELDS
from nomade.exporter.runner import CommandError

XML_ARGV = ("nvidia-smi", "-q", "-x")
CSV_ARGV = ("nvidia-smi", "--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=csv,nounits")
APPS_ARGV = ("nvidia-smi", "--query-compute-apps=" + ",".join(QUERY_APPS_FIELDS), "--format=csv,nounits")


FakeRunner = MappedRunner


def make(tmp_path: Path, outputs=None, nvml=None, **options) -> tuple[GpuCollector, FakeRunner]:
    runner = FakeRunner(outputs or {})
    options.setdefault("job_dir", str(tmp_path / "gpu-jobs"))
    ctx = CollectorContext(runner=runner, options=options, proc_root=tmp_path / "proc", sys_root=tmp_path / "sys")
    col = GpuCollector(ctx, nvml=nvml)
    if nvml is None:
        col._nvml_tried = True  # never load a real pynvml in unit tests
    return col, runner


def collect(col: GpuCollector):
    out = col.new_set()
    col.collect(out)
    out.families()  # the exposition must build
    return out


def test_module_exposes_collector():
    assert gpu.COLLECTOR is GpuCollector
    assert GpuCollector.name == "gpu" and GpuCollector.mode == "node"


# ---------------------------------------------------------------------------------------------- nvidia-smi


def test_xml_source_a100_mig(tmp_path):
    col, runner = make(tmp_path, {XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")})
    out = collect(col)
    v = out.value
    assert runner.calls == [XML_ARGV]
    assert col.parse_errors == 0
    assert v("nomade_gpu_source_available") == 1
    assert v("nomade_gpu_source_info", source="nvidia-smi") == 1
    assert (
        out.samples("nomade_gpu_info")[
            (
                "1",
                "GPU-6f5b2d3c-1e4a-4f6b-9c7d-8e9f0a1b2c3d",
                "NVIDIA A100-SXM4-40GB",
                "535.129.03",
                "00000000:0F:00.0",
                "92.00.36.00.02",
                "0",
            )
        ]
        == 1
    )
    assert v("nomade_gpu_utilization_ratio", gpu="1", engine="gpu") == 0.87
    assert v("nomade_gpu_utilization_ratio", gpu="0", engine="gpu") is None  # N/A under MIG: absent, not 0
    assert v("nomade_gpu_memory_used_bytes", gpu="1") == 30722 * MIB
    assert v("nomade_gpu_memory_used_bytes", gpu="0") is None
    assert v("nomade_gpu_memory_total_bytes", gpu="0") == 40960 * MIB
    assert v("nomade_gpu_temperature_celsius", gpu="1", sensor="memory") == 81
    assert v("nomade_gpu_temperature_threshold_celsius", gpu="1", threshold="slowdown") == 89
    assert v("nomade_gpu_power_draw_watts", gpu="0") == 398.52
    assert v("nomade_gpu_power_limit_watts", gpu="0", limit="enforced") == 400
    assert v("nomade_gpu_clock_hertz", gpu="1", clock="sm") == 1095e6
    assert v("nomade_gpu_clock_max_hertz", gpu="1", clock="sm") == 1410e6
    assert v("nomade_gpu_throttle_reason", gpu="1", reason="hw_thermal_slowdown") == 1
    assert v("nomade_gpu_throttle_reason", gpu="1", reason="gpu_idle") == 0
    assert v("nomade_gpu_pcie_replays_total", gpu="0") == 3
    assert v("nomade_gpu_pcie_link_width", gpu="0", kind="max") == 16
    assert v("nomade_gpu_ecc_volatile_errors", gpu="0", type="corrected", location="dram") == 12
    assert v("nomade_gpu_ecc_aggregate_errors_total", gpu="0", type="uncorrected", location="dram") == 1
    assert v("nomade_gpu_remapped_rows_total", gpu="0", cause="correctable") == 2
    assert v("nomade_gpu_remapped_rows_pending", gpu="0") == 1
    assert v("nomade_gpu_mig_mode_enabled", gpu="0") == 1 and v("nomade_gpu_mig_mode_enabled", gpu="1") == 0
    mig = {"gpu": "0", "gpu_instance": "5", "compute_instance": "0"}
    assert v("nomade_gpu_mig_instance_info", **mig, mig_index="1", uuid="") == 1
    assert v("nomade_gpu_mig_memory_total_bytes", **mig) == 4864 * MIB
    assert v("nomade_gpu_mig_multiprocessors", **mig) == 14
    assert v("nomade_gpu_processes", gpu="0") == 1 and v("nomade_gpu_processes", gpu="1") == 2
    assert out.samples("nomade_gpu_process_memory_used_bytes") == {}  # per-process off by default
    assert out.samples("nomade_gpu_retired_pages_total") == {}  # N/A on Ampere


def test_per_process_series(tmp_path):
    col, _ = make(tmp_path, {XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")}, per_process=True)
    out = collect(col)
    assert out.samples("nomade_gpu_process_memory_used_bytes") == {
        ("0", "48211", "python"): 5110 * MIB,
        ("1", "50117", "gmx_mpi"): 30710 * MIB,
        # pid 50118: "Insufficient Permissions" -> no sample
    }


@pytest.mark.fixtures
def test_xml_source_on_captured_t4(tmp_path):
    text = shared_file("nvidia-smi", "telegraf-nvsmi-q-x-tesla-t4-2procs-v11.xml").read_text()
    col, _ = make(tmp_path, {XML_ARGV: text})
    out = collect(col)
    assert out.value("nomade_gpu_retired_pages_total", gpu="0", cause="double_bit_ecc") == 0
    assert out.value("nomade_gpu_fan_speed_ratio", gpu="0") is None
    assert out.value("nomade_gpu_mig_mode_enabled", gpu="0") is None  # N/A: no MIG support
    assert out.value("nomade_gpu_processes", gpu="0") == 2


def test_csv_source_attaches_processes_by_uuid(tmp_path):
    outputs = {
        CSV_ARGV: own_fixture("nvidia-smi", "query-gpu-nounits-v100-470.csv"),
        APPS_ARGV: own_fixture("nvidia-smi", "query-compute-apps-nounits-v100-470.csv"),
    }
    col, runner = make(tmp_path, outputs, source="nvidia-smi-csv")
    out = collect(col)
    assert runner.calls == [CSV_ARGV, APPS_ARGV]
    assert out.value("nomade_gpu_source_info", source="nvidia-smi-csv") == 1
    assert out.value("nomade_gpu_processes", gpu="0") == 2
    assert out.value("nomade_gpu_processes", gpu="1") == 0
    assert out.value("nomade_gpu_ecc_aggregate_errors_total", gpu="0", type="corrected", location="total") == 14
    assert out.value("nomade_gpu_retired_pages_pending", gpu="1") == 1


def test_failing_nvidia_smi_raises(tmp_path):
    err = CommandError(XML_ARGV, "exit", "NVIDIA-SMI has failed because it couldn't communicate with the driver")
    col, _ = make(tmp_path, {XML_ARGV: err})
    with pytest.raises(CommandError):
        collect(col)


def test_unparseable_output_raises(tmp_path):
    col, _ = make(tmp_path, {XML_ARGV: "garbage"})
    with pytest.raises(CollectorError):
        collect(col)
    assert col.parse_errors == 1


def test_missing_source_is_said_once_and_exported_as_zero(tmp_path, caplog):
    col, _ = make(tmp_path, {})
    with caplog.at_level(logging.WARNING, logger="nomade.exporter.gpu"):
        for _ in range(3):
            out = collect(col)
            assert out.value("nomade_gpu_source_available") == 0
            assert out.samples("nomade_gpu_info") == {}
    assert len([r for r in caplog.records if "no GPU source" in r.message]) == 1


def test_available_without_nvml_or_nvidia_smi(monkeypatch):
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)
    monkeypatch.setattr(gpu, "load_nvml", lambda: None)
    assert GpuCollector.available() is False
    monkeypatch.setattr(gpu.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert GpuCollector.available() is True


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError):
        make(tmp_path, source="dcgm")
    with pytest.raises(ValueError):
        make(tmp_path, job_file_ids="uuid")


# ---------------------------------------------------------------------------------------------- NVML


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeNvml:
    """The subset of the pynvml (nvidia-ml-py) API the collector calls, for two GPUs."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_UNKNOWN = 999
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_CLOCK_VIDEO = 0, 1, 2, 3
    NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 0, 1
    NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1

    def __init__(self):
        self.shutdown_calls = 0

    def nvmlShutdown(self):
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"  # older nvidia-ml-py returns bytes

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i):
        if h != ("gpu", 1) or i > 1:
            raise NVMLError(self.NVML_ERROR_NOT_FOUND)
        return ("mig", i)

    def nvmlDeviceGetName(self, h):
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return {("gpu", 0): "GPU-aaaa", ("gpu", 1): "GPU-bbbb", ("mig", 0): "MIG-cccc", ("mig", 1): "MIG-dddd"}[h]

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=b"00000000:%02X:00.0" % (0x18 + h[1]))

    def nvmlDeviceGetVbiosVersion(self, h):
        return "96.00.74.00.0D"

    def nvmlDeviceGetMinorNumber(self, h):
        return {0: 1, 1: 0}[h[1]]  # minor order differs from index order

    def nvmlDeviceGetUtilizationRates(self, h):
        if h[1] == 1:
            raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)  # MIG mode
        return SimpleNamespace(gpu=93, memory=41)

    def nvmlDeviceGetEncoderUtilization(self, h):
        return [0, 167000]

    def nvmlDeviceGetDecoderUtilization(self, h):
        raise NVMLError(self.NVML_ERROR_UNKNOWN)  # a real failure: absent and counted

    def nvmlDeviceGetMemoryInfo(self, h):
        if h[0] == "mig":
            return SimpleNamespace(total=20 * 1024 * MIB, used=(h[1] + 1) * 1024 * MIB, free=0)
        return SimpleNamespace(total=80 * 1024 * MIB, used=10 * 1024 * MIB, free=70 * 1024 * MIB)

    def nvmlDeviceGetBAR1MemoryInfo(self, h):
        return SimpleNamespace(bar1Total=128 * 1024 * MIB, bar1Used=2 * MIB, bar1Free=0)

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == 0
        return 55

    def nvmlDeviceGetTemperatureThreshold(self, h, kind):
        if kind == 2:
            raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return {0: 92, 1: 89, 3: 87}[kind]

    def nvmlDeviceGetPowerUsage(self, h):
        return 512345  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700000

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 650000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return 700000

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return [200000, 700000]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return 123456789  # mJ

    def nvmlDeviceGetClockInfo(self, h, clock):
        return {0: 1980, 1: 1980, 2: 2619, 3: 1545}[clock]

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        return {0: 1980, 1: 1980, 2: 2619, 3: 1545}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4 | 0x40  # sw_power_cap + hw_thermal_slowdown

    def nvmlDeviceGetSupportedClocksEventReasons(self, h):
        return 0x1FF & ~0x100  # display clock setting not supported

    def nvmlDeviceGetFanSpeed(self, h):
        raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetPerformanceState(self, h):
        return 0

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return 5

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return 16

    def nvmlDeviceGetMaxPcieLinkWidth(self, h):
        return 16

    def nvmlDeviceGetPcieReplayCounter(self, h):
        return 7

    def nvmlDeviceGetEccMode(self, h):
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        return {(0, 0): 4, (1, 0): 0, (0, 1): 40, (1, 1): 1}[(error_type, counter_type)]

    def nvmlDeviceGetMemoryErrorCounter(self, h, error_type, counter_type, location):
        if location == 7:
            return 0
        return {(0, 0): 4, (1, 0): 0, (0, 1): 40, (1, 1): 1}[(error_type, counter_type)]

    def nvmlDeviceGetRetiredPages(self, h, cause):
        raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)  # Hopper: row remapping instead

    def nvmlDeviceGetRemappedRows(self, h):
        return (3, 0, 0, 0)

    def nvmlDeviceGetMigMode(self, h):
        return [h[1], h[1]]  # GPU 1 in MIG mode

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetGpuInstanceId(self, h):
        return {0: 2, 1: 9}[h[1]]

    def nvmlDeviceGetComputeInstanceId(self, h):
        return 0

    def nvmlDeviceGetAttributes(self, h):
        return SimpleNamespace(multiprocessorCount={0: 60, 1: 16}[h[1]])

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if h[1] == 0:
            return [
                SimpleNamespace(
                    pid=4242, usedGpuMemory=9 * 1024 * MIB, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
                ),
                SimpleNamespace(pid=4243, usedGpuMemory=None, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF),
            ]
        return [SimpleNamespace(pid=5151, usedGpuMemory=MIB, gpuInstanceId=9, computeInstanceId=0)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return [SimpleNamespace(pid=4242, usedGpuMemory=9 * 1024 * MIB)] if h[1] == 0 else []


def test_nvml_source(tmp_path):
    nvml = FakeNvml()
    proc = tmp_path / "proc" / "4242"
    proc.mkdir(parents=True)
    (proc / "comm").write_text("pw.x\n")
    col, runner = make(tmp_path, nvml=nvml, per_process=True)
    out = collect(col)
    v = out.value
    assert runner.calls == []  # NVML first: nvidia-smi not run
    assert v("nomade_gpu_source_info", source="nvml") == 1
    info = out.samples("nomade_gpu_info")
    assert ("0", "GPU-aaaa", "NVIDIA H100 80GB HBM3", "550.54.15", "00000000:18:00.0", "96.00.74.00.0D", "1") in info
    assert v("nomade_gpu_utilization_ratio", gpu="0", engine="gpu") == 0.93
    assert v("nomade_gpu_utilization_ratio", gpu="1", engine="gpu") is None  # NOT_SUPPORTED
    assert v("nomade_gpu_utilization_ratio", gpu="0", engine="decoder") is None
    assert col.parse_errors == 2  # the decoder failure on each GPU, counted; NOT_SUPPORTED is not
    assert v("nomade_gpu_memory_used_bytes", gpu="0") == 10 * 1024 * MIB
    assert v("nomade_gpu_temperature_threshold_celsius", gpu="0", threshold="max_operating") == 87
    assert v("nomade_gpu_temperature_threshold_celsius", gpu="0", threshold="memory_max_operating") is None
    assert v("nomade_gpu_power_draw_watts", gpu="0") == pytest.approx(512.345)
    assert v("nomade_gpu_power_limit_watts", gpu="0", limit="requested") == 650
    assert v("nomade_gpu_power_limit_watts", gpu="0", limit="min") == 200
    assert v("nomade_gpu_energy_joules_total", gpu="0") == pytest.approx(123456.789)
    assert v("nomade_gpu_clock_hertz", gpu="0", clock="memory") == 2619e6
    assert v("nomade_gpu_throttle_reason", gpu="0", reason="sw_power_cap") == 1
    assert v("nomade_gpu_throttle_reason", gpu="0", reason="hw_thermal_slowdown") == 1
    assert v("nomade_gpu_throttle_reason", gpu="0", reason="gpu_idle") == 0
    assert v("nomade_gpu_throttle_reason", gpu="0", reason="display_clocks_setting") is None  # unsupported
    assert v("nomade_gpu_fan_speed_ratio", gpu="0") is None
    assert v("nomade_gpu_pcie_replays_total", gpu="0") == 7
    assert v("nomade_gpu_ecc_volatile_errors", gpu="0", type="corrected", location="total") == 4
    assert v("nomade_gpu_ecc_aggregate_errors_total", gpu="0", type="uncorrected", location="dram") == 1
    assert v("nomade_gpu_ecc_aggregate_errors_total", gpu="0", type="corrected", location="sram") == 0
    assert v("nomade_gpu_remapped_rows_total", gpu="0", cause="correctable") == 3
    assert out.samples("nomade_gpu_retired_pages_total") == {}
    assert v("nomade_gpu_mig_mode_enabled", gpu="1") == 1
    assert out.samples("nomade_gpu_mig_instance_info") == {
        ("1", "2", "0", "0", "MIG-cccc"): 1.0,
        ("1", "9", "0", "1", "MIG-dddd"): 1.0,
    }
    assert v("nomade_gpu_mig_memory_used_bytes", gpu="1", gpu_instance="9", compute_instance="0") == 2048 * MIB
    assert v("nomade_gpu_mig_multiprocessors", gpu="1", gpu_instance="2", compute_instance="0") == 60
    assert v("nomade_gpu_processes", gpu="0") == 2  # 4242 is both C and G: counted once
    assert out.samples("nomade_gpu_process_memory_used_bytes") == {
        ("0", "4242", "pw.x"): 9 * 1024 * MIB,  # name from /proc/<pid>/comm
        ("1", "5151", ""): MIB,
    }
    col.close()
    assert nvml.shutdown_calls == 1


def test_nvml_device_count_failure_raises(tmp_path):
    nvml = FakeNvml()

    def broken():
        raise NVMLError(999)

    nvml.nvmlDeviceGetCount = broken
    col, _ = make(tmp_path, nvml=nvml)
    with pytest.raises(CollectorError):
        collect(col)


def test_explicit_nvml_without_nvml_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "load_nvml", lambda: None)
    runner = FakeRunner({XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")})
    col = GpuCollector(CollectorContext(runner=runner, options={"source": "nvml"}))
    assert collect(col).value("nomade_gpu_source_available") == 0
    assert runner.calls == []
    auto = GpuCollector(CollectorContext(runner=runner, options={"job_mapping": False}))
    assert collect(auto).value("nomade_gpu_source_info", source="nvidia-smi") == 1  # auto falls back


# ---------------------------------------------------------------------------------------------- job mapping


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_job_mapping_from_prolog_files_and_cgroup_v1(tmp_path):
    jobs = tmp_path / "gpu-jobs"
    write(jobs / "1001", "gpus=0\nuser=alice\n")
    write(jobs / "1002", "gpus=7\nuser=bob\n")  # no GPU 7 on this node: dropped
    write(jobs / "README", "gpus=1\n")  # not a job id: ignored
    write(jobs / "1003", "gpus=zero\n")  # unreadable: counted
    devices = tmp_path / "sys" / "fs" / "cgroup" / "devices" / "slurm"
    uid = os.getuid()
    # minor 0 is GPU index 1 in this document (GPU index 0 has minor 2)
    write(devices / f"uid_{uid}" / "job_2001" / "devices.list", "c 195:255 rwm\nc 195:0 rwm\nc 136:* rwm\n")
    write(devices / f"uid_{uid}" / "job_1001" / "devices.list", "c 195:2 rwm\n")  # same job as the prolog file
    write(devices / "uid_4242424" / "job_2002" / "devices.list", "a *:* rwm\n")  # unconstrained: not mapped
    write(devices / "uid_4242424" / "job_2003" / "devices.list", "c 195:2 rwm\n")
    col, _ = make(tmp_path, {XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")})
    out = collect(col)
    import pwd

    me = pwd.getpwuid(uid).pw_name
    assert out.samples("nomade_gpu_job_info") == {
        ("0", "1001", "alice"): 1.0,
        ("1", "2001", me): 1.0,
        ("0", "2003", "4242424"): 1.0,  # unknown uid: the number
    }
    assert col.parse_errors == 1


def test_job_file_ids_as_minors(tmp_path):
    write(tmp_path / "gpu-jobs" / "77", "gpus=0\n")
    col, _ = make(
        tmp_path, {XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")}, job_file_ids="minor"
    )
    assert collect(col).samples("nomade_gpu_job_info") == {("1", "77", ""): 1.0}


def test_csv_source_maps_cgroup_minors_through_proc_driver(tmp_path):
    info = tmp_path / "proc" / "driver" / "nvidia" / "gpus"
    write(info / "0000:1a:00.0" / "information", "Model: \t\t Tesla V100-SXM2-32GB\nDevice Minor: \t 3\n")
    write(info / "0000:1b:00.0" / "information", "Model: \t\t Tesla V100-SXM2-32GB\nDevice Minor: \t 1\n")
    write(tmp_path / "sys/fs/cgroup/devices/slurm/uid_0/job_9/devices.list", "c 195:1 rwm\n")
    outputs = {
        CSV_ARGV: own_fixture("nvidia-smi", "query-gpu-nounits-v100-470.csv"),
        APPS_ARGV: "No running processes found\n",
    }
    col, _ = make(tmp_path, outputs, source="nvidia-smi-csv")
    assert collect(col).samples("nomade_gpu_job_info") == {("1", "9", "root"): 1.0}


def test_job_mapping_can_be_switched_off(tmp_path):
    write(tmp_path / "gpu-jobs" / "1", "gpus=0\n")
    col, _ = make(tmp_path, {XML_ARGV: own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")}, job_mapping=False)
    assert collect(col).samples("nomade_gpu_job_info") == {}


# ---------------------------------------------------------------------------------------------- prolog script

PROLOG = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "prolog-gpu.sh"


def run_script(tmp_path: Path, **env: str) -> int:
    import subprocess

    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOMADE_GPU_JOB_DIR": str(tmp_path / "gpu-jobs")}
    return subprocess.run(["bash", str(PROLOG)], env={**base, **env}, timeout=10).returncode


def test_prolog_writes_and_epilog_removes_the_job_file(tmp_path):
    from nomade.exporter.parsers.nvidia_smi import parse_gpu_job_file

    job_file = tmp_path / "gpu-jobs" / "4711"
    env = {"SLURM_JOB_ID": "4711", "SLURM_JOB_GPUS": "0,2", "SLURM_JOB_USER": "alice"}
    assert run_script(tmp_path, SLURM_SCRIPT_CONTEXT="prolog_slurmd", **env) == 0
    parsed = parse_gpu_job_file(job_file.read_text())
    assert parsed.issues == [] and (parsed.records[0].gpu_ids, parsed.records[0].user) == ((0, 2), "alice")
    assert [p.name for p in job_file.parent.iterdir()] == ["4711"]  # no temporary file left
    assert run_script(tmp_path, SLURM_SCRIPT_CONTEXT="epilog_slurmd", **env) == 0
    assert not job_file.exists()


def test_prolog_ignores_jobs_without_gpus_and_bad_input(tmp_path):
    assert run_script(tmp_path, SLURM_SCRIPT_CONTEXT="prolog_slurmd", SLURM_JOB_ID="5") == 0
    assert run_script(tmp_path, SLURM_SCRIPT_CONTEXT="prolog_slurmd", SLURM_JOB_ID="6", SLURM_JOB_GPUS="0;rm") == 0
    assert run_script(tmp_path, SLURM_SCRIPT_CONTEXT="prolog_slurmd", SLURM_JOB_ID="../x", SLURM_JOB_GPUS="0") == 0
    assert not (tmp_path / "gpu-jobs").exists() or list((tmp_path / "gpu-jobs").iterdir()) == []
    # an unwritable directory must not fail the prolog (a failing prolog drains the node)
    assert run_script(tmp_path, NOMADE_GPU_JOB_DIR="/proc/nomade-no", SLURM_JOB_ID="7", SLURM_JOB_GPUS="1") == 0


# ---------------------------------------------------------------------------------------------- property


def test_random_nvidia_smi_output_never_escapes_undocumented(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    xml = own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=st.one_of(st.text(max_size=300), st.integers(0, len(xml)).map(lambda n: xml[:n] + xml[n + 7 :])))
    def check(text):
        col, _ = make(tmp_path, {XML_ARGV: text})
        out = col.new_set()
        try:
            col.collect(out)
        except (CollectorError, CommandError):
            return
        out.families()
        assert out.value("nomade_gpu_source_available") == 1

    check()
