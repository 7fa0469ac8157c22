"""nomade syscheck: every check against a fake machine (runner, PATH, /proc tree, HTTP), exit codes, output."""

from __future__ import annotations

import argparse
import json
import sys
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


OWNERS = {1: 0, 733: 0, 4242: 1000}
"""pid -> owner uid of the fake /proc: init and a daemon owned by root, a job process owned by uid 1000."""
CAP_ALL = "000001ffffffffff"
"""CapEff of root on a 5.x/6.x kernel (capabilities 0-40)."""
CAP_NONE = "0000000000000000"
"""CapEff of an unprivileged user, e.g. ``runuser -u nomade``."""
CAP_JOB_IO = "0000000000080004"
"""CapEff under the node unit's AmbientCapabilities=CAP_DAC_READ_SEARCH (bit 2) CAP_SYS_PTRACE (bit 19)."""


def status_text(cap_eff: str) -> str:
    return (
        "Name:\tnomade\nUmask:\t0022\nState:\tR (running)\nUid:\t999\t999\t999\t999\n"
        f"CapInh:\t{cap_eff}\nCapPrm:\t{cap_eff}\nCapEff:\t{cap_eff}\nCapBnd:\t000001ffffffffff\n"
        f"CapAmb:\t{cap_eff}\nNoNewPrivs:\t0\n"
    )


def proc_tree(
    root: Path,
    *,
    pressure: bool = True,
    pid_io: bool = True,
    missing: tuple[str, ...] = (),
    cap_eff: str | None = CAP_ALL,
) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    if cap_eff is not None:
        (proc / "self/status").write_text(status_text(cap_eff))
    for pid in OWNERS:
        (proc / str(pid)).mkdir()
    for name in ("stat", "meminfo", "diskstats"):
        if name not in missing:
            (proc / name).write_text("x\n")
    (proc / "self/mountinfo").write_text(MOUNTINFO)
    if pressure:
        (proc / "pressure").mkdir()
        for n in ("cpu", "memory", "io"):
            (proc / "pressure" / n).write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    if pid_io:
        for pid in OWNERS:
            (proc / str(pid) / "io").write_text("rchar: 1\n")
    (root / "sys/fs/cgroup").mkdir(parents=True)
    return proc


def make_env(tmp_path: Path, outputs=None, on_path=None, http=None, euid=0, owners=None, **tree) -> Environment:
    outputs = dict(SLURM_OK if outputs is None else outputs)
    on_path = set(on_path if on_path is not None else ("sinfo", "squeue", "scontrol", "sacct", "nvidia-smi", "iostat"))

    def http_get(url: str, timeout: float, **kw) -> tuple[int, str]:
        if http is None:
            raise OSError("connection refused")
        return http(url, timeout, **kw) if kw else http(url, timeout)

    owner_of = dict(OWNERS if owners is None else owners)

    def owner_uid(path: Path) -> int:
        if int(path.name) not in owner_of:
            raise FileNotFoundError(2, "No such file or directory")
        return owner_of[int(path.name)]

    return Environment(
        runner=MappedRunner(outputs),
        which=lambda name: f"/usr/bin/{name}" if name in on_path else None,
        proc_root=proc_tree(tmp_path, **tree),
        sys_root=tmp_path / "sys",
        http_get=http_get,
        clock=lambda: NOW,
        version_info=(3, 11, 7),
        nvml=lambda: syscheck.NvmlStatus(False),
        euid=lambda: euid,
        owner_uid=owner_uid,
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
    assert env.runner.calls == []  # nothing run when the command is not on PATH


def test_node_mode_runs_no_slurm_command(tmp_path):
    env = make_env(tmp_path)  # SLURM answering: still not run on a node
    node = syscheck.check_slurm(env, "node")
    assert [(c.name, c.status, c.required) for c in node] == [
        ("slurm.sinfo", "skip", False),
        ("slurm.squeue", "skip", False),
        ("slurm.scontrol", "skip", False),
        ("slurm.sacct", "skip", False),
    ]
    assert node[0].detail.startswith("not checked in node mode")
    assert syscheck.exit_status(node) == 0
    assert env.runner.calls == []
    checks = syscheck.run_checks(env, mode="node")
    assert not any(c.status == "warn" for c in checks if c.name.startswith("slurm."))
    assert [call for call in env.runner.calls if call[0] != "nvidia-smi"] == []


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


class FakeNVMLError(Exception):
    """pynvml.NVMLError stand-in: str() is the NVML error string, as nvmlErrorString gives it."""


def fake_pynvml(*, init_error: str | None = None, count: int = 4, calls: list[str] | None = None):
    """A module object with the pynvml calls the probe makes, recording them in ``calls``."""
    import types

    calls = [] if calls is None else calls
    mod = types.ModuleType("pynvml")
    mod.NVMLError = FakeNVMLError

    def nvml_init() -> None:
        calls.append("nvmlInit")
        if init_error is not None:
            raise FakeNVMLError(init_error)

    def nvml_count() -> int:
        calls.append("nvmlDeviceGetCount")
        return count

    mod.nvmlInit = nvml_init
    mod.nvmlDeviceGetCount = nvml_count
    mod.nvmlShutdown = lambda: calls.append("nvmlShutdown")
    return mod


def test_probe_nvml_initialises_counts_and_shuts_down(monkeypatch):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=4, calls=calls))
    assert syscheck.probe_nvml() == syscheck.NvmlStatus(True, 4, "")
    assert calls == ["nvmlInit", "nvmlDeviceGetCount", "nvmlShutdown"]
    calls.clear()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="NVML Shared Library Not Found", calls=calls))
    assert syscheck.probe_nvml() == syscheck.NvmlStatus(True, None, "NVML Shared Library Not Found")
    assert calls == ["nvmlInit"]  # no shutdown of what was never initialised
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert syscheck.probe_nvml() == syscheck.NvmlStatus(False)


