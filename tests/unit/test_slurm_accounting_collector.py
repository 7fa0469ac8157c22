import math
from collections import Counter
from datetime import datetime

import pytest
from conftest import OWN_FIXTURES
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nomade.exporter.collectors import COLLECTOR_MODULES, slurm_accounting
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.slurm_accounting import SlurmAccountingCollector
from nomade.exporter.parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS
from nomade.exporter.registry import ScrapeOrchestrator
from nomade.exporter.runner import CommandError, CommandResult

GiB = 1024**3
FIN = "nomade_slurm_job_finished_total"


def local(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S").timestamp()


NOW = local("2024-05-01T10:05:00")
FIXTURE = (
    (OWN_FIXTURES / "sacct" / "handwritten-22.05-steps-arrays-hetjobs.txt").read_bytes().decode("utf-8", "replace")
)


class FakeRunner:
    """Stands in for CommandRunner: returns canned sacct output, or fails like a dead slurmdbd."""

    def __init__(self, stdout: str = FIXTURE) -> None:
        self.stdout = stdout
        self.fail = False
        self.calls: list[tuple[tuple[str, ...], float | None, float | None]] = []
        self.errors: Counter = Counter()
        self.runs: Counter = Counter()
        self._result: CommandResult | None = None
        self.reuse = False

    def run(self, argv, *, timeout=None, ttl=None):
        self.calls.append((tuple(argv), timeout, ttl))
        if self.fail:
            raise CommandError(argv, "exit", "status 1: sacct: error: slurmdbd: Connection refused")
        if not (self.reuse and self._result is not None):
            self._result = CommandResult(tuple(argv), self.stdout, "", 0.05, NOW)
        return self._result


def make(tmp_path, runner=None, **options):
    runner = runner or FakeRunner()
    ctx = CollectorContext(runner=runner, options=options, state_dir=tmp_path / "state", clock=lambda: NOW)
    return SlurmAccountingCollector(ctx), runner


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


def fin(out, partition, state, cls):
    return out.value(FIN, partition=partition, state=state, failure_class=cls)


def hist(out, name, partition):
    fam = [f for f in out.families() if f.name == name][0]
    got = {}
    for s in fam.samples:
        if s.labels.get("partition") != partition:
            continue
        key = s.name[len(name) :] + (s.labels.get("le", ""))
        got[key] = s.value
    return got


def test_registered_and_declared():
    assert "slurm_accounting" in COLLECTOR_MODULES
    assert slurm_accounting.COLLECTOR is SlurmAccountingCollector
    assert SlurmAccountingCollector.name == "slurm_accounting"
    assert SlurmAccountingCollector.mode == "controller"
    names = {m.name for m in SlurmAccountingCollector.metrics}
    assert {
        FIN,
        "nomade_slurm_job_cpu_efficiency_ratio",
        "nomade_slurm_job_memory_efficiency_ratio",
        "nomade_slurm_job_info",
        "nomade_slurm_job_max_rss_bytes",
        "nomade_slurm_accounting_window_jobs",
        "nomade_slurm_accounting_window_seconds",
        "nomade_slurm_accounting_window_jobs_dropped",
    } <= names


def test_argv(tmp_path):
    c, runner = make(tmp_path, lookback=7200, interval=30)
    collect(c)
    argv, timeout, ttl = runner.calls[0]
    assert argv[0] == "sacct" and "--allusers" in argv and "--parsable2" in argv and "--noheader" in argv
    assert "-X" not in argv and "--allocations" not in argv  # steps are needed for MaxRSS
    assert f"--delimiter={SACCT_DELIMITER}" in argv
    assert "--format=" + ",".join(SACCT_FIELDS) in argv
    assert SACCT_FIELDS[-1] == "JobName"
    assert "--state=CA,CD,DL,F,NF,OOM,PR,TO,BF" in argv
    assert "--starttime=now-7200" in argv and "--endtime=now" in argv
    assert ttl == 30 and timeout == 30


def test_counters_on_first_start(tmp_path):
    c, _ = make(tmp_path)
    out = collect(c)
    assert fin(out, "cpu", "completed", "success") == 2  # 1001, 1020+0
    assert fin(out, "gpu", "completed", "success") == 3  # array tasks 1010_1, 1010_2 and het component 1020+1
    assert fin(out, "long", "completed", "success") == 1
    assert fin(out, "cpu", "failed", "failed") == 1
    assert fin(out, "cpu", "out_of_memory", "out_of_memory") == 1
    assert fin(out, "gpu", "failed", "segfault") == 1
    assert fin(out, "cpu", "failed", "segfault") == 1
    assert fin(out, "cpu", "failed", "abort") == 1
    assert fin(out, "big", "failed", "out_of_memory") == 1
    assert fin(out, "cpu", "timeout", "timeout") == 1
    assert fin(out, "cpu", "cancelled", "cancelled") == 2  # cancelled by 1001 and by 0
    assert fin(out, "cpu", "node_fail", "node_fail") == 1
    assert fin(out, "preempt", "preempted", "preempted") == 1
    assert fin(out, "cpu", "boot_fail", "boot_fail") == 1  # ended before the window start but within 2 x lookback
    assert fin(out, "cpu", "deadline", "deadline") == 1
    assert sum(out.samples(FIN).values()) == 19
    assert out.value("nomade_slurm_accounting_window_jobs") == 17  # 1042 and 1044 ended before 09:05
    assert out.value("nomade_slurm_accounting_window_seconds") == 3600
    assert out.value("nomade_slurm_accounting_window_jobs_dropped") == 0


def test_histograms(tmp_path):
    c, _ = make(tmp_path)
    out = collect(c)
    cpu = hist(out, "nomade_slurm_job_cpu_efficiency_ratio", "cpu")
    # cpu partition ratios: .004 .0834 0 | .13125 .3 .5 .5 | .75 .9958 ; never-started jobs have none
    assert cpu["_count"] == 9
    assert (cpu["_bucket0.1"], cpu["_bucket0.5"], cpu["_bucket0.8"], cpu["_bucket1.0"], cpu["_bucket+Inf"]) == (
        3,
        7,
        8,
        9,
        9,
    )
    assert cpu["_sum"] == pytest.approx(0.75 + 0.004 + 0.13125 + 0.3 + 1199 / 1204 + 0.5 + 600 / 7196 + 0.5 + 0.0)
    mem = hist(out, "nomade_slurm_job_memory_efficiency_ratio", "cpu")
    assert mem["_count"] == 4  # only jobs with a MaxRSS on some step
    assert (mem["_bucket0.1"], mem["_bucket0.5"], mem["_bucket1.0"]) == (2, 3, 4)
    long = hist(out, "nomade_slurm_job_memory_efficiency_ratio", "long")
    assert long["_count"] == 1 and long["_bucket0.7"] == 0 and long["_bucket0.8"] == 1  # 3000M / (2000Mc x 2)


def test_per_job_series(tmp_path):
    c, _ = make(tmp_path)
    out = collect(c)
    info = out.samples("nomade_slurm_job_info")
    assert ("1030", "train|resnet\ufffd50", "gina", "astro", "long", "completed", "success", "c05") in info
    assert ("1007", "never_ran", "dave", "physics", "cpu", "cancelled", "cancelled", "") in info
    assert ("1042", "bf", "hank", "cfd", "cpu", "boot_fail", "boot_fail", "c08") not in info  # outside the window
    assert len(info) == 17

    def v(name, job):
        return out.value(name, job_id=job)

    assert v("nomade_slurm_job_requested_memory_bytes", "1045") == 16 * GiB
    assert v("nomade_slurm_job_max_rss_bytes", "1045") == 9 * GiB
    assert v("nomade_slurm_job_nodes", "1045") == 2
    assert v("nomade_slurm_job_requested_gpus", "1045") == 2
    assert v("nomade_slurm_job_exit_signal", "1045") == 9
    assert v("nomade_slurm_job_exit_code", "1002") == 3
    assert v("nomade_slurm_job_requested_cpus", "1007") == 2
    assert v("nomade_slurm_job_allocated_cpus", "1007") == 0
    assert v("nomade_slurm_job_timelimit_seconds", "1010_1") == 86400
    assert v("nomade_slurm_job_timelimit_seconds", "1030") is None  # UNLIMITED: absent, not 0
    assert v("nomade_slurm_job_elapsed_seconds", "1001") == 600
    assert v("nomade_slurm_job_cpu_seconds", "1001") == 1800
    assert v("nomade_slurm_job_cpu_utilization_ratio", "1001") == pytest.approx(0.75)
    assert v("nomade_slurm_job_memory_utilization_ratio", "1001") == pytest.approx(0.5)
    assert v("nomade_slurm_job_memory_utilization_ratio", "1010_2") is None
    assert v("nomade_slurm_job_submit_timestamp_seconds", "1001") == local("2024-05-01T09:50:00")
    assert v("nomade_slurm_job_start_timestamp_seconds", "1007") is None
    assert v("nomade_slurm_job_end_timestamp_seconds", "1050") is None  # Unknown end
    assert v("nomade_slurm_job_end_timestamp_seconds", "1020+1") == local("2024-05-01T09:50:02")


def test_max_jobs_keeps_most_recent(tmp_path):
    c, _ = make(tmp_path, max_jobs=5)
    out = collect(c)
    kept = {k[0] for k in out.samples("nomade_slurm_job_info")}
    assert kept == {"1050", "1001", "1030", "1010_1", "1007"}
    assert out.value("nomade_slurm_accounting_window_jobs_dropped") == 12
    assert {k[0] for k in out.samples("nomade_slurm_job_elapsed_seconds")} <= kept
    assert sum(out.samples(FIN).values()) == 19  # the cap never affects counting


def test_per_job_off(tmp_path):
    c, _ = make(tmp_path, per_job=False)
    out = collect(c)
    assert out.samples("nomade_slurm_job_info") == {}
    assert out.samples("nomade_slurm_job_max_rss_bytes") == {}
    assert out.value("nomade_slurm_accounting_window_jobs") == 17
    assert sum(out.samples(FIN).values()) == 19


def test_repeated_polls_and_restart_do_not_double_count(tmp_path):
    c, runner = make(tmp_path)
    collect(c)
    out = collect(c)
    assert sum(out.samples(FIN).values()) == 19
    c.close()
    c2, _ = make(tmp_path, runner=runner)
    out = collect(c2)
    assert sum(out.samples(FIN).values()) == 19
    assert hist(out, "nomade_slurm_job_cpu_efficiency_ratio", "cpu")["_count"] == 9
    # a job ageing out of sacct's window does not lower the counter
    runner.stdout = "\n".join(line for line in FIXTURE.splitlines() if not line.startswith("1001"))
    out = collect(c2)
    assert fin(out, "cpu", "completed", "success") == 2


def test_new_job_counted_once(tmp_path):
    c, runner = make(tmp_path)
    collect(c)
    row = FIXTURE.splitlines()[0].split(SACCT_DELIMITER)
    row[0] = row[1] = "1100"
    runner.stdout = FIXTURE + SACCT_DELIMITER.join(row) + "\n"
    out = collect(c)
    assert fin(out, "cpu", "completed", "success") == 3
    out = collect(c)
    assert fin(out, "cpu", "completed", "success") == 3


def test_jobs_older_than_horizon_not_counted(tmp_path):
    row = FIXTURE.splitlines()[0].split(SACCT_DELIMITER)
    row[SACCT_FIELDS.index("End")] = "2024-05-01T07:00:00"  # > 2 x lookback before NOW
    c, _ = make(tmp_path, runner=FakeRunner(SACCT_DELIMITER.join(row) + "\n"))
    out = collect(c)
    assert out.samples(FIN) == {}
    assert out.value("nomade_slurm_accounting_window_jobs") == 0


def test_failing_sacct_raises_and_leaves_store_intact(tmp_path):
    c, runner = make(tmp_path)
    collect(c)
    store = c.store()
    before = (store.seen_keys(), store.counters(FIN), store.histograms("nomade_slurm_job_cpu_efficiency_ratio"))
    runner.fail = True
    with pytest.raises(CommandError):
        collect(c)
    after = (store.seen_keys(), store.counters(FIN), store.histograms("nomade_slurm_job_cpu_efficiency_ratio"))
    assert after == before
    runner.fail = False
    assert sum(collect(c).samples(FIN).values()) == 19


def test_unusable_state_dir_raises_collector_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    ctx = CollectorContext(runner=FakeRunner(), state_dir=blocker / "state", clock=lambda: NOW)
    with pytest.raises(CollectorError):
        collect(SlurmAccountingCollector(ctx))


def test_parse_errors_counted_once_per_command_result(tmp_path):
    runner = FakeRunner(FIXTURE + "garbage line without delimiters\n")
    runner.reuse = True  # the runner's TTL cache hands back the same result object
    c, _ = make(tmp_path, runner=runner)
    collect(c)
    collect(c)
    assert c.parse_errors == 1
    runner.reuse = False
    collect(c)
    assert c.parse_errors == 2


def test_through_the_orchestrator(tmp_path):
    c, runner = make(tmp_path)
    orch = ScrapeOrchestrator([c], runner, scrape_timeout=20)
    reg = CollectorRegistry()
    reg.register(orch)
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    up = [s for s in fams["nomade_collector_up"].samples if s.labels["collector"] == "slurm_accounting"]
    assert up[0].value == 1
    assert fams["nomade_slurm_job_finished"].type == "counter"
    h = fams["nomade_slurm_job_memory_efficiency_ratio"]
    assert h.type == "histogram"
    inf = [
        s
        for s in h.samples
        if s.name.endswith("_bucket") and s.labels["le"] == "+Inf" and s.labels["partition"] == "cpu"
    ]
    assert inf[0].value == 4
    runner.fail = True
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    up = [s for s in fams["nomade_collector_up"].samples if s.labels["collector"] == "slurm_accounting"]
    assert up[0].value == 0
    assert "nomade_slurm_job_finished" not in fams
    orch.close()


def test_bad_options_rejected(tmp_path):
    with pytest.raises(ValueError):
        make(tmp_path, lookback=0)


def test_efficiency_values_are_finite(tmp_path):
    c, _ = make(tmp_path)
    out = collect(c)
    for (_job,), v in out.samples("nomade_slurm_job_cpu_utilization_ratio").items():
        assert math.isfinite(v) and v >= 0


def test_requeued_job_counts_each_record_once(tmp_path):
    # Lab (SLURM 22.05): job 1 ended NODE_FAIL and was requeued; the requeued run is a new record with a new Submit.
    lab = (OWN_FIXTURES / "sacct" / "lab-22.05-exact-command.txt").read_bytes().decode("utf-8", "replace")
    lab_now = local("2026-11-29T15:30:00")
    runner = FakeRunner(lab)
    ctx = CollectorContext(runner=runner, state_dir=tmp_path / "state", clock=lambda: lab_now)
    c = SlurmAccountingCollector(ctx)
    out = collect(c)
    assert fin(out, "compute", "node_fail", "node_fail") == 2
    assert fin(out, "compute", "completed", "success") == 4
    assert fin(out, "short", "timeout", "timeout") == 1
    assert fin(out, "compute", "failed", "segfault") == 1
    assert fin(out, "compute", "out_of_memory", "out_of_memory") == 1
    assert fin(out, "compute", "cancelled", "cancelled") == 1
    rerun = SACCT_DELIMITER.join(
        [
            "1",
            "1",
            "alice",
            "physics",
            "compute",
            "COMPLETED",
            "0:0",
            "0:0",
            "2026-11-29T15:20:16",
            "2026-11-29T15:21:00",
            "2026-11-29T15:21:05",
            "00:00:05",
            "1-00:00:00",
            "1",
            "1",
            "200M",
            "",
            "00:00.002",
            "billing=1,cpu=1,mem=200M,node=1",
            "billing=1,cpu=1,mem=200M,node=1",
            "1",
            "c04",
            "nodefail_single",
        ]
    )
    runner.stdout = "\n".join(ln for ln in lab.splitlines() if not ln.startswith("1" + SACCT_DELIMITER)) + "\n" + rerun
    out = collect(c)
    assert fin(out, "compute", "node_fail", "node_fail") == 2  # the first record stays counted once
    assert fin(out, "compute", "completed", "success") == 5  # the rerun is a new outcome
    out = collect(c)
    assert fin(out, "compute", "completed", "success") == 5


def test_job_array_health_comes_with_the_accounting_figures(tmp_path):
    from nomade.exporter.collectors.base import CollectorContext
    from nomade.exporter.collectors.slurm_accounting import SlurmAccountingCollector
    from nomade.exporter.parsers.sacct import SACCT_DELIMITER as D

    def line(raw, jid, state, exit_code):
        return D.join(
            [raw, jid, "alice", "physics", "compute", state, exit_code, "0:0", "2024-05-01T10:00:00"]
            + ["2024-05-01T10:00:05", "2024-05-01T10:01:05", "00:01:00", "01:00:00", "1", "1", "1G", ""]
            + ["00:00:30", "cpu=1", "cpu=1", "1", "c01", "arr"]
        )

    text = "\n".join(
        [
            line("501", "500_1", "COMPLETED", "0:0"),
            line("502", "500_2", "FAILED", "1:0"),
            line("503", "500_3", "OUT_OF_MEMORY", "0:125"),
            line("504", "500_4", "CANCELLED by 1001", "0:0"),
            line("600", "600", "FAILED", "1:0"),
        ]
    )

    class Runner:
        def run(self, argv, *, timeout=None, ttl=None):
            from nomade.exporter.runner import CommandResult

            return CommandResult(tuple(argv), text + "\n", "", 0.0, 0.0)

    from nomade.exporter.parsers.slurm_units import parse_timestamp

    now = parse_timestamp("2024-05-01T10:05:00")
    col = SlurmAccountingCollector(CollectorContext(runner=Runner(), state_dir=tmp_path, clock=lambda: now))
    out = col.new_set()
    col.collect(out)
    col.close()
    assert col.parse_errors == 0
    assert out.samples("nomade_job_hygiene_array_failed_ratio") == {("500",): 2 / 3}
    assert out.samples("nomade_job_hygiene_array_tasks") == {
        ("500", "succeeded"): 1.0,
        ("500", "failed"): 2.0,
        ("500", "cancelled"): 1.0,
    }
