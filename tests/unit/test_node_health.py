"""node_health: EDAC/hwmon parsers on tests/fixtures/sys, the process scan on a fake /proc, the munge check."""

from __future__ import annotations

import logging

import pytest
from conftest import OWN_FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.collectors import node_health
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.node_health import NodeHealthCollector
from nomade.exporter.parsers.node_health import (
    parse_edac,
    parse_hwmon,
    parse_pid_stat,
    unmunge_succeeded,
)
from nomade.exporter.runner import CommandError, CommandResult, CommandRunner

SYS = OWN_FIXTURES / "sys"
NOW = 1.75e9

UNMUNGE_OK = """STATUS:          Success (0)
ENCODE_HOST:     c01 (10.1.0.21)
ENCODE_TIME:     2025-06-01 10:00:00 +0000 (1748772000)
DECODE_TIME:     2025-06-01 10:00:00 +0000 (1748772000)
TTL:             300
CIPHER:          aes128 (4)
MAC:             sha256 (5)
ZIP:             none (0)
UID:             root (0)
GID:             root (0)
LENGTH:          0

"""


def fake_proc(tmp_path, procs: dict[int, str]):
    root = tmp_path / "proc"
    root.mkdir()
    for pid, stat in procs.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_text(stat + "\n")
    (root / "self").mkdir()  # non-numeric entries are not processes
    return root


PROCS = {
    1: "1 (systemd) S 0 1 1 0 -1 4194560 5000 0 0 0 10 20 0 0 20 0 1 0 3 1000 2000",
    410: "410 (munged) S 1 409 409 0 -1 4194368 471 0 0 0 22 28 0 0 20 0 4 0 500",
    800: "800 (slurmd) S 1 800 800 0 -1 4194560 900 0 0 0 5 5 0 0 20 0 1 0 600",
    801: "801 (slurmd) S 1 801 801 0 -1 4194560 900 0 0 0 5 5 0 0 20 0 1 0 601",
    900: "900 (slurmd) Z 800 800 800 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 700",  # zombie child
    950: "950 (my (odd) prog) R 1 950 950 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 800",
    960: "garbage",
}


class MungeRunner(CommandRunner):
    def __init__(self, ok: bool = True, fail: bool = False):
        super().__init__()
        self.ok, self.fail = ok, fail
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, *, timeout=None, ttl=None):
        key = tuple(argv)
        self.calls.append(key)
        assert ttl == 0  # a munge credential must never be served from the cache
        if self.fail:
            raise CommandError(key, "exit", "munge: Error: Unable to access /run/munge/munge.socket.2")
        if key == ("munge", "-n"):
            return CommandResult(key, "MUNGE:AwQFAAD...:\n", "", 0.01, NOW)
        assert key[:2] == ("unmunge", "--input")
        with open(key[2]) as f:
            assert f.read().startswith("MUNGE:")
        out = UNMUNGE_OK if self.ok else "STATUS:          Replayed credential (15)\n"
        return CommandResult(key, out, "", 0.01, NOW)


def make(proc, sys_root=SYS, runner=None, clock=lambda: NOW, **opts):
    ctx = CollectorContext(
        runner=runner or CommandRunner(), options=opts, proc_root=proc, sys_root=sys_root, clock=clock
    )
    return NodeHealthCollector(ctx)


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


def test_module_exposes_collector():
    assert node_health.COLLECTOR is NodeHealthCollector
    assert NodeHealthCollector.name == "node_health" and NodeHealthCollector.mode == "node"
    assert NodeHealthCollector.available() is True


def test_edac_counters(tmp_path):
    out = collect(make(fake_proc(tmp_path, PROCS)))
    v = out.value
    assert v("nomade_node_health_source_available", source="edac") == 1
    assert v("nomade_node_health_edac_correctable_errors_total", controller="mc0") == 5
    assert v("nomade_node_health_edac_uncorrectable_errors_total", controller="mc1") == 1
    assert v("nomade_node_health_edac_controller_info", controller="mc0", mc_name="Skylake Socket#0 IMC#0") == 1
    dimm0 = {"controller": "mc0", "dimm": "dimm0", "label": "CPU_SrcID#0_MC#0_Chan#0_DIMM#0"}
    assert v("nomade_node_health_edac_dimm_correctable_errors_total", **dimm0) == 3
    assert v("nomade_node_health_edac_dimm_uncorrectable_errors_total", **dimm0) == 0
    units = sorted(k[:2] for k in out.samples("nomade_node_health_edac_dimm_correctable_errors_total"))
    # mc0 has the DIMM view, so its legacy csrow0 is not reported twice; mc1 only has csrows.
    assert units == [("mc0", "dimm0"), ("mc0", "dimm1"), ("mc1", "csrow0"), ("mc1", "csrow1")]
    assert v("nomade_node_health_edac_dimm_uncorrectable_errors_total", controller="mc1", dimm="csrow0", label="") == 1


