"""Parsers for NVIDIA GPU sources: ``nvidia-smi`` outputs and the inputs of the GPU-to-job mapping.

All functions are pure (text in, :class:`ParseResult` out). Supported inputs:

- ``nvidia-smi -q -x`` (XML; DTD versions v10 to v13 seen, drivers 418 to 590): :func:`parse_smi_xml`;
- ``nvidia-smi -q`` (the text report, same content indented): :func:`parse_smi_text`;
- ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]``: :func:`parse_query_gpu_csv`;
- ``nvidia-smi --query-compute-apps=... --format=csv``: :func:`parse_compute_apps_csv`;
- ``nvidia-smi --query-retired-pages=... --format=csv``: :func:`parse_retired_pages_csv`;
- ``nvidia-smi -L``: :func:`parse_list`; ``nvidia-smi dmon``: :func:`parse_dmon`;
- cgroup v1 ``devices.list`` of a job: :func:`parse_devices_list`; the files a SLURM prolog writes for the
  exporter (format in :func:`parse_gpu_job_file`).

Field meanings and units follow ``nvidia-smi --help-query-gpu`` and nvidia-smi(1) (driver 590): memory in MiB,
power in W, clocks in MHz, temperatures in degrees C, utilisation in percent (converted here to bytes, W, Hz,
degrees C and ratios 0-1). Values nvidia-smi cannot give are printed as ``N/A``, ``[N/A]``, ``[Not Supported]``,
``[Requested functionality has been deprecated]``, ``[Unknown Error]``... Those are *absent* (``None`` or a
missing key), never 0, and are not parse issues; a value that is present but unreadable is an issue.

GPU index: ``-q``/``-q -x`` list GPUs in nvidia-smi index order (PCI bus order) without printing the index, so
the index is the position in the document. It is not the ``/dev/nvidia<minor>`` number (the dual-A5000 capture has
index 0 on minor 1), which is why :attr:`GpuDevice.minor_number` is kept for the cgroup mapping.

XML safety: the input is refused (one issue, no records) when it carries a DTD internal subset or an
``<!ENTITY`` declaration, the only way XML can define entities (entity expansion bombs). nvidia-smi's own
``<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v11.dtd">`` is an external reference, which
:mod:`xml.etree.ElementTree` (expat) never fetches; undefined entities make expat fail, which is one issue.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .common import ParseResult

T = TypeVar("T")

MIB = 1024 * 1024

# Unit suffixes nvidia-smi prints, with the factor to the exported base unit (bytes, watts, hertz, seconds,
# degrees C, ratio 0-1). "x" is the PCIe link width suffix ("16x").
UNIT_SCALE: dict[str, float] = {
    "%": 0.01,
    "MiB": MIB,
    "KiB": 1024.0,
    "GiB": 1024.0 * MIB,
    "W": 1.0,
    "MHz": 1e6,
    "C": 1.0,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "x": 1.0,
}

# Text values meaning "this GPU/driver cannot tell": absent, not an issue.
_ABSENT = {
    "",
    "n/a",
    "na",
    "none",
    "not supported",
    "not available",
    "not available in wddm driver model",
    "unknown",
    "unknown error",
    "insufficient permissions",
    "requested functionality has been deprecated",
    "function not found",
    "gpu is lost",
    "gpu requires reset",
    "not found",
    "-",
}

_NUM = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*([A-Za-z%]*)$")

THROTTLE_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "display_clocks_setting",
)
"""Clock throttle ("clocks event" since driver 535) reasons, NVML ``nvmlClocksEventReason*`` order."""

# Names of the same reason in the different outputs -> the canonical names above.
_REASON_ALIASES = {
    "idle": "gpu_idle",
    "display_clock_setting": "display_clocks_setting",
    "sw_therm_slowdown": "sw_thermal_slowdown",
    "hw_therm_slowdown": "hw_thermal_slowdown",
    "hw_power_brake": "hw_power_brake_slowdown",
    "hw_power_braking": "hw_power_brake_slowdown",
    "sw_power_capping": "sw_power_cap",
}


class Node(Protocol):
    """What the field extraction needs from a tree node (an ElementTree element or a :class:`TextNode`)."""

    tag: str
    text: str | None

    def find(self, path: str) -> Node | None:  # noqa: D102
        ...

    def findall(self, path: str) -> list[Node]:  # noqa: D102
        ...

    def __iter__(self) -> Iterator[Node]: ...


@dataclass
class GpuProcess:
    """One process using a GPU.

    Attributes:
        pid: process id.
        type: ``C`` (compute), ``G`` (graphics) or ``C+G``; None when the source does not say.
        name: process name or path as nvidia-smi prints it.
        used_memory_bytes: GPU memory used (absent under WDDM or without permission).
        gpu_instance_id: MIG GPU instance (None without MIG).
        compute_instance_id: MIG compute instance.
        gpu_uuid: UUID of the GPU (``--query-compute-apps`` only).

    """

    pid: int | None = None
    type: str | None = None
    name: str | None = None
    used_memory_bytes: float | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    gpu_uuid: str | None = None


@dataclass
class MigDevice:
    """One MIG device (a compute instance inside a GPU instance).

    Attributes:
        index: MIG device index within its GPU.
        gpu_instance_id: GPU instance id (GI).
        compute_instance_id: compute instance id (CI).
        uuid: ``MIG-...`` UUID when the source gives it (``-q -x`` usually does not).
        multiprocessor_count: SMs of the instance.
        memory_total_bytes: framebuffer memory of the GPU instance.
        memory_used_bytes: framebuffer memory used.
        memory_free_bytes: framebuffer memory free.

    """

    index: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    uuid: str | None = None
    multiprocessor_count: int | None = None
    memory_total_bytes: float | None = None
    memory_used_bytes: float | None = None
    memory_free_bytes: float | None = None


@dataclass
class GpuDevice:
    """Everything read about one GPU, in base units; keys absent from a dict were not available.

    Attributes:
        index: nvidia-smi/NVML index.
        uuid: ``GPU-...`` UUID.
        name: product name.
        pci_bus_id: ``DDDDDDDD:BB:DD.F`` as nvidia-smi prints it.
        driver_version: driver version string.
        vbios_version: VBIOS version.
        minor_number: ``/dev/nvidia<minor>`` device minor (the cgroup devices key).
        utilization: engine (``gpu``, ``memory``, ``encoder``, ``decoder``, ``jpeg``, ``ofa``) -> ratio 0-1 of time
            the engine was busy over the driver's sample period (``memory``: time memory was read or written).
        memory: framebuffer ``total``/``used``/``free``/``reserved`` -> bytes.
        bar1_memory: BAR1 ``total``/``used``/``free`` -> bytes.
        temperature: sensor (``gpu``, ``memory``) -> degrees C.
        temperature_thresholds: ``shutdown``/``slowdown``/``max_operating``/``memory_max_operating`` -> degrees C.
        temperature_margin: T.Limit, degrees C below the slowdown limit (Hopper/Blackwell; NVML margin).
        power: ``draw`` (nvidia-smi power.draw: 1 s average on Ampere+, instantaneous before) and ``instant``
            -> watts.
        power_limits: ``enforced``/``requested``/``default``/``min``/``max`` -> watts.
        energy_joules: energy since driver load (NVML only).
        clocks: ``graphics``/``sm``/``memory``/``video`` -> Hz, current.
        max_clocks: same keys -> Hz, maximum.
        throttle_reasons: reason (:data:`THROTTLE_REASONS`) -> active.
        throttle_seconds: reason -> time spent in it since driver load (driver 535+).
        fan_speed_ratio: intended fan speed 0-1.
        performance_state: P-state number (0 = maximum performance).
        pcie: ``link_gen_current``, ``link_gen_max``, ``link_width_current``, ``link_width_max``, ``replays``.
        ecc_mode_enabled: current ECC mode.
        ecc_errors: ``(scope, type, location)`` -> count; scope ``volatile`` (since driver load) or ``aggregate``
            (lifetime, InfoROM); type ``corrected``/``uncorrected``; location ``dram``, ``sram``, ``device_memory``,
            ``register_file``, ``l1_cache``, ``l2_cache``, ``texture_memory``, ``texture_shm``, ``cbu``,
            ``sram_parity``, ``sram_secded``, ``total``... Locations overlap (``dram`` vs ``device_memory``,
            ``sram`` vs its parity/SEC-DED split): do not sum them.
        retired_pages: cause ``single_bit_ecc``/``double_bit_ecc`` -> pages retired (pre-Ampere).
        retired_pages_pending: a page retirement awaits a reboot.
        remapped_rows: ``correctable``/``uncorrectable`` -> rows remapped (Ampere+).
        remapped_rows_pending: a remap awaits a GPU reset.
        remapped_rows_failure: a remap failed.
        mig_mode_enabled: current MIG mode (None when the GPU cannot do MIG).
        mig_devices: MIG devices.
        processes: processes on the GPU; None when the source does not list them.

    """

    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    driver_version: str | None = None
    vbios_version: str | None = None
    minor_number: int | None = None
    utilization: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    bar1_memory: dict[str, float] = field(default_factory=dict)
    temperature: dict[str, float] = field(default_factory=dict)
    temperature_thresholds: dict[str, float] = field(default_factory=dict)
    temperature_margin: float | None = None
    power: dict[str, float] = field(default_factory=dict)
    power_limits: dict[str, float] = field(default_factory=dict)
    energy_joules: float | None = None
    clocks: dict[str, float] = field(default_factory=dict)
    max_clocks: dict[str, float] = field(default_factory=dict)
    throttle_reasons: dict[str, bool] = field(default_factory=dict)
    throttle_seconds: dict[str, float] = field(default_factory=dict)
    fan_speed_ratio: float | None = None
    performance_state: int | None = None
    pcie: dict[str, float] = field(default_factory=dict)
    ecc_mode_enabled: bool | None = None
    ecc_errors: dict[tuple[str, str, str], float] = field(default_factory=dict)
    retired_pages: dict[str, float] = field(default_factory=dict)
    retired_pages_pending: bool | None = None
    remapped_rows: dict[str, float] = field(default_factory=dict)
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    mig_mode_enabled: bool | None = None
    mig_devices: list[MigDevice] = field(default_factory=list)
    processes: list[GpuProcess] | None = None


# --------------------------------------------------------------------------------------------------------------
# Value helpers


class _Issues:
    """Collects value-level issues for one parse (line 0: the whole document, or a CSV line number)."""

    def __init__(self, result: ParseResult, line_no: int = 0) -> None:
        self.result = result
        self.line_no = line_no

    def bad(self, what: str, value: str) -> None:
        self.result.skip(self.line_no, f"unreadable {what}", value)


def is_absent(value: str | None) -> bool:
    """Whether ``value`` is one of nvidia-smi's "not available" spellings (``N/A``, ``[Not Supported]``...)."""
    if value is None:
        return True
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        return True
    return v.lower() in _ABSENT


