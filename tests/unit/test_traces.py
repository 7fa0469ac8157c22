import gzip
import math
from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import OWN_FIXTURES, SHARED
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.analytics.traces import (
    JOB_COLUMNS,
    load_deucalion_json,
    load_eagle_csv,
    load_sacct_dump,
    load_swf,
    load_trace,
    summarize,
)

FIX = OWN_FIXTURES / "traces"
EPOCH = 781275672.0  # "; UnixStartTime: 781275672" in tiny.swf
GiB = 1024**3
MiB = 1024**2


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _by_id(df: pd.DataFrame) -> dict[str, dict]:
    return {r["job_id"]: r for r in df.to_dict("records")}


def _check_schema(df: pd.DataFrame, dataset: str) -> None:
    assert tuple(df.columns) == JOB_COLUMNS
    assert (df["dataset"] == dataset).all()
    assert df["failed"].dtype == bool
    assert (df["failed"] == (df["failure_class"] != "success")).all()
    for c in ("submit_time", "req_cpus", "req_mem_bytes", "timelimit_s", "max_rss_bytes", "exit_code"):
        assert df[c].dtype == float, c


# ------------------------------------------------------------------------------------------------- sacct


def test_sacct_dump_steps_folded_and_classes():
    df = load_sacct_dump(FIX / "sacct_header_steps.txt", dataset="lab")
    _check_schema(df, "lab")
    assert list(df["job_id"]) == ["501", "502", "503", "504", "505"]  # RUNNING 506 dropped
    assert df.attrs["dropped"] == {"non_terminal": 1}
    assert df.attrs["parse_issues"] == 0
    j = _by_id(df)
    # MaxRSS: max over steps .batch 512000K and .0 3G; the allocation line has none.
    assert j["501"]["max_rss_bytes"] == 3 * GiB
    assert j["501"]["req_mem_bytes"] == 8 * GiB
    assert j["501"]["cpu_s"] == 38 * 60
    assert j["501"]["req_gpus"] == 0.0
    assert j["501"]["timelimit_s"] == 3600.0
    assert j["501"]["end_time"] - j["501"]["start_time"] == 600.0
    assert j["501"]["failure_class"] == "success" and not j["501"]["failed"]
    assert j["502"]["failure_class"] == "out_of_memory"
    assert j["502"]["max_rss_bytes"] == 4000 * MiB
    assert j["503"]["failure_class"] == "segfault"  # FAILED 0:11
    assert j["503"]["req_gpus"] == 2.0
    assert math.isnan(j["503"]["timelimit_s"])  # UNLIMITED
    assert j["504"]["failure_class"] == "cancelled" and j["504"]["failed"]
    assert j["504"]["state"] == "CANCELLED"
    assert math.isnan(j["504"]["start_time"])
    assert j["505"]["failure_class"] == "timeout"


def test_sacct_dump_any_field_order_and_text_input():
    text = (FIX / "sacct_header_steps.txt").read_text()
    lines = text.splitlines()
    cols = [c.split("|") for c in lines]
    order = list(reversed(range(len(cols[0]))))
    shuffled = "\n".join("|".join(row[i] for i in order) for row in cols)
    a = load_sacct_dump(text)
    b = load_sacct_dump(shuffled)
    pd.testing.assert_frame_equal(a, b)
    assert a["dataset"].iat[0] == "sacct"


def test_sacct_dump_collector_layout_without_header():
    df = load_trace(OWN_FIXTURES / "sacct" / "lab-22.05-exact-command.txt")
    assert df["dataset"].iat[0] == "lab-22.05-exact-command"
    j = _by_id(df)
    assert j["9"]["failure_class"] == "out_of_memory"
    assert j["1"]["failure_class"] == "node_fail"


# --------------------------------------------------------------------------------------------------- SWF


