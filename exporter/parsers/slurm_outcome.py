"""Job outcome classification: SLURM job state + exit code -> one failure class.

Sources:

- sacct(1) "JOB STATE CODES" (SLURM 22.05): BOOT_FAIL, CANCELLED, COMPLETED ("terminated all processes on all
  nodes with an exit code of zero"), DEADLINE, FAILED ("terminated with non-zero exit code or other failure
  condition"), NODE_FAIL, OUT_OF_MEMORY, PENDING, PREEMPTED, RUNNING, REQUEUED, RESIZING, REVOKED, SUSPENDED,
  TIMEOUT. sacct prints a cancelled job as ``CANCELLED by <uid>`` (sacct(1) "State": "the UID that CANCELLED a
  job"); with a narrow column the text is cut and ends in ``+``.
- sacct(1) "ExitCode" / "DerivedExitCode": ``<exit status>:<signal>``, "Following the colon is the signal that
  caused the process to terminate if it was terminated by a signal". DerivedExitCode is "the highest exit code
  returned by the job's job steps (srun invocations)".
- srun(1) "RETURN VALUE" and bash(1) "EXIT STATUS": a child killed by signal *n* is reported by the shell (and by
  srun) as exit status ``128 + n``, so a batch script whose last command segfaulted exits 139 (11 = SIGSEGV) and one
  that aborted exits 134 (6 = SIGABRT); signal numbers from signal(7) (x86/ARM Linux).

The classes (:data:`FAILURE_CLASSES`) and the rule order of :func:`classify`:

1. job state ``OUT_OF_MEMORY`` -> ``out_of_memory`` (SLURM saw the cgroup OOM killer fire; the lab shows such a
   job as ``OUT_OF_MEMORY 0:125``).
2. states ending the job from outside: ``TIMEOUT`` -> ``timeout``, ``CANCELLED`` (also ``CANCELLED by <uid>``: a
   user cancel is not a success) -> ``cancelled``, ``PREEMPTED`` -> ``preempted``, ``NODE_FAIL`` -> ``node_fail``,
   ``BOOT_FAIL`` -> ``boot_fail``, ``DEADLINE`` -> ``deadline``. These win over step details because they are why
   the job ended (a timed-out job is killed with SIGTERM, which would otherwise read as ``signal``).
3. ``FAILED`` or ``COMPLETED`` with any step in ``OUT_OF_MEMORY`` -> ``out_of_memory`` (the batch script may
   survive an OOM-killed ``srun`` step, the step record keeps it).
4. ``FAILED``/``COMPLETED``: the job's own ``code:signal`` first, then (``FAILED`` only: a COMPLETED job's script
   chose to succeed despite a failed step) the DerivedExitCode (highest step exit): signal 11 or exit 139 ->
   ``segfault``; signal 6 or exit 134 -> ``abort``; any other signal 1-64, or an exit status 129-192
   (128 + signal number, the shell/srun convention) -> ``signal``. Exit statuses in that range cannot be told
   apart from a program that chose to ``exit(130)``; the convention is followed anyway.
5. ``COMPLETED`` with exit 0 (or no exit code known; COMPLETED means exit 0 per sacct(1)) -> ``success``.
6. ``FAILED``, or ``COMPLETED`` with a non-zero exit -> ``failed``.
7. Anything else -> ``other``: non-terminal or transitional states (RUNNING, PENDING, REQUEUED, RESIZING,
   SUSPENDED, REVOKED, SPECIAL_EXIT, ...), unknown states and a missing state.

A Python interpreter that segfaults inside a batch script run by bash gives ``FAILED 139:0`` (rule 4, via the
exit status); run via ``exec`` or as an ``srun`` step it gives ``FAILED 0:11`` (rule 4, via the signal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FAILURE_CLASSES: tuple[str, ...] = (
    "success",
    "failed",
    "timeout",
    "cancelled",
    "preempted",
    "node_fail",
    "boot_fail",
    "deadline",
    "out_of_memory",
    "segfault",
    "abort",
    "signal",
    "other",
)

#: Long state names by their sacct(1) "JOB STATE CODES" abbreviation (``--state`` accepts both).
STATE_CODES: dict[str, str] = {
    "BF": "BOOT_FAIL",
    "CA": "CANCELLED",
    "CD": "COMPLETED",
    "DL": "DEADLINE",
    "F": "FAILED",
    "NF": "NODE_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "PD": "PENDING",
    "PR": "PREEMPTED",
    "R": "RUNNING",
    "RQ": "REQUEUED",
    "RS": "RESIZING",
    "RV": "REVOKED",
    "S": "SUSPENDED",
    "TO": "TIMEOUT",
}

#: Terminal states (the ``--state`` list the accounting collector asks sacct for).
TERMINAL_STATES: tuple[str, ...] = ("CA", "CD", "DL", "F", "NF", "OOM", "PR", "TO", "BF")

_EXTERNAL = {
    "TIMEOUT": "timeout",
    "CANCELLED": "cancelled",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_fail",
    "BOOT_FAIL": "boot_fail",
    "DEADLINE": "deadline",
}

_STATE = re.compile(r"^(?P<state>[A-Za-z_]+)\+?(?:\s+by\s+(?P<uid>\d+))?\+?$")
_EXIT = re.compile(r"^(?P<code>\d+):(?P<sig>\d+)$")

SIGSEGV = 11
SIGABRT = 6


def parse_state(text: str) -> tuple[str, int | None] | None:
    """Split a sacct ``State`` into ``(STATE, uid)``.

    ``"CANCELLED by 1001"`` -> ``("CANCELLED", 1001)``; ``"COMPLETED"`` -> ``("COMPLETED", None)``; the
    abbreviations of sacct(1) "JOB STATE CODES" are expanded (``"CD"`` -> ``"COMPLETED"``); a trailing ``+``
    (state cut to the column width) is dropped. The state is returned upper-case.

    Returns:
        ``None`` for an empty field.

    Raises:
        ValueError: when the text is not a state word (optionally followed by ``by <uid>``).

    """
    t = text.strip()
    if not t:
        return None
    m = _STATE.match(t)
    if not m:
        raise ValueError(f"bad job state {text!r}")
    state = m["state"].upper()
    state = STATE_CODES.get(state, state)
    return state, int(m["uid"]) if m["uid"] else None


def parse_exit_code(text: str) -> tuple[int, int] | None:
    """Parse a sacct ``ExitCode``/``DerivedExitCode`` ``"<code>:<signal>"`` into two integers.

    Returns:
        ``(exit_status, signal)``; ``None`` for an empty field.

    Raises:
        ValueError: for other text.

    """
    t = text.strip()
    if not t:
        return None
    m = _EXIT.match(t)
    if not m:
        raise ValueError(f"bad exit code {text!r}")
    return int(m["code"]), int(m["sig"])


def _signal_class(code: int | None, sig: int | None) -> str | None:
    """Class from one ``code:signal`` pair, or None when it shows no signal."""
    if sig:
        if sig == SIGSEGV:
            return "segfault"
        if sig == SIGABRT:
            return "abort"
        if 1 <= sig <= 64:
            return "signal"
    if code is not None and 129 <= code <= 192:
        n = code - 128
        if n == SIGSEGV:
            return "segfault"
        if n == SIGABRT:
            return "abort"
        return "signal"
    return None


def classify(
    state: str | None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    *,
    step_states: Iterable[str | None] = (),
    derived_exit_code: int | None = None,
    derived_exit_signal: int | None = None,
) -> str:
    """Return the failure class of one finished job (one of :data:`FAILURE_CLASSES`).

    Args:
        state: the job (allocation line) state, upper-case, without ``by <uid>`` (see :func:`parse_state`).
        exit_code: exit status from the job's ``ExitCode`` (``None`` when unknown).
        exit_signal: signal number from the job's ``ExitCode``.
        step_states: states of the job's steps (``.batch``, ``.extern``, ``.0``...).
        derived_exit_code: exit status from ``DerivedExitCode`` (highest over the steps).
        derived_exit_signal: signal from ``DerivedExitCode``.

    The rule order and the source of each rule are in the module docstring.

    """
    if state is None:
        return "other"
    state = STATE_CODES.get(state.upper(), state.upper())
    if state == "OUT_OF_MEMORY":
        return "out_of_memory"
    if state in _EXTERNAL:
        return _EXTERNAL[state]
    if state not in ("FAILED", "COMPLETED"):
        return "other"
    if any(s is not None and s.upper() in ("OUT_OF_MEMORY", "OOM") for s in step_states):
        return "out_of_memory"
    cls = _signal_class(exit_code, exit_signal)
    if cls is None and state == "FAILED":
        cls = _signal_class(derived_exit_code, derived_exit_signal)
    if cls is not None:
        return cls
    if state == "COMPLETED" and not exit_code:
        return "success"
    return "failed"
