"""Persistent state of the SLURM accounting collector: counted job ids, cumulative counters and histograms.

Why it exists (DESIGN.md "Job outcome model"): finished jobs leave squeue after ``MinJobAge`` and the exporter
restarts, yet ``nomade_slurm_job_finished_total`` must stay a counter that counts each job exactly once. The
collector polls sacct over a lookback window, so the same job is seen on many polls; this store remembers the
job ids it has counted (deduplication) and keeps the cumulative values on disk.

Storage: one SQLite file (``sqlite3`` from the standard library) in WAL mode (readers never block the writer, and
a crash mid-write leaves the last committed state intact, sqlite.org/wal.html). Tables:

- ``schema_version(version)`` - one row; a file written by a newer schema is refused, never rewritten.
- ``seen_jobs(job_key, end_time, last_seen)`` - counted jobs; a row is pruned once both its end time and the last
  poll that returned it are older than the caller's horizon (the collector uses 2 x lookback, so a job can never
  come back from sacct after its row is gone).
- ``counters(name, labels, value)`` - cumulative counter values.
- ``histogram_buckets(name, labels, le, count)`` and ``histogram_totals(name, labels, sum, count)`` - cumulative
  histogram state (bucket counts are cumulative, Prometheus style: observations <= ``le``).

Labels are stored as canonical JSON (a list of ``[name, value]`` pairs sorted by name). Each :meth:`record` call is
one transaction: a failure leaves the file as it was before the call.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("nomade.exporter.accounting_store")

SCHEMA_VERSION = 1

Labels = tuple[tuple[str, str], ...]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen_jobs (
    job_key TEXT PRIMARY KEY,
    end_time REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
CREATE TABLE IF NOT EXISTS histogram_buckets (
    name TEXT NOT NULL, labels TEXT NOT NULL, le REAL NOT NULL, count REAL NOT NULL,
    PRIMARY KEY (name, labels, le)
);
CREATE TABLE IF NOT EXISTS histogram_totals (
    name TEXT NOT NULL, labels TEXT NOT NULL, sum REAL NOT NULL, count REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
"""


class StoreError(RuntimeError):
    """The store cannot be opened or written (unwritable directory, newer schema, disk full)."""


def labels_of(**labels: object) -> Labels:
    """Canonical label tuple: ``(name, str(value))`` pairs sorted by name."""
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


@dataclass(frozen=True)
class Observation:
    """What one finished job contributes, counted only the first time its key is seen.

    Attributes:
        key: deduplication key (the job's ``JobIDRaw``).
        end_time: the job's end, Unix seconds (the poll time when unknown), used for pruning.
        counters: ``(counter name, labels, increment)`` triples.
        samples: ``(histogram name, labels, observed value)`` triples; non-finite values are ignored.

    """

    key: str
    end_time: float
    counters: tuple[tuple[str, Labels, float], ...] = ()
    samples: tuple[tuple[str, Labels, float], ...] = ()


def _lab(labels: Labels) -> str:
    return json.dumps([list(p) for p in sorted(labels)], separators=(",", ":"), ensure_ascii=False)


def _unlab(text: str) -> Labels:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


