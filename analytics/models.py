"""Failure-risk models sharing one estimator API (issue 5): baseline, calibrated GBM, stacking, per-class.

Every binary model implements :class:`RiskModel`: ``fit(X, y, *, submit_time, end_time, X_cal, y_cal)`` on a
feature frame from :mod:`nomade.analytics.features` and ``predict_proba(X, *, submit_time)`` returning P(fail) of
shape ``(n,)``. ``X_cal``/``y_cal`` is a calibration slice that comes strictly LATER in time than ``X`` (see
:func:`nomade.analytics.pipeline.fit_cal_split`); models use it only to map raw scores to probabilities.

Models
======
* :class:`UserHistoryBaseline` -- the trivial baseline every model must beat (DESIGN.md principle 7): the smoothed
  past failure rate of the job's user, the ``user_past_fail_rate`` feature (m-estimate, Cestnik 1990; see
  :mod:`nomade.analytics.features`). No fitting.
* :class:`CalibratedGBM` -- scikit-learn ``HistGradientBoostingClassifier`` (300 iterations, learning rate 0.05) on
  the fit slice, then a monotone calibration map fitted on the calibration slice: isotonic regression (Zadrozny &
  Elkan 2002, "Transforming classifier scores into accurate multiclass probability estimates", KDD) when that slice
  holds at least :data:`MIN_ISOTONIC` jobs and both classes, else Platt/sigmoid scaling (Platt 1999).
* :class:`StackingEnsemble` -- stacked generalisation (Wolpert 1992, "Stacked generalization", Neural Networks
  5(2)): level-0 = the base models' probabilities as logits, plus optional extra scores such as the autoencoder
  reconstruction error; level-1 = L2-regularised logistic regression with non-negative input weights (Breiman 1996)
  fitted on the calibration slice, level-0 values clipped to the range seen there. The level-0
  values used to fit it are out-of-sample: the base models were fitted on the earlier fit slice, a model exposing
  ``raw_score`` (a probability-like uncalibrated score, e.g. ``KnnRisk``) enters by that score, and the calibrated
  GBM enters by its cross-fitted calibrated probability (:meth:`CalibratedGBM.oof_proba`), so no level-0 value was
  produced by a map that saw its own label. A logistic level-1 learner is a (multi-input) Platt scaling, so the
  output is a calibrated probability; check it with :func:`reliability_table`.
* :class:`PerClassModel` -- multiclass probabilities over :data:`PER_CLASSES` + ``success`` + ``other_failure``:
  ``HistGradientBoostingClassifier`` (multinomial log-loss) on the fit slice, then temperature scaling (Guo et al.
  2017, "On calibration of modern neural networks", ICML: one scalar T dividing the logits, fitted by minimising
  the negative log-likelihood on the calibration slice). Classes never seen in the fit slice get NaN (absent beats
  wrong: the model cannot tell how likely they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

#: Failure classes that get their own probability (``nomade_job_risk_class_probability``).
PER_CLASSES: tuple[str, ...] = ("timeout", "out_of_memory", "failed", "node_fail", "cancelled")
#: All classes of :class:`PerClassModel`, in output order.
ALL_CLASSES: tuple[str, ...] = (*PER_CLASSES, "success", "other_failure")
#: Below this many calibration jobs isotonic regression overfits; Platt scaling is used instead.
MIN_ISOTONIC = 200
#: OpenMP threads of the gradient-boosting fits and predictions. HistGradientBoosting's OpenMP loops spin-wait, so on
#: a busy machine more threads than free cores is catastrophic: measured 26.9 s with the default (all cores) against
#: 0.5 s with one thread for 2,240 x 30 rows and 300 iterations on a shared 2-core host. Raise it on a dedicated one.
N_THREADS = 1
#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits.
EPS = 1e-3


@runtime_checkable
class RiskModel(Protocol):
    """Common API of binary failure-risk models (shared between helpers; scikit-learn style)."""

    name: str

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray,
        end_time: np.ndarray,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
    ) -> RiskModel:
        """Fit on ``X`` (n, d) with labels ``y`` (n,) 0/1; times Unix s (n,); optional later calibration slice."""
        ...

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """P(fail) for each row of ``X``: shape (n,), values in [0, 1]."""
        ...


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` after clipping ``p`` to ``[EPS, 1 - EPS]``; shape preserved."""
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def _two_classes(y: np.ndarray | None) -> bool:
    return y is not None and len(y) > 0 and 0 < int(np.sum(y)) < len(y)


