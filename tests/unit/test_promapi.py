"""PrometheusClient against loopback fakes of the API: tests/fixtures/prom/fakeprom.py (canned answers by expression)
and, below, a recording server that also takes POSTs and look-ups and computes range answers from the request.

The same client runs against real Prometheus and VictoriaMetrics in tests/integration/test_promapi_servers.py.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import socket
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomade.analytics.promapi import (
    PrometheusClient,
    PrometheusUnavailable,
    PromQLError,
    Sample,
    Series,
    range_chunks,
)

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


# -- a recording fake: GET and POST, any path, answers computed by a handler ------------------------------------------


class Recorder:
    """Loopback server that records ``(method, path, [(param, value)...], headers)`` and answers ``handler(...)``.

    ``handler(method, path, params)`` returns ``(status, body)`` or ``(status, body, headers)``; a dict body is sent
    as JSON. Query-string and form parameters are both parsed into the same pair list (repeated keys kept).
    """

    def __init__(self, handler: Callable[..., tuple]) -> None:
        self.handler = handler
        self.calls: list[tuple[str, str, list[tuple[str, str]], dict[str, str]]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                params = parse_qsl(parts.query, keep_blank_values=True)
                if method == "POST":
                    raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                    assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
                    params += parse_qsl(raw, keep_blank_values=True)
                rec.calls.append((method, parts.path, params, dict(self.headers)))
                status, body, *rest = rec.handler(method, parts.path, params)
                raw_out = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (rest[0] if rest else {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(raw_out)))
                self.end_headers()
                self.wfile.write(raw_out)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def ok(data: Any, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"status": "success", "data": data, **extra}


def matrix_handler(align: bool = False) -> Callable[..., tuple]:
    """A range-query server over two synthetic series evaluated on the request's grid.

    ``a`` is ``v = t/10`` everywhere; ``b`` exists only for ``t < 1000`` (it disappears mid-range, as a finished
    job). ``align=True`` imitates VictoriaMetrics with its cache on: start rounded down, end rounded up to ``step``.
    """

    def handler(method: str, path: str, params: list[tuple[str, str]]) -> tuple:
        p = dict(params)
        start, end, step = (round(float(p[k]) * 1000) for k in ("start", "end", "step"))
        if align:
            start -= start % step
            end += (step - end % step) % step
        grid = range(start, end + 1, step)
        a = [[t / 1000, str(t / 10000)] for t in grid]
        b = [[t / 1000, "7"] for t in grid if t < 1_000_000]
        result = [{"metric": {"__name__": "x", "s": "a"}, "values": a}]
        if b:
            result.append({"metric": {"__name__": "x", "s": "b"}, "values": b})
        return ok({"resultType": "matrix", "result": result})

    return handler


def test_range_chunks_follow_the_unsplit_grid():
    # 10 points (0..900 s step 100 s), 4 per chunk → 4 + 4 + 2, each chunk one step after the previous one
    assert range_chunks(0, 900_000, 100_000, 4) == [(0, 300_000), (400_000, 700_000), (800_000, 900_000)]
    # end between grid points: the final chunk ends where the caller asked
    assert range_chunks(0, 950_000, 100_000, 5) == [(0, 400_000), (500_000, 900_000)]
    assert range_chunks(0, 950_000, 100_000, 4) == [(0, 300_000), (400_000, 700_000), (800_000, 950_000)]
    assert range_chunks(5, 5, 1000, 1) == [(5, 5)]


@given(
    start=st.integers(0, 2_000_000_000_000),
    step=st.integers(1, 3_600_000),
    n=st.integers(1, 500),
    extra=st.integers(0, 3_599_999),
    limit=st.integers(1, 60),
)
def test_range_chunks_cover_the_grid_exactly_once(start, step, n, extra, limit):
    end = start + (n - 1) * step + extra % step
    chunks = range_chunks(start, end, step, limit)
    points = [t for c0, c1 in chunks for t in range(c0, c1 + 1, step)]
    assert points == list(range(start, end + 1, step))
    assert all((c1 - c0) // step + 1 <= limit for c0, c1 in chunks)
    assert len(chunks) == -(-n // limit)


def test_query_range_is_split_and_merged_per_series():
    with Recorder(matrix_handler()) as srv:
        c = client(srv.url, max_points=4)
        out = c.query_range("x", 0, 1800, 100)  # 19 points → 5 requests
        whole = client(srv.url).query_range("x", 0, 1800, 100)
    sent = [(dict(p)["start"], dict(p)["end"]) for _, path, p, _ in srv.calls[:5]]
    assert sent == [("0", "300"), ("400", "700"), ("800", "1100"), ("1200", "1500"), ("1600", "1800")]
    assert all(dict(p)["step"] == "100" for _, _, p, _ in srv.calls)
    assert c.queries_issued == 1 and c.requests_sent == 5
    assert out == whole
    a, b = out
    assert a.labels == {"__name__": "x", "s": "a"}
    assert [t for t, _ in a.points] == [float(t) for t in range(0, 1801, 100)]
    assert a.points[7] == (700.0, 70.0)
    # b vanished after 900 s: present in the first three chunks only, merged into one series
    assert b.points == tuple((float(t), 7.0) for t in range(0, 901, 100))


def test_split_with_server_side_alignment_keeps_one_sample_per_timestamp():
    # VictoriaMetrics with its cache rounds each chunk outwards to the step: chunks then overlap by one point
    with Recorder(matrix_handler(align=True)) as srv:
        split = client(srv.url, max_points=3).query_range("x", 30, 1030, 100)
        whole = client(srv.url).query_range("x", 30, 1030, 100)
    assert split == whole
    assert [t for t, _ in split[0].points] == [float(t) for t in range(0, 1101, 100)]


def test_no_split_at_exactly_max_points():
    with Recorder(matrix_handler()) as srv:
        c = client(srv.url, max_points=10)
        c.query_range("x", 0, 900, 100)  # 10 points
        assert c.requests_sent == 1
        c.query_range("x", 0, 1000, 100, max_points=10)  # 11 points
        assert c.requests_sent == 3
        c.query_range("x", 0, 1000, 100, max_points=11)
        assert c.requests_sent == 4 and c.queries_issued == 3


def test_a_failing_chunk_fails_the_whole_range():
    def handler(method, path, params):
        if dict(params)["start"] == "400":
            return 422, {"status": "error", "errorType": "422", "error": "cannot exceed -search.maxPointsPerTimeseries"}
        return matrix_handler()(method, path, params)

    with Recorder(handler) as srv:
        c = client(srv.url, max_points=4, retries=2)
        with pytest.raises(PromQLError, match="maxPointsPerTimeseries") as ei:
            c.query_range("x", 0, 1800, 100)
    assert ei.value.status_code == 422
    assert c.requests_sent == 2  # first chunk, then the rejected one; no retry, no further chunk


def test_query_range_rejects_sub_millisecond_step_and_bad_max_points():
    c = client("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="1 ms"):
        c.query_range("up", 0, 10, 0.0001)
    with pytest.raises(ValueError, match="max_points"):
        c.query_range("up", 0, 10, 1, max_points=0)
    with pytest.raises(ValueError, match="max_points"):
        PrometheusClient("http://h:9090", max_points=0)
    assert c.requests_sent == 0


def test_long_queries_go_as_form_post():
    def handler(method, path, params):
        return ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, str(len(dict(params)["query"]))]}]})

    long_expr = "sum(" + " + ".join(f'x{{node="c{i}"}}' for i in range(400)) + ")"
    with Recorder(handler) as srv:
        c = client(srv.url)
        assert c.query("up", time=5)[0].value == 2
        assert c.query(long_expr, time=5)[0].value == len(long_expr)
        always = client(srv.url, max_get_url=0)
        always.query("up")
    (m1, _, p1, _), (m2, _, p2, _), (m3, _, p3, _) = srv.calls
    assert (m1, m2, m3) == ("GET", "POST", "POST")
    assert p2 == [("query", long_expr), ("time", "5")]
    assert p3 == [("query", "up")]


def test_series_labels_and_label_values():
    answers = {
        "/api/v1/series": ok([{"__name__": "up", "job": "a"}, {"__name__": "up", "job": "b"}]),
        "/api/v1/labels": ok(["__name__", "job"]),
        "/api/v1/label/job/values": ok(["a", "b"]),
    }
    with Recorder(lambda m, path, p: answers[path]) as srv:
        c = client(srv.url)
        assert c.series(["up", 'node_load1{job="b"}'], start=100, end=200.5) == [
            {"__name__": "up", "job": "a"},
            {"__name__": "up", "job": "b"},
        ]
        assert c.labels() == ["__name__", "job"]
        assert c.label_values("job", match="up", end=300) == ["a", "b"]
        with pytest.raises(ValueError, match="selector"):
            c.series([])
        with pytest.raises(ValueError, match="label name"):
            c.label_values("job/../../admin")
    assert [(m, path, p) for m, path, p, _ in srv.calls] == [
        (
            "GET",
            "/api/v1/series",
            [("match[]", "up"), ("match[]", 'node_load1{job="b"}'), ("start", "100"), ("end", "200.5")],
        ),
        ("GET", "/api/v1/labels", []),
        ("GET", "/api/v1/label/job/values", [("match[]", "up"), ("end", "300")]),
    ]
    assert c.queries_issued == 3 and c.requests_sent == 3


def test_label_values_stay_get_even_when_long():
    # Prometheus has no POST route for /api/v1/label/<name>/values
    with Recorder(lambda m, path, p: ok(["a"])) as srv:
        c = client(srv.url, max_get_url=0)
        c.label_values("job", match=["up"] * 50)
        c.labels(match="up")
    assert [m for m, *_ in srv.calls] == ["GET", "POST"]


def test_malformed_lookup_answer_is_unavailable():
    with Recorder(lambda m, path, p: ok({"not": "a list"})) as srv:
        with pytest.raises(PrometheusUnavailable, match="not a Prometheus API answer"):
            client(srv.url).labels()
    with Recorder(lambda m, path, p: ok(["up"])) as srv:
        with pytest.raises(PrometheusUnavailable, match="malformed series"):
            client(srv.url).series("up")


def test_lookup_rejected_selector_is_a_promql_error():
    body = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "match[]": 1:3: parse error'}
    with Recorder(lambda m, path, p: (400, body)) as srv:
        with pytest.raises(PromQLError, match="parse error") as ei:
            client(srv.url, retries=2).series("up{{")
    assert ei.value.expr == "up{{"


def test_bearer_token_file_is_read_for_every_request(tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    with Recorder(lambda m, path, p: ok(["a"])) as srv:
        c = client(srv.url, bearer_token_file=str(token))
        c.labels()
        token.write_text("rotated")
        c.labels()
        token.unlink()
        with pytest.raises(PrometheusUnavailable, match="cannot read bearer token file .*No such file"):
            c.labels()
        token.write_text("  \n")
        with pytest.raises(PrometheusUnavailable, match="is empty"):
            c.labels()
    assert [h["Authorization"] for *_, h in srv.calls] == ["Bearer first", "Bearer rotated"]
    assert c.requests_sent == 2


def test_basic_auth_and_static_bearer_headers_are_sent():
    with Recorder(lambda m, path, p: ok(["a"])) as srv:
        client(srv.url, auth=("nomade", "s3cret")).labels()
        client(srv.url, bearer_token="tok").labels()
    assert srv.calls[0][3]["Authorization"] == "Basic " + base64.b64encode(b"nomade:s3cret").decode()
    assert srv.calls[1][3]["Authorization"] == "Bearer tok"


def test_conflicting_or_missing_tls_and_auth_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    with pytest.raises(ValueError, match="at most one"):
        PrometheusClient("http://h:9090", auth=("u", "p"), bearer_token="t")
    with pytest.raises(ValueError, match="at most one"):
        PrometheusClient("http://h:9090", bearer_token="t", bearer_token_file=str(ca))
    with pytest.raises(ValueError, match="ca_file and verify"):
        PrometheusClient("https://h:9090", ca_file=str(ca), verify=False)
    with pytest.raises(ValueError, match="no such file"):
        PrometheusClient("https://h:9090", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="no such file"):
        PrometheusClient("https://h:9090", cert=(str(ca), str(tmp_path / "missing.key")))
    c = PrometheusClient("https://h:9090", ca_file=str(ca), cert=(str(ca), str(ca)))
    assert c._session.verify == str(ca) and c._session.cert == (str(ca), str(ca))


def test_ca_file_gone_at_request_time_is_unavailable_without_retry(tmp_path, monkeypatch):
    # REQUESTS_CA_BUNDLE would override a Session's verify in requests; the client must still use its ca_file
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    c = client("https://127.0.0.1:9", ca_file=str(ca), retries=3)
    ca.unlink()
    with pytest.raises(PrometheusUnavailable, match="TLS setup: .*CA certificate bundle"):
        c.query("up")
    assert c.requests_sent == 1 and c.sleeps == []


def test_is_partial_and_stats_from_victoriametrics():
    body = {
        "status": "success",
        "isPartial": True,
        "stats": {"seriesFetched": "3", "executionTimeMsec": 2},
        "data": {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [5, "1"]}]},
    }
    with Recorder(lambda m, path, p: (200, body)) as srv:
        c = client(srv.url)
        assert c.query("x") == [Sample({"a": "1"}, 1.0, 5.0)]
        assert c.last_partial is True
        assert c.last_warnings == ["isPartial: the answer lacks data from storage nodes that did not respond"]
        body["isPartial"] = False
        c.query("x")
    assert c.last_partial is False and c.last_warnings == []


def test_retry_after_is_honoured_up_to_max_backoff():
    answers = iter([(429, "slow down", {"Retry-After": "3"}), (503, "busy", {"Retry-After": "120"}), ok(["a"])])
    with Recorder(lambda m, path, p: next(answers)) as srv:
        c = client(srv.url, retries=2, backoff=0.1, max_backoff=10)
        assert c.labels() == ["a"]
    assert c.sleeps == [3.0, 10.0]
