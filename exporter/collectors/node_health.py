"""Node health collector (node mode): memory errors (EDAC), temperatures (hwmon) and SLURM service liveness.

Three cheap sources, read on every scrape (no command runs unless ``check_munge`` is on):

- **EDAC** memory-controller error counters under ``<sys_root>/devices/system/edac/mc`` (see
  :func:`~nomade.exporter.parsers.node_health.parse_edac`). Counters: they only grow, and fall back to 0 when
  the EDAC driver is reloaded, which ``rate()``/``increase()`` treat as a reset. A rising correctable count is
  the usual early sign of a failing DIMM; any uncorrectable error deserves a drain.
- **hwmon** temperatures under ``<sys_root>/class/hwmon`` with the chip's own ``max`` and ``crit`` limits, so
  alerts can compare a sensor to its own threshold instead of one number for every chip.
- **Service liveness** of the daemons in option ``services`` (default ``slurmd`` and ``munged``): a scan of
  ``<proc_root>/<pid>/stat`` for live (not zombie) processes whose ``comm`` equals the service name (cut to
  15 bytes like the kernel does). Optional ``check_munge`` also encodes and decodes a credential
  (``munge -n`` then ``unmunge --input``): a munged that runs but cannot serve (full socket backlog, bad key,
  clock skew) fails it. It is off by default because it costs two processes; its result is kept for
  ``check_interval`` seconds so several scrapers do not multiply that cost, and it is never cached by
  argv (``unmunge`` refuses a replayed credential).

  ``nomade_node_health_service_last_seen_timestamp_seconds`` is the Unix time of the last scrape at which the
  service passed its check (process present, plus the munge round trip for ``munged`` when enabled). It is kept
  in memory, so it is absent for a service not seen since the exporter started; ``time() - last_seen`` is "time
  since it last answered". Whether slurmctld *answers RPCs* is not checked here: the controller-side views
  are the ``reachability`` collector (TCP) and ``slurm_nodes`` (nodes not responding). On the controller, set
  ``services = ["slurmctld", "slurmdbd", "munged"]``.

**Missing hardware** (VMs, containers: no EDAC, often no hwmon) is not a failure: the collector stays ``up``,
logs it once per source and exports ``nomade_node_health_source_available{source} 0``. ``available()`` is
always True because the process scan works everywhere; an unreadable ``/proc`` is a source failure (``up 0``).

Cardinality: controllers + DIMMs x 2 (a 2-socket server with 16 DIMMs: ~40 series), temperatures x 3
(~20 channels on a 2-socket node: 60), services x 3.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..metrics import MetricSet, MetricSpec
from ..parsers.node_health import parse_edac, parse_hwmon, parse_pid_stat, unmunge_succeeded
from ..runner import CommandError
from .base import Collector, CollectorContext, CollectorError

DEFAULT_SERVICES = ("slurmd", "munged")
"""Services checked by default on a compute node."""

COMM_LEN = 15
"""Bytes of the executable name the kernel keeps in ``comm`` (``TASK_COMM_LEN`` - 1)."""

_T = ("chip", "device", "sensor", "label")
_S = ("service",)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:  # missing file, or a sensor/driver returning EIO/ENODATA: absent, not zero
        return None


class NodeHealthCollector(Collector):
    """EDAC error counters, hwmon temperatures and process liveness of SLURM daemons.

    Options (``[collector.node_health]``):
        services: process names to check (default :data:`DEFAULT_SERVICES`).
        edac_per_dimm: also report per-DIMM (or rank/csrow) error counters (default true).
        check_munge: run a munge credential round trip (default false; two processes per check).
        check_interval: seconds a munge round-trip result is reused (default 60).
        munge_timeout: seconds each of ``munge``/``unmunge`` may run (default 5).
    """

    name = "node_health"
    mode = "node"
    description = "EDAC memory errors, hwmon temperatures and SLURM daemon liveness."
    metrics = (
        MetricSpec(
            "nomade_node_health_source_available",
            "gauge",
            "1 when the hardware source exists on this node (source=edac: /sys/devices/system/edac/mc, "
            "source=hwmon: /sys/class/hwmon temperatures), else 0.",
            ("source",),
        ),
        MetricSpec(
            "nomade_node_health_edac_correctable_errors_total",
            "counter",
            "Correctable memory errors of a memory controller since the EDAC driver loaded (mcN/ce_count).",
            ("controller",),
        ),
        MetricSpec(
            "nomade_node_health_edac_uncorrectable_errors_total",
            "counter",
            "Uncorrectable memory errors of a memory controller (mcN/ue_count).",
            ("controller",),
        ),
        MetricSpec(
            "nomade_node_health_edac_controller_info",
            "info",
            "EDAC memory controller and its driver's name for it (mcN/mc_name).",
            ("controller", "mc_name"),
        ),
        MetricSpec(
            "nomade_node_health_edac_dimm_correctable_errors_total",
            "counter",
            "Correctable memory errors per DIMM, rank or (legacy) csrow, with the board's DIMM label.",
            ("controller", "dimm", "label"),
        ),
        MetricSpec(
            "nomade_node_health_edac_dimm_uncorrectable_errors_total",
            "counter",
            "Uncorrectable memory errors per DIMM, rank or (legacy) csrow.",
            ("controller", "dimm", "label"),
        ),
        MetricSpec(
            "nomade_node_health_temperature_celsius",
            "gauge",
            "Temperature of an hwmon sensor (tempN_input / 1000).",
            _T,
            "celsius",
        ),
        MetricSpec(
            "nomade_node_health_temperature_max_celsius",
            "gauge",
            "The chip's high-temperature limit for the sensor (tempN_max / 1000).",
            _T,
            "celsius",
        ),
        MetricSpec(
            "nomade_node_health_temperature_critical_celsius",
            "gauge",
            "The chip's critical-temperature limit for the sensor (tempN_crit / 1000).",
            _T,
            "celsius",
        ),
        MetricSpec(
            "nomade_node_health_service_up",
            "gauge",
            "1 when the service passed its liveness check (a live process; for munged with check_munge, also "
            "a credential round trip), else 0.",
            _S,
        ),
        MetricSpec(
            "nomade_node_health_service_processes",
            "gauge",
            "Live (non-zombie) processes whose comm is the service name.",
            _S,
        ),
        MetricSpec(
            "nomade_node_health_service_last_seen_timestamp_seconds",
            "gauge",
            "Unix time of the last scrape at which the service passed its liveness check (since exporter start).",
            _S,
            "seconds",
        ),
        MetricSpec(
            "nomade_node_health_munge_roundtrip_up",
            "gauge",
            "1 when `munge -n` then `unmunge` decoded a fresh credential (only with check_munge).",
        ),
        MetricSpec(
            "nomade_node_health_munge_roundtrip_seconds",
            "gauge",
            "Wall time of the last munge credential round trip (only with check_munge).",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        services = self.option("services", list(DEFAULT_SERVICES))
        if isinstance(services, str) or not all(isinstance(s, str) and s for s in services):
            raise ValueError("node_health: services must be a list of process names")
        self.services = tuple(dict.fromkeys(services))
        self.per_dimm = bool(self.option("edac_per_dimm", True))
        self.check_munge = bool(self.option("check_munge", False))
        self.check_interval = float(self.option("check_interval", 60))
        self.munge_timeout = float(self.option("munge_timeout", 5))
        self.last_seen: dict[str, float] = {}
        self._munge: tuple[float, bool, float] | None = None  # (monotonic time, ok, duration)
        self._said_missing: set[str] = set()

    @classmethod
    def available(cls) -> bool:
        """Always True: the process scan works on every Linux node (EDAC and hwmon are optional parts)."""
        return True

    # ---------------------------------------------------------------------------------------- sources

    def read_edac_files(self) -> dict[str, str] | None:
        """Read the EDAC files the parser knows, as ``{path relative to edac/mc: text}``; None without EDAC."""
        base = self.ctx.sys_root / "devices" / "system" / "edac" / "mc"
        try:
            mcs = sorted(p for p in base.iterdir() if p.name.startswith("mc") and p.name[2:].isdigit())
        except OSError:
            return None
        files: dict[str, str] = {}
        for mc in mcs:
            for name in ("ce_count", "ue_count", "mc_name"):
                text = _read(mc / name)
                if text is not None:
                    files[f"{mc.name}/{name}"] = text
            if not self.per_dimm:
                continue
            try:
                units = [p for p in mc.iterdir() if p.name.startswith(("dimm", "rank", "csrow"))]
            except OSError:
                continue
            for unit in units:
                for name in ("dimm_ce_count", "dimm_ue_count", "dimm_label", "ce_count", "ue_count"):
                    text = _read(unit / name)
                    if text is not None:
                        files[f"{mc.name}/{unit.name}/{name}"] = text
        return files if mcs else None

    def read_hwmon_files(self) -> tuple[dict[str, str], dict[str, str]] | None:
        """Read hwmon names and temperature files: ``({rel path: text}, {hwmonN: device})``; None without hwmon.

        Chips of old drivers keep their attributes in ``hwmonN/device/`` instead of ``hwmonN/``; both are read.
        """
        base = self.ctx.sys_root / "class" / "hwmon"
        try:
            chips = sorted(p for p in base.iterdir() if p.name.startswith("hwmon"))
        except OSError:
            return None
        files: dict[str, str] = {}
        devices: dict[str, str] = {}
        for chip in chips:
            try:
                link = os.readlink(chip / "device")
                devices[chip.name] = os.path.basename(link.rstrip("/"))
            except OSError:
                pass
            for d in (chip, chip / "device"):
                try:
                    names = [p.name for p in d.iterdir() if p.name.startswith("temp") or p.name == "name"]
                except OSError:
                    continue
                for n in names:
                    key = f"{chip.name}/{n}"
                    if key not in files and (n == "name" or n.endswith(("_input", "_max", "_crit", "_label"))):
                        text = _read(d / n)
                        if text is not None:
                            files[key] = text
        return (files, devices) if chips else None

    def scan_processes(self) -> dict[str, int]:
        """Count live processes per configured service.

        Raises:
            CollectorError: ``proc_root`` cannot be listed.

        """
        wanted = {s[:COMM_LEN]: s for s in self.services}
        counts = dict.fromkeys(self.services, 0)
        try:
            entries = [e.name for e in os.scandir(self.ctx.proc_root) if e.name.isdigit()]
        except OSError as exc:
            raise CollectorError(f"cannot list {self.ctx.proc_root}: {exc}") from exc
        for pid in entries:
            text = _read(self.ctx.proc_root / pid / "stat")  # a process that just exited: skipped
            if text is None:
                continue
            st = parse_pid_stat(text)
            if st is None:
                self.count_parse_errors(1)
                continue
            service = wanted.get(st.comm)
            if service is not None and st.alive:
                counts[service] += 1
        return counts

    def munge_roundtrip(self) -> tuple[bool, float]:
        """``(ok, seconds)`` of a munge credential round trip, reused for ``check_interval`` seconds."""
        now = time.monotonic()
        if self._munge is not None and now - self._munge[0] < self.check_interval:
            return self._munge[1], self._munge[2]
        start = time.monotonic()
        ok = False
        try:
            cred = self.ctx.runner.run(["munge", "-n"], timeout=self.munge_timeout, ttl=0).stdout
            with tempfile.NamedTemporaryFile("w", prefix="nomade-munge-", suffix=".cred") as f:
                f.write(cred)
                f.flush()
                res = self.ctx.runner.run(["unmunge", "--input", f.name], timeout=self.munge_timeout, ttl=0)
            ok = unmunge_succeeded(res.stdout)
        except (CommandError, OSError) as exc:
            self.log.debug("munge round trip failed: %s", exc)
        self._munge = (now, ok, time.monotonic() - start)
        return ok, self._munge[2]

    # ---------------------------------------------------------------------------------------- collect

    def _missing(self, source: str, out: MetricSet) -> None:
        out.add("nomade_node_health_source_available", 0, source=source)
        if source not in self._said_missing:
            self._said_missing.add(source)
            self.log.info("no %s on this node: exporting nomade_node_health_source_available 0", source)

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError only when the process table cannot be read."""
        counts = self.scan_processes()
        self._add_edac(out)
        self._add_hwmon(out)
        munge_ok: bool | None = None
        if self.check_munge:
            munge_ok, seconds = self.munge_roundtrip()
            out.add("nomade_node_health_munge_roundtrip_up", int(munge_ok))
            out.add("nomade_node_health_munge_roundtrip_seconds", seconds)
        now = self.ctx.clock()
        for service, n in counts.items():
            up = n > 0 and (service != "munged" or munge_ok is not False)
            out.add("nomade_node_health_service_processes", n, service=service)
            out.add("nomade_node_health_service_up", int(up), service=service)
            if up:
                self.last_seen[service] = now
            out.add(
                "nomade_node_health_service_last_seen_timestamp_seconds", self.last_seen.get(service), service=service
            )

    def _add_edac(self, out: MetricSet) -> None:
        files = self.read_edac_files()
        if files is None:
            self._missing("edac", out)
            return
        out.add("nomade_node_health_source_available", 1, source="edac")
        result = parse_edac(files)
        self.count_parse_errors(len(result.issues))
        for r in result.records:
            if r.unit == "":
                out.add("nomade_node_health_edac_correctable_errors_total", r.correctable, controller=r.controller)
                out.add("nomade_node_health_edac_uncorrectable_errors_total", r.uncorrectable, controller=r.controller)
                if r.label:
                    out.info("nomade_node_health_edac_controller_info", controller=r.controller, mc_name=r.label)
            else:
                lab = {"controller": r.controller, "dimm": r.unit, "label": r.label}
                out.add("nomade_node_health_edac_dimm_correctable_errors_total", r.correctable, **lab)
                out.add("nomade_node_health_edac_dimm_uncorrectable_errors_total", r.uncorrectable, **lab)

    def _add_hwmon(self, out: MetricSet) -> None:
        read = self.read_hwmon_files()
        if read is None:
            self._missing("hwmon", out)
            return
        files, devices = read
        result = parse_hwmon(files, devices)
        self.count_parse_errors(len(result.issues))
        if not result.records:
            self._missing("hwmon", out)
            return
        out.add("nomade_node_health_source_available", 1, source="hwmon")
        seen: set[tuple[str, str, str]] = set()
        for t in result.records:
            device = t.device
            if (t.chip, device, t.sensor) in seen:  # two chips of one name on one device: keep them apart
                device = f"{device}/{t.hwmon}"
            seen.add((t.chip, device, t.sensor))
            lab = {"chip": t.chip, "device": device, "sensor": t.sensor, "label": t.label}
            out.add("nomade_node_health_temperature_celsius", t.celsius, **lab)
            out.add("nomade_node_health_temperature_max_celsius", t.max_celsius, **lab)
            out.add("nomade_node_health_temperature_critical_celsius", t.crit_celsius, **lab)


COLLECTOR = NodeHealthCollector
