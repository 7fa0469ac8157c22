"""The faster squeue parser and queue aggregation give exactly what the code they replaced gave.

``ref_job_from_table``/``ref_parse_table`` and ``ref_fill`` are the implementations before the speed-ups, kept
verbatim.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.collectors.slurm_queue import _P, SlurmQueueCollector, _sum, _times, fill, weighted_quantile
from nomade.exporter.metrics import MetricSet
from nomade.exporter.parsers.common import ParseResult
from nomade.exporter.parsers.slurm_units import is_null, parse_timestamp, split_header_table
from nomade.exporter.parsers.squeue import (
    _JOBID,
    HEADERS,
    QueueJob,
    _gpus_from_tres,
    _split_partitions,
    _state,
    count_array_tasks,
    parse_squeue,
    reason_token,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_717_000_000.0

# ================================ reference code (verbatim from before the speed-ups) ==========================


def ref_job_from_table(f: dict[str, str], bitstr_len: int) -> tuple[QueueJob | None, list[str]]:
    issues: list[str] = []
    raw_id = f.get("JOBID", "")
    m = _JOBID.match(raw_id)
    if not m:
        return None, [f"bad job id {raw_id!r}"]
    state = _state(f.get("STATE", f.get("ST")))
    if state is None:
        return None, [f"job {raw_id}: unknown state {f.get('STATE', f.get('ST'))!r}"]
    array_job_id = f.get("ARRAY_JOB_ID")
    task = f.get("ARRAY_TASK_ID")
    if task is None and m.group("task") is not None:
        task = m.group("task")
        array_job_id = m.group("id")
    array_tasks: str | None = None
    tasks: int | None = 1
    if task is not None and not is_null(task):
        if task.isdigit():
            pass  # one task of an array
        else:
            array_tasks = task.strip("[]")
            try:
                tasks = count_array_tasks(task, bitstr_len)
            except ValueError as exc:
                tasks = None
                issues.append(f"job {raw_id}: {exc}")
    else:
        array_job_id = None
    if array_job_id is not None and (is_null(array_job_id) or array_job_id == "0"):
        array_job_id = None

    def time(key: str) -> float | None:
        t = f.get(key)
        if t is None:
            return None
        try:
            return parse_timestamp(t)
        except ValueError:
            issues.append(f"job {raw_id}: {key} {t!r} is not a timestamp")
            return None

    def integer(key: str) -> int | None:
        t = f.get(key)
        if t is None or is_null(t):
            return None
        if t.isdigit():
            return int(t)
        issues.append(f"job {raw_id}: {key} {t!r} is not an integer")
        return None

    reason_text = f.get("REASON")
    if reason_text is None and "NODELIST(REASON)" in f:
        nl = f["NODELIST(REASON)"]
        reason_text = nl if nl.startswith("(") else None  # running jobs show their node list here
    gpus: float | None = None
    if "TRES_ALLOC" in f:
        try:
            gpus = _gpus_from_tres(f["TRES_ALLOC"])
        except ValueError:
            issues.append(f"job {raw_id}: bad TRES {f['TRES_ALLOC']!r}")
    job = QueueJob(
        job_id=raw_id,
        partitions=_split_partitions(f.get("PARTITION")),
        state=state,
        reason=reason_token(reason_text),
        array_job_id=array_job_id,
        array_tasks=array_tasks,
        tasks=tasks,
        submit_time=time("SUBMIT_TIME"),
        eligible_time=time("ELIGIBLE_TIME"),
        cpus=integer("CPUS"),
        nodes=integer("NODES"),
        gpus=gpus,
        fields=f,
    )
    return job, issues


def ref_parse_table(text: str, bitstr_len: int = 64) -> ParseResult[QueueJob]:
    result: ParseResult[QueueJob] = ParseResult()
    stripped = text.strip()
    if not stripped:
        return result
    table = split_header_table(text, HEADERS)
    if table is None or "JOBID" not in table[0] or not ({"STATE", "ST"} & set(table[0])):
        result.skip(0, "unrecognised format", stripped.splitlines()[0])
        return result
    headers, rows = table
    for no, line, values in rows:
        if values is None:
            result.skip(no, f"expected {len(headers)} fields", line)
            continue
        f: dict[str, str] = {}
        for h, v in zip(headers, values, strict=True):
            f.setdefault(h, v)
        rec, issues = ref_job_from_table(f, bitstr_len)
        for issue in issues:
            result.skip(no, issue, line)
        if rec is not None:
            result.records.append(rec)
    return result


def ref_fill(out: MetricSet, jobs: list[QueueJob], now: float, quantiles: list[float]) -> None:
    """Aggregate parsed queue lines into ``out`` (separated from :meth:`collect` for tests)."""
    jobs_by: dict[tuple[str, str], float | None] = {}
    cpus_by: dict[tuple[str, str], float | None] = {}
    nodes_by: dict[tuple[str, str], float | None] = {}
    gpus_by: dict[tuple[str, str], float | None] = {}
    arrays: dict[tuple[str, str], set[str]] = defaultdict(set)
    reasons: dict[tuple[str, str], float | None] = {}
    oldest: dict[str, float] = {}
    waits: dict[str, list[tuple[float, int]]] = defaultdict(list)
    wait_unknown: set[str] = set()
    cluster: dict[str, dict[str, int | None]] = defaultdict(dict)
    seen: set[tuple[str, str]] = set()
    partitions: set[str] = set()
    for job in jobs:
        cluster[job.state][job.job_id] = job.tasks
        for part in job.partitions:
            if (job.job_id, part) in seen:  # squeue -P copies, or a partition listed twice
                continue
            seen.add((job.job_id, part))
            partitions.add(part)
            key = (part, job.state)
            _sum(jobs_by, key, job.tasks)
            _sum(cpus_by, key, _times(job.cpus, job.tasks))
            _sum(nodes_by, key, _times(job.nodes, job.tasks))
            _sum(gpus_by, key, _times(job.gpus, job.tasks))
            if job.array_job_id is not None:
                arrays[key].add(job.array_job_id)
            if job.state != "pending":
                continue
            _sum(reasons, (part, job.reason or "None"), job.tasks)
            if job.submit_time is not None:
                oldest[part] = min(oldest.get(part, math.inf), job.submit_time)
            # A future EligibleTime (--begin) means "not eligible yet": not part of the wait distribution.
            if job.eligible_time is not None and job.eligible_time <= now:
                if job.tasks is None:
                    wait_unknown.add(part)
                else:
                    waits[part].append((now - job.eligible_time, job.tasks))
    for (part, state), n in jobs_by.items():
        out.add(_P + "jobs", n, partition=part, state=state)
        out.add(_P + "requested_cpus", cpus_by.get((part, state)), partition=part, state=state)
        out.add(_P + "requested_nodes", nodes_by.get((part, state)), partition=part, state=state)
        out.add(_P + "requested_gpus", gpus_by.get((part, state)), partition=part, state=state)
        out.add(_P + "arrays", len(arrays.get((part, state), ())), partition=part, state=state)
    for state, by_id in cluster.items():
        counts = list(by_id.values())
        out.add(_P + "cluster_jobs", None if None in counts else sum(c or 0 for c in counts), state=state)
    for (part, reason), n in reasons.items():
        out.add(_P + "pending_jobs_by_reason", n, partition=part, reason=reason)
    for part, submit in oldest.items():
        out.add(_P + "oldest_pending_age_seconds", max(0.0, now - submit), partition=part)
    for part in sorted(partitions):
        if part in wait_unknown:
            continue  # a task count is unknown: quantiles would be wrong
        if any(state == "pending" for (p, state) in jobs_by if p == part):
            out.add(_P + "pending_eligible_jobs", sum(w for _, w in waits.get(part, [])), partition=part)
        for q in quantiles:
            out.add(_P + "pending_wait_seconds", weighted_quantile(waits.get(part, []), q), partition=part,
                    quantile=f"{q:g}")  # fmt: skip


# ================================ the checks =================================================================


def _load_synth():
    spec = importlib.util.spec_from_file_location("nomade_bench_synth_sq", ROOT / "bench" / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


synth = _load_synth()
US = "\x1f"


def same_parse(text: str, bitstr_len: int = 64) -> None:
    new, old = parse_squeue(text, bitstr_len), ref_parse_table(text, bitstr_len)
    assert [asdict(j) for j in new.records] == [asdict(j) for j in old.records]
    assert new.issues == old.issues


def test_synthetic_queue_parses_the_same():
    text = synth.generate(60, 4000, now=NOW, seed=2).squeue_text
    same_parse(text)
    same_parse(text, 0)


HEADER = US.join(["JOBID", "ARRAY_JOB_ID", "ARRAY_TASK_ID", "PARTITION", "STATE", "REASON", "SUBMIT_TIME",
                  "ELIGIBLE_TIME", "CPUS", "NODES", "TRES_ALLOC"]) + US  # fmt: skip
PIECES = st.sampled_from(
    [
        "123", "123_4", "123_[1-5%2]", "x", "N/A", "0", "4", "1-100%5", "[1,3,5-9:2]", "1-" + "9" * 70, "cpu",
        "cpu,long*", "", "PENDING", "R", "CANCELLED by 5", "bogus", "Priority", "(Resources)", "some text",
        "2024-05-01T10:00:00", "2024-02-30T10:00:00", "Unknown", "N/A", "4K", "cpu=4,gres/gpu=2", "gres/gpu:a100=1",
        " padded ", US,
    ]
)  # fmt: skip


@settings(max_examples=400)
@given(st.lists(st.lists(PIECES, min_size=9, max_size=12).map(US.join), max_size=12), st.sampled_from([0, 64]))
def test_random_tables_parse_the_same(lines, bitstr_len):
    same_parse("\n".join([HEADER, *lines]), bitstr_len)


@settings(max_examples=100)
@given(st.lists(st.sampled_from(["JOBID", "STATE", "ST", "PARTITION", "CPUS", "REASON", "NODELIST(REASON)"]),
                min_size=1, max_size=7), st.lists(st.lists(PIECES, min_size=1, max_size=7), max_size=6))  # fmt: skip
def test_repeated_and_unusual_titles_parse_the_same(titles, rows):
    text = "\n".join(["|".join(titles), *("|".join(r).replace(US, "") for r in rows)])
    if text.strip() and not text.strip().startswith("{"):
        same_parse(text)


JOBS = st.builds(
    QueueJob,
    job_id=st.sampled_from(["1", "2", "3", "4_[1-3]", "5_1"]),
    partitions=st.lists(st.sampled_from(["cpu", "gpu", "long"]), max_size=3).map(tuple),
    state=st.sampled_from(["pending", "running", "completing"]),
    reason=st.sampled_from([None, "Priority", "Resources"]),
    array_job_id=st.sampled_from([None, "4", "5"]),
    tasks=st.sampled_from([None, 1, 3, 100]),
    submit_time=st.one_of(st.none(), st.floats(NOW - 1e5, NOW + 10)),
    eligible_time=st.one_of(st.none(), st.floats(NOW - 1e5, NOW + 100)),
    cpus=st.sampled_from([None, 1, 4, 64]),
    nodes=st.sampled_from([None, 1, 2]),
    gpus=st.sampled_from([None, 0.0, 2.0, 0.5]),
)


def snapshot(out: MetricSet) -> dict:
    return {n: (dict(f.samples), dict(f.histograms)) for n, f in out._families.items()}


@settings(max_examples=400)
@given(st.lists(JOBS, max_size=25))
def test_fill_equals_reference(jobs):
    new, old = MetricSet(SlurmQueueCollector.metrics), MetricSet(SlurmQueueCollector.metrics)
    fill(new, jobs, NOW, [0.5, 0.9, 1.0])
    ref_fill(old, jobs, NOW, [0.5, 0.9, 1.0])
    assert snapshot(new) == snapshot(old)
