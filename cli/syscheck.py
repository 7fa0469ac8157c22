"""``nomade syscheck``: does this machine have what NØMADE needs? (the seed's system check, redone for the exporter).

Each check gives a :class:`Check` (name, status ``ok|warn|fail|skip``, detail, required). The exit status is 1 when a
*required* check failed, 0 otherwise (warnings and optional failures are printed, never fatal).

Checks, in order:

* ``python``: interpreter >= 3.11 (``requires-python`` of pyproject.toml). Required.
* ``slurm.sinfo``, ``slurm.squeue``, ``slurm.scontrol``: the command is on ``PATH`` and answers (``sinfo -h -o %P``,
  ``squeue -h -o %i``, ``scontrol ping``) within the timeout. Required in ``controller`` and ``all`` modes (the
  controller collectors run them); in ``node`` mode they are not run at all and shown as ``skip`` (no node collector
  runs a SLURM command).
* ``slurm.sacct``: ``sacct`` answers a one-minute window from slurmdbd (``sacct -n -X -o JobID -S <now-60s>``).
  Required in controller/all modes: ``slurm_accounting`` counts finished jobs from it (DESIGN.md, job outcome model).
  ``skip`` in node mode.
* ``sysstat``: ``iostat``/``mpstat``/``vmstat``/``sar`` on PATH. Optional, information only: NØMADE computes the
  sysstat figures itself from /proc (``diskstats``, ``cpu``, ``memory`` collectors), so "ok" either way.
* ``gpu``: ``nvidia-smi -L`` answering, and NVML usable when the ``pynvml`` bindings import: ``nvmlInit()`` then
  ``nvmlDeviceGetCount()`` (then ``nvmlShutdown()``), because the bindings import without a driver and only
  ``nvmlInit`` finds out (``NVMLError`` "NVML Shared Library Not Found", "Driver Not Loaded"...; NVML API reference,
  Initialization and Cleanup). Optional: ``warn`` when NVML cannot be initialised, ``skip`` without a GPU stack.
  ``skip`` in controller mode (only the node ``gpu`` collector uses it).
* ``nfs``: NFS mounts listed in ``/proc/self/mountinfo``. Optional (``skip`` when there are none, and in controller
  mode: the ``nfs`` collector runs on the nodes).
* ``proc``: ``/proc/stat``, ``/proc/meminfo``, ``/proc/diskstats`` readable. Required (node collectors).
* ``proc.pressure``: ``/proc/pressure/{cpu,memory,io}`` readable (PSI). Optional: without it (kernel < 4.20 or
  booted without ``psi=1``) the memory collector omits its pressure series.
* ``proc.pid_io``: can the ``job_io`` collector read ``/proc/<pid>/io`` of other users' processes? That needs root
  or CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH (proc(5), ``/proc/pid/io``: ptrace access mode
  PTRACE_MODE_READ_FSCREDS), which deploy/systemd/nomade-exporter-node.service grants the ``nomade`` user as
  *ambient* capabilities (``AmbientCapabilities=``). The check reads the effective capability set (``CapEff`` of
  ``/proc/self/status``, a hex mask of capability(7) bit numbers) and names the effective user. ``ok`` when root or
  both capabilities are effective; then ``/proc/<pid>/io`` of a process owned by another user (the first such pids
  in ``/proc``) is read as well: a failure despite the capabilities is a ``warn`` with the errno, no such process
  visible is still ``ok``. Otherwise ``warn``: ``runuser``/``su`` start a shell without the unit's ambient
  capabilities, so as ``runuser -u nomade`` the warning is expected; ``setpriv`` with ``--ambient-caps`` (the
  detail gives the command line) checks like the unit. Optional. ``skip`` in controller mode.
* ``sys``: ``/sys/fs/cgroup`` readable. Optional (``job_usage`` reads job cgroups from there).
* ``prometheus``: ``GET <url>/-/ready`` answers 200. Required when ``--prometheus`` is given, else ``skip`` (in
  ``analytics`` mode the URL defaults to the configuration's ``prometheus_url`` and is always checked).
* ``config.exporter``, ``config.analytics``, ``config.monitoring``: the ``--config`` file's sections parse with the
  component's loader (:func:`nomade.exporter.config.load_config`, :func:`nomade.analytics.config.load_config`,
  :func:`nomade.alerting.config.load_monitoring_config`). Required when ``--config`` is given, else ``skip``. One
  file may hold every component's tables; it is split by table (:func:`split_config`) because the analytics and
  monitoring loaders refuse tables that are not theirs.

``--mode analytics`` (the host of ``nomade-analytics``) runs no SLURM and no /proc check, only:

* ``python`` (as above).
* ``analytics.extras``: ``numpy``, ``pandas``, ``sklearn``, ``torch``, ``torch_geometric`` import (the ``ml`` extra,
  :data:`ANALYTICS_MODULES`); the check names the missing ones. Required while ``[analytics.risk] enabled`` (the
  default); numpy is required in any case (the trend watches use it).
* ``prometheus``: ``--prometheus``, else the configuration's ``prometheus_url`` (default ``http://127.0.0.1:9090``),
  with its ``[analytics.basic_auth]``, ``bearer_token_file``, ``ca_file`` and ``insecure_skip_verify``. Required.
* ``config.analytics``: the ``--config`` file's analytics tables, parsed by :func:`nomade.analytics.config.load_config`
  (``skip`` without ``--config``: the built-in defaults are checked below).
* ``analytics.store``, ``analytics.model_dir``: the training store's directory and the model registry are writable
  (or can be created) by the effective user, whose name the detail gives. Required while risk is enabled. A
  directory under ``/var/lib/nomade/analytics`` that does not exist yet is only a warning (systemd creates it,
  ``StateDirectory=`` of deploy/systemd/nomade-analytics.service); one outside it is a warning as well, even
  when writable, because ``ProtectSystem=strict`` keeps it read-only for the service unless added to
  ``ReadWritePaths=``.

No shell: every command is an argv list run by :class:`nomade.exporter.runner.CommandRunner` (timeout, process group
killed on expiry, ``LC_ALL=C``). Commands, PATH lookups, file roots, the HTTP GET and the clock are injectable so the
checks are unit-testable without SLURM.
"""