def test_edac_per_dimm_off(tmp_path):
    out = collect(make(fake_proc(tmp_path, PROCS), edac_per_dimm=False))
    assert out.samples("nomade_node_health_edac_dimm_correctable_errors_total") == {}
    assert out.value("nomade_node_health_edac_correctable_errors_total", controller="mc0") == 5


def test_temperatures(tmp_path):
    c = make(fake_proc(tmp_path, PROCS))
    out = collect(c)
    v = out.value
    pkg0 = {"chip": "coretemp", "device": "coretemp.0", "sensor": "temp1", "label": "Package id 0"}
    assert v("nomade_node_health_temperature_celsius", **pkg0) == 52.0
    assert v("nomade_node_health_temperature_max_celsius", **pkg0) == 84.0
    assert v("nomade_node_health_temperature_critical_celsius", **pkg0) == 100.0
    pkg1 = {"chip": "coretemp", "device": "coretemp.1", "sensor": "temp1", "label": "Package id 1"}
    assert v("nomade_node_health_temperature_celsius", **pkg1) == 55.0
    nvme = {"chip": "nvme", "device": "nvme0", "sensor": "temp1", "label": "Composite"}
    assert v("nomade_node_health_temperature_celsius", **nvme) == pytest.approx(38.85)
    assert v("nomade_node_health_temperature_critical_celsius", **nvme) == pytest.approx(84.85)
    acpi = {"chip": "acpitz", "device": "hwmon3", "sensor": "temp1", "label": ""}  # no device link
    assert v("nomade_node_health_temperature_celsius", **acpi) == pytest.approx(27.8)
    assert v("nomade_node_health_temperature_max_celsius", **acpi) is None
    # Old driver layout (attributes under hwmon4/device/); its unreadable temp2 is absent, not 0.
    it = {"chip": "it8721", "device": "hwmon4", "sensor": "temp1", "label": ""}
    assert v("nomade_node_health_temperature_celsius", **it) == 40.0
    assert v("nomade_node_health_temperature_celsius", chip="it8721", device="hwmon4", sensor="temp2", label="") is None
    assert len(out.samples("nomade_node_health_temperature_celsius")) == 8
    assert c.parse_errors == 2  # hwmon4 temp2_input "not-a-number" + the garbage /proc/960/stat


def test_services_and_last_seen(tmp_path):
    proc = fake_proc(tmp_path, PROCS)
    clock = [NOW]
    c = make(proc, clock=lambda: clock[0], services=["slurmd", "munged", "slurmctld"])
    out = collect(c)
    v = out.value
    assert v("nomade_node_health_service_processes", service="slurmd") == 2  # the zombie does not count
    assert v("nomade_node_health_service_up", service="slurmd") == 1
    assert v("nomade_node_health_service_up", service="slurmctld") == 0
    assert v("nomade_node_health_service_last_seen_timestamp_seconds", service="munged") == NOW
    assert v("nomade_node_health_service_last_seen_timestamp_seconds", service="slurmctld") is None
    # slurmd dies: up 0, last seen stays at the last good scrape.
    for pid in (800, 801):
        (proc / str(pid) / "stat").unlink()
    clock[0] = NOW + 30
    out = collect(c)
    assert out.value("nomade_node_health_service_up", service="slurmd") == 0
    assert out.value("nomade_node_health_service_last_seen_timestamp_seconds", service="slurmd") == NOW
    assert out.value("nomade_node_health_service_last_seen_timestamp_seconds", service="munged") == NOW + 30


def test_long_service_name_matches_truncated_comm(tmp_path):
    proc = fake_proc(tmp_path, {5: "5 (nvidia-persiste) S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9"})
    out = collect(make(proc, services=["nvidia-persistenced"]))
    assert out.value("nomade_node_health_service_up", service="nvidia-persistenced") == 1