def parse_quantity(value: str | None, default_scale: float = 1.0) -> float | None:
    """Parse ``"143771 MiB"``, ``"627.40 W"``, ``"100 %"``, ``"16x"`` or a bare number into base units.

    Args:
        value: the text; a suffix from :data:`UNIT_SCALE` is applied.
        default_scale: factor for a bare number (the unit named in a CSV header or implied by the field).

    Returns:
        The value in base units, or None when the text is an "absent" marker.

    Raises:
        ValueError: present but unreadable (unknown unit, not a number).

    """
    if is_absent(value):
        return None
    assert value is not None
    m = _NUM.match(value.strip())
    if m is None:
        raise ValueError(value)
    number, unit = float(m.group(1)), m.group(2)
    if not unit:
        return number * default_scale
    if unit not in UNIT_SCALE:
        raise ValueError(value)
    return number * UNIT_SCALE[unit]


def parse_flag(value: str | None) -> bool | None:
    """``Enabled``/``Yes``/``Active`` -> True, ``Disabled``/``No``/``Not Active`` -> False, absent -> None.

    Raises:
        ValueError: any other text.

    """
    if is_absent(value):
        return None
    assert value is not None
    v = value.strip().lower()
    if v in ("enabled", "yes", "active", "true", "1"):
        return True
    if v in ("disabled", "no", "not active", "false", "0"):
        return False
    raise ValueError(value)


def _int(value: str | None) -> int | None:
    if is_absent(value):
        return None
    assert value is not None
    return int(value.strip(), 0) if value.strip().lower().startswith("0x") else int(value.strip())


def _text(value: str | None) -> str | None:
    return None if is_absent(value) else (value or "").strip()


def _pstate(value: str | None) -> int | None:
    if is_absent(value):
        return None
    assert value is not None
    m = re.fullmatch(r"P(\d{1,2})", value.strip())
    if m is None:
        raise ValueError(value)
    return int(m.group(1))


