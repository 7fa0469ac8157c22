"""Fixtures of the integration tests: the lab stack started by ``deploy/lab/lab.sh``.

The lab (SLURM cluster ``lab``, Prometheus on 127.0.0.1:9090, the exporter on 127.0.0.1:9866) is started and
loaded with the known workload by::

    deploy/lab/lab.sh reset && deploy/lab/lab.sh start && deploy/lab/lab.sh workload

When the lab is not there the integration tests are skipped, unless ``NOMADE_LAB=1`` is set (``make test``
sets it): then they FAIL, so a CI run cannot pass by skipping them.

Tests marked ``after_ml_workload`` run last: their session fixture :func:`ml_workload` runs
``deploy/lab/lab.sh workload-ml`` (about 60 more finished jobs) when ``$LAB/workload_ml.json`` is missing, which would
change the exact counts every other test asserts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

LAB_DIR = Path(os.environ.get("NOMADE_LAB_DIR", "/var/lib/nomade-lab"))
PROM_URL = "http://127.0.0.1:9090"
EXPORTER_URL = "http://127.0.0.1:9866"
START_HINT = "deploy/lab/lab.sh reset && deploy/lab/lab.sh start && deploy/lab/lab.sh workload"
LAB_SH = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "lab.sh"
ML_WORKLOAD_TIMEOUT = 600  # seconds for `lab.sh workload-ml` (it bounds its own wait at 420 s by default)


def lab_missing(why: str) -> None:
    """Fail (``NOMADE_LAB=1``) or skip the calling test because the lab is not usable."""
    msg = f"lab stack not available: {why} (run: {START_HINT})"
    if os.environ.get("NOMADE_LAB") == "1":
        pytest.fail(f"NOMADE_LAB=1 but the {msg}", pytrace=False)
    pytest.skip(msg)


def slurm_env() -> dict[str, str]:
    """The environment for SLURM client commands: the lab's slurm.conf, C locale, ISO timestamps."""
    env = dict(os.environ, LC_ALL="C", SLURM_TIME_FORMAT="standard")
    conf = LAB_DIR / "etc" / "slurm.conf"
    if conf.is_file():
        env["SLURM_CONF"] = str(conf)
    return env


def run_slurm(argv: list[str], timeout: float = 30) -> str:
    """Run one SLURM client command against the lab; returns stdout.

    Raises:
        subprocess.CalledProcessError: non-zero exit (stderr is in the exception).
        subprocess.TimeoutExpired: ran longer than ``timeout`` seconds.
    """
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=timeout, env=slurm_env()).stdout


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 1.0) -> Any:
    """Poll ``predicate`` until it returns a truthy value; returns that value, or the last one after ``timeout``.

    Exceptions raised by ``predicate`` count as "not yet" until the deadline, then propagate, so a test sees
    the real error rather than a bare timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
        except Exception:
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def prom_query(expr: str, url: str = PROM_URL) -> list[dict[str, Any]]:
    """Evaluate ``expr`` at now through ``/api/v1/query``; returns the instant vector.

    Each element is ``{"metric": {label: value}, "value": [unix_ts, "string value"]}`` (Prometheus HTTP API).

    Raises:
        requests.RequestException: Prometheus unreachable or HTTP error.
        AssertionError: the answer is not a successful vector.
    """
    resp = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    resp.raise_for_status()
    body = resp.json()
    assert body.get("status") == "success", body
    assert body["data"]["resultType"] == "vector", body["data"]["resultType"]
    return body["data"]["result"]


def _prometheus_ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def _slurmctld_up() -> bool:
    try:
        return "is UP" in run_slurm(["scontrol", "ping"], timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def prom_url() -> str:
    """Base URL of the lab's Prometheus, once it answers ``/-/ready``."""
    if not _prometheus_ready(PROM_URL):
        lab_missing(f"Prometheus does not answer at {PROM_URL}/-/ready")
    return PROM_URL


@pytest.fixture(scope="session")
def slurm() -> Callable[..., str]:
    """:func:`run_slurm`, once slurmctld answers ``scontrol ping``."""
    if not _slurmctld_up():
        lab_missing("slurmctld does not answer `scontrol ping`")
    return run_slurm


@pytest.fixture(scope="session")
def lab_workload(slurm: Callable[..., str]) -> dict[str, Any]:
    """``$LAB/workload.json`` written by ``deploy/lab/lab.sh workload`` (see deploy/lab/workload_report.py)."""
    path = LAB_DIR / "workload.json"
    if not path.is_file():
        lab_missing(f"{path} is missing (the workload was not run)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def ml_workload(lab_workload: dict[str, Any]) -> dict[str, Any]:
    """``$LAB/workload_ml.json`` (deploy/lab/workload_ml.sh), running ``lab.sh workload-ml`` first when it is missing.

    Only tests marked ``after_ml_workload`` may use it (they are sorted last, see
    :func:`pytest_collection_modifyitems`): the ML workload's jobs change the counts of finished jobs, users and
    accounts that the other tests assert exactly. Its output goes to ``$LAB/log/workload_ml.log``.
    """
    path = LAB_DIR / "workload_ml.json"
    if not path.is_file():
        if os.geteuid() != 0:
            lab_missing(f"{path} is missing and `lab.sh workload-ml` needs root")
        log = LAB_DIR / "log" / "workload_ml.log"
        with log.open("a") as out:
            proc = subprocess.run(
                ["bash", str(LAB_SH), "workload-ml"],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=ML_WORKLOAD_TIMEOUT,
                env=dict(os.environ, NOMADE_LAB_DIR=str(LAB_DIR)),
                check=False,
            )
        if not path.is_file():
            pytest.fail(f"`lab.sh workload-ml` exited {proc.returncode} without {path} (see {log})", pytrace=False)
        print(f"lab.sh workload-ml exited {proc.returncode} (log: {log})", file=sys.stderr)
    return json.loads(path.read_text())


@pytest.fixture(name="prom_query")
def prom_query_fixture(prom_url: str) -> Callable[[str], list[dict[str, Any]]]:
    """:func:`prom_query` bound to the lab's Prometheus."""
    return lambda expr: prom_query(expr, prom_url)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    """:func:`wait_for`."""
    return wait_for


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``after_ml_workload`` marker (pyproject.toml lists the others)."""
    config.addinivalue_line(
        "markers",
        "after_ml_workload: an integration test that needs the ML workload (deploy/lab/workload_ml.sh); runs after "
        "every other integration test, the disruptive ones included",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that read the workload's results first, then those that submit jobs, then disruptive ones.

    Exact-count tests (finished jobs by class, sacct outcomes, RPC counts) must see the workload alone; tests
    marked ``submits_jobs`` add jobs; tests marked ``disruptive`` stop or freeze daemons (a slurmctld restart
    zeroes sdiag's RPC counters and re-sends recent job records to slurmdbd); tests marked ``after_ml_workload``
    add the ML workload's ~60 jobs and run last of all. The sort is stable, so file order is kept within each
    group.
    """

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("after_ml_workload"):
            return 3
        if item.get_closest_marker("disruptive"):
            return 2
        if item.get_closest_marker("submits_jobs"):
            return 1
        return 0

    items.sort(key=rank)
