import sys
import threading
import time

import pytest

from nomade.exporter.runner import CommandError, CommandRunner

PY = sys.executable


def test_runs_argv_with_c_locale_and_standard_time_format():
    r = CommandRunner(ttl=0)
    res = r.run([PY, "-c", "import os; print(os.environ['LC_ALL'], os.environ['SLURM_TIME_FORMAT'])"])
    assert res.stdout.split() == ["C", "standard"]
    assert res.duration >= 0


def test_never_uses_a_shell():
    r = CommandRunner(ttl=0)
    res = r.run(["echo", "$HOME; rm -rf /"])
    assert res.stdout == "$HOME; rm -rf /\n"


def test_missing_command_is_reported_and_counted():
    r = CommandRunner(ttl=0)
    with pytest.raises(CommandError) as ei:
        r.run(["/nonexistent/squeue"])
    assert ei.value.reason == "missing"
    assert r.errors[("squeue", "missing")] == 1


def test_nonzero_exit_carries_stderr():
    r = CommandRunner(ttl=0)
    with pytest.raises(CommandError) as ei:
        r.run(
            [
                PY,
                "-c",
                "import sys; sys.stderr.write('slurm_load_jobs error: Unable to contact'); sys.exit(1)",
            ]
        )
    assert ei.value.reason == "exit"
    assert "Unable to contact" in ei.value.detail


def test_timeout_kills_the_process_group():
    r = CommandRunner(ttl=0)
    # The child forks a grandchild that would keep the pipe open; killing the group ends both.
    code = "import subprocess,time; subprocess.Popen(['sleep','30']); time.sleep(30)"
    t0 = time.monotonic()
    with pytest.raises(CommandError) as ei:
        r.run([PY, "-c", code], timeout=1.0)
    assert ei.value.reason == "timeout"
    assert time.monotonic() - t0 < 5
    assert r.errors[(ei.value.argv[0].rsplit("/", 1)[-1], "timeout")] == 1


def test_non_utf8_output_is_replaced_not_fatal():
    r = CommandRunner(ttl=0)
    res = r.run([PY, "-c", "import sys; sys.stdout.buffer.write(b'job\\xff\\xfename\\n')"])
    assert res.stdout == "job\ufffd\ufffdname\n"


def test_results_are_cached_for_ttl_and_shared():
    now = [1000.0]
    r = CommandRunner(ttl=15, clock=lambda: now[0])
    argv = [PY, "-c", "import time; print(time.time_ns())"]
    a = r.run(argv)
    now[0] += 10
    assert r.run(argv).stdout == a.stdout
    now[0] += 6
    assert r.run(argv).stdout != a.stdout
    assert r.runs[argv[0].rsplit("/", 1)[-1]] == 2


def test_failures_are_cached_too():
    now = [0.0]
    r = CommandRunner(ttl=15, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(CommandError):
            r.run(["/nonexistent/sinfo"])
    assert r.errors[("sinfo", "missing")] == 1


def test_concurrent_callers_share_one_run():
    r = CommandRunner(ttl=30)
    argv = [PY, "-c", "import time, os; time.sleep(0.5); print(os.getpid())"]
    outs: list[str] = []
    threads = [threading.Thread(target=lambda: outs.append(r.run(argv).stdout)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 8 and len(set(outs)) == 1
    assert sum(r.runs.values()) == 1
