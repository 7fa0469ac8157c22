"""Parser for SLURM's license table: ``scontrol show licenses`` (one-line ``-o``, multi-line) and ``--json``.

Text form (scontrol(1) "show licenses"; ``slurm_sprint_license`` style output of 20.11-25.x)::

    LicenseName=ansys@flex Total=100 Used=20 Free=80 Reserved=0 Remote=yes LastConsumed=0 LastDeficit=0
    LastUpdate=2025-08-16T10:10:00

one record per line with ``--oneliner``, otherwise the record continues on indented lines. Older releases
omit ``Reserved`` and the ``Last*`` keys (remote licenses synchronised from slurmdbd gained them in 23.02); a
missing key gives ``None``. With no ``Licenses=`` in slurm.conf and no remote licenses scontrol prints the
sentence ``No licenses configured in Slurm.``: that is an empty table, not an error.

JSON form (``scontrol show licenses --json``, data_parser v0.0.39+): ``{"licenses": [{"LicenseName": ...,
"Total": 420, "Used": 213, "Free": 205, "Remote": true, "Reserved": 357, "LastConsumed": 218,
"LastDeficit": 2, "LastUpdate": "2024-12-16T08:42:16"}]}``; key case is ignored and numbers wrapped as
``{"set": true, "number": N}`` (newer data_parser versions) are unwrapped. ``Free`` is taken as printed: for
remote licenses SLURM subtracts ``LastDeficit`` too, so ``Free`` may differ from ``Total - Used``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .common import ParseResult
from .scontrol import split_pairs, split_records
from .slurm_units import is_null, parse_timestamp

NO_LICENSES = "no licenses configured"


@dataclass(frozen=True)
class SlurmLicense:
    """One license of SLURM's table.

    Attributes:
        name: ``LicenseName`` (``ansys@flex`` for remote licenses: name@server).
        total: licenses SLURM may hand out.
        used: held by running jobs.
        free: available to new jobs, as SLURM reports it.
        reserved: held by advanced reservations.
        remote: ``True`` for licenses defined in slurmdbd (``sacctmgr add resource``), ``None`` if not printed.
        last_consumed: remote licenses: consumed on the license server at the last update.
        last_deficit: remote licenses: licenses SLURM could not account for at the last update.
        last_update: Unix seconds of the last update of a remote license, or ``None``.

    """

    name: str
    total: int | None
    used: int | None
    free: int | None
    reserved: int | None
    remote: bool | None
    last_consumed: int | None
    last_deficit: int | None
    last_update: float | None


def _int(value: Any) -> int | None:
    if isinstance(value, dict):  # data_parser >= 0.0.40 wraps numbers: {"set": true, "infinite": false, "number": 1}
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("yes", "true", "1"):
            return True
        if low in ("no", "false", "0"):
            return False
    return None


def _time(value: Any) -> float | None:
    if isinstance(value, dict):
        value = _int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if not isinstance(value, str) or is_null(value):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _record(fields: dict[str, Any]) -> SlurmLicense | None:
    low = {k.lower(): v for k, v in fields.items()}
    name = low.get("licensename", low.get("name"))
    if not isinstance(name, str) or not name:
        return None
    return SlurmLicense(
        name=name,
        total=_int(low.get("total")),
        used=_int(low.get("used")),
        free=_int(low.get("free")),
        reserved=_int(low.get("reserved")),
        remote=_bool(low.get("remote")),
        last_consumed=_int(low.get("lastconsumed")),
        last_deficit=_int(low.get("lastdeficit")),
        last_update=_time(low.get("lastupdate")),
    )


def parse_slurm_licenses(text: str) -> ParseResult[SlurmLicense]:
    """Parse ``scontrol show licenses`` text (one-line or multi-line) or ``--json`` output.

    Returns:
        One :class:`SlurmLicense` per license; an issue for each record that is not a ``LicenseName=`` record
        (the "No licenses configured" sentence excepted), for numeric fields that are present but unreadable,
        and one for JSON that does not decode or has no ``licenses`` list.

    """
    result: ParseResult[SlurmLicense] = ParseResult()
    if text.lstrip().startswith("{"):
        _parse_json(text, result)
        return result
    for no, record in split_records(text):
        if record.lower().startswith(NO_LICENSES):
            continue
        fields = split_pairs(record)
        if not fields or next(iter(fields)) != "LicenseName":
            result.skip(no, "not a LicenseName= record", record)
            continue
        lic = _record(fields)
        if lic is None:
            result.skip(no, "empty LicenseName", record)
            continue
        bad = [k for k in ("Total", "Used", "Free", "Reserved") if k in fields and _int(fields[k]) is None]
        if bad:
            result.skip(no, f"unreadable {', '.join(bad)}", record)
        result.records.append(lic)
    return result


def _parse_json(text: str, result: ParseResult[SlurmLicense]) -> None:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        result.skip(0, f"invalid JSON: {exc}")
        return
    items = doc.get("licenses") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        result.skip(0, "JSON without a licenses list")
        return
    for i, item in enumerate(items):
        lic = _record(item) if isinstance(item, dict) else None
        if lic is None:
            result.skip(0, f"licenses[{i}] has no LicenseName", str(item))
            continue
        result.records.append(lic)
