"""Shared test helpers: where the captured fixtures of other sites live, and our own small fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from nomade.exporter.runner import CommandError, CommandResult, CommandRunner

# CI runs the property tests with a fixed seed (the same examples every run), so a submission cannot fail on an
# example nobody has seen before; development runs explore new examples and keep the failing ones in .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
OWN_FIXTURES = ROOT / "tests" / "fixtures"
# ../shared sits beside the checkout (the project's data, never copied into it). CI lays it out the same way.
SHARED = ROOT.parent / "shared"
SHARED_FIXTURES = SHARED / "fixtures"


def shared_files(tool: str) -> list[Path]:
    """Every captured file for ``tool`` under ``../shared/fixtures/<tool>`` (empty when absent)."""
    d = SHARED_FIXTURES / tool
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def shared_file(tool: str, name: str) -> Path:
    """One captured file; skips the calling test when ``../shared`` is not there."""
    p = SHARED_FIXTURES / tool / name
    if not p.is_file():
        pytest.skip(f"{p} not available (../shared is absent)")
    return p


def own_fixture(*parts: str) -> str:
    """Text of one of the project's own hand-written fixtures under tests/fixtures."""
    return OWN_FIXTURES.joinpath(*parts).read_text()


class TextRunner:
    """Stands in for :class:`~nomade.exporter.runner.CommandRunner`: every command prints ``text``.

    Args:
        text: the standard output every call returns.
        error: when given, every call raises it instead (a dead slurmctld, a missing binary...).

    ``calls`` records ``(argv, ttl)`` of each call, so tests can check the command line and the cache TTL asked for.
    """

    def __init__(self, text: str | None, error: Exception | None = None) -> None:
        self.text, self.error = text, error
        self.calls: list[tuple[tuple[str, ...], float | None]] = []

    def run(self, argv, *, timeout=None, ttl=None):  # noqa: D102 - CommandRunner.run's signature
        self.calls.append((tuple(argv), ttl))
        if self.error is not None:
            raise self.error
        return CommandResult(tuple(argv), self.text or "", "", 0.01, 0.0)


class MappedRunner(CommandRunner):
    """Stands in for :class:`~nomade.exporter.runner.CommandRunner` with one canned answer per command line.

    Args:
        outputs: ``{argv tuple: stdout text or a CommandError to raise}``.
        missing: ``(reason, detail)`` of the :class:`CommandError` raised for a command line not in ``outputs``
            (default: the binary is missing; SLURM collector tests use an unreachable controller).
        finished_at: the results' ``finished_at`` (Unix seconds).

    ``calls`` records each argv tuple in call order.
    """

    def __init__(
        self,
        outputs: dict[tuple[str, ...], str | CommandError],
        missing: tuple[str, str] = ("missing", "No such file or directory"),
        finished_at: float = 0.0,
    ) -> None:
        super().__init__()
        self.outputs, self.missing, self.finished_at = outputs, missing, finished_at
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, *, timeout=None, ttl=None):  # noqa: D102 - CommandRunner.run's signature
        key = tuple(argv)
        self.calls.append(key)
        value = self.outputs.get(key)
        if value is None:
            raise CommandError(key, *self.missing)
        if isinstance(value, CommandError):
            raise value
        return CommandResult(key, value, "", 0.01, self.finished_at)
