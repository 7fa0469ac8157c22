import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.slurm_outcome import (
    FAILURE_CLASSES,
    STATE_CODES,
    TERMINAL_STATES,
    classify,
    parse_exit_code,
    parse_state,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("COMPLETED", ("COMPLETED", None)),
        ("CANCELLED by 1001", ("CANCELLED", 1001)),
        ("CANCELLED by 0", ("CANCELLED", 0)),
        ("CANCELLED+", ("CANCELLED", None)),
        ("OUT_OF_MEMORY", ("OUT_OF_MEMORY", None)),
        ("CD", ("COMPLETED", None)),
        ("oom", ("OUT_OF_MEMORY", None)),
        ("  TIMEOUT ", ("TIMEOUT", None)),
        ("", None),
    ],
)
def test_parse_state(text, expected):
    assert parse_state(text) == expected


@pytest.mark.parametrize("text", ["CANCELLED by", "by 1001", "12:0", "COMPLETED 0", "CANCELLED by root"])
def test_parse_state_rejects(text):
    with pytest.raises(ValueError):
        parse_state(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("0:0", (0, 0)), ("3:0", (3, 0)), ("0:125", (0, 125)), ("139:0", (139, 0)), ("", None)]
)
def test_parse_exit_code(text, expected):
    assert parse_exit_code(text) == expected


@pytest.mark.parametrize("text", ["0", "1:2:3", "a:b", "-1:0", "0:"])
def test_parse_exit_code_rejects(text):
    with pytest.raises(ValueError):
        parse_exit_code(text)


@pytest.mark.parametrize(
    ("state", "code", "sig", "steps", "derived", "expected"),
    [
        ("COMPLETED", 0, 0, (), None, "success"),
        ("COMPLETED", None, None, (), None, "success"),  # COMPLETED means exit 0 (sacct(1))
        ("COMPLETED", 2, 0, (), None, "failed"),
        ("FAILED", 3, 0, (), None, "failed"),  # lab: exit 3 -> FAILED 3:0
        ("FAILED", 0, 0, (), None, "failed"),
        ("FAILED", 1, 0, ("FAILED",), None, "failed"),
        ("OUT_OF_MEMORY", 0, 125, (), None, "out_of_memory"),  # lab: OOM -> OUT_OF_MEMORY 0:125
        ("FAILED", 1, 0, ("COMPLETED", "OUT_OF_MEMORY"), None, "out_of_memory"),
        ("COMPLETED", 0, 0, ("OUT_OF_MEMORY",), None, "out_of_memory"),
        ("FAILED", 0, 11, (), None, "segfault"),  # lab: Python segfault
        ("FAILED", 139, 0, (), None, "segfault"),  # bash: 128 + SIGSEGV
        ("FAILED", 0, 6, (), None, "abort"),
        ("FAILED", 134, 0, (), None, "abort"),
        ("FAILED", 0, 9, (), None, "signal"),
        ("FAILED", 137, 0, (), None, "signal"),
        ("FAILED", 1, 0, (), (0, 11), "segfault"),  # srun step segfaulted, script returned 1
        ("COMPLETED", 0, 0, (), (0, 11), "success"),  # the script chose to succeed
        ("FAILED", 255, 0, (), None, "failed"),
        ("TIMEOUT", 0, 15, ("CANCELLED",), None, "timeout"),
        ("TIMEOUT", 0, 0, ("OUT_OF_MEMORY",), None, "timeout"),
        ("CANCELLED", 0, 9, (), None, "cancelled"),
        ("PREEMPTED", 0, 15, (), None, "preempted"),
        ("NODE_FAIL", 1, 0, (), None, "node_fail"),
        ("BOOT_FAIL", 0, 0, (), None, "boot_fail"),
        ("DEADLINE", 0, 0, (), None, "deadline"),
        ("RUNNING", 0, 0, (), None, "other"),
        ("REQUEUED", 0, 0, (), None, "other"),
        ("SPECIAL_EXIT", 0, 0, (), None, "other"),
        (None, 0, 0, (), None, "other"),
        ("to", 0, 0, (), None, "timeout"),
    ],
)
def test_classify(state, code, sig, steps, derived, expected):
    dcode, dsig = derived if derived else (None, None)
    got = classify(state, code, sig, step_states=steps, derived_exit_code=dcode, derived_exit_signal=dsig)
    assert got == expected


def test_cancelled_by_user_is_not_success():
    state, uid = parse_state("CANCELLED by 1001")
    assert uid == 1001
    assert classify(state, 0, 0) == "cancelled"


def test_terminal_state_codes_are_known():
    assert [STATE_CODES[c] for c in TERMINAL_STATES] == [
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
        "BOOT_FAIL",
    ]


@given(
    state=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(sorted(STATE_CODES.values()))),
    code=st.one_of(st.none(), st.integers(0, 300)),
    sig=st.one_of(st.none(), st.integers(0, 300)),
    steps=st.lists(st.one_of(st.none(), st.text(max_size=15)), max_size=4),
)
def test_classify_always_gives_a_known_class(state, code, sig, steps):
    assert classify(state, code, sig, step_states=steps) in FAILURE_CLASSES


@given(st.text(max_size=40))
def test_parse_state_and_exit_code_only_raise_valueerror(text):
    for fn in (parse_state, parse_exit_code):
        try:
            fn(text)
        except ValueError:
            pass
