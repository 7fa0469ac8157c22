"""The exporter on the real lab cluster, asserted through Prometheus's HTTP API.

Needs the lab started and loaded (``make test`` does it: ``deploy/lab/lab.sh reset && start && workload``):
Prometheus scrapes the exporter every 5 s (job ``nomade``), the exporter runs every collector (``--mode all``).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from conftest import EXPORTER_URL, LAB_DIR, run_slurm, wait_for
from sysstat_compare import (
    Tolerances,
    compare_iostat,
    compare_mpstat,
    compare_vmstat,
    last_iostat_report,
    last_mpstat_report,
    last_vmstat_line,
    report,
)

from nomade.exporter.catalog import catalog

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ["bash", str(ROOT / "deploy" / "lab" / "lab.sh")]
LABELS = {spec.name: spec.labels for _, spec in catalog()}
MIB = 1024 * 1024


def vector(prom_query, expr: str) -> dict[frozenset, float]:
    """``{frozenset(labels.items()): value}`` of an instant query (``__name__`` dropped)."""
    out = {}
    for r in prom_query(expr):
        labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
        out[frozenset(labels.items())] = float(r["value"][1])
    return out


def by(prom_query, expr: str, label: str) -> dict[str, float]:
    """``{value of label: sample value}`` of an instant query."""
    return {r["metric"][label]: float(r["value"][1]) for r in prom_query(expr)}


def scrape_exporter(timeout_header: float | None = None) -> tuple[str, float]:
    """The exporter's /metrics body and the seconds it took."""
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(timeout_header)} if timeout_header else {}
    t0 = time.monotonic()
    body = requests.get(f"{EXPORTER_URL}/metrics", headers=headers, timeout=60).text
    return body, time.monotonic() - t0


def exposed(body: str, name: str) -> dict[str, float]:
    """``{label text: value}`` of one metric in an exposition body."""
    out = {}
    for line in body.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


# ----------------------------------------------------------------------------------------------- accounting


def test_finished_job_counters_match_the_workload_exactly(prom_query, lab_workload):
    expected = {k: float(v) for k, v in lab_workload["totals"].items()}
    assert expected, "the workload produced no finished jobs"

    def current():
        return by(prom_query, "sum by (failure_class) (nomade_slurm_job_finished_total)", "failure_class")

    got = wait_for(lambda: current() == expected and current(), timeout=90, interval=3)
    assert got == expected, f"Prometheus has {current()}, the workload expects {expected}"

    per_partition = collections.Counter(
        (j["partition"], j["failure_class"]) for j in lab_workload["jobs"] if j["expected_state"] != "PENDING"
    )
    got_pp = {
        (r["metric"]["partition"], r["metric"]["failure_class"]): float(r["value"][1])
        for r in prom_query("sum by (partition, failure_class) (nomade_slurm_job_finished_total)")
    }
    assert got_pp == {k: float(v) for k, v in per_partition.items()}


def test_per_job_series_carry_the_workload_facts(prom_query, lab_workload):
    finished = [j for j in lab_workload["jobs"] if j["expected_state"] != "PENDING"]
    infos = {r["metric"]["job_id"]: r["metric"] for r in prom_query("nomade_slurm_job_info")}
    for j in finished:
        info = infos.get(j["job_id"])
        assert info is not None, f"no nomade_slurm_job_info for job {j['job_id']} ({j['name']})"
        assert info["user"] == j["user"]
        assert info["account"] == j["account"]
        assert info["partition"] == j["partition"]
        assert info["failure_class"] == j["failure_class"], j
        assert info["job_name"] == j["sacct_name"]
    exit_codes = by(prom_query, "nomade_slurm_job_exit_code", "job_id")
    for j in finished:
        if not j.get("exit_code_stable", True):
            continue  # re-sent to slurmdbd with 0:15 after a slurmctld restart (deploy/lab/workload_report.py)
        code, _, _sig = j["expected_exit_code"].partition(":")
        assert exit_codes.get(j["job_id"]) == float(code), j