def test_gpu_nvml_without_driver_warns_with_the_nvml_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="NVML Shared Library Not Found"))
    env = make_env(tmp_path, on_path=())
    env.nvml = syscheck.probe_nvml
    c = syscheck.check_gpu(env)
    assert (c.status, c.required) == ("warn", False)
    assert c.detail == (
        "NVML bindings import but NVML cannot be initialised: NVML Shared Library Not Found (is the NVIDIA driver "
        "loaded?); nvidia-smi not on PATH"
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=2))
    c = syscheck.check_gpu(env)
    assert c == Check("gpu", "ok", "NVML sees 2 GPU(s); nvidia-smi not on PATH")
    env = make_env(tmp_path / "b")  # nvidia-smi answering too
    env.nvml = syscheck.probe_nvml
    c = syscheck.check_gpu(env)
    assert c == Check("gpu", "ok", "2 GPU(s) listed by nvidia-smi; NVML sees 2 GPU(s)")


def test_nfs_mounts_parser():
    assert syscheck.nfs_mounts(MOUNTINFO) == ["/home", "/my data"]
    assert syscheck.nfs_mounts("garbage line\n") == []


def test_proc_checks(tmp_path):
    env = make_env(tmp_path, pressure=False, pid_io=False, missing=("diskstats",))
    got = by_name(syscheck.check_proc(env))
    assert got["proc"].status == "fail" and got["proc"].required
    assert got["proc"].detail.startswith("diskstats: No such file")
    assert got["proc.pressure"].status == "warn" and not got["proc.pressure"].required
    assert got["sys"].status == "ok"


def denied_recorder(seen: list[Path]):
    def denied(path: Path) -> OSError:
        seen.append(path)
        return PermissionError(13, "Permission denied")

    return denied


def test_effective_caps_decodes_capeff(tmp_path):
    proc = proc_tree(tmp_path, cap_eff=CAP_JOB_IO)
    assert syscheck.effective_caps(proc) == 0x80004 == (1 << 2) | (1 << 19)
    assert syscheck.describe_caps(0x80004) == (
        "CapEff 0000000000080004 (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE effective)"
    )
    assert syscheck.describe_caps(1 << 19) == "CapEff 0000000000080000 (CAP_SYS_PTRACE effective)"
    assert syscheck.describe_caps(0) == "CapEff 0000000000000000 (none of CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE)"
    assert syscheck.describe_caps(None) == "CapEff unknown"
    (proc / "self/status").write_text("Name:\tx\nCapEff:\tzz\n")
    assert syscheck.effective_caps(proc) is None
    (proc / "self/status").unlink()
    assert syscheck.effective_caps(proc) is None


