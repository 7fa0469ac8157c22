"""nvidia-smi parsers: captured outputs of other sites (../shared/fixtures/nvidia-smi) and our own fixtures."""

from __future__ import annotations

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers.nvidia_smi import (
    MIB,
    QUERY_GPU_FIELDS,
    THROTTLE_REASONS,
    DevicesList,
    is_absent,
    parse_compute_apps_csv,
    parse_devices_list,
    parse_dmon,
    parse_gpu_job_file,
    parse_id_list,
    parse_list,
    parse_quantity,
    parse_query_gpu_csv,
    parse_retired_pages_csv,
    parse_smi_text,
    parse_smi_xml,
)

TOOL = "nvidia-smi"


def parser_for(name: str):
    if name.endswith(".xml"):
        return parse_smi_xml
    if "query-gpu" in name:
        return parse_query_gpu_csv
    if "compute-apps" in name:
        return parse_compute_apps_csv
    if "retired-pages" in name:
        return parse_retired_pages_csv
    if "-L-" in name:
        return parse_list
    if "dmon" in name:
        return parse_dmon
    if "q-text" in name:
        return parse_smi_text
    raise AssertionError(f"no parser for {name}")


# ---------------------------------------------------------------------------------------------- sweeps


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files(TOOL), ids=lambda p: p.name)
def test_every_captured_file_parses_without_issue(path):
    result = parser_for(path.name)(path.read_text())
    assert result.issues == []
    assert result.records


@pytest.mark.fixtures
@pytest.mark.parametrize("path", [p for p in shared_files(TOOL) if p.suffix == ".xml"], ids=lambda p: p.name)
def test_captured_xml_values_are_sane(path):
    for i, g in enumerate(parse_smi_xml(path.read_text()).records):
        assert g.index == i
        assert g.uuid and g.uuid.startswith("GPU-")
        assert g.name
        assert all(0.0 <= v <= 1.0 for v in g.utilization.values())
        assert g.memory["total"] >= g.memory["used"]
        assert set(g.throttle_reasons) <= set(THROTTLE_REASONS)
        # absent beats wrong: no value is ever a marker turned into 0 by accident
        assert 0 < g.temperature["gpu"] < 120


# ---------------------------------------------------------------------------------------------- -q -x


@pytest.mark.fixtures
def test_xml_tesla_t4_v11():
    g = parse_smi_xml(shared_file(TOOL, "telegraf-nvsmi-q-x-tesla-t4-2procs-v11.xml").read_text()).records[0]
    assert (g.name, g.driver_version, g.pci_bus_id, g.minor_number) == (
        "Tesla T4",
        "515.105.01",
        "00000000:00:1E.0",
        0,
    )
    assert g.memory == {"total": 15360 * MIB, "reserved": 388 * MIB, "used": 1032 * MIB, "free": 13939 * MIB}
    assert g.temperature == {"gpu": 40.0}  # memory_temp N/A: absent, not 0
    assert g.temperature_thresholds == {"shutdown": 96.0, "slowdown": 93.0, "max_operating": 85.0}
    assert g.power == {"draw": 26.78}
    assert g.power_limits == {"requested": 70.0, "enforced": 70.0, "default": 70.0, "min": 60.0, "max": 70.0}
    assert g.clocks == {"graphics": 585e6, "sm": 585e6, "memory": 5000e6, "video": 810e6}
    assert g.max_clocks["graphics"] == 1590e6
    assert g.fan_speed_ratio is None  # "N/A"
    assert g.performance_state == 0
    assert g.pcie == {
        "link_gen_current": 3.0,
        "link_gen_max": 3.0,
        "link_width_current": 8.0,
        "link_width_max": 16.0,
        "replays": 0.0,
    }
    assert g.ecc_mode_enabled is True
    assert g.ecc_errors[("aggregate", "uncorrected", "dram")] == 0
    assert g.retired_pages == {"single_bit_ecc": 0.0, "double_bit_ecc": 0.0}
    assert g.retired_pages_pending is False
    assert g.remapped_rows == {} and g.remapped_rows_pending is None  # <remapped_rows>N/A</remapped_rows>
    assert [(p.pid, p.type, p.name, p.used_memory_bytes) for p in g.processes] == [
        (675, "G", "/usr/lib/xorg/Xorg", 22 * MIB),
        (5762, "C", "python", 1005 * MIB),
    ]


