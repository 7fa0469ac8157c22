"""The collector contract.

A collector reads one source (a command through the shared :class:`~nomade.exporter.runner.CommandRunner`, or
files under ``/proc``), parses it with a pure parser and fills a :class:`~nomade.exporter.metrics.MetricSet`.
It never catches its own source failures to report zeros: it raises, and the scrape orchestrator
(:mod:`nomade.exporter.registry`) turns that into ``nomade_collector_up{collector} 0`` while the rest of the
scrape goes on (DESIGN.md principle 2).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..metrics import MetricSet, MetricSpec
from ..runner import CommandRunner

Mode = Literal["node", "controller"]


class CollectorError(RuntimeError):
    """The collector's source gave nothing usable this time (its ``up`` becomes 0)."""


@dataclass
class CollectorContext:
    """What a collector receives at construction.

    Attributes:
        runner: the shared command runner (timeouts, caching).
        options: this collector's TOML section (``[collector.<name>]``) as a dict; keys are documented on
            each collector class.
        state_dir: directory for state that must survive restarts (created on demand).
        proc_root: root of the proc filesystem (``/proc``; a fixture tree in tests).
        sys_root: root of sysfs (``/sys``).
        clock: wall clock in Unix seconds, injectable for tests.
        statvfs: the ``statvfs(3)`` call the filesystem collector makes per mount point (``os.statvfs``); the
            simulated cluster passes :func:`nomade.sim.render_node.statvfs_for`, tests a fake. It must return an
            ``os.statvfs_result`` or raise ``OSError`` like ``os.statvfs``.

    """

    runner: CommandRunner
    options: dict[str, Any] = field(default_factory=dict)
    state_dir: Path = Path("/var/lib/nomade")
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    clock: Callable[[], float] = time.time
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs


class Collector(ABC):
    """Base class of all collectors.

    Class attributes:
        name: the collector's name, used in ``--collector.<name>`` and in the ``collector`` label.
        mode: ``"node"`` (runs on compute nodes) or ``"controller"`` (runs where SLURM client commands work).
        metrics: every metric the collector may emit (its part of the catalog).
        default_enabled: whether it runs when no flag mentions it.
    """

    name: ClassVar[str]
    mode: ClassVar[Mode]
    metrics: ClassVar[tuple[MetricSpec, ...]]
    default_enabled: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"nomade.exporter.{self.name}")
        self._parse_errors = 0
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        """Whether this machine can host the source at all (mode ``auto`` enables only available ones)."""
        return True

    def option(self, key: str, default: Any) -> Any:
        """Return ``[collector.<name>].<key>`` from the configuration, or ``default``."""
        return self.ctx.options.get(key, default)

    def count_parse_errors(self, n: int) -> None:
        """Add ``n`` skipped lines or fields to this collector's parse-error counter."""
        if n:
            with self._lock:
                self._parse_errors += n

    @property
    def parse_errors(self) -> int:
        """Total skipped lines or fields since start (``nomade_collector_parse_errors_total``)."""
        return self._parse_errors

    def new_set(self) -> MetricSet:
        """A fresh :class:`MetricSet` accepting this collector's declared metrics."""
        return MetricSet(self.metrics)

    @abstractmethod
    def collect(self, out: MetricSet) -> None:
        """Fill ``out`` with the current values.

        Raises:
            CollectorError: or :class:`~nomade.exporter.runner.CommandError` when the source failed; the
                orchestrator reports ``up 0`` and drops whatever was added to ``out``.

        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work (samplers); the default does nothing."""
