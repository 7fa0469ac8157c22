"""Metric declarations and the per-collection builder that turns values into exposition families.

A collector declares every metric it may emit as a :class:`MetricSpec` (name, type, help, unit, label names).
The union of those declarations is the metric catalog (:mod:`nomade.exporter.catalog`), the contract between
exporter, analytics, dashboards and alerting (DESIGN.md principle 5). During one collection the collector fills
a :class:`MetricSet`, which refuses names and label sets that were not declared, so the catalog cannot drift
from what is exported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Literal

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

MetricType = Literal["gauge", "counter", "info", "histogram"]

LabelRewrite = Callable[[tuple[str, ...]], tuple[str, ...]]
"""Maps one sample's label values (declaration order) to the values exposed instead (same length)."""

LabelRewriter = Callable[["MetricSpec"], LabelRewrite | None]
"""Given a family's declaration, returns its :data:`LabelRewrite`, or None when no label of it changes."""

_label_rewriter: LabelRewriter | None = None


def set_label_rewriter(rewriter: LabelRewriter | None) -> None:
    """Install the process-wide exposition-time label rewriter (None: labels exposed as collected).

    Every :meth:`MetricSet.families` call applies it, so every collector (and the analytics service, which
    builds its families with :class:`MetricSet` too) is covered without change. Collectors, :meth:`MetricSet.value`
    and :meth:`MetricSet.samples` keep seeing the collected values. :func:`nomade.exporter.privacy.configure`
    installs the pseudonymizer here.
    """
    global _label_rewriter
    _label_rewriter = rewriter


def label_rewriter() -> LabelRewriter | None:
    """The rewriter installed by :func:`set_label_rewriter` (None when labels are exposed as collected)."""
    return _label_rewriter


