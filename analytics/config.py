"""Analytics service configuration: built-in defaults and watches, then a TOML file, then command-line flags.

File layout (every key optional)::

    [analytics]
    prometheus_url = "http://127.0.0.1:9090"   # --prometheus.url; Prometheus, VictoriaMetrics, Thanos, Mimir...
    listen_address = "127.0.0.1:9867"          # --web.listen-address
    interval = "60s"                           # one cycle every interval
    timeout = "10s"                            # per HTTP request
    retries = 2                                # further attempts after a transport error / 5xx / 429
    bearer_token_file = "/etc/nomade/token"
    ca_file = "/etc/nomade/ca.pem"
    insecure_skip_verify = false
    cluster_label = "cluster"                  # with `cluster`: only series whose cluster_label has that value
    cluster = "hpc1"
    keep_labels = []                           # of job/instance, which the published series keep
    include_default_watches = true             # DEFAULT_WATCHES, unless a [[analytics.watch]] replaces one by name
    log_level = "info"

    [analytics.basic_auth]
    username = "nomade"
    password_file = "/etc/nomade/prom-password"  # or password = "..."

    [[analytics.watch]]
    name = "filesystem_used"                   # the `watch` label
    query = "nomade_filesystem_size_bytes - nomade_filesystem_avail_bytes"
    threshold_query = "nomade_filesystem_size_bytes"   # or: threshold = 0.9
    match_on = ["cluster", "node", "mountpoint"]       # labels pairing a series with its threshold series
    direction = "above"                        # the threshold is reached from below (above) or from above (below)
    unit = "bytes"
    window = "6h"                              # fit window
    step = "5m"                                # query_range resolution
    horizons = ["1h", "1d", "7d"]              # projected values
    counter = false                            # true: the query returns a counter (resets are undone)
    min_points = 6
    stale_after = "10m"                        # no estimate when the last sample is older (default 2 x step)
    keep_labels = ["instance"]                 # per-watch override of [analytics] keep_labels
    enabled = true                             # false switches a default watch off

    [analytics.risk]                           # job failure-risk scores (nomade.analytics.risk)
    enabled = true
    store = "/var/lib/nomade/analytics/jobs.sqlite"     # training store (SQLite, nomade.analytics.jobs_store)
    model_dir = "/var/lib/nomade/analytics/models"      # model registry; only the service may write there
    retrain_interval = "7d"                    # the seed's retrain_interval_days = 7
    min_train_jobs = 200                       # finished jobs (run setting: labelled running-job snapshots)
    min_train_failures = 20                    # ... of which failed
    cost_ratio = 5.0                           # cost of a missed failure / cost of a false alarm
    harvest_lookback = "1h"                    # first harvest window; later ones continue from a watermark
    history_window = "180d"                    # finished jobs (ended within) used for training and user history
    max_scored_jobs = 5000                     # per-job series published (highest risk kept)
    node_label = "node"                        # label of node-mode series that holds SLURM's NodeName
    node_map = { "*" = "lab-host" }            # NodeName -> node_label value; "*" = every node; default identity
    models = ["gbm", "knn", "gnn", "autoencoder"]
    settings = ["submit", "run"]
    keep_models = 5                            # artefacts kept per setting in model_dir
    drift_window = "1d"                        # finished jobs compared with the training sample (PSI)

Durations are Prometheus duration strings (``"90s"``, ``"5m"``, ``"1h30m"``, ``"7d"``, ``"1w"``) or numbers of
seconds. Every error names the file and the key (:class:`ConfigError`).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nomade.exporter.config import split_host_port

DEFAULT_PORT = 9867
"""The analytics service's port, next to the exporter's 9866 (see :data:`nomade.exporter.config.DEFAULT_PORT`)."""

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DIRECTIONS = ("above", "below")
DROPPED_LABELS = ("job", "instance")
"""Labels of the source series that published series drop by default: they name the scrape target that produced
the source, and the analytics service's own scrape sets its own ``job``/``instance``."""

