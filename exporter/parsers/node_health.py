"""Pure parsers for the node health collector: EDAC and hwmon sysfs trees, ``/proc/<pid>/stat``, ``unmunge``.

sysfs is many one-value files; the collector reads the ones it knows into a ``{relative path: text}`` mapping
and these functions turn that mapping into records, so that they stay free of I/O and can be fed anything.

Sources:

- EDAC (``Documentation/admin-guide/ras.rst``, "EDAC sysfs"): ``mc/mcN/ce_count`` and ``ue_count`` are the
  correctable and uncorrectable errors of memory controller N since the driver loaded (or since
  ``reset_counters``), including those that could not be tied to a DIMM (``ce_noinfo_count``). The DIMM view
  (Linux 3.6+) has ``mcN/dimmM/`` (or ``rankM/`` on drivers that count per rank) with ``dimm_ce_count``,
  ``dimm_ue_count`` and ``dimm_label``; the legacy ``mcN/csrowM/`` directories have ``ce_count``/``ue_count``
  and are used only when no dimm/rank directory exists.
- hwmon (``Documentation/hwmon/sysfs-interface.rst``): ``hwmonN/name`` is the chip name; ``tempX_input``,
  ``tempX_max`` and ``tempX_crit`` are millidegrees Celsius; ``tempX_label`` is an optional sensor label.
- ``/proc/<pid>/stat`` (``proc(5)``): ``pid (comm) state ...``; ``comm`` may contain spaces and parentheses,
  so it ends at the *last* ``)``. It is the executable name truncated to 15 bytes (``TASK_COMM_LEN``).
- ``unmunge`` (``unmunge(1)``): the first line is ``STATUS:  Success (0)`` on a valid credential.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .common import ParseResult

_MC = re.compile(r"^(mc\d+)/(ce_count|ue_count|mc_name)$")
_DIMM = re.compile(r"^(mc\d+)/((?:dimm|rank|csrow)\d+)/(dimm_ce_count|dimm_ue_count|dimm_label|ce_count|ue_count)$")
_TEMP = re.compile(r"^(hwmon\d+)/temp(\d+)_(input|max|crit|label)$")
_NAME = re.compile(r"^(hwmon\d+)/name$")
_COUNT = re.compile(r"^\d+$")


def _count(text: str) -> int | None:
    text = text.strip()
    return int(text) if _COUNT.match(text) else None


def _millidegrees(text: str) -> float | None:
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value / 1000.0


@dataclass(frozen=True)
class EdacCounts:
    """Error counts of one memory controller, or of one DIMM/rank/csrow of it.

    Attributes:
        controller: ``mc0``...
        unit: ``""`` for the controller total, else the sysfs directory (``dimm3``, ``rank1``, ``csrow0``).
        label: the DIMM label (``dimm_label``, e.g. ``CPU_SrcID#0_Ha#0_Chan#1_DIMM#0``), or the controller's
            ``mc_name`` for the total; ``""`` when not provided.
        correctable: correctable errors; None when the file was missing or unreadable.
        uncorrectable: uncorrectable errors; None likewise.

    """

    controller: str
    unit: str
    label: str
    correctable: int | None
    uncorrectable: int | None


def parse_edac(files: Mapping[str, str]) -> ParseResult[EdacCounts]:
    """Turn an EDAC ``mc`` tree into counts.

    Args:
        files: ``{path relative to /sys/devices/system/edac/mc: text}``, e.g. ``"mc0/ce_count": "3"``,
            ``"mc0/dimm0/dimm_ce_count": "1"``. Unknown paths are ignored.

    Returns:
        One controller record (``unit == ""``) per ``mcN`` that has a count, then its units, sorted by name.
        Only dimm/rank units are returned when a controller has any; csrow units otherwise. A count that is
        not a non-negative integer is an issue and left None.

    """
    result: ParseResult[EdacCounts] = ParseResult()
    mcs: dict[str, dict[str, str]] = {}
    units: dict[tuple[str, str], dict[str, str]] = {}
    for path, text in sorted(files.items()):
        m = _MC.match(path)
        if m:
            mcs.setdefault(m.group(1), {})[m.group(2)] = text
            continue
        m = _DIMM.match(path)
        if m:
            units.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = text

    def count(values: dict[str, str], key: str, where: str) -> int | None:
        if key not in values:
            return None
        n = _count(values[key])
        if n is None:
            result.skip(0, f"{where}/{key}: not a count", values[key])
        return n

    for mc in sorted(mcs, key=_natural):
        v = mcs[mc]
        ce, ue = count(v, "ce_count", mc), count(v, "ue_count", mc)
        if ce is not None or ue is not None:
            result.records.append(EdacCounts(mc, "", v.get("mc_name", "").strip(), ce, ue))
    by_mc: dict[str, list[str]] = {}
    for mc, unit in units:
        by_mc.setdefault(mc, []).append(unit)
    for mc in sorted(by_mc, key=_natural):
        names = sorted(by_mc[mc], key=_natural)
        modern = [u for u in names if not u.startswith("csrow")]
        for unit in modern or names:
            v = units[(mc, unit)]
            if unit.startswith("csrow"):
                ce, ue, label = count(v, "ce_count", f"{mc}/{unit}"), count(v, "ue_count", f"{mc}/{unit}"), ""
            else:
                ce = count(v, "dimm_ce_count", f"{mc}/{unit}")
                ue = count(v, "dimm_ue_count", f"{mc}/{unit}")
                label = v.get("dimm_label", "").strip()
            if ce is not None or ue is not None:
                result.records.append(EdacCounts(mc, unit, label, ce, ue))
    return result


@dataclass(frozen=True)
class Temperature:
    """One hwmon temperature channel.

    Attributes:
        hwmon: the sysfs directory (``hwmon3``; not stable across reboots, used only to tell chips apart).
        chip: the chip name (``coretemp``, ``k10temp``, ``nvme``, ``amdgpu``...).
        device: the stable name of the device behind the chip (basename of the ``device`` link, e.g.
            ``coretemp.0``, ``0000:00:18.3``, ``nvme0``), else the hwmon directory.
        sensor: ``temp<N>``.
        label: ``tempN_label`` (``Core 3``, ``Package id 0``, ``Composite``), ``""`` when absent.
        celsius: current reading; None when the read failed or was not a number.
        max_celsius: ``tempN_max``; None when absent.
        crit_celsius: ``tempN_crit``; None when absent.

    """

    hwmon: str
    chip: str
    device: str
    sensor: str
    label: str
    celsius: float | None
    max_celsius: float | None
    crit_celsius: float | None


def parse_hwmon(files: Mapping[str, str], devices: Mapping[str, str] | None = None) -> ParseResult[Temperature]:
    """Turn an hwmon class tree into temperature records.

    Args:
        files: ``{path relative to /sys/class/hwmon: text}``, e.g. ``"hwmon1/temp2_input": "45000"``.
        devices: ``{hwmonN: device name}`` from the ``device`` links; missing entries use ``hwmonN``.

    Returns:
        One record per ``tempN_input`` present, sorted by hwmon and channel number. A chip without ``name``
        is named after its directory. A value that is not an integer is an issue and left None (a failing
        sensor returns an error on read, which the collector passes as an absent file).

    """
    result: ParseResult[Temperature] = ParseResult()
    devices = devices or {}
    names: dict[str, str] = {}
    chans: dict[tuple[str, int], dict[str, str]] = {}
    for path, text in files.items():
        m = _NAME.match(path)
        if m:
            names[m.group(1)] = text.strip()
            continue
        m = _TEMP.match(path)
        if m:
            chans.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = text
    for hw, n in sorted(chans, key=lambda k: (_natural(k[0]), k[1])):
        v = chans[(hw, n)]
        if "input" not in v:
            continue
        values: dict[str, float | None] = {}
        for key in ("input", "max", "crit"):
            if key in v:
                values[key] = _millidegrees(v[key])
                if values[key] is None:
                    result.skip(0, f"{hw}/temp{n}_{key}: not an integer", v[key])
        result.records.append(
            Temperature(
                hwmon=hw,
                chip=names.get(hw) or hw,
                device=devices.get(hw) or hw,
                sensor=f"temp{n}",
                label=v.get("label", "").strip(),
                celsius=values.get("input"),
                max_celsius=values.get("max"),
                crit_celsius=values.get("crit"),
            )
        )
    return result


def _natural(name: str) -> tuple[str, int]:
    m = re.match(r"^(\D*)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


@dataclass(frozen=True)
class ProcStat:
    """The head of one ``/proc/<pid>/stat`` line.

    Attributes:
        pid: process ID.
        comm: executable name, at most 15 bytes.
        state: one-letter state (``R`` running, ``S`` sleeping, ``D`` disk sleep, ``Z`` zombie, ``X`` dead...).

    """

    pid: int
    comm: str
    state: str

    @property
    def alive(self) -> bool:
        """False for zombies (``Z``) and dead tasks (``X``/``x``): they do not serve anything."""
        return self.state not in ("Z", "X", "x")


def parse_pid_stat(text: str) -> ProcStat | None:
    """Parse the start of a ``/proc/<pid>/stat`` line; None when it does not have the ``pid (comm) S`` shape."""
    open_ = text.find(" (")
    close = text.rfind(")")
    if open_ <= 0 or close < open_:
        return None
    pid_s, comm, rest = text[:open_], text[open_ + 2 : close], text[close + 1 :].split()
    if not pid_s.isdigit() or not rest or len(rest[0]) != 1:
        return None
    return ProcStat(int(pid_s), comm, rest[0])


def unmunge_succeeded(text: str) -> bool:
    """Whether ``unmunge`` output reports a valid credential (``STATUS: Success (0)`` on its first line)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "STATUS":
            return value.strip().startswith("Success")
    return False
