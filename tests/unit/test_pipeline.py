"""Tests of analytics/pipeline.py: the served RiskPipeline on small synthetic job tables."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from nomade.analytics import pipeline as pl
from nomade.analytics.models import PER_CLASSES, expected_calibration_error
from nomade.analytics.pipeline import RiskPipeline, choose_threshold, fit_cal_split

DAY = 86400.0


def _jobs(n: int = 3000, seed: int = 0, t0: float = 0.0) -> pd.DataFrame:
    """Jobs whose failure probability is known: 0.55 when the time limit is >= 8 h, else 0.05 (users carry none).

    Failures are timeouts when long, out-of-memory otherwise (so per-class shares differ by the same feature).
    """
    rng = np.random.default_rng(seed)
    sub = t0 + np.sort(rng.uniform(0, 40 * DAY, n))
    tl = rng.choice([1, 2, 4, 8, 16, 24], n).astype(float) * 3600
    p = np.where(tl >= 8 * 3600, 0.55, 0.05)
    failed = rng.random(n) < p
    el = np.minimum(rng.exponential(1800, n), tl)
    fc = np.where(failed, np.where(tl >= 8 * 3600, "timeout", "out_of_memory"), "success")
    return pd.DataFrame(
        {
            "job_id": [str(i) for i in range(n)],
            "user": rng.choice([f"u{i}" for i in range(15)], n),
            "account": rng.choice(["a", "b"], n),
            "partition": rng.choice(["cpu", "gpu", "big"], n),
            "job_name": rng.choice(["x", "y", "z"], n),
            "submit_time": sub,
            "start_time": sub + 10,
            "end_time": sub + 10 + el,
            "req_cpus": rng.choice([1, 4, 16], n).astype(float),
            "req_nodes": 1.0,
            "req_gpus": 0.0,
            "req_mem_bytes": rng.choice([1, 4, 16], n).astype(float) * 2**30,
            "timelimit_s": tl,
            "elapsed_s": el,
            "cpu_s": el,
            "max_rss_bytes": 2**29,
            "state": np.where(failed, "FAILED", "COMPLETED"),
            "failure_class": fc,
            "failed": failed,
            "dataset": "synthetic",
            "p_true": p,
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[RiskPipeline, pd.DataFrame]:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    df = _jobs(3000, 0)
    return RiskPipeline(models=("gbm", "autoencoder"), cost_ratio=5.0).fit(df.iloc[:2000]), df


def test_fit_predict_shapes_and_ranges(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:]
    out = p.predict(test, df)
    assert list(out.index) == list(test.index)
    assert list(out.columns) == ["risk", *[f"p_{c}" for c in PER_CLASSES], "ood_score", "ood"]
    assert out["risk"].between(0, 1).all()
    assert out["ood_score"].between(0, 1).all() and out["ood"].dtype == bool
    # per-class probabilities are consistent with risk and NaN for classes never seen in training
    assert (out["p_timeout"] + out["p_out_of_memory"] <= out["risk"] + 1e-9).all()
    assert out[["p_failed", "p_node_fail", "p_cancelled"]].isna().all().all()
    long = test["timelimit_s"] >= 8 * 3600
    assert out.loc[long, "p_timeout"].mean() > 3 * out.loc[~long, "p_timeout"].mean()
    md = p.metadata
    assert md["n_fit"] + md["n_cal"] + md["dropped_gap"] == 2000
    assert md["features"] == p.feature_names and "log_timelimit_s" in md["features"]
    assert md["models"]["gbm"]["status"] == "ok" and md["selection"]["kept"][:2] == ["baseline", "gbm"]
    assert md["models"]["gbm"]["holdout_cal"]["auc_roc"] > 0.7
    assert "autoencoder" in md["selection"] and isinstance(md["selection"]["autoencoder"]["kept"], bool)
    assert {"baseline", "gbm", "ensemble"} <= set(md["holdout_auc"]) and 0 < md["holdout_brier"] < 0.25


def test_predict_models_matches_predict(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:2400]
    pm = p.predict_models(test, df)
    np.testing.assert_allclose(pm["risk"], p.predict(test, df)["risk"], rtol=1e-9, atol=1e-12)
    assert {"baseline", "gbm", "autoencoder", "autoencoder_score", "risk", "ood"} <= set(pm.columns)


def test_calibration_roughly_right(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:]
    risk = p.predict(test, df)["risk"].to_numpy()
    # against the known probabilities (0.05 / 0.55), group means are close
    long = (test["timelimit_s"] >= 8 * 3600).to_numpy()
    assert risk[long].mean() == pytest.approx(0.55, abs=0.08)
    assert risk[~long].mean() == pytest.approx(0.05, abs=0.06)
    assert expected_calibration_error(test["failed"].to_numpy(int), risk) < 0.08


def test_predict_pending_jobs_and_history_rule(fitted) -> None:
    p, df = fitted
    pending = df.iloc[2500:2510].copy()
    pending[["start_time", "end_time", "elapsed_s", "cpu_s", "max_rss_bytes", "failed", "failure_class"]] = np.nan
    out = p.predict(pending, df.iloc[:2500])
    assert len(out) == 10 and out["risk"].notna().all()
    X = p.features(pending, df.iloc[:2500])
    h = df.iloc[:2500]
    u = pending["user"].iloc[0]
    expected = ((h["user"] == u) & (h["end_time"] < pending["submit_time"].iloc[0])).sum()
    assert X["user_past_jobs"].iloc[0] == expected


def test_threshold_from_cost_ratio_is_monotone() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 1, 20000)
    y = (rng.random(20000) < s).astype(int)  # calibrated scores
    ratios = [0.25, 0.5, 1, 2, 4, 9, 19]
    th = [choose_threshold(y, s, r)[0] for r in ratios]
    assert all(a >= b for a, b in zip(th, th[1:], strict=False))
    assert th[0] > th[-1]
    for r, t in zip(ratios, th, strict=True):  # close to the Bayes threshold 1/(1+r) for calibrated scores
        assert t == pytest.approx(1 / (1 + r), abs=0.06)
    t, table = choose_threshold(y, s, 4.0)
    row = table[table["threshold"] == t].iloc[0]
    assert row["cost"] == table["cost"].min() and row["cost"] == 4 * row["missed"] + row["false_alarms"]
    assert choose_threshold(np.zeros(5, int), s[:5], 4.0)[0] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        choose_threshold(y, s, 0.0)


def test_pipeline_threshold_follows_cost_ratio() -> None:
    df = _jobs(1500, 3)
    lo = RiskPipeline(models=("gbm",), cost_ratio=1.0).fit(df)
    hi = RiskPipeline(models=("gbm",), cost_ratio=20.0).fit(df)
    assert hi.threshold <= lo.threshold
    assert lo.metadata["threshold"] == lo.threshold and lo.threshold > 0.1  # 0.05-risk jobs are not worth alerts


def test_ood_flags_far_jobs(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:2200]
    normal = p.predict(test, df)
    assert normal["ood"].mean() < 0.05
    weird = test.head(5).copy()
    weird["req_cpus"] = 1e6
    weird["req_mem_bytes"] = 1e16
    weird["timelimit_s"] = 1e8
    out = p.predict(weird, df)
    assert out["ood"].all() and (out["ood_score"] == 1.0).all()


def test_explain_names_the_driving_feature(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:]
    risk = p.predict(test, df)["risk"]
    high = test[(test["timelimit_s"] >= 8 * 3600).to_numpy() & (risk > 0.4).to_numpy()].head(5)
    assert len(high) == 5
    ex = p.explain(high, df, top=3)
    assert len(ex) == 5
    for drivers in ex:
        assert len(drivers) <= 3
        name, contrib = drivers[0]
        assert name == "log_timelimit_s" and contrib > 0.2
        assert abs(drivers[0][1]) >= abs(drivers[-1][1])
    assert p.explain(test.iloc[0:0], df) == []


def test_neighbours_outcome_mix(fitted) -> None:
    p, df = fitted
    jobs = df.iloc[2000:2005]
    nb = p.neighbours(jobs, df.iloc[:2000], k=10)
    assert list(nb.index) == list(jobs.index)
    assert (nb["n_neighbours"] == 10).all()
    shares = nb[[c for c in nb.columns if c.startswith("share_")]]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    # a job submitted before any history job ended has no eligible neighbour: absent, not 0
    early = df.iloc[[0]].copy()
    early["submit_time"] = df["submit_time"].min() - 1
    e = p.neighbours(early, df.iloc[:2000], k=10)
    assert e["n_neighbours"].iloc[0] == 0 and e["share_success"].isna().all()


def test_pickle_round_trip_identical(fitted) -> None:
    p, df = fitted
    test = df.iloc[2000:2300]
    again = pickle.loads(pickle.dumps(p))
    pd.testing.assert_frame_equal(again.predict(test, df), p.predict(test, df))
    assert again.threshold == p.threshold
    assert json.dumps(again.metadata, sort_keys=True) == json.dumps(p.metadata, sort_keys=True)


def test_failing_or_missing_models_are_recorded(monkeypatch) -> None:
    class Boom:
        name = "knn"

        def fit(self, *a, **k):
            raise RuntimeError("no graph")

    def fake(name):
        if name == "knn":
            return Boom
        raise ImportError("no module gnn")

    monkeypatch.setattr(pl, "_load_extra", fake)
    p = RiskPipeline(models=("gbm", "knn", "gnn")).fit(_jobs(800, 4))
    st = p.metadata["models"]
    assert st["knn"]["status"] == "failed" and "no graph" in st["knn"]["reason"]
    assert st["gnn"]["status"] == "unavailable"
    assert p.metadata["selection"]["kept"] == ["baseline", "gbm"]


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="setting"):
        RiskPipeline(setting="later")
    with pytest.raises(ValueError, match="unknown models"):
        RiskPipeline(models=("gbm", "svm"))
    with pytest.raises(ValueError, match="failed"):
        RiskPipeline().fit(_jobs(100).drop(columns="failed"))
    with pytest.raises(RuntimeError):
        RiskPipeline().predict(_jobs(20), _jobs(20))
    one = _jobs(200).assign(failed=False)
    with pytest.raises(ValueError, match="single class"):
        RiskPipeline(models=("gbm",)).fit(one)


def test_fit_cal_split_gap() -> None:
    df = _jobs(500, 5).sort_values("submit_time").reset_index(drop=True)
    df.loc[3, "end_time"] = df["submit_time"].max()
    fit, cal, t_cal, dropped = fit_cal_split(df)
    assert len(cal) == 100 and 3 not in fit and dropped >= 1
    assert df["end_time"].to_numpy()[fit].max() < t_cal == df["submit_time"].iloc[400]
    with pytest.raises(ValueError):
        fit_cal_split(df.head(5))
    # failures only early: the calibration slice grows earlier until it holds 5 of them (never past half the jobs)
    early = df.assign(failed=False)
    early.loc[[50, 100, 150, 200, 250, 300, 320, 330, 340, 350], "failed"] = True
    fit, cal, _, _ = fit_cal_split(early)
    y = early["failed"].to_numpy()
    assert y[cal].sum() == 5 and cal[0] == 300 and y[fit].sum() == 5
    none = df.assign(failed=False)
    none.loc[[10, 20], "failed"] = True
    fit, cal, _, _ = fit_cal_split(none)
    assert len(cal) == 100  # no later position holds a failure: keep the default slice
    few = df.assign(failed=False)
    few.loc[[100, 200, 300, 350], "failed"] = True
    fit, cal, _, _ = fit_cal_split(few)
    assert cal[0] == 300 and few["failed"].to_numpy()[cal].sum() == 2  # 4 failures in all: half are wanted


def test_run_setting_uses_usage_features() -> None:
    df = _jobs(1200, 6)
    p = RiskPipeline(setting="run", models=("gbm",)).fit(df.iloc[:900])
    assert "elapsed_over_timelimit" in p.feature_names
    assert p.predict(df.iloc[900:], df)["risk"].between(0, 1).all()


def test_predict_models_with_neighbour_models_matches_predict() -> None:
    pytest.importorskip("nomade.analytics.similarity")
    df = _jobs(1200, 7)
    p = RiskPipeline(models=("gbm", "knn")).fit(df.iloc[:900])
    assert p.metadata["models"]["knn"]["status"] == "ok"
    test = df.iloc[900:]
    pm = p.predict_models(test, df)
    np.testing.assert_allclose(pm["risk"], p.predict(test, df)["risk"], rtol=1e-9, atol=1e-12)
    X = p.features(test, df)
    knn = p.fitted["knn"].predict_proba(X, submit_time=test["submit_time"].to_numpy())
    np.testing.assert_allclose(pm["knn"], knn)
