"""Reachability collector (controller mode): TCP checks of service endpoints, in the manner of a blackbox probe.

Each target (slurmctld, slurmdbd, NFS servers, license servers...) is resolved and then connected to over TCP;
the connection is closed at once, nothing is sent. Like blackbox_exporter's ``tcp`` prober it reports
whether the connection opened, the DNS lookup time and the connect (handshake) time, all targets probed in
parallel threads, each bounded by ``timeout`` for the lookup and again for the connect.

**Why controller mode.** One vantage point probing a few endpoints is what the question "is the service up
and how fast does it accept" needs; probing from every compute node would multiply connections by the node
count, and slurmctld logs each bare connection as an error (``error: slurm_receive_msg [addr:port]: Zero
Bytes were transmitted or received``, seen on SLURM 22.05 in the lab): 1000 nodes scraped every 15 s would
write 67 such lines per second. For the same reason results are reused for ``interval`` seconds whatever the
number of scrapers, and slurmdbd (which does not log them) is not treated differently. A node's own view of
slurmctld is what SLURM itself reports as ``NOT_RESPONDING`` (``slurm_nodes`` collector). A site that wants
node-side probes (an NFS server seen from compute nodes) enables the collector explicitly there: an explicit
``enabled = true`` works in any mode.

**Off by default** (``default_enabled = False``): without targets there is nothing to probe, and targets are
site configuration. Enable with ``[collector.reachability] enabled = true`` plus ``targets`` and/or
``from_slurm_conf = true``.

Options (``[collector.reachability]``):
    targets: list of ``"host:port"`` strings (``"[fd00::1]:6817"`` for IPv6 literals; the target name is the
        string) or tables ``{name = "slurmctld", host = "ctl1", port = 6817}``.
    from_slurm_conf: add the slurmctld and slurmdbd endpoints named by slurm.conf (see
        :func:`~nomade.exporter.parsers.slurm_conf.slurm_endpoints`); default false.
    slurm_conf: path of slurm.conf (default ``$SLURM_CONF``, else ``/etc/slurm/slurm.conf``).
    timeout: seconds for the DNS lookup and, separately, for the connect (default 2).
    interval: seconds a round of probes is reused (default 15).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics import MetricSet, MetricSpec
from ..parsers.slurm_conf import parse_slurm_conf, slurm_endpoints
from .base import Collector, CollectorContext, CollectorError

_L = ("target", "address")

Resolver = Callable[..., list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Target:
    """One endpoint to probe.

    Attributes:
        name: the ``target`` label.
        host: name or address to resolve.
        port: TCP port.

    """

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6 literals), the ``address`` label."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _split_host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"reachability: target {text!r} is not host:port")
    return host, int(port)


def parse_targets(spec: Sequence[object]) -> list[Target]:
    """Turn the ``targets`` option into :class:`Target` objects.

    Raises:
        ValueError: an entry that is neither ``"host:port"`` nor a table with ``host`` and a valid ``port``.

    """
    out: list[Target] = []
    for item in spec:
        if isinstance(item, str):
            host, port = _split_host_port(item)
            out.append(Target(item.strip(), host, port))
        elif isinstance(item, dict) and "host" in item and "port" in item:
            port = item["port"]
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"reachability: bad port in {item!r}")
            host = str(item["host"])
            out.append(Target(str(item.get("name") or f"{host}:{port}"), host, port))
        else:
            raise ValueError(f"reachability: target {item!r} must be 'host:port' or {{name, host, port}}")
    return out


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one TCP probe.

    Attributes:
        up: the connection was established.
        reason: ``""`` when up, else ``dns`` (lookup failed), ``refused``, ``timeout``, ``unreachable``
            (no route/network) or ``error``.
        dns_seconds: lookup time; None when the lookup did not finish.
        connect_seconds: handshake time of the successful connection; None when not up.
        duration_seconds: whole probe time.
        resolved: the address connected to (or last tried), ``""`` before resolution.

    """

    up: bool
    reason: str
    dns_seconds: float | None
    connect_seconds: float | None
    duration_seconds: float
    resolved: str = ""


def probe_tcp(
    host: str,
    port: int,
    timeout: float,
    resolve: Resolver = socket.getaddrinfo,
    clock: Callable[[], float] = time.perf_counter,
) -> ProbeResult:
    """Resolve ``host`` and open (then close) a TCP connection to ``port``.

    Addresses are tried in resolver order until one connects or ``timeout`` (shared by the attempts) runs out,
    as blackbox_exporter does after its preferred protocol. ``getaddrinfo`` itself cannot be interrupted: the
    caller bounds it by waiting on the probe thread (see :class:`ReachabilityCollector`).
    """
    start = clock()
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ProbeResult(False, "dns", None, None, clock() - start)
    resolved_at = clock()
    dns = resolved_at - start
    if not infos:
        return ProbeResult(False, "dns", dns, None, clock() - start)
    reason, last = "error", ""
    deadline = resolved_at + timeout
    for family, type_, proto, _, sockaddr in infos:
        remaining = deadline - clock()
        if remaining <= 0:
            reason = "timeout"
            break
        last = str(sockaddr[0])
        t0 = clock()
        try:
            with socket.socket(family, type_, proto) as s:
                s.settimeout(remaining)
                s.connect(sockaddr)
            return ProbeResult(True, "", dns, clock() - t0, clock() - start, last)
        except ConnectionRefusedError:
            reason = "refused"
        except TimeoutError:
            reason = "timeout"
        except OSError as exc:
            reason = "unreachable" if exc.errno in (101, 113) else "error"  # ENETUNREACH, EHOSTUNREACH
    return ProbeResult(False, reason, dns, None, clock() - start, last)


