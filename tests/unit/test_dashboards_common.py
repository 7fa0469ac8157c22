"""nomade.dashboards.common and .config: the grafanalib wrapper, its post-processing and the PromQL helpers."""

from __future__ import annotations

import json

import pytest
from grafanalib import core as g

from nomade.alerting.config import ConfigError, load_monitoring_config, monitoring_config_from_dict
from nomade.dashboards import common as c
from nomade.dashboards.config import GrafanaSettings


@pytest.fixture(scope="module")
def cfg():
    return load_monitoring_config(None)


def _small(cfg, **kw):
    f = c.Sel(cfg)
    panels = kw.pop(
        "panels",
        [
            c.row("First"),
            c.timeseries(
                "CPU",
                [c.query(f"rate(nomade_cpu_seconds_total{f(node=True)}[$__rate_interval])", "{{node}}")],
                unit="percentunit",
                min=0.0,
                max=0.85,
            ),
            c.stat("Pending", [f"sum(nomade_slurm_queue_cluster_jobs{f(state='pending')})"], unit="short"),
            c.bargauge("Used", ["nomade_filesystem_used_ratio"], unit="percentunit", max=1.0),
        ],
    )
    return c.dashboard(cfg, "unit-test", "Unit test", description="d", panels=panels, **kw)


# ---------------------------------------------------------------------------------------------------- metric names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("nomade_cpu_count", {"nomade_cpu_count"}),
        (
            'sum by (node, mode) (rate(nomade_cpu_seconds_total{mode!="idle",node=~"$node"}[$__rate_interval]))',
            {"nomade_cpu_seconds_total"},
        ),
        (
            "sum without (state) (nomade_slurm_queue_jobs) / on (cluster, partition) group_left (state) "
            "nomade_slurm_partition_cpus",
            {"nomade_slurm_queue_jobs", "nomade_slurm_partition_cpus"},
        ),
        (
            "cluster_partition:nomade_slurm_queue_backlog:ratio > 2",
            {"cluster_partition:nomade_slurm_queue_backlog:ratio"},
        ),
        (
            "histogram_quantile(0.9, sum by (le) "
            "(rate(nomade_slurm_job_cpu_efficiency_ratio_bucket[$__rate_interval])))",
            {"nomade_slurm_job_cpu_efficiency_ratio_bucket"},
        ),
        ('label_replace(nomade_gpu_info{name="a{b}"}, "x", "$1", "gpu", "(.*)")', {"nomade_gpu_info"}),
        ("nomade_filesystem_avail_bytes offset 1h - nomade_filesystem_avail_bytes", {"nomade_filesystem_avail_bytes"}),
        ("time() - nomade_cpu_boot_time_seconds", {"nomade_cpu_boot_time_seconds"}),
        ("sum(nomade_slurm_node_flag{flag='drain'}) or vector(0)", {"nomade_slurm_node_flag"}),
        ("topk(5, max by (job_id) (nomade_job_risk_score)) and bool 1e3", {"nomade_job_risk_score"}),
        ('count_values("v", nomade_gpu_performance_state)', {"nomade_gpu_performance_state"}),
        ("avg_over_time(nomade_cpu_busy_max_ratio[1h:5m])", {"nomade_cpu_busy_max_ratio"}),
        ("sum by (${cluster}) (up)", {"up"}),
        ("sum(nomade_cpu_count) by (node) > bool 2", {"nomade_cpu_count"}),
        ("max_over_time(nomade_cpu_count[5m] @ end())", {"nomade_cpu_count"}),
        ("1 + 2 * -3", set()),
    ],
)
def test_metric_names(expr, names):
    assert c.metric_names(expr) == names


def test_variable_metric_names():
    assert c.variable_metric_names('label_values(nomade_slurm_partition_cpus{cluster=~"$cluster"}, partition)') == {
        "nomade_slurm_partition_cpus"
    }
    assert c.variable_metric_names("label_values(nomade_collector_up, cluster)") == {"nomade_collector_up"}
    assert c.variable_metric_names("query_result(topk(3, nomade_cpu_count))") == {"nomade_cpu_count"}
    assert c.variable_metric_names("label_values(node)") == set()


def test_known_metric_names_include_catalog_recording_rules_and_scrape_series():
    from nomade.alerting.rules import RECORDING_RULE_NAMES
    from nomade.exporter.catalog import catalog_names

    known = c.known_metric_names()
    assert catalog_names() <= known
    assert set(RECORDING_RULE_NAMES) <= known
    assert "up" in known and "scrape_duration_seconds" in known
    assert "node_cpu_seconds_total" not in known  # node_exporter's, not ours


