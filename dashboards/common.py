"""Shared factories of the NØMADE dashboards: a thin wrapper over grafanalib that emits Grafana's current JSON model.

grafanalib 0.7.1 builds the structure (:class:`grafanalib.core.Dashboard`, ``Templating``/``Template``, ``Target``,
``RowPanel``, ``GridPos``, ``DashboardLink`` and the panel classes ``TimeSeries``, ``Stat``, ``Table``, ``BarGauge``,
``Heatmap``, ``StateTimeline``) but emits some legacy structure: ``schemaVersion`` 12, the Angular-era ``options``
of ``bargauge`` (``fieldOptions``) and ``heatmap`` (``cards``, ``xAxis``...), integer-only ``min``/``max``, keys that
the current schema no longer has (``span``, ``error``, ``rows``, ``style``...) and data sources given by name.
:func:`dashboard` therefore post-processes grafanalib's JSON: the panel's ``options`` and ``fieldConfig`` are
replaced by the current ones built here, keys outside Grafana's dashboard schema are dropped, every data source
becomes ``{"type": "prometheus", "uid": "${datasource}"}`` and ``schemaVersion`` becomes :data:`SCHEMA_VERSION`.
The result validates against the JSON Schema generated from ``@grafana/schema`` (see ``tests/schemas/``).

Writing a dashboard module (G3's overview/queue/nodes/storage/node_resources, G4's gpus/nfs/jobs_risk/licenses/
health)::

    from nomade.dashboards import common as c

    def build(cfg: MonitoringConfig) -> dict:
        f = c.Sel(cfg)                                   # label matchers of the dashboard variables
        return c.dashboard(
            cfg, "storage", "NØMADE / Storage",
            description="...",
            panels=[
                c.row("Usage"),
                c.timeseries(
                    "Used share",
                    [c.query(f"nomade_filesystem_used_ratio{f(node=True)}", "{{node}} {{mountpoint}}")],
                    unit="percentunit", min=0.0, max=1.0,
                    thresholds=c.steps("green", (0.85, "orange"), (0.95, "red")), width=12,
                ),
                ...
            ],
            variables=c.standard_variables(cfg, node_metric="nomade_filesystem_size_bytes"),
        )

Every panel factory requires ``unit`` (a Grafana unit id: ``bytes``, ``s``, ``percentunit``, ``short``,
``suffix: GB/day``...), so no panel is left without one. Panels are laid out left to right on Grafana's 24-column
grid in list order (``width``/``height`` in grid units), a :func:`row` starts a new line; ids are 1, 2, 3... in list
order. PromQL helpers (:func:`metric_names`, :func:`dashboard_exprs`, :func:`unknown_metric_names`,
:func:`render_expr`, :func:`rate_window_problems`) let the tests check every query against the metric catalog and
run it against a real Prometheus.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attr
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

if TYPE_CHECKING:  # the configuration imports this package's config module; no import cycle at run time
    from nomade.alerting.config import MonitoringConfig

__all__ = [
    "CURRENT_PANEL_TYPES",
    "DATASOURCE",
    "PROMETHEUS_SCRAPE_SERIES",
    "DATASOURCE_VARIABLE",
    "SCHEMA_VERSION",
    "Sel",
    "bargauge",
    "column_override",
    "dashboard",
    "dashboard_exprs",
    "dashboard_link",
    "dashboard_uid",
    "dashboard_url",
    "dashboard_variable_queries",
    "data_link",
    "heatmap",
    "iter_panels",
    "known_metric_names",
    "metric_names",
    "model_problems",
    "query",
    "query_variable",
    "rate_window_problems",
    "render_dashboard",
    "render_expr",
    "row",
    "standard_variables",
    "stat",
    "state_timeline",
    "steps",
    "table",
    "timeseries",
    "unknown_metric_names",
    "value_mapping",
    "variable_metric_names",
]

SCHEMA_VERSION = 39
"""Dashboard ``schemaVersion`` written: Grafana 10.3-11's model; newer Grafana migrates it on load, never older ones."""

DATASOURCE_VARIABLE = "datasource"
"""Name of the data-source variable; every panel, target and query variable uses ``${datasource}``."""

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}
"""The data-source reference of every panel, target and query variable."""

CURRENT_PANEL_TYPES = frozenset({"timeseries", "stat", "table", "bargauge", "heatmap", "state-timeline"})
"""Panel types the factories emit (besides ``row``); never ``graph``, ``singlestat`` or ``table-old``."""

GRID_WIDTH = 24
"""Columns of Grafana's dashboard grid."""

# Keys of the dashboard JSON model that Grafana's schema (@grafana/schema raw/dashboard/x, the CUE dashboard kind)
# defines; grafanalib's other keys (``rows``, ``style``, ``sharedCrosshair``, ``hideControls``, ``__inputs``...) are
# legacy and dropped.
_DASHBOARD_KEYS = frozenset(
    {
        "annotations",
        "description",
        "editable",
        "fiscalYearStartMonth",
        "graphTooltip",
        "id",
        "links",
        "liveNow",
        "panels",
        "refresh",
        "schemaVersion",
        "tags",
        "templating",
        "time",
        "timepicker",
        "timezone",
        "title",
        "uid",
        "version",
        "weekStart",
    }
)
_PANEL_KEYS = frozenset(
    {
        "datasource",
        "description",
        "fieldConfig",
        "gridPos",
        "hideTimeOverride",
        "id",
        "interval",
        "links",
        "maxPerRow",
        "options",
        "repeat",
        "repeatDirection",
        "targets",
        "timeFrom",
        "timeShift",
        "title",
        "transformations",
        "transparent",
        "type",
    }
)
_ROW_KEYS = frozenset({"collapsed", "gridPos", "id", "panels", "title", "type"})
_VARIABLE_KEYS = frozenset(
    {
        "allValue",
        "current",
        "datasource",
        "description",
        "hide",
        "includeAll",
        "label",
        "multi",
        "name",
        "options",
        "query",
        "refresh",
        "regex",
        "skipUrlSync",
        "sort",
        "type",
    }
)
_TARGET_KEYS = ("datasource", "editorMode", "expr", "format", "instant", "interval", "legendFormat", "range", "refId")
_PRIVATE = "__nomade__"  # extraJson key carrying the current options/fieldConfig through grafanalib's encoder