@pytest.mark.fixtures
def test_xml_dual_a5000_v13_index_is_document_order_not_minor():
    gpus = parse_smi_xml(shared_file(TOOL, "telegraf-nvsmi-q-x-dual-a5000-v13.xml").read_text()).records
    assert [(g.index, g.pci_bus_id, g.minor_number) for g in gpus] == [
        (0, "00000000:81:00.0", 1),
        (1, "00000000:C1:00.0", 0),
    ]
    g = gpus[0]
    assert g.power == {"draw": 6.41, "instant": 6.52}  # v13 gpu_power_readings average/instant
    assert g.power_limits["enforced"] == 230.0
    assert g.throttle_reasons["gpu_idle"] is True  # clocks_event_reasons (535+)
    assert g.throttle_seconds["sw_power_cap"] == pytest.approx(31637.354094)
    assert g.ecc_mode_enabled is False and g.ecc_errors == {}  # all N/A with ECC off
    assert g.temperature_thresholds["max_operating"] == 90.0


@pytest.mark.fixtures
def test_xml_minimal_v10_without_driver_version():
    g = parse_smi_xml(shared_file(TOOL, "telegraf-nvsmi-q-x-gtx1070ti-minimal-v10.xml").read_text()).records[0]
    assert g.driver_version is None and g.minor_number is None
    assert g.pci_bus_id == "00000000:01:00.0"  # from <gpu id=...>
    assert g.power == {}  # power_draw N/A
    assert g.fan_speed_ratio == 1.0
    assert g.processes is None  # no <processes> element: unknown, not zero


@pytest.mark.fixtures
def test_xml_blackwell_tlimit_thresholds_are_not_read_as_absolute():
    g = parse_smi_xml(shared_file(TOOL, "telegraf-nvsmi-q-x-rtx-pro6000-blackwell-v13.xml").read_text()).records[0]
    assert g.temperature_margin == 68.0
    assert g.temperature_thresholds == {}  # only T.Limit-relative thresholds (-5 C...) in this schema


def test_xml_a100_mig_own_fixture():
    gpus = parse_smi_xml(own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")).records
    mig, plain = gpus
    assert mig.mig_mode_enabled is True and plain.mig_mode_enabled is False
    assert "used" not in mig.memory and mig.utilization == {}  # N/A under MIG
    assert [(m.index, m.gpu_instance_id, m.compute_instance_id, m.multiprocessor_count) for m in mig.mig_devices] == [
        (0, 1, 0, 42),
        (1, 5, 0, 14),
    ]
    assert mig.mig_devices[0].memory_total_bytes == 19968 * MIB
    assert mig.mig_devices[0].memory_used_bytes == 5123 * MIB
    assert mig.processes[0].gpu_instance_id == 1 and mig.processes[0].compute_instance_id == 0
    assert mig.ecc_errors[("volatile", "corrected", "dram")] == 12
    assert mig.ecc_errors[("aggregate", "uncorrected", "dram")] == 1
    assert mig.remapped_rows == {"correctable": 2.0, "uncorrectable": 1.0} and mig.remapped_rows_pending is True
    active = {r for r, on in plain.throttle_reasons.items() if on}
    assert active == {"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown"}
    assert plain.processes[1].used_memory_bytes is None  # "Insufficient Permissions"
    assert plain.utilization["gpu"] == 0.87


def test_xml_old_ecc_layout_and_retired_pages():
    g = parse_smi_xml(own_fixture("nvidia-smi", "nvsmi-q-x-p100-old-ecc-v10-410.xml")).records[0]
    assert g.ecc_errors[("volatile", "corrected", "device_memory")] == 3
    assert g.ecc_errors[("aggregate", "corrected", "total")] == 118
    assert g.ecc_errors[("aggregate", "uncorrected", "total")] == 2
    assert ("volatile", "corrected", "l1_cache") not in g.ecc_errors  # N/A
    assert g.retired_pages == {"single_bit_ecc": 4.0, "double_bit_ecc": 2.0}
    assert g.retired_pages_pending is True
    assert g.throttle_reasons["applications_clocks_setting"] is True
    assert "hw_thermal_slowdown" not in g.throttle_reasons  # N/A
    assert g.processes[0].gpu_instance_id is None


def test_xml_refuses_entities_and_non_xml():
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><nvidia_smi_log>&b;</nvidia_smi_log>'
    )
    r = parse_smi_xml(bomb)
    assert r.records == [] and len(r.issues) == 1 and "refused" in r.issues[0].reason
    external = '<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><nvidia_smi_log>&xxe;</nvidia_smi_log>'
    r = parse_smi_xml(external)
    assert r.records == [] and len(r.issues) == 1  # undefined entity: expat error, nothing fetched
    assert len(parse_smi_xml("NVIDIA-SMI has failed").issues) == 1
    assert len(parse_smi_xml("<other/>").issues) == 1


