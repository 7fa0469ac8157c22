"""Local notification sinks for the alerting tests: a webhook receiver and an SMTP server, both on loopback.

Test modules import it as ``from alerting_sinks import ...`` (``tests/`` is on ``sys.path`` through
``tests/conftest.py``).

* :class:`WebhookSink` - an ``http.server`` thread that records every POST (path, headers, JSON body): what
  Alertmanager's ``webhook_configs`` send (payload version 4: ``{"status", "receiver", "alerts": [...]}``).
* :class:`SmtpSink` - an aiosmtpd ``Controller`` that records every message (envelope and parsed
  :class:`email.message.EmailMessage`), optionally requiring ``AUTH`` with one user and password (PLAIN over
  the plain loopback connection: Go's ``net/smtp`` sends credentials unencrypted only to localhost).

Both are context managers that start on a free port and always stop on exit.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from backfill import free_port


@dataclass
class WebhookPost:
    """One POST received: ``path``, ``headers`` (lower-case names), raw ``body`` and its JSON (None if not JSON)."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


class WebhookSink:
    """HTTP server on ``127.0.0.1`` recording POSTs; ``url`` is ``http://127.0.0.1:<port>``.

    Every POST is answered 200 (Alertmanager retries on other statuses). ``posts`` is a snapshot copy.
    """

    def __init__(self) -> None:
        self._posts: list[WebhookPost] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                post = WebhookPost(self.path, {k.lower(): v for k, v in self.headers.items()}, body, parsed)
                with sink._lock:
                    sink._posts.append(post)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-sink", daemon=True)

    @property
    def posts(self) -> list[WebhookPost]:
        """The POSTs received so far, in arrival order."""
        with self._lock:
            return list(self._posts)

    def start(self) -> WebhookSink:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class SmtpMessage:
    """One message received: envelope sender and recipients, the parsed message, the AUTH user (None: no AUTH)."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    auth_user: str | None

    def text(self) -> str:
        """Every text/* part decoded (quoted-printable/base64 undone), joined by newlines."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)


@dataclass
class _Handler:
    messages: list[SmtpMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    require_auth: bool = False

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        auth = session.auth_data
        user = auth.login.decode() if isinstance(auth, LoginPassword) else (auth if isinstance(auth, str) else None)
        with self.lock:
            self.messages.append(SmtpMessage(envelope.mail_from, list(envelope.rcpt_tos), msg, user))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpSink:
    """SMTP server on ``127.0.0.1:<port>`` recording messages.

    Args:
        username, password: when given, the server advertises ``AUTH PLAIN`` (without TLS) and refuses mail from a
            session that did not authenticate with exactly these.

    """

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self._handler = _Handler(require_auth=username is not None)
        self.port = free_port()
        self.username = username
        self.password = password
        self.auth_failures = 0
        kwargs: dict[str, Any] = {}
        if username is not None:
            # PLAIN only: aiosmtpd's LOGIN challenges ("User Name") are not the "Username:" Alertmanager expects.
            # Mail from an unauthenticated session is refused in handle_MAIL (auth_required=True would warn).
            kwargs = {
                "authenticator": self._authenticate,
                "auth_require_tls": False,
                "auth_exclude_mechanism": ["LOGIN"],
            }
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port, **kwargs)
        self.smarthost = f"127.0.0.1:{self.port}"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        ):
            return AuthResult(success=True, auth_data=auth_data)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    @property
    def messages(self) -> list[SmtpMessage]:
        """The messages received so far, in arrival order."""
        with self._handler.lock:
            return list(self._handler.messages)

    def start(self) -> SmtpSink:
        """Start the server thread (returns once it accepts connections)."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server; idempotent."""
        try:
            self._controller.stop()
        except AssertionError:  # aiosmtpd: "SMTP daemon not running" on a second stop
            pass

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until truthy or ``timeout`` seconds; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
