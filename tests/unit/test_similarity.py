"""Tests of analytics/similarity.py: exact leakage-free kNN, graph direction, network metrics, KnnRisk."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import nomade.analytics.similarity as S
from nomade.analytics.similarity import (
    KnnRisk,
    ScoreCalibrator,
    SimilarityIndex,
    Standardiser,
    assortativity,
    edges_from_neighbours,
    knn_graph,
    neighbour_outcome_features,
    network_metrics,
    purity,
)


def _jobs(n: int, d: int = 5, seed: int = 0, t0: float = 0.0, span: float = 1000.0, run: float = 50.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    sub = np.sort(rng.uniform(t0, t0 + span, n))
    end = sub + rng.exponential(run, n)
    return X, sub, end


def _clusters(n: int, seed: int, t0: float = 0.0, span: float = 1000.0):
    """Two clusters in feature space; cluster 1 fails 60 %, cluster 0 fails 10 %."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4)) + np.where(c[:, None] == 1, 2.0, -2.0) * np.array([1.0, 1.0, 0.0, 0.0])
    y = (rng.random(n) < np.where(c == 1, 0.6, 0.1)).astype(int)
    sub = np.sort(rng.uniform(t0, t0 + span, n))
    end = sub + rng.exponential(20, n)
    fc = np.where(y == 1, np.where(c == 1, "timeout", "out_of_memory"), "success")
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), y, sub, end, fc, c


def _brute(ix: SimilarityIndex, X, sub, k):
    """Reference: exact top-k cosine among jobs with effective end < submit, by a full similarity matrix."""
    Uq, okq = ix.embed(X)
    sims = Uq @ ix._unit_rows.T
    member = np.zeros(ix.n_, bool)
    member[ix._sorted_rows] = True
    out = []
    for i in range(len(Uq)):
        allowed = np.flatnonzero(member & (ix.end_ < sub[i])) if sub is not None else np.flatnonzero(member)
        if not okq[i]:
            allowed = allowed[:0]
        top = allowed[np.argsort(-sims[i, allowed], kind="stable")][:k]
        out.append((top, sims[i, top]))
    return out


# ------------------------------------------------------------------------------------------ standardiser
def test_standardiser_imputes_training_median_scales_and_clips() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 100.0], "b": [np.nan] * 5, "c": [3.0] * 5})
    st = Standardiser(clip=1.5).fit(X)
    assert st.median_.tolist() == [3.0, 0.0, 3.0]  # median of a ignores the NaN; all-NaN column -> 0
    Z = st.transform(pd.DataFrame({"c": [3.0], "a": [np.nan], "b": [1.25]}))  # column order follows the fit
    a = np.array([1, 2, 3, 4, 100.0])
    assert Z[0, 0] == pytest.approx((3.0 - a.mean()) / a.std())
    assert Z[0, 1] == pytest.approx(1.25)  # all-NaN in training: mean 0, scale 1
    assert st.transform(np.array([[3.0, 7.0, 3.0]]))[0, 1] == 1.5  # clipped at +-clip
    assert Z[0, 2] == 0.0  # zero variance -> 0
    assert st.transform(X)[4, 0] == 1.5  # clipped
    assert st.transform(np.array([[np.inf, 0.0, 3.0]]))[0, 0] == pytest.approx(Z[0, 0])  # inf -> NaN -> median
    with pytest.raises(ValueError, match="'b'"):
        st.transform(X[["a", "c"]])
    with pytest.raises(RuntimeError):
        Standardiser().transform(X)


