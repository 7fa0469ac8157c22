"""Level, slope and acceleration of irregularly sampled series, with standard errors (DESIGN.md, "Derivatives").

Method
======
For one series and an evaluation time ``now`` the estimator takes the finite samples in the half-open window
``(now - window, now]`` and fits, by weighted least squares, the local quadratic

    v(t) ~ c0 + c1 (t - t_ref) + c2 (t - t_ref)^2,        t_ref = now,

so that ``level = c0`` (units), ``slope = c1`` (units/s) and ``accel = 2 c2`` (units/s^2) are the value and the
first and second derivatives *at* ``t_ref`` (local polynomial regression: Fan & Gijbels, *Local Polynomial Modelling
and Its Applications*, 1996, ch. 3).

Choices, and why
----------------
* **t_ref = now** (the evaluation time, not the last sample). Every series of a cycle then shares one reference, so
  ``project(3600)`` and ``time_to_threshold`` mean "from now" everywhere, as PromQL's ``predict_linear`` does. When
  the last sample is older than ``now`` the fit extrapolates over that gap and the delta-method standard errors
  grow accordingly; ``stale_after`` refuses long extrapolations.
* **Triangular kernel** ``w = 1 - (now - t) / window`` (default; ``"tricube"`` and ``"uniform"`` are available).
  ``t_ref`` is the *right boundary* of the data, and for estimating a function or its derivatives at a boundary
  point the weight that minimises the asymptotic mean squared error is linear in the distance, whatever the degree
  and derivative order (Sidorenko & Riedel 1993, "Optimal boundary kernels and weightings for local polynomial
  regression", arXiv:1803.06044; Cheng, Fan & Marron 1997, "On automatic boundary corrections", Ann. Statist.
  25:1691-1708 -- the reason regression-discontinuity software defaults to it). Recent samples weigh more, so the
  estimate follows the current regime while old samples only stabilise it. The price is variance: with 72 equally
  spaced samples the slope SE of the quadratic fit is 1.18x the uniform kernel's (tricube: 1.34x), in exchange
  for a smaller bias when the series is not exactly quadratic over the window.
* **Adaptive bandwidth** (Lepski's method; Lepski, Mammen & Spokoiny 1997, Ann. Statist. 25:929-947): a quadratic
  over 6 h cannot follow an exponential whose time constant is 2 h, a logistic near saturation, or a clean-up that
  stopped an hour ago; the boundary extrapolation then gets the *sign* of the slope or of the curvature wrong. So
  the quadratic is fitted with bandwidths ``window * s`` for ``s`` in ``scales`` (default 1, 1/2, 1/4), and the
  largest bandwidth is kept whose level and slope lie within ``lepski_gamma`` (default 3) standard errors of those
  of every smaller usable bandwidth (a smaller bandwidth has less bias, more variance). ``window_seconds`` reports
  the bandwidth used. With gamma = 3 an exactly quadratic series keeps the full window 99 % of the time
  (72 samples); gamma = 2 shrinks spuriously 5-7 % of the time and costs 3-5 points of coverage.
* **Numerics**: time is centred at ``t_ref`` and scaled by the bandwidth (``u = (t - now)/bandwidth`` in
  ``(-1, 0]``); values are centred at the latest sample and scaled by their largest deviation from it; the
  weighted design ``sqrt(w) [1, u, u^2]`` is solved by QR (``numpy.linalg.qr``), never through the normal equations.
* **Standard errors** (kernel weights are not precision weights, so the classical ``sigma^2 (X'WX)^-1`` would be
  wrong): with ``A = (X'WX)^-1 X'W`` the coefficients are ``c = A v``, so under homoscedastic noise
  ``Cov(c) = sigma^2 A A' = sigma^2 R^-1 (Q'WQ) R^-T`` (a sandwich with a model-based middle). ``sigma^2`` is the
  *weighted* residual variance ``sum(w r^2) / sum(w (1 - h))`` where ``h`` are the leverages of the weighted hat
  matrix; this is exactly unbiased when the model holds and reduces to the usual ``RSS / (n - 3)`` (degrees of
  freedom ``n - 3``; ``n - 2`` for the linear fit) for uniform weights. It weights residuals like the fit does, so
  misfit far in the past does not inflate today's uncertainty.
* **Serial correlation** (``ar1_correction=True``, default): monitoring series are rarely white noise, and a
  ``query_range`` step shorter than the scrape interval repeats every raw sample, which would make naive SEs far
  too small. The variance is multiplied by ``(1 + r1) / (1 - r1)`` where ``r1`` (clipped to ``[0, 0.95]``) is the
  lag-1 autocorrelation of the residuals in time order -- the effective-sample-size correction
  ``n_eff = n (1 - r1) / (1 + r1)`` of Santer et al. 2000 (J. Geophys. Res. 105:7337), an approximation for
  irregular spacing and for weighted fits. It is conservative for white noise (SEs about 5 % larger on average).
* **Significance** uses the normal quantile ``z`` (default 1.96), not Student's t: numpy has no t quantile and
  with tens of points the difference is under 3 %. A coefficient is significant when ``|c| > z * se`` and also
  exceeds a numerical floor (1e-9 of the value range across the window), so that rounding noise on exact data is
  never "significant".
* **Linear fall-back**: when the acceleration is *not* significant the same weighted fit is redone with degree 1,
  and ``level``/``slope`` (and their SEs), projections and time-to-threshold come from that line
  (``fit_degree == 1``); ``accel``/``accel_se`` are still the quadratic's. An insignificant curvature would only
  add variance (the quadratic's boundary slope SE is 3.7x the line's with 72 samples) and spurious bending to
  extrapolations.
  This is a pre-test estimator: the reported SEs are conditional on the selected degree and bandwidth.

Measured coverage of the ``z = 1.96`` intervals (``tests/unit/test_derivatives.py``, 500 replicates of 72 random
times over the window, white noise): quadratic truth 0.94 (level), 0.93 (slope), 0.94 (acceleration); linear truth
0.92 for the slope (in the ~5 % of replicates where the curvature test fires by chance, the quadratic's boundary
slope is usually far off: the price of the linear fall-back); AR(1) noise with rho = 0.7: slope coverage 0.76 with
the correction, 0.27 without it. Time to threshold, 360 samples, noise sd 2 on a rise of 216: median relative
error 0.2 % for a line crossing 1.4 windows ahead (95th percentile 4 %) and 0.2 % for a quadratic (95th percentile
0.6 %), with the [earliest, latest] band holding the analytic answer in 92 % of replicates.

Trend classes (:data:`TREND_STATES`)
------------------------------------
``stable``: neither slope nor acceleration significant. ``linear_growth``/``linear_decline``: slope significant,
acceleration not. ``accelerating_growth`` (slope > 0, accel > 0), ``decelerating_growth`` (slope > 0, accel < 0),
``accelerating_decline`` (slope < 0, accel < 0), ``decelerating_decline`` (slope < 0, accel > 0): both significant.
Slope not significant but acceleration significant ("from rest": a minimum or a maximum at ``now``): the series is
about to move in the direction of the acceleration, so it is ``accelerating_growth`` for accel > 0 and
``accelerating_decline`` for accel < 0. This rule errs on the side of
alarm for rising thresholds. What the scenarios give (6 h window, 1-min samples, noise; tested): linear ->
linear_growth; exponential (time constant 3 h) -> accelerating_growth; logistic at 90 % of its ceiling ->
decelerating_growth; clean-up as exponential decay to a floor -> decelerating_decline; clean-up as a linear purge
that started 2 h ago -> linear_decline; a step 3 h ago -> stable (the chosen bandwidth excludes it; the step is not
reported as such); a step within the last quarter of the window -> accelerating_growth (a quadratic cannot tell it
from a take-off); white noise -> stable about 90 % of the time at z = 1.96, since two tests are made (use z = 3
when alerting on many series). Known limitation: a logistic that has fully saturated (an exponential approach
to a plateau) reads as a maximum, i.e. accelerating_decline "from rest".

Comparison with PromQL ``deriv()``
---------------------------------
``deriv(v[w])`` is the *unweighted* ordinary-least-squares slope of a straight line through the samples of the
range (Prometheus ``promql/functions.go``, ``linearRegression``), and ``predict_linear(v[w], h)`` extrapolates that
line from the evaluation time. The OLS slope of a straight line is, for a curved series, the average slope over the
window -- the derivative near the window's centre of mass, i.e. about ``w/2`` ago. Our slope differs on purpose:
(1) the kernel weighting favours recent samples, (2) the quadratic term lets the slope be evaluated at ``now``
instead of being averaged over the window (for an accelerating series deriv() lags and under-estimates it, which is
why predict_linear warns late), and (3) everything is evaluated at ``t_ref = now``, not at the window centre. On an
exactly linear series both agree (tested). deriv() has no standard error and no acceleration; it also does not undo
counter resets (rate() does; so does ``counter=True`` here).

Speed
-----
:func:`estimate_many` prepares each series with a few numpy calls, then fits all series of similar length at once
(padded, zero-weight rows; batched QR). Measured on the development machine (2 CPU cores, numpy 2.4): 10,000
series of 360 irregular samples each in about 2 s (0.2 ms per series: 3 bandwidths x 2 degrees of batched fits),
against about 1.1 s with a single bandwidth (``scales=(1.0,)``); see
``tests/unit/test_derivatives.py::test_estimate_many_speed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

__all__ = [
    "DEFAULT_LEPSKI_GAMMA",
    "DEFAULT_SCALES",
    "KERNELS",
    "TREND_STATES",
    "TrendEstimate",
    "estimate",
    "estimate_many",
]

TREND_STATES: tuple[str, ...] = (
    "stable",
    "linear_growth",
    "linear_decline",
    "accelerating_growth",
    "decelerating_growth",
    "accelerating_decline",
    "decelerating_decline",
)
"""Every value :attr:`TrendEstimate.trend` can take (the ``state`` label of ``nomade_trend_state``)."""

KERNELS: tuple[str, ...] = ("triangular", "tricube", "uniform")
"""Kernel names accepted by :func:`estimate` (weights as functions of ``d = (now - t) / window`` in ``[0, 1)``)."""

DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 0.25)
"""Candidate bandwidths, as fractions of ``window``, among which Lepski's method chooses (module docstring)."""
DEFAULT_LEPSKI_GAMMA = 3.0
"""Lepski's constant: how many standard errors of a smaller bandwidth a larger one may differ by."""