from __future__ import annotations

import argparse
import base64
import errno
import importlib
import json
import os
import pwd
import re
import shutil
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nomade.exporter.runner import CommandError, CommandResult, CommandRunner

STATUSES = ("ok", "warn", "fail", "skip")
MODES = ("node", "controller", "all", "analytics")
MIN_PYTHON = (3, 11)
"""``requires-python = ">=3.11"`` in pyproject.toml (tomllib, ``X | Y`` unions at runtime)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds per command and per HTTP request: a healthy slurmctld answers in well under a second."""
SYSSTAT_TOOLS = ("iostat", "mpstat", "vmstat", "sar")
NFS_FSTYPES = ("nfs", "nfs4")
COMPONENT_TABLES: dict[str, tuple[str, ...]] = {
    "exporter": ("exporter", "collector"),
    "analytics": ("analytics",),
    "monitoring": ("monitoring", "alertmanager", "grafana"),
}
"""Top-level TOML tables owned by each component's loader."""
ANALYTICS_MODULES = ("numpy", "pandas", "sklearn", "torch", "torch_geometric")
"""Import names of the ``ml`` extra (pyproject.toml) that the risk engine needs (:mod:`nomade.analytics.risk`)."""
SERVICE_STATE_DIR = Path("/var/lib/nomade/analytics")
"""``StateDirectory=nomade/analytics`` and ``ReadWritePaths=`` of deploy/systemd/nomade-analytics.service: systemd
creates it for the service's user, and it is the only path the service may write (``ProtectSystem=strict``)."""
PID_IO_TRIES = 20
"""Other users' processes tried for ``proc.pid_io`` before giving up (a process may exit between scan and read)."""
CAP_DAC_READ_SEARCH = 2
"""Bit number of CAP_DAC_READ_SEARCH in the capability masks of ``/proc/<pid>/status`` (capability(7),
``linux/capability.h``)."""
CAP_SYS_PTRACE = 19
"""Bit number of CAP_SYS_PTRACE (capability(7), ``linux/capability.h``)."""
JOB_IO_CAPS = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE"}
"""What ``job_io`` needs to read other users' ``/proc/<pid>/io`` without being root (the node unit's
``AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE``)."""
SETPRIV_COMMAND = (
    "setpriv --reuid=nomade --regid=nomade --init-groups --inh-caps=+dac_read_search,+sys_ptrace "
    "--ambient-caps=+dac_read_search,+sys_ptrace nomade syscheck --mode node"
)
"""Runs the check as the node unit does: user ``nomade`` with the unit's ambient capabilities (setpriv(1), from
util-linux; an ambient capability must also be inheritable, hence ``--inh-caps``)."""
NODE_ONLY_CHECKS = ("gpu", "nfs", "proc.pid_io")
"""Checks of what only the node collectors use (``gpu``, ``nfs``, ``job_io``): ``skip`` in controller mode."""


