"""Tests of analytics/gnn.py: GraphSAGE risk learns a known signal, is leakage-free, inductive and picklable."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from nomade.analytics.gnn import GraphSageRisk


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _clusters(n: int, seed: int, t0: float = 0.0, span: float = 1000.0):
    """Two clusters in feature space; cluster 1 fails 60 %, cluster 0 fails 10 %."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4)) + np.where(c[:, None] == 1, 2.0, -2.0) * np.array([1.0, 1.0, 0.0, 0.0])
    y = (rng.random(n) < np.where(c == 1, 0.6, 0.1)).astype(int)
    sub = np.sort(rng.uniform(t0, t0 + span, n))
    end = sub + rng.exponential(20, n)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), y, sub, end, c


def _fit(label_messages: bool = True, seed: int = 0, **kw) -> tuple[GraphSageRisk, tuple]:
    X, y, s, e, _ = _clusters(500, seed=1)
    Xc, yc, sc, _, _ = _clusters(300, seed=2, t0=2000.0)
    g = GraphSageRisk(k=5, max_epochs=40, seed=seed, label_messages=label_messages, **kw)
    g.fit(X, y, submit_time=s, end_time=e, X_cal=Xc, y_cal=yc, cal_submit_time=sc)
    return g, (X, y, s, e)


def test_gnn_learns_two_clusters_and_calibrates() -> None:
    g, (X, y, s, e) = _fit()
    Xt, yt, st, _, ct = _clusters(600, seed=3, t0=4000.0)
    p = g.predict_proba(Xt, submit_time=st)
    assert p.shape == (600,) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(yt, p) > 0.7
    assert g.calibrator.method == "isotonic"
    assert p[ct == 1].mean() == pytest.approx(0.6, abs=0.12) and p[ct == 0].mean() == pytest.approx(0.1, abs=0.08)
    assert g.n_train_ == 500 and 0 < g.n_edges_ <= 5 * 500


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch() -> None:
    g = GraphSageRisk(k=5, max_epochs=300, eval_every=1, patience=3, seed=0)
    X, y, s, e, _ = _clusters(500, seed=1)
    Xc, yc, sc, _, _ = _clusters(300, seed=2, t0=2000.0)
    g.fit(X, y, submit_time=s, end_time=e, X_cal=Xc, y_cal=yc, cal_submit_time=sc)
    # Stopped long before max_epochs, exactly `patience` epochs after the best calibration AUC...
    assert g.epochs_ < 300
    assert g.epochs_ - g.best_epoch_ == 3
    # ...and the network serving the scores is the one of the best epoch, not of the last one.
    assert roc_auc_score(yc, g.raw_score(Xc, submit_time=sc)) == pytest.approx(g.cal_auc_, abs=1e-12)


def test_features_only_variant_also_learns() -> None:
    g, _ = _fit(label_messages=False)
    Xt, yt, st, _, _ = _clusters(600, seed=3, t0=4000.0)
    assert roc_auc_score(yt, g.predict_proba(Xt, submit_time=st)) > 0.7


def test_pickle_round_trip_and_seed_give_identical_predictions() -> None:
    g, _ = _fit()
    Xt, _, st, _, _ = _clusters(200, seed=4, t0=4000.0)
    p = g.predict_proba(Xt, submit_time=st)
    g2 = pickle.loads(pickle.dumps(g))
    assert g2._net is not g._net
    np.testing.assert_array_equal(g2.predict_proba(Xt, submit_time=st), p)
    g3, _ = _fit()  # same seed, same data -> same model
    np.testing.assert_array_equal(g3.predict_proba(Xt, submit_time=st), p)
    g4, _ = _fit(seed=7)
    assert not np.array_equal(g4.raw_score(Xt), g.raw_score(Xt))
    state = pickle.loads(pickle.dumps(GraphSageRisk()))  # unfitted models pickle too
    with pytest.raises(RuntimeError):
        state.predict_proba(Xt)


def test_a_jobs_outcome_only_reaches_jobs_submitted_after_it_ended() -> None:
    g, (X, y, s, e) = _fit()
    base = g.training_logits()
    eff_end = np.fmax(e, s)
    for i in (50, 250, 400):
        y2 = y.astype(float).copy()
        y2[i] = 1 - y2[i]
        out = g.training_logits(y2)
        changed = ~np.isclose(out, base, rtol=0, atol=1e-7)
        assert not changed[s <= eff_end[i]].any()  # itself and every job submitted before its outcome was known
        assert changed.any()  # the outcome message is used by later jobs


def test_features_only_variant_ignores_outcomes_entirely() -> None:
    g, (X, y, s, e) = _fit(label_messages=False)
    np.testing.assert_array_equal(g.training_logits(1 - y), g.training_logits())


def test_inductive_edges_come_from_jobs_ended_before_submit() -> None:
    g, (X, y, s, e) = _fit()
    Xq, _, _, _, _ = _clusters(50, seed=5)
    qs = np.linspace(s.min(), s.max(), 50)
    x, ysrc, ei, n = g._union(Xq, qs)
    new = ei[:, ei[1] >= n].numpy()
    assert new.shape[1] > 0 and np.all(new[0] < n)  # sources are training jobs, targets the new ones
    assert np.all(g.index.end_[new[0]] < qs[new[1] - n])
    assert not (ei[0] >= n).any()  # new jobs send no messages: jobs scored together do not influence each other
    # order invariance: scoring one job alone or in a batch gives the same value
    p_all = g.predict_proba(Xq, submit_time=qs)
    p_one = g.predict_proba(Xq.iloc[[7]], submit_time=qs[[7]])
    assert p_one[0] == pytest.approx(p_all[7], abs=1e-6)
    # a job submitted before any training job ended has no neighbours, yet still gets a score from its features
    p_early = g.predict_proba(Xq.iloc[:2], submit_time=np.full(2, s.min() - 1))
    assert np.all(np.isfinite(p_early))


