"""The fast paths of slurm_units give exactly what the general code gives (values, exceptions, messages).

The reference functions below are the implementations before the fast paths were added, kept verbatim so that
any divergence shows up here. Timestamps are checked in zones with DST (including Lord Howe's 30-minute shift
and the ambiguous/non-existent hours around a change) because SLURM prints local time.
"""

from __future__ import annotations

import random
import re
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomade.exporter.parsers import slurm_units
from nomade.exporter.parsers.slurm_units import (
    is_null,
    parse_duration,
    parse_size,
    parse_timestamp,
    per_parse_cache,
    split_header_table,
)

# --- reference implementations (the code before the speed-ups) -----------------------------------------------


def ref_duration(text: str) -> float | None:
    t = text.strip()
    if is_null(t) or t.upper() in ("UNLIMITED", "INFINITE", "PARTITION_LIMIT", "NOT_SET"):
        return None
    days = 0
    if "-" in t:
        d, _, rest = t.partition("-")
        if not d.isdigit():
            raise ValueError(f"bad duration {text!r}")
        days = int(d)
        parts = rest.split(":")
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"bad duration {text!r}")
        parts += ["0"] * (3 - len(parts))
        h, m, s = parts
    else:
        parts = t.split(":")
        if len(parts) == 3:
            h, m, s = parts
        elif len(parts) == 2:
            h, (m, s) = "0", parts
        elif len(parts) == 1:
            h, m, s = "0", "0", parts[0]
        else:
            raise ValueError(f"bad duration {text!r}")
    try:
        hi, mi, sf = int(h), int(m), float(s)
    except ValueError as exc:
        raise ValueError(f"bad duration {text!r}") from exc
    if hi < 0 or mi < 0 or sf < 0 or mi >= 60 or sf >= 61:
        raise ValueError(f"bad duration {text!r}")
    return days * 86400 + hi * 3600 + mi * 60 + sf


_SIZE_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<suf>[KMGTP]?)(?P<per>[nc]?)$", re.IGNORECASE)


def ref_size(text: str, default_unit: str = "") -> tuple[float, str] | None:
    t = text.strip()
    if is_null(t):
        return None
    m = _SIZE.match(t)
    if not m:
        raise ValueError(f"bad size {text!r}")
    suf = (m["suf"] or default_unit).upper()
    return float(m["num"]) * _SIZE_SUFFIX[suf], m["per"].lower()


def ref_timestamp(text: str) -> float | None:
    t = text.strip()
    if is_null(t):
        return None
    if t.isdigit():
        return float(t)
    try:
        dt = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S")
    except ValueError as exc:
        raise ValueError(f"bad timestamp {text!r}") from exc
    return dt.timestamp()


def outcome(fn, *args):
    """The value, or the exception type and message, of ``fn(*args)``."""
    try:
        value = fn(*args)
    except (ValueError, OverflowError) as exc:
        return (type(exc).__name__, str(exc))
    if isinstance(value, float) and value != value:
        return ("ok", "nan")  # NaN != NaN; "nan" durations parse in both (float("nan"))
    return ("ok", value)


# --- timestamps ----------------------------------------------------------------------------------------------