# ------------------------------------------------------------------------------------------ exact search
@pytest.mark.parametrize("brute_max,overfetch", [(1024, 4), (16, 1), (16, 8)])
def test_leakage_free_neighbours_equal_brute_force(monkeypatch, brute_max, overfetch) -> None:
    # small BRUTE_MAX forces the KD-tree blocks of the dyadic fallback; overfetch=1 sends many rows to the fallback
    monkeypatch.setattr(S, "BRUTE_MAX", brute_max)
    X, sub, end = _jobs(700, d=6, seed=1)
    k = 7
    ix = SimilarityIndex(k=k, overfetch=overfetch).fit(X, end_time=end, submit_time=sub)
    idx, sim = ix.neighbours_of_indexed()
    assert idx.shape == (700, k) and idx.dtype == np.int64
    for i, (top, ref_sim) in enumerate(_brute(ix, X, sub, k)):
        got = idx[i][idx[i] >= 0]
        assert set(got) == set(top), i
        np.testing.assert_allclose(sim[i][: len(got)], ref_sim, atol=1e-9)
        assert np.all(np.isnan(sim[i][len(got) :]))
    # early jobs have fewer earlier-finished jobs than k: exactly that many neighbours
    n_allowed = np.array([(end < s).sum() for s in sub])
    np.testing.assert_array_equal((idx >= 0).sum(axis=1), np.minimum(k, n_allowed))
    assert (idx[0] == -1).all()


def test_query_of_new_jobs_with_and_without_time_rule() -> None:
    X, sub, end = _jobs(500, seed=2)
    ix = SimilarityIndex(k=5).fit(X, end_time=end, submit_time=sub)
    Q, qs, _ = _jobs(60, seed=3, t0=0.0, span=1500.0)
    for times in (None, qs):
        idx, sim = ix.query(Q, submit_time=times)
        for i, (top, ref_sim) in enumerate(_brute(ix, Q, times, 5)):
            assert set(idx[i][idx[i] >= 0]) == set(top)
            np.testing.assert_allclose(sim[i][: len(top)], ref_sim, atol=1e-9)
    idx, _ = ix.query(Q, submit_time=qs)
    ok = idx >= 0
    assert np.all(ix.end_[idx[ok]] < np.broadcast_to(qs[:, None], idx.shape)[ok])
    # cosine similarity of the standardised vectors, explicitly
    idx, sim = ix.query(Q[:1], k=1)
    a = ix.standardiser.transform(Q[:1])[0]
    b = ix.standardiser.transform(X)[idx[0, 0]]
    assert sim[0, 0] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_graph_direction_time_rule_and_function() -> None:
    X, sub, end = _jobs(400, seed=4)
    ix = SimilarityIndex(k=6).fit(X, end_time=end, submit_time=sub)
    ei, w = ix.graph()
    assert ei.dtype == np.int64 and ei.shape[0] == 2 and w.shape == (ei.shape[1],)
    src, tgt = ei
    assert np.all(end[src] < sub[tgt])  # source = neighbour that ended before the target's submit
    assert np.all(src != tgt)
    assert np.all(np.bincount(tgt, minlength=400) <= 6)
    assert np.all((w <= 1.0) & (w >= -1.0))
    ei2, w2 = knn_graph(X, submit_time=sub, end_time=end, k=6)
    np.testing.assert_array_equal(ei, ei2)
    np.testing.assert_allclose(w, w2)
    idx, sim = ix.neighbours_of_indexed()
    e3, w3 = edges_from_neighbours(idx, sim)
    np.testing.assert_array_equal(e3, ei)


def test_index_pickles_and_answers_the_same() -> None:
    X, sub, end = _jobs(300, seed=16)
    ix = SimilarityIndex(k=5, overfetch=1).fit(X, end_time=end, submit_time=sub, failed=(X[:, 0] > 0).astype(float))
    Q, qs, _ = _jobs(40, seed=17, span=1500.0)
    ix2 = pickle.loads(pickle.dumps(ix))
    for a, b in zip(ix.query(Q, submit_time=qs), ix2.query(Q, submit_time=qs), strict=True):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(ix.neighbour_features(), ix2.neighbour_features())
    assert ix._block_trees == {} and "_tree" not in ix.__getstate__()
    ix.fit(X * 10 + 3, end_time=end, submit_time=sub)  # a refit learns a new scaling (affine change: same neighbours)
    assert ix.standardiser.median_ == pytest.approx(np.median(X * 10 + 3, axis=0))
    np.testing.assert_array_equal(ix.neighbours_of_indexed()[0], ix2.neighbours_of_indexed()[0])


