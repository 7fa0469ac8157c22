"""Time-ordered evaluation of job-failure prediction on one trace (issue 5): ``nomade analytics evaluate``.

Protocol
========
* **One dataset at a time.** Traces are never pooled (``../shared/datasets/SOURCES.md``); a store holding several
  clusters must be given ``--cluster``.
* **Outer split** (:func:`outer_split`): jobs sorted by ``submit_time``; the test period starts at a cut.
  ``--split fraction`` (default): the first ``train_frac`` (70 %) of jobs are the training period.
  ``--split auto``: for small traces whose failures cluster early (Deucalion, Eagle: the 70/30 test period holds no
  failure at all), the LATEST cut at or before 70 % that leaves at least ``--min-test-failures`` failures and as
  many successes in the test period and at least as many failures in the training period (the most training data
  compatible with a measurable test). ``--split YYYY-MM-DD`` (or any ISO date, UTC): a date cut. **Gap:** a
  training job whose end is at or after the first test submit is dropped from training (its outcome was not known
  yet when the test period starts). The report states the split used and why.
* **Pipeline:** exactly the served :class:`nomade.analytics.pipeline.RiskPipeline` (``setting="submit"`` or
  ``"run"``), fitted on the training period (it splits off its own later calibration slice, with the same gap
  rule); test jobs are scored by :meth:`~nomade.analytics.pipeline.RiskPipeline.predict_models` with the whole trace
  as history (history features only count jobs that ended before each job's submit, as in serving).
  ``run`` uses END-of-job usage values on traces: an optimistic upper bound of a real run-time model.
* **Models:** ``baseline`` (user's smoothed past failure rate), ``gbm`` (calibrated gradient boosting), ``knn``,
  ``gnn``, ``autoencoder`` (its Platt-scaled reconstruction error alone as a score), ``ensemble`` (stacking, the
  served ``risk``).
* **Metrics** (:func:`metrics`): AUC-ROC (``roc_auc_score``), AUC-PR (``average_precision_score``: step-wise
  average precision, not the trapezoid), recall at 5 % false-alarm rate (largest true-positive rate among ROC
  points with FPR <= 0.05, no interpolation -- a threshold that actually exists), Brier score
  (``brier_score_loss``). Undefined values (single-class test set) are NaN. Also: per-class alert recall (share of
  each failure class's test jobs with ``risk >= threshold``) and per-class AUC of ``p_<class>``; type 1 / type 2
  errors at thresholds 0.1..0.9 and at the cost-ratio threshold; reliability table and expected calibration error;
  share of test jobs flagged out of distribution.
* **Dataset caveats handled:** ``--cancelled-before-start drop`` (default) removes CANCELLED jobs with
  ``elapsed_s == 0`` (they never ran: Deucalion's 153 of 175 cancels; their "failure" is a user decision before any
  execution); ``keep`` leaves them as failures. LANL-CM5's "run ~ limit" is NOT turned into a TIMEOUT label (the
  CM-5 did not kill at the limit): labels are only the trace's own.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from .models import PER_CLASSES, expected_calibration_error, reliability_table
from .pipeline import KNOWN_MODELS, RiskPipeline, error_table

log = logging.getLogger(__name__)

#: Fraction of jobs (by submit order) in the training period.
TRAIN_FRAC = 0.7
#: Fraction of the training period (its end) used for calibration.
VAL_FRAC = 0.2
#: False-alarm rate at which recall is reported.
FPR_TARGET = 0.05
#: Candidate alert thresholds of the error-analysis table.
CANDIDATE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Default minimum number of failures (and successes) in the test period for ``--split auto``.
MIN_TEST_FAILURES = 10
#: ``--split auto`` never trains on less than this fraction of the jobs.
MIN_TRAIN_FRAC = 0.2
#: Plot resolution (small PNGs).
DPI = 80
#: Order of models in tables and plots.
MODEL_ORDER = ("baseline", "gbm", "knn", "gnn", "autoencoder", "ensemble")


@dataclass(frozen=True)
class Split:
    """Row positions (into the frame sorted by submit) of each part of a time-ordered split.

    ``fit`` trains the GBM, ``val`` calibrates it, ``train = fit + val`` is the whole (gap-filtered) training period
    and ``test`` the rest. ``t_test`` / ``t_val`` are the first submits (Unix s) of the test and calibration slices;
    ``dropped_gap`` counts training jobs removed because they ended at or after ``t_test`` (or ``t_val``).
    """

    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray
    t_val: float
    t_test: float
    dropped_gap: int

    @property
    def train(self) -> np.ndarray:
        """Positions of the whole training period (fit then val)."""
        return np.concatenate([self.fit, self.val])


def time_split(df: pd.DataFrame, train_frac: float = TRAIN_FRAC, val_frac: float = VAL_FRAC) -> Split:
    """Time-ordered train/calibration/test split with the end-before-test gap (fraction cut).

    Args:
        df: job table already sorted by ``submit_time`` (positions refer to its rows).
        train_frac: fraction of jobs in the training period.
        val_frac: fraction of the training period (its end) kept for calibration.

    Raises:
        ValueError: fewer than 10 jobs, or fractions outside (0, 1).

    """
    n = len(df)
    if n < 10 or not (0 < train_frac < 1 and 0 < val_frac < 1):
        raise ValueError(f"need >= 10 jobs and fractions in (0,1); got n={n}")
    sub = df["submit_time"].to_numpy(float)
    end = df["end_time"].to_numpy(float) if "end_time" in df.columns else np.full(n, np.inf)
    end = np.where(np.isnan(end), np.inf, end)
    n_tr = int(math.floor(train_frac * n))
    n_fit = int(math.floor((1 - val_frac) * n_tr))
    t_test = float(sub[n_tr])
    t_val = float(sub[n_fit])
    pos = np.arange(n)
    fit = pos[:n_fit][end[:n_fit] < t_val]
    val = pos[n_fit:n_tr][end[n_fit:n_tr] < t_test]
    test = pos[n_tr:]
    return Split(fit, val, test, t_val, t_test, dropped_gap=int(n_tr - len(fit) - len(val)))


@dataclass(frozen=True)
class OuterSplit:
    """Training/test positions of a time-ordered split; ``description`` says which cut and why (for the report)."""

    train: np.ndarray
    test: np.ndarray
    t_test: float
    dropped_gap: int
    mode: str
    description: str


def outer_split(
    df: pd.DataFrame,
    split: str = "fraction",
    train_frac: float = TRAIN_FRAC,
    min_test_failures: int = MIN_TEST_FAILURES,
) -> OuterSplit:
    """Training/test split of a job table sorted by ``submit_time`` (see the module docstring for the modes).

    Args:
        df: finished jobs sorted by submit, with ``submit_time``, ``end_time`` and ``failed``.
        split: ``"fraction"``, ``"auto"`` or an ISO date/time (UTC) for a date cut.
        train_frac: training fraction of ``"fraction"`` (and the upper bound of ``"auto"``).
        min_test_failures: ``"auto"``: failures (and successes) required in the test period and failures in the
            training period.

    Returns:
        :class:`OuterSplit`; training positions exclude jobs that ended at or after the first test submit.

    Raises:
        ValueError: fewer than 10 jobs, an unparsable date, or no cut satisfying ``"auto"``'s conditions.

    """
    n = len(df)
    if n < 10 or not 0 < train_frac < 1:
        raise ValueError(f"need >= 10 jobs and train_frac in (0,1); got n={n}")
    sub = df["submit_time"].to_numpy(float)
    y = df["failed"].astype(bool).to_numpy()
    if split == "fraction":
        cut = int(math.floor(train_frac * n))
        why = f"first {train_frac:.0%} of jobs by submit time train, the rest test (default)"
    elif split == "auto":
        fail_after = np.cumsum(y[::-1])[::-1]  # failures in positions >= i
        ok_after = np.cumsum(~y[::-1])[::-1]
        end_all = df["end_time"].to_numpy(float) if "end_time" in df.columns else np.full(n, np.inf)
        top = int(math.floor(train_frac * n))
        lo = int(math.ceil(MIN_TRAIN_FRAC * n))
        cut = -1
        for c in range(top, lo - 1, -1):
            if fail_after[c] >= min_test_failures and ok_after[c] >= min_test_failures:
                # training failures counted after the gap rule (long failing jobs straddling the cut are dropped)
                if y[:c][end_all[:c] < sub[c]].sum() >= min_test_failures:
                    cut = c
                break  # the latest cut with enough test failures; earlier cuts only shrink training
        if cut < 0:
            raise ValueError(
                f"--split auto: no cut between {MIN_TRAIN_FRAC:.0%} and {train_frac:.0%} of jobs leaves "
                f">= {min_test_failures} failures on both sides and >= {min_test_failures} test successes"
            )
        why = (
            f"auto: latest cut at or before {train_frac:.0%} of jobs leaving >= {min_test_failures} failures and "
            f"successes in the test period (and >= {min_test_failures} training failures after the gap rule); "
            f"cut at job {cut} of {n} ({cut / n:.0%})"
        )
        if cut < top:
            why += f"; the {train_frac:.0%} cut leaves only {int(fail_after[top])} test failures"
    else:
        try:
            t = pd.Timestamp(split)
        except ValueError as e:
            raise ValueError(f"--split: not 'fraction', 'auto' or a date: {split!r}") from e
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        cut = int(np.searchsorted(sub, t.timestamp(), side="left"))
        why = f"date cut: test = jobs submitted at or after {t.isoformat()}"
    if not 0 < cut < n:
        raise ValueError(f"split {split!r} leaves an empty training or test period (cut {cut} of {n})")
    t_test = float(sub[cut])
    end = df["end_time"].to_numpy(float) if "end_time" in df.columns else np.full(n, np.inf)
    end = np.where(np.isnan(end), np.inf, end)
    pos = np.arange(n)
    train = pos[:cut][end[:cut] < t_test]
    mode = split if split in ("fraction", "auto") else "date"
    return OuterSplit(train, pos[cut:], t_test, int(cut - len(train)), mode, why)


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr_target: float = FPR_TARGET) -> float:
    """Largest recall (TPR) over the ROC thresholds whose false-positive rate is <= ``fpr_target``.

    Uses sklearn ``roc_curve`` (ties in ``score`` form one threshold; no interpolation). NaN if ``y`` has one class.
    """
    y = np.asarray(y).astype(int)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    return float(tpr[fpr <= fpr_target + 1e-12].max())


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC-ROC, AUC-PR (average precision), recall at 5 % FPR and Brier score of scores ``p`` (0-1) for labels ``y``.

    Returns a dict with keys ``auc_roc, auc_pr, recall_at_5fpr, brier, n, positives``; NaN where undefined.
    """
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    two = 0 < y.sum() < len(y)
    return {
        "auc_roc": float(roc_auc_score(y, p)) if two else float("nan"),
        "auc_pr": float(average_precision_score(y, p)) if two else float("nan"),
        "recall_at_5fpr": recall_at_fpr(y, p, FPR_TARGET),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def prepare(df: pd.DataFrame, cancelled_before_start: str = "drop") -> tuple[pd.DataFrame, dict[str, int]]:
    """Finished, labelled jobs of one dataset sorted by submit time, plus counts of what was removed.

    Args:
        df: job table.
        cancelled_before_start: ``"drop"`` removes ``failure_class == "cancelled"`` rows with ``elapsed_s == 0``
            (never ran); ``"keep"`` keeps them as failures.

    Raises:
        ValueError: missing ``submit_time``/``failed`` column, an unknown option, or several datasets in ``df``.

    """
    for c in ("submit_time", "failed"):
        if c not in df.columns:
            raise ValueError(f"job table lacks column {c!r}")
    if cancelled_before_start not in ("drop", "keep"):
        raise ValueError(f"cancelled_before_start must be 'drop' or 'keep', got {cancelled_before_start!r}")
    if "dataset" in df.columns and df["dataset"].dropna().nunique() > 1:
        raise ValueError(f"several datasets in one table ({sorted(df['dataset'].dropna().unique())}): never pooled")
    removed = {"unlabelled": int((df["submit_time"].isna() | df["failed"].isna()).sum())}
    d = df[df["submit_time"].notna() & df["failed"].notna()]
    if cancelled_before_start == "drop" and "failure_class" in d.columns and "elapsed_s" in d.columns:
        cbs = (d["failure_class"] == "cancelled") & (pd.to_numeric(d["elapsed_s"], errors="coerce") == 0)
        removed["cancelled_before_start"] = int(cbs.sum())
        d = d[~cbs]
    return d.sort_values("submit_time", kind="stable").reset_index(drop=True), removed


def evaluate(
    df: pd.DataFrame,
    setting: str = "submit",
    seed: int = 0,
    *,
    models: Sequence[str] = KNOWN_MODELS,
    split: str = "fraction",
    min_test_failures: int = MIN_TEST_FAILURES,
    cost_ratio: float = 5.0,
    cancelled_before_start: str = "drop",
) -> dict[str, Any]:
    """Fit the served pipeline on the training period of one trace and score every model on its test period.

    Args:
        df: job table (shared schema) of ONE dataset; rows with NaN ``submit_time`` or ``failed`` are dropped.
        setting: ``"submit"`` or ``"run"`` (END-of-job usage features; upper bound).
        seed: random seed of every model.
        models: pipeline model names (see :data:`nomade.analytics.pipeline.KNOWN_MODELS`).
        split: ``"fraction"``, ``"auto"`` or an ISO date (see :func:`outer_split`).
        min_test_failures: for ``split="auto"``.
        cost_ratio: missed failure : false alarm cost, for the alert threshold.
        cancelled_before_start: ``"drop"`` or ``"keep"`` (see :func:`prepare`).

    Returns:
        dict with ``dataset, setting, split, n_jobs, n_fit, n_val, n_test, dropped_gap, t_val, t_test, removed,
        train_failure_rate, test_failure_rate, calibration, features, models`` (name -> :func:`metrics`),
        ``selection, model_status, threshold, cost_ratio, error_table, per_class, ood, reliability, timing`` and
        ``test_scores`` (DataFrame of y, failure_class, every model's score, for plots).

    Raises:
        ValueError: unknown setting, too few jobs, no valid split, or a training slice with a single class.

    """
    if setting not in ("submit", "run"):
        raise ValueError(f"setting must be 'submit' or 'run', got {setting!r}")
    d, removed = prepare(df, cancelled_before_start)
    sp = outer_split(d, split, min_test_failures=min_test_failures)
    log.info("%s: %d jobs, split %s: train %d, test %d", setting, len(d), sp.mode, len(sp.train), len(sp.test))
    t0 = time.perf_counter()
    pipe = RiskPipeline(setting=setting, models=models, cost_ratio=cost_ratio, seed=seed).fit(d.iloc[sp.train])
    t1 = time.perf_counter()
    test = d.iloc[sp.test]
    log.info("%s: pipeline fitted in %.1f s; scoring the test period", setting, t1 - t0)
    scores = pipe.predict_models(test, d)
    t2 = time.perf_counter()
    log.info("%s: scored in %.1f s", setting, t2 - t1)
    yt = test["failed"].astype(bool).to_numpy().astype(int)
    md = pipe.metadata
    cols = {m: ("risk" if m == "ensemble" else m) for m in MODEL_ORDER}
    present = [m for m in MODEL_ORDER if cols[m] in scores.columns]
    res_models = {m: metrics(yt, scores[cols[m]].to_numpy()) for m in present}
    risk = scores["risk"].to_numpy()
    ts = pd.DataFrame({"y": yt}, index=test.index)
    ts["failure_class"] = test["failure_class"].to_numpy() if "failure_class" in test.columns else None
    for m in present:
        ts[m] = scores[cols[m]].to_numpy()
    for c in PER_CLASSES:
        ts[f"p_{c}"] = scores[f"p_{c}"].to_numpy()
    thresholds = sorted(set(CANDIDATE_THRESHOLDS) | {round(pipe.threshold, 4)})
    et = error_table(yt, risk, thresholds, cost_ratio)
    et["chosen"] = np.isclose(et["threshold"], pipe.threshold)
    ds = d["dataset"].dropna().unique() if "dataset" in d.columns else []
    ood = scores["ood"].to_numpy(bool)
    rel = {m: reliability_table(yt, ts[m].to_numpy()).to_dict(orient="list") for m in ("gbm", "ensemble") if m in ts}
    return {
        "dataset": str(ds[0]) if len(ds) == 1 else "unknown",
        "setting": setting,
        "split": {"mode": sp.mode, "description": sp.description, "min_test_failures": min_test_failures},
        "n_jobs": int(len(d)),
        "removed": removed,
        "n_fit": md["n_fit"],
        "n_val": md["n_cal"],
        "n_test": int(len(sp.test)),
        "dropped_gap": int(sp.dropped_gap + md["dropped_gap"]),
        "t_val": md["t_cal"],
        "t_test": sp.t_test,
        "train_failure_rate": md["train_failure_rate"],
        "test_failure_rate": float(yt.mean()) if len(yt) else float("nan"),
        "calibration": md["gbm_calibration"],
        "features": md["features"],
        "models": res_models,
        "model_status": {k: v.get("status") for k, v in md["models"].items()},
        "model_reasons": {k: v["reason"] for k, v in md["models"].items() if "reason" in v},
        "model_fit_s": {k: v["fit_s"] for k, v in md["models"].items() if "fit_s" in v},
        "cal_failures": md.get("cal_failures"),
        "selection": md["selection"],
        "ensemble_weights": md["models"].get("ensemble", {}).get("weights", {}),
        "threshold": pipe.threshold,
        "cost_ratio": cost_ratio,
        "error_table": et.to_dict(orient="records"),
        "per_class": _per_class(ts, pipe.threshold),
        "ood": {
            "share": float(ood.mean()) if len(ood) else float("nan"),
            "n": int(ood.sum()),
            "failure_rate_ood": float(yt[ood].mean()) if ood.any() else float("nan"),
            "failure_rate_in": float(yt[~ood].mean()) if (~ood).any() else float("nan"),
        },
        "reliability": rel,
        "ece": {m: expected_calibration_error(yt, ts[m].to_numpy()) for m in present},
        "timing": {"fit_s": t1 - t0, "predict_s": t2 - t1},
        "test_scores": ts,
    }


def _per_class(ts: pd.DataFrame, threshold: float) -> dict[str, dict[str, float]]:
    """Per failure class: test count, alert recall (risk >= threshold) and AUC of ``p_<class>`` (one vs rest)."""
    out: dict[str, dict[str, float]] = {}
    if ts["failure_class"].isna().all():
        return out
    fc = ts["failure_class"].astype(str)
    for c in sorted(set(fc) - {"success", "None"}):
        m = (fc == c).to_numpy()
        r: dict[str, float] = {"n": int(m.sum()), "alert_recall": float((ts["ensemble"][m] >= threshold).mean())}
        if f"p_{c}" in ts and ts[f"p_{c}"].notna().all() and 0 < m.sum() < len(m):
            r["auc_p_class"] = float(roc_auc_score(m.astype(int), ts[f"p_{c}"]))
        out[c] = r
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _iso(t: float) -> str:
    return pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M")


def report_markdown(
    results: Sequence[dict[str, Any]], plots_note: str | None = None, command: str = "", notes: Sequence[str] = ()
) -> str:
    """Markdown report of :func:`evaluate` results (one section per setting).

    ``command`` (the command line) and ``notes`` (dataset caveats, one bullet each) go at the top; ``plots_note`` at
    the end.
    """
    if isinstance(results, dict):
        results = [results]
    lines = ["# Job-failure prediction: time-ordered evaluation", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    if notes:
        lines += ["Notes on this dataset:", "", *[f"- {n}" for n in notes], ""]
    lines += [
        "Protocol: time-ordered split (the training period's last 20 % calibrates the models and the stacking),",
        "training jobs that ended after the first test (or calibration) submit are dropped (gap). Every model is",
        "fitted by the served `RiskPipeline`. `run` uses END-of-job usage values on traces: an optimistic upper",
        "bound of a real run-time model. Baseline = the user's smoothed past failure rate.",
        "",
    ]
    for r in results:
        ood = r["ood"]
        lines += [
            f"## {r['dataset']} — setting `{r['setting']}`",
            "",
            f"- split: {r['split']['description']}; test from {_iso(r['t_test'])} UTC",
            f"- jobs {r['n_jobs']} (removed: {r['removed']}): fit {r['n_fit']}, calibration {r['n_val']} "
            f"with {r.get('cal_failures')} failures (GBM: {r['calibration']}), test {r['n_test']}, "
            f"dropped by gap {r['dropped_gap']}",
            f"- failure rate: train {_fmt(r['train_failure_rate'])}, test {_fmt(r['test_failure_rate'])} "
            f"({r['models'].get('baseline', {}).get('positives', 'n/a')} test failures)",
            f"- time: fit {r['timing']['fit_s']:.1f} s, scoring the test period {r['timing']['predict_s']:.1f} s",
            f"- models: {', '.join(f'{k}={v}' for k, v in r['model_status'].items())}; fit time "
            + ", ".join(f"{k} {v:.1f} s" for k, v in r.get("model_fit_s", {}).items()),
            "",
            "| model | AUC-ROC | AUC-PR | recall @ 5 % FPR | Brier | ECE |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in r["models"].items():
            lines.append(
                f"| {name} | {_fmt(m['auc_roc'])} | {_fmt(m['auc_pr'])} | {_fmt(m['recall_at_5fpr'])} "
                f"| {_fmt(m['brier'])} | {_fmt(r['ece'].get(name))} |"
            )
        sel = r["selection"]
        lines += ["", f"Ensemble (served `risk`) inputs kept: {', '.join(sel.get('kept', []))}."]
        for n, v in sel.items():
            if isinstance(v, dict):
                verdict = "kept" if v["kept"] else "dropped"
                lines.append(
                    f"- {n}: {verdict} (calibration-slice CV log-loss {v['cv_logloss_without']:.4f} -> "
                    f"{v['cv_logloss_with']:.4f})"
                )
        if "note" in sel:
            lines.append(f"- {sel['note']}")
        if r["ensemble_weights"]:
            w = ", ".join(f"{k} {v:+.2f}" for k, v in r["ensemble_weights"].items())
            lines.append(f"- level-1 weights (standardised inputs): {w}")
        for n, why in r.get("model_reasons", {}).items():
            lines.append(f"- {n} not evaluated: {why}")
        lines += [
            "",
            f"Error analysis of `risk` on the test period (cost ratio {r['cost_ratio']:g} : 1 missed failure : false"
            f" alarm; threshold chosen on the calibration slice = {r['threshold']:.2f}):",
            "",
            "| threshold | alerts | false alarms (type 1) | missed failures (type 2) | recall | precision | cost |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in r["error_table"]:
            mark = " **(chosen)**" if e["chosen"] else ""
            lines.append(
                f"| {e['threshold']:.2f}{mark} | {e['alerts']} | {e['false_alarms']} | {e['missed']} "
                f"| {_fmt(e['recall'])} | {_fmt(e['precision'])} | {e['cost']:g} |"
            )
        if r["per_class"]:
            lines += [
                "",
                "| failure class | test jobs | alert recall at the threshold | AUC of p_class |",
                "|---|---|---|---|",
            ]
            for c, v in r["per_class"].items():
                lines.append(f"| {c} | {v['n']} | {_fmt(v['alert_recall'])} | {_fmt(v.get('auc_p_class'))} |")
        lines += [
            "",
            f"Out of distribution (kNN-distance above the 99th training percentile): {ood['n']} of {r['n_test']} "
            f"test jobs ({_fmt(ood['share'])}); failure rate {_fmt(ood['failure_rate_ood'])} among them, "
            f"{_fmt(ood['failure_rate_in'])} among the others.",
            "",
        ]
    if plots_note:
        lines += [plots_note, ""]
    return "\n".join(lines)


def _plots(results: Sequence[dict[str, Any]], out: Path) -> str:
    """ROC, precision-recall, reliability and per-class recall PNGs (matplotlib Agg); returns a report sentence."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import precision_recall_curve
    except ImportError:
        return "Plots skipped: matplotlib is not installed."
    names = []
    for r in results:
        s = r["test_scores"]
        st = r["setting"]
        present = [m for m in MODEL_ORDER if m in s.columns]
        if s["y"].nunique() == 2:
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            for m in present:
                fpr, tpr, _ = roc_curve(s["y"], s[m])
                ax.plot(fpr, tpr, label=f"{m} ({r['models'][m]['auc_roc']:.2f})", lw=1)
            ax.plot([0, 1], [0, 1], "k:", lw=0.5)
            ax.axvline(FPR_TARGET, color="grey", lw=0.5, ls="--")
            ax.set(xlabel="false-positive rate", ylabel="recall", title=f"ROC, {r['dataset']} {st}")
            ax.legend(fontsize=7)
            names.append(_save(fig, out / f"roc_{st}.png", plt))
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            for m in present:
                pr, rc, _ = precision_recall_curve(s["y"], s[m])
                ax.step(rc, pr, where="post", label=f"{m} ({r['models'][m]['auc_pr']:.2f})", lw=1)
            ax.axhline(s["y"].mean(), color="k", ls=":", lw=0.5)
            ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall, {r['dataset']} {st}")
            ax.legend(fontsize=7)
            names.append(_save(fig, out / f"pr_{st}.png", plt))
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for m in ("baseline", "gbm", "ensemble"):
            if m in s.columns:
                t = reliability_table(s["y"].to_numpy(), s[m].to_numpy())
                ax.plot(t["mean_predicted"], t["observed_rate"], "o-", ms=3, lw=1, label=m)
        ax.plot([0, 1], [0, 1], "k:", lw=0.5)
        ax.set(xlabel="mean predicted P(fail)", ylabel="observed failure rate", title=f"reliability, {st}")
        ax.legend(fontsize=7)
        names.append(_save(fig, out / f"calibration_{st}.png", plt))
        if r["per_class"]:
            fig, ax = plt.subplots(figsize=(4.5, 3))
            cls = list(r["per_class"])
            ax.bar(cls, [r["per_class"][c]["alert_recall"] for c in cls])
            ax.set(ylim=(0, 1), ylabel="alert recall", title=f"per-class recall at {r['threshold']:.2f}, {st}")
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
            names.append(_save(fig, out / f"per_class_recall_{st}.png", plt))
    return "Plots: " + ", ".join(f"![{n}]({n})" for n in names) if names else "No plots."


def _save(fig: Any, path: Path, plt: Any) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return None if math.isnan(o) else float(o)
    return o


def main(argv: Sequence[str] | None = None) -> int:
    """CLI ``nomade analytics evaluate (--trace PATH | --store FILE [--cluster C]) --out DIR [options]``.

    Writes ``DIR/report.md`` (command line at the top), ``DIR/results.json`` and PNG plots. Returns the exit
    status (0 ok, 2 on an input that cannot be evaluated).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="nomade analytics evaluate", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", type=Path, help="trace file (sacct dump, SWF, Deucalion JSON, Eagle CSV)")
    src.add_argument("--store", type=Path, help="jobs store (SQLite) written by `nomade analytics ingest`")
    ap.add_argument("--cluster", help="cluster of the store to evaluate (required when it holds several)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--setting", choices=["submit", "run", "both"], default="both")
    ap.add_argument("--models", default=",".join(KNOWN_MODELS), help="comma-separated subset of " + str(KNOWN_MODELS))
    ap.add_argument("--split", default="fraction", help="'fraction' (70/30, default), 'auto', or an ISO date cut")
    ap.add_argument("--min-test-failures", type=int, default=MIN_TEST_FAILURES)
    ap.add_argument("--cost-ratio", type=float, default=5.0, help="cost of a missed failure / a false alarm")
    ap.add_argument("--cancelled-before-start", choices=["drop", "keep"], default="drop")
    ap.add_argument("--since", help="keep only jobs submitted at or after this ISO date/time (UTC)")
    ap.add_argument("--until", help="keep only jobs submitted before this ISO date/time (UTC)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", action="append", default=[], help="a dataset caveat for the report (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of torch and gradient boosting (default 1)")
    a = ap.parse_args(args)
    _set_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    models = [m for m in a.models.split(",") if m]
    try:
        df = _window(_load(a), a.since, a.until)
        settings = ["submit", "run"] if a.setting == "both" else [a.setting]
        results = [
            evaluate(
                df,
                s,
                seed=a.seed,
                models=models,
                split=a.split,
                min_test_failures=a.min_test_failures,
                cost_ratio=a.cost_ratio,
                cancelled_before_start=a.cancelled_before_start,
            )
            for s in settings
        ]
    except (ValueError, OSError) as e:
        print(f"cannot evaluate {a.trace or a.store}: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    note = _plots(results, a.out)
    command = "nomade analytics evaluate " + " ".join(shlex.quote(x) for x in args)
    text = report_markdown(results, note, command, a.note)
    (a.out / "report.md").write_text(text)
    slim = [_jsonable({k: v for k, v in r.items() if k != "test_scores"}) for r in results]
    (a.out / "results.json").write_text(json.dumps({"command": command, "results": slim}, indent=2))
    print(text)
    return 0


def _window(df: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    """Jobs submitted in ``[since, until)`` (ISO dates, UTC; None = open). ValueError on an unparsable date."""
    keep = pd.Series(True, index=df.index)
    for text, after in ((since, True), (until, False)):
        if text is None:
            continue
        try:
            t = pd.Timestamp(text)
        except ValueError as e:
            raise ValueError(f"not a date: {text!r}") from e
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        sub = pd.to_numeric(df["submit_time"], errors="coerce")
        keep &= (sub >= t.timestamp()) if after else (sub < t.timestamp())
    return df[keep]


def _set_threads(n: int) -> None:
    """Thread count of torch and of the gradient-boosting models (see ``models.N_THREADS`` for why 1 by default)."""
    from . import models

    models.N_THREADS = max(1, n)
    try:
        import torch

        torch.set_num_threads(max(1, n))
    except ImportError:
        pass


def _load(a: argparse.Namespace) -> pd.DataFrame:
    """The job table of ``--trace`` or of ``--store`` (one cluster); ValueError when a store mixes clusters."""
    if a.trace is not None:
        from .traces import load_trace  # late import: only the CLI needs the loaders

        return load_trace(a.trace)
    from .jobs_store import JobsStore

    if not a.store.is_file():
        raise ValueError(f"{a.store}: no such store")
    with JobsStore(a.store) as st:
        df = st.load(cluster=a.cluster)
    clusters = sorted(df["cluster"].dropna().unique()) if "cluster" in df.columns else []
    if a.cluster is None and len(clusters) > 1:
        raise ValueError(f"store holds clusters {clusters}; pass --cluster (datasets are never pooled)")
    if "dataset" in df.columns and df["dataset"].isna().all() and clusters:
        df["dataset"] = clusters[0]
    return df


if __name__ == "__main__":
    sys.exit(main())
