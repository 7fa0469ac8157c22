"""Parsers for ``/proc/<pid>/io`` and ``/proc/<pid>/stat``, the per-process sources of the job I/O collector.

``/proc/<pid>/io`` (``Documentation/filesystems/proc.rst``, "/proc/<pid>/io - Display the IO accounting
fields"; ``fs/proc/base.c`` ``do_io_accounting``) has seven ``name: value`` lines:

* ``rchar`` / ``wchar``: bytes passed to read(2)/write(2)-like syscalls (pipes, sockets, terminals and page
  cache hits included);
* ``syscr`` / ``syscw``: number of those syscalls;
* ``read_bytes``: bytes this process really caused to be fetched from the storage layer;
* ``write_bytes``: bytes this process caused to be sent to the storage layer, accounted when the page cache
  page is dirtied (or at direct I/O submission);
* ``cancelled_write_bytes``: dirty bytes that were never written because a file was truncated or deleted.

For a whole process (the thread-group view) the kernel adds the counters of its exited threads and of the
**children it has reaped** (``kernel/exit.c`` ``wait_task_zombie`` adds the child's ``ioac`` to the parent's
``signal->ioac``), as it does for ``cutime``. The collector depends on this to keep per-job totals exact.

Values are parsed as signed integers: ``cancelled_write_bytes`` can be read as negative in captured
fixtures (prometheus/procfs tests this), and a negative value is kept, not guessed away.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import ParseResult

IO_FIELDS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes")


@dataclass(frozen=True)
class ProcIo:
    """One ``/proc/<pid>/io`` reading (bytes, or syscall counts for ``syscr``/``syscw``).

    A field missing from the text (``CONFIG_TASK_IO_ACCOUNTING`` off removes the last three) is ``None``.
    """

    rchar: int | None = None
    wchar: int | None = None
    syscr: int | None = None
    syscw: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    cancelled_write_bytes: int | None = None


def parse_pid_io(text: str) -> ParseResult[ProcIo]:
    """Parse ``/proc/<pid>/io``.

    Returns:
        One :class:`ProcIo` record when at least one known field was read (no record for an empty or
        unusable text); an unknown key, a duplicated key or a non-integer value is an issue.

    """
    res: ParseResult[ProcIo] = ParseResult()
    values: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep or key not in IO_FIELDS:
            res.skip(no, "expected '<io field>: <integer>'", line)
            continue
        if key in values:
            res.skip(no, "duplicate field", line)
            continue
        try:
            values[key] = int(rest.strip())
        except ValueError:
            res.skip(no, "non-integer value", line)
    if values:
        res.records.append(ProcIo(**values))
    return res


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the job collectors use (``proc(5)``).

    Attributes:
        pid: field 1.
        comm: field 2 without the parentheses (may contain spaces and parentheses itself).
        state: field 3 (``R``, ``S``, ``D``, ``Z``...).
        ppid: field 4.
        starttime: field 22, clock ticks after boot; with ``pid`` it identifies a process across pid reuse.

    """

    pid: int
    comm: str
    state: str
    ppid: int
    starttime: int


def parse_pid_stat(text: str) -> ParseResult[ProcStat]:
    """Parse ``/proc/<pid>/stat``.

    ``comm`` is found between the first ``(`` and the **last** ``)``, since a command name may contain
    ``)`` and spaces (``fs/proc/array.c`` prints it unescaped).

    Returns:
        One :class:`ProcStat`, or no record and one issue when the line is malformed.

    """
    res: ParseResult[ProcStat] = ParseResult()
    line = text.strip()
    open_, close = line.find("("), line.rfind(")")
    if open_ < 1 or close < open_:
        res.skip(1, "no '(comm)'", line)
        return res
    rest = line[close + 1 :].split()
    if len(rest) < 20:
        res.skip(1, f"expected at least 22 fields, got {len(rest) + 2}", line)
        return res
    try:
        pid = int(line[:open_].strip())
        ppid, starttime = int(rest[1]), int(rest[19])
    except ValueError:
        res.skip(1, "non-integer pid, ppid or starttime", line)
        return res
    res.records.append(ProcStat(pid, line[open_ + 1 : close], rest[0], ppid, starttime))
    return res