def test_corrupt_end_before_submit_is_never_own_neighbour() -> None:
    X, sub, end = _jobs(50, seed=5)
    end[10] = sub[10] - 100.0  # corrupt row: effective end = max(end, submit) = submit
    ix = SimilarityIndex(k=5).fit(X, end_time=end, submit_time=sub)
    idx, _ = ix.neighbours_of_indexed()
    assert 10 not in idx[10]
    assert ix.end_[10] == sub[10]


def test_rows_without_direction_or_outcome_are_never_neighbours() -> None:
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]] * 4)  # mean (0, 0): row 4 is zero
    sub = np.arange(20.0)
    end = sub + 0.5
    failed = np.array([0, 1] * 10, dtype=float)
    failed[2] = np.nan
    ix = SimilarityIndex(k=3).fit(X, end_time=end, submit_time=sub, failed=failed)
    assert ix.n_degenerate_ == 4 and ix.n_members_ == 15
    idx, _ = ix.neighbours_of_indexed()
    assert not np.isin(idx, [4, 9, 14, 19, 2]).any()
    assert (idx[[4, 9, 14, 19]] == -1).all()  # no direction, no neighbours
    nf = ix.neighbour_features()
    assert nf.loc[4, "n_neighbours"] == 0 and np.isnan(nf.loc[4, "fail_share"])


# ------------------------------------------------------------------------------------------ leakage tests
def test_perturbing_later_outcomes_changes_nothing_for_earlier_jobs() -> None:
    Xd, y, sub, end, fc, _ = _clusters(600, seed=6)
    T = sub[300]
    later = end >= T
    y2 = np.where(later, 1 - y, y)
    fc2 = np.where(later, "node_fail", fc)
    a = SimilarityIndex(k=8).fit(Xd, end_time=end, submit_time=sub, failed=y, failure_class=fc)
    b = SimilarityIndex(k=8).fit(Xd, end_time=end, submit_time=sub, failed=y2, failure_class=fc2)
    fa, fb = a.neighbour_features(), b.neighbour_features()
    early = sub <= T
    pd.testing.assert_frame_equal(fa[early], fb[early])
    assert not fa[~early].equals(fb[~early])  # the perturbation is visible to jobs submitted later
    assert fb["share_node_fail"][early].fillna(0).eq(0).all() and (fb["share_node_fail"][~early] > 0).any()


def test_perturbing_later_features_changes_nothing_for_earlier_jobs() -> None:
    X, sub, end = _jobs(600, seed=7)
    T = sub[300]
    later = end >= T
    st = Standardiser().fit(X[sub < T])  # scaling fitted on the early period only
    X2 = X.copy()
    X2[later] = np.random.default_rng(99).normal(size=(later.sum(), X.shape[1])) * 3
    ia, sa = SimilarityIndex(k=8, standardiser=st).fit(X, end_time=end, submit_time=sub).neighbours_of_indexed()
    ib, sb = SimilarityIndex(k=8, standardiser=st).fit(X2, end_time=end, submit_time=sub).neighbours_of_indexed()
    early = (sub <= T) & ~later  # submitted by T and not perturbed themselves
    assert early.sum() > 250
    np.testing.assert_array_equal(ia[early], ib[early])
    np.testing.assert_array_equal(sa[early], sb[early])
    assert not np.array_equal(ia[~early], ib[~early])


