"""SLURM hooks ``deploy/slurm/prolog.sh`` and ``epilog.sh``: GPU mapping, risk logging, bounded time, exit 0.

The scripts run as subprocesses (argv lists, a controlled environment, timeouts); a fake Prometheus
(:mod:`http.server` in a thread) answers the instant query. Mapping dir and log file are tmp paths given through
``NOMADE_GPU_JOB_DIR`` / ``NOMADE_HOOK_LOG``; syslog is off (``NOMADE_HOOK_SYSLOG=0``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from nomade.exporter.parsers.nvidia_smi import parse_gpu_job_file

ROOT = Path(__file__).resolve().parents[2]
PROLOG = ROOT / "deploy/slurm/prolog.sh"
EPILOG = ROOT / "deploy/slurm/epilog.sh"
PROLOG_GPU = ROOT / "deploy/slurm/prolog-gpu.sh"
HOOK_LIB = ROOT / "deploy/slurm/nomade-hook-lib.sh"
BASH = shutil.which("bash") or "/bin/bash"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed by the prolog")


def _vector(*results: dict) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": list(results)}}


SCORE = {
    "metric": {
        "__name__": "nomade_job_risk_score",
        "job_id": "4242",
        "partition": "gpu",
        "state": "PENDING",
        "user": "alice",
    },
    "value": [1764440000.123, "0.37"],
}
INFO_PENDING = {
    "metric": {
        "__name__": "nomade_job_risk_scoring_info",
        "setting": "submit",
        "state": "PENDING",
        "version": "v20261129-1",
    },
    "value": [1764440000.123, "1"],
}
INFO_RUNNING = {
    "metric": {"__name__": "nomade_job_risk_scoring_info", "setting": "run", "state": "RUNNING", "version": "v7"},
    "value": [1764440000.123, "1"],
}


class FakeProm:
    """A Prometheus stand-in: ``status``/``body`` set per test, queries recorded."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict = _vector()
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                url = urlparse(self.path)
                if url.path == "/api/v1/query":
                    fake.queries.extend(parse_qs(url.query).get("query", []))
                data = json.dumps(fake.body, separators=(",", ":")).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prom() -> Iterator[FakeProm]:
    """A running :class:`FakeProm`, shut down after the test."""
    p = FakeProm()
    yield p
    p.close()