def test_unknown_metric_names_reports_expressions_and_variables(cfg):
    f = c.Sel(cfg)
    model = _small(
        cfg,
        panels=[c.stat("Bad", ["sum(nomade_no_such_metric) + nomade_cpu_count"], unit="short")],
        variables=[*c.standard_variables(cfg), c.query_variable("x", "not_a_metric", "y")],
    )
    assert c.unknown_metric_names(model) == {
        "sum(nomade_no_such_metric) + nomade_cpu_count": {"nomade_no_such_metric"},
        "label_values(not_a_metric, y)": {"not_a_metric"},
    }
    assert c.unknown_metric_names(_small(cfg)) == {}
    assert f() == '{cluster=~"$cluster"}'


# ---------------------------------------------------------------------------------------------------- rate windows


def test_rate_window_problems():
    assert c.rate_window_problems("rate(x[$__rate_interval])") == []
    assert c.rate_window_problems("increase(x[$__range])") == []
    assert c.rate_window_problems('sum(irate(x{a="b"}[$__rate_interval])) / rate(y[$__rate_interval])') == []
    assert len(c.rate_window_problems("rate(x[5m])")) == 1
    assert len(c.rate_window_problems("rate(x[$__range])")) == 1  # only increase may span the range
    assert len(c.rate_window_problems("sum(rate(x[1m])) + increase(y[1h])")) == 2
    assert "without a range window" in c.rate_window_problems("rate(x)")[0]
    assert c.rate_window_problems("avg_over_time(x[5m])") == []  # not a counter function


def test_dashboard_refuses_fixed_rate_window(cfg):
    with pytest.raises(ValueError, match=r"window \[5m\] is not \$__rate_interval"):
        _small(cfg, panels=[c.timeseries("r", ["rate(nomade_cpu_seconds_total[5m])"], unit="short")])


def test_render_expr():
    expr = 'sum(rate(x{cluster=~"$cluster",node=~"${node}"}[$__rate_interval])) and increase(y[$__range])'
    assert c.render_expr(expr, variables={"node": "c1"}) == (
        'sum(rate(x{cluster=~".*",node=~"c1"}[1m])) and increase(y[1h])'
    )
    assert c.render_expr("rate(x[$__rate_interval])", rate_interval="20s") == "rate(x[20s])"


# ---------------------------------------------------------------------------------------------------- selectors


def test_sel(cfg):
    f = c.Sel(cfg)
    assert f(partition=True, node=True, state="down") == (
        '{cluster=~"$cluster",partition=~"$partition",node=~"$node",state="down"}'
    )
    assert f(state="!idle", mode="~a|b", fs="!~nfs.*") == '{cluster=~"$cluster",state!="idle",mode=~"a|b",fs!~"nfs.*"}'
    site = monitoring_config_from_dict({"monitoring": {"cluster_label": "site"}})
    assert c.Sel(site)() == '{site=~"$cluster"}'
    assert c.Sel(cfg, cluster=False)(node=True) == '{node=~"$node"}'


def test_steps():
    assert c.steps("green", (0.85, "orange"), (0.95, "red")) == [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.85},
        {"color": "red", "value": 0.95},
    ]
    with pytest.raises(ValueError, match="increase"):
        c.steps("green", (0.95, "red"), (0.85, "orange"))


# ---------------------------------------------------------------------------------------------------- the model


def test_model_is_current(cfg):
    m = _small(cfg)
    assert m["schemaVersion"] == c.SCHEMA_VERSION == 39
    assert m["uid"] == "nomade-unit-test"
    assert m["id"] is None
    assert m["refresh"] == "1m" and m["time"] == {"from": "now-6h", "to": "now"}
    assert m["tags"] == ["nomade"]
    for legacy in ("rows", "style", "sharedCrosshair", "hideControls", "__inputs", "gnetId"):
        assert legacy not in m
    types = [p["type"] for p in m["panels"]]
    assert types == ["row", "timeseries", "stat", "bargauge"]
    ts, st, bg = m["panels"][1:]
    # floats survive (grafanalib's TimeSeries accepts only integer bounds)
    assert ts["fieldConfig"]["defaults"]["min"] == 0.0 and ts["fieldConfig"]["defaults"]["max"] == 0.85
    assert ts["fieldConfig"]["defaults"]["unit"] == "percentunit"
    # bargauge: current options, none of grafanalib's Angular-era fieldOptions
    assert "fieldOptions" not in bg["options"]
    assert bg["options"]["reduceOptions"] == {"calcs": ["lastNotNull"], "fields": "", "values": False}
    assert bg["fieldConfig"]["defaults"]["max"] == 1.0
    for p in (ts, st, bg):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for legacy in ("span", "error", "height", "minSpan", "cacheTimeout", "maxDataPoints", "__nomade__"):
            assert legacy not in p
        for t in p["targets"]:
            assert t["datasource"] == c.DATASOURCE
            assert set(t) <= {"datasource", "editorMode", "expr", "format", "instant", "legendFormat", "range", "refId"}
    assert [t["refId"] for t in ts["targets"]] == ["A"]
    assert ts["targets"][0]["range"] is True and ts["targets"][0]["instant"] is False