def test_pid_io_as_root_probes_another_users_process_not_pid_1(tmp_path):
    env = make_env(tmp_path)  # running as root (euid 0): pid 4242 (uid 1000) is the first one of another user
    c = syscheck.check_pid_io(env)
    assert (c.status, c.required) == ("ok", False)
    assert c.detail == (
        f"effective user {syscheck.user_label(0)}, CapEff 000001ffffffffff (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE "
        f"effective): {env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) readable: job_io can read jobs"
    )
    # root, every process root's (a container): nothing to probe, root is enough
    env = make_env(tmp_path / "b", owners={1: 0, 733: 0, 4242: 0})
    c = syscheck.check_pid_io(env)
    assert c.status == "ok"
    assert c.detail.endswith(
        f"job_io can read jobs' /proc/<pid>/io; no process of another user visible in {env.proc_root} to probe "
        "(hidepid, or a container?)"
    )


def test_pid_io_under_runuser_warns_with_the_setpriv_command(tmp_path):
    # runuser -u nomade: uid 999 without the unit's ambient capabilities
    seen: list[Path] = []
    env = make_env(tmp_path, euid=999, cap_eff=CAP_NONE)
    env.open_error = denied_recorder(seen)
    c = syscheck.check_pid_io(env)
    assert seen == [env.proc_root / "4242/io"]  # an ordinary user's process before root's pid 1
    assert (c.status, c.required) == ("warn", False)
    assert c.detail == (
        f"effective user {syscheck.user_label(999)}, CapEff 0000000000000000 (none of CAP_DAC_READ_SEARCH, "
        f"CAP_SYS_PTRACE): {env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) not readable: EACCES Permission "
        "denied: job_io needs root or CAP_SYS_PTRACE+CAP_DAC_READ_SEARCH; the nomade-exporter-node unit grants them "
        "as ambient capabilities (AmbientCapabilities=), which runuser/su do not: as runuser -u nomade this warning "
        "is expected; to check like the unit: setpriv --reuid=nomade --regid=nomade --init-groups "
        "--inh-caps=+dac_read_search,+sys_ptrace --ambient-caps=+dac_read_search,+sys_ptrace nomade syscheck "
        "--mode node"
    )
    # one capability of the two is not enough; no status file: CapEff unknown, still a warning
    env = make_env(tmp_path / "b", euid=999, cap_eff="0000000000080000")
    env.open_error = denied_recorder([])
    c = syscheck.check_pid_io(env)
    assert c.status == "warn" and "(CAP_SYS_PTRACE effective): " in c.detail
    # without the capabilities, a read the kernel allows after all is trusted
    env = make_env(tmp_path / "d", euid=999, cap_eff=CAP_NONE)
    c = syscheck.check_pid_io(env)
    assert c.status == "ok" and c.detail.endswith(
        f"{env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) readable: job_io can read jobs"
    )
    env = make_env(tmp_path / "c", euid=999, cap_eff=None, owners={1: 999})
    c = syscheck.check_pid_io(env)
    assert c.status == "warn"
    assert c.detail.startswith(f"effective user {syscheck.user_label(999)}, CapEff unknown: job_io needs root or ")


def test_pid_io_with_the_units_capabilities(tmp_path):
    # setpriv ... --ambient-caps=+dac_read_search,+sys_ptrace: the node unit's view
    env = make_env(tmp_path, euid=999, cap_eff=CAP_JOB_IO)
    c = syscheck.check_pid_io(env)
    assert c.status == "ok"
    assert c.detail == (
        f"effective user {syscheck.user_label(999)}, CapEff 0000000000080004 (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE "
        f"effective): {env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) readable: job_io can read jobs"
    )
    # the capabilities but the read refused all the same (an LSM): a warning with the errno
    env = make_env(tmp_path / "b", euid=999, cap_eff=CAP_JOB_IO)
    env.open_error = denied_recorder([])
    c = syscheck.check_pid_io(env)
    assert c.status == "warn"
    assert c.detail.endswith(
        f"{env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) not readable: EACCES Permission denied despite "
        "root or the capabilities (LSM, hidepid?)"
    )


