"""The analytics service when Prometheus is down, slow, or answers errors; and its recovery without a restart.

The real :class:`~nomade.analytics.service.AnalyticsService` and :class:`~nomade.analytics.promapi.PrometheusClient`
run in-process; what they talk to is real:

* **down**: a real Prometheus (``tests/backfill.py``) loaded with two scenario histories, stopped between cycles
  and started again on the same port and data directory; the service's ``/metrics`` is also scraped over HTTP
  during the outage;
* **slow**: the same Prometheus behind a loopback TCP proxy (a thread) that holds every response back longer than
  the client's timeout, then lets them through again;
* **errors**: a fake HTTP server that answers 500, 503 (Prometheus' answer to a query timeout), 400 ``bad_data``
  (a rejected expression) or 200 with a body that is not the API's JSON, then answers properly again.

What must hold throughout (issue 4): the last good values keep being served unchanged, ``nomade_analytics_up``
drops to 0, ``nomade_analytics_last_success_timestamp_seconds`` keeps the last good cycle's time, the client
retries what is worth retrying (counted on the server side, not only by the client), and the next cycle after the
server is back publishes fresh values with ``up`` 1. The client runs with a 1 s timeout, 2 retries and a 50 ms
backoff so that a failing cycle takes seconds, not minutes.
"""

from __future__ import annotations

import json
import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from backfill import (
    PROMETHEUS,
    PROMTOOL,
    backfill_prometheus,
    free_port,
    openmetrics_text,
    require_binaries,
    start_prometheus,
)
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from scenarios import BY_NAME, HOUR, SIZE_METRIC, Scenario

from nomade.analytics.config import AnalyticsConfig, Watch
from nomade.analytics.promapi import PrometheusClient
from nomade.analytics.service import AnalyticsService
from nomade.exporter.server import serve

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
RETRIES = 2
ATTEMPTS = RETRIES + 1
SCEN = (BY_NAME["linear"], BY_NAME["exponential"])
TREND_NAMES = (
    "nomade_trend_level",
    "nomade_trend_slope_per_second",
    "nomade_trend_time_to_threshold_seconds",
    "nomade_trend_state",
    "nomade_trend_projected_value",
)


def now_aligned() -> float:
    return math.floor(time.time() / 60) * 60 - 120.0


def watch(s: Scenario) -> Watch:
    sel = f'{{scenario="{s.name}"}}'
    return Watch(
        name=s.name,
        query=f"{s.metric}{sel}",
        threshold_query=f"{SIZE_METRIC}{sel}",
        unit=s.unit,
        window=6 * HOUR,
        step=s.interval,
        horizons=(("1h", HOUR),),
    )


def make_service(url: str, clock: list[float]) -> tuple[AnalyticsService, PrometheusClient]:
    client = PrometheusClient(url, timeout=TIMEOUT, retries=RETRIES, backoff=0.05, max_backoff=0.2)
    cfg = AnalyticsConfig(prometheus_url=url, watches=[watch(s) for s in SCEN], timeout=TIMEOUT, retries=RETRIES)
    return AnalyticsService(cfg, client, clock=lambda: clock[0]), client


def exposition(svc: AnalyticsService) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in svc.collect():
        for smp in fam.samples:
            out.setdefault(smp.name, []).append((dict(smp.labels), smp.value))
    return out


