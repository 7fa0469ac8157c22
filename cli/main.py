"""``nomade``: the umbrella command.

Subcommands: ``status`` (the overview screen), ``exporter`` and ``analytics`` (the two services), ``recommend``
(data-driven advice for a user), ``build`` (rules, Alertmanager configuration and dashboards), ``syscheck`` (the
system check), ``targets`` (Prometheus file_sd targets from SLURM's node list) and ``sim`` (the simulated cluster:
history backfill, live exporter, command outputs).

Each subcommand is one entry of :data:`SUBCOMMANDS` (name, help, a function adding its options, a function
running it), so adding one touches only that table and its module. ``nomade exporter ARGS...`` hands ``ARGS``
untouched to ``nomade-exporter``'s own parser.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
PROMETHEUS_URL_ENV = "NOMADE_PROMETHEUS_URL"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nomade-hpc")
    except PackageNotFoundError:
        return "0.0.0+source"


# -- nomade status -----------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return v


def _add_status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus",
        metavar="URL",
        default=os.environ.get(PROMETHEUS_URL_ENV) or DEFAULT_PROMETHEUS_URL,
        help=f"Prometheus (or compatible) query endpoint (default: ${PROMETHEUS_URL_ENV} or {DEFAULT_PROMETHEUS_URL})",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for each query (default 10)",
    )
    p.add_argument("--cluster", help="show only series whose cluster label has this value")
    p.add_argument(
        "--no-color",
        action="store_true",
        help="no ANSI colours (also when $NO_COLOR is set or the output is not a terminal)",
    )
    p.add_argument("--width", type=int, metavar="COLUMNS", help="screen width (default: the terminal's)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=40,
        metavar="N",
        help="at most N filesystem and N node rows, problems first (0: all; default 40)",
    )


def _wants_color(args: argparse.Namespace, stream: object) -> bool:
    # NO_COLOR convention (https://no-color.org): present and non-empty disables colour
    if args.no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _can_encode(stream: object, sample: str) -> bool:
    enc = getattr(stream, "encoding", None) or "ascii"
    try:
        sample.encode(enc)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _run_status(args: argparse.Namespace) -> int:
    from nomade.analytics.promapi import PrometheusClient, PrometheusUnavailable

    from .status import gather, render

    out = sys.stdout
    try:
        # an interactive screen: one retry, so a dead server answers within about 2 x timeout
        client = PrometheusClient(args.prometheus, timeout=args.timeout, retries=1, backoff=0.5)
    except ValueError as exc:
        print(f"nomade status: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            snap = gather(client, cluster=args.cluster)
    except PrometheusUnavailable as exc:
        print(f"nomade status: Prometheus unavailable at {client.base_url}: {exc}", file=sys.stderr)
        return 1
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    text = render(
        snap,
        width=width,
        color=_wants_color(args, out),
        max_rows=max(0, args.max_rows),
        ascii_only=not _can_encode(out, "█═░└─…·Ø"),
    )
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `nomade status | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())  # so that the interpreter's final flush does not raise again
    return 0


# -- nomade exporter ---------------------------------------------------------------------------------------------


def _run_exporter(argv: Sequence[str]) -> int:
    from nomade.exporter import cli as exporter_cli

    return exporter_cli.main(list(argv))


# -- nomade analytics --------------------------------------------------------------------------------------------


def _run_analytics(argv: Sequence[str]) -> int:
    from nomade.analytics import cli as analytics_cli

    return analytics_cli.main(list(argv))


# -- nomade recommend -------------------------------------------------------------------------------------------


def _recommend_cli():  # the module, imported only when the subcommand runs (keeps `nomade status` light)
    from . import recommend

    return recommend


# -- nomade build -----------------------------------------------------------------------------------------------


def _build_cli():  # imported only when the subcommand runs (grafanalib and PyYAML are the `build` extra)
    from . import build

    return build


# -- nomade syscheck / nomade targets ----------------------------------------------------------------------------


def _syscheck_cli():  # imported only when the subcommand runs
    from . import syscheck

    return syscheck


def _targets_cli():  # imported only when the subcommand runs
    from . import targets

    return targets


# -- nomade sim --------------------------------------------------------------------------------------------------


def _sim_cli():  # imported only when the subcommand runs (the simulation needs numpy)
    from . import sim

    return sim


# -- dispatch ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subcommand:
    """One ``nomade`` subcommand.

    Attributes:
        help: one line for ``nomade --help``.
        add_options: adds the subcommand's options to its parser (``None``: arguments are passed through).
        run: runs it: with the parsed namespace, or with the raw argument list when ``add_options`` is ``None``;
            returns the exit status.

    """

    help: str
    add_options: Callable[[argparse.ArgumentParser], None] | None
    run: Callable[..., int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "status": Subcommand(
        "overview of filesystems, queue, nodes, finished jobs and collectors, from Prometheus",
        _add_status_options,
        _run_status,
    ),
    "recommend": Subcommand(
        "data-driven recommendations for a user, from Prometheus or the training store",
        lambda p: _recommend_cli().add_options(p),
        lambda args: _recommend_cli().run(args),
    ),
    "build": Subcommand(
        "write the Prometheus rules, Alertmanager configuration and Grafana dashboards generated from one config",
        lambda p: _build_cli().add_options(p),
        lambda args: _build_cli().run(args),
    ),
    "syscheck": Subcommand(
        "check this machine: Python, SLURM commands and slurmdbd, /proc, GPU, NFS, Prometheus, configuration",
        lambda p: _syscheck_cli().add_options(p),
        lambda args: _syscheck_cli().run(args),
    ),
    "targets": Subcommand(
        "write Prometheus file_sd targets of the node exporters from SLURM's node list",
        lambda p: _targets_cli().add_options(p),
        lambda args: _targets_cli().run(args),
    ),
    "sim": Subcommand(
        "the simulated SLURM cluster: backfill its history into Prometheus, serve it live, render its commands",
        lambda p: _sim_cli().add_options(p),
        lambda args: _sim_cli().run(args),
    ),
    "exporter": Subcommand("run the metrics exporter (same options as nomade-exporter)", None, _run_exporter),
    "analytics": Subcommand(
        "run the analytics service: trends and projections from Prometheus (same options as nomade-analytics)",
        None,
        _run_analytics,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``nomade`` parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    p = argparse.ArgumentParser(prog="nomade", description="NØMADE: monitoring and early warning for SLURM clusters.")
    p.add_argument("--version", action="version", version=f"nomade {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=cmd.add_options is not None)
        if cmd.add_options is not None:
            cmd.add_options(sp)
        else:
            sp.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nomade``; returns the process exit status (2 for usage errors)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # pass-through subcommands get their arguments verbatim (argparse would eat "--help" or reorder options)
    if args_list and args_list[0] in SUBCOMMANDS and SUBCOMMANDS[args_list[0]].add_options is None:
        return SUBCOMMANDS[args_list[0]].run(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