def _snake(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")


def _set(target: dict, key: object, fn: Callable[[], object], issues: _Issues, what: str, raw: str | None) -> None:
    """Store ``fn()`` under ``key`` unless it is None; a ValueError becomes an issue."""
    try:
        value = fn()
    except ValueError:
        issues.bad(what, raw or "")
        return
    if value is not None:
        target[key] = value


def _get(fn: Callable[[], T], issues: _Issues, what: str, raw: str | None) -> T | None:
    try:
        return fn()
    except ValueError:
        issues.bad(what, raw or "")
        return None


# --------------------------------------------------------------------------------------------------------------
# The -q text report as a tree


class TextNode:
    """One line of the ``nvidia-smi -q`` report: ``Label : value`` or a section ``Label`` with deeper lines.

    Mimics the part of :class:`xml.etree.ElementTree.Element` that the field extraction uses.
    """

    def __init__(self, tag: str, text: str | None = None) -> None:
        self.tag = tag
        self.text = text
        self.children: list[TextNode] = []

    def __iter__(self) -> Iterator[TextNode]:
        return iter(self.children)

    def find(self, path: str) -> TextNode | None:
        """First node along ``path`` (labels joined by ``/``), or None."""
        node: TextNode | None = self
        for part in path.split("/"):
            assert node is not None
            node = next((c for c in node.children if c.tag == part), None)
            if node is None:
                return None
        return node

    def findall(self, path: str) -> list[TextNode]:
        """Every child labelled ``path`` (one level)."""
        return [c for c in self.children if c.tag == path]


_TEXT_LINE = re.compile(r"^(\S.*?)\s+:\s*(.*)$")


def _text_tree(text: str) -> TextNode:
    root = TextNode("")
    stack: list[tuple[int, TextNode]] = [(-1, root)]
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("="):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        # "Label<spaces>: value"; a colon without space before it belongs to the label ("GPU 00000000:00:09.0").
        m = _TEXT_LINE.match(raw.strip())
        node = TextNode(m.group(1), m.group(2).strip()) if m else TextNode(raw.strip())
        while stack[-1][0] >= indent:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


# --------------------------------------------------------------------------------------------------------------
# -q -x and -q: one extraction over two path tables


@dataclass(frozen=True)
class _Paths:
    """Where each field lives in one output format (paths relative to the GPU node)."""

    name: str
    uuid: str
    pci_bus_id: str
    minor: str
    vbios: str
    fan: str
    pstate: str
    fb: tuple[str, dict[str, str]]
    bar1: tuple[str, dict[str, str]]
    util: tuple[str, dict[str, str]]
    temperature: dict[str, str]
    thresholds: dict[str, str]
    margin: str
    power_sections: tuple[str, ...]
    power: dict[str, str]
    power_limits: dict[str, str]
    clocks: tuple[str, dict[str, str]]
    max_clocks: tuple[str, dict[str, str]]
    throttle_sections: tuple[str, ...]
    throttle_counter_section: str
    pcie: dict[str, str]
    ecc_mode: str
    ecc_section: str
    retired: dict[str, str]
    retired_pending: tuple[str, ...]
    remapped: dict[str, str]
    remapped_flags: dict[str, str]
    mig_mode: str
    mig_device: tuple[str, str]
    mig: dict[str, str]
    mig_fb: tuple[str, ...]


_CLOCKS_XML = {"graphics": "graphics_clock", "sm": "sm_clock", "memory": "mem_clock", "video": "video_clock"}
_CLOCKS_TXT = {"graphics": "Graphics", "sm": "SM", "memory": "Memory", "video": "Video"}

XML_PATHS = _Paths(
    name="product_name",
    uuid="uuid",
    pci_bus_id="pci/pci_bus_id",
    minor="minor_number",
    vbios="vbios_version",
    fan="fan_speed",
    pstate="performance_state",
    fb=("fb_memory_usage", {"total": "total", "used": "used", "free": "free", "reserved": "reserved"}),
    bar1=("bar1_memory_usage", {"total": "total", "used": "used", "free": "free"}),
    util=(
        "utilization",
        {
            "gpu": "gpu_util",
            "memory": "memory_util",
            "encoder": "encoder_util",
            "decoder": "decoder_util",
            "jpeg": "jpeg_util",
            "ofa": "ofa_util",
        },
    ),
    temperature={"gpu": "temperature/gpu_temp", "memory": "temperature/memory_temp"},
    thresholds={
        "shutdown": "temperature/gpu_temp_max_threshold",
        "slowdown": "temperature/gpu_temp_slow_threshold",
        "max_operating": "temperature/gpu_temp_max_gpu_threshold",
        "memory_max_operating": "temperature/gpu_temp_max_mem_threshold",
    },
    margin="temperature/gpu_temp_tlimit",
    power_sections=("power_readings", "gpu_power_readings"),
    power={"draw": "power_draw|average_power_draw", "instant": "instant_power_draw"},
    power_limits={
        "requested": "power_limit|requested_power_limit",
        "enforced": "enforced_power_limit|current_power_limit",
        "default": "default_power_limit",
        "min": "min_power_limit",
        "max": "max_power_limit",
    },
    clocks=("clocks", _CLOCKS_XML),
    max_clocks=("max_clocks", _CLOCKS_XML),
    throttle_sections=("clocks_throttle_reasons", "clocks_event_reasons"),
    throttle_counter_section="clocks_event_reasons_counters",
    pcie={
        "link_gen_current": "pci/pci_gpu_link_info/pcie_gen/current_link_gen",
        "link_gen_max": "pci/pci_gpu_link_info/pcie_gen/max_link_gen",
        "link_width_current": "pci/pci_gpu_link_info/link_widths/current_link_width",
        "link_width_max": "pci/pci_gpu_link_info/link_widths/max_link_width",
        "replays": "pci/replay_counter",
    },
    ecc_mode="ecc_mode/current_ecc",
    ecc_section="ecc_errors",
    retired={
        "single_bit_ecc": "retired_pages/multiple_single_bit_retirement/retired_count",
        "double_bit_ecc": "retired_pages/double_bit_retirement/retired_count",
    },
    retired_pending=("retired_pages/pending_retirement", "retired_pages/pending_blacklist"),
    remapped={"correctable": "remapped_rows/remapped_row_corr", "uncorrectable": "remapped_rows/remapped_row_unc"},
    remapped_flags={"pending": "remapped_rows/remapped_row_pending", "failure": "remapped_rows/remapped_row_failure"},
    mig_mode="mig_mode/current_mig",
    mig_device=("mig_devices", "mig_device"),
    mig={
        "index": "index",
        "gi": "gpu_instance_id",
        "ci": "compute_instance_id",
        "uuid": "uuid",
        "sm": "device_attributes/shared/multiprocessor_count",
    },
    mig_fb=("fb_memory_usage",),
)

TEXT_PATHS = _Paths(
    name="Product Name",
    uuid="GPU UUID",
    pci_bus_id="PCI/Bus Id",
    minor="Minor Number",
    vbios="VBIOS Version",
    fan="Fan Speed",
    pstate="Performance State",
    fb=("FB Memory Usage", {"total": "Total", "used": "Used", "free": "Free", "reserved": "Reserved"}),
    bar1=("BAR1 Memory Usage", {"total": "Total", "used": "Used", "free": "Free"}),
    util=(
        "Utilization",
        # Drivers before ~510 print "Gpu" and "Ecc Mode".
        {
            "gpu": "GPU|Gpu",
            "memory": "Memory",
            "encoder": "Encoder",
            "decoder": "Decoder",
            "jpeg": "JPEG",
            "ofa": "OFA",
        },
    ),
    temperature={"gpu": "Temperature/GPU Current Temp", "memory": "Temperature/Memory Current Temp"},
    thresholds={
        "shutdown": "Temperature/GPU Shutdown Temp",
        "slowdown": "Temperature/GPU Slowdown Temp",
        "max_operating": "Temperature/GPU Max Operating Temp",
        "memory_max_operating": "Temperature/Memory Max Operating Temp",
    },
    margin="Temperature/GPU T.Limit Temp",
    power_sections=("Power Readings", "GPU Power Readings"),
    power={"draw": "Power Draw|Average Power Draw", "instant": "Instantaneous Power Draw"},
    power_limits={
        "requested": "Power Limit|Requested Power Limit",
        "enforced": "Enforced Power Limit|Current Power Limit",
        "default": "Default Power Limit",
        "min": "Min Power Limit",
        "max": "Max Power Limit",
    },
    clocks=("Clocks", _CLOCKS_TXT),
    max_clocks=("Max Clocks", _CLOCKS_TXT),
    throttle_sections=("Clocks Throttle Reasons", "Clocks Event Reasons"),
    throttle_counter_section="Clocks Event Reasons Counters",
    pcie={
        "link_gen_current": "PCI/GPU Link Info/PCIe Generation/Current",
        "link_gen_max": "PCI/GPU Link Info/PCIe Generation/Max",
        "link_width_current": "PCI/GPU Link Info/Link Width/Current",
        "link_width_max": "PCI/GPU Link Info/Link Width/Max",
        "replays": "PCI/Replays Since Reset",
    },
    ecc_mode="ECC Mode/Current|Ecc Mode/Current",
    ecc_section="ECC Errors",
    retired={"single_bit_ecc": "Retired Pages/Single Bit ECC", "double_bit_ecc": "Retired Pages/Double Bit ECC"},
    retired_pending=("Retired Pages/Pending Page Retirement", "Retired Pages/Pending Page Blacklist"),
    remapped={"correctable": "Remapped Rows/Correctable Error", "uncorrectable": "Remapped Rows/Uncorrectable Error"},
    remapped_flags={"pending": "Remapped Rows/Pending", "failure": "Remapped Rows/Remapping Failure Occurred"},
    mig_mode="MIG Mode/Current",
    mig_device=("", "MIG Device"),
    mig={
        "index": "Index",
        "gi": "GPU Instance ID",
        "ci": "Compute Instance ID",
        "uuid": "MIG UUID",
        "sm": "Device Attributes/Shared/Multiprocessor count",
    },
    mig_fb=("FB Memory Usage", "Shared FB Memory Usage"),
)


def _value(node: Node, path: str) -> str | None:
    """Text at ``path`` (alternatives separated by ``|``; the first present element wins)."""
    for alt in path.split("|"):
        el = node.find(alt)
        if el is not None:
            return el.text.strip() if el.text is not None else None
    return None


def _section_values(node: Node, section: str, keys: dict[str, str], scale: float, issues: _Issues, what: str):
    out: dict[str, float] = {}
    sec = node.find(section) if section else node
    if sec is None:
        return out
    for key, path in keys.items():
        raw = _value(sec, path)
        _set(out, key, lambda raw=raw: parse_quantity(raw, scale), issues, f"{what} {key}", raw)
    return out


_ECC_NEW = {
    "sram_correctable": ("corrected", "sram"),
    "sram_uncorrectable": ("uncorrected", "sram"),
    "sram_uncorrectable_parity": ("uncorrected", "sram_parity"),
    "sram_uncorrectable_secded": ("uncorrected", "sram_secded"),
    "sram_uncorrectable_sec_ded": ("uncorrected", "sram_secded"),
    "dram_correctable": ("corrected", "dram"),
    "dram_uncorrectable": ("uncorrected", "dram"),
}
_ECC_OLD_TYPES = {"single_bit": "corrected", "double_bit": "uncorrected"}


def _ecc(node: Node, paths: _Paths, issues: _Issues) -> dict[tuple[str, str, str], float]:
    # New layout: sram_/dram_ x correctable/uncorrectable (driver 450+); old one: single_bit/double_bit x
    # location, including ``total``.
    out: dict[tuple[str, str, str], float] = {}
    sec = node.find(paths.ecc_section)
    if sec is None:
        return out
    for scope_el in sec:
        scope = _snake(scope_el.tag)
        if scope not in ("volatile", "aggregate"):
            continue
        for el in scope_el:
            name = _snake(el.tag)
            if name in _ECC_OLD_TYPES:
                for loc_el in el:
                    location = _snake(loc_el.tag)
                    key = (scope, _ECC_OLD_TYPES[name], "texture_shm" if location == "texture_shared" else location)
                    _set(out, key, lambda e=loc_el: _count(e.text), issues, f"ecc {key}", loc_el.text)
            elif name in _ECC_NEW:
                key = (scope, *_ECC_NEW[name])
                _set(out, key, lambda e=el: _count(e.text), issues, f"ecc {key}", el.text)
    return out


def _count(value: str | None) -> float | None:
    if is_absent(value):
        return None
    assert value is not None
    v = int(value.strip())
    if v < 0:
        raise ValueError(value)
    return float(v)


def _throttle(node: Node, paths: _Paths, issues: _Issues) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for section in paths.throttle_sections:
        sec = node.find(section)
        if sec is None:
            continue
        # -q nests the HW thermal/power-brake lines under "HW Slowdown": walk the whole section.
        stack = list(sec)
        while stack:
            el = stack.pop(0)
            stack[:0] = list(el)
            name = _snake(el.tag)
            for prefix in ("clocks_throttle_reason_", "clocks_event_reason_"):
                name = name.removeprefix(prefix)
            name = _REASON_ALIASES.get(name, name)
            if name in THROTTLE_REASONS:
                _set(out, name, lambda e=el: parse_flag(e.text), issues, f"throttle {name}", el.text)
    return out


def _throttle_seconds(node: Node, paths: _Paths, issues: _Issues) -> dict[str, float]:
    out: dict[str, float] = {}
    sec = node.find(paths.throttle_counter_section)
    if sec is None:
        return out
    for el in sec:
        name = _snake(el.tag).removeprefix("clocks_event_reasons_counters_")
        name = _REASON_ALIASES.get(name, name)
        if name in THROTTLE_REASONS:
            _set(out, name, lambda e=el: parse_quantity(e.text, 1e-6), issues, f"throttle time {name}", el.text)
    return out


def _mig_devices(node: Node, paths: _Paths, issues: _Issues) -> list[MigDevice]:
    parent_path, tag = paths.mig_device
    parent = node.find(parent_path) if parent_path else node
    if parent is None:
        return []
    out = []
    for el in parent.findall(tag):
        m = MigDevice()
        for attr, key in (("index", "index"), ("gpu_instance_id", "gi"), ("compute_instance_id", "ci")):
            raw = _value(el, paths.mig[key])
            setattr(m, attr, _get(lambda raw=raw: _int(raw), issues, f"mig {attr}", raw))
        m.uuid = _text(_value(el, paths.mig["uuid"]))
        raw = _value(el, paths.mig["sm"])
        m.multiprocessor_count = _get(lambda raw=raw: _int(raw), issues, "mig sm count", raw)
        for fb in paths.mig_fb:
            mem = _section_values(
                el, fb, {"total": paths.fb[1]["total"], "used": paths.fb[1]["used"]}, MIB, issues, "mig"
            )
            free = _section_values(el, fb, {"free": paths.fb[1]["free"]}, MIB, issues, "mig")
            if mem or free:
                m.memory_total_bytes, m.memory_used_bytes = mem.get("total"), mem.get("used")
                m.memory_free_bytes = free.get("free")
                break
        out.append(m)
    return out


def _processes_xml(node: Node, issues: _Issues) -> list[GpuProcess] | None:
    sec = node.find("processes")
    if sec is None:
        return None
    out = []
    for el in sec.findall("process_info"):
        out.append(_process(lambda k, el=el: _value(el, k), issues))
    return out


_PROC_TEXT_KEYS = {
    "GPU instance ID": "gpu_instance_id",
    "Compute instance ID": "compute_instance_id",
    "Process ID": "pid",
    "Type": "type",
    "Name": "process_name",
    "Used GPU Memory": "used_memory",
}


def _processes_text(node: Node, issues: _Issues) -> list[GpuProcess] | None:
    """The -q "Processes" section is flat: GI/CI lines, then ``Process ID`` with Type/Name/Memory under it."""
    sec = node.find("Processes")
    if sec is None:
        return None
    groups: list[dict[str, str | None]] = []
    current: dict[str, str | None] = {}
    for el in sec:
        key = _PROC_TEXT_KEYS.get(el.tag)
        if key is None:
            continue
        # A new process starts at its first line: GI (MIG) or the PID (no MIG) once the current one has a PID.
        if key == "gpu_instance_id" or (key == "pid" and "pid" in current):
            if current:
                groups.append(current)
            current = {}
        current[key] = el.text
        for sub in el:
            subkey = _PROC_TEXT_KEYS.get(sub.tag)
            if subkey:
                current[subkey] = sub.text
    if current:
        groups.append(current)
    return [_process(lambda k, g=g: g.get(k), issues) for g in groups]


def _process(get: Callable[[str], str | None], issues: _Issues) -> GpuProcess:
    p = GpuProcess()
    raw = get("pid")
    p.pid = _get(lambda: _int(raw), issues, "pid", raw)
    p.type = _text(get("type"))
    p.name = _text(get("process_name"))
    raw_mem = get("used_memory")
    p.used_memory_bytes = _get(lambda: parse_quantity(raw_mem, MIB), issues, "process memory", raw_mem)
    for attr in ("gpu_instance_id", "compute_instance_id"):
        raw_id = get(attr)
        setattr(p, attr, _get(lambda raw_id=raw_id: _int(raw_id), issues, attr, raw_id))
    return p


def _device(node: Node, paths: _Paths, index: int, driver: str | None, issues: _Issues) -> GpuDevice:
    g = GpuDevice(index=index, driver_version=driver)
    g.name = _text(_value(node, paths.name))
    g.uuid = _text(_value(node, paths.uuid))
    g.pci_bus_id = _text(_value(node, paths.pci_bus_id))
    g.vbios_version = _text(_value(node, paths.vbios))
    raw = _value(node, paths.minor)
    g.minor_number = _get(lambda: _int(raw), issues, "minor number", raw)
    raw = _value(node, paths.fan)
    g.fan_speed_ratio = _get(lambda: parse_quantity(raw, 0.01), issues, "fan speed", raw)
    raw_p = _value(node, paths.pstate)
    g.performance_state = _get(lambda: _pstate(raw_p), issues, "pstate", raw_p)
    g.memory = _section_values(node, *paths.fb, MIB, issues, "fb memory")
    g.bar1_memory = _section_values(node, *paths.bar1, MIB, issues, "bar1 memory")
    g.utilization = _section_values(node, *paths.util, 0.01, issues, "utilization")
    g.temperature = _section_values(node, "", paths.temperature, 1.0, issues, "temperature")
    g.temperature_thresholds = _section_values(node, "", paths.thresholds, 1.0, issues, "temperature threshold")
    raw_m = _value(node, paths.margin)
    g.temperature_margin = _get(lambda: parse_quantity(raw_m), issues, "T.Limit", raw_m)
    for section in paths.power_sections:
        if node.find(section) is not None:
            g.power = _section_values(node, section, paths.power, 1.0, issues, "power")
            g.power_limits = _section_values(node, section, paths.power_limits, 1.0, issues, "power limit")
            break
    g.clocks = _section_values(node, *paths.clocks, 1e6, issues, "clock")
    g.max_clocks = _section_values(node, *paths.max_clocks, 1e6, issues, "max clock")
    g.throttle_reasons = _throttle(node, paths, issues)
    g.throttle_seconds = _throttle_seconds(node, paths, issues)
    g.pcie = _section_values(node, "", paths.pcie, 1.0, issues, "pcie")
    raw = _value(node, paths.ecc_mode)
    g.ecc_mode_enabled = _get(lambda: parse_flag(raw), issues, "ecc mode", raw)
    g.ecc_errors = _ecc(node, paths, issues)
    for cause, path in paths.retired.items():
        raw_r = _value(node, path)
        _set(g.retired_pages, cause, lambda raw_r=raw_r: _count(_strip_pages(raw_r)), issues, "retired pages", raw_r)
    for path in paths.retired_pending:
        raw = _value(node, path)
        if raw is not None:
            g.retired_pages_pending = _get(lambda raw=raw: parse_flag(raw), issues, "retired pending", raw)
            break
    for kind, path in paths.remapped.items():
        raw_r = _value(node, path)
        _set(g.remapped_rows, kind, lambda raw_r=raw_r: _count(raw_r), issues, "remapped rows", raw_r)
    raw = _value(node, paths.remapped_flags["pending"])
    g.remapped_rows_pending = _get(lambda: parse_flag(raw), issues, "remap pending", raw)
    raw_f = _value(node, paths.remapped_flags["failure"])
    g.remapped_rows_failure = _get(lambda: parse_flag(raw_f), issues, "remap failure", raw_f)
    raw = _value(node, paths.mig_mode)
    g.mig_mode_enabled = _get(lambda: parse_flag(raw), issues, "mig mode", raw)
    g.mig_devices = _mig_devices(node, paths, issues)
    return g


def _strip_pages(value: str | None) -> str | None:
    # -q prints "Single Bit ECC : 0" but some drivers add " pages"; the XML gives a bare count.
    return value.removesuffix("pages").strip() if value else value


_UNSAFE_XML = re.compile(r"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)


def parse_smi_xml(text: str) -> ParseResult[GpuDevice]:
    """Parse ``nvidia-smi -q -x``.

    Returns:
        One :class:`GpuDevice` per ``<gpu>`` in document order (= nvidia-smi index). Processes come from
        ``<processes>`` (absent element: ``processes`` is None). A document that is not XML, or that declares
        entities (see the module docstring), gives one issue and no records; an unreadable value gives one
        issue and is left out.

    """
    result: ParseResult[GpuDevice] = ParseResult()
    if _UNSAFE_XML.search(text):
        result.skip(0, "XML with a DTD internal subset or entity declarations refused")
        return result
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, ValueError) as exc:
        result.skip(0, f"not XML: {exc}")
        return result
    if root.tag != "nvidia_smi_log":
        result.skip(0, f"root element <{root.tag}>, expected <nvidia_smi_log>")
        return result
    issues = _Issues(result)
    driver = _text(_value(root, "driver_version"))
    for index, el in enumerate(root.findall("gpu")):
        g = _device(el, XML_PATHS, index, driver, issues)
        if g.pci_bus_id is None:
            g.pci_bus_id = _text(el.get("id"))
        g.processes = _processes_xml(el, issues)
        result.records.append(g)
    return result


def parse_smi_text(text: str) -> ParseResult[GpuDevice]:
    """Parse the ``nvidia-smi -q`` text report (same content as ``-q -x``, as indented ``Label : value`` lines).

    Returns:
        One :class:`GpuDevice` per ``GPU <bus id>`` section, in order (= nvidia-smi index). A text with no such
        section gives one issue. Field names follow driver 590's labels (and the older "Power Readings" /
        "Clocks Throttle Reasons" sections); a field whose label differs in another driver is absent, not wrong.

    """
    result: ParseResult[GpuDevice] = ParseResult()
    root = _text_tree(text)
    issues = _Issues(result)
    driver = _text(_value(root, "Driver Version"))
    sections = [n for n in root if re.fullmatch(r"GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]", n.tag)]
    if not sections:
        result.skip(0, "no 'GPU <bus id>' section")
        return result
    for index, node in enumerate(sections):
        g = _device(node, TEXT_PATHS, index, driver, issues)
        if g.pci_bus_id is None:
            g.pci_bus_id = node.tag.split(" ", 1)[1]
        g.processes = _processes_text(node, issues)
        result.records.append(g)
    return result


# --------------------------------------------------------------------------------------------------------------
# CSV outputs


QUERY_GPU_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "driver_version",
    "vbios_version",
    "pstate",
    "fan.speed",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "utilization.memory",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "enforced.power.limit",
    "power.default_limit",
    "power.min_limit",
    "power.max_limit",
    "clocks.current.graphics",
    "clocks.current.sm",
    "clocks.current.memory",
    "clocks.current.video",
    "clocks.max.graphics",
    "clocks.max.sm",
    "clocks.max.memory",
    "clocks_throttle_reasons.gpu_idle",
    "clocks_throttle_reasons.applications_clocks_setting",
    "clocks_throttle_reasons.sw_power_cap",
    "clocks_throttle_reasons.hw_slowdown",
    "clocks_throttle_reasons.hw_thermal_slowdown",
    "clocks_throttle_reasons.hw_power_brake_slowdown",
    "clocks_throttle_reasons.sw_thermal_slowdown",
    "clocks_throttle_reasons.sync_boost",
    "ecc.mode.current",
    "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.aggregate.total",
    "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.single_bit_ecc.count",
    "retired_pages.double_bit.count",
    "retired_pages.pending",
    "mig.mode.current",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
)
"""The ``--query-gpu`` field list the collector asks for: fields that every driver since R450 knows
(``nvidia-smi --help-query-gpu``), because one unknown field makes nvidia-smi refuse the whole query.
``clocks_throttle_reasons.*`` is still accepted by drivers that renamed it ``clocks_event_reasons.*`` (535+)."""

