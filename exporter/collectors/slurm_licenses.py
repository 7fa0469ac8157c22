"""SLURM's own license table (controller mode): ``scontrol --oneliner show licenses``.

Why a collector of its own, separate from :mod:`~nomade.exporter.collectors.licenses` (FlexLM/RLM): it needs
no configuration (SLURM already knows its licenses: ``Licenses=`` in slurm.conf, or remote licenses added with
``sacctmgr add resource``), costs one cheap slurmctld RPC per cache interval, and answers a different question
(how many licenses SLURM will hand to jobs, versus how many the vendor's server has checked out). It is
therefore enabled by default wherever the SLURM client commands are, like the other controller collectors, and
exports nothing (``up`` stays 1) on a cluster without licenses (scontrol prints "No licenses configured in
Slurm."). The vendor-server collector stays opt-in because it needs a list of servers.

Series: 4 to 8 per license (``remote``, ``last_consumed``, ``last_deficit`` and ``last_update`` only when
scontrol prints them, i.e. 23.02+ or remote licenses).
"""

from __future__ import annotations

import shutil

from ..metrics import MetricSet, MetricSpec
from ..parsers.slurm_licenses import parse_slurm_licenses
from .base import Collector

LICENSES_ARGV: tuple[str, ...] = ("scontrol", "--oneliner", "show", "licenses")
_P = "nomade_license_slurm_"
_L = ("license",)


class SlurmLicensesCollector(Collector):
    """License counts as SLURM schedules them (``scontrol show licenses``)."""

    name = "slurm_licenses"
    mode = "controller"
    description = "SLURM's license table (Licenses= and remote licenses): total, used, free, reserved."
    metrics = (
        MetricSpec(_P + "issued", "gauge", "Licenses SLURM may allocate to jobs (scontrol Total; named like "
                   "nomade_license_issued because a gauge may not end in _total).", _L),
        MetricSpec(_P + "used", "gauge", "Licenses held by running jobs (scontrol Used).", _L),
        MetricSpec(_P + "free", "gauge", "Licenses available to new jobs as SLURM reports them (scontrol Free; "
                   "for remote licenses also net of LastDeficit).", _L),
        MetricSpec(_P + "reserved", "gauge", "Licenses held by advanced reservations (scontrol Reserved).", _L),
        MetricSpec(_P + "remote", "gauge", "1 for a remote license defined in slurmdbd (sacctmgr add resource), "
                   "0 for a local Licenses= entry.", _L),
        MetricSpec(_P + "last_consumed", "gauge", "Remote licenses: licenses consumed on the license server at "
                   "the last update (scontrol LastConsumed).", _L),
        MetricSpec(_P + "last_deficit", "gauge", "Remote licenses: licenses in use outside SLURM's accounting "
                   "at the last update (scontrol LastDeficit).", _L),
        MetricSpec(_P + "last_update_timestamp_seconds", "gauge", "Remote licenses: time of the last update of "
                   "LastConsumed (scontrol LastUpdate).", _L, "seconds"),
    )  # fmt: skip

    @classmethod
    def available(cls) -> bool:
        """Whether ``scontrol`` is on ``PATH``."""
        return shutil.which("scontrol") is not None

    def collect(self, out: MetricSet) -> None:
        """Run scontrol once and export one series per license and field.

        Raises:
            CommandError: scontrol missing, timed out or failed (slurmctld down): ``up`` becomes 0.

        """
        res = self.ctx.runner.run(LICENSES_ARGV)
        parsed = parse_slurm_licenses(res.stdout)
        self.count_parse_errors(len(parsed.issues))
        for lic in parsed.records:
            n = lic.name
            out.add(_P + "issued", lic.total, license=n)
            out.add(_P + "used", lic.used, license=n)
            out.add(_P + "free", lic.free, license=n)
            out.add(_P + "reserved", lic.reserved, license=n)
            out.add(_P + "remote", None if lic.remote is None else int(lic.remote), license=n)
            out.add(_P + "last_consumed", lic.last_consumed, license=n)
            out.add(_P + "last_deficit", lic.last_deficit, license=n)
            out.add(_P + "last_update_timestamp_seconds", lic.last_update, license=n)


COLLECTOR = SlurmLicensesCollector