# A scaled coefficient smaller than this is rounding noise: the value range across the window is ~1 after scaling.
_NUMERIC_FLOOR = 1e-9
# Lag-1 autocorrelation is clipped here: beyond it the AR(1) inflation (1+r)/(1-r) is itself too uncertain.
_R1_MAX = 0.95
# Relative size of the smallest diagonal element of R under which the design counts as singular.
_SINGULAR_RCOND = 1e-9

Labels = TypeVar("Labels")


def _kernel_weights(d: np.ndarray, kernel: str) -> np.ndarray:
    """Kernel weights for scaled distances ``d`` in ``[0, 1)`` from ``t_ref`` (1 at ``d = 0``)."""
    if kernel == "triangular":
        return 1.0 - d
    if kernel == "tricube":
        return (1.0 - d**3) ** 3
    if kernel == "uniform":
        return np.ones_like(d)
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")


@dataclass(frozen=True)
class TrendEstimate:
    """Local-polynomial estimate of one series at ``t_ref``; see the module docstring for the method.

    Units: ``level``/``level_se``/``residual_sd`` in the series' units, ``slope``/``slope_se`` in units/s,
    ``accel``/``accel_se`` in units/s^2, times in Unix seconds, ``window_seconds`` in seconds.

    ``level``, ``slope`` and their SEs come from the model actually used (``fit_degree``: 2 when the acceleration is
    significant, else 1); ``accel``/``accel_se`` always come from the quadratic fit. ``trend`` is one of
    :data:`TREND_STATES`. ``window_seconds`` is the bandwidth actually used (``<= window``, adaptive) and ``n_points``
    the samples inside it. ``slope_significant``/``accel_significant`` are the tests behind ``trend``
    (``|x| > z * se``). ``max_gap_seconds`` is the longest interval between consecutive samples used;
    ``autocorrelation`` the lag-1 residual autocorrelation used to inflate the SEs (0 when not applied).

    The private fields keep the scaled coefficients and their covariance so that :meth:`project` and
    :meth:`time_to_threshold` use the full covariance (the level/slope/accel correlations matter). An instance built
    by hand without them (e.g. in a test) falls back to the public fields with independent errors.
    """

    t_ref: float
    n_points: int
    window_seconds: float
    residual_sd: float
    level: float
    level_se: float
    slope: float
    slope_se: float
    accel: float
    accel_se: float
    trend: str
    fit_degree: int = 2
    z: float = 1.96
    slope_significant: bool = False
    accel_significant: bool = False
    max_gap_seconds: float = 0.0
    autocorrelation: float = 0.0
    # (v0, v_scale, t_scale): value = v0 + v_scale * y, h = t_scale * u.
    _scale: tuple[float, float, float] | None = field(default=None, repr=False, compare=False)
    # coefficients of y(u) of the model used, padded with 0 to length 3, and their 3x3 covariance (row-major).
    _coef: tuple[float, float, float] | None = field(default=None, repr=False, compare=False)
    _cov: tuple[float, ...] | None = field(default=None, repr=False, compare=False)

    # -- internal representation ------------------------------------------------------------------------------
    def _model(self) -> tuple[float, float, float, tuple[float, float, float], tuple[float, ...]]:
        """``(v0, v_scale, t_scale, coef, cov)`` of the model used, in scaled units."""
        if self._scale is not None and self._coef is not None and self._cov is not None:
            v0, vs, ts = self._scale
            return v0, vs, ts, self._coef, self._cov
        c2 = self.accel / 2.0 if self.fit_degree == 2 else 0.0
        s2 = self.accel_se / 2.0 if self.fit_degree == 2 else 0.0
        cov = (self.level_se**2, 0.0, 0.0, 0.0, self.slope_se**2, 0.0, 0.0, 0.0, s2**2)
        return 0.0, 1.0, 1.0, (self.level, self.slope, c2), cov

    @staticmethod
    def _var(cov: tuple[float, ...], u: float) -> float:
        """``x' cov x`` for ``x = [1, u, u^2]`` (clipped at 0 against rounding)."""
        x = (1.0, u, u * u)
        acc = 0.0
        for i in range(3):
            for j in range(3):
                acc += x[i] * cov[3 * i + j] * x[j]
        if math.isnan(acc):  # inf * 0 on absurd horizons: the band is unbounded there
            return math.inf
        return max(acc, 0.0)

    # -- public API -------------------------------------------------------------------------------------------
    def project(self, horizon_s: float) -> tuple[float, float, float]:
        """Fitted value at ``t_ref + horizon_s`` with its pointwise ``z`` band: ``(value, lower, upper)``.

        The curve is the model used (quadratic when ``fit_degree == 2``, else the line). The band is the delta
        method on the coefficient covariance: ``var = x' Cov x`` with ``x = [1, h, h^2]``, ``value -/+ z sqrt(var)``.
        It is a confidence band for the *fitted curve* (not a prediction interval for a future raw sample) and it
        assumes the model still holds at the horizon. Negative horizons interpolate into the window.
        """
        v0, vs, ts, c, cov = self._model()
        u = float(horizon_s) / ts
        y = c[0] + c[1] * u + c[2] * u * u
        sd = math.sqrt(self._var(cov, u))
        value = v0 + vs * y
        half = self.z * vs * sd
        return value, value - half, value + half

    def time_to_threshold(
        self, threshold: float, *, direction: str = "above", max_horizon: float | None = None
    ) -> tuple[float | None, float | None, float | None]:
        """Seconds from ``t_ref`` until the fitted curve first reaches ``threshold``: ``(ttt, earliest, latest)``.

        ``direction="above"`` (default) asks when the value first becomes ``>= threshold`` (a filling filesystem),
        ``"below"`` when it first becomes ``<= threshold``. ``ttt`` is the smallest ``h >= 0`` where the fitted
        curve (quadratic or line, see :meth:`project`) is at or beyond the threshold: ``0.0`` when it already is at
        ``t_ref``; ``(None, None, None)`` when it never gets there (or only after ``max_horizon`` seconds).

        Band (pointwise-inversion, i.e. Fieller-type, confidence limits for the crossing time): ``earliest`` is the
        first ``h`` at which the *near* edge of the :meth:`project` band reaches the threshold (the upper edge for
        ``"above"``), so the true curve cannot have crossed before it at the ``z`` level; ``latest`` is the first
        ``h`` at which the *far* edge has crossed too (the lower edge for ``"above"``), i.e. by then the curve has
        crossed at the ``z`` level. ``latest`` is ``None`` (unbounded) when the far edge never crosses. Always
        ``earliest <= ttt <= latest``. The crossings are found analytically: the roots of the quadratic (point) and
        of the quartic ``(f(h) - thr)^2 - z^2 var(h)`` (edges), each confirmed by the sign of the exact function.

        Raises ValueError for an unknown ``direction``.
        """
        if direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', not {direction!r}")
        if not math.isfinite(threshold):
            return None, None, None
        v0, vs, ts, c, cov = self._model()
        sign = 1.0 if direction == "above" else -1.0
        thr = (float(threshold) - v0) / vs
        u_max = math.inf if max_horizon is None else float(max_horizon) / ts
        zz = self.z

        def f(u: float) -> float:
            return c[0] + c[1] * u + c[2] * u * u

        def g(u: float, k: float) -> float:
            # >= 0 when the curve (k = 0), its near edge (k = +1) or far edge (k = -1) is beyond the threshold.
            return sign * (f(u) - thr) + k * zz * math.sqrt(self._var(cov, u))

        # (f - thr) as a polynomial, highest degree first, and P = (f - thr)^2 - z^2 var, whose roots hold the edges.
        fp = np.array([c[2], c[1], c[0] - thr])
        vq = np.array(
            [
                cov[8],
                cov[5] + cov[7],
                cov[2] + cov[6] + cov[4],
                cov[1] + cov[3],
                cov[0],
            ]
        )
        quartic = np.convolve(fp, fp) - zz * zz * vq

        candidates = _positive_real_roots(fp) + _positive_real_roots(quartic)
        point = _first_nonneg(lambda u: g(u, 0.0), candidates, u_max)
        if point is None:
            return None, None, None
        early = _first_nonneg(lambda u: g(u, 1.0), candidates, u_max)
        late = _first_nonneg(lambda u: g(u, -1.0), candidates, u_max)
        # The edges bracket the curve; enforce it against root-finding rounding.
        early = point if early is None else min(early, point)
        late = None if late is None else max(late, point)
        return point * ts, early * ts, (None if late is None else late * ts)