def default_slurm_conf() -> Path:
    """``$SLURM_CONF`` when set, else ``/etc/slurm/slurm.conf``."""
    return Path(os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf")


class ReachabilityCollector(Collector):
    """TCP reachability and latency of configured endpoints (options in the module docstring)."""

    name = "reachability"
    mode = "controller"
    default_enabled = False
    description = "TCP checks of slurmctld, slurmdbd, NFS and license servers with DNS and connect times."
    metrics = (
        MetricSpec("nomade_reachability_targets", "gauge", "Number of endpoints probed."),
        MetricSpec("nomade_reachability_up", "gauge", "1 when a TCP connection to the target opened, else 0.", _L),
        MetricSpec(
            "nomade_reachability_connect_seconds",
            "gauge",
            "TCP handshake time of the last successful probe (absent when down).",
            _L,
            "seconds",
        ),
        MetricSpec(
            "nomade_reachability_dns_lookup_seconds",
            "gauge",
            "Name resolution time of the last probe (getaddrinfo; near 0 for literal addresses).",
            _L,
            "seconds",
        ),
        MetricSpec(
            "nomade_reachability_probe_duration_seconds",
            "gauge",
            "Whole time of the last probe, lookup and connect attempts included.",
            _L,
            "seconds",
        ),
        MetricSpec(
            "nomade_reachability_failure_info",
            "info",
            "Why the last probe failed: dns, refused, timeout, unreachable or error (present only when down).",
            (*_L, "reason"),
        ),
        MetricSpec(
            "nomade_reachability_probe_timestamp_seconds",
            "gauge",
            "Unix time of the probe round reported (rounds are reused for `interval` seconds).",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext, resolve: Resolver = socket.getaddrinfo) -> None:
        super().__init__(ctx)
        self.static = parse_targets(self.option("targets", []))
        self.from_slurm_conf = bool(self.option("from_slurm_conf", False))
        conf = self.option("slurm_conf", None)
        self.slurm_conf = Path(conf) if conf else default_slurm_conf()
        self.timeout = float(self.option("timeout", 2.0))
        self.interval = float(self.option("interval", 15.0))
        if not self.timeout > 0 or self.interval < 0:
            raise ValueError("reachability: timeout must be > 0 and interval >= 0")
        self.resolve = resolve
        self._round: tuple[float, float, list[tuple[Target, ProbeResult]]] | None = None  # (monotonic, unix, ...)
        self._round_lock = threading.Lock()

    def targets(self) -> list[Target]:
        """Configured targets plus, with ``from_slurm_conf``, those of slurm.conf (duplicates by address dropped).

        Raises:
            CollectorError: slurm.conf is wanted but cannot be read.

        """
        out = list(self.static)
        if self.from_slurm_conf:
            try:
                text = self.slurm_conf.read_text(errors="replace")
            except OSError as exc:
                raise CollectorError(f"cannot read {self.slurm_conf}: {exc}") from exc
            params = parse_slurm_conf(text)
            endpoints = slurm_endpoints(params.records)
            self.count_parse_errors(len(params.issues) + len(endpoints.issues))
            out += [Target(e.name, e.host, e.port) for e in endpoints.records]
        seen: set[tuple[str, int]] = set()
        unique = []
        for t in out:
            if (t.host, t.port) not in seen:
                seen.add((t.host, t.port))
                unique.append(t)
        return unique

    def probe_all(self, targets: list[Target]) -> list[tuple[Target, ProbeResult]]:
        """Probe every target in its own daemon thread, waiting at most ``2 x timeout + 0.5`` seconds.

        A probe still running then (a hung resolver) is reported down with reason ``timeout`` and left to
        finish on its own.
        """
        results: dict[int, ProbeResult] = {}

        def run(i: int, t: Target) -> None:
            results[i] = probe_tcp(t.host, t.port, self.timeout, self.resolve)

        threads = [
            threading.Thread(target=run, args=(i, t), name=f"nomade-probe-{t.name}", daemon=True)
            for i, t in enumerate(targets)
        ]
        start = time.monotonic()
        for th in threads:
            th.start()
        deadline = start + 2 * self.timeout + 0.5
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        late = ProbeResult(False, "timeout", None, None, time.monotonic() - start)
        return [(t, results.get(i, late)) for i, t in enumerate(targets)]

    def collect(self, out: MetricSet) -> None:
        """Fill ``out`` from a probe round at most ``interval`` seconds old."""
        with self._round_lock:  # concurrent scrapes share one round instead of probing twice
            now = time.monotonic()
            if self._round is None or now - self._round[0] >= self.interval:
                targets = self.targets()
                self._round = (now, self.ctx.clock(), self.probe_all(targets))
            _, taken, results = self._round
        out.add("nomade_reachability_targets", len(results))
        out.add("nomade_reachability_probe_timestamp_seconds", taken)
        for t, r in results:
            lab = {"target": t.name, "address": t.address}
            out.add("nomade_reachability_up", int(r.up), **lab)
            out.add("nomade_reachability_connect_seconds", r.connect_seconds, **lab)
            out.add("nomade_reachability_dns_lookup_seconds", r.dns_seconds, **lab)
            out.add("nomade_reachability_probe_duration_seconds", r.duration_seconds, **lab)
            if not r.up:
                out.info("nomade_reachability_failure_info", **lab, reason=r.reason)


COLLECTOR = ReachabilityCollector
