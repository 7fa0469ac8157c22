"""The served failure-risk pipeline: features, models, calibrated ensemble, per-class, OOD, threshold (issue 5).

What is evaluated (``nomade analytics evaluate``) is exactly what is served: :mod:`nomade.analytics.evaluate` fits a
:class:`RiskPipeline` on the training period and calls the same :meth:`RiskPipeline.predict_models`.

Fitting (:meth:`RiskPipeline.fit`)
==================================
1. ``history`` = finished jobs (rows with ``submit_time`` and ``failed``), sorted by submit time.
2. Features: :func:`~nomade.analytics.features.submit_time_features` (``setting="submit"``) or
   :func:`~nomade.analytics.features.run_time_features` (``"run"``), partition one-hot over the history's top
   partitions. History features follow the "ended before submit" rule, so they are leakage-free.
3. Time-ordered internal split (:func:`fit_cal_split`): the last :data:`VAL_FRAC` (20 %) of jobs by submit is the
   calibration slice (grown earlier, up to half of the jobs, when it holds fewer than :data:`MIN_CAL_FAILURES`
   failures, so small traces can still be calibrated); a fit-slice job that ended at or after the first calibration
   submit is dropped (gap rule of :mod:`nomade.analytics.evaluate`: its outcome was not known yet when the
   calibration period starts).
4. Models on the fit slice: ``baseline`` (:class:`~nomade.analytics.models.UserHistoryBaseline`, always), ``gbm``
   (:class:`~nomade.analytics.models.CalibratedGBM`), ``knn`` (``nomade.analytics.similarity.KnnRisk``), ``gnn``
   (``nomade.analytics.gnn.GraphSageRisk``), ``autoencoder``
   (:class:`~nomade.analytics.anomaly.AutoencoderScore`). A model whose module is missing or whose fit raises is
   recorded in ``metadata["models"]`` with its status and left out; the pipeline still fits.
5. Stacking (:class:`~nomade.analytics.models.StackingEnsemble`, Wolpert 1992) on the calibration slice. The
   baselines (``baseline`` and ``gbm``) are always level-0 inputs; each further model is kept only if it lowers the
   5-fold time-contiguous cross-validated log-loss of the level-1 logistic regression on the calibration slice by
   at least :data:`MIN_GAIN` (relative), tried greedily in the order given. The decision and both losses are in
   ``metadata["selection"]``. The served ``risk`` is the ensemble output.
6. Threshold from the cost ratio (:func:`choose_threshold`): on the calibration slice's out-of-fold ensemble
   probabilities, the alert threshold minimising ``cost_ratio * missed failures + false alarms`` over the grid
   0.01, 0.02, ..., 0.99 (ties -> the highest threshold, fewest alerts). For a calibrated model the Bayes-optimal
   threshold is ``1 / (1 + cost_ratio)`` (Elkan 2001, "The foundations of cost-sensitive learning", IJCAI); it is
   the fallback when the calibration slice holds a single class, and is recorded for comparison.
7. Per-class (:class:`~nomade.analytics.models.PerClassModel`) and OOD (:class:`~nomade.analytics.anomaly.OODDetector`
   on all training rows).

Outputs
=======
``p_<class>`` for :data:`~nomade.analytics.models.PER_CLASSES` is ``risk * P(class | failed)``, the conditional
share taken from the multiclass model (its failure-class probabilities renormalised), so the class probabilities
are consistent with ``risk`` (they sum, with ``other_failure``, to ``risk``). Classes never seen in training are
NaN. ``ood_score`` is the kNN-distance training percentile (0-1) and ``ood`` is ``ood_score > 0.99``: such jobs
are scored, but flagged as outside the data the model has seen.
"""

from __future__ import annotations

import inspect
import logging
import math
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from nomade.exporter.parsers.slurm_outcome import FAILURE_CLASSES

from .anomaly import AutoencoderScore, FeatureScaler, OODDetector
from .features import effective_end, run_time_features, submit_time_features, top_partitions
from .models import (
    ALL_CLASSES,
    PER_CLASSES,
    CalibratedGBM,
    PerClassModel,
    StackingEnsemble,
    UserHistoryBaseline,
    class_labels,
    logit,
)

log = logging.getLogger(__name__)

