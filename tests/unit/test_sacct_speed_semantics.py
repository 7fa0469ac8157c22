"""The fast sacct paths give exactly what the code they replaced gave.

``ref_parse`` (the dict-per-line parser), ``RefStore.record`` (one SQL statement per job and bucket) and
``RefCollector.collect`` (everything rebuilt per scrape) are the implementations before the speed-ups, kept
verbatim. The new code must produce the same records and issues, the same exposition samples on every scrape
(also while the sacct result is cached and the window moves), and the same database rows, floating-point sums
included.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomade.exporter.accounting_store import AccountingStore, Labels, Observation, StoreError, _lab, labels_of
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.slurm_accounting import (
    _TERMINAL_LONG,
    CPU_EFF,
    EFFICIENCY_BUCKETS,
    FINISHED,
    MEM_EFF,
    SlurmAccountingCollector,
    dedup_key,
)
from nomade.exporter.metrics import MetricSet
from nomade.exporter.parsers.common import ParseResult
from nomade.exporter.parsers.sacct import (
    _JOB_KEY,
    DELIMITERS,
    SACCT_DELIMITER,
    SACCT_FIELDS,
    SacctJob,
    SacctStep,
    _canon,
    _is_header,
    parse_sacct,
)
from nomade.exporter.parsers.slurm_outcome import parse_exit_code, parse_state
from nomade.exporter.parsers.slurm_units import is_null, parse_duration, parse_size, parse_timestamp, parse_tres
from nomade.exporter.runner import CommandResult

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

# ================================ reference code (verbatim from before the speed-ups) ==========================


def ref_parse(text: str, fields: Sequence[str] | None, delimiter: str | None) -> ParseResult[SacctJob]:
    res: ParseResult[SacctJob] = ParseResult()
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    first_idx = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first_idx is None:
        return res
    first = lines[first_idx]
    if delimiter is None:
        delimiter = next((d for d in DELIMITERS if d in first), None)
        if delimiter is None and fields is not None and len(fields) == 1:
            delimiter = "|"
    if delimiter is None:
        res.skip(0, "unrecognised sacct output: no known delimiter", first)
        return res
    head = first.split(delimiter)
    if head and head[-1] == "":
        head = head[:-1]
    start = first_idx
    if _is_header(head):
        cols = [_canon(t) for t in head]
        start = first_idx + 1
    elif fields is not None:
        cols = [_canon(f) for f in fields]
    else:
        res.skip(0, "sacct output without header and no field list: columns unknown", first)
        return res
    if "jobidraw" not in cols and "jobid" not in cols:
        res.skip(0, "sacct output lacks JobID and JobIDRaw", first)
        return res
    n = len(cols)
    rows: list[tuple[int, dict[str, str]]] = []
    for idx in range(start, len(lines)):
        line = lines[idx]
        if not line.strip():
            continue
        parts = line.split(delimiter)
        if len(parts) == n + 1 and parts[-1] == "":
            parts.pop()  # --parsable: trailing delimiter
        if len(parts) > n and cols[-1] == "jobname":
            parts = parts[: n - 1] + [delimiter.join(parts[n - 1 :])]
        if len(parts) != n:
            res.skip(idx + 1, f"expected {n} fields, got {len(parts)}", line)
            continue
        rows.append((idx + 1, dict(zip(cols, parts, strict=True))))
    _build_jobs(rows, res)
    return res


def _text(raw: str) -> str | None:
    t = raw.strip()
    return None if is_null(t) or t == "None assigned" else t


def _count(raw: str) -> int | None:
    """A count as sacct prints it: digits, possibly with a 1024-based suffix from convert_num_unit (``1K``)."""
    t = raw.strip()
    if is_null(t):
        return None
    size = parse_size(t)
    if size is None or size[1]:
        raise ValueError(f"bad count {raw!r}")
    if size[0] != int(size[0]):
        raise ValueError(f"bad count {raw!r}")
    return int(size[0])


def _bytes(raw: str) -> float | None:
    size = parse_size(raw)
    if size is None:
        return None
    if size[1]:
        raise ValueError(f"bad size {raw!r}")
    return size[0]


def _reqmem(raw: str) -> tuple[float, str] | None:
    return parse_size(raw, "M")


class _Fields:
    """Field access for one line that turns parse failures into counted issues."""

    def __init__(self, row: dict[str, str], line_no: int, res: ParseResult[SacctJob]) -> None:
        self.row, self.line_no, self.res = row, line_no, res

    def get(self, name: str, fn: Callable[[str], T]) -> T | None:
        raw = self.row.get(name)
        if raw is None:
            return None
        try:
            return fn(raw)
        except (ValueError, OverflowError) as exc:
            self.res.skip(self.line_no, f"{name}: {exc}", raw)
            return None


def _build_jobs(rows: list[tuple[int, dict[str, str]]], res: ParseResult[SacctJob]) -> None:
    jobs: dict[str, SacctJob] = {}
    steps: dict[str, list[tuple[int, SacctStep]]] = {}
    for line_no, row in rows:
        key = (row.get("jobidraw") or "").strip() or (row.get("jobid") or "").strip()
        if not _JOB_KEY.match(key):
            res.skip(line_no, f"bad job id {key!r}", key)
            continue
        base, dot, step_id = key.partition(".")
        f = _Fields(row, line_no, res)
        st = f.get("state", parse_state)
        ec = f.get("exitcode", parse_exit_code)
        if dot:
            steps.setdefault(base, []).append(
                (
                    line_no,
                    SacctStep(
                        step_id=step_id,
                        state=st[0] if st else None,
                        exit_code=ec[0] if ec else None,
                        exit_signal=ec[1] if ec else None,
                        max_rss_bytes=f.get("maxrss", _bytes),
                        total_cpu_seconds=f.get("totalcpu", parse_duration),
                    ),
                )
            )
            continue
        dec = f.get("derivedexitcode", parse_exit_code)
        job_id = (row.get("jobid") or "").strip() or base
        jobs.pop(base, None)  # keep input order of the last duplicate
        jobs[base] = SacctJob(
            job_id=job_id,
            job_id_raw=base,
            name=f.get("jobname", _text),
            user=f.get("user", _text),
            account=f.get("account", _text),
            partition=f.get("partition", _text),
            state=st[0] if st else None,
            cancelled_by=st[1] if st else None,
            exit_code=ec[0] if ec else None,
            exit_signal=ec[1] if ec else None,
            derived_exit_code=dec[0] if dec else None,
            derived_exit_signal=dec[1] if dec else None,
            submit=f.get("submit", parse_timestamp),
            start=f.get("start", parse_timestamp),
            end=f.get("end", parse_timestamp),
            elapsed_seconds=f.get("elapsed", parse_duration),
            timelimit_seconds=f.get("timelimit", parse_duration),
            total_cpu_seconds=f.get("totalcpu", parse_duration),
            alloc_cpus=f.get("alloccpus", _count),
            req_cpus=f.get("reqcpus", _count),
            req_mem=f.get("reqmem", _reqmem),
            own_max_rss_bytes=f.get("maxrss", _bytes),
            alloc_tres=f.get("alloctres", parse_tres) or {},
            req_tres=f.get("reqtres", parse_tres) or {},
            nnodes=f.get("nnodes", _count),
            nodelist=f.get("nodelist", _text),
        )
    for base, items in steps.items():
        job = jobs.get(base)
        if job is None:
            for line_no, step in items:
                res.skip(line_no, "step line without its job's allocation line", f"{base}.{step.step_id}")
            continue
        job.steps.extend(step for _, step in items)
    res.records.extend(jobs.values())


def ref_per_job_values(j: SacctJob) -> dict[str, float | int | None]:
    return {
        "nomade_slurm_job_requested_cpus": j.req_cpus,
        "nomade_slurm_job_allocated_cpus": j.alloc_cpus,
        "nomade_slurm_job_requested_memory_bytes": j.requested_memory_bytes,
        "nomade_slurm_job_max_rss_bytes": j.max_rss_bytes,
        "nomade_slurm_job_requested_gpus": j.requested_gpus,
        "nomade_slurm_job_timelimit_seconds": j.timelimit_seconds,
        "nomade_slurm_job_elapsed_seconds": j.elapsed_seconds,
        "nomade_slurm_job_cpu_seconds": j.total_cpu_seconds,
        "nomade_slurm_job_nodes": j.nnodes,
        "nomade_slurm_job_exit_code": j.exit_code,
        "nomade_slurm_job_exit_signal": j.exit_signal,
        "nomade_slurm_job_submit_timestamp_seconds": j.submit,
        "nomade_slurm_job_start_timestamp_seconds": j.start,
        "nomade_slurm_job_end_timestamp_seconds": j.end,
        "nomade_slurm_job_cpu_utilization_ratio": j.cpu_efficiency,
        "nomade_slurm_job_memory_utilization_ratio": j.memory_efficiency,
    }


class RefStore(AccountingStore):
    """The store with its old per-row record()."""

    def record(self, observations: Iterable[Observation], now: float, prune_before: float | None = None) -> int:
        """Count every observation whose key was not seen before, then prune old keys; one transaction.

        Args:
            observations: this poll's finished jobs.
            now: poll time (Unix seconds), stored as ``last_seen``.
            prune_before: forget keys whose end time and last sighting are both earlier than this.

        Returns:
            The number of newly counted observations.

        Raises:
            StoreError: when the write fails; nothing of this call is kept.
            ValueError: for a histogram name without declared buckets (nothing is kept either).

        """
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                new = 0
                for ob in observations:
                    if cur.execute("SELECT 1 FROM seen_jobs WHERE job_key = ?", (ob.key,)).fetchone():
                        cur.execute("UPDATE seen_jobs SET last_seen = ? WHERE job_key = ?", (now, ob.key))
                        continue
                    cur.execute(
                        "INSERT INTO seen_jobs (job_key, end_time, last_seen) VALUES (?, ?, ?)",
                        (ob.key, ob.end_time, now),
                    )
                    new += 1
                    for name, labels, inc in ob.counters:
                        cur.execute(
                            "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
                            (name, _lab(labels), float(inc)),
                        )
                    for name, labels, value in ob.samples:
                        self._observe(cur, name, labels, value)
                if prune_before is not None:
                    cur.execute(
                        "DELETE FROM seen_jobs WHERE end_time < ? AND last_seen < ?", (prune_before, prune_before)
                    )
                cur.execute("COMMIT")
                return new
            except BaseException as exc:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"writing {self.path}: {exc}") from exc
                raise

    def _observe(self, cur: sqlite3.Cursor, name: str, labels: Labels, value: float) -> None:
        if name not in self.buckets:
            raise ValueError(f"histogram {name} has no buckets declared")
        value = float(value)
        if not math.isfinite(value):
            return
        lab = _lab(labels)
        for le in self.buckets[name]:
            if value <= le:
                cur.execute(
                    "INSERT INTO histogram_buckets (name, labels, le, count) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (name, labels, le) DO UPDATE SET count = count + 1",
                    (name, lab, le),
                )
        cur.execute(
            "INSERT INTO histogram_totals (name, labels, sum, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (name, labels) DO UPDATE SET sum = sum + excluded.sum, count = count + 1",
            (name, lab, value),
        )


class RefCollector(SlurmAccountingCollector):
    """The collector with its old per-scrape collect() (and the old store)."""

    def store(self) -> AccountingStore:
        if self._store is None:
            self._store = RefStore(
                self.ctx.state_dir / "slurm_accounting.sqlite3",
                {CPU_EFF: EFFICIENCY_BUCKETS, MEM_EFF: EFFICIENCY_BUCKETS},
            )
        return self._store

    def _jobs(self) -> list[SacctJob]:
        result = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        if self._last is not None and self._last[0] is result:
            return self._last[1]  # cached output: already parsed, its issues already counted
        parsed = ref_parse(result.stdout, SACCT_FIELDS, SACCT_DELIMITER)
        self.count_parse_errors(len(parsed.issues))
        self._last = (result, parsed.records)
        return parsed.records

    def collect(self, out: MetricSet) -> None:
        """Poll sacct, count newly finished jobs in the store, expose totals and per-job series."""
        jobs = [j for j in self._jobs() if j.state in _TERMINAL_LONG]
        now = float(self.ctx.clock())
        horizon = now - 2 * self.lookback
        window_start = now - self.lookback
        store = self.store()
        observations = []
        for j in jobs:
            if j.end is not None and j.end < horizon:
                continue
            part = j.partition or ""
            cls = j.failure_class
            samples = []
            for hist, value in ((CPU_EFF, j.cpu_efficiency), (MEM_EFF, j.memory_efficiency)):
                if value is not None and math.isfinite(value):
                    samples.append((hist, labels_of(partition=part), value))
            observations.append(
                Observation(
                    key=dedup_key(j),
                    end_time=j.end if j.end is not None else now,
                    counters=(
                        (FINISHED, labels_of(partition=part, state=(j.state or "").lower(), failure_class=cls), 1.0),
                    ),
                    samples=tuple(samples),
                )
            )
        try:
            store.record(observations, now=now, prune_before=horizon)
            counters = store.counters(FINISHED)
            hists = {h: store.histograms(h) for h in (CPU_EFF, MEM_EFF)}
        except StoreError as exc:
            raise CollectorError(str(exc)) from exc
        for labels, value in counters.items():
            out.add(FINISHED, value, **dict(labels))
        for h, children in hists.items():
            for labels, (buckets, total, count) in children.items():
                out.histogram(h, buckets, total, count, **dict(labels))

        window = [j for j in jobs if j.end is None or j.end >= window_start]
        out.add("nomade_slurm_accounting_window_jobs", len(window))
        out.add("nomade_slurm_accounting_window_seconds", self.lookback)
        if not self.per_job:
            return
        # Most recent first; an unknown end sorts as "now" (the job has just been recorded as terminal).
        window.sort(key=lambda j: j.end if j.end is not None else now, reverse=True)
        kept = window[: self.max_jobs]
        out.add("nomade_slurm_accounting_window_jobs_dropped", len(window) - len(kept))
        for j in kept:
            out.info(
                "nomade_slurm_job_info",
                job_id=j.job_id,
                job_name=j.name or "",
                user=j.user or "",
                account=j.account or "",
                partition=j.partition or "",
                state=(j.state or "").lower(),
                failure_class=j.failure_class,
                nodelist=j.nodelist or "",
            )
            for name, value in ref_per_job_values(j).items():
                out.add(name, value, job_id=j.job_id)


# ================================ the checks =================================================================


def _load_synth():
    spec = importlib.util.spec_from_file_location("nomade_bench_synth_eq", ROOT / "bench" / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


synth = _load_synth()
NOW = 1_717_000_000.0
HAND = (
    (ROOT / "tests" / "fixtures" / "sacct" / "handwritten-22.05-steps-arrays-hetjobs.txt")
    .read_bytes()
    .decode("utf-8", "replace")
)


def same_parse(text: str, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER) -> None:
    new = parse_sacct(text, fields=fields, delimiter=delimiter)
    if text.strip().startswith("{") or not text.strip():
        return
    old = ref_parse(text, fields, delimiter)
    assert [asdict(j) for j in new.records] == [asdict(j) for j in old.records]
    assert new.issues == old.issues


def test_synthetic_workload_parses_the_same():
    w = synth.generate(50, 3000, now=NOW, seed=3)
    same_parse(w.sacct_text)


def test_handwritten_fixture_parses_the_same():
    same_parse(HAND)
    same_parse(HAND, fields=None, delimiter=None)


def test_block_boundaries_do_not_matter(monkeypatch):
    from nomade.exporter.parsers import sacct

    text = synth.generate(10, 400, now=NOW, seed=5).sacct_text
    for size in (1, 7, 100, 4096):
        monkeypatch.setattr(sacct, "_BLOCK_CHARS", size)
        same_parse(text)
        same_parse("\n\n  \n" + text.replace("\n", "\r\n", 30))


US = SACCT_DELIMITER
LINE_PIECES = st.sampled_from(
    [
        "1001", "1001.batch", "1001.0", "1002", "1002.extern", "77_3", "77_3.batch", "88+1", "x12", "", " ",
        "COMPLETED", "CANCELLED by 5", "OUT_OF_MEMORY", "FAILED", "bogus state", "0:0", "1:0", "0:9", "a:b",
        "2024-05-01T10:00:00", "2024-02-30T10:00:00", "Unknown", "None", "00:10:00", "1-00:00:00", "59:61",
        "UNLIMITED", "4", "1K", "1.5", "4000Mn", "2Gc", "bad", "1024K", "0", "cpu=2,mem=4G,gres/gpu=1", "mem=x",
        "None assigned", "c[01-02]", "job|name", US, US + US, "\r",
    ]
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(LINE_PIECES, min_size=1, max_size=26).map(US.join), max_size=14))
def test_random_outputs_parse_the_same(lines):
    same_parse("\n".join(lines))


@settings(max_examples=200)
@given(st.data())
def test_mangled_fixture_parses_the_same(data):
    lines = HAND.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        idx = data.draw(st.integers(0, len(lines) - 1))
        parts = lines[idx].split(US)
        parts[data.draw(st.integers(0, len(parts) - 1))] = data.draw(st.one_of(LINE_PIECES, st.text(max_size=12)))
        lines[idx] = US.join(parts)
    if data.draw(st.booleans()):
        lines = [lines[i] for i in data.draw(st.permutations(range(len(lines))))]  # steps before their job
    same_parse("\n".join(lines))


# --- store --------------------------------------------------------------------------------------------------


def dump(path: Path) -> dict[str, list]:
    con = sqlite3.connect(path)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())  # noqa: S608 - fixed table names
            for t in ("seen_jobs", "counters", "histogram_buckets", "histogram_totals", "schema_version")
        }
    finally:
        con.close()


def random_polls(seed: int) -> list[tuple[list[Observation], float, float | None]]:
    rng = random.Random(seed)
    polls = []
    for p in range(6):
        obs = []
        for _ in range(rng.randrange(0, 60)):
            key = str(rng.randrange(0, 120))
            part = rng.choice(["cpu", "gpu", ""])
            samples = []
            if rng.random() < 0.8:
                samples.append((CPU_EFF, labels_of(partition=part), rng.choice([rng.random() * 2.5, math.nan, 0.1])))
            if rng.random() < 0.6:
                samples.append((MEM_EFF, labels_of(partition=part), rng.random() * 1.7 + 1e-9 * rng.random()))
            counters = ((FINISHED, labels_of(partition=part, state="completed", failure_class="x"), rng.random()),)
            obs.append(Observation(key, rng.uniform(0, 1000 * (p + 1)), counters, tuple(samples)))
        polls.append((obs, 1000.0 * (p + 1), rng.choice([None, 500.0 * p])))
    return polls


def test_bulk_record_equals_row_by_row_record(tmp_path):
    buckets = {CPU_EFF: EFFICIENCY_BUCKETS, MEM_EFF: EFFICIENCY_BUCKETS}
    for seed in range(5):
        new = AccountingStore(tmp_path / f"new{seed}.sqlite3", buckets)
        old = RefStore(tmp_path / f"old{seed}.sqlite3", buckets)
        for obs, now, prune in random_polls(seed):
            assert new.record(iter(obs), now=now, prune_before=prune) == old.record(obs, now=now, prune_before=prune)
            assert dump(new.path) == dump(old.path)
        assert new.counters(FINISHED) == old.counters(FINISHED)
        assert new.histograms(CPU_EFF) == old.histograms(CPU_EFF)


# --- collector ----------------------------------------------------------------------------------------------


class CachingRunner:
    """Returns the same CommandResult object until ``fresh()``, as the runner does while its cache is valid."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.fresh()

    def fresh(self) -> None:
        self.result = CommandResult(("sacct",), self.stdout, "", 0.1, NOW)

    def run(self, argv, *, timeout=None, ttl=None):
        return self.result