class Runner(Protocol):
    """What the checks need of :class:`~nomade.exporter.runner.CommandRunner` (tests pass a fake)."""

    def run(self, argv: Sequence[str], *, timeout: float | None = None, ttl: float | None = None) -> CommandResult:
        """Run ``argv``; raise :class:`~nomade.exporter.runner.CommandError` on failure."""
        ...


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        name: dotted check name (``slurm.sacct``).
        status: one of :data:`STATUSES`.
        detail: one line for the administrator (what was found, or what to do).
        required: a ``fail`` of a required check makes the exit status 1.

    """

    name: str
    status: str
    detail: str
    required: bool = False


def _http_get(
    url: str, timeout: float, *, headers: dict[str, str] | None = None, verify: bool | str = True
) -> tuple[int, str]:
    """``GET url``: ``(HTTP status, first 4 KiB of the body)``.

    Credentials in the URL (``user:password@host``) are sent as basic auth, never in the request line. ``headers``
    are added (e.g. ``Authorization: Bearer ...``); ``verify`` is ``True`` (system CAs), ``False`` (no TLS
    verification) or a CA bundle path.

    Raises:
        OSError: unreachable (:class:`urllib.error.URLError` is one), TLS failure, timeout.

    """
    parts = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if parts.username is not None:  # user:password@host: sent as basic auth, never part of the request line
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    req = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - scheme checked by the caller
    context = None
    if parts.scheme == "https" and verify is not True:
        context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else ssl.create_default_context()
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace") if exc.fp else ""


@dataclass(frozen=True)
class NvmlStatus:
    """What the NVML bindings say on this machine.

    Attributes:
        importable: ``pynvml`` imports (package ``nvidia-ml-py``).
        gpus: ``nvmlDeviceGetCount()`` after a successful ``nvmlInit()``; ``None`` when not importable or when NVML
            could not be initialised.
        error: the ``NVMLError`` message (``"NVML Shared Library Not Found"``: no driver) of ``nvmlInit`` or
            ``nvmlDeviceGetCount``; ``""`` otherwise.

    """

    importable: bool
    gpus: int | None = None
    error: str = ""


def probe_nvml() -> NvmlStatus:
    """Import ``pynvml``; if it imports, ``nvmlInit()``, ``nvmlDeviceGetCount()``, then ``nvmlShutdown()``.

    The bindings are pure Python and import without a driver: only ``nvmlInit`` loads ``libnvidia-ml.so.1`` and
    raises ``NVMLError`` when it cannot (NVML API reference, "Initialization and Cleanup"; every successful
    ``nvmlInit`` is paired with an ``nvmlShutdown``).
    """
    try:
        import pynvml
    except Exception:  # noqa: BLE001 - any import failure means "no NVML bindings"
        return NvmlStatus(False)
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError (or a broken binding): NVML is not usable
        return NvmlStatus(True, None, _exc_message(exc))
    try:
        return NvmlStatus(True, int(pynvml.nvmlDeviceGetCount()))
    except Exception as exc:  # noqa: BLE001 - NVMLError
        return NvmlStatus(True, None, _exc_message(exc))
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - nothing to release when the shutdown itself fails
            pass


def _exc_message(exc: BaseException) -> str:
    return _first_line(str(exc)) or type(exc).__name__


@dataclass
class Environment:
    """The machine as the checks see it (every field injectable for tests).

    Attributes:
        runner: runs argv lists (default: a :class:`CommandRunner` without caching).
        which: PATH lookup (default :func:`shutil.which`).
        proc_root: ``/proc``.
        sys_root: ``/sys``.
        http_get: ``(url, timeout) -> (status code, body)``; raises :class:`OSError` when unreachable.
        clock: Unix seconds (the sacct window).
        version_info: the interpreter version tuple.
        nvml: probes the NVML bindings (default :func:`probe_nvml`).
        euid: the effective user id (default :func:`os.geteuid`).
        owner_uid: uid owning a path (default ``Path.stat().st_uid``; ``/proc/<pid>`` is owned by the process's
            user); raises :class:`OSError` when the path is gone.
        open_error: the :class:`OSError` met reading one byte of a file, or ``None`` when it is readable.
        import_module: imports a module by name (default :func:`importlib.import_module`).
        access: :func:`os.access` (the writability checks).

    """

    runner: Runner = field(default_factory=lambda: CommandRunner(timeout=DEFAULT_TIMEOUT, ttl=0.0))
    which: Callable[[str], str | None] = shutil.which
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    http_get: Callable[[str, float], tuple[int, str]] = _http_get
    clock: Callable[[], float] = time.time
    version_info: tuple[int, ...] = tuple(sys.version_info[:3])
    nvml: Callable[[], NvmlStatus] = probe_nvml
    euid: Callable[[], int] = os.geteuid
    owner_uid: Callable[[Path], int] = field(default=lambda p: p.stat().st_uid)
    open_error: Callable[[Path], OSError | None] = field(default=lambda p: _open_error(p))
    import_module: Callable[[str], Any] = importlib.import_module
    access: Callable[[Path, int], bool] = os.access


def user_label(uid: int) -> str:
    """``name (uid N)`` of a user id, ``uid N`` when the user has no passwd entry."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit]


# -- individual checks -------------------------------------------------------------------------------------------


def check_python(env: Environment) -> Check:
    """Interpreter version against :data:`MIN_PYTHON` (required)."""
    v = ".".join(str(x) for x in env.version_info[:3])
    need = ".".join(str(x) for x in MIN_PYTHON)
    ok = tuple(env.version_info[:2]) >= MIN_PYTHON
    return Check("python", "ok" if ok else "fail", f"Python {v} (requires >= {need})", required=True)


def _command_check(
    env: Environment, name: str, argv: Sequence[str], required: bool, timeout: float, what: str
) -> tuple[Check, str]:
    """Run ``argv`` if it is on PATH: the check and the command's stdout ("" when it did not answer)."""
    if env.which(argv[0]) is None:
        return Check(name, "fail" if required else "warn", f"{argv[0]} not found on PATH", required), ""
    try:
        res = env.runner.run(argv, timeout=timeout, ttl=0.0)
    except CommandError as exc:
        why = {"timeout": f"no answer within {timeout:g} s", "missing": "cannot be executed"}.get(exc.reason)
        detail = why or f"exited with an error: {_first_line(exc.detail) or 'no message'}"
        return Check(name, "fail" if required else "warn", f"{' '.join(argv)}: {detail}", required), ""
    return Check(name, "ok", f"{what} ({res.duration:.2f} s)", required), res.stdout


SLURM_CHECKS = ("slurm.sinfo", "slurm.squeue", "slurm.scontrol", "slurm.sacct")


