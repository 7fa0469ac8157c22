"""Parsers for the cgroup files SLURM jobs live in (cgroup v1 and v2) and for job cgroup directory names.

Pure functions of text; the I/O (walking ``/sys/fs/cgroup``) is in :mod:`nomade.exporter.collectors.job_usage`.

File formats (kernel ``Documentation/admin-guide/cgroup-v1/{memory,cpuacct}.rst`` and
``Documentation/admin-guide/cgroup-v2.rst``):

* single values: ``memory.usage_in_bytes``, ``memory.max_usage_in_bytes``, ``memory.limit_in_bytes``,
  ``cpuacct.usage`` (ns) in v1; ``memory.current``, ``memory.peak``, ``memory.max`` (``max`` = no limit),
  ``pids.current`` in v2;
* flat keyed ``key value`` lines: v1 ``memory.stat``, ``memory.oom_control``, ``cpuacct.stat`` (USER_HZ
  ticks); v2 ``cpu.stat`` (µs), ``memory.stat``, ``memory.events``;
* ``cgroup.procs`` / ``tasks`` / ``cgroup.threads``: one pid per line;
* v1 ``devices.list``: ``<type> <major>:<minor> <access>`` lines (``a *:* rwm`` = everything allowed).

SLURM job directory layouts (SLURM ``src/plugins/cgroup/v1`` and ``v2``, cgroup_v2.html "Hierarchy overview"):

* v1: ``<controller>/slurm/uid_<uid>/job_<id>/step_<step>/task_<n>``; with several slurmd on one host
  (``--enable-multiple-slurmd``, the NOMADE lab) the top directory is ``slurm_<NodeName>``;
* v2: ``system.slice/slurmstepd.scope/job_<id>/step_<step>/{slurm,user/task_<n>}`` (``slurm`` holds
  slurmstepd itself); with several slurmd ``system.slice/<NodeName>_slurmstepd.scope``. No uid directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ParseResult

V1_UNLIMITED = 2**62
"""cgroup v1 prints "no limit" as ``PAGE_COUNTER_MAX * PAGE_SIZE`` (9223372036854771712 on 4 KiB pages, a
different number on 64 KiB pages); any limit at or above 2^62 bytes is treated as unlimited."""

NVIDIA_MAJOR = 195
"""Character major of ``/dev/nvidia<N>`` (``Documentation/admin-guide/devices.txt``: 195 = Nvidia graphics);
minors 254 (nvidia-modeset) and 255 (nvidiactl) are control devices, not GPUs."""

_V1_TOP = re.compile(r"^slurm(?:_(?P<node>.+))?$")
_V2_SCOPE = re.compile(r"^(?:(?P<node>.+)_)?slurmstepd\.scope$")
_JOB = re.compile(r"^job_(?P<id>\d+)$")
_UID = re.compile(r"^uid_(?P<uid>\d+)$")


@dataclass(frozen=True)
class JobCgroupName:
    """What a job cgroup directory path tells.

    Attributes:
        job_id: SLURM job id (digits).
        slurm_node: NodeName from ``slurm_<node>`` / ``<node>_slurmstepd.scope``; ``""`` for the plain
            single-slurmd layout.
        uid: owner uid from the v1 ``uid_<uid>`` level; ``None`` in v2.
        version: 1 or 2.

    """

    job_id: str
    slurm_node: str
    uid: int | None
    version: int


def parse_job_cgroup_path(parts: tuple[str, ...] | list[str]) -> JobCgroupName | None:
    """Recognise a SLURM job cgroup directory from its path components below the hierarchy root.

    Args:
        parts: components below the controller mount (v1, e.g. ``("slurm_c01", "uid_1001", "job_29")``) or
            below the unified root (v2, e.g. ``("system.slice", "slurmstepd.scope", "job_29")``).

    Returns:
        The parsed name, or ``None`` when ``parts`` is not a job directory (steps and tasks are not).

    """
    parts = tuple(parts)
    if len(parts) == 3:
        top, uid, job = parts
        m_top, m_uid, m_job = _V1_TOP.match(top), _UID.match(uid), _JOB.match(job)
        if m_top and m_uid and m_job:
            return JobCgroupName(m_job["id"], m_top["node"] or "", int(m_uid["uid"]), 1)
    if len(parts) >= 2:
        m_scope, m_job = _V2_SCOPE.match(parts[-2]), _JOB.match(parts[-1])
        if m_scope and m_job:
            return JobCgroupName(m_job["id"], m_scope["node"] or "", None, 2)
    return None


def parse_single_value(text: str) -> ParseResult[int | None]:
    """Parse a one-value cgroup file.

    Returns:
        One record: the integer, or ``None`` for v2's ``max`` (no limit). Anything else is an issue and no
        record (a value that cannot be read is absent, never 0).

    """
    res: ParseResult[int | None] = ParseResult()
    s = text.strip()
    if s == "max":
        res.records.append(None)
        return res
    try:
        res.records.append(int(s))
    except ValueError:
        res.skip(1, "expected one integer or 'max'", s)
    return res


def single_value(res: ParseResult[int | None]) -> int | None:
    """The value of :func:`parse_single_value`'s result (``None`` when absent or unlimited)."""
    return res.records[0] if res.records else None