def _positive_real_roots(poly: np.ndarray) -> list[float]:
    """Positive (nearly) real roots of a polynomial in numpy order; double roots may come out slightly complex."""
    coeffs = np.trim_zeros(np.asarray(poly, dtype=float), "f")
    if coeffs.size < 2 or not np.all(np.isfinite(coeffs)):
        return []
    try:
        with np.errstate(all="ignore"):
            roots = np.roots(coeffs)
    except np.linalg.LinAlgError:  # coefficients so unbalanced that the companion matrix overflows
        return []
    near_real = np.abs(roots.imag) <= 1e-6 * (1.0 + np.abs(roots))
    return [float(r) for r in roots.real[near_real & (roots.real > 0.0)]]


def _first_nonneg(fun: Callable[[float], float], candidates: list[float], u_max: float) -> float | None:
    """Smallest ``u >= 0`` (and ``<= u_max``) with ``fun(u) >= 0``, or None.

    ``candidates`` hold every point where ``fun`` can change sign (roots of polynomials that vanish there), so
    between consecutive candidates ``fun`` keeps its sign and is tested at their midpoints.
    """
    if fun(0.0) >= 0.0:
        return 0.0
    real = sorted(set(candidates))
    for i, b in enumerate(real):
        if b > u_max:
            return None
        nxt = real[i + 1] if i + 1 < len(real) else 2.0 * b + 1.0
        if fun(0.5 * (b + nxt)) >= 0.0:
            return float(b)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Preparation of one series (cheap numpy per series) and the batched fit.


