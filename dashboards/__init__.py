"""Grafana dashboards generated in code (issue 6): one module per dashboard, shared factories in :mod:`.common`.

:func:`build_all` returns every dashboard's JSON model keyed by file name; ``nomade build`` writes them with
:func:`nomade.dashboards.common.render_dashboard` (sorted keys, byte-stable).

Adding a dashboard: write ``dashboards/<module>.py`` with::

    KEY = "gpus"                         # stable short name: uid = cfg.grafana.uid_prefix + KEY, file nomade-<KEY>.json
    TITLE = "NØMADE / GPUs"

    def build(cfg: MonitoringConfig) -> dict:   # built with nomade.dashboards.common.dashboard(cfg, KEY, TITLE, ...)
        ...

and add ``(KEY, "<module>")`` to :data:`DASHBOARDS` below, in navigation order. Links between dashboards use the
keys (:func:`nomade.dashboards.common.dashboard_link`), so a key, once published, should not change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

__all__ = ["DASHBOARDS", "build_all", "file_name"]

DASHBOARDS: tuple[tuple[str, str], ...] = (
    ("overview", "overview"),
    ("queue", "queue"),
    ("nodes", "nodes"),
    ("storage", "storage"),
    ("node-resources", "node_resources"),
    ("gpus", "gpus"),
    ("nfs", "nfs"),
    ("jobs-risk", "jobs_risk"),
    ("licenses", "licenses"),
    ("health", "health"),
)
"""``(key, module)`` of every dashboard, in navigation order; ``module`` is under ``nomade.dashboards``."""


def file_name(key: str) -> str:
    """File name of dashboard ``key`` in ``grafana/dashboards/``: ``nomade-<key>.json``."""
    return f"nomade-{key}.json"


def build_all(cfg: MonitoringConfig) -> dict[str, dict[str, Any]]:
    """Build every dashboard of :data:`DASHBOARDS`.

    Args:
        cfg: the monitoring configuration (:func:`nomade.alerting.config.load_monitoring_config`).

    Returns:
        ``{file name: JSON model}`` in :data:`DASHBOARDS` order (a pure function of ``cfg``).

    Raises:
        ValueError: when a module's ``KEY`` differs from its registry key, a dashboard breaks a rule of
            :func:`nomade.dashboards.common.model_problems`, or two dashboards share a uid.
        ImportError: when a registered module is missing.

    """
    out: dict[str, dict[str, Any]] = {}
    uids: dict[str, str] = {}
    for key, module_name in DASHBOARDS:
        module = importlib.import_module(f"{__name__}.{module_name}")
        if getattr(module, "KEY", None) != key:
            raise ValueError(
                f"nomade.dashboards.{module_name}.KEY is {getattr(module, 'KEY', None)!r}, expected {key!r}"
            )
        model = module.build(cfg)
        uid = model["uid"]
        if uid in uids:
            raise ValueError(f"dashboards {uids[uid]} and {key} share the uid {uid}")
        uids[uid] = key
        out[file_name(key)] = model
    return out