@dataclass(frozen=True)
class MetricSpec:
    """The declaration of one metric family.

    Attributes:
        name: full exposition name. Counters end in ``_total``, info metrics in ``_info``, histograms carry
            their base name (``_bucket``/``_sum``/``_count`` are added).
        type: ``gauge``, ``counter``, ``info`` (a gauge of value 1 carrying text in labels) or ``histogram``.
        help: one-line help text.
        labels: label names, in exposition order (histograms add ``le`` themselves).
        unit: base unit for the catalog (``bytes``, ``seconds``, ``ratio``...), empty when dimensionless.

    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self) -> None:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"only counters may end in _total: {self.name}")
        if self.type == "info" and not self.name.endswith("_info"):
            raise ValueError(f"info metric {self.name} must end in _info")
        if not self.name.startswith("nomade_"):
            raise ValueError(f"metric {self.name} lacks the nomade_ prefix")


def _clean_label(value: object) -> str:
    """Return a label value as text that always survives exposition.

    Command output is decoded with ``errors="replace"`` upstream, so the only hazard left here is a lone
    surrogate (from ``surrogateescape``-decoded paths), which cannot be encoded as UTF-8.
    """
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


@dataclass
class _Family:
    spec: MetricSpec
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)
    histograms: dict[tuple[str, ...], tuple[list[tuple[float, float]], float, float]] = field(default_factory=dict)
    # add() runs tens of thousands of times per collection: the spec's type test is done once here.
    counter: bool = field(init=False)

    def __post_init__(self) -> None:
        self.counter = self.spec.type == "counter"


class MetricSet:
    """Values gathered by one collector during one collection.

    Args:
        specs: the metric declarations the collector may use.

    Raises:
        KeyError: from :meth:`add` for an undeclared metric name.
        ValueError: from :meth:`add` when the label names differ from the declaration.

    """

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self._families: dict[str, _Family] = {s.name: _Family(s) for s in specs}

    def _family(self, name: str, labels: dict[str, object]) -> tuple[_Family, tuple[str, ...]]:
        fam = self._families[name]
        names = fam.spec.labels
        if len(labels) != len(names):
            raise ValueError(f"{name}: labels {sorted(labels)} != declared {sorted(names)}")
        try:
            # Label values are cleaned of lone surrogates once, at exposition time (families()). str() of a str
            # is the object itself, so mapping str over the values converts only the non-strings, all in C.
            key = tuple(map(str, map(labels.__getitem__, names)))
        except KeyError:
            raise ValueError(f"{name}: labels {sorted(labels)} != declared {sorted(names)}") from None
        return fam, key

    def add(self, name: str, value: float | int | None, /, **labels: object) -> None:
        """Set one sample. ``None`` and NaN values are dropped (absent beats wrong).

        Adding the same label set twice keeps the last value for gauges and info metrics and sums for
        counters (so per-line contributions can be accumulated).
        """
        if value is None:
            return
        value = float(value)
        if value != value:  # NaN
            return
        fam, key = self._family(name, labels)
        if fam.counter:
            fam.samples[key] = fam.samples.get(key, 0.0) + value
        else:
            fam.samples[key] = value

    def extend(self, name: str, samples: dict[tuple[str, ...], float]) -> None:
        """Set many samples of one gauge or info family at once (the fast path for per-job series).

        Args:
            name: a declared gauge or info metric.
            samples: ``{label values in declared order: value}``; None and NaN values are dropped.

        Raises:
            KeyError: undeclared name.
            ValueError: a counter or histogram family, or a key of the wrong length.

        """
        fam = self._families[name]
        if fam.spec.type not in ("gauge", "info"):
            raise ValueError(f"{name}: extend() takes gauges and info metrics only")
        width = len(fam.spec.labels)
        for key, value in samples.items():
            if len(key) != width:
                raise ValueError(f"{name}: key {key!r} does not match labels {fam.spec.labels}")
            if value is not None and value == value:  # absent: None or NaN
                fam.samples[key] = float(value)

    def info(self, name: str, /, **labels: object) -> None:
        """Set an info metric (value 1) with the given text labels."""
        self.add(name, 1.0, **labels)

    def histogram(
        self, name: str, buckets: list[tuple[float, float]], total: float, count: float, /, **labels: object
    ) -> None:
        """Set one histogram child.

        Args:
            name: declared histogram name.
            buckets: cumulative ``(upper_bound, count)`` pairs in increasing bound order, ``+Inf`` last.
            total: the ``_sum`` value.
            count: the ``_count`` value (equal to the ``+Inf`` bucket).
            labels: the declared labels.

        """
        fam, key = self._family(name, labels)
        fam.histograms[key] = (buckets, total, count)

    def value(self, name: str, /, **labels: object) -> float | None:
        """Return a sample previously added (for tests and for derived figures)."""
        fam, key = self._family(name, labels)
        return fam.samples.get(key)

    def samples(self, name: str) -> dict[tuple[str, ...], float]:
        """Return all samples of one family keyed by label values in declaration order."""
        return dict(self._families[name].samples)

    def families(self) -> list[Metric]:
        """Convert to ``prometheus_client`` metric families, omitting empty ones.

        Label values pass through the rewriter of :func:`set_label_rewriter` (pseudonymization), when one is
        installed, and are cleaned of lone surrogates. Families come in declaration order, each family's series
        sorted by label values (declaration order, as collected, before rewriting); every sample gets a labels
        dict of its own (callers such as :meth:`nomade.sim.world.SimWorld.collect` add labels in place).
        """
        out: list[Metric] = []
        rewriter = _label_rewriter
        for fam in self._families.values():
            spec = fam.spec
            if not fam.samples and not fam.histograms:
                continue
            labels = spec.labels
            rw = rewriter(spec) if rewriter is not None else None
            if spec.type == "histogram":
                m = Metric(spec.name, spec.help, "histogram")
                for key, (buckets, total, count) in sorted(fam.histograms.items()):
                    base = _label_dict(labels, rw(key) if rw else key)
                    for le, c in buckets:
                        m.add_sample(spec.name + "_bucket", {**base, "le": _fmt_le(le)}, c)
                    m.add_sample(spec.name + "_sum", base, total)
                    m.add_sample(spec.name + "_count", base, count)
                out.append(m)
                continue
            if spec.type == "counter":
                m = Metric(spec.name[: -len("_total")], spec.help, "counter")
            else:
                # Info metrics are exposed as a gauge named *_info, the convention node_exporter and
                # kube-state-metrics use.
                m = Metric(spec.name, spec.help, "gauge")
            m.samples = _samples(spec.name, labels, fam.samples, rw)
            out.append(m)
        return out

    def series_count(self) -> int:
        """Number of exposition lines (samples) this set produces."""
        n = 0
        for fam in self._families.values():
            n += len(fam.samples)
            n += sum(len(b) + 2 for b, _, _ in fam.histograms.values())
        return n


_SAMPLE_TAIL = tuple(Sample._field_defaults[f] for f in Sample._fields[3:])
"""The defaults of the :class:`Sample` fields after ``name, labels, value`` (timestamp, exemplar...)."""


def _samples(
    name: str, names: tuple[str, ...], samples: dict[tuple[str, ...], float], rw: LabelRewrite | None
) -> list[Sample]:
    """One family's samples, what ``Metric.add_sample(name, labels, value)`` per sorted key would build.

    A history step exposes about 20,000 series: the common case (no rewriter, every label value ASCII, checked
    with one ``isascii`` over the joined values) builds the label dicts with one dict display per label count and the
    :class:`Sample` tuples in C (``tuple.__new__``), without a Python call per series. Keys were checked against
    ``names`` when added (:meth:`MetricSet.add`, :meth:`MetricSet.extend`), so they unpack to ``len(names)``.
    """
    keys = sorted(samples)
    dicts: Iterable[dict[str, str]]
    if rw is None and "".join(chain.from_iterable(keys)).isascii():
        width = len(names)
        if width == 1:
            (n0,) = names
            dicts = [{n0: a} for (a,) in keys]
        elif width == 2:
            n0, n1 = names
            dicts = [{n0: a, n1: b} for a, b in keys]
        elif width == 3:
            n0, n1, n2 = names
            dicts = [{n0: a, n1: b, n2: c} for a, b, c in keys]
        elif width == 4:
            n0, n1, n2, n3 = names
            dicts = [{n0: a, n1: b, n2: c, n3: d} for a, b, c, d in keys]
        else:
            dicts = map(dict, map(zip, repeat(names), keys))
    else:
        dicts = [_label_dict(names, rw(key) if rw else key) for key in keys]
    rows = zip(repeat(name), dicts, map(samples.__getitem__, keys), *map(repeat, _SAMPLE_TAIL))
    return list(map(tuple.__new__, repeat(Sample), rows))


def _label_dict(names: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    # isascii() is the cheap common case; anything else is checked for lone surrogates, which would make the
    # whole exposition fail to encode.
    return {n: v if v.isascii() else _clean_label(v) for n, v in zip(names, values, strict=True)}


def _fmt_le(le: float) -> str:
    if math.isinf(le):
        return "+Inf"
    return repr(float(le))
