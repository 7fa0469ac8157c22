"""Tests of analytics/anomaly.py: feature scaler, autoencoder score, OOD detector."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from nomade.analytics.anomaly import AutoencoderScore, FeatureScaler, OODDetector


def _cloud(n: int, seed: int) -> pd.DataFrame:
    """Points near a 2-d plane in 6 dimensions (what an autoencoder with a small code can learn)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    W = np.array([[1, 0, 1, 0.5, -1, 2], [0, 1, -1, 0.5, 1, 0]])
    A = z @ W + 0.05 * rng.normal(size=(n, 6))
    return pd.DataFrame(A, columns=[f"f{i}" for i in range(6)])


def test_feature_scaler_imputes_flags_and_logs_counts() -> None:
    X = pd.DataFrame({"user_past_jobs": [0.0, 9.0, 99.0, np.nan], "x": [1.0, 2.0, 3.0, 4.0], "gone": np.nan})
    s = FeatureScaler().fit(X)
    assert s.columns == ["user_past_jobs", "x"] and s.missing_cols == ["user_past_jobs"]
    A = s.transform(X)
    assert A.shape == (4, 3) and np.isfinite(A).all()
    # log1p compresses the count: log1p(0), log1p(9), log1p(99), median -> standardised
    raw = np.log1p([0.0, 9.0, 99.0])
    filled = np.r_[raw, np.median(raw)]
    np.testing.assert_allclose(A[:, 0], (filled - filled.mean()) / filled.std(), rtol=1e-5)
    assert list(A[:, 2] > 0) == [False, False, False, True]  # missing indicator
    with pytest.raises(ValueError):
        FeatureScaler().fit(X.iloc[0:0])


def test_autoencoder_scores_off_manifold_jobs_higher() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    X = _cloud(1500, 0)
    y = np.zeros(1500, int)
    y[:100] = 1  # failures are not used for training
    ae = AutoencoderScore(epochs=40, seed=0).fit(X, y)
    assert ae.n_train == 1400
    normal = ae.score(_cloud(300, 1))
    rng = np.random.default_rng(2)
    odd = ae.score(pd.DataFrame(rng.normal(size=(300, 6)) * 2, columns=X.columns))  # off the plane
    assert normal.min() >= 0
    assert np.median(odd) > 5 * np.median(normal)
    p = ae.predict_proba(_cloud(5, 3))
    assert p.shape == (5,) and ((p >= 0) & (p <= 1)).all()
    again = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(again.score(X.head(20)), ae.score(X.head(20)))
    with pytest.raises(ValueError, match="successful"):
        AutoencoderScore().fit(X.head(5), np.ones(5, int))
    with pytest.raises(RuntimeError):
        AutoencoderScore().score(X)


def test_autoencoder_platt_map_with_a_calibration_slice() -> None:
    torch.set_num_threads(1)
    X = _cloud(800, 4)
    rng = np.random.default_rng(5)
    Xc = pd.concat([_cloud(200, 6), pd.DataFrame(rng.normal(size=(200, 6)) * 2, columns=X.columns)])
    yc = np.r_[np.zeros(200, int), np.ones(200, int)]
    ae = AutoencoderScore(epochs=20).fit(X, np.zeros(800, int), X_cal=Xc, y_cal=yc)
    p = ae.predict_proba(Xc)
    assert p[200:].mean() > 0.7 and p[:200].mean() < 0.3


def test_ood_detector_flags_far_points_only() -> None:
    X = _cloud(3000, 7)
    det = OODDetector(seed=0).fit(X)
    inside = det.score(_cloud(1000, 8))
    assert ((inside >= 0) & (inside <= 1)).all()
    assert det.flag(inside).mean() < 0.04  # about 1 % by construction
    far = X.head(10) + 50.0
    s = det.score(far)
    assert (s == 1.0).all() and det.flag(s).all()
    assert det.score(X.iloc[0:0]).shape == (0,)
    with pytest.raises(ValueError):
        OODDetector(k=5).fit(X.head(4))
    with pytest.raises(RuntimeError):
        OODDetector().score(X)