@pytest.fixture
def hanging() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_hook(
    script: Path, tmp_path: Path, url: str | None, job: str = "4242", **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str], float]:
    """Run one hook; return the process, the log lines (timestamp stripped) and the elapsed seconds."""
    log = tmp_path / "hooks.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_JOB_ID": job,
        "SLURM_JOB_USER": "alice",
        "NOMADE_GPU_JOB_DIR": str(tmp_path / "gpu-jobs"),
        "NOMADE_HOOK_LOG": str(log),
        "NOMADE_HOOK_SYSLOG": "0",
        "NOMADE_HOOKS_CONF": str(tmp_path / "absent.conf"),
        "NOMADE_RISK_TIMEOUT": "1",
    }
    if url is not None:
        env["NOMADE_PROMETHEUS_URL"] = url
    env.update(extra)
    start = time.monotonic()
    proc = subprocess.run([BASH, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    lines = [ln.split(" ", 1)[1] for ln in log.read_text().splitlines()] if log.exists() else []
    return proc, lines, elapsed


def test_risk_logged_with_model(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector(SCORE, INFO_RUNNING, INFO_PENDING)
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url)
    assert proc.returncode == 0
    assert lines == ["job 4242 user alice risk 0.37 state PENDING (model submit v20261129-1)"]
    assert prom.queries == ['nomade_job_risk_score{job_id="4242"} or nomade_job_risk_scoring_info']


def test_risk_without_info_and_exponent(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector({**SCORE, "value": [1.0, "1.5e-05"]})
    _, lines, _ = run_hook(PROLOG, tmp_path, prom.url + "/")
    assert lines == ["job 4242 user alice risk 1.5e-05 state PENDING (model unknown)"]


def test_empty_vector_no_score_yet(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector(INFO_PENDING)
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url)
    assert proc.returncode == 0
    assert lines == ["job 4242 user alice risk unavailable: no score yet"]


def test_http_500(prom: FakeProm, tmp_path: Path) -> None:
    prom.status = 500
    prom.body = {"status": "error", "error": "boom"}
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url)
    assert proc.returncode == 0
    assert lines == [f"job 4242 user alice risk unavailable: HTTP 500 from {prom.url}"]


def test_non_numeric_value_not_logged(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector({**SCORE, "value": [1.0, "0.3; rm -rf /"]})
    _, lines, _ = run_hook(PROLOG, tmp_path, prom.url)
    assert lines == ["job 4242 user alice risk unavailable: unreadable score"]


@pytest.mark.parametrize("bound", ["1", "2"])
def test_hanging_server_bounded(hanging: str, tmp_path: Path, bound: str) -> None:
    proc, lines, elapsed = run_hook(PROLOG, tmp_path, hanging, NOMADE_RISK_TIMEOUT=bound)
    assert proc.returncode == 0
    assert float(bound) - 0.1 < elapsed < float(bound) + 1.5, elapsed
    assert lines == [f"job 4242 user alice risk unavailable: no answer from {hanging} within {bound} s"]


def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    proc, lines, elapsed = run_hook(PROLOG, tmp_path, url)
    assert proc.returncode == 0
    assert elapsed < 2.5
    assert lines == [f"job 4242 user alice risk unavailable: cannot connect to {url} (connection refused)"]


def test_hostile_url_not_used(prom: FakeProm, tmp_path: Path) -> None:
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url + "/$(touch pwned)")
    assert proc.returncode == 0
    assert lines == ["job 4242 user alice risk unavailable: NOMADE_PROMETHEUS_URL is not a plain http(s) URL"]
    assert prom.queries == []
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("script", [PROLOG, EPILOG, PROLOG_GPU], ids=["prolog", "epilog", "prolog-gpu"])
@pytest.mark.parametrize("job", ["1; rm -rf /", "$(touch x)", "`touch x`", "../../etc/passwd", "12 34", ""])
def test_hostile_job_id(prom: FakeProm, tmp_path: Path, script: Path, job: str) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    proc, lines, _ = run_hook(script, tmp_path, prom.url, job=job, SLURM_JOB_GPUS="0")
    assert proc.returncode == 0
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "gpu-jobs").exists()
    assert prom.queries == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hooks.log") == before
    if script != PROLOG_GPU:
        assert lines == [f"{script.stem}: invalid or missing SLURM_JOB_ID (not digits), nothing done"]


def test_gpu_mapping_written_then_removed(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector(SCORE, INFO_PENDING)
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url, SLURM_JOB_GPUS="0,2-3")
    assert proc.returncode == 0
    mapping = tmp_path / "gpu-jobs/4242"
    assert mapping.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "gpu-jobs").stat().st_mode & 0o777 == 0o755
    parsed = parse_gpu_job_file(mapping.read_text())
    assert parsed.issues == []
    assert [(r.gpu_ids, r.user) for r in parsed.records] == [((0, 2, 3), "alice")]
    assert [p.name for p in (tmp_path / "gpu-jobs").iterdir()] == ["4242"]  # no leftover temporary file
    proc, lines2, _ = run_hook(EPILOG, tmp_path, prom.url)
    assert proc.returncode == 0
    assert not mapping.exists()
    assert lines2[len(lines) :] == ["job 4242 user alice ended"]


def test_same_format_as_prolog_gpu(tmp_path: Path) -> None:
    env = {"SLURM_JOB_GPUS": "1", "NOMADE_RISK_QUERY": "0"}
    run_hook(PROLOG, tmp_path, None, job="7", **env)
    a = (tmp_path / "gpu-jobs/7").read_text()
    run_hook(PROLOG_GPU, tmp_path, None, job="8", **env)
    assert (tmp_path / "gpu-jobs/8").read_text() == a == "gpus=1\nuser=alice\n"


def test_no_gpus_and_bad_gpus(tmp_path: Path) -> None:
    _, lines, _ = run_hook(PROLOG, tmp_path, None, NOMADE_RISK_QUERY="0")
    assert not (tmp_path / "gpu-jobs").exists()
    assert lines == []
    _, lines, _ = run_hook(PROLOG, tmp_path, None, NOMADE_RISK_QUERY="0", SLURM_JOB_GPUS="0;touch y")
    assert not (tmp_path / "gpu-jobs").exists()
    assert not (tmp_path / "y").exists()
    assert lines == ["prolog: job 4242: SLURM_JOB_GPUS not an id list, GPU mapping not written"]


