"""A small client for the Prometheus HTTP query API (``/api/v1/query``, ``/api/v1/query_range``).

It speaks the documented API (https://prometheus.io/docs/prometheus/latest/querying/api/), which Prometheus,
VictoriaMetrics, Thanos Query and Mimir all serve, so it is the only way the rest of NØMADE reads history.

Errors fall into two kinds, because callers react to them differently:

* :class:`PromQLError` — the server understood the request and rejected the *expression*: HTTP 400
  (``errorType`` ``bad_data``) or 422 (``execution``), or any body with ``"status": "error"`` and a 2xx code.
  Retrying cannot help; the query must change.
* :class:`PrometheusUnavailable` — the server could not be used: connection refused, DNS failure, TLS error,
  timeout, HTTP 5xx (503 is also what Prometheus answers for ``errorType`` ``timeout``/``canceled``), 429,
  another 4xx (401/403/404: wrong URL or credentials), or a body that is not the API's JSON (whatever its
  code). Transport errors, timeouts, 5xx and 429 are retried ``retries`` times with exponential backoff; the
  others fail at once.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

__all__ = [
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnavailable",
    "PromQLError",
    "Sample",
    "Series",
]

TimeLike = float | int | datetime
"""A point in time: Unix seconds, or a datetime (naive datetimes are local time, as ``datetime.timestamp``)."""

# HTTP codes worth another attempt: server-side trouble and rate limiting (Mimir, VictoriaMetrics' vmauth).
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# The API's documented codes for a rejected expression ("Format overview" in the API documentation).
_PROMQL_STATUS = frozenset({400, 422})


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
    """Client of one Prometheus-compatible query endpoint.

    Args:
        base_url: the server root, possibly with a path prefix (``http://host:9090``,
            ``https://vm.example/select/0/prometheus``); ``/api/v1/...`` is appended.
        timeout: seconds to wait for each HTTP request (connect and read).
        retries: further attempts after a retryable failure (so ``retries + 1`` requests at most).
        backoff: seconds before the first retry; doubled before each later one.
        auth: ``(user, password)`` for HTTP basic authentication.
        bearer_token: sent as ``Authorization: Bearer <token>``.
        verify: TLS verification: ``True``, ``False`` or the path of a CA bundle (as in requests).

    Attributes:
        queries_issued: number of :meth:`query`/:meth:`query_range` calls made (logical queries; retries of the
            same query are not counted again). The analytics service must keep this O(metrics) per cycle.
        requests_sent: HTTP requests actually sent, retries included.
        last_warnings: the ``warnings`` list of the last successful answer (e.g. partial Thanos results).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL with a host.

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
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.queries_issued = 0
        self.requests_sent = 0
        self.last_warnings: list[str] = []
        self._lock = threading.Lock()
        self._sleep = _time.sleep  # replaced in tests
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if bearer_token:
            self._session.headers["Authorization"] = f"Bearer {bearer_token}"
        if auth is not None:
            self._session.auth = auth
        self._session.verify = verify

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
        """Evaluate ``expr`` at one instant (``GET /api/v1/query``).

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
        params = {"query": expr}
        if time is not None:
            params["time"] = _format_time(time)
        data = self._call("/api/v1/query", params, expr)
        rtype, result = data.get("resultType"), data.get("result")
        try:
            if rtype == "vector":
                out = []
                for item in result:
                    if "value" in item:
                        ts, value = _parse_value(item["value"])
                        out.append(Sample(dict(item.get("metric", {})), value, ts))
                return out
            if rtype == "scalar":
                ts, value = _parse_value(result)
                return [Sample({}, value, ts)]
        except (TypeError, ValueError, KeyError) as exc:
            raise PrometheusUnavailable(f"malformed {rtype} result: {exc}", self.base_url) from exc
        raise PromQLError(
            f"instant query returned a {rtype} result; use query_range for ranges", "unexpected_result", expr
        )

    def query_range(self, expr: str, start: TimeLike, end: TimeLike, step: float | timedelta) -> list[Series]:
        """Evaluate ``expr`` at every ``step`` from ``start`` to ``end`` (``GET /api/v1/query_range``).

        Args:
            expr: a PromQL expression.
            start: first evaluation time.
            end: last evaluation time (inclusive); must not precede ``start``.
            step: resolution, seconds (> 0) or a timedelta. Prometheus refuses more than 11,000 points per series.

        Returns:
            One :class:`Series` per result series.

        Raises:
            ValueError: ``step`` is not positive or ``end`` precedes ``start``.
            PromQLError, PrometheusUnavailable: as for :meth:`query`.

        """
        step_s = step.total_seconds() if isinstance(step, timedelta) else float(step)
        if not step_s > 0:
            raise ValueError(f"step must be positive, got {step!r}")
        start_s, end_s = _format_time(start), _format_time(end)
        if float(end_s) < float(start_s):
            raise ValueError(f"end {end_s} precedes start {start_s}")
        params = {"query": expr, "start": start_s, "end": end_s, "step": _num(step_s)}
        data = self._call("/api/v1/query_range", params, expr)
        if data.get("resultType") != "matrix":
            raise PromQLError(f"range query returned a {data.get('resultType')} result", "unexpected_result", expr)
        try:
            return [
                Series(dict(item.get("metric", {})), tuple(_parse_value(p) for p in item.get("values", ())))
                for item in data.get("result", ())
            ]
        except (TypeError, ValueError, KeyError) as exc:
            raise PrometheusUnavailable(f"malformed matrix result: {exc}", self.base_url) from exc

    # -- transport ------------------------------------------------------------------------------------------------

    def _call(self, path: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        """Send one logical query, retrying retryable failures; return the answer's ``data`` object."""
        with self._lock:
            self.queries_issued += 1
        url = self.base_url + path
        failure: PrometheusUnavailable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            with self._lock:
                self.requests_sent += 1
            try:
                resp = self._session.get(url, params=params, timeout=self.timeout)
            except requests.Timeout:
                failure = PrometheusUnavailable(f"no answer within {self.timeout:g} s", url)
                continue
            except requests.ConnectionError as exc:  # refused, DNS, reset, TLS
                failure = PrometheusUnavailable(_describe_transport_error(exc), url)
                continue
            except requests.RequestException as exc:  # malformed URL and the like: retrying cannot help
                raise PrometheusUnavailable(_describe_transport_error(exc), url) from exc
            if resp.status_code in _RETRY_STATUS:
                failure = PrometheusUnavailable(self._http_reason(resp), url, resp.status_code)
                continue
            return self._decode(resp, url, expr)
        assert failure is not None
        raise failure

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

    def _decode(self, resp: requests.Response, url: str, expr: str) -> dict[str, Any]:
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
        if body.get("status") != "success" or not isinstance(data, dict):
            raise PrometheusUnavailable("not a Prometheus API answer (no success status or data)", url, code)
        self.last_warnings = [str(w) for w in body.get("warnings", ()) or ()]
        return data
