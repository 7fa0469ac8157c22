import math
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nomade.exporter.metrics import MetricSet, MetricSpec

SPECS = (
    MetricSpec("nomade_test_jobs", "gauge", "Jobs.", ("partition", "state")),
    MetricSpec("nomade_test_events_total", "counter", "Events.", ("kind",)),
    MetricSpec("nomade_test_reason_info", "info", "Reasons.", ("node", "reason")),
    MetricSpec("nomade_test_efficiency_ratio", "histogram", "Efficiency.", ("partition",), "ratio"),
)


def expose(ms: MetricSet) -> str:
    class C:
        def collect(self):
            return ms.families()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())
    return generate_latest(reg).decode()


@pytest.mark.parametrize(
    "spec",
    [
        ("nomade_x", "counter", "h"),
        ("nomade_x_total", "gauge", "h"),
        ("nomade_x", "info", "h"),
        ("other_x", "gauge", "h"),
    ],
)
def test_spec_conventions_are_enforced(spec):
    with pytest.raises(ValueError):
        MetricSpec(*spec)


def test_undeclared_names_and_labels_are_refused():
    ms = MetricSet(SPECS)
    with pytest.raises(KeyError):
        ms.add("nomade_unknown", 1)
    with pytest.raises(ValueError):
        ms.add("nomade_test_jobs", 1, partition="a")


def test_none_and_nan_are_absent_not_zero():
    ms = MetricSet(SPECS)
    ms.add("nomade_test_jobs", None, partition="a", state="RUNNING")
    ms.add("nomade_test_jobs", math.nan, partition="b", state="RUNNING")
    ms.add("nomade_test_jobs", 0, partition="c", state="RUNNING")
    assert ms.samples("nomade_test_jobs") == {("c", "RUNNING"): 0.0}


def test_counters_accumulate_gauges_overwrite():
    ms = MetricSet(SPECS)
    ms.add("nomade_test_events_total", 2, kind="a")
    ms.add("nomade_test_events_total", 3, kind="a")
    ms.add("nomade_test_jobs", 2, partition="p", state="PENDING")
    ms.add("nomade_test_jobs", 5, partition="p", state="PENDING")
    assert ms.value("nomade_test_events_total", kind="a") == 5
    assert ms.value("nomade_test_jobs", partition="p", state="PENDING") == 5


def test_exposition_format():
    ms = MetricSet(SPECS)
    ms.add("nomade_test_events_total", 7, kind="oom")
    ms.info("nomade_test_reason_info", node="c03", reason="x")
    ms.histogram("nomade_test_efficiency_ratio", [(0.5, 1), (1.0, 3), (math.inf, 4)], 2.5, 4, partition="p")
    text = expose(ms)
    assert "# TYPE nomade_test_events_total counter" in text
    assert 'nomade_test_events_total{kind="oom"} 7.0' in text
    assert 'nomade_test_reason_info{node="c03",reason="x"} 1.0' in text
    assert 'nomade_test_efficiency_ratio_bucket{le="+Inf",partition="p"} 4.0' in text
    assert 'nomade_test_efficiency_ratio_count{partition="p"} 4.0' in text
    assert ms.series_count() == 2 + 5


NASTY = [
    'disk "sda" failing, replace|ticket 42',
    "back\\slash",
    "new\nline",
    "bad \udcff\udcfe bytes",  # surrogateescape-decoded non-UTF-8
    "caf\ufffd",  # already replaced by the runner
    "",
]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make test installs it)")
def test_hostile_label_values_pass_promtool():
    ms = MetricSet(SPECS)
    for i, reason in enumerate(NASTY):
        ms.info("nomade_test_reason_info", node=f"n{i}", reason=reason)
    text = expose(ms)
    res = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'reason="disk \\"sda\\" failing, replace|ticket 42"' in text
    assert 'reason="new\\nline"' in text
    assert 'reason="back\\\\slash"' in text


def test_extend_sets_many_samples_and_checks_shapes():
    ms = MetricSet(SPECS)
    ms.extend("nomade_test_jobs", {("a", "RUNNING"): 3, ("b", "PENDING"): math.nan})
    assert ms.samples("nomade_test_jobs") == {("a", "RUNNING"): 3.0}
    with pytest.raises(ValueError):
        ms.extend("nomade_test_jobs", {("a",): 1})
    with pytest.raises(ValueError):
        ms.extend("nomade_test_events_total", {("x",): 1})
    with pytest.raises(KeyError):
        ms.extend("nomade_nope", {})


def test_surrogates_are_cleaned_at_exposition():
    ms = MetricSet(SPECS)
    ms.info("nomade_test_reason_info", node="n1", reason="bad \udcff byte")
    assert "bad \ufffd byte" in expose(ms)


def _reference_samples(ms: MetricSet, rewriter=None):
    """families() as Metric.add_sample per sorted key would build them (the behaviour before the fast path)."""
    from nomade.exporter.metrics import _label_dict

    out = []
    for fam in ms._families.values():
        spec = fam.spec
        rw = rewriter(spec) if rewriter is not None else None
        for key, v in sorted(fam.samples.items()):
            labels = _label_dict(spec.labels, rw(key) if rw else key)
            out.append((spec.name, labels, v, None, None, None))
    return out


@pytest.mark.parametrize("width", range(7))
@pytest.mark.parametrize("rewrite", [False, True])
@pytest.mark.parametrize("value", ["plain", "naïve", "bad\udcff"])
def test_families_match_add_sample_for_every_label_count(width, rewrite, value):
    """The per-width fast paths, the non-ASCII fallback and the rewriter give what add_sample would."""
    from prometheus_client.samples import Sample

    from nomade.exporter import metrics

    names = tuple(f"l{i}" for i in range(width))
    specs = (
        MetricSpec("nomade_w_gauge", "gauge", "G.", names),
        MetricSpec("nomade_w_total", "counter", "C.", names),
        MetricSpec("nomade_w_info", "info", "I.", names),
    )
    ms = MetricSet(specs)
    for i in (3, 1, 2, 10):
        labels = {n: f"{value}{i}-{k}" for k, n in enumerate(names)}
        ms.add("nomade_w_gauge", i, **labels)
        ms.add("nomade_w_total", i, **labels)
        ms.add("nomade_w_total", 0.5, **labels)
        ms.info("nomade_w_info", **labels)

    def rewriter(spec):
        return (lambda key: tuple(v.upper() for v in key)) if spec.type != "info" else None

    old = metrics.label_rewriter()
    metrics.set_label_rewriter(rewriter if rewrite else None)
    try:
        fams = ms.families()
    finally:
        metrics.set_label_rewriter(old)
    got = [s for m in fams for s in m.samples]
    assert got == _reference_samples(ms, rewriter if rewrite else None)
    assert all(type(s) is Sample for s in got)
    dicts = [s.labels for s in got]
    assert len({id(d) for d in dicts}) == len(dicts)  # a fresh dict per sample (callers add labels in place)
    assert [m.name for m in fams] == ["nomade_w_gauge", "nomade_w", "nomade_w_info"]
    assert [m.type for m in fams] == ["gauge", "counter", "gauge"]
