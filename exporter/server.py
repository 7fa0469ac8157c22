"""A small threaded HTTP server for ``/metrics`` (and a landing page at ``/``)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import __version__
from .registry import ScrapeOrchestrator

LANDING = f"""<html><head><title>NØMADE exporter</title></head><body>
<h1>NØMADE exporter {__version__}</h1><p><a href="/metrics">Metrics</a></p></body></html>
""".encode()


def serve(
    registry: CollectorRegistry, host: str, port: int, orchestrator: ScrapeOrchestrator | None = None
) -> ThreadingHTTPServer:
    """Start serving ``registry`` on ``host:port`` in a daemon thread and return the server.

    When ``orchestrator`` is given, a scraper's ``X-Prometheus-Scrape-Timeout-Seconds`` header shortens that
    scrape's deadline (see :meth:`ScrapeOrchestrator.timeout`).

    Raises:
        OSError: when the address cannot be bound.

    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
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

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
