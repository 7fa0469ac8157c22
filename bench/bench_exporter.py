"""Benchmark of the NØMADE exporter: controller mode on a synthetic SLURM workload, node mode on this machine.

Controller mode: for each size ``NODESxJOBS`` (default ``1000x20000`` and ``10000x200000``) the script writes
the outputs of ``scontrol show node/partition``, ``squeue`` and ``sacct`` in the exact formats the collectors ask
for (:mod:`synth`), puts fake ``squeue``/``scontrol``/``sacct``/``sinfo`` executables first on ``PATH`` (shell
scripts that ``exec cat`` the file matching their argv, and log any other argv), and runs the REAL exporter
(``.venv/bin/nomade-exporter --mode controller``) as a subprocess. It measures, per configuration variant:

* the first scrape (cold: every command run and parsed, every finished job counted into the accounting store)
  and N further scrapes over HTTP: wall time median / p90, and each collector's
  ``nomade_collector_duration_seconds``;
* the peak resident memory of the exporter (``VmHWM`` in ``/proc/<pid>/status``) and the CPU seconds it used
  (``utime + stime`` of ``/proc/<pid>/stat``, children included) per steady scrape;
* the series (samples in the exposition) by metric family, normalised per node for families with a ``node``
  label and per 1,000 exported jobs for families with a ``job_id`` label.

Variants: ``default`` (collector defaults: sacct per-job series capped by ``max_jobs`` = 5000, sacct output
cached for ``interval`` = 60 s, so steady scrapes reuse it), ``all-jobs`` (``max_jobs`` raised so every job
in the window gets its series) and ``refresh`` (``all-jobs`` with ``interval = 0``: sacct is re-run and re-parsed
on every scrape, the cost of the scrape that follows the expiry of the sacct cache).

Node mode: the exporter with ``--mode node`` on this machine's ``/proc`` and ``/sys``: an idle period (the
background samplers only) then N scrapes at a fixed interval; resident memory, CPU seconds per scrape (total and
net of the idle baseline) and series count. The script also checks that numpy, pandas and torch are neither
imported by the exporter modules nor mapped into the exporter processes.

This prints figures; it is not a test and asserts nothing except that the exporter ran (collectors up, no
parse errors, no unexpected command line). Usage::

    .venv/bin/python bench/bench_exporter.py                      # both sizes, node mode (about 10 min, 2 cores)
    .venv/bin/python bench/bench_exporter.py --sizes 10000x200000 --scrapes 5 --json out.json
    .venv/bin/python bench/bench_exporter.py --sizes 1000x20000 --profile   # cProfile of the SLURM collectors
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402  (bench/ is not a package)

from nomade.exporter.collectors.base import CollectorContext  # noqa: E402
from nomade.exporter.collectors.slurm_accounting import SlurmAccountingCollector  # noqa: E402
from nomade.exporter.collectors.slurm_nodes import NODES_ARGV, PARTITIONS_ARGV  # noqa: E402
from nomade.exporter.parsers.squeue import SQUEUE_ARGV  # noqa: E402
from nomade.exporter.runner import CommandRunner  # noqa: E402

HEAVY = ("numpy", "pandas", "torch")
LOOKBACK = 3600  # the accounting collector's default window
# Finished jobs end at most LOOKBACK - MARGIN seconds before generation, so they stay in the window while a
# size's variants run (several minutes at 10k/200k).
MARGIN = 900
CLK_TCK = os.sysconf("SC_CLK_TCK")
_DURATION = re.compile(rb'^nomade_collector_duration_seconds\{collector="([^"]+)"\} (\S+)$', re.M)
_UP = re.compile(rb'^nomade_collector_up\{collector="([^"]+)"\} (\S+)$', re.M)
_PARSE_ERR = re.compile(rb'^nomade_collector_parse_errors_total\{collector="([^"]+)"\} (\S+)$', re.M)
_RUNS = re.compile(rb'^nomade_exporter_command_runs_total\{command="([^"]+)"\} (\S+)$', re.M)
_WINDOW = re.compile(rb"^nomade_slurm_accounting_window_jobs (\S+)$", re.M)


# --- helpers -------------------------------------------------------------------------------------------------


def exporter_path() -> str:
    """The ``nomade-exporter`` of the project's venv (else the one on PATH)."""
    p = ROOT / ".venv" / "bin" / "nomade-exporter"
    if p.exists():
        return str(p)
    found = shutil.which("nomade-exporter")
    if not found:
        raise SystemExit("nomade-exporter not found: run `make venv` first")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (the smallest value with at least q of the values at or below it)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def median(values: list[float]) -> float:
    """Median (mean of the two middle values for an even count); NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process in bytes (``/proc/<pid>/status``, proc(5))."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def proc_cpu(pid: int) -> tuple[float, float]:
    """``(utime + stime, cutime + cstime)`` of a process in seconds (``/proc/<pid>/stat`` fields 14-17, proc(5))."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    ut, st, cut, cst = (int(x) for x in fields[11:15])
    return (ut + st) / CLK_TCK, (cut + cst) / CLK_TCK


