"""A client for the Prometheus HTTP API: instant and range queries, series and label look-ups.

It speaks the documented API (https://prometheus.io/docs/prometheus/latest/querying/api/), which Prometheus,
VictoriaMetrics, Thanos Query and Mimir all serve, so it is the only way the rest of NØMADE reads history. It is
tested against real Prometheus 2.42 and VictoriaMetrics 1.79 servers (tests/integration/test_promapi_servers.py).

Errors fall into two kinds, because callers react to them differently:

* :class:`PromQLError` — the server understood the request and rejected the *expression*: HTTP 400
  (``errorType`` ``bad_data``) or 422 (``execution``; VictoriaMetrics answers 422 with ``errorType`` ``"422"`` for
  parse errors too), or any body with ``"status": "error"`` and a 2xx code. Retrying cannot help; the query must
  change. Asking for too many points per series is one of these (Prometheus: 400 "exceeded maximum resolution of
  11,000 points per timeseries"; VictoriaMetrics: 422 "cannot exceed -search.maxPointsPerTimeseries"):
  :meth:`PrometheusClient.query_range` splits ranges so that it does not happen.
* :class:`PrometheusUnavailable` — the server could not be used: connection refused, DNS failure, TLS error,
  timeout, HTTP 5xx (503 is also what Prometheus answers for ``errorType`` ``timeout``/``canceled``), 429,
  another 4xx (401/403/404: wrong URL or credentials), a body that is not the API's JSON (whatever its code), or
  an unreadable bearer-token file. Transport errors, timeouts, 5xx and 429 are retried ``retries`` times with
  exponential backoff (a longer ``Retry-After`` is honoured, up to ``max_backoff``); the others fail at once. TLS
  verification failures are not retried: a wrong CA does not heal in seconds.

Requests go as GET, which proxies log and cache, unless the URL would exceed ``max_get_url`` characters (8,000 by
default: under nginx's default 8 KiB request-line buffer, ``large_client_header_buffers 4 8k``, and Apache's
``LimitRequestLine 8190``; Prometheus' and VictoriaMetrics' Go servers accept 1 MiB of headers; 0 means always
POST): then as a form-encoded POST, which
``/api/v1/query``, ``/query_range``, ``/series`` and ``/labels`` accept on Prometheus and VictoriaMetrics alike.
Label-value look-ups are always GET (Prometheus has no POST route for ``/api/v1/label/<name>/values``).

Cost accounting: ``queries_issued`` counts logical API calls (one per :meth:`~PrometheusClient.query`,
:meth:`~PrometheusClient.query_range`, :meth:`~PrometheusClient.series`... call), ``requests_sent`` the HTTP
requests they took, range chunks and retries included. ``requests_sent`` is the honest figure of the load put on
the server: a service that reports its query cost (``nomade_analytics_queries_total``) should report this one, as
logical queries hide range chunks and retries.

Prometheus and VictoriaMetrics differences, as the client handles them (measured on the versions above):

* Extra keys: VictoriaMetrics may add ``stats`` (ignored, as Prometheus' optional ``stats``) and ``isPartial``
  (cluster version, some vmstorage nodes did not answer): a partial answer is still returned, and recorded in
  ``last_partial`` and ``last_warnings`` so that callers can distrust it.
* Points per series: Prometheus refuses more than 11,000 (hard-coded), VictoriaMetrics more than
  ``-search.maxPointsPerTimeseries`` (30,000 by default). Ranges of more than ``max_points`` (10,000) steps are
  split into chunks on the unsplit query's own grid (``start + k*step``) and merged per series.
* Grid alignment: with its response cache on (the default), VictoriaMetrics rounds a range's start down and its end
  up to multiples of ``step``, so its timestamps differ from Prometheus' ``start + k*step`` when ``start`` is not a
  multiple of ``step``, and a chunk may then repeat the previous chunk's last point: the merge keeps one sample per
  timestamp. Callers that compare servers should align ``start`` to ``step``.
* Staleness: Prometheus carries a series' last sample forward for up to its 5-minute lookback delta in range
  queries (backfilled or remote-written data has no staleness markers to stop it sooner); VictoriaMetrics stops
  within about one sample interval, judging gaps from the series' own spacing (measured on a series with 15 s
  samples that ended: Prometheus 285 s of repeated points at a 15 s step, VictoriaMetrics 15 s). Instant
  queries look back 5 minutes on both (VictoriaMetrics takes an optional ``step`` as that window; the client
  never sends it, so both use their default).
* Look-ups without ``start``/``end``: Prometheus searches all of its data, VictoriaMetrics only the recent past
  (``/api/v1/series`` found nothing four days old). Pass both for portable answers.
"""

