"""reachability collector and slurm.conf parser. Probes go to 127.0.0.1 only: a listening socket of the test and
a port that was just closed; DNS is replaced by fake resolvers."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.collectors import reachability
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.reachability import ReachabilityCollector, Target, parse_targets, probe_tcp
from nomade.exporter.parsers.slurm_conf import Endpoint, parse_slurm_conf, slurm_endpoints
from nomade.exporter.runner import CommandRunner

SLURM_CONF = """\
# slurm.conf of a two-controller site
ClusterName=hpc
SlurmctldHost=ctl1(10.0.0.1)
SlurmctldHost=ctl2
slurmctldport=6817-6818   # a port range: the first port is probed
AuthType=auth/munge
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost="dbd1"
AccountingStorageBackupHost=dbd2
AccountingStoragePort=7031
NodeName=DEFAULT CPUs=64 RealMemory=256000 \\
    State=UNKNOWN
NodeName=c[001-100] NodeAddr=10.1.0.[1-100]
PartitionName=batch Nodes=c[001-100] Default=YES
Include /etc/slurm/nodes.conf
this line is garbage
"""


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # never listened: connecting is refused
    return port


def fake_dns(table: dict[str, str]):
    def resolve(host, port, family=0, type_=0, *args):
        if host == "127.0.0.1":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return resolve


def make(resolve=None, **opts):
    ctx = CollectorContext(runner=CommandRunner(), options=opts, clock=lambda: 1.7e9)
    return ReachabilityCollector(ctx, resolve=resolve or socket.getaddrinfo)


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


def test_module_exposes_collector():
    assert reachability.COLLECTOR is ReachabilityCollector
    assert ReachabilityCollector.mode == "controller" and ReachabilityCollector.default_enabled is False


def test_probe_open_and_closed_ports(listener, closed_port):
    up = probe_tcp("127.0.0.1", listener, 2.0)
    assert up.up and up.reason == "" and up.resolved == "127.0.0.1"
    assert 0 <= up.connect_seconds < 1 and up.dns_seconds is not None
    assert up.duration_seconds >= up.connect_seconds
    down = probe_tcp("127.0.0.1", closed_port, 2.0)
    assert (down.up, down.reason, down.connect_seconds) == (False, "refused", None)


def test_probe_dns_failure_and_fallback_to_second_address(listener, closed_port):
    r = probe_tcp("nowhere.invalid", 1, 1.0, resolve=fake_dns({}))
    assert (r.up, r.reason, r.dns_seconds) == (False, "dns", None)

    def two(host, port, *a):  # first address refuses, second one listens
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed_port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", listener)),
        ]

    assert probe_tcp("svc", 0, 2.0, resolve=two).up


def test_collector_round(listener, closed_port):
    c = make(
        fake_dns({"ctl.example": "127.0.0.1"}),
        targets=[
            {"name": "slurmctld", "host": "ctl.example", "port": listener},
            f"127.0.0.1:{closed_port}",
            "lic.example:27000",
        ],
    )
    out = collect(c)
    v = out.value
    ctl = {"target": "slurmctld", "address": f"ctl.example:{listener}"}
    closed = {"target": f"127.0.0.1:{closed_port}", "address": f"127.0.0.1:{closed_port}"}
    lic = {"target": "lic.example:27000", "address": "lic.example:27000"}
    assert v("nomade_reachability_targets") == 3
    assert v("nomade_reachability_probe_timestamp_seconds") == 1.7e9
    assert v("nomade_reachability_up", **ctl) == 1
    assert v("nomade_reachability_connect_seconds", **ctl) >= 0
    assert v("nomade_reachability_dns_lookup_seconds", **ctl) >= 0
    assert v("nomade_reachability_failure_info", **ctl, reason="refused") is None
    assert v("nomade_reachability_up", **closed) == 0
    assert v("nomade_reachability_connect_seconds", **closed) is None
    assert v("nomade_reachability_failure_info", **closed, reason="refused") == 1
    assert v("nomade_reachability_up", **lic) == 0
    assert v("nomade_reachability_failure_info", **lic, reason="dns") == 1
    assert v("nomade_reachability_dns_lookup_seconds", **lic) is None


def test_rounds_are_reused_within_interval(listener):
    calls = []

    def counting(host, port, *a):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", listener))]

    c = make(counting, targets=[f"svc:{listener}"], interval=60)
    collect(c)
    collect(c)
    assert calls == ["svc"]
    c0 = make(counting, targets=[f"svc:{listener}"], interval=0)
    collect(c0)
    collect(c0)
    assert calls == ["svc", "svc", "svc"]


def test_hung_resolver_is_cut_by_the_timeout(listener):
    def hung(host, port, *a):
        time.sleep(3)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", listener))]

    c = make(hung, targets=[f"slow:{listener}", f"127.0.0.1:{listener}"], timeout=0.2)
    c.resolve = hung
    t0 = time.monotonic()
    out = collect(c)
    assert time.monotonic() - t0 < 2.0
    assert out.value("nomade_reachability_up", target=f"slow:{listener}", address=f"slow:{listener}") == 0
    reason = {k[2] for k in out.samples("nomade_reachability_failure_info")}
    assert "timeout" in reason


def test_from_slurm_conf(tmp_path, listener):
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"SlurmctldHost=vm(127.0.0.1)\nSlurmctldPort={listener}\n")
    c = make(from_slurm_conf=True, slurm_conf=str(conf), targets=[f"127.0.0.1:{listener}"])
    out = collect(c)
    # The slurm.conf endpoint duplicates the explicit one: probed once, under the explicit name.
    assert out.value("nomade_reachability_targets") == 1
    assert out.value("nomade_reachability_up", target=f"127.0.0.1:{listener}", address=f"127.0.0.1:{listener}") == 1
    conf.write_text(f"SlurmctldHost=vm(127.0.0.1)\nSlurmctldPort={listener}\n")
    out = collect(make(from_slurm_conf=True, slurm_conf=str(conf)))
    assert out.value("nomade_reachability_up", target="slurmctld", address=f"127.0.0.1:{listener}") == 1


def test_unreadable_slurm_conf_is_a_source_failure(tmp_path):
    c = make(from_slurm_conf=True, slurm_conf=str(tmp_path / "missing.conf"))
    with pytest.raises(CollectorError):
        collect(c)


def test_no_targets_reports_zero():
    out = collect(make())
    assert out.value("nomade_reachability_targets") == 0
    assert out.samples("nomade_reachability_up") == {}


@pytest.mark.parametrize(
    "bad", [["nohost"], ["host:"], ["h:70000"], [{"host": "h"}], [{"host": "h", "port": "80"}], [42]]
)
def test_bad_targets_option(bad):
    with pytest.raises(ValueError):
        parse_targets(bad)


def test_parse_targets_forms():
    assert parse_targets(["[fd00::1]:6817", "h:1", {"host": "x", "port": 2}]) == [
        Target("[fd00::1]:6817", "fd00::1", 6817),
        Target("h:1", "h", 1),
        Target("x:2", "x", 2),
    ]
    assert Target("v6", "fd00::1", 6817).address == "[fd00::1]:6817"


# ------------------------------------------------------------------------------------------ slurm.conf


def test_slurm_conf_endpoints():
    r = parse_slurm_conf(SLURM_CONF)
    assert len(r.issues) == 1 and r.issues[0].line_no == 16
    keys = [p.key for p in r.records]
    assert "nodename" not in keys and "partitionname" not in keys and keys[0] == "clustername"
    e = slurm_endpoints(r.records)
    assert e.issues == []
    assert e.records == [
        Endpoint("slurmctld", "10.0.0.1", 6817),
        Endpoint("slurmctld-backup1", "ctl2", 6817),
        Endpoint("slurmdbd", "dbd1", 7031),
        Endpoint("slurmdbd-backup", "dbd2", 7031),
    ]


def test_slurm_conf_legacy_keys_and_defaults():
    text = "ControlMachine=head\nControlAddr=10.9.9.9\nBackupController=head2\n"
    text += "AccountingStorageType=accounting_storage/slurmdbd\n"
    assert slurm_endpoints(parse_slurm_conf(text).records).records == [
        Endpoint("slurmctld", "10.9.9.9", 6817),
        Endpoint("slurmctld-backup1", "head2", 6817),
        Endpoint("slurmdbd", "localhost", 6819),
    ]
    # No slurmdbd accounting: no slurmdbd endpoint; a bad port is an issue.
    e = slurm_endpoints(parse_slurm_conf("SlurmctldHost=a\nSlurmctldPort=x\nAccountingStorageType=none\n").records)
    assert e.records == [] and len(e.issues) == 1


def test_lab_style_slurm_conf():
    text = "SlurmctldHost=vm(127.0.0.1)\nSlurmctldPort=6817\nAccountingStorageType=accounting_storage/slurmdbd\n"
    text += "AccountingStorageHost=127.0.0.1\nAccountingStoragePort=6819\n"
    assert slurm_endpoints(parse_slurm_conf(text).records).records == [
        Endpoint("slurmctld", "127.0.0.1", 6817),
        Endpoint("slurmdbd", "127.0.0.1", 6819),
    ]


TOKENS = st.sampled_from(
    [
        "SlurmctldHost=",
        "a(b)",
        "(",
        ")",
        "SlurmctldPort=",
        "6817-",
        "99999",
        "AccountingStoragePort=",
        "\\\n",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "#",
        "\n",
        " ",
        "=",
        '"',
        "NodeName=x",
        "Include",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=40).map("".join)))
def test_slurm_conf_parser_never_raises(text):
    r = parse_slurm_conf(text)
    for e in slurm_endpoints(r.records).records:
        assert 0 < e.port < 65536 and e.host
