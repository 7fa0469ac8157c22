import re
from pathlib import Path

from nomade.exporter.catalog import catalog, catalog_names, render_markdown
from nomade.exporter.collectors import collector_classes

ROOT = Path(__file__).resolve().parents[2]

# The metric families every component agrees on (DESIGN.md, "Metric families"), plus the ones issue 3 added
# for views DESIGN.md does not name (node health, reachability, job hygiene, reservations, priority, associations).
FAMILIES = (
    "nomade_trend_",
    "nomade_analytics_",
    "nomade_node_health_",
    "nomade_reachability_",
    "nomade_job_hygiene_",
    "nomade_slurm_reservation_",
    "nomade_slurm_priority_",
    "nomade_slurm_association_",
    "nomade_filesystem_",
    "nomade_quota_",
    "nomade_disk_",
    "nomade_cpu_",
    "nomade_memory_",
    "nomade_gpu_",
    "nomade_nfs_",
    "nomade_job_usage_",
    "nomade_job_io_",
    "nomade_license_",
    "nomade_slurm_queue_",
    "nomade_slurm_node_",
    "nomade_slurm_partition_",
    "nomade_slurm_job_",
    "nomade_slurm_accounting_",
    "nomade_slurm_fairshare_",
    "nomade_slurm_scheduler_",
    "nomade_collector_",
    "nomade_exporter_",
    "nomade_job_risk_",
    "nomade_model_",
    "nomade_recommendation_",
)


def test_docs_metrics_md_is_generated_from_the_catalog():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render_markdown(), "regenerate with: make docs"


def test_every_metric_belongs_to_an_agreed_family():
    bad = [s.name for _, s in catalog() if not s.name.startswith(FAMILIES)]
    assert bad == []


def test_names_follow_prometheus_conventions():
    for _, s in catalog():
        assert re.fullmatch(r"nomade_[a-z0-9_]+", s.name), s.name
        assert s.help and (s.help[0].isupper() or s.help[0].isdigit()), f"{s.name}: help text should be a sentence"
        if s.unit == "bytes":
            assert "_bytes" in s.name, s.name
        if s.unit == "seconds":
            assert "seconds" in s.name, s.name
        if s.name.endswith("_ratio"):
            assert s.unit in ("", "ratio"), s.name
        assert "le" not in s.labels and "quantile" not in s.labels or s.type == "gauge"


def test_each_collector_declares_metrics_and_a_mode():
    classes = collector_classes()
    assert set(classes) >= {
        "filesystem",
        "slurm_queue",
        "slurm_nodes",
        "slurm_accounting",
        "diskstats",
        "cpu",
        "memory",
    }
    for name, cls in classes.items():
        assert cls.mode in ("node", "controller"), name
        assert cls.metrics, name
        assert cls.__doc__, name


def test_histograms_expand_to_their_series_names():
    names = catalog_names()
    assert "nomade_slurm_job_cpu_efficiency_ratio_bucket" in names
    assert "nomade_collector_up" in names