def test_variables(cfg):
    m = _small(cfg)
    by_name = {v["name"]: v for v in m["templating"]["list"]}
    assert list(by_name) == ["datasource", "cluster", "partition", "node"]
    ds = by_name["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"] == {"selected": True, "text": "Prometheus", "value": "nomade-prometheus"}
    assert by_name["cluster"]["query"] == "label_values(nomade_collector_up, cluster)"
    assert by_name["partition"]["query"] == 'label_values(nomade_slurm_partition_cpus{cluster=~"$cluster"}, partition)'
    node = by_name["node"]
    assert node["query"] == (
        'label_values(nomade_slurm_node_partition_info{cluster=~"$cluster",partition=~"$partition"}, node)'
    )
    assert "allValue" not in node  # "All" = the listed nodes of the selected partitions
    assert by_name["cluster"]["allValue"] == ".*"
    for v in (by_name["cluster"], by_name["partition"], node):
        assert v["datasource"] == c.DATASOURCE and v["includeAll"] and v["multi"] and v["refresh"] == 2
    other = c.standard_variables(cfg, partition=False, node_metric="nomade_cpu_count")
    assert [t.name for t in other] == ["datasource", "cluster", "node"]
    assert other[-1].query == 'label_values(nomade_cpu_count{cluster=~"$cluster"}, node)'
    assert other[-1].allValue == ".*"


def test_links(cfg):
    m = _small(cfg)
    nav = m["links"][0]
    assert nav["type"] == "dashboards" and nav["tags"] == ["nomade"] and nav["includeVars"] and nav["keepTime"]
    link = c.dashboard_link(cfg, "storage", "Storage")
    assert link["url"] == "/d/nomade-storage?${__url_time_range}&${__all_variables}"
    dl = c.data_link(cfg, "node-resources", "n", params="var-node=${__data.fields.node}")
    assert dl["url"].endswith("&var-node=${__data.fields.node}") and dl["url"].startswith("/d/nomade-node-resources?")


def test_layout_wraps_rows_and_never_overlaps(cfg):
    panels = [
        c.timeseries("a", ["nomade_cpu_count"], unit="short", width=16),
        c.timeseries("b", ["nomade_cpu_count"], unit="short", width=16, height=5),  # does not fit beside a
        c.stat("c", ["nomade_cpu_count"], unit="short"),
        c.row("r"),
        c.table("d", ["nomade_cpu_count"], unit="short"),
    ]
    m = _small(cfg, panels=panels)
    pos = [(p["title"], p["id"], p["gridPos"]) for p in m["panels"]]
    assert pos == [
        ("a", 1, {"h": 8, "w": 16, "x": 0, "y": 0}),
        ("b", 2, {"h": 5, "w": 16, "x": 0, "y": 8}),
        ("c", 3, {"h": 4, "w": 4, "x": 16, "y": 8}),
        ("r", 4, {"h": 1, "w": 24, "x": 0, "y": 13}),
        ("d", 5, {"h": 8, "w": 24, "x": 0, "y": 14}),
    ]
    with pytest.raises(ValueError, match="grid"):
        c.stat("wide", ["nomade_cpu_count"], unit="short", width=25)


def test_every_factory_requires_a_unit_and_a_query():
    for factory in (c.timeseries, c.stat, c.table, c.bargauge, c.heatmap, c.state_timeline):
        with pytest.raises(ValueError, match="unit"):
            factory("t", ["nomade_cpu_count"], unit="")
        with pytest.raises(ValueError, match="query"):
            factory("t", [], unit="short")