QUERY_APPS_FIELDS: tuple[str, ...] = ("gpu_uuid", "pid", "process_name", "used_gpu_memory")
"""The ``--query-compute-apps`` field list the collector asks for."""

# Aliases nvidia-smi accepts (``--help-query-gpu``) -> the names used below.
_CSV_ALIASES = {
    "clocks.gr": "clocks.current.graphics",
    "clocks.sm": "clocks.current.sm",
    "clocks.mem": "clocks.current.memory",
    "clocks.video": "clocks.current.video",
    "clocks.max.gr": "clocks.max.graphics",
    "clocks.max.mem": "clocks.max.memory",
    "gpu_uuid": "uuid",
    "gpu_name": "name",
    "gpu_bus_id": "pci.bus_id",
    "enforced.power.limit": "power.enforced_limit",
}

_HEADER = re.compile(r"^(.*?)\s*(?:\[(.+)\])?$")


def _csv_rows(text: str, fields: tuple[str, ...] | None, result: ParseResult) -> Iterator[tuple[int, dict, dict]]:
    """Yield ``(line number, {field: raw value}, {field: header unit})``.

    With ``fields`` None the first line is the header (``--format=csv``); otherwise the text has no header
    (``noheader``) and ``fields`` names the columns. Header units (``memory.total [MiB]``) apply to bare values
    (``nounits``).
    """
    lines = text.splitlines()
    start = 0
    if fields is None:
        if not lines or not lines[0].strip():
            result.skip(0, "no CSV header")
            return
        names, units = [], {}
        for raw in next(csv.reader([lines[0]], skipinitialspace=True)):
            m = _HEADER.match(raw.strip())
            assert m is not None
            name = _CSV_ALIASES.get(m.group(1), m.group(1))
            names.append(name)
            if m.group(2):
                units[name] = m.group(2)
        start = 1
    else:
        names = [_CSV_ALIASES.get(f, f) for f in fields]
        units = {}
    for offset, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line], skipinitialspace=True))
        except csv.Error:
            result.skip(offset, "unreadable CSV line", line)
            continue
        if len(row) != len(names):
            result.skip(offset, f"expected {len(names)} fields, got {len(row)}", line)
            continue
        yield offset, {n: v.strip() for n, v in zip(names, row, strict=True)}, units


