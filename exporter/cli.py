"""``nomade-exporter``: serve every enabled collector's metrics at ``/metrics``.

Flags follow the Prometheus exporters' style (node_exporter): ``--web.listen-address``,
``--collector.<name>`` / ``--no-collector.<name>``, ``--log.level``, plus ``--config FILE`` (TOML).
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from . import __version__, privacy
from .collectors import collector_classes
from .collectors.base import Collector, CollectorContext
from .config import MODES, ConfigError, ExporterConfig, load_config
from .registry import ScrapeOrchestrator
from .runner import CommandRunner
from .server import serve_until_signalled
from .webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger("nomade.exporter")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one ``--collector.<name>`` pair per collector."""
    p = argparse.ArgumentParser(prog="nomade-exporter", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--web.listen-address", dest="listen_address", help="host:port to serve (default 127.0.0.1:9866)")
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web configuration (TLS, basic auth), read once at start; see nomade.exporter.webconfig",
    )
    p.add_argument("--mode", choices=MODES, help="which collectors run by default (default: auto)")
    p.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--scrape.timeout", dest="scrape_timeout", type=float, help="seconds a scrape waits (default 25)")
    p.add_argument("--command.timeout", dest="command_timeout", type=float, help="seconds per command (default 10)")
    p.add_argument("--command.cache-ttl", dest="cache_ttl", type=float, help="seconds a command result is shared")
    p.add_argument("--state.dir", dest="state_dir", type=Path, help="directory for persistent counters")
    p.add_argument("--path.procfs", dest="proc_root", type=Path, help="procfs mount point (default /proc)")
    p.add_argument("--path.sysfs", dest="sys_root", type=Path, help="sysfs mount point (default /sys)")
    p.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")
    p.add_argument("--version", action="version", version=f"nomade-exporter {__version__}")
    for name, cls in collector_classes().items():
        default = "enabled" if cls.default_enabled else "disabled"
        p.add_argument(
            f"--collector.{name}",
            dest=f"c_{name}",
            action="store_const",
            const=True,
            help=f"enable the {name} collector ({cls.mode}; {default} by default): {cls.description}",
        )
        p.add_argument(
            f"--no-collector.{name}",
            dest=f"c_{name}",
            action="store_const",
            const=False,
            help=argparse.SUPPRESS,
        )
    return p


def resolve(args: argparse.Namespace) -> ExporterConfig:
    """Merge file configuration and flags (flags win)."""
    cfg = load_config(args.config)
    for key in (
        "listen_address",
        "mode",
        "log_level",
        "scrape_timeout",
        "command_timeout",
        "cache_ttl",
        "state_dir",
        "proc_root",
        "sys_root",
    ):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    for name in collector_classes():
        choice = getattr(args, f"c_{name}")
        if choice is not None:
            cfg.enabled[name] = choice
    return cfg


def _wanted(cls: type[Collector], cfg: ExporterConfig) -> bool:
    if cls.name in cfg.enabled:
        return cfg.enabled[cls.name]
    if not cls.default_enabled:
        # Collectors that need site knowledge (license servers, quota filesystems, probe targets) are off by
        # default; giving them a [collector.<name>] section with settings switches them on.
        return bool(cfg.collectors.get(cls.name))
    if cfg.mode == "all":
        return True
    if cfg.mode in ("node", "controller"):
        return cls.mode == cfg.mode
    # auto: node collectors everywhere, controller collectors where SLURM's client commands exist
    if cls.mode == "controller":
        return shutil.which("squeue") is not None and cls.available()
    return cls.available()


def build(cfg: ExporterConfig) -> ScrapeOrchestrator:
    """Instantiate the enabled collectors and the orchestrator for ``cfg``.

    Raises:
        ConfigError: a ``[collector.X]`` section or an enabled name that no collector has.

    """
    classes = collector_classes()
    unknown = (set(cfg.collectors) | set(cfg.enabled)) - set(classes)
    if unknown:
        raise ConfigError(f"unknown collector(s): {', '.join(sorted(unknown))}")
    runner = CommandRunner(timeout=cfg.command_timeout, ttl=cfg.cache_ttl)
    collectors = []
    for name, cls in classes.items():
        if _wanted(cls, cfg):
            ctx = CollectorContext(
                runner=runner,
                options=cfg.collectors.get(name, {}),
                state_dir=cfg.state_dir,
                proc_root=cfg.proc_root,
                sys_root=cfg.sys_root,
            )
            collectors.append(cls(ctx))
    log.info("enabled collectors: %s", ", ".join(c.name for c in collectors) or "none")
    return ScrapeOrchestrator(collectors, runner, scrape_timeout=cfg.scrape_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nomade-exporter``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve(args)
        logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        privacy.configure(cfg)  # pseudonymous user/account labels when [exporter] pseudonymize_labels is set
        host, port = cfg.host_port()
        web: WebConfig | None = load_web_config(args.web_config_file) if args.web_config_file else None
        orchestrator = build(cfg)
    except (ConfigError, WebConfigError) as exc:
        print(f"nomade-exporter: {exc}", file=sys.stderr)
        return 2
    # Parsing 10^5-line command outputs allocates millions of short-lived objects; with CPython's default gen-0
    # threshold (700) the cyclic GC then runs thousands of times per scrape and costs a third of the parse time
    # (bench/README.md). Objects alive after start-up are frozen out of collection, and gen 0 is collected
    # less often; reference counting still frees nearly everything at once.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(orchestrator)
    if args.once:
        sys.stdout.write(generate_latest(registry).decode())
        orchestrator.close()
        return 0
    rc = serve_until_signalled(
        "nomade-exporter", registry, cfg.listen_address, host, port, orchestrator, web_config=web
    )
    orchestrator.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
