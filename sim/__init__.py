"""A simulated SLURM cluster for the demo and the tests (``nomade sim``, ``make demo SIMULATE=1``).

A seeded generative model whose output is rendered in the real command and /proc formats and read through
NØMADE's own collectors and parsers. Modules: :mod:`.state` (the shared data model), :mod:`.model` (cluster
layout and workload model), :mod:`.engine` (the time-stepped simulation), :mod:`.render_slurm` and
:mod:`.runner` (SLURM command outputs), :mod:`.render_node` (``/proc``, cgroup and ``nvidia-smi`` texts of a
node), :mod:`.world` (collectors wired to a simulation), :mod:`.history` (days of history backfilled into
Prometheus), :mod:`.serve` (the live exporter).
"""
