"""A :class:`~nomade.exporter.runner.CommandRunner` whose commands are rendered from a simulated cluster.

:class:`SimRunner` keeps everything of the base class (the TTL cache and single flight of
:meth:`CommandRunner.run`, error counting) and replaces only :meth:`_execute`: instead of spawning a process it
renders the command's stdout from the current :class:`~nomade.sim.state.ClusterState` with
:mod:`nomade.sim.render_slurm` (or :func:`nomade.sim.render_node.nvidia_smi`). Its clock is the simulated clock,
so cache lifetimes and sacct's ``now-<seconds>`` windows follow simulated time, not wall time.

Accepted command lines (the real collectors' forms; anything else raises ``CommandError(argv, "missing")``, as
a missing binary would, so a collector reports its source as unavailable rather than reading a wrong text):

* ``squeue --all --Format=<field>:<0x1F>,...`` (any fields of :data:`~nomade.sim.render_slurm.SQUEUE_TITLES`);
* ``scontrol [--details|-d] [--oneliner|-o] show node|partition|reservation|licenses`` (plural forms too);
* ``sacct`` with ``--format=<SACCT_FIELDS>``, ``--delimiter=<0x1F>``, ``--parsable2``, ``--noheader``,
  ``--allusers``, an optional ``--state=`` list and ``--starttime``/``--endtime`` (``-S``/``-E``) given as
  ``now``, ``now-<n>[seconds|minutes|hours|days|weeks]`` (sacct(1) "Valid time formats"), ``YYYY-MM-DD[THH:MM[:SS]]``
  local time or Unix seconds; defaults are 00:00 of the current day and ``now``;
* ``sshare --all --parsable2 --format=<SSHARE_FIELDS>``, ``sprio --format=<SPRIO_FORMAT>``, ``sdiag`` (text;
  ``--json`` is refused), ``sacctmgr --readonly --parsable2 show associations format=<ASSOC_FIELDS>``;
* ``nvidia-smi ...`` for the runner's ``node`` (refused when the runner has no node).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS
from nomade.exporter.parsers.sacctmgr import ASSOC_ARGV
from nomade.exporter.parsers.slurm_outcome import STATE_CODES
from nomade.exporter.parsers.sprio import SPRIO_FORMAT
from nomade.exporter.parsers.sshare import SSHARE_FIELDS
from nomade.exporter.runner import CommandError, CommandResult, CommandRunner

from . import render_slurm as rs
from .state import ClusterState

_REL = re.compile(r"^now(?:-(\d+)(seconds|minutes|hours|days|weeks)?)?$", re.IGNORECASE)
_UNIT_S = {None: 1, "seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400}
_ABS_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def parse_sacct_time(text: str, now: float) -> float:
    """A sacct ``--starttime``/``--endtime`` value as Unix seconds, relative to the simulated ``now``.

    Raises:
        ValueError: for a form not listed in the module docstring.

    """
    t = text.strip()
    m = _REL.match(t)
    if m:
        n = int(m.group(1) or 0)
        return now - n * _UNIT_S[m.group(2).lower() if m.group(2) else None]
    if t.isdigit():
        return float(t)
    for fmt in _ABS_FORMATS:
        try:
            return datetime.strptime(t, fmt).timestamp()
        except ValueError:
            continue
    raise ValueError(f"unsupported sacct time {text!r}")


def _day_start(now: float) -> float:
    lt = time.localtime(now)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


_SACCT_VALUED = frozenset({"-S", "-E", "--starttime", "--endtime", "-s", "--state", "-o", "--format"})


def _sacct(state: ClusterState, args: Sequence[str]) -> str:
    start: float | None = None
    end: float | None = None
    states: set[str] | None = None
    flags: set[str] = set()
    fmt = delim = None
    pending = list(args)
    while pending:
        a = pending.pop(0)
        key, eq, val = a.partition("=")
        if not eq:
            if a not in _SACCT_VALUED:
                flags.add(a)
                continue
            if not pending:
                raise ValueError(f"sacct: {a} without a value")
            val = pending.pop(0)
        if key in ("-S", "--starttime"):
            start = parse_sacct_time(val, state.now)
        elif key in ("-E", "--endtime"):
            end = parse_sacct_time(val, state.now)
        elif key in ("-s", "--state"):
            states = {STATE_CODES.get(s.upper(), s.upper()) for s in val.split(",") if s}
        elif key in ("-o", "--format"):
            fmt = val
        elif key == "--delimiter":
            delim = val
        else:
            raise ValueError(f"unsupported sacct option {a!r}")
    if fmt != ",".join(SACCT_FIELDS) or delim != SACCT_DELIMITER:
        raise ValueError("sacct: only the accounting collector's --format and --delimiter are rendered")
    if not flags <= {"--allusers", "-a", "--parsable2", "-P", "--noheader", "-n"} or not (
        {"--parsable2", "-P"} & flags and {"--noheader", "-n"} & flags
    ):
        raise ValueError(f"sacct: unsupported flags {sorted(flags)}")
    lo = _day_start(state.now) if start is None else start
    hi = state.now if end is None else end
    text = rs.sacct(state, lo, hi)
    if states is None:
        return text
    # A --state filter keeps the jobs whose (long) state is listed; step lines follow their job.
    keep_ids = {str(j.job_id) for j in state.finished_between(lo, hi) if j.state in states}
    lines = [ln for ln in text.splitlines() if ln.split(SACCT_DELIMITER, 1)[0].split(".", 1)[0] in keep_ids]
    return "\n".join(lines) + ("\n" if lines else "")


def _scontrol(state: ClusterState, args: Sequence[str]) -> str:
    words = [a for a in args if a not in ("--details", "-d", "--oneliner", "-o")]
    if len(words) != 2 or words[0] != "show":
        raise ValueError("scontrol: only 'show <entity>' is rendered")
    what = words[1].lower()
    if what in ("node", "nodes"):
        return rs.scontrol_nodes(state)
    if what in ("partition", "partitions"):
        return rs.scontrol_partitions(state)
    if what in ("reservation", "reservations", "res"):
        return rs.scontrol_reservations(state)
    if what in ("lic", "license", "licenses"):
        return rs.scontrol_licenses(state)
    raise ValueError(f"scontrol show {what}: not rendered")


class SimRunner(CommandRunner):
    """Command runner over a simulated cluster (see the module docstring for the accepted command lines).

    Args:
        state: returns the current :class:`ClusterState` (called on every run, so the simulation may replace it).
        node: the node this runner stands on, for node commands (``nvidia-smi``); ``None`` on the controller.
        ttl: default cache lifetime in SIMULATED seconds.

    ``CommandResult.finished_at`` is the simulated ``now`` of the rendering; ``duration`` the real render time.
    Rendering is synchronous and pure, so the ``timeout`` argument is ignored.

    """

    def __init__(self, state: Callable[[], ClusterState], node: str | None = None, ttl: float = 15.0) -> None:
        super().__init__(ttl=ttl, clock=lambda: state().now)
        self.state = state
        self.node = node

    def _execute(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        st = self.state()
        began = time.perf_counter()
        try:
            stdout = self._render(st, argv)
        except CommandError:
            raise
        except (ValueError, KeyError, IndexError) as exc:
            raise CommandError(argv, "missing", f"simulated cluster: {exc}") from exc
        return CommandResult(argv, stdout, "", time.perf_counter() - began, st.now)

    def _render(self, st: ClusterState, argv: tuple[str, ...]) -> str:
        if not argv:
            raise ValueError("empty command line")
        cmd = os.path.basename(argv[0])
        args = argv[1:]
        if cmd == "squeue":
            if "--all" not in args:
                raise ValueError("squeue without --all")
            if any(a != "--all" and not a.startswith("--Format=") for a in args):
                raise ValueError(f"squeue: unsupported arguments {args}")
            return rs.squeue(st, argv)
        if cmd == "scontrol":
            return _scontrol(st, args)
        if cmd == "sacct":
            return _sacct(st, args)
        if cmd == "sshare":
            if list(args) != ["--all", "--parsable2", "--format=" + ",".join(SSHARE_FIELDS)]:
                raise ValueError(f"sshare: unsupported arguments {args}")
            return rs.sshare(st)
        if cmd == "sprio":
            if list(args) != [f"--format={SPRIO_FORMAT}"]:
                raise ValueError(f"sprio: unsupported arguments {args}")
            return rs.sprio(st)
        if cmd == "sdiag":
            if args:
                raise ValueError(f"sdiag: unsupported arguments {args} (only the text report is simulated)")
            return rs.sdiag(st)
        if cmd == "sacctmgr":
            if tuple(args) != ASSOC_ARGV[1:]:
                raise ValueError(f"sacctmgr: unsupported arguments {args}")
            return rs.sacctmgr_associations(st)
        if cmd == "nvidia-smi":
            if self.node is None:
                raise ValueError("nvidia-smi on a runner without a node")
            try:
                from nomade.sim.render_node import nvidia_smi  # lazy: render_node is optional for SLURM commands
            except ImportError as exc:
                raise ValueError(f"nvidia-smi renderer unavailable: {exc}") from exc
            return nvidia_smi(st, self.node, argv)
        raise ValueError(f"{cmd}: not a simulated command")