def limit_bytes(value: int | None) -> int | None:
    """A memory limit in bytes, ``None`` when unlimited (v2 ``max`` or v1 >= :data:`V1_UNLIMITED`)."""
    if value is None or value >= V1_UNLIMITED:
        return None
    return value


def parse_flat_keyed(text: str) -> ParseResult[tuple[str, int]]:
    """Parse ``key value`` lines (memory.stat, memory.oom_control, memory.events, cpu.stat, cpuacct.stat).

    Returns:
        ``(key, integer)`` records in file order; a line without exactly two fields or with a non-integer
        value is an issue.

    """
    res: ParseResult[tuple[str, int]] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            res.skip(no, "expected 'key value'", line)
            continue
        try:
            res.records.append((fields[0], int(fields[1])))
        except ValueError:
            res.skip(no, "non-integer value", line)
    return res


def keyed_dict(res: ParseResult[tuple[str, int]]) -> dict[str, int]:
    """``{key: value}`` of a :func:`parse_flat_keyed` result (last one wins)."""
    return dict(res.records)


def parse_pid_list(text: str) -> ParseResult[int]:
    """Parse ``cgroup.procs`` / ``tasks`` / ``cgroup.threads``: one positive pid per line."""
    res: ParseResult[int] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.isdigit() and s.isascii() and int(s) > 0:
            res.records.append(int(s))
        else:
            res.skip(no, "not a pid", line)
    return res


@dataclass(frozen=True)
class DeviceRule:
    """One v1 ``devices.list`` line.

    Attributes:
        kind: ``"a"`` (all), ``"b"`` (block) or ``"c"`` (character).
        major, minor: numbers, ``None`` for ``*``.
        access: subset of ``rwm``.

    """

    kind: str
    major: int | None
    minor: int | None
    access: str


_DEV = re.compile(r"^(?P<kind>[abc]) (?P<major>\d+|\*):(?P<minor>\d+|\*) (?P<access>[rwm]+)$")


def parse_devices_list(text: str) -> ParseResult[DeviceRule]:
    """Parse a cgroup v1 ``devices.list`` (``Documentation/admin-guide/cgroup-v1/devices.rst``)."""
    res: ParseResult[DeviceRule] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        m = _DEV.match(s)
        if not m:
            res.skip(no, "expected '<a|b|c> <major>:<minor> <rwm>'", line)
            continue
        major = None if m["major"] == "*" else int(m["major"])
        minor = None if m["minor"] == "*" else int(m["minor"])
        res.records.append(DeviceRule(m["kind"], major, minor, m["access"]))
    return res


def nvidia_gpus_from_devices(rules: list[DeviceRule]) -> list[int] | None:
    """GPU indices a job may open according to its v1 ``devices.list``.

    Returns:
        Sorted minors of ``c 195:<n>`` rules (``/dev/nvidia<n>``), control devices 254/255 excluded; ``None``
        when the list allows every device (``a *:* rwm``, i.e. SLURM does not constrain devices): then the
        file says nothing about the job's GPUs.

    """
    gpus: set[int] = set()
    for r in rules:
        if r.kind == "a" or (r.major is None and r.kind == "c"):
            return None
        if r.kind == "c" and r.major == NVIDIA_MAJOR and r.minor is not None and r.minor < 254:
            gpus.add(r.minor)
    return sorted(gpus)


_IDX = re.compile(r"^\d+$")


def parse_gpu_index_list(value: str) -> list[int] | None:
    """Parse SLURM's ``SLURM_JOB_GPUS`` value (comma-separated GPU indices on the node, e.g. ``"0,2"``).

    Returns:
        Sorted indices, ``[]`` for an empty value, ``None`` when any element is not a plain index (such as
        ``NoDevFiles`` or ``N/A``), so no partial mapping is reported.

    """
    s = value.strip()
    if not s:
        return []
    out = []
    for tok in s.split(","):
        tok = tok.strip()
        if not _IDX.match(tok):
            return None
        out.append(int(tok))
    return sorted(set(out))


def environ_value(environ: bytes, name: str) -> str | None:
    """The value of ``name`` in a NUL-separated ``/proc/<pid>/environ`` blob, ``None`` when absent."""
    prefix = name.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode("utf-8", "replace")
    return None