def test_xml_unreadable_value_is_an_issue_not_a_zero():
    text = own_fixture("nvidia-smi", "nvsmi-q-x-p100-old-ecc-v10-410.xml").replace("71 C", "hot")
    r = parse_smi_xml(text)
    assert len(r.issues) == 1 and "temperature" in r.issues[0].reason
    assert "gpu" not in r.records[0].temperature


# ---------------------------------------------------------------------------------------------- -q text


@pytest.mark.fixtures
def test_text_h100_mig():
    g = parse_smi_text(shared_file(TOOL, "ngx-q-text-h100-mig-590.48-load.txt").read_text()).records[0]
    assert (g.name, g.driver_version, g.pci_bus_id, g.minor_number) == (
        "NVIDIA H100 80GB HBM3",
        "590.48.01",
        "00000000:00:09.0",
        0,
    )
    assert g.mig_mode_enabled is True
    assert [(m.gpu_instance_id, m.multiprocessor_count, m.memory_used_bytes) for m in g.mig_devices] == [
        (2, 60, 11091 * MIB),
        (3, 32, 17 * MIB),
        (9, 16, 9 * MIB),
        (10, 16, 9 * MIB),
    ]
    assert g.utilization == {}  # all N/A under MIG
    assert g.power == {"draw": 432.21, "instant": 444.72}
    assert g.temperature == {"gpu": 53.0, "memory": 58.0} and g.temperature_margin == 24.0
    assert g.pcie["replays"] == 9
    assert g.throttle_reasons["hw_power_brake_slowdown"] is False  # nested under "HW Slowdown"
    assert len(g.throttle_reasons) == len(THROTTLE_REASONS)
    assert g.ecc_errors[("volatile", "uncorrected", "sram_secded")] == 0
    assert [(p.pid, p.gpu_instance_id, p.name, p.used_memory_bytes) for p in g.processes] == [
        (21180, 2, "/root/tools/memhog", 2296 * MIB),
        (21181, 2, "/root/tools/memhog", 1272 * MIB),
        (21198, 2, "./gpu_burn", 7484 * MIB),
    ]


def test_text_old_driver_labels():
    g = parse_smi_text(own_fixture("nvidia-smi", "nvsmi-q-text-v100-470.txt")).records[0]
    assert g.utilization["gpu"] == 0.96  # "Gpu" before ~510
    assert g.ecc_mode_enabled is True  # "Ecc Mode"
    assert g.ecc_errors[("aggregate", "corrected", "device_memory")] == 14
    assert g.power == {"draw": 271.44} and g.power_limits["enforced"] == 300.0
    assert g.temperature_thresholds == {
        "shutdown": 90.0,
        "slowdown": 87.0,
        "max_operating": 83.0,
        "memory_max_operating": 85.0,
    }
    assert g.throttle_reasons["sw_power_cap"] is True
    assert [p.pid for p in g.processes] == [91234, 91240]
    assert g.minor_number == 3