def test_all_panel_types_emitted(cfg):
    panels = [
        c.timeseries("ts", ["nomade_cpu_count"], unit="short"),
        c.stat("st", ["nomade_cpu_count"], unit="short"),
        c.table("tb", [c.query("nomade_cpu_count", instant=True, table=True)], unit="short"),
        c.bargauge("bg", ["nomade_cpu_count"], unit="short"),
        c.heatmap(
            "hm",
            [
                c.query(
                    "sum by (le) (increase(nomade_slurm_job_cpu_efficiency_ratio_bucket[$__rate_interval]))", "{{le}}"
                )
            ],
            unit="short",
            y_unit="percentunit",
        ),
        c.state_timeline("stl", ["nomade_collector_up"], unit="none", mappings=c.value_mapping({0: ("down", "red")})),
    ]
    m = _small(cfg, panels=panels)
    assert [p["type"] for p in m["panels"]] == ["timeseries", "stat", "table", "bargauge", "heatmap", "state-timeline"]
    hm = m["panels"][4]
    assert hm["targets"][0]["format"] == "heatmap" and hm["options"]["calculate"] is False
    assert hm["options"]["yAxis"]["unit"] == "percentunit"
    assert "cards" not in hm and "xAxis" not in hm  # grafanalib's legacy heatmap keys are gone
    tb = m["panels"][2]
    assert tb["targets"][0]["format"] == "table" and tb["targets"][0]["instant"] is True
    stl = m["panels"][5]
    assert stl["fieldConfig"]["defaults"]["mappings"] == [
        {"options": {"0": {"color": "red", "index": 0, "text": "down"}}, "type": "value"}
    ]


def test_model_problems_detects_legacy_and_missing_units(cfg):
    m = _small(cfg)
    assert c.model_problems(m) == []
    bad = json.loads(json.dumps(m))
    bad["panels"][1]["type"] = "graph"
    bad["panels"][2]["fieldConfig"]["defaults"].pop("unit")
    bad["panels"][3]["datasource"] = "Prometheus"
    bad["panels"][3]["id"] = 2
    bad["schemaVersion"] = 12
    problems = "\n".join(c.model_problems(bad))
    assert "type 'graph' is not a current panel type" in problems
    assert "panel 'Pending': no unit" in problems
    assert "panel 'Used': data source is not ${datasource}" in problems
    assert "duplicate panel id 2" in problems
    assert "schemaVersion 12" in problems


def test_foreign_grafanalib_panel_is_refused(cfg):
    with pytest.raises(ValueError, match="not made by nomade.dashboards.common"):
        _small(cfg, panels=[g.Graph(title="legacy", targets=[g.Target(expr="nomade_cpu_count", refId="A")])])


def test_uid_is_stable_and_bounded(cfg):
    assert c.dashboard_uid(cfg, "storage") == "nomade-storage"
    long = monitoring_config_from_dict({"grafana": {"uid_prefix": "a-very-long-site-prefix-xx-"}})
    uid = c.dashboard_uid(long, "node-resources")
    assert len(uid) == 40 and uid == c.dashboard_uid(long, "node-resources")
    assert uid != c.dashboard_uid(long, "node-resource")
    with pytest.raises(ValueError, match="key"):
        c.dashboard_uid(cfg, "bad key")


def test_render_is_deterministic_and_sorted(cfg):
    a = c.render_dashboard(_small(cfg))
    b = c.render_dashboard(_small(cfg))
    assert a == b and a.endswith("}\n")
    assert '"NØMADE dashboards"' in a  # UTF-8 kept
    keys = list(json.loads(a))
    assert keys == sorted(keys)


# ---------------------------------------------------------------------------------------------------- config


def test_grafana_settings_defaults_and_toml():
    s = GrafanaSettings.from_toml({})
    assert s == GrafanaSettings()
    s = GrafanaSettings.from_toml({"datasource_uid": "prom-1", "tags": ["hpc", "nomade"], "refresh": "30s"})
    assert s.datasource_uid == "prom-1" and s.tags == ("hpc", "nomade") and s.refresh == "30s"
    cfg = monitoring_config_from_dict({"grafana": {"folder": "HPC", "editable": False, "time_from": "now-24h"}})
    assert cfg.grafana.folder == "HPC" and cfg.grafana.editable is False
    m = _small(cfg)
    assert m["editable"] is False and m["time"]["from"] == "now-24h"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"datasource": "x"}, "unknown key 'datasource'"),
        ({"refresh": "soon"}, "refresh"),
        ({"datasource_uid": "a" * 41}, "datasource_uid"),
        ({"datasource_uid": "has space"}, "datasource_uid"),
        ({"tags": []}, "tags"),
        ({"tags": "nomade"}, "tags"),
        ({"editable": "yes"}, "editable"),
        ({"folder": 3}, "folder"),
        ({"time_from": "yesterday"}, "time_from"),
    ],
)
def test_grafana_settings_errors(table, message):
    with pytest.raises(ConfigError, match=message):
        monitoring_config_from_dict({"grafana": table})
