"""Anomaly and out-of-distribution scores for jobs (issue 5).

:class:`FeatureScaler` turns a feature frame (:mod:`nomade.analytics.features`) into a dense standardised matrix:
count-like history columns (names ending in ``_jobs`` or ``_failures``) are ``log1p``-compressed first (they grow
with time, and a raw count would make every late job look unusual), NaN is imputed with the training median plus a
0/1 missing indicator per column that had NaN in training, then each column is centred on its training mean and
divided by its training standard deviation (floor 1e-6), and clipped to +-10.

:class:`AutoencoderScore` -- a fully-connected autoencoder (d -> 32 -> 8 -> 32 -> d, ReLU, linear output) trained
with Adam (lr 1e-3, mean-squared error) ONLY on successful training jobs; the anomaly score of a job is its mean
squared reconstruction error. A job unlike the successful ones reconstructs badly. Source: Sakurada & Yairi 2014,
"Anomaly detection using autoencoders with nonlinear dimensionality reduction", MLSDA workshop (reconstruction
error of an autoencoder trained on normal data as the anomaly score). As a :class:`~nomade.analytics.models.RiskModel`
its ``predict_proba`` maps ``log1p(score)`` to a probability with Platt scaling on the calibration slice.

:class:`OODDetector` -- out-of-distribution score: the mean Euclidean distance of a job's standardised vector to
its ``k`` (5) nearest training jobs (scikit-learn ``NearestNeighbors``, KD/ball tree, sub-quadratic), expressed as
the empirical percentile of the same statistic among held-out training jobs (their distance to the OTHER training
jobs). ``ood`` is true when the percentile exceeds 0.99, i.e. the job is farther from the training data than 99 %
of training jobs are. This is the kNN-distance novelty score of Ramaswamy, Rastogi & Shim 2000 ("Efficient
algorithms for mining outliers from large data sets", SIGMOD) with the percentile threshold used as a calibrated
false-positive rate (1 % of in-distribution jobs flagged by construction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

#: Percentile of the training distribution above which a job is flagged out of distribution.
OOD_PERCENTILE = 0.99
#: Reference rows kept by the OOD detector (a seeded random subsample above this; documented cap for speed).
OOD_MAX_REFERENCE = 20000
#: Held-out training rows used to build the OOD distance distribution.
OOD_CALIBRATION_ROWS = 2000


def _is_count(name: str) -> bool:
    return name.endswith("_jobs") or name.endswith("_failures")


class FeatureScaler:
    """Median imputation + missing indicators + ``log1p`` of counts + standardisation (see module docstring)."""

    def __init__(self) -> None:
        self.columns: list[str] = []
        self.missing_cols: list[str] = []
        self.median: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        A = X.reindex(columns=self.columns).to_numpy(dtype=float, copy=True)
        A[~np.isfinite(A)] = np.nan
        for j, c in enumerate(self.columns):
            if _is_count(c):
                A[:, j] = np.log1p(np.clip(A[:, j], 0, None))
        return A

    def fit(self, X: pd.DataFrame) -> FeatureScaler:
        """Learn medians, means and standard deviations from ``X`` (n, d); all-NaN columns are dropped.

        Raises:
            ValueError: empty ``X``.

        """
        if len(X) == 0:
            raise ValueError("FeatureScaler.fit: empty frame")
        self.columns = [c for c in X.columns if X[c].notna().any()]
        A = self._raw(X)
        self.median = np.nanmedian(A, axis=0)
        self.missing_cols = [c for j, c in enumerate(self.columns) if np.isnan(A[:, j]).any()]
        B = self._fill(A)
        self.mean = B.mean(axis=0)
        self.std = np.maximum(B.std(axis=0), 1e-6)
        return self

    def _fill(self, A: np.ndarray) -> np.ndarray:
        miss = [np.isnan(A[:, self.columns.index(c)]).astype(float) for c in self.missing_cols]
        B = np.where(np.isnan(A), self.median, A)
        return np.column_stack([B, *miss]) if miss else B

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Standardised float32 matrix (n, d'), d' = kept columns + missing indicators; values in [-10, 10]."""
        B = self._fill(self._raw(X))
        return np.clip((B - self.mean) / self.std, -10, 10).astype(np.float32)


def _build_autoencoder(d: int, hidden: int, code: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU(), nn.Linear(code, hidden), nn.ReLU(),
        nn.Linear(hidden, d),
    )  # fmt: skip