class UserHistoryBaseline:
    """Smoothed past failure rate of the job's user (feature ``user_past_fail_rate``) used directly as P(fail).

    Where the feature is NaN (should not happen: the feature falls back to the global prior), the training
    failure rate is returned. Raises ``ValueError`` at predict time if ``X`` lacks the column.
    """

    name = "baseline"
    column = "user_past_fail_rate"

    def __init__(self) -> None:
        self.prior = float("nan")

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray | None = None,
        end_time: np.ndarray | None = None,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
    ) -> UserHistoryBaseline:
        """Record the training failure rate (fallback only); the score itself needs no fitting."""
        self.prior = float(np.mean(y)) if len(y) else float("nan")
        return self

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """``X["user_past_fail_rate"]`` as an array of shape (n,); NaN -> training failure rate."""
        if self.column not in X.columns:
            raise ValueError(f"feature frame lacks column {self.column!r}")
        p = X[self.column].to_numpy(dtype=float)
        return np.clip(np.where(np.isnan(p), self.prior, p), 0.0, 1.0)


class CalibratedGBM:
    """``HistGradientBoostingClassifier`` + a monotone calibration map fitted on a later time slice.

    Args:
        seed: random state of the GBM (its internal early-stopping split).
        max_iter: boosting iterations (default 300).
        learning_rate: shrinkage (default 0.05).

    Attributes:
        method: ``"isotonic"``, ``"sigmoid"`` or ``"none"`` (no usable calibration slice).
        columns: the feature columns used (columns all-NaN in the fit slice are dropped: they carry nothing and
            make the GBM's binning fail).

    """

    name = "gbm"

    def __init__(self, seed: int = 0, max_iter: int = 300, learning_rate: float = 0.05) -> None:
        self.seed = seed
        self.gbm = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=learning_rate, early_stopping=True, random_state=seed
        )
        self.method = "none"
        self._map: Any = None
        self.columns: list[str] = []
        self._constant: float | None = None

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray | None = None,
        end_time: np.ndarray | None = None,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
    ) -> CalibratedGBM:
        """Fit the GBM on ``(X, y)`` then the calibration map on ``(X_cal, y_cal)`` when it has both classes.

        Raises:
            ValueError: empty ``X``.

        """
        if len(X) == 0:
            raise ValueError("CalibratedGBM.fit: empty training frame")
        y = np.asarray(y).astype(int)
        self.columns = [c for c in X.columns if X[c].notna().any()]
        if y.min() == y.max():
            # One class only: the best honest answer is that rate (no GBM can be fitted).
            self._constant = float(y[0])
            return self
        with threadpool_limits(N_THREADS, user_api="openmp"):
            self.gbm.fit(X[self.columns], y)
        if X_cal is None or not _two_classes(y_cal):
            return self
        self.method, self._map = _fit_map(self.raw_proba(X_cal), np.asarray(y_cal).astype(int))
        return self

    def oof_proba(self, X_cal: pd.DataFrame, y_cal: np.ndarray, folds: int = 5) -> np.ndarray:
        """Cross-fitted calibrated probabilities of the calibration slice itself, shape (n,).

        The slice is cut into ``folds`` time-contiguous blocks; each block is mapped by a calibration map fitted on
        the other blocks (same isotonic/sigmoid rule), so no row is calibrated by a map that saw its own label.
        Used to train the stacking level-1 learner without in-sample leakage (as ``cross_val_predict`` in
        scikit-learn's ``StackingClassifier``).
        """
        raw = self.raw_proba(X_cal)
        y = np.asarray(y_cal).astype(int)
        out = raw.copy()
        n = len(y)
        edges = np.linspace(0, n, min(folds, n) + 1).astype(int)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            tr = np.r_[0:a, b:n]
            if b > a and _two_classes(y[tr]):
                method, m = _fit_map(raw[tr], y[tr])
                out[a:b] = _apply_map(method, m, raw[a:b])
        return out

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated GBM probability, shape (n,)."""
        if self._constant is not None:
            return np.full(len(X), self._constant)
        with threadpool_limits(N_THREADS, user_api="openmp"):
            return self.gbm.predict_proba(X.reindex(columns=self.columns))[:, 1]

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(fail), shape (n,)."""
        return _apply_map(self.method, self._map, self.raw_proba(X))


