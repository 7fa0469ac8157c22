"""Job-similarity graph: k nearest neighbours by cosine similarity, leakage-free by the "ended before submit" rule.

Representation
==============
:class:`Standardiser` (fitted on TRAINING rows only): ``+-inf`` -> NaN, NaN -> the training median of the column
(a column that is NaN throughout training becomes 0 = carries nothing), then ``sklearn.preprocessing.StandardScaler``
(zero-variance columns keep scale 1 and so become 0), then clipping to ``+-CLIP_SD`` standard deviations: counts such as
``user_past_jobs`` are heavy-tailed and a few extreme jobs would otherwise own whole directions of the cosine space
(winsorising, Tukey 1962).

:class:`SimilarityIndex` L2-normalises the standardised rows. For unit vectors ``||a - b||^2 = 2 - 2 cos(a, b)``, so
Euclidean nearest neighbours ARE the cosine nearest neighbours and ``cos = 1 - d^2 / 2``; a metric tree
(``sklearn.neighbors.KDTree``; cosine itself is not a metric, the chord distance is) can then be used. A row whose
standardised vector is all zero has no direction (cosine undefined): it is never a neighbour and gets no neighbours
(absent beats wrong; counted in ``n_degenerate_``).

Complexity: building a KD tree is O(n log n); one k-NN query costs about O(k log n) in low intrinsic dimension
(Friedman, Bentley & Finkel 1977, ACM TOMS 3(3); sklearn user guide, "Nearest Neighbors"). The worst case in high
intrinsic dimension degrades towards O(n) per query, still without an n x n matrix in memory. Measured on the LANL
CM-5 trace (27 submit-time features, 68k training jobs, k = 10) a KD tree answered about 3x faster than a BallTree
(leaf size 20-40), hence the choice.

Leakage-free neighbour sets ("ended before submit")
===================================================
Job ``j`` may be a neighbour of job ``i`` only if ``end_j < submit_i`` (strict): then ``j``'s outcome was known when
``i`` was submitted. Indexed jobs are kept sorted by (effective) end time, so the allowed set of job ``i`` is a PREFIX
``[0, P_i)`` of that order with ``P_i = searchsorted(ends, submit_i, "left")``. The effective end is
``max(end, submit)``, so a job is never its own neighbour even on corrupt rows (as in
:func:`nomade.analytics.features.effective_end`).

Querying the prefix exactly, efficiently:

1. **Over-fetch**: one query of the whole tree for ``k * overfetch`` neighbours; drop those outside the prefix.
   A row is done when ``min(k, P_i)`` allowed neighbours remain. The true k nearest allowed neighbours are then
   exactly those (the tree returns neighbours in distance order, and the allowed ones among the first ``k*m`` are the
   nearest allowed ones overall).
2. **Fallback, logarithmic method** (Bentley & Saxe 1980, "Decomposable searching problems I: static-to-dynamic
   transformation", J. Algorithms 1(4)): for the remaining rows, ``[0, P_i)`` is split into the dyadic blocks given by
   the binary digits of ``P_i`` (at most ``log2 n`` of them). k-NN is decomposable, so the k nearest over the prefix
   are the k nearest of the union of each block's k nearest. Large blocks get their own (cached) KD tree; blocks of
   at most ``BRUTE_MAX`` rows, and the final partial tail of fewer than ``BRUTE_TAIL`` rows, are searched by exact dot
   products. Cost per fallback row O(k log^2 n + BRUTE_MAX d); the cached trees hold O(n log n) points in all.

Both steps return the exact k nearest allowed neighbours (up to ties in distance), which the tests check against a
brute-force search; the reported similarity is the dot product of the unit vectors, whichever step found the
neighbour. Measured: the leakage-free 10-NN graph of the LANL CM-5 fit slice (68,332 jobs, 27 features) takes about
20 s on one core (21 % of the rows needed the fallback with ``overfetch = 4``).

Network metrics
===============
:func:`assortativity`: Newman's categorical assortativity coefficient (M. E. J. Newman 2003, "Mixing patterns in
networks", Phys. Rev. E 67, 026126, eq. 2): ``r = (sum_i e_ii - sum_i a_i b_i) / (1 - sum_i a_i b_i)`` with ``e_ij``
the fraction of (directed) edges from a class-i source to a class-j target, ``a`` / ``b`` its row / column sums;
implemented with numpy (``bincount``), equal to ``networkx.attribute_assortativity_coefficient`` on a ``DiGraph``
(checked in the tests). :func:`purity`: for each job with at least one neighbour, the share of its neighbours with
its own class; averaged over those jobs. :func:`network_metrics` adds both under a label-permutation null (same graph,
class labels shuffled across nodes; mean and sd of ``n_perm`` permutations), so signal can be told from chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KDTree
from sklearn.preprocessing import StandardScaler

from nomade.exporter.parsers.slurm_outcome import FAILURE_CLASSES

#: Standardised values are clipped to +-CLIP_SD (winsorising heavy-tailed counts).
CLIP_SD = 5.0
#: Default number of neighbours.
DEFAULT_K = 10
#: Over-fetch factor of the first query (k * OVERFETCH neighbours, then filter by the time rule).
OVERFETCH = 4
#: Dyadic blocks up to this many rows are searched by exact dot products instead of a tree.
BRUTE_MAX = 1024
#: The partial tail of a prefix (below the smallest block searched blockwise) has fewer than this many rows.
BRUTE_TAIL = 64
#: Rows per batch in brute-force searches (bounds the memory of the gathered vectors).
_BATCH = 2048
#: Same rule as ``nomade.analytics.models.CalibratedGBM``: below this many calibration jobs, Platt, not isotonic.
MIN_ISOTONIC = 200
#: Pseudo-weight of the smoothing of the neighbour failure share (m-estimate, Cestnik 1990).
SHARE_SMOOTHING_M = 1.0


def _matrix(X: pd.DataFrame | np.ndarray, columns: Sequence[str] | None) -> np.ndarray:
    """``X`` as a float64 (n, d) array; a DataFrame is reordered to ``columns`` (ValueError naming missing ones)."""
    if isinstance(X, pd.DataFrame):
        if columns is not None:
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise ValueError(f"feature columns missing: {missing}")
            X = X[list(columns)]
        A = X.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    else:
        A = np.asarray(X, dtype=float)
    if A.ndim != 2:
        raise ValueError(f"features must be 2-D (n_jobs, n_features), got shape {A.shape}")
    if columns is not None and A.shape[1] != len(columns):
        raise ValueError(f"expected {len(columns)} feature columns, got {A.shape[1]}")
    return np.where(np.isfinite(A), A, np.nan)


def _times(t: Any, n: int, name: str) -> np.ndarray:
    """A time vector (Unix s) of length ``n`` as float64 (NaN allowed); ValueError on a length mismatch."""
    a = np.asarray(pd.to_numeric(pd.Series(np.asarray(t).ravel()), errors="coerce"), dtype=float)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


class Standardiser:
    """Median imputation + StandardScaler + clipping to ``+-clip`` (see the module docstring), fitted on training rows.

    Args:
        clip: clipping bound in standard deviations (``None`` = no clipping).

    Attributes after :meth:`fit`: ``columns`` (names, or None for arrays), ``median_`` (d,), ``scaler_``.

    """

    def __init__(self, clip: float | None = CLIP_SD) -> None:
        self.clip = clip
        self.columns: list[str] | None = None
        self.median_: np.ndarray | None = None
        self.scaler_: StandardScaler | None = None

    def fit(self, X: pd.DataFrame | np.ndarray) -> Standardiser:
        """Learn medians, means and standard deviations from ``X`` (n, d); ValueError if ``X`` has no rows."""
        self.columns = list(X.columns) if isinstance(X, pd.DataFrame) else None
        A = _matrix(X, self.columns)
        if len(A) == 0:
            raise ValueError("cannot fit the standardiser on zero rows")
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(np.isnan(A).all(axis=0), 0.0, A), axis=0)
        self.median_ = np.where(np.isnan(med), 0.0, med)
        self.scaler_ = StandardScaler().fit(np.where(np.isnan(A), self.median_, A))
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Standardised float64 array (n, d). Raises RuntimeError before :meth:`fit`, ValueError on wrong columns."""
        if self.scaler_ is None or self.median_ is None:
            raise RuntimeError("Standardiser is not fitted")
        A = _matrix(X, self.columns)
        if A.shape[1] != len(self.median_):
            raise ValueError(f"expected {len(self.median_)} feature columns, got {A.shape[1]}")
        Z = self.scaler_.transform(np.where(np.isnan(A), self.median_, A))
        if self.clip is not None:
            Z = np.clip(Z, -self.clip, self.clip)
        return np.ascontiguousarray(Z, dtype=float)


