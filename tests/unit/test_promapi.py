"""PrometheusClient against a loopback fake of the query API (tests/fixtures/prom/fakeprom.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nomade.analytics.promapi import PrometheusClient, PrometheusUnavailable, PromQLError, Sample, Series

PROM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prom"


def _load_fake():
    spec = importlib.util.spec_from_file_location("nomade_test_fakeprom", PROM_FIXTURES / "fakeprom.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fakeprom = _load_fake()


def canned(name: str):
    return json.loads((PROM_FIXTURES / name).read_text())


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(url: str, **kw) -> PrometheusClient:
    c = PrometheusClient(url, **kw)
    c.sleeps = []
    c._sleep = c.sleeps.append  # record backoff instead of sleeping
    return c


def test_query_vector_parses_labels_values_and_special_floats():
    with fakeprom.FakePrometheus({"nomade_filesystem_avail_bytes": [(200, canned("query_vector.json"))]}) as fake:
        c = client(fake.url)
        out = c.query("nomade_filesystem_avail_bytes", time=1718000000.123)
    # the native-histogram sample is skipped: three float samples remain
    assert len(out) == 3
    root = out[0]
    assert isinstance(root, Sample)
    assert root.name == "nomade_filesystem_avail_bytes"
    assert root.labels["mountpoint"] == "/" and root.labels["node"] == "c1"
    assert root.value == 53687091200.0
    assert root.timestamp == pytest.approx(1718000000.123)
    assert math.isnan(out[1].value)
    assert out[2].value == math.inf
    assert fake.requests == [("/api/v1/query", {"query": "nomade_filesystem_avail_bytes", "time": "1718000000.123"})]
    assert c.queries_issued == 1 and c.requests_sent == 1


def test_query_scalar_becomes_one_unlabelled_sample():
    with fakeprom.FakePrometheus({"scalar(1+1)": [(200, canned("query_scalar.json"))]}) as fake:
        out = client(fake.url).query("scalar(1+1)")
    assert out == [Sample({}, 2.0, 1718000000.0)]
    # no time given: the server's "now" is used, so no time parameter is sent
    assert fake.requests[0][1] == {"query": "scalar(1+1)"}


def test_query_datetime_time_is_sent_as_unix_seconds():
    with fakeprom.FakePrometheus({"up": [(200, fakeprom.vector(({"job": "x"}, 1)))]}) as fake:
        client(fake.url).query("up", time=datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC))
    assert fake.requests[0][1]["time"] == "1718000000"


def test_query_range_returns_series_and_sends_parameters():
    expr = 'nomade_filesystem_avail_bytes{mountpoint="/scratch"}'
    with fakeprom.FakePrometheus({expr: [(200, canned("query_range_matrix.json"))]}) as fake:
        c = client(fake.url + "/")  # a trailing slash must not double in the path
        out = c.query_range(expr, 1718000000, datetime.fromtimestamp(1718000120, UTC), timedelta(minutes=1))
    assert out == [
        Series(
            {"mountpoint": "/scratch", "node": "c1"},
            ((1718000000.0, 1000.0), (1718000060.0, 1060.5), (1718000120.0, 1200.0)),
        ),
        Series({"mountpoint": "/scratch", "node": "c2"}, ((1718000060.0, 7.0),)),
    ]
    assert fake.requests == [
        ("/api/v1/query_range", {"query": expr, "start": "1718000000", "end": "1718000120", "step": "60"})
    ]


def test_query_range_validates_arguments_before_sending():
    c = client("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="step"):
        c.query_range("up", 0, 10, 0)
    with pytest.raises(ValueError, match="precedes"):
        c.query_range("up", 10, 0, 1)
    assert c.requests_sent == 0


def test_instant_query_with_range_result_is_a_promql_error():
    with fakeprom.FakePrometheus({"up[5m]": [(200, canned("query_range_matrix.json"))]}) as fake:
        with pytest.raises(PromQLError) as ei:
            client(fake.url).query("up[5m]")
    assert ei.value.error_type == "unexpected_result"


@pytest.mark.parametrize(
    ("status", "fixture", "error_type"),
    [
        (400, "error_bad_data.json", "bad_data"),
        (422, "error_execution.json", "execution"),
        (200, "error_bad_data.json", "bad_data"),  # status "error" in a 2xx body
    ],
)
def test_rejected_expression_raises_promql_error_without_retry(status, fixture, error_type):
    with fakeprom.FakePrometheus({"sum(up))": [(status, canned(fixture))]}) as fake:
        c = client(fake.url, retries=3)
        with pytest.raises(PromQLError) as ei:
            c.query("sum(up))")
    err = ei.value
    assert err.error_type == error_type
    assert err.expr == "sum(up))"
    assert err.status_code == status
    assert canned(fixture)["error"] in str(err)
    assert len(fake.requests) == 1 and c.sleeps == []


def test_plain_text_400_is_not_an_api_answer():
    # VictoriaMetrics under a wrong path prefix: 400 with a text body, not a rejected expression
    body = 'remoteAddr: "127.0.0.1:58962"; requestURI: /foo/api/v1/query?query=up; unsupported path requested'
    with fakeprom.FakePrometheus({"up": [(400, body)]}) as fake:
        c = client(fake.url, retries=2)
        with pytest.raises(PrometheusUnavailable) as ei:
            c.query("up")
    assert str(ei.value).startswith("HTTP 400 Bad Request, not a Prometheus API answer: remoteAddr:")
    assert ei.value.status_code == 400
    assert c.requests_sent == 1


def test_503_then_success_is_retried_with_backoff():
    answers = [(503, "Service Unavailable"), (503, canned("error_timeout.json")), (200, canned("query_scalar.json"))]
    with fakeprom.FakePrometheus({"scalar(1+1)": answers}) as fake:
        c = client(fake.url, retries=2, backoff=0.25)
        out = c.query("scalar(1+1)")
    assert out[0].value == 2.0
    assert len(fake.requests) == 3
    assert c.sleeps == [0.25, 0.5]  # exponential: backoff, 2 x backoff
    assert c.queries_issued == 1 and c.requests_sent == 3


def test_persistent_5xx_raises_unavailable_after_retries():
    with fakeprom.FakePrometheus({"up": [(503, canned("error_timeout.json"))]}) as fake:
        c = client(fake.url, retries=2, backoff=0.1)
        with pytest.raises(PrometheusUnavailable) as ei:
            c.query("up")
    assert len(fake.requests) == 3
    assert ei.value.status_code == 503
    assert "HTTP 503" in str(ei.value) and "query timed out" in str(ei.value)


def test_connection_refused_is_unavailable_with_a_short_reason():
    url = closed_port_url()
    c = client(url, retries=1, backoff=0.01)
    with pytest.raises(PrometheusUnavailable) as ei:
        c.query("up")
    assert str(ei.value) == "Connection refused"
    assert ei.value.url == url + "/api/v1/query"
    assert c.requests_sent == 2 and c.sleeps == [0.01]


def test_read_timeout_is_unavailable():
    # a listening socket that never answers: the read times out
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        c = client(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=0.2, retries=1)
        with pytest.raises(PrometheusUnavailable, match=r"no answer within 0.2 s"):
            c.query("up")
    assert c.requests_sent == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/not-prometheus", "HTTP 404"),
    ],
)
def test_wrong_path_prefix_is_unavailable_without_retry(path, message):
    with fakeprom.FakePrometheus({"up": [(200, canned("query_scalar.json"))]}) as fake:
        c = client(fake.url + path, retries=3)
        with pytest.raises(PrometheusUnavailable, match=message):
            c.query("up")
    assert len(fake.requests) == 1


def test_html_200_is_not_an_api_answer():
    with fakeprom.FakePrometheus({"up": [(200, "<html>login</html>")]}) as fake:
        with pytest.raises(PrometheusUnavailable, match="not a Prometheus API answer"):
            client(fake.url).query("up")


def test_warnings_are_kept():
    with fakeprom.FakePrometheus({"up": [(200, canned("query_warnings.json"))]}) as fake:
        c = client(fake.url)
        assert c.query("up") == []
    assert c.last_warnings == ["partial response: store gateway eu-1 unreachable"]


def test_bearer_token_and_basic_auth_are_sent():
    c = PrometheusClient("https://prom.example:9090/prefix", bearer_token="s3cret", verify="/etc/ca.pem")
    assert c._session.headers["Authorization"] == "Bearer s3cret"
    assert c._session.verify == "/etc/ca.pem"
    assert c.base_url == "https://prom.example:9090/prefix"
    c2 = PrometheusClient("http://h:9090", auth=("u", "p"))
    assert c2._session.auth == ("u", "p")


@pytest.mark.parametrize("bad", ["127.0.0.1:9090", "ftp://h/", "http://", ""])
def test_base_url_must_be_http(bad):
    with pytest.raises(ValueError):
        PrometheusClient(bad)