def test_missing_hardware_is_not_a_failure(tmp_path, caplog):
    c = make(fake_proc(tmp_path, PROCS), sys_root=tmp_path / "emptysys")
    with caplog.at_level(logging.INFO, logger="nomade.exporter.node_health"):
        out = collect(c)
        collect(c)
    assert out.value("nomade_node_health_source_available", source="edac") == 0
    assert out.value("nomade_node_health_source_available", source="hwmon") == 0
    assert out.samples("nomade_node_health_temperature_celsius") == {}
    assert out.value("nomade_node_health_service_up", service="munged") == 1
    assert sum("no edac" in r.message for r in caplog.records) == 1


def test_unreadable_proc_is_a_source_failure(tmp_path):
    with pytest.raises(CollectorError):
        collect(make(tmp_path / "noproc"))


def test_munge_roundtrip(tmp_path):
    runner = MungeRunner()
    c = make(fake_proc(tmp_path, PROCS), runner=runner, check_munge=True)
    out = collect(c)
    assert out.value("nomade_node_health_munge_roundtrip_up") == 1
    assert out.value("nomade_node_health_service_up", service="munged") == 1
    assert runner.calls[0] == ("munge", "-n") and runner.calls[1][:2] == ("unmunge", "--input")
    collect(c)
    assert len(runner.calls) == 2  # reused within check_interval


@pytest.mark.parametrize("runner", [MungeRunner(ok=False), MungeRunner(fail=True)], ids=["replayed", "no-socket"])
def test_munge_roundtrip_failure_marks_munged_down(tmp_path, runner):
    c = make(fake_proc(tmp_path, PROCS), runner=runner, check_munge=True)
    out = collect(c)
    assert out.value("nomade_node_health_munge_roundtrip_up") == 0
    assert out.value("nomade_node_health_service_processes", service="munged") == 1
    assert out.value("nomade_node_health_service_up", service="munged") == 0
    assert out.value("nomade_node_health_service_last_seen_timestamp_seconds", service="munged") is None


def test_bad_services_option(tmp_path):
    with pytest.raises(ValueError):
        make(tmp_path, services="slurmd")


# ------------------------------------------------------------------------------------------------ parsers


def test_parse_pid_stat():
    assert parse_pid_stat("42 (a) b) c) S 1 2").comm == "a) b) c"
    st = parse_pid_stat("900 (slurmd) Z 800 800")
    assert (st.pid, st.comm, st.state, st.alive) == (900, "slurmd", "Z", False)
    assert parse_pid_stat("x (slurmd) S") is None
    assert parse_pid_stat("12 slurmd S") is None
    assert parse_pid_stat("12 (slurmd)") is None


def test_unmunge_status():
    assert unmunge_succeeded(UNMUNGE_OK)
    assert not unmunge_succeeded("STATUS:          Expired credential (15)\n")
    assert not unmunge_succeeded("")


def test_parse_edac_bad_count_is_an_issue():
    r = parse_edac({"mc0/ce_count": "x\n", "mc0/ue_count": "2\n", "mc0/dimm0/dimm_ce_count": "-1"})
    assert len(r.issues) == 2
    assert [(e.controller, e.unit, e.correctable, e.uncorrectable) for e in r.records] == [("mc0", "", None, 2)]


def test_parse_hwmon_natural_order():
    files = {"hwmon10/temp1_input": "1000", "hwmon2/temp10_input": "2000", "hwmon2/temp2_input": "3000"}
    r = parse_hwmon(files)
    assert [(t.hwmon, t.sensor, t.celsius) for t in r.records] == [
        ("hwmon2", "temp2", 3.0),
        ("hwmon2", "temp10", 2.0),
        ("hwmon10", "temp1", 1.0),
    ]


PATHS = st.sampled_from(
    [
        "mc0/ce_count",
        "mc0/ue_count",
        "mc0/mc_name",
        "mc1/dimm0/dimm_ce_count",
        "mc1/rank3/dimm_ue_count",
        "mc0/csrow0/ce_count",
        "mc0/dimm0/dimm_label",
        "hwmon0/name",
        "hwmon0/temp1_input",
        "hwmon1/temp7_crit",
        "hwmon1/temp7_label",
        "junk",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(PATHS, st.text(max_size=20)), st.text(max_size=200))
def test_parsers_never_raise(files, text):
    for e in parse_edac(files).records:
        assert e.correctable is None or e.correctable >= 0
    parse_hwmon(files, {"hwmon0": text})
    parse_pid_stat(text)
    unmunge_succeeded(text)