class AccountingStore:
    """Deduplicating counter/histogram store in one SQLite file.

    Args:
        path: the database file (its directory is created when missing).
        buckets: finite upper bounds per histogram name, increasing (``+Inf`` is implicit).

    Raises:
        StoreError: when the file cannot be opened or created, or was written by a newer schema. A file that is
            not a database (corrupt) is moved aside to ``<name>.corrupt-<unix time>`` and a fresh one is created:
            the counters then restart from zero, which Prometheus handles as a counter reset.

    Thread-safe: every method takes one lock.

    """

    def __init__(self, path: Path, buckets: Mapping[str, Sequence[float]]) -> None:
        self.path = Path(path)
        self.buckets = {k: tuple(float(b) for b in v) for k, v in buckets.items()}
        for name, bounds in self.buckets.items():
            if list(bounds) != sorted(set(bounds)) or any(math.isinf(b) for b in bounds):
                raise ValueError(f"{name}: bucket bounds must be finite and strictly increasing")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc}") from exc
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # permissions, locks: not corruption, keep the file
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("accounting store %s unreadable (%s); moved to %s, starting empty", self.path, exc, aside)
            try:
                self.path.rename(aside)
                for suffix in ("-wal", "-shm"):
                    side = self.path.with_name(self.path.name + suffix)
                    if side.exists():
                        side.rename(aside.with_name(aside.name + suffix))
                self._conn = self._open()
            except (OSError, sqlite3.DatabaseError) as exc2:
                raise StoreError(f"cannot recreate {self.path}: {exc2}") from exc2

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            # This connection's scratch table of one poll's keys (record()); temporary tables are not in the file.
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS poll_keys (job_key TEXT PRIMARY KEY)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema {version}, newer than this exporter's {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def record(self, observations: Iterable[Observation], now: float, prune_before: float | None = None) -> int:
        """Count every observation whose key was not seen before, then prune old keys; one transaction.

        The work is done in bulk (a temporary table of this poll's keys, ``executemany``, and the increments of
        the new observations summed in memory, then one write per counter, histogram child and bucket), with
        the same result as counting the observations one by one in order: sums are accumulated in observation
        order starting from the stored value, so even floating-point rounding is the same.

        Args:
            observations: this poll's finished jobs.
            now: poll time (Unix seconds), stored as ``last_seen`` of every observed key.
            prune_before: forget keys whose end time and last sighting are both earlier than this.

        Returns:
            The number of newly counted observations (a key given twice counts once, with its first
            observation).

        Raises:
            StoreError: when the write fails; nothing of this call is kept.
            ValueError: for a histogram name without declared buckets (nothing is kept either).

        """
        obs = observations if isinstance(observations, list) else list(observations)
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("DELETE FROM temp.poll_keys")
                cur.executemany("INSERT OR IGNORE INTO temp.poll_keys (job_key) VALUES (?)", [(ob.key,) for ob in obs])
                seen = {
                    row[0]
                    for row in cur.execute(
                        "SELECT job_key FROM seen_jobs WHERE job_key IN (SELECT job_key FROM temp.poll_keys)"
                    )
                }
                if seen:
                    cur.execute(
                        "UPDATE seen_jobs SET last_seen = ? WHERE job_key IN (SELECT job_key FROM temp.poll_keys)",
                        (now,),
                    )
                new: list[Observation] = []
                if len(seen) < len(obs):
                    for ob in obs:
                        if ob.key not in seen:
                            seen.add(ob.key)  # a key given twice in one poll counts once
                            new.append(ob)
                if new:
                    cur.executemany(
                        "INSERT INTO seen_jobs (job_key, end_time, last_seen) VALUES (?, ?, ?)",
                        [(ob.key, ob.end_time, now) for ob in new],
                    )
                    self._add(cur, new)
                if prune_before is not None:
                    cur.execute(
                        "DELETE FROM seen_jobs WHERE end_time < ? AND last_seen < ?", (prune_before, prune_before)
                    )
                cur.execute("DELETE FROM temp.poll_keys")
                cur.execute("COMMIT")
                return len(new)
            except BaseException as exc:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"writing {self.path}: {exc}") from exc
                raise

    def _add(self, cur: sqlite3.Cursor, new: list[Observation]) -> None:
        """Add the counters and histogram samples of newly counted observations (inside the transaction).

        Values are summed in observation order starting from the stored value, exactly as one ``value + inc``
        update per observation would; then each touched row is written once.
        """
        labs: dict[Labels, str] = {}
        counters: dict[tuple[str, str], float] = {}  # (name, labels) -> running value
        counter_names: set[str] = set()
        touched: set[tuple[str, str]] = set()  # counter rows this call changes
        sums: dict[tuple[str, str], float] = {}  # (name, labels) -> running histogram sum
        sum_names: set[str] = set()
        counts: dict[tuple[str, str], int] = {}  # (name, labels) -> new observations
        firsts: dict[tuple[str, str], list[int]] = {}  # (name, labels) -> new observations by first bound >= them
        for ob in new:
            for name, labels, inc in ob.counters:
                if name not in counter_names:
                    counter_names.add(name)
                    for lab_text, value in cur.execute("SELECT labels, value FROM counters WHERE name = ?", (name,)):
                        counters[(name, lab_text)] = value
                lab = labs.get(labels)
                if lab is None:
                    lab = labs[labels] = _lab(labels)
                key = (name, lab)
                old = counters.get(key)
                counters[key] = float(inc) if old is None else old + float(inc)
                touched.add(key)
            for name, labels, value in ob.samples:
                bounds = self.buckets.get(name)
                if bounds is None:
                    raise ValueError(f"histogram {name} has no buckets declared")
                value = float(value)
                if not math.isfinite(value):
                    continue
                if name not in sum_names:
                    sum_names.add(name)
                    for lab_text, total in cur.execute(
                        "SELECT labels, sum FROM histogram_totals WHERE name = ?", (name,)
                    ):
                        sums[(name, lab_text)] = total
                lab = labs.get(labels)
                if lab is None:
                    lab = labs[labels] = _lab(labels)
                key = (name, lab)
                old = sums.get(key)
                sums[key] = value if old is None else old + value
                counts[key] = counts.get(key, 0) + 1
                # value <= le exactly for the bounds from the first one >= value on (bounds are increasing).
                first = firsts.get(key)
                if first is None:
                    first = firsts[key] = [0] * (len(bounds) + 1)
                first[bisect.bisect_left(bounds, value)] += 1
        buckets: list[tuple[str, str, float, int]] = []  # (name, labels, le, new observations <= le)
        for (name, lab), first in firsts.items():
            below = 0
            for le, n in zip(self.buckets[name], first, strict=False):
                below += n
                if below:  # a bucket row exists once some observation fell at or below it
                    buckets.append((name, lab, le, below))
        cur.executemany(
            "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) "
            "ON CONFLICT (name, labels) DO UPDATE SET value = excluded.value",
            [(name, lab, value) for (name, lab), value in counters.items() if (name, lab) in touched],
        )
        cur.executemany(
            "INSERT INTO histogram_buckets (name, labels, le, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, labels, le) DO UPDATE SET count = count + excluded.count",
            buckets,
        )
        cur.executemany(
            "INSERT INTO histogram_totals (name, labels, sum, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, labels) DO UPDATE SET sum = excluded.sum, count = count + excluded.count",
            [(name, lab, total, counts[(name, lab)]) for (name, lab), total in sums.items() if (name, lab) in counts],
        )

    def counters(self, name: str) -> dict[Labels, float]:
        """Cumulative values of one counter, keyed by label tuple."""
        with self._lock:
            rows = self._conn.execute("SELECT labels, value FROM counters WHERE name = ?", (name,)).fetchall()
        return {_unlab(lab): v for lab, v in rows}

    def histograms(self, name: str) -> dict[Labels, tuple[list[tuple[float, float]], float, float]]:
        """Cumulative state of one histogram: ``{labels: (buckets, sum, count)}``.

        ``buckets`` are cumulative ``(upper bound, count)`` pairs for the declared bounds plus ``(inf, count)``,
        the shape :meth:`nomade.exporter.metrics.MetricSet.histogram` takes.
        """
        bounds = self.buckets[name]
        with self._lock:
            totals = self._conn.execute(
                "SELECT labels, sum, count FROM histogram_totals WHERE name = ?", (name,)
            ).fetchall()
            rows = self._conn.execute(
                "SELECT labels, le, count FROM histogram_buckets WHERE name = ?", (name,)
            ).fetchall()
        by_lab: dict[str, dict[float, float]] = {}
        for lab, le, count in rows:
            by_lab.setdefault(lab, {})[le] = count
        out: dict[Labels, tuple[list[tuple[float, float]], float, float]] = {}
        for lab, total, count in totals:
            got = by_lab.get(lab, {})
            buckets = [(le, got.get(le, 0.0)) for le in bounds] + [(math.inf, count)]
            out[_unlab(lab)] = (buckets, total, count)
        return out

    def seen_keys(self) -> int:
        """Number of job keys currently remembered."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM seen_jobs").fetchone()[0])

    def is_seen(self, key: str) -> bool:
        """Whether ``key`` is remembered as counted."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM seen_jobs WHERE job_key = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        """Close the database (a later call of any method fails)."""
        with self._lock:
            self._conn.close()