def test_text_without_gpu_section_is_one_issue():
    r = parse_smi_text("No devices were found\n")
    assert r.records == [] and len(r.issues) == 1


# ---------------------------------------------------------------------------------------------- CSV


@pytest.mark.fixtures
def test_query_gpu_csv_h200_with_units():
    g = parse_query_gpu_csv(shared_file(TOOL, "ngx-query-gpu-csv-h200-590.48-load-all-fields.csv").read_text()).records[
        0
    ]
    assert (g.index, g.name, g.pci_bus_id) == (0, "NVIDIA H200", "00000000:83:00.0")
    assert g.memory == {"total": 143771 * MIB, "used": 32362 * MIB, "free": 110796 * MIB, "reserved": 614 * MIB}
    assert g.utilization["gpu"] == 1.0 and g.utilization["memory"] == pytest.approx(0.07)
    assert g.power == {"draw": 627.40, "instant": 626.26}
    assert g.power_limits == {"requested": 700.0, "enforced": 700.0, "default": 700.0, "min": 200.0, "max": 700.0}
    assert g.clocks["memory"] == 3201e6 and "video" not in g.max_clocks
    assert g.temperature == {"gpu": 52.0, "memory": 40.0} and g.temperature_margin == 35.0
    assert g.fan_speed_ratio is None  # [N/A]
    assert g.ecc_errors[("aggregate", "uncorrected", "total")] == 0
    assert ("volatile", "corrected", "l1_cache") not in g.ecc_errors  # [N/A]
    assert g.retired_pages == {}  # [N/A] on Hopper (row remapping instead)
    assert g.remapped_rows == {"correctable": 0.0, "uncorrectable": 0.0} and g.remapped_rows_failure is False
    assert g.mig_mode_enabled is False
    assert g.processes is None


@pytest.mark.fixtures
def test_query_gpu_csv_windows_and_l40s():
    win = parse_query_gpu_csv(
        shared_file(TOOL, "ngx-query-gpu-csv-rtx2080s-windows-wddm-610.62-load.csv").read_text()
    ).records[0]
    assert win.fan_speed_ratio == pytest.approx(0.38) and win.performance_state == 2
    assert win.utilization["encoder"] == pytest.approx(0.99)
    assert win.ecc_errors == {} and win.ecc_mode_enabled is None
    l40s = parse_query_gpu_csv(shared_file(TOOL, "ngx-query-gpu-csv-l40s-595.80-idle-all-fields.csv").read_text())
    g = l40s.records[0]
    assert g.throttle_seconds["sw_power_cap"] == pytest.approx(200.740215)
    assert "memory" not in g.temperature  # "N/A" without brackets


def test_query_gpu_csv_own_nounits_fixture():
    r = parse_query_gpu_csv(own_fixture("nvidia-smi", "query-gpu-nounits-v100-470.csv"))
    assert r.issues == []
    g0, g1 = r.records
    assert [
        h.strip().split(" ")[0]
        for h in own_fixture("nvidia-smi", "query-gpu-nounits-v100-470.csv").splitlines()[0].split(",")
    ] == list(QUERY_GPU_FIELDS)
    assert g0.memory["used"] == 28417 * MIB and g0.utilization["gpu"] == 0.96
    assert g0.throttle_reasons["sw_power_cap"] is True  # clocks_throttle_reasons.* (pre-535 name)
    assert g0.clocks["memory"] == 877e6
    assert g0.ecc_errors[("aggregate", "corrected", "total")] == 14
    assert ("volatile", "corrected", "total") not in g1.ecc_errors  # [Unknown Error]
    assert g1.retired_pages == {"single_bit_ecc": 1.0, "double_bit_ecc": 0.0} and g1.retired_pages_pending is True
    assert g1.mig_mode_enabled is None


