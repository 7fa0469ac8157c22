"""Real Prometheus and VictoriaMetrics servers on loopback, loaded with known histories, for tests.

Test modules import it as ``from backfill import ...`` (``tests/`` is on ``sys.path`` through ``tests/conftest.py``).
Nothing here needs the lab stack: only the ``prometheus``/``promtool`` (Debian package ``prometheus``) and
``victoria-metrics`` binaries, which ``deploy/lab/lab.sh install`` installs.

A history is a list of ``(labels, points)``: ``labels`` includes ``__name__``; ``points`` are ``(unix_seconds, value)``
in time order. The same list loads both servers:

* Prometheus: :func:`openmetrics_text` → :func:`backfill_prometheus` (``promtool tsdb create-blocks-from
  openmetrics``) into an empty TSDB directory, BEFORE :func:`start_prometheus`. promtool writes 2 h blocks; a block
  may overlap the head's time range (Prometheus ≥ 2.39 merges overlapping blocks at query time), and a fresh server
  has an empty head, so histories that end at "now" are fine. Samples older than the retention are deleted when the
  server starts: :func:`start_prometheus` sets a 10-year retention.
* VictoriaMetrics: :func:`start_victoriametrics` first, then :func:`backfill_victoriametrics` (``POST
  /api/v1/import/prometheus``, timestamps in milliseconds, then ``/internal/force_flush`` so the samples are
  searchable at once). The server runs with ``-search.disableCache`` (VictoriaMetrics' own advice while backfilling:
  a cached range answer would hide freshly imported samples).

:func:`prometheus_server` and :func:`victoriametrics_server` are context managers that load a history, start the
server on a free loopback port and always stop it (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

Labels = Mapping[str, str]
Points = Sequence[tuple[float, float]]
History = Sequence[tuple[Labels, Points]]

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
VICTORIAMETRICS = "victoria-metrics"
READY_TIMEOUT_S = 30.0


def require_binaries(*names: str) -> None:
    """Skip the calling test when a server binary is missing; FAIL instead when ``NOMADE_LAB=1`` (``make test``)."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    msg = f"{', '.join(missing)} not installed (deploy/lab/lab.sh install installs them)"
    if os.environ.get("NOMADE_LAB") == "1":
        pytest.fail(f"NOMADE_LAB=1 but {msg}", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- text formats ----------------------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    # OpenMetrics and the Prometheus text format escape the same three characters in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _selector(labels: Labels) -> str:
    name = labels["__name__"]
    rest = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def openmetrics_text(series: History) -> str:
    """The OpenMetrics text of a history, for ``promtool tsdb create-blocks-from openmetrics``.

    Series are grouped by metric name (OpenMetrics wants each family's lines together) under ``# TYPE <name>
    unknown`` (the untyped family: ``counter`` would require names without ``_total``), sample timestamps are
    Unix SECONDS (OpenMetrics, unlike the Prometheus text format's milliseconds), and the text ends with ``# EOF``.

    Raises:
        KeyError: a series has no ``__name__``.

    """
    families: dict[str, list[tuple[Labels, Points]]] = {}
    for labels, points in series:
        families.setdefault(labels["__name__"], []).append((labels, points))
    lines: list[str] = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} unknown")
        for labels, points in members:
            sel = _selector(labels)
            lines.extend(f"{sel} {_value(v)} {float(t):.3f}" for t, v in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def prometheus_import_text(series: History) -> str:
    """The Prometheus text exposition of a history with millisecond timestamps (VictoriaMetrics' import format)."""
    lines: list[str] = []
    for labels, points in series:
        sel = _selector(labels)
        lines.extend(f"{sel} {_value(v)} {round(float(t) * 1000)}" for t, v in points)
    return "\n".join(lines) + "\n"


# -- loading ---------------------------------------------------------------------------------------------------------


def backfill_prometheus(openmetrics: str, tsdb_dir: str | Path) -> None:
    """Write ``openmetrics`` (see :func:`openmetrics_text`) as TSDB blocks into ``tsdb_dir`` with promtool.

    Run it before the server starts on that directory.

    Raises:
        RuntimeError: promtool failed (its output is in the message).

    """
    tsdb = Path(tsdb_dir)
    tsdb.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", dir=tsdb.parent, delete=False) as f:
        f.write(openmetrics)
        src = f.name
    try:
        proc = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", src, str(tsdb)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.unlink(src)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from failed ({proc.returncode}): {proc.stderr or proc.stdout}")