class AutoencoderScore:
    """Reconstruction-error anomaly score of an MLP autoencoder trained on successful jobs (Sakurada & Yairi 2014).

    Args:
        hidden: width of the outer hidden layers (default 32).
        code: bottleneck width (default 8).
        epochs: passes over the successful training jobs (default 30).
        batch_size: minibatch size (default 256).
        lr: Adam learning rate (default 1e-3).
        seed: torch and numpy seed.

    The module is kept on CPU and pickles with the object (``torch.nn.Module`` is picklable).

    """

    name = "autoencoder"

    def __init__(
        self, hidden: int = 32, code: int = 8, epochs: int = 30, batch_size: int = 256, lr: float = 1e-3, seed: int = 0
    ) -> None:
        self.hidden, self.code, self.epochs, self.batch_size, self.lr, self.seed = (
            hidden,
            code,
            epochs,
            batch_size,
            lr,
            seed,
        )
        self.scaler = FeatureScaler()
        self.net = None
        self._platt: LogisticRegression | None = None
        self.n_train = 0
        self.train_loss = float("nan")

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray | None = None,
        end_time: np.ndarray | None = None,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
    ) -> AutoencoderScore:
        """Train on the rows of ``X`` with ``y == 0`` (successful jobs); Platt-map the score on ``X_cal``.

        Raises:
            ValueError: no successful job in ``X``.

        """
        import torch

        ok = np.asarray(y).astype(int) == 0
        if ok.sum() == 0:
            raise ValueError("AutoencoderScore.fit: no successful job to learn 'normal' from")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny MLP: threads only add contention on a shared host (see models.N_THREADS)
        try:
            return self._fit(X[ok], X_cal, y_cal)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, Xs: pd.DataFrame, X_cal: pd.DataFrame | None, y_cal: np.ndarray | None) -> AutoencoderScore:
        import torch

        self.scaler.fit(Xs)
        A = torch.from_numpy(self.scaler.transform(Xs))
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.net = _build_autoencoder(A.shape[1], self.hidden, self.code)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        loss_fn = torch.nn.MSELoss()
        self.n_train = int(len(A))
        self.net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(A), generator=gen)
            total = 0.0
            for i in range(0, len(A), self.batch_size):
                b = A[perm[i : i + self.batch_size]]
                opt.zero_grad()
                loss = loss_fn(self.net(b), b)
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.train_loss = total / len(A)
        self.net.eval()
        if X_cal is not None and y_cal is not None and 0 < int(np.sum(y_cal)) < len(y_cal):
            s = np.log1p(self.score(X_cal)).reshape(-1, 1)
            self._platt = LogisticRegression().fit(s, np.asarray(y_cal).astype(int))
        return self

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Mean squared reconstruction error per job (standardised units), shape (n,); >= 0.

        Raises:
            RuntimeError: called before :meth:`fit`.

        """
        import torch

        if self.net is None:
            raise RuntimeError("AutoencoderScore.score called before fit")
        A = torch.from_numpy(self.scaler.transform(X))
        with torch.no_grad():
            rec = self.net(A)
        return ((rec - A) ** 2).mean(dim=1).numpy().astype(float)

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Platt-scaled P(fail) from ``log1p(score)``; without a calibration slice the raw ``score/(1+score)``."""
        s = self.score(X)
        if self._platt is None:
            return s / (1.0 + s)
        return self._platt.predict_proba(np.log1p(s).reshape(-1, 1))[:, 1]


class OODDetector:
    """kNN-distance out-of-distribution score as a training percentile (see module docstring).

    Args:
        k: neighbours averaged (default 5).
        percentile: flag threshold on the score (default :data:`OOD_PERCENTILE` = 0.99).
        max_reference: cap on reference rows (seeded subsample above it, default :data:`OOD_MAX_REFERENCE`).
        seed: subsampling seed.

    """

    def __init__(
        self, k: int = 5, percentile: float = OOD_PERCENTILE, max_reference: int = OOD_MAX_REFERENCE, seed: int = 0
    ) -> None:
        self.k, self.percentile, self.max_reference, self.seed = k, percentile, max_reference, seed
        self.scaler = FeatureScaler()
        self.nn: NearestNeighbors | None = None
        self.ref_dist: np.ndarray = np.array([])
        self.n_reference = 0

    def fit(self, X: pd.DataFrame) -> OODDetector:
        """Build the reference index from training rows ``X`` (n, d) and the held-out distance distribution.

        Raises:
            ValueError: fewer than ``k + 2`` rows.

        """
        n = len(X)
        if n < self.k + 2:
            raise ValueError(f"OODDetector.fit: need at least {self.k + 2} rows, got {n}")
        self.scaler.fit(X)
        A = self.scaler.transform(X)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_cal = min(OOD_CALIBRATION_ROWS, max(1, n // 5))
        cal, ref = perm[:n_cal], perm[n_cal:]
        if len(ref) > self.max_reference:
            ref = ref[: self.max_reference]
        self.n_reference = int(len(ref))
        k = min(self.k, len(ref))
        self.nn = NearestNeighbors(n_neighbors=k).fit(A[ref])
        self.ref_dist = np.sort(self._dist(A[cal]))
        return self

    def _dist(self, A: np.ndarray) -> np.ndarray:
        d, _ = self.nn.kneighbors(A)
        return d.mean(axis=1)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Empirical percentile (0-1) of each job's kNN distance among held-out training jobs, shape (n,).

        Raises:
            RuntimeError: called before :meth:`fit`.

        """
        if self.nn is None:
            raise RuntimeError("OODDetector.score called before fit")
        if len(X) == 0:
            return np.zeros(0)
        d = self._dist(self.scaler.transform(X))
        return np.searchsorted(self.ref_dist, d, side="left") / len(self.ref_dist)

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """``scores > percentile`` as a bool array."""
        return np.asarray(scores) > self.percentile