def _unit(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``Z`` scaled to unit L2 norm, and a mask of the rows that had a direction (norm > 1e-12)."""
    norm = np.linalg.norm(Z, axis=1)
    ok = norm > 1e-12
    U = np.zeros_like(Z)
    U[ok] = Z[ok] / norm[ok, None]
    return np.ascontiguousarray(U), ok


class SimilarityIndex:
    """k-NN index of finished jobs by cosine similarity of standardised features (see the module docstring).

    Args:
        k: default number of neighbours.
        overfetch: over-fetch factor of the first, time-filtered query.
        leaf_size: KD-tree leaf size (speed only, never the result).
        standardiser: a fitted :class:`Standardiser` to reuse; default: fit a new one on the rows given to
            :meth:`fit`.
        clip: clipping bound of a new standardiser.

    After :meth:`fit`: ``n_`` rows fitted (positions 0..n-1 in the order given), ``n_members_`` of them usable as
    neighbours (finite end time and outcome, non-degenerate vector), ``n_degenerate_``, ``failed_`` (n,) and
    ``failure_class_`` (n,) or None.

    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        overfetch: int = OVERFETCH,
        leaf_size: int = 30,
        standardiser: Standardiser | None = None,
        clip: float | None = CLIP_SD,
    ) -> None:
        if k < 1 or overfetch < 1:
            raise ValueError(f"k and overfetch must be >= 1, got k={k}, overfetch={overfetch}")
        self.k = int(k)
        self.overfetch = int(overfetch)
        self.leaf_size = int(leaf_size)
        self.standardiser = standardiser
        self._refit_standardiser = standardiser is None  # a given one is kept; our own is refitted by every fit
        self.clip = clip
        self._tree: KDTree | None = None
        self._block_trees: dict[tuple[int, int], KDTree] = {}

    # ----------------------------------------------------------------------------------------------- fitting
    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        *,
        end_time: np.ndarray,
        submit_time: np.ndarray | None = None,
        failed: np.ndarray | None = None,
        failure_class: Sequence[str] | np.ndarray | None = None,
    ) -> SimilarityIndex:
        """Index the finished jobs ``X`` (n, d).

        Args:
            X: features of finished jobs (training rows; the standardiser is fitted on them unless one was given).
            end_time: (n,) end times, Unix s; NaN = outcome unknown -> never a neighbour.
            submit_time: (n,) submit times, Unix s; needed by :meth:`neighbours_of_indexed` / :meth:`graph`
                and makes the effective end ``max(end, submit)``.
            failed: (n,) outcomes 0/1 (NaN = unknown -> never a neighbour); needed for outcome features.
            failure_class: (n,) class names (``FAILURE_CLASSES``), for the ``share_<class>`` features.

        Raises:
            ValueError: shapes disagree, or ``X`` has no rows.

        """
        if self._refit_standardiser or self.standardiser is None:
            self.standardiser = Standardiser(self.clip).fit(X)
        Z = self.standardiser.transform(X)
        n = len(Z)
        if n == 0:
            raise ValueError("cannot index zero jobs")
        U, ok = _unit(Z)
        end = _times(end_time, n, "end_time")
        self.submit_ = _times(submit_time, n, "submit_time") if submit_time is not None else None
        if self.submit_ is not None:
            end = np.where(np.isnan(end), np.nan, np.fmax(end, self.submit_))
        self.failed_ = _times(failed, n, "failed") if failed is not None else None
        if failure_class is not None:
            fc = np.asarray(failure_class, dtype=object).ravel()
            if fc.shape != (n,):
                raise ValueError(f"failure_class must have shape ({n},), got {fc.shape}")
            self.failure_class_ = fc
        else:
            self.failure_class_ = None
        member = ok & ~np.isnan(end)
        if self.failed_ is not None:
            member &= ~np.isnan(self.failed_)
        rows = np.flatnonzero(member)
        order = rows[np.argsort(end[rows], kind="stable")]
        self.n_ = n
        self.n_degenerate_ = int((~ok).sum())
        self.n_members_ = len(order)
        self.end_ = end
        self._unit_rows = U
        self._ok_rows = ok
        self._sorted_rows = order  # end-sorted position -> fitted row
        self._sorted_ends = end[order]
        self._sorted_U = np.ascontiguousarray(U[order])
        self._tree = KDTree(self._sorted_U, leaf_size=self.leaf_size) if len(order) else None
        self._block_trees = {}
        return self

    def __getstate__(self) -> dict[str, Any]:
        # The trees and the end-sorted copy of the vectors are rebuilt on unpickling (deterministic, ~0.1 s per 100k
        # rows): that keeps a saved model to about one copy of the unit vectors.
        state = self.__dict__.copy()
        state.pop("_tree", None)
        state.pop("_sorted_U", None)
        state["_block_trees"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tree = None
        if hasattr(self, "_sorted_rows"):
            self._sorted_U = np.ascontiguousarray(self._unit_rows[self._sorted_rows])
            if len(self._sorted_rows):
                self._tree = KDTree(self._sorted_U, leaf_size=self.leaf_size)

    def _check(self) -> None:
        if self.standardiser is None or not hasattr(self, "n_"):
            raise RuntimeError("SimilarityIndex is not fitted")

    def embed(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (n, d) of ``X`` in the index's space and the mask of rows that have a direction."""
        self._check()
        return _unit(self.standardiser.transform(X))

    # ----------------------------------------------------------------------------------------------- queries
    def allowed_prefix(self, submit_time: np.ndarray) -> np.ndarray:
        """Number of indexed members with effective end strictly before each submit (n,) int64; NaN submit -> 0."""
        self._check()
        s = np.asarray(submit_time, dtype=float)
        p = np.searchsorted(self._sorted_ends, np.where(np.isnan(s), -np.inf, s), side="left")
        return p.astype(np.int64)

    def query(
        self, X: pd.DataFrame | np.ndarray, k: int | None = None, *, submit_time: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """K nearest indexed jobs of each row of ``X`` by cosine similarity.

        Args:
            X: (m, d) query jobs (same columns as at fit).
            k: neighbours per row (default ``self.k``).
            submit_time: (m,) submit times, Unix s; when given only jobs that ended strictly before each submit are
                neighbours (NaN submit -> none). When None every indexed job may be a neighbour (right for jobs
                submitted after all indexed jobs ended, e.g. the test period of ``evaluate.time_split``).

        Returns:
            ``(idx, sim)``: (m, k) int64 positions into the fitted rows (-1 = no neighbour) and (m, k) float cosine
            similarities in [-1, 1] (NaN where idx is -1), sorted by decreasing similarity.

        """
        self._check()
        U, ok = self.embed(X)
        prefix = None
        if submit_time is not None:
            prefix = self.allowed_prefix(_times(submit_time, len(U), "submit_time"))
        return self._query_unit(U, ok, prefix, self.k if k is None else int(k))

    def neighbours_of_indexed(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Leakage-free neighbours of the fitted rows themselves (each row only sees jobs ended before its submit).

        Returns ``(idx, sim)`` as :meth:`query`, shape (n, k). Raises ValueError if fit had no ``submit_time``.
        """
        self._check()
        if self.submit_ is None:
            raise ValueError("the index was fitted without submit_time; the time rule needs it")
        prefix = self.allowed_prefix(self.submit_)
        return self._query_unit(self._unit_rows, self._ok_rows, prefix, self.k if k is None else int(k))

    def graph(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Leakage-free kNN graph over the fitted rows: ``(edge_index (2, E) int64, weight (E,) float)``.

        Edges point from the neighbour (source, ended before the target's submit) to the job (target); weights are the
        cosine similarities. Row order: by target, then decreasing similarity.
        """
        idx, sim = self.neighbours_of_indexed(k)
        return edges_from_neighbours(idx, sim)

    def _query_unit(
        self, U: np.ndarray, ok: np.ndarray, prefix: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Core search on unit vectors; returns (idx into fitted rows, sim), see :meth:`query`."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        m = len(U)
        out_i = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.nan)
        n = self.n_members_
        if n == 0 or m == 0:
            return out_i, out_d
        if prefix is None:
            prefix = np.full(m, n, dtype=np.int64)
        rows = np.flatnonzero(ok & (prefix > 0))
        if len(rows):
            kk = min(n, k * self.overfetch) if (prefix[rows] < n).any() else min(n, k)
            dist, ind = self._tree.query(U[rows], k=kk)
            valid = ind < prefix[rows, None]
            rank = np.cumsum(valid, axis=1)
            keep = valid & (rank <= k)
            sel = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            ki = np.take_along_axis(ind, sel, 1)
            kd = np.take_along_axis(dist, sel, 1)
            kept = np.take_along_axis(keep, sel, 1)
            w = min(k, kk)
            out_i[rows, :w] = np.where(kept, ki, -1)[:, :w]
            out_d[rows, :w] = np.where(kept, kd, np.nan)[:, :w]
            need = np.minimum(k, prefix[rows])
            done = (keep.sum(axis=1) >= need) | (kk >= n)
            todo = rows[~done]
            if len(todo):
                try:
                    fi, fd = self._dyadic(U[todo], prefix[todo], k)
                finally:
                    self._block_trees = {}  # block trees live for one call: memory stays O(n), not O(n log n)
                out_i[todo] = fi
                out_d[todo] = fd
        # end-sorted positions -> fitted rows. The similarity is recomputed as the dot product of the unit vectors
        # (rather than 1 - d^2/2 from whichever search path found the neighbour), so it is exact and path-independent.
        has = out_i >= 0
        safe = np.where(has, out_i, 0)
        sim = np.empty((m, k))
        for b in range(0, m, _BATCH):
            sim[b : b + _BATCH] = np.einsum("md,mkd->mk", U[b : b + _BATCH], self._sorted_U[safe[b : b + _BATCH]])
        sim = np.where(has, np.clip(sim, -1.0, 1.0), np.nan)
        out_i[has] = self._sorted_rows[out_i[has]]
        return out_i, sim

    def _block_tree(self, level: int, start: int) -> KDTree:
        key = (level, start)
        t = self._block_trees.get(key)
        if t is None:
            t = KDTree(self._sorted_U[start : start + (1 << level)], leaf_size=self.leaf_size)
            self._block_trees[key] = t
        return t

    def _dyadic(self, U: np.ndarray, prefix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest among end-sorted positions ``[0, prefix_i)`` by the logarithmic method (module doc)."""
        m = len(U)
        cand_r: list[np.ndarray] = []
        cand_p: list[np.ndarray] = []
        cand_d: list[np.ndarray] = []
        tail_bits = int(BRUTE_TAIL).bit_length() - 1  # blocks of < 2**tail_bits rows go to the tail
        top = int(prefix.max()).bit_length()
        for level in range(top - 1, tail_bits - 1, -1):
            has = (prefix >> level) & 1 == 1
            if not has.any():
                continue
            r = np.flatnonzero(has)
            starts = (prefix[r] >> (level + 1)) << (level + 1)
            size = 1 << level
            for s in np.unique(starts):
                rr = r[starts == s]
                kq = min(k, size)
                if size > BRUTE_MAX:
                    d, i = self._block_tree(level, int(s)).query(U[rr], k=kq)
                    cand_r.append(np.repeat(rr, kq))
                    cand_p.append((i + s).ravel())
                    cand_d.append(d.ravel())
                else:
                    sims = U[rr] @ self._sorted_U[s : s + size].T
                    part = (
                        np.argpartition(-sims, kq - 1, axis=1)[:, :kq]
                        if kq < size
                        else np.tile(np.arange(size), (len(rr), 1))
                    )
                    sv = np.take_along_axis(sims, part, 1)
                    cand_r.append(np.repeat(rr, kq))
                    cand_p.append((part + s).ravel())
                    cand_d.append(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sv)).ravel())
        # the partial tail [prefix - prefix mod 2**tail_bits, prefix): fewer than BRUTE_TAIL rows per query row
        tail_len = prefix & ((1 << tail_bits) - 1)
        tail_start = prefix - tail_len
        tr = np.flatnonzero(tail_len > 0)
        width = 1 << tail_bits
        for b in range(0, len(tr), _BATCH):
            rr = tr[b : b + _BATCH]
            pos = tail_start[rr, None] + np.arange(width)[None, :]
            inside = pos < prefix[rr, None]
            pos_c = np.where(inside, pos, 0)
            sims = np.einsum("md,mwd->mw", U[rr], self._sorted_U[pos_c])
            cand_r.append(np.repeat(rr, inside.sum(axis=1)))
            cand_p.append(pos[inside])
            cand_d.append(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims[inside])))
        out_i = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.nan)
        if not cand_r:
            return out_i, out_d
        cr = np.concatenate(cand_r)
        cp = np.concatenate(cand_p)
        cd = np.concatenate(cand_d)
        o = np.lexsort((cp, cd, cr))
        cr, cp, cd = cr[o], cp[o], cd[o]
        first = np.searchsorted(cr, np.arange(m), side="left")
        rank = np.arange(len(cr)) - first[cr]
        sel = rank < k
        out_i[cr[sel], rank[sel]] = cp[sel]
        out_d[cr[sel], rank[sel]] = cd[sel]
        return out_i, out_d

    # ----------------------------------------------------------------------------------------------- features
    def neighbour_features(
        self,
        X: pd.DataFrame | np.ndarray | None = None,
        k: int | None = None,
        *,
        submit_time: np.ndarray | None = None,
        classes: Sequence[str] = FAILURE_CLASSES,
    ) -> pd.DataFrame:
        """Outcome mix of each job's k nearest earlier-finished jobs (see :func:`neighbour_outcome_features`).

        ``X=None`` computes them for the fitted rows themselves, leakage-free (:meth:`neighbours_of_indexed`);
        otherwise for the rows of ``X`` (index kept when ``X`` is a DataFrame). Needs ``failed`` at fit.
        """
        self._check()
        if self.failed_ is None:
            raise ValueError("the index was fitted without outcomes (failed); no outcome features")
        if X is None:
            idx, sim = self.neighbours_of_indexed(k)
            index = None
        else:
            idx, sim = self.query(X, k, submit_time=submit_time)
            index = X.index if isinstance(X, pd.DataFrame) else None
        out = neighbour_outcome_features(
            idx, sim, self.failed_, self.failure_class_, classes=classes if self.failure_class_ is not None else ()
        )
        if index is not None:
            out.index = index
        return out


def edges_from_neighbours(idx: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour table -> ``(edge_index (2, E) int64, weight (E,))``, edges neighbour (row 0) -> job (row 1).

    ``idx``/``sim`` are (n, k) as returned by :meth:`SimilarityIndex.query`; ``-1`` entries are skipped.
    """
    idx = np.asarray(idx)
    tgt, col = np.nonzero(idx >= 0)
    src = idx[tgt, col]
    return np.vstack([src, tgt]).astype(np.int64), np.asarray(sim)[tgt, col].astype(float)


def knn_graph(
    X: pd.DataFrame | np.ndarray,
    *,
    submit_time: np.ndarray,
    end_time: np.ndarray,
    k: int = DEFAULT_K,
    overfetch: int = OVERFETCH,
    standardiser: Standardiser | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leakage-free kNN cosine graph over the jobs ``X`` (n, d).

    Args:
        X: job features (the standardiser is fitted on these rows unless one is given).
        submit_time: (n,) submit times, Unix s.
        end_time: (n,) end times, Unix s (NaN = unknown: never a neighbour).
        k: neighbours per job.
        overfetch: over-fetch factor, see :class:`SimilarityIndex`.
        standardiser: a fitted :class:`Standardiser` to reuse.

    Returns:
        ``(edge_index, weight)``: (2, E) int64 row positions of ``X``, source = neighbour that ended strictly before
        the target's submit, target = job; (E,) cosine similarities. Build O(n log n), query about O(n k log n)
        (see the module docstring).

    """
    ix = SimilarityIndex(k=k, overfetch=overfetch, standardiser=standardiser)
    ix.fit(X, end_time=end_time, submit_time=submit_time)
    return ix.graph(k)


def neighbour_outcome_features(
    idx: np.ndarray,
    sim: np.ndarray,
    failed: np.ndarray,
    failure_class: Sequence[str] | np.ndarray | None = None,
    classes: Sequence[str] = FAILURE_CLASSES,
) -> pd.DataFrame:
    """Outcome mix of each row's neighbours.

    Args:
        idx: (m, k) neighbour positions (-1 = none).
        sim: (m, k) cosine similarities.
        failed: (n,) outcomes 0/1 of the indexed jobs.
        failure_class: (n,) their class names (optional).
        classes: the classes to report as ``share_<class>`` (only when ``failure_class`` is given).

    Returns:
        DataFrame (m rows): ``n_neighbours`` (count), ``mean_similarity`` (mean cosine), ``fail_share``
        (similarity-weighted failure share ``sum w f / sum w`` with ``w = max(sim, 0)``; equal weights when every
        similarity is <= 0), and ``share_<class>`` (plain fraction of the neighbours in that class). Rows without
        neighbours get ``n_neighbours = 0`` and NaN elsewhere (absent, not 0).

    """
    idx = np.asarray(idx)
    has = idx >= 0
    safe = np.where(has, idx, 0)
    cnt = has.sum(axis=1).astype(float)
    f = np.where(has, np.asarray(failed, dtype=float)[safe], 0.0)
    s = np.where(has, np.asarray(sim, dtype=float), 0.0)
    w = np.maximum(s, 0.0)
    wsum = w.sum(axis=1)
    w = np.where((wsum > 0)[:, None], w, has.astype(float))
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "n_neighbours": cnt,
            "mean_similarity": np.where(cnt > 0, s.sum(axis=1) / np.maximum(cnt, 1), np.nan),
            "fail_share": np.where(wsum > 0, (w * f).sum(axis=1) / np.where(wsum > 0, wsum, 1), np.nan),
        }
    if failure_class is not None:
        fc = np.asarray(failure_class, dtype=object)[safe]
        for c in classes:
            hit = (has & (fc == c)).sum(axis=1)
            out[f"share_{c}"] = np.where(cnt > 0, hit / np.maximum(cnt, 1), np.nan)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------- network metrics
def _codes(labels: Any, edge_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Factorised labels (-1 = missing) and the edges whose both ends have a label."""
    codes, uniq = pd.factorize(pd.Series(np.asarray(labels, dtype=object)), use_na_sentinel=True)
    ei = np.asarray(edge_index, dtype=np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {ei.shape}")
    if ei.size and (ei.min() < 0 or ei.max() >= len(codes)):
        raise ValueError("edge_index refers to nodes outside labels")
    keep = (codes[ei[0]] >= 0) & (codes[ei[1]] >= 0)
    return codes, keep, len(uniq)


def assortativity(edge_index: np.ndarray, labels: Any, weight: np.ndarray | None = None) -> float:
    """Newman's (2003) categorical assortativity coefficient of directed edges (source class -> target class).

    Args:
        edge_index: (2, E) node positions.
        labels: (n,) categories (None/NaN = unknown, its edges are skipped).
        weight: optional (E,) non-negative edge weights (default: every edge counts 1, as in networkx).

    Returns:
        r in [-1, 1]; 1 = every edge joins equal classes; about 0 for random labels; NaN when there are no edges
        or only one class occurs (``1 - sum a_i b_i = 0``).

    """
    codes, keep, c = _codes(labels, edge_index)
    ei = np.asarray(edge_index, dtype=np.int64)[:, keep]
    if ei.shape[1] == 0 or c < 1:
        return float("nan")
    w = np.ones(ei.shape[1]) if weight is None else np.asarray(weight, dtype=float)[keep]
    e = np.bincount(codes[ei[0]] * c + codes[ei[1]], weights=w, minlength=c * c).reshape(c, c)
    e = e / e.sum()
    ab = float(e.sum(axis=1) @ e.sum(axis=0))
    if 1.0 - ab <= 1e-15:
        return float("nan")
    return float((np.trace(e) - ab) / (1.0 - ab))


def purity(edge_index: np.ndarray, labels: Any, weight: np.ndarray | None = None) -> float:
    """Neighbourhood purity: per target node, the (weighted) share of its in-neighbours with its own class; mean.

    Only nodes with at least one labelled in-neighbour count. NaN when there is none. Shapes as :func:`assortativity`.
    """
    codes, keep, _ = _codes(labels, edge_index)
    ei = np.asarray(edge_index, dtype=np.int64)[:, keep]
    if ei.shape[1] == 0:
        return float("nan")
    w = np.ones(ei.shape[1]) if weight is None else np.asarray(weight, dtype=float)[keep]
    n = len(codes)
    same = (codes[ei[0]] == codes[ei[1]]).astype(float)
    tot = np.bincount(ei[1], weights=w, minlength=n)
    hit = np.bincount(ei[1], weights=w * same, minlength=n)
    has = tot > 0
    return float((hit[has] / tot[has]).mean()) if has.any() else float("nan")


def network_metrics(
    edge_index: np.ndarray, labels: Any, *, n_perm: int = 5, seed: int = 0, weight: np.ndarray | None = None
) -> dict[str, float]:
    """Assortativity and purity of ``labels`` on the graph, next to a label-permutation null.

    The null shuffles the labels across the nodes that have one (same graph, same class sizes) ``n_perm`` times.

    Returns:
        dict with ``assortativity``, ``purity``, ``assortativity_null``, ``assortativity_null_sd``, ``purity_null``,
        ``purity_null_sd``, ``n_edges``, ``n_nodes_with_neighbours``.

    """
    lab = np.asarray(labels, dtype=object)
    ei = np.asarray(edge_index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    known = np.flatnonzero(~pd.isna(pd.Series(lab)).to_numpy())
    ra, rp = [], []
    for _ in range(n_perm):
        perm = lab.copy()
        perm[known] = lab[rng.permutation(known)]
        ra.append(assortativity(ei, perm, weight))
        rp.append(purity(ei, perm, weight))
    return {
        "assortativity": assortativity(ei, lab, weight),
        "purity": purity(ei, lab, weight),
        "assortativity_null": float(np.mean(ra)) if ra else float("nan"),
        "assortativity_null_sd": float(np.std(ra)) if ra else float("nan"),
        "purity_null": float(np.mean(rp)) if rp else float("nan"),
        "purity_null_sd": float(np.std(rp)) if rp else float("nan"),
        "n_edges": int(ei.shape[1]),
        "n_nodes_with_neighbours": int(len(np.unique(ei[1]))) if ei.size else 0,
    }


# --------------------------------------------------------------------------------------------- calibration + model
class ScoreCalibrator:
    """Monotone map raw score -> P(fail), fitted on a later time slice (rule of ``models.CalibratedGBM``).

    Isotonic regression (Zadrozny & Elkan 2002) with at least ``MIN_ISOTONIC`` calibration jobs, Platt scaling
    (logistic regression on the raw score, Platt 1999) below that, identity when the slice is empty or one-class.
    ``method`` records which was used.
    """

    def __init__(self) -> None:
        self.method = "none"
        self._map: Any = None

    def fit(self, raw: np.ndarray, y: np.ndarray | None) -> ScoreCalibrator:
        """Fit on raw scores (n,) and labels (n,) 0/1; NaN raw scores are dropped."""
        if y is None:
            return self
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = ~np.isnan(raw) & ~np.isnan(y)
        raw, y = raw[ok], y[ok].astype(int)
        if len(y) == 0 or y.min() == y.max():
            return self
        if len(y) >= MIN_ISOTONIC:
            self._map = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            self.method = "isotonic"
        else:
            self._map = LogisticRegression().fit(raw.reshape(-1, 1), y)
            self.method = "sigmoid"
        return self

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n,) in [0, 1]."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            return self._map.predict(raw)
        if self.method == "sigmoid":
            return self._map.predict_proba(raw.reshape(-1, 1))[:, 1]
        return np.clip(raw, 0.0, 1.0)


class KnnRisk:
    """RiskModel: smoothed, similarity-weighted failure share of a job's k nearest earlier-finished jobs, calibrated.

    Raw score: ``(sum_j w_j f_j + m * prior) / (sum_j w_j + m)`` over the k neighbours (``w = max(cos, 0)``,
    m-estimate smoothing, Cestnik 1990, towards ``prior`` = the training failure rate; a job without neighbours gets
    the prior). Then :class:`ScoreCalibrator` on ``X_cal``/``y_cal``.

    Args:
        k: neighbours.
        m: smoothing pseudo-weight.
        overfetch: see :class:`SimilarityIndex`.
        seed: accepted for a uniform model constructor; the model is deterministic and does not use it.

    """

    name = "knn"

    def __init__(self, k: int = 20, m: float = SHARE_SMOOTHING_M, overfetch: int = OVERFETCH, seed: int = 0) -> None:
        if k < 1 or m < 0:
            raise ValueError(f"k must be >= 1 and m >= 0, got k={k}, m={m}")
        self.k = k
        self.seed = seed
        self.m = m
        self.overfetch = overfetch
        self.index: SimilarityIndex | None = None
        self.calibrator = ScoreCalibrator()
        self.prior_ = float("nan")

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray,
        end_time: np.ndarray,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
        failure_class: Sequence[str] | np.ndarray | None = None,
        cal_submit_time: np.ndarray | None = None,
    ) -> KnnRisk:
        """Index the training jobs and calibrate on the calibration slice.

        Args:
            X: training features (n, d).
            y: training outcomes (n,) 0/1.
            submit_time: (n,) submit times, Unix s.
            end_time: (n,) end times, Unix s.
            X_cal: calibration slice (later in time); its rows see every training job as a candidate neighbour
                unless ``cal_submit_time`` is given (``evaluate.time_split`` guarantees the fit slice ended before).
            y_cal: calibration outcomes 0/1.
            failure_class: (n,) class names, for :meth:`neighbour_features`.
            cal_submit_time: submit times of the calibration rows (applies the time rule to them).

        Raises:
            ValueError: shapes disagree, or ``y`` is empty.

        """
        y = np.asarray(y, dtype=float)
        if len(y) == 0:
            raise ValueError("KnnRisk.fit needs at least one training job")
        self.index = SimilarityIndex(k=self.k, overfetch=self.overfetch).fit(
            X, end_time=end_time, submit_time=submit_time, failed=y, failure_class=failure_class
        )
        self.prior_ = float(np.nanmean(y))
        self.calibrator = ScoreCalibrator()
        if X_cal is not None and y_cal is not None and len(y_cal):
            self.calibrator.fit(self.raw_score(X_cal, submit_time=cal_submit_time), y_cal)
        return self

    def raw_score(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated smoothed neighbour failure share (n,) in [0, 1]."""
        if self.index is None:
            raise RuntimeError("KnnRisk is not fitted")
        idx, sim = self.index.query(X, self.k, submit_time=submit_time)
        has = idx >= 0
        f = np.where(has, self.index.failed_[np.where(has, idx, 0)], 0.0)
        w = np.where(has, np.maximum(np.nan_to_num(sim), 0.0), 0.0)
        return ((w * f).sum(axis=1) + self.m * self.prior_) / (w.sum(axis=1) + self.m)

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(fail) (n,). ``submit_time`` applies the ended-before-submit rule to the neighbours."""
        return self.calibrator(self.raw_score(X, submit_time=submit_time))

    def neighbour_features(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> pd.DataFrame:
        """``n_neighbours, mean_similarity, fail_share, share_<class>`` of the k nearest training jobs (index = X's)."""
        if self.index is None:
            raise RuntimeError("KnnRisk is not fitted")
        return self.index.neighbour_features(X, self.k, submit_time=submit_time)
