"""``nomade status``: render on hand-built snapshots, gather against a fake Prometheus, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import socket
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
    NodeRow,
    QueueRow,
    StatusSnapshot,
    bar,
    display_width,
    fit,
    format_age,
    format_bytes,
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


def cluster_routes() -> dict:
    canned = json.loads((PROM_FIXTURES / "status_cluster.json").read_text())
    return {expr: [(200, body)] for expr, body in canned.items()}


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
    assert snap.queries == 6 and c.queries_issued == 6
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
    assert set(snap.errors) == {"filesystems", "queue", "nodes", "finished", "collectors"}
    sent = fake.queries()
    assert (
        '{__name__=~"nomade_slurm_queue_jobs|nomade_slurm_queue_oldest_pending_age_seconds|'
        'nomade_slurm_partition_info", cluster="hp\\"c"}' in sent
    )
    assert any('increase(nomade_slurm_job_finished_total{cluster="hp\\"c"}[1h])' in q for q in sent)


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
    assert line_with(out, "/home ").endswith(" 75.0%  7.5 TiB / 10.0 TiB")
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
    assert len(fake.requests) == 6
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