@dataclass
class _Prepared:
    t: np.ndarray  # sample times (s), increasing, inside (now - window, now]
    y: np.ndarray  # scaled values (v - v0) / vs
    v0: float
    vs: float


def _prepare(
    t: np.ndarray,
    v: np.ndarray,
    *,
    now: float,
    window: float,
    counter: bool,
    min_points: int,
    stale_after: float | None,
) -> _Prepared | None:
    t = np.asarray(t, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    if t.shape != v.shape:
        raise ValueError(f"t and v differ in length ({t.size} != {v.size})")
    keep = np.isfinite(t) & np.isfinite(v) & (t <= now) & (t > now - window)
    if np.count_nonzero(keep) < max(min_points, 3):
        return None
    t = t[keep]
    v = v[keep]
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t = t[order]
        v = v[order]
    if stale_after is not None and now - t[-1] > stale_after:
        return None
    if np.count_nonzero(np.diff(t) > 0) < 2:  # fewer than 3 distinct times
        return None
    if counter:
        # Prometheus rate()/increase() semantics: a decrease is a reset, and the value before it is added to every
        # later sample (promql/functions.go, extrapolatedRate), so the series becomes monotone again.
        prev = v[:-1]
        drops = v[1:] < prev
        if drops.any():
            v = v.copy()
            v[1:] += np.cumsum(np.where(drops, prev, 0.0))
    v0 = float(v[-1])  # centre on the latest value: cheap, and keeps precision for large levels (bytes)
    with np.errstate(over="ignore", invalid="ignore"):
        dev = v - v0
        vs = float(np.max(np.abs(dev)))
    if not math.isfinite(vs):
        return None
    if vs == 0.0:
        vs = 1.0
    return _Prepared(t=t, y=dev / vs, v0=v0, vs=vs)


@dataclass
class _Fit:
    coef: np.ndarray  # (S, p) scaled coefficients
    cov: np.ndarray  # (S, p, p) scaled covariance, noise and AR(1) inflation included
    sigma: np.ndarray  # (S,) scaled residual sd
    r1: np.ndarray  # (S,) clipped lag-1 residual autocorrelation (0 when not corrected)
    ok: np.ndarray  # (S,) bool: design not singular and degrees of freedom left


def _fit_batch(U: np.ndarray, Y: np.ndarray, W: np.ndarray, degree: int, ar1: bool) -> _Fit:
    """Weighted polynomial fits of ``S`` padded series at once (rows with ``W == 0`` take no part).

    ``U`` (S, N): scaled times, ``Y`` (S, N): scaled values, ``W`` (S, N): kernel weights; see the module docstring
    for the covariance and residual variance formulas.
    """
    cols = [np.ones_like(U), U] + ([U * U] if degree == 2 else [])
    X = np.stack(cols, axis=-1)  # (S, N, p)
    sw = np.sqrt(W)
    Q, R = np.linalg.qr(X * sw[..., None])  # reduced: Q (S, N, p), R (S, p, p)
    diag = np.abs(np.diagonal(R, axis1=-2, axis2=-1))
    ok = np.min(diag, axis=-1) > _SINGULAR_RCOND * np.max(diag, axis=-1)
    # Singular designs get an identity R so that the batched solves stay finite; their rows are dropped later.
    R = np.where(ok[:, None, None], R, np.eye(degree + 1))
    qtb = np.sum(Q * (sw * Y)[..., None], axis=1)
    coef = np.linalg.solve(R, qtb[..., None])[..., 0]
    resid = (Y - (X @ coef[..., None])[..., 0]) * (W > 0)
    lev = np.sum(Q * Q, axis=-1)  # leverages of the weighted hat matrix
    dof = np.sum(W * (1.0 - lev), axis=-1)  # = n - p for uniform weights
    ok &= dof > 1e-9 * np.sum(W, axis=-1)
    s2 = np.sum(W * resid * resid, axis=-1) / np.where(ok, dof, 1.0)
    if ar1:
        num = np.sum(resid[:, 1:] * resid[:, :-1], axis=-1)
        den = np.sum(resid * resid, axis=-1)
        r1 = np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), 0.0, _R1_MAX)
        s2 = s2 * (1.0 + r1) / (1.0 - r1)
    else:
        r1 = np.zeros(U.shape[0])
    Rinv = np.linalg.inv(R)
    M = np.swapaxes(Q, -1, -2) @ (Q * W[..., None])  # Q' W Q
    cov = s2[:, None, None] * (Rinv @ M @ np.swapaxes(Rinv, -1, -2))
    return _Fit(coef=coef, cov=cov, sigma=np.sqrt(s2), r1=r1, ok=ok)


