"""The risk engine: harvest, retraining policy, drift, scoring of pending/running jobs and its metrics.

Most tests drive :class:`RiskEngine` with a fake harvest (canned job tables), a real SQLite training store and model
registry in ``tmp_path``, and a small fake pipeline whose quality is known (it scores a job with its user's failure
rate in the training data; ``inverted`` scores ``1 - rate``, which is worse on any holdout). One test uses the real
:class:`nomade.analytics.pipeline.RiskPipeline`.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from nomade.analytics.catalog import ANALYTICS_METRICS, SPECS
from nomade.analytics.config import AnalyticsConfig, RiskConfig
from nomade.analytics.jobs_store import JobsStore
from nomade.analytics.model_store import ModelRegistry
from nomade.analytics.promapi import PrometheusUnavailable
from nomade.analytics.risk import (
    ATTEMPT_KEY,
    HARVEST_OVERLAP,
    WATERMARK_KEY,
    RiskEngine,
    accept_candidate,
    baseline_scores,
    bin_shares,
    feature_psi,
    holdout_metrics,
    psi,
    psi_reference,
    submission_weights,
    time_holdout,
)
from nomade.analytics.service import AnalyticsService

T0 = 1_700_000_000.0
DAY = 86400.0
USERS = np.array(["u0", "u1", "u2", "u3", "u4", "u5"])
RATES = np.array([0.05, 0.1, 0.2, 0.4, 0.6, 0.8])


def finished_jobs(n: int, *, t0: float = T0, seed: int = 0, id0: int = 1000, mem: float = 4e9) -> pd.DataFrame:
    """``n`` finished jobs submitted every 60 s from ``t0``, 600 s long; user ``uK`` fails with rate ``RATES[K]``."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, len(USERS), n)
    failed = rng.random(n) < RATES[u]
    sub = t0 + 60.0 * np.arange(n)
    return pd.DataFrame(
        {
            "job_id": [str(id0 + i) for i in range(n)],
            "user": USERS[u],
            "account": "acct",
            "partition": np.where(u % 2 == 0, "cpu", "gpu"),
            "job_name": "sim",
            "submit_time": sub,
            "start_time": sub + 10.0,
            "end_time": sub + 600.0,
            "req_cpus": 4.0,
            "req_nodes": 1.0,
            "req_gpus": 0.0,
            "req_mem_bytes": mem * rng.uniform(0.5, 1.5, n),
            "timelimit_s": 3600.0,
            "elapsed_s": 590.0,
            "cpu_s": 1000.0,
            "max_rss_bytes": 1e9,
            "state": np.where(failed, "FAILED", "COMPLETED"),
            "exit_code": np.where(failed, 1.0, 0.0),
            "failure_class": np.where(failed, "failed", "success"),
            "failed": failed,
            "dataset": "synthetic",
        }
    )


def active_jobs(specs: list[tuple[str, str, str]], now: float) -> pd.DataFrame:
    """Pending/running jobs from ``(job_id, user, state)`` triples, submitted 5 min before ``now``."""
    rows = []
    for job_id, user, state in specs:
        k = int(user[1:])
        rows.append(
            {
                "job_id": job_id,
                "user": user,
                "account": "acct",
                "partition": "cpu" if k % 2 == 0 else "gpu",
                "job_name": "sim",
                "submit_time": now - 300.0,
                "start_time": now - 200.0 if state == "RUNNING" else np.nan,
                "end_time": np.nan,
                "req_cpus": 4.0,
                "req_nodes": 1.0,
                "req_gpus": 0.0,
                "req_mem_bytes": 4e9,
                "timelimit_s": 3600.0,
                "elapsed_s": 200.0 if state == "RUNNING" else np.nan,
                "cpu_s": 300.0 if state == "RUNNING" else np.nan,
                "max_rss_bytes": np.nan,
                "state": state,
                "exit_code": np.nan,
                "failure_class": None,
                "failed": np.nan,
                "dataset": "prometheus",
                "nodelist": "c01" if state == "RUNNING" else None,
            }
        )
    return pd.DataFrame(rows)


class FakePipeline:
    """Scores a job by its user's failure rate in the training data (``inverted``: ``1 - rate``, a worse model)."""

    def __init__(self, setting, models, cost_ratio, seed, inverted=False, gate=None, fail=False):
        self.setting = setting
        self.inverted = inverted
        self.gate = gate
        self.fail = fail
        self.threshold = 0.5
        self.metadata = {}

    def fit(self, history):
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise ValueError("fit slice has a single class")
        self.fit_rows = history[["job_id", "submit_time", "end_time", "failed"]].copy()
        self.rates = history.groupby("user")["failed"].mean().astype(float).to_dict()
        self.metadata = {"features": ["user_rate"], "selection": {"kept": ["baseline", "fake"]}}
        self.gate = None  # threading.Event does not pickle
        return self

    def predict(self, jobs, history):
        r = jobs["user"].map(self.rates).astype(float).fillna(0.5).to_numpy()
        if self.inverted:
            r = 1.0 - r
        out = {"risk": r, "p_timeout": 0.25 * r, "p_failed": 0.75 * r, "ood_score": 0.5, "ood": False}
        return pd.DataFrame(out, index=jobs.index)

    def explain(self, jobs, history, top=3):
        return [[("user_rate", float(x) - 0.3)] for x in self.predict(jobs, history)["risk"]]

    def neighbours(self, jobs, history, k=10):
        cols = {"n_neighbours": 4, "share_failed": 0.75, "share_success": 0.25, "share_timeout": 0.0}
        return pd.DataFrame(cols, index=jobs.index)


