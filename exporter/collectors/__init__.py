"""Collectors: one module per source, each declaring its metrics.

:data:`COLLECTOR_MODULES` lists every collector module; :func:`collector_classes` imports them and returns the
classes by name. Adding a collector means adding its module here and nowhere else.
"""

from __future__ import annotations

import importlib

from .base import Collector

COLLECTOR_MODULES: tuple[str, ...] = (
    "filesystem",
    "slurm_queue",
    "slurm_nodes",
    "slurm_accounting",
    "diskstats",
    "cpu",
    "memory",
    "gpu",
    "slurm_scheduler",
    "slurm_fairshare",
    "slurm_priority",
    "slurm_reservations",
    "slurm_associations",
    "slurm_licenses",
    "licenses",
    "quota",
    "job_usage",
    "job_io",
    "job_hygiene",
    "nfs",
    "node_health",
    "reachability",
)


def collector_classes() -> dict[str, type[Collector]]:
    """Return ``{name: class}`` for every collector, in :data:`COLLECTOR_MODULES` order.

    Each module exposes exactly one public :class:`Collector` subclass as ``COLLECTOR``.
    """
    out: dict[str, type[Collector]] = {}
    for mod_name in COLLECTOR_MODULES:
        mod = importlib.import_module(f"{__name__}.{mod_name}")
        cls: type[Collector] = mod.COLLECTOR
        out[cls.name] = cls
    return out
