"""SLURM licenses on the lab, asserted through Prometheus (collector ``slurm_licenses``).

Needs ``Licenses=fluent:4`` in deploy/lab/slurm.conf.in (the lab does not define licenses by default); without
it scontrol prints "No licenses configured in Slurm." and this test is skipped, even under ``NOMADE_LAB=1``,
since it then has nothing to check. A job of alice asking for ``-L fluent:3`` must show up as 3 used licenses
of 4, and the license must be free again once the job is cancelled.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import LAB_DIR, lab_missing, slurm_env

pytestmark = [pytest.mark.integration, pytest.mark.submits_jobs]

LICENSE = "fluent"


def _value(prom_query, expr: str) -> float | None:
    res = prom_query(expr)
    return float(res[0]["value"][1]) if res else None


def test_license_held_by_a_job_is_used(slurm, prom_query, wait_for):
    table = slurm(["scontrol", "--oneliner", "show", "licenses"])
    if f"LicenseName={LICENSE} " not in table:
        pytest.skip(f"the lab defines no {LICENSE} license (add Licenses={LICENSE}:4 to deploy/lab/slurm.conf.in)")
    if os.geteuid() != 0:
        lab_missing("submitting as alice needs root (runuser)")
    issued = f'nomade_license_slurm_issued{{license="{LICENSE}"}}'
    used = f'nomade_license_slurm_used{{license="{LICENSE}"}}'
    assert wait_for(lambda: _value(prom_query, issued) == 4, timeout=20, interval=2), prom_query(issued)
    argv = ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "-L", f"{LICENSE}:3", "-p", "compute",
            "-t", "2", "-o", f"{LAB_DIR}/jobs/nomade-%j.out", "--wrap", "sleep 40"]  # fmt: skip
    job = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30, env=slurm_env()).stdout
    job = job.strip().split(";")[0]
    try:
        assert wait_for(lambda: _value(prom_query, used) == 3, timeout=25, interval=2), prom_query(used)
        free = _value(prom_query, f'nomade_license_slurm_free{{license="{LICENSE}"}}')
        assert free == 1
    finally:
        slurm(["scancel", job])
    assert wait_for(lambda: _value(prom_query, used) == 0, timeout=25, interval=2), prom_query(used)
