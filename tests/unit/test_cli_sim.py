"""`nomade sim render`: the simulated cluster's command outputs, from a seed or from a running demo's sim.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomade.cli.main import main
from nomade.exporter.parsers.squeue import SQUEUE_JOBS_ARGV, parse_squeue_jobs
from nomade.sim import render_slurm
from nomade.sim.engine import Simulation
from nomade.sim.model import default_cluster, default_workload
from nomade.sim.serve import write_meta

START = 1_764_000_000.0
AT = START + 3 * 3600.0


def _direct_squeue(seed: int) -> str:
    sim = Simulation(default_cluster(), default_workload(), seed, START)
    sim.advance(AT)
    return render_slurm.squeue(sim.state, SQUEUE_JOBS_ARGV)


def test_render_squeue_equals_the_simulation_and_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "render", "--seed", "5", "--start", str(START), "--at", str(AT), *SQUEUE_JOBS_ARGV]) == 0
    out = capsys.readouterr().out
    assert out == _direct_squeue(5)
    parsed = parse_squeue_jobs(out)
    assert not parsed.issues and len(parsed.records) > 100


def test_render_reads_seed_and_start_from_the_demo_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_meta(tmp_path, {"seed": 7, "start": START, "end": AT, "step": 120.0})
    assert main(["sim", "render", "--state-dir", str(tmp_path), "--at", str(AT), *SQUEUE_JOBS_ARGV]) == 0
    assert capsys.readouterr().out == _direct_squeue(7)


def test_render_refuses_unknown_commands_and_missing_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "render", "--at", str(AT), "ls", "-l"]) == 2
    assert "--list" in capsys.readouterr().err
    assert main(["sim", "render", "--state-dir", str(tmp_path), "squeue"]) == 2
    assert "no sim.json" in capsys.readouterr().err
    assert main(["sim", "render", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "squeue" in listed and "sacct" in listed


def test_rules_and_history_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    argv = ["sim", "rules", "--state-dir", str(tmp_path), "--url", "http://127.0.0.1:1", "--tsdb", str(tmp_path)]
    assert main([*argv, str(rules)]) == 1
    assert "no history in" in capsys.readouterr().err
    write_meta(tmp_path, {"seed": 1, "start": 1000.0, "end": 2000.0, "step": 120.0})
    assert main([*argv, "--promtool", str(tmp_path / "none"), str(rules)]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sim", "history", "--tsdb", str(tmp_path), "--state-dir", str(tmp_path), "--workers", "0"])
    assert "must be at least 1" in capsys.readouterr().err
