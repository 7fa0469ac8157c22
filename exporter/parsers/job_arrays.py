"""Job-array health from parsed sacct records: the share of failed tasks per array.

A pure function over :class:`~nomade.exporter.parsers.sacct.SacctJob` records (the accounting collector's
parsed ``sacct`` output), so it adds no command run. An array task's ``JobID`` is ``<array job id>_<index>``
(sacct(1), "JobID": "Job arrays are displayed as ArrayJobID_ArrayTaskID"); a not-yet-split pending remainder
``<id>_[1-100%5]`` is not a task record and is skipped.

Failed = a finished task whose failure class (:func:`~nomade.exporter.parsers.slurm_outcome.classify`) is not
``success``, except ``cancelled`` which is counted separately: cancelling the rest of an array is a user
decision, not a sign the array is broken (a user cancel is still not a success, and still not "failed" here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .sacct import SacctJob

_TASK = re.compile(r"^(?P<array>\d+)_(?P<task>\d+)$")


@dataclass(frozen=True)
class ArrayHealth:
    """Outcome counts of the finished tasks of one job array.

    Attributes:
        array_job_id: the array's job id (``ArrayJobID``).
        finished: tasks in a terminal state (class other than ``other``).
        succeeded, failed, cancelled: counts among ``finished`` (failed excludes cancelled).
        failed_ratio: ``failed / (finished - cancelled)``; ``None`` when no task finished un-cancelled.

    """

    array_job_id: str
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    failed_ratio: float | None


def array_task_id(job_id: str) -> tuple[str, str] | None:
    """``(array job id, task index)`` of an array task id ``"123_4"``, ``None`` for anything else."""
    m = _TASK.match(job_id)
    return (m["array"], m["task"]) if m else None


def array_health(jobs: Iterable[SacctJob], min_tasks: int = 1) -> list[ArrayHealth]:
    """Per-array outcome counts of the finished tasks in ``jobs``.

    Args:
        jobs: parsed sacct records (duplicates by ``job_id_raw`` are counted once, the last record wins:
            a requeued task's final state is what counts).
        min_tasks: arrays with fewer finished tasks are left out (bounds the label set; default 1).

    Returns:
        One :class:`ArrayHealth` per array, sorted by array job id (numerically).

    """
    latest: dict[str, tuple[str, str]] = {}
    for j in jobs:
        ids = array_task_id(j.job_id)
        if ids is None:
            continue
        latest[j.job_id_raw or j.job_id] = (ids[0], j.failure_class)
    counts: dict[str, list[int]] = {}
    for array, cls in latest.values():
        if cls == "other":
            continue
        c = counts.setdefault(array, [0, 0, 0, 0])  # finished, succeeded, failed, cancelled
        c[0] += 1
        if cls == "success":
            c[1] += 1
        elif cls == "cancelled":
            c[3] += 1
        else:
            c[2] += 1
    out = []
    for array in sorted(counts, key=int):
        finished, ok, failed, cancelled = counts[array]
        if finished < min_tasks:
            continue
        denom = finished - cancelled
        out.append(ArrayHealth(array, finished, ok, failed, cancelled, failed / denom if denom else None))
    return out
