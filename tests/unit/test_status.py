"""``nomade status``: render on hand-built snapshots, gather against a fake Prometheus, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from nomade.analytics.promapi import PrometheusClient, PrometheusUnavailable
from nomade.cli import main as cli_main
from nomade.cli.status import (
    CollectorRow,
    FilesystemRow,
    FinishedRow,
    GpuNodeRow,
    HealthCounts,
    HealthProblem,
    JobCountRow,
    JobMemoryRow,
    LicenseDaemonRow,
    LicenseExpiryRow,
    LicenseRow,
    NfsMountRow,
    NodeRow,
    QueueRow,
    QuotaOverRow,
    QuotaRow,
    RiskJobRow,
    RiskModelRow,
    RiskPartitionRow,
    SchedulerRow,
    StatusSnapshot,
    bar,
    display_width,
    fit,
    format_age,
    format_bytes,
    format_seconds,
    gather,
    render,
    sanitize,
    status_queries,
)

PROM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prom"
T = 1718000000.0
GiB = 2**30
TiB = 2**40


def _load_fake():
    spec = importlib.util.spec_from_file_location("nomade_test_fakeprom", PROM_FIXTURES / "fakeprom.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fakeprom = _load_fake()


# Series of a small cluster with every optional source, and the answer each optional query gives on them
# (worked out by hand, checked against promtool below).
SOURCES = json.loads((PROM_FIXTURES / "status_sources.json").read_text())
OPTIONAL = ["scheduler", "jobs", "risk", "gpus", "nfs", "licenses", "quotas", "health"]
PROMTOOL = shutil.which("promtool")


def optional_routes(cluster: str | None = None, sections=OPTIONAL) -> dict:
    """Canned answers of the optional queries (an empty vector for a section not in ``sections``)."""
    qs = status_queries(cluster)
    return {
        qs[sec]: [(200, fakeprom.vector(*((lb, v) for lb, v in SOURCES["answers"][sec])) if sec in sections
                   else fakeprom.vector())]
        for sec in OPTIONAL
    }  # fmt: skip


def cluster_routes(sections=OPTIONAL) -> dict:
    canned = json.loads((PROM_FIXTURES / "status_cluster.json").read_text())
    routes = {expr: [(200, body)] for expr, body in canned.items()}
    routes.update(optional_routes(sections=sections))
    return routes


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def snapshot(**kw) -> StatusSnapshot:
    base = dict(
        prometheus_url="http://prom.example:9090",
        time=T,
        clusters=("hpc1",),
        filesystems=[
            FilesystemRow("/home", "nfs01:/export/home", "nfs4", "", 100 * GiB, 25 * GiB, 30 * GiB, "hpc1", nodes=3),
            FilesystemRow("/", "/dev/sda2", "ext4", "c1", 50 * GiB, 10 * GiB, 12.5 * GiB, "hpc1"),
            FilesystemRow("/scratch", "/dev/nvme0n1", "xfs", "c1", 2 * TiB, 0.05 * TiB, 0.05 * TiB, "hpc1"),
        ],
        queue=[
            QueueRow("gpu", {"RUNNING": 2, "PENDING": 3}, 7380, "hpc1"),
            QueueRow("standard", {"RUNNING": 4, "PENDING": 12, "COMPLETING": 1}, 45, "hpc1"),
        ],
        nodes=[
            NodeRow("c1", "mixed", (), 27.4, 32, 28, cluster="hpc1"),
            NodeRow("c2", "idle", ("drain",), 0.01, 32, 0, 'GPU "memory" errors - investigating', "root", "hpc1"),
            NodeRow("c10", "down", ("not_responding",), None, 64, 0, "Not responding", "slurm", "hpc1"),
        ],
        finished=[
            FinishedRow("SUCCESS", 120.3, 45210, "hpc1"),
            FinishedRow("FAILED", 3.03, 1204, "hpc1"),
            FinishedRow("OUT_OF_MEMORY", 0.0, 17, "hpc1"),
        ],
        collectors=[
            CollectorRow("filesystem", 3, 3, (), T - 5, T - 3, "hpc1"),
            CollectorRow("slurm_queue", 1, 1, (), T - 12, T - 12, "hpc1"),
            CollectorRow("slurm_accounting", 0, 1, ("ctl1",), T - 7200, T - 7200, "hpc1"),
        ],
    )
    base.update(kw)
    return StatusSnapshot(**base)


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def line_with(text: str, *needles: str) -> str:
    hits = [ln for ln in lines_of(text) if all(n in ln for n in needles)]
    assert len(hits) == 1, (needles, text)
    return hits[0]


# -- small helpers ------------------------------------------------------------------------------------------------


def test_bar_rounds_to_cells_and_clamps():
    assert bar(0.5, 10) == "█████░░░░░"
    assert bar(0.975, 8) == "████████"
    assert bar(0.0, 4) == "░░░░"
    assert bar(1.7, 4) == "████"
    assert bar(None, 3) == "   "
    assert bar(0.25, 4, "#", ".") == "#..."


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-3, "0s"),
        (45, "45s"),
        (60, "1m"),
        (754, "12m"),
        (7380, "2h03m"),
        (190800, "2d05h"),
    ],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "?"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (34.02 * GiB, "34.0 GiB"),
        (2 * TiB, "2.0 TiB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_used_ratio_follows_df():
    # df: used = size - free; Use% = used / (used + avail): the root reserve (free - avail) is not available
    r = FilesystemRow("/", size_bytes=100.0, avail_bytes=10.0, free_bytes=15.0)
    assert r.used_bytes == 85.0
    assert r.used_ratio == pytest.approx(85 / 95)
    # without free, fall back to size - avail over size
    assert FilesystemRow("/", size_bytes=100.0, avail_bytes=10.0).used_ratio == pytest.approx(0.9)
    assert FilesystemRow("/", size_bytes=100.0).used_ratio is None
    assert FilesystemRow("/", size_bytes=0.0, avail_bytes=0.0, free_bytes=0.0).used_ratio is None


def test_sanitize_keeps_quotes_and_escapes_controls():
    assert sanitize('say "hi"') == 'say "hi"'
    assert sanitize("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert sanitize("\x1b[31mred") == "\\x1b[31mred"
    assert sanitize("abc\u202edcba") == "abc\\u202edcba"  # right-to-left override
    assert sanitize("x\u2028y") == "x\\u2028y"
    assert sanitize("nœud-été 計算") == "nœud-été 計算"


def test_fit_counts_wide_characters():
    assert display_width("計算") == 4
    assert fit("計算ノード", 7) == "計算ノ…"
    assert display_width(fit("計算ノード", 7)) == 7
    assert fit("ab", 4, ">") == "  ab"


# -- render -------------------------------------------------------------------------------------------------------


def test_render_header_shows_cluster_time_and_url():
    out = render(snapshot(), width=100)
    first, second = lines_of(out)[:2]
    assert first.startswith("═══ NØMADE status ═══")
    assert display_width(first) == 100
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(T))
    assert second == f"cluster hpc1 · {when} · prometheus http://prom.example:9090"


def test_render_filesystems_bars_numbers_and_grouping():
    out = render(snapshot(), width=100)
    ls = lines_of(out)
    i = ls.index("Filesystems:")
    assert ls[i + 1] == "  shared (3 nodes)"
    home = ls[i + 2]
    # /home: used = 100 - 30 = 70 GiB, Use% = 70 / (70 + 25) = 73.7 %
    assert home.startswith("    /home ")
    assert "nfs4" in home
    assert home.endswith(" 73.7%  70.0 GiB / 100.0 GiB")
    inner = home[home.index("[") + 1 : home.index("]")]
    assert set(inner) == {"█", "░"}
    assert inner.count("█") == round(70 / 95 * len(inner))
    assert ls[i + 3] == "  c1"
    root = ls[i + 4]
    assert root.startswith("    /  ") and root.endswith(" 78.9%  37.5 GiB / 50.0 GiB")
    scratch = ls[i + 5]
    assert scratch.endswith(" 97.5%  1.9 TiB / 2.0 TiB")
    sbar = scratch[scratch.index("[") + 1 : scratch.index("]")]
    assert sbar.count("░") == round(len(sbar) * (1 - 0.975))


def test_render_queue_counts_oldest_pending_and_total():
    out = render(snapshot(), width=100)
    assert line_with(out, "partition", "running", "pending", "oldest pending")
    assert line_with(out, "  gpu ").split() == ["gpu", "2", "3", "0", "2h03m"]
    assert line_with(out, "  standard ").split() == ["standard", "4", "12", "1", "45s"]
    assert line_with(out, "  total ").split() == ["total", "6", "15", "1", "2h03m"]


def test_render_nodes_problems_first_with_reason_quotes_intact():
    out = render(snapshot(), width=100)
    ls = lines_of(out)
    i = ls.index("Nodes:")
    assert ls[i + 1] == "  3 nodes: down 1  idle 1  mixed 1  ·  drain 1  not_responding 1"
    assert ls[i + 2].split() == ["c2", "IDLE+DRAIN", "CPU", "0/32", "(0%)", "load", "0.01"]
    assert ls[i + 3] == '    └─ Reason: GPU "memory" errors - investigating (root)'
    assert ls[i + 4].split() == ["c10", "DOWN+NOT_RESPONDING", "CPU", "0/64", "(0%)", "load", "-"]
    assert ls[i + 5] == "    └─ Reason: Not responding (slurm)"
    assert ls[i + 6].split() == ["c1", "MIXED", "CPU", "28/32", "(88%)", "load", "27.40"]


def test_render_finished_by_class_and_failure_share():
    out = render(snapshot(), width=100)
    assert line_with(out, "failure class", "last 1h", "total")
    assert line_with(out, "SUCCESS").split() == ["SUCCESS", "120", "45,210"]
    assert line_with(out, "FAILED").split() == ["FAILED", "3", "1,204"]
    assert line_with(out, "OUT_OF_MEMORY").split() == ["OUT_OF_MEMORY", "0", "17"]
    assert line_with(out, "not successful in the last hour") == ("  not successful in the last hour: 2.4% (3 of 123)")


def test_render_collectors_up_down_and_last_success():
    out = render(snapshot(), width=100)
    # two exporters 2 s apart: the stalest is shown
    assert line_with(out, "  filesystem ").split() == ["filesystem", "up", "3/3", "last", "success", "5s", "ago"]
    assert line_with(out, "slurm_queue ").split() == ["slurm_queue", "up", "1/1", "last", "success", "12s", "ago"]
    acct = line_with(out, "  slurm_accounting ")
    assert acct.split() == ["slurm_accounting", "DOWN", "0/1", "last", "success", "2h00m", "ago", "down", "on:", "ctl1"]


def test_render_collectors_spread_of_last_success():
    snap = snapshot(collectors=[CollectorRow("filesystem", 2, 2, (), T - 600, T - 4, "hpc1")])
    assert "last success 4s-10m ago" in render(snap, width=100)


def test_render_no_data_sections_name_the_collector():
    snap = snapshot(
        clusters=(),
        filesystems=[],
        queue=[],
        nodes=[],
        finished=[],
        collectors=[
            CollectorRow("slurm_accounting", 0, 1, ("ctl1",), None, None),
            CollectorRow("slurm_nodes", 1, 1, (), T - 2, T - 2),
        ],
    )
    out = render(snap, width=100)
    ls = lines_of(out)
    assert ls[ls.index("Filesystems:") + 1] == "  no data (collector filesystem not reporting)"
    assert ls[ls.index("Queue:") + 1] == "  no data (collector slurm_queue not reporting)"
    assert ls[ls.index("Nodes:") + 1] == "  no series (collector slurm_nodes is up)"
    assert ls[ls.index("Finished jobs:") + 1] == ("  no data (collector slurm_accounting not reporting: down on ctl1)")
    assert "never succeeded" in line_with(out, "  slurm_accounting ")
    assert "cluster" not in ls[1]


def test_render_query_error_is_shown_in_its_section():
    snap = snapshot(queue=[], errors={"queue": 'bad_data: parse error: unexpected "}"\nat 1:3'})
    ls = lines_of(render(snap, width=100))
    assert ls[ls.index("Queue:") + 1] == '  query failed: bad_data: parse error: unexpected "}"\\nat 1:3'


def test_render_hostile_labels_stay_on_one_line_each():
    evil = NodeRow("c\n9", "idle", ("drain",), 0.0, 4, 0, 'disk "sdb" dead\n\x1b[2Jcleared\u202eevil', "r\x00t")
    snap = snapshot(nodes=[evil], filesystems=[FilesystemRow("/mnt/a\nb", "d", "ext4", "c\t1", 10.0, 5.0, 5.0)])
    out = render(snap, width=100)
    assert "\x1b" not in out and "\u202e" not in out and "\x00" not in out
    assert '    └─ Reason: disk "sdb" dead\\n\\x1b[2Jcleared\\u202eevil (r\\x00t)' in lines_of(out)
    assert line_with(out, "c\\n9 ", "IDLE+DRAIN")
    assert line_with(out, "/mnt/a\\nb ")
    assert "  c\\t1" in lines_of(out)


def test_render_ascii_only_has_no_non_ascii():
    node = NodeRow("nœud1", "idle", ("drain",), 0.0, 4, 0, "disque défaillant", "root")
    out = render(snapshot(nodes=[node]), width=80, ascii_only=True)
    out.encode("ascii")  # raises if anything slipped through
    assert lines_of(out)[0].startswith("=== NOMADE status ===")
    assert "[####" in out
    assert "    `- Reason: disque d\\xe9faillant (root)" in lines_of(out)


def test_render_color_adds_sgr_only_when_asked():
    plain = render(snapshot(), width=100)
    colored = render(snapshot(), width=100, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[31m" in colored  # /scratch at 97.5 % and the down node are red
    assert "\x1b[33mIDLE+DRAIN" in colored  # drained node in yellow
    # colour changes nothing but the escapes
    import re

    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain


@pytest.mark.parametrize("width", [40, 60, 80, 132])
def test_render_never_exceeds_width(width):
    long_reason = "x" * 300
    snap = snapshot(nodes=[NodeRow("c" * 50, "idle", ("drain",), 1.0, 8, 0, long_reason, "root")])
    for color in (False, True):
        for ln in lines_of(render(snap, width=width, color=color)):
            assert display_width(ln) <= width, ln


def test_render_caps_rows_fullest_filesystems_and_problem_nodes_first():
    fss = [FilesystemRow("/", "/dev/sda", "ext4", f"c{i}", 100.0, 100.0 - i, 100.0 - i) for i in range(1, 11)]
    nodes = [NodeRow(f"c{i}", "idle", (), 0.0, 4, 0) for i in range(1, 11)]
    nodes.append(NodeRow("c99", "down", (), None, 4, 0, "dead", "root"))
    out = render(snapshot(filesystems=fss, nodes=nodes), width=100, max_rows=3)
    ls = lines_of(out)
    i = ls.index("Filesystems:")
    assert ls[i + 1 : i + 7 : 2] == ["  c8", "  c9", "  c10"]  # the three fullest, in node order
    assert "  … 7 more filesystems less full" in ls
    j = ls.index("Nodes:")
    assert ls[j + 2].split()[0] == "c99"
    assert ls[j + 4].split()[0] == "c1"
    assert ls[j + 5].split()[0] == "c2"
    assert "  … 8 more nodes (0 with problems)" in ls
    assert len([ln for ln in ls if ln.startswith("  c")]) == 6


def test_render_multiple_clusters_qualifies_names():
    snap = snapshot(
        clusters=("a", "b"),
        queue=[QueueRow("gpu", {"RUNNING": 1}, None, "a"), QueueRow("gpu", {"PENDING": 2}, 30, "b")],
    )
    out = render(snap, width=100)
    assert lines_of(out)[1].startswith("clusters a, b · ")
    assert line_with(out, "  a/gpu ").split() == ["a/gpu", "1", "0", "0", "-"]
    assert line_with(out, "  b/gpu ").split() == ["b/gpu", "0", "2", "0", "30s"]


@settings(max_examples=200, deadline=None)
@given(reason=hst.text(max_size=80), node=hst.text(min_size=1, max_size=30), width=hst.integers(1, 200))
def test_render_any_labels_one_line_each_and_bounded(reason, node, width):
    snap = snapshot(nodes=[NodeRow(node, "idle", ("drain",), 0.0, 4, 0, reason or None, "root")])
    out = render(snap, width=width)
    w = max(40, width)
    assert all(display_width(ln) <= w for ln in lines_of(out))
    assert len(lines_of(out)) == len(
        lines_of(
            render(
                snapshot(nodes=[NodeRow("n", "idle", ("drain",), 0.0, 4, 0, "r" if reason else None, "root")]),
                width=width,
            )
        )
    )


# -- gather -------------------------------------------------------------------------------------------------------


def test_gather_issues_one_query_per_family_at_one_time():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        c = PrometheusClient(fake.url)
        snap = gather(c, now=T)
    assert sorted(fake.queries()) == sorted(status_queries().values())
    assert snap.queries == 14 and c.queries_issued == 14
    assert {p["time"] for _, p in fake.requests} == {"1718000000"}
    assert snap.errors == {}
    assert snap.clusters == ("hpc1",)
    assert snap.time == T and snap.prometheus_url == fake.url


def test_gather_folds_filesystems_and_collapses_shared_mounts():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    assert [(f.node, f.mountpoint, f.nodes) for f in snap.filesystems] == [
        ("", "/home", 2),
        ("c1", "/", 1),
        ("c2", "/", 1),
    ]
    home, c1root, _ = snap.filesystems
    # the shared export keeps the least available of the nodes' readings (c1: 2.5 TiB)
    assert home.size_bytes == 10 * TiB and home.avail_bytes == 2.5 * TiB and home.fstype == "nfs4"
    assert c1root.size_bytes == 50 * GiB and c1root.avail_bytes == 10 * GiB and c1root.free_bytes == 12.5 * GiB


def test_gather_queue_deduplicates_controller_exporters():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    assert [(q.partition, q.running, q.pending, q.other, q.oldest_pending_age_seconds) for q in snap.queue] == [
        ("gpu", 2, 3, 0, 95.5),
        ("standard", 4, 12, 1, 7380),
    ]


def test_gather_nodes_state_flags_reason_and_exported_node():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    nodes = {n.node: n for n in snap.nodes}
    assert [n.node for n in snap.nodes] == ["c1", "c2", "c10", "gpu01"]
    assert nodes["c1"] == NodeRow("c1", "mixed", (), 27.4, 32, 28, None, None, "hpc1")
    c2 = nodes["c2"]
    assert c2.state == "idle"  # the 0-valued "allocated" series is not the current state
    assert c2.flags == ("drain",)
    assert c2.reason == 'GPU "memory" errors - investigating' and c2.reason_user == "root"
    assert nodes["c10"].state == "down" and nodes["c10"].flags == ("not_responding",)
    assert nodes["c10"].cpu_load is None
    assert nodes["gpu01"].state == "allocated" and nodes["gpu01"].cpu_load is None  # NaN is absent, not 0
    assert "ctl1" not in nodes


def test_gather_finished_and_collectors():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    assert [(f.failure_class, f.last_hour, f.total) for f in snap.finished] == [
        ("SUCCESS", pytest.approx(120.303, abs=1e-3), 45210),
        ("FAILED", pytest.approx(3.0303, abs=1e-4), 1204),
        ("TIMEOUT", None, 88),
        ("OUT_OF_MEMORY", 0, 17),
    ]
    cols = {c.collector: c for c in snap.collectors}
    assert cols["filesystem"] == CollectorRow("filesystem", 2, 2, (), T - 5, T - 3, "hpc1")
    assert cols["slurm_accounting"] == CollectorRow(
        "slurm_accounting", 0, 1, ("ctl1:9866",), T - 7200, T - 7200, "hpc1"
    )


def test_gather_keeps_going_when_one_query_is_rejected():
    routes = cluster_routes()
    routes[status_queries()["finished_1h"]] = [(422, fakeprom.error("execution", "too many samples"))]
    with fakeprom.FakePrometheus(routes) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    assert snap.errors == {"finished": "execution: too many samples"}
    # the totals still came: rows without a last-hour figure, and the failure said under them
    assert [(f.failure_class, f.last_hour, f.total) for f in snap.finished] == [
        ("SUCCESS", None, 45210),
        ("FAILED", None, 1204),
        ("TIMEOUT", None, 88),
        ("OUT_OF_MEMORY", None, 17),
    ]
    assert len(snap.nodes) == 4
    out = render(snap, width=100)
    assert line_with(out, "FAILED").split() == ["FAILED", "-", "1,204"]
    assert "not successful" not in out
    assert "  query failed: execution: too many samples" in lines_of(out)


def test_gather_with_cluster_filter_sends_matchers():
    with fakeprom.FakePrometheus({}) as fake:
        snap = gather(PrometheusClient(fake.url), now=T, cluster='hp"c')
    # the fake knows none of the filtered expressions: every section is a rejected query, no exception
    assert set(snap.errors) == {"filesystems", "queue", "nodes", "finished", "collectors", *OPTIONAL}
    sent = fake.queries()
    assert (
        '{__name__=~"nomade_slurm_queue_jobs|nomade_slurm_queue_oldest_pending_age_seconds|'
        'nomade_slurm_partition_info", cluster="hp\\"c"}' in sent
    )
    assert any('increase(nomade_slurm_job_finished_total{cluster="hp\\"c"}[1h])' in q for q in sent)
    # every selector of the optional sections carries the matcher too
    gpus = status_queries('hp"c')["gpus"]
    assert 'nomade_gpu_utilization_ratio{engine="gpu", cluster="hp\\"c"}' in gpus
    assert gpus.count("nomade_gpu_") == gpus.count('cluster="hp\\"c"')


def test_gather_raises_when_prometheus_is_unreachable():
    c = PrometheusClient(closed_port_url(), retries=0)
    with pytest.raises(PrometheusUnavailable):
        gather(c, now=T)
    assert c.queries_issued == 1  # gave up at the first query


def test_gather_end_to_end_render_against_fixture():
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        out = render(gather(PrometheusClient(fake.url), now=T), width=110)
    assert line_with(out, "c2 ", "IDLE+DRAIN")
    assert '    └─ Reason: GPU "memory" errors - investigating (root)' in lines_of(out)
    # /home, 10 TiB, 2.5 TiB avail and free: 75.0 % used
    assert line_with(out, "/home ", "nfs4").endswith(" 75.0%  7.5 TiB / 10.0 TiB")
    assert line_with(out, "  slurm_accounting ").split()[:3] == ["slurm_accounting", "DOWN", "0/1"]


# -- CLI ----------------------------------------------------------------------------------------------------------


def test_cli_status_ok(capsys):
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        rc = cli_main.main(["status", "--prometheus", fake.url, "--width", "100", "--no-color"])
    out = capsys.readouterr().out
    assert rc == 0
    for section in ("Filesystems:", "Queue:", "Nodes:", "Finished jobs:", "Collectors:"):
        assert section in lines_of(out)
    assert f"prometheus {fake.url}" in lines_of(out)[1]
    assert "\x1b[" not in out


def test_cli_status_unreachable_exits_1_with_one_line(capsys):
    url = closed_port_url()
    rc = cli_main.main(["status", "--prometheus", url, "--timeout", "2"])
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.out == ""
    assert cap.err == f"nomade status: Prometheus unavailable at {url}: Connection refused\n"


def test_cli_status_5xx_exits_1(capsys):
    routes = {q: [(503, "upstream connect error")] for q in status_queries().values()}
    with fakeprom.FakePrometheus(routes) as fake:
        rc = cli_main.main(["status", "--prometheus", fake.url])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"nomade status: Prometheus unavailable at {fake.url}: HTTP 503")
    assert len(fake.requests) == 2  # one query, one retry


def test_cli_status_url_from_environment(capsys, monkeypatch):
    with fakeprom.FakePrometheus(cluster_routes()) as fake:
        monkeypatch.setenv("NOMADE_PROMETHEUS_URL", fake.url)
        rc = cli_main.main(["status", "--width", "90"])
    assert rc == 0
    assert len(fake.requests) == 14
    assert "Nodes:" in capsys.readouterr().out


def test_cli_status_bad_url_is_usage_error(capsys):
    assert cli_main.main(["status", "--prometheus", "prom:9090"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_cli_without_subcommand_prints_help(capsys):
    assert cli_main.main([]) == 2
    err = capsys.readouterr().err
    assert "status" in err and "exporter" in err


def test_cli_exporter_passes_arguments_through(monkeypatch):
    from nomade.exporter import cli as exporter_cli

    seen = []
    monkeypatch.setattr(exporter_cli, "main", lambda argv: seen.append(argv) or 7)
    assert cli_main.main(["exporter", "--once", "--collector.cpu", "--help"]) == 7
    assert seen == [["--once", "--collector.cpu", "--help"]]


def test_gather_queue_accepts_lower_case_states():
    # the slurm_queue collector may label states in lower case (squeue's long names, lowered)
    routes = {q: [(200, fakeprom.vector())] for q in status_queries().values()}
    routes[status_queries()["queue"]] = [
        (
            200,
            fakeprom.vector(
                ({"__name__": "nomade_slurm_queue_jobs", "partition": "debug", "state": "running"}, 2),
                ({"__name__": "nomade_slurm_queue_jobs", "partition": "debug", "state": "pending"}, 5),
                ({"__name__": "nomade_slurm_queue_jobs", "partition": "debug", "state": "completing"}, 1),
            ),
        )
    ]
    with fakeprom.FakePrometheus(routes) as fake:
        snap = gather(PrometheusClient(fake.url), now=T)
    assert [(q.partition, q.running, q.pending, q.other, q.oldest_pending_age_seconds) for q in snap.queue] == [
        ("debug", 2, 5, 1, None)
    ]
    assert snap.nodes == [] and snap.errors == {}


# -- the optional sections' PromQL, evaluated by promtool over a small synthetic cluster --------------------------


def _promql_labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def _promtool_value(v) -> str:
    return str(v) if isinstance(v, str) else repr(float(v))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Prometheus) is not installed")
@pytest.mark.parametrize("section", OPTIONAL)
def test_optional_query_gives_the_hand_computed_answer_in_promtool(tmp_path, section):
    # promtool evaluates the real expression over the fixture's series and compares every sample (labels and
    # value) with the answer worked out by hand, which the gather tests below then fold
    t = SOURCES["eval_time_seconds"]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": s, "values": f"{_promtool_value(v)}+0x{t // 60}"} for s, v in SOURCES["series"]
                ],
                "promql_expr_test": [
                    {
                        "expr": status_queries()[section],
                        "eval_time": f"{t}s",
                        "exp_samples": [
                            {"labels": _promql_labels(lb), "value": float(v)} for lb, v in SOURCES["answers"][section]
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "status_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    res = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# -- optional sections: render ------------------------------------------------------------------------------------

OPTIONAL_TITLES = (
    "Scheduler:", "Running jobs:", "Jobs at risk:", "GPUs:", "NFS:", "Licenses:", "Quotas:", "Node health:"
)  # fmt: skip


# What the analytics risk engine publishes, as folded rows (the "Jobs at risk" section).
RISK = dict(
    risk_jobs=[
        RiskJobRow(
            "12345", 0.82, "alice", "chem", "gpu", "RUNNING", "hpc1",
            (("mem_slope_bytes_per_s", 0.31), ("req_mem_bytes", 0.12), ("user_past_fail_rate", -0.02)),
            (("out_of_memory", 0.6), ("success", 0.3), ("timeout", 0.1)), 10, False,
        ),
        RiskJobRow("12399_4", 0.3, "bob", "phys", "standard", "PENDING", "hpc1", ood=True),
        RiskJobRow("12400", 0.12, "carol", "chem", "standard", "RUNNING", "hpc1"),
    ],
    risk_models=[
        RiskModelRow("run", "hpc1", "v2", "gbm", T - 7200, 800, 0.5, (("baseline", 0.7), ("pipeline", 0.9)), None),
        RiskModelRow(
            "submit", "hpc1", "v3", "gbm,knn", T - 200, 12345, 0.25,
            (("baseline", 0.74), ("gbm", 0.8), ("pipeline", 0.81)), 0.09,
        ),
    ],
    risk_partitions=[RiskPartitionRow("gpu", "hpc1", 1, 0.82), RiskPartitionRow("standard", "hpc1", 3, 0.15)],
    risk_scored={("hpc1", "PENDING"): 1, ("hpc1", "RUNNING"): 10},
    risk_scoring={("hpc1", "PENDING"): "submit", ("hpc1", "RUNNING"): "run"},
)  # fmt: skip


def opt_snapshot(**kw) -> StatusSnapshot:
    """The core snapshot plus every optional section."""
    base = dict(
        scheduler=[SchedulerRow("hpc1", 0.00125, 0.00085, 0.0352, 0.0201, 12, 0, 3, 5, 120, 118, 100, 2, 1, T - 3600)],
        job_counts=[JobCountRow("hpc1", 41, 14, 12)],
        near_oom=[
            JobMemoryRow("12345", "c3", 0.96, "alice", 0.96 * 32 * GiB, 32 * GiB, 29 * GiB, "hpc1"),
            JobMemoryRow("12399_4", "c4", 0.5, "bob", 8 * GiB, 16 * GiB, None, "hpc1"),
        ],
        gpus=[
            GpuNodeRow("gpu01", "hpc1", 4, 0.63, 120 * GiB, 320 * GiB, 78, 1, ("hw_thermal_slowdown",), 3),
            GpuNodeRow("gpu02", "hpc1", 8, 0.1, 16 * GiB, 640 * GiB, 40, 0, (), 0),
        ],
        nfs=[
            NfsMountRow("nfs01", "/export/home", "hpc1", 12, 1234.5, 12.5 * 2**20, 1.5 * 2**20, 0.00345, 0.0),
            NfsMountRow("nfs02", "/export/scratch", "hpc1", 3, 12, 0, 0, None, 0.021),
        ],
        licenses=[
            LicenseRow("fluent", 3, 4, slurm=True, cluster="hpc1"),
            LicenseRow("cfd_base", 12, 25, "27000@lic1", "ansyslmd", cluster="hpc1"),
        ],
        license_daemons=[
            LicenseDaemonRow("27000@lic1", "lic1", "server", True, "hpc1"),
            LicenseDaemonRow("27000@lic3", "lic3", "server", False, "hpc1"),
            LicenseDaemonRow("27000@lic1", "ansyslmd", "vendor", True, "hpc1"),
        ],
        license_expiring=[
            LicenseExpiryRow("cfd_base", 12 * 86400 + 3 * 3600, "27000@lic1", "ansyslmd", "hpc1"),
            LicenseExpiryRow("mesher", 20 * 86400, "27000@lic1", "ansyslmd", "hpc1"),
        ],
        quotas=[
            QuotaRow("/home", "user", "alice", 0.975, 9.75 * GiB, 10 * GiB, "hpc1"),
            QuotaRow("/home", "group", "chem", 0.5, 50 * GiB, 100 * GiB, "hpc1"),
        ],
        quota_over=[QuotaOverRow("/home", "user", 2, "hpc1"), QuotaOverRow("/home", "group", 0, "hpc1")],
        health=HealthCounts(services=20, service_nodes=10, edac_nodes=4, sensors=38, sensor_nodes=4, endpoints=3),
        health_problems=[
            HealthProblem("service", "c3", "slurmd", cluster="hpc1"),
            HealthProblem("edac", "c7", value=12, cluster="hpc1"),
            HealthProblem("temperature", "c9", "coretemp Package id 0", value=92, limit=85, cluster="hpc1"),
            HealthProblem("unreachable", "", "slurmdbd", "10.0.0.2:6819", "refused", cluster="hpc1"),
        ],
        **RISK,
    )
    base.update(kw)
    return snapshot(**base)


def section(text: str, title: str) -> list[str]:
    """The lines of one section, title included, up to the blank line that ends it."""
    ls = lines_of(text)
    i = ls.index(title)
    j = ls.index("", i) if "" in ls[i:] else len(ls)
    return ls[i:j]


def test_render_optional_sections_absent_without_data():
    out = render(snapshot(), width=100)
    for title in OPTIONAL_TITLES:
        assert title not in lines_of(out)
    titles = [ln for ln in lines_of(out) if ln.endswith(":") and not ln.startswith(" ")]
    assert titles == ["Filesystems:", "Queue:", "Nodes:", "Finished jobs:", "Collectors:"]


def test_render_optional_sections_in_order_before_collectors():
    out = render(opt_snapshot(), width=100)
    titles = [ln for ln in lines_of(out) if ln.endswith(":") and not ln.startswith(" ")]
    assert titles == ["Filesystems:", "Queue:", "Nodes:", "Finished jobs:", *OPTIONAL_TITLES, "Collectors:"]


def test_render_scheduler_cycles_queues_and_jobs_since_reset():
    sec = section(render(opt_snapshot(), width=100), "Scheduler:")
    # the statistics were reset an hour before T (2024-06-10 06:13:20 UTC): same UTC day, time only
    assert sec[1:] == [
        "  main cycle      last 1.25ms    mean 0.85ms",
        "  backfill cycle  last 35.2ms    mean 20.1ms    depth 12",
        "  queues          agent 0        DBD agent 3    server threads 5",
        "  jobs since 05:13 UTC: submitted 120, started 118, completed 100, canceled 2, failed 1",
    ]


def test_render_scheduler_partial_and_old_reset():
    row = SchedulerRow("hpc1", main_cycle_last_seconds=2.5, jobs_submitted=7, stats_reset_timestamp=T - 2 * 86400)
    sec = section(render(snapshot(scheduler=[row]), width=100), "Scheduler:")
    assert sec[1:] == [
        "  main cycle      last 2.5s      mean -",
        "  jobs since 2024-06-08 06:13 UTC: submitted 7",
    ]


def test_render_scheduler_colours_dbd_backlog_and_failed_jobs():
    out = render(opt_snapshot(), width=100, color=True)
    assert "\x1b[33mDBD agent 3" in out
    assert "\x1b[33mfailed 1\x1b[0m" in out
    calm = SchedulerRow("hpc1", dbd_agent_queue_size=0, agent_queue_size=0, server_threads=3, jobs_failed=0)
    assert "\x1b[33m" not in "\n".join(
        section(render(snapshot(scheduler=[calm]), color=True), "\x1b[1mScheduler:\x1b[0m")
    )


def test_render_running_jobs_near_oom():
    sec = section(render(opt_snapshot(), width=100), "Running jobs:")
    assert sec[1] == "  41 running jobs on 12 of 14 nodes (a job on several nodes counts on each)"
    assert sec[2] == "  nearest their memory limit (charged memory, page cache included, / cgroup limit):"
    first = sec[3]
    assert first.split()[:3] == ["12345", "alice", "c3"]
    assert first.endswith("  96.0%  30.7 GiB / 32.0 GiB  rss 29.0 GiB")
    inner = first[first.index("[") + 1 : first.index("]")]
    assert inner.count("█") == round(0.96 * len(inner))
    assert sec[4].split()[:3] == ["12399_4", "bob", "c4"]
    assert sec[4].endswith("  50.0%  8.0 GiB / 16.0 GiB")  # rss unknown: not shown


def test_render_gpus_per_node_and_total():
    sec = section(render(opt_snapshot(), width=100), "GPUs:")
    assert sec[1].split() == [
        "node",
        "GPUs",
        "util",
        "memory",
        "used",
        "/",
        "total",
        "mem",
        "temp",
        "jobs",
        "throttled",
    ]
    assert sec[2].split() == [
        "gpu01", "4", "63%", "120.0", "GiB", "/", "320.0", "GiB", "38%", "78°C", "3/4", "1", "(hw_thermal_slowdown)"
    ]  # fmt: skip
    assert sec[3].split() == ["gpu02", "8", "10%", "16.0", "GiB", "/", "640.0", "GiB", "2%", "40°C", "0/8", "-"]
    # utilisation weighted by GPUs: (0.63 x 4 + 0.1 x 8) / 12 = 27.7 %
    assert sec[4].split() == [
        "total", "12", "28%", "136.0", "GiB", "/", "960.0", "GiB", "14%", "78°C", "3/12", "1", "(hw_thermal_slowdown)"
    ]  # fmt: skip


def test_render_gpus_throttled_first_and_capped():
    rows = [GpuNodeRow(f"gpu{i:02d}", "hpc1", 4, 0.5, None, None, None) for i in range(1, 6)]
    rows.append(GpuNodeRow("gpu09", "hpc1", 4, 0.9, None, None, 90, 2, ("hw_slowdown", "sw_thermal_slowdown"), 4))
    sec = section(render(snapshot(gpus=rows), width=100, max_rows=3), "GPUs:")
    assert [ln.split()[0] for ln in sec[2:6]] == ["gpu09", "gpu01", "gpu02", "…"]
    assert sec[5] == "    … 3 more GPU nodes"
    assert sec[2].endswith("  2 (hw_slowdown, sw_thermal_slowdown)")
    assert sec[3].split()[4:] == ["-", "-", "0/4", "-"]  # memory and temperature unknown, no job
    assert sec[6].split()[:3] == ["total", "24", "57%"]  # (0.5 x 20 + 0.9 x 4) / 24


def test_render_nfs_exports():
    sec = section(render(opt_snapshot(), width=100), "NFS:")
    assert sec[1].split() == ["server:export", "clients", "ops/s", "read", "write", "max", "RTT", "retrans"]
    assert sec[2].split() == ["nfs01:/export/home", "12", "1,234", "12.5", "MiB/s", "1.5", "MiB/s", "3.45ms", "0.0%"]
    assert sec[3].split() == ["nfs02:/export/scratch", "3", "12", "0", "B/s", "0", "B/s", "-", "2.1%"]
    colored = render(opt_snapshot(), width=100, color=True)
    assert "\x1b[33m   2.1%\x1b[0m" in colored  # retransmissions stand out
    assert "\x1b[33m   0.0%" not in colored


def test_render_licenses_daemons_features_and_expiry():
    sec = section(render(opt_snapshot(), width=100), "Licenses:")
    assert sec[1] == "  license servers: 1 up, 1 down: 27000@lic3 (lic3)"
    assert sec[2] == "  vendor daemons: 1 up"
    assert sec[3].split() == ["source", "feature", "used", "of", "issued"]
    assert sec[4].split()[:2] == ["slurm", "fluent"] and sec[4].endswith("   3 of 4        75%")
    assert sec[5].split()[:2] == ["27000@lic1", "cfd_base"] and sec[5].endswith("  12 of 25       48%")
    assert sec[6] == "  expiring within 30 days: cfd_base (27000@lic1) in 12d03h; 1 more"
    assert len(sec) == 7


def test_render_licenses_expired_and_slurm_only():
    snap = snapshot(
        licenses=[LicenseRow("fluent", 0, 4, slurm=True)],
        license_expiring=[LicenseExpiryRow("old", -2 * 86400, "1055@rlm", "isv")],
    )
    sec = section(render(snap, width=100, color=True), "\x1b[1mLicenses:\x1b[0m")
    assert sec[1].startswith("\x1b[2m  source ")
    assert sec[2].startswith("  slurm  fluent ") and sec[2].endswith("  0 of 4     \x1b[32m    0%\x1b[0m")
    assert sec[3] == "  expiring within 30 days: old (1055@rlm) \x1b[31mexpired 2d00h ago\x1b[0m"


def test_render_quotas_nearest_hard_limit_and_over_counts():
    sec = section(render(opt_snapshot(), width=100), "Quotas:")
    assert sec[1] == "  /home  over limit: user 2"
    assert sec[2].startswith("    user alice ") and sec[2].endswith("  97.5%  9.8 GiB / 10.0 GiB")
    assert sec[3].startswith("    group chem ") and sec[3].endswith("  50.0%  50.0 GiB / 100.0 GiB")
    calm = snapshot(quota_over=[QuotaOverRow("/scratch", "user", 0)])
    assert section(render(calm, width=100), "Quotas:")[1:] == ["  /scratch  none over limit"]


def test_render_node_health_problems():
    sec = section(render(opt_snapshot(), width=100), "Node health:")
    assert sec[1:] == [
        "  services: 20 checks on 10 nodes, 1 down",
        "    c3: slurmd down",
        "  EDAC: 4 nodes, 1 with uncorrectable memory errors",
        "    c7: 12 uncorrectable memory errors",
        "  temperatures: 38 sensors on 4 nodes, 1 node above a sensor's max",
        "    c9: coretemp Package id 0 92.0°C (max 85.0°C)",
        "  reachability: 3 endpoints, 1 unreachable",
        "    slurmdbd 10.0.0.2:6819 unreachable (refused)",
    ]
    assert "\x1b[31mc3: slurmd down\x1b[0m" in render(opt_snapshot(), width=100, color=True)


def test_render_node_health_all_fine_lists_only_what_was_checked():
    snap = snapshot(health=HealthCounts(services=2, service_nodes=1, endpoints=2))
    assert section(render(snap, width=100), "Node health:")[1:] == [
        "  services: 2 checks on 1 node, all up",
        "  reachability: 2 endpoints, all reachable",
    ]


def test_render_node_health_caps_problems_per_kind():
    probs = [HealthProblem("service", f"c{i}", "slurmd") for i in range(1, 8)]
    snap = snapshot(health=HealthCounts(services=7, service_nodes=7), health_problems=probs)
    sec = section(render(snap, width=100, max_rows=2), "Node health:")
    assert sec[1:] == [
        "  services: 7 checks on 7 nodes, 7 down",
        "    c1: slurmd down",
        "    c2: slurmd down",
        "    … 5 more service problems",
    ]


def test_render_optional_query_failure_is_shown():
    snap = snapshot(errors={"gpus": "bad_data: unknown function", "scheduler": "execution: timeout"})
    out = render(snap, width=100)
    assert section(out, "GPUs:")[1:] == ["  query failed: bad_data: unknown function"]
    assert section(out, "Scheduler:")[1:] == ["  query failed: execution: timeout"]
    assert "NFS:" not in lines_of(out)


def test_render_optional_sections_qualify_names_with_several_clusters():
    snap = opt_snapshot(
        clusters=("a", "b"),
        gpus=[GpuNodeRow("g1", "a", 1), GpuNodeRow("g1", "b", 2)],
        scheduler=[SchedulerRow("a", server_threads=3), SchedulerRow("b", server_threads=9)],
        job_counts=[JobCountRow("a", 1, 1, 1), JobCountRow("b", 2, 3, 2)],
    )
    out = render(snap, width=100)
    assert section(out, "Scheduler:")[1:] == [
        "  a",
        "    queues          agent -        DBD agent -    server threads 3",
        "  b",
        "    queues          agent -        DBD agent -    server threads 9",
    ]
    assert [ln.split()[0] for ln in section(out, "GPUs:")[2:]] == ["a/g1", "b/g1", "total"]
    assert section(out, "Running jobs:")[1:3] == [
        "  a: 1 running job on 1 of 1 node (a job on several nodes counts on each)",
        "  b: 2 running jobs on 2 of 3 nodes (a job on several nodes counts on each)",
    ]


def test_render_optional_hostile_labels_stay_on_one_line():
    evil = "x\n\x1b[2J\u202ey"
    snap = opt_snapshot(
        gpus=[GpuNodeRow(evil, "hpc1", 1, throttled=1, throttle_reasons=(evil,))],
        nfs=[NfsMountRow(evil, evil, "hpc1", 1)],
        licenses=[LicenseRow(evil, 1, 2, evil, evil)],
        license_daemons=[LicenseDaemonRow(evil, evil, "server", False)],
        quotas=[QuotaRow(evil, "user", evil, 0.5, 1, 2)],
        near_oom=[JobMemoryRow(evil, evil, 0.5, evil)],
        health_problems=[HealthProblem("unreachable", "", evil, evil, evil)],
        risk_jobs=[RiskJobRow(evil, 0.9, evil, evil, evil, evil, "hpc1", ((evil, 0.1),), ((evil, 1.0),), 3, True)],
        risk_models=[RiskModelRow(evil, "hpc1", evil, evil, T, 10, 0.5, ((evil, 0.7),), 0.1)],
        risk_partitions=[RiskPartitionRow(evil, "hpc1", 2, 0.5)],
    )
    out = render(snap, width=200)
    assert "\x1b" not in out and "\u202e" not in out
    esc = "x\\n\\x1b[2J\\u202ey"
    assert line_with(out, "unreachable (").endswith(f"{esc} {esc} unreachable ({esc})")
    assert line_with(out, "license servers").endswith(f"1 down: {esc} ({esc})")
    assert len(lines_of(out)) == len(lines_of(render(opt_snapshot(
        gpus=[GpuNodeRow("g", "hpc1", 1, throttled=1, throttle_reasons=("r",))],
        nfs=[NfsMountRow("s", "e", "hpc1", 1)],
        licenses=[LicenseRow("f", 1, 2, "s", "v")],
        license_daemons=[LicenseDaemonRow("s", "h", "server", False)],
        quotas=[QuotaRow("/fs", "user", "u", 0.5, 1, 2)],
        near_oom=[JobMemoryRow("1", "n", 0.5, "u")],
        health_problems=[HealthProblem("unreachable", "", "t", "a", "r")],
        risk_jobs=[RiskJobRow("1", 0.9, "u", "a", "p", "s", "hpc1", (("f", 0.1),), (("c", 1.0),), 3, True)],
        risk_models=[RiskModelRow("s", "hpc1", "v", "m", T, 10, 0.5, (("m", 0.7),), 0.1)],
        risk_partitions=[RiskPartitionRow("p", "hpc1", 2, 0.5)],
    ), width=200)))  # fmt: skip


@pytest.mark.parametrize("width", [40, 60, 80, 132])
@pytest.mark.parametrize("ascii_only", [False, True])
def test_render_optional_sections_fit_the_width(width, ascii_only):
    long = "y" * 150
    snap = opt_snapshot(
        gpus=[GpuNodeRow(long, "hpc1", 8, 0.5, 1.0, 2.0, 50.0, 8, (long,), 8)],
        licenses=[LicenseRow(long, 1, 2, long, long)],
        quotas=[QuotaRow(long, "user", long, 0.5, 1, 2)],
    )
    for color in (False, True):
        out = render(snap, width=width, color=color, ascii_only=ascii_only)
        assert all(display_width(ln) <= width for ln in lines_of(out))
        if ascii_only:
            out.encode("ascii")
    assert "78C" in render(opt_snapshot(), width=100, ascii_only=True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0ms"), (0.000001, "0.001ms"), (0.00085, "0.85ms"), (0.0352, "35.2ms"), (0.9996, "1s"),
     (1.25, "1.25s"), (99.9, "99.9s"), (100, "1m"), (7380, "2h03m")],
)  # fmt: skip
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


# -- optional sections: gather ------------------------------------------------------------------------------------


def gather_sources(sections=OPTIONAL, **kw) -> StatusSnapshot:
    with fakeprom.FakePrometheus(cluster_routes(sections)) as fake:
        return gather(PrometheusClient(fake.url), now=SOURCES["eval_time_seconds"], **kw)


def test_gather_scheduler_takes_the_fresher_controller():
    snap = gather_sources()
    # ctl2 lags one cycle: the larger reading of each figure (they only grow within a stats period)
    assert snap.scheduler == [
        SchedulerRow("hpc1", 0.00125, 0.00085, 0.0352, 0.0201, 12, 0, 3, 5, 120, 118, 100, 2, 1, 0)
    ]


def test_gather_gpus_per_node():
    snap = gather_sources()
    assert snap.gpus == [
        GpuNodeRow("gpu01", "hpc1", 2, 0.5, 60e9, 160e9, 81, 1, ("hw_thermal_slowdown", "sw_power_cap"), 1),
        GpuNodeRow("gpu02", "hpc1", 1, 0.0, 0.0, 80e9, 30, 0, (), 0),
    ]
    assert snap.gpus[0].memory_ratio == 0.375


def test_gather_nfs_per_export():
    snap = gather_sources()
    assert snap.nfs == [
        NfsMountRow("nfs01", "/export/home", "hpc1", 2, 150, 4000, 500, 0.004, 0.02),
        NfsMountRow("nfs02", "/export/scratch", "hpc1", 1, 15, 0, 0, None, None),
    ]


def test_gather_licenses():
    snap = gather_sources()
    assert snap.licenses == [
        LicenseRow("fluent", 3, 4, "", "", True, "hpc1"),
        LicenseRow("cfd_base", 12, 25, "27000@lic1", "ansyslmd", False, "hpc1"),
    ]
    assert snap.license_daemons == [
        LicenseDaemonRow("27000@lic1", "lic1", "server", True, "hpc1"),
        LicenseDaemonRow("27000@lic3", "lic3", "server", False, "hpc1"),
        LicenseDaemonRow("27000@lic1", "ansyslmd", "vendor", True, "hpc1"),
    ]
    assert snap.license_expiring == [LicenseExpiryRow("cfd_base", 12 * 86400, "27000@lic1", "ansyslmd", "hpc1")]


def test_gather_quotas_top_entries_and_over_limit():
    snap = gather_sources()
    assert [(q.filesystem, q.type, q.name, q.ratio, q.used_bytes, q.hard_limit_bytes) for q in snap.quotas] == [
        ("/home", "user", "alice", 0.975, 975, 1000),
        ("/home", "user", "dave", 0.9, 900, 1000),
        ("/home", "group", "chem", 0.55, 550, 1000),
        ("/home", "user", "bob", 0.5, 500, 1000),
        ("/home", "user", "frank", 0.3, 300, 1000),
        ("/scratch", "user", "zed", 0.5, 1, 2),
    ]
    assert snap.quota_over == [QuotaOverRow("/home", "group", 0, "hpc1"), QuotaOverRow("/home", "user", 1, "hpc1")]


def test_gather_running_jobs_and_near_oom():
    snap = gather_sources()
    assert snap.job_counts == [JobCountRow("hpc1", 3, 3, 2)]
    assert snap.near_oom == [
        JobMemoryRow("100", "c1", 0.96, "alice", 960, 1000, 900, "hpc1"),
        JobMemoryRow("101", "c1", 0.1, "bob", 100, 1000, 50, "hpc1"),
    ]


def test_gather_node_health():
    snap = gather_sources()
    assert snap.health == HealthCounts(
        services=4, service_nodes=2, edac_nodes=2, sensors=6, sensor_nodes=2, endpoints=2
    )
    assert snap.health_problems == [
        HealthProblem("service", "c2", "slurmd", cluster="hpc1"),
        HealthProblem("edac", "c2", value=3, cluster="hpc1"),
        HealthProblem("temperature", "c2", "coretemp Core 0", value=95, limit=85, cluster="hpc1"),
        HealthProblem("unreachable", "", "slurmdbd", "10.0.0.2:6819", "refused", cluster="hpc1"),
    ]


def test_gather_without_optional_sources_prints_no_optional_section():
    snap = gather_sources(sections=())
    assert snap.errors == {}
    assert (snap.scheduler, snap.gpus, snap.nfs, snap.licenses, snap.quotas, snap.near_oom) == ([],) * 6
    assert (snap.risk_jobs, snap.risk_models, snap.risk_partitions, snap.risk_scored) == ([], [], [], {})
    assert snap.health is None and snap.health_problems == []
    out = render(snap, width=100)
    for title in OPTIONAL_TITLES:
        assert title not in lines_of(out)
    assert "Collectors:" in lines_of(out)


def test_gather_only_the_sources_that_exist_are_shown():
    out = render(gather_sources(sections=("scheduler", "licenses")), width=100)
    assert "Scheduler:" in lines_of(out) and "Licenses:" in lines_of(out)
    for title in ("GPUs:", "NFS:", "Quotas:", "Running jobs:", "Node health:", "Jobs at risk:"):
        assert title not in lines_of(out)


def test_gather_query_count_does_not_grow_with_the_cluster():
    routes = cluster_routes()
    many = [
        ({"cluster": "hpc1", "node": f"gpu{i:03d}", "instance": f"gpu{i:03d}:9866", "stat": stat}, 1)
        for i in range(500)
        for stat in ("gpus", "util", "mem_used", "mem_total", "temp", "with_jobs")
    ]
    routes[status_queries()["gpus"]] = [(200, fakeprom.vector(*many))]
    with fakeprom.FakePrometheus(routes) as fake:
        snap = gather(PrometheusClient(fake.url), now=SOURCES["eval_time_seconds"])
    assert len(snap.gpus) == 500
    assert snap.queries == 14 == len(fake.requests) == len(status_queries())
    assert len(set(fake.queries())) == 14  # each query once


def test_gather_optional_query_rejected_keeps_the_rest():
    routes = cluster_routes()
    routes[status_queries()["quotas"]] = [(400, fakeprom.error("bad_data", 'parse error: unexpected "by"'))]
    with fakeprom.FakePrometheus(routes) as fake:
        snap = gather(PrometheusClient(fake.url), now=SOURCES["eval_time_seconds"])
    assert snap.errors == {"quotas": 'bad_data: parse error: unexpected "by"'}
    assert snap.quotas == [] and len(snap.gpus) == 2
    out = render(snap, width=100)
    assert section(out, "Quotas:")[1:] == ['  query failed: bad_data: parse error: unexpected "by"']


@settings(max_examples=150, deadline=None)
@given(label=hst.text(max_size=60), width=hst.integers(1, 200), ascii_only=hst.booleans())
def test_render_optional_sections_any_labels_one_line_each_and_bounded(label, width, ascii_only):
    def snap(text: str) -> StatusSnapshot:
        return opt_snapshot(
            gpus=[GpuNodeRow(text, "hpc1", 2, 0.5, 1.0, 2.0, 40.0, 1, (text,), 1)],
            nfs=[NfsMountRow(text, text, "hpc1", 1, 1.0)],
            licenses=[LicenseRow(text, 1, 2, text, text)],
            license_daemons=[LicenseDaemonRow(text, text, "vendor", False)],
            license_expiring=[LicenseExpiryRow(text, 100.0, text)],
            quotas=[QuotaRow(text, text, text, 0.5, 1, 2)],
            quota_over=[QuotaOverRow(text, text, 1)],
            near_oom=[JobMemoryRow(text, text, 0.5, text)],
            health_problems=[HealthProblem(k, text, text, text, text, 1.0, 2.0) for k in ("service", "unreachable")],
            risk_jobs=[RiskJobRow(text, 0.9, text, text, text, text, "hpc1", ((text, 0.1),), ((text, 1.0),), 3, True)],
            risk_models=[RiskModelRow(text, "hpc1", text, text, T, 10, 0.5, ((text, 0.7),), 0.1)],
            risk_partitions=[RiskPartitionRow(text, "hpc1", 2, 0.5)],
        )

    out = render(snap(label), width=width, ascii_only=ascii_only)
    assert all(display_width(ln) <= max(40, width) for ln in lines_of(out))
    assert len(lines_of(out)) == len(lines_of(render(snap("x"), width=width, ascii_only=ascii_only)))
    if ascii_only:
        out.encode("ascii")


def test_filesystem_rows_show_the_analytics_trend_and_time_to_full():
    from nomade.analytics.promapi import Sample
    from nomade.cli.status import _fold_filesystems, render

    labels = {"node": "c1", "mountpoint": "/scratch", "device": "/dev/nvme0n1", "fstype": "xfs"}
    w = {**labels, "watch": "filesystem_used"}
    samples = [
        Sample({"__name__": "nomade_filesystem_size_bytes", **labels}, 2 * TiB, T),
        Sample({"__name__": "nomade_filesystem_avail_bytes", **labels}, 0.5 * TiB, T),
        Sample({"__name__": "nomade_filesystem_free_bytes", **labels}, 0.5 * TiB, T),
        Sample({"__name__": "nomade_trend_slope_per_second", **w}, 100 * GiB / 86400, T),
        Sample({"__name__": "nomade_trend_time_to_threshold_seconds", **w}, 5 * 86400 + 3600, T),
        Sample({"__name__": "nomade_trend_state", **w, "state": "accelerating_growth"}, 1, T),
    ]
    (row,) = _fold_filesystems(samples)
    assert row.trend == "accelerating_growth"
    assert row.time_to_full_seconds == 5 * 86400 + 3600
    text = render(snapshot(filesystems=[row]), width=140, color=False)
    assert "+100.0 GiB/d, full in 5d01h (accelerating growth)" in text
    # Without the analytics service the row is as before.
    (plain,) = _fold_filesystems(samples[:3])
    assert "GiB/d" not in render(snapshot(filesystems=[plain]), width=140, color=False)


# -- jobs at risk (issue 5: the analytics risk engine's nomade_job_risk_* and nomade_model_* series) ---------------


def test_render_jobs_at_risk_models_partitions_jobs_drivers_and_neighbours():
    sec = section(render(opt_snapshot(), width=100), "Jobs at risk:")
    assert sec == [
        "Jobs at risk:",
        "  model run v2 (gbm): alert at 50%, trained 2h00m ago on 800 jobs",
        "    holdout: AUC pipeline 0.90, baseline 0.70",
        "  model submit v3 (gbm,knn): alert at 25%, trained 3m ago on 12,345 jobs",
        "    holdout: AUC pipeline 0.81, gbm 0.80, baseline 0.74; Brier 0.090",
        "  scored: 1 pending, 10 running",
        "  high risk by partition: standard 3 (mean 15%), gpu 1 (mean 82%)",
        "  job     user  partition state    risk",
        # RUNNING is scored by the run model (alert at 50 %): 82 % is high, 12 % is not
        "  12345   alice gpu       RUNNING   82%  ! high",
        "    └─ drivers: mem_slope_bytes_per_s +0.31, req_mem_bytes +0.12, user_past_fail_rate -0.02",
        "    └─ 10 most similar finished jobs: out_of_memory 60%, success 30%, timeout 10%",
        # PENDING by the submit model (alert at 25 %): 30 % is high; out of the training distribution
        "  12399_4 bob   standard  PENDING   30%  ! high OOD",
        "  12400   carol standard  RUNNING   12%",
    ]


def test_render_jobs_at_risk_threshold_by_state_without_scoring_info():
    # without nomade_job_risk_scoring_info: pending -> submit model, running -> run model
    snap = opt_snapshot(risk_scoring={})
    sec = section(render(snap, width=100), "Jobs at risk:")
    assert line_with("\n".join(sec), "12399_4").endswith("30%  ! high OOD")
    assert line_with("\n".join(sec), "12400").endswith("12%")
    # with the submit model only, running jobs are judged by its threshold (the engine's fallback)
    snap = opt_snapshot(risk_scoring={}, risk_models=[RISK["risk_models"][1]])
    sec = "\n".join(section(render(snap, width=100), "Jobs at risk:"))
    assert line_with(sec, "12345").endswith("82%  ! high")
    assert line_with(sec, "12400").endswith("12%")
    assert "model run" not in sec


def test_render_jobs_at_risk_colours_high_risk_and_caps_rows():
    out = render(opt_snapshot(), width=100, color=True)
    assert "\x1b[31m  82%\x1b[0m" in out and "\x1b[31m! high\x1b[0m" in out and "\x1b[33mOOD\x1b[0m" in out
    assert "\x1b[31m  12%" not in out
    sec = section(render(opt_snapshot(), width=100, max_rows=1), "Jobs at risk:")
    assert sec[-1] == "    … 2 more scored jobs"
    assert "  high risk by partition: standard 3 (mean 15%), +1 more" in sec


def test_render_jobs_at_risk_model_only_and_nothing_high():
    snap = opt_snapshot(
        risk_jobs=[],
        risk_partitions=[RiskPartitionRow("gpu", "hpc1", 0, 0.1)],
        risk_scored={},
        risk_models=[RiskModelRow("submit", "hpc1", "baseline")],
    )
    assert section(render(snap, width=100), "Jobs at risk:")[1:] == [
        "  model submit baseline",
        "  high risk by partition: none at or above the alert threshold",
        "  no pending or running job scored",
    ]


def test_render_jobs_at_risk_query_failure_is_shown():
    out = render(snapshot(errors={"risk": "bad_data: unknown function topk"}), width=100)
    assert section(out, "Jobs at risk:")[1:] == ["  query failed: bad_data: unknown function topk"]


def test_gather_jobs_at_risk_from_the_risk_engine_series():
    snap = gather_sources()
    # topk 10 of 11 scored jobs: 111 (1 %) is left out, and with it its driver, neighbour and share series
    assert [r.job_id for r in snap.risk_jobs] == [str(i) for i in range(101, 111)]
    first, second = snap.risk_jobs[:2]
    assert first == RiskJobRow(
        "101", 0.82, "alice", "chem", "gpu", "RUNNING", "hpc1",
        (("mem_slope_bytes_per_s", 0.31), ("req_mem_bytes", 0.12), ("user_past_fail_rate", -0.02)),
        (("out_of_memory", 0.6), ("success", 0.3), ("timeout", 0.1)), 10, False,
    )  # fmt: skip
    assert second == RiskJobRow("102", 0.4, "bob", "phys", "standard", "PENDING", "hpc1", ood=True)
    assert snap.risk_jobs[-1].score == pytest.approx(0.02) and snap.risk_jobs[-1].drivers == ()
    assert snap.risk_models == [
        RiskModelRow("run", "hpc1", "v2", "gbm", 0, 800, 0.5, (("baseline", 0.7), ("pipeline", 0.9)), None),
        RiskModelRow(
            "submit", "hpc1", "v3", "gbm,knn", 100, 12345, 0.35,
            (("baseline", 0.74), ("gbm", 0.8), ("pipeline", 0.81)), 0.09,
        ),
    ]  # fmt: skip
    assert snap.risk_partitions == [
        RiskPartitionRow("debug", "hpc1", 0, 0.01),
        RiskPartitionRow("gpu", "hpc1", 1, 0.82),
        RiskPartitionRow("standard", "hpc1", 1, 0.15),
    ]
    assert snap.risk_scored == {("hpc1", "PENDING"): 1, ("hpc1", "RUNNING"): 10}
    assert snap.risk_scoring == {("hpc1", "PENDING"): "submit", ("hpc1", "RUNNING"): "run"}
    sec = section(render(snap, width=100), "Jobs at risk:")
    assert sec[1] == "  model run v2 (gbm): alert at 50%, trained 5m ago on 800 jobs"
    assert "  high risk by partition: gpu 1 (mean 82%), standard 1 (mean 15%)" in sec
    assert sec[sec.index("  job user  partition state    risk") + 1] == "  101 alice gpu       RUNNING   82%  ! high"
    assert "  102 bob   standard  PENDING   40%  ! high OOD" in sec
    assert len([ln for ln in sec if ln.startswith("  1")]) == 10


def test_risk_query_carries_the_cluster_matcher_on_every_selector():
    q = status_queries('hp"c')["risk"]
    selectors = q.count("nomade_job_risk_") + q.count("nomade_model_")
    assert selectors == q.count('{cluster="hp\\"c"}') > 10