def check_slurm(env: Environment, mode: str, timeout: float = DEFAULT_TIMEOUT) -> list[Check]:
    """sinfo, squeue, scontrol and sacct present and answering (required in ``controller`` and ``all`` modes).

    In ``node`` mode nothing is run: the SLURM commands are the controller collectors' concern, so each check is
    ``skip``.
    """
    if mode == "node":
        why = "not checked in node mode (only the controller collectors run SLURM commands; see --mode controller)"
        return [Check(name, "skip", why) for name in SLURM_CHECKS]
    required = True
    ping, text = _command_check(
        env, "slurm.scontrol", ["scontrol", "ping"], required, timeout, "slurmctld answers ping"
    )
    # `scontrol ping` prints "Slurmctld(primary) at HOST is DOWN" and, on some releases, still exits 0
    down = [ln.strip() for ln in text.splitlines() if ln.rstrip().endswith("DOWN")]
    if down:
        ping = Check(ping.name, "fail" if required else "warn", "; ".join(down), required)
    out = [
        _command_check(env, "slurm.sinfo", ["sinfo", "-h", "-o", "%P"], required, timeout, "sinfo answers")[0],
        _command_check(env, "slurm.squeue", ["squeue", "-h", "-o", "%i"], required, timeout, "squeue answers")[0],
        ping,
    ]
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(env.clock() - 60))
    sacct, _ = _command_check(
        env,
        "slurm.sacct",
        ["sacct", "-n", "-X", "-o", "JobID", "-S", start],
        required,
        timeout,
        "sacct answers from slurmdbd",
    )
    if sacct.status != "ok" and env.which("sacct") is not None:
        sacct = Check(sacct.name, sacct.status, sacct.detail + " (is slurmdbd running and reachable?)", required)
    out.append(sacct)
    return out


def check_sysstat(env: Environment) -> Check:
    """The sysstat tools on PATH: information only, NØMADE reads /proc itself."""
    found = [t for t in SYSSTAT_TOOLS if env.which(t) is not None]
    note = "not needed: NØMADE computes iostat/mpstat/vmstat figures from /proc"
    if found:
        return Check("sysstat", "ok", f"found {', '.join(found)} ({note})")
    return Check("sysstat", "ok", f"none of {', '.join(SYSSTAT_TOOLS)} found ({note})")


def _nvml_text(nvml: NvmlStatus) -> str:
    if not nvml.importable:
        return "NVML bindings absent"
    if nvml.error:
        return f"NVML bindings import but NVML cannot be initialised: {nvml.error} (is the NVIDIA driver loaded?)"
    return f"NVML sees {nvml.gpus} GPU(s)"


def check_gpu(env: Environment, timeout: float = DEFAULT_TIMEOUT) -> Check:
    """``nvidia-smi -L`` and the NVML bindings (optional).

    ``warn`` when ``nvidia-smi -L`` fails or when the bindings import but ``nvmlInit``/``nvmlDeviceGetCount``
    raise (the ``NVMLError`` message is shown); ``skip`` when neither nvidia-smi nor the bindings are present.
    """
    nvml = env.nvml()
    nvml_bad = nvml.importable and bool(nvml.error)
    if env.which("nvidia-smi") is None:
        if nvml.importable:
            return Check("gpu", "warn" if nvml_bad else "ok", f"{_nvml_text(nvml)}; nvidia-smi not on PATH")
        return Check("gpu", "skip", "no nvidia-smi and no NVML bindings: no GPU metrics on this machine")
    try:
        res = env.runner.run(["nvidia-smi", "-L"], timeout=timeout, ttl=0.0)
    except CommandError as exc:
        return Check(
            "gpu", "warn", f"nvidia-smi -L failed: {_first_line(exc.detail) or exc.reason}; {_nvml_text(nvml)}"
        )
    n = sum(1 for ln in res.stdout.splitlines() if ln.startswith("GPU "))
    return Check("gpu", "warn" if nvml_bad else "ok", f"{n} GPU(s) listed by nvidia-smi; {_nvml_text(nvml)}")


