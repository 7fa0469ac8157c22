"""SLURM reservations collector: advance reservations from ``scontrol show reservation`` (controller mode).

Source: one ``scontrol --oneliner show reservation`` run per ``interval``, shared through the runner cache
(see :mod:`nomade.exporter.parsers.reservations`).

Per reservation (label ``reservation``): start and end time (Unix seconds), node and core counts, whether it
is ACTIVE now, and an info series with its state, flags, users, accounts, partition and node list (text
labels cut to :data:`MAX_LABEL` characters so that a reservation for hundreds of users cannot blow up a label).
``nomade_slurm_reservation_count`` is the number of reservations (0 when scontrol says "No reservations in the
system"). Series: 6 per reservation + 1.

Options (``[collector.slurm_reservations]``):
    interval (seconds, default 60): cache lifetime of the scontrol output.
    timeout (seconds, default 10): the scontrol timeout.
    scontrol (str, default "scontrol"): the command.

A missing ``scontrol`` is logged once and gives ``nomade_slurm_reservation_source_available 0``; a failing
scontrol (slurmctld down) raises, so ``up`` is 0.
"""

from __future__ import annotations

import shutil

from ..metrics import MetricSet, MetricSpec
from ..parsers.reservations import Reservation, parse_reservations
from ..runner import CommandError, CommandResult
from .base import Collector, CollectorContext
from .slurm_scheduler import report_unavailable

_R = "nomade_slurm_reservation_"
_L = ("reservation",)
SOURCE_AVAILABLE = _R + "source_available"
MAX_LABEL = 256


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


class SlurmReservationsCollector(Collector):
    """Advance reservations from ``scontrol show reservation`` (controller mode)."""

    name = "slurm_reservations"
    mode = "controller"
    description = "scontrol show reservation: start/end times, nodes, cores, state, flags, users and accounts."
    metrics = (
        MetricSpec(_R + "count", "gauge", "Reservations defined in slurmctld."),
        MetricSpec(_R + "start_timestamp_seconds", "gauge", "Start time of the reservation.", _L, "seconds"),
        MetricSpec(_R + "end_timestamp_seconds", "gauge", "End time of the reservation.", _L, "seconds"),
        MetricSpec(_R + "nodes", "gauge", "Nodes in the reservation (NodeCnt).", _L),
        MetricSpec(_R + "cores", "gauge", "Cores in the reservation (CoreCnt).", _L),
        MetricSpec(_R + "active", "gauge", "1 when the reservation is ACTIVE (between start and end), else 0.", _L),
        MetricSpec(_R + "info", "info", "Text attributes of the reservation.",
                   ("reservation", "state", "flags", "users", "accounts", "partition", "nodelist")),
        MetricSpec(SOURCE_AVAILABLE, "gauge", "1 when the scontrol command exists on this host, 0 otherwise."),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.interval = float(self.option("interval", 60))
        self.timeout = float(self.option("timeout", 10))
        self.scontrol = str(self.option("scontrol", "scontrol"))
        self._last: tuple[CommandResult, list[Reservation], bool] | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether ``scontrol`` is on the PATH."""
        return shutil.which("scontrol") is not None

    def argv(self) -> list[str]:
        """The scontrol command line."""
        return [self.scontrol, "--oneliner", "show", "reservation"]

    def collect(self, out: MetricSet) -> None:
        """Run scontrol (cached per interval) and fill the reservation series.

        Raises:
            CommandError: scontrol timed out or failed: ``up`` 0.

        """
        try:
            res = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        except CommandError as exc:
            if exc.reason == "missing":
                report_unavailable(self, out, SOURCE_AVAILABLE, f"{self.scontrol} not found")
                return
            raise
        out.add(SOURCE_AVAILABLE, 1)
        if self._last is not None and self._last[0] is res:
            _, records, complete = self._last
        else:
            parsed = parse_reservations(res.stdout)
            self.count_parse_errors(len(parsed.issues))
            records = parsed.records
            # An unreadable record means the count is unknown: leave it out rather than under-count.
            complete = not any(i.reason == "unrecognised format" for i in parsed.issues)
            self._last = (res, records, complete)
        fill(out, records, complete)


def fill(out: MetricSet, records: list[Reservation], complete: bool = True) -> None:
    """Put parsed reservations into ``out`` (a repeated name keeps its first record).

    ``complete=False`` (some record was unreadable) leaves ``nomade_slurm_reservation_count`` out.
    """
    seen: set[str] = set()
    for r in records:
        if r.name in seen:
            continue
        seen.add(r.name)
        out.add(_R + "start_timestamp_seconds", r.start_time, reservation=r.name)
        out.add(_R + "end_timestamp_seconds", r.end_time, reservation=r.name)
        out.add(_R + "nodes", r.node_count, reservation=r.name)
        out.add(_R + "cores", r.core_count, reservation=r.name)
        if r.state:
            out.add(_R + "active", 1 if r.state == "ACTIVE" else 0, reservation=r.name)
        out.info(
            _R + "info",
            reservation=r.name,
            state=r.state.lower(),
            flags=_cut(",".join(r.flags)),
            users=_cut(r.users),
            accounts=_cut(r.accounts),
            partition=r.partition,
            nodelist=_cut(r.nodes),
        )
    if complete:
        out.add(_R + "count", len(seen))


COLLECTOR = SlurmReservationsCollector
