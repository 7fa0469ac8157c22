"""Pseudonymization: user and account names replaced by stable keyed hashes in every exported label.

Configuration (``[exporter]`` section, see :mod:`nomade.exporter.config`)::

    pseudonymize_labels = ["user", "account"]            # default []: off
    pseudonymize_key_file = "/etc/nomade/pseudonym.key"  # >= 16 bytes; e.g. `openssl rand -hex 32 > FILE`

**Pseudonym.** ``"u_" + hex(HMAC-SHA256(key, category + NUL + value))[:16]`` (message in UTF-8), e.g.
``user="u_5f2c0e9a41b7d3c8"``.

- *Keyed*: without the key nobody can rebuild the table by hashing a list of logins (a plain hash of a user name
  is reversed by a dictionary in seconds); with the key the administrator can (:meth:`Pseudonymizer.pseudonym`).
- *Stable*: the same key gives the same pseudonym across restarts and on every node sharing the key file, so
  series stay continuous and PromQL joins across collectors (``user`` of squeue, ``owner`` of stale files) work.
- *Category, not label name, in the message*: a user's name maps to the same pseudonym wherever it appears
  (``user``, ``owner``, an element of ``users``, a quota ``name`` of type user), but the same string as a user
  and as an account (personal accounts named after their user) maps to different pseudonyms, so a table learned
  for one category reveals nothing about the other.
- *Collisions*: 64 bits; for ``n`` distinct names the chance that any two share a pseudonym is about
  ``n**2 / 2**65``: 3e-10 for 10^5 names, 3e-8 for 10^6.
- Empty values stay empty (``user=""`` means "cluster-wide" or "unknown" in several families).

**Labels covered** (by label name, so a new collector using these names is covered without change):

========== ============================================================================================
category   labels
========== ============================================================================================
user       ``user`` (every family); ``owner`` (job_hygiene stale files; its ``other`` bucket stays);
           ``users`` (reservation info: a comma-separated list, each element hashed, SLURM's ``-`` prefix
           of excluded users kept); ``name`` of families that also have ``type``, when ``type="user"`` (quota)
account    ``account``; ``accounts`` (reservation info, a list like ``users``)
group      ``name`` of families that also have ``type``, when ``type`` is ``group`` or ``project`` (quota)
job_name   ``job_name`` (free text chosen by users, often a project or person's name; off unless listed)
========== ============================================================================================

Not covered: numeric ids (``job_id``), node names, paths (``path``/``root`` are configured directories) and the
analytics service's own labels unless that process calls :func:`configure` too.

The rewrite happens at exposition (:meth:`nomade.exporter.metrics.MetricSet.families`), in one place, through
:func:`nomade.exporter.metrics.set_label_rewriter`; collectors and the values they compute are unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
from collections.abc import Iterable
from pathlib import Path

from . import metrics
from .config import PSEUDONYM_CATEGORIES, ConfigError, ExporterConfig
from .metrics import LabelRewrite, MetricSpec

log = logging.getLogger("nomade.exporter")

MIN_KEY_BYTES = 16
"""Shortest key accepted (128 bits, the HMAC key length NIST SP 800-107 asks for at least for this strength)."""

PREFIX = "u_"
HEX_CHARS = 16
"""Hex digits kept from the HMAC: 64 bits."""

LIST_MAX = 256
"""Longest list label (``users``/``accounts``) after hashing, as the reservations collector's own cut."""

_LABEL_RULES: dict[str, tuple[str, str]] = {
    "user": ("user", "one"),
    "owner": ("user", "owner"),
    "users": ("user", "list"),
    "account": ("account", "one"),
    "accounts": ("account", "list"),
    "job_name": ("job_name", "one"),
}
_TYPE_CATEGORY = {"user": "user", "group": "group", "project": "group"}
_CACHE_MAX = 200_000


def load_key(path: Path) -> bytes:
    """Read the HMAC key from ``path`` (trailing whitespace and newlines stripped; the bytes are the key).

    Raises:
        ConfigError: unreadable file, or a key shorter than :data:`MIN_KEY_BYTES` bytes; the message names
            the file and the option, never the key.

    """
    try:
        key = Path(path).read_bytes().rstrip()
    except OSError as exc:
        raise ConfigError(f"exporter.pseudonymize_key_file {path}: cannot read the key: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"exporter.pseudonymize_key_file {path}: key has {len(key)} bytes, at least {MIN_KEY_BYTES} needed"
        )
    try:
        if Path(path).stat().st_mode & stat.S_IROTH:
            log.warning("pseudonym key file %s is readable by every user; chmod 0640 it", path)
    except OSError:
        pass
    return key