def nfs_mounts(mountinfo: str) -> list[str]:
    """Mount points of NFS filesystems in ``/proc/self/mountinfo`` text (proc(5): fstype follows the ``-``)."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields_ = left.split()
        if not sep or len(fields_) < 5 or not right.split():
            continue
        if right.split()[0] in NFS_FSTYPES:
            out.append(fields_[4].replace("\\040", " "))
    return out


def check_nfs(env: Environment) -> Check:
    """NFS mounts (optional: the nfs collector has nothing to report without them)."""
    try:
        text = (env.proc_root / "self/mountinfo").read_text()
    except OSError as exc:
        return Check("nfs", "warn", f"cannot read {env.proc_root}/self/mountinfo: {exc.strerror or exc}")
    mounts = nfs_mounts(text)
    if not mounts:
        return Check("nfs", "skip", "no NFS mounts (the nfs collector reports nothing)")
    shown = ", ".join(mounts[:5]) + (f" and {len(mounts) - 5} more" if len(mounts) > 5 else "")
    return Check("nfs", "ok", f"{len(mounts)} NFS mount(s): {shown}")


def _open_error(path: Path) -> OSError | None:
    """The error met opening ``path`` and reading one byte of it, or ``None`` when it is readable."""
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return exc
    return None


def _readable(path: Path) -> str | None:
    err = _open_error(path)
    return None if err is None else (err.strerror or str(err))


_PID_IO_NEED = "job_io needs root or CAP_SYS_PTRACE+CAP_DAC_READ_SEARCH"


def effective_caps(proc_root: Path) -> int | None:
    """The effective capability set of this process: ``CapEff`` of ``<proc_root>/self/status``, or ``None``.

    proc(5): ``CapEff:`` is the effective set as a hexadecimal mask, bit *n* being capability number *n* of
    capability(7) (:data:`CAP_DAC_READ_SEARCH` is bit 2, :data:`CAP_SYS_PTRACE` bit 19). ``None`` when the file
    cannot be read or has no parsable ``CapEff`` line.
    """
    try:
        text = (proc_root / "self/status").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == "CapEff":
            try:
                return int(value.strip(), 16)
            except ValueError:
                return None
    return None


def describe_caps(cap_eff: int | None) -> str:
    """``CapEff 0000000000080004 (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE effective)``: the mask and :data:`JOB_IO_CAPS`.

    Names only the two capabilities ``job_io`` needs: which are effective, or ``none of ...``.
    """
    if cap_eff is None:
        return "CapEff unknown"
    have = [name for bit, name in sorted(JOB_IO_CAPS.items()) if cap_eff >> bit & 1]
    names = f"{', '.join(have)} effective" if have else f"none of {', '.join(sorted(JOB_IO_CAPS.values()))}"
    return f"CapEff {cap_eff:016x} ({names})"


def _probe_pid_io(env: Environment, euid: int) -> tuple[Path, int, OSError | None] | None:
    """Read ``/proc/<pid>/io`` of the first processes of another user than ``euid`` (non-root owners first).

    Returns ``(path, owner uid, error or None)`` of the first conclusive read (at most :data:`PID_IO_TRIES` tried; a
    process that exits meanwhile, ENOENT or ESRCH, is passed over), or ``None`` when no other user's process is
    visible.

    Raises:
        OSError: ``env.proc_root`` cannot be listed.

    """
    pids = sorted(int(p.name) for p in env.proc_root.iterdir() if p.name.isdigit())
    others: list[tuple[int, int]] = []
    for pid in pids:
        try:
            owner = env.owner_uid(env.proc_root / str(pid))
        except OSError:
            continue  # exited since the listing
        if owner != euid:
            others.append((pid, owner))
    # Processes of ordinary users first: they are what job_io reads, while root's (PID 1 of a container host, a
    # shielded supervisor) may be refused by an LSM or a PID namespace even with both capabilities.
    others.sort(key=lambda po: (po[1] == 0, po[0]))
    tried = 0
    for pid, owner in others:
        tried += 1
        path = env.proc_root / str(pid) / "io"
        err = env.open_error(path)
        if err is not None and err.errno in (errno.ENOENT, errno.ESRCH) and tried < PID_IO_TRIES:
            continue
        return path, owner, err
    return None


def check_pid_io(env: Environment) -> Check:
    """Can ``job_io`` read other users' ``/proc/<pid>/io``? From the effective user and capabilities (optional).

    ``ok`` when the effective user is root or both :data:`JOB_IO_CAPS` are in ``CapEff``
    (:func:`effective_caps`); the probe of another user's process (:func:`_probe_pid_io`) then confirms it, and a
    failure despite the capabilities is a ``warn`` with the errno. Without them: ``warn`` naming what is missing,
    that the node unit grants the capabilities as ambient ones (which ``runuser`` does not) and the
    :data:`SETPRIV_COMMAND` that checks like the unit; a successful probe (the kernel allowing it after all) is
    ``ok``.
    """
    euid = env.euid()
    caps = effective_caps(env.proc_root)
    who = f"effective user {user_label(euid)}, {describe_caps(caps)}"
    needed = sum(1 << bit for bit in JOB_IO_CAPS)
    privileged = euid == 0 or (caps is not None and caps & needed == needed)
    try:
        probe = _probe_pid_io(env, euid)
    except OSError as exc:
        probe, listing = None, f"cannot list {env.proc_root}: {exc.strerror or exc}"
    else:
        listing = f"no process of another user visible in {env.proc_root} to probe (hidepid, or a container?)"
    if probe is not None:
        path, owner, err = probe
        if err is None:
            return Check(
                "proc.pid_io", "ok", f"{who}: {path} (owner {user_label(owner)}) readable: job_io can read jobs"
            )
        code = errno.errorcode.get(err.errno or 0, str(err.errno))
        failed = f"{path} (owner {user_label(owner)}) not readable: {code} {err.strerror or err}"
    else:
        failed = ""
    if privileged:
        if failed:
            return Check("proc.pid_io", "warn", f"{who}: {failed} despite root or the capabilities (LSM, hidepid?)")
        return Check("proc.pid_io", "ok", f"{who}: job_io can read jobs' /proc/<pid>/io; {listing}")
    detail = (
        f"{who}: {failed + ': ' if failed else ''}{_PID_IO_NEED}; the nomade-exporter-node unit grants them as "
        "ambient capabilities (AmbientCapabilities=), which runuser/su do not: as runuser -u nomade this warning is "
        f"expected; to check like the unit: {SETPRIV_COMMAND}"
    )
    return Check("proc.pid_io", "warn", detail)


def check_proc(env: Environment, mode: str = "all") -> list[Check]:
    """/proc files of the node collectors (required), PSI and /proc/<pid>/io (optional), /sys cgroups (optional).

    In ``controller`` mode ``proc.pid_io`` is ``skip`` (``job_io`` is a node collector).
    """
    out = []
    bad = [f"{n}: {e}" for n in ("stat", "meminfo", "diskstats") if (e := _readable(env.proc_root / n))]
    out.append(
        Check("proc", "fail" if bad else "ok", "; ".join(bad) or "/proc/stat, meminfo, diskstats readable", True)
    )
    bad = [n for n in ("cpu", "memory", "io") if _readable(env.proc_root / "pressure" / n)]
    out.append(
        Check("proc.pressure", "warn", f"PSI not readable ({', '.join(bad)}): no pressure series (psi=1?)")
        if bad
        else Check("proc.pressure", "ok", "/proc/pressure/{cpu,memory,io} readable")
    )
    out.append(check_pid_io(env) if mode != "controller" else _node_only_skip("proc.pid_io"))
    cg = env.sys_root / "fs/cgroup"
    out.append(
        Check("sys", "ok", f"{cg} readable (job_usage)")
        if os.access(cg, os.R_OK | os.X_OK)
        else Check("sys", "warn", f"{cg} not readable: no per-job usage from cgroups")
    )
    return out


def check_prometheus(
    env: Environment,
    url: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    bearer_token: str | None = None,
    verify: bool | str = True,
) -> Check:
    """``GET <url>/-/ready`` (Prometheus management API) answers 200; required when a URL is given.

    Args:
        env: the machine (``env.http_get``).
        url: Prometheus base URL (credentials in it are sent as basic auth and never shown), or ``None`` (skip).
        timeout: seconds for the request.
        bearer_token: sent as ``Authorization: Bearer ...`` when given (``[analytics] bearer_token_file``).
        verify: TLS verification: ``True``, ``False`` or a CA bundle path (``ca_file``, ``insecure_skip_verify``).

    """
    if not url:
        return Check("prometheus", "skip", "no --prometheus URL given")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return Check("prometheus", "fail", f"{url!r} is not an http(s) URL", True)
    # never print credentials embedded in the URL (user:password@host)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    shown = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")
    ready = url.rstrip("/") + "/-/ready"
    extra: dict[str, Any] = {}
    if bearer_token:
        extra["headers"] = {"Authorization": f"Bearer {bearer_token}"}
    if verify is not True:
        extra["verify"] = verify
    try:
        code, body = env.http_get(ready, timeout, **extra)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("prometheus", "fail", f"{shown}/-/ready unreachable: {reason}", True)
    if code != 200:
        return Check("prometheus", "fail", f"{shown}/-/ready answered HTTP {code}: {_first_line(body)}", True)
    return Check("prometheus", "ok", f"{shown} is ready", True)


_HEADER_RE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_\-]+|\"[^\"]*\")")


def split_config(text: str) -> dict[str, str]:
    """Split a combined NØMADE TOML document into one document per component (keys of :data:`COMPONENT_TABLES`).

    Each line goes with the last table header (``[x...]`` or ``[[x...]]``) above it; the header's first name picks
    the component. Lines before the first header go to every component (they can only be comments: top-level keys
    are refused by every loader). A table owned by no component goes to ``"unknown"``.

    Returns:
        ``{component: text}`` for the components the document mentions (and ``"unknown"`` if any).

    """
    owner = {t: c for c, ts in COMPONENT_TABLES.items() for t in ts}
    parts: dict[str, list[str]] = {}
    preamble: list[str] = []
    current: str | None = None
    for line in text.splitlines(keepends=True):
        m = _HEADER_RE.match(line)
        if m:
            current = owner.get(m.group(1).strip('"'), "unknown")
            parts.setdefault(current, [])
        if current is None:
            preamble.append(line)
        else:
            parts[current].append(line)
    return {c: "".join(preamble + lines) for c, lines in parts.items()}


def _load_component(component: str, text: str, shown: Path) -> str:
    """Load ``text`` with the component's loader; return a one-line summary.

    Raises:
        ValueError: the loader's ``ConfigError`` (a ``ValueError``), its message naming ``shown`` as the file.

    """
    with tempfile.TemporaryDirectory(prefix="nomade-syscheck-") as tmp:
        path = Path(tmp) / f"{component}.toml"
        path.write_text(text)
        try:
            return _load_path(component, path)
        except ValueError as exc:
            raise ValueError(str(exc).replace(str(path), str(shown))) from None


def _load_path(component: str, path: Path) -> str:
    if component == "exporter":
        from nomade.exporter.config import load_config

        cfg = load_config(path)
        return f"mode {cfg.mode}, listen {cfg.listen_address}, {len(cfg.collectors)} collector section(s)"
    if component == "analytics":
        from nomade.analytics.config import load_config as load_analytics

        acfg = load_analytics(path)
        return f"{acfg.prometheus_url}, {len(acfg.watches)} watch(es), risk {'on' if acfg.risk.enabled else 'off'}"
    from nomade.alerting.config import load_monitoring_config

    mcfg = load_monitoring_config(path)
    return f"cluster label {mcfg.cluster_label!r}, exporter job {mcfg.exporter_job!r}"


def check_config(path: Path | None) -> list[Check]:
    """Each component's part of the ``--config`` file parses (required when a file is given)."""
    if path is None:
        return [Check("config", "skip", "no --config file given")]
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return [Check("config", "fail", f"{path}: cannot read: {exc.strerror or exc}", True)]
    parts = split_config(text)
    out = []
    if "unknown" in parts:
        heads = [m.group(1) for ln in parts["unknown"].splitlines() if (m := _HEADER_RE.match(ln))]
        known = ", ".join(t for ts in COMPONENT_TABLES.values() for t in ts)
        out.append(Check("config", "fail", f"{path}: unknown table(s) {', '.join(heads)} (known: {known})", True))
    for component in COMPONENT_TABLES:
        if component not in parts:
            out.append(Check(f"config.{component}", "skip", f"{path} has no {component} tables"))
            continue
        try:
            summary = _load_component(component, parts[component], Path(path))
        except ValueError as exc:  # every loader's ConfigError is a ValueError
            out.append(Check(f"config.{component}", "fail", str(exc), True))
            continue
        out.append(Check(f"config.{component}", "ok", f"{path}: {summary}", True))
    return out