# ------------------------------------------------------------------------------------------ network metrics
def test_assortativity_perfect_disassortative_and_random() -> None:
    # two directed 5-cliques, labels = clique: every edge joins equal classes
    edges = [(u, v) for g in (range(5), range(5, 10)) for u in g for v in g if u != v]
    ei = np.array(edges).T
    lab = np.array(["ok"] * 5 + ["fail"] * 5, dtype=object)
    assert assortativity(ei, lab) == pytest.approx(1.0)
    assert purity(ei, lab) == pytest.approx(1.0)
    # complete bipartite, classes = sides: r = -1
    bip = np.array(
        [(u, v) for u in range(5) for v in range(5, 10)] + [(v, u) for u in range(5) for v in range(5, 10)]
    ).T
    assert assortativity(bip, lab) == pytest.approx(-1.0)
    assert purity(bip, lab) == 0.0
    # random labels on a random graph: about 0
    rng = np.random.default_rng(8)
    big = rng.integers(0, 5000, size=(2, 50000))
    r = assortativity(big, rng.integers(0, 3, 5000))
    assert abs(r) < 0.02
    assert np.isnan(assortativity(ei, np.zeros(10)))  # one class: undefined
    assert np.isnan(assortativity(np.zeros((2, 0), dtype=np.int64), lab))


def test_assortativity_equals_networkx_on_a_digraph() -> None:
    rng = np.random.default_rng(9)
    n = 60
    ei = rng.integers(0, n, size=(2, 400))
    ei = ei[:, ei[0] != ei[1]]
    ei = np.unique(ei, axis=1)  # a DiGraph holds each edge once
    lab = rng.choice(["success", "timeout", "failed"], n, p=[0.6, 0.25, 0.15])
    G = nx.DiGraph()
    G.add_nodes_from((i, {"c": lab[i]}) for i in range(n))
    G.add_edges_from(ei.T.tolist())
    assert assortativity(ei, lab) == pytest.approx(nx.attribute_assortativity_coefficient(G, "c"), abs=1e-12)


def test_purity_by_hand_and_unknown_labels() -> None:
    # node 2 has in-neighbours 0 (same) and 1 (other): 0.5; node 3 has in-neighbour 2 (same): 1.0
    ei = np.array([[0, 1, 2, 4], [2, 2, 3, 3]])
    lab = np.array(["a", "b", "a", "a", None], dtype=object)
    assert purity(ei, lab) == pytest.approx(0.75)  # the edge from the unlabelled node 4 is skipped
    assert purity(ei, lab, weight=np.array([3.0, 1.0, 1.0, 1.0])) == pytest.approx((0.75 + 1.0) / 2)
    with pytest.raises(ValueError, match="outside"):
        purity(np.array([[0], [9]]), lab)


def test_network_metrics_signal_vs_permutation_null() -> None:
    Xd, y, sub, end, fc, c = _clusters(800, seed=10)
    ei, w = knn_graph(Xd, submit_time=sub, end_time=end, k=8)
    m = network_metrics(ei, c, n_perm=5, seed=0)
    assert m["assortativity"] > 0.9 and abs(m["assortativity_null"]) < 0.05
    assert m["purity"] > 0.95 and m["purity_null"] == pytest.approx(0.5, abs=0.05)
    mf = network_metrics(ei, y, n_perm=5)
    assert mf["assortativity"] > mf["assortativity_null"] + 5 * max(mf["assortativity_null_sd"], 0.01)
    assert m["n_edges"] == ei.shape[1]


