"""The lab's configuration files (deploy/lab): what lab.sh renders must load with the real config parsers."""

from __future__ import annotations

from pathlib import Path

from nomade.analytics.config import load_config as load_analytics
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_queue import SlurmQueueCollector
from nomade.exporter.config import load_config as load_exporter

LAB = Path(__file__).resolve().parents[2] / "deploy" / "lab"


def _render(text: str, lab: str, host: str) -> str:
    # lab.sh's render(): sed s|@HOST@|..| s|@LAB@|..|
    return text.replace("@HOST@", host).replace("@LAB@", lab)


def test_rendered_analytics_config_has_the_lab_risk_section(tmp_path):
    # lab.sh prepare(): cat analytics.toml <rendered analytics-risk.toml.in> > $LAB/etc/analytics.toml
    combined = (LAB / "analytics.toml").read_text() + _render(
        (LAB / "analytics-risk.toml.in").read_text(), "/var/lib/nomade-lab-x", "labhost"
    )
    path = tmp_path / "analytics.toml"
    path.write_text(combined)
    cfg = load_analytics(path)
    risk = cfg.risk
    assert risk.enabled is True
    assert risk.store == Path("/var/lib/nomade-lab-x/analytics/jobs.sqlite")
    assert risk.model_dir == Path("/var/lib/nomade-lab-x/analytics/models")
    assert (risk.retrain_interval, risk.min_train_jobs, risk.min_train_failures) == (60.0, 30, 5)
    assert risk.node_label == "node" and risk.node_map == {"*": "labhost"}
    assert "@" not in combined.split("[analytics.risk]", 1)[1]  # every placeholder rendered
    # the watches are those of deploy/lab/analytics.toml alone (test_analytics_lab.py reads that file)
    assert [w.name for w in cfg.watches] == [w.name for w in load_analytics(LAB / "analytics.toml").watches]


def test_lab_exporter_config_turns_per_job_queue_series_on():
    cfg = load_exporter(LAB / "exporter.toml")
    options = cfg.collectors["slurm_queue"]
    assert options == {"per_job": True}
    col = SlurmQueueCollector(CollectorContext(runner=None, options=options))  # type: ignore[arg-type]
    assert col.per_job is True and col.max_jobs == 5000