_HIDE_FROM = {"legend": False, "tooltip": False, "viz": False}

# --------------------------------------------------------------------------------------------------------------
# Queries


def query(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False, ref_id: str = "", interval: str = ""
) -> g.Target:
    """A Prometheus query of a panel (grafanalib :class:`~grafanalib.core.Target`).

    Args:
        expr: PromQL; use ``$__rate_interval`` as the window of ``rate``/``irate``/``increase`` (checked by
            :func:`dashboard`) and the variables' matchers of :class:`Sel`.
        legend: legend template (``{{node}}``).
        instant: instant query (tables, stats of the current value) instead of a range query.
        table: ``format: table`` (one column per label; for table panels).
        ref_id: query id; the panel factories assign A, B, C... when empty.
        interval: minimum step of this query (Grafana duration), empty for the panel's.

    """
    return g.Target(
        expr=expr,
        legendFormat=legend,
        instant=instant,
        format="table" if table else "time_series",
        refId=ref_id,
        interval=interval,
        datasource=DATASOURCE,
    )


class Sel:
    """Label matchers of the dashboard variables, in braces, for building selectors.

    ``Sel(cfg)()`` is ``{cluster=~"$cluster"}`` (the cluster label name is ``cfg.cluster_label``);
    ``Sel(cfg)(partition=True, node=True, state="down")`` adds ``partition=~"$partition"``, ``node=~"$node"`` and
    ``state="down"``; a value starting with ``~`` or ``!`` gives ``=~``/``!=`` (``state="!idle"`` → ``state!="idle"``,
    ``"!~a|b"`` → ``!~``). Variables with "All" selected expand to ``.*``, which also matches series without the
    label, so single-cluster sites without a cluster label see their data.
    """

    def __init__(self, cfg: MonitoringConfig, *, cluster: bool = True) -> None:
        """Remember the cluster label name (``cluster=False`` leaves the cluster matcher out)."""
        self.cluster_label = cfg.cluster_label
        self.cluster = cluster

    def __call__(self, *, partition: bool = False, node: bool = False, **fixed: str) -> str:
        """Return the matchers in braces (``{...}``), variables first then ``fixed`` labels in the given order."""
        parts = []
        if self.cluster:
            parts.append(f'{self.cluster_label}=~"$cluster"')
        if partition:
            parts.append('partition=~"$partition"')
        if node:
            parts.append('node=~"$node"')
        for label, value in fixed.items():
            op = "="
            for prefix in ("!~", "!", "~"):
                if value.startswith(prefix):
                    op = {"!~": "!~", "!": "!=", "~": "=~"}[prefix]
                    value = value[len(prefix) :]
                    break
            parts.append(f'{label}{op}"{value}"')
        return "{" + ",".join(parts) + "}"


# --------------------------------------------------------------------------------------------------------------
# Variables


def _all_current() -> dict[str, Any]:
    return {"selected": True, "text": ["All"], "value": ["$__all"]}


def query_variable(
    name: str,
    metric_selector: str,
    label: str,
    *,
    title: str | None = None,
    include_all: bool = True,
    all_value: str | None = ".*",
    multi: bool = True,
) -> g.Template:
    """A query variable ``label_values(metric_selector, label)`` on the dashboard's data source.

    Args:
        name: variable name (``$name`` in queries).
        metric_selector: metric with optional matchers, e.g. ``nomade_slurm_partition_cpus{cluster=~"$cluster"}``;
            the metric must be in the catalog (checked by :func:`variable_metric_names` in the tests).
        label: label whose values are offered.
        title: label shown in the variable bar (default: ``name`` capitalised).
        include_all: offer "All".
        all_value: what "All" expands to: ``.*`` (default; also matches series without the label) or ``None``
            (Grafana joins the listed values into ``a|b|c``: use it when the list is itself filtered by another
            variable, e.g. the nodes of the selected partitions).
        multi: allow several values.

    """
    q = f"label_values({metric_selector}, {label})"
    return g.Template(
        name=name,
        query=q,
        label=title or name.capitalize(),
        dataSource=DATASOURCE,
        includeAll=include_all,
        allValue=all_value if include_all else None,
        multi=multi,
        refresh=2,  # on time range change: nodes and partitions come and go
        sort=1,  # alphabetical ascending
        regex="",
        default="$__all" if include_all else None,
    )


def _datasource_variable(cfg: MonitoringConfig) -> g.Template:
    t = g.Template(
        name=DATASOURCE_VARIABLE,
        query="prometheus",
        type="datasource",
        label="Data source",
        refresh=1,
        regex="",
        sort=0,
        default=cfg.grafana.datasource_name,
    )
    return t