__all__ = ["PER_CLASSES", "RiskPipeline", "choose_threshold", "fit_cal_split"]

#: Fraction of the history (its end, by submit time) used as the calibration slice.
VAL_FRAC = 0.2
#: Failures wanted in the calibration slice (it grows earlier, up to MAX_VAL_FRAC of the jobs, to hold them).
MIN_CAL_FAILURES = 5
#: Largest fraction of the history the calibration slice may take.
MAX_VAL_FRAC = 0.5
#: Models the pipeline knows by name.
KNOWN_MODELS = ("gbm", "knn", "gnn", "autoencoder")
#: Relative log-loss improvement a model must bring to stay in the ensemble.
MIN_GAIN = 0.005
#: Folds of the time-contiguous cross-validation of the level-1 learner on the calibration slice.
CV_FOLDS = 5
#: Candidate alert thresholds.
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
#: Failure classes (all values of ``failure_class`` other than success) reported by :meth:`RiskPipeline.neighbours`.
NEIGHBOUR_CLASSES: tuple[str, ...] = FAILURE_CLASSES


def fit_cal_split(
    df: pd.DataFrame,
    val_frac: float = VAL_FRAC,
    min_cal_failures: int = MIN_CAL_FAILURES,
    max_val_frac: float = MAX_VAL_FRAC,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Time-ordered fit/calibration split of a history sorted by ``submit_time``, with the gap rule.

    The calibration slice is the last ``val_frac`` of jobs by submit. When it holds fewer than ``min_cal_failures``
    failures (small traces whose failures cluster early: nothing could be calibrated or stacked), its start moves
    to the latest earlier position where it holds that many while the fit slice keeps at least as many failures as
    the calibration slice, never beyond ``max_val_frac`` of the jobs; when no such position exists the default
    slice is kept. With fewer than ``2 * min_cal_failures`` failures in all, half of them (at least one) are wanted.

    Args:
        df: finished jobs sorted by ``submit_time`` (positions refer to its rows); ``failed`` used when present.
        val_frac: fraction of jobs (the latest by submit) in the calibration slice.
        min_cal_failures: failures wanted in the calibration slice.
        max_val_frac: the calibration slice never exceeds this fraction.

    Returns:
        ``(fit_pos, cal_pos, t_cal, dropped)``: row positions, the first calibration submit (Unix s) and the number
        of fit-slice jobs dropped because they ended at or after ``t_cal``.

    Raises:
        ValueError: fewer than 10 jobs or ``val_frac`` outside (0, 1).

    """
    n = len(df)
    if n < 10 or not 0 < val_frac < 1:
        raise ValueError(f"need >= 10 finished jobs and val_frac in (0,1); got n={n}, val_frac={val_frac}")
    sub = df["submit_time"].to_numpy(float)
    end = effective_end(df)
    end = np.where(np.isnan(end), np.inf, end)
    n_fit = int(math.floor((1 - val_frac) * n))
    if "failed" in df.columns:
        y = df["failed"].fillna(False).astype(bool).to_numpy()
        after = np.cumsum(y[::-1])[::-1]  # failures at positions >= i
        before = np.r_[0, np.cumsum(y)][:n]
        lowest = int(math.ceil((1 - max_val_frac) * n))
        # A trace with few failures in all asks for half of them (at least one) rather than for none at all.
        min_cal_failures = max(1, min(min_cal_failures, int(y.sum()) // 2))
        if after[n_fit] < min_cal_failures:
            ok = [c for c in range(n_fit - 1, lowest - 1, -1) if after[c] >= min_cal_failures and before[c] >= after[c]]
            n_fit = ok[0] if ok else n_fit
    t_cal = float(sub[n_fit])
    pos = np.arange(n)
    fit = pos[:n_fit][end[:n_fit] < t_cal]
    return fit, pos[n_fit:], t_cal, int(n_fit - len(fit))


def choose_threshold(
    y: np.ndarray, p: np.ndarray, cost_ratio: float, grid: np.ndarray = THRESHOLD_GRID
) -> tuple[float, pd.DataFrame]:
    """Alert threshold minimising ``cost_ratio * FN + FP`` on labelled scores.

    Args:
        y: labels 0/1, shape (n,).
        p: scores (calibrated probabilities), shape (n,).
        cost_ratio: cost of a missed failure relative to a false alarm (> 0).
        grid: candidate thresholds; an alert is ``p >= threshold``.

    Returns:
        ``(threshold, table)``; ``table`` has one row per candidate: ``threshold, alerts, false_alarms`` (type 1),
        ``missed`` (type 2), ``recall``, ``precision``, ``cost``. Ties -> the highest threshold. With no labels or a
        single class the Bayes threshold ``1 / (1 + cost_ratio)`` is returned (Elkan 2001).

    Raises:
        ValueError: ``cost_ratio <= 0``.

    The chosen threshold is non-increasing in ``cost_ratio`` (the cost has decreasing differences in
    (threshold, ratio), so its minimisers move down as the ratio grows -- Topkis' monotonicity theorem).

    """
    if not cost_ratio > 0:
        raise ValueError(f"cost_ratio must be > 0, got {cost_ratio}")
    table = error_table(y, p, grid, cost_ratio)
    y = np.asarray(y).astype(int)
    if len(y) == 0 or y.min() == y.max():
        return float(1.0 / (1.0 + cost_ratio)), table
    best = table["cost"].min()
    return float(table.loc[table["cost"] == best, "threshold"].max()), table


def error_table(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float], cost_ratio: float = 1.0) -> pd.DataFrame:
    """Type 1 / type 2 errors at each threshold (alert = ``p >= t``); see :func:`choose_threshold` for columns."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    rows = []
    pos = int(y.sum())
    for t in thresholds:
        a = p >= t
        fa = int((a & (y == 0)).sum())
        tp = int((a & (y == 1)).sum())
        missed = pos - tp
        rows.append(
            {
                "threshold": float(t),
                "alerts": int(a.sum()),
                "false_alarms": fa,
                "missed": missed,
                "recall": tp / pos if pos else float("nan"),
                "precision": tp / int(a.sum()) if a.any() else float("nan"),
                "cost": cost_ratio * missed + fa,
            }
        )
    return pd.DataFrame(rows)


def _contiguous_oof(Z: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS) -> np.ndarray:
    """Out-of-fold level-1 predictions over ``folds`` time-contiguous blocks (a block's LR never sees it)."""
    n = len(y)
    oof = np.full(n, np.nan)
    edges = np.linspace(0, n, min(folds, n) + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        tr = np.r_[0:a, b:n]
        e = StackingEnsemble([]).fit_level0(Z[tr], y[tr])
        oof[a:b] = e.proba_level0(Z[a:b])
    return oof


def _holdout(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    two = 0 < y.sum() < len(y)
    return {
        "auc_roc": float(roc_auc_score(y, s)) if two else float("nan"),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def _make(cls: Any, seed: int) -> Any:
    """Instantiate a model class from another module, passing ``seed`` when its constructor takes it."""
    try:
        return cls(seed=seed)
    except TypeError:
        return cls()


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The items of ``kwargs`` that ``fn`` takes as keyword arguments (optional extras of other helpers' models)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params and v is not None}


def _load_extra(name: str) -> Any:
    """Class of an optional model by name; raises ImportError when its module is not there."""
    if name == "knn":
        from .similarity import KnnRisk

        return KnnRisk
    if name == "gnn":
        from .gnn import GraphSageRisk

        return GraphSageRisk
    if name == "autoencoder":
        return AutoencoderScore
    raise ValueError(f"unknown model {name!r}; known: {KNOWN_MODELS}")


class RiskPipeline:
    """Calibrated failure-risk pipeline, fitted on finished jobs and applied to new (pending/running) ones.

    Args:
        setting: ``"submit"`` (submit-time features) or ``"run"`` (adds usage so far).
        models: names among :data:`KNOWN_MODELS`; ``baseline`` is always fitted.
        cost_ratio: cost of a missed failure relative to a false alarm (> 0), for :attr:`threshold`.
        seed: random seed of every model.

    Attributes:
        threshold: alert threshold on ``risk`` chosen from ``cost_ratio`` on the calibration slice.
        metadata: ``setting, models_requested, cost_ratio, threshold, bayes_threshold, train_start, train_end`` (Unix
            s), ``t_cal, n_jobs, n_fit, n_cal, cal_frac, cal_failures, dropped_gap, train_failure_rate, features``
            (the feature schema, in order), ``partitions, models`` (per model: status, reason, holdout_cal),
            ``selection`` (stacking decisions), ``holdout_auc`` (model -> AUC-ROC on the calibration slice, incl.
            ``baseline`` and ``ensemble``), ``holdout_brier`` (ensemble, out-of-fold), ``gbm_calibration,
            per_class_classes, per_class_temperature, ood_reference_rows, versions, trained_at``.

    Raises:
        ValueError: unknown setting or model name, or ``cost_ratio <= 0``.

    """

    def __init__(
        self,
        setting: str = "submit",
        models: Sequence[str] = ("gbm", "knn", "gnn", "autoencoder"),
        cost_ratio: float = 5.0,
        seed: int = 0,
    ) -> None:
        if setting not in ("submit", "run"):
            raise ValueError(f"setting must be 'submit' or 'run', got {setting!r}")
        bad = [m for m in models if m not in KNOWN_MODELS]
        if bad:
            raise ValueError(f"unknown models {bad}; known: {KNOWN_MODELS}")
        if not cost_ratio > 0:
            raise ValueError(f"cost_ratio must be > 0, got {cost_ratio}")
        self.setting = setting
        self.models = tuple(models)
        self.cost_ratio = float(cost_ratio)
        self.seed = seed
        self.threshold = float(1.0 / (1.0 + cost_ratio))
        self.metadata: dict[str, Any] = {}
        self.partitions: list[str] = []
        self.feature_names: list[str] = []
        self.fitted: dict[str, Any] = {}
        self.ensemble: StackingEnsemble | None = None
        self._single: str | None = None
        self._holdout_brier = float("nan")
        self.per_class: PerClassModel | None = None
        self.ood: OODDetector | None = None
        self._median: pd.Series | None = None
        self._modal_partition: dict[str, float] = {}
        self.calibration_scores: pd.DataFrame | None = None

    # ------------------------------------------------------------------------------------------------ features

    def _features(self, df: pd.DataFrame) -> pd.DataFrame:
        fn = submit_time_features if self.setting == "submit" else run_time_features
        X, _ = fn(df, partitions=self.partitions)
        X = X.replace([np.inf, -np.inf], np.nan)
        return X.reindex(columns=self.feature_names) if self.feature_names else X

    def features(self, jobs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        """Feature frame of ``jobs`` (index = ``jobs.index``) with history features computed from ``history``.

        ``jobs``' own outcomes are blanked first (``failed`` NaN), so a job never counts in anyone's history here;
        history rows only count for jobs submitted after they ended.
        """
        _require(history, ("submit_time",), "history")
        j = jobs.copy()
        j["failed"] = np.nan
        h = history[history["failed"].notna()] if "failed" in history.columns else history.iloc[0:0]
        both = pd.concat([h, j], ignore_index=True, sort=False)
        X = self._features(both).iloc[len(h) :]
        X.index = jobs.index
        return X

    # ------------------------------------------------------------------------------------------------ fitting

    def fit(self, history: pd.DataFrame) -> RiskPipeline:
        """Fit every model on finished jobs ``history`` (job table; any order). See the module docstring.

        Raises:
            ValueError: missing ``submit_time``/``failed`` column, fewer than 10 finished jobs, or a fit slice with a
                single class.

        """
        _require(history, ("submit_time", "failed"), "history")
        d = history[history["submit_time"].notna() & history["failed"].notna()]
        d = d.sort_values("submit_time", kind="stable").reset_index(drop=True)
        fit, cal, t_cal, dropped = fit_cal_split(d)
        self.partitions = top_partitions(d)
        self.feature_names = []
        X = self._features(d)
        self.feature_names = list(X.columns)
        y = d["failed"].astype(bool).to_numpy().astype(int)
        if y[fit].min(initial=0) == y[fit].max(initial=0):
            raise ValueError("fit slice has a single class; cannot fit a failure model")
        sub = d["submit_time"].to_numpy(float)
        end = effective_end(d)
        Xf, yf, Xc, yc = X.iloc[fit], y[fit], X.iloc[cal], y[cal]
        kw = {"submit_time": sub[fit], "end_time": end[fit], "X_cal": Xc, "y_cal": yc}
        fc_fit = d["failure_class"].to_numpy(object)[fit] if "failure_class" in d.columns else None
        status: dict[str, Any] = {}
        self.fitted = {"baseline": UserHistoryBaseline().fit(Xf, yf, **kw)}
        status["baseline"] = {"status": "ok"}
        for name in self.models:
            try:
                model = CalibratedGBM(seed=self.seed) if name == "gbm" else _make(_load_extra(name), self.seed)
                extra = {"failure_class": fc_fit, "cal_submit_time": sub[cal]}
                t0 = time.perf_counter()
                self.fitted[name] = model.fit(Xf, yf, **kw, **_accepted(model.fit, extra))
                status[name] = {"status": "ok", "fit_s": time.perf_counter() - t0}
                log.info("%s: fitted %s in %.1f s", self.setting, name, status[name]["fit_s"])
            except ImportError as e:
                status[name] = {"status": "unavailable", "reason": str(e)}
            except Exception as e:  # noqa: BLE001 - one model failing must not stop the pipeline (DESIGN.md 2)
                status[name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}

        # Level-0 columns on the calibration slice (out-of-sample for every base model).
        cal_sub = sub[cal]
        Z = {n: self._level0_col(n, Xc, cal_sub) for n in self.fitted}
        if "gbm" in self.fitted and status["gbm"]["status"] == "ok":
            # The GBM's calibration map was fitted on this very slice: cross-fit it for the level-1 learner.
            Z["gbm"] = logit(self.fitted["gbm"].oof_proba(Xc, yc))
        for n, z in Z.items():
            status[n]["holdout_cal"] = _holdout(yc, z)
        self._select_and_stack(Z, yc, status)
        self.calibration_scores = pd.DataFrame({"y": yc, **{n: Z[n] for n in Z}}, index=d.index[cal])

        labels = class_labels(d["failure_class"]) if "failure_class" in d.columns else None
        if labels is not None:
            try:
                self.per_class = PerClassModel(seed=self.seed).fit(Xf, labels[fit], Xc, labels[cal])
            except Exception as e:  # noqa: BLE001 - per-class output is optional; record why it is absent
                status["per_class"] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
                self.per_class = None
        train = np.r_[fit, cal]
        self.ood = OODDetector(seed=self.seed).fit(X.iloc[train])
        self._median = X.iloc[train].median()
        parts = [c for c in X.columns if c.startswith("part_")]
        if parts:
            top = X.iloc[train][parts].sum().idxmax()
            self._modal_partition = {c: float(c == top) for c in parts}
        self.metadata.update(
            {
                "setting": self.setting,
                "models_requested": list(self.models),
                "cost_ratio": self.cost_ratio,
                "threshold": self.threshold,
                "bayes_threshold": 1.0 / (1.0 + self.cost_ratio),
                "train_start": float(sub.min()),
                "train_end": float(np.nanmax(end)),
                "t_cal": t_cal,
                "n_jobs": int(len(d)),
                "n_fit": int(len(fit)),
                "n_cal": int(len(cal)),
                "cal_frac": float(len(cal) / len(d)),
                "cal_failures": int(yc.sum()),
                "dropped_gap": dropped,
                "train_failure_rate": float(y.mean()),
                "features": list(self.feature_names),
                "partitions": list(self.partitions),
                "models": status,
                "gbm_calibration": getattr(self.fitted.get("gbm"), "method", None),
                "per_class_classes": list(self.per_class.classes_) if self.per_class else [],
                "per_class_temperature": self.per_class.temperature if self.per_class else None,
                "ood_reference_rows": self.ood.n_reference,
                "versions": _versions(),
                "trained_at": time.time(),
            }
        )
        # Flat views for the model metrics (nomade_model_auc_roc{model}, nomade_model_brier_score): calibration-slice
        # figures of out-of-sample scores (base models were fitted on the earlier slice; the ensemble's are
        # out-of-fold), NaN when the slice holds one class.
        self.metadata["holdout_auc"] = {
            n: v["holdout_cal"]["auc_roc"] for n, v in status.items() if isinstance(v, dict) and "holdout_cal" in v
        }
        self.metadata["holdout_brier"] = self._holdout_brier
        return self

    def _level0_col(self, name: str, X: pd.DataFrame, submit_time: np.ndarray | None) -> np.ndarray:
        """Level-0 input of model ``name``: logit of (raw) probability, or log1p of the autoencoder score."""
        e = StackingEnsemble([self.fitted[name]]) if name != "autoencoder" else None
        if e is None:
            e = StackingEnsemble([], scorers=[self.fitted[name]])
        return e.level0(X, submit_time)[:, 0]

    def _select_and_stack(self, Z: dict[str, np.ndarray], yc: np.ndarray, status: dict[str, Any]) -> None:
        base = [n for n in ("baseline", "gbm") if n in Z]
        extras = [n for n in self.models if n in Z and n not in base]
        selection: dict[str, Any] = {"always": base}
        usable = 0 < int(yc.sum()) < len(yc)
        if not usable:
            # No calibration labels of both classes: nothing can be stacked or compared honestly.
            chosen = ["gbm"] if "gbm" in Z else ["baseline"]
            selection["note"] = "calibration slice has a single class: no stacking, risk = " + chosen[0]
            self.ensemble = None
            self._single = chosen[0]
            oof = None
            self._holdout_brier = float("nan")
        else:

            def loss(names: list[str]) -> tuple[float, np.ndarray]:
                M = np.column_stack([Z[n] for n in names])
                o = _contiguous_oof(M, yc)
                return float(log_loss(yc, np.clip(o, 1e-6, 1 - 1e-6), labels=[0, 1])), o

            chosen = list(base)
            cur, oof = loss(chosen)
            selection["base_cv_logloss"] = cur
            for n in extras:
                with_n, o = loss([*chosen, n])
                kept = with_n < cur * (1 - MIN_GAIN)
                selection[n] = {"cv_logloss_without": cur, "cv_logloss_with": with_n, "kept": bool(kept)}
                if kept:
                    chosen.append(n)
                    cur, oof = with_n, o
            models = [self.fitted[n] for n in chosen if n != "autoencoder"]
            scorers = [self.fitted[n] for n in chosen if n == "autoencoder"]
            self.ensemble = StackingEnsemble(models, scorers).fit_level0(np.column_stack([Z[n] for n in chosen]), yc)
            self._single = None
            status["ensemble"] = {"status": "ok", "holdout_cal": _holdout(yc, oof), "weights": self.ensemble.weights()}
            self._holdout_brier = float(np.mean((oof - yc) ** 2))
        selection["kept"] = chosen
        self.metadata["selection"] = selection
        # With a single-class slice choose_threshold returns the Bayes threshold whatever the scores are.
        score = oof if oof is not None else _sigmoid(Z[chosen[0]])
        self.threshold, table = choose_threshold(yc, score, self.cost_ratio)
        self.metadata["threshold_table_cal"] = table.to_dict(orient="list")

    # ------------------------------------------------------------------------------------------------ scoring

    def _risk(self, X: pd.DataFrame, submit_time: np.ndarray | None) -> np.ndarray:
        if self.ensemble is not None:
            return self.ensemble.predict_proba(X, submit_time=submit_time)
        return self.fitted[self._single].predict_proba(X, submit_time=submit_time)

    def predict_models(self, jobs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        """Each fitted model's P(fail), the autoencoder's raw score and the ensemble ``risk`` for ``jobs``.

        Returns a DataFrame indexed like ``jobs``: one column per fitted model name (``baseline``, ``gbm``, ``knn``,
        ``gnn``, ``autoencoder`` probability), ``autoencoder_score`` (raw reconstruction error) when fitted, ``risk``
        (the served output), ``ood_score``, ``ood``, and ``p_<class>``.
        """
        self._check_fitted()
        X = self.features(jobs, history)
        st = _submit(jobs)
        out = pd.DataFrame(index=jobs.index)
        z: dict[str, np.ndarray] = {}  # level-0 value of each model, computed once (neighbour queries are costly)
        for n, m in self.fitted.items():
            cal = getattr(m, "calibrator", None)
            if hasattr(m, "raw_score") and callable(cal):
                # KnnRisk / GraphSageRisk: predict_proba is calibrator(raw_score); one neighbour search for both.
                raw = m.raw_score(X, submit_time=st)
                out[n], z[n] = cal(raw), logit(raw)
            elif n == "autoencoder":
                out[n] = m.predict_proba(X, submit_time=st)
                out["autoencoder_score"] = m.score(X)
                z[n] = np.log1p(np.maximum(out["autoencoder_score"].to_numpy(), 0.0))
            else:
                out[n] = m.predict_proba(X, submit_time=st)
                z[n] = StackingEnsemble([m]).level0(X, st)[:, 0] if hasattr(m, "raw_score") else logit(out[n])
        if self.ensemble is not None:
            out["risk"] = self.ensemble.proba_level0(np.column_stack([z[n] for n in self.ensemble.inputs]))
        else:
            out["risk"] = out[self._single].to_numpy()
        return out.join(self._extras(X, out["risk"].to_numpy()))

    def _extras(self, X: pd.DataFrame, risk: np.ndarray) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        fail_cls = [c for c in ALL_CLASSES if c != "success"]
        if self.per_class is not None and len(X):
            pc = self.per_class.predict_proba(X)
            tot = pc[fail_cls].sum(axis=1, min_count=1).to_numpy()
            for c in PER_CLASSES:
                share = pc[c].to_numpy() / np.where(tot > 0, tot, np.nan)
                out[f"p_{c}"] = risk * share
        else:
            for c in PER_CLASSES:
                out[f"p_{c}"] = np.nan
        s = self.ood.score(X) if len(X) else np.zeros(0)
        out["ood_score"] = s
        out["ood"] = self.ood.flag(s).astype(bool)
        return out

    def predict(self, jobs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        """Score ``jobs`` (pending/running or any job table rows) using finished ``history``.

        Returns:
            DataFrame indexed like ``jobs`` with ``risk`` (calibrated P(fail)), ``p_<class>`` for
            :data:`PER_CLASSES`, ``ood_score`` (0-1) and ``ood`` (bool).

        Raises:
            RuntimeError: called before :meth:`fit`.
            ValueError: ``history`` lacks ``submit_time``.

        """
        self._check_fitted()
        X = self.features(jobs, history)
        risk = self._risk(X, _submit(jobs)) if len(X) else np.zeros(0)
        out = pd.DataFrame({"risk": risk}, index=jobs.index)
        return out.join(self._extras(X, risk))

    def explain(self, jobs: pd.DataFrame, history: pd.DataFrame, top: int = 3) -> list[list[tuple[str, float]]]:
        """Features driving each job's ``risk``: occlusion against the training median.

        For each feature (the partition one-hot columns form one group, ``partition``, replaced by the most common
        training partition), the feature is set to its training median and the risk recomputed; the contribution
        is ``risk(job) - risk(job with that feature at the median)`` (positive = raises the risk). This is the
        occlusion / "prediction difference" method of Robnik-Sikonja & Kononenko 2008 (IEEE TKDE 20(5)).

        Returns:
            one list per job (in ``jobs`` order) of up to ``top`` ``(feature, contribution)`` pairs, largest
            absolute contribution first; features whose replacement changes nothing are omitted.

        """
        self._check_fitted()
        X = self.features(jobs, history)
        n = len(X)
        if n == 0:
            return []
        st = _submit(jobs)
        base = self._risk(X, st)
        groups: dict[str, list[str]] = {}
        for c in X.columns:
            groups.setdefault("partition" if c.startswith("part_") else c, []).append(c)
        frames = []
        for g, cols in groups.items():
            Xg = X.copy()
            for c in cols:
                Xg[c] = self._modal_partition.get(c, 0.0) if g == "partition" else self._median[c]
            frames.append(Xg)
        big = pd.concat(frames, ignore_index=True)
        st_big = None if st is None else np.tile(st, len(groups))
        r = self._risk(big, st_big).reshape(len(groups), n)
        contrib = base[None, :] - r
        names = list(groups)
        out = []
        for i in range(n):
            order = np.argsort(-np.abs(contrib[:, i]), kind="stable")
            out.append([(names[j], float(contrib[j, i])) for j in order[:top] if abs(contrib[j, i]) > 1e-12])
        return out

    def neighbours(self, jobs: pd.DataFrame, history: pd.DataFrame, k: int = 10) -> pd.DataFrame:
        """Outcome mix of the ``k`` most similar finished jobs that ENDED before each job's submit.

        Similarity: cosine on standardised feature vectors of the pipeline's feature set, with ``history`` (finished
        jobs) as the candidates, via :class:`nomade.analytics.similarity.SimilarityIndex` (exact k nearest among the
        jobs that ended strictly before the job's submit; a job without ``submit_time`` may use every history job).
        Without that module a brute-force cosine search over the same candidates is used.

        Returns:
            DataFrame indexed like ``jobs``: ``n_neighbours`` (int, <= k) and ``share_<class>`` for every
            :data:`NEIGHBOUR_CLASSES` value (NaN when there is no eligible neighbour), plus ``mean_similarity`` and
            ``fail_share`` when ``SimilarityIndex`` is used.

        Raises:
            RuntimeError: called before :meth:`fit`.

        """
        self._check_fitted()
        h = history[history["failed"].notna()] if "failed" in history.columns else history.iloc[0:0]
        h = h.reset_index(drop=True)
        cols = ["n_neighbours", *[f"share_{c}" for c in NEIGHBOUR_CLASSES]]
        if len(h) == 0 or len(jobs) == 0:
            out = pd.DataFrame(np.nan, index=jobs.index, columns=cols)
            out["n_neighbours"] = 0
            return out
        Xh = self._features(h)
        Xj = self.features(jobs, h)
        hend = effective_end(h)
        fc = h["failure_class"].astype(object).where(h["failure_class"].notna(), "other").to_numpy()
        jsub = _submit(jobs)
        try:
            from .similarity import SimilarityIndex
        except ImportError:
            return self._neighbours_brute(Xh, Xj, hend, fc, jsub, k, jobs.index, cols)
        idx = SimilarityIndex(k=k).fit(
            Xh,
            end_time=hend,
            submit_time=h["submit_time"].to_numpy(float),
            failed=h["failed"].astype(float).to_numpy(),
            failure_class=fc,
        )
        nf = idx.neighbour_features(Xj, k, submit_time=jsub, classes=NEIGHBOUR_CLASSES)
        nf.index = jobs.index
        nf["n_neighbours"] = nf["n_neighbours"].astype(int)
        return nf[cols + [c for c in nf.columns if c not in cols]]

    @staticmethod
    def _neighbours_brute(
        Xh: pd.DataFrame,
        Xj: pd.DataFrame,
        hend: np.ndarray,
        fc: np.ndarray,
        jsub: np.ndarray | None,
        k: int,
        index: pd.Index,
        cols: list[str],
    ) -> pd.DataFrame:
        """Fallback of :meth:`neighbours`: brute-force cosine search, filtered by the ended-before-submit rule."""
        from sklearn.neighbors import NearestNeighbors

        out = pd.DataFrame(np.nan, index=index, columns=cols)
        sc = FeatureScaler().fit(Xh)
        Ah, Aj = sc.transform(Xh), sc.transform(Xj)
        jsub = np.full(len(Xj), np.inf) if jsub is None else np.where(np.isnan(jsub), np.inf, jsub)
        _, idx = NearestNeighbors(metric="cosine", algorithm="brute").fit(Ah).kneighbors(Aj, n_neighbors=len(Ah))
        counts = np.zeros(len(Xj), dtype=int)
        for i in range(len(Xj)):
            cand = idx[i][hend[idx[i]] < jsub[i]][:k]
            counts[i] = len(cand)
            if len(cand):
                vc = pd.Series(fc[cand]).value_counts(normalize=True)
                out.iloc[i, 1:] = [float(vc.get(c, 0.0)) for c in NEIGHBOUR_CLASSES]
        out["n_neighbours"] = counts
        return out

    def _check_fitted(self) -> None:
        if not self.fitted or self.ood is None:
            raise RuntimeError("RiskPipeline used before fit")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def _submit(jobs: pd.DataFrame) -> np.ndarray | None:
    return jobs["submit_time"].to_numpy(float) if "submit_time" in jobs.columns else None


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}")


def _versions() -> dict[str, str]:
    import sklearn

    v = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__}
    v["scikit-learn"] = sklearn.__version__
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:
        pass
    return v