@pytest.mark.disruptive
def test_counters_survive_an_exporter_restart(lab_workload):
    # Jobs of the job-submitting tests may still be ending: wait until only the workload's held job is left in
    # the queue and sacct has been polled since (lab: sacct every 5 s, command cache 4 s), so that no job
    # finishes between the two reads.
    def queue_quiet() -> bool:
        states = run_slurm(["squeue", "-h", "-o", "%T"]).split()
        return all(s == "PENDING" for s in states)

    assert wait_for(queue_quiet, timeout=120, interval=2), run_slurm(["squeue"])
    time.sleep(12)
    before = exposed(scrape_exporter()[0], "nomade_slurm_job_finished_total")
    # Runs after the tests that submit jobs of their own (conftest.py orders them): at least the workload.
    assert sum(before.values()) >= lab_workload["finished_jobs"]
    pidfile = LAB_DIR / "run" / "exporter.pid"
    os.kill(int(pidfile.read_text()), 15)
    wait_for(lambda: subprocess.run(["pgrep", "-f", "nomade-exporter"], capture_output=True).returncode != 0, 20)
    subprocess.run([*LAB_SH, "start"], check=True, capture_output=True, timeout=120)
    after = exposed(scrape_exporter()[0], "nomade_slurm_job_finished_total")
    assert after == before


# ----------------------------------------------------------------------------------------------- exposition


def test_live_exposition_passes_promtool_with_hostile_labels(lab_workload):
    body, _ = scrape_exporter()
    res = subprocess.run(["promtool", "check", "metrics"], input=body.encode(), capture_output=True, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).decode().splitlines() if "error" in ln.lower()]
    assert res.returncode in (0, 3) and not problems, res.stdout + res.stderr  # 3 = lint warnings only
    weird = next(j for j in lab_workload["jobs"] if "\\" in j["name"])
    escaped = weird["sacct_name"].replace("\\", "\\\\").replace('"', '\\"')
    assert f'job_name="{escaped}"' in body
    reason = lab_workload["drained"]["reason"].replace("\\", "\\\\").replace('"', '\\"')
    assert f'reason="{reason}"' in body


# ----------------------------------------------------------------------------------------------- nodes


def scontrol_nodes() -> dict[str, dict[str, str]]:
    """``scontrol -o show node`` read with a plain regex, independent of the exporter's parser."""
    out = {}
    for line in run_slurm(["scontrol", "-o", "show", "node"]).splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "NodeName" in fields:
            out[fields["NodeName"]] = fields
    return out


def scontrol_partitions() -> dict[str, dict[str, str]]:
    out = {}
    for line in run_slurm(["scontrol", "-o", "show", "partition"]).splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "PartitionName" in fields:
            out[fields["PartitionName"]] = fields
    return out


def node_figures(prom_query) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for metric in ("cpus", "cpus_allocated", "memory_bytes", "memory_allocated_bytes"):
        for node, v in by(prom_query, f"nomade_slurm_node_{metric}", "node").items():
            figures[node][metric] = v
    return figures


def test_node_cpu_and_memory_match_scontrol(prom_query, slurm):
    def compare():
        nodes = scontrol_nodes()
        prom = node_figures(prom_query)
        diffs = []
        for name, f in nodes.items():
            want = {
                "cpus": float(f["CPUTot"]),
                "cpus_allocated": float(f["CPUAlloc"]),
                "memory_bytes": float(f["RealMemory"]) * MIB,
                "memory_allocated_bytes": float(f["AllocMem"]) * MIB,
            }
            if prom.get(name) != want:
                diffs.append(f"{name}: prometheus {prom.get(name)} != scontrol {want}")
        return diffs

    # Jobs may start or end between the two reads; the figures must agree once the cluster is still.
    assert wait_for(lambda: not compare(), timeout=40, interval=2), compare()


def test_partition_totals_match_scontrol(prom_query, slurm):
    def compare():
        parts = scontrol_partitions()
        nodes = scontrol_nodes()
        diffs = []
        for name, p in parts.items():
            members = [n for n, f in nodes.items() if name in f.get("Partitions", "").split(",")]
            want = {
                "cpus": float(p["TotalCPUs"]),
                "cpus_allocated": float(sum(int(nodes[n]["CPUAlloc"]) for n in members)),
                "memory_bytes": float(sum(int(nodes[n]["RealMemory"]) for n in members) * MIB),
            }
            got = {
                k: by(prom_query, f'nomade_slurm_partition_{k}{{partition="{name}"}}', "partition").get(name)
                for k in want
            }
            if got != want:
                diffs.append(f"{name}: prometheus {got} != scontrol {want}")
        return diffs

    assert wait_for(lambda: not compare(), timeout=40, interval=2), compare()