def value(exp: dict, name: str, **labels: str) -> float | None:
    hits = [v for lab, v in exp.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


def trends(exp: dict) -> dict[str, list]:
    return {name: sorted((sorted(lab.items()), v) for lab, v in exp.get(name, [])) for name in TREND_NAMES}


def assert_stale_but_served(exp: dict, good: dict, last_success: float) -> None:
    """The failure contract: up 0, the last success time kept, every trend value as the last good cycle left it."""
    assert value(exp, "nomade_analytics_up") == 0.0
    assert value(exp, "nomade_analytics_last_success_timestamp_seconds") == last_success
    assert trends(exp) == trends(good)
    assert all(trends(good)[n] for n in TREND_NAMES)  # and there was something to serve


# -- down ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def loaded_prometheus(tmp_path) -> Iterator[tuple[object, float]]:
    """A real Prometheus holding the linear and exponential scenarios (8 h up to ``now``); stopped at the end."""
    require_binaries(PROMETHEUS, PROMTOOL)
    now = now_aligned()
    history = [item for s in SCEN for item in s.history(now)]
    tsdb = tmp_path / "prometheus-data"
    backfill_prometheus(openmetrics_text(history), tsdb)
    proc = start_prometheus(tsdb, free_port())
    holder = {"proc": proc}
    try:
        yield holder, now
    finally:
        holder["proc"].stop()


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out.setdefault(smp.name, []).append((dict(smp.labels), smp.value))
    return out


def test_prometheus_down_then_back(loaded_prometheus):
    holder, now = loaded_prometheus
    proc = holder["proc"]
    # Cycles at now - 120, now - 60 and now: each has its full window of history (loaded up to now).
    clock = [now - 120.0]
    svc, client = make_service(proc.url, clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(svc)
    http_port = free_port()
    server = serve(registry, "127.0.0.1", http_port)
    try:
        assert svc.run_cycle() is True
        good = exposition(svc)
        assert value(good, "nomade_analytics_up") == 1.0
        assert value(good, "nomade_trend_state", watch="linear", state="linear_growth") == 1.0
        sent = client.requests_sent
        assert sent == 4  # a range and a threshold query per watch

        proc.stop()
        clock[0] = now - 60.0
        t0 = time.monotonic()
        assert svc.run_cycle() is False
        elapsed = time.monotonic() - t0
        down = exposition(svc)
        assert_stale_but_served(down, good, last_success=now - 120.0)
        # connection refused: the first query was tried 1 + RETRIES times, then the cycle gave up on the rest
        # (the other watches would meet the same closed port)
        assert client.requests_sent - sent == ATTEMPTS
        assert elapsed < 5.0
        assert value(down, "nomade_analytics_cycle_errors_total", watch="linear", reason="unavailable") == 1
        assert value(down, "nomade_analytics_cycle_errors_total", watch="exponential", reason="unavailable") is None
        assert value(down, "nomade_analytics_cycles_total", result="failure") == 1
        # the same over HTTP: a scrape during the outage gets the last values and up 0
        over_http = scrape(http_port)
        assert value(over_http, "nomade_analytics_up") == 0.0
        assert trends(over_http) == trends(good)

        # back on the same port and data, without touching the service
        holder["proc"] = start_prometheus(proc.data_dir, proc.port)
        clock[0] = now
        assert svc.run_cycle() is True
        back = exposition(svc)
        assert value(back, "nomade_analytics_up") == 1.0
        assert value(back, "nomade_analytics_last_success_timestamp_seconds") == now
        assert value(back, "nomade_analytics_watch_last_success_timestamp_seconds", watch="exponential") == now
        assert value(back, "nomade_analytics_cycles_total", result="success") == 2
        # fresh values: fitted at `now`, one minute of growth later than the last good ones (5 %/h of 10 TB)
        s = BY_NAME["linear"]
        lvl_before = value(good, "nomade_trend_level", watch="linear")
        lvl_after = value(back, "nomade_trend_level", watch="linear")
        assert lvl_after - lvl_before == pytest.approx(120.0 * s.slope_now, rel=0.1)
        assert value(back, "nomade_trend_time_to_threshold_seconds", watch="linear") == pytest.approx(
            s.crossing, rel=0.02
        )
    finally:
        server.shutdown()
        client.close()


# -- slow -------------------------------------------------------------------------------------------------------------


class SlowProxy:
    """A loopback TCP proxy that holds each HTTP response back ``delay`` seconds; counts the requests it relays.

    Every accepted connection gets its own upstream connection and thread; a request is counted when its request
    line (``GET /api/...`` or ``POST /api/...``) goes through. The delay is applied once per request, before the
    first bytes of the answer are passed on; a client that gave up meanwhile just finds its connection closed.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        pending = False
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, up], [], [], 0.2)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    n = data.count(b"GET /api/") + data.count(b"POST /api/")
                    if n:
                        with self._lock:
                            self.requests += n
                        pending = True
                    up.sendall(data)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        return
                    if pending and self.delay:
                        time.sleep(self.delay)
                    pending = False
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_prometheus_slow_then_fast_again(loaded_prometheus):
    holder, now = loaded_prometheus
    proxy = SlowProxy(holder["proc"].port)
    clock = [now - 120.0]
    svc, client = make_service(f"http://127.0.0.1:{proxy.port}", clock)
    try:
        assert svc.run_cycle() is True
        good = exposition(svc)
        assert proxy.requests == 4

        proxy.delay = 3 * TIMEOUT  # every answer arrives after the client has given up
        clock[0] = now - 60.0
        before = proxy.requests
        t0 = time.monotonic()
        assert svc.run_cycle() is False
        elapsed = time.monotonic() - t0
        slow = exposition(svc)
        assert_stale_but_served(slow, good, last_success=now - 120.0)
        # the server really saw the retries: 1 + RETRIES attempts of the first query, each abandoned at the timeout
        assert proxy.requests - before == ATTEMPTS
        assert client.requests_sent == 4 + ATTEMPTS
        assert ATTEMPTS * TIMEOUT <= elapsed < ATTEMPTS * TIMEOUT + 3.0
        assert value(slow, "nomade_analytics_cycle_duration_seconds") >= ATTEMPTS * TIMEOUT
        assert value(slow, "nomade_analytics_cycle_errors_total", watch="linear", reason="unavailable") == 1

        proxy.delay = 0.0
        clock[0] = now
        assert svc.run_cycle() is True
        back = exposition(svc)
        assert value(back, "nomade_analytics_up") == 1.0
        assert value(back, "nomade_analytics_last_success_timestamp_seconds") == now
        assert value(back, "nomade_analytics_cycle_duration_seconds") < TIMEOUT
        assert trends(back) != trends(good)  # recomputed at the new time
    finally:
        proxy.close()
        client.close()


# -- errors -----------------------------------------------------------------------------------------------------------


class FakePrometheus:
    """An HTTP server speaking just enough of the Prometheus API, with a switchable failure ``mode``.

    ``ok``: range queries answer the scenario's samples on the asked grid (``/api/v1/query_range``), instant
    queries the size (``/api/v1/query``). Failure modes: ``500`` (plain-text internal error), ``503`` (what
    Prometheus answers for a query timeout: JSON ``errorType`` ``timeout``), ``promql`` (400 ``bad_data``: the
    expression is rejected), ``garbage`` (200 with an HTML body, as a misconfigured proxy gives). ``requests``
    counts the API requests received.
    """

    def __init__(self, now: float) -> None:
        self.mode = "ok"
        self.requests = 0
        self.now = now
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake.requests += 1
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, ctype, body = fake.answer(url.path, params)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        js = "application/json"
        if self.mode == "500":
            return 500, "text/plain", b"internal server error\n"
        if self.mode == "503":
            err = {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
            return 503, js, json.dumps(err).encode()
        if self.mode == "promql":
            err = {"status": "error", "errorType": "bad_data", "error": '1:10: parse error: unexpected "}"'}
            return 400, js, json.dumps(err).encode()
        if self.mode == "garbage":
            return 200, "text/html", b"<html><body>Sign in to continue</body></html>"
        expr = params.get("query", "")
        s = next(x for x in SCEN if f'"{x.name}"' in expr)
        labels = {k: v for k, v in s.labels.items() if k != "__name__"}
        if path.endswith("/query_range"):
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            t, v = s.samples(start - self.now, end - self.now)
            values = [
                [self.now + a, repr(float(b))] for a, b in zip(t, v, strict=True) if (a + self.now - start) % step == 0
            ]
            data = {"resultType": "matrix", "result": [{"metric": {"__name__": s.metric, **labels}, "values": values}]}
        else:
            t_eval = float(params.get("time", self.now))
            data = {
                "resultType": "vector",
                "result": [{"metric": {"__name__": SIZE_METRIC, **labels}, "value": [t_eval, repr(s.threshold)]}],
            }
        return 200, js, json.dumps({"status": "success", "data": data}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# mode -> (requests the server receives in the failing cycle, the error reason counted per watch)
ERROR_MODES = {
    # retried (5xx), and the cycle goes on to the next watch: the server answered, only not usefully
    "500": (len(SCEN) * ATTEMPTS, "unavailable"),
    "503": (len(SCEN) * ATTEMPTS, "unavailable"),
    # a rejected expression is not retried: 1 request per watch
    "promql": (len(SCEN), "promql"),
    # not the API's JSON: not retried (a login page will not turn into JSON), counted as unavailable
    "garbage": (len(SCEN), "unavailable"),
}


@pytest.mark.parametrize("mode", list(ERROR_MODES))
def test_prometheus_answering_errors_then_healthy(mode):
    now = now_aligned()
    fake = FakePrometheus(now)
    clock = [now - 120.0]
    svc, client = make_service(fake.url, clock)
    try:
        assert svc.run_cycle() is True
        good = exposition(svc)
        assert value(good, "nomade_trend_state", watch="exponential", state="accelerating_growth") == 1.0
        assert fake.requests == 4

        fake.mode = mode
        clock[0] = now - 60.0
        assert svc.run_cycle() is False
        bad = exposition(svc)
        # every watch failed (none evaluated), so the cycle failed; the old values stay
        assert_stale_but_served(bad, good, last_success=now - 120.0)
        expected_requests, reason = ERROR_MODES[mode]
        assert fake.requests - 4 == expected_requests
        for s in SCEN:
            assert value(bad, "nomade_analytics_cycle_errors_total", watch=s.name, reason=reason) == 1
            assert value(bad, "nomade_analytics_watch_last_success_timestamp_seconds", watch=s.name) == now - 120.0
        # a second failing cycle changes nothing but the counters
        clock[0] = now - 30.0
        assert svc.run_cycle() is False
        again = exposition(svc)
        assert_stale_but_served(again, good, last_success=now - 120.0)
        assert value(again, "nomade_analytics_cycles_total", result="failure") == 2

        fake.mode = "ok"
        clock[0] = now
        assert svc.run_cycle() is True
        back = exposition(svc)
        assert value(back, "nomade_analytics_up") == 1.0
        assert value(back, "nomade_analytics_last_success_timestamp_seconds") == now
        for s in SCEN:
            assert value(back, "nomade_analytics_watch_last_success_timestamp_seconds", watch=s.name) == now
        assert value(back, "nomade_trend_state", watch="linear", state="linear_growth") == 1.0
        assert value(back, "nomade_trend_time_to_threshold_seconds", watch="linear") == pytest.approx(
            BY_NAME["linear"].crossing, rel=0.02
        )
    finally:
        fake.close()
        client.close()