def factory(**kw):
    return lambda setting, models, cost_ratio, seed: FakePipeline(setting, models, cost_ratio, seed, **kw)


class FakeClient:
    """Answers nothing; raises ``error`` when set (Prometheus down)."""

    def __init__(self):
        self.error: Exception | None = None
        self.requests_sent = 0

    def query(self, expr, time=None):
        self.requests_sent += 1
        if self.error:
            raise self.error
        return []

    def query_range(self, expr, start, end, step):
        self.requests_sent += 1
        if self.error:
            raise self.error
        return []


class FakeHarvest:
    """``fetch_finished_jobs`` returns the jobs of ``finished`` that ended in the window; ``fetch_active_jobs``
    returns ``active``. Each sends one query through the client, as the real harvest does (in bulk)."""

    def __init__(self, finished: pd.DataFrame, active: pd.DataFrame):
        self.finished = finished
        self.active = active
        self.calls: list[tuple] = []

    def fetch_finished_jobs(self, client, start, end, **kw):
        self.calls.append(("finished", start, end, kw))
        client.query_range("nomade_slurm_job_info", start, end, 60.0)
        f = self.finished
        return f[(f["end_time"] >= start) & (f["end_time"] <= end)].copy()

    def fetch_active_jobs(self, client, now, **kw):
        self.calls.append(("active", now, kw))
        client.query("nomade_slurm_queue_job_info", time=now)
        return self.active.copy()


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_engine(tmp_path, harvest, *, pipeline=None, client=None, clock=None, recommend=False, bg=False, **cfg):
    base = {
        "store": tmp_path / "jobs.sqlite",
        "model_dir": tmp_path / "models",
        "models": ("gbm",),
        "settings": ("submit",),
        "min_train_jobs": 100,
        "min_train_failures": 10,
        "harvest_lookback": 30 * DAY,
    }
    base.update(cfg)
    clock = clock or Clock(T0)
    return RiskEngine(
        RiskConfig(**base),
        client or FakeClient(),
        harvest=harvest,
        pipeline_factory=pipeline or factory(),
        recommend=recommend,
        background=bg,
        clock=clock,
        registry=ModelRegistry(base["model_dir"], keep=5, clock=clock),
    )


