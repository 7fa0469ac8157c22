"""Scheduler views on the real lab cluster (sdiag, sshare, sprio, reservations, sacctmgr), through Prometheus.

Needs the lab started and loaded (``make test``: ``deploy/lab/lab.sh reset && start && workload``); the exporter
runs with ``--mode all`` and Prometheus scrapes it every 5 s. The lab's associations (slurm.conf / lab.sh):
accounts ``physics`` (user alice) and ``chemistry`` (user bob) under ``root``, shares 1, no limits; its
priority plugin decides whether fair-share figures and sprio exist, so it is read from ``scontrol show config``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

pytestmark = pytest.mark.integration


def values(prom_query, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted label pairs (no __name__): value}`` of an instant query."""
    out = {}
    for r in prom_query(expr):
        labels = tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("__name__", "instance", "job")))
        out[labels] = float(r["value"][1])
    return out


def one(prom_query, expr: str) -> float | None:
    """The value of a query that should give one sample (``None`` when it gives none yet)."""
    got = prom_query(expr)
    return float(got[0]["value"][1]) if got else None


def priority_type(slurm) -> str:
    m = re.search(r"^PriorityType\s*=\s*(\S+)", slurm(["scontrol", "show", "config"]), re.M)
    assert m, "scontrol show config has no PriorityType"
    return m.group(1)


@pytest.mark.parametrize(
    "collector", ["slurm_scheduler", "slurm_fairshare", "slurm_priority", "slurm_reservations", "slurm_associations"]
)
def test_collectors_are_up(prom_query, wait_for, collector):
    expr = f'nomade_collector_up{{collector="{collector}"}}'
    assert wait_for(lambda: one(prom_query, expr) == 1, timeout=40, interval=2), prom_query(expr)


def acct_user(labels) -> tuple[str, str]:
    """``(account, user)`` of a series; Prometheus drops empty labels, so an account row has no ``user``."""
    d = dict(labels)
    return d.get("account", ""), d.get("user", "")


def test_sdiag_figures(prom_query, wait_for, lab_workload):
    s = "nomade_slurm_scheduler_"
    assert wait_for(lambda: one(prom_query, s + "server_threads"), timeout=40, interval=2)
    assert one(prom_query, s + "server_threads") >= 1
    assert one(prom_query, s + "source_available") == 1
    # The workload's sbatch calls are RPCs of slurmctld's lifetime (counters, not reset at midnight UTC).
    submits = f'{s}rpc_calls_total{{message_type="REQUEST_SUBMIT_BATCH_JOB"}}'
    assert one(prom_query, submits) >= len(lab_workload["jobs"])
    users = {dict(k).get("user", ""): v for k, v in values(prom_query, s + "rpc_user_calls_total").items()}
    assert users.get("alice", 0) > 0 and users.get("bob", 0) > 0, users
    # The job counters are gauges zeroed at midnight UTC: compare only when the statistics period covers the
    # workload.
    started = datetime.strptime(lab_workload["generated_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    started -= lab_workload["workload_seconds"]
    since = one(prom_query, s + "stats_reset_timestamp_seconds")
    assert since is not None and since <= time.time()
    if since <= started:
        assert one(prom_query, s + "jobs_submitted") > 0
        assert one(prom_query, s + "jobs_started") > 0
    assert one(prom_query, s + "main_cycles") >= 0 and one(prom_query, s + "main_cycle_max_seconds") >= 0


def test_fairshare_rows_of_the_lab_accounts(prom_query, wait_for, slurm):
    f = "nomade_slurm_fairshare_"

    def shares():
        return {acct_user(k): v for k, v in values(prom_query, f + "raw_shares").items()}

    got = wait_for(lambda: shares().keys() >= {("physics", "alice"), ("chemistry", "bob")} and shares(), 40, 2)
    assert got, shares()
    for key in [("physics", ""), ("physics", "alice"), ("chemistry", ""), ("chemistry", "bob")]:
        assert got[key] == 1, (key, got)
    multifactor = priority_type(slurm) == "priority/multifactor"
    assert one(prom_query, f + "factors_available") == (1 if multifactor else 0)
    factors = {acct_user(k): v for k, v in values(prom_query, f + "factor_ratio").items()}
    if multifactor:
        assert 0 <= factors[("physics", "alice")] <= 1 and 0 <= factors[("chemistry", "bob")] <= 1
    else:
        assert factors == {}  # sshare's zeros under priority/basic are not exported


def test_priority_availability_follows_the_plugin(prom_query, wait_for, slurm):
    expected = 1 if priority_type(slurm) == "priority/multifactor" else 0
    expr = "nomade_slurm_priority_source_available"
    assert wait_for(lambda: one(prom_query, expr) is not None, timeout=40, interval=2)
    assert one(prom_query, expr) == expected


def test_reservation_count_matches_scontrol(prom_query, wait_for, slurm):
    text = slurm(["scontrol", "--oneliner", "show", "reservation"])
    expected = len([line for line in text.splitlines() if line.startswith("ReservationName=")])
    expr = "nomade_slurm_reservation_count"
    assert wait_for(lambda: one(prom_query, expr) is not None, timeout=40, interval=2)
    assert one(prom_query, expr) == expected


def test_associations_of_the_lab(prom_query, wait_for):
    def infos():
        return {
            (dict(k)["cluster"], dict(k).get("account", ""), dict(k).get("user", ""))
            for k in values(prom_query, "nomade_slurm_association_info")
        }

    want = {("lab", "physics", ""), ("lab", "physics", "alice"), ("lab", "chemistry", ""), ("lab", "chemistry", "bob")}
    assert wait_for(lambda: infos() >= want, timeout=60, interval=2), infos()
    # the lab sets no limits: none may be reported (absent, never 0)
    assert prom_query('nomade_slurm_association_grp_jobs_limit{cluster="lab"}') == []