def test_query_gpu_csv_noheader_with_field_list():
    text = "0, 30, 4096\n1, [N/A], 8192\n"
    r = parse_query_gpu_csv(text, fields=("index", "utilization.gpu", "memory.total"))
    assert r.issues == []
    # no header units: the field's own unit applies (percent, MiB)
    assert [(g.index, g.utilization.get("gpu"), g.memory["total"]) for g in r.records] == [
        (0, 0.30, 4096 * MIB),
        (1, None, 8192 * MIB),
    ]


def test_query_gpu_csv_bad_lines_are_issues():
    text = "index, memory.used [MiB]\n0, 12\n1\nx, 5\n2, lots\n"
    r = parse_query_gpu_csv(text)
    assert [g.index for g in r.records] == [0, 2]
    assert "used" not in r.records[1].memory
    assert len(r.issues) == 4  # wrong field count; unreadable index + no index; unreadable memory


@pytest.mark.fixtures
def test_compute_apps_and_retired_pages():
    apps = parse_compute_apps_csv(shared_file(TOOL, "ngx-query-compute-apps-csv-h100-mig-590.48-load.csv").read_text())
    assert [(p.pid, p.name, p.used_memory_bytes) for p in apps.records] == [
        (21180, "/root/tools/memhog", 2296 * MIB),
        (21181, "/root/tools/memhog", 1272 * MIB),
        (21198, "./gpu_burn", 7484 * MIB),
    ]
    assert apps.records[0].gpu_uuid == "GPU-00000000-0000-0000-0000-000000000000"
    pages = parse_retired_pages_csv(shared_file(TOOL, "ngx-query-retired-pages-csv-h100-590.48.csv").read_text())
    assert [(p.cause, p.address, p.timestamp) for p in pages.records] == [
        ("single_bit_ecc", None, None),
        ("double_bit_ecc", None, None),
    ]


def test_compute_apps_none_running_and_own_fixture():
    assert parse_compute_apps_csv("No running processes found\n").records == []
    r = parse_compute_apps_csv(own_fixture("nvidia-smi", "query-compute-apps-nounits-v100-470.csv"))
    assert [(p.pid, p.used_memory_bytes) for p in r.records] == [(91234, 28400 * MIB), (91240, None)]


# ---------------------------------------------------------------------------------------------- -L, dmon


@pytest.mark.fixtures
def test_list():
    r = parse_list(shared_file(TOOL, "ngx-L-rtx4080s-595.71.txt").read_text())
    assert [(e.index, e.name, e.uuid) for e in r.records] == [
        (0, "NVIDIA GeForce RTX 4080 SUPER", "GPU-00000000-0000-0000-0000-000000000000")
    ]


def test_list_with_mig_lines():
    text = (
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5e4a1c2b-0d3f-4e5a-8b6c-7d8e9f0a1b2c)\n"
        "  MIG 3g.20gb     Device  0: (UUID: MIG-1a2b3c4d-0000-5e6f-7a8b-9c0d1e2f3a4b)\n"
        "  MIG 1g.5gb      Device  1: (UUID: MIG-2b3c4d5e-0000-6f7a-8b9c-0d1e2f3a4b5c)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-6f5b2d3c-1e4a-4f6b-9c7d-8e9f0a1b2c3d)\n"
        "garbage\n"
    )
    r = parse_list(text)
    assert [e.index for e in r.records] == [0, 1]
    assert r.records[0].mig == [
        ("3g.20gb", 0, "MIG-1a2b3c4d-0000-5e6f-7a8b-9c0d1e2f3a4b"),
        ("1g.5gb", 1, "MIG-2b3c4d5e-0000-6f7a-8b9c-0d1e2f3a4b5c"),
    ]
    assert len(r.issues) == 1


@pytest.mark.fixtures
def test_dmon():
    r = parse_dmon(shared_file(TOOL, "ngx-dmon-c5-h100-mig-590.48-load.txt").read_text())
    assert len(r.records) == 5
    first = r.records[0]
    assert first.gpu == 0
    assert first.values == {"pwr": 438.0, "gtemp": 55.0, "mtemp": 61.0, "mclk": 2619e6, "pclk": 1980e6}  # "-": absent
    assert first.units["pwr"] == "W"