def samples(fams: list[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in fams:
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(eng, name: str, **labels: str) -> float | None:
    hits = [v for lab, v in samples(eng.families()).get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


def labels_of(eng, name: str) -> list[dict[str, str]]:
    return [lab for lab, _ in samples(eng.families()).get(name, [])]


# -- pure helpers -------------------------------------------------------------------------------------------------


def test_psi_values():
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    # an empty bin is floored at 1e-4: finite
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1.0])


def test_psi_reference_deciles_and_feature_psi():
    x = np.arange(1000, dtype=float)
    ref = psi_reference(x)
    assert len(ref["edges"]) == 9 and ref["missing"] == 0.0
    assert ref["expected"] == pytest.approx([0.1] * 10)
    assert feature_psi(ref, x) == pytest.approx(0.0)
    # half the recent values beyond the top decile: a major shift (> 0.25, Siddiqi)
    shifted = np.concatenate([np.arange(500.0), np.full(500, 5000.0)])
    assert feature_psi(ref, shifted) > 0.25
    # missing values are a bin of their own: half missing is a major shift too
    assert feature_psi(ref, np.where(x % 2 == 0, np.nan, x)) > 0.25
    assert feature_psi(ref, x[:199]) is None  # too few recent values: noise would look like drift
    assert feature_psi(ref, x[:199], min_values=10) is not None


def test_psi_of_two_samples_of_one_distribution_stays_below_the_stable_mark_at_200_jobs():
    rng = np.random.default_rng(0)
    ref = psi_reference(rng.lognormal(size=2000))
    noise = [feature_psi(ref, rng.lognormal(size=200)) for _ in range(50)]
    # chi-square approximation: about 9 * (1/200 + 1/2000) = 0.05
    assert 0.03 < float(np.mean(noise)) < 0.07
    small = [feature_psi(ref, rng.lognormal(size=20), min_values=20) for _ in range(50)]
    assert float(np.mean(small)) > 0.25  # why no PSI is published for 20 jobs
    assert psi_reference(np.array([1.0] * 9 + [np.nan])) is None
    const = psi_reference(np.full(50, 3.0))
    assert const["edges"] == [3.0] and const["expected"] == [0.0, 1.0]
    assert bin_shares(np.array([1.0, 3.0, 5.0, np.nan]), [3.0]).tolist() == pytest.approx([1 / 3, 2 / 3])


def test_baseline_scores_are_the_smoothed_user_rate_and_nan_without_history():
    hist = finished_jobs(5)
    hist["user"] = ["a", "a", "a", "a", "b"]
    hist["failed"] = [True, False, False, False, True]
    last_end = float(hist["end_time"].max())
    jobs = active_jobs([("x", "u0", "PENDING"), ("y", "u1", "PENDING"), ("z", "u2", "PENDING")], last_end + 400)
    jobs["user"] = ["a", "c", "a"]
    jobs.loc[2, "submit_time"] = T0 - 1.0  # submitted before any job ended: no data, no score
    p = baseline_scores(jobs, hist)
    prior = 2 / 5  # global past failure rate; m-estimate with m = 5 (Cestnik 1990)
    assert p[0] == pytest.approx((1 + 5 * prior) / (4 + 5))
    assert p[1] == pytest.approx(prior)
    assert math.isnan(p[2])
    assert baseline_scores(jobs.iloc[0:0], hist).shape == (0,)


@pytest.mark.parametrize(
    ("cand", "cur", "accepted"),
    [
        (0.70, None, True),
        (0.70, float("nan"), True),
        (float("nan"), None, True),
        (0.70, 0.705, True),  # within the tolerance
        (0.70, 0.72, False),
        (float("nan"), 0.60, False),
        (0.80, 0.60, True),
    ],
)
def test_acceptance_rule(cand, cur, accepted):
    assert accept_candidate(cand, cur) is accepted


def test_time_holdout_takes_the_newest_fifth_and_applies_the_gap():
    d = finished_jobs(100).sample(frac=1.0, random_state=1)  # any order in
    train, hold, t_h = time_holdout(d)
    assert len(hold) == 20 and t_h == T0 + 60.0 * 80
    assert hold["submit_time"].min() == t_h
    # jobs last 600 s: the 10 submitted within 600 s before t_h had not ended by then
    assert len(train) == 70
    assert train["end_time"].max() < t_h
    with pytest.raises(ValueError, match=">= 10"):
        time_holdout(d.head(9))


# -- the engine ---------------------------------------------------------------------------------------------------


def test_cold_start_scores_with_the_baseline_and_harvest_windows(tmp_path):
    fin = finished_jobs(50)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("a1", "u5", "PENDING"), ("a2", "u0", "PENDING"), ("a3", "u3", "RUNNING")], now)
    harvest = FakeHarvest(fin, act)
    clock = Clock(now)
    eng = make_engine(tmp_path, harvest, clock=clock)
    eng.run_cycle(now)
    assert harvest.calls[0][:3] == ("finished", now - 30 * DAY, now)
    assert harvest.calls[0][3] == {"node_label": "node", "node_map": None}
    # 50 jobs < min_train_jobs: no training, the honest baseline scores
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 0
    assert labels_of(eng, "nomade_model_info") == []  # no accepted model
    expected = baseline_scores(act, fin)
    for i, job in enumerate(("a1", "a2", "a3")):
        assert value(eng, "nomade_job_risk_score", job_id=job) == pytest.approx(expected[i])
    assert value(eng, "nomade_job_risk_scoring_info", state="RUNNING", version="baseline") == 1.0
    assert "nomade_job_risk_class_probability" not in samples(eng.families())  # the baseline has none
    assert "nomade_job_risk_driver" not in samples(eng.families())
    assert value(eng, "nomade_model_store_jobs") == 50
    assert value(eng, "nomade_model_store_failed_jobs") == int(fin["failed"].sum())
    with JobsStore(tmp_path / "jobs.sqlite") as st:
        assert st.count() == 50 and float(st.get_meta(WATERMARK_KEY)) == now
    # the next harvest continues from the watermark, overlapping a little
    eng.run_cycle(now + 60)
    finished_calls = [c for c in harvest.calls if c[0] == "finished"]
    assert finished_calls[1][1:3] == (now - HARVEST_OVERLAP, now + 60)
    assert eng.error_counts() == {}
    assert eng.query_counts() == {"range": 2, "instant": 2}


def test_backfilled_jobs_are_seen_at_the_next_data_check(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("a", "u5", "PENDING")], now)
    harvest = FakeHarvest(fin.iloc[-50:], act)  # Prometheus only knows the last 50 jobs
    eng = make_engine(tmp_path, harvest, clock=Clock(now))
    eng.run_cycle(now)
    assert value(eng, "nomade_model_store_jobs") == 50
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 0
    with JobsStore(tmp_path / "jobs.sqlite") as st:  # what `nomade analytics ingest` of a sacct dump does
        st.upsert(fin, cluster="sacct-dump")  # the 50 harvested ones again, under another cluster name
    eng.run_cycle(now + 60)  # checked 60 s ago: not yet
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 0
    eng.run_cycle(now + 300)
    assert value(eng, "nomade_model_store_jobs") == 300
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 1


