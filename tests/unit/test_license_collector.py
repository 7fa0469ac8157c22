"""licenses collector (FlexLM + RLM) over a fake runner fed with captured and own lmstat/rlmstat outputs."""

from __future__ import annotations

import calendar
import functools
import math

import pytest
from conftest import MappedRunner, own_fixture, shared_file

from nomade.exporter.collectors import licenses
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.licenses import (
    LicensesCollector,
    flexlm_argv,
    parse_servers,
    pick_expiry,
    rlm_argv,
)
from nomade.exporter.config import ConfigError
from nomade.exporter.runner import CommandError

NOW = float(calendar.timegm((2024, 3, 5, 12, 0, 0)))
EDA = {
    "name": "eda",
    "type": "flexlm",
    "address": "27000@lic1.example.org,27000@lic2.example.org,27000@lic3.example.org",
}
RLM = {"name": "fx", "type": "rlm", "address": "5053@rlmhost", "lmutil": "/opt/rlm/rlmutil"}


FakeRunner = functools.partial(MappedRunner, finished_at=NOW)


def make(servers, outputs, **options):
    runner = FakeRunner(outputs)
    col = LicensesCollector(CollectorContext(runner=runner, options={"servers": servers, **options}, clock=lambda: NOW))
    return col, runner


def collect(servers, outputs, **options):
    col, runner = make(servers, outputs, **options)
    out = col.new_set()
    col.collect(out)
    return col, out, runner


def eda_outputs(with_info=True):
    server = parse_servers([EDA])[0]
    outputs = {flexlm_argv(server, "-a"): own_fixture("lmstat", "lmstat-a-triad-down-multivendor.txt")}
    if with_info:
        outputs[flexlm_argv(server, "-i")] = own_fixture("lmstat", "lmstat-i-multivendor.txt")
    return outputs


def test_module_and_defaults():
    assert licenses.COLLECTOR is LicensesCollector
    assert LicensesCollector.mode == "controller" and not LicensesCollector.default_enabled


def test_flexlm_usage_servers_and_daemons():
    col, out, runner = collect([EDA], eda_outputs())
    v = out.value
    srv = {"server": "eda"}
    assert v("nomade_license_issued", **srv, vendor="cdslmd", feature="Virtuoso_Schematic") == 20
    assert v("nomade_license_used", **srv, vendor="cdslmd", feature="Virtuoso_Schematic") == 6
    assert v("nomade_license_reserved", **srv, vendor="cdslmd", feature="Virtuoso_Schematic") == 2
    assert v("nomade_license_queued", **srv, vendor="cdslmd", feature="Virtuoso_Schematic") == 3
    # Spectre is unused (no detail line): its vendor comes from lmstat -i
    assert v("nomade_license_issued", **srv, vendor="cdslmd", feature="Spectre") == 50
    assert v("nomade_license_used", **srv, vendor="cdslmd", feature="Spectre") == 0
    # uncounted and error features have no counts: absent, not 0
    issued = out.samples("nomade_license_issued")
    assert not any(k[2] in ("hostid_tool", "Legacy_Feature") for k in issued)
    assert v("nomade_license_server_up", **srv, host="lic1.example.org", role="master") == 1
    assert v("nomade_license_server_up", **srv, host="lic2.example.org", role="member") == 1
    assert v("nomade_license_server_up", **srv, host="lic3.example.org", role="unknown") == 0
    assert v("nomade_license_vendor_daemon_up", **srv, vendor="cdslmd") == 1
    assert v("nomade_license_vendor_daemon_up", **srv, vendor="snpslmd") == 0
    assert v("nomade_license_query_success", **srv) == 1
    assert v("nomade_license_checkout_users", **srv) == 3  # alice, bob, dave (carol only queued)
    assert out.samples("nomade_license_checkouts") == {}  # per_user is off by default
    assert col.parse_errors == 1  # the "someday" expiry of lmstat -i
    assert runner.calls == [flexlm_argv(col.servers[0], "-a"), flexlm_argv(col.servers[0], "-i")]


