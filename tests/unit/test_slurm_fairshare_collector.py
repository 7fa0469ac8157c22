"""slurm_fairshare collector over a fake runner fed with sshare captures."""

from __future__ import annotations

import logging
import math

import pytest
from conftest import TextRunner, own_fixture

from nomade.exporter.collectors import slurm_fairshare
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_fairshare import SlurmFairshareCollector
from nomade.exporter.parsers.sshare import SSHARE_ARGV
from nomade.exporter.runner import CommandError, CommandResult

F = "nomade_slurm_fairshare_"


FakeRunner = TextRunner


def collect(text: str, **options):
    runner = FakeRunner(text)
    col = SlurmFairshareCollector(CollectorContext(runner=runner, options=options))
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def lab(account, user, partition=""):
    return {"account": account, "user": user, "partition": partition}


def test_module_exposes_collector():
    assert slurm_fairshare.COLLECTOR is SlurmFairshareCollector and SlurmFairshareCollector.mode == "controller"


def test_fair_tree_figures():
    col, out, runner = collect(own_fixture("sshare", "sshare-fairtree-multifactor-25.05.txt"))
    assert runner.calls == [(SSHARE_ARGV, 60.0)] and col.parse_errors == 0
    v = out.value
    assert v(F + "factors_available") == 1 and v(F + "source_available") == 1
    assert v(F + "factor_ratio", **lab("physics", "alice")) == 0.25
    assert v(F + "factor_ratio", **lab("physics", "")) is None  # empty on account rows under Fair Tree
    assert v(F + "level_fs", **lab("chemistry", "")) == 1.333333
    assert math.isinf(v(F + "level_fs", **lab("physics", "carol", "gpu")))
    assert v(F + "raw_shares", **lab("chemistry", "bob")) is None  # "parent"
    assert v(F + "raw_shares", **lab("chemistry", "")) == 1
    assert v(F + "raw_usage", **lab("physics", "alice")) == 74074074
    assert v(F + "effective_usage_ratio", **lab("physics", "")) == 0.75
    assert v(F + "norm_shares_ratio", **lab("physics", "alice")) == 0.5
    # TRES series: account rows only, minutes x 60
    assert v(F + "tres_usage_seconds", **lab("physics", ""), tres="gres/gpu") == 12000 * 60
    assert v(F + "tres_running_seconds", **lab("physics", ""), tres="cpu") == 43200 * 60
    assert v(F + "tres_limit_seconds", **lab("chemistry", ""), tres="cpu") == 2000000 * 60
    assert v(F + "tres_usage_seconds", **lab("physics", "alice"), tres="cpu") is None
    assert v(F + "users_dropped") == 0


def test_user_cap_keeps_the_heaviest_users_and_switches():
    text = own_fixture("sshare", "sshare-fairtree-multifactor-25.05.txt")
    _, out, _ = collect(text, max_users=2)
    users = {k[1] for k in out.samples(F + "raw_usage") if k[1]}
    assert users == {"alice", "bob"} and out.value(F + "users_dropped") == 2
    _, off, _ = collect(text, per_user=False, tres=False)
    assert {k[1] for k in off.samples(F + "raw_usage")} == {""}
    assert off.samples(F + "tres_usage_seconds") == {}


def test_priority_basic_exports_only_raw_shares(caplog):
    text = own_fixture("sshare", "lab-sshare-basic-22.05.8.txt")
    runner = FakeRunner(text)
    col = SlurmFairshareCollector(CollectorContext(runner=runner))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            out = col.new_set()
            col.collect(out)
    assert out.value(F + "factors_available") == 0
    assert out.value(F + "raw_shares", **lab("physics", "alice")) == 1
    assert out.value(F + "raw_shares", **lab("chemistry", "bob")) == 1
    # the zeros sshare prints under priority/basic are not fair-share figures
    assert out.samples(F + "factor_ratio") == {} and out.samples(F + "raw_usage") == {}
    assert out.samples(F + "tres_usage_seconds") == {}
    assert sum("priority/multifactor" in r.getMessage() for r in caplog.records) == 1


def test_duplicate_association_counted_once_per_run():
    text = "Account|User|RawShares|NormShares\n a|u|1|0.5\n a|u|2|0.5\n"
    runner = FakeRunner(text)
    col = SlurmFairshareCollector(CollectorContext(runner=runner))
    fixed = CommandResult(SSHARE_ARGV, text, "", 0.0, 0.0)
    runner.run = lambda argv, *, timeout=None, ttl=None: fixed
    for _ in range(3):
        out = col.new_set()
        col.collect(out)
    assert col.parse_errors == 1 and out.value(F + "raw_shares", **lab("a", "u")) == 1


def test_failures():
    col = SlurmFairshareCollector(CollectorContext(runner=FakeRunner(None, CommandError(["sshare"], "timeout"))))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
    col = SlurmFairshareCollector(CollectorContext(runner=FakeRunner(None, CommandError(["sshare"], "missing"))))
    out = col.new_set()
    col.collect(out)
    assert out.value(F + "source_available") == 0 and out.series_count() == 1
    col, out, _ = collect("sshare: error: Unable to contact slurm controller\n")
    assert col.parse_errors == 1 and out.value(F + "factors_available") is None