def standard_variables(
    cfg: MonitoringConfig,
    *,
    partition: bool = True,
    node: bool = True,
    node_metric: str = "nomade_slurm_node_partition_info",
) -> list[g.Template]:
    """The shared variables: ``datasource``, ``cluster``, and optionally ``partition`` and ``node``.

    Queries (all on catalog metrics):

    * ``cluster``: ``label_values(nomade_collector_up, <cfg.cluster_label>)`` — every exporter reports
      ``nomade_collector_up``.
    * ``partition``: ``label_values(nomade_slurm_partition_cpus{cluster=~"$cluster"}, partition)``.
    * ``node``: ``label_values(<node_metric>{cluster=~"$cluster"[,partition=~"$partition"]}, node)``; the default
      ``nomade_slurm_node_partition_info`` lists SLURM's nodes of the selected partitions; node-mode dashboards pass a
      node-mode metric (``nomade_cpu_count``) to list the nodes that run an exporter. The partition matcher is added
      only when ``node_metric`` is ``nomade_slurm_node_partition_info`` (other metrics have no partition label); "All"
      then expands to the listed nodes (those of the selected partitions), otherwise to ``.*``.

    Args:
        cfg: the monitoring configuration (cluster label name, data-source name).
        partition: include the ``partition`` variable.
        node: include the ``node`` variable.
        node_metric: metric whose ``node`` label values populate the ``node`` variable.

    """
    sel = Sel(cfg)
    out = [
        _datasource_variable(cfg),
        query_variable("cluster", "nomade_collector_up", cfg.cluster_label),
    ]
    if partition:
        out.append(query_variable("partition", f"nomade_slurm_partition_cpus{sel()}", "partition"))
    if node:
        by_partition = partition and node_metric == "nomade_slurm_node_partition_info"
        out.append(
            query_variable(
                "node", f"{node_metric}{sel(partition=by_partition)}", "node", all_value=None if by_partition else ".*"
            )
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# Panels


def steps(base: str, *steps_: tuple[float, str]) -> list[dict[str, Any]]:
    """Threshold steps: ``steps("green", (0.85, "orange"), (0.95, "red"))``.

    Args:
        base: colour below the first value (the ``value: null`` base step).
        steps_: ``(value, colour)`` pairs in increasing value order.

    Raises:
        ValueError: when the values do not increase.

    """
    values = [float(v) for v, _ in steps_]
    if values != sorted(values) or len(set(values)) != len(values):
        raise ValueError(f"threshold values must increase: {values}")
    return [{"color": base, "value": None}] + [{"color": c, "value": float(v)} for v, c in steps_]


def dashboard_uid(cfg: MonitoringConfig, key: str) -> str:
    """Stable uid of dashboard ``key``: ``cfg.grafana.uid_prefix + key``.

    When that exceeds Grafana's 40 characters, the tail is replaced by the first 8 hex digits of the key's SHA-256
    (still a pure function of the key).

    Raises:
        ValueError: when ``key`` has characters other than ``A-Z a-z 0-9 _ -``.

    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        raise ValueError(f"dashboard key {key!r}: only A-Z a-z 0-9 _ - are allowed")
    uid = cfg.grafana.uid_prefix + key
    if len(uid) > 40:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        uid = uid[: 40 - 9] + "-" + digest
    return uid


def dashboard_url(cfg: MonitoringConfig, key: str, *, params: str = "") -> str:
    """Relative URL of dashboard ``key`` keeping the time range and the variables (``/d/<uid>?...``).

    Args:
        cfg: the monitoring configuration.
        key: the target dashboard's key (see :data:`nomade.dashboards.DASHBOARDS`).
        params: extra query parameters (``var-node=${__data.fields.node}``), appended after the shared ones.

    """
    url = f"/d/{dashboard_uid(cfg, key)}?${{__url_time_range}}&${{__all_variables}}"
    return url + (f"&{params}" if params else "")


def dashboard_link(cfg: MonitoringConfig, key: str, title: str) -> dict[str, Any]:
    """Panel link (header menu) to dashboard ``key``, keeping time range and variables."""
    return {
        "asDropdown": False,
        "icon": "dashboard",
        "includeVars": True,
        "keepTime": True,
        "tags": [],
        "targetBlank": False,
        "title": title,
        "tooltip": "",
        "type": "link",
        "url": dashboard_url(cfg, key),
    }


def data_link(cfg: MonitoringConfig, key: str, title: str, *, params: str = "") -> dict[str, Any]:
    """Data link (on a value, cell or series) to dashboard ``key``.

    ``params`` are extra URL parameters such as ``var-node=${__field.labels.node}``.
    """
    return {"title": title, "url": dashboard_url(cfg, key, params=params)}


def _grid(width: int, height: int) -> g.GridPos:
    if not 1 <= width <= GRID_WIDTH or height < 1:
        raise ValueError(f"panel size {width}x{height} outside the {GRID_WIDTH}-column grid")
    return g.GridPos(h=height, w=width, x=0, y=0)


def _targets(targets: Sequence[g.Target | str]) -> list[g.Target]:
    out = []
    for i, t in enumerate(targets):
        if isinstance(t, str):
            t = query(t)
        if not t.refId:
            t = attr.evolve(t, refId=chr(ord("A") + i))
        out.append(t)
    if not out:
        raise ValueError("a panel needs at least one query")
    return out


def _defaults(
    unit: str,
    *,
    min: float | None,
    max: float | None,
    decimals: int | None,
    thresholds: list[dict[str, Any]] | None,
    mappings: list[dict[str, Any]] | None,
    color: dict[str, Any],
    custom: dict[str, Any],
    links: list[dict[str, Any]] | None,
    no_value: str | None = None,
) -> dict[str, Any]:
    if not unit:
        raise ValueError("every panel needs a unit (use 'short' for plain counts, 'none' for identifiers)")
    d: dict[str, Any] = {
        "color": color,
        "custom": custom,
        "mappings": mappings or [],
        "thresholds": {"mode": "absolute", "steps": thresholds or steps("green")},
        "unit": unit,
    }
    if min is not None:
        d["min"] = float(min)
    if max is not None:
        d["max"] = float(max)
    if decimals is not None:
        d["decimals"] = decimals
    if links:
        d["links"] = links
    if no_value is not None:
        d["noValue"] = no_value
    return d


def _reduce(calc: str, *, all_values: bool = False, fields: str = "") -> dict[str, Any]:
    return {"calcs": [calc], "fields": fields, "values": all_values}


def _common_kwargs(title: str, description: str, targets: Sequence[g.Target | str], width: int, height: int,
                   links: list[dict[str, Any]] | None, transformations: list[dict[str, Any]] | None,
                   options: dict[str, Any], field_config: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    if not title:
        raise ValueError("every panel needs a title")
    return {
        "title": title,
        "description": description,
        "dataSource": DATASOURCE,
        "targets": _targets(targets),
        "gridPos": _grid(width, height),
        "links": links or [],
        "transformations": transformations or [],
        "extraJson": {_PRIVATE: {"options": options, "fieldConfig": field_config}},
    }


def timeseries(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 12,
    height: int = 8,
    min: float | None = None,
    max: float | None = None,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    threshold_style: str = "off",
    stack: bool = False,
    draw_style: str = "line",
    fill_opacity: int = 10,
    legend_calcs: Sequence[str] = ("mean", "max", "lastNotNull"),
    legend_placement: str = "bottom",
    overrides: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
    data_links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    log_scale: bool = False,
) -> g.TimeSeries:
    """Time series panel (``timeseries``).

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip): say what the figure is and where it comes from.
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        min: lower bound of the axis (float).
        max: upper bound of the axis (float; ``max=1.0`` for ratios).
        decimals: fixed number of decimals.
        thresholds: :func:`steps`; drawn when ``threshold_style`` is ``line``, ``area``, ``line+area`` or
            ``dashed``.
        threshold_style: how thresholds are drawn (``off`` hides them).
        stack: stack the series (``normal``).
        draw_style: ``line``, ``bars`` or ``points``.
        fill_opacity: 0-100.
        legend_calcs: reducers shown in the legend (table mode when non-empty).
        legend_placement: ``bottom`` or ``right``.
        overrides: field overrides (Grafana ``fieldConfig.overrides``).
        links: panel links (:func:`dashboard_link`).
        data_links: data links on the series (:func:`data_link`).
        transformations: Grafana transformations.
        log_scale: logarithmic y axis (base 10).

    """
    custom = {
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "axisLabel": "",
        "axisPlacement": "auto",
        "barAlignment": 0,
        "drawStyle": draw_style,
        "fillOpacity": fill_opacity,
        "gradientMode": "none",
        "hideFrom": dict(_HIDE_FROM),
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "pointSize": 5,
        "scaleDistribution": {"log": 10, "type": "log"} if log_scale else {"type": "linear"},
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": threshold_style},
    }
    field_config = {
        "defaults": _defaults(
            unit,
            min=min,
            max=max,
            decimals=decimals,
            thresholds=thresholds,
            mappings=None,
            color={"mode": "palette-classic"},
            custom=custom,
            links=data_links,
        ),
        "overrides": overrides or [],
    }
    options = {
        "legend": {
            "calcs": list(legend_calcs),
            "displayMode": "table" if legend_calcs else "list",
            "placement": legend_placement,
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return g.TimeSeries(
        **_common_kwargs(title, description, targets, width, height, links, transformations, options, field_config),
        unit=unit,
    )


def stat(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 4,
    height: int = 4,
    min: float | None = None,
    max: float | None = None,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    color_mode: str = "value",
    graph_mode: str = "area",
    text_mode: str = "auto",
    reduce: str = "lastNotNull",
    mappings: list[dict[str, Any]] | None = None,
    no_value: str | None = None,
    links: list[dict[str, Any]] | None = None,
    data_links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> g.Stat:
    """Stat panel (``stat``): one big number per series, coloured by ``thresholds``.

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip): what the figure is and where it comes from.
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        min: lower bound of the axis/scale (float).
        max: upper bound of the axis/scale (float; ``1.0`` for ratios).
        decimals: fixed number of decimals.
        thresholds: :func:`steps`.
        links: panel links (:func:`dashboard_link`).
        data_links: data links on the values (:func:`data_link`).
        transformations: Grafana transformations.
        color_mode: ``value``, ``background`` or ``none``.
        graph_mode: ``area`` (sparkline) or ``none``.
        text_mode: ``auto``, ``value``, ``value_and_name``, ``name`` or ``none``.
        reduce: reducer of each series (``lastNotNull``, ``mean``, ``max``...).
        mappings: value mappings (Grafana ``ValueMapping`` objects).
        no_value: text shown when the query returns nothing (``"0"`` for counts of absent problems).

    """
    field_config = {
        "defaults": _defaults(
            unit,
            min=min,
            max=max,
            decimals=decimals,
            thresholds=thresholds,
            mappings=mappings,
            color={"mode": "thresholds"},
            custom={},
            links=data_links,
            no_value=no_value,
        ),
        "overrides": [],
    }
    options = {
        "colorMode": color_mode,
        "graphMode": graph_mode,
        "justifyMode": "auto",
        "orientation": "auto",
        "percentChangeColorMode": "standard",
        "reduceOptions": _reduce(reduce),
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return g.Stat(
        **_common_kwargs(title, description, targets, width, height, links, transformations, options, field_config),
        format=unit,
    )


def table(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 24,
    height: int = 8,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    sort_by: Sequence[tuple[str, bool]] = (),
    links: list[dict[str, Any]] | None = None,
    data_links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    filterable: bool = False,
) -> g.Table:
    """Table panel (``table``), usually fed by instant queries with ``table=True``.

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip): what the figure is and where it comes from.
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        decimals: fixed number of decimals.
        thresholds: :func:`steps`.
        links: panel links (:func:`dashboard_link`).
        data_links: data links on the values (:func:`data_link`).
        transformations: Grafana transformations.
        overrides: per-column settings (use :func:`column_override`).
        sort_by: ``(column display name, descending)`` pairs.
        filterable: offer per-column filters.

    """
    field_config = {
        "defaults": _defaults(
            unit,
            min=None,
            max=None,
            decimals=decimals,
            thresholds=thresholds,
            mappings=None,
            color={"mode": "thresholds"},
            custom={
                "align": "auto",
                "cellOptions": {"type": "auto"},
                "filterable": filterable,
                "inspect": False,
            },
            links=data_links,
        ),
        "overrides": overrides or [],
    }
    options = {
        "cellHeight": "sm",
        "frameIndex": 0,
        "showHeader": True,
        "sortBy": [{"desc": desc, "displayName": name} for name, desc in sort_by],
    }
    return g.Table(
        **_common_kwargs(title, description, targets, width, height, links, transformations, options, field_config),
        unit=unit,
    )


def info_table_transformations() -> list[dict[str, Any]]:
    """The transformations of a table listing an ``_info`` metric: its labels are the columns.

    Hides the columns that carry no information there (the sample time, the constant value 1, the metric name and
    Prometheus's own ``instance``/``job`` target labels), with Grafana's ``organize`` transformation.
    """
    hidden = {"Time": True, "Value": True, "__name__": True, "instance": True, "job": True}
    return [{"id": "organize", "options": {"excludeByName": hidden, "indexByName": {}, "renameByName": {}}}]


def column_override(column: str, **properties: Any) -> dict[str, Any]:
    """A ``fieldConfig.overrides`` entry for one table column (matched by name).

    ``column_override("Value #A", unit="percentunit", displayName="CPU", custom_width=80)``: keyword arguments
    become override properties; ``custom_<name>`` sets ``custom.<name>``; ``cell_type="color-background"`` sets the
    cell display (``custom.cellOptions``).
    """
    props = []
    for key, value in properties.items():
        if key == "cell_type":
            props.append({"id": "custom.cellOptions", "value": {"type": value}})
        elif key.startswith("custom_"):
            props.append({"id": "custom." + key[len("custom_") :], "value": value})
        elif key == "thresholds":
            props.append({"id": "thresholds", "value": {"mode": "absolute", "steps": value}})
        else:
            props.append({"id": key, "value": value})
    return {"matcher": {"id": "byName", "options": column}, "properties": props}


def bargauge(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 12,
    height: int = 8,
    min: float | None = None,
    max: float | None = None,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    orientation: str = "horizontal",
    display_mode: str = "gradient",
    reduce: str = "lastNotNull",
    links: list[dict[str, Any]] | None = None,
    data_links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> g.BarGauge:
    """Bar gauge panel (``bargauge``): one bar per series, e.g. used share per filesystem.

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip): what the figure is and where it comes from.
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        min: lower bound of the axis/scale (float).
        max: upper bound of the axis/scale (float; ``1.0`` for ratios).
        decimals: fixed number of decimals.
        thresholds: :func:`steps`.
        links: panel links (:func:`dashboard_link`).
        data_links: data links on the values (:func:`data_link`).
        transformations: Grafana transformations.
        orientation: ``horizontal`` or ``vertical``.
        display_mode: ``gradient``, ``lcd`` or ``basic``.
        reduce: reducer of each series.

    """
    field_config = {
        "defaults": _defaults(
            unit,
            min=min,
            max=max,
            decimals=decimals,
            thresholds=thresholds,
            mappings=None,
            color={"mode": "thresholds"},
            custom={},
            links=data_links,
        ),
        "overrides": [],
    }
    options = {
        "displayMode": display_mode,
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": False},
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "auto",
        "orientation": orientation,
        "reduceOptions": _reduce(reduce),
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return g.BarGauge(
        **_common_kwargs(title, description, targets, width, height, links, transformations, options, field_config),
        format=unit,
        displayMode=display_mode if display_mode in ("lcd", "basic", "gradient") else "gradient",
        orientation=orientation,
    )


def heatmap(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 12,
    height: int = 8,
    y_unit: str | None = None,
    scheme: str = "Oranges",
    links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> g.Heatmap:
    """Heatmap panel (``heatmap``) of pre-bucketed data: Prometheus histogram buckets (``format: heatmap``).

    Feed it ``sum by (le) (increase(x_bucket[$__rate_interval]))`` queries with ``legend="{{le}}"``: the buckets
    become the y axis (``yAxis.unit`` = ``y_unit`` or ``unit``); ``unit`` is the cell value's unit (``short`` for
    counts).

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip): what the figure is and where it comes from.
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        links: panel links (:func:`dashboard_link`).
        transformations: Grafana transformations.
        y_unit: unit of the bucket bounds (the histogram's unit), default ``unit``.
        scheme: colour scheme (a d3 scheme name such as ``Oranges``, ``Spectral``).

    """
    tgts = [attr.evolve(t, format="heatmap") for t in _targets(targets)]
    field_config = {
        "defaults": _defaults(
            unit,
            min=None,
            max=None,
            decimals=None,
            thresholds=None,
            mappings=None,
            color={"mode": "thresholds"},
            custom={"hideFrom": dict(_HIDE_FROM), "scaleDistribution": {"type": "linear"}},
            links=None,
        ),
        "overrides": [],
    }
    options = {
        "calculate": False,
        "cellGap": 1,
        "cellValues": {"unit": unit},
        "color": {
            "exponent": 0.5,
            "fill": "dark-orange",
            "mode": "scheme",
            "reverse": False,
            "scale": "exponential",
            "scheme": scheme,
            "steps": 64,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "never",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": y_unit or unit},
    }
    return g.Heatmap(
        **_common_kwargs(title, description, tgts, width, height, links, transformations, options, field_config),
        dataFormat="tsbuckets",
    )


def state_timeline(
    title: str,
    targets: Sequence[g.Target | str],
    *,
    unit: str,
    description: str = "",
    width: int = 24,
    height: int = 8,
    thresholds: list[dict[str, Any]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> g.StateTimeline:
    """State timeline panel (``state-timeline``): one row per series, coloured by ``thresholds``/``mappings``.

    Args:
        title: panel title.
        targets: queries (:func:`query`, or bare PromQL strings).
        unit: Grafana unit id of the values (required).
        description: panel description (info tooltip).
        width: width in grid columns (1-24).
        height: height in grid rows (30 px each).
        thresholds: :func:`steps` (colours of the states).
        links: panel links (:func:`dashboard_link`).
        transformations: Grafana transformations.
        mappings: value mappings, e.g. ``value_mapping({0: ("up", "green"), 1: ("down", "red")})``.

    """
    field_config = {
        "defaults": _defaults(
            unit,
            min=None,
            max=None,
            decimals=None,
            thresholds=thresholds,
            mappings=mappings,
            color={"mode": "thresholds"},
            custom={"fillOpacity": 70, "hideFrom": dict(_HIDE_FROM), "lineWidth": 0},
            links=None,
        ),
        "overrides": [],
    }  # fmt: skip
    options = {
        "alignValue": "left",
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return g.StateTimeline(
        **_common_kwargs(title, description, targets, width, height, links, transformations, options, field_config)
    )


def _mapping_order(item: tuple[int | float | str, Any]) -> tuple[int, float, str]:
    key = item[0]
    return (1, 0.0, key) if isinstance(key, str) else (0, float(key), "")


def value_mapping(values: Mapping[int | float | str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings ``{value: (text, colour)}`` as one Grafana ``ValueMap`` (numbers in numeric order, then text)."""
    options = {
        str(k): {"color": color, "index": i, "text": text}
        for i, (k, (text, color)) in enumerate(sorted(values.items(), key=_mapping_order))
    }
    return [{"options": options, "type": "value"}]


def row(title: str) -> g.RowPanel:
    """A (non-collapsed) row header; the panels after it in the list belong to it."""
    return g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=GRID_WIDTH, x=0, y=0))