def test_node_states_flags_and_reasons(prom_query, lab_workload):
    states = by(prom_query, "nomade_slurm_node_state == 1", "node")
    assert set(states) >= {"c01", "c02", "c03", "c04", "gpu01", "ghost01"}
    ghost = vector(prom_query, 'nomade_slurm_node_state{node="ghost01"}')
    assert [dict(k)["state"] for k in ghost] == ["down"]
    flags = {(r["metric"]["node"], r["metric"]["flag"]) for r in prom_query("nomade_slurm_node_flag == 1")}
    assert ("ghost01", "not_responding") in flags
    drained = lab_workload["drained"]
    assert (drained["node"], "drain") in flags
    reasons = {r["metric"]["node"]: r["metric"] for r in prom_query("nomade_slurm_node_reason_info")}
    assert reasons[drained["node"]]["reason"] == drained["reason"]
    assert reasons[drained["node"]]["user"] == "root"
    assert reasons["ghost01"]["reason"] == "Not responding"
    since = by(prom_query, "nomade_slurm_node_reason_since_timestamp_seconds", "node")
    assert time.time() - 3600 < since[drained["node"]] <= time.time()
    gres = vector(prom_query, 'nomade_slurm_node_gres{node="gpu01"}')
    assert [(dict(k)["gres"], v) for k, v in gres.items()] == [("gpu", 2.0)]


def test_queue_sees_the_pending_dependency(prom_query, lab_workload):
    reasons = vector(prom_query, "nomade_slurm_queue_pending_jobs_by_reason")
    dep = {dict(k)["partition"]: v for k, v in reasons.items() if dict(k)["reason"] == "DependencyNeverSatisfied"}
    pending_partition = next(j["partition"] for j in lab_workload["jobs"] if j["expected_state"] == "PENDING")
    assert dep == {pending_partition: 1.0}
    age = by(prom_query, "nomade_slurm_queue_oldest_pending_age_seconds", "partition")[pending_partition]
    assert 0 < age < lab_workload["workload_seconds"] + 3600


