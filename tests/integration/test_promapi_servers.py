"""PrometheusClient against REAL Prometheus and VictoriaMetrics servers that the tests start on loopback.

Not the lab's Prometheus: each server gets a temporary data directory and a free port, is loaded with the same
3-hour history at 15 s resolution (tests/backfill.py: promtool blocks for Prometheus, the import API for
VictoriaMetrics) and is always stopped again. Every test runs on both servers unchanged; where they differ
(error codes, points limit, staleness) the test states both behaviours. Needs the ``prometheus``, ``promtool``
and ``victoria-metrics`` binaries (skipped without them, failed under ``NOMADE_LAB=1``) and ``openssl`` for TLS.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from backfill import (
    PROMETHEUS,
    PROMTOOL,
    VICTORIAMETRICS,
    Proc,
    free_port,
    prometheus_server,
    require_binaries,
    start_prometheus,
    start_victoriametrics,
    victoriametrics_server,
)

from nomade.analytics.promapi import PrometheusClient, PrometheusUnavailable, PromQLError, Series

pytestmark = pytest.mark.integration

STEP = 15.0
NODES = ("c1", "c2", "c3")
# A label value with every character the text formats escape: it must round-trip through both loaders.
REASON = 'disk "full" on C:\\scratch\nsee ticket'


@dataclass(frozen=True)
class Loaded:
    """A running server and the history it holds: samples every 15 s over ``[t0, t_end]``."""

    proc: Proc
    t0: float
    t_end: float


def fs_value(i: int, t: float, t0: float) -> float:
    return 1e12 * (i + 1) + 1000.0 * (t - t0) / STEP


def history(t0: float, t_end: float) -> list:
    grid = [t0 + k * STEP for k in range(int((t_end - t0) // STEP) + 1)]
    out: list = [
        (
            {"__name__": "nomade_filesystem_used_bytes", "node": node, "mountpoint": "/scratch"},
            [(t, fs_value(i, t, t0)) for t in grid],
        )
        for i, node in enumerate(NODES)
    ]
    out.append(({"__name__": "nomade_test_events_total", "partition": "cpu"}, [(t, 2.0 * (t - t0)) for t in grid]))
    out.append(({"__name__": "nomade_test_reason_info", "reason": REASON}, [(t, 1.0) for t in grid]))
    # a job that ran for the first hour only: absent from the later chunks of a split range query
    out.append(
        (
            {"__name__": "nomade_job_usage_memory_usage_bytes", "job_id": "42"},
            [(t, 1e9 + t - t0) for t in grid if t < t0 + 3600],
        )
    )
    return out


def client(url: str, **kw) -> PrometheusClient:
    c = PrometheusClient(url, **kw)
    c.sleeps = []
    c._sleep = c.sleeps.append
    return c


@pytest.fixture(scope="module", params=["prometheus", "victoriametrics"])
def server(request, tmp_path_factory):
    if request.param == "prometheus":
        require_binaries(PROMETHEUS, PROMTOOL)
        manager = prometheus_server
    else:
        require_binaries(VICTORIAMETRICS)
        manager = victoriametrics_server
    # a grid on whole minutes, ending two minutes ago (clear of VictoriaMetrics' 30 s -search.latencyOffset)
    t_end = math.floor(time.time() / 60) * 60 - 120.0
    t0 = t_end - 3 * 3600
    with manager(history(t0, t_end), tmp_path_factory.mktemp(request.param)) as proc:
        yield Loaded(proc, t0, t_end)


def by_labels(series: list[Series]) -> dict[frozenset, tuple]:
    return {frozenset(s.labels.items()): s.points for s in series}


def test_instant_query_returns_the_backfilled_values(server):
    c = client(server.proc.url)
    out = sorted(c.query("nomade_filesystem_used_bytes", time=server.t_end), key=lambda s: s.labels["node"])
    assert [s.labels["node"] for s in out] == list(NODES)
    assert [s.value for s in out] == [fs_value(i, server.t_end, server.t0) for i in range(3)]
    assert all(s.timestamp == server.t_end and s.labels["mountpoint"] == "/scratch" for s in out)
    (total,) = c.query("scalar(sum(nomade_filesystem_used_bytes))", time=server.t_end)
    assert total.labels == {} and total.value == sum(fs_value(i, server.t_end, server.t0) for i in range(3))
    (info,) = c.query("nomade_test_reason_info", time=server.t_end)
    assert info.labels["reason"] == REASON
    assert c.queries_issued == 3 and c.requests_sent == 3


def test_split_range_equals_unsplit_range(server):
    expr = '{__name__=~"nomade_filesystem_used_bytes|nomade_job_usage_memory_usage_bytes"}'
    whole_c, split_c = client(server.proc.url), client(server.proc.url, max_points=100)
    whole = whole_c.query_range(expr, server.t0, server.t_end, STEP)
    split = split_c.query_range(expr, server.t0, server.t_end, STEP)
    assert whole_c.requests_sent == 1
    assert split_c.queries_issued == 1 and split_c.requests_sent == 8  # 721 points in chunks of 100
    assert by_labels(split) == by_labels(whole)
    assert len(split) == 4
    grid = [server.t0 + k * STEP for k in range(721)]
    for s in split:
        if s.labels["__name__"] == "nomade_filesystem_used_bytes":
            i = NODES.index(s.labels["node"])
            assert s.points == tuple((t, fs_value(i, t, server.t0)) for t in grid)


def test_staleness_after_a_series_ends(server):
    # The job's last sample is at t0 + 3585 s. Prometheus carries it forward for its 5-minute lookback delta
    # (measured: 285 s at a 15 s step); VictoriaMetrics stops within about one sample interval (measured: 15 s
    # at a 15 s step, 0 at a 60 s step). Documented in promapi's module docstring: callers must not read
    # Prometheus' carried-forward points as fresh samples.
    c = client(server.proc.url)
    (job,) = c.query_range("nomade_job_usage_memory_usage_bytes", server.t0, server.t_end, STEP)
    last_sample = server.t0 + 3585
    carried = job.points[-1][0] - last_sample
    assert all(v == 1e9 + 3585 for t, v in job.points if t >= last_sample)
    if server.proc.name == "prometheus":
        assert 285 <= carried <= 300
    else:
        assert carried <= 2 * STEP


def test_points_per_series_limit_is_respected_by_splitting(server):
    # Prometheus refuses more than 11,000 points per series, VictoriaMetrics more than 30,000 (its default
    # -search.maxPointsPerTimeseries): pick a step that exceeds the server's limit over the 3 hours.
    if server.proc.name == "prometheus":
        step, message = 0.5, "exceeded maximum resolution of 11,000 points"
    else:
        step, message = 0.25, "maxPointsPerTimeseries"
    n = int(3 * 3600 / step) + 1
    expr = "nomade_test_events_total"
    with pytest.raises(PromQLError, match=message) as ei:
        client(server.proc.url, max_points=n).query_range(expr, server.t0, server.t_end, step)
    assert ei.value.status_code in (400, 422)
    c = client(server.proc.url)  # default max_points 10,000
    (s,) = c.query_range(expr, server.t0, server.t_end, step)
    assert c.requests_sent == math.ceil(n / 10_000)
    assert len(s.points) == n
    assert s.points[0] == (server.t0, 0.0) and s.points[-1][0] == server.t_end
    # between samples the instant value is the last sample's: 2 x seconds since t0, floored to the 15 s grid
    assert all(v == 2.0 * ((t - server.t0) // STEP * STEP) for t, v in s.points)


def test_series_labels_and_label_values(server):
    c = client(server.proc.url)
    t0, t1 = server.t0, server.t_end
    got = c.series("nomade_filesystem_used_bytes", t0, t1)
    assert sorted(got, key=lambda d: d["node"]) == [
        {"__name__": "nomade_filesystem_used_bytes", "mountpoint": "/scratch", "node": n} for n in NODES
    ]
    both = c.series(["nomade_filesystem_used_bytes", 'nomade_job_usage_memory_usage_bytes{job_id="42"}'], t0, t1)
    assert len(both) == 4
    assert sorted(c.labels(match="nomade_filesystem_used_bytes", start=t0, end=t1)) == [
        "__name__",
        "mountpoint",
        "node",
    ]
    assert {"job_id", "partition", "reason"} <= set(c.labels(start=t0, end=t1))
    assert c.label_values("node", match="nomade_filesystem_used_bytes", start=t0, end=t1) == list(NODES)
    assert c.label_values("reason", start=t0, end=t1) == [REASON]
    names = c.label_values("__name__", start=t0, end=t1)
    assert {"nomade_filesystem_used_bytes", "nomade_test_events_total", "nomade_test_reason_info"} <= set(names)
    with pytest.raises(PromQLError):
        c.series("nomade_filesystem_used_bytes{", t0, t1)


def test_post_answers_equal_get_answers(server):
    get, post = client(server.proc.url), client(server.proc.url, max_get_url=0)
    t0, t1 = server.t0, server.t_end
    for c in (get, post):
        c.results = [
            c.query("nomade_filesystem_used_bytes", time=t1),
            by_labels(c.query_range("nomade_filesystem_used_bytes", t0, t1, 60, max_points=50)),
            c.series("nomade_test_events_total", t0, t1),
            sorted(c.labels(match="nomade_test_events_total", start=t0, end=t1)),
        ]
    assert post.results == get.results
    assert (
        post.results[0]
        and post.results[1]
        and post.results[2] == [{"__name__": "nomade_test_events_total", "partition": "cpu"}]
    )


def test_rejected_expression_is_a_promql_error_and_not_retried(server):
    c = client(server.proc.url, retries=3)
    with pytest.raises(PromQLError) as ei:
        c.query("sum(nomade_test_events_total))", time=server.t_end)
    # Prometheus: 400 bad_data; VictoriaMetrics: 422 with errorType "422"
    expected = (400, "bad_data") if server.proc.name == "prometheus" else (422, "422")
    assert (ei.value.status_code, ei.value.error_type) == expected
    with pytest.raises(PromQLError):
        c.query_range("nomade_test_events_total{", server.t0, server.t_end, 60)
    assert c.requests_sent == 2 and c.sleeps == []


@pytest.mark.parametrize("kind", ["prometheus", "victoriametrics"])
def test_stopped_server_is_unavailable_after_retries(kind, tmp_path):
    if kind == "prometheus":
        require_binaries(PROMETHEUS)
        proc = start_prometheus(tmp_path / "tsdb", free_port())
    else:
        require_binaries(VICTORIAMETRICS)
        proc = start_victoriametrics(tmp_path / "vm", free_port())
    with proc:
        c = client(proc.url, retries=2, backoff=0.05)
        assert c.query("vector(1)")[0].value == 1.0
        proc.stop()
        with pytest.raises(PrometheusUnavailable) as ei:
            c.query("vector(1)")
    assert str(ei.value) == "Connection refused" and ei.value.status_code is None
    assert c.requests_sent == 1 + 3 and c.sleeps == [0.05, 0.1]


# -- TLS and basic auth, for real ------------------------------------------------------------------------------------

# bcrypt (cost 10) of "s3cret", for Prometheus' web config (basic_auth_users takes only bcrypt hashes).
S3CRET_BCRYPT = "$2b$10$abcdefghijklmnopqrstuu3KWNuWLhBnmgYfnzONPueahDuedC/lu"


def make_pki(d: Path) -> dict[str, str]:
    """A throw-away CA with a server certificate for 127.0.0.1 and a client certificate (openssl, EC P-256)."""

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=nomade-test-ca")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        ssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=nomade-{name}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return {k: str(d / k) for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture()
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path / "pki"
    d.mkdir()
    return make_pki(d)


def test_prometheus_with_mutual_tls_and_basic_auth(pki, tmp_path):
    require_binaries(PROMETHEUS)
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca.crt']}\n"
        f"basic_auth_users:\n  nomade: '{S3CRET_BCRYPT}'\n"
    )
    mtls = {"verify": pki["ca.crt"], "cert": (pki["client.crt"], pki["client.key"]), "auth": ("nomade", "s3cret")}
    port = free_port()
    with start_prometheus(tmp_path / "tsdb", port, [f"--web.config.file={web}"], scheme="https", probe=mtls) as proc:
        cert = (pki["client.crt"], pki["client.key"])
        good = client(proc.url, ca_file=pki["ca.crt"], cert=cert, auth=("nomade", "s3cret"))
        assert good.query("vector(7)")[0].value == 7.0
        # the system CAs do not know our CA: a TLS error, not retried
        wrong_ca = client(proc.url, cert=cert, auth=("nomade", "s3cret"), retries=3)
        with pytest.raises(PrometheusUnavailable, match="^TLS: .*certificate verify failed"):
            wrong_ca.query("vector(7)")
        assert wrong_ca.requests_sent == 1
        no_cert = client(proc.url, ca_file=pki["ca.crt"], auth=("nomade", "s3cret"), retries=0)
        with pytest.raises(PrometheusUnavailable):
            no_cert.query("vector(7)")
        bad_pw = client(proc.url, ca_file=pki["ca.crt"], cert=cert, auth=("nomade", "wrong"), retries=3)
        with pytest.raises(PrometheusUnavailable, match="HTTP 401") as ei:
            bad_pw.query("vector(7)")
        assert ei.value.status_code == 401 and bad_pw.requests_sent == 1


def test_victoriametrics_with_tls_and_basic_auth(pki, tmp_path):
    require_binaries(VICTORIAMETRICS)
    args = [
        "-tls",
        f"-tlsCertFile={pki['server.crt']}",
        f"-tlsKeyFile={pki['server.key']}",
        "-httpAuth.username=nomade",
        "-httpAuth.password=s3cret",
    ]
    probe = {"verify": pki["ca.crt"], "auth": ("nomade", "s3cret")}
    with start_victoriametrics(tmp_path / "vm", free_port(), args, scheme="https", probe=probe) as proc:
        good = client(proc.url, ca_file=pki["ca.crt"], auth=("nomade", "s3cret"))
        assert good.query("vector(7)")[0].value == 7.0
        bad_pw = client(proc.url, ca_file=pki["ca.crt"], auth=("nomade", "wrong"), retries=3)
        with pytest.raises(PrometheusUnavailable, match="HTTP 401") as ei:
            bad_pw.query("vector(7)")
        assert ei.value.status_code == 401 and bad_pw.requests_sent == 1
