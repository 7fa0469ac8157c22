"""Tests of analytics/models.py: baseline, calibrated GBM, stacking calibration, per-class model, reliability table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.models import (
    ALL_CLASSES,
    EPS,
    CalibratedGBM,
    PerClassModel,
    RiskModel,
    StackingEnsemble,
    UserHistoryBaseline,
    class_labels,
    expected_calibration_error,
    logit,
    nonneg_logistic,
    reliability_table,
)


def _known(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features with a known P(fail) = sigmoid(2 a - 1.5) (b is noise)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    p = 1 / (1 + np.exp(-(2 * X["a"].to_numpy() - 1.5)))
    return X, (rng.random(n) < p).astype(int), p


def test_baseline_is_the_user_history_feature() -> None:
    X = pd.DataFrame({"user_past_fail_rate": [0.1, np.nan, 0.7]})
    b = UserHistoryBaseline().fit(X, np.array([0, 1, 1, 1]))
    assert isinstance(b, RiskModel)
    np.testing.assert_allclose(b.predict_proba(X), [0.1, 0.75, 0.7])
    with pytest.raises(ValueError, match="user_past_fail_rate"):
        b.predict_proba(pd.DataFrame({"x": [1.0]}))


def test_calibrated_gbm_is_calibrated_on_known_probabilities() -> None:
    X, y, _ = _known(3000, 0)
    Xc, yc, _ = _known(1500, 1)
    Xt, yt, pt = _known(3000, 2)
    m = CalibratedGBM(max_iter=60).fit(X, y, X_cal=Xc, y_cal=yc)
    assert m.method == "isotonic"
    p = m.predict_proba(Xt)
    assert p.shape == (3000,) and p.min() >= 0 and p.max() <= 1
    assert expected_calibration_error(yt, p) < 0.05
    assert np.corrcoef(p, pt)[0, 1] > 0.85
    # small calibration slice -> Platt scaling; no usable slice -> raw GBM output
    assert CalibratedGBM(max_iter=20).fit(X, y, X_cal=Xc.head(100), y_cal=yc[:100]).method == "sigmoid"
    assert CalibratedGBM(max_iter=20).fit(X, y).method == "none"
    # cross-fitted probabilities of the calibration slice: no row mapped by a map that saw its label
    oof = m.oof_proba(Xc, yc)
    assert oof.shape == (1500,) and not np.allclose(oof, m.predict_proba(Xc))
    assert expected_calibration_error(yc, oof) < 0.06
    one = CalibratedGBM().fit(X.head(20), np.zeros(20, int))
    np.testing.assert_array_equal(one.predict_proba(Xt.head(3)), [0.0, 0.0, 0.0])


class _Fixed:
    """A 'model' whose probability is a fixed function of column a (for stacking tests)."""

    def __init__(self, name: str, f) -> None:
        self.name, self.f = name, f

    def predict_proba(self, X, *, submit_time=None):
        return self.f(X)


def test_stacking_recalibrates_and_weights_the_informative_input() -> None:
    Xc, yc, _ = _known(4000, 3)
    Xt, yt, pt = _known(4000, 4)
    true = lambda X: 1 / (1 + np.exp(-(2 * X["a"].to_numpy() - 1.5)))  # noqa: E731
    over = _Fixed("over", lambda X: true(X) ** 0.3)  # badly miscalibrated (overconfident in failure)
    noise = _Fixed("noise", lambda X: 1 / (1 + np.exp(-X["b"].to_numpy())))
    assert expected_calibration_error(yt, over.predict_proba(Xt)) > 0.2
    e = StackingEnsemble([over, noise]).fit(Xc, yc, X_cal=Xc, y_cal=yc)
    p = e.predict_proba(Xt)
    assert expected_calibration_error(yt, p) < 0.04
    w = e.weights()
    assert abs(w["over"]) > 5 * abs(w["noise"])
    t = reliability_table(yt, p)
    big = t[t["n"] >= 100]
    assert (big["observed_rate"] - big["mean_predicted"]).abs().max() < 0.07
    with pytest.raises(ValueError, match="X_cal"):
        e.fit(Xc, yc)


def test_logit_is_clipped() -> None:
    z = logit(np.array([0.0, 0.5, 1.0]))
    assert z[1] == 0 and np.isfinite(z).all() and z[0] == pytest.approx(-z[2])
    assert z[2] == pytest.approx(np.log((1 - EPS) / EPS))


def test_per_class_model_probabilities() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    X = pd.DataFrame({"a": rng.uniform(0, 3, n), "b": rng.normal(size=n)})
    cls = np.where(X["a"] < 1, "success", np.where(X["a"] < 2, "timeout", "out_of_memory")).astype(object)
    flip = rng.random(n) < 0.1
    cls[flip] = "success"
    m = PerClassModel(max_iter=50).fit(X.iloc[:2000], cls[:2000], X.iloc[2000:2500], cls[2000:2500])
    assert set(m.classes_) == {"success", "timeout", "out_of_memory"}
    assert 0.05 < m.temperature < 20
    P = m.predict_proba(X.iloc[2500:])
    assert list(P.columns) == list(ALL_CLASSES)
    assert P[["failed", "node_fail", "cancelled", "other_failure"]].isna().all().all()  # never seen: absent
    np.testing.assert_allclose(P[m.classes_].sum(axis=1), 1.0, atol=1e-9)
    acc = (P[m.classes_].idxmax(axis=1).to_numpy() == cls[2500:]).mean()
    assert acc > 0.8
    with pytest.raises(ValueError, match="unknown classes"):
        PerClassModel().fit(X.head(3), np.array(["success", "weird", "timeout"], dtype=object))


def test_class_labels_mapping() -> None:
    s = pd.Series(["success", "timeout", "segfault", None, "cancelled"])
    assert list(class_labels(s)) == ["success", "timeout", "other_failure", "other_failure", "cancelled"]


def test_reliability_table_hand_example() -> None:
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.55, 0.95, 0.95])
    t = reliability_table(y, p, bins=10)
    assert list(t["n"]) == [2, 1, 2]
    assert list(t["observed_rate"]) == [0.5, 0.0, 1.0]
    # ECE = (2*|0.5-0.05| + 1*|0-0.55| + 2*|1-0.95|) / 5
    assert expected_calibration_error(y, p) == pytest.approx((0.9 + 0.55 + 0.1) / 5)


def test_nonneg_logistic_matches_sklearn_and_clamps_negative_weights() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(9)
    Z = rng.normal(size=(3000, 2))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(0.3 + 1.5 * Z[:, 0] + 0.5 * Z[:, 1])))).astype(int)
    b, w = nonneg_logistic(Z, y, C=1.0)
    ref = LogisticRegression(C=1.0).fit(Z, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-3)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-3)
    y2 = (rng.random(3000) < 1 / (1 + np.exp(-(1.5 * Z[:, 0] - 1.0 * Z[:, 1])))).astype(int)
    _, w2 = nonneg_logistic(Z, y2)
    assert w2[0] > 1.0 and w2[1] == 0.0  # the riskier-when-lower input gets no weight


def test_stacking_clips_level0_to_the_calibration_range() -> None:
    rng = np.random.default_rng(10)
    Z = rng.normal(size=(500, 1))
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * Z[:, 0]))).astype(int)
    e = StackingEnsemble([]).fit_level0(Z, y)
    far = e.proba_level0(np.array([[Z.max()], [Z.max() + 100.0]]))
    assert far[0] == far[1]