def heavy_mapped(pid: int) -> list[str]:
    """Shared objects of numpy/pandas/torch mapped into the process (``/proc/<pid>/maps``)."""
    hits = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1] if line.count(" ") >= 5 else ""
        low = path.lower()
        if any(f"/{h}" in low or f"lib{h}" in low for h in HEAVY):
            hits.add(path)
    return sorted(hits)


def heavy_imported() -> list[str]:
    """Heavy modules in ``sys.modules`` of a fresh interpreter after importing every exporter module."""
    code = (
        "import sys\n"
        "from nomade.exporter import cli, catalog, server, registry\n"
        "from nomade.exporter.collectors import collector_classes\n"
        "collector_classes()\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def scrape(url: str, timeout: float) -> tuple[float, bytes]:
    """GET ``url``; returns (wall seconds until the whole body was read, body)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t0, body


def _floats(rx: re.Pattern[bytes], body: bytes) -> dict[str, float]:
    return {m.group(1).decode(): float(m.group(2)) for m in rx.finditer(body)}


def series_by_family(body: bytes) -> dict[str, dict[str, int]]:
    """Samples per metric family in an exposition: ``{family: {"samples", "node", "job"}}``.

    ``node``/``job`` count the samples carrying a ``node``/``job_id`` label. The family is the name of the
    preceding ``# TYPE`` line (so histogram ``_bucket``/``_sum``/``_count`` lines count under their family).
    """
    fams: dict[str, dict[str, int]] = defaultdict(lambda: {"samples": 0, "node": 0, "job": 0})
    family = ""
    for line in body.split(b"\n"):
        if not line:
            continue
        if line[0] == 35:  # '#'
            if line.startswith(b"# TYPE "):
                family = line.split(b" ")[2].decode()
            continue
        f = fams[family]
        f["samples"] += 1
        brace = line.find(b"{")
        if brace >= 0:
            if b'{node="' in line or b',node="' in line:
                f["node"] += 1
            if b'{job_id="' in line or b',job_id="' in line:
                f["job"] += 1
    return dict(fams)


GROUPS = (
    ("slurm_node (per node)", "nomade_slurm_node_"),
    ("slurm_partition", "nomade_slurm_partition_"),
    ("slurm_queue", "nomade_slurm_queue_"),
    ("slurm_job per job", None),
    ("slurm_job aggregates", "nomade_slurm_job_"),
    ("slurm_accounting", "nomade_slurm_accounting_"),
    ("self (collector/exporter)", "nomade_collector_|nomade_exporter_"),
)


def group_of(family: str, stats: dict[str, int]) -> str:
    """The report group of a family (per-job families are those whose samples carry ``job_id``)."""
    if stats["job"]:
        return "slurm_job per job"
    for name, prefix in GROUPS:
        if prefix and any(family.startswith(p) for p in prefix.split("|")):
            return name
    return "other"


# --- fake SLURM commands -------------------------------------------------------------------------------------


def fake_commands(bindir: Path, files: dict[str, Path], sacct_argv: list[str], log: Path) -> None:
    """Write fake ``squeue``/``scontrol``/``sacct``/``sinfo`` into ``bindir``.

    Each is a ``/bin/sh`` script: a ``case`` on ``$*`` whose branches ``exec cat`` the pre-generated output
    for the exact argv the collector runs; any other argv is appended to ``log`` and fails (exit 2), so a
    collector that changed its command line shows up as ``up 0`` plus a logged line, never as silent data.
    """
    cases: dict[str, list[tuple[list[str], Path]]] = {"squeue": [], "scontrol": [], "sacct": [], "sinfo": []}
    cases["squeue"].append((list(SQUEUE_ARGV), files["squeue"]))
    cases["scontrol"].append((list(NODES_ARGV), files["nodes"]))
    cases["scontrol"].append((list(PARTITIONS_ARGV), files["partitions"]))
    cases["sacct"].append((sacct_argv, files["sacct"]))
    bindir.mkdir(parents=True, exist_ok=True)
    for cmd, items in cases.items():
        lines = ["#!/bin/sh", 'case "$*" in']
        for argv, path in items:
            assert os.path.basename(argv[0]) == cmd, argv
            lines.append(f"  {shlex.quote(' '.join(argv[1:]))}) exec cat {shlex.quote(str(path))} ;;")
        lines += [
            "esac",
            f'printf "%s\\n" "$0 $*" >> {shlex.quote(str(log))}',
            f'echo "fake {cmd}: unexpected arguments: $*" >&2',
            "exit 2",
        ]
        p = bindir / cmd
        p.write_bytes(("\n".join(lines) + "\n").encode())
        p.chmod(0o755)


def sacct_argv(options: dict[str, Any]) -> list[str]:
    """The argv the accounting collector runs with these options (asked from the collector itself)."""
    ctx = CollectorContext(runner=CommandRunner(), options=options, state_dir=Path(tempfile.gettempdir()))
    return SlurmAccountingCollector(ctx).argv()


def toml_config(options: dict[str, dict[str, Any]]) -> str:
    """A TOML text with one ``[collector.<name>]`` table per entry (numbers only)."""
    out = []
    for name, opts in options.items():
        out.append(f"[collector.{name}]")
        out.extend(f"{k} = {v!r}" for k, v in opts.items())
    return "\n".join(out) + "\n"


# --- one exporter run ----------------------------------------------------------------------------------------


class Exporter:
    """The real exporter as a subprocess (context manager: started on enter, SIGTERM on exit)."""

    def __init__(self, args: list[str], env: dict[str, str], logfile: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [exporter_path(), "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", "warning", *args]
        self.env = env
        self.logfile = logfile
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Exporter:
        self._log = self.logfile.open("ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}: see {self.logfile}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("exporter did not start listening within 60 s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    @property
    def pid(self) -> int:
        """The exporter's process id."""
        assert self.proc is not None
        return self.proc.pid


def run_controller(
    workdir: Path,
    files: dict[str, Path],
    variant: str,
    window_jobs: int,
    scrapes: int,
    scrape_timeout: float,
) -> dict[str, Any]:
    """Run one controller variant and return its figures."""
    acct: dict[str, Any] = {}
    if variant in ("all-jobs", "refresh"):
        acct["max_jobs"] = max(window_jobs, 1)
    if variant == "refresh":
        acct["interval"] = 0
    vdir = workdir / variant
    vdir.mkdir()
    bindir, log = vdir / "bin", vdir / "unexpected-commands.log"
    log.touch()
    fake_commands(bindir, files, sacct_argv(acct), log)
    cfg = vdir / "nomade.toml"
    cfg.write_text(toml_config({"slurm_accounting": acct} if acct else {}))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    args = [
        "--mode",
        "controller",
        "--config",
        str(cfg),
        "--state.dir",
        str(vdir / "state"),
        "--command.cache-ttl",
        "0",
        "--scrape.timeout",
        str(scrape_timeout),
    ]
    walls: list[float] = []
    durations: list[dict[str, float]] = []
    sacct_runs: list[float] = []
    with Exporter(args, env, vdir / "exporter.log") as ex:
        url = ex.url + "/metrics"
        first_wall, body = scrape(url, scrape_timeout + 60)
        first = _floats(_DURATION, body)
        runs_prev = _floats(_RUNS, body).get("sacct", 0.0)
        cpu0 = sum(proc_cpu(ex.pid))
        for _ in range(scrapes):
            wall, body = scrape(url, scrape_timeout + 60)
            walls.append(wall)
            durations.append(_floats(_DURATION, body))
            runs = _floats(_RUNS, body).get("sacct", 0.0)
            sacct_runs.append(runs - runs_prev)
            runs_prev = runs
        cpu1 = sum(proc_cpu(ex.pid))
        mem = proc_status(ex.pid)
        mapped = heavy_mapped(ex.pid)
    up = _floats(_UP, body)
    errors = _floats(_PARSE_ERR, body)
    window = _WINDOW.search(body)
    fams = series_by_family(body)
    exported_jobs = fams.get("nomade_slurm_job_info", {}).get("samples", 0)
    unexpected = log.read_text().splitlines()
    collectors = sorted(first)
    return {
        "variant": variant,
        "accounting_options": acct,
        "first_scrape_s": first_wall,
        "first_collector_s": first,
        "scrapes": scrapes,
        "scrape_s": walls,
        "scrape_median_s": median(walls),
        "scrape_p90_s": quantile(walls, 0.9),
        "steady_collector_median_s": {c: median([d.get(c, math.nan) for d in durations]) for c in collectors},
        "sacct_reruns_in_steady_scrapes": int(sum(sacct_runs)),
        "cpu_s_per_scrape": (cpu1 - cpu0) / scrapes if scrapes else math.nan,
        "peak_rss_bytes": mem.get("VmHWM", 0),
        "rss_bytes": mem.get("VmRSS", 0),
        "exposition_bytes": len(body),
        "samples": sum(f["samples"] for f in fams.values()),
        "families": fams,
        "exported_jobs": exported_jobs,
        "window_jobs": float(window.group(1)) if window else None,
        "collector_up": up,
        "parse_errors": errors,
        "unexpected_commands": unexpected,
        "heavy_mapped": mapped,
    }


def run_size(nodes: int, jobs: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """Generate the workload of one size and run every variant on it."""
    workdir = base / f"{nodes}x{jobs}"
    workdir.mkdir()
    t0 = time.perf_counter()
    w = synth.generate(nodes, jobs, lookback=LOOKBACK - MARGIN, seed=args.seed)
    files = synth.write(w, workdir / "data")
    gen_s = time.perf_counter() - t0
    sizes = {k: p.stat().st_size for k, p in files.items()}
    del w  # the texts are on disk now; keep this process small
    large = jobs >= 100_000
    scrapes = args.scrapes_large if large else args.scrapes
    result: dict[str, Any] = {
        "nodes": nodes,
        "jobs": jobs,
        "generate_s": gen_s,
        "output_bytes": sizes,
        "variants": [],
    }
    print(
        f"\n## {nodes} nodes / {jobs} jobs  (synthetic outputs generated in {gen_s:.1f} s: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
        + ")",
        flush=True,
    )
    for variant in args.variants_large if large else args.variants:
        n = args.refresh_scrapes if variant == "refresh" else scrapes
        r = run_controller(workdir, files, variant, jobs, n, args.scrape_timeout)
        result["variants"].append(r)
        print(
            f"   {variant}: first scrape {r['first_scrape_s']:.2f} s, median {r['scrape_median_s']:.2f} s "
            f"over {n} scrapes, peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, {r['samples']} samples",
            flush=True,
        )
    if args.profile:
        result["profile"] = profile_collectors(workdir, files, jobs)
    return result


# --- profile -------------------------------------------------------------------------------------------------


def _pstats(prof: cProfile.Profile, sort: str, restrict: str | None, n: int) -> str:
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).sort_stats(sort)
    if restrict:
        st.print_stats(restrict, n)
    else:
        st.print_stats(n)
    keep = []
    for ln in buf.getvalue().splitlines():
        if not ln.strip() or ln.lstrip().startswith(("Ordered by", "List reduced", "function calls")):
            continue
        keep.append(ln.replace(str(ROOT) + "/", "").replace(os.path.dirname(os.__file__) + "/", "<stdlib>/"))
    return "\n".join(keep)


def _hwm() -> int:
    return proc_status(os.getpid()).get("VmHWM", 0)


def profile_collectors(workdir: Path, files: dict[str, Path], jobs: int) -> dict[str, str]:
    """Profile (cProfile) the SLURM collectors in this process on one size's outputs (``all-jobs`` options).

    Each controller collector's ``collect()`` is called directly (cold: commands run and parsed, finished jobs
    counted into a fresh store); the accounting collector is then called once more with its sacct output
    cached (steady). Finally the whole scrape path in the calling thread (``ScrapeOrchestrator.collect`` - the
    collectors themselves run in its worker threads and appear only as a wait - and ``generate_latest``) is
    profiled. Prints the top functions by own time and the project's functions by cumulative time, and the
    growth of this process's peak RSS during each step.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from nomade.exporter.cli import build
    from nomade.exporter.collectors import collector_classes
    from nomade.exporter.config import ExporterConfig

    # interval 3600: the steady call must find sacct cached even when the cold call took over a minute.
    opts = {"slurm_accounting": {"max_jobs": max(jobs, 1), "interval": 3600}}
    bindir, log = workdir / "profile-bin", workdir / "profile-unexpected.log"
    fake_commands(bindir, files, sacct_argv(opts["slurm_accounting"]), log)
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bindir}:{old_path}"
    out: dict[str, str] = {}

    def record(label: str, prof: cProfile.Profile, wall: float, hwm0: int) -> None:
        grow = (_hwm() - hwm0) / 2**20
        text = (
            f"### {label}: {wall:.2f} s in-process under cProfile, peak RSS +{grow:.0f} MiB\n"
            f"-- top by own time (tottime):\n{_pstats(prof, 'tottime', None, 12)}\n"
            f"-- project functions by cumulative time:\n{_pstats(prof, 'cumulative', 'exporter/', 14)}"
        )
        out[label] = text
        print("\n" + text, flush=True)

    try:
        runner = CommandRunner(ttl=0)
        for name, cls in collector_classes().items():
            if cls.mode != "controller":
                continue
            ctx = CollectorContext(runner=runner, options=opts.get(name, {}), state_dir=workdir / "profile-state")
            c = cls(ctx)
            for phase in ("cold", "steady") if name == "slurm_accounting" else ("cold",):
                prof = cProfile.Profile()
                s = c.new_set()
                hwm0 = _hwm()
                t0 = time.perf_counter()
                prof.enable()
                c.collect(s)
                prof.disable()
                record(f"{name} collect() {phase}", prof, time.perf_counter() - t0, hwm0)
                del s
            c.close()
        cfg = ExporterConfig(
            mode="controller",
            state_dir=workdir / "profile-state2",
            cache_ttl=0.0,
            scrape_timeout=3600.0,
            collectors=opts,
        )
        orch = build(cfg)
        list(orch.collect())  # cold run, not profiled: counts the window into the store

        class _Static:
            def __init__(self) -> None:
                self.families: list[Any] = []

            def collect(self) -> list[Any]:
                return self.families

        static = _Static()
        reg = CollectorRegistry(auto_describe=False)
        reg.register(static)
        prof = cProfile.Profile()
        hwm0 = _hwm()
        t0 = time.perf_counter()
        prof.enable()
        static.families = list(orch.collect())
        body = generate_latest(reg)
        prof.disable()
        record(
            f"scrape path in the HTTP thread ({len(body) / 1e6:.0f} MB exposition)",
            prof,
            time.perf_counter() - t0,
            hwm0,
        )
        orch.close()
    finally:
        os.environ["PATH"] = old_path
    return out


# --- node mode -----------------------------------------------------------------------------------------------


def run_node(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """The exporter in node mode on this machine: idle baseline, then N scrapes at a fixed interval."""
    ndir = base / "node"
    ndir.mkdir()
    exargs = ["--mode", "node", "--state.dir", str(ndir / "state")]
    with Exporter(exargs, dict(os.environ), ndir / "exporter.log") as ex:
        url = ex.url + "/metrics"
        first_wall, body = scrape(url, 120)
        time.sleep(args.node_interval)
        idle = args.node_scrapes * args.node_interval
        c0 = proc_cpu(ex.pid)
        time.sleep(idle)
        c1 = proc_cpu(ex.pid)
        walls = []
        t_start = time.monotonic()
        for i in range(args.node_scrapes):
            target = t_start + i * args.node_interval
            time.sleep(max(0.0, target - time.monotonic()))
            wall, body = scrape(url, 120)
            walls.append(wall)
        time.sleep(max(0.0, t_start + args.node_scrapes * args.node_interval - time.monotonic()))
        c2 = proc_cpu(ex.pid)
        mem = proc_status(ex.pid)
        mapped = heavy_mapped(ex.pid)
    fams = series_by_family(body)
    idle_cpu = (c1[0] - c0[0]) + (c1[1] - c0[1])
    busy_cpu = (c2[0] - c1[0]) + (c2[1] - c1[1])
    n = args.node_scrapes
    return {
        "scrapes": n,
        "interval_s": args.node_interval,
        "first_scrape_s": first_wall,
        "scrape_median_s": median(walls),
        "scrape_p90_s": quantile(walls, 0.9),
        "collector_s": _floats(_DURATION, body),
        "collector_up": _floats(_UP, body),
        "parse_errors": _floats(_PARSE_ERR, body),
        "cpu_s_per_scrape": busy_cpu / n,
        "cpu_s_per_scrape_net_of_idle": (busy_cpu - idle_cpu) / n,
        "idle_cpu_s_per_s": idle_cpu / idle if idle else math.nan,
        "rss_bytes": mem.get("VmRSS", 0),
        "peak_rss_bytes": mem.get("VmHWM", 0),
        "samples": sum(f["samples"] for f in fams.values()),
        "families": fams,
        "heavy_mapped": mapped,
    }


# --- report --------------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width table (first column left-aligned, others right-aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), sep, *(fmt(r) for r in rows)])


def _s(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _mib(x: float) -> str:
    return f"{x / 2**20:.0f}"


def report(results: dict[str, Any]) -> str:
    """The human-readable report of all figures."""
    out: list[str] = []
    env = results["environment"]
    out.append(f"# NØMADE exporter benchmark  ({env['cpus']} CPUs, Python {env['python']}, {env['platform']})")
    for size in results["controller"]:
        nodes, jobs = size["nodes"], size["jobs"]
        if not size["variants"]:
            continue
        out.append(
            f"\n## Controller mode: {nodes} nodes / {jobs} jobs in squeue / {jobs} finished jobs in the sacct window"
        )
        collectors = sorted({c for v in size["variants"] for c in v["first_collector_s"]})
        headers = [
            "variant",
            "scrapes",
            "first scrape s",
            "median s",
            "p90 s",
            "CPU s/scrape",
            "peak RSS MiB",
            "samples",
            "per-job jobs",
        ]
        rows = []
        for v in size["variants"]:
            rows.append(
                [
                    v["variant"],
                    str(v["scrapes"]),
                    _s(v["first_scrape_s"]),
                    _s(v["scrape_median_s"]),
                    _s(v["scrape_p90_s"]),
                    _s(v["cpu_s_per_scrape"]),
                    _mib(v["peak_rss_bytes"]),
                    str(v["samples"]),
                    str(v["exported_jobs"]),
                ]
            )
        out.append(table(headers, rows))
        out.append("\nCollection time per collector (nomade_collector_duration_seconds): first scrape / steady median")
        headers = ["variant", *collectors]
        rows = []
        for v in size["variants"]:
            rows.append(
                [v["variant"]]
                + [
                    f"{_s(v['first_collector_s'].get(c))} / {_s(v['steady_collector_median_s'].get(c))}"
                    for c in collectors
                ]
            )
        out.append(table(headers, rows))
        notes = []
        for v in size["variants"]:
            if v["sacct_reruns_in_steady_scrapes"]:
                notes.append(
                    f"{v['variant']}: sacct re-run in {v['sacct_reruns_in_steady_scrapes']} of "
                    f"{v['scrapes']} steady scrapes"
                )
            bad_up = [c for c, x in v["collector_up"].items() if x != 1]
            bad_err = {c: int(x) for c, x in v["parse_errors"].items() if x}
            if bad_up:
                notes.append(f"{v['variant']}: WARNING collectors down: {', '.join(bad_up)}")
            if bad_err:
                notes.append(f"{v['variant']}: WARNING parse errors: {bad_err}")
            if v["unexpected_commands"]:
                notes.append(f"{v['variant']}: WARNING unexpected command lines: {v['unexpected_commands'][:3]}")
            if v["window_jobs"] is not None and v["window_jobs"] != jobs:
                notes.append(f"{v['variant']}: window jobs {v['window_jobs']:.0f} (expected {jobs})")
            if v["heavy_mapped"]:
                notes.append(f"{v['variant']}: WARNING heavy libraries mapped: {v['heavy_mapped'][:3]}")
        if notes:
            out.append("\n" + "\n".join("  * " + n for n in notes))
        # Series by group for every variant, then by family for the last (largest) variant.
        groups = [g for g, _ in GROUPS] + ["other"]
        headers = ["series group", *(v["variant"] for v in size["variants"]), "per node", "per 1k exported jobs"]
        rows = []
        last = size["variants"][-1]
        for g in groups:
            counts = []
            for v in size["variants"]:
                counts.append(sum(f["samples"] for fam, f in v["families"].items() if group_of(fam, f) == g))
            if not any(counts):
                continue
            n_last = counts[-1]
            per_node = f"{n_last / nodes:.2f}" if g.startswith("slurm_node") else ""
            per_job = (
                f"{n_last / last['exported_jobs'] * 1000:.0f}"
                if g == "slurm_job per job" and last["exported_jobs"]
                else ""
            )
            rows.append([g, *(str(c) for c in counts), per_node, per_job])
        out.append("\nSeries (samples in the exposition) by group; per-node / per-1k-jobs from the last variant")
        out.append(table(headers, rows))
        rows = []
        for fam, f in sorted(last["families"].items(), key=lambda kv: (-kv[1]["samples"], kv[0])):
            if not fam.startswith("nomade_slurm"):
                continue
            per_node = f"{f['samples'] / nodes:.3f}" if f["node"] else ""
            per_job = f"{f['samples'] / last['exported_jobs'] * 1000:.0f}" if f["job"] and last["exported_jobs"] else ""
            rows.append([fam, str(f["samples"]), per_node, per_job])
        out.append(f"\nSeries by family ({last['variant']} variant)")
        out.append(table(["family", "samples", "per node", "per 1k jobs"], rows))
    node = results.get("node")
    if node:
        out.append(f"\n## Node mode on this machine ({node['scrapes']} scrapes every {node['interval_s']:g} s)")
        headers = [
            "first scrape s",
            "median s",
            "p90 s",
            "CPU s/scrape",
            "CPU s/scrape net of idle",
            "idle CPU s/s",
            "RSS MiB",
            "peak RSS MiB",
            "samples",
        ]
        out.append(
            table(
                headers,
                [
                    [
                        _s(node["first_scrape_s"]),
                        _s(node["scrape_median_s"]),
                        _s(node["scrape_p90_s"]),
                        f"{node['cpu_s_per_scrape']:.4f}",
                        f"{node['cpu_s_per_scrape_net_of_idle']:.4f}",
                        f"{node['idle_cpu_s_per_s']:.4f}",
                        _mib(node["rss_bytes"]),
                        _mib(node["peak_rss_bytes"]),
                        str(node["samples"]),
                    ]
                ],
            )
        )
        rows = [
            [c, _s(s), str(int(node["collector_up"].get(c, 0))), str(int(node["parse_errors"].get(c, 0)))]
            for c, s in sorted(node["collector_s"].items())
        ]
        out.append("\n" + table(["collector", "duration s", "up", "parse errors"], rows))
    heavy = results["heavy"]
    out.append("\n## Heavy imports (numpy, pandas, torch)")
    out.append(f"  modules after importing every exporter module: {', '.join(heavy['imported']) or 'none'}")
    mapped = sorted(
        {p for s in results["controller"] for v in s["variants"] for p in v["heavy_mapped"]}
        | set((node or {}).get("heavy_mapped", []))
    )
    out.append(f"  shared objects mapped into the exporter processes: {', '.join(mapped) or 'none'}")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1000x20000,10000x200000"`` -> ``[(1000, 20000), (10000, 200000)]``."""
    out = []
    for item in text.split(","):
        n, _, j = item.strip().lower().partition("x")
        out.append((int(n), int(j)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 when the exporter did not run cleanly)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000x20000,10000x200000", help="NODESxJOBS list (default: both sizes)")
    p.add_argument(
        "--variants",
        default="default,all-jobs,refresh",
        help="controller variants: default, all-jobs, refresh (comma-separated)",
    )
    p.add_argument("--scrapes", type=int, default=10, help="steady scrapes per variant (default 10)")
    p.add_argument(
        "--variants-large",
        default="default,all-jobs",
        help="variants for sizes of 100k jobs or more (default: default,all-jobs; each scrape takes 30-90 s there)",
    )
    p.add_argument(
        "--scrapes-large", type=int, default=1, help="steady scrapes for sizes of 100k jobs or more (default 1)"
    )
    p.add_argument("--refresh-scrapes", type=int, default=3, help="scrapes of the refresh variant (default 3)")
    p.add_argument(
        "--scrape-timeout",
        type=float,
        default=300.0,
        help="exporter --scrape.timeout for the benchmark (default 300 s, so slow collections finish)",
    )
    p.add_argument("--node-scrapes", type=int, default=20, help="node-mode scrapes (default 20)")
    p.add_argument("--node-interval", type=float, default=1.0, help="seconds between node-mode scrapes (default 1)")
    p.add_argument("--no-node", action="store_true", help="skip node mode")
    p.add_argument("--no-controller", action="store_true", help="skip controller mode")
    p.add_argument("--profile", action="store_true", help="also cProfile each SLURM collector in-process per size")
    p.add_argument("--seed", type=int, default=1, help="synthetic workload seed")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--keep", type=Path, help="keep the work directory (outputs, logs) here instead of a temp dir")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.variants_large = [v.strip() for v in args.variants_large.split(",") if v.strip()]
    unknown = set(args.variants + args.variants_large) - {"default", "all-jobs", "refresh"}
    if unknown:
        p.error(f"unknown variant(s): {', '.join(sorted(unknown))}")

    results: dict[str, Any] = {
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "exporter": exporter_path(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "controller": [],
        "node": None,
    }
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep:
            base = args.keep
            base.mkdir(parents=True, exist_ok=True)
        else:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nomade-bench-")))
        if not args.no_controller:
            for nodes, jobs in parse_sizes(args.sizes):
                results["controller"].append(run_size(nodes, jobs, args, base))
        if not args.no_node:
            print("\n## node mode ...", flush=True)
            results["node"] = run_node(args, base)
    results["heavy"] = {"imported": heavy_imported()}
    results["total_s"] = time.perf_counter() - t0
    print("\n" + report(results))
    print(f"\n(total benchmark time {results['total_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
        print(f"figures written to {args.json}")
    clean = all(
        all(x == 1 for x in v["collector_up"].values())
        and not any(v["parse_errors"].values())
        and not v["unexpected_commands"]
        for s in results["controller"]
        for v in s["variants"]
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
