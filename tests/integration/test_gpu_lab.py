"""The gpu collector in the lab exporter (``--mode all``), asserted through Prometheus.

The lab has no GPU: the collector must say so with ``nomade_gpu_source_available 0`` while staying up, rather
than failing every scrape. On a lab host with nvidia-smi the same test expects the GPUs to be exported.
"""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.integration


def test_gpu_collector_is_up_and_reports_its_source(prom_query, wait_for):
    up = wait_for(lambda: prom_query('nomade_collector_up{collector="gpu"}'), timeout=30)
    assert up, "gpu collector not reporting (is it registered in COLLECTOR_MODULES?)"
    assert {float(s["value"][1]) for s in up} == {1.0}
    available = prom_query("nomade_gpu_source_available")
    assert available
    has_gpu_tool = shutil.which("nvidia-smi") is not None
    assert {float(s["value"][1]) for s in available} == {1.0 if has_gpu_tool else 0.0}
    if not has_gpu_tool:
        assert prom_query("nomade_gpu_info") == []
