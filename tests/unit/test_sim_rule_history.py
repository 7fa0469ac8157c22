"""Recording-rule history (nomade.sim.rule_history): rule selection, dependency inlining, promtool's blocks moved.

promtool itself is replaced by a script that records its argv and the rule file it was given and writes one
block directory, so the tests check what reaches promtool and what lands in the TSDB; the demo's integration test
(tests/integration/test_sim_demo.py) checks the recorded values against the rules' expressions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nomade.sim.rule_history import (
    RecordingRule,
    RuleHistoryError,
    backfill_rules,
    inline_dependencies,
    recording_rules,
)

RULES = {
    "groups": [
        {
            "name": "a",
            "rules": [
                {"record": "cluster_node:busy:avg5m", "expr": "avg by (cluster, node) (avg_over_time(busy[5m]))"},
                {"record": "cluster:busy:avg", "expr": "avg by (cluster) (cluster_node:busy:avg5m)"},
                {"alert": "NodeDown", "expr": "up == 0", "for": "5m"},
            ],
        },
        {
            "name": "b",
            "rules": [
                {"record": "x:top", "expr": "max(cluster:busy:avg) > 0.5"},
                {"record": "x:sel", "expr": 'sum(cluster_node:busy:avg5m{node="c1"})'},
                {"record": "x:lab", "expr": "sum(rate(jobs_total[5m]))", "labels": {"team": "hpc"}},
                {"record": "x:uses_lab", "expr": "x:lab * 2"},
                {"record": "x:str", "expr": 'count(up{job="cluster:busy:avg"})'},
            ],
        },
    ]
}


def write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(RULES))
    return path


def test_recording_rules_skip_alerts_and_keep_order(tmp_path):
    rules = recording_rules([write_rules(tmp_path)])
    assert [r.record for r in rules] == [
        "cluster_node:busy:avg5m", "cluster:busy:avg", "x:top", "x:sel", "x:lab", "x:uses_lab", "x:str",
    ]  # fmt: skip
    assert rules[4].labels == {"team": "hpc"}
    (tmp_path / "bad.yml").write_text("just: text\n")
    with pytest.raises(RuleHistoryError, match="not a Prometheus rule file"):
        recording_rules([tmp_path / "bad.yml"])
    with pytest.raises(RuleHistoryError, match="cannot read"):
        recording_rules([tmp_path / "missing.yml"])


def test_inline_dependencies_resolve_chains_and_name_what_cannot_be_inlined(tmp_path):
    rules, skipped = inline_dependencies(recording_rules([write_rules(tmp_path)]))
    got = {r.record: r.expr for r in rules}
    inner = "avg by (cluster, node) (avg_over_time(busy[5m]))"
    assert got["cluster_node:busy:avg5m"] == inner  # no reference: unchanged
    assert got["cluster:busy:avg"] == f"avg by (cluster) (({inner}))"
    assert got["x:top"] == f"max((avg by (cluster) (({inner})))) > 0.5"  # two levels
    assert got["x:str"] == 'count(up{job="cluster:busy:avg"})'  # a name inside a string is not a reference
    # a reference with its own selector, or to a rule with static labels, cannot be inlined
    assert skipped == ["x:sel", "x:uses_lab"]
    cyclic = [RecordingRule("a:x", "b:y + 1"), RecordingRule("b:y", "a:x + 1")]
    assert inline_dependencies(cyclic) == ([], ["a:x", "b:y"])


def fake_promtool(tmp_path: Path, rc: int = 0) -> Path:
    """Records argv and the rule file given; writes one block (and a stray file) into --output-dir."""
    exe = tmp_path / "promtool"
    exe.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/argv\n'
        'for a in "$@"; do case $a in --output-dir=*) out=${a#--output-dir=};; esac; done\n'
        'for a in "$@"; do rules=$a; done\n'
        f'cp "$rules" {tmp_path}/given.yml\n'
        'mkdir -p "$out/01BLOCK" && echo "{}" > "$out/01BLOCK/meta.json" && echo x > "$out/stray"\n'
        f"echo 'bad query' >&2\nexit {rc}\n"
    )
    exe.chmod(0o755)
    return exe


def test_backfill_rules_runs_promtool_and_moves_the_blocks(tmp_path):
    tsdb = tmp_path / "prometheus"
    tsdb.mkdir()
    exe = fake_promtool(tmp_path)
    res = backfill_rules([write_rules(tmp_path)], "http://127.0.0.1:9", 1000.0, 87400.0, tsdb, promtool=str(exe))
    assert (res.rules, res.skipped, res.blocks) == (5, ["x:sel", "x:uses_lab"], 1)
    assert (tsdb / "01BLOCK" / "meta.json").exists() and not (tsdb / "stray").exists()
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:3] == ["tsdb", "create-blocks-from", "rules"]
    assert {"--start=1000", "--end=87400", "--url=http://127.0.0.1:9", "--eval-interval=60s"} <= set(argv)
    given = yaml.safe_load((tmp_path / "given.yml").read_text())
    assert [r["record"] for r in given["groups"][0]["rules"]] == [
        "cluster_node:busy:avg5m", "cluster:busy:avg", "x:top", "x:lab", "x:str",
    ]  # fmt: skip
    assert all("alert" not in r for r in given["groups"][0]["rules"])
    assert given["groups"][0]["rules"][3]["labels"] == {"team": "hpc"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rule-history-")] == []  # cleaned up


def test_backfill_rules_errors(tmp_path):
    tsdb = tmp_path / "prometheus"
    tsdb.mkdir()
    rules = write_rules(tmp_path)
    with pytest.raises(RuleHistoryError, match="exited with 3: bad query"):
        backfill_rules([rules], "http://x", 0, 60, tsdb, promtool=str(fake_promtool(tmp_path, rc=3)))
    assert list(tsdb.iterdir()) == []  # nothing moved from a failed run
    with pytest.raises(RuleHistoryError, match="not found"):
        backfill_rules([rules], "http://x", 0, 60, tsdb, promtool=str(tmp_path / "nope"))
    with pytest.raises(RuleHistoryError, match="must be after start"):
        backfill_rules([rules], "http://x", 60, 60, tsdb)
