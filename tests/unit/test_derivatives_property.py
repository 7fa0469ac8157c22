"""Property tests for the derivative engine: arbitrary inputs never raise, and the outputs are coherent."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nomade.analytics.derivatives import TREND_STATES, estimate

NOW = 1_718_000_000.0
W = 3600.0

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
times = st.floats(min_value=NOW - 1.5 * W, max_value=NOW + 60.0, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True, width=64)

samples = st.lists(st.tuples(times, finite), min_size=0, max_size=120)


def _arrays(pairs):
    t = np.array([p[0] for p in pairs], dtype=float)
    v = np.array([p[1] for p in pairs], dtype=float)
    return t, v


def _check_coherent(e):
    assert e.trend in TREND_STATES
    for name in ("level_se", "slope_se", "accel_se", "residual_sd"):
        value = getattr(e, name)
        assert math.isfinite(value) and value >= 0.0, (name, value)
    assert math.isfinite(e.level) and math.isfinite(e.slope) and math.isfinite(e.accel)
    assert e.n_points >= 3 and 0 < e.window_seconds <= W
    for horizon in (0.0, 600.0, 3600.0, 86400.0):
        value, lo, hi = e.project(horizon)
        if math.isfinite(value):
            assert lo <= value <= hi, (horizon, lo, value, hi)
    for direction in ("above", "below"):
        ttt, early, late = e.time_to_threshold(e.level + 1.0, direction=direction)
        if ttt is None:
            assert early is None and late is None
        else:
            assert 0.0 <= early <= ttt
            assert late is None or late >= ttt


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples, st.booleans())
def test_arbitrary_finite_samples_never_raise(pairs, counter):
    t, v = _arrays(pairs)
    e = estimate(t, v, now=NOW, window=W, counter=counter, min_points=3)
    if e is not None:
        _check_coherent(e)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(times, anything), anything), max_size=60))
def test_non_finite_samples_never_raise(pairs):
    t, v = _arrays(pairs)
    e = estimate(t, v, now=NOW, window=W, min_points=3)
    if e is not None:
        _check_coherent(e)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(times, st.floats(allow_nan=False, allow_infinity=False)), max_size=60),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_extreme_magnitudes_never_raise(pairs, threshold):
    t, v = _arrays(pairs)
    e = estimate(t, v, now=NOW, window=W, min_points=3)
    if e is not None:
        _check_coherent(e)
        for direction in ("above", "below"):
            ttt, early, late = e.time_to_threshold(threshold, direction=direction)
            assert ttt is None or (early <= ttt and (late is None or late >= ttt))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=0.999), min_size=8, max_size=80, unique=True),
    st.lists(st.floats(min_value=-100.0, max_value=100.0), min_size=80, max_size=80),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=0.01, max_value=1e3),
)
def test_shift_and_scale_equivariance(fractions, noise, shift, scale):
    # Equivariance holds up to the conditioning of the design: sample times a nanosecond apart (hypothesis found
    # 1e-9 and 5e-324 of the window) make the fit's standard errors rounding noise, which does not scale exactly.
    assume(float(np.min(np.diff(np.sort(fractions)))) > 1e-6)
    t = NOW - W * np.array(fractions)
    v = np.array(noise[: t.size])
    a = estimate(t, v, now=NOW, window=W, min_points=3)
    b = estimate(t, scale * v + shift, now=NOW, window=W, min_points=3)
    assert (a is None) == (b is None)
    if a is None:
        return
    tol = 1e-6 * (1.0 + float(np.max(np.abs(v))))
    assert math.isclose(b.slope, scale * a.slope, rel_tol=1e-6, abs_tol=scale * tol / W)
    assert math.isclose(b.level, scale * a.level + shift, rel_tol=1e-6, abs_tol=scale * tol + 1e-9 * abs(shift))
    assert math.isclose(b.slope_se, scale * a.slope_se, rel_tol=1e-6, abs_tol=scale * tol / W)
    assert b.window_seconds == a.window_seconds