from __future__ import annotations

import os
import re
import threading
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

__all__ = [
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnavailable",
    "PromQLError",
    "Sample",
    "Series",
    "range_chunks",
]

TimeLike = float | int | datetime
"""A point in time: Unix seconds, or a datetime (naive datetimes are local time, as ``datetime.timestamp``)."""

# HTTP codes worth another attempt: server-side trouble and rate limiting (Mimir, VictoriaMetrics' vmauth).
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# The API's documented codes for a rejected expression ("Format overview" in the API documentation).
_PROMQL_STATUS = frozenset({400, 422})
# Label names of the Prometheus data model (https://prometheus.io/docs/concepts/data_model/).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or an instant query's scalar result, with empty labels).

    Attributes:
        labels: the series labels, including ``__name__`` when the expression keeps it.
        value: the sample value (``NaN``/``±Inf`` are kept as floats).
        timestamp: evaluation time, Unix seconds.

    """

    labels: Mapping[str, str]
    value: float
    timestamp: float

    @property
    def name(self) -> str:
        """The metric name (``__name__``), or ``""`` when the expression dropped it (aggregations, functions)."""
        return self.labels.get("__name__", "")


@dataclass(frozen=True)
class Series:
    """One series of a range query.

    Attributes:
        labels: the series labels.
        points: ``(timestamp, value)`` pairs in time order; timestamps in Unix seconds.

    """

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...] = field(default=())


class PrometheusError(Exception):
    """Base class of the client's errors."""


class PromQLError(PrometheusError):
    """The server rejected the expression (HTTP 400/422 or ``"status": "error"``); retrying will not help.

    Attributes:
        error_type: the API's ``errorType`` (``bad_data``, ``execution``...), or ``""``.
        expr: the expression that was sent.
        status_code: the HTTP status code.

    """

    def __init__(self, message: str, error_type: str = "", expr: str = "", status_code: int | None = None) -> None:
        super().__init__(f"{error_type}: {message}" if error_type else message)
        self.error_type = error_type
        self.expr = expr
        self.status_code = status_code


