"""Per-job I/O on the lab, asserted through Prometheus: a job writing a known amount shows that amount.

The job (as alice) writes 200 MiB of zeros with ``dd ... conv=fsync`` to /var/tmp (ext4 on the lab host) and
then sleeps 15 s, so that the job_io sampler (5 s in deploy/lab/exporter.toml) reads its processes after dd
exited and Prometheus (5 s scrape) stores the value. ``write_bytes`` counts the pages dd dirtied: 200 MiB plus
the shell's own few KiB (its output file), so the tolerance is +-10 % (observed: +0.01 %). The bytes dd wrote
reach the job total through the batch shell that reaped it (kernel/exit.c adds a reaped child's counters to
its parent's), even when dd lived less than one sampling interval.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import LAB_DIR, lab_missing, slurm_env

pytestmark = [pytest.mark.integration, pytest.mark.submits_jobs]

MIB = 1024 * 1024
AMOUNT = 200 * MIB


def submit_as(user: str, script: str, *args: str) -> str:
    """sbatch ``script`` (``--wrap``) as ``user``; returns the job id."""
    if os.geteuid() != 0:
        lab_missing("submitting as alice needs root (runuser)")
    argv = ["runuser", "-u", user, "--", "sbatch", "--parsable", *args, "-o", f"{LAB_DIR}/jobs/nomade-%j.out"]
    argv += ["--wrap", script]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30, env=slurm_env()).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        lab_missing(f"sbatch failed: {exc}")
    return out.strip().split(";")[0]


def test_job_writing_200_mib_shows_200_mib(prom_query, wait_for):
    if not prom_query("up{job='nomade'}"):
        lab_missing("Prometheus has no nomade target")
    job = submit_as(
        "alice",
        "f=/var/tmp/nomade-io-$SLURM_JOB_ID; dd if=/dev/zero of=$f bs=1M count=200 conv=fsync status=none; "
        "sleep 15; rm -f $f",
        "-p",
        "compute",
        "-t",
        "2",
    )
    # max_over_time: the series ends with the job (sleep 15 s), the assertions may run after that
    expr = f'sum(max_over_time(nomade_job_io_written_bytes_total{{job_id="{job}"}}[2m]))'

    def reached():
        res = prom_query(expr)
        return res and float(res[0]["value"][1]) >= 0.9 * AMOUNT and res

    res = wait_for(reached, timeout=50, interval=2)
    assert res, f"{expr} never reached 90 % of 200 MiB: {prom_query(expr)}"
    written = float(res[0]["value"][1])
    assert 0.9 * AMOUNT <= written <= 1.1 * AMOUNT, written / MIB
    # /var/tmp is a local filesystem: the attribution must say so
    local = prom_query(f'max_over_time(nomade_job_io_written_bytes_total{{job_id="{job}",fs="local"}}[2m])')
    assert local and float(local[0]["value"][1]) >= 0.9 * AMOUNT
    # the counter never decreased while Prometheus watched it
    assert not prom_query(f'resets(nomade_job_io_written_bytes_total{{job_id="{job}"}}[2m]) > 0')
