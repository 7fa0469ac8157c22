"""Recording-rule history for a backfilled TSDB: ``promtool tsdb create-blocks-from rules``, dependencies inlined.

Backfilled raw samples give a fresh Prometheus days of history, but its recording rules start at its first
evaluation, so dashboards built on ``cluster:...`` series would show hours of gaps. Prometheus' answer is
``promtool tsdb create-blocks-from rules`` (https://prometheus.io/docs/prometheus/latest/storage/#backfilling-for-recording-rules):
it evaluates each rule over a past span through a running Prometheus' query API and writes TSDB blocks, which
Prometheus loads once they are moved into its data directory (its block reload, at most a minute later; the
blocks may overlap others, vertical compaction merges them). Two limits documented there are handled here:

* a rule that reads another recording rule sees no history of it (the query runs against a TSDB that does not
  hold it yet): :func:`inline_dependencies` replaces each reference by the referenced rule's expression in
  parentheses, which is what the live evaluation computes (rules of a group are evaluated in order at one
  timestamp). A reference with its own selector (``name{...}`` or ``name[...]``) cannot be inlined; such rules
  are left out and named.
* alerting rules are not supported (promtool 2.42 writes them as series named after the alert): only recording
  rules are given to it (:func:`recording_rules`). Alert states begin when the live Prometheus evaluates them.

Rules whose inputs are not in the history (the analytics service's ``nomade_trend_*``, ``nomade_job_risk_*``)
produce nothing, as they would live before the service ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_EVAL_INTERVAL = 60.0
"""Seconds between backfilled evaluations (promtool's own default): two points per 2-minute history step."""

_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class RuleHistoryError(RuntimeError):
    """The rule files cannot be read or promtool failed (its stderr in the message)."""


@dataclass(frozen=True)
class RecordingRule:
    """One recording rule: ``record`` (the series name), ``expr`` (PromQL) and its static ``labels``."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)


def recording_rules(paths: Sequence[Path]) -> list[RecordingRule]:
    """Every recording rule of the Prometheus rule files ``paths``, in file and group order (alerts skipped).

    Raises:
        RuleHistoryError: a file that cannot be read or is not a rule file (``groups:`` of ``rules:``).

    """
    out: list[RecordingRule] = []
    for path in paths:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RuleHistoryError(f"cannot read rule file {path}: {exc}") from exc
        groups = doc.get("groups") if isinstance(doc, dict) else None
        if not isinstance(groups, list):
            raise RuleHistoryError(f"{path}: not a Prometheus rule file (no groups list)")
        for g in groups:
            for r in (g or {}).get("rules") or []:
                if isinstance(r, dict) and "record" in r:
                    labels = {str(k): str(v) for k, v in (r.get("labels") or {}).items()}
                    out.append(RecordingRule(str(r["record"]), str(r["expr"]), labels))
    return out


def _references(expr: str, names: set[str]) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of each token of ``expr`` that is one of ``names`` (outside string literals)."""
    refs = []
    i = 0
    quote = ""
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "\"'`":
            quote = ch
            i += 1
            continue
        m = _NAME.match(expr, i)
        if m is None:
            i += 1
            continue
        if m.group() in names and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:")):
            refs.append((m.start(), m.end(), m.group()))
        i = m.end()
    return refs


def inline_dependencies(rules: Sequence[RecordingRule]) -> tuple[list[RecordingRule], list[str]]:
    """Rules whose references to other recording rules are replaced by those rules' expressions.

    Each bare reference ``name`` becomes ``(expr of name)``, repeatedly, so chains resolve; the recorded series
    are the same the live evaluation produces at the same timestamp. Rules are returned in their order.

    Returns:
        ``(rules, skipped)``: the rules ready for promtool, and the names of those left out because a reference
        carries its own selector (``name{...}``, ``name[5m]``), points at a rule with static labels (inlining
        would lose them) or is circular.

    """
    by_name: dict[str, RecordingRule] = {}
    for r in rules:
        by_name.setdefault(r.record, r)  # a name recorded twice: the first definition is inlined
    names = set(by_name)
    out: list[RecordingRule] = []
    skipped: list[str] = []
    for rule in rules:
        expr = rule.expr
        ok = True
        for _ in range(len(names) + 1):
            refs = _references(expr, names)
            if not refs:
                break
            for start, end, name in reversed(refs):
                after = expr[end:].lstrip()
                if after[:1] in ("{", "[") or by_name[name].labels or name == rule.record:
                    ok = False
                    break
                expr = f"{expr[:start]}({by_name[name].expr}){expr[end:]}"
            if not ok:
                break
        else:
            ok = False  # still referencing after as many rounds as there are rules: a cycle
        if ok:
            out.append(RecordingRule(rule.record, expr, rule.labels))
        else:
            skipped.append(rule.record)
    return out, skipped


def write_rule_file(rules: Sequence[RecordingRule], path: Path) -> None:
    """Write ``rules`` as one rule group (``nomade-backfill``) to ``path``."""
    group = [{"record": r.record, "expr": r.expr, **({"labels": dict(r.labels)} if r.labels else {})} for r in rules]
    doc = {"groups": [{"name": "nomade-backfill", "rules": group}]}
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000), encoding="utf-8")


