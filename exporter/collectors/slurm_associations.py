"""SLURM associations collector: account and user limits from ``sacctmgr show associations``.

Source: one ``sacctmgr --readonly --parsable2 show associations format=...`` run per ``interval`` (default
300 s; see :data:`~nomade.exporter.parsers.sacctmgr.ASSOC_ARGV`). sacctmgr asks slurmdbd, not slurmctld, and
limits change rarely, so the output is cached long and shared by every scraper.

Labels: ``cluster`` (one slurmdbd may serve several clusters), ``account``, ``user`` (``""`` for an account
association) and ``partition`` (``""`` unless partition-specific). ``nomade_slurm_association_info`` is 1 for
every association, so that a missing limit series reads as "no limit set" (sacctmgr prints an empty field),
never as an unknown value; a limit is never reported as 0 or +Inf when unset.

Limits: ``grp_tres_limit{tres}`` (GrpTRES: the total over all running jobs of the association and its
children; ``mem`` in bytes, other TRES as counts), ``max_tres_per_job_limit{tres}`` (MaxTRES), ``grp_jobs_limit``,
``grp_submit_limit``, ``max_jobs_limit`` (running jobs per user association), ``max_submit_limit``,
``grp_wall_limit_seconds``, ``max_wall_limit_seconds`` (MaxWall per job). Semantics: sacctmgr(1) "GENERAL
SPECIFICATIONS FOR ASSOCIATION BASED ENTITIES".

Series: 1 + number of limits set, per association; ``max_associations`` bounds the associations exported
(account associations first), ``per_user = false`` keeps account associations only.

Options (``[collector.slurm_associations]``):
    interval (seconds, default 300): cache lifetime of the sacctmgr output.
    timeout (seconds, default 30): the sacctmgr timeout.
    per_user (bool, default true): export user associations too.
    max_associations (int, default 5000): cap; the number left out is
        ``nomade_slurm_association_dropped``.
    sacctmgr (str, default "sacctmgr"): the command.

A missing ``sacctmgr`` is logged once and gives ``nomade_slurm_association_source_available 0``; a failing
sacctmgr (slurmdbd down) raises, so ``up`` is 0.
"""

from __future__ import annotations

import shutil

from ..metrics import MetricSet, MetricSpec
from ..parsers.sacctmgr import ASSOC_ARGV, Association, parse_associations
from ..runner import CommandError, CommandResult
from .base import Collector, CollectorContext
from .slurm_scheduler import report_unavailable

_S = "nomade_slurm_association_"
_L = ("cluster", "account", "user", "partition")
_LT = (*_L, "tres")
SOURCE_AVAILABLE = _S + "source_available"

# (Association attribute, metric, help, unit)
SCALAR_LIMITS: tuple[tuple[str, str, str, str], ...] = (
    ("grp_jobs", _S + "grp_jobs_limit", "GrpJobs: running jobs allowed to the association and its children.", ""),
    ("grp_submit", _S + "grp_submit_limit", "GrpSubmit: pending + running jobs allowed to the association and its "
     "children.", ""),
    ("max_jobs", _S + "max_jobs_limit", "MaxJobs: running jobs allowed to each user of the association.", ""),
    ("max_submit", _S + "max_submit_limit", "MaxSubmit: pending + running jobs allowed to each user.", ""),
    ("grp_wall_seconds", _S + "grp_wall_limit_seconds", "GrpWall: wall time the association's jobs may use "
     "(decayed).", "seconds"),
    ("max_wall_seconds", _S + "max_wall_limit_seconds", "MaxWall: wall-time limit of each job.", "seconds"),
)  # fmt: skip


class SlurmAssociationsCollector(Collector):
    """Association limits from ``sacctmgr`` (controller mode)."""

    name = "slurm_associations"
    mode = "controller"
    description = "sacctmgr show associations: GrpTRES/MaxTRES, GrpJobs, GrpSubmit, MaxJobs, MaxSubmit, MaxWall."
    metrics = (
        MetricSpec(_S + "info", "info", "One per association (account or user), so absent limits read as unset.",
                   _L),
        MetricSpec(_S + "grp_tres_limit", "gauge", "GrpTRES: TRES the association and its children may hold at "
                   "once (mem in bytes, other TRES as counts).", _LT),
        MetricSpec(_S + "max_tres_per_job_limit", "gauge", "MaxTRES: TRES one job of the association may hold "
                   "(mem in bytes).", _LT),
        *(MetricSpec(name, "gauge", help_, _L, unit) for _, name, help_, unit in SCALAR_LIMITS),
        MetricSpec(_S + "dropped", "gauge", "Associations left out by max_associations or per_user = false."),
        MetricSpec(SOURCE_AVAILABLE, "gauge", "1 when the sacctmgr command exists on this host, 0 otherwise."),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.interval = float(self.option("interval", 300))
        self.timeout = float(self.option("timeout", 30))
        self.per_user = bool(self.option("per_user", True))
        self.max_associations = int(self.option("max_associations", 5000))
        self.sacctmgr = str(self.option("sacctmgr", "sacctmgr"))
        if self.max_associations < 0:
            raise ValueError("slurm_associations: max_associations must be >= 0")
        self._last: tuple[CommandResult, list[Association]] | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether ``sacctmgr`` is on the PATH."""
        return shutil.which("sacctmgr") is not None

    def argv(self) -> list[str]:
        """The sacctmgr command line."""
        return [self.sacctmgr, *ASSOC_ARGV[1:]]

    def collect(self, out: MetricSet) -> None:
        """Run sacctmgr (cached per interval) and fill the limit gauges.

        Raises:
            CommandError: sacctmgr timed out or failed (slurmdbd unreachable): ``up`` 0.

        """
        try:
            res = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        except CommandError as exc:
            if exc.reason == "missing":
                report_unavailable(self, out, SOURCE_AVAILABLE, f"{self.sacctmgr} not found")
                return
            raise
        out.add(SOURCE_AVAILABLE, 1)
        if self._last is not None and self._last[0] is res:
            records = self._last[1]
        else:
            parsed = parse_associations(res.stdout)
            self.count_parse_errors(len(parsed.issues))
            records = parsed.records
            self._last = (res, records)
        fill(out, records, self.per_user, self.max_associations)


def fill(out: MetricSet, records: list[Association], per_user: bool, max_associations: int) -> None:
    """Put parsed associations into ``out``: account associations first, then users, up to the cap.

    A repeated (cluster, account, user, partition) keeps its first line.
    """
    ordered = [r for r in records if not r.user] + ([r for r in records if r.user] if per_user else [])
    seen: set[tuple[str, str, str, str]] = set()
    unique: list[Association] = []
    for r in ordered:
        key = (r.cluster, r.account, r.user, r.partition)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    kept = unique[:max_associations]
    dropped_users = 0 if per_user else len({(r.cluster, r.account, r.user, r.partition) for r in records if r.user})
    out.add(_S + "dropped", len(unique) - len(kept) + dropped_users)
    for r in kept:
        labels = {"cluster": r.cluster, "account": r.account, "user": r.user, "partition": r.partition}
        out.info(_S + "info", **labels)
        for t, v in r.grp_tres.items():
            out.add(_S + "grp_tres_limit", v, **labels, tres=t)
        for t, v in r.max_tres.items():
            out.add(_S + "max_tres_per_job_limit", v, **labels, tres=t)
        for attr, name, _, _ in SCALAR_LIMITS:
            out.add(name, getattr(r, attr), **labels)


COLLECTOR = SlurmAssociationsCollector