# --------------------------------------------------------------------------------------------------------------
# Dashboard


def _layout(items: Sequence[Any]) -> list[Any]:
    """Place panels left to right on the grid in list order; a row or an overflowing panel starts a new line."""
    out = []
    x = y = line_h = 0
    ids = iter(range(1, len(items) + 1))
    for item in items:
        pos = getattr(item, "gridPos", None)
        if pos is None:
            raise ValueError(f"panel {getattr(item, 'title', item)!r} was not made by nomade.dashboards.common")
        if isinstance(item, g.RowPanel):
            y += line_h
            out.append(attr.evolve(item, id=next(ids), gridPos=g.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
            y += 1
            x = line_h = 0
            continue
        if x + pos.w > GRID_WIDTH:
            y += line_h
            x = line_h = 0
        out.append(attr.evolve(item, id=next(ids), gridPos=g.GridPos(h=pos.h, w=pos.w, x=x, y=y)))
        x += pos.w
        line_h = max(line_h, pos.h)
    return out


def dashboard(
    cfg: MonitoringConfig,
    key: str,
    title: str,
    *,
    description: str,
    panels: Sequence[Any],
    variables: Sequence[g.Template] | None = None,
    tags: Sequence[str] = (),
    links: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Build a dashboard's JSON model (a plain ``dict``), ready for :func:`render_dashboard`.

    Args:
        cfg: the monitoring configuration (``cfg.grafana`` for uid prefix, tags, refresh, time range, editability).
        key: stable short name (``storage``): uid = :func:`dashboard_uid`; file name chosen by
            :func:`nomade.dashboards.build_all`.
        title: dashboard title.
        description: dashboard description.
        panels: rows and panels in display order (:func:`row`, :func:`timeseries`...).
        variables: template variables (default :func:`standard_variables`).
        tags: extra tags after ``cfg.grafana.tags``.
        links: extra dashboard links; a drop-down of all dashboards tagged ``cfg.grafana.tags[0]`` (keeping time
            range and variables) always comes first.

    Raises:
        ValueError: when the model breaks a rule of :func:`model_problems` (legacy panel type, missing unit,
            ``rate`` without ``$__rate_interval``, duplicate ids...).

    """
    gs = cfg.grafana
    nav = g.DashboardLink(
        asDropdown=True,
        icon="external link",
        includeVars=True,
        keepTime=True,
        tags=[gs.tags[0]],
        title="NØMADE dashboards",
        type="dashboards",
    )
    d = g.Dashboard(
        title=title,
        description=description,
        editable=gs.editable,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        links=[nav, *links],
        panels=_layout(list(panels)),
        refresh=gs.refresh,
        schemaVersion=SCHEMA_VERSION,
        tags=list(dict.fromkeys([*gs.tags, *tags])),
        templating=g.Templating(list=list(variables if variables is not None else standard_variables(cfg))),
        time=g.Time(gs.time_from, "now"),
        timezone="utc",
        uid=dashboard_uid(cfg, key),
        version=1,
    )
    model = _modernise(json.loads(json.dumps(d.to_json_data(), cls=DashboardEncoder)), cfg)
    problems = model_problems(model)
    if problems:
        raise ValueError(f"dashboard {key}: " + "; ".join(problems))
    return model


def _drop_none(d: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d and d[k] is not None}


def _modernise_target(t: dict[str, Any]) -> dict[str, Any]:
    out = _drop_none(t, _TARGET_KEYS)
    out["datasource"] = dict(DATASOURCE)
    out["editorMode"] = "code"
    out["range"] = not t.get("instant", False)
    if not out.get("interval"):
        out.pop("interval", None)
    return out


def _modernise_panel(p: dict[str, Any]) -> dict[str, Any]:
    if p.get("type") == "row":
        out = _drop_none(p, _ROW_KEYS)
        out["panels"] = [_modernise_panel(c) for c in p.get("panels", [])]
        out["collapsed"] = bool(p.get("collapsed", False))
        return out
    private = p.pop(_PRIVATE, None)
    if private is None:
        raise ValueError(f"panel {p.get('title')!r} was not made by nomade.dashboards.common")
    out = _drop_none(p, _PANEL_KEYS)
    out["options"] = private["options"]
    out["fieldConfig"] = private["fieldConfig"]
    out["datasource"] = dict(DATASOURCE)
    out["targets"] = [_modernise_target(t) for t in p.get("targets", [])]
    if not out.get("description"):
        out.pop("description", None)
    for key in ("timeFrom", "timeShift", "interval"):
        if not out.get(key):
            out.pop(key, None)
    for key in ("repeat", "repeatDirection", "maxPerRow"):
        out.pop(key, None)
    if out.get("hideTimeOverride") is False:
        out.pop("hideTimeOverride")
    if out.get("transparent") is False:
        out.pop("transparent")
    return out


def _modernise_variable(v: dict[str, Any]) -> dict[str, Any]:
    out = _drop_none(v, _VARIABLE_KEYS)
    out.setdefault("skipUrlSync", False)
    if out.get("type") == "datasource":
        out.pop("datasource", None)
    else:
        out["datasource"] = dict(DATASOURCE)
        out["current"] = _all_current() if v.get("includeAll") else {"selected": False, "text": "", "value": ""}
    out["options"] = []
    return out


def _modernise(model: dict[str, Any], cfg: MonitoringConfig) -> dict[str, Any]:
    out = _drop_none(model, _DASHBOARD_KEYS)
    out["id"] = None
    out["schemaVersion"] = SCHEMA_VERSION
    out["panels"] = [_modernise_panel(p) for p in model.get("panels", [])]
    out["templating"] = {"list": [_modernise_variable(v) for v in model["templating"]["list"]]}
    for v in out["templating"]["list"]:
        if v["type"] == "datasource":  # current value by uid (what Grafana stores), name shown
            v["current"] = {"selected": True, "text": cfg.grafana.datasource_name, "value": cfg.grafana.datasource_uid}
    out["annotations"] = {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ]
    }
    out["timepicker"] = {"refresh_intervals": list(model["timepicker"]["refresh_intervals"])}
    out["fiscalYearStartMonth"] = 0
    out["liveNow"] = False
    out["weekStart"] = ""
    links = []
    for link in model.get("links", []):
        link = dict(link)
        if not link.get("url"):
            link.pop("url", None)
        links.append(link)
    out["links"] = links
    return out


def render_dashboard(model: Mapping[str, Any]) -> str:
    """The file text of a dashboard model: JSON, sorted keys, 2-space indent, UTF-8 kept, final newline (stable)."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Model inspection (used by dashboard() and by the tests)


def iter_panels(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a model, rows excluded, nested panels of collapsed rows included, in display order."""
    out = []
    for p in model.get("panels", []):
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs(model: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression of the model's panel targets, in display order (duplicates kept)."""
    return [t["expr"] for p in iter_panels(model) for t in p.get("targets", []) if t.get("expr")]


def dashboard_variable_queries(model: Mapping[str, Any]) -> list[str]:
    """The ``label_values(...)`` queries of the model's query variables."""
    out = []
    for v in model.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


_RATE_FUNCS = ("rate", "irate", "increase")


def rate_window_problems(expr: str) -> list[str]:
    """Range windows of ``rate``/``irate``/``increase`` in ``expr`` that are not ``$__rate_interval``.

    Grafana's ``$__rate_interval`` is max(4 x scrape interval, step + scrape interval), the smallest window that
    always holds two samples (Grafana docs, "Prometheus template variables"). ``increase(...[$__range])`` (the
    whole dashboard range, for totals over the range) is allowed too.

    Returns:
        One message per offending window; empty when the expression is fine.

    """
    problems = []
    for m in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
        depth, i = 1, m.end()
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        inner = expr[m.end() : i - 1]
        windows = re.findall(r"\[([^\]]*)\]", inner)
        if not windows:
            problems.append(f"{m.group(1)}() without a range window in {expr!r}")
        for w in windows:
            allowed = {"$__rate_interval"} | ({"$__range"} if m.group(1) == "increase" else set())
            if w.split(":")[0] not in allowed:
                problems.append(f"{m.group(1)}() window [{w}] is not $__rate_interval in {expr!r}")
    return problems


def model_problems(model: Mapping[str, Any]) -> list[str]:
    """Rule violations of a dashboard model (empty when fine).

    Rules: schemaVersion is :data:`SCHEMA_VERSION`; every panel's type is in :data:`CURRENT_PANEL_TYPES` (rows
    aside); every panel has a title, a non-empty ``fieldConfig.defaults.unit``, targets on ``${datasource}`` and
    unique ids; ``rate``/``irate``/``increase`` use ``$__rate_interval`` (:func:`rate_window_problems`); panels lie
    within the 24-column grid without overlapping.
    """
    problems = []
    if model.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schemaVersion {model.get('schemaVersion')} != {SCHEMA_VERSION}")
    ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    for p in model.get("panels", []):
        for q in [p, *p.get("panels", [])]:
            if q["id"] in ids:
                problems.append(f"duplicate panel id {q['id']}")
            ids.add(q["id"])
            gp = q.get("gridPos", {})
            if gp.get("x", 0) + gp.get("w", 0) > GRID_WIDTH:
                problems.append(f"panel {q.get('title')!r} exceeds the grid")
            for cx in range(gp.get("x", 0), gp.get("x", 0) + gp.get("w", 0)):
                for cy in range(gp.get("y", 0), gp.get("y", 0) + gp.get("h", 0)):
                    if (cx, cy) in cells:
                        problems.append(f"panel {q.get('title')!r} overlaps another at ({cx}, {cy})")
                        break
                    cells.add((cx, cy))
                else:
                    continue
                break
    for p in iter_panels(model):
        title = p.get("title")
        if p.get("type") not in CURRENT_PANEL_TYPES:
            problems.append(f"panel {title!r}: type {p.get('type')!r} is not a current panel type")
        if not title:
            problems.append(f"panel {p.get('id')}: no title")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"panel {title!r}: no unit")
        if p.get("datasource") != DATASOURCE:
            problems.append(f"panel {title!r}: data source is not ${{datasource}}")
        if not p.get("targets"):
            problems.append(f"panel {title!r}: no query")
        for t in p.get("targets", []):
            if t.get("datasource") != DATASOURCE:
                problems.append(f"panel {title!r}: target {t.get('refId')} not on ${{datasource}}")
            problems.extend(f"panel {title!r}: {m}" for m in rate_window_problems(t.get("expr", "")))
    return problems


# --------------------------------------------------------------------------------------------------------------
# PromQL: metric names and expansion of Grafana variables

_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _strip_strings_and_selectors(expr: str) -> str:
    """Blank out string literals, label matchers ``{...}``, range/subquery windows ``[...]`` and comments."""
    out: list[str] = []
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in "\"'`":
            j = i + 1
            while j < n and expr[j] != ch:
                j += 2 if expr[j] == "\\" and ch != "`" else 1
            out.append(" ")
            i = j + 1
        elif ch == "#":
            j = expr.find("\n", i)
            i = n if j < 0 else j
        elif ch in "{[":
            close = "}" if ch == "{" else "]"
            j = i + 1
            while j < n and expr[j] != close:
                if expr[j] in "\"'`":
                    q = expr[j]
                    j += 1
                    while j < n and expr[j] != q:
                        j += 2 if expr[j] == "\\" and q != "`" else 1
                j += 1
            out.append(" ")
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (Grafana variables allowed).

    A lexical scan: string literals, label matchers and range windows are blanked; identifiers followed by ``(``
    are functions or aggregations; identifiers inside ``by``/``without``/``on``/``ignoring``/``group_left``/
    ``group_right`` lists are labels; keywords, numbers, durations (``offset 1h``) and ``$variables`` are skipped.
    Metric names given only through ``{__name__=~"..."}`` are not seen (NØMADE's dashboards and rules use none).

    Examples:
        ``sum by (node) (rate(nomade_cpu_seconds_total{mode!="idle"}[$__rate_interval]))`` →
        ``{"nomade_cpu_seconds_total"}``.

    """
    text = _strip_strings_and_selectors(expr)
    text = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", " ", text)
    names: set[str] = set()
    tokens = list(re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*|[0-9][0-9A-Za-z_.]*|[()]|[^\sA-Za-z0-9_:()]+", text))
    i = 0
    while i < len(tokens):
        tok = tokens[i].group()
        nxt = tokens[i + 1].group() if i + 1 < len(tokens) else ""
        if tok in _GROUPING and nxt == "(":
            depth = 0
            i += 1
            while i < len(tokens):  # skip the label list
                t = tokens[i].group()
                depth += {"(": 1, ")": -1}.get(t, 0)
                i += 1
                if depth == 0:
                    break
            continue
        if tok == "offset":
            i += 2  # the duration after it
            continue
        if tok in _AGGREGATIONS and nxt in ("by", "without"):
            i += 1  # `sum by (...) (...)`: the grouping list is skipped next
            continue
        if _IDENT.fullmatch(tok) and tok not in _KEYWORDS and nxt != "(":
            names.add(tok)
        i += 1
    return names


def variable_metric_names(query_text: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (``label_values(metric{...}, label)``,
    ``query_result(expr)``, ``label_values(label)``, ``metrics(regex)`` → none).
    """  # noqa: D205
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query_text, re.S)
    if m:
        return metric_names(m.group(1))
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query_text, re.S)
    if m:
        return metric_names(m.group(1))
    return set()


PROMETHEUS_SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
"""Series Prometheus itself records for every scrape target (Prometheus docs, "Jobs and instances: automatically
generated labels and time series"); the only names outside the catalog a dashboard may use."""


def known_metric_names() -> set[str]:
    """The names a dashboard may query.

    The catalog's exposition names (:func:`nomade.exporter.catalog.catalog_names`), the recording rules' names
    (:data:`nomade.alerting.rules.RECORDING_RULE_NAMES`, when that module exists) and Prometheus' own per-target
    series (:data:`PROMETHEUS_SCRAPE_SERIES`).
    """
    from nomade.exporter.catalog import catalog_names

    names = set(catalog_names()) | PROMETHEUS_SCRAPE_SERIES
    try:
        from nomade.alerting.rules import RECORDING_RULE_NAMES
    except ImportError:
        return names
    return names | set(RECORDING_RULE_NAMES)


def unknown_metric_names(model: Mapping[str, Any], known: set[str] | None = None) -> dict[str, set[str]]:
    """Metric names of the model's queries and variables that are neither in the catalog nor recording rules.

    Args:
        model: a dashboard model.
        known: the allowed names (default :func:`known_metric_names`).

    Returns:
        expression -> unknown names, only for expressions with at least one; empty when all is well.

    """
    known = known_metric_names() if known is None else known
    out: dict[str, set[str]] = {}
    for expr in dashboard_exprs(model):
        bad = metric_names(expr) - known
        if bad:
            out[expr] = bad
    for q in dashboard_variable_queries(model):
        bad = variable_metric_names(q) - known
        if bad:
            out[q] = bad
    return out


def render_expr(
    expr: str,
    *,
    rate_interval: str = "1m",
    range_: str = "1h",
    interval: str = "15s",
    variables: Mapping[str, str] | None = None,
) -> str:
    """Replace Grafana's variables by concrete values so that Prometheus can run the expression.

    Args:
        expr: a panel's PromQL.
        rate_interval: value of ``$__rate_interval`` (a Prometheus duration).
        range_: value of ``$__range``.
        interval: value of ``$__interval``.
        variables: dashboard variables (``{"node": "c1"}``); any other ``$name``/``${name}`` becomes ``.*``
            (what "All" expands to).

    """
    builtins = {"__rate_interval": rate_interval, "__range": range_, "__interval": interval}
    values = dict(variables or {})

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in builtins:
            return builtins[name]
        return values.get(name, ".*")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, expr)