def backfill_victoriametrics(url: str, series: History) -> None:
    """Import a history into a running VictoriaMetrics at ``url`` and flush it so that queries see it.

    Raises:
        requests.HTTPError: the import or the flush was refused.

    """
    base = url.rstrip("/")
    text = prometheus_import_text(series)
    r = requests.post(f"{base}/api/v1/import/prometheus", data=text.encode(), timeout=60)
    r.raise_for_status()
    r = requests.get(f"{base}/internal/force_flush", timeout=60)
    r.raise_for_status()


# -- servers ---------------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A server process on loopback.

    Attributes:
        name: ``prometheus`` or ``victoria-metrics``.
        url: ``http://127.0.0.1:<port>``.
        port: the listening port.
        popen: the process.
        log_path: its combined stdout/stderr.
        data_dir: its storage directory.

    """

    name: str
    url: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    argv: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(
    name: str, argv: list[str], port: int, data_dir: Path, ready_path: str, scheme: str, probe: Mapping[str, Any]
) -> Proc:
    log_path = data_dir.parent / f"{name}-{port}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc = Proc(name, f"{scheme}://127.0.0.1:{port}", port, popen, log_path, data_dir, argv)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if not proc.alive():
            raise RuntimeError(f"{name} exited with {popen.returncode} before getting ready:\n{proc.log_tail()}")
        try:
            if requests.get(proc.url + ready_path, timeout=1, **probe).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{name} not ready within {READY_TIMEOUT_S:g} s:\n{proc.log_tail()}")
        time.sleep(0.1)


def start_prometheus(
    tsdb_dir: str | Path,
    port: int,
    extra_args: Sequence[str] = (),
    *,
    scheme: str = "http",
    probe: Mapping[str, Any] | None = None,
) -> Proc:
    """Start Prometheus on ``127.0.0.1:port`` over ``tsdb_dir``, scraping nothing; returns once ``/-/ready``.

    The configuration file (no scrape jobs) and the log go beside ``tsdb_dir``. Retention is 10 years so that
    backfilled history is never deleted at start-up. With ``--web.config.file`` in ``extra_args`` (TLS, basic
    auth), give ``scheme="https"`` and the readiness probe's requests arguments (``verify``, ``cert``, ``auth``)
    in ``probe``.

    Raises:
        RuntimeError: the server exited or was not ready within 30 s (the log's tail is in the message).

    """
    tsdb = Path(tsdb_dir)
    tsdb.mkdir(parents=True, exist_ok=True)
    config = tsdb.parent / f"prometheus-{port}.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    argv = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=3650d",
        "--log.level=warn",
        *extra_args,
    ]
    return _spawn("prometheus", argv, port, tsdb, "/-/ready", scheme, probe or {})


def start_victoriametrics(
    data_dir: str | Path,
    port: int,
    extra_args: Sequence[str] = (),
    *,
    scheme: str = "http",
    probe: Mapping[str, Any] | None = None,
) -> Proc:
    """Start single-node VictoriaMetrics on ``127.0.0.1:port`` over ``data_dir``; returns once ``/health`` says OK.

    Flags: 100-year retention, ``-search.disableCache`` (see the module docstring), errors-only logging.
    ``scheme`` and ``probe`` as for :func:`start_prometheus` (``-tls``, ``-httpAuth.*`` in ``extra_args``).

    Raises:
        RuntimeError: the server exited or was not ready within 30 s.

    """
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        VICTORIAMETRICS,
        f"-storageDataPath={data}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.disableCache",
        "-loggerLevel=ERROR",
        *extra_args,
    ]
    return _spawn("victoria-metrics", argv, port, data, "/health", scheme, probe or {})


@contextlib.contextmanager
def prometheus_server(
    series: History, workdir: str | Path, port: int | None = None, extra_args: Sequence[str] = ()
) -> Iterator[Proc]:
    """Backfill ``series`` into a new TSDB under ``workdir``, start Prometheus on it, stop it on exit."""
    tsdb = Path(workdir) / "prometheus-data"
    if series:
        backfill_prometheus(openmetrics_text(series), tsdb)
    proc = start_prometheus(tsdb, port or free_port(), extra_args)
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def victoriametrics_server(
    series: History, workdir: str | Path, port: int | None = None, extra_args: Sequence[str] = ()
) -> Iterator[Proc]:
    """Start VictoriaMetrics over a new data directory under ``workdir``, import ``series``, stop it on exit."""
    proc = start_victoriametrics(Path(workdir) / "vm-data", port or free_port(), extra_args)
    try:
        if series:
            backfill_victoriametrics(proc.url, series)
        yield proc
    finally:
        proc.stop()