# ---------------------------------------------------------------------------------------------- job mapping


def test_devices_list():
    text = "c 136:* rwm\nc 195:2 rwm\nc 195:0 rw\nc 195:255 rwm\nc 195:254 rwm\nc 241:0 rwm\nb 8:0 r\n"
    assert parse_devices_list(text).records == [DevicesList(False, (0, 2))]
    assert parse_devices_list("a *:* rwm\n").records == [DevicesList(True, ())]
    r = parse_devices_list("c 195:x rwm\n")
    assert r.records == [DevicesList(False, ())] and len(r.issues) == 1


def test_gpu_job_file():
    r = parse_gpu_job_file("# nomade prolog\ngpus=0,2-3\nuser=alice\nnode=gpu01\n")
    assert (r.records[0].gpu_ids, r.records[0].user) == ((0, 2, 3), "alice")
    assert parse_gpu_job_file("1\n").records[0].gpu_ids == (1,)
    assert parse_gpu_job_file("gpus=\n").records[0].gpu_ids == ()  # job without GPUs
    bad = parse_gpu_job_file("gpus=a,b\n")
    assert bad.records == [] and len(bad.issues) == 1
    empty = parse_gpu_job_file("user=bob\n")
    assert empty.records == [] and len(empty.issues) == 1


def test_id_list_and_values():
    assert parse_id_list("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(ValueError):
        parse_id_list("3-1")
    assert is_absent("[Not Supported]") and is_absent("N/A") and is_absent(" [N/A] ") and not is_absent("0")
    assert parse_quantity("627.40 W") == 627.40
    assert parse_quantity("16x") == 16.0
    assert parse_quantity("12", 0.01) == 0.12
    with pytest.raises(ValueError):
        parse_quantity("12 furlongs")


# ---------------------------------------------------------------------------------------------- property tests

TOKENS = st.sampled_from(
    [
        "<nvidia_smi_log>",
        "</nvidia_smi_log>",
        "<gpu>",
        "</gpu>",
        "<fb_memory_usage><total>",
        "</total></fb_memory_usage>",
        "<ecc_errors><volatile><single_bit><total>",
        "</total></single_bit></volatile></ecc_errors>",
        "<processes><process_info><pid>",
        "</pid></process_info></processes>",
        "<mig_devices><mig_device><index>",
        "</index></mig_device></mig_devices>",
        "GPU 00000000:01:00.0\n",
        "    FB Memory Usage\n",
        "        Total : ",
        "    Processes\n",
        "        Process ID : ",
        "index, memory.used [MiB], utilization.gpu [%]\n",
        "# gpu pwr sm\n",
        "# Idx W %\n",
        "gpus=",
        "c 195:",
        "a *:* rwm",
        ", ",
        "\n",
        " ",
        "12 MiB",
        "[N/A]",
        "N/A",
        "-",
        "0x1F",
        "P0",
        "Active",
        "99999999999999999999",
        "-5",
        "1e9",
        "\ufffd",
        "&amp;",
        "<!ENTITY",
        "]",
    ]
)
TEXT = st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=60).map("".join))
PARSERS = [
    parse_smi_xml,
    parse_smi_text,
    parse_query_gpu_csv,
    parse_compute_apps_csv,
    parse_retired_pages_csv,
    parse_list,
    parse_dmon,
    parse_devices_list,
    parse_gpu_job_file,
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda f: f.__name__)
@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_no_exception_escapes(parser, text):
    result = parser(text)
    assert isinstance(result.records, list) and isinstance(result.issues, list)


A100_XML = own_fixture("nvidia-smi", "nvsmi-q-x-a100-mig-v12-535.xml")


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(A100_XML)))
def test_truncated_xml_is_one_issue(cut):
    r = parse_smi_xml(A100_XML[:cut])
    if cut < len(A100_XML.rstrip()):
        assert r.records == [] and len(r.issues) == 1
    else:
        assert len(r.records) == 2 and r.issues == []
