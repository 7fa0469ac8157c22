"""scontrol show node / partition parser: own fixtures, captured fixtures of other sites, property tests."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.scontrol import (
    NODE_KEYS,
    NodeRecord,
    PartitionRecord,
    parse_nodes,
    parse_partitions,
    parse_show,
    split_pairs,
)
from nomade.exporter.parsers.slurm_units import parse_timestamp

MIB = 1024**2


def _nodes(name: str) -> dict[str, NodeRecord]:
    res = parse_nodes(own_fixture("scontrol", name))
    assert res.issues == []
    return {n.name: n for n in res.records}


def test_own_nodes_values():
    nodes = _nodes("show-node-d-o-22.05.txt")
    assert sorted(nodes) == ["c01", "c02", "c03", "c04", "g01", "g02"]
    c01 = nodes["c01"]
    assert (c01.state, c01.flags) == ("allocated", frozenset())
    assert (c01.cpus_total, c01.cpus_alloc, c01.cpu_load) == (16, 16, 15.92)
    assert c01.memory_bytes == 64000 * MIB and c01.memory_alloc_bytes == 32000 * MIB
    assert c01.memory_free_bytes == 20480 * MIB
    assert c01.partitions == ("cpu", "long")
    assert c01.fields["OS"] == "Linux 6.1.0-13-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"
    c03 = nodes["c03"]
    assert (c03.state, c03.flags) == ("idle", frozenset({"drain"}))
    # commas, quotes, a pipe and '=' inside the reason; the [user@time] suffix is split off
    assert c03.reason == 'bad DIMM, "slot 3" | see ticket=42'
    assert c03.reason_user == "root"
    assert c03.reason_time == parse_timestamp("2024-03-02T09:15:00")
    c04 = nodes["c04"]
    assert (c04.state, c04.flags) == ("down", frozenset({"not_responding"}))
    assert c04.cpu_load is None and c04.memory_free_bytes is None  # N/A is absent, not 0
    g01 = nodes["g01"]
    assert (g01.state, g01.flags) == ("mixed", frozenset({"drain"}))
    assert g01.gres == {("gpu", "a100"): 4}
    assert g01.gres_used == {("gpu", "a100"): 3}
    assert nodes["g02"].gres_used == {("gpu", "a100"): 0}


def test_lab_capture_22_05_8():
    nodes = _nodes("lab-show-node-d-o-22.05.8.txt")
    gpu01 = nodes["gpu01"]
    assert gpu01.state == "unknown" and gpu01.flags == frozenset({"drain", "invalid_reg"})
    assert gpu01.reason == "gres/gpu count reported lower than configured (0 < 2)"
    assert gpu01.reason_user == "slurm"
    assert gpu01.gres == {("gpu", ""): 2} and gpu01.gres_used == {("gpu", ""): 0}
    ghost = nodes["ghost01"]
    assert ghost.flags == frozenset({"not_responding"}) and ghost.boot_time is None and ghost.cpu_load is None
    assert nodes["c02"].cpus_alloc == 1 and nodes["c02"].memory_alloc_bytes == 200 * MIB


def test_own_partitions():
    res = parse_partitions(own_fixture("scontrol", "show-partition-o-22.05.txt"))
    assert res.issues == []
    parts = {p.name: p for p in res.records}
    assert parts["cpu"].default and parts["cpu"].state == "up" and parts["cpu"].max_time_seconds == 172800
    assert parts["long"].max_time_seconds == float("inf")
    assert parts["maint"].state == "down" and parts["maint"].nodes is None and parts["maint"].total_nodes == 0
    assert parts["gpu"].tres["gres/gpu"] == 8


def test_multiline_form_equals_oneliner():
    one = own_fixture("scontrol", "show-node-d-o-22.05.txt").splitlines()[2]
    # scontrol without -o breaks the same pairs over indented lines and ends each record with a blank line
    multi = one.replace(" RealMemory=", "\n   RealMemory=").replace(" Reason=", "\n   Reason=") + "\n\n"
    a, b = parse_nodes(one).records[0], parse_nodes(multi).records[0]
    assert a == b


def test_reason_without_suffix_stops_at_next_unseen_key():
    f = split_pairs("NodeName=n1 State=DOWN Reason=cable=bad State=x Comment=see wiki Extra=a b", NODE_KEYS)
    assert f is not None
    assert f["Reason"] == "cable=bad State=x"
    assert f["Comment"] == "see wiki" and f["Extra"] == "a b"


def test_unknown_new_key_is_kept_separate():
    f = split_pairs("NodeName=n1 ResumeAfterTime=None SuspendTime=INFINITE CfgTRES=cpu=2", NODE_KEYS)
    assert f == {"NodeName": "n1", "ResumeAfterTime": "None", "SuspendTime": "INFINITE", "CfgTRES": "cpu=2"}


def test_bad_values_are_counted_not_zeroed():
    res = parse_nodes("NodeName=n1 CPUAlloc=x CPUTot=4 State=IDLE\nNodeName=n2 State=BOGUS\n")
    assert [n.name for n in res.records] == ["n1"]
    assert res.records[0].cpus_alloc is None and res.records[0].cpus_total == 4
    assert len(res.issues) == 2


# --- captured fixtures of other sites -------------------------------------------------------------------------

# file prefix -> expected record type; every other file must be refused with exactly one issue.
PARSED = {
    "sckyzo-scontrol-show-nodes-o-": NodeRecord,
    "ood-scontrol-show-part-o-": PartitionRecord,
    "pittcrc-docs-scontrol-M-show-partition-": PartitionRecord,
}


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("scontrol"), ids=lambda p: p.name)
def test_every_shared_file(path):
    res = parse_show(path.read_text(errors="replace"))
    kind = next((t for prefix, t in PARSED.items() if path.name.startswith(prefix)), None)
    if kind is None:
        assert res.records == []
        assert [i.reason for i in res.issues] == ["unrecognised format"]
    else:
        assert res.records and res.issues == []
        assert all(isinstance(r, kind) and r.name for r in res.records)


@pytest.mark.fixtures
def test_shared_nodes_24_11_values():
    res = parse_nodes(shared_file("scontrol", "sckyzo-scontrol-show-nodes-o-24.11.7-multigres.txt").read_text())
    na1 = next(n for n in res.records if n.name == "na1")
    assert (na1.state, na1.flags) == ("mixed", frozenset({"dynamic_norm"}))
    assert (na1.cpus_alloc, na1.cpus_total, na1.cpus_effective, na1.cpu_load) == (4, 32, 32, 8.62)
    assert na1.memory_bytes == 15867 * MIB and na1.memory_free_bytes == 406 * MIB
    assert na1.partitions == ("cpu", "debug", "high")
    assert na1.fields["OS"].startswith("Linux 6.18.33.2-microsoft-standard-WSL2 #1 SMP")


@pytest.mark.fixtures
def test_shared_partitions_values():
    res = parse_partitions(shared_file("scontrol", "ood-scontrol-show-part-o-owens-real.txt").read_text())
    batch = next(p for p in res.records if p.name == "batch")
    assert batch.state == "inactive" and batch.default and batch.max_time_seconds == 7 * 86400
    assert (batch.total_cpus, batch.total_nodes) == (23000, 810)
    multi = parse_partitions(
        shared_file("scontrol", "pittcrc-docs-scontrol-M-show-partition-multiline-tres-billing.txt").read_text()
    )
    htc = multi.records[0]
    assert (htc.name, htc.total_cpus, htc.total_nodes, htc.max_time_seconds) == ("htc", 6144, 74, float("inf"))


# --- property tests -------------------------------------------------------------------------------------------

_OWN = own_fixture("scontrol", "show-node-d-o-22.05.txt").splitlines()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    for fn in (parse_nodes, parse_partitions, parse_show):
        res = fn(text)
        assert isinstance(res.records, list)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_OWN), st.integers(0, 2000), st.integers(0, 50), st.text(max_size=20))
def test_mangled_lines_never_raise(line, pos, cut, junk):
    mangled = line[:pos] + junk + line[pos + cut :]
    res = parse_nodes(mangled + "\n" + line)
    assert res.records  # the intact line still parses


@pytest.mark.parametrize(
    ("record", "known", "expected"),
    [
        ("", None, None),
        ("   ", None, None),
        ("text before A=1", None, None),
        (" A=1", None, None),  # the first key must start the record
        ("A=1 B= C=x=y", None, {"A": "1", "B": "", "C": "x=y"}),
        ("A=1 B=2 A=3", None, {"A": "1", "B": "2"}),  # a repeat keeps the first value, in first-seen order
        ("A=1\tB=a,b  C=3", None, {"A": "1", "B": "a,b", "C": "3"}),
        ("A=x=1 y=2", None, {"A": "x=1", "y": "2"}),  # "x=1" is glued to "A=": no new key
        ("AllocNode:Sid=h:1 B=2", None, {"AllocNode:Sid": "h:1", "B": "2"}),
        ("NodeName=n1 State=IDLE State=x", NODE_KEYS, {"NodeName": "n1", "State": "IDLE"}),
        ("NodeName=n1 OS=Linux 5.x Arch=y State=IDLE", NODE_KEYS, {"NodeName": "n1", "OS": "Linux 5.x", "Arch": "y",
                                                                  "State": "IDLE"}),
        # State is no free text: it ends at the repeated OS=, whose own value is dropped (the first one stays).
        ("NodeName=n1 OS=a State=b OS=c", NODE_KEYS, {"NodeName": "n1", "OS": "a", "State": "b"}),
    ],
)  # fmt: skip
def test_split_pairs_edges(record, known, expected):
    """Pair boundaries, repeats and refusals of split_pairs (both its plain and its free-text paths)."""
    got = split_pairs(record, known)
    assert got == expected
    if got is not None:
        assert list(got) == list(expected)
