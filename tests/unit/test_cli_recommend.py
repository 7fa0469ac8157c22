"""``nomade recommend``: against a fake Prometheus (series built by analytics.recommend.families) and a temp store."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.jobs_store import JobsStore
from nomade.analytics.recommend import compute, families
from nomade.analytics.traces import JOB_COLUMNS
from nomade.cli import main as cli_main
from nomade.cli.recommend import fold_samples, recommend_query

PROM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prom"
PROMTOOL = shutil.which("promtool")
G = 2**30


def _load_fake():
    spec = importlib.util.spec_from_file_location("nomade_test_fakeprom_rec", PROM_FIXTURES / "fakeprom.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fakeprom = _load_fake()


def jobs(groups, user="alice", partition="cpu", start=0):
    """``(n, n_failed, columns)`` groups -> job table rows; the first ``n_failed`` of a group failed."""
    rows = []
    i = start
    for n, n_failed, cols in groups:
        for k in range(n):
            failed = k < n_failed
            row = {c: np.nan for c in JOB_COLUMNS}
            row.update(
                job_id=str(1000 + i),
                user=user,
                account="acct",
                partition=partition,
                job_name="run.sh",
                submit_time=1e9 + 100 * i,
                start_time=1e9 + 100 * i + 60,
                end_time=1e9 + 100 * i + 660,
                req_cpus=1.0,
                elapsed_s=600.0,
                state="FAILED" if failed else "COMPLETED",
                failure_class="failed" if failed else "success",
                failed=failed,
                dataset="synthetic",
            )
            row.update(cols)
            rows.append(row)
            i += 1
    return pd.DataFrame(rows)


HEADROOM = {"max_rss_bytes": 0.5 * G, "req_mem_bytes": 1.0 * G}
NEAR_LIMIT = {"max_rss_bytes": 0.99 * G, "req_mem_bytes": 1.0 * G}


def table() -> pd.DataFrame:
    """alice: memory near the limit fails 50 % vs 4 % (significant on her own jobs); bob: no difference."""
    return pd.concat(
        [
            jobs([(50, 2, HEADROOM), (30, 15, NEAR_LIMIT)], user="alice"),
            jobs([(100, 10, HEADROOM), (100, 10, NEAR_LIMIT)], user="bob", start=100),
        ],
        ignore_index=True,
    )


def store_with(df: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "jobs.sqlite"
    with JobsStore(path) as st:
        assert st.upsert(df, cluster="hpc1") == len(df)
    return path


def prom_body(recs, extra_users=0, instance="ana1:9867"):
    """What Prometheus answers to recommend_query(): the scraped series (+ job/instance) and the count part."""
    samples = []
    n_info = 0
    for fam in families(recs):
        for s in fam.samples:
            samples.append(({"__name__": s.name, **s.labels, "job": "nomade-analytics", "instance": instance}, s.value))
            n_info += s.name == "nomade_recommendation_info"
    if n_info + extra_users:
        samples.append(({"stat": "published"}, n_info + extra_users))
    return fakeprom.vector(*samples)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_cli(capsys, *argv):
    rc = cli_main.main(["recommend", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# -- Prometheus -----------------------------------------------------------------------------------------------------


def test_prometheus_user_and_cluster_recommendations(capsys):
    recs = compute(table())
    assert [(r.user, r.key) for r in recs] == [("", "memory_headroom"), ("alice", "memory_headroom")]
    routes = {recommend_query("alice"): [(200, prom_body(recs))]}
    with fakeprom.FakePrometheus(routes) as fake:
        rc, out, err = run_cli(capsys, "--user", "alice", "--prometheus", fake.url)
    assert (rc, err) == (0, "")
    assert len(fake.requests) == 1  # one query whatever the number of users
    mine = compute(table(), user="alice")[0]
    lines = out.splitlines()
    assert lines[0] == f"Recommendations for alice (from prometheus {fake.url}):"
    assert lines[1:4] == [
        "  For alice:",
        f"    * {mine.message}",
        "      followed: 4.0 % failed of 50 jobs; not followed: 50.0 % failed of 30 jobs; scope user",
    ]
    assert lines[4] == "  Cluster-wide:"
    assert (
        lines[6] == "      followed: 8.0 % failed of 150 jobs; not followed: 19.2 % failed of 130 jobs; scope cluster"
    )
    assert "across the cluster" in lines[5]


def test_prometheus_json_output(capsys):
    recs = compute(table())
    routes = {recommend_query("alice"): [(200, prom_body(recs))]}
    with fakeprom.FakePrometheus(routes) as fake:
        rc, out, _ = run_cli(capsys, "--user", "alice", "--prometheus", fake.url, "--format", "json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["source"] == "prometheus" and doc["published"] == 2
    (mine,) = doc["user_recommendations"]
    assert mine["key"] == "memory_headroom" and mine["kind"] == "failure" and mine["scope"] == "user"
    assert (mine["with_jobs"], mine["without_jobs"]) == (50, 30)
    assert mine["with_rate"] == pytest.approx(0.04) and mine["without_rate"] == pytest.approx(0.5)
    assert mine["p_value"] == pytest.approx(recs[1].p_value)
    assert [r["user"] for r in doc["cluster_recommendations"]] == [""]


def test_prometheus_nothing_for_this_user_is_an_answer(capsys):
    recs = compute(table())
    routes = {recommend_query("bob"): [(200, prom_body(recs[:1], extra_users=1))]}
    with fakeprom.FakePrometheus(routes) as fake:
        rc, out, _ = run_cli(capsys, "--user", "bob", "--prometheus", fake.url)
    assert rc == 0
    assert "  For bob:\n    nothing significant for this user in the published recommendations" in out
    assert "  Cluster-wide:\n    * Request memory with headroom: across the cluster" in out


def test_prometheus_without_any_recommendation_exits_3_or_falls_back_to_the_store(capsys, tmp_path):
    routes = {recommend_query("alice"): [(200, fakeprom.vector())]}
    with fakeprom.FakePrometheus(routes) as fake:
        rc, out, err = run_cli(capsys, "--user", "alice", "--prometheus", fake.url)
        assert (rc, out) == (3, "")
        assert err.startswith(f"nomade recommend: no nomade_recommendation_* series in Prometheus at {fake.url}")
        assert "--store FILE" in err
        store = store_with(table(), tmp_path)
        rc, out, err = run_cli(capsys, "--user", "alice", "--prometheus", fake.url, "--store", str(store))
    assert (rc, err) == (0, "")
    assert f"(from store {store})" in out.splitlines()[0]
    assert "note: no nomade_recommendation_* series in Prometheus" in out and "computed from the store" in out


def test_prometheus_unreachable_exits_1_or_falls_back(capsys, tmp_path):
    url = closed_port_url()
    rc, out, err = run_cli(capsys, "--user", "alice", "--prometheus", url, "--timeout", "2")
    assert (rc, out) == (1, "")
    assert err == (
        f"nomade recommend: Prometheus unavailable at {url}: Connection refused"
        " (give --store FILE to compute from the training store)\n"
    )
    store = store_with(table(), tmp_path)
    rc, out, _ = run_cli(capsys, "--user", "alice", "--prometheus", url, "--timeout", "2", "--store", str(store))
    assert rc == 0 and "Request memory with headroom: among your jobs" in out


def test_prometheus_rejected_query_and_bad_url(capsys):
    routes = {recommend_query("alice"): [(422, fakeprom.error("execution", "too many samples"))]}
    with fakeprom.FakePrometheus(routes) as fake:
        rc, _, err = run_cli(capsys, "--user", "alice", "--prometheus", fake.url)
    assert rc == 1 and "rejected the query: execution: too many samples" in err
    rc, _, err = run_cli(capsys, "--user", "alice", "--prometheus", "prom:9090")
    assert rc == 2 and "not an http(s) URL" in err


def test_url_from_environment_and_cluster_matcher(capsys, monkeypatch):
    recs = compute(table())
    q = recommend_query("alice", cluster="hpc1")
    assert q.count('cluster="hpc1"') == 3
    with fakeprom.FakePrometheus({q: [(200, prom_body(recs))]}) as fake:
        monkeypatch.setenv("NOMADE_PROMETHEUS_URL", fake.url)
        rc, out, _ = run_cli(capsys, "--user", "alice", "--cluster", "hpc1")
    assert rc == 0 and fake.queries() == [q]


def test_fold_ignores_other_users_and_half_written_recommendations():
    from nomade.analytics.promapi import Sample

    s = [
        Sample({"__name__": "nomade_recommendation_info", "user": "eve", "recommendation": "gpu_use",
                "scope": "user", "message": "m"}, 1.0, 0),
        Sample({"__name__": "nomade_recommendation_failure_rate", "user": "alice",
                "recommendation": "gpu_use", "group": "with"}, 0.1, 0),
        Sample({"__name__": "nomade_recommendation_info", "user": "", "recommendation": "time_headroom",
                "scope": "cluster", "message": "t"}, 1.0, 0),
        Sample({"stat": "published"}, 7.0, 0),
    ]  # fmt: skip
    mine, cluster, published = fold_samples(s, "alice")
    assert mine == [] and published == 7
    assert cluster == [
        {"key": "time_headroom", "kind": "failure", "user": "", "scope": "cluster", "message": "t",
         "with_rate": None, "without_rate": None, "with_jobs": None, "without_jobs": None, "p_value": None}
    ]  # fmt: skip


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Prometheus) is not installed")
def test_recommend_query_in_promtool(tmp_path):
    # the user's series, the cluster-wide ones (user=""), never another user's, and the count of all infos
    series = []
    for user in ("alice", "", "bob"):
        lb = f'user="{user}", recommendation="local_scratch", job="nomade-analytics", instance="a:1"'
        series.append({"series": f'nomade_recommendation_info{{{lb}, scope="user", message="m"}}', "values": "1+0x5"})
        series.append({"series": f"nomade_recommendation_p_value{{{lb}}}", "values": "0.01+0x5"})
    exp = []
    for user in ("alice", ""):
        base = {"user": user, "recommendation": "local_scratch", "job": "nomade-analytics", "instance": "a:1"}
        exp.append({**base, "__name__": "nomade_recommendation_info", "scope": "user", "message": "m"})
        exp.append({**base, "__name__": "nomade_recommendation_p_value"})

    def labels(d):
        return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(d.items()) if k != "__name__") + "}"

    samples = [{"labels": d["__name__"] + labels(d), "value": 1 if "info" in d["__name__"] else 0.01} for d in exp]
    samples.append({"labels": '{stat="published"}', "value": 3})
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [{"expr": recommend_query("alice"), "eval_time": "5m", "exp_samples": samples}],
            }
        ],
    }
    path = tmp_path / "rec_test.yml"
    path.write_text(json.dumps(test))
    res = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# -- store ----------------------------------------------------------------------------------------------------------


def test_store_user_and_cluster_recommendations(capsys, tmp_path):
    store = store_with(table(), tmp_path)
    rc, out, err = run_cli(capsys, "--user", "alice", "--store", str(store), "--format", "json")
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc["source"] == "store" and doc["jobs"] == 280
    (mine,) = doc["user_recommendations"]
    assert (mine["user"], mine["scope"], mine["with_failed"], mine["without_failed"]) == ("alice", "user", 2, 15)
    assert mine["with_ci"][0] < 0.04 < mine["with_ci"][1]
    (cl,) = doc["cluster_recommendations"]
    assert (cl["user"], cl["with_jobs"], cl["without_jobs"]) == ("", 150, 130)
    assert {r["key"]: r["status"] for r in doc["rules"]}["memory_headroom"] == "emitted"


def test_store_says_why_nothing_is_recommended(capsys, tmp_path):
    store = store_with(table(), tmp_path)
    rc, out, _ = run_cli(capsys, "--user", "bob", "--store", str(store))
    assert rc == 0
    assert "  For bob:\n    nothing significant in this user's jobs or in comparable ones" in out
    assert "  Why nothing for you, rule by rule:" in out
    assert "    memory_headroom: not significant (BH-adjusted p = 1 > 0.05)" in out
    assert "    local_scratch: no data (columns missing or empty: nfs_ratio, total_write_gb)" in out
    rc, out, _ = run_cli(capsys, "--user", "zed", "--store", str(store))
    assert rc == 0 and "no finished job of this user in the store" in out


def test_store_missing_empty_or_lower_support(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "--user", "alice", "--store", str(tmp_path / "nope.sqlite"))
    assert (rc, out) == (1, "") and err == f"nomade recommend: no such store: {tmp_path / 'nope.sqlite'}\n"
    assert not (tmp_path / "nope.sqlite").exists()  # not created by asking
    empty = tmp_path / "empty.sqlite"
    JobsStore(empty).close()
    rc, _, err = run_cli(capsys, "--user", "alice", "--store", str(empty))
    assert rc == 3 and "no finished jobs in store" in err
    small = store_with(jobs([(12, 0, HEADROOM), (12, 12, NEAR_LIMIT)]), tmp_path)
    rc, out, _ = run_cli(capsys, "--user", "alice", "--store", str(small))
    assert rc == 0 and "memory_headroom: low support (each group needs 20 jobs; have 12 / 12)" in out
    rc, out, _ = run_cli(capsys, "--user", "alice", "--store", str(small), "--min-support", "10")
    assert rc == 0 and "    * Request memory with headroom: among your jobs" in out


def test_usage_errors_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["recommend", "--store", "x.sqlite"])
    assert exc.value.code == 2 and "--user" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["recommend", "--user", "a", "--min-support", "0"])
    assert exc.value.code == 2
    assert cli_main.main([]) == 2
    assert "recommend" in capsys.readouterr().err