# ------------------------------------------------------------------------------------------ outcome features
def test_neighbour_outcome_features_by_hand() -> None:
    idx = np.array([[0, 1, 2], [3, -1, -1], [-1, -1, -1], [0, 1, -1]])
    sim = np.array([[0.9, 0.5, -0.2], [0.4, np.nan, np.nan], [np.nan] * 3, [-0.1, -0.3, np.nan]])
    failed = np.array([1.0, 0.0, 1.0, 1.0])
    fc = np.array(["timeout", "success", "failed", "timeout"], dtype=object)
    f = neighbour_outcome_features(idx, sim, failed, fc, classes=("success", "timeout", "failed"))
    assert f["n_neighbours"].tolist() == [3, 1, 0, 2]
    assert f.loc[0, "fail_share"] == pytest.approx(0.9 / 1.4)  # weight max(sim, 0): the -0.2 neighbour weighs 0
    assert f.loc[0, "mean_similarity"] == pytest.approx(1.2 / 3)
    assert f.loc[0, "share_timeout"] == pytest.approx(1 / 3) and f.loc[0, "share_failed"] == pytest.approx(1 / 3)
    assert f.loc[1, "fail_share"] == 1.0 and f.loc[1, "share_timeout"] == 1.0
    assert np.isnan(f.loc[2, "fail_share"]) and np.isnan(f.loc[2, "share_success"])
    assert f.loc[3, "fail_share"] == pytest.approx(0.5)  # all similarities <= 0: equal weights


# ------------------------------------------------------------------------------------------ calibrator + KnnRisk
def test_score_calibrator_rule() -> None:
    rng = np.random.default_rng(11)
    raw = rng.random(500)
    y = (rng.random(500) < raw).astype(int)
    assert ScoreCalibrator().fit(raw, y).method == "isotonic"
    small = ScoreCalibrator().fit(raw[:100], y[:100])
    assert small.method == "sigmoid"
    p = small(np.array([0.1, 0.9]))
    assert p[0] < p[1]
    one = ScoreCalibrator().fit(raw, np.zeros(500))
    assert one.method == "none" and one(np.array([1.5]))[0] == 1.0


def test_knn_risk_separates_two_clusters_and_is_calibrated() -> None:
    X, y, s, e, fc, _ = _clusters(800, seed=12)
    Xc, yc, sc, ec, _, _ = _clusters(400, seed=13, t0=2000.0)
    Xt, yt, st, et, _, ct = _clusters(1000, seed=14, t0=4000.0)
    m = KnnRisk(k=15).fit(X, y, submit_time=s, end_time=e, X_cal=Xc, y_cal=yc, failure_class=fc)
    p = m.predict_proba(Xt, submit_time=st)
    assert m.calibrator.method == "isotonic"
    assert roc_auc_score(yt, p) > 0.7
    assert p[ct == 1].mean() == pytest.approx(0.6, abs=0.1) and p[ct == 0].mean() == pytest.approx(0.1, abs=0.07)
    raw = m.raw_score(Xt)
    assert raw[ct == 1].mean() > 0.45 and raw[ct == 0].mean() < 0.2
    nf = m.neighbour_features(Xt.set_index(Xt.index + 100))
    assert list(nf.index) == list(Xt.index + 100)
    assert {"n_neighbours", "mean_similarity", "fail_share", "share_timeout", "share_success"} <= set(nf.columns)
    assert nf["share_timeout"][ct == 1].mean() > 0.4 and nf["share_out_of_memory"][ct == 1].mean() < 0.05
    # a job submitted before any training job ended has no neighbours: the smoothed score is the prior
    early = m.raw_score(Xt.iloc[:3], submit_time=np.full(3, -1.0))
    np.testing.assert_allclose(early, y.mean())


def test_errors_are_clear() -> None:
    X, sub, end = _jobs(30, seed=15)
    with pytest.raises(RuntimeError):
        SimilarityIndex().query(X)
    ix = SimilarityIndex(k=3).fit(pd.DataFrame(X, columns=list("abcde")), end_time=end)
    with pytest.raises(ValueError, match="submit_time"):
        ix.neighbours_of_indexed()
    with pytest.raises(ValueError, match="outcomes"):
        ix.neighbour_features()
    with pytest.raises(ValueError, match="'e'"):
        ix.query(pd.DataFrame(X[:, :4], columns=list("abcd")))
    with pytest.raises(ValueError, match="end_time"):
        SimilarityIndex().fit(X, end_time=end[:5])
    with pytest.raises(ValueError):
        SimilarityIndex(k=0)