def _unit_scale(unit: str | None, default: float) -> float:
    if unit is None:
        return default
    return UNIT_SCALE.get(unit, default)


def parse_query_gpu_csv(text: str, fields: tuple[str, ...] | None = None) -> ParseResult[GpuDevice]:
    """Parse ``nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]``.

    Args:
        text: the output.
        fields: the queried field list when the output has no header (``noheader``); None reads the header,
            whose ``[unit]`` suffixes give the unit of bare (``nounits``) values.

    Returns:
        One :class:`GpuDevice` per line; fields that are not queried or are ``[N/A]`` are absent; unknown fields
        are ignored. ``processes`` is None (``--query-compute-apps`` lists them). A line with the wrong number of
        fields or without an ``index`` is one issue.

    """
    result: ParseResult[GpuDevice] = ParseResult()
    for line_no, row, units in _csv_rows(text, fields, result):
        issues = _Issues(result, line_no)

        def q(name: str, default: float = 1.0, row=row, units=units, issues=issues) -> float | None:
            raw = row.get(name)
            return _get(lambda: parse_quantity(raw, _unit_scale(units.get(name), default)), issues, name, raw)

        def flag(name: str, row=row, issues=issues) -> bool | None:
            raw = row.get(name)
            return _get(lambda: parse_flag(raw), issues, name, raw)

        raw_index = row.get("index")
        index = _get(lambda raw_index=raw_index: _int(raw_index), issues, "index", raw_index)
        if index is None:
            result.skip(line_no, "no GPU index")
            continue
        g = GpuDevice(index=index)
        g.uuid, g.name = _text(row.get("uuid")), _text(row.get("name"))
        g.pci_bus_id, g.driver_version = _text(row.get("pci.bus_id")), _text(row.get("driver_version"))
        g.vbios_version = _text(row.get("vbios_version"))
        raw_p = row.get("pstate")
        g.performance_state = _get(lambda raw_p=raw_p: _pstate(raw_p), issues, "pstate", raw_p)
        g.fan_speed_ratio = q("fan.speed", 0.01)
        for key in ("total", "used", "free", "reserved"):
            _put(g.memory, key, q(f"memory.{key}", MIB))
        for engine in ("gpu", "memory", "encoder", "decoder", "jpeg", "ofa"):
            _put(g.utilization, engine, q(f"utilization.{engine}", 0.01))
        _put(g.temperature, "gpu", q("temperature.gpu"))
        _put(g.temperature, "memory", q("temperature.memory"))
        g.temperature_margin = q("temperature.gpu.tlimit")
        _put(g.power, "draw", q("power.draw"))
        _put(g.power, "instant", q("power.draw.instant"))
        for key, name in (
            ("requested", "power.limit"),
            ("enforced", "power.enforced_limit"),
            ("default", "power.default_limit"),
            ("min", "power.min_limit"),
            ("max", "power.max_limit"),
        ):
            _put(g.power_limits, key, q(name))
        for clock in ("graphics", "sm", "memory", "video"):
            _put(g.clocks, clock, q(f"clocks.current.{clock}", 1e6))
            _put(g.max_clocks, clock, q(f"clocks.max.{clock}", 1e6))
        for reason in THROTTLE_REASONS:
            for prefix in ("clocks_event_reasons", "clocks_throttle_reasons"):
                value = flag(f"{prefix}.{reason}")
                if value is not None:
                    g.throttle_reasons[reason] = value
                    break
            _put(g.throttle_seconds, reason, q(f"clocks_event_reasons_counters.{reason}", 1e-6))
        for key in ("current", "max"):
            _put(g.pcie, f"link_gen_{key}", q(f"pcie.link.gen.{key}"))
            _put(g.pcie, f"link_width_{key}", q(f"pcie.link.width.{key}"))
        g.ecc_mode_enabled = flag("ecc.mode.current")
        for name, raw in row.items():
            parts = name.split(".")
            if len(parts) >= 5 and parts[:2] == ["ecc", "errors"] and parts[2] in ("corrected", "uncorrected"):
                if parts[3] not in ("volatile", "aggregate") or parts[-1] == "thresholdExceeded":
                    continue
                key = (parts[3], parts[2], "_".join(parts[4:]))
                _set(g.ecc_errors, key, lambda raw=raw: _count(raw), issues, name, raw)
        _put(g.retired_pages, "single_bit_ecc", q("retired_pages.single_bit_ecc.count"))
        _put(g.retired_pages, "double_bit_ecc", q("retired_pages.double_bit.count"))
        g.retired_pages_pending = flag("retired_pages.pending")
        _put(g.remapped_rows, "correctable", q("remapped_rows.correctable"))
        _put(g.remapped_rows, "uncorrectable", q("remapped_rows.uncorrectable"))
        g.remapped_rows_pending = flag("remapped_rows.pending")
        g.remapped_rows_failure = flag("remapped_rows.failure")
        g.mig_mode_enabled = flag("mig.mode.current")
        result.records.append(g)
    return result


