"""Per-job cgroup usage on the lab (cgroup v1, slurm_<NodeName> directories), asserted through Prometheus."""

from __future__ import annotations

import pytest
from conftest import lab_missing
from test_job_io_lab import submit_as

pytestmark = [pytest.mark.integration, pytest.mark.submits_jobs]

MIB = 1024 * 1024


def value(prom_query, expr: str) -> float | None:
    res = prom_query(expr)
    return float(res[0]["value"][1]) if res else None


def test_memory_limit_usage_and_owner(prom_query, wait_for):
    if not prom_query("up{job='nomade'}"):
        lab_missing("Prometheus has no nomade target")
    job = submit_as(
        "bob",
        "python3 -c 'import time; b = bytearray(120 * 1024 * 1024); time.sleep(25)'",
        "-p",
        "compute",
        "--mem=400M",
        "-t",
        "2",
    )
    usage = f'nomade_job_usage_memory_usage_bytes{{job_id="{job}"}}'
    assert wait_for(lambda: (value(prom_query, usage) or 0) >= 120 * MIB, timeout=40, interval=2), usage
    # max_over_time: robust to the job having ended between two queries
    assert value(prom_query, f'max_over_time(nomade_job_usage_memory_limit_bytes{{job_id="{job}"}}[2m])') == 400 * MIB
    assert value(prom_query, f'max_over_time(nomade_job_usage_memory_rss_bytes{{job_id="{job}"}}[2m])') >= 120 * MIB
    info = prom_query(f'last_over_time(nomade_job_usage_info{{job_id="{job}"}}[2m])')
    assert info and info[0]["metric"]["user"] == "bob" and info[0]["metric"]["cgroup_version"] == "1"
    assert info[0]["metric"]["slurm_node"].startswith("c0")
    assert value(prom_query, f'max_over_time(nomade_job_usage_processes{{job_id="{job}"}}[2m])') >= 2  # script, python


def test_oom_kill_is_counted(prom_query, wait_for):
    if not prom_query("up{job='nomade'}"):
        lab_missing("Prometheus has no nomade target")
    job = submit_as(
        "alice",
        "python3 -c 'x = []\nwhile True: x.append(bytearray(20 * 1024 * 1024))'; sleep 20",
        "-p",
        "compute",
        "--mem=150M",
        "-t",
        "2",
    )
    expr = f'max_over_time(nomade_job_usage_oom_kills_total{{job_id="{job}"}}[2m])'
    assert wait_for(lambda: (value(prom_query, expr) or 0) >= 1, timeout=40, interval=2), prom_query(expr)
