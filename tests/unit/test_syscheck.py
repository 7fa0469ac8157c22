"""nomade syscheck: every check against a fake machine (runner, PATH, /proc tree, HTTP), exit codes, output."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
from conftest import MappedRunner

from nomade.cli import main as cli_main
from nomade.cli import syscheck
from nomade.cli.syscheck import Check, Environment
from nomade.exporter.runner import CommandError

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
SACCT = ("sacct", "-n", "-X", "-o", "JobID", "-S", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW - 60)))
SLURM_OK = {
    ("sinfo", "-h", "-o", "%P"): "compute*\ngpu\n",
    ("squeue", "-h", "-o", "%i"): "101\n102\n",
    ("scontrol", "ping"): "Slurmctld(primary) at ctl1 is UP\n",
    SACCT: "",
    ("nvidia-smi", "-L"): "GPU 0: NVIDIA A100 (UUID: GPU-1)\nGPU 1: NVIDIA A100 (UUID: GPU-2)\n",
}
MOUNTINFO = (
    "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
    "40 22 0:50 / /home rw,relatime - nfs4 fs1:/home rw,vers=4.2\n"
    "41 22 0:51 / /my\\040data rw - nfs fs2:/data rw\n"
    "42 22 0:52 / /scratch rw - lustre 10.0.0.1@o2ib:/scratch rw\n"
)


def proc_tree(root: Path, *, pressure: bool = True, pid_io: bool = True, missing: tuple[str, ...] = ()) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "1").mkdir()
    for name in ("stat", "meminfo", "diskstats"):
        if name not in missing:
            (proc / name).write_text("x\n")
    (proc / "self/mountinfo").write_text(MOUNTINFO)
    if pressure:
        (proc / "pressure").mkdir()
        for n in ("cpu", "memory", "io"):
            (proc / "pressure" / n).write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    if pid_io:
        (proc / "1/io").write_text("rchar: 1\n")
    (root / "sys/fs/cgroup").mkdir(parents=True)
    return proc


def make_env(tmp_path: Path, outputs=None, on_path=None, http=None, **tree) -> Environment:
    outputs = dict(SLURM_OK if outputs is None else outputs)
    on_path = set(on_path if on_path is not None else ("sinfo", "squeue", "scontrol", "sacct", "nvidia-smi", "iostat"))

    def http_get(url: str, timeout: float) -> tuple[int, str]:
        if http is None:
            raise OSError("connection refused")
        return http(url, timeout)

    return Environment(
        runner=MappedRunner(outputs),
        which=lambda name: f"/usr/bin/{name}" if name in on_path else None,
        proc_root=proc_tree(tmp_path, **tree),
        sys_root=tmp_path / "sys",
        http_get=http_get,
        clock=lambda: NOW,
        version_info=(3, 11, 7),
        nvml_importable=lambda: False,
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_healthy_machine_all_ok_and_exit_0(tmp_path):
    env = make_env(tmp_path, http=lambda url, t: (200, "Prometheus Server is Ready.\n"))
    checks = syscheck.run_checks(env, prometheus="http://prom:9090", config=REPO / "deploy/nomade.toml.example")
    got = by_name(checks)
    assert [c.name for c in checks] == [
        "python",
        "slurm.sinfo",
        "slurm.squeue",
        "slurm.scontrol",
        "slurm.sacct",
        "sysstat",
        "gpu",
        "nfs",
        "proc",
        "proc.pressure",
        "proc.pid_io",
        "sys",
        "prometheus",
        "config.exporter",
        "config.analytics",
        "config.monitoring",
    ]
    assert {c.name for c in checks if c.status != "ok"} == set()
    assert got["python"].detail == "Python 3.11.7 (requires >= 3.11)"
    assert got["gpu"].detail.startswith("2 GPU(s) listed by nvidia-smi")
    assert got["nfs"].detail == "2 NFS mount(s): /home, /my data"
    assert got["prometheus"].detail == "http://prom:9090 is ready"
    assert "22 collector section(s)" in got["config.exporter"].detail
    assert "7 watch(es)" in got["config.analytics"].detail
    assert syscheck.exit_status(checks) == 0


def test_old_python_fails_required(tmp_path):
    env = make_env(tmp_path)
    env.version_info = (3, 10, 12)
    c = syscheck.check_python(env)
    assert (c.status, c.required) == ("fail", True)
    assert syscheck.exit_status([c]) == 1


def test_slurm_missing_is_fatal_on_controller_but_warning_on_node(tmp_path):
    env = make_env(tmp_path, outputs={}, on_path=())
    controller = by_name(syscheck.check_slurm(env, "controller"))
    assert {n: (c.status, c.required) for n, c in controller.items()} == {
        "slurm.sinfo": ("fail", True),
        "slurm.squeue": ("fail", True),
        "slurm.scontrol": ("fail", True),
        "slurm.sacct": ("fail", True),
    }
    assert controller["slurm.sinfo"].detail == "sinfo not found on PATH"
    node = syscheck.check_slurm(env, "node")
    assert {c.status for c in node} == {"warn"} and not any(c.required for c in node)
    assert syscheck.exit_status(node) == 0
    assert env.runner.calls == []  # nothing run when the command is not on PATH


def test_sacct_without_slurmdbd(tmp_path):
    outputs = dict(SLURM_OK)
    outputs[SACCT] = CommandError(SACCT, "exit", "sacct: error: Problem talking to the database: Connection refused\n")
    env = make_env(tmp_path, outputs=outputs)
    c = by_name(syscheck.check_slurm(env, "all"))["slurm.sacct"]
    assert c.status == "fail" and c.required
    assert "Problem talking to the database: Connection refused" in c.detail
    assert c.detail.endswith("(is slurmdbd running and reachable?)")


def test_command_timeout_and_ping_down(tmp_path):
    outputs = dict(SLURM_OK)
    outputs[("squeue", "-h", "-o", "%i")] = CommandError(("squeue",), "timeout", "")
    outputs[("scontrol", "ping")] = "Slurmctld(primary) at ctl1 is DOWN\n"
    env = make_env(tmp_path, outputs=outputs)
    got = by_name(syscheck.check_slurm(env, "all", timeout=2.0))
    assert got["slurm.squeue"].status == "fail"
    assert got["slurm.squeue"].detail == "squeue -h -o %i: no answer within 2 s"
    assert (got["slurm.scontrol"].status, got["slurm.scontrol"].detail) == (
        "fail",
        "Slurmctld(primary) at ctl1 is DOWN",
    )
    assert got["slurm.sinfo"].status == "ok"


def test_sysstat_is_information_only(tmp_path):
    env = make_env(tmp_path, on_path=())
    c = syscheck.check_sysstat(env)
    assert c.status == "ok" and not c.required
    assert "computes iostat/mpstat/vmstat figures from /proc" in c.detail


def test_gpu_absent_skips_and_failing_smi_warns(tmp_path):
    env = make_env(tmp_path, on_path=())
    assert syscheck.check_gpu(env).status == "skip"
    outputs = dict(SLURM_OK)
    outputs[("nvidia-smi", "-L")] = CommandError(("nvidia-smi", "-L"), "exit", "NVIDIA-SMI has failed because ...")
    env = make_env(tmp_path / "b", outputs=outputs)
    c = syscheck.check_gpu(env)
    assert c.status == "warn" and not c.required and "NVIDIA-SMI has failed" in c.detail


def test_nfs_mounts_parser():
    assert syscheck.nfs_mounts(MOUNTINFO) == ["/home", "/my data"]
    assert syscheck.nfs_mounts("garbage line\n") == []


def test_proc_checks(tmp_path):
    env = make_env(tmp_path, pressure=False, pid_io=False, missing=("diskstats",))
    got = by_name(syscheck.check_proc(env))
    assert got["proc"].status == "fail" and got["proc"].required
    assert got["proc"].detail.startswith("diskstats: No such file")
    assert got["proc.pressure"].status == "warn" and not got["proc.pressure"].required
    assert got["proc.pid_io"].status == "warn" and "CAP_DAC_READ_SEARCH" in got["proc.pid_io"].detail
    assert got["sys"].status == "ok"


def test_prometheus_check(tmp_path):
    seen = []

    def http(url, timeout):
        seen.append((url, timeout))
        return 503, "Service Unavailable"

    env = make_env(tmp_path, http=http)
    c = syscheck.check_prometheus(env, "https://user:secret@prom.example:9443/prom/", timeout=3.0)
    assert seen == [("https://user:secret@prom.example:9443/prom/-/ready", 3.0)]
    assert c.status == "fail" and c.required
    assert c.detail == "https://prom.example:9443/prom/-/ready answered HTTP 503: Service Unavailable"
    assert "secret" not in c.detail
    assert syscheck.check_prometheus(env, None).status == "skip"
    bad = syscheck.check_prometheus(env, "file:///etc/passwd")
    assert bad.status == "fail" and len(seen) == 1
    down = syscheck.check_prometheus(make_env(tmp_path / "b"), "http://127.0.0.1:9")
    assert down.status == "fail" and "unreachable: connection refused" in down.detail


def test_split_config_routes_tables_to_components():
    text = (
        "# top comment\n[exporter]\nmode = 'node'\n[collector.cpu]\nuser_hz = 100\n"
        "[[analytics.watch]]\nname = 'x'\n[analytics]\n[monitoring.thresholds]\n[grafana]\n[bogus]\nx = 1\n"
    )
    parts = syscheck.split_config(text)
    assert set(parts) == {"exporter", "analytics", "monitoring", "unknown"}
    assert parts["exporter"] == "# top comment\n[exporter]\nmode = 'node'\n[collector.cpu]\nuser_hz = 100\n"
    assert parts["analytics"] == "# top comment\n[[analytics.watch]]\nname = 'x'\n[analytics]\n"
    assert parts["unknown"] == "# top comment\n[bogus]\nx = 1\n"


def test_config_errors_name_the_user_file_and_key(tmp_path):
    cfg = tmp_path / "nomade.toml"
    cfg.write_text("[exporter]\nmode = 'sideways'\n[analytics]\nretries = -1\n[bogus]\n")
    got = syscheck.check_config(cfg)
    names = {c.name: c for c in got}
    assert names["config"].status == "fail" and "unknown table(s) bogus" in names["config"].detail
    assert names["config.exporter"].status == "fail"
    assert names["config.exporter"].detail == f"{cfg}: exporter.mode must be one of auto, node, controller, all"
    assert names["config.analytics"].detail == f"{cfg}: analytics.retries must be an integer >= 0"
    assert names["config.monitoring"].status == "skip"
    assert "nomade-syscheck-" not in " ".join(c.detail for c in got)  # the temporary split file is never shown
    assert syscheck.exit_status(got) == 1
    assert syscheck.check_config(None)[0].status == "skip"


def test_json_and_text_output_and_exit_code_through_main(tmp_path, capsys, monkeypatch):
    env = make_env(tmp_path, outputs={}, on_path=())
    real = syscheck.run_checks
    monkeypatch.setattr(syscheck, "run_checks", lambda e=None, **kw: real(env, **kw))
    rc = cli_main.main(["syscheck", "--format", "json", "--mode", "controller"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["ok"] is False
    sinfo = next(c for c in doc["checks"] if c["name"] == "slurm.sinfo")
    assert sinfo == {"name": "slurm.sinfo", "status": "fail", "detail": "sinfo not found on PATH", "required": True}
    rc = cli_main.main(["syscheck", "--mode", "node"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "WARN slurm.sinfo" in text and text.rstrip().endswith("warning(s).")


def test_bad_mode_rejected():
    with pytest.raises(ValueError):
        syscheck.run_checks(Environment(), mode="login")
    p = argparse.ArgumentParser()
    syscheck.add_options(p)
    assert p.parse_args([]).mode == "all"


def test_real_http_get_sends_url_credentials_as_basic_auth():
    import base64
    import http.server
    import threading

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen["path"], seen["auth"] = self.path, self.headers.get("Authorization")
            body = b"Prometheus Server is Ready.\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        env = Environment(http_get=syscheck._http_get)
        c = syscheck.check_prometheus(env, f"http://admin:s%40cret@127.0.0.1:{port}", timeout=5.0)
    finally:
        server.shutdown()
        server.server_close()
    assert c == Check("prometheus", "ok", f"http://127.0.0.1:{port} is ready", True)
    assert seen == {"path": "/-/ready", "auth": "Basic " + base64.b64encode(b"admin:s@cret").decode()}
