"""A small background sampler keeping the last two snapshots of a source.

Node collectors report figures over an interval (iostat %util, mpstat %iowait, vmstat si/so, PSI shares).
Computing them between two scrapes would give each scraper a different interval and figure; instead one
daemon thread takes a snapshot every ``interval`` seconds and every scrape uses the same last pair, so all
scrapers see the same figures (and the figures exist only once two snapshots do).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("nomade.exporter.sampler")


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """One reading of the source.

    Attributes:
        taken_at: the sampler clock (monotonic seconds by default) when the reading finished.
        value: what the read function returned.

    """

    taken_at: float
    value: T


class Sampler(Generic[T]):
    """Call ``read()`` every ``interval`` seconds in a daemon thread and keep the last two results.

    Args:
        read: returns one snapshot value; an exception is logged and the reading skipped (the previous pair
            stays, and becomes stale, see :meth:`pair`).
        interval: seconds between readings (> 0).
        clock: monotonic clock in seconds, injectable for tests.
        name: thread name suffix for logs and ``ps``.

    Thread-safe. The thread starts with :meth:`start` (collectors call it in ``__init__``) after one
    synchronous reading, so the first pair is ready ``interval`` seconds later.

    """

    def __init__(
        self,
        read: Callable[[], T],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "sampler",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"sampler interval must be positive, got {interval!r}")
        self.read = read
        self.interval = float(interval)
        self.clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._prev: Snapshot[T] | None = None
        self._cur: Snapshot[T] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def sample_once(self, now: float | None = None) -> bool:
        """Take one reading now and shift the pair; ``now`` overrides the clock (tests).

        Returns:
            True when the reading succeeded.

        """
        try:
            value = self.read()
        except Exception as exc:  # noqa: BLE001 - a background reading must never kill the thread
            self.errors += 1
            log.debug("%s: reading failed: %s", self.name, exc)
            return False
        snap = Snapshot(self.clock() if now is None else now, value)
        with self._lock:
            self._prev, self._cur = self._cur, snap
        return True

    def pair(self, max_age: float | None = None, now: float | None = None) -> tuple[Snapshot[T], Snapshot[T]] | None:
        """The last two snapshots ``(previous, current)``, or None before two exist.

        Args:
            max_age: when given, also None if the current snapshot is older than this many seconds (a
                failing or stuck source must not keep reporting an old interval as current).
            now: overrides the clock for the age check (tests).

        """
        with self._lock:
            prev, cur = self._prev, self._cur
        if prev is None or cur is None:
            return None
        if max_age is not None and (self.clock() if now is None else now) - cur.taken_at > max_age:
            return None
        return prev, cur

    def fresh_pair(self) -> tuple[Snapshot[T], Snapshot[T], float] | None:
        """``(previous, current, seconds between them)`` for derived figures, or None.

        None before two snapshots exist, when the current one is older than three intervals plus a second
        (the sampler stopped or its source is failing: an old interval must not pass as current), or when the
        clock did not advance between them.
        """
        pair = self.pair(max_age=3 * self.interval + 1)
        if pair is None:
            return None
        prev, cur = pair
        dt = cur.taken_at - prev.taken_at
        return (prev, cur, dt) if dt > 0 else None

    def start(self) -> None:
        """Take a first reading synchronously, then keep sampling in a daemon thread (idempotent)."""
        if self._thread is not None:
            return
        self.sample_once()
        self._thread = threading.Thread(target=self._loop, name=f"nomade-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # Schedule on a fixed grid so the interval does not drift by the reading time.
        next_at = self.clock() + self.interval
        while not self._stop.wait(max(0.0, next_at - self.clock())):
            self.sample_once()
            next_at += self.interval
            if next_at < self.clock():  # fell behind (suspend, overload): restart the grid
                next_at = self.clock() + self.interval

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
