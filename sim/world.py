"""The simulated cluster seen through NØMADE's real collectors: one simulation, rendered sources, real collectors.

:class:`SimWorld` owns one :class:`~nomade.sim.engine.Simulation` and a working directory, and wires the
unmodified collectors of :mod:`nomade.exporter.collectors` to it the way one controller exporter plus one
node-mode exporter per instrumented node would be deployed:

* **controller** collectors (``slurm_queue`` with ``per_job = true``, ``slurm_nodes``, ``slurm_accounting``,
  ``slurm_fairshare``, ``slurm_scheduler``, ``slurm_priority``, ``slurm_reservations``, ``slurm_associations``,
  ``slurm_licenses``) run their usual argv through a :class:`~nomade.sim.runner.SimRunner`, which renders the
  command's output from the state instead of spawning it;
* the **cluster job view** (``job_usage``, ``job_io``, ``filesystem``) reads ``workdir/cluster``, where
  :func:`~nomade.sim.render_node.write_job_tree` writes one cgroup v2 directory per running job (its figures summed
  over the job's nodes) and the processes' ``/proc/<pid>/io``; ``filesystem`` gets
  :func:`~nomade.sim.render_node.statvfs_for` as its ``statvfs``;
* per **instrumented node** (``spec.instrumented``), ``cpu``, ``memory``, ``diskstats``, ``nfs`` (and ``gpu`` with
  ``source = "nvidia-smi"`` on nodes with GPUs, on a ``SimRunner(..., node=name)``) read ``workdir/nodes/<name>``
  (:func:`~nomade.sim.render_node.write_node_tree`); their series, the node's collector self-metrics included,
  get ``node="<NodeName>"``, the label a node target carries in the README's scrape configuration and the
  analytics join label (``[analytics.risk] node_label``, analytics/config.py). The per-job series of the job view
  get ``node`` = the job's first node (the node whose exporter would read that cgroup), ``nomade_job_usage_jobs``
  is split into one series per node (jobs whose first node it is, 0 elsewhere), and
  ``nomade_job_usage_info`` its ``user`` from the state (the collector's NSS lookup is switched off:
  ``user_label = false``, this host does not know the simulated users).

Each group is one :class:`~nomade.exporter.registry.ScrapeOrchestrator` (the controller and the cluster job view
share one, as on a controller that also reads job cgroups); :meth:`SimWorld.collect` merges their families so that
each name appears once.

**Simulated time.** Every collector's ``ctx.clock`` and the runners' clocks read ``state.now``. Interval figures
(mpstat mode ratios and busy, iowait, iostat %util, vmstat memory pressure, PSI shares, job I/O) come from each
collector's :class:`~nomade.exporter.sampler.Sampler`: :class:`SimWorld` stops their threads, gives them the
simulated clock and calls ``sample_once()`` after every :meth:`advance`, so the figures cover exactly the
simulated interval between two steps. ``nomade_collector_last_success_timestamp_seconds`` (which the orchestrator
stamps with the host's wall clock) is reported as the simulated time of the collector's last success.

Accounting state (``slurm_accounting``'s SQLite store) lives in ``workdir/state``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from nomade.exporter.collectors import collector_classes
from nomade.exporter.collectors.base import Collector, CollectorContext
from nomade.exporter.registry import ScrapeOrchestrator
from nomade.exporter.sampler import Sampler

if TYPE_CHECKING:
    from .engine import Simulation
    from .model import WorkloadModel
    from .state import ClusterSpec, ClusterState

log = logging.getLogger("nomade.sim.world")

CONTROLLER_COLLECTORS = (
    "slurm_queue",
    "slurm_nodes",
    "slurm_accounting",
    "slurm_fairshare",
    "slurm_scheduler",
    "slurm_priority",
    "slurm_reservations",
    "slurm_associations",
    "slurm_licenses",
)
"""Controller-mode collectors run on the :class:`~nomade.sim.runner.SimRunner`."""

CLUSTER_COLLECTORS = ("job_usage", "job_io", "filesystem")
"""Collectors reading the cluster-wide job tree (``workdir/cluster``)."""

NODE_COLLECTORS = ("cpu", "memory", "diskstats", "nfs")
"""Collectors of each instrumented node (``gpu`` is added on nodes with GPUs)."""

NODE_LABEL = "node"
"""Label naming the machine of node-mode series (SLURM's NodeName), as in the README's scrape configuration."""

LAST_SUCCESS = "nomade_collector_last_success_timestamp_seconds"
JOB_USAGE_INFO = "nomade_job_usage_info"
JOB_USAGE_JOBS = "nomade_job_usage_jobs"
JOB_PREFIXES = ("nomade_job_usage_", "nomade_job_io_")
"""Families of the cluster job tree whose per-job series get ``node`` = the job's first node."""

CATCH_UP_COLLECTORS = (
    "slurm_accounting",
    "slurm_associations",
    "slurm_fairshare",
    "slurm_priority",
    "slurm_reservations",
    "slurm_scheduler",
)
"""Collectors whose output depends on earlier scrapes (the accounting store; a polling interval longer than
a step), replayed at every earlier time by :meth:`SimWorld.catch_up`."""

MIN_CATCH_UP_STEP = 15.0
"""Shortest step :meth:`SimWorld.catch_up` reproduces exactly: the SimRunner's cache lifetime (simulated s), so
every scrape renders each command afresh."""

SCRAPE_TIMEOUT = 60.0
"""Seconds one orchestrator waits for its collectors (generous: a simulated source never hangs, but a loaded
machine generating history must not turn a slow collection into ``up 0``)."""


class InlineExecutor(Executor):
    """An executor running each submitted call at once, in the caller's thread (a completed future comes back).

    Given to the orchestrators by ``SimWorld(..., sequential=True)``: a scrape then runs its collectors one after
    the other without thread hand-offs. A simulated source never hangs, so the orchestrator's deadline (the
    reason its collectors run in threads on a real cluster) has nothing to guard against.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` now; its result or its exception (an ``Exception``) is in the future."""
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # the orchestrator reports it as the collector's failure, as from a thread
            fut.set_exception(exc)
        return fut


def _controller_options(name: str) -> dict[str, Any]:
    if name == "slurm_queue":
        return {"per_job": True}
    return {}


class SimWorld:
    """One simulation with NØMADE's collectors wired to it (see the module docstring).

    Args:
        seed: the simulation's seed (same seed and start: same cluster and history).
        start: Unix seconds where the simulated history begins (the engine warms up before it).
        workdir: working directory (created): ``cluster/`` (job tree), ``nodes/<name>/`` (node trees),
            ``state/`` (collector state).
        spec: the cluster (default :func:`nomade.sim.model.default_cluster`).
        workload: the workload model (default :func:`nomade.sim.model.default_workload`).
        simulation: an already built simulation to wire instead (``seed``, ``start``, ``spec``, ``workload`` are
            then ignored).
        tree_dir: where the rendered ``cluster/`` and ``nodes/`` trees go (default ``workdir``); a tmpfs
            (``/dev/shm``) makes the thousands of small atomic rewrites per step several times cheaper.
        sequential: run each scrape's collectors one after the other in the calling thread
            (:class:`InlineExecutor`) instead of the orchestrators' thread pools: same series, less overhead;
            history generation uses it (False keeps the live exporter's threads and deadline).

    Not thread-safe: one caller advances and collects.

    """

    def __init__(
        self,
        seed: int,
        start: float,
        workdir: Path,
        *,
        spec: ClusterSpec | None = None,
        workload: WorkloadModel | None = None,
        simulation: Simulation | None = None,
        tree_dir: Path | None = None,
        sequential: bool = False,
    ) -> None:
        from .render_node import statvfs_for, write_job_tree, write_node_tree
        from .runner import SimRunner

        self._write_job_tree = write_job_tree
        self._write_node_tree = write_node_tree
        if simulation is None:
            from .engine import Simulation
            from .model import default_cluster, default_workload

            simulation = Simulation(spec or default_cluster(), workload or default_workload(), seed, start)
        self.sim = simulation
        self.spec = self.sim.state.spec
        self.workdir = Path(workdir)
        trees = Path(tree_dir) if tree_dir is not None else self.workdir
        self.cluster_root = trees / "cluster"
        self.nodes_root = trees / "nodes"
        self.state_dir = self.workdir / "state"
        # Trees left by an earlier run would show its jobs to the collectors: start from empty ones.
        shutil.rmtree(self.cluster_root, ignore_errors=True)
        shutil.rmtree(self.nodes_root, ignore_errors=True)
        for d in (self.cluster_root, self.nodes_root, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._render()
        classes = collector_classes()
        state = self._state
        clock = self._now
        self.runner = SimRunner(state)
        collectors: list[Collector] = []
        for name in CONTROLLER_COLLECTORS:
            collectors.append(classes[name](self._ctx(self.runner, _controller_options(name), self.cluster_root)))
        statvfs = statvfs_for(state)
        mounts = [fs.mountpoint for fs in self.spec.filesystems]
        for name in CLUSTER_COLLECTORS:
            opts: dict[str, Any] = {}
            if name == "filesystem":
                opts = {"mount_points": mounts}
            elif name == "job_usage":
                # The collector names a job's owner through this host's NSS, which does not know the simulated
                # users (and may know other users under their uids): collect() fills the label from the state.
                opts = {"user_label": False}
            extra = {"statvfs": statvfs} if name == "filesystem" else {}
            c = classes[name](self._ctx(self.runner, opts, self.cluster_root, **extra))
            if name == "filesystem" and hasattr(c, "statfs"):
                c.statfs = statvfs  # the collector's own hook, whether or not it reads ctx.statvfs
            collectors.append(c)
        self.groups: list[tuple[str | None, ScrapeOrchestrator]] = [
            (None, self._orchestrator(collectors, self.runner, sequential))
        ]
        for node in self.spec.instrumented:
            root = self.nodes_root / node
            node_runner = SimRunner(state, node=node)
            names = list(NODE_COLLECTORS)
            opts_by_name: dict[str, dict[str, Any]] = {}
            if self.spec.node(node).gpus:
                names.append("gpu")
                opts_by_name["gpu"] = {
                    "source": "nvidia-smi",
                    "job_dir": str(root / "run" / "nomade" / "gpu-jobs"),
                    "cgroup_devices_root": str(root / "sys" / "fs" / "cgroup" / "devices"),
                }
            node_collectors = [
                classes[n](self._ctx(node_runner, opts_by_name.get(n, {}), root, state_dir=self.state_dir / node))
                for n in names
            ]
            self.groups.append((node, self._orchestrator(node_collectors, node_runner, sequential)))
        self.samplers: list[Sampler[Any]] = []
        for _, orch in self.groups:
            for c in orch.collectors:
                sampler = getattr(c, "sampler", None)
                if isinstance(sampler, Sampler):
                    sampler.stop()
                    sampler.clock = clock
                    self.samplers.append(sampler)
        # Two readings at the same simulated instant: the pair exists but spans 0 s, so no interval figure is
        # reported before the first advance (the reading taken at construction carries the host's clock).
        for _ in range(2):
            self._sample()
        self._last_ok: dict[tuple[str | None, str], float] = {}

    # -- plumbing ---------------------------------------------------------------------------------------------

    @staticmethod
    def _orchestrator(collectors: list[Collector], runner: Any, sequential: bool) -> ScrapeOrchestrator:
        executor = InlineExecutor() if sequential else None
        return ScrapeOrchestrator(collectors, runner, scrape_timeout=SCRAPE_TIMEOUT, executor=executor)

    def _state(self) -> ClusterState:
        return self.sim.state

    def _now(self) -> float:
        return float(self.sim.state.now)

    def _ctx(
        self, runner: Any, options: dict[str, Any], root: Path, *, state_dir: Path | None = None, **extra: Any
    ) -> CollectorContext:
        known = {f.name for f in dataclasses.fields(CollectorContext)}
        kwargs = {k: v for k, v in extra.items() if k in known}
        return CollectorContext(
            runner=runner,
            options=options,
            state_dir=state_dir or self.state_dir,
            proc_root=root / "proc",
            sys_root=root / "sys",
            clock=self._now,
            **kwargs,
        )

    def _render(self) -> None:
        state = self.sim.state
        self._write_job_tree(state, self.cluster_root)
        for node in self.spec.instrumented:
            self._write_node_tree(state, node, self.nodes_root / node)

    def _sample(self) -> None:
        for s in self.samplers:
            s.sample_once()

    # -- public API -------------------------------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        """The simulation's current state."""
        return self.sim.state

    @property
    def collectors(self) -> list[tuple[str | None, Collector]]:
        """Every wired collector as ``(node or None, collector)``."""
        return [(node, c) for node, orch in self.groups for c in orch.collectors]

    def advance(self, t: float) -> None:
        """Advance the simulation to ``t`` (Unix s), re-render every source and take the samplers' readings.

        Raises:
            ValueError: ``t`` is before the current simulated time (from the engine).

        """
        self.sim.advance(t)
        self._render()
        self._sample()

    def collect(self) -> list[Metric]:
        """One scrape at ``state.now``: every group's families merged by name, node series labelled.

        Returns:
            ``prometheus_client`` metric families, each name once: the collectors' series and the orchestrators'
            self-metrics (``nomade_collector_up``, ``..._parse_errors_total``...), node groups' with ``node``.

        """
        now = self._now()
        merged: dict[str, Metric] = {}
        for node, orch in self.groups:
            fams = list(orch.collect())
            for m in fams:
                if m.name == "nomade_collector_up":
                    for s in m.samples:
                        if s.value == 1:
                            self._last_ok[(node, s.labels["collector"])] = now
            for m in fams:
                samples: Iterable[Sample] = m.samples
                if m.name == LAST_SUCCESS:
                    samples = [
                        s._replace(value=self._last_ok[(node, s.labels["collector"])])
                        for s in m.samples
                        if (node, s.labels["collector"]) in self._last_ok
                    ]
                elif m.name == JOB_USAGE_INFO:
                    samples = [self._with_user(s) for s in m.samples]
                if node is None and m.name == JOB_USAGE_JOBS:
                    samples = self._jobs_per_node(list(samples))
                elif node is None and m.name.startswith(JOB_PREFIXES):
                    self._label_job_node(samples)
                if node is not None:
                    # MetricSet.families() builds a fresh labels dict per sample: adding the label in place is
                    # safe and spares a new Sample per series (a tenth of a history step's time otherwise).
                    for s in samples:
                        s.labels.setdefault(NODE_LABEL, node)
                target = merged.get(m.name)
                if target is None:
                    target = merged[m.name] = Metric(m.name, m.documentation, m.type, m.unit)
                target.samples.extend(samples)
        return list(merged.values())

    def _with_user(self, s: Sample) -> Sample:
        """``nomade_job_usage_info`` with ``user`` = the job's owner, as NSS on the simulated cluster would name it."""
        if s.labels.get("user"):
            return s
        try:
            job = self.sim.state.active.get(int(s.labels["job_id"]))
        except (KeyError, ValueError):
            return s
        return s if job is None else s._replace(labels={**s.labels, "user": job.user})

    def _jobs_per_node(self, samples: list[Sample]) -> list[Sample]:
        """``nomade_job_usage_jobs`` split into one series per node, as one exporter per node would report it.

        Each job's cgroup lies under its first node (``write_job_tree``), so a node's count is the number of
        running jobs whose first node it is. The collector's own cluster-wide sample is kept instead when the
        counts do not add up to it (a renderer and the state disagreeing must show, not be papered over).
        """
        if len(samples) != 1:
            return samples
        total = samples[0]
        per_node = Counter(j.nodes[0] for j in self.sim.state.active.values() if j.state == "RUNNING" and j.nodes)
        if sum(per_node.values()) != total.value:
            return samples
        return [
            total._replace(labels={**total.labels, NODE_LABEL: n.name}, value=float(per_node.get(n.name, 0)))
            for n in self.spec.nodes
        ]

    def _label_job_node(self, samples: Iterable[Sample]) -> None:
        """Give per-job series ``node`` = the job's first node, as that node's scrape target label would.

        That node's exporter reads the job's cgroup: ``write_job_tree`` puts it under its ``slurmstepd.scope``.
        """
        active = self.sim.state.active
        for s in samples:
            jid = s.labels.get("job_id")
            if jid is None or NODE_LABEL in s.labels:
                continue
            try:
                job = active.get(int(jid))
            except ValueError:
                continue
            if job is not None and job.nodes:
                s.labels[NODE_LABEL] = job.nodes[0]

    def catch_up(self, times: Sequence[float]) -> None:
        """Bring a fresh world to the state a world stepped through ``times`` (and scraped at each) would have.

        Used by history workers that start part-way through a history (:func:`nomade.sim.history.generate_history`
        with ``workers > 1``): the next :meth:`advance` and :meth:`collect` then give the scrape of an
        uninterrupted run. What a scrape depends on besides the simulated state at its time (a closed-form function
        of seed, start and time), and how it is rebuilt:

        * what collectors with their own polling interval did at earlier scrapes: the accounting store of
          ``slurm_accounting``, the last output and run time of ``sacctmgr``, ``sshare``, ``sprio``, ``sdiag``
          and ``scontrol show reservation`` (:data:`CATCH_UP_COLLECTORS`): those collectors run at every time,
          without rendering the file trees (about 10 ms a step);
        * one step of memory (the samplers' previous reading, ``nomade_exporter_scrape_series`` of the previous
          scrape, the last success times): the last two times get a full :meth:`advance`, the last a
          :meth:`collect`;
        * ``nomade_exporter_scrapes_total`` = ``len(times)`` per orchestrator, and
          ``nomade_exporter_command_runs_total``: the catch-up collectors' runs happened; the other collectors
          run their commands once per scrape (distinct command lines, each scrape's rendering newer than the
          runner's 15 s cache when steps are at least :data:`MIN_CATCH_UP_STEP` apart), so their runs of one
          scrape, counted at the last time, are added for each earlier time.

        ``job_io``'s per-job totals need nothing: the rendered processes live as long as their job and their
        counters only grow, so a collector meeting a job for the first time counts what an earlier one summed.
        Failure and parse-error counters start from this world's own scrapes (both stay 0 on a healthy
        simulation). The history test compares a split run with an uninterrupted one line by line.

        Args:
            times: the earlier scrape times, increasing (Unix s), at least :data:`MIN_CATCH_UP_STEP` apart;
                empty: nothing to do.

        Raises:
            ValueError: a time before the current simulated time (from the engine), or times closer together
                than :data:`MIN_CATCH_UP_STEP`.

        """
        if not times:
            return
        if any(b - a < MIN_CATCH_UP_STEP for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"catch_up needs scrape times at least {MIN_CATCH_UP_STEP:g} s apart")
        catch = [c for _, c in self.collectors if c.name in CATCH_UP_COLLECTORS]
        others = [c for _, c in self.collectors if c.name not in CATCH_UP_COLLECTORS]
        for i, t in enumerate(times):
            if i >= len(times) - 2:
                self.advance(t)  # render and sample: the samplers' last pair is the uninterrupted run's
            else:
                self.sim.advance(t)
            for c in catch:
                c.collect(c.new_set())
        runners = {id(orch.runner): orch.runner for _, orch in self.groups}.values()
        before = [Counter(r.runs) for r in runners]
        for c in others:  # their commands' runs of one scrape; collect() below reads the runners' cache
            c.collect(c.new_set())
        for r, b in zip(runners, before, strict=True):
            for cmd, n in (r.runs - b).items():
                r.runs[cmd] += n * (len(times) - 1)
        self.collect()
        for _, orch in self.groups:
            orch.scrapes = len(times)

    def close(self) -> None:
        """Stop every collector's background work and close their state (the accounting store)."""
        for _, orch in self.groups:
            orch.close()


def build_world(seed: int, start: float, workdir: Path, **kwargs: Any) -> SimWorld:
    """:class:`SimWorld` factory with :func:`generate_history`'s ``world_factory`` signature (plus keywords)."""
    return SimWorld(seed, start, workdir, **kwargs)


WorldFactory = Callable[[int, float, Path], SimWorld]
