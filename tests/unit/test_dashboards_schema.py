"""Every generated dashboard against Grafana's published schema, the metric catalog and the wrapper's rules.

The JSON Schemas are generated from ``@grafana/schema`` (Grafana's CUE kinds as TypeScript) by
``tests/grafana_schema.py`` into the git-ignored ``tests/schemas/.cache``; building them needs node/npm and, the first
time, the npm registry. Without them these tests fail (they are the issue's schema check), they never skip.
"""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest
from grafana_schema import SchemaUnavailable, load_schema_sets
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from nomade.alerting.config import load_monitoring_config, monitoring_config_from_dict
from nomade.dashboards import DASHBOARDS, build_all, file_name
from nomade.dashboards import common as c

CFG = load_monitoring_config(None)
MODELS = build_all(CFG)


@pytest.fixture(scope="module")
def schema_sets():
    try:
        return load_schema_sets()
    except SchemaUnavailable as exc:
        pytest.fail(f"cannot build Grafana's JSON Schema: {exc}")


def _errors(schema: dict, instance: object) -> list[str]:
    v = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in v.iter_errors(instance)]


def test_registry_builds_every_dashboard():
    assert list(MODELS) == [file_name(key) for key, _ in DASHBOARDS]
    assert len(MODELS) == 10
    uids = [m["uid"] for m in MODELS.values()]
    assert uids == [c.dashboard_uid(CFG, key) for key, _ in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    titles = [m["title"] for m in MODELS.values()]
    assert len(set(titles)) == len(titles)


def test_schema_sets_are_the_pinned_releases(schema_sets):
    assert [s.grafana for s in schema_sets] == ["11.6", "13.2"]
    for s in schema_sets:
        assert s.package_version.startswith(s.grafana + ".")
        assert s.dashboard["$ref"] == "#/definitions/Dashboard"
        assert "schemaVersion" in s.dashboard["definitions"]["Dashboard"]["required"]
        assert set(s.options) == {"timeseries", "stat", "table", "bargauge", "heatmap", "state-timeline"}
        # the panels whose plugin defines field-config options (stat and bargauge have none)
        assert set(s.field_config) == {"timeseries", "table", "heatmap", "state-timeline"}


@pytest.mark.parametrize("name", list(MODELS))
def test_dashboard_validates_against_grafana_schema(name, schema_sets):
    model = MODELS[name]
    for s in schema_sets:
        assert _errors(s.dashboard, model) == [], f"Grafana {s.grafana} ({s.package_version})"


@pytest.mark.parametrize("name", list(MODELS))
def test_panel_options_and_field_config_validate(name, schema_sets):
    problems = []
    for s in schema_sets:
        for p in c.iter_panels(MODELS[name]):
            t = p["type"]
            for e in _errors(s.options[t], p["options"]):
                problems.append(f"{s.grafana} {p['title']!r} options {e}")
            if t in s.field_config:
                for e in _errors(s.field_config[t], p["fieldConfig"]["defaults"].get("custom", {})):
                    problems.append(f"{s.grafana} {p['title']!r} fieldConfig.defaults.custom {e}")
    assert problems == []


def test_schema_rejects_grafanalib_legacy_output(schema_sets):
    """Negative control: grafanalib's own JSON (what the wrapper post-processes) fails the same schema."""
    legacy = g.Dashboard(
        title="legacy",
        panels=[
            g.BarGauge(title="b", targets=[g.Target(expr="nomade_cpu_count", refId="A")], gridPos=g.GridPos(8, 8, 0, 0))
        ],
    ).auto_panel_ids()
    model = json.loads(json.dumps(legacy.to_json_data(), cls=DashboardEncoder))
    for s in schema_sets:
        errors = "\n".join(_errors(s.dashboard, model))
        assert "'rows'" in errors and "'sharedCrosshair'" in errors and "'style'" in errors
        assert "timepicker: Additional properties are not allowed ('time_options' was unexpected)" in errors
        bargauge_options = model["panels"][0]["options"]
        assert any("fieldOptions" in e for e in _errors(s.options["bargauge"], bargauge_options))
    # and a current model with an unknown key is rejected too (the generated schema is closed)
    extra = dict(MODELS[file_name("overview")], style="dark")
    for s in schema_sets:
        assert any("'style' was unexpected" in e for e in _errors(s.dashboard, extra))


@pytest.mark.parametrize("name", list(MODELS))
def test_rules_of_the_wrapper_hold(name):
    model = MODELS[name]
    assert c.model_problems(model) == []
    panels = c.iter_panels(model)
    assert panels, "a dashboard without panels"
    for p in panels:
        assert p["type"] in c.CURRENT_PANEL_TYPES
        assert p["type"] not in ("graph", "singlestat", "table-old")
        assert p["fieldConfig"]["defaults"]["unit"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert c.rate_window_problems(t["expr"]) == []
    names = [v["name"] for v in model["templating"]["list"]]
    assert names[:2] == ["datasource", "cluster"]
    assert model["links"][0]["type"] == "dashboards" and model["links"][0]["tags"] == ["nomade"]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_metric_name_is_in_the_catalog_or_a_recording_rule(name):
    assert c.unknown_metric_names(MODELS[name]) == {}


def test_exprs_use_rate_interval_somewhere():
    exprs = [e for m in MODELS.values() for e in c.dashboard_exprs(m)]
    assert any("[$__rate_interval]" in e for e in exprs)
    assert len(exprs) > 100


def test_links_between_dashboards_point_to_existing_uids():
    uids = {m["uid"] for m in MODELS.values()}
    found = 0
    for m in MODELS.values():
        for p in c.iter_panels(m):
            links = list(p.get("links", [])) + list(p["fieldConfig"]["defaults"].get("links", []))
            for link in links:
                url = link["url"]
                if url.startswith("/d/"):
                    found += 1
                    assert url[3:].split("?")[0].split("/")[0] in uids, url
    assert found >= 10


def test_build_is_deterministic_and_follows_the_config():
    first = {k: c.render_dashboard(v) for k, v in build_all(load_monitoring_config(None)).items()}
    second = {k: c.render_dashboard(v) for k, v in build_all(load_monitoring_config(None)).items()}
    assert first == second
    site = monitoring_config_from_dict(
        {"monitoring": {"cluster_label": "site"}, "grafana": {"uid_prefix": "hpc-", "refresh": "30s"}}
    )
    other = build_all(site)
    assert [m["uid"] for m in other.values()] == [f"hpc-{key}" for key, _ in DASHBOARDS]
    overview = other[file_name("overview")]
    assert overview["refresh"] == "30s"
    cluster_var = next(v for v in overview["templating"]["list"] if v["name"] == "cluster")
    assert cluster_var["query"] == "label_values(nomade_collector_up, site)"
    assert all('site=~"$cluster"' in e for e in c.dashboard_exprs(overview))


def test_thresholds_follow_the_config():
    cfg = monitoring_config_from_dict(
        {"monitoring": {"thresholds": {"filesystem_warning_ratio": 0.7, "filesystem_critical_ratio": 0.8}}}
    )
    storage = build_all(cfg)[file_name("storage")]
    used = next(p for p in c.iter_panels(storage) if p["title"] == "Used share (df Use%)")
    assert used["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.7},
        {"color": "red", "value": 0.8},
    ]
    default = next(p for p in c.iter_panels(MODELS[file_name("storage")]) if p["title"] == "Used share (df Use%)")
    assert [s["value"] for s in default["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0.85, 0.95]


def test_every_query_parses_with_promtool(tmp_path):
    """Each expression, with Grafana's variables expanded, is a valid PromQL expression for Prometheus' own parser."""
    from backfill import PROMTOOL, require_binaries

    require_binaries(PROMTOOL)
    exprs = sorted({e for m in MODELS.values() for e in c.dashboard_exprs(m)})
    for m in MODELS.values():  # the metric selectors of the label_values() variables
        for q in c.dashboard_variable_queries(m):
            exprs.append(q[len("label_values(") :].rsplit(",", 1)[0])
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": c.render_expr(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "exprs.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))  # JSON is YAML
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout
