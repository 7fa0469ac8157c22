"""Parser for Reprise RLM ``rlmutil rlmstat -a -c <port@host>``.

Layout (RLM License Administration Manual, "rlmstat"; the capture in ``../shared/fixtures/rlmstat`` from an RLM
v12.2 server queried by rlmutil v15.2)::

    rlm status on HOST (port 4101), up 5d 14:26:14
    rlm software version v12.2 (build:2)
    ...statistics...
    --------- ISV servers ----------
        Name           Port Running Restarts
    foundry          49679   Yes      0
    ...
    foundry license pool status on HOST (port 49679)
    nuke_i v2024.0331, pool: 3
        count: 1, # reservations: 0, inuse: 1, exp: permanent
        obsolete: 0, min_remove: 120, total checkouts: 2321
    ...
        foundry license usage status on HOST (port 49679)
        nuke_i v2024.0331: user1.lastname@host-01 1/0 at 03/28 21:44  (handle: 36a5)

Each ISV (vendor) server has its own pool and usage sections, named by the ISV on the section header. Pools are
one per product *and* license line, so a product appears in several pools (versions, expiry dates); the
collector sums them. A usage line's ``count/res`` gives the licenses held first (the second number is the
reservation count, not used here). Expiry follows :func:`~nomade.exporter.parsers.lmstat.parse_expiry`
(``permanent`` is ``math.inf``; RLM also writes ``1-jan-0`` for permanent in older versions).

A server that cannot be reached makes rlmutil print ``Error connecting to "rlm" server`` (or a
``Communications error``): :attr:`RlmReport.error` holds that line and no status line is present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .common import ParseResult
from .lmstat import parse_expiry

_STATUS = re.compile(r"^rlm status on (?P<host>\S+) \(port (?P<port>\d+)\)")
_VERSION = re.compile(r"^rlm software version v?(?P<ver>\S+)")
_ISV_TABLE = re.compile(r"^-+\s*ISV servers\s*-+$")
_ISV_HEADER = re.compile(r"^Name\s+Port\s+Running\s+Restarts$", re.IGNORECASE)
_ISV_ROW = re.compile(r"^(?P<name>\S+)\s+(?P<port>\d+)\s+(?P<running>Yes|No)\s+(?P<restarts>\d+)$", re.IGNORECASE)
_POOL_SECTION = re.compile(r"^(?P<isv>\S+) license pool status on ")
_USAGE_SECTION = re.compile(r"^(?P<isv>\S+) license usage status on ")
_ISV_STATUS = re.compile(r"^(?P<isv>\S+) ISV server status on ")
_POOL = re.compile(r"^(?P<product>\S+) v(?P<version>\S+), pool: (?P<pool>\d+)$")
_USAGE = re.compile(
    r"^(?P<product>\S+) v(?P<version>[^:\s]+): (?P<who>\S+) (?P<count>\d+)/(?P<res>\d+) at (?P<when>.+?)\s*"
    r"(?:\(handle: (?P<handle>\w+)\))?\s*$"
)
_ERROR = re.compile(r"(Error connecting|Communications error|cannot connect|Connection refused|not running)", re.I)
_SEPARATOR = re.compile(r"^-{3,}")


@dataclass
class RlmPool:
    """One license pool (``<product> v<version>, pool: N`` with its ``count: ...`` line).

    Attributes:
        isv: vendor (ISV server) owning the pool.
        product: product (feature) name.
        version: version without the ``v``.
        count: licenses in the pool (``None`` when not a number, e.g. ``uncounted``).
        reserved: ``# reservations``.
        inuse: ``inuse``.
        expiry_text: ``exp`` as printed, or ``None``.
        expiry: parsed expiry (``math.inf`` = permanent), or ``None``.

    """

    isv: str
    product: str
    version: str
    count: int | None = None
    reserved: int | None = None
    inuse: int | None = None
    expiry_text: str | None = None
    expiry: float | None = None


@dataclass
class RlmCheckout:
    """One line of a ``license usage status`` section.

    Attributes:
        isv: vendor.
        product: product name.
        version: version without ``v``.
        user: user (the text before the last ``@``).
        host: host (after the last ``@``).
        count: licenses held.

    """

    isv: str
    product: str
    version: str
    user: str
    host: str
    count: int


@dataclass
class RlmReport:
    """Everything one ``rlmstat -a`` run says.

    Attributes:
        host: license server host (lower-cased) from ``rlm status on HOST``, or ``None`` when absent.
        port: its port, or ``None``.
        version: rlm server version, or ``None``.
        isvs: ``{isv name: running}`` from the ISV server table.
        pools: license pools in order.
        checkouts: usage lines in order.
        error: the connection error line when the server could not be reached, or ``""``.

    """

    host: str | None = None
    port: int | None = None
    version: str | None = None
    isvs: dict[str, bool] = field(default_factory=dict)
    pools: list[RlmPool] = field(default_factory=list)
    checkouts: list[RlmCheckout] = field(default_factory=list)
    error: str = ""


def _pool_values(pool: RlmPool, line: str) -> bool:
    """Fill ``pool`` from a ``key: value, key: value`` line; ``False`` when no known key is there."""
    known = False
    for part in line.split(","):
        key, sep, value = part.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("count", "# reservations", "inuse"):
            known = True
            number = int(value) if value.isdigit() else None
            if key == "count":
                pool.count = number
            elif key == "inuse":
                pool.inuse = number
            else:
                pool.reserved = number
        elif key == "exp":
            known = True
            pool.expiry_text = value
            pool.expiry = parse_expiry(value)
        elif key in ("obsolete", "min_remove", "total checkouts", "soft_limit", "min_checkout", "timezone"):
            known = True
    return known


def parse_rlmstat(text: str) -> ParseResult[RlmReport]:
    """Parse ``rlmutil rlmstat -a`` output.

    Returns:
        A result with exactly one :class:`RlmReport` and one issue per line of a pool, ISV-table or usage
        section that matches no known form (statistics, banners and separators are ignored).

    """
    result: ParseResult[RlmReport] = ParseResult()
    report = RlmReport()
    result.records.append(report)
    section = "preamble"
    isv = ""
    pool: RlmPool | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _STATUS.match(line)
        if m:
            report.host, report.port = m["host"].lower(), int(m["port"])
            section = "server"
            continue
        m = _VERSION.match(line)
        if m and report.version is None:
            report.version = m["ver"]
            continue
        if _ISV_TABLE.match(line):
            section = "isv_table"
            continue
        m = _POOL_SECTION.match(line)
        if m:
            section, isv, pool = "pools", m["isv"], None
            continue
        m = _USAGE_SECTION.match(line)
        if m:
            section, isv, pool = "usage", m["isv"], None
            continue
        if _ISV_STATUS.match(line):
            section = "isv_status"
            continue
        if _SEPARATOR.match(line):
            continue
        if section == "isv_table":
            if _ISV_HEADER.match(line):
                continue
            m = _ISV_ROW.match(line)
            if m:
                report.isvs[m["name"]] = m["running"].lower() == "yes"
                continue
            result.skip(no, "unrecognised ISV table row", raw)
            continue
        if section == "pools":
            m = _POOL.match(line)
            if m:
                pool = RlmPool(isv, m["product"], m["version"])
                report.pools.append(pool)
                continue
            if pool is not None and _pool_values(pool, line):
                continue
            result.skip(no, "unrecognised pool line", raw)
            continue
        if section == "usage":
            m = _USAGE.match(line)
            if m:
                user, _, host = m["who"].rpartition("@")
                if not user:
                    user, host = host, ""
                report.checkouts.append(
                    RlmCheckout(isv, m["product"], m["version"], user, host.lower(), int(m["count"]))
                )
                continue
            result.skip(no, "unrecognised usage line", raw)
            continue
        if _ERROR.search(line) and not report.error:
            report.error = line
    return result
