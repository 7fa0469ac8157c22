"""Time-ordered evaluation of job-failure prediction on one trace (issue 5).

Protocol
========
* **Split** (:func:`time_split`): jobs sorted by ``submit_time``; the first ``train_frac`` (70 %) are the training
  period, the rest the test period. **Gap:** a training job whose ``end_time`` is at or after the first test submit
  is dropped from training -- its outcome was not yet known when the test period starts, so keeping it would train
  on information from the test period. Inside the training period the last ``val_frac`` (20 %) by submit is the
  calibration slice, with the same gap rule against its first submit.
* **Features:** :func:`nomade.analytics.features.submit_time_features` (``setting="submit"``) or
  :func:`~nomade.analytics.features.run_time_features` (``setting="run"``; END-of-job usage values, an optimistic
  upper bound -- see that module). History features only count jobs that ended before each submit, so they are
  computed once on the whole trace; the partition one-hot uses the training period's top partitions.
* **Models:** ``baseline`` -- the smoothed ``user_past_fail_rate`` feature used directly as the score (if the trace
  has no user column it equals the global past failure rate); ``gbm`` -- sklearn ``HistGradientBoostingClassifier``
  fitted on the fit slice, then calibrated by isotonic regression (Zadrozny & Elkan 2002, KDD) on the
  time-ordered calibration slice (sigmoid/Platt scaling, Platt 1999, if that slice holds fewer than
  ``MIN_ISOTONIC`` jobs or a single class).
* **Metrics** (:func:`metrics`): AUC-ROC (``roc_auc_score``), AUC-PR (``average_precision_score``: step-wise
  average precision, not the trapezoid), recall at 5 % false-alarm rate (largest true-positive rate among ROC
  points with FPR <= 0.05, no interpolation -- a threshold that actually exists), Brier score
  (``brier_score_loss``). Undefined values (single-class test set) are NaN.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from .features import run_time_features, submit_time_features, top_partitions

#: Fraction of jobs (by submit order) in the training period.
TRAIN_FRAC = 0.7
#: Fraction of the training period (its end) used to calibrate the GBM.
VAL_FRAC = 0.2
#: False-alarm rate at which recall is reported.
FPR_TARGET = 0.05
#: Below this many calibration jobs isotonic regression overfits; use Platt scaling instead.
MIN_ISOTONIC = 200


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
    """Time-ordered train/calibration/test split with the end-before-test gap (see module docstring).

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


class _Calibrated:
    """GBM + monotone calibration map fitted on a later time slice."""

    def __init__(self, seed: int) -> None:
        self.gbm = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=seed)
        self.method = "none"
        self._map: Any = None
        self.columns: list[str] = []

    def fit(self, Xf: pd.DataFrame, yf: np.ndarray, Xv: pd.DataFrame, yv: np.ndarray) -> _Calibrated:
        # A column that is NaN throughout the fit slice (e.g. no MaxRSS in the trace) carries nothing and makes
        # HistGradientBoosting's binning fail ("window shape cannot be larger than input array shape").
        self.columns = [c for c in Xf.columns if Xf[c].notna().any()]
        self.gbm.fit(Xf[self.columns], yf)
        if len(yv) == 0 or yv.min() == yv.max():
            return self
        raw = self.gbm.predict_proba(Xv[self.columns])[:, 1]
        if len(yv) >= MIN_ISOTONIC:
            self._map = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, yv)
            self.method = "isotonic"
        else:
            self._map = LogisticRegression().fit(raw.reshape(-1, 1), yv)
            self.method = "sigmoid"
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.gbm.predict_proba(X[self.columns])[:, 1]
        if self.method == "isotonic":
            return self._map.predict(raw)
        if self.method == "sigmoid":
            return self._map.predict_proba(raw.reshape(-1, 1))[:, 1]
        return raw