class PrometheusUnavailable(PrometheusError):
    """The endpoint could not answer usefully (transport error, timeout, 5xx, 429, auth or URL error, non-API body).

    Attributes:
        url: the URL that was requested.
        status_code: the HTTP status code when there was an HTTP answer, else ``None``.

    """

    def __init__(self, message: str, url: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code


def _format_time(t: TimeLike) -> str:
    """Unix seconds with millisecond precision, the resolution of Prometheus timestamps."""
    seconds = t.timestamp() if isinstance(t, datetime) else float(t)
    return _num(seconds)


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _describe_transport_error(exc: BaseException) -> str:
    """A one-line reason for a requests transport error ("Connection refused", "Name or service not known").

    requests wraps urllib3's MaxRetryError, which wraps NewConnectionError, which was raised from the socket's
    OSError; the innermost OSError carrying ``strerror`` is what an operator needs to read.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror and not isinstance(e, requests.RequestException):
            return str(e.strerror)
        nxt = [a for a in e.args if isinstance(a, BaseException)]
        nxt += [x for x in (getattr(e, "reason", None), e.__cause__, e.__context__) if isinstance(x, BaseException)]
        todo.extend(nxt)
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _parse_value(pair: Any) -> tuple[float, float]:
    """``[<unix seconds>, "<value>"]`` → ``(timestamp, value)``; values are strings in the API ("NaN", "+Inf")."""
    ts, raw = pair
    return float(ts), float(raw)


class PrometheusClient:
    """Client of one Prometheus-compatible API endpoint.

    Args:
        base_url: the server root, possibly with a path prefix (``http://host:9090``,
            ``https://vm.example/select/0/prometheus``); ``/api/v1/...`` is appended.
        timeout: seconds to wait for each HTTP request (connect and read).
        retries: further attempts after a retryable failure (so ``retries + 1`` requests at most).
        backoff: seconds before the first retry; doubled before each later one.
        auth: ``(user, password)`` for HTTP basic authentication.
        bearer_token: sent as ``Authorization: Bearer <token>``.
        verify: TLS verification: ``True``, ``False`` or the path of a CA bundle (as in requests).
        bearer_token_file: a file holding the bearer token; read again for every request, so that a rotated token
            (Kubernetes service-account tokens, vault agents) is picked up without a restart.
        ca_file: PEM bundle of the CAs that sign the server's certificate (same as ``verify=<path>``).
        cert: client certificate for mutual TLS: a PEM file holding certificate and key, or ``(cert, key)``.
        max_points: most evaluation steps per range request; longer ranges are split (see :meth:`query_range`).
            10,000 stays under both Prometheus' 11,000 and VictoriaMetrics' default 30,000. Keep it at least one
            below a server's limit: VictoriaMetrics' grid alignment can add a point to a chunk.
        max_get_url: longest URL sent as GET; longer requests go as a form-encoded POST (0: always POST).
        max_backoff: cap, seconds, on one wait between attempts (also on a server's ``Retry-After``).

    Attributes:
        queries_issued: logical API calls made (:meth:`query`, :meth:`query_range`, :meth:`series`,
            :meth:`labels`, :meth:`label_values`); retries and range chunks of the same call are not counted again.
        requests_sent: HTTP requests actually sent, range chunks and retries included: the cost on the server.
        last_warnings: the ``warnings`` of the last successful call (all chunks), e.g. partial Thanos results.
        last_partial: whether the last successful call's answer had ``isPartial: true`` (VictoriaMetrics cluster).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL with a host; more than one of ``auth``, ``bearer_token``,
            ``bearer_token_file``; ``ca_file`` together with a ``verify`` other than ``True``; a ``ca_file`` or
            ``cert`` file that does not exist; ``max_points`` < 1.

    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 10,
        retries: int = 2,
        backoff: float = 0.5,
        auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        verify: bool | str = True,
        *,
        bearer_token_file: str | None = None,
        ca_file: str | None = None,
        cert: str | tuple[str, str] | None = None,
        max_points: int = 10_000,
        max_get_url: int = 8000,
        max_backoff: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if sum(x is not None and x != "" for x in (auth, bearer_token, bearer_token_file)) > 1:
            raise ValueError("give at most one of auth, bearer_token, bearer_token_file")
        if ca_file is not None:
            if verify is not True:
                raise ValueError("ca_file and verify both set: give the CA bundle once")
            verify = ca_file
        for path in [ca_file] + ([cert] if isinstance(cert, str) else list(cert or ())):
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"no such file: {path}")
        if int(max_points) < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_points = int(max_points)
        self.max_get_url = int(max_get_url)
        self.bearer_token_file = bearer_token_file
        self.queries_issued = 0
        self.requests_sent = 0
        self.last_warnings: list[str] = []
        self.last_partial = False
        self._lock = threading.Lock()
        self._sleep = _time.sleep  # replaced in tests
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if bearer_token:
            self._session.headers["Authorization"] = f"Bearer {bearer_token}"
        if auth is not None:
            self._session.auth = auth
        self._session.verify = verify
        if cert is not None:
            self._session.cert = cert

    def __repr__(self) -> str:
        return f"PrometheusClient({self.base_url!r})"

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public queries -------------------------------------------------------------------------------------------

    def query(self, expr: str, time: TimeLike | None = None) -> list[Sample]:
        """Evaluate ``expr`` at one instant (``/api/v1/query``).

        Args:
            expr: a PromQL expression.
            time: evaluation time; the server's "now" when ``None``.

        Returns:
            The instant vector's samples; a scalar result becomes one sample with empty labels. Native-histogram
            samples (``"histogram"`` instead of ``"value"``) are skipped: callers here read floats.

        Raises:
            PromQLError: the expression was rejected, or it yields a range vector or a string.
            PrometheusUnavailable: see the module docstring.

        """
        params = [("query", expr)]
        if time is not None:
            params.append(("time", _format_time(time)))
        self._count_query()
        data, warnings, partial = self._request("/api/v1/query", params, expr, dict)
        rtype, result = data.get("resultType"), data.get("result")
        try:
            if rtype == "vector":
                out = []
                for item in result:
                    if "value" in item:
                        ts, value = _parse_value(item["value"])
                        out.append(Sample(dict(item.get("metric", {})), value, ts))
                self._done(warnings, partial)
                return out
            if rtype == "scalar":
                ts, value = _parse_value(result)
                self._done(warnings, partial)
                return [Sample({}, value, ts)]
        except (TypeError, ValueError, KeyError) as exc:
            raise PrometheusUnavailable(f"malformed {rtype} result: {exc}", self.base_url) from exc
        raise PromQLError(
            f"instant query returned a {rtype} result; use query_range for ranges", "unexpected_result", expr
        )

    def query_range(
        self,
        expr: str,
        start: TimeLike,
        end: TimeLike,
        step: float | timedelta,
        *,
        max_points: int | None = None,
    ) -> list[Series]:
        """Evaluate ``expr`` at ``start + k*step`` up to ``end`` (``/api/v1/query_range``), in chunks if needed.

        A range of more than ``max_points`` steps is split into consecutive requests of at most ``max_points``
        steps each: chunk ``i`` asks for ``start + (i*max_points + j)*step``, ``j = 0 .. max_points-1``, which is
        exactly the unsplit query's grid, so no evaluation time is lost or asked twice. The chunks' series are
        merged by label set (a series may be absent from some chunks); where a server re-aligns chunks (see the
        module docstring on VictoriaMetrics) and two chunks return the same timestamp, the first value is kept.

        Args:
            expr: a PromQL expression.
            start: first evaluation time (millisecond resolution, as Prometheus).
            end: last evaluation time (inclusive); must not precede ``start``.
            step: resolution, seconds (at least 0.001) or a timedelta.
            max_points: override of the client's ``max_points`` for this call.

        Returns:
            One :class:`Series` per result series, points in time order, series in order of first appearance.

        Raises:
            ValueError: ``step`` is below 1 ms, ``end`` precedes ``start``, or ``max_points`` < 1.
            PromQLError, PrometheusUnavailable: as for :meth:`query`; a chunk failing fails the whole call.

        """
        step_s = step.total_seconds() if isinstance(step, timedelta) else float(step)
        if not step_s > 0:
            raise ValueError(f"step must be positive, got {step!r}")
        step_ms = round(step_s * 1000)
        if step_ms < 1:
            raise ValueError(f"step must be at least 1 ms, got {step!r}")
        limit = self.max_points if max_points is None else int(max_points)
        if limit < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points!r}")
        start_s, end_s = _format_time(start), _format_time(end)
        start_ms, end_ms = _to_ms(start_s), _to_ms(end_s)
        if end_ms < start_ms:
            raise ValueError(f"end {end_s} precedes start {start_s}")
        chunks = range_chunks(start_ms, end_ms, step_ms, limit)
        if len(chunks) == 1:
            bounds = [(start_s, end_s)]  # the caller's own strings: an unsplit request is sent as given
        else:
            bounds = [(_num(c0 / 1000), _num(c1 / 1000)) for c0, c1 in chunks]
        self._count_query()
        merged: dict[frozenset[tuple[str, str]], tuple[dict[str, str], dict[float, float]]] = {}
        warnings: list[str] = []
        partial = False
        for c_start, c_end in bounds:
            params = [("query", expr), ("start", c_start), ("end", c_end), ("step", _num(step_ms / 1000))]
            data, chunk_warnings, chunk_partial = self._request("/api/v1/query_range", params, expr, dict)
            warnings += [w for w in chunk_warnings if w not in warnings]
            partial = partial or chunk_partial
            if data.get("resultType") != "matrix":
                raise PromQLError(f"range query returned a {data.get('resultType')} result", "unexpected_result", expr)
            try:
                for item in data.get("result", ()):
                    labels = dict(item.get("metric", {}))
                    _, points = merged.setdefault(frozenset(labels.items()), (labels, {}))
                    for pair in item.get("values", ()):
                        ts, value = _parse_value(pair)
                        points.setdefault(ts, value)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise PrometheusUnavailable(f"malformed matrix result: {exc}", self.base_url) from exc
        self._done(warnings, partial)
        return [Series(labels, tuple(sorted(points.items()))) for labels, points in merged.values()]

    def series(
        self, match: str | Sequence[str], start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[dict[str, str]]:
        """The label sets of the series that match any of the selectors (``/api/v1/series``).

        Args:
            match: one series selector (``up{job="x"}``) or several; at least one.
            start: start of the time range searched; when omitted the server chooses (see the module docstring).
            end: end of the time range searched; when omitted, the server's "now".

        Returns:
            One label dict per series, ``__name__`` included, in the server's order.

        Raises:
            ValueError: no selector given.
            PromQLError: a selector was rejected. PrometheusUnavailable: as for :meth:`query`.

        """
        params = self._lookup_params(match, start, end, required=True)
        self._count_query()
        data, warnings, partial = self._request("/api/v1/series", params, " or ".join(_matchers(match)), list)
        if not all(isinstance(d, dict) for d in data):
            raise PrometheusUnavailable("malformed series answer: not a list of label sets", self.base_url)
        self._done(warnings, partial)
        return [{str(k): str(v) for k, v in d.items()} for d in data]

    def labels(
        self, match: str | Sequence[str] | None = None, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[str]:
        """The label names in use (``/api/v1/labels``), optionally only on series matching ``match``.

        Args:
            match: series selectors limiting the search; all series when ``None``.
            start: start of the time range searched; when omitted the server chooses (see the module docstring).
            end: end of the time range searched; when omitted, the server's "now".

        Returns:
            Label names (``__name__`` included), as the server sorts them.

        Raises:
            PromQLError: a selector was rejected. PrometheusUnavailable: as for :meth:`query`.

        """
        params = self._lookup_params(match, start, end, required=False)
        self._count_query()
        data, warnings, partial = self._request("/api/v1/labels", params, " or ".join(_matchers(match)), list)
        self._done(warnings, partial)
        return [str(x) for x in data]

    def label_values(
        self,
        name: str,
        match: str | Sequence[str] | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> list[str]:
        """The values of label ``name`` (``/api/v1/label/<name>/values``), optionally on series matching ``match``.

        Args:
            name: a label name (``[a-zA-Z_][a-zA-Z0-9_]*``; ``__name__`` lists metric names).
            match: series selectors limiting the search; all series when ``None``.
            start: start of the time range searched; when omitted the server chooses (see the module docstring).
            end: end of the time range searched; when omitted, the server's "now".

        Returns:
            The distinct values, as the server sorts them.

        Raises:
            ValueError: ``name`` is not a valid label name.
            PromQLError: a selector was rejected. PrometheusUnavailable: as for :meth:`query`.

        """
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"not a label name: {name!r}")
        params = self._lookup_params(match, start, end, required=False)
        self._count_query()
        path = f"/api/v1/label/{name}/values"
        data, warnings, partial = self._request(path, params, " or ".join(_matchers(match)), list, allow_post=False)
        self._done(warnings, partial)
        return [str(x) for x in data]

    # -- helpers --------------------------------------------------------------------------------------------------

    @staticmethod
    def _lookup_params(
        match: str | Sequence[str] | None, start: TimeLike | None, end: TimeLike | None, required: bool
    ) -> list[tuple[str, str]]:
        matchers = _matchers(match)
        if required and not matchers:
            raise ValueError("at least one series selector is required")
        params = [("match[]", m) for m in matchers]
        if start is not None:
            params.append(("start", _format_time(start)))
        if end is not None:
            params.append(("end", _format_time(end)))
        return params

    def _count_query(self) -> None:
        with self._lock:
            self.queries_issued += 1

    def _done(self, warnings: list[str], partial: bool) -> None:
        self.last_warnings = warnings
        self.last_partial = partial

    # -- transport ------------------------------------------------------------------------------------------------

    def _request(
        self,
        path: str,
        params: list[tuple[str, str]],
        expr: str,
        want: type,
        allow_post: bool = True,
    ) -> tuple[Any, list[str], bool]:
        """Send one HTTP request, retrying retryable failures; return the answer's ``(data, warnings, isPartial)``.

        ``data`` is checked to be of type ``want`` (``dict`` for queries, ``list`` for look-ups).
        """
        url = self.base_url + path
        use_post = allow_post and len(url) + 1 + len(urlencode(params)) > self.max_get_url
        failure: PrometheusUnavailable | None = None
        wait = 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(max(self.backoff * 2 ** (attempt - 1), wait), self.max_backoff))
            headers = self._auth_headers(url)
            with self._lock:
                self.requests_sent += 1
            try:
                # verify and cert go with each request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
                # Session's verify (psf/requests#3829), which would silently drop ca_file on Debian-like hosts.
                tls = {"verify": self._session.verify, "cert": self._session.cert}
                if use_post:
                    resp = self._session.post(url, data=params, headers=headers, timeout=self.timeout, **tls)
                else:
                    resp = self._session.get(url, params=params, headers=headers, timeout=self.timeout, **tls)
            except requests.Timeout:
                failure = PrometheusUnavailable(f"no answer within {self.timeout:g} s", url)
                continue
            except requests.exceptions.SSLError as exc:  # certificate trouble does not heal within seconds
                raise PrometheusUnavailable(f"TLS: {_describe_transport_error(exc)}", url) from exc
            except requests.ConnectionError as exc:  # refused, DNS, reset
                failure = PrometheusUnavailable(_describe_transport_error(exc), url)
                continue
            except requests.RequestException as exc:  # malformed URL and the like: retrying cannot help
                raise PrometheusUnavailable(_describe_transport_error(exc), url) from exc
            except OSError as exc:  # requests raises a bare OSError for a CA bundle or client cert it cannot read
                raise PrometheusUnavailable(f"TLS setup: {exc}", url) from exc
            if resp.status_code in _RETRY_STATUS:
                failure = PrometheusUnavailable(self._http_reason(resp), url, resp.status_code)
                wait = _retry_after(resp)
                continue
            return self._decode(resp, url, expr, want)
        assert failure is not None
        raise failure

    def _auth_headers(self, url: str) -> dict[str, str] | None:
        """The per-request Authorization header from ``bearer_token_file``, read now (rotation-safe)."""
        if self.bearer_token_file is None:
            return None
        try:
            with open(self.bearer_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise PrometheusUnavailable(
                f"cannot read bearer token file {self.bearer_token_file}: {exc.strerror or exc}", url
            ) from exc
        if not token:
            raise PrometheusUnavailable(f"bearer token file {self.bearer_token_file} is empty", url)
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _http_reason(resp: requests.Response) -> str:
        detail = ""
        try:
            body = resp.json()
            if isinstance(body, dict) and body.get("error"):
                detail = f": {body.get('errorType', '')}: {body['error']}".replace(": :", ":")
        except ValueError:
            pass
        return " ".join(f"HTTP {resp.status_code} {resp.reason or ''}".split()) + detail

    def _decode(self, resp: requests.Response, url: str, expr: str, want: type) -> tuple[Any, list[str], bool]:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # The API answers JSON even for a rejected expression; text means something else answered, such as
            # VictoriaMetrics' "unsupported path requested" (400) under a wrong path prefix.
            if 200 <= code < 300:
                raise PrometheusUnavailable(
                    f"not a Prometheus API answer (HTTP {code}, {resp.headers.get('Content-Type', 'no content type')})",
                    url,
                    code,
                )
            snippet = " ".join(resp.text.split())[:160]
            raise PrometheusUnavailable(f"{self._http_reason(resp)}, not a Prometheus API answer: {snippet}", url, code)
        if code in _PROMQL_STATUS or (200 <= code < 300 and body.get("status") == "error"):
            raise PromQLError(str(body.get("error", "")), str(body.get("errorType", "")), expr, code)
        if not 200 <= code < 300:
            raise PrometheusUnavailable(self._http_reason(resp), url, code)
        data = body.get("data")
        if body.get("status") != "success" or not isinstance(data, want):
            raise PrometheusUnavailable("not a Prometheus API answer (no success status or data)", url, code)
        warnings = [str(w) for w in body.get("warnings", ()) or ()]
        partial = body.get("isPartial") is True
        if partial:
            warnings.append("isPartial: the answer lacks data from storage nodes that did not respond")
        return data, warnings, partial


def range_chunks(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> list[tuple[int, int]]:
    """Split the grid ``start_ms + k*step_ms <= end_ms`` into ranges of at most ``max_points`` grid points.

    Args:
        start_ms: first evaluation time, integer milliseconds.
        end_ms: last evaluation time (inclusive), ``>= start_ms``.
        step_ms: grid spacing, ``>= 1`` ms.
        max_points: most grid points per chunk, ``>= 1``.

    Returns:
        ``(first_ms, last_ms)`` per chunk: ``first_ms`` is a grid point, ``last_ms`` the chunk's last grid point or
        ``end_ms`` when that comes first (a short final chunk ends where the caller asked, maybe between points).
        Each chunk starts one step after the previous chunk's last point, so their union is exactly the grid,
        each point once. Integer milliseconds avoid the float drift of ``start + k*step`` in seconds.

    """
    n_points = (end_ms - start_ms) // step_ms + 1
    out = []
    for first in range(0, n_points, max_points):
        c0 = start_ms + first * step_ms
        out.append((c0, min(c0 + (max_points - 1) * step_ms, end_ms)))
    return out


def _matchers(match: str | Sequence[str] | None) -> list[str]:
    if match is None:
        return []
    return [match] if isinstance(match, str) else [str(m) for m in match]


def _to_ms(formatted: str) -> int:
    """``_format_time`` output → integer milliseconds (exact: it has at most three decimals)."""
    return round(float(formatted) * 1000)


def _retry_after(resp: requests.Response) -> float:
    """The ``Retry-After`` delay in seconds when given as a number (RFC 9110 section 10.2.3), else 0."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return 0.0