def _classify(slope: float, slope_sig: bool, accel: float, accel_sig: bool) -> str:
    if not accel_sig:
        if not slope_sig:
            return "stable"
        return "linear_growth" if slope > 0 else "linear_decline"
    if not slope_sig:  # at rest (a minimum or maximum now): it will move the way it accelerates
        return "accelerating_growth" if accel > 0 else "accelerating_decline"
    if slope > 0:
        return "accelerating_growth" if accel > 0 else "decelerating_growth"
    return "accelerating_decline" if accel < 0 else "decelerating_decline"


def _finish(
    p: _Prepared,
    f2: _Fit,
    f1: _Fit,
    i: int,
    *,
    now: float,
    bandwidth: float,
    z: float,
) -> TrendEstimate | None:
    """Build the :class:`TrendEstimate` of series ``i`` of a batch from its quadratic and linear fits."""
    if not (f2.ok[i] and f1.ok[i]):
        return None
    c2 = f2.coef[i]
    se2 = np.sqrt(np.maximum(np.diagonal(f2.cov[i]), 0.0))
    accel_sig = bool(abs(c2[2]) > max(z * se2[2], _NUMERIC_FLOOR))
    if accel_sig:
        degree, coef, cov, se, sigma, r1 = 2, c2, f2.cov[i], se2, f2.sigma[i], f2.r1[i]
    else:
        degree, sigma, r1 = 1, f1.sigma[i], f1.r1[i]
        coef = np.array([f1.coef[i][0], f1.coef[i][1], 0.0])
        cov = np.zeros((3, 3))
        cov[:2, :2] = f1.cov[i]
        se = np.array([*np.sqrt(np.maximum(np.diagonal(f1.cov[i]), 0.0)), 0.0])
    slope_sig = bool(abs(coef[1]) > max(z * se[1], _NUMERIC_FLOOR))
    vs, ts = p.vs, bandwidth
    values = (
        p.v0 + vs * float(coef[0]),
        vs * float(se[0]),
        vs * float(coef[1]) / ts,
        vs * float(se[1]) / ts,
        2.0 * vs * float(c2[2]) / (ts * ts),
        2.0 * vs * float(se2[2]) / (ts * ts),
        vs * float(sigma),
    )
    if not all(math.isfinite(x) for x in values) or not np.all(np.isfinite(cov)):
        return None  # overflow on extreme inputs: no output rather than a wrong one
    level, level_se, slope, slope_se, accel, accel_se, residual_sd = values
    used = p.t[p.t > now - bandwidth]
    return TrendEstimate(
        t_ref=float(now),
        n_points=int(used.size),
        window_seconds=float(bandwidth),
        residual_sd=residual_sd,
        level=level,
        level_se=level_se,
        slope=slope,
        slope_se=slope_se,
        accel=accel,
        accel_se=accel_se,
        trend=_classify(slope, slope_sig, accel, accel_sig),
        fit_degree=degree,
        z=float(z),
        slope_significant=slope_sig,
        accel_significant=accel_sig,
        max_gap_seconds=float(np.max(np.diff(used))) if used.size > 1 else 0.0,
        autocorrelation=float(r1),
        _scale=(p.v0, vs, float(ts)),
        _coef=(float(coef[0]), float(coef[1]), float(coef[2])),
        _cov=tuple(float(x) for x in cov.ravel()),
    )


