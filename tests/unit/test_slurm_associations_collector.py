"""slurm_associations collector over a fake runner fed with sacctmgr captures."""

from __future__ import annotations

import pytest
from conftest import TextRunner, own_fixture

from nomade.exporter.collectors import slurm_associations
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_associations import SlurmAssociationsCollector
from nomade.exporter.parsers.sacctmgr import ASSOC_ARGV
from nomade.exporter.runner import CommandError

A = "nomade_slurm_association_"
LIMITS = own_fixture("sacctmgr", "sacctmgr-assoc-limits-23.11.txt")


FakeRunner = TextRunner


def collect(text: str, **options):
    runner = FakeRunner(text)
    col = SlurmAssociationsCollector(CollectorContext(runner=runner, options=options))
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def L(account, user="", partition="", cluster="hpc"):
    return {"cluster": cluster, "account": account, "user": user, "partition": partition}


def test_module_exposes_collector():
    assert slurm_associations.COLLECTOR is SlurmAssociationsCollector


def test_limits_and_long_default_interval():
    col, out, runner = collect(LIMITS)
    assert runner.calls == [(ASSOC_ARGV, 300.0)]
    assert col.parse_errors == 1  # dave's "-1"
    v = out.value
    assert len(out.samples(A + "info")) == 7
    assert v(A + "grp_tres_limit", **L("chemistry"), tres="mem") == 2 * 1024**4
    assert v(A + "grp_tres_limit", **L("chemistry"), tres="gres/gpu") == 8
    assert v(A + "grp_jobs_limit", **L("chemistry")) == 200 and v(A + "grp_submit_limit", **L("chemistry")) == 1000
    assert v(A + "max_tres_per_job_limit", **L("chemistry", "bob"), tres="cpu") == 64
    assert v(A + "max_jobs_limit", **L("chemistry", "bob")) == 20
    assert v(A + "max_wall_limit_seconds", **L("physics", "alice", "gpu")) == 43200
    assert v(A + "grp_wall_limit_seconds", **L("physics")) == 7 * 86400
    # unset limits are absent, never 0
    assert v(A + "grp_jobs_limit", **L("physics")) is None and v(A + "max_jobs_limit", **L("physics", "dave")) is None
    assert v(A + "dropped") == 0


def test_per_user_off_and_cap():
    _, out, _ = collect(LIMITS, per_user=False)
    assert {k[2] for k in out.samples(A + "info")} == {""} and out.value(A + "dropped") == 4
    _, capped, _ = collect(LIMITS, max_associations=2)
    assert {k[1] for k in capped.samples(A + "info")} == {"root", "chemistry"}  # account associations first
    assert capped.value(A + "dropped") == 5


def test_lab_capture_has_no_limits():
    _, out, _ = collect(own_fixture("sacctmgr", "lab-sacctmgr-assoc-22.05.8.txt"))
    assert out.value(A + "info", **L("physics", "alice", cluster="lab")) == 1
    assert out.samples(A + "grp_tres_limit") == {} and out.samples(A + "max_jobs_limit") == {}


def test_failures():
    col = SlurmAssociationsCollector(CollectorContext(runner=FakeRunner(None, CommandError(["sacctmgr"], "exit"))))
    with pytest.raises(CommandError):
        col.collect(col.new_set())
    col = SlurmAssociationsCollector(CollectorContext(runner=FakeRunner(None, CommandError(["sacctmgr"], "missing"))))
    out = col.new_set()
    col.collect(out)
    assert out.value(A + "source_available") == 0 and out.series_count() == 1
