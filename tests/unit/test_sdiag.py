"""sdiag parser: captured reports of other sites (17.x, 24.11, 26.05 text; 23.02 JSON), the lab's and our own."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.sdiag import parse_sdiag, parse_sdiag_time, slug


@pytest.mark.parametrize("path", shared_files("sdiag"), ids=lambda p: p.name)
def test_every_captured_report_parses_cleanly(path):
    res = parse_sdiag(path.read_text())
    assert res.issues == []
    assert len(res.records) == 1
    v = res.records[0].values
    assert v["jobs_submitted"] >= 0 and v["server_thread_count"] >= 1
    assert v["req_time"] > v["req_time_start"]


def test_slurm_17_text_without_epochs():
    stats = parse_sdiag(shared_file("sdiag", "vpenso-sdiag-17.txt").read_text()).records[0]
    v = stats.values
    assert v["jobs_submitted"] == 9706 and v["jobs_started"] == 35395 and v["jobs_canceled"] == 2835
    # "Total cycles" is the number of main cycles (schedule_cycle_counter), not a time.
    assert v["schedule_cycle_total"] == 34585 and v["schedule_cycle_mean"] == 74593
    assert v["bf_backfilled_jobs"] == 111544 and v["bf_last_backfilled_jobs"] == 793
    assert v["bf_depth_mean"] == 29324 and v["bf_queue_len_mean"] == 40772
    # bare ctime is local time: 9 h between "Data since 02:00:00" and the 11:04:01 report
    assert v["req_time"] - v["req_time_start"] == 9 * 3600 + 4 * 60 + 1
    assert v["bf_when_last_cycle"] - v["req_time_start"] == 9 * 3600 + 3 * 60 + 21
    assert "jobs_pending" not in v and stats.rpc_by_type == [] and stats.bf_active is False


def test_slurm_24_11_epochs_exits_and_rpc_tables():
    stats = parse_sdiag(shared_file("sdiag", "sckyzo-sdiag-24.11.7.txt").read_text()).records[0]
    v = stats.values
    assert v["req_time"] == 1785470428 and v["req_time_start"] == 1785470342
    assert v["job_states_ts"] == 1785470402
    assert v["jobs_submitted"] == 15 and v["jobs_started"] == 11
    assert v["schedule_cycle_last"] == 3508 and v["schedule_cycle_mean"] == 779
    assert "bf_when_last_cycle" not in v  # "Last cycle when: N/A"
    assert "bf_cycle_mean" not in v  # printed only after a backfill cycle
    assert stats.main_exit["end_job_queue"] == 5 and stats.bf_exit["bf_max_time"] == 0
    by_type = {r.name: r for r in stats.rpc_by_type}
    assert len(by_type) == 12
    assert by_type["MESSAGE_NODE_REGISTRATION_STATUS"].id == 1002
    assert by_type["MESSAGE_NODE_REGISTRATION_STATUS"].count == 20
    assert by_type["MESSAGE_NODE_REGISTRATION_STATUS"].total_time_us == 106146
    assert [(u.name, u.id, u.count) for u in stats.rpc_by_user] == [("user5", 0, 162)]
    assert stats.pending_rpcs == {}


def test_json_23_02():
    stats = parse_sdiag(shared_file("sdiag", "rivos-sdiag-json-23.02.4.json").read_text()).records[0]
    v = stats.values
    assert v["dbd_agent_queue_size"] == 5 and v["jobs_pending"] == 13455
    assert v["schedule_cycle_total"] == 3818 and v["bf_cycle_mean"] == 2382553
    assert v["bf_when_last_cycle"] == 1698885541 and v["req_time_start"] == 1698883200
    assert stats.bf_active is False
    assert {r.name: r.count for r in stats.rpc_by_type}["REQUEST_FED_INFO"] == 94114
    assert stats.rpc_by_user[1].name == "abdh" and stats.rpc_by_user[1].total_time_us == 928512674


def test_lab_22_05():
    stats = parse_sdiag(own_fixture("sdiag", "lab-sdiag-22.05.8.txt"))
    assert stats.issues == []
    v = stats.records[0].values
    assert v["req_time"] == 1795968561 and v["req_time_start"] == 1795968406
    assert v["jobs_submitted"] == 2 and v["agent_thread_count"] == 3
    assert {u.name for u in stats.records[0].rpc_by_user} >= {"root"}


def test_busy_report_with_backfill_running_and_pending_rpcs():
    res = parse_sdiag(own_fixture("sdiag", "sdiag-25.05-busy-backfill-active.txt"))
    assert res.issues == []
    s = res.records[0]
    assert s.bf_active is True
    assert s.values["dbd_agent_queue_size"] == 1250 and s.values["bf_cycle_max"] == 29000456
    assert s.values["bf_table_size_mean"] == 75 and s.values["gettimeofday_latency"] == 19
    assert s.main_exit == {"end_job_queue": 14000, "default_queue_depth": 380, "max_job_start": 0,
                           "blocked_on_licenses": 0, "max_rpc_cnt": 22, "max_sched_time": 0}  # fmt: skip
    assert s.bf_exit["bf_max_job_test"] == 290 and s.bf_exit["state_changed"] == 12
    assert s.pending_rpcs == {"REQUEST_TERMINATE_JOB": 3, "REQUEST_NODE_REGISTRATION_STATUS": 1}
    assert [u.name for u in s.rpc_by_user] == ["root", "alice", "bob", "(null)"]


def test_bad_values_are_counted_not_guessed():
    text = own_fixture("sdiag", "lab-sdiag-22.05.8.txt").replace("Jobs submitted: 2", "Jobs submitted: lots")
    res = parse_sdiag(text)
    assert len(res.issues) == 1 and "jobs_submitted" not in res.records[0].values
    bad_rpc = text.replace(
        "Remote Procedure Call statistics by user\n", "Remote Procedure Call statistics by user\n\tgarbage\n"
    )
    assert len(parse_sdiag(bad_rpc).issues) == 2


@pytest.mark.parametrize(
    "text",
    ["No data available. Probably slurmctld is not working\n", '{"statistics": 3}', "{not json", "Key: 1\n"],
)
def test_unrecognised_text_gives_one_issue(text):
    res = parse_sdiag(text)
    assert res.records == [] and len(res.issues) == 1 and res.issues[0].reason == "unrecognised format"


def test_empty_text():
    res = parse_sdiag("  \n")
    assert res.records == [] and res.issues == []


def test_time_and_slug_helpers():
    assert parse_sdiag_time("Fri Jul 31 04:00:28 2026 (1785470428)") == 1785470428
    assert parse_sdiag_time("N/A") is None
    with pytest.raises(ValueError):
        parse_sdiag_time("yesterday")
    assert slug("Timeout (bf_max_time)") == "timeout_bf_max_time" and slug("!!") == "other"


LINES = st.sampled_from([
    "sdiag output at Fri Jul 31 04:00:28 2026 (1785470428)", "Data since      x", "Jobs submitted: 5",
    "Jobs failed:    -1", "Main schedule statistics (microseconds):", "\tLast cycle:   12", "\tTotal cycles: x",
    "Main scheduler exit:", "\tEnd of job queue:99", "Backfilling stats", "\tLast cycle when: N/A",
    "\tLast cycle when: Mon Feb 30 99:00:00 2020", "Remote Procedure Call statistics by user",
    "\troot   (   0) count:5 ave_time:1 total_time:5", "\t(   0) count:", "Pending RPC statistics",
    "\tNo pending RPCs", "Pending RPCs", "\t 1: X y", "{", "}", "", "\ufffd",
    "Latency for 1000 calls to gettimeofday(): 9 microseconds",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(LINES, max_size=40).map("\n".join)))
def test_property_no_exception_escapes(text):
    res = parse_sdiag(text)
    assert len(res.records) <= 1
    for r in res.records:
        assert all(isinstance(x, float) for x in r.values.values())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["number", "set", "infinite", "count", "user", "user_id", "message_type", "type_id", "total_time"]), inner,
        max_size=5),
    max_leaves=15,
)  # fmt: skip
KEYS = st.sampled_from(["req_time", "jobs_submitted", "bf_cycle_sum", "bf_cycle_counter", "schedule_exit",
                        "rpcs_by_user", "rpcs_by_message_type", "pending_rpcs", "bf_active", "bf_exit"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=8))
def test_property_json_statistics_never_raise(stats):
    import json

    res = parse_sdiag(json.dumps({"statistics": stats}))
    assert len(res.records) == 1