def test_without_calibration_slice_scores_are_prior_corrected() -> None:
    X, y, s, e, _ = _clusters(500, seed=1)
    g = GraphSageRisk(k=5, max_epochs=40, seed=0).fit(X, y, submit_time=s, end_time=e)
    assert g.calibrator.method == "none" and g.pos_weight_ == pytest.approx((y == 0).sum() / y.sum())
    Xt, yt, st, _, ct = _clusters(600, seed=3, t0=4000.0)
    p = g.predict_proba(Xt, submit_time=st)
    # class-weighted training alone would centre the scores near 0.5; the odds correction brings back the base rate
    assert p.mean() == pytest.approx(yt.mean(), abs=0.06)
    assert p[ct == 1].mean() > 0.45 and p[ct == 0].mean() < 0.2


def test_max_train_nodes_keeps_most_recent_jobs() -> None:
    g, (X, y, s, e) = _fit(max_train_nodes=200)
    assert g.n_train_ == 200
    assert g.index.submit_.min() == pytest.approx(np.sort(s)[-200])


def test_bad_input_raises() -> None:
    X, y, s, e, _ = _clusters(50, seed=6)
    with pytest.raises(ValueError, match="single class"):
        GraphSageRisk().fit(X, np.zeros(50), submit_time=s, end_time=e)
    with pytest.raises(ValueError, match="rows"):
        GraphSageRisk().fit(X, y[:10], submit_time=s, end_time=e)
    with pytest.raises(ValueError, match="dropout"):
        GraphSageRisk(dropout=1.0)
    with pytest.raises(RuntimeError):
        GraphSageRisk().predict_proba(X)


def test_graph_without_edges_and_unknown_calibration_outcomes() -> None:
    # every job overlaps every other (all submitted at 0, ended at 10): no job ended before another's submit
    X, y, _, _, _ = _clusters(80, seed=8)
    yc = np.where(np.arange(80) % 7 == 0, np.nan, y)
    g = GraphSageRisk(k=3, max_epochs=5).fit(
        X, y, submit_time=np.zeros(80), end_time=np.full(80, 10.0), X_cal=X, y_cal=yc
    )
    assert g.n_edges_ == 0
    p = g.predict_proba(X.iloc[:4], submit_time=np.zeros(4))
    assert p.shape == (4,) and np.all(np.isfinite(p))


def _job_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Shared job-table schema; failures driven by the memory request (a submit-time feature)."""
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.uniform(0, 30 * 86400, n))
    mem = rng.choice([1, 4, 16, 64, 256], n).astype(float) * 2**30
    failed = rng.random(n) < np.where(mem >= 64 * 2**30, 0.6, 0.05)
    el = rng.exponential(1800, n)
    return pd.DataFrame(
        {
            "job_id": [str(i) for i in range(n)],
            "user": rng.choice([f"u{i}" for i in range(10)], n),
            "account": "a",
            "partition": rng.choice(["cpu", "gpu"], n),
            "job_name": "x",
            "submit_time": sub,
            "start_time": sub,
            "end_time": sub + el,
            "req_cpus": rng.integers(1, 32, n).astype(float),
            "req_nodes": 1.0,
            "req_gpus": 0.0,
            "req_mem_bytes": mem,
            "timelimit_s": 86400.0,
            "elapsed_s": el,
            "failed": failed,
            "failure_class": np.where(failed, "out_of_memory", "success"),
            "dataset": "synthetic",
        }
    )


def test_compare_on_trace_reports_every_model_on_the_evaluate_split() -> None:
    from nomade.analytics.evaluate import time_split
    from nomade.analytics.gnn import compare_on_trace

    df = _job_table(1000)
    r = compare_on_trace(df, "submit", k=5, n_boot=50)
    sp = time_split(df.sort_values("submit_time").reset_index(drop=True))
    assert (r["n_fit"], r["n_val"], r["n_test"]) == (len(sp.fit), len(sp.val), len(sp.test))
    assert set(r["models"]) == {"baseline", "gbm", "knn", "gnn", "gnn_features_only"}
    assert r["models"]["baseline"]["auc_roc"] < 0.65  # users carry no signal here
    for m in ("gbm", "knn", "gnn", "gnn_features_only"):
        assert r["models"][m]["auc_roc"] > 0.7, m
        assert r["models"][m]["n"] == len(sp.test)
    net = r["network"]["failed"]
    assert net["assortativity"] > net["assortativity_null"] + 0.1
    assert r["network"]["failure_class"]["n_edges"] == net["n_edges"] > 0
    ci = r["auc_delta_ci"]
    assert set(ci) == {"baseline", "gbm", "knn", "gnn", "gnn_features_only"} and set(ci["gbm"]) == {"vs_baseline"}
    lo, hi = ci["gbm"]["vs_baseline"]
    assert 0 < lo <= hi  # the memory signal: GBM is clearly better than the (signal-free) user history
    assert lo <= r["models"]["gbm"]["auc_roc"] - r["models"]["baseline"]["auc_roc"] <= hi
    with pytest.raises(ValueError, match="setting"):
        compare_on_trace(df, "later")
