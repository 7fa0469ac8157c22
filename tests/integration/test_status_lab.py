"""``nomade status`` on the lab: the optional sections appear exactly where the lab has their sources.

The lab has a SLURM controller with ``Licenses=fluent:4`` (deploy/lab/slurm.conf.in), slurmd and munged on one
host, and the reachability collector probing slurmctld and slurmdbd; it has no GPU and no NFS mount (the gpu and
nfs collectors run and say ``source_available 0``). So the screen must show Scheduler, Licenses and Node health,
and no GPUs or NFS section, and the node-health lines must report no problem.
"""

from __future__ import annotations

import re

import pytest
from conftest import lab_missing

from nomade.analytics.promapi import PrometheusClient
from nomade.cli import main as cli_main
from nomade.cli.status import StatusSnapshot, gather, render

pytestmark = pytest.mark.integration

# Collectors whose output (or its absence) the test reads; an exporter older than issue 3 lacks them.
NEEDED_COLLECTORS = ("slurm_scheduler", "slurm_licenses", "node_health", "reachability", "gpu", "nfs")
LICENSE = "fluent"


def _section(lines: list[str], title: str) -> list[str]:
    """The lines of one section of the screen, title included, up to the blank line that ends it."""
    i = lines.index(title)
    j = lines.index("", i) if "" in lines[i:] else len(lines)
    return lines[i:j]


def _ready(snap: StatusSnapshot) -> bool:
    return bool(
        snap.scheduler
        and any(r.slurm and r.feature == LICENSE for r in snap.licenses)
        and snap.health is not None
        and snap.health.services
        and snap.health.endpoints
    )


def test_status_shows_the_lab_sources_and_no_problem(prom_url, prom_query, slurm, wait_for, capsys):
    running = {s["metric"].get("collector") for s in prom_query('nomade_collector_up{job="nomade"}')}
    missing = [c for c in NEEDED_COLLECTORS if c not in running]
    if missing:
        lab_missing(f"the lab exporter does not run {', '.join(missing)} (an exporter older than issue 3)")
    if f"LicenseName={LICENSE} " not in slurm(["scontrol", "--oneliner", "show", "licenses"]):
        lab_missing(f"the lab's slurm.conf defines no {LICENSE} license (rendered before Licenses={LICENSE}:4)")

    client = PrometheusClient(prom_url)
    snap = wait_for(lambda: (lambda s: s if _ready(s) else None)(gather(client)), timeout=40, interval=2)
    assert snap is not None, render(gather(client), width=120)
    assert snap.errors == {}
    assert snap.queries == 14  # 13 + "Jobs at risk" (issue 5)

    # the figures behind the screen
    fluent = [r for r in snap.licenses if r.slurm and r.feature == LICENSE]
    assert len(fluent) == 1 and fluent[0].issued == 4
    assert fluent[0].used is not None and 0 <= fluent[0].used <= 4
    assert snap.gpus == [] and snap.nfs == []
    assert snap.health_problems == []
    assert snap.health.services == 2 and snap.health.service_nodes == 1  # slurmd and munged on the lab host
    assert snap.health.endpoints == 2  # slurmctld and slurmdbd, from slurm.conf
    sched = snap.scheduler[0]
    assert sched.main_cycle_last_seconds is not None and sched.server_threads is not None and sched.server_threads >= 1

    # the screen, through the command a user runs
    assert cli_main.main(["status", "--prometheus", prom_url, "--width", "120", "--no-color"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for title in ("Scheduler:", "Licenses:", "Node health:"):
        assert title in lines, "\n".join(lines)
    assert "GPUs:" not in lines and "NFS:" not in lines
    assert _section(lines, "Scheduler:")[1].startswith("  main cycle      last ")
    lic = [ln for ln in _section(lines, "Licenses:") if ln.split()[:2] == ["slurm", LICENSE]]
    assert len(lic) == 1 and re.search(r" [0-4] of 4 ", lic[0]), lic
    health = _section(lines, "Node health:")
    assert "  services: 2 checks on 1 node, all up" in health
    assert "  reachability: 2 endpoints, all reachable" in health
    # no problem listed under any line (problems are the indented lines); EDAC/hwmon lines only where present
    assert [ln for ln in health[1:] if ln.startswith("    ")] == [], health
    for ln in health[1:]:
        assert ln.endswith(("all up", "all reachable", "no uncorrectable memory errors", "none above its max")), health
