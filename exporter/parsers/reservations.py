"""Parser for ``scontrol show reservation`` (one-line ``-o`` or multi-line form).

Format (scontrol(1); ``slurm_sprint_reservation_info`` in ``src/api/reservation_info.c``): one record per
reservation, a run of ``Key=Value`` pairs beginning with ``ReservationName=``; ``-o`` puts it on one line,
otherwise continuation lines are indented by three spaces::

    ReservationName=maint StartTime=2025-08-26T07:00:00 EndTime=2025-08-29T20:00:00 Duration=3-13:00:00
       Nodes=node[001-102] NodeCnt=102 CoreCnt=25152 Features=(null) PartitionName=(null) Flags=SPEC_NODES
       TRES=cpu=25152
       Users=user01 Groups=(null) Accounts=(null) Licenses=(null) State=INACTIVE BurstBuffer=(null) Watts=n/a

With no reservation scontrol prints ``No reservations in the system`` (exit status 0): no records, no issue.
Times are ``SLURM_TIME_FORMAT=standard`` local times. Anything that is not a reservation record gives one
"unrecognised format" issue per record and no record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import ParseResult
from .scontrol import split_pairs, split_records
from .slurm_units import is_null, parse_duration, parse_timestamp

NO_RESERVATIONS = "No reservations in the system"
RESERVATION_ARGV: tuple[str, ...] = ("scontrol", "--oneliner", "show", "reservation")


@dataclass
class Reservation:
    """One reservation.

    Attributes:
        name: ``ReservationName``.
        start_time, end_time: Unix seconds (``None`` when unreadable).
        duration_seconds: ``Duration`` in seconds (``None`` when ``UNLIMITED`` or absent).
        node_count: ``NodeCnt``; core_count: ``CoreCnt``.
        state: ``ACTIVE`` or ``INACTIVE`` as printed (upper case).
        flags: the ``Flags`` list.
        users, accounts, groups, partition, licenses, nodes: text fields, ``""`` for ``(null)``.
        fields: every ``Key=Value`` pair as printed.

    """

    name: str
    start_time: float | None = None
    end_time: float | None = None
    duration_seconds: float | None = None
    node_count: int | None = None
    core_count: int | None = None
    state: str = ""
    flags: tuple[str, ...] = ()
    users: str = ""
    accounts: str = ""
    groups: str = ""
    partition: str = ""
    licenses: str = ""
    nodes: str = ""
    fields: dict[str, str] = field(default_factory=dict, repr=False)


def _text(f: dict[str, str], key: str) -> str:
    v = f.get(key, "")
    return "" if is_null(v) else v


def parse_reservations(text: str) -> ParseResult[Reservation]:
    """Parse ``scontrol show reservation`` output.

    Returns:
        One :class:`Reservation` per record; a bad time or count is left ``None`` and counted as an issue;
        a record that does not start with ``ReservationName=`` is skipped as one issue.

    """
    result: ParseResult[Reservation] = ParseResult()
    for no, record in split_records(text):
        if record.strip() == NO_RESERVATIONS:
            continue
        pairs = split_pairs(record)
        if not pairs or next(iter(pairs)) != "ReservationName":
            result.skip(no, "unrecognised format", record)
            continue
        res = Reservation(name=pairs["ReservationName"], fields=pairs)
        for key, attr in (("StartTime", "start_time"), ("EndTime", "end_time")):
            if key in pairs:
                try:
                    setattr(res, attr, parse_timestamp(pairs[key]))
                except ValueError:
                    result.skip(no, f"{res.name}: bad {key} {pairs[key]!r}", record)
        if "Duration" in pairs:
            try:
                res.duration_seconds = parse_duration(pairs["Duration"])
            except ValueError:
                result.skip(no, f"{res.name}: bad Duration {pairs['Duration']!r}", record)
        for key, attr in (("NodeCnt", "node_count"), ("CoreCnt", "core_count")):
            v = pairs.get(key)
            if v is None or is_null(v):
                continue
            if v.isascii() and v.isdigit():
                setattr(res, attr, int(v))
            else:
                result.skip(no, f"{res.name}: bad {key} {v!r}", record)
        res.state = _text(pairs, "State").upper()
        flags = _text(pairs, "Flags")
        res.flags = tuple(x for x in flags.split(",") if x)
        res.users = _text(pairs, "Users")
        res.accounts = _text(pairs, "Accounts")
        res.groups = _text(pairs, "Groups")
        res.partition = _text(pairs, "PartitionName")
        res.licenses = _text(pairs, "Licenses")
        res.nodes = _text(pairs, "Nodes")
        result.records.append(res)
    return result
