"""``nomade-analytics`` (also ``nomade analytics``): trends of Prometheus history, served at ``/metrics``.

Reads history only through the Prometheus HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir), runs one analytics
cycle every ``interval`` (:mod:`nomade.analytics.service`) and serves the results on 127.0.0.1:9867 by default for
Prometheus to scrape (with ``honor_labels: true``, so the watched series' labels survive). With
``[analytics.risk] enabled`` (the default) each cycle also scores pending and running jobs
(:mod:`nomade.analytics.risk`). SIGTERM or SIGINT stops
it cleanly; ``--once`` runs one cycle, prints the exposition and exits (status 1 when the cycle failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest

from .config import AnalyticsConfig, ConfigError, load_config, parse_duration

if TYPE_CHECKING:
    from .promapi import PrometheusClient

log = logging.getLogger("nomade.analytics")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nomade-hpc")
    except PackageNotFoundError:
        return "0.0.0+source"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (Prometheus-style flag names, as ``nomade-exporter``)."""
    p = argparse.ArgumentParser(prog="nomade-analytics", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="TOML configuration file ([analytics] and [[analytics.watch]])")
    p.add_argument("--web.listen-address", dest="listen_address", help="host:port to serve (default 127.0.0.1:9867)")
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web configuration (TLS, basic auth), read once at start; see nomade.exporter.webconfig",
    )
    p.add_argument(
        "--prometheus.url",
        dest="prometheus_url",
        help="Prometheus-compatible query endpoint (default http://127.0.0.1:9090)",
    )
    p.add_argument(
        "--interval", help='time between cycle starts: seconds or a duration such as "15s", "1m" (default 60s)'
    )
    p.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--once", action="store_true", help="run one cycle, print the metrics to stdout and exit")
    p.add_argument("--version", action="version", version=f"nomade-analytics {_version()}")
    return p


def resolve(args: argparse.Namespace) -> AnalyticsConfig:
    """Merge the file configuration and the flags (flags win).

    Raises:
        ConfigError: invalid file or flag value.

    """
    cfg = load_config(args.config)
    for key in ("listen_address", "prometheus_url", "log_level"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.interval is not None:
        try:
            interval: str | float = float(args.interval)  # a bare number is seconds on the command line
        except ValueError:
            interval = args.interval
        cfg.interval = parse_duration(interval, "--interval")
    cfg.host_port()  # validate early
    return cfg


def make_client(cfg: AnalyticsConfig) -> PrometheusClient:
    """The :class:`~nomade.analytics.promapi.PrometheusClient` that ``cfg`` describes.

    Raises:
        ConfigError: bad URL, unreadable bearer token file.

    """
    from .promapi import PrometheusClient

    try:
        return PrometheusClient(
            cfg.prometheus_url,
            timeout=cfg.timeout,
            retries=cfg.retries,
            auth=cfg.basic_auth,
            bearer_token=cfg.bearer_token(),
            verify=cfg.verify(),
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"prometheus_url: {exc}") from exc


def ingest_main(argv: Sequence[str]) -> int:
    """``nomade analytics ingest --store FILE TRACE...``: load job traces into the training store.

    Traces: ``sacct -P`` dumps, Standard Workload Format (``.swf``, ``.swf.gz``) and the loaders of
    :mod:`nomade.analytics.traces`. Prints the rows written per trace; exit status 2 when a trace cannot be read.
    """
    import argparse

    from .jobs_store import JobsStoreError, ingest

    ap = argparse.ArgumentParser(prog="nomade analytics ingest", description=ingest_main.__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, type=Path, help="SQLite training store (created when missing)")
    ap.add_argument("--cluster", help="cluster name for the rows (default: the trace's dataset name)")
    ap.add_argument("traces", nargs="+", type=Path)
    a = ap.parse_args(argv)
    for trace in a.traces:
        try:
            n = ingest(a.store, trace, cluster=a.cluster)
        except (OSError, ValueError, JobsStoreError) as exc:
            print(f"nomade analytics ingest: {trace}: {exc}", file=sys.stderr)
            return 2
        print(f"{trace}: {n} jobs written to {a.store}")
    return 0


def _risk_engine(cfg: AnalyticsConfig, client: PrometheusClient, *, once: bool) -> Any:
    """The failure-risk engine, or None (logged) when the ``ml`` extra is missing: the trend watches still run."""
    try:
        from .risk import RiskEngine
    except ImportError as exc:
        log.error("risk scores disabled: %s (install nomade-hpc[ml], or set [analytics.risk] enabled = false)", exc)
        return None
    # --once trains inside its single cycle (a background thread would be cut off at exit).
    quoted = (cfg.cluster or "").replace("\\", "\\\\").replace('"', '\\"')  # a PromQL string literal
    matchers = f'{cfg.cluster_label}="{quoted}"' if cfg.cluster else ""
    return RiskEngine(cfg.risk, client, cluster=cfg.cluster, background=not once, matchers=matchers)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nomade-analytics``; returns the process exit status (2: configuration error).

    ``ingest`` and ``evaluate`` as first argument run those tools instead of the service
    (:func:`ingest_main`, :func:`nomade.analytics.evaluate.main`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ingest":
        return ingest_main(argv[1:])
    if argv and argv[0] == "evaluate":
        from .evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    args = build_parser().parse_args(argv)
    from nomade.exporter.webconfig import WebConfigError, load_web_config

    try:
        cfg = resolve(args)
        logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        client = make_client(cfg)
        host, port = cfg.host_port()
        web = load_web_config(args.web_config_file) if args.web_config_file else None
    except (ConfigError, WebConfigError) as exc:
        print(f"nomade-analytics: {exc}", file=sys.stderr)
        return 2
    from .service import AnalyticsService

    risk = _risk_engine(cfg, client, once=args.once) if cfg.risk.enabled else None
    service = AnalyticsService(cfg, client, risk=risk)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(service)
    log.info(
        "watching %d series expression(s) on %s every %gs: %s",
        len(cfg.watches),
        cfg.prometheus_url,
        cfg.interval,
        ", ".join(w.name for w in cfg.watches) or "none",
    )
    if risk is not None:
        log.info("risk scores: store %s, models in %s", cfg.risk.store, cfg.risk.model_dir)
    if args.once:
        ok = service.run_cycle()
        sys.stdout.write(generate_latest(registry).decode())
        if risk is not None:
            risk.close()
        client.close()
        return 0 if ok else 1
    from nomade.exporter.server import serve_until_signalled

    rc = serve_until_signalled(
        "nomade-analytics", registry, cfg.listen_address, host, port, web_config=web, on_started=service.start
    )
    # A cycle in progress ends within one query's timeout and retries; do not wait longer than that for it.
    service.stop(timeout=cfg.timeout * (cfg.retries + 1) + 5)
    if risk is not None:
        risk.close()
    client.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