def test_status_screen_against_the_lab(prom_url, lab_workload):
    exe = ROOT / ".venv" / "bin" / "nomade"
    res = subprocess.run(
        [str(exe), "status", "--prometheus", prom_url, "--no-color", "--width", "160"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for part in ("compute", "short", "gpu"):
        assert part in out
    assert lab_workload["drained"]["reason"] in out
    assert "ghost01" in out
    for cls in lab_workload["totals"]:
        assert cls in out


# ----------------------------------------------------------------------------------------------- /proc


def test_proc_figures_in_prometheus_agree_with_sysstat(prom_url):
    """Load the machine, run iostat/mpstat/vmstat over a 20 s window, and compare with what Prometheus stored.

    The lab exporter samples /proc every 5 s and Prometheus scrapes it every 5 s, so the values stored for the
    window lag it by up to 10 s: they are averaged with ``avg_over_time(...[20s])`` evaluated 5 s after the
    window's end. The load is steady for the whole span, so the misalignment costs little; the tolerances are
    twice those of the in-process comparison (tests/integration/test_proc_vs_sysstat.py): ±10 percentage points
    for %util and CPU figures, ±(4 + 10 %) for IOPS, ±(128 kB/s + 10 %) for throughput, await ±(2 ms + 50 %).
    vmstat's free/buff/cache are instants while the stored values are averaged over the window, and the page
    cache moves under the dd load: ±(256 MiB + 25 %) there (measured gap: up to 170 MiB).
    """
    for tool in ("iostat", "mpstat", "vmstat", "dd"):
        assert shutil.which(tool), f"{tool} missing: make test installs sysstat"
    window = 20
    st = os.stat("/var/tmp")
    dev = next(
        ln.split()[2]
        for ln in Path("/proc/diskstats").read_text().splitlines()
        if (int(ln.split()[0]), int(ln.split()[1])) == (os.major(st.st_dev), os.minor(st.st_dev))
    )
    tmpdir = tempfile.mkdtemp(prefix="nomade-it-", dir="/var/tmp")
    target = os.path.join(tmpdir, "direct.bin")
    cpus = sorted(os.sched_getaffinity(0))
    procs: list[subprocess.Popen] = []
    try:
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        os.sched_setaffinity(burner.pid, {cpus[-1]})
        dd = f"dd if=/dev/zero of={target} bs=64k count=1024 oflag=direct conv=notrunc status=none"
        writer = subprocess.Popen(["bash", "-c", f"while :; do {dd}; done"], start_new_session=True)
        procs += [burner, writer]
        time.sleep(8)  # steady state, and at least one full sampler interval under load
        env = {**os.environ, "LC_ALL": "C", "S_TIME_FORMAT": "ISO"}
        argvs = {
            "iostat": ["iostat", "-x", "-y", "-o", "JSON", dev, str(window), "1"],
            "mpstat": ["mpstat", "-P", "ALL", "-o", "JSON", str(window), "1"],
            "vmstat": ["vmstat", str(window), "2"],
        }
        tools = {n: subprocess.Popen(a, stdout=subprocess.PIPE, text=True, env=env) for n, a in argvs.items()}
        outputs = {n: p.communicate(timeout=window + 15)[0] for n, p in tools.items()}
        t_end = time.time()
        time.sleep(7)  # the last sampler window and its scrape reach Prometheus
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait(5)
        shutil.rmtree(tmpdir, ignore_errors=True)

    def fetch(name: str) -> dict[tuple[str, ...], float]:
        resp = requests.get(
            f"{prom_url}/api/v1/query",
            params={"query": f"avg_over_time({name}[{window}s])", "time": t_end + 5},
            timeout=10,
        ).json()
        assert resp["status"] == "success", resp
        return {
            tuple(r["metric"].get(k, "") for k in LABELS[name]): float(r["value"][1]) for r in resp["data"]["result"]
        }

    tol = Tolerances(
        pct_points=10.0, rate_rel=0.10, iops_abs=4.0, kbps_abs=128.0, await_ms_abs=2.0, await_rel=0.5,
        queue_abs=0.2, queue_rel=0.4, vmstat_pct_points=12.0, blocked_abs=3.0, memory_rel=0.25,
        memory_abs_kb=262144.0,
    )  # fmt: skip
    iostat = last_iostat_report(outputs["iostat"])
    checks = compare_iostat(fetch, iostat, [dev], tol)
    checks += compare_mpstat(fetch, last_mpstat_report(outputs["mpstat"]), tol)
    checks += compare_vmstat(fetch, last_vmstat_line(outputs["vmstat"]), tol)
    text = report(checks)
    print(text)
    assert all(c.ok for c in checks), text
    assert iostat[dev]["w/s"] > 10, text


# ----------------------------------------------------------------------------------------------- faults


def collector_up(prom_query) -> dict[str, float]:
    return by(prom_query, "nomade_collector_up", "collector")


def _slurmctld_pid() -> int:
    return int((LAB_DIR / "run" / "slurmctld.pid").read_text())


def _assert_scrape_survives_and_reports_slurm_down(prom_query):
    body, took = scrape_exporter(timeout_header=5)
    assert took < 6, f"scrape took {took:.1f} s with a 5 s scraper timeout"
    up = exposed(body, "nomade_collector_up")
    assert up['{collector="slurm_queue"}'] == 0 and up['{collector="slurm_nodes"}'] == 0, up
    assert up['{collector="cpu"}'] == 1 and up['{collector="filesystem"}'] == 1, up
    assert exposed(body, "nomade_cpu_seconds_total"), "node metrics vanished from the scrape"
    # And Prometheus saw the same: the target stayed up, the SLURM collectors went down.
    got = wait_for(lambda: collector_up(prom_query).get("slurm_queue") == 0, timeout=30)
    assert got, collector_up(prom_query)
    assert by(prom_query, 'up{job="nomade"}', "job") == {"nomade": 1.0}
    assert collector_up(prom_query)["memory"] == 1


def _assert_recovered(prom_query):
    ok = wait_for(lambda: all(collector_up(prom_query).get(c) == 1 for c in ("slurm_queue", "slurm_nodes")), timeout=60)
    assert ok, collector_up(prom_query)


@pytest.mark.disruptive
def test_slurmctld_frozen_then_thawed(prom_query, slurm):
    pid = _slurmctld_pid()
    os.kill(pid, 19)  # SIGSTOP: connections hang instead of being refused
    try:
        time.sleep(6)  # let the cached results expire (cache TTL 4 s in the lab)
        _assert_scrape_survives_and_reports_slurm_down(prom_query)
    finally:
        os.kill(pid, 18)  # SIGCONT
    _assert_recovered(prom_query)


@pytest.mark.disruptive
def test_slurmctld_stopped_then_restarted(prom_query, slurm):
    subprocess.run(["kill", "-TERM", str(_slurmctld_pid())], check=True)
    wait_for(lambda: subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode != 0, 30)
    try:
        time.sleep(6)
        _assert_scrape_survives_and_reports_slurm_down(prom_query)
    finally:
        subprocess.run([*LAB_SH, "start"], check=True, capture_output=True, timeout=180)
    _assert_recovered(prom_query)
