"""The command runner: every external command goes through here.

Rules (DESIGN.md principle 1):
- argv lists only, never a shell;
- a timeout per call; on expiry the whole process group is killed, so a hung ``squeue`` waiting on a frozen
  slurmctld cannot hold a scrape;
- ``LC_ALL=C`` and ``SLURM_TIME_FORMAT=standard`` so that numbers and times have one format;
- one cached result per argv per TTL, shared by every collector and every concurrent scraper. Concurrent
  callers of the same argv wait for the single run in flight ("single flight"), so N scrapers never multiply
  the load on slurmctld. Failures are cached for the same TTL for the same reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# SLURM_BITSTR_LEN=0: squeue prints job-array task expressions in full instead of cutting them at 63 characters
# (squeue(1), ENVIRONMENT VARIABLES), so pending array tasks can be counted exactly.
DEFAULT_ENV = {"LC_ALL": "C", "LANG": "C", "SLURM_TIME_FORMAT": "standard", "SLURM_BITSTR_LEN": "0"}


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one successful command run.

    Attributes:
        argv: the command line as run.
        stdout: standard output decoded as UTF-8 with invalid bytes replaced (U+FFFD).
        stderr: standard error, decoded likewise.
        duration: wall-clock run time in seconds.
        finished_at: ``time.time()`` when the command ended (Unix seconds).

    """

    argv: tuple[str, ...]
    stdout: str
    stderr: str
    duration: float
    finished_at: float


class CommandError(RuntimeError):
    """A command could not give usable output.

    Attributes:
        argv: the command line.
        reason: ``"missing"`` (not found or not executable), ``"timeout"``, or ``"exit"`` (non-zero status).
        detail: stderr excerpt or exception text.

    """

    def __init__(self, argv: Sequence[str], reason: str, detail: str = "") -> None:
        self.argv = tuple(argv)
        self.reason = reason
        self.detail = detail.strip()[:500]
        super().__init__(f"{' '.join(self.argv)}: {reason}{': ' + self.detail if self.detail else ''}")


@dataclass
class _Entry:
    expires: float
    result: CommandResult | None = None
    error: CommandError | None = None


class CommandRunner:
    """Run commands with a timeout and share each result for ``ttl`` seconds.

    Args:
        timeout: default per-call timeout in seconds.
        ttl: default cache lifetime in seconds (0 disables caching).
        env: extra environment variables (merged over the process environment and :data:`DEFAULT_ENV`).
        clock: monotonic clock, injectable for tests.

    Thread-safe. Error counts per (command basename, reason) are kept in :attr:`errors` for self-metrics.

    """

    def __init__(
        self,
        timeout: float = 10.0,
        ttl: float = 15.0,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._env = {**os.environ, **DEFAULT_ENV, **(env or {})}
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], _Entry] = {}
        self._inflight: dict[tuple[str, ...], threading.Event] = {}
        self.errors: Counter[tuple[str, str]] = Counter()
        self.runs: Counter[str] = Counter()

    def run(self, argv: Sequence[str], *, timeout: float | None = None, ttl: float | None = None) -> CommandResult:
        """Return the (possibly cached) result of running ``argv``.

        Raises:
            CommandError: when the command is missing, times out or exits non-zero (also when that failure
                is the cached outcome of a recent run).

        """
        key = tuple(argv)
        ttl = self.ttl if ttl is None else ttl
        while True:
            with self._lock:
                entry = self._cache.get(key)
                if entry is not None and entry.expires > self._clock():
                    if entry.error is not None:
                        raise entry.error
                    assert entry.result is not None
                    return entry.result
                waiter = self._inflight.get(key)
                if waiter is None:
                    done = threading.Event()
                    self._inflight[key] = done
                    break
            waiter.wait()
        try:
            entry = _Entry(expires=0.0)
            try:
                entry.result = self._execute(key, self.timeout if timeout is None else timeout)
            except CommandError as exc:
                entry.error = exc
                with self._lock:
                    self.errors[(os.path.basename(key[0]), exc.reason)] += 1
            entry.expires = self._clock() + ttl
            with self._lock:
                if ttl > 0:
                    self._cache[key] = entry
                self.runs[os.path.basename(key[0])] += 1
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            done.set()
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    def _execute(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # own process group: a timeout kills helpers it forked too
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise CommandError(argv, "missing", str(exc)) from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise CommandError(argv, "timeout", f"no answer within {timeout:g} s") from exc
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise CommandError(argv, "exit", f"status {proc.returncode}: {stderr}")
        return CommandResult(argv, stdout, stderr, time.monotonic() - start, time.time())