@dataclass
class RuleHistoryResult:
    """What :func:`backfill_rules` did: rules evaluated and left out, blocks moved into the TSDB."""

    rules: int
    skipped: list[str]
    blocks: int


def backfill_rules(
    rule_files: Sequence[Path],
    url: str,
    start: float,
    end: float,
    tsdb_dir: Path,
    *,
    promtool: str = "promtool",
    eval_interval: float = DEFAULT_EVAL_INTERVAL,
    timeout: float = 900.0,
) -> RuleHistoryResult:
    """Evaluate the recording rules of ``rule_files`` over ``[start, end]`` and move the blocks into ``tsdb_dir``.

    Args:
        rule_files: Prometheus rule files (their alerting rules are ignored).
        url: base URL of the Prometheus that serves the raw history (``http://127.0.0.1:9190``).
        start: Unix seconds where the span begins (the backfilled history's start).
        end: Unix seconds where it ends.
        tsdb_dir: the data directory of that Prometheus (``--storage.tsdb.path``); it loads the blocks at its next
            block reload (within a minute).
        promtool: promtool executable (name on PATH or path).
        eval_interval: seconds between evaluations (> 0).
        timeout: seconds promtool may run.

    Returns:
        The figures of the run.

    Raises:
        RuleHistoryError: unreadable rule files, bad span, promtool missing, failing or timing out.

    """
    if not end > start:
        raise RuleHistoryError(f"end ({end}) must be after start ({start})")
    if not eval_interval > 0:
        raise RuleHistoryError(f"eval interval must be > 0, got {eval_interval}")
    exe = shutil.which(promtool)
    if exe is None:
        raise RuleHistoryError(f"{promtool} not found: install Prometheus' promtool")
    rules, skipped = inline_dependencies(recording_rules(rule_files))
    tsdb_dir = Path(tsdb_dir)
    if not rules:
        return RuleHistoryResult(0, skipped, 0)
    # The output directory lies beside the TSDB, on the same filesystem, so each block moves with one rename.
    with tempfile.TemporaryDirectory(prefix=".rule-history-", dir=tsdb_dir.parent) as tmp:
        rule_file = Path(tmp) / "rules.yml"
        write_rule_file(rules, rule_file)
        out_dir = Path(tmp) / "blocks"
        out_dir.mkdir()
        argv = [
            exe, "tsdb", "create-blocks-from", "rules",
            f"--start={int(start)}", f"--end={int(end)}", f"--url={url}",
            f"--output-dir={out_dir}", f"--eval-interval={eval_interval:g}s", str(rule_file),
        ]  # fmt: skip
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuleHistoryError(f"promtool tsdb create-blocks-from rules ran longer than {timeout:g} s") from exc
        if proc.returncode != 0:
            raise RuleHistoryError(
                f"promtool tsdb create-blocks-from rules exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        blocks = 0
        for entry in sorted(os.scandir(out_dir), key=lambda e: e.name):
            if entry.is_dir() and (Path(entry.path) / "meta.json").exists():
                os.replace(entry.path, tsdb_dir / entry.name)
                blocks += 1
    return RuleHistoryResult(len(rules), skipped, blocks)