def _select_scale(fits: list[tuple[float, _Fit]], gamma: float) -> np.ndarray:
    """Index into ``fits`` (bandwidths, largest first) chosen per series by Lepski's method.

    The largest bandwidth whose quadratic-fit level and slope at ``now`` lie within ``gamma`` standard errors of
    those of every usable smaller bandwidth (whose bias is smaller); -1 when no bandwidth is usable.
    """
    S = fits[0][1].ok.shape[0]
    level = np.stack([f.coef[:, 0] for _, f in fits], axis=1)  # (S, K), scaled value units
    slope = np.stack([f.coef[:, 1] / s for s, f in fits], axis=1)  # per full-window time unit
    level_se = np.stack([np.sqrt(np.maximum(f.cov[:, 0, 0], 0.0)) for _, f in fits], axis=1)
    slope_se = np.stack([np.sqrt(np.maximum(f.cov[:, 1, 1], 0.0)) / s for s, f in fits], axis=1)
    ok = np.stack([f.ok for _, f in fits], axis=1)
    K = len(fits)
    chosen = np.full(S, -1)
    for k in range(K - 1, -1, -1):  # from the smallest bandwidth up: the last consistent one wins
        good = ok[:, k].copy()
        for j in range(k + 1, K):
            with np.errstate(invalid="ignore"):
                agree = (np.abs(level[:, k] - level[:, j]) <= gamma * level_se[:, j] + _NUMERIC_FLOOR) & (
                    np.abs(slope[:, k] - slope[:, j]) <= gamma * slope_se[:, j] + _NUMERIC_FLOOR
                )
            good &= agree | ~ok[:, j]
        # a larger bandwidth replaces a smaller one only if it agrees with all smaller usable ones
        chosen = np.where(good, k, chosen)
    return chosen


