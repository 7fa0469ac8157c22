"""nomade targets: file_sd groups from `scontrol --oneliner show node`, dedup, filters, labels, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import MappedRunner

from nomade.cli import main as cli_main
from nomade.cli import targets
from nomade.exporter.parsers.scontrol import parse_nodes
from nomade.exporter.runner import CommandError

FIXTURES = Path(__file__).resolve().parents[3] / "shared/fixtures/scontrol"


def node(name: str, parts: str, host: str | None = None, addr: str | None = None, state: str = "IDLE") -> str:
    out = f"NodeName={name} Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUTot=2"
    if addr is not None:
        out += f" NodeAddr={addr}"
    if host is not None:
        out += f" NodeHostName={host}"
    return out + f" RealMemory=2000 State={state} Partitions={parts} CfgTRES=cpu=2"


# a node in two partitions, one in none, a FUTURE node, an IPv6 address, two NodeNames on one host (multiple slurmd)
TEXT = "\n".join(
    [
        node("gpu01", "gpu", "gpu01.hpc", "10.0.0.21"),
        node("c02", "compute,short", "c02.hpc", "10.0.0.2"),
        node("c01", "compute,short", "c01.hpc", "10.0.0.1"),
        node("c03", "compute", "c03.hpc", "fd00::3"),
        node("c09", "compute", "c09.hpc", "10.0.0.9", state="FUTURE"),
        node("v2", "debug", "vm", "127.0.0.1"),
        node("v1", "compute", "vm", "127.0.0.1"),
        node("lonely", "(null)", "(null)", "10.0.0.99"),
    ]
)


def records():
    result = parse_nodes(TEXT)
    assert result.issues == []
    return result.records


def test_one_target_per_host_sorted_with_partitions_joined():
    got = targets.build_targets(records())
    assert [(t.node, t.address, t.partitions) for t in got] == [
        ("c01", "c01.hpc:9866", ("compute", "short")),
        ("c02", "c02.hpc:9866", ("compute", "short")),
        ("c03", "c03.hpc:9866", ("compute",)),
        ("gpu01", "gpu01.hpc:9866", ("gpu",)),
        ("lonely", "10.0.0.99:9866", ()),  # NodeHostName (null): falls back to NodeAddr
        ("v1", "vm:9866", ("compute", "debug")),  # v1 and v2 share host vm: one target, first name, both partitions
    ]


def test_host_field_addr_brackets_ipv6_and_port():
    got = {t.node: t.address for t in targets.build_targets(records(), host_field="addr", port=19866)}
    assert got["c03"] == "[fd00::3]:19866"
    assert got["c01"] == "10.0.0.1:19866"
    names = {t.node: t.address for t in targets.build_targets(records(), host_field="name")}
    assert names["v2"] == "v2:9866" and names["v1"] == "v1:9866"  # by NodeName the two are distinct targets


def test_partition_filter_keeps_multi_partition_nodes_once():
    got = targets.build_targets(records(), partitions=["short", "compute"])
    assert [t.node for t in got] == ["c01", "c02", "c03", "v1"]
    assert [t.node for t in targets.build_targets(records(), partitions=["gpu"])] == ["gpu01"]


def test_render_is_file_sd_and_byte_stable():
    got = targets.build_targets(records(), partitions=["gpu", "short"])
    doc = targets.render_file_sd(got, {"cluster": "hpc1"})
    assert json.loads(doc) == [
        {"labels": {"cluster": "hpc1", "node": "c01", "partition": "compute,short"}, "targets": ["c01.hpc:9866"]},
        {"labels": {"cluster": "hpc1", "node": "c02", "partition": "compute,short"}, "targets": ["c02.hpc:9866"]},
        {"labels": {"cluster": "hpc1", "node": "gpu01", "partition": "gpu"}, "targets": ["gpu01.hpc:9866"]},
    ]
    shuffled = parse_nodes("\n".join(reversed(TEXT.splitlines()))).records
    assert (
        targets.render_file_sd(targets.build_targets(shuffled, partitions=["gpu", "short"]), {"cluster": "hpc1"}) == doc
    )
    assert doc.endswith("]\n")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["cluster"], "expected NAME=VALUE"),
        (["1x=a"], "expected NAME=VALUE"),
        (["__address__=x"], "reserved"),
        (["node=x"], "reserved"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_bad_labels(items, message):
    with pytest.raises(targets.TargetsError, match=message):
        targets.parse_labels(items)


def test_labels_ok():
    assert targets.parse_labels(["cluster=hpc1", "site=a=b"]) == {"cluster": "hpc1", "site": "a=b"}


def test_hostile_host_refused():
    bad = parse_nodes(node("x1", "compute", "evil host/../", "10.0.0.1")).records
    with pytest.raises(targets.TargetsError, match="not a host name"):
        targets.build_targets(bad)


def test_write_atomic_replaces_and_skips_unchanged(tmp_path):
    out = tmp_path / "nodes.json"
    assert targets.write_atomic(out, "[1]\n") is True
    ino = os.stat(out).st_ino
    assert targets.write_atomic(out, "[1]\n") is False and os.stat(out).st_ino == ino
    assert targets.write_atomic(out, "[2]\n") is True
    assert out.read_text() == "[2]\n" and oct(out.stat().st_mode & 0o777) == "0o644"
    assert os.stat(out).st_ino != ino  # a new inode: readers see the old file or the new one, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.json"]  # no temporary left behind


def test_write_atomic_cleans_up_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "nodes.json"
    out.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(targets.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        targets.write_atomic(out, "new\n")
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.json"]


_REAL_RUN = targets.run


def run_cli(argv, runner, monkeypatch):
    monkeypatch.setattr(targets, "run", lambda args: _REAL_RUN(args, runner=runner))
    return cli_main.main(["targets", *argv])


def test_write_atomic_creates_missing_parents_0755(tmp_path, monkeypatch):
    old_umask = os.umask(0o077)  # a restrictive root umask must not leave Prometheus unable to enter the directory
    try:
        out = tmp_path / "etc/prometheus/file_sd/nomade.json"
        assert targets.write_atomic(out, "[1]\n") is True
    finally:
        os.umask(old_umask)
    assert out.read_text() == "[1]\n" and oct(out.stat().st_mode & 0o777) == "0o644"
    for d in (tmp_path / "etc", tmp_path / "etc/prometheus", tmp_path / "etc/prometheus/file_sd"):
        assert oct(d.stat().st_mode & 0o777) == "0o755", d
    assert sorted(p.name for p in out.parent.iterdir()) == ["nomade.json"]
    # an existing directory keeps its mode
    (tmp_path / "private").mkdir(mode=0o700)
    os.chmod(tmp_path / "private", 0o700)
    assert targets.make_parents(tmp_path / "private/sub") == [tmp_path / "private/sub"]
    assert oct((tmp_path / "private").stat().st_mode & 0o777) == "0o700"
    assert targets.make_parents(tmp_path / "private/sub") == []


def test_write_atomic_parent_is_a_file(tmp_path):
    (tmp_path / "file_sd").write_text("not a directory\n")
    with pytest.raises(OSError):
        targets.write_atomic(tmp_path / "file_sd/nomade.json", "[1]\n")


def test_cli_creates_missing_out_directory(tmp_path, monkeypatch, capsys):
    runner = MappedRunner({targets.NODES_ARGV: TEXT})
    out = tmp_path / "file_sd/sub/nomade.json"
    assert run_cli(["--out", str(out)], runner, monkeypatch) == 0
    assert isinstance(json.loads(out.read_text()), list) and len(json.loads(out.read_text())) > 0
    assert f"written to {out}" in capsys.readouterr().out


def test_cli_runs_scontrol_and_writes_file(tmp_path, monkeypatch, capsys):
    runner = MappedRunner({targets.NODES_ARGV: TEXT})
    out = tmp_path / "nomade-nodes.json"
    rc = run_cli(
        ["--out", str(out), "--partition", "gpu", "--label", "cluster=hpc1", "--port", "9100"], runner, monkeypatch
    )
    assert rc == 0
    assert runner.calls == [("scontrol", "--oneliner", "show", "node")]
    assert json.loads(out.read_text()) == [
        {"labels": {"cluster": "hpc1", "node": "gpu01", "partition": "gpu"}, "targets": ["gpu01.hpc:9100"]}
    ]
    assert "1 target(s) written to" in capsys.readouterr().out
    rc = run_cli(
        ["--out", str(out), "--partition", "gpu", "--label", "cluster=hpc1", "--port", "9100"], runner, monkeypatch
    )
    assert rc == 0 and "unchanged in" in capsys.readouterr().out


def test_cli_failures_keep_previous_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "nodes.json"
    out.write_text("previous\n")
    dead = MappedRunner(
        {targets.NODES_ARGV: CommandError(targets.NODES_ARGV, "exit", "Unable to contact slurm controller")}
    )
    assert run_cli(["--out", str(out)], dead, monkeypatch) == 1
    assert "Unable to contact slurm controller" in capsys.readouterr().err
    empty = MappedRunner({targets.NODES_ARGV: TEXT})
    assert run_cli(["--out", str(out), "--partition", "nosuch"], empty, monkeypatch) == 1
    assert "no nodes matched" in capsys.readouterr().err
    assert out.read_text() == "previous\n"
    assert run_cli(["--label", "bad"], empty, monkeypatch) == 2


def test_from_file_stdout(tmp_path, capsys):
    saved = tmp_path / "nodes.txt"
    saved.write_text(TEXT)
    assert cli_main.main(["targets", "--from-file", str(saved), "--partition", "debug", "--host-field", "name"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"labels": {"node": "v2", "partition": "debug"}, "targets": ["v2:9866"]}
    ]


@pytest.mark.fixtures
def test_real_capture_from_another_site():
    path = FIXTURES / "sckyzo-scontrol-show-nodes-o-24.11.7-multigres.txt"
    if not path.exists():
        pytest.skip("../shared/fixtures not present")
    result = parse_nodes(path.read_text())
    got = targets.build_targets(result.records)
    assert got, "the capture has nodes"
    addresses = [t.address for t in got]
    assert len(addresses) == len(set(addresses))
    assert all(t.address.endswith(":9866") for t in got)
    assert [t.node for t in got] == sorted(t.node for t in got)


def test_from_file_empty_says_no_nodes_in_the_file(tmp_path, capsys):
    saved = tmp_path / "nodes.txt"
    saved.write_text("")
    out = tmp_path / "nomade.json"
    out.write_text("previous\n")
    assert cli_main.main(["targets", "--from-file", str(saved), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"nomade targets: no nodes in {saved}; nothing written\n"
    assert out.read_text() == "previous\n"
    # with a filter that removes every node of a non-empty file, the message stays "no nodes matched"
    saved.write_text(TEXT)
    assert cli_main.main(["targets", "--from-file", str(saved), "--partition", "nosuch"]) == 1
    assert capsys.readouterr().err == "nomade targets: no nodes matched; nothing written\n"


def test_scontrol_listing_no_node_is_named(monkeypatch, capsys):
    assert run_cli([], MappedRunner({targets.NODES_ARGV: ""}), monkeypatch) == 1
    err = capsys.readouterr().err
    assert err == "nomade targets: no nodes in the output of scontrol --oneliner show node; nothing written\n"
