"""SLURM fair-share collector: shares, usage and fair-share factors per association from ``sshare``.

Source: one ``sshare --all --parsable2 --format=...`` run per ``interval`` (see
:data:`~nomade.exporter.parsers.sshare.SSHARE_ARGV`), shared through the runner cache; sshare asks slurmctld,
which holds the association usage in memory (sshare(1) DESCRIPTION, PERFORMANCE).

Labels: ``account``, ``user`` and ``partition``. An ACCOUNT association has ``user=""`` (its figures cover the
account and its children); a USER association carries its user and the account it belongs to; ``partition``
is ``""`` except for partition-specific associations. The tree depth is not a label.

Validity: sshare's figures exist only under ``PriorityType=priority/multifactor`` (sshare(1): "only viable when
running with the priority/multifactor plugin"). Under another plugin slurmctld computes no normalised shares,
usage or factors - sshare prints an empty NormShares on every association and zeros elsewhere, which would be
wrong rather than absent. That case is recognised by NO association below the root having a NormShares value;
then only the configured ``raw_shares`` are exported, ``nomade_slurm_fairshare_factors_available`` is 0 and
the reason is logged once.

Units: ``raw_usage`` is RawUsage, decayed TRES-billing-seconds (CPU-seconds without TRESBillingWeights).
The TRES series come from sshare's TRES-minute columns x 60, i.e. TRES-seconds (``mem`` in MiB-seconds):
GrpTRESRaw (decayed usage), TRESRunMins (TRES x remaining time limit of running jobs), GrpTRESMins (limit).

Series: 7 per association (+ 3 x TRES count per account with ``tres``). ``max_users`` bounds the user
associations (most RawUsage first); the number left out is ``nomade_slurm_fairshare_users_dropped``.

Options (``[collector.slurm_fairshare]``):
    interval (seconds, default 60): cache lifetime of the sshare output.
    timeout (seconds, default 30): the sshare timeout.
    per_user (bool, default true): export user associations (account associations are always exported).
    max_users (int, default 2000): cap on user associations.
    tres (bool, default true): export the per-TRES usage/running/limit series of ACCOUNT associations.
    sshare (str, default "sshare"): the command.
"""

from __future__ import annotations

import shutil

from ..metrics import MetricSet, MetricSpec
from ..parsers.sshare import SSHARE_FIELDS, ShareRow, parse_sshare
from ..runner import CommandError, CommandResult
from .base import Collector, CollectorContext
from .slurm_scheduler import report_unavailable

_F = "nomade_slurm_fairshare_"
_A = ("account", "user", "partition")
_AT = (*_A, "tres")

# (ShareRow attribute, metric, help, unit)
ROW_GAUGES: tuple[tuple[str, str, str, str], ...] = (
    ("norm_shares", _F + "norm_shares_ratio", "Shares normalised to the siblings' total (Fair Tree) or to all "
     "shares (sshare NormShares).", "ratio"),
    ("raw_usage", _F + "raw_usage", "Decayed usage in TRES-billing-seconds (sshare RawUsage).", ""),
    ("norm_usage", _F + "norm_usage_ratio", "Usage normalised to the whole cluster's usage (sshare NormUsage).",
     "ratio"),
    ("effective_usage", _F + "effective_usage_ratio", "Usage normalised with the parent's (Fair Tree) or with "
     "siblings' usage added (sshare EffectvUsage).", "ratio"),
    ("fairshare", _F + "factor_ratio", "Fair-share factor 0-1 (sshare FairShare; user associations under Fair "
     "Tree).", "ratio"),
    ("level_fs", _F + "level_fs", "NormShares / EffectvUsage among siblings (sshare LevelFS, Fair Tree): > 1 "
     "under-served, < 1 over-served, +Inf without usage.", ""),
)  # fmt: skip
TRES_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("grp_tres_raw", _F + "tres_usage_seconds", "Decayed TRES usage of the account and its children "
     "(sshare GrpTRESRaw x 60: TRES-seconds, mem in MiB-seconds)."),
    ("tres_run_mins", _F + "tres_running_seconds", "TRES x remaining time limit of the account's running jobs "
     "(sshare TRESRunMins x 60)."),
    ("grp_tres_mins", _F + "tres_limit_seconds", "GrpTRESMins limit of the account x 60 (absent when unset)."),
)  # fmt: skip
SOURCE_AVAILABLE = _F + "source_available"
FACTORS_AVAILABLE = _F + "factors_available"


def factors_computed(rows: list[ShareRow]) -> bool:
    """Whether slurmctld computed fair-share figures: some association below the root has a NormShares value.

    Under a priority plugin other than multifactor, NormShares is empty on every association (the shares are
    never normalised), which is how this is told from a multifactor cluster whose usage is simply zero.
    """
    return any(r.norm_shares is not None for r in rows if r.depth > 0 or r.user)


