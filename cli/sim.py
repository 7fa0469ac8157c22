"""``nomade sim``: the simulated SLURM cluster (:mod:`nomade.sim`) from the command line.

Subcommands::

    nomade sim history --tsdb DIR --state-dir DIR [--seed N] [--days D] [--step S] [--end T] [--instance HOST:PORT]
        simulate D days (default 2) ending at T (default now), every S seconds (default 120), and backfill them
        into the Prometheus TSDB at DIR with promtool; records seed/start/end in DIR/sim.json of --state-dir and
        copies the accounting collector's state there for `nomade sim serve`.
    nomade sim serve --state-dir DIR [--seed N] [--start T] [--web.listen-address HOST:PORT] [--web.config.file F]
        the live exporter: the same simulation (seed and start from --state-dir's sim.json unless given), advanced
        to the wall clock and then every --step seconds (default 5); default listen address 127.0.0.1:9196.
    nomade sim render [--state-dir DIR] [--seed N] [--start T] [--at T] COMMAND [ARG...]   (or --list)
        print what COMMAND prints on the simulated cluster at time T (default now; the simulation starts at --start,
        default T, after its 6 h warm-up): the command lines the collectors run, or a bare name for one of them
        (squeue, sacct, scontrol, sshare, sprio, sdiag, sacctmgr; --list shows them all); exit status 2 for a
        command line the simulated cluster does not answer.

Same seed and same start give the same cluster, jobs and outputs. Times are Unix seconds or ISO 8601
(``2026-11-29T12:00:00``, UTC unless an offset is given).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_SEED = 42


def _time(text: str) -> float:
    """Unix seconds from a number or an ISO 8601 date-time (UTC when no offset is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a Unix time or an ISO 8601 date-time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return v


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_options(p: argparse.ArgumentParser) -> None:
    """Sub-parsers of ``nomade sim``."""
    sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    h = sub.add_parser("history", help="simulate days of history and backfill them into a Prometheus TSDB")
    h.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"simulation seed (default {DEFAULT_SEED})")
    h.add_argument("--days", type=_positive, default=1.0, help="days of history (default 1, as the demo)")
    h.add_argument("--step", type=_positive, default=120.0, help="seconds between samples (default 120)")
    h.add_argument("--end", type=_time, help="end of the history (default: now, rounded down to the step)")
    h.add_argument("--tsdb", type=Path, required=True, metavar="DIR", help="Prometheus TSDB directory to fill")
    h.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="state directory of `nomade sim serve` (sim.json and the accounting state are written there)",
    )
    h.add_argument(
        "--instance",
        default="127.0.0.1:9196",
        help="instance label of the live exporter's scrape (its host:port; default 127.0.0.1:9196)",
    )
    h.add_argument("--job", default="nomade", help="job label of the live exporter's scrape (default nomade)")
    h.add_argument("--promtool", default="promtool", help="promtool executable (default: promtool on PATH)")
    h.add_argument("--keep-files", action="store_true", help="keep the OpenMetrics chunk files")
    h.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="processes simulating consecutive parts of the span (default: the CPUs this process may use; "
        "the samples are those of one uninterrupted run)",
    )

    s = sub.add_parser("serve", help="serve the simulated cluster's metrics live (the exporter of the simulation)")
    s.add_argument("--state-dir", type=Path, required=True, metavar="DIR", help="working and state directory")
    s.add_argument("--seed", type=int, help="simulation seed (default: sim.json of --state-dir, else 42)")
    s.add_argument("--start", type=_time, help="simulation start (default: sim.json of --state-dir, else now)")
    s.add_argument("--step", type=_positive, default=5.0, help="seconds between simulation steps (default 5)")
    s.add_argument(
        "--web.listen-address", dest="listen_address", default="127.0.0.1:9196", help="default 127.0.0.1:9196"
    )
    s.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web configuration (TLS, basic auth), as nomade-exporter's",
    )
    s.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])

    b = sub.add_parser(
        "rules",
        help="backfill the recording rules over the history (promtool tsdb create-blocks-from rules)",
        description="Evaluate the recording rules of RULE_FILE over the span of the history in --state-dir through "
        "a running Prometheus that serves it (--url), and move the blocks into its data directory (--tsdb); it "
        "loads them within a minute. Rules reading other recording rules get their expressions inlined.",
    )
    b.add_argument("--state-dir", type=Path, required=True, metavar="DIR", help="state directory of the history")
    b.add_argument("--url", required=True, help="base URL of the Prometheus serving the history")
    b.add_argument("--tsdb", type=Path, required=True, metavar="DIR", help="that Prometheus' data directory")
    b.add_argument("--promtool", default="promtool", help="promtool executable (default: promtool on PATH)")
    b.add_argument("--eval-interval", type=_positive, default=60.0, help="seconds between evaluations (default 60)")
    b.add_argument("rule_files", nargs="+", type=Path, metavar="RULE_FILE", help="Prometheus rule file")

    r = sub.add_parser("render", help="print a SLURM command's output on the simulated cluster at a given time")
    r.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="the running demo's simulation (seed and start from DIR/sim.json, as `nomade sim serve` reads them; "
        "the demo's is $NOMADE_SIM_DIR/sim)",
    )
    r.add_argument("--seed", type=int, help=f"simulation seed (default: --state-dir's, else {DEFAULT_SEED})")
    r.add_argument("--at", type=_time, help="simulated time (default now)")
    r.add_argument("--start", type=_time, help="simulation start (default: --state-dir's, else --at)")
    r.add_argument("--list", action="store_true", help="list the command lines the simulated cluster answers")
    r.add_argument(
        "--readable",
        action="store_true",
        help="show the ASCII unit separator (0x1f) the collectors ask squeue and sacct to put between fields as ' | '",
    )
    r.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="COMMAND [ARG...]",
        help="a command line as the collectors run it; a bare name (squeue, sacct, scontrol, sshare, sprio, sdiag, "
        "sacctmgr) stands for the collector's own command line",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``nomade sim SUBCOMMAND``; returns the exit status (2: usage error)."""
    cmd = getattr(args, "sim_command", None)
    if cmd == "history":
        return _history(args)
    if cmd == "serve":
        return _serve(args)
    if cmd == "render":
        return _render(args)
    if cmd == "rules":
        return _rules(args)
    print(
        "nomade sim: a subcommand is required: history, rules, serve or render (see nomade sim --help)",
        file=sys.stderr,
    )
    return 2


# -- history ------------------------------------------------------------------------------------------------------


def history_span(end: float, days: float, step: float) -> tuple[float, float]:
    """``(start, end)`` of a history ending at ``end`` and lasting ``days`` days, on a grid of ``step`` seconds.

    ``end`` is rounded down to a multiple of ``step`` and ``start`` lies a whole number of steps before it
    (``round(days * 86400 / step)``), so the live exporter resumes the simulation on the same grid.
    """
    end = math.floor(end / step) * step
    return end - round(days * 86400 / step) * step, end


def _history(args: argparse.Namespace) -> int:
    from nomade.sim.history import HistoryError, copy_sqlite, default_workers, generate_history
    from nomade.sim.serve import write_meta

    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start, end = history_span(time.time() if args.end is None else args.end, args.days, args.step)
    state_dir: Path = args.state_dir
    work = state_dir / "history"
    state_dir.mkdir(parents=True, exist_ok=True)
    last = [time.monotonic()]

    def progress(t: float, samples: int) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            done = (t - start) / max(end - start, 1.0)
            print(f"nomade sim history: {done:5.1%} simulated, {samples} samples", file=sys.stderr, flush=True)

    try:
        res = generate_history(
            args.seed,
            start,
            end,
            args.step,
            args.tsdb,
            work,
            instance=args.instance,
            job=args.job,
            promtool=args.promtool,
            keep_files=args.keep_files,
            progress=progress,
            workers=args.workers or default_workers(),
        )
    except HistoryError as exc:
        print(f"nomade sim history: {exc}", file=sys.stderr)
        return 1
    acct = work / "state" / "slurm_accounting.sqlite3"
    if acct.exists():
        copy_sqlite(acct, state_dir / "state" / "slurm_accounting.sqlite3")
    write_meta(
        state_dir,
        {"seed": args.seed, "start": start, "end": end, "step": args.step, "instance": args.instance, "job": args.job},
    )
    print(
        f"history {datetime.fromtimestamp(start, UTC):%Y-%m-%dT%H:%M:%SZ} .. "
        f"{datetime.fromtimestamp(end, UTC):%Y-%m-%dT%H:%M:%SZ} (seed {args.seed}, step {args.step:g} s): "
        f"{res.steps} steps, {res.series} series, {res.samples} samples, {res.chunks} blocks, "
        f"{res.workers} worker{'s' if res.workers > 1 else ''}; "
        f"generate {res.generate_s:.1f} s, promtool {res.promtool_total_s:.1f} s wall / {res.promtool_cpu_s:.1f} s CPU "
        f"({res.promtool_s:.1f} s after generation), total {res.wall_s:.1f} s"
    )
    return 0


def _rules(args: argparse.Namespace) -> int:
    from nomade.sim.rule_history import RuleHistoryError, backfill_rules
    from nomade.sim.serve import read_meta

    meta = read_meta(args.state_dir)
    if meta is None or "start" not in meta or "end" not in meta:
        print(f"nomade sim rules: no history in {args.state_dir} (run nomade sim history first)", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        res = backfill_rules(
            args.rule_files,
            args.url,
            float(meta["start"]),
            float(meta["end"]),
            args.tsdb,
            promtool=args.promtool,
            eval_interval=args.eval_interval,
        )
    except RuleHistoryError as exc:
        print(f"nomade sim rules: {exc}", file=sys.stderr)
        return 1
    left = (
        f"; left out (a reference with its own selector, static labels or a cycle): {', '.join(res.skipped)}"
        if res.skipped
        else ""
    )
    print(
        f"recording rules backfilled: {res.rules} rules, {res.blocks} blocks moved into {args.tsdb} "
        f"in {time.monotonic() - t0:.1f} s{left}"
    )
    return 0


# -- serve --------------------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from nomade.exporter.config import ConfigError, split_host_port
    from nomade.exporter.server import serve_until_signalled
    from nomade.exporter.webconfig import WebConfigError, load_web_config
    from nomade.sim.serve import LiveWorld, read_meta
    from nomade.sim.world import SimWorld

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("nomade.sim.serve")
    try:
        host, port = split_host_port(args.listen_address)
        web = load_web_config(args.web_config_file) if args.web_config_file else None
    except (ConfigError, WebConfigError, ValueError) as exc:
        print(f"nomade sim serve: {exc}", file=sys.stderr)
        return 2
    meta = read_meta(args.state_dir) or {}
    seed = args.seed if args.seed is not None else int(meta.get("seed", DEFAULT_SEED))
    start = args.start if args.start is not None else float(meta.get("start", time.time()))
    if start > time.time():
        print(f"nomade sim serve: start {start} is in the future", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    world = SimWorld(seed, start, args.state_dir)
    live = LiveWorld(world, step=args.step)
    live.start()
    log.info(
        "simulation (seed %d, start %.0f) caught up with the wall clock in %.1f s", seed, start, time.monotonic() - t0
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(live)
    rc = serve_until_signalled("nomade sim serve", registry, args.listen_address, host, port, web_config=web)
    live.stop()
    return rc


# -- render -------------------------------------------------------------------------------------------------------


def collector_argv() -> dict[str, list[str]]:
    """``{name: argv}``: the command lines NØMADE's controller collectors run, by a short name.

    The bare command names stand for the most informative form (``squeue``: the per-job form, ``scontrol``: the
    node table).
    """
    from nomade.exporter.collectors import collector_classes
    from nomade.exporter.collectors.base import CollectorContext
    from nomade.exporter.collectors.slurm_licenses import LICENSES_ARGV
    from nomade.exporter.collectors.slurm_nodes import NODES_ARGV, PARTITIONS_ARGV
    from nomade.exporter.parsers.squeue import SQUEUE_ARGV, SQUEUE_JOBS_ARGV
    from nomade.exporter.runner import CommandRunner

    classes = collector_classes()
    ctx = CollectorContext(runner=CommandRunner())

    def argv_of(name: str) -> list[str]:
        return list(classes[name](ctx).argv())  # type: ignore[attr-defined]

    return {
        "squeue": list(SQUEUE_JOBS_ARGV),
        "squeue-summary": list(SQUEUE_ARGV),
        "scontrol": list(NODES_ARGV),
        "scontrol-partitions": list(PARTITIONS_ARGV),
        "scontrol-reservations": argv_of("slurm_reservations"),
        "scontrol-licenses": list(LICENSES_ARGV),
        "sacct": argv_of("slurm_accounting"),
        "sshare": argv_of("slurm_fairshare"),
        "sprio": argv_of("slurm_priority"),
        "sdiag": argv_of("slurm_scheduler"),
        "sacctmgr": argv_of("slurm_associations"),
    }


def _render(args: argparse.Namespace) -> int:
    import shlex

    from nomade.exporter.runner import CommandError
    from nomade.sim.engine import Simulation
    from nomade.sim.model import default_cluster, default_workload
    from nomade.sim.runner import SimRunner

    forms = collector_argv()
    if args.list:
        for name, argv in forms.items():
            print(f"{name:22s} {shlex.join(argv)}")
        return 0
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(
            "nomade sim render: give a command, e.g. nomade sim render squeue (--list: the known ones)", file=sys.stderr
        )  # noqa: E501
        return 2
    if len(argv) == 1 and argv[0] in forms:
        argv = forms[argv[0]]
    meta: dict = {}
    if args.state_dir is not None:
        from nomade.sim.serve import read_meta

        meta = read_meta(args.state_dir) or {}
        if not meta:
            print(f"nomade sim render: no sim.json in {args.state_dir} (is the demo started?)", file=sys.stderr)
            return 2
    at = time.time() if args.at is None else args.at
    start = args.start if args.start is not None else float(meta.get("start", at))
    seed = args.seed if args.seed is not None else int(meta.get("seed", DEFAULT_SEED))
    if at < start:
        print("nomade sim render: --at is before --start", file=sys.stderr)
        return 2
    sim = Simulation(default_cluster(), default_workload(), seed, start)
    sim.advance(at)
    runner = SimRunner(lambda: sim.state)
    try:
        result = runner.run(argv, ttl=0)
    except CommandError as exc:
        if exc.reason == "missing":
            print(
                f"nomade sim render: the simulated cluster does not answer {shlex.join(argv)!r} ({exc.detail}); "
                "it answers the collectors' command lines: nomade sim render --list",
                file=sys.stderr,
            )
            return 2
        print(f"nomade sim render: {exc}", file=sys.stderr)
        return 1
    text = result.stdout.replace("\x1f", " | ") if args.readable else result.stdout
    sys.stdout.write(text)
    return 0