def estimate_many(
    series: Iterable[tuple[Labels, np.ndarray, np.ndarray]],
    *,
    now: float,
    window: float,
    counter: bool = False,
    min_points: int = 6,
    stale_after: float | None = None,
    z: float = 1.96,
    kernel: str = "triangular",
    ar1_correction: bool = True,
    scales: Sequence[float] = DEFAULT_SCALES,
    lepski_gamma: float = DEFAULT_LEPSKI_GAMMA,
    batch_size: int = 1024,
) -> list[tuple[Labels, TrendEstimate | None]]:
    """Estimate every series of ``series`` (``(labels, t, v)`` triples) at ``now``; same order out, labels untouched.

    ``t`` are Unix seconds and ``v`` values (1-D arrays of equal length, any order; NaN/inf samples are dropped).
    Each series is independent and gets exactly what :func:`estimate` would give it (see there for the
    parameters). Series are prepared one by one and then fitted in batches of ``batch_size`` series of similar
    length (batched QR on zero-weight-padded arrays), which keeps 10,000 series of 360 samples to about two seconds
    (module docstring, "Speed").

    Raises ValueError for ``window <= 0``, an unknown ``kernel``, a non-finite ``now``/``z``, bad ``scales``, or a
    series whose ``t`` and ``v`` differ in length.
    """
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, not {window!r}")
    if not (math.isfinite(now) and math.isfinite(z) and z > 0):
        raise ValueError("now and z must be finite (z > 0)")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    sc = sorted({float(s) for s in scales}, reverse=True)
    if not sc or sc[0] != 1.0 or sc[-1] <= 0.0:
        raise ValueError(f"scales must contain 1.0 and lie in (0, 1], not {scales!r}")
    now = float(now)
    window = float(window)
    need = max(min_points, 3)
    items = list(series)
    prepared = [
        _prepare(t, v, now=now, window=window, counter=counter, min_points=min_points, stale_after=stale_after)
        for _, t, v in items
    ]
    out: list[TrendEstimate | None] = [None] * len(items)
    todo = sorted((i for i, p in enumerate(prepared) if p is not None), key=lambda i: prepared[i].t.size)
    for start in range(0, len(todo), max(1, batch_size)):
        idx = todo[start : start + batch_size]
        batch: list[_Prepared] = [prepared[i] for i in idx]  # type: ignore[misc]
        n = max(p.t.size for p in batch)
        D = np.ones((len(batch), n))  # scaled distance (now - t) / window; padding rows at 1 (outside)
        Y = np.zeros((len(batch), n))
        for k, p in enumerate(batch):
            m = p.t.size
            D[k, :m] = (now - p.t) / window
            Y[k, :m] = p.y
        fits2: list[tuple[float, _Fit]] = []
        fits1: list[_Fit] = []
        for s in sc:
            Ds = D / s
            inside = Ds < 1.0
            Ws = np.where(inside, _kernel_weights(np.minimum(Ds, 1.0), kernel), 0.0)
            enough = np.count_nonzero(inside, axis=1) >= need
            f2 = _fit_batch(-Ds, Y, Ws, 2, ar1_correction)
            f1 = _fit_batch(-Ds, Y, Ws, 1, ar1_correction)
            f2.ok &= enough
            f1.ok &= enough
            fits2.append((s, f2))
            fits1.append(f1)
        chosen = _select_scale(fits2, lepski_gamma) if len(sc) > 1 else np.where(fits2[0][1].ok, 0, -1)
        for k, i in enumerate(idx):
            c = int(chosen[k])
            if c >= 0:
                s, f2 = fits2[c]
                out[i] = _finish(batch[k], f2, fits1[c], k, now=now, bandwidth=window * s, z=float(z))
    return [(labels, est) for (labels, _, _), est in zip(items, out, strict=True)]


