from __future__ import annotations

import os

import pytest
from conftest import own_fixture, shared_file, shared_files
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.parsers.proc_pid_io import ProcIo, parse_pid_io, parse_pid_stat


def test_shared_jc_values():
    res = parse_pid_io(shared_file("proc-pid-io", "jc-proc-pid-io.txt").read_text())
    assert res.issues == []
    assert res.records == [ProcIo(4699288382, 2931802997, 661897, 890910, 168468480, 27357184, 16883712)]


def test_shared_negative_cancelled_kept_signed():
    res = parse_pid_io(shared_file("proc-pid-io", "procfs-pid-io-negative-cancelled.txt").read_text())
    assert res.issues == []
    io = res.records[0]
    assert io.cancelled_write_bytes == -1024
    assert (io.rchar, io.wchar, io.read_bytes, io.write_bytes) == (750339, 818609, 1024, 2048)


@pytest.mark.fixtures
@pytest.mark.parametrize("path", shared_files("proc-pid-io"), ids=lambda p: p.name)
def test_shared_sweep(path):
    res = parse_pid_io(path.read_text())
    assert res.issues == []
    assert len(res.records) == 1
    assert res.records[0].write_bytes is not None and res.records[0].rchar is not None


def test_lab_capture():
    # job 33-style batch script of the lab (own capture): the shell that ran dd
    io = parse_pid_io(own_fixture("cgroup", "v1", "proc", "31478", "io")).records[0]
    assert io.syscr is not None and io.write_bytes is not None and io.write_bytes >= 0


def test_missing_accounting_fields_are_none():
    res = parse_pid_io("rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\n")
    assert res.records == [ProcIo(10, 20, 1, 2)]
    assert res.records[0].write_bytes is None


def test_bad_lines():
    res = parse_pid_io("rchar: 10\nrchar: 11\nfoo: 3\nwchar: x\nsyscr 5\n")
    assert res.records == [ProcIo(rchar=10)]
    assert [i.line_no for i in res.issues] == [2, 3, 4, 5]
    assert parse_pid_io("").records == []


def test_stat_own_process():
    with open(f"/proc/{os.getpid()}/stat") as fh:
        s = parse_pid_stat(fh.read()).records[0]
    assert s.pid == os.getpid() and s.ppid == os.getppid() and s.starttime > 0


def test_stat_comm_with_parens_and_spaces():
    s = parse_pid_stat(own_fixture("cgroup", "v2", "proc", "7030", "stat")).records[0]
    assert (s.pid, s.comm, s.state, s.ppid, s.starttime) == (7030, "my app) (x", "S", 7020, 5110)
    lab = parse_pid_stat(own_fixture("cgroup", "v1", "proc", "31468", "stat")).records[0]
    assert lab.comm == "slurmstepd" and lab.pid == 31468


def test_stat_bad():
    assert parse_pid_stat("12 (x) S 1 2").issues
    assert parse_pid_stat("no parens at all").issues
    assert parse_pid_stat("x (a) S y 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5").issues


@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    res = parse_pid_io(text)
    assert len(res.records) <= 1
    assert len(res.issues) <= len([ln for ln in text.splitlines() if ln.strip()])
    st_res = parse_pid_stat(text)
    assert len(st_res.records) + len(st_res.issues) == 1