# -- analytics mode ----------------------------------------------------------------------------------------------


def load_analytics(path: Path | None) -> tuple[Any, Check]:
    """The analytics configuration of ``path`` (its ``[analytics]`` tables, by the service's own loader).

    Returns:
        ``(AnalyticsConfig or None, check "config.analytics")``: without ``path``, the built-in defaults and a
        ``skip``; when the file cannot be read or parsed, ``None`` and a required ``fail`` naming file and key.

    """
    from nomade.analytics.config import AnalyticsConfig

    if path is None:
        return AnalyticsConfig(), Check("config.analytics", "skip", "no --config file given: checking the defaults")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, Check("config.analytics", "fail", f"{path}: cannot read: {exc.strerror or exc}", True)
    parts = split_config(text)
    if "analytics" not in parts:
        return None, Check("config.analytics", "fail", f"{path} has no [analytics] table", True)
    from nomade.analytics.config import load_config as load_analytics_file

    with tempfile.TemporaryDirectory(prefix="nomade-syscheck-") as tmp:
        tmp_path = Path(tmp) / "analytics.toml"
        tmp_path.write_text(parts["analytics"])
        try:
            cfg = load_analytics_file(tmp_path)
        except ValueError as exc:  # ConfigError
            return None, Check("config.analytics", "fail", str(exc).replace(str(tmp_path), str(path)), True)
    summary = f"{cfg.prometheus_url}, {len(cfg.watches)} watch(es), risk {'on' if cfg.risk.enabled else 'off'}"
    return cfg, Check("config.analytics", "ok", f"{path}: {summary}", True)