def test_conf_file_read_as_data(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector(SCORE)
    conf = tmp_path / "hooks.conf"
    conf.write_text(f"# comment\nNOMADE_PROMETHEUS_URL={prom.url}\nNOMADE_RISK_TIMEOUT=$(touch z)\nOTHER=`touch z`\n")
    proc, lines, _ = run_hook(PROLOG, tmp_path, None, NOMADE_HOOKS_CONF=str(conf), NOMADE_RISK_TIMEOUT="")
    assert proc.returncode == 0
    assert lines == ["job 4242 user alice risk 0.37 state PENDING (model unknown)"]
    assert not (tmp_path / "z").exists()


def test_environment_overrides_conf(prom: FakeProm, tmp_path: Path) -> None:
    prom.body = _vector(SCORE)
    conf = tmp_path / "hooks.conf"
    conf.write_text(f"NOMADE_PROMETHEUS_URL=http://127.0.0.1:{_free_port()}\n")
    _, lines, _ = run_hook(PROLOG, tmp_path, prom.url, NOMADE_HOOKS_CONF=str(conf))
    assert lines == ["job 4242 user alice risk 0.37 state PENDING (model unknown)"]


def test_unwritable_log_file_still_exit_0(prom: FakeProm, tmp_path: Path) -> None:
    # A log file in a missing directory only loses the line; the hook still succeeds.
    proc, lines, _ = run_hook(PROLOG, tmp_path, prom.url, NOMADE_HOOK_LOG=str(tmp_path / "missing/dir/log"))
    assert proc.returncode == 0
    assert lines == []


def test_shellcheck() -> None:
    # `make test` installs shellcheck (deploy/lab/lab.sh install): a missing one is a failed check, not a skip.
    assert shutil.which("shellcheck"), "shellcheck not installed (deploy/lab/lab.sh install adds it)"
    proc = subprocess.run(
        ["shellcheck", "-x", str(PROLOG), str(EPILOG), str(PROLOG_GPU), str(HOOK_LIB)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", [PROLOG, EPILOG], ids=["prolog", "epilog"])
def test_hook_without_its_library_exits_zero_and_does_nothing(script: Path, tmp_path: Path) -> None:
    alone = tmp_path / script.name
    shutil.copy(script, alone)
    gpu_dir = tmp_path / "gpu-jobs"
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_GPUS": "0", "NOMADE_GPU_JOB_DIR": str(gpu_dir), "NOMADE_HOOK_SYSLOG": "0"}
    proc = subprocess.run(["bash", str(alone)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert not gpu_dir.exists()


def _fake_logger_env(record: Path, **extra: str) -> dict[str, str]:
    """Environment whose ``logger`` records its arguments (one per line) in ``record``.

    The hooks pin ``PATH=/usr/bin:/bin:/usr/sbin:/sbin`` (a root hook must not trust an inherited PATH), so a fake
    executable on the caller's PATH would never be reached; an exported bash function named ``logger`` is, and
    ``command -v logger`` finds it as it would find /usr/bin/logger.
    """
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "77", "SLURM_JOB_GPUS": "0"}
    env["BASH_FUNC_logger%%"] = f"() {{ printf '%s\\n' \"$@\" >> '{record}'; }}"
    env.update(extra)
    return env


@pytest.mark.parametrize("script", [PROLOG, EPILOG], ids=["prolog", "epilog"])
def test_hook_without_its_library_logs_one_syslog_line(script: Path, tmp_path: Path) -> None:
    alone = tmp_path / "hooks" / script.name
    alone.parent.mkdir()
    shutil.copy(script, alone)
    record = tmp_path / "logger-args"
    gpu_dir = tmp_path / "gpu-jobs"
    env = _fake_logger_env(record, NOMADE_GPU_JOB_DIR=str(gpu_dir))
    proc = subprocess.run(["bash", str(alone)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    name = script.stem  # prolog / epilog
    assert record.read_text().splitlines() == [
        "-t",
        f"nomade-{name}",
        "-p",
        "user.err",
        "--",
        f"{name}: cannot load {alone.parent}/nomade-hook-lib.sh (missing or unreadable; install it next to "
        f"{name}.sh): nothing done",
    ]
    assert not gpu_dir.exists()  # and nothing else was done


@pytest.mark.parametrize("script", [PROLOG, EPILOG], ids=["prolog", "epilog"])
def test_hook_without_its_library_syslog_off(script: Path, tmp_path: Path) -> None:
    alone = tmp_path / script.name
    shutil.copy(script, alone)
    record = tmp_path / "logger-args"
    env = _fake_logger_env(record, NOMADE_HOOK_SYSLOG="0")
    proc = subprocess.run(["bash", str(alone)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "" and not record.exists()


def test_hook_with_its_library_does_not_log_the_missing_library(tmp_path: Path) -> None:
    record = tmp_path / "logger-args"
    env = _fake_logger_env(record, NOMADE_GPU_JOB_DIR=str(tmp_path / "gpu-jobs"), NOMADE_HOOKS_CONF="/nonexistent")
    proc = subprocess.run([BASH, str(EPILOG)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert record.read_text().splitlines() == ["-t", "nomade", "-p", "user.info", "--", "job 77 user ? ended"]