@pytest.mark.parametrize("name", ["tiny.swf", "tiny.swf.gz"])
def test_swf_epoch_status_and_units(name):
    df = load_swf(FIX / name)
    _check_schema(df, "tiny")
    assert list(df["job_id"]) == ["1", "2", "3", "6"]
    assert df.attrs["dropped"] == {"status_partial": 1, "status_unknown": 1}
    assert df.attrs["parse_issues"] == 1  # the garbage line
    j = _by_id(df)
    one = j["1"]
    assert one["submit_time"] == EPOCH
    assert one["start_time"] == EPOCH + 10
    assert one["end_time"] == EPOCH + 110
    assert one["elapsed_s"] == 100
    assert one["cpu_s"] == 90.5 * 32
    assert one["max_rss_bytes"] == 1024 * 1024 * 32  # per processor x allocated processors
    assert one["req_mem_bytes"] == 2048 * 1024 * 32
    assert one["req_cpus"] == 32 and one["timelimit_s"] == 3600
    assert one["user"] == "7" and one["account"] == "3" and one["job_name"] == "12"
    assert one["partition"] == "production"  # queue 2 named in the header; partition -1
    assert (one["state"], one["failure_class"], one["failed"]) == ("COMPLETED", "success", False)
    two = j["2"]
    assert two["submit_time"] == EPOCH + 60
    assert math.isnan(two["start_time"]) and math.isnan(two["req_cpus"]) and math.isnan(two["cpu_s"])
    assert (two["state"], two["failure_class"], two["failed"]) == ("FAILED", "failed", True)
    assert two["partition"] == "interactive"
    assert (j["3"]["state"], j["3"]["failure_class"]) == ("CANCELLED", "cancelled")
    assert (j["6"]["state"], j["6"]["failure_class"], j["6"]["partition"]) == ("FAILED", "failed", "1")


def test_swf_text_without_epoch_is_relative():
    df = load_swf("1 5 0 10 1 1 -1 1 60 -1 1 1 1 1 1 -1 -1 -1\n", dataset="x")
    assert df["submit_time"].iat[0] == 5.0
    assert df["failure_class"].iat[0] == "success"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="0123456789 -.;:abc\t", max_size=80), max_size=8))
def test_swf_mangled_lines_never_raise(lines):
    df = load_swf("\n".join(lines) + "\n", dataset="fuzz")
    assert tuple(df.columns) == JOB_COLUMNS


# --------------------------------------------------------------------------------------------- Deucalion


def test_deucalion_truncated_json_dedup_and_labels():
    df = load_trace(FIX / "deucalion_truncated.json", dataset="deucalion")
    _check_schema(df, "deucalion")
    assert df.attrs["repaired"] is True
    assert df.attrs["dropped"] == {"non_terminal": 1, "duplicate_jobid": 1, "malformed": 0}
    assert sorted(df["job_id"]) == ["900", "901", "902", "903"]  # 904 PENDING, 905 cut off
    j = _by_id(df)
    assert j["900"]["submit_time"] == _utc("2023-10-17T14:39:07")
    assert j["900"]["failure_class"] == "success"
    assert j["900"]["timelimit_s"] == 300 and j["900"]["req_cpus"] == 256 and j["900"]["req_nodes"] == 1
    assert math.isnan(j["900"]["cpu_s"])  # cpu_hours is allocation x time, not TotalCPU
    assert j["901"]["failure_class"] == "cancelled" and j["901"]["elapsed_s"] == 0
    assert math.isnan(j["901"]["req_cpus"]) and math.isnan(j["901"]["req_nodes"])  # never ran: 0 -> NaN
    assert j["902"]["state"] == "TIMEOUT"  # the last attempt after the NODE_FAIL requeue
    assert j["902"]["failure_class"] == "timeout"
    assert j["903"]["failure_class"] == "segfault" and j["903"]["exit_code"] == 139
    assert j["903"]["user"] is None and math.isnan(j["903"]["max_rss_bytes"])


def test_deucalion_valid_json_is_not_repaired():
    text = (FIX / "deucalion_truncated.json").read_text()
    cut = text.rfind("\n    },")
    df = load_deucalion_json(text[:cut] + "\n    }\n]")
    assert df.attrs["repaired"] is False
    assert len(df) == 4