def test_flexlm_expiry_picks_next_future_date():
    _, out, _ = collect([EDA], eda_outputs())
    v = out.value
    exp = {"server": "eda"}
    # two license lines 23.1: 30-jun-2023 (past) and 31-dec-2024 -> the future one
    assert v("nomade_license_expiry_timestamp_seconds", **exp, vendor="cdslmd", feature="Virtuoso_Schematic",
             version="23.1") == calendar.timegm((2024, 12, 31, 0, 0, 0))  # fmt: skip
    assert v("nomade_license_expiry_timestamp_seconds", **exp, vendor="cdslmd", feature="Spectre",
             version="23.1") == math.inf  # fmt: skip
    assert v("nomade_license_expiry_timestamp_seconds", **exp, vendor="snpslmd", feature="Unused_Other",
             version="1.0") == calendar.timegm((2025, 3, 15, 0, 0, 0))  # fmt: skip
    assert v("nomade_license_expiry_timestamp_seconds", **exp, vendor="snpslmd", feature="VCS",
             version="2023.12") == math.inf  # fmt: skip
    assert pick_expiry([1.0, 2.0], now=5.0) == 2.0
    assert pick_expiry([1.0, 9.0, math.inf], now=5.0) == 9.0
    assert pick_expiry([], now=5.0) is None


def test_without_lmstat_i_unused_feature_of_multivendor_server_has_empty_vendor():
    _, out, _ = collect([{**EDA, "expiry": False}], eda_outputs(with_info=False))
    assert out.value("nomade_license_issued", server="eda", vendor="", feature="Spectre") == 50
    assert out.value("nomade_license_issued", server="eda", vendor="cdslmd", feature="Virtuoso_Schematic") == 20


def test_lmstat_i_failure_is_not_a_query_failure():
    outputs = eda_outputs(with_info=False)
    col, out, _ = collect([EDA], outputs)
    assert out.value("nomade_license_query_success", server="eda") == 1
    assert out.value("nomade_license_issued", server="eda", vendor="", feature="Spectre") == 50


def test_feature_filter_and_per_user_cap():
    servers = [{**EDA, "features": ["Virtuoso_*", "VCS"]}]
    _, out, _ = collect(servers, eda_outputs(), per_user=True, max_users=2)
    features = {k[2] for k in out.samples("nomade_license_issued")}
    assert features == {"Virtuoso_Schematic", "VCS"}
    checkouts = out.samples("nomade_license_checkouts")
    # alice holds 3, bob 1, dave 1: the cap keeps alice and the alphabetically first of the ties (bob)
    assert checkouts == {("eda", "Virtuoso_Schematic", "alice"): 3.0, ("eda", "Virtuoso_Schematic", "bob"): 1.0}
    assert out.value("nomade_license_checkout_users", server="eda") == 3
    assert out.value("nomade_license_checkout_users_dropped", server="eda") == 1


def test_single_vendor_server_labels_every_feature_with_its_daemon():
    # app1: one daemon VENDOR1, while some detail lines say "vendor1": the daemon name keeps the label stable
    server = {"name": "app1", "address": "27002@host-1.domain.net"}
    text = shared_file("lmstat", "flexlm-lmstat-a-app1-triad-reservations.txt").read_text()
    s = parse_servers([server])[0]
    _, out, _ = collect([server], {flexlm_argv(s, "-a"): text, flexlm_argv(s, "-i"): ""})
    vendors = {k[1] for k in out.samples("nomade_license_issued")}
    assert vendors == {"VENDOR1"}
    assert out.value("nomade_license_used", server="app1", vendor="VENDOR1", feature="feature1") == 1206
    assert out.value("nomade_license_reserved", server="app1", vendor="VENDOR1", feature="feature1") == 132
    assert out.value("nomade_license_server_up", server="app1", host="host2.domain.net", role="master") == 1


def test_windows_duplicate_host_is_one_series():
    server = {"name": "ptc", "address": "7788@BVS15004", "expiry": False}
    s = parse_servers([server])[0]
    text = shared_file("lmstat", "flexlm-lmstat-a-server-up-windows.txt").read_text()
    _, out, _ = collect([server], {flexlm_argv(s, "-a"): text})
    assert out.samples("nomade_license_server_up") == {("ptc", "bvs15004", "master"): 1.0}


def test_lmgrd_down_reports_server_down_not_failure():
    server = {"name": "matlab", "address": "1717@matlab-lic", "expiry": False}
    s = parse_servers([server])[0]
    _, out, _ = collect([server], {flexlm_argv(s, "-a"): own_fixture("lmstat", "lmstat-a-lmgrd-down.txt")})
    assert out.value("nomade_license_server_up", server="matlab", host="matlab-lic", role="unknown") == 0
    assert out.value("nomade_license_query_success", server="matlab") == 1
    assert out.samples("nomade_license_issued") == {}