def _fit_map(raw: np.ndarray, y: np.ndarray) -> tuple[str, Any]:
    """Isotonic map with >= MIN_ISOTONIC rows, else Platt (sigmoid); ``y`` must hold both classes."""
    if len(y) >= MIN_ISOTONIC:
        return "isotonic", IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return "sigmoid", LogisticRegression().fit(raw.reshape(-1, 1), y)


def _apply_map(method: str, m: Any, raw: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return np.asarray(m.predict(raw), dtype=float)
    if method == "sigmoid":
        return m.predict_proba(raw.reshape(-1, 1))[:, 1]
    return raw


class StackingEnsemble:
    """Logistic-regression stacking of fitted base models (Wolpert 1992) -- output calibrated on a later slice.

    Args:
        models: fitted :class:`RiskModel` objects (level 0). Their probabilities enter as logits; a model with a
            ``raw_score(X, submit_time=...)`` method contributes that instead (uncalibrated, so out-of-sample on the
            calibration slice).
        scorers: extra level-0 scores: objects with ``score(X) -> (n,)`` (e.g. ``AutoencoderScore``); they enter as
            ``log1p(score)`` standardised on the calibration slice.
        C: inverse L2 strength of the level-1 logistic regression (default 1.0, scikit-learn's default).

    Level 1 is a logistic regression whose input weights are constrained to be >= 0 (Breiman 1996, "Stacked
    regressions", Machine Learning 24: non-negative level-1 weights; every level-0 input is oriented so that higher
    means riskier). On small calibration slices an unconstrained fit gives noisy negative weights to correlated
    inputs, which then extrapolate badly on the next period.

    ``fit`` uses only ``X_cal``/``y_cal`` (the base models were fitted on the earlier slice); ``X``/``y`` are
    accepted for the common API and ignored.

    """

    name = "ensemble"

    def __init__(self, models: Sequence[Any], scorers: Sequence[Any] = (), C: float = 1.0) -> None:
        self.models = list(models)
        self.scorers = list(scorers)
        self.C = C
        self.lr: bool | None = None  # True once the level-1 learner is fitted
        self.intercept_ = 0.0
        self.coef_ = np.zeros(0)
        self._lo = self._hi = None
        self._mu: np.ndarray | None = None
        self._sd: np.ndarray | None = None
        self._constant: float | None = None

    @property
    def inputs(self) -> list[str]:
        """Names of the level-0 inputs, in column order."""
        return [m.name for m in self.models] + [s.name for s in self.scorers]

    def level0(self, X: pd.DataFrame, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Level-0 matrix, shape (n, len(inputs)): base-model logits, then ``log1p`` of the extra scores."""
        cols = []
        for m in self.models:
            if hasattr(m, "raw_score"):  # e.g. KnnRisk: uncalibrated neighbour failure share in [0, 1]
                p = m.raw_score(X, submit_time=submit_time)
            else:
                p = m.predict_proba(X, submit_time=submit_time)
            cols.append(logit(p))
        for s in self.scorers:
            cols.append(np.log1p(np.maximum(np.asarray(s.score(X), dtype=float), 0.0)))
        return np.column_stack(cols) if cols else np.zeros((len(X), 0))

    def fit_level0(self, Z: np.ndarray, y: np.ndarray) -> StackingEnsemble:
        """Fit the level-1 learner on a precomputed level-0 matrix ``Z`` (n, k) and labels (n,).

        Inputs are standardised on ``Z``; the non-negative logistic regression of :func:`nonneg_logistic` is fitted
        on them. The per-column range of ``Z`` is recorded: at prediction time level-0 values are clipped to it, so
        a drifting input (e.g. a past-failure rate that keeps rising) cannot be extrapolated linearly beyond the
        values the level-1 learner was fitted on.
        """
        y = np.asarray(y).astype(int)
        Z = np.asarray(Z, dtype=float)
        if not _two_classes(y):
            self._constant = float(np.mean(y)) if len(y) else float("nan")
            return self
        self._mu = Z.mean(axis=0)
        self._sd = np.where(Z.std(axis=0) > 1e-9, Z.std(axis=0), 1.0)
        self._lo, self._hi = Z.min(axis=0), Z.max(axis=0)
        self.intercept_, self.coef_ = nonneg_logistic((Z - self._mu) / self._sd, y, self.C)
        self.lr = True
        return self

    def proba_level0(self, Z: np.ndarray) -> np.ndarray:
        """P(fail) from a level-0 matrix, shape (n,)."""
        if self.lr is None:
            return np.full(len(Z), self._constant if self._constant is not None else np.nan)
        Zc = np.clip(np.asarray(Z, dtype=float), self._lo, self._hi)
        return _sigmoid(self.intercept_ + ((Zc - self._mu) / self._sd) @ self.coef_)

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray | None = None,
        end_time: np.ndarray | None = None,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
    ) -> StackingEnsemble:
        """Fit the level-1 learner on the calibration slice.

        Raises:
            ValueError: when ``X_cal``/``y_cal`` are missing.

        """
        if X_cal is None or y_cal is None:
            raise ValueError("StackingEnsemble.fit needs the calibration slice X_cal, y_cal")
        return self.fit_level0(self.level0(X_cal), y_cal)

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(fail), shape (n,)."""
        return self.proba_level0(self.level0(X, submit_time))

    def weights(self) -> dict[str, float]:
        """Level-1 coefficients per input (on standardised inputs), for the report."""
        if self.lr is None:
            return {}
        return {n: float(w) for n, w in zip(self.inputs, self.coef_, strict=True)}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def nonneg_logistic(Z: np.ndarray, y: np.ndarray, C: float = 1.0) -> tuple[float, np.ndarray]:
    """L2-regularised logistic regression with non-negative weights (intercept free).

    Minimises ``sum_i logloss_i + ||w||^2 / (2 C)`` (scikit-learn's ``LogisticRegression`` objective, intercept not
    penalised) subject to ``w >= 0``, by L-BFGS-B (scipy ``minimize``, analytic gradient).

    Args:
        Z: inputs (n, k).
        y: labels (n,) 0/1.
        C: inverse regularisation strength (> 0).

    Returns:
        ``(intercept, weights)``, weights of shape (k,).

    """
    from scipy.optimize import minimize

    Z = np.asarray(Z, dtype=float)
    y = np.asarray(y, dtype=float)
    n, k = Z.shape
    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        z = b + Z @ w
        # log(1 + e^z) - y z, computed stably
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z) + w @ w / (2 * C))
        r = _sigmoid(z) - y
        return loss, np.r_[r.sum(), Z.T @ r + w / C]

    theta0 = np.r_[np.log(base / (1 - base)), np.full(k, 0.1)]
    res = minimize(f, theta0, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * k)
    return float(res.x[0]), np.asarray(res.x[1:], dtype=float)


