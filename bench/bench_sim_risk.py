"""Holdout quality of the failure-risk pipeline on the simulated cluster, against the user-history baseline.

Prints figures; it asserts nothing. For a seed, a history length and one or more end times it reproduces what the
analytics service does at its first retraining in the simulated demo (``deploy/sim/sim.sh start``: ``DAYS`` of
history, the risk engine's first harvest covering all of it) and prints, per end time:

* class counts (jobs, failures) of the training part and of the holdout, and the holdout's composition by
  workload kind (``Job.kind``, the simulation's ground truth; ``array`` = tasks of the surge job arrays);
* holdout AUC-ROC and Brier score of the served ``risk`` (:class:`nomade.analytics.pipeline.RiskPipeline`, submit
  setting, the configured members) and of the user-history baseline, on the whole holdout and on its non-array
  jobs (the surge tasks of one array share every submit-time fact and fail at random, so they are one block of
  tied scores), and per submission: every job weighted 1 / (tasks of its submission), a submission being one
  ``(user, job name, submit time)`` (an array's tasks are submitted in the same second), so that a 400-task array
  counts as much as one job (``roc_auc_score(..., sample_weight=...)``).

Split and scoring are those of :meth:`nomade.analytics.risk.RiskEngine.train`:
:func:`~nomade.analytics.risk.time_holdout` (newest 20 % by submit time; training jobs still running at the first
holdout submit dropped), the pipeline fitted on the training part, the holdout scored with every finished job as
``history`` (``predict_models``), metrics by :func:`~nomade.analytics.risk.holdout_metrics`; the baseline figure is
the pipeline's ``baseline`` member, the one the engine records as ``holdout.auc_roc.baseline``.

Data path: the job table is built from the SIMULATION STATE, not through Prometheus, so one end time costs seconds.
Each finished job of ``Simulation.state.finished`` that ended in ``[end - days, end]`` becomes one row with the
columns the harvest (:func:`nomade.analytics.harvest.fetch_finished_jobs`) gives the submit-time features: user,
account, partition, job name, submit/start/end times (s), requested CPUs, nodes, GPUs, ``req_mem_bytes`` = ``--mem``
x nodes (sacct's ``ReqMem`` as rendered by :mod:`nomade.sim.render_slurm`), time limit, and ``failure_class`` from
the real :func:`nomade.exporter.parsers.slurm_outcome.classify` of the job's state, exit code, signal and step
states; ``failed`` = class is not ``success``. Checked against the real path for seed 42, 1 day ending
2026-11-29T00:00Z at a 300 s step (``nomade sim history`` -> Prometheus 2.x -> ``fetch_finished_jobs``): the same
2015 jobs, identical user/account/partition/job name/requests/time limit/failure class for every one, times equal
to the second (Prometheus samples hold whole seconds) -- and ``RiskEngine.run_cycle`` on that Prometheus gave the
same holdout (547 jobs, 34 failures) and baseline AUC (0.763). The run-time features (node and I/O series) are not
built here: the submit setting, the one trained from a backfilled history, does not use them.

Usage::

    .venv/bin/python bench/bench_sim_risk.py                       # seed 42, 1 day ending 2026-11-29T00:00Z
    .venv/bin/python bench/bench_sim_risk.py --seed 7 --days 2
    .venv/bin/python bench/bench_sim_risk.py --ends 8 --spacing 3h  # 8 end times 3 h apart: the spread
    .venv/bin/python bench/bench_sim_risk.py --models gbm --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from nomade.analytics.pipeline import RiskPipeline
from nomade.analytics.risk import holdout_metrics, time_holdout
from nomade.exporter.parsers.slurm_outcome import classify
from nomade.sim.engine import Simulation
from nomade.sim.model import default_cluster, default_workload

DEFAULT_END = 1795910400.0
"""2026-11-29T00:00:00Z: a fixed end so that runs are comparable (the demo uses the wall clock)."""
MIB = 1 << 20
ADVANCE_S = 3600.0
"""Seconds per ``Simulation.advance`` call (the state at a time does not depend on the spacing of the calls)."""


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def simulated_jobs(seed: int, days: float, end: float) -> pd.DataFrame:
    """Finished jobs of the default simulated cluster that ended in ``[end - days * 86400, end]``.

    Args:
        seed: simulation seed.
        days: history length, days (> 0).
        end: end of the history, Unix s.

    Returns:
        One row per job (columns in the module docstring, plus ``kind`` and ``array``: ground truth, never
        features), sorted by end time.

    """
    start = end - days * 86400.0
    sim = Simulation(default_cluster(), default_workload(), seed, start)
    t = start
    while t < end:
        t = min(end, t + ADVANCE_S)
        sim.advance(t)
    rows = []
    for j in sim.state.finished:
        if j.end_time is None or not start <= j.end_time <= end:
            continue
        fc = classify(j.state, j.exit_code, j.signal, step_states=[s.state for s in j.steps])
        array = j.array_job_id is not None
        rows.append(
            {
                "job_id": f"{j.array_job_id}_{j.array_task_id}" if array else str(j.job_id),
                "user": j.user,
                "account": j.account,
                "partition": j.partition,
                "job_name": j.name,
                "submit_time": float(j.submit_time),
                "start_time": float(j.start_time) if j.start_time is not None else math.nan,
                "end_time": float(j.end_time),
                "req_cpus": float(j.req_cpus),
                "req_nodes": float(j.req_nodes),
                "req_gpus": float(j.req_gpus),
                "req_mem_bytes": float(j.req_mem_mib * MIB * j.req_nodes),
                "timelimit_s": float(j.time_limit_s),
                "state": j.state,
                "failure_class": fc,
                "failed": float(fc != "success"),
                "kind": "array" if array else j.kind,
                "array": array,
            }
        )
    return pd.DataFrame(rows).sort_values(["end_time", "job_id"], kind="stable").reset_index(drop=True)


def _counts(df: pd.DataFrame) -> dict[str, int]:
    return {"jobs": int(len(df)), "failures": int(df["failed"].sum())}


def evaluate(jobs: pd.DataFrame, models: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """Split, fit and score like ``RiskEngine.train`` (module docstring); the figures as a dict."""
    d = jobs.drop(columns=["kind", "array"])
    train, hold, t_h = time_holdout(d)
    kinds = jobs.set_index("job_id")["kind"]
    t0 = time.perf_counter()
    pipe = RiskPipeline(setting="submit", models=tuple(models), seed=seed).fit(train)
    fit_s = time.perf_counter() - t0
    cols = pipe.predict_models(hold, d)
    y = hold["failed"].to_numpy().astype(int)
    non_array = ~kinds.reindex(hold["job_id"]).eq("array").to_numpy()
    out: dict[str, Any] = {
        "t_holdout": t_h,
        "train": _counts(train),
        "holdout": _counts(hold),
        "holdout_kinds": {
            k: {"jobs": int(len(g)), "failures": int(g["failed"].sum())}
            for k, g in hold.assign(kind=kinds.reindex(hold["job_id"]).to_numpy()).groupby("kind")
        },
        "kept": pipe.metadata.get("selection", {}).get("kept"),
        "fit_s": fit_s,
    }
    w = 1.0 / hold.groupby(["user", "job_name", "submit_time"], dropna=False)["job_id"].transform("size").to_numpy()
    for name in ("risk", "baseline"):
        s = cols[name].to_numpy(float)
        m = holdout_metrics(y, s)
        na = holdout_metrics(y[non_array], s[non_array])
        ok = np.isfinite(s)
        per_sub = float(roc_auc_score(y[ok], s[ok], sample_weight=w[ok])) if 0 < y[ok].sum() < ok.sum() else math.nan
        out[name] = {
            "auc_roc": m["auc_roc"],
            "brier": m["brier"],
            "auc_roc_non_array": na["auc_roc"],
            "auc_roc_per_submission": per_sub,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (module docstring); returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=42, help="simulation seed (default 42, the demo's)")
    ap.add_argument("--days", type=float, default=1.0, help="days of history (default 1, the demo's)")
    ap.add_argument("--end", type=float, default=DEFAULT_END, help="end of the history, Unix s (default 2026-11-29)")
    ap.add_argument("--ends", type=int, default=1, help="number of end times (default 1)")
    ap.add_argument("--spacing", type=_duration, default=3 * 3600.0, help="between end times (default 3h)")
    ap.add_argument("--models", default="gbm,knn,gnn,autoencoder", help="pipeline members (default: the service's)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    models = [m for m in args.models.split(",") if m]
    results = []
    print(f"seed {args.seed}, {args.days:g} day(s), models {','.join(models)}")
    for k in range(args.ends):
        end = args.end + k * args.spacing
        jobs = simulated_jobs(args.seed, args.days, end)
        r = evaluate(jobs, models)
        r["end"] = end
        results.append(r)
        comp = " ".join(f"{n}:{v['jobs']}/{v['failures']}" for n, v in sorted(r["holdout_kinds"].items()))
        print(
            f"end {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(end))}  train {r['train']['jobs']} jobs "
            f"{r['train']['failures']} failed  holdout {r['holdout']['jobs']} jobs {r['holdout']['failures']} failed"
        )
        print(f"  holdout by kind (jobs/failed): {comp}")
        for name in ("risk", "baseline"):
            m = r[name]
            print(
                f"  {name:8s} AUC-ROC {m['auc_roc']:.3f}  Brier {m['brier']:.4f}  "
                f"AUC-ROC non-array {m['auc_roc_non_array']:.3f}  per submission {m['auc_roc_per_submission']:.3f}"
            )
        print(f"  stacked members: {r['kept']}  (fit {r['fit_s']:.1f} s)")
    if len(results) > 1:
        for name in ("risk", "baseline"):
            a = np.array([r[name]["auc_roc"] for r in results])
            b = np.array([r[name]["brier"] for r in results])
            c = np.array([r[name]["auc_roc_non_array"] for r in results])
            e = np.array([r[name]["auc_roc_per_submission"] for r in results])
            print(
                f"mean over {len(results)} ends: {name:8s} AUC-ROC {np.nanmean(a):.3f} (min {np.nanmin(a):.3f})  "
                f"Brier {np.nanmean(b):.4f}  non-array {np.nanmean(c):.3f}  per submission {np.nanmean(e):.3f}"
            )
        diff = np.array([r["risk"]["auc_roc"] - r["baseline"]["auc_roc"] for r in results])
        print(f"risk - baseline AUC-ROC: mean {np.nanmean(diff):+.3f}, min {np.nanmin(diff):+.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seed": args.seed, "days": args.days, "models": models, "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