# Prometheus' duration syntax (model.ParseDuration in prometheus/common): units in decreasing order, each at most
# once, integers only.
_DURATION_UNITS = (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", 1e-3))
_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
# Label names as the Prometheus data model defines them.
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigError(ValueError):
    """The configuration file or a flag value is invalid (the message names the file and the key)."""


def parse_duration(value: str | int | float, what: str = "duration") -> float:
    """Seconds in a Prometheus duration string (``"5m"``, ``"1h30m"``, ``"7d"``) or a number of seconds.

    Args:
        value: the duration; strings follow Prometheus' syntax (y, w, d, h, m, s, ms in that order), numbers are
            seconds. Booleans are refused (TOML ``true`` is not a duration).
        what: the key, for the error message.

    Returns:
        The duration in seconds (> 0).

    Raises:
        ConfigError: not a duration, or not positive.

    """
    if isinstance(value, bool):
        raise ConfigError(f'{what}: expected a duration such as "5m", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        m = _DURATION_RE.match(text)
        if not text or m is None:
            raise ConfigError(f'{what}: {value!r} is not a duration (examples: "90s", "5m", "6h", "7d")')
        seconds = float(sum(int(n) * unit for n, (_, unit) in zip(m.groups(), _DURATION_UNITS, strict=True) if n))
    else:
        raise ConfigError(f'{what}: expected a duration such as "5m", got {value!r}')
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"{what}: must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration string for ``seconds`` (``86400`` → ``"1d"``, ``5400`` → ``"1h30m"``).

    Used to label horizons given as numbers; fractions of a second below 1 ms are rounded.
    """
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        size_ms = round(size * 1000)
        n, ms = divmod(ms, size_ms)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Watch:
    """One watched PromQL expression: every series it returns gets a trend estimate.

    Attributes:
        name: the ``watch`` label of the published series; unique.
        query: PromQL returning the series to watch (evaluated with ``query_range`` over the window).
        threshold: constant threshold in the watch's unit, or ``None``.
        threshold_query: PromQL whose series give each watched series its threshold (instant query), or ``None``.
        match_on: labels that pair a watched series with a threshold series (a label missing on both sides
            matches); empty means all labels (after dropping ``__name__`` and the dropped labels), PromQL's
            default one-to-one matching.
        direction: ``above`` (alarm when the series rises to the threshold) or ``below`` (falls to it).
        unit: the series' unit, for the catalog and dashboards (``bytes``, ``seconds``, ``jobs``...).
        window: seconds of history fitted.
        step: seconds between the points of the range query.
        horizons: ``(label, seconds)`` pairs: the projected values published.
        counter: the query returns a counter; the engine undoes resets before fitting.
        min_points: fewer points in the window give no estimate.
        stale_after: seconds; no estimate when the last point is older than this (``None``: ``2 * step``).
        keep_labels: labels of :data:`DROPPED_LABELS` that the published series keep (``None``: the service's).
        enabled: ``False`` removes the watch (used to switch a default watch off).

    """

    name: str
    query: str
    threshold: float | None = None
    threshold_query: str | None = None
    match_on: tuple[str, ...] = ()
    direction: str = "above"
    unit: str = ""
    window: float = 6 * 3600.0
    step: float = 300.0
    horizons: tuple[tuple[str, float], ...] = (("1h", 3600.0), ("1d", 86400.0), ("7d", 7 * 86400.0))
    counter: bool = False
    min_points: int = 6
    stale_after: float | None = None
    keep_labels: tuple[str, ...] | None = None
    enabled: bool = True

    @property
    def effective_stale_after(self) -> float:
        """Seconds after which the series' last point is too old for an estimate (default: two steps)."""
        return self.stale_after if self.stale_after is not None else 2.0 * self.step

    @property
    def queries_per_cycle(self) -> int:
        """HTTP queries one cycle sends for this watch: one range query, plus one instant threshold query."""
        return 1 + (self.threshold_query is not None)


_FS_MATCH = ("cluster", "node", "mountpoint")

DEFAULT_WATCHES: tuple[Watch, ...] = (
    # size - avail is the space unprivileged users have consumed (df's "Used" plus root-reserved blocks), so it
    # reaches `size` exactly when avail reaches 0, the point at which users' writes fail (statvfs(3) f_bavail).
    Watch(
        name="filesystem_used",
        query="nomade_filesystem_size_bytes - nomade_filesystem_avail_bytes",
        threshold_query="nomade_filesystem_size_bytes",
        match_on=_FS_MATCH,
        unit="bytes",
        window=6 * 3600.0,
        step=300.0,
    ),
    Watch(
        name="pending_jobs",
        # `state` is constant here and would clash with nomade_trend_state's own label: aggregated away.
        query='sum without (state) (nomade_slurm_queue_jobs{state="pending"})',
        unit="jobs",
        window=3 * 3600.0,
        step=120.0,
        horizons=(("1h", 3600.0), ("6h", 6 * 3600.0)),
    ),
    Watch(
        name="failed_job_rate",
        query='sum by (cluster, partition) (rate(nomade_slurm_job_finished_total{failure_class!="success"}[15m]))',
        unit="jobs_per_second",
        window=6 * 3600.0,
        step=300.0,
        horizons=(("1h", 3600.0), ("6h", 6 * 3600.0)),
    ),
    # The job's cgroup limit is per node, so a multi-node job pairs usage and limit node by node.
    Watch(
        name="job_memory",
        query="nomade_job_usage_memory_usage_bytes",
        threshold_query="nomade_job_usage_memory_limit_bytes",
        match_on=("cluster", "node", "job_id"),
        unit="bytes",
        window=1800.0,
        step=30.0,
        horizons=(("15m", 900.0), ("1h", 3600.0)),
    ),
    # 85 °C: below the slowdown temperatures NVIDIA datacentre GPUs report (nvidia-smi -q "GPU Slowdown Temp",
    # 87-93 °C on A100/H100), so the warning comes before clocks are throttled.
    Watch(
        name="gpu_temperature",
        query='nomade_gpu_temperature_celsius{sensor="gpu"}',
        threshold=85.0,
        unit="celsius",
        window=1800.0,
        step=30.0,
        horizons=(("15m", 900.0), ("1h", 3600.0)),
    ),
    Watch(
        name="nfs_latency",
        query="nomade_nfs_rtt_average_seconds",
        unit="seconds",
        window=3600.0,
        step=60.0,
        horizons=(("15m", 900.0), ("1h", 3600.0)),
    ),
    # Pools with no issued licenses are left out (division by zero gives NaN/Inf, never a usage figure).
    Watch(
        name="license_usage",
        query="nomade_license_used / (nomade_license_issued > 0)",
        threshold=1.0,
        unit="ratio",
        window=6 * 3600.0,
        step=300.0,
        horizons=(("1h", 3600.0), ("1d", 86400.0)),
    ),
)
"""The watches a site gets without configuration (issue 4): filesystem fill (threshold: its size), pending jobs per
partition, failed-job rate, per-job memory (threshold: the job's cgroup limit, so time-to-threshold is time-to-OOM),
GPU temperature, NFS round-trip time and license pool usage."""


RISK_WATCH = "risk"
"""``watch`` label under which the service counts the risk engine's queries and errors (reserved)."""

RISK_MODELS = ("gbm", "knn", "gnn", "autoencoder")
"""Model names ``[analytics.risk] models`` may list (the members of :class:`nomade.analytics.pipeline.RiskPipeline`)."""

RISK_SETTINGS = ("submit", "run")
"""Prediction settings: ``submit`` scores from what is known at submission (pending jobs), ``run`` adds the usage so
far of running jobs (DESIGN.md principle 7 keeps the two apart)."""


@dataclass(frozen=True)
class RiskConfig:
    """``[analytics.risk]``: failure-risk scoring of pending and running jobs (:mod:`nomade.analytics.risk`).

    Attributes:
        enabled: run the risk engine in each cycle.
        store: SQLite training store (:class:`nomade.analytics.jobs_store.JobsStore`).
        model_dir: directory of the model registry (:class:`nomade.analytics.model_store.ModelRegistry`); created
            0700; pickled models are loaded from there only.
        retrain_interval: seconds between retraining attempts per setting (default 7 days: the seed's
            ``retrain_interval_days = 7``).
        min_train_jobs: labelled jobs (finished jobs; for ``run``, running-job snapshots whose job has finished)
            needed before a model is trained.
        min_train_failures: failed jobs among them needed before a model is trained.
        cost_ratio: cost of a missed failure over the cost of a false alarm; sets the alert threshold.
        harvest_lookback: seconds of finished jobs fetched by the first harvest (later harvests continue from the
            watermark kept in the store).
        history_window: seconds; finished jobs that ended within it are the training data and the user history.
        max_scored_jobs: per-job risk series published at most (the highest risks are kept; the rest is counted).
        node_label: label of the node-mode series that holds SLURM's NodeName.
        node_map: ``{NodeName: node_label value}``; key ``"*"`` applies to every node (a lab whose slurmd all
            run on one host); a node missing from the map keeps its name.
        models: members of the risk pipeline (subset of :data:`RISK_MODELS`).
        settings: settings trained and served (subset of :data:`RISK_SETTINGS`).
        keep_models: artefacts kept per setting in ``model_dir`` (the accepted one is never pruned).
        drift_window: seconds; jobs finished within it are compared with the training sample (PSI).

    """

    enabled: bool = True
    store: Path = Path("/var/lib/nomade/analytics/jobs.sqlite")
    model_dir: Path = Path("/var/lib/nomade/analytics/models")
    retrain_interval: float = 7 * 86400.0
    min_train_jobs: int = 200
    min_train_failures: int = 20
    cost_ratio: float = 5.0
    harvest_lookback: float = 3600.0
    history_window: float = 180 * 86400.0
    max_scored_jobs: int = 5000
    node_label: str = "node"
    node_map: dict[str, str] | None = None
    models: tuple[str, ...] = RISK_MODELS
    settings: tuple[str, ...] = RISK_SETTINGS
    keep_models: int = 5
    drift_window: float = 86400.0


_RISK_KEYS = {f.name for f in fields(RiskConfig)}


def parse_risk(table: Any, where: str = "analytics.risk") -> RiskConfig:
    """Build a :class:`RiskConfig` from the ``[analytics.risk]`` table (every key optional).

    Raises:
        ConfigError: not a table, unknown key, wrong type or range; the message names the key
            (``analytics.risk.min_train_jobs must be an integer >= 10``).

    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table ([analytics.risk])")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        k = f"{where}.{key}"
        if key not in _RISK_KEYS:
            raise ConfigError(f"unknown key {k}")
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{k} must be true or false")
            changes[key] = value
        elif key in ("store", "model_dir"):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{k} must be a path")
            changes[key] = Path(value)
        elif key in ("retrain_interval", "harvest_lookback", "history_window", "drift_window"):
            changes[key] = parse_duration(value, k)
        elif key in ("min_train_jobs", "min_train_failures", "max_scored_jobs", "keep_models"):
            # The time split needs >= 10 jobs (nomade.analytics.evaluate.time_split); one failure at least to
            # have two classes; one artefact at least (the accepted one).
            low = {"min_train_jobs": 10, "min_train_failures": 1, "max_scored_jobs": 1, "keep_models": 1}[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{k} must be an integer >= {low}")
            changes[key] = value
        elif key == "cost_ratio":
            if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
                raise ConfigError(f"{k} must be a positive finite number")
            changes[key] = float(value)
        elif key == "node_label":
            if not isinstance(value, str) or not _LABEL_RE.match(value):
                raise ConfigError(f"{k}: {value!r} is not a label name")
            changes[key] = value
        elif key == "node_map":
            if not isinstance(value, dict) or not all(
                isinstance(n, str) and n and isinstance(v, str) and v for n, v in value.items()
            ):
                raise ConfigError(f'{k} must be a table of node names to non-empty strings, e.g. {{ "*" = "host" }}')
            changes[key] = dict(value)
        elif key in ("models", "settings"):
            allowed = RISK_MODELS if key == "models" else RISK_SETTINGS
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{k} must be a non-empty list of names ({', '.join(allowed)})")
            bad = [v for v in value if v not in allowed]
            if bad:
                raise ConfigError(f"{k}: unknown {key[:-1]} {bad[0]!r} (expected {', '.join(allowed)})")
            if len(set(value)) != len(value):
                raise ConfigError(f"{k} lists a name twice")
            changes[key] = tuple(value)
    return replace(RiskConfig(), **changes)


@dataclass
class AnalyticsConfig:
    """Resolved service settings.

    Attributes:
        prometheus_url: query endpoint root.
        listen_address: ``host:port`` of the service's ``/metrics``.
        interval: seconds between cycle starts.
        timeout: seconds per HTTP request.
        retries: further attempts after a retryable failure.
        basic_auth: ``(username, password)`` or ``None``.
        bearer_token_file: file holding a bearer token, or ``None``.
        ca_file: CA bundle for TLS verification, or ``None`` (system CAs).
        insecure_skip_verify: no TLS verification at all.
        cluster_label: name of the label that tells clusters apart.
        cluster: when set, only series whose ``cluster_label`` equals it are watched (one service per cluster).
        keep_labels: labels of :data:`DROPPED_LABELS` that published series keep.
        log_level: Python logging level name.
        watches: the enabled watches, defaults first (in :data:`DEFAULT_WATCHES` order), then the file's.
        risk: the ``[analytics.risk]`` settings.

    """

    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    listen_address: str = f"127.0.0.1:{DEFAULT_PORT}"
    interval: float = 60.0
    timeout: float = 10.0
    retries: int = 2
    basic_auth: tuple[str, str] | None = None
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    cluster_label: str = "cluster"
    cluster: str | None = None
    keep_labels: tuple[str, ...] = ()
    log_level: str = "info"
    watches: list[Watch] = field(default_factory=lambda: list(DEFAULT_WATCHES))
    risk: RiskConfig = field(default_factory=RiskConfig)

    def host_port(self) -> tuple[str, int]:
        """Split :attr:`listen_address` into ``(host, port)`` (the exporter's parsing, :func:`split_host_port`).

        Raises:
            ConfigError: when the port is missing or not an integer.

        """
        try:
            return split_host_port(self.listen_address)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def verify(self) -> bool | str:
        """TLS verification setting for the client: ``False``, a CA bundle path, or ``True``."""
        if self.insecure_skip_verify:
            return False
        return str(self.ca_file) if self.ca_file else True

    def bearer_token(self) -> str | None:
        """The bearer token read from :attr:`bearer_token_file` (stripped), or ``None``.

        Raises:
            ConfigError: the file cannot be read or is empty.

        """
        if self.bearer_token_file is None:
            return None
        try:
            token = Path(self.bearer_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"analytics.bearer_token_file: {exc}") from exc
        if not token:
            raise ConfigError(f"analytics.bearer_token_file: {self.bearer_token_file} is empty")
        return token


_SERVICE_KEYS = {f.name for f in fields(AnalyticsConfig)} - {"watches", "basic_auth"} | {
    "basic_auth",
    "watch",
    "include_default_watches",
}
_WATCH_KEYS = {f.name for f in fields(Watch)}


def load_config(path: Path | str | None) -> AnalyticsConfig:
    """Read a TOML file into an :class:`AnalyticsConfig` (defaults and :data:`DEFAULT_WATCHES` when ``path`` is None).

    A ``[[analytics.watch]]`` whose name is a default watch's replaces it (``enabled = false`` removes it); other
    names are added after the defaults. ``include_default_watches = false`` keeps only the file's watches.

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown key, wrong value type or range, duplicate watch
            names, a watch with both ``threshold`` and ``threshold_query``; the message names file and key.

    """
    cfg = AnalyticsConfig()
    if path is None:
        return cfg
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown_top = set(data) - {"analytics"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown_top))} (expected [analytics])")
    section = data.get("analytics", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [analytics] must be a table")
    try:
        _apply_service(cfg, section)
        watch_tables = section.get("watch", [])
        if not isinstance(watch_tables, list) or not all(isinstance(w, dict) for w in watch_tables):
            raise ConfigError("analytics.watch must be an array of tables ([[analytics.watch]])")
        own = [parse_watch(w, f"analytics.watch[{i}]") for i, w in enumerate(watch_tables)]
        include = section.get("include_default_watches", True)
        if not isinstance(include, bool):
            raise ConfigError("analytics.include_default_watches must be true or false")
        cfg.watches = merge_watches(DEFAULT_WATCHES if include else (), own)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def merge_watches(defaults: tuple[Watch, ...] | list[Watch], own: list[Watch]) -> list[Watch]:
    """Defaults with the file's watches applied: same name replaces, ``enabled = false`` removes, others append.

    Raises:
        ConfigError: two of ``own`` share a name.

    """
    seen: set[str] = set()
    for w in own:
        if w.name in seen:
            raise ConfigError(f"watch name {w.name!r} is used twice")
        seen.add(w.name)
    by_name = {w.name: w for w in own}
    out = [by_name.pop(w.name, w) for w in defaults]
    out += [w for w in own if w.name in by_name]
    return [w for w in out if w.enabled]


def _apply_service(cfg: AnalyticsConfig, section: dict[str, Any]) -> None:
    for key, value in section.items():
        where = f"analytics.{key}"
        if key not in _SERVICE_KEYS:
            raise ConfigError(f"unknown key {where}")
        if key in ("watch", "include_default_watches"):
            continue
        if key == "risk":
            cfg.risk = parse_risk(value)
            continue
        if key in ("prometheus_url", "listen_address", "cluster_label", "cluster", "log_level"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a non-empty string")
            if key == "cluster_label" and not _LABEL_RE.match(value):
                raise ConfigError(f"{where}: {value!r} is not a label name")
            setattr(cfg, key, value)
        elif key in ("interval", "timeout"):
            setattr(cfg, key, parse_duration(value, where))
        elif key == "retries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where} must be an integer >= 0")
            cfg.retries = value
        elif key in ("bearer_token_file", "ca_file"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a file path")
            setattr(cfg, key, Path(value))
        elif key == "insecure_skip_verify":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false")
            cfg.insecure_skip_verify = value
        elif key == "keep_labels":
            cfg.keep_labels = _keep_labels(value, where)
        elif key == "basic_auth":
            cfg.basic_auth = _basic_auth(value)


def _basic_auth(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise ConfigError("analytics.basic_auth must be a table with username and password or password_file")
    unknown = set(value) - {"username", "password", "password_file"}
    if unknown:
        raise ConfigError(f"unknown key analytics.basic_auth.{sorted(unknown)[0]}")
    user = value.get("username")
    if not isinstance(user, str) or not user:
        raise ConfigError("analytics.basic_auth.username must be a non-empty string")
    if ("password" in value) == ("password_file" in value):
        raise ConfigError("analytics.basic_auth needs exactly one of password and password_file")
    if "password" in value:
        password = value["password"]
        if not isinstance(password, str):
            raise ConfigError("analytics.basic_auth.password must be a string")
        return user, password
    try:
        return user, Path(str(value["password_file"])).read_text().rstrip("\n")
    except OSError as exc:
        raise ConfigError(f"analytics.basic_auth.password_file: {exc}") from exc


def _keep_labels(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of label names")
    bad = [v for v in value if v not in DROPPED_LABELS]
    if bad:
        raise ConfigError(f"{where}: {bad[0]!r} is kept anyway; only {' and '.join(DROPPED_LABELS)} are dropped")
    return tuple(value)


def parse_watch(table: dict[str, Any], where: str = "analytics.watch") -> Watch:
    """Build a :class:`Watch` from one ``[[analytics.watch]]`` table.

    A table naming a default watch starts from that watch, so ``{name = "gpu_temperature", threshold = 80}``
    changes only the threshold; other watches need ``query``.

    Raises:
        ConfigError: unknown key, wrong type or range, both ``threshold`` and ``threshold_query``, a window too
            short for ``min_points`` points at ``step``.

    """
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name must be a non-empty string")
    where = f"analytics.watch {name!r}"
    if name == RISK_WATCH:
        raise ConfigError(f"{where}: the name {RISK_WATCH!r} is reserved for the risk engine's counters")
    for key in table:
        if key not in _WATCH_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    base = next((w for w in DEFAULT_WATCHES if w.name == name), None)
    if base is None and "query" not in table and table.get("enabled", True) is not False:
        raise ConfigError(f"{where}: query is required")
    w = base or Watch(name=name, query="")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        k = f"{where}: {key}"
        if key == "name":
            continue
        if key in ("query", "threshold_query", "unit"):
            if not isinstance(value, str) or (key != "unit" and not value.strip()):
                raise ConfigError(f"{k} must be a non-empty string" if key != "unit" else f"{k} must be a string")
            changes[key] = value
        elif key == "threshold":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{k} must be a finite number")
            changes[key] = float(value)
        elif key == "match_on":
            if not isinstance(value, list) or not all(isinstance(v, str) and _LABEL_RE.match(v) for v in value):
                raise ConfigError(f"{k} must be a list of label names")
            changes[key] = tuple(value)
        elif key == "direction":
            if value not in DIRECTIONS:
                raise ConfigError(f"{k} must be one of {', '.join(DIRECTIONS)}, got {value!r}")
            changes[key] = value
        elif key in ("window", "step"):
            changes[key] = parse_duration(value, k)
        elif key == "stale_after":
            changes[key] = parse_duration(value, k)
        elif key == "horizons":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{k} must be a non-empty list of durations")
            hs = []
            for v in value:
                seconds = parse_duration(v, k)
                label = v.strip() if isinstance(v, str) else format_duration(seconds)
                hs.append((label, seconds))
            if len({label for label, _ in hs}) != len(hs):
                raise ConfigError(f"{k} lists a horizon twice")
            changes[key] = tuple(hs)
        elif key in ("counter", "enabled"):
            if not isinstance(value, bool):
                raise ConfigError(f"{k} must be true or false")
            changes[key] = value
        elif key == "min_points":
            # A quadratic has 3 parameters; standard errors need residual degrees of freedom on top.
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ConfigError(f"{k} must be an integer >= 4")
            changes[key] = value
        elif key == "keep_labels":
            changes[key] = _keep_labels(value, k)
    # A file's threshold replaces a default's threshold_query and the other way round.
    if "threshold" in changes and "threshold_query" in changes:
        raise ConfigError(f"{where}: give threshold or threshold_query, not both")
    if "threshold" in changes:
        changes.setdefault("threshold_query", None)
        changes.setdefault("match_on", ())
    if "threshold_query" in changes:
        changes.setdefault("threshold", None)
    w = replace(w, **changes)
    if not w.enabled:
        return w
    if w.match_on and w.threshold_query is None:
        raise ConfigError(f"{where}: match_on needs threshold_query")
    if w.step > w.window:
        raise ConfigError(
            f"{where}: step ({format_duration(w.step)}) is longer than window ({format_duration(w.window)})"
        )
    points = int(w.window // w.step) + 1
    if points < w.min_points:
        raise ConfigError(
            f"{where}: window {format_duration(w.window)} at step {format_duration(w.step)} gives {points} points,"
            f" fewer than min_points ({w.min_points})"
        )
    return w