def test_enough_jobs_train_accept_and_score_pending_and_running(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("p1", "u5", "PENDING"), ("p2", "u0", "PENDING"), ("r1", "u4", "RUNNING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now))
    eng.run_cycle(now)
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 1
    reg = ModelRegistry(tmp_path / "models")
    version = reg.current_version("submit")
    pipeline, meta = reg.current("submit")
    assert labels_of(eng, "nomade_model_info") == [{"setting": "submit", "version": version, "models": "baseline,fake"}]
    # 300 jobs: holdout = newest 60; of the older 240, the 10 still running at the first holdout submit are dropped
    assert meta["n_train"] == 230 and meta["n_holdout"] == 60
    assert len(pipeline.fit_rows) == 230 and pipeline.fit_rows["submit_time"].max() < meta["holdout_start"]
    assert value(eng, "nomade_model_training_jobs", setting="submit") == 230
    auc = meta["holdout"]["pipeline"]["auc_roc"]
    assert auc > 0.7  # per-user rates spread from 5 % to 80 %
    assert value(eng, "nomade_model_auc_roc", setting="submit", model="pipeline") == pytest.approx(auc)
    assert value(eng, "nomade_model_auc_roc", setting="submit", model="baseline") == pytest.approx(
        meta["holdout"]["auc_roc"]["baseline"]
    )
    assert value(eng, "nomade_model_brier_score", setting="submit") == pytest.approx(
        meta["holdout"]["pipeline"]["brier"]
    )
    assert value(eng, "nomade_model_threshold", setting="submit") == 0.5
    assert value(eng, "nomade_model_trained_timestamp_seconds", setting="submit") == now
    # scores: the user's failure rate in the training data, with the job's labels
    rates = pipeline.rates
    got = {lab["job_id"]: (lab, v) for lab, v in samples(eng.families())["nomade_job_risk_score"]}
    assert got["p1"][0] == {"job_id": "p1", "user": "u5", "account": "acct", "partition": "gpu", "state": "PENDING"}
    assert got["r1"][0]["state"] == "RUNNING" and got["r1"][0]["partition"] == "cpu"
    for job, user in (("p1", "u5"), ("p2", "u0"), ("r1", "u4")):
        assert got[job][1] == pytest.approx(rates[user])
    assert value(eng, "nomade_job_risk_class_probability", job_id="p1", failure_class="timeout") == pytest.approx(
        0.25 * rates["u5"]
    )
    assert value(eng, "nomade_job_risk_ood", job_id="r1") == 0.0
    assert value(eng, "nomade_job_risk_ood_score", job_id="r1") == 0.5
    # drivers and neighbours only for jobs at or above the threshold (0.5): u5 and u4, not u0
    assert rates["u5"] >= 0.5 and rates["u4"] >= 0.5 and rates["u0"] < 0.5
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_driver")} == {"p1", "r1"}
    assert value(eng, "nomade_job_risk_driver", job_id="p1", rank="1", feature="user_rate") == pytest.approx(
        rates["u5"] - 0.3
    )
    assert value(eng, "nomade_job_risk_neighbours", job_id="p1") == 4
    assert value(eng, "nomade_job_risk_neighbour_share", job_id="p1", failure_class="failed") == 0.75
    assert value(eng, "nomade_job_risk_neighbour_share", job_id="p1", failure_class="timeout") is None  # zero
    assert value(eng, "nomade_job_risk_neighbours", job_id="p2") is None
    # aggregates
    assert value(eng, "nomade_job_risk_scored_jobs", state="PENDING") == 2
    assert value(eng, "nomade_job_risk_scored_jobs", state="RUNNING") == 1
    assert value(eng, "nomade_job_risk_partition_mean_score", partition="gpu") == pytest.approx(rates["u5"])
    assert value(eng, "nomade_job_risk_partition_mean_score", partition="cpu") == pytest.approx(
        (rates["u0"] + rates["u4"]) / 2
    )
    assert value(eng, "nomade_job_risk_partition_high_risk_jobs", partition="cpu") == 1
    assert value(eng, "nomade_job_risk_user_high_risk_jobs", user="u0") == 0
    assert value(eng, "nomade_job_risk_user_mean_score", user="u4") == pytest.approx(rates["u4"])
    assert value(eng, "nomade_job_risk_series_dropped") == 0
    assert value(eng, "nomade_job_risk_scoring_info", state="RUNNING", setting="submit", version=version) == 1
    assert value(eng, "nomade_job_risk_last_scored_timestamp_seconds") == now
    with JobsStore(tmp_path / "jobs.sqlite") as st:
        assert float(st.get_meta(ATTEMPT_KEY.format(setting="submit"))) == now


def test_worse_candidate_is_rejected_and_the_serving_model_kept(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("p1", "u5", "PENDING")], now)
    harvest = FakeHarvest(fin, act)
    clock = Clock(now)
    eng = make_engine(tmp_path, harvest, clock=clock, pipeline=factory())
    eng.run_cycle(now)
    v1 = ModelRegistry(tmp_path / "models").current_version("submit")
    score1 = value(eng, "nomade_job_risk_score", job_id="p1")
    # a week later, 200 more jobs; the candidate is the inverted (worse) model
    later = now + 7 * DAY + 1
    harvest.finished = pd.concat([fin, finished_jobs(200, t0=later - 200 * 60 - 700, seed=7, id0=5000)])
    harvest.active = active_jobs([("p1", "u5", "PENDING")], later)
    eng._factory = factory(inverted=True)
    clock.t = later
    eng.run_cycle(later)
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="rejected") == 1
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 1
    assert ModelRegistry(tmp_path / "models").current_version("submit") == v1
    assert ModelRegistry(tmp_path / "models").versions("submit") == [v1]  # rejected candidates are not saved
    assert labels_of(eng, "nomade_model_info")[0]["version"] == v1
    assert value(eng, "nomade_job_risk_score", job_id="p1") == pytest.approx(score1)
    # not due again until another interval has passed; then a good candidate replaces the model
    eng._factory = factory()
    eng.run_cycle(later + 60)
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="rejected") == 1
    clock.t = later + 7 * DAY + 1
    harvest.active = active_jobs([("p1", "u5", "PENDING")], clock.t)
    eng.run_cycle(clock.t)
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 2
    v3 = ModelRegistry(tmp_path / "models").current_version("submit")
    assert v3 != v1 and labels_of(eng, "nomade_model_info")[0]["version"] == v3