def _put(target: dict, key: str, value: float | None) -> None:
    if value is not None:
        target[key] = value


def parse_compute_apps_csv(text: str, fields: tuple[str, ...] | None = None) -> ParseResult[GpuProcess]:
    """Parse ``nvidia-smi --query-compute-apps=<fields> --format=csv[,noheader][,nounits]``.

    Returns:
        One :class:`GpuProcess` per line (``gpu_uuid`` set, ``type`` None). "No running processes found" and
        empty output give no records and no issue.

    """
    result: ParseResult[GpuProcess] = ParseResult()
    if "no running" in text.lower() and "found" in text.lower():
        return result
    for line_no, row, units in _csv_rows(text, fields, result):
        issues = _Issues(result, line_no)
        raw_pid = row.get("pid")
        pid = _get(lambda raw_pid=raw_pid: _int(raw_pid), issues, "pid", raw_pid)
        if pid is None:
            result.skip(line_no, "no pid")
            continue
        raw_mem = row.get("used_gpu_memory", row.get("used_memory"))
        unit = units.get("used_gpu_memory", units.get("used_memory"))
        mem = _get(
            lambda raw_mem=raw_mem, unit=unit: parse_quantity(raw_mem, _unit_scale(unit, MIB)),
            issues,
            "memory",
            raw_mem,
        )
        result.records.append(
            GpuProcess(
                pid=pid,
                name=_text(row.get("process_name")),
                used_memory_bytes=mem,
                gpu_uuid=_text(row.get("uuid")),
            )
        )
    return result


