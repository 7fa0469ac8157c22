"""A small threaded HTTP(S) server for ``/metrics`` (and a landing page at ``/``).

With a web configuration (:mod:`nomade.exporter.webconfig`, the Prometheus exporter-toolkit format) it serves TLS
and requires basic authentication on every path.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import __version__
from .registry import ScrapeOrchestrator
from .webconfig import WebConfig

log = logging.getLogger("nomade.exporter.server")

#: Seconds a client has to complete the TLS handshake and each read of its request (slow clients hold a thread).
TIMEOUT = 30.0


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with an optional TLS context; the handshake happens in the request's thread."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock.settimeout(TIMEOUT)
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                # Plain HTTP on the TLS port, a missing/untrusted client certificate, a refused TLS version.
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error serving %s", client_address[0], exc_info=True)


LANDING = f"""<html><head><title>NØMADE exporter</title></head><body>
<h1>NØMADE exporter {__version__}</h1><p><a href="/metrics">Metrics</a></p></body></html>
""".encode()


def serve(
    registry: CollectorRegistry,
    host: str,
    port: int,
    orchestrator: ScrapeOrchestrator | None = None,
    web_config: WebConfig | None = None,
) -> ThreadingHTTPServer:
    """Start serving ``registry`` on ``host:port`` in a daemon thread and return the server.

    When ``orchestrator`` is given, a scraper's ``X-Prometheus-Scrape-Timeout-Seconds`` header shortens that
    scrape's deadline (see :meth:`ScrapeOrchestrator.timeout`).

    ``web_config`` (:func:`nomade.exporter.webconfig.load_web_config`): with ``tls`` the port speaks HTTPS only
    (handshake failures close the connection); with ``users`` every path (``/``, ``/metrics``, 404s) answers
    401 with ``WWW-Authenticate: Basic`` unless valid credentials are sent; ``headers`` are added to every response.

    Raises:
        OSError: when the address cannot be bound.
        nomade.exporter.webconfig.WebConfigError: certificate/key/CA files that cannot be loaded.

    """
    ctx = web_config.ssl_context() if web_config is not None else None
    auth = web_config.basic_auth() if web_config is not None else None
    extra_headers = dict(web_config.headers) if web_config is not None else {}

    class Handler(BaseHTTPRequestHandler):
        timeout = TIMEOUT

        def end_headers(self) -> None:
            for name, value in extra_headers.items():
                self.send_header(name, value)
            super().end_headers()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if auth is not None and not auth.check_header(self.headers.get("Authorization")):
                body = b"Unauthorized\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="nomade", charset="UTF-8"')
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                header = self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
                try:
                    limit = float(header) if header else None
                except ValueError:
                    limit = None
                if orchestrator is not None:
                    with orchestrator.timeout(limit):
                        body = generate_latest(registry)
                else:
                    body = generate_latest(registry)
                ctype = CONTENT_TYPE_LATEST
            elif path == "/":
                body, ctype = LANDING, "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet access log
            return

    server = _Server((host, port), Handler)
    server.ssl_context = ctx
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def serve_until_signalled(
    prog: str,
    registry: CollectorRegistry,
    listen_address: str,
    host: str,
    port: int,
    orchestrator: ScrapeOrchestrator | None = None,
    web_config: WebConfig | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Serve ``registry`` (:func:`serve`) until SIGTERM or SIGINT, then shut the server down.

    The one serving loop of ``nomade-exporter``, ``nomade-analytics`` and ``nomade sim serve``: handlers for both
    signals are installed before the socket is bound, the ``listening on`` line says the scheme and whether basic
    auth is on, and ``on_started`` (e.g. the analytics cycle thread) runs once the port is bound. The caller stops
    its own background work after the return.

    Returns:
        0 after a signal; 1 when ``host:port`` cannot be bound (``"<prog>: cannot listen on <listen_address>: ..."``
        printed to stderr).

    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server = serve(registry, host, port, orchestrator, web_config=web_config)
    except OSError as exc:
        print(f"{prog}: cannot listen on {listen_address}: {exc}", file=sys.stderr)
        return 1
    log.info(
        "listening on %s://%s:%d/metrics%s",
        "https" if web_config is not None and web_config.tls is not None else "http",
        host or "0.0.0.0",
        port,
        " (basic auth)" if web_config is not None and web_config.users else "",
    )
    if on_started is not None:
        on_started()
    stop.wait()
    log.info("stopping")
    server.shutdown()
    return 0