# ------------------------------------------------------------------------------------------------- Eagle


def test_eagle_csv_mapping():
    df = load_eagle_csv(FIX / "eagle_sample.csv")
    _check_schema(df, "eagle")
    j = _by_id(df)
    a = j["532209"]
    assert a["submit_time"] == _utc("2019-01-01T08:55:55") == 1546332955.0
    assert a["elapsed_s"] == 99825 and a["timelimit_s"] == 172800
    assert a["req_nodes"] == 10 and a["req_cpus"] == 10 and a["req_gpus"] == 0
    assert math.isnan(a["req_mem_bytes"])  # mem_req 0 = partition default
    assert a["failure_class"] == "success" and a["user"] == "user0014" and a["job_name"] == "name00005115"
    b = j["532300"]
    assert b["failure_class"] == "timeout" and b["failed"]
    assert b["req_mem_bytes"] == 184000 * MiB and b["req_gpus"] == 2
    c = j["532301"]
    assert (c["state"], c["failure_class"]) == ("CANCELLED", "cancelled")


def test_load_trace_dispatch_and_summary():
    frames = [load_trace(FIX / n) for n in ("tiny.swf.gz", "eagle_sample.csv", "sacct_header_steps.txt")]
    assert [f["dataset"].iat[0] for f in frames] == ["tiny", "eagle", "sacct_header_steps"]
    s = summarize(frames).set_index("dataset")
    assert s.loc["tiny", "jobs"] == 4
    assert s.loc["tiny", "failure_rate"] == 0.75
    assert s.loc["eagle", "timeout"] == 1
    with pytest.raises(FileNotFoundError):
        load_trace(FIX / "nope.swf")


def test_gz_csv(tmp_path):
    p = tmp_path / "e.csv.gz"
    p.write_bytes(gzip.compress((FIX / "eagle_sample.csv").read_bytes()))
    assert len(load_trace(p)) == 3


# ------------------------------------------------------------------------------ real datasets (when present)

DATASETS = SHARED / "datasets"


@pytest.mark.parametrize(
    ("rel", "jobs", "rate"),
    [
        ("lanl-cm5-1994/LANL-CM5-1994-4.1-cln.swf.gz", 122060, 20368 / 122060),
        ("nrel-eagle-sample-2019/sample_eagle_data.csv", 1000, 15 / 1000),
        ("deucalion-slurm-2023/slurm_first_50k.json", 1663, None),
    ],
)
def test_shared_datasets(rel, jobs, rate):
    p = DATASETS / rel
    if not p.is_file():
        pytest.skip(f"{p} not available")
    df = load_trace(p)
    assert len(df) == jobs
    if rate is not None:
        assert df["failed"].mean() == pytest.approx(rate)
    assert df["failure_class"].notna().all()


def test_eagle_array_tasks_sharing_a_job_id_stay_separate_rows():
    head = "job_id,user,account,partition,qos,wallclock_req,nodes_req,processors_req,gpus_req,mem_req,"
    head += "submit_time,start_time,end_time,run_time,state,name,work_dir,submit_line\n"
    req = "u1,a1,p1,normal,600,1,1,0,0,2019-01-01 00:00:00"
    text = (
        head
        + f"7,{req},2019-01-01 00:00:09,2019-01-01 00:05:00,291,COMPLETED,n,w,s\n"
        + f"7,{req},2019-01-01 00:00:05,2019-01-01 00:05:00,295,TIMEOUT,n,w,s\n"
        + f"8,{req},2019-01-01 00:00:05,2019-01-01 00:06:00,355,COMPLETED,n,w,s\n"
    )
    from nomade.analytics.traces import load_eagle_csv

    df = load_eagle_csv(text.encode())
    # The earlier start is task 0; the unique id keeps its plain id.
    assert list(df["job_id"]) == ["7_1", "7_0", "8"]
    assert list(df["state"]) == ["COMPLETED", "TIMEOUT", "COMPLETED"]