@dataclass(frozen=True)
class RetiredPage:
    """One row of ``--query-retired-pages``: a retired framebuffer page.

    Attributes:
        gpu_uuid: the GPU.
        cause: ``single_bit_ecc`` (multiple single-bit errors) or ``double_bit_ecc``.
        address: page address, None when ``[N/A]``.
        timestamp: retirement time as printed, None when ``[N/A]``.

    """

    gpu_uuid: str | None
    cause: str
    address: int | None
    timestamp: str | None


def parse_retired_pages_csv(text: str, fields: tuple[str, ...] | None = None) -> ParseResult[RetiredPage]:
    """Parse ``nvidia-smi --query-retired-pages=gpu_uuid,retired_pages.address,retired_pages.cause,...``.

    Returns:
        One :class:`RetiredPage` per line; a cause other than "Single Bit ECC"/"Double Bit ECC" is one issue.

    """
    result: ParseResult[RetiredPage] = ParseResult()
    for line_no, row, _ in _csv_rows(text, fields, result):
        cause = _snake(row.get("retired_pages.cause", ""))
        if cause not in ("single_bit_ecc", "double_bit_ecc"):
            result.skip(line_no, "unknown retirement cause", row.get("retired_pages.cause", ""))
            continue
        raw = row.get("retired_pages.address")
        addr = _get(lambda raw=raw: _int(raw), _Issues(result, line_no), "address", raw)
        result.records.append(
            RetiredPage(_text(row.get("uuid")), cause, addr, _text(row.get("retired_pages.timestamp")))
        )
    return result


# --------------------------------------------------------------------------------------------------------------
# -L and dmon


