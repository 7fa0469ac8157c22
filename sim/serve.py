"""The live exporter of the simulated cluster (``nomade sim serve``).

It resumes the simulation that :mod:`nomade.sim.history` backfilled (same seed and start, so the same cluster and
the same jobs), advances it to the wall clock, then keeps it on the wall clock: a ticker thread advances the world
every ``step`` seconds (default 5), and each scrape returns :meth:`SimWorld.collect` at the last tick. It is served
by the exporter's own HTTP server (:func:`nomade.exporter.server.serve`: ``/metrics``, optional TLS and basic auth
from an exporter-toolkit web configuration), on 127.0.0.1:9196 by default, a port next to the lab's but not in its
range (the lab uses 9090, 9093, 9866, 9867).

The accounting collector's state is ``<state_dir>/state``; ``nomade sim history`` copies the history's state there,
so ``nomade_slurm_job_finished_total`` continues from the backfilled value instead of restarting at 0.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

log = logging.getLogger("nomade.sim.serve")

DEFAULT_LISTEN = "127.0.0.1:9196"
DEFAULT_STEP = 5.0
META_FILE = "sim.json"
"""File in the state directory where ``nomade sim history`` records ``seed``, ``start``, ``end``, ``step`` and
``instance`` of the backfilled history, so that ``nomade sim serve --state-dir`` resumes the same simulation."""


def read_meta(state_dir: Path) -> dict[str, Any] | None:
    """The history's metadata in ``state_dir`` (see :data:`META_FILE`), or None when there is none."""
    path = Path(state_dir) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_meta(state_dir: Path, meta: dict[str, Any]) -> None:
    """Write :data:`META_FILE` (atomically)."""
    path = Path(state_dir) / META_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class LiveWorld:
    """A ``prometheus_client`` custom collector over a :class:`~nomade.sim.world.SimWorld` kept on the wall clock.

    Args:
        world: the world, at any simulated time not after now.
        step: seconds between two advances of the ticker thread (> 0).
        clock: wall clock, Unix seconds.

    :meth:`start` catches up to the wall clock synchronously, then starts the ticker. Scrapes and ticks are
    serialised by one lock, so a scrape never sees a half-advanced world.

    """

    def __init__(self, world: Any, step: float = DEFAULT_STEP, clock: Any = time.time) -> None:
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.world = world
        self.step = float(step)
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.errors = 0

    def tick(self) -> None:
        """Advance the world to the wall clock (no-op when the clock has not moved past the simulated time)."""
        now = self.clock()
        with self._lock:
            if now > self.world.state.now:
                self.world.advance(now)
                self.ticks += 1

    def start(self) -> None:
        """Catch up to now (synchronously), then tick every ``step`` seconds in a daemon thread."""
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="nomade-sim-ticker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.step):
            try:
                self.tick()
            except Exception:  # a failing step must not stop the exporter; the next tick tries again
                self.errors += 1
                log.exception("advancing the simulation failed")

    def collect(self) -> Iterator[Metric]:
        """One scrape of the world at its last tick."""
        with self._lock:
            families = self.world.collect()
        yield from families

    def stop(self) -> None:
        """Stop the ticker (waits for a tick in progress) and close the world."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            self.world.close()