def estimate(
    t: np.ndarray,
    v: np.ndarray,
    *,
    now: float,
    window: float,
    counter: bool = False,
    min_points: int = 6,
    stale_after: float | None = None,
    z: float = 1.96,
    kernel: str = "triangular",
    ar1_correction: bool = True,
    scales: Sequence[float] = DEFAULT_SCALES,
    lepski_gamma: float = DEFAULT_LEPSKI_GAMMA,
) -> TrendEstimate | None:
    """Level, slope and acceleration of one series at ``t_ref = now`` (module docstring: method and choices).

    ``t``: sample times (Unix s), ``v``: values, 1-D arrays of equal length in any order. Only finite samples with
    ``now - window < t <= now`` are used (later samples are ignored: clock skew). ``counter=True`` undoes resets
    inside the window first (Prometheus ``rate()`` semantics), so ``slope`` is the rate in units/s.

    Tuning: ``z`` (significance and band quantile), ``kernel`` (one of :data:`KERNELS`), ``ar1_correction`` (SE
    inflation for serially correlated residuals), ``scales``/``lepski_gamma`` (adaptive bandwidth; ``scales=(1.0,)``
    fixes it to ``window``). A bandwidth whose sub-window holds fewer than ``max(min_points, 3)`` samples is not used.
    Gaps need no special case: the SEs come from the actual sample times, so a window with a long gap (reported as
    ``max_gap_seconds``) gets wider SEs and bands; a gap up to ``now`` is staleness (``stale_after``).

    Returns None -- no output rather than a wrong one -- when fewer than ``max(min_points, 3)`` samples remain, when
    they have fewer than 3 distinct times, when the last one is older than ``stale_after`` seconds before ``now``,
    when the design is singular or leaves no residual degrees of freedom, or when the arithmetic overflows.

    Raises ValueError for ``window <= 0``, an unknown ``kernel``, non-finite ``now``/``z``, or ``len(t) != len(v)``.
    """
    ((_, est),) = estimate_many(
        [(None, t, v)],
        now=now,
        window=window,
        counter=counter,
        min_points=min_points,
        stale_after=stale_after,
        z=z,
        kernel=kernel,
        ar1_correction=ar1_correction,
        scales=scales,
        lepski_gamma=lepski_gamma,
    )
    return est