def evaluate(df: pd.DataFrame, setting: str = "submit", seed: int = 0) -> dict[str, Any]:
    """Train and score baseline and calibrated GBM on a time-ordered split of one trace.

    Args:
        df: job table (shared schema) of ONE dataset; rows with NaN ``submit_time`` or ``failed`` are dropped.
        setting: ``"submit"`` (submit-time features) or ``"run"`` (plus END-of-job usage features; upper bound).
        seed: GBM random state.

    Returns:
        dict with ``dataset, setting, n_jobs, n_fit, n_val, n_test, dropped_gap, t_val, t_test,
        train_failure_rate, test_failure_rate, calibration, features, models={"baseline": metrics, "gbm": metrics}``
        and ``test_scores`` (DataFrame of y, baseline and gbm scores, for plots).

    Raises:
        ValueError: unknown setting, too few jobs, or a training slice with a single class.

    """
    if setting not in ("submit", "run"):
        raise ValueError(f"setting must be 'submit' or 'run', got {setting!r}")
    d = df[df["submit_time"].notna() & df["failed"].notna()]
    d = d.sort_values("submit_time", kind="stable").reset_index(drop=True)
    sp = time_split(d)
    parts = top_partitions(d.iloc[sp.train])
    fn = submit_time_features if setting == "submit" else run_time_features
    X, names = fn(d, partitions=parts)
    X = X.replace([np.inf, -np.inf], np.nan)
    y = d["failed"].astype(bool).to_numpy().astype(int)
    if y[sp.fit].min(initial=0) == y[sp.fit].max(initial=0):
        raise ValueError("training slice has a single class; cannot fit")
    model = _Calibrated(seed).fit(X.iloc[sp.fit], y[sp.fit], X.iloc[sp.val], y[sp.val])
    yt = y[sp.test]
    base = X["user_past_fail_rate"].to_numpy()[sp.test]
    gbm = model.predict(X.iloc[sp.test])
    ds = d["dataset"].dropna().unique() if "dataset" in d.columns else []
    return {
        "dataset": str(ds[0]) if len(ds) == 1 else ",".join(map(str, ds)) or "unknown",
        "setting": setting,
        "n_jobs": int(len(d)),
        "n_fit": int(len(sp.fit)),
        "n_val": int(len(sp.val)),
        "n_test": int(len(sp.test)),
        "dropped_gap": sp.dropped_gap,
        "t_val": sp.t_val,
        "t_test": sp.t_test,
        "train_failure_rate": float(y[sp.train].mean()),
        "test_failure_rate": float(yt.mean()),
        "calibration": model.method,
        "features": names,
        "models": {"baseline": metrics(yt, base), "gbm": metrics(yt, gbm)},
        "test_scores": pd.DataFrame({"y": yt, "baseline": base, "gbm": gbm}),
    }


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def report_markdown(results: Sequence[dict[str, Any]], plots_note: str | None = None) -> str:
    """Markdown report of :func:`evaluate` results (one section per result). ``plots_note`` is appended if given."""
    if isinstance(results, dict):
        results = [results]
    lines = ["# Job-failure prediction: time-ordered evaluation", ""]
    lines += [
        "Train on the first 70 % of jobs by submit time (last 20 % of that calibrates the GBM), test on the rest;",
        "training jobs that ended after the first test (or calibration) submit are dropped (gap).",
        "`run` uses END-of-job usage values: an optimistic upper bound of a real run-time model.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['dataset']} — setting `{r['setting']}`",
            "",
            f"- jobs {r['n_jobs']}: fit {r['n_fit']}, calibration {r['n_val']} ({r['calibration']}), "
            f"test {r['n_test']}, dropped by gap {r['dropped_gap']}",
            f"- failure rate: train {_fmt(r['train_failure_rate'])}, test {_fmt(r['test_failure_rate'])}",
            "",
            "| model | AUC-ROC | AUC-PR | recall @ 5 % FPR | Brier |",
            "|---|---|---|---|---|",
        ]
        for name, m in r["models"].items():
            lines.append(
                f"| {name} | {_fmt(m['auc_roc'])} | {_fmt(m['auc_pr'])} | {_fmt(m['recall_at_5fpr'])} "
                f"| {_fmt(m['brier'])} |"
            )
        lines.append("")
    if plots_note:
        lines += [plots_note, ""]
    return "\n".join(lines)


def _plots(results: Sequence[dict[str, Any]], out: Path) -> str:
    """ROC curves as PNG if matplotlib is importable; returns a sentence for the report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "Plots skipped: matplotlib is not installed."
    names = []
    for r in results:
        s = r["test_scores"]
        if s["y"].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(4, 4))
        for m in ("baseline", "gbm"):
            fpr, tpr, _ = roc_curve(s["y"], s[m])
            ax.plot(fpr, tpr, label=m)
        ax.plot([0, 1], [0, 1], "k:", lw=0.5)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("recall")
        ax.legend()
        name = f"roc_{r['setting']}.png"
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
        names.append(name)
    return "ROC plots: " + ", ".join(names) if names else "No plots (single-class test set)."


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m nomade.analytics.evaluate --trace PATH --out DIR [--setting submit|run|both]``.

    Loads the trace with ``nomade.analytics.traces.load_trace``, writes ``DIR/report.md`` and ``DIR/results.json``
    (and ROC PNGs if matplotlib is importable). Returns the exit status (0 ok, 2 on a trace that cannot be evaluated).
    """
    ap = argparse.ArgumentParser(prog="nomade.analytics.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--trace", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--setting", choices=["submit", "run", "both"], default="both")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from .traces import load_trace  # late import: only the CLI needs the loaders

    df = load_trace(a.trace)
    settings = ["submit", "run"] if a.setting == "both" else [a.setting]
    try:
        results = [evaluate(df, s, seed=a.seed) for s in settings]
    except ValueError as e:
        print(f"cannot evaluate {a.trace}: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    note = _plots(results, a.out)
    (a.out / "report.md").write_text(report_markdown(results, note))
    slim = [{k: v for k, v in r.items() if k != "test_scores"} for r in results]
    (a.out / "results.json").write_text(json.dumps(slim, indent=2, default=float))
    print(report_markdown(results, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
