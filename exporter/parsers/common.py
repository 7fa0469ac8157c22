"""Shared result types for the pure parsers.

Every parser returns a :class:`ParseResult`: the records it could read and one :class:`ParseIssue` per line
(or field) it had to skip. Collectors add ``len(result.issues)`` to ``nomade_collector_parse_errors_total``;
nothing is ever guessed (DESIGN.md principle 2: absent beats wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ParseIssue:
    """One skipped line or field.

    Attributes:
        line_no: 1-based line number in the parsed text (0 when the issue concerns the whole text).
        reason: short human-readable reason, e.g. ``"expected 12 fields, got 9"``.
        line: the offending text, truncated to 200 characters.

    """

    line_no: int
    reason: str
    line: str = ""

    @classmethod
    def at(cls, line_no: int, reason: str, line: str = "") -> ParseIssue:
        """Build an issue, truncating the offending line to 200 characters."""
        return cls(line_no, reason, line[:200])


@dataclass
class ParseResult(Generic[T]):
    """Records parsed from a text plus the issues met on the way.

    Attributes:
        records: the parsed records, in input order.
        issues: one entry per skipped line or field.

    """

    records: list[T] = field(default_factory=list)
    issues: list[ParseIssue] = field(default_factory=list)

    def skip(self, line_no: int, reason: str, line: str = "") -> None:
        """Record that line ``line_no`` was skipped for ``reason``."""
        self.issues.append(ParseIssue.at(line_no, reason, line))