def test_jobs_that_left_the_queue_disappear_and_prometheus_down_keeps_scores_a_while(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    harvest = FakeHarvest(fin, active_jobs([("a", "u5", "PENDING"), ("b", "u4", "RUNNING")], now))
    client = FakeClient()
    eng = make_engine(tmp_path, harvest, client=client, clock=Clock(now))
    eng.run_cycle(now)
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_score")} == {"a", "b"}
    harvest.active = active_jobs([("a", "u5", "PENDING")], now + 60)
    eng.run_cycle(now + 60)
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_score")} == {"a"}
    assert value(eng, "nomade_job_risk_driver", job_id="b", rank="1", feature="user_rate") is None
    assert value(eng, "nomade_job_risk_scored_jobs", state="RUNNING") == 0
    # Prometheus down: nothing answers; the last scores stay for scores_max_age (600 s), then go
    client.error = PrometheusUnavailable("connection refused")
    eng.run_cycle(now + 120)
    assert eng.error_counts() == {"unavailable": 1}  # the active fetch is skipped once the harvest found no server
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_score")} == {"a"}
    assert value(eng, "nomade_job_risk_last_scored_timestamp_seconds") == now + 60
    eng.run_cycle(now + 60 + 601)
    assert "nomade_job_risk_score" not in samples(eng.families())
    assert value(eng, "nomade_model_threshold", setting="submit") == 0.5  # model metrics are still served
    # an HTTP error (server answered) fails the harvest but the active fetch is still tried
    client.error = PrometheusUnavailable("503", status_code=503)
    eng.run_cycle(now + 700)
    assert eng.error_counts() == {"unavailable": 4}
    # a restarted service whose first harvest fails still scores from the store (only the listing answers)
    fresh = make_engine(tmp_path, FakeHarvest(fin, active_jobs([("c", "u5", "PENDING")], now)), clock=Clock(now))

    def http_503(*args, **kwargs):
        raise PrometheusUnavailable("x", status_code=503)

    fresh._harvest.fetch_finished_jobs = http_503
    fresh.run_cycle(now + 700)
    assert fresh.error_counts() == {"unavailable": 1}
    assert value(fresh, "nomade_job_risk_scored_jobs", state="PENDING") == 1
    assert value(fresh, "nomade_model_store_jobs") == 300  # the history was read from the store
    client.error = None
    eng.run_cycle(now + 760)
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_score")} == {"a"}


def test_max_scored_jobs_keeps_the_highest_risks(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    specs = [("j0", "u0", "PENDING"), ("j5", "u5", "PENDING"), ("j3", "u3", "RUNNING"), ("j4", "u4", "PENDING")]
    eng = make_engine(tmp_path, FakeHarvest(fin, active_jobs(specs, now)), clock=Clock(now), max_scored_jobs=2)
    eng.run_cycle(now)
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_score")} == {"j5", "j4"}
    assert value(eng, "nomade_job_risk_series_dropped") == 2
    # aggregates count every scored job
    assert value(eng, "nomade_job_risk_scored_jobs", state="PENDING") == 3
    assert value(eng, "nomade_job_risk_user_mean_score", user="u0") is not None
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_class_probability")} == {"j5", "j4"}


def test_restart_serves_the_saved_model_without_retraining_and_survives_a_corrupt_one(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("a", "u5", "PENDING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now))
    eng.run_cycle(now)
    version = ModelRegistry(tmp_path / "models").current_version("submit")
    eng._store.close()
    again = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now + 3600))
    again.run_cycle(now + 3600)
    assert labels_of(again, "nomade_model_info")[0]["version"] == version
    assert value(again, "nomade_model_retrains_total", setting="submit", result="accepted") == 0
    assert value(again, "nomade_job_risk_scoring_info", state="PENDING", setting="submit", version=version) == 1
    again._store.close()
    # a corrupt artefact: logged and counted, the baseline serves, and a new model is trained (cold retry)
    (tmp_path / "models" / "submit" / f"{version}.pkl").write_bytes(b"garbage")
    third = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now + 2 * 3600))
    third.run_cycle(now + 2 * 3600)
    assert value(third, "nomade_model_load_errors_total") == 1
    assert value(third, "nomade_model_retrains_total", setting="submit", result="accepted") == 1
    assert ModelRegistry(tmp_path / "models").current_version("submit") != version