def snapshot(out: MetricSet) -> dict:
    return {n: (dict(f.samples), dict(f.histograms)) for n, f in out._families.items()}


def run_both(tmp_path: Path, stdout: str, clock_times: Iterable[float], refresh: Callable[[int], bool], **options):
    times = list(clock_times)
    now = [times[0]]
    runners = {k: CachingRunner(stdout) for k in ("new", "old")}
    cols = {
        k: cls(CollectorContext(runner=runners[k], options=options, state_dir=tmp_path / k, clock=lambda: now[0]))
        for k, cls in (("new", SlurmAccountingCollector), ("old", RefCollector))
    }
    for i, t in enumerate(times):
        now[0] = t
        if refresh(i):
            for r in runners.values():
                r.fresh()
        outs = {}
        for k, c in cols.items():
            outs[k] = c.new_set()
            c.collect(outs[k])
        # Job-array health was added after the reference copy was taken: compare everything else.
        new = {k: v for k, v in snapshot(outs["new"]).items() if not k.startswith("nomade_job_hygiene_array")}
        old = {k: v for k, v in snapshot(outs["old"]).items() if not k.startswith("nomade_job_hygiene_array")}
        assert new == old, (i, t)
        assert dump(tmp_path / "new" / "slurm_accounting.sqlite3") == dump(
            tmp_path / "old" / "slurm_accounting.sqlite3"
        )
    for c in cols.values():
        c.close()