@dataclass
class GpuListEntry:
    """One line of ``nvidia-smi -L``: a GPU, with its MIG devices listed under it.

    Attributes:
        index: GPU index.
        name: product name.
        uuid: ``GPU-...``.
        mig: ``(profile, MIG device index, MIG-uuid)`` for each ``MIG <profile> Device <n>: (UUID: ...)`` line.

    """

    index: int
    name: str
    uuid: str | None
    mig: list[tuple[str, int, str]] = field(default_factory=list)


_L_GPU = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: ([^)]*)\))?$")
_L_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]*)\)$")


def parse_list(text: str) -> ParseResult[GpuListEntry]:
    """Parse ``nvidia-smi -L``; a MIG line before any GPU line, or any other non-empty line, is one issue."""
    result: ParseResult[GpuListEntry] = ParseResult()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _L_GPU.match(line.rstrip())
        if m:
            result.records.append(GpuListEntry(int(m.group(1)), m.group(2), m.group(3)))
            continue
        m = _L_MIG.match(line.rstrip())
        if m and result.records:
            result.records[-1].mig.append((m.group(1), int(m.group(2)), m.group(3)))
            continue
        result.skip(line_no, "not a GPU or MIG line", line)
    return result


@dataclass
class DmonSample:
    """One data line of ``nvidia-smi dmon``.

    Attributes:
        gpu: GPU index (``gpu``/``Idx`` column).
        values: column name (``pwr``, ``gtemp``, ``sm``, ``mclk``...) -> value; ``%`` columns as ratios 0-1,
            ``MHz`` columns in Hz, others as printed (W, C, MB, MB/s...); ``-`` is absent.
        units: column name -> unit from the second header line.

    """

    gpu: int
    values: dict[str, float]
    units: dict[str, str]


def parse_dmon(text: str) -> ParseResult[DmonSample]:
    """Parse ``nvidia-smi dmon [-s ...] [-c N]``: ``#`` header lines (names, then units), whitespace columns.

    Returns:
        One :class:`DmonSample` per data line; a data line before the header, with the wrong number of
        columns or a non-numeric value other than ``-`` is one issue. Date/Time columns (``-o DT``) are ignored.

    """
    result: ParseResult[DmonSample] = ParseResult()
    names: list[str] = []
    units: list[str] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            cols = line.lstrip()[1:].split()
            if not names:
                names = cols
            elif not units:
                units = cols
            continue
        cols = line.split()
        if not names or len(cols) != len(names):
            result.skip(line_no, "no header or wrong column count", line)
            continue
        unit_map = dict(zip(names, units, strict=False)) if len(units) == len(names) else {}
        gpu, values, ok = None, {}, True
        for name, raw in zip(names, cols, strict=True):
            if name.lower() in ("date", "time"):
                continue
            if name.lower() in ("gpu", "idx"):
                gpu = int(raw) if raw.isdigit() else None
                continue
            if raw == "-":
                continue
            try:
                value = float(raw)
            except ValueError:
                ok = False
                break
            unit = unit_map.get(name, "")
            values[name] = value * {"%": 0.01, "MHz": 1e6}.get(unit, 1.0)
        if not ok or gpu is None:
            result.skip(line_no, "unreadable dmon line", line)
            continue
        result.records.append(DmonSample(gpu, values, unit_map))
    return result


# --------------------------------------------------------------------------------------------------------------
# GPU-to-job mapping inputs


NVIDIA_MAJOR = 195
"""Character-device major of ``/dev/nvidia<N>``, ``/dev/nvidiactl`` (minor 255) and ``/dev/nvidia-modeset``
(254) (Linux ``Documentation/admin-guide/devices.txt``: 195 char "NVIDIA graphics devices")."""


@dataclass(frozen=True)
class DevicesList:
    """A cgroup v1 ``devices.list``.

    Attributes:
        all_devices: an ``a *:* rwm`` rule (no device restriction: the job sees every GPU, mapping unknown).
        gpu_minors: minors of ``c 195:<N>`` rules with N < 254 (GPUs; 254/255 are modeset/ctl).

    """

    all_devices: bool
    gpu_minors: tuple[int, ...]


def parse_devices_list(text: str) -> ParseResult[DevicesList]:
    """Parse a cgroup v1 ``devices.list`` (kernel ``Documentation/admin-guide/cgroup-v1/devices.rst``).

    Lines are ``<type> <major>:<minor> <access>`` with type ``a``/``b``/``c`` and ``*`` wildcards.

    Returns:
        Exactly one :class:`DevicesList` (even for empty text); unreadable lines are issues.

    """
    result: ParseResult[DevicesList] = ParseResult()
    all_devices = False
    minors: list[int] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([abc]) (\*|\d+):(\*|\d+) ([rwm]+)", line.strip())
        if m is None:
            result.skip(line_no, "not a devices.list rule", line)
            continue
        kind, major, minor = m.group(1), m.group(2), m.group(3)
        if kind == "a" or (kind == "c" and major == "*"):
            all_devices = True
        elif kind == "c" and major == str(NVIDIA_MAJOR):
            if minor == "*":
                all_devices = True
            elif int(minor) < 254:
                minors.append(int(minor))
    result.records.append(DevicesList(all_devices, tuple(sorted(set(minors)))))
    return result


@dataclass(frozen=True)
class GpuJobFile:
    """The content of one file written by the SLURM prolog (``deploy/slurm/prolog-gpu.sh``).

    Attributes:
        gpu_ids: GPU ids given to the job (SLURM_JOB_GPUS: nvidia-smi indexes, or device minors; see the
            collector's ``job_file_ids`` option).
        user: job owner, None when not written.

    """

    gpu_ids: tuple[int, ...]
    user: str | None


def parse_id_list(text: str) -> list[int]:
    """Parse ``0,2,5-7`` (SLURM's id list syntax) into ``[0, 2, 5, 6, 7]``.

    Raises:
        ValueError: anything else, or a range wider than 1024.

    """
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 0 or b < a or b - a > 1024:
            raise ValueError(part)
        out.extend(range(a, b + 1))
    return out


def parse_gpu_job_file(text: str) -> ParseResult[GpuJobFile]:
    """Parse one GPU-job file: ``key=value`` lines, ``#`` comments.

    Format (written by ``deploy/slurm/prolog-gpu.sh``, file name = job id)::

        gpus=0,2        # required: SLURM_JOB_GPUS, ids as in SLURM's syntax (ranges allowed)
        user=alice      # optional: SLURM_JOB_USER

    A file holding only an id list (``0,2``) is accepted too. Unknown keys are ignored.

    Returns:
        One :class:`GpuJobFile`, or no record and one issue when there is no readable ``gpus`` line.

    """
    result: ParseResult[GpuJobFile] = ParseResult()
    ids: list[int] | None = None
    user = None
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            key, value = "gpus", key
        if key == "gpus":
            try:
                ids = parse_id_list(value)
            except ValueError:
                result.skip(line_no, "unreadable GPU id list", raw)
        elif key == "user" and value:
            user = value
    if ids is None:
        if not result.issues:
            result.skip(0, "no gpus= line")
        return result
    result.records.append(GpuJobFile(tuple(ids), user))
    return result