def test_background_training_swaps_the_model_in(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    gate = threading.Event()
    act = active_jobs([("a", "u5", "PENDING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now), pipeline=factory(gate=gate), bg=True)
    eng.run_cycle(now)  # training waits on the gate: this cycle scores with the baseline
    assert value(eng, "nomade_job_risk_scoring_info", state="PENDING", setting="submit", version="baseline") == 1
    eng.run_cycle(now + 60)  # a second cycle does not start a second training
    gate.set()
    assert eng.wait_training(10)
    version = ModelRegistry(tmp_path / "models").current_version("submit")
    assert labels_of(eng, "nomade_model_info")[0]["version"] == version
    eng.run_cycle(now + 120)
    assert value(eng, "nomade_job_risk_scoring_info", state="PENDING", setting="submit", version=version) == 1
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 1


def test_training_failure_is_counted_and_the_baseline_keeps_serving(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("a", "u5", "PENDING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now), pipeline=factory(fail=True))
    eng.run_cycle(now)
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="failed") == 1
    assert eng.error_counts() == {"train": 1}
    assert value(eng, "nomade_job_risk_scoring_info", state="PENDING", setting="submit", version="baseline") == 1
    eng.run_cycle(now + 60)  # no retry before COLD_RETRY
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="failed") == 1


def test_run_setting_trains_on_one_labelled_snapshot_per_job(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    with JobsStore(tmp_path / "jobs.sqlite") as st:
        st.upsert(fin, cluster="local")
        for frac in (0.3, 0.7):  # two snapshots of each job while it ran
            snap = fin.assign(state="RUNNING", end_time=np.nan, failed=np.nan, failure_class=None, elapsed_s=590 * frac)
            st.upsert_snapshots(snap.iloc[:250], T0 + frac, cluster="local")
    act = active_jobs([("p", "u5", "PENDING"), ("r", "u0", "RUNNING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin.iloc[0:0], act), clock=Clock(now), settings=("submit", "run"))
    eng.run_cycle(now)
    assert value(eng, "nomade_model_retrains_total", setting="run", result="accepted") == 1
    run_model, meta = ModelRegistry(tmp_path / "models").current("run")
    rows = run_model.fit_rows
    assert not rows.duplicated(["job_id", "submit_time"]).any()  # one snapshot per job
    assert meta["n_train"] + meta["n_holdout"] <= 250 and meta["n_holdout"] == 50
    # the final end time came with the outcome (the gap rule needs it)
    assert rows["end_time"].notna().all() and (rows["end_time"] == rows["submit_time"] + 600).all()
    run_version = meta["version"]
    assert value(eng, "nomade_job_risk_scoring_info", state="RUNNING", setting="run", version=run_version) == 1
    assert labels_of(eng, "nomade_job_risk_scoring_info") == [
        {
            "state": "PENDING",
            "setting": "submit",
            "version": ModelRegistry(tmp_path / "models").current_version("submit"),
        },
        {"state": "RUNNING", "setting": "run", "version": run_version},
    ]
    # the running job was stored as a snapshot
    with JobsStore(tmp_path / "jobs.sqlite") as st:
        snaps = st.load_snapshots(since=now)
    assert snaps["job_id"].tolist() == ["r"]


def test_running_jobs_use_the_submit_model_until_a_run_model_exists(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("r", "u0", "RUNNING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), clock=Clock(now), settings=("submit", "run"))
    eng.run_cycle(now)
    v = ModelRegistry(tmp_path / "models").current_version("submit")
    assert labels_of(eng, "nomade_job_risk_scoring_info") == [{"state": "RUNNING", "setting": "submit", "version": v}]
    assert [lab["setting"] for lab in labels_of(eng, "nomade_model_info")] == ["submit"]


def test_drift_psi_of_the_training_sample_against_recent_jobs(tmp_path):
    old = finished_jobs(800)
    now = float(old["end_time"].max()) + 60
    harvest = FakeHarvest(old, active_jobs([], now))
    clock = Clock(now)
    window = 4 * 3600.0  # 240 jobs at one a minute
    eng = make_engine(tmp_path, harvest, clock=clock, drift_window=window)
    eng.run_cycle(now)
    # the last 4 hours of the training data are like the training sample: no shift
    assert value(eng, "nomade_model_drift_jobs", setting="submit") == 240
    assert value(eng, "nomade_model_drift_psi", setting="submit", feature="req_mem_bytes") < 0.1
    assert value(eng, "nomade_model_drift_psi", setting="submit", feature="req_cpus") == 0.0
    meta = ModelRegistry(tmp_path / "models").current("submit")[1]
    assert set(meta["drift_reference"]) == {"req_cpus", "req_nodes", "req_gpus", "req_mem_bytes", "timelimit_s"}
    # then 4 hours of jobs asking for 10x the memory
    later = now + window
    new = finished_jobs(230, t0=later - 230 * 60 - 700, seed=3, id0=9000, mem=40e9)
    harvest.finished = pd.concat([old, new])
    clock.t = later
    eng.run_cycle(later)
    assert value(eng, "nomade_model_drift_jobs", setting="submit") == 230  # the old jobs ended before the window
    assert value(eng, "nomade_model_drift_psi", setting="submit", feature="req_mem_bytes") > 0.25
    assert value(eng, "nomade_model_drift_psi", setting="submit", feature="req_cpus") == 0.0
    # too few recent jobs: no PSI at all (absent, not 0)
    clock.t = later + 3 * 3600
    eng.run_cycle(clock.t)
    assert value(eng, "nomade_model_drift_jobs", setting="submit") < 200
    assert value(eng, "nomade_model_drift_psi", setting="submit", feature="req_cpus") is None


def test_recommendations_are_refreshed_after_retraining(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    calls = []

    class Rec:
        @staticmethod
        def compute(jobs):
            calls.append(len(jobs))
            return ["r1"]

        @staticmethod
        def families(recs):
            m = Metric("nomade_recommendation_info", "x", "gauge")
            m.add_sample("nomade_recommendation_info", {"user": "", "recommendation": recs[0]}, 1.0)
            return [m]

    eng = make_engine(tmp_path, FakeHarvest(fin, active_jobs([], now)), clock=Clock(now), recommend=Rec)
    eng.run_cycle(now)
    assert calls == [300]
    assert samples(eng.families())["nomade_recommendation_info"] == [({"user": "", "recommendation": "r1"}, 1.0)]
    eng.run_cycle(now + 60)  # not due: not recomputed
    assert calls == [300]


def test_unopenable_store_is_counted_and_nothing_is_scored(tmp_path):
    (tmp_path / "file").write_text("")
    act = active_jobs([("a", "u5", "PENDING")], T0)
    eng = make_engine(tmp_path, FakeHarvest(finished_jobs(10), act), store=tmp_path / "file" / "jobs.sqlite")
    eng.run_cycle(T0)
    eng.run_cycle(T0 + 60)
    assert eng.error_counts() == {"store": 2}
    assert "nomade_job_risk_score" not in samples(eng.families())  # no history, no baseline: absent
    assert value(eng, "nomade_job_risk_scored_jobs", state="PENDING") == 0


def test_with_the_real_harvest_module_and_an_empty_prometheus(tmp_path):
    """The engine calls the real harvest with its keyword arguments; an empty server gives no jobs, no errors."""
    eng = RiskEngine(
        RiskConfig(store=tmp_path / "jobs.sqlite", model_dir=tmp_path / "models"),
        FakeClient(),
        recommend=False,
        background=False,
        clock=Clock(T0),
        matchers='cluster="hpc1"',
    )
    eng.run_cycle(T0)
    assert eng.error_counts() == {}
    assert sum(eng.query_counts().values()) >= 2  # at least the finished-job and active-job listings
    assert value(eng, "nomade_job_risk_scored_jobs", state="PENDING") == 0
    assert value(eng, "nomade_model_store_jobs") == 0
    eng.close()
    eng.close()  # idempotent


# -- through the service ------------------------------------------------------------------------------------------


def test_risk_metrics_pass_through_the_service_exposition(tmp_path):
    fin = finished_jobs(300)
    now = float(fin["end_time"].max()) + 60
    client = FakeClient()
    act = active_jobs([("p1", "u5", "PENDING"), ("r1", "u4", "RUNNING")], now)
    eng = make_engine(tmp_path, FakeHarvest(fin, act), client=client, clock=Clock(now))
    svc = AnalyticsService(AnalyticsConfig(watches=[]), client, risk=eng, clock=lambda: now)
    assert svc.run_cycle() is True
    reg = CollectorRegistry(auto_describe=False)
    reg.register(svc)
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    declared = {s.name.removesuffix("_total") if s.type == "counter" else s.name for s in ANALYTICS_METRICS}
    assert set(fams) <= declared
    for fam in fams.values():
        spec = SPECS.get(fam.name) or SPECS[fam.name + "_total"]
        assert fam.type == ("gauge" if spec.type == "info" else spec.type)
        for s in fam.samples:
            assert set(s.labels) == set(spec.labels), (fam.name, s.labels)
    version = ModelRegistry(tmp_path / "models").current_version("submit")
    rate = ModelRegistry(tmp_path / "models").current("submit")[0].rates["u5"]
    assert (
        f'nomade_job_risk_score{{account="acct",job_id="p1",partition="gpu",state="PENDING",user="u5"}} {rate!r}'
        in text
    )
    assert f'nomade_model_info{{models="baseline,fake",setting="submit",version="{version}"}} 1.0' in text
    assert 'nomade_model_retrains_total{result="accepted",setting="submit"} 1.0' in text
    assert 'nomade_analytics_queries_total{kind="range",watch="risk"} 1.0' in text
    assert 'nomade_analytics_queries_total{kind="instant",watch="risk"} 1.0' in text
    assert "nomade_model_store_jobs 300.0" in text
    # Prometheus down: the cycle fails (no crash), the risk errors are counted under watch="risk"
    client.error = PrometheusUnavailable("connection refused")
    svc.run_cycle()
    text = generate_latest(reg).decode()
    assert 'nomade_analytics_cycle_errors_total{reason="unavailable",watch="risk"} 1.0' in text
    assert "nomade_job_risk_score{" in text  # the previous scores, still young


def test_with_the_real_risk_pipeline(tmp_path):
    pytest.importorskip("sklearn")
    fin = finished_jobs(200)
    now = float(fin["end_time"].max()) + 60
    act = active_jobs([("p1", "u5", "PENDING"), ("p2", "u0", "PENDING"), ("r1", "u4", "RUNNING")], now)
    eng = RiskEngine(
        RiskConfig(
            store=tmp_path / "jobs.sqlite",
            model_dir=tmp_path / "models",
            models=("gbm",),
            settings=("submit",),
            min_train_jobs=100,
            min_train_failures=10,
            harvest_lookback=30 * DAY,
        ),
        FakeClient(),
        harvest=FakeHarvest(fin, act),
        recommend=False,
        background=False,
        clock=Clock(now),
    )
    eng.run_cycle(now)
    assert eng.error_counts() == {}
    assert value(eng, "nomade_model_retrains_total", setting="submit", result="accepted") == 1
    pipeline, meta = ModelRegistry(tmp_path / "models").current("submit")
    assert type(pipeline).__name__ == "RiskPipeline"
    assert "user_past_fail_rate" in meta["features"]
    assert 0.5 < meta["holdout"]["pipeline"]["auc_roc"] <= 1.0
    assert set(meta["holdout"]["auc_roc"]) >= {"baseline", "gbm"}
    scores = {lab["job_id"]: v for lab, v in samples(eng.families())["nomade_job_risk_score"]}
    assert set(scores) == {"p1", "p2", "r1"} and all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["p1"] > scores["p2"]  # u5 fails 80 % of the time, u0 5 %
    thr = value(eng, "nomade_model_threshold", setting="submit")
    assert thr == pytest.approx(pipeline.threshold)
    high = {j for j, v in scores.items() if v >= thr}
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_driver")} == high
    assert {lab["job_id"] for lab in labels_of(eng, "nomade_job_risk_neighbours")} == high
    features = set(meta["features"]) | {"partition"}
    assert {lab["feature"] for lab in labels_of(eng, "nomade_job_risk_driver")} <= features


def test_store_opened_in_the_cycle_thread_is_closed_from_the_main_thread_without_warning(tmp_path, caplog):
    """SIGTERM path of ``nomade-analytics``: the cycle thread opened the store, the main thread calls close()."""
    import logging
    import sqlite3

    fin = finished_jobs(50)
    now = float(fin["end_time"].max()) + 60
    eng = make_engine(tmp_path, FakeHarvest(fin, active_jobs([("a1", "u5", "PENDING")], now)), clock=Clock(now))
    cycle = threading.Thread(target=eng.run_cycle, args=(now,), name="analytics")
    cycle.start()
    cycle.join(30)
    assert not cycle.is_alive() and eng.error_counts() == {}
    store = eng._store
    assert store is not None  # opened by the cycle thread
    with caplog.at_level(logging.DEBUG, logger="nomade.analytics"):
        eng.close()
        eng.close()  # a second close is a no-op
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert eng._store is None
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.count()
    with JobsStore(tmp_path / "jobs.sqlite") as st:  # what the cycle wrote is on disk
        assert st.count() == 50 and float(st.get_meta(WATERMARK_KEY)) == now


def test_jobs_store_shared_between_threads_serialises_every_use(tmp_path):
    """Writers and readers in several threads on one store opened elsewhere: no error, every row written."""
    opened: list[JobsStore] = []
    opener = threading.Thread(target=lambda: opened.append(JobsStore(tmp_path / "jobs.sqlite")))
    opener.start()
    opener.join(30)
    store = opened[0]
    errors: list[BaseException] = []
    counts: list[int] = []

    def writer(k: int) -> None:
        try:
            for i in range(5):
                store.upsert(finished_jobs(20, id0=10_000 * (k + 1) + 100 * i, seed=k), cluster="c")
                store.set_meta(f"w{k}", i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(10):
                counts.append(len(store.load()))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.count() == 4 * 5 * 20
    assert [store.get_meta(f"w{k}") for k in range(4)] == ["4", "4", "4", "4"]
    assert all(0 <= c <= 400 and c % 20 == 0 for c in counts)  # a reader sees whole upserts only
    store.close()


def test_submission_weights_count_each_array_once():
    jobs = pd.DataFrame(
        {
            "user": ["a", "a", "a", "a", "b", "a"],
            "job_name": ["scan", "scan", "scan", "scan", "scan", "scan"],
            "submit_time": [100.0, 100.0, 100.0, 100.0, 100.0, 101.0],
        }
    )
    w = submission_weights(jobs)
    assert w.tolist() == [0.25, 0.25, 0.25, 0.25, 1.0, 1.0]
    assert w.sum() == 3.0  # three submissions: a's 4-task array, b's job, a's later job
    assert submission_weights(jobs.iloc[:0]).shape == (0,)


def test_weighted_holdout_metrics_let_one_array_not_decide_the_auc():
    # 1 array of 100 tied, healthy tasks scored high, and 10 single jobs ranked perfectly (5 failed, scored high).
    y = np.array([0] * 100 + [1] * 5 + [0] * 5)
    p = np.array([0.9] * 100 + [0.8] * 5 + [0.1] * 5)
    jobs = pd.DataFrame(
        {
            "user": ["u"] * 100 + [f"s{i}" for i in range(10)],
            "job_name": ["arr"] * 100 + ["j"] * 10,
            "submit_time": [5.0] * 100 + [float(i) for i in range(10)],
        }
    )
    plain = holdout_metrics(y, p)
    weighted = holdout_metrics(y, p, submission_weights(jobs))
    # per job: 500 of the 525 negative-positive pairs involve the array's tasks, ranked above every failure
    assert plain["auc_roc"] == pytest.approx(25 / 525)
    # per submission: the array is one negative above the 5 failures, the 5 single negatives below them
    assert weighted["auc_roc"] == pytest.approx(25 / 30)
    assert weighted["submissions"] == pytest.approx(11.0) and weighted["n"] == 110 and weighted["positives"] == 5
    assert weighted["brier"] == pytest.approx((0.81 + 5 * 0.04 + 5 * 0.01) / 11)