def class_labels(failure_class: pd.Series) -> np.ndarray:
    """Map ``failure_class`` values to :data:`ALL_CLASSES` (other failure classes -> ``other_failure``).

    Returns an object array of shape (n,); a missing class (None/NaN) maps to ``other_failure`` only if it cannot be
    success -- callers pass finished jobs whose class is known.
    """
    fc = failure_class.astype(object).where(failure_class.notna(), "other")
    out = np.where(fc.isin(PER_CLASSES) | (fc == "success"), fc, "other_failure")
    return out.astype(object)


class PerClassModel:
    """Multiclass outcome probabilities over :data:`ALL_CLASSES`, temperature-scaled on the calibration slice.

    Args:
        seed: random state.
        max_iter: boosting iterations (default 200).

    Attributes:
        classes_: classes seen in the fit slice (a subset of :data:`ALL_CLASSES`).
        temperature: the fitted T (1.0 when no calibration slice was usable); probabilities are
            ``softmax(logits / T)``.

    """

    name = "per_class"

    def __init__(self, seed: int = 0, max_iter: int = 200) -> None:
        self.gbm = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.05, random_state=seed)
        self.classes_: list[str] = []
        self.columns: list[str] = []
        self.temperature = 1.0

    def fit(self, X: pd.DataFrame, labels: np.ndarray, X_cal: pd.DataFrame | None = None, labels_cal=None):
        """Fit on ``X`` (n, d) with class labels (n,) from :func:`class_labels`; temperature on the later slice.

        Raises:
            ValueError: empty ``X`` or a label outside :data:`ALL_CLASSES`.

        """
        labels = np.asarray(labels, dtype=object)
        if len(X) == 0:
            raise ValueError("PerClassModel.fit: empty training frame")
        bad = set(labels) - set(ALL_CLASSES)
        if bad:
            raise ValueError(f"PerClassModel.fit: unknown classes {sorted(bad)}")
        self.columns = [c for c in X.columns if X[c].notna().any()]
        self.classes_ = [c for c in ALL_CLASSES if c in set(labels)]
        if len(self.classes_) >= 2:
            with threadpool_limits(N_THREADS, user_api="openmp"):
                self.gbm.fit(X[self.columns], labels)
            self.classes_ = [str(c) for c in self.gbm.classes_]
            if X_cal is not None and labels_cal is not None and len(labels_cal) > 0:
                self._fit_temperature(X_cal, np.asarray(labels_cal, dtype=object))
        return self

    def _logits(self, X: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(N_THREADS, user_api="openmp"):
            p = self.gbm.predict_proba(X.reindex(columns=self.columns))
        return np.log(np.clip(p, 1e-12, 1.0))

    def _fit_temperature(self, X: pd.DataFrame, labels: np.ndarray) -> None:
        known = np.isin(labels, self.classes_)
        if known.sum() == 0:
            return
        z = self._logits(X[known])
        idx = np.array([self.classes_.index(c) for c in labels[known]])

        def nll(t: float) -> float:
            s = z / t
            s = s - s.max(axis=1, keepdims=True)
            logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
            return float(-logp[np.arange(len(idx)), idx].mean())

        res = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded")
        self.temperature = float(res.x)

    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Probabilities, DataFrame (n, len(ALL_CLASSES)) indexed like ``X``; unseen classes NaN; rows sum to 1."""
        out = pd.DataFrame(np.nan, index=X.index, columns=list(ALL_CLASSES))
        if len(self.classes_) == 1:
            out[self.classes_[0]] = 1.0
            return out
        if not self.classes_ or len(X) == 0:
            return out
        s = self._logits(X) / self.temperature
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        for i, c in enumerate(self.classes_):
            out[c] = p[:, i]
        return out


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability (calibration) table: equal-width bins of predicted probability.

    Args:
        y: labels 0/1, shape (n,).
        p: predicted probabilities, shape (n,).
        bins: number of equal-width bins over [0, 1].

    Returns:
        DataFrame with one row per non-empty bin: ``lo, hi, n, mean_predicted, observed_rate`` (DeGroot & Fienberg
        1983 reliability diagram). A calibrated model has ``observed_rate`` close to ``mean_predicted``.

    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for i in range(bins):
        m = b == i
        if m.any():
            rows.append((edges[i], edges[i + 1], int(m.sum()), float(p[m].mean()), float(y[m].mean())))
    return pd.DataFrame(rows, columns=["lo", "hi", "n", "mean_predicted", "observed_rate"])


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: bin-size-weighted mean ``|observed_rate - mean_predicted|`` over :func:`reliability_table` bins."""
    t = reliability_table(y, p, bins)
    if t.empty:
        return float("nan")
    return float((t["n"] * (t["observed_rate"] - t["mean_predicted"]).abs()).sum() / t["n"].sum())