class Pseudonymizer:
    """Keyed pseudonyms for the label values of the chosen categories.

    Calling the instance with a :class:`MetricSpec` returns that family's label rewrite (or None), the
    :data:`nomade.exporter.metrics.LabelRewriter` protocol.

    Args:
        key: the HMAC-SHA256 key (at least :data:`MIN_KEY_BYTES` bytes).
        categories: names from :data:`nomade.exporter.config.PSEUDONYM_CATEGORIES`.

    Raises:
        ValueError: a short key or an unknown category.

    """

    def __init__(self, key: bytes, categories: Iterable[str]) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym key shorter than {MIN_KEY_BYTES} bytes")
        self.categories = frozenset(categories)
        unknown = self.categories - set(PSEUDONYM_CATEGORIES)
        if unknown:
            raise ValueError(f"unknown pseudonym categories: {', '.join(sorted(unknown))}")
        self._key = key
        self._cache: dict[tuple[str, str], str] = {}
        self._plans: dict[MetricSpec, LabelRewrite | None] = {}

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(categories={sorted(self.categories)})"

    def pseudonym(self, category: str, value: str) -> str:
        """``"u_"`` + the first 16 hex digits of HMAC-SHA256(key, category + NUL + value); "" stays ""."""
        if not value:
            return value
        hit = self._cache.get((category, value))
        if hit is None:
            mac = hmac.new(self._key, f"{category}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256)
            hit = PREFIX + mac.hexdigest()[:HEX_CHARS]
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[(category, value)] = hit
        return hit

    def _list(self, category: str, value: str) -> str:
        cut = value.endswith("...")
        items = value.split(",") if not cut else value[:-3].split(",")[:-1]  # the last element was cut short
        out: list[str] = []
        size = 0
        for item in items:
            item = item.strip()
            if not item:
                continue
            neg = item.startswith("-")
            text = ("-" if neg else "") + self.pseudonym(category, item[1:] if neg else item)
            if size + len(text) + 1 > LIST_MAX - 3:
                cut = True
                break
            out.append(text)
            size += len(text) + 1
        return ",".join(out) + ("..." if cut else "")

    def __call__(self, spec: MetricSpec) -> LabelRewrite | None:
        """The label rewrite of one family, or None when none of its labels is pseudonymized (cached)."""
        try:
            return self._plans[spec]
        except KeyError:
            pass
        ops: list[tuple[int, str, str, int]] = []
        names = spec.labels
        for i, name in enumerate(names):
            rule = _LABEL_RULES.get(name)
            if rule is not None and rule[0] in self.categories:
                ops.append((i, rule[0], rule[1], -1))
            elif name == "name" and "type" in names:
                ops.append((i, "", "by_type", names.index("type")))
        plan = self._rewrite(ops) if ops else None
        self._plans[spec] = plan
        return plan

    def _rewrite(self, ops: list[tuple[int, str, str, int]]) -> LabelRewrite:
        def rewrite(key: tuple[str, ...]) -> tuple[str, ...]:
            out = list(key)
            for i, category, kind, type_at in ops:
                value = key[i]
                if not value:
                    continue
                if kind == "one":
                    out[i] = self.pseudonym(category, value)
                elif kind == "owner":
                    out[i] = value if value == "other" else self.pseudonym(category, value)
                elif kind == "list":
                    out[i] = self._list(category, value)
                else:
                    cat = _TYPE_CATEGORY.get(key[type_at], "")
                    if cat in self.categories:
                        out[i] = self.pseudonym(cat, value)
            return tuple(out)

        return rewrite


def install(categories: Iterable[str], key_file: Path) -> Pseudonymizer | None:
    """Install (or, with no categories, remove) the process-wide pseudonymizer.

    For services with their own configuration (the analytics service): pass its ``pseudonymize_labels`` and
    ``pseudonymize_key_file`` values; use the same key file as the exporter so pseudonyms match.

    Returns:
        the installed :class:`Pseudonymizer`, or None when ``categories`` is empty (off: the key file is not
        read, and any previously installed one is removed).

    Raises:
        ConfigError: see :func:`load_key`; an unknown category.

    """
    categories = list(categories)
    if not categories:
        metrics.set_label_rewriter(None)
        return None
    try:
        p = Pseudonymizer(load_key(key_file), categories)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"exporter.pseudonymize_labels: {exc}") from None
    metrics.set_label_rewriter(p)
    log.info("pseudonymizing labels of categories: %s", ", ".join(sorted(p.categories)))
    return p


def configure(cfg: ExporterConfig) -> Pseudonymizer | None:
    """Apply ``cfg``'s pseudonymization options (:func:`install`); call once after loading the configuration.

    Returns:
        the installed :class:`Pseudonymizer`, or None when ``cfg.pseudonymize_labels`` is empty.

    Raises:
        ConfigError: see :func:`load_key`.

    """
    return install(cfg.pseudonymize_labels, cfg.pseudonymize_key_file)