def test_pid_io_probes_root_processes_only_when_no_other_user_has_one(tmp_path):
    env = make_env(tmp_path, euid=999, cap_eff=CAP_JOB_IO, owners={1: 0, 733: 999, 4242: 999})
    seen: list[Path] = []
    env.open_error = denied_recorder(seen)
    syscheck.check_pid_io(env)
    assert seen == [env.proc_root / "1/io"]


def test_pid_io_skips_exited_processes(tmp_path):
    env = make_env(tmp_path, pid_io=False, owners={1: 0, 733: 5, 4242: 1000})
    (env.proc_root / "4242/io").write_text("rchar: 1\n")  # pids 1 and 733 exited between the scan and the read
    c = syscheck.check_pid_io(env)
    assert c.status == "ok"
    assert c.detail.endswith(
        f"{env.proc_root}/4242/io (owner {syscheck.user_label(1000)}) readable: job_io can read jobs"
    )


def test_controller_mode_skips_node_only_checks(tmp_path):
    env = make_env(tmp_path, euid=999, cap_eff=CAP_NONE)  # would warn on proc.pid_io in node mode
    env.nvml = lambda: pytest.fail("NVML probed in controller mode")
    checks = syscheck.run_checks(env, mode="controller")
    got = by_name(checks)
    skipped = "not checked in controller mode (only node collectors need it; see --mode node)"
    assert [(n, got[n].status, got[n].detail) for n in ("gpu", "nfs", "proc.pid_io")] == [
        ("gpu", "skip", skipped),
        ("nfs", "skip", skipped),
        ("proc.pid_io", "skip", skipped),
    ]
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
        "config",
    ]
    assert not any(call[0] == "nvidia-smi" for call in env.runner.calls)
    assert {c.name for c in checks if c.status == "warn"} == set()
    env = make_env(tmp_path / "b", euid=999, cap_eff=CAP_NONE)
    env.open_error = denied_recorder([])
    node = by_name(syscheck.run_checks(env, mode="node"))
    assert (node["gpu"].status, node["nfs"].status, node["proc.pid_io"].status) == ("ok", "ok", "warn")


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
    assert "--   slurm.sinfo" in text and "WARN slurm" not in text


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


# -- --mode analytics -----------------------------------------------------------------------------------------------


class FakeModule:
    def __init__(self, version: str) -> None:
        self.__version__ = version


def fake_import(missing: dict[str, str] | None = None):
    """import_module stand-in: every analytics module imports (version 1.0) but those of ``missing`` (-> message)."""
    missing = missing or {}

    def import_module(name: str) -> FakeModule:
        if name in missing:
            raise ImportError(missing[name])
        return FakeModule("1.0")

    return import_module


def analytics_env(tmp_path: Path, *, missing=None, http=None, writable=True, seen=None) -> Environment:
    def record(url, timeout, **kw):
        if seen is not None:
            seen.append((url, timeout, kw))
        return (200, "Prometheus Server is Ready.\n") if http is None else http(url, timeout, **kw)

    env = make_env(tmp_path / "machine", http=record)
    env.import_module = fake_import(missing)
    env.access = lambda path, mode: writable
    return env


def analytics_config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "analytics.toml"
    state = tmp_path / "state"
    cfg.write_text(
        f'[analytics]\nprometheus_url = "http://prom:9090"\n{extra}\n'
        f'[analytics.risk]\nstore = "{state}/jobs.sqlite"\nmodel_dir = "{state}/models"\n'
    )
    return cfg