def test_rlm_pools_summed_per_product():
    s = parse_servers([RLM])[0]
    col, out, runner = collect([RLM], {rlm_argv(s): own_fixture("rlmstat", "rlmstat-a-two-isv.txt")}, per_user=True)
    assert runner.calls == [("/opt/rlm/rlmutil", "rlmstat", "-c", "5053@rlmhost", "-a")]
    v = out.value
    assert v("nomade_license_issued", server="fx", vendor="sidefx", feature="houdini") == 15
    assert v("nomade_license_used", server="fx", vendor="sidefx", feature="houdini") == 6
    assert v("nomade_license_reserved", server="fx", vendor="sidefx", feature="houdini") == 1
    # an uncounted pool makes the issued total unknown, but its use is known
    assert v("nomade_license_issued", server="fx", vendor="sidefx", feature="render") is None
    assert v("nomade_license_used", server="fx", vendor="sidefx", feature="render") == 1
    assert v("nomade_license_server_up", server="fx", host="rlmhost", role="master") == 1
    assert v("nomade_license_vendor_daemon_up", server="fx", vendor="foundry") == 0
    assert v("nomade_license_checkouts", server="fx", feature="houdini", user="alice") == 3
    assert v("nomade_license_expiry_timestamp_seconds", server="fx", vendor="sidefx", feature="houdini",
             version="20.0") == calendar.timegm((2024, 12, 31, 0, 0, 0))  # fmt: skip
    assert col.parse_errors == 0


def test_rlm_captured_foundry():
    server = {"name": "foundry", "type": "rlm", "address": "4101@RLM-SERVER.domain.domain"}
    s = parse_servers([server])[0]
    text = shared_file("rlmstat", "rlmexp-rlmutil-rlmstat-a-foundry-v12.2-windows.txt").read_text()
    _, out, _ = collect([server], {rlm_argv(s): text})
    v = out.value
    assert v("nomade_license_issued", server="foundry", vendor="foundry", feature="nuke_i") == 1 + 22 + 4
    assert v("nomade_license_used", server="foundry", vendor="foundry", feature="nuke_i") == 4
    # nuke_r v2024.0701 has a permanent pool and one expiring on 1-apr-2024, after NOW: the next expiry wins
    assert v("nomade_license_expiry_timestamp_seconds", server="foundry", vendor="foundry", feature="nuke_r",
             version="2024.0701") == calendar.timegm((2024, 4, 1, 0, 0, 0))  # fmt: skip


def test_rlm_unreachable_marks_configured_host_down():
    s = parse_servers([RLM])[0]
    _, out, _ = collect([RLM], {rlm_argv(s): own_fixture("rlmstat", "rlmstat-a-unreachable.txt")})
    assert out.value("nomade_license_server_up", server="fx", host="rlmhost", role="unknown") == 0


def test_one_failing_server_does_not_fail_the_collector_but_all_failing_does(caplog):
    s_eda = parse_servers([EDA])[0]
    outputs = eda_outputs()
    outputs[rlm_argv(parse_servers([RLM])[0])] = CommandError(("rlmutil",), "timeout", "")
    col, runner = make([EDA, RLM], outputs)
    out = col.new_set()
    col.collect(out)
    assert out.value("nomade_license_query_success", server="fx") == 0
    assert out.value("nomade_license_query_success", server="eda") == 1
    # logged once, not at every scrape
    col.collect(col.new_set())
    assert sum("license server fx" in r.getMessage() for r in caplog.records) == 1
    del outputs[flexlm_argv(s_eda, "-a")]
    with pytest.raises(CollectorError):
        col.collect(col.new_set())


def test_no_servers_exports_nothing():
    col, out, runner = collect([], {})
    assert out.series_count() == 0 and runner.calls == []


@pytest.mark.parametrize(
    "servers",
    [
        {"name": "x"},
        [{"address": "1@h"}],
        [{"name": "x", "address": "nohost"}],
        [{"name": "x", "address": "1@h", "type": "lmx"}],
        [{"name": "x", "address": "1@h"}, {"name": "x", "address": "2@h"}],
        [{"name": "x", "address": "1@h", "features": "MATLAB"}],
        [{"name": "x", "address": "1@h", "bogus": 1}],
        [{"name": "x", "address": "1@h", "timeout": -1}],
    ],
)
def test_bad_configuration_is_refused(servers):
    with pytest.raises(ConfigError):
        parse_servers(servers)


def test_parse_servers_defaults():
    (s,) = parse_servers([{"name": "r", "type": "RLM", "address": "5053@h", "timeout": 5}])
    assert (s.type, s.tool, s.features, s.expiry, s.timeout) == ("rlm", "rlmutil", (), True, 5)
    assert s.wanted("anything")
