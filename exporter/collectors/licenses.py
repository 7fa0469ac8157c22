"""Vendor license servers (controller mode, opt-in): FlexLM/FlexNet ``lmutil lmstat`` and Reprise ``rlmstat``.

Configuration (``[collector.licenses]``; the collector is disabled by default because it has nothing to ask
without a server list, so enable it with ``enabled = true`` or ``--collector.licenses``)::

    [collector.licenses]
    enabled = true
    per_user = false            # export nomade_license_checkouts{server,feature,user}
    max_users = 50              # cap on the users exported per server (the heaviest users first)

    [[collector.licenses.servers]]
    name = "matlab"             # the `server` label; unique
    type = "flexlm"             # or "rlm"
    address = "27000@lic1"      # port@host; a triad as "27000@h1,27000@h2,27000@h3"
    lmutil = "/opt/flexlm/lmutil"   # default "lmutil" (flexlm) or "rlmutil" (rlm), found on PATH
    features = ["MATLAB", "SIMULINK", "*_Toolbox"]   # shell patterns (fnmatch, case-sensitive); default all
    expiry = true               # flexlm: also run `lmstat -i` for the expiry of unused features
    timeout = 20                # seconds per command (default: the exporter's --command.timeout)

Commands (argv, no shell): ``<lmutil> lmstat -c <address> -a`` and, with ``expiry``, ``<lmutil> lmstat -c
<address> -i``; ``<rlmutil> rlmstat -c <address> -a``.

Semantics:

* ``nomade_license_used`` is the server's own "in use" count; FlexNet counts reserved licenses as in use
  (checked on the MATLAB capture: 59 checkouts + 1 reservation = 60 in use), so ``issued - used`` is what a new
  user can still get. RLM's ``inuse`` is summed over the pools of a product.
* ``vendor`` label: the vendor daemon when the server runs exactly one (stable whether or not the feature is in
  use); otherwise the vendor of the feature's ``lmstat -i`` row or of its detail line, or ``""`` when neither
  is printed (an unused feature of a multi-vendor server with ``expiry = false``).
* ``nomade_license_server_up{role}``: ``master`` for the serving server (FlexLM ``(MASTER)``, the single RLM
  server), ``member`` for the other servers of a triad, ``unknown`` for a server that does not answer (its role
  cannot be known). Host names are lower-cased, so a Windows server listed twice in different case is one
  series.
* Expiry: per (vendor, feature, version) the next expiry date still in the future; when every line of that
  key has expired, the latest past date (so an expired license shows as expired rather than vanishing).
  Permanent licenses are ``+Inf``. Dates are 00:00 UTC of the printed day (see
  :func:`~nomade.exporter.parsers.lmstat.parse_expiry`).
* Failures: each server is queried on its own; ``nomade_license_query_success{server}`` is 0 when its command
  is missing, times out or exits non-zero (the server's other series are then absent) and the failure is
  logged once until it recovers. ``up`` of the collector becomes 0 only when every configured server failed.
  A server that answers with "Cannot connect" or "lmgrd is not running" is a successful query with
  ``server_up 0``.

Series per server: 4 per feature (issued, used, reserved, queued) + 1 per expiry line + 1 per host and per
vendor daemon + 3; with ``per_user`` at most ``max_users x features`` more.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError
from ..metrics import MetricSet, MetricSpec
from ..parsers.lmstat import LmstatReport, parse_lmstat, parse_lmstat_info, server_hosts
from ..parsers.rlmstat import RlmReport, parse_rlmstat
from ..runner import CommandError
from .base import Collector, CollectorContext, CollectorError

_P = "nomade_license_"
_F = ("server", "vendor", "feature")
DEFAULT_MAX_USERS = 50


@dataclass(frozen=True)
class LicenseServer:
    """One ``[[collector.licenses.servers]]`` entry (see the module docstring for the keys)."""

    name: str
    type: str
    address: str
    tool: str
    features: tuple[str, ...] = ()
    expiry: bool = True
    timeout: float | None = None

    def wanted(self, feature: str) -> bool:
        """Whether ``feature`` passes the ``features`` patterns (all pass when there are none)."""
        return not self.features or any(fnmatch.fnmatchcase(feature, p) for p in self.features)


def parse_servers(raw: Any) -> list[LicenseServer]:
    """Validate the ``servers`` option.

    Raises:
        ConfigError: not a list of tables, a missing/duplicate ``name``, a missing ``address``, an unknown
            ``type`` or a malformed ``features``/``timeout``.

    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("[collector.licenses] servers must be an array of tables ([[collector.licenses.servers]])")
    out: list[LicenseServer] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"[collector.licenses] servers[{i}] must be a table")
        unknown = set(entry) - {"name", "type", "address", "lmutil", "features", "expiry", "timeout"}
        if unknown:
            raise ConfigError(f"[collector.licenses] servers[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        name, address = entry.get("name"), entry.get("address")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"[collector.licenses] servers[{i}] needs a name")
        if name in seen:
            raise ConfigError(f"[collector.licenses] duplicate server name {name!r}")
        seen.add(name)
        if not isinstance(address, str) or "@" not in address:
            raise ConfigError(f'[collector.licenses] server {name!r} needs address = "port@host"')
        kind = str(entry.get("type", "flexlm")).lower()
        if kind not in ("flexlm", "rlm"):
            raise ConfigError(f'[collector.licenses] server {name!r}: type must be "flexlm" or "rlm"')
        features = entry.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ConfigError(f"[collector.licenses] server {name!r}: features must be a list of strings")
        timeout = entry.get("timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ConfigError(f"[collector.licenses] server {name!r}: timeout must be a positive number")
        tool = str(entry.get("lmutil") or ("lmutil" if kind == "flexlm" else "rlmutil"))
        out.append(LicenseServer(name, kind, address, tool, tuple(features), bool(entry.get("expiry", True)), timeout))
    return out


def flexlm_argv(server: LicenseServer, what: str = "-a") -> tuple[str, ...]:
    """``<lmutil> lmstat -c <address> -a`` (or ``-i``)."""
    return (server.tool, "lmstat", "-c", server.address, what)


def rlm_argv(server: LicenseServer) -> tuple[str, ...]:
    """``<rlmutil> rlmstat -c <address> -a``."""
    return (server.tool, "rlmstat", "-c", server.address, "-a")


def pick_expiry(values: list[float], now: float) -> float | None:
    """The next expiry still ahead of ``now`` (``inf`` counts as ahead), else the latest past one.

    Args:
        values: expiry timestamps of the license lines of one (vendor, feature, version).
        now: Unix seconds.

    Returns:
        The chosen timestamp, or ``None`` for no values.

    """
    if not values:
        return None
    ahead = [v for v in values if v > now]
    return min(ahead) if ahead else max(values)


@dataclass
class _Usage:
    issued: dict[tuple[str, str], float | None] = field(default_factory=dict)
    used: dict[tuple[str, str], float | None] = field(default_factory=dict)
    reserved: dict[tuple[str, str], float | None] = field(default_factory=dict)
    queued: dict[tuple[str, str], float | None] = field(default_factory=dict)
    expiry: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    checkouts: dict[tuple[str, str], int] = field(default_factory=dict)  # (feature, user) -> licenses


def _sum_into(acc: dict, key: tuple, value: int | None) -> None:
    """Add ``value`` to ``acc[key]``; a ``None`` makes the total unknown (absent beats wrong)."""
    if value is None or (key in acc and acc[key] is None):
        acc[key] = None
    else:
        acc[key] = (acc.get(key) or 0) + value


class LicensesCollector(Collector):
    """License server status and feature usage from FlexLM and RLM servers."""

    name = "licenses"
    mode = "controller"
    default_enabled = False
    description = "FlexLM (lmstat) and RLM (rlmstat) license servers: issued/used/reserved, daemons, expiry."
    metrics = (
        MetricSpec(_P + "issued", "gauge", "Licenses issued for a feature (FlexLM 'Total of N licenses "
                   "issued'; RLM pool count summed over pools).", _F),
        MetricSpec(_P + "used", "gauge", "Licenses in use as counted by the license server (FlexLM counts "
                   "reservations as in use; RLM inuse summed over pools).", _F),
        MetricSpec(_P + "reserved", "gauge", "Licenses reserved (FlexLM RESERVATION lines, RLM # reservations).",
                   _F),
        MetricSpec(_P + "queued", "gauge", "Licenses requested by queued checkouts (FlexLM 'queued for N "
                   "licenses').", _F),
        MetricSpec(_P + "server_up", "gauge", "1 if the license server answered (FlexLM 'license server UP', "
                   "RLM status line), 0 if not; role is master, member (other triad servers) or unknown.",
                   ("server", "host", "role")),
        MetricSpec(_P + "vendor_daemon_up", "gauge", "1 if the vendor daemon (FlexLM) or ISV server (RLM) is up.",
                   ("server", "vendor")),
        MetricSpec(_P + "expiry_timestamp_seconds", "gauge", "Next expiry of a feature version (00:00 UTC of the "
                   "printed date; +Inf for permanent licenses).", ("server", "vendor", "feature", "version"),
                   "seconds"),
        MetricSpec(_P + "checkouts", "gauge", "Licenses held by a user (per_user option; at most max_users users "
                   "per server, the heaviest first).", ("server", "feature", "user")),
        MetricSpec(_P + "checkout_users", "gauge", "Distinct users holding at least one license.", ("server",)),
        MetricSpec(_P + "checkout_users_dropped", "gauge", "Users left out of nomade_license_checkouts by the "
                   "max_users cap.", ("server",)),
        MetricSpec(_P + "query_success", "gauge", "1 if the license command ran and gave output, 0 if it was "
                   "missing, timed out or failed.", ("server",)),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.servers = parse_servers(self.option("servers", []))
        self.per_user = bool(self.option("per_user", False))
        self.max_users = int(self.option("max_users", DEFAULT_MAX_USERS))
        if self.max_users < 0:
            raise ConfigError("[collector.licenses] max_users must be >= 0")
        self._failing: set[str] = set()
        if not self.servers:
            self.log.warning("enabled without [[collector.licenses.servers]]: nothing to query")

    def collect(self, out: MetricSet) -> None:
        """Query every configured server and fill ``out``.

        Raises:
            CollectorError: every configured server failed (``up`` becomes 0); single failures only set that
                server's ``query_success`` to 0.

        """
        failures = 0
        for server in self.servers:
            try:
                if server.type == "flexlm":
                    self._flexlm(server, out)
                else:
                    self._rlm(server, out)
            except CommandError as exc:
                failures += 1
                out.add(_P + "query_success", 0, server=server.name)
                if server.name not in self._failing:
                    self._failing.add(server.name)
                    self.log.warning("license server %s: %s", server.name, exc)
                continue
            if server.name in self._failing:
                self._failing.discard(server.name)
                self.log.info("license server %s: answering again", server.name)
            out.add(_P + "query_success", 1, server=server.name)
        if self.servers and failures == len(self.servers):
            raise CollectorError(f"all {failures} license server queries failed")

    # --- FlexLM -------------------------------------------------------------------------------------------

    def _flexlm(self, server: LicenseServer, out: MetricSet) -> None:
        res = self.ctx.runner.run(flexlm_argv(server, "-a"), timeout=server.timeout)
        parsed = parse_lmstat(res.stdout)
        self.count_parse_errors(len(parsed.issues))
        report = parsed.records[0]
        info_vendor: dict[str, str] = {}
        usage = _Usage()
        daemons = [d.vendor for d in report.daemons]

        def vendor_of(feature: str, hint: str | None) -> str:
            if len(daemons) == 1:
                return daemons[0]
            return hint or info_vendor.get(feature) or ""

        if server.expiry:
            try:
                info = parse_lmstat_info(self.ctx.runner.run(flexlm_argv(server, "-i"), timeout=server.timeout).stdout)
            except CommandError as exc:
                # Optional source: the usage figures stand without it; only expiry of unused features is lost.
                self.log.debug("license server %s: lmstat -i failed: %s", server.name, exc)
            else:
                self.count_parse_errors(len(info.issues))
                vendors_by_feature: dict[str, set[str]] = defaultdict(set)
                for row in info.records:
                    vendors_by_feature[row.feature].add(row.vendor)
                info_vendor = {f: next(iter(v)) for f, v in vendors_by_feature.items() if len(v) == 1}
                for row in info.records:
                    if server.wanted(row.feature) and row.expiry is not None:
                        key = (vendor_of(row.feature, row.vendor), row.feature, row.version)
                        usage.expiry[key].append(row.expiry)
        for feat in report.features:
            if not server.wanted(feat.feature):
                continue
            vendor = vendor_of(feat.feature, info_vendor.get(feat.feature) or feat.vendor)
            key = (vendor, feat.feature)
            if feat.issued is not None or feat.used is not None:
                usage.issued[key] = feat.issued
                usage.used[key] = feat.used
                usage.reserved[key] = feat.reserved
                usage.queued[key] = feat.queued
            for v in feat.versions:
                if v.expiry is not None:
                    usage.expiry[(vendor_of(feat.feature, v.vendor), feat.feature, v.version)].append(v.expiry)
            for user, n in feat.checkouts.items():
                usage.checkouts[(feat.feature, user)] = usage.checkouts.get((feat.feature, user), 0) + n
        self._flexlm_hosts(server, report, out)
        for d in report.daemons:
            out.add(_P + "vendor_daemon_up", int(d.up), server=server.name, vendor=d.vendor)
        self._fill_usage(server, usage, out)

    @staticmethod
    def _flexlm_hosts(server: LicenseServer, report: LmstatReport, out: MetricSet) -> None:
        seen: set[str] = set()
        for s in report.server_status:
            role = ("master" if s.master else "member") if s.up else "unknown"
            out.add(_P + "server_up", int(s.up), server=server.name, host=s.host, role=role)
            seen.add(s.host)
        # Servers named on the status line (or, when lmstat printed nothing usable, in the configured
        # address) without an UP line did not answer.
        for host in report.servers or (server_hosts(server.address) if report.error or not seen else []):
            if host not in seen:
                out.add(_P + "server_up", 0, server=server.name, host=host, role="unknown")

    # --- RLM ----------------------------------------------------------------------------------------------

    def _rlm(self, server: LicenseServer, out: MetricSet) -> None:
        res = self.ctx.runner.run(rlm_argv(server), timeout=server.timeout)
        parsed = parse_rlmstat(res.stdout)
        self.count_parse_errors(len(parsed.issues))
        report: RlmReport = parsed.records[0]
        if report.host is not None:
            out.add(_P + "server_up", 1, server=server.name, host=report.host, role="master")
        else:
            for host in server_hosts(server.address):
                out.add(_P + "server_up", 0, server=server.name, host=host, role="unknown")
        for isv, running in report.isvs.items():
            out.add(_P + "vendor_daemon_up", int(running), server=server.name, vendor=isv)
        usage = _Usage()
        for pool in report.pools:
            if not server.wanted(pool.product):
                continue
            key = (pool.isv, pool.product)
            _sum_into(usage.issued, key, pool.count)
            _sum_into(usage.used, key, pool.inuse)
            _sum_into(usage.reserved, key, pool.reserved)
            if pool.expiry is not None:
                usage.expiry[(pool.isv, pool.product, pool.version)].append(pool.expiry)
        for c in report.checkouts:
            if server.wanted(c.product):
                usage.checkouts[(c.product, c.user)] = usage.checkouts.get((c.product, c.user), 0) + c.count
        self._fill_usage(server, usage, out)

    # --- shared -------------------------------------------------------------------------------------------

    def _fill_usage(self, server: LicenseServer, usage: _Usage, out: MetricSet) -> None:
        name = server.name
        for (vendor, feature), v in usage.issued.items():
            out.add(_P + "issued", v, server=name, vendor=vendor, feature=feature)
        for (vendor, feature), v in usage.used.items():
            out.add(_P + "used", v, server=name, vendor=vendor, feature=feature)
        for (vendor, feature), v in usage.reserved.items():
            out.add(_P + "reserved", v, server=name, vendor=vendor, feature=feature)
        for (vendor, feature), v in usage.queued.items():
            out.add(_P + "queued", v, server=name, vendor=vendor, feature=feature)
        now = self.ctx.clock()
        for (vendor, feature, version), values in usage.expiry.items():
            out.add(
                _P + "expiry_timestamp_seconds",
                pick_expiry(values, now),
                server=name,
                vendor=vendor,
                feature=feature,
                version=version,
            )
        per_user: dict[str, int] = defaultdict(int)
        for (_, user), n in usage.checkouts.items():
            per_user[user] += n
        out.add(_P + "checkout_users", len(per_user), server=name)
        if not self.per_user:
            return
        ranked = sorted(per_user, key=lambda u: (-per_user[u], u))
        kept = set(ranked[: self.max_users])
        out.add(_P + "checkout_users_dropped", len(per_user) - len(kept), server=name)
        for (feature, user), n in usage.checkouts.items():
            if user in kept:
                out.add(_P + "checkouts", n, server=name, feature=feature, user=user)


COLLECTOR = LicensesCollector