def test_collector_same_samples_while_cached_and_the_window_moves(tmp_path):
    # The handwritten fixture has a job without an end time (1050) and jobs near the window and horizon edges.
    start = datetime_local("2024-05-01T10:05:00")
    times = [start + s for s in (0, 30, 600, 1800, 3600, 5400, 7200, 9000, 14400)]
    run_both(tmp_path / "a", HAND, times, refresh=lambda i: i in (3, 6), max_jobs=5)
    run_both(tmp_path / "b", HAND, times, refresh=lambda i: False)
    run_both(tmp_path / "c", HAND, times, refresh=lambda i: True, max_jobs=0)
    run_both(tmp_path / "d", HAND, times, refresh=lambda i: False, per_job=False)


def test_collector_same_samples_on_a_synthetic_workload(tmp_path):
    w = synth.generate(40, 2500, now=NOW, seed=11, lookback=3000)
    # Without jobs lacking an end time (the cached fast path) and with one appended (the general path).
    times = [NOW + s for s in (0, 10, 900, 2400, 3300, 6000, 6900)]
    run_both(tmp_path / "a", w.sacct_text, times, refresh=lambda i: False, max_jobs=700)
    no_end = US.join(
        ["999", "999", "u", "a", "cpu", "FAILED", "1:0", "0:0", "Unknown", "Unknown", "Unknown"]
        + ["00:00:00", "01:00:00", "1", "1", "1G", "", "00:00:00", "cpu=1", "cpu=1", "1", "c01", "x"]
    )
    run_both(tmp_path / "b", w.sacct_text + no_end + "\n", times, refresh=lambda i: i == 4, max_jobs=300)


def datetime_local(text: str) -> float:
    return parse_timestamp(text)