def test_analytics_mode_checks_the_analytics_host_only(tmp_path, monkeypatch):
    monkeypatch.setattr(syscheck, "SERVICE_STATE_DIR", tmp_path / "state")
    (tmp_path / "state").mkdir()
    seen = []
    env = analytics_env(tmp_path, seen=seen)
    checks = syscheck.run_checks(env, mode="analytics", config=analytics_config(tmp_path), timeout=3.0)
    assert [(c.name, c.status, c.required) for c in checks] == [
        ("python", "ok", True),
        ("analytics.extras", "ok", True),
        ("prometheus", "ok", True),
        ("config.analytics", "ok", True),
        ("analytics.store", "ok", True),
        ("analytics.model_dir", "ok", True),
    ]
    got = by_name(checks)
    assert got["analytics.extras"].detail == "numpy 1.0, pandas 1.0, sklearn 1.0, torch 1.0, torch_geometric 1.0"
    assert seen == [("http://prom:9090/-/ready", 3.0, {})]  # the configuration's prometheus_url, no auth
    assert got["config.analytics"].detail.startswith(f"{tmp_path}/analytics.toml: http://prom:9090, ")
    note = (
        "(root writes anywhere: check as the service's user too, runuser -u nomade -- nomade syscheck --mode analytics)"
    )
    assert got["analytics.store"].detail == f"{tmp_path}/state writable by root (uid 0) {note}"
    assert got["analytics.model_dir"].detail == (
        f"{tmp_path}/state/models does not exist yet; {tmp_path}/state is writable by root (uid 0) {note}, the "
        "service creates it"
    )
    assert env.runner.calls == []  # no SLURM command, no nvidia-smi
    assert syscheck.exit_status(checks) == 0


def test_analytics_extras_name_what_is_missing(tmp_path):
    env = analytics_env(
        tmp_path, missing={"torch": "No module named 'torch'", "torch_geometric": "No module named 'torch'"}
    )
    c = syscheck.check_analytics_extras(env, risk_enabled=True)
    assert (c.status, c.required) == ("fail", True)
    assert c.detail.startswith(
        "missing: torch (No module named 'torch'), torch_geometric (No module named 'torch'): "
        "the risk scores need them;"
    )
    assert "nomade-hpc[ml]" in c.detail
    off = syscheck.check_analytics_extras(env, risk_enabled=False)  # the trend watches alone do not need torch
    assert (off.status, off.required) == ("warn", False)
    env = analytics_env(tmp_path / "b", missing={"numpy": "No module named 'numpy'"})
    no_numpy = syscheck.check_analytics_extras(env, risk_enabled=False)
    assert (no_numpy.status, no_numpy.required) == ("fail", True)
    assert no_numpy.detail.startswith("missing: numpy (No module named 'numpy'): risk is disabled, but")