class SlurmFairshareCollector(Collector):
    """Association shares, usage and fair-share factors from ``sshare`` (controller mode)."""

    name = "slurm_fairshare"
    mode = "controller"
    description = "sshare: raw/normalised shares, usage, fair-share factor and LevelFS per account and user."
    metrics = (
        MetricSpec(_F + "raw_shares", "gauge", "Shares configured for the association (sshare RawShares; absent "
                   "for 'parent', which uses the parent's shares).", _A),
        *(MetricSpec(name, "gauge", help_, _A, unit) for _, name, help_, unit in ROW_GAUGES),
        *(MetricSpec(name, "gauge", help_, _AT, "seconds") for _, name, help_ in TRES_GAUGES),
        MetricSpec(_F + "users_dropped", "gauge", "User associations left out by max_users."),
        MetricSpec(FACTORS_AVAILABLE, "gauge", "1 when slurmctld computes fair-share figures (priority/multifactor);"
                   " 0 when sshare shows none, and only raw_shares is exported."),
        MetricSpec(SOURCE_AVAILABLE, "gauge", "1 when the sshare command exists on this host, 0 otherwise."),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.interval = float(self.option("interval", 60))
        self.timeout = float(self.option("timeout", 30))
        self.per_user = bool(self.option("per_user", True))
        self.max_users = int(self.option("max_users", 2000))
        self.tres = bool(self.option("tres", True))
        self.sshare = str(self.option("sshare", "sshare"))
        if self.max_users < 0:
            raise ValueError("slurm_fairshare: max_users must be >= 0")
        self._last: tuple[CommandResult, list[ShareRow]] | None = None
        self._basic_logged = False

    @classmethod
    def available(cls) -> bool:
        """Whether ``sshare`` is on the PATH."""
        return shutil.which("sshare") is not None

    def argv(self) -> list[str]:
        """The sshare command line."""
        return [self.sshare, "--all", "--parsable2", "--format=" + ",".join(SSHARE_FIELDS)]

    def collect(self, out: MetricSet) -> None:
        """Run sshare (cached per interval) and fill the per-association gauges.

        Raises:
            CommandError: sshare timed out or failed (slurmctld unreachable): ``up`` 0.

        """
        try:
            res = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        except CommandError as exc:
            if exc.reason == "missing":
                report_unavailable(self, out, SOURCE_AVAILABLE, f"{self.sshare} not found")
                return
            raise
        out.add(SOURCE_AVAILABLE, 1)
        fresh = self._last is None or self._last[0] is not res
        if not fresh:
            rows = self._last[1]  # type: ignore[index]
        else:
            parsed = parse_sshare(res.stdout)
            self.count_parse_errors(len(parsed.issues))
            rows = parsed.records
            self._last = (res, rows)
        if not rows:
            return
        computed = factors_computed(rows)
        out.add(FACTORS_AVAILABLE, 1 if computed else 0)
        if not computed and not self._basic_logged:
            self.log.warning(
                "sshare shows no normalised shares: the priority plugin is not priority/multifactor, so fair-share "
                "usage and factors are not exported (only raw_shares); logged once"
            )
            self._basic_logged = True
        duplicates = fill(out, rows, computed, self.max_users if self.per_user else 0, self.tres)
        if fresh:
            self.count_parse_errors(duplicates)  # once per sshare run, not once per scrape


def fill(out: MetricSet, rows: list[ShareRow], computed: bool, max_users: int, tres: bool) -> int:
    """Put parsed sshare rows into ``out``; returns the number of duplicate associations skipped.

    Args:
        out: the metric set.
        rows: parsed associations.
        computed: whether the fair-share figures are real (:func:`factors_computed`); when not, only
            ``raw_shares`` is exported.
        max_users: cap on user associations (0 exports none), most RawUsage first.
        tres: export the TRES series of account associations.

    """
    accounts = [r for r in rows if not r.user]
    users = sorted((r for r in rows if r.user), key=lambda r: -(r.raw_usage or 0.0))
    kept = users[:max_users]
    if max_users:
        out.add(_F + "users_dropped", len(users) - len(kept))
    seen: set[tuple[str, str, str]] = set()
    duplicates = 0
    for r in [*accounts, *kept]:
        key = (r.account, r.user, r.partition)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        labels = {"account": r.account, "user": r.user, "partition": r.partition}
        out.add(_F + "raw_shares", r.raw_shares, **labels)
        if not computed:
            continue
        for attr, name, _, _ in ROW_GAUGES:
            out.add(name, getattr(r, attr), **labels)
        if tres and not r.user:
            for attr, name, _ in TRES_GAUGES:
                for t, v in (getattr(r, attr) or {}).items():
                    out.add(name, v * 60.0, **labels, tres=t)
    return duplicates


COLLECTOR = SlurmFairshareCollector