def check_analytics_extras(env: Environment, risk_enabled: bool = True) -> Check:
    """The ``ml`` extra's modules (:data:`ANALYTICS_MODULES`) import; names the missing ones.

    Required while the risk engine is enabled; numpy is required in any case (the trend watches use it).
    """
    found, missing = [], []
    for name in ANALYTICS_MODULES:
        try:
            mod = env.import_module(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install (missing shared library...)
            missing.append(f"{name} ({_first_line(str(exc), 80) or type(exc).__name__})")
            continue
        found.append(f"{name} {getattr(mod, '__version__', '?')}")
    if not missing:
        return Check("analytics.extras", "ok", ", ".join(found), risk_enabled)
    required = risk_enabled or any(m.startswith("numpy ") for m in missing)
    need = "the risk scores need them" if risk_enabled else "risk is disabled, but the trend watches need numpy"
    detail = (
        f"missing: {', '.join(missing)}: {need}; install torch (CPU build: pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu), then pip install 'nomade-hpc[ml]'"
    )
    return Check("analytics.extras", "fail" if required else "warn", detail, required)


ROOT_NOTE = (
    "root writes anywhere: check as the service's user too, runuser -u nomade -- nomade syscheck --mode analytics"
)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_writable_dir(env: Environment, name: str, directory: Path, required: bool = True) -> Check:
    """``directory`` exists and is writable by the effective user, or can be created by it.

    A missing directory under :data:`SERVICE_STATE_DIR` is a warning (systemd creates it for the service); a
    writable one outside it is a warning too (``ProtectSystem=strict``: the service may write there only when
    the path is added to the unit's ``ReadWritePaths=``). A success as root says so: root writes anywhere, the
    service runs as ``nomade``.
    """
    euid = env.euid()
    me = user_label(euid)
    as_root = f" ({ROOT_NOTE})" if euid == 0 else ""
    directory = Path(directory)
    outside = (
        ""
        if _is_within(directory, SERVICE_STATE_DIR)
        else (
            f"; it is outside {SERVICE_STATE_DIR}: add it to ReadWritePaths= of nomade-analytics.service "
            "(ProtectSystem=strict)"
        )
    )
    rw = os.W_OK | os.X_OK
    if directory.exists():
        if not directory.is_dir():
            return Check(name, "fail", f"{directory} exists and is not a directory", required)
        if env.access(directory, rw):
            detail = f"{directory} writable by {me}{as_root}{outside}"
            return Check(name, "warn" if outside else "ok", detail, required)
        return Check(name, "fail", f"{directory} not writable by {me} (run the check as the service's user)", required)
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and env.access(parent, rw):
        detail = (
            f"{directory} does not exist yet; {parent} is writable by {me}{as_root}, the service creates it{outside}"
        )
        return Check(name, "warn" if outside else "ok", detail, required)
    if _is_within(directory, SERVICE_STATE_DIR):
        detail = (
            f"{directory} does not exist yet and {parent} is not writable by {me}: systemd creates {SERVICE_STATE_DIR}"
            f" (StateDirectory=) when nomade-analytics starts; to check now: install -d -o nomade -g nomade -m 0750 "
            f"{SERVICE_STATE_DIR}"
        )
        return Check(name, "warn", detail, required)
    return Check(name, "fail", f"{directory} does not exist and {parent} is not writable by {me}", required)


def analytics_checks(
    env: Environment, *, prometheus: str | None, config: Path | None, timeout: float = DEFAULT_TIMEOUT
) -> list[Check]:
    """The ``--mode analytics`` checks, in order: python, extras, prometheus, config.analytics, store, model_dir."""
    cfg, cfg_check = load_analytics(config)
    risk_on = cfg.risk.enabled if cfg is not None else True
    checks = [check_python(env), check_analytics_extras(env, risk_on)]
    from nomade.analytics.config import DEFAULT_PROMETHEUS_URL

    url = prometheus or (cfg.prometheus_url if cfg is not None else DEFAULT_PROMETHEUS_URL)
    bearer: str | None = None
    verify: bool | str = True
    if cfg is not None:
        if cfg.basic_auth is not None and urllib.parse.urlsplit(url).username is None:
            user, password = (urllib.parse.quote(x, safe="") for x in cfg.basic_auth)
            parts = urllib.parse.urlsplit(url)
            url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
        verify = cfg.verify()
        try:
            bearer = cfg.bearer_token()
        except ValueError as exc:  # ConfigError: unreadable or empty token file
            checks.append(Check("prometheus", "fail", str(exc), True))
            url = ""
    if url:
        checks.append(check_prometheus(env, url, timeout, bearer_token=bearer, verify=verify))
    checks.append(cfg_check)
    if cfg is None:
        why = "the configuration did not load"
        checks += [Check(n, "skip", why) for n in ("analytics.store", "analytics.model_dir")]
    elif not risk_on:
        why = "[analytics.risk] enabled = false"
        checks += [Check(n, "skip", why) for n in ("analytics.store", "analytics.model_dir")]
    else:
        checks.append(check_writable_dir(env, "analytics.store", cfg.risk.store.parent))
        checks.append(check_writable_dir(env, "analytics.model_dir", cfg.risk.model_dir))
    return checks


def _node_only_skip(name: str) -> Check:
    """The ``skip`` of a :data:`NODE_ONLY_CHECKS` check in controller mode."""
    return Check(name, "skip", "not checked in controller mode (only node collectors need it; see --mode node)")


def run_checks(
    env: Environment | None = None,
    *,
    mode: str = "all",
    prometheus: str | None = None,
    config: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Check]:
    """Run every check in the documented order.

    Args:
        env: the machine (default: the real one).
        mode: ``node``, ``controller``, ``all`` or ``analytics``: what this machine runs (SLURM checks are skipped
            on nodes, :data:`NODE_ONLY_CHECKS` on controllers; ``analytics`` runs only :func:`analytics_checks`).
        prometheus: Prometheus base URL to probe, or ``None`` (skip).
        config: configuration file to parse, or ``None`` (skip).
        timeout: seconds per command or request.

    Raises:
        ValueError: unknown ``mode``.

    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    env = env or Environment()
    if mode == "analytics":
        return analytics_checks(env, prometheus=prometheus, config=config, timeout=timeout)
    checks = [check_python(env)]
    checks += check_slurm(env, mode, timeout)
    checks.append(check_sysstat(env))
    controller = mode == "controller"
    checks.append(_node_only_skip("gpu") if controller else check_gpu(env, timeout))
    checks.append(_node_only_skip("nfs") if controller else check_nfs(env))
    checks += check_proc(env, mode)
    checks.append(check_prometheus(env, prometheus, timeout))
    checks += check_config(config)
    return checks


def exit_status(checks: Sequence[Check]) -> int:
    """1 when a required check failed, else 0."""
    return 1 if any(c.required and c.status == "fail" for c in checks) else 0


_MARK = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL", "skip": "--  "}


def render_text(checks: Sequence[Check]) -> str:
    """Human-readable report: one line per check, then a summary line."""
    lines = ["NØMADE system check", ""]
    width = max(len(c.name) for c in checks)
    for c in checks:
        req = " (required)" if c.required and c.status == "fail" else ""
        lines.append(f"{_MARK[c.status]} {c.name:<{width}}  {c.detail}{req}")
    failed = [c.name for c in checks if c.required and c.status == "fail"]
    warned = [c.name for c in checks if c.status == "warn" or (c.status == "fail" and not c.required)]
    lines.append("")
    if failed:
        lines.append(f"FAILED: {len(failed)} required check(s): {', '.join(failed)}")
    else:
        lines.append("All required checks passed" + (f"; {len(warned)} warning(s)" if warned else "") + ".")
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    """``{"ok": bool, "checks": [{name, status, detail, required}, ...]}`` as JSON."""
    doc: dict[str, Any] = {"ok": exit_status(checks) == 0, "checks": [asdict(c) for c in checks]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- command line ------------------------------------------------------------------------------------------------


def add_options(p: argparse.ArgumentParser) -> None:
    """Options of ``nomade syscheck``."""
    p.add_argument("--config", type=Path, metavar="FILE", help="NØMADE TOML file to parse (any component's tables)")
    p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL whose /-/ready must answer")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="all",
        help="what this machine runs: node (no SLURM check), controller (no gpu, nfs, proc.pid_io check), all "
        "(default) or analytics (the nomade-analytics host: ml extras, Prometheus, analytics configuration, "
        "writable state directories)",
    )
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="per command/request")


def run(args: argparse.Namespace, env: Environment | None = None) -> int:
    """Run ``nomade syscheck``; print the report on stdout; return :func:`exit_status`."""
    checks = run_checks(env, mode=args.mode, prometheus=args.prometheus, config=args.config, timeout=args.timeout)
    sys.stdout.write(render_json(checks) if args.format == "json" else render_text(checks))
    return exit_status(checks)