def test_analytics_prometheus_uses_the_configured_auth_and_tls(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    ca = tmp_path / "ca.pem"
    seen = []
    env = analytics_env(tmp_path, seen=seen)
    cfg = analytics_config(tmp_path, f'bearer_token_file = "{token}"\nca_file = "{ca}"\n')
    got = by_name(syscheck.run_checks(env, mode="analytics", config=cfg))
    assert seen == [
        ("http://prom:9090/-/ready", 5.0, {"headers": {"Authorization": "Bearer t0ken"}, "verify": str(ca)})
    ]
    assert got["prometheus"].status == "ok"
    seen.clear()
    cfg = analytics_config(tmp_path, '[analytics.basic_auth]\nusername = "nomade"\npassword = "s3:cret"\n')
    got = by_name(syscheck.run_checks(env, mode="analytics", config=cfg, prometheus="https://prom.example/"))
    assert seen == [("https://nomade:s3%3Acret@prom.example/-/ready", 5.0, {})]  # --prometheus wins, auth kept
    assert got["prometheus"].detail == "https://prom.example is ready" and "s3" not in got["prometheus"].detail


def test_analytics_without_config_checks_the_defaults(tmp_path):
    seen = []
    env = analytics_env(tmp_path, seen=seen, writable=False)
    got = by_name(syscheck.run_checks(env, mode="analytics"))
    assert seen[0][0] == "http://127.0.0.1:9090/-/ready"
    assert got["config.analytics"].status == "skip"
    # the built-in store and registry paths, under the unit's StateDirectory
    assert got["analytics.store"].detail.startswith("/var/lib/nomade/analytics ")
    assert got["analytics.model_dir"].detail.startswith("/var/lib/nomade/analytics/models ")


def test_analytics_bad_config_and_risk_disabled(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[analytics]\nretries = -1\n")
    env = analytics_env(tmp_path)
    checks = syscheck.run_checks(env, mode="analytics", config=bad)
    got = by_name(checks)
    assert got["config.analytics"].detail == f"{bad}: analytics.retries must be an integer >= 0"
    assert got["prometheus"].status == "ok"  # the default URL is still probed
    assert got["analytics.store"].status == "skip" and syscheck.exit_status(checks) == 1
    off = tmp_path / "off.toml"
    off.write_text("[analytics.risk]\nenabled = false\n")
    env = analytics_env(tmp_path / "b", missing={"torch": "No module named 'torch'"})
    got = by_name(syscheck.run_checks(env, mode="analytics", config=off))
    assert got["analytics.extras"].status == "warn"
    assert got["analytics.model_dir"] == Check("analytics.model_dir", "skip", "[analytics.risk] enabled = false")
    exporter_only = tmp_path / "exporter.toml"
    exporter_only.write_text("[exporter]\nmode = 'node'\n")
    got = by_name(syscheck.run_checks(env, mode="analytics", config=exporter_only))
    assert got["config.analytics"].detail == f"{exporter_only} has no [analytics] table"


def test_writable_dir_checks(tmp_path, monkeypatch):
    monkeypatch.setattr(syscheck, "SERVICE_STATE_DIR", tmp_path / "svc")
    env = make_env(tmp_path / "m", euid=0)
    env.access = lambda path, mode: False
    (tmp_path / "svc").mkdir()
    c = syscheck.check_writable_dir(env, "analytics.store", tmp_path / "svc")
    assert (c.status, c.required) == ("fail", True)
    assert c.detail == f"{tmp_path}/svc not writable by root (uid 0) (run the check as the service's user)"
    c = syscheck.check_writable_dir(env, "analytics.model_dir", tmp_path / "elsewhere/models")
    assert (
        c.status == "fail"
        and c.detail == f"{tmp_path}/elsewhere/models does not exist and {tmp_path} is not writable by root (uid 0)"
    )
    env.access = lambda path, mode: True
    c = syscheck.check_writable_dir(env, "analytics.model_dir", tmp_path / "elsewhere/models")
    assert c.status == "warn" and "add it to ReadWritePaths= of nomade-analytics.service" in c.detail
    env.euid = lambda: 4321  # the service's user: no root note
    (tmp_path / "svc/models").mkdir()
    c = syscheck.check_writable_dir(env, "analytics.model_dir", tmp_path / "svc/models")
    assert c == Check(
        "analytics.model_dir", "ok", f"{tmp_path}/svc/models writable by {syscheck.user_label(4321)}", True
    )
    (tmp_path / "svc/models").rmdir()
    env.euid = lambda: 0
    # missing under the unit's StateDirectory, parent not writable: systemd will create it, so only a warning
    env.access = lambda path, mode: False
    c = syscheck.check_writable_dir(env, "analytics.model_dir", tmp_path / "svc/models")
    assert (c.status, c.required) == ("warn", True)
    assert c.detail.startswith(f"{tmp_path}/svc/models does not exist yet and {tmp_path}/svc is not writable by root")
    assert c.detail.endswith(f"install -d -o nomade -g nomade -m 0750 {tmp_path}/svc")
    env.access = lambda path, mode: True
    (tmp_path / "afile").write_text("")
    c = syscheck.check_writable_dir(env, "analytics.store", tmp_path / "afile")
    assert c.status == "fail" and c.detail.endswith("exists and is not a directory")


def test_analytics_mode_through_main(tmp_path, capsys, monkeypatch):
    env = analytics_env(tmp_path)
    real = syscheck.run_checks
    monkeypatch.setattr(syscheck, "run_checks", lambda e=None, **kw: real(env, **kw))
    rc = cli_main.main(
        ["syscheck", "--mode", "analytics", "--format", "json", "--config", str(analytics_config(tmp_path))]
    )
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["checks"]][:3] == ["python", "analytics.extras", "prometheus"]
    assert not any(c["name"].startswith(("slurm.", "proc", "gpu", "nfs")) for c in doc["checks"])
    assert rc == 0 and doc["ok"] is True
