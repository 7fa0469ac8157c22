"""Parsers for FlexLM/FlexNet ``lmutil lmstat -a`` (server, daemon and feature status) and ``lmstat -i``.

``lmutil lmstat -c <port@host> -a`` prints, in order (FlexNet Publisher License Administration Guide,
"lmstat"; the layout below is what lmutil 11.x prints and what every capture in ``../shared/fixtures/lmstat``
shows)::

    License server status: 27002@h1,27002@h2,27002@h3          <- the servers asked (a triad lists three)
        License file(s) on h1: /path/license.dat:
    h1: license server UP v11.7                                   <- one line per server of a triad
    h2: license server UP (MASTER) v11.7
    h3: Cannot connect to license server system. (-15,570:115 ...)   <- a server that does not answer
    Vendor daemon status (on h2):
      VENDOR1: UP v11.6                                           <- or "VENDOR1: The desired vendor daemon is down."
    Feature usage info:
    Users of f1:  (Total of 1814 licenses issued;  Total of 1206 licenses in use)
      "f1" v61.9, vendor: VENDOR1[, expiry: 01-jan-2099]          <- one line per FEATURE line of the license
      floating license | nodelocked license, locked to "..."
            10 RESERVATIONs for GROUP G1 (h3/27002)
        user1 host1 /dev/tty (v61.9) (h3/27002 18856), start Fri 10/20 14:12, 16 licenses[, PID: 123]
        user3 host2 disp 2017.06 (v2017.06) (h3/27002 15480) queued for 1 license
    Users of f2:  (Uncounted, node-locked)

Variations handled (all seen in captures): blank lines anywhere (MATLAB's lmutil 2022 doubles them), leading
spaces or none before server, daemon and feature-detail lines, singular "1 license", checkout lines with or
without the ", N licenses" suffix (absent means 1), ", PID: n" and "(linger: a / b)" suffixes, trailing spaces,
display fields holding spaces and parentheses, and the same host listed twice in different case (Windows).

What is *not* knowable from the text is said so in the records instead of guessed: an ``Users of`` line without
issued/used numbers gives ``None`` counts, a user name holding spaces is cut at its first space (lmstat does not
delimit the fields), and start times carry no year (they are not parsed).

``lmstat -i`` (license file contents, used for expiry dates of features nobody uses) prints a table whose
``Expires`` and ``Vendor`` columns come in either order depending on the lmutil version; the header decides.

Expiry dates: FlexNet prints ``dd-mmm-yyyy``; a year of 0 (``1-jan-0``, ``01-jan-0000``) and the word
``permanent`` mean the license never expires (FlexNet License Administration Guide, FEATURE line, exp_date
field: year 0 or the keyword ``permanent`` for a non-expiring license). They are returned as ``math.inf``.
A date is converted to 00:00:00 UTC of that day: the license file gives no time zone and the license stays
valid through that day, so the timestamp is the earliest moment the expiry can bite (conservative for
alerting, at most about a day early).
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, field

from .common import ParseResult

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}

_SERVERS = re.compile(r"^License server status:\s*(?P<list>\S.*?)\s*$")
_LICENSE_FILE = re.compile(r"^License file\(s\) on ")
_SERVER_LINE = re.compile(
    r"^(?P<host>[^\s:]+):\s+license server\s+(?P<state>UP|DOWN)(?P<master>\s+\(MASTER\))?(?:\s+v(?P<ver>\S+))?",
    re.IGNORECASE,
)
_HOST_COLON = re.compile(r"^(?P<host>[^\s:]+):\s+(?P<rest>\S.*)$")
_VENDOR_HEADER = re.compile(r"^Vendor daemon status \(on (?P<host>[^)]*)\):?$")
_VENDOR_LINE = re.compile(r"^(?P<vendor>[^\s:]+):\s+(?P<state>UP|DOWN)\b(?:\s+v(?P<ver>\S+))?", re.IGNORECASE)
_FEATURE_HEADER = re.compile(r"^Feature usage info:?$")
_USERS_OF = re.compile(
    r"^Users of (?P<feature>.+?):\s+\(Total of (?P<issued>\d+) licenses? issued;\s+"
    r"Total of (?P<used>\d+) licenses? in use\)\s*$"
)
_USERS_UNCOUNTED = re.compile(r"^Users of (?P<feature>.+?):\s+\(Uncounted, node-locked\)\s*$", re.IGNORECASE)
_USERS_OTHER = re.compile(r"^Users of (?P<feature>.+?):\s*(?P<rest>.*)$")
_DETAIL = re.compile(
    r'^"(?P<feature>[^"]+)"\s+v?(?P<version>[^,\s]+),\s+vendor:\s+(?P<vendor>[^,\s]+)'
    r"(?:,\s+expiry:\s+(?P<expiry>[^,\s]+))?"
)
_LICENSE_KIND = re.compile(r"^(?:floating|nodelocked|uncounted nodelocked|uncounted|counted)\b.*license", re.I)
_RESERVATION = re.compile(r"^(?P<n>\d+)\s+RESERVATIONs?\s+for\s+(?P<kind>\S+)\s+(?P<who>.+?)\s+\([^()]*\)\s*$")
# The version and handle groups close a checkout line: `(v61.9) (host3/27002 7086), start ...`; the display
# field before them may hold anything, parentheses included, so the match is anchored on this tail.
_CHECKOUT_TAIL = re.compile(r"\s\(v[^()\s]*\)\s+\([^()\s]+/\d+\s+\d+\),\s+start\s+(?P<start>.*?)\s*$")
_QUEUED_TAIL = re.compile(r"\s\(v[^()\s]*\)\s+\([^()\s]+/\d+\s+\d+\)\s+queued for (?P<n>\d+) licenses?\s*$")
_COUNT_SUFFIX = re.compile(r",\s+(?P<n>\d+)\s+licenses?\b")
_ERROR = re.compile(
    r"(Cannot connect|Cannot read data|Cannot find license file|lmgrd is not running|Error getting status|"
    r"License server machine is down|No such feature exists|server node is down|Communications error)",
    re.IGNORECASE,
)
_IGNORED = re.compile(
    r"^(lmutil - |lmstat |Flexible License Manager status|\[Detecting lmgrd|Copyright|NOTE: |vendor_string:|"
    r"License file\(s\)|lmstat -i does not|but only reads|lmstat -a is recommended)",
    re.IGNORECASE,
)
_EXPIRY = re.compile(r"^(?P<d>\d{1,2})-(?P<m>[A-Za-z]{3})-(?P<y>\d{1,4})$")


def parse_expiry(text: str) -> float | None:
    """Convert a FlexLM/RLM expiry field into Unix seconds (00:00:00 UTC of that day).

    Args:
        text: ``dd-mmm-yyyy`` (``31-dec-2018``, ``1-jul-2024``), ``permanent`` (optionally followed by
            text such as ``permanent(no expiration date)``), or a date with year 0 (``1-jan-0``,
            ``01-jan-0000``).

    Returns:
        Unix seconds; ``math.inf`` for a license that never expires (``permanent`` or year 0, per the FlexNet
        License Administration Guide, FEATURE line ``exp_date``); ``None`` for anything else (including
        two-digit years, which FlexNet reads inconsistently across versions).

    """
    t = text.strip().lower()
    if t.startswith("permanent") or t in ("never", "uncounted"):
        return math.inf
    m = _EXPIRY.match(t)
    if not m:
        return None
    year = int(m["y"])
    if year == 0:
        return math.inf
    month = _MONTHS.get(m["m"])
    if month is None or year < 1970:
        return None
    day = int(m["d"])
    try:
        return float(calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


@dataclass
class ServerStatus:
    """One license server of ``License server status`` (a triad has three).

    Attributes:
        host: host name, lower-cased (host names are case-insensitive; Windows servers are listed twice in
            different case, see the ``server-up-windows`` capture).
        up: whether lmstat reached it (``license server UP``).
        master: whether it is the triad's master (``(MASTER)``).
        version: lmgrd version without the ``v``, or ``None``.
        detail: the text after ``host:`` when the server is not up (the FlexNet error).

    """

    host: str
    up: bool
    master: bool = False
    version: str | None = None
    detail: str = ""


@dataclass
class VendorDaemonStatus:
    """One vendor daemon line of ``Vendor daemon status``.

    Attributes:
        vendor: daemon name as printed.
        up: ``UP`` (anything else, such as "The desired vendor daemon is down", is down).
        version: daemon version without the ``v``, or ``None``.
        detail: the text after ``vendor:`` when down.

    """

    vendor: str
    up: bool
    version: str | None = None
    detail: str = ""


@dataclass
class FeatureVersion:
    """One ``"feature" vX, vendor: V[, expiry: D]`` line (one per FEATURE line of the license).

    Attributes:
        version: version without the leading ``v``.
        vendor: vendor daemon named on the line.
        expiry_text: the expiry field as printed (newer lmstat only), or ``None``.
        expiry: :func:`parse_expiry` of it (``math.inf`` = permanent), or ``None``.

    """

    version: str
    vendor: str
    expiry_text: str | None = None
    expiry: float | None = None


@dataclass
class FeatureUsage:
    """One ``Users of <feature>`` block.

    Attributes:
        feature: feature name.
        issued: licenses issued (``None`` for uncounted node-locked features or error lines).
        used: licenses in use as counted by the server (reservations included; FlexNet counts reserved
            licenses as in use), or ``None``.
        uncounted: ``(Uncounted, node-locked)``.
        error: the text in parentheses when the server reported an error for this feature instead of counts.
        versions: the detail lines of the block (only printed when something is in use or reserved).
        reserved: sum of ``N RESERVATION(s) for ...`` lines.
        queued: sum of ``queued for N licenses`` lines.
        checkouts: licenses held per user (first token of the checkout line); a line without
            ``, N licenses`` holds one license.
        checkout_lines: number of checkout lines.

    """

    feature: str
    issued: int | None
    used: int | None
    uncounted: bool = False
    error: str = ""
    versions: list[FeatureVersion] = field(default_factory=list)
    reserved: int = 0
    queued: int = 0
    checkouts: dict[str, int] = field(default_factory=dict)
    checkout_lines: int = 0

    @property
    def vendor(self) -> str | None:
        """Vendor named by the first detail line of the block, if any."""
        return self.versions[0].vendor if self.versions else None


@dataclass
class LmstatReport:
    """Everything one ``lmstat -a`` run says.

    Attributes:
        servers: hosts of the ``License server status`` line (``port@host`` entries), lower-cased, in order.
        server_status: one entry per host with a status line, de-duplicated case-insensitively (a host
            listed twice is up if any line says up and master if any line says master).
        vendor_host: host named by ``Vendor daemon status (on host)``, lower-cased, or ``None``.
        daemons: vendor daemon lines.
        features: ``Users of`` blocks, in order.
        error: the first whole-server error message (``Cannot connect ...``, ``lmgrd is not running ...``)
            printed outside a host line, or ``""``.

    """

    servers: list[str] = field(default_factory=list)
    server_status: list[ServerStatus] = field(default_factory=list)
    vendor_host: str | None = None
    daemons: list[VendorDaemonStatus] = field(default_factory=list)
    features: list[FeatureUsage] = field(default_factory=list)
    error: str = ""


def server_hosts(text: str) -> list[str]:
    """Hosts (lower-cased, de-duplicated, in order) of a ``port@host[,port@host...]`` license path."""
    hosts: list[str] = []
    # Triads are comma-separated; several independent servers in a license path use ':' (Unix) or ';'.
    for item in re.split(r"[,;:]", text):
        item = item.strip()
        if not item:
            continue
        host = item.split("@", 1)[1] if "@" in item else item
        host = host.strip().lower()
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def _add_server(report: LmstatReport, status: ServerStatus) -> None:
    for old in report.server_status:
        if old.host == status.host:
            old.up = old.up or status.up
            old.master = old.master or status.master
            old.version = old.version or status.version
            if old.up:
                old.detail = ""
            return
    report.server_status.append(status)


def _checkout(feat: FeatureUsage, line: str) -> bool:
    """Account one checkout or queued line; ``False`` when the line is neither."""
    m = _QUEUED_TAIL.search(line)
    if m:
        feat.queued += int(m["n"])
        return True
    m = _CHECKOUT_TAIL.search(line)
    if not m:
        return False
    user = line.split(None, 1)[0]
    cm = _COUNT_SUFFIX.search(m["start"])
    n = int(cm["n"]) if cm else 1
    feat.checkouts[user] = feat.checkouts.get(user, 0) + n
    feat.checkout_lines += 1
    return True


def parse_lmstat(text: str) -> ParseResult[LmstatReport]:
    """Parse ``lmutil lmstat -a`` output.

    Args:
        text: the command's standard output.

    Returns:
        A result holding exactly one :class:`LmstatReport` (possibly empty) and one issue per line of the
        server, daemon or feature sections that matches no known form. Lines of the banner and of the
        license-file preamble are ignored.

    """
    result: ParseResult[LmstatReport] = ParseResult()
    report = LmstatReport()
    result.records.append(report)
    section = "preamble"
    feat: FeatureUsage | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _SERVERS.match(line)
        if m:
            for h in server_hosts(m["list"]):
                if h not in report.servers:
                    report.servers.append(h)
            section = "servers"
            continue
        if _LICENSE_FILE.match(line):
            continue
        m = _VENDOR_HEADER.match(line)
        if m:
            report.vendor_host = m["host"].strip().lower() or None
            section = "vendors"
            continue
        if _FEATURE_HEADER.match(line):
            section = "features"
            continue
        m = _USERS_OF.match(line)
        if m:
            section = "features"
            feat = FeatureUsage(m["feature"], int(m["issued"]), int(m["used"]))
            report.features.append(feat)
            continue
        m = _USERS_UNCOUNTED.match(line)
        if m:
            section = "features"
            feat = FeatureUsage(m["feature"], None, None, uncounted=True)
            report.features.append(feat)
            continue
        m = _USERS_OTHER.match(line)
        if m:
            # "Users of f: Cannot get users of f: No such feature exists" and the like: no counts to report.
            section = "features"
            feat = FeatureUsage(m["feature"], None, None, error=m["rest"].strip("() "))
            report.features.append(feat)
            continue
        if section == "features":
            if _parse_feature_line(feat, line):
                continue
            if _ERROR.search(line) and not report.error:
                report.error = line
                continue
            result.skip(no, "unrecognised line in the feature section", raw)
            continue
        if section == "servers":
            m = _SERVER_LINE.match(line)
            if m:
                _add_server(
                    report,
                    ServerStatus(m["host"].lower(), m["state"].upper() == "UP", bool(m["master"]), m["ver"]),
                )
                continue
            m = _HOST_COLON.match(line)
            if m and (m["host"].lower() in report.servers or _ERROR.search(m["rest"])):
                _add_server(report, ServerStatus(m["host"].lower(), False, detail=m["rest"]))
                continue
        if section == "vendors":
            m = _VENDOR_LINE.match(line)
            if m:
                report.daemons.append(VendorDaemonStatus(m["vendor"], m["state"].upper() == "UP", m["ver"]))
                continue
            m = _HOST_COLON.match(line)
            if m:
                report.daemons.append(VendorDaemonStatus(m["host"], False, detail=m["rest"]))
                continue
        if _ERROR.search(line):
            if not report.error:
                report.error = line
            continue
        if _IGNORED.match(line) or section == "preamble":
            continue
        result.skip(no, f"unrecognised line in the {section} section", raw)
    return result


def _parse_feature_line(feat: FeatureUsage | None, line: str) -> bool:
    """Account one line inside a ``Users of`` block; ``False`` when it is not a known form."""
    if _LICENSE_KIND.match(line) or line.lower().startswith("vendor_string:"):
        return True
    if feat is None:
        return False
    m = _DETAIL.match(line)
    if m:
        exp = m["expiry"]
        feat.versions.append(FeatureVersion(m["version"], m["vendor"], exp, parse_expiry(exp) if exp else None))
        return True
    m = _RESERVATION.match(line)
    if m:
        feat.reserved += int(m["n"])
        return True
    return _checkout(feat, line)


@dataclass(frozen=True)
class ExpiryRow:
    """One row of ``lmstat -i``.

    Attributes:
        feature: feature name.
        version: version as printed (no ``v``).
        count: ``#licenses`` of the row (``None`` when not a number, such as ``uncounted``).
        vendor: vendor daemon.
        expiry_text: the ``Expires`` field as printed.
        expiry: :func:`parse_expiry` of it (``math.inf`` = permanent), or ``None``.

    """

    feature: str
    version: str
    count: int | None
    vendor: str
    expiry_text: str
    expiry: float | None


def parse_lmstat_info(text: str) -> ParseResult[ExpiryRow]:
    """Parse ``lmutil lmstat -i`` (the feature table read from the license file).

    The header line (``Feature  Version  #licenses  Expires  Vendor`` or with ``Vendor`` before ``Expires``)
    fixes the column order; the ``____`` line under it is skipped. ``Expires`` may hold spaces
    (``permanent(no expiration date)``), so it takes every token not claimed by the other columns.

    Returns:
        One :class:`ExpiryRow` per data row; issues for rows with too few fields, for an expiry that
        :func:`parse_expiry` cannot read (the row is kept with ``expiry=None``), and one issue when no header
        was found in a non-empty text.

    """
    result: ParseResult[ExpiryRow] = ParseResult()
    order: tuple[str, str] | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or set(line) <= {"_", " ", "-"}:
            continue
        tokens = line.split()
        low = [t.lower() for t in tokens]
        if low[:1] == ["feature"] and "vendor" in low and "expires" in low:
            order = ("vendor", "expires") if low.index("vendor") < low.index("expires") else ("expires", "vendor")
            continue
        if order is None:
            continue  # the NOTE banner before the table
        if len(tokens) < 5:
            result.skip(no, f"expected at least 5 fields, got {len(tokens)}", raw)
            continue
        feature, version, count_text = tokens[0], tokens[1], tokens[2]
        if order == ("vendor", "expires"):
            vendor, exp = tokens[3], " ".join(tokens[4:])
        else:
            vendor, exp = tokens[-1], " ".join(tokens[3:-1])
        expiry = parse_expiry(exp)
        if expiry is None:
            result.skip(no, f"unreadable expiry {exp!r}", raw)
        count = int(count_text) if count_text.isdigit() else None
        result.records.append(ExpiryRow(feature, version.lstrip("v"), count, vendor, exp, expiry))
    if order is None and text.strip() and not result.records:
        result.skip(0, "no lmstat -i table header found")
    return result
