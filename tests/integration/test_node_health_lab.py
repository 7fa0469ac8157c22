"""node_health, nfs and reachability on the lab host.

node_health and nfs are asserted through Prometheus (the lab exporter runs ``--mode all``, which enables both).
The lab host has no NFS mount, so nfs must stay up and say ``nomade_nfs_source_available 0``. reachability
is off by default (targets are site configuration), so its test builds the collector itself from the lab's
slurm.conf and probes the real slurmctld and slurmdbd on 127.0.0.1 (one connection each: slurmctld logs one
"Zero Bytes were transmitted or received" line per probe, which is why the collector is controller-only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import LAB_DIR

from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.node_health import NodeHealthCollector
from nomade.exporter.collectors.reachability import ReachabilityCollector
from nomade.exporter.runner import CommandRunner

pytestmark = pytest.mark.integration


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def test_service_liveness_through_prometheus(slurm, prom_query, wait_for):
    daemons = [p for p in (LAB_DIR / "run").glob("slurmd-*.pid") if _alive(p)]
    assert daemons, "the lab runs one slurmd per node"

    def series():
        r = prom_query('nomade_node_health_service_up{job="nomade"}')
        return {s["metric"]["service"]: float(s["value"][1]) for s in r} or None

    up = wait_for(series, timeout=30)
    assert up == {"slurmd": 1.0, "munged": 1.0}
    procs = {s["metric"]["service"]: float(s["value"][1]) for s in prom_query("nomade_node_health_service_processes")}
    # One slurmd per lab node (c01..c04, gpu01 share this host); slurmd may have a short-lived fork on top.
    assert procs["slurmd"] >= len(daemons)
    assert procs["munged"] >= 1
    seen = prom_query('time() - nomade_node_health_service_last_seen_timestamp_seconds{service="slurmd"}')
    assert seen and 0 <= float(seen[0]["value"][1]) < 60


def test_missing_hardware_and_nfs_are_reported_not_failed(prom_query, wait_for):
    def avail():
        r = prom_query("nomade_node_health_source_available")
        return {s["metric"]["source"]: float(s["value"][1]) for s in r} or None

    sources = wait_for(avail, timeout=30)
    assert sources["edac"] == float(Path("/sys/devices/system/edac/mc").is_dir())
    has_temps = any(Path("/sys/class/hwmon").glob("hwmon*/temp*_input")) or any(
        Path("/sys/class/hwmon").glob("hwmon*/device/temp*_input")
    )
    assert sources["hwmon"] == float(has_temps)
    up = {s["metric"]["collector"]: float(s["value"][1]) for s in prom_query("nomade_collector_up")}
    assert up.get("node_health") == 1.0 and up.get("nfs") == 1.0
    has_nfs = " with fstype nfs" in Path("/proc/self/mountstats").read_text()
    nfs = prom_query("nomade_nfs_source_available")
    assert nfs and float(nfs[0]["value"][1]) == float(has_nfs)


def test_reachability_of_lab_daemons(slurm):
    conf = LAB_DIR / "etc" / "slurm.conf"
    if not conf.is_file():
        conf = Path("/etc/slurm/slurm.conf")
    ctx = CollectorContext(runner=CommandRunner(), options={"from_slurm_conf": True, "slurm_conf": str(conf)})
    col = ReachabilityCollector(ctx)
    targets = {(t.name, t.address) for t in col.targets()}
    assert targets == {("slurmctld", "127.0.0.1:6817"), ("slurmdbd", "127.0.0.1:6819")}
    out = col.new_set()
    col.collect(out)
    for name, address in targets:
        assert out.value("nomade_reachability_up", target=name, address=address) == 1
        assert 0 <= out.value("nomade_reachability_connect_seconds", target=name, address=address) < 1


def test_node_health_collector_reads_the_real_host(slurm):
    # Same checks as through Prometheus, without it: the real /proc and /sys of the lab host.
    col = NodeHealthCollector(CollectorContext(runner=CommandRunner(), options={"check_munge": True}))
    out = col.new_set()
    col.collect(out)
    assert out.value("nomade_node_health_munge_roundtrip_up") == 1  # munged of the lab answers
    assert out.value("nomade_node_health_service_up", service="munged") == 1
    assert out.value("nomade_node_health_service_up", service="slurmd") == 1