@pytest.fixture
def zone(monkeypatch):
    """Switch the process's local zone (TZ + tzset) for one test and restore it afterwards."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def seconds_around(stamp: str, span: int = 3 * 3600) -> list[str]:
    """Every second from ``span`` before to ``span`` after ``stamp`` (naive local text)."""
    t0 = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    return [(t0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") for s in range(-span, span + 1)]


@pytest.mark.parametrize(
    ("tz", "changes"),
    [
        ("Europe/Berlin", ["2024-03-31T02:00:00", "2024-10-27T02:30:00", "1980-04-06T02:00:00"]),
        ("America/New_York", ["2024-03-10T02:00:00", "2024-11-03T01:30:00"]),
        ("Australia/Lord_Howe", ["2024-04-07T01:45:00", "2024-10-06T02:00:00"]),  # 30-minute DST
        ("Asia/Kolkata", ["2024-01-01T00:00:00"]),
        ("UTC", ["2024-01-01T00:00:00"]),
    ],
)
def test_timestamps_equal_strptime_around_dst_changes(zone, tz, changes):
    zone(tz)
    for change in changes:
        for text in seconds_around(change):
            assert parse_timestamp(text) == ref_timestamp(text), (tz, text)


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "UTC"])
def test_timestamps_equal_strptime_on_random_dates(zone, tz):
    zone(tz)
    rng = random.Random(tz)
    for _ in range(20_000):
        text = (datetime(1971, 1, 1) + timedelta(seconds=rng.randrange(0, 80 * 365 * 86400))).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
        assert parse_timestamp(text) == ref_timestamp(text), (tz, text)


def test_cache_follows_a_zone_change(zone):
    text = "2024-07-01T12:00:00"
    zone("Europe/Berlin")
    berlin = parse_timestamp(text)
    zone("America/New_York")
    assert parse_timestamp(text) == ref_timestamp(text) == berlin + 6 * 3600


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T10:00:00",
        "2024-05-01T10:00:60",
        "2024-05-01T10:00:61",
        "2024-05-01T24:00:00",
        "2024-5-01T10:00:000",
        " 2024-05-01T10:00:00",
        "2024-05-01T10:00:00 ",
        "2024-05-01 10:00:00",
        "2024-05-01T10:00:0\u0663",
        "\u0662024-05-01T10:00:00",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59",
        "Unknown",
        "1714557900",
        "",
    ],
)
def test_timestamp_edge_cases_equal_strptime(zone, text):
    zone("Europe/Berlin")
    assert outcome(parse_timestamp, text) == outcome(ref_timestamp, text)


# --- durations and sizes -------------------------------------------------------------------------------------

DURATION_TEXT = st.text(alphabet="0123456789:-. \u0663_+eUNLIMITEDnaf", max_size=14)


@settings(max_examples=3000)
@given(DURATION_TEXT)
def test_duration_equals_reference(text):
    assert outcome(parse_duration, text) == outcome(ref_duration, text)


@pytest.mark.parametrize(
    "text", ["00:04.149", "59:59.999", "60:00", "01:60:00", "1-00:00:00", "12-23:59:61", "00:00:60.5", "7:5:3", "5"]
)
def test_duration_examples_equal_reference(text):
    assert outcome(parse_duration, text) == outcome(ref_duration, text)


SIZE_TEXT = st.text(alphabet="0123456789.KMGTPkmgnc \u0663x", max_size=10)


@settings(max_examples=3000)
@given(SIZE_TEXT, st.sampled_from(["", "M", "K"]))
def test_size_equals_reference(text, unit):
    assert outcome(parse_size, text, unit) == outcome(ref_size, text, unit)


# --- header tables and the per-parse cache -------------------------------------------------------------------


@settings(max_examples=500)
@given(st.lists(st.text(alphabet="AB| \t\x1fx\r", max_size=12), max_size=6))
def test_split_header_table_padding_fast_path(lines):
    text = "JOBID|STATE\n" + "\n".join(lines)
    got = split_header_table(text, frozenset({"JOBID"}))
    assert got is not None
    expected = []
    for i, line in enumerate(text.splitlines()[1:], 2):
        if not line.strip():
            continue
        values = [p.strip(" \t") for p in line.rstrip("\r\n ").split("|")]
        expected.append((i, line, values if len(values) == 2 else None))
    assert got == (["JOBID", "STATE"], expected)


def test_per_parse_cache_does_not_cache_errors():
    calls = []

    def fn(text):
        calls.append(text)
        if text == "bad":
            raise ValueError("bad")
        return len(text)

    cached = per_parse_cache(fn)
    assert [cached("ab"), cached("ab"), cached("abc")] == [2, 2, 3]
    for _ in range(2):
        with pytest.raises(ValueError):
            cached("bad")
    assert calls == ["ab", "abc", "bad", "bad"]


def test_gc_paused_restores_the_previous_state():
    import gc

    assert gc.isenabled()
    with slurm_units.gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with slurm_units.gc_paused():
            pass
        assert not gc.isenabled()  # a disabled collector stays disabled
    finally:
        gc.enable()
