"""Analytics configuration: durations, defaults, [[analytics.watch]] parsing and its error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nomade.analytics.config import (
    DEFAULT_WATCHES,
    AnalyticsConfig,
    ConfigError,
    RiskConfig,
    Watch,
    format_duration,
    load_config,
    parse_duration,
    parse_watch,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("6h", 21600.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1d12h", 129600.0),
        ("500ms", 0.5),
        ("1y", 365 * 86400.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 m", "5M", "m", "-5m", "1.5h", "30m1h", "5min", "0s", 0, -3, True, None])
def test_parse_duration_rejects(bad):
    with pytest.raises(ConfigError, match=r"window"):
        parse_duration(bad, "window")


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h"), (86400, "1d"), (5400, "1h30m"), (604800, "1w"), (90, "1m30s")]
)
def test_format_duration_round_trips(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg.prometheus_url == "http://127.0.0.1:9090"
    assert cfg.listen_address == "127.0.0.1:9867"
    assert cfg.host_port() == ("127.0.0.1", 9867)
    assert cfg.interval == 60.0
    assert [w.name for w in cfg.watches] == [
        "filesystem_used",
        "pending_jobs",
        "failed_job_rate",
        "job_memory",
        "gpu_temperature",
        "nfs_latency",
        "license_usage",
    ]
    fs = cfg.watches[0]
    assert fs.query == "nomade_filesystem_size_bytes - nomade_filesystem_avail_bytes"
    assert fs.threshold_query == "nomade_filesystem_size_bytes" and fs.threshold is None
    assert fs.queries_per_cycle == 2
    mem = next(w for w in cfg.watches if w.name == "job_memory")
    assert mem.threshold_query == "nomade_job_usage_memory_limit_bytes" and "job_id" in mem.match_on
    gpu = next(w for w in cfg.watches if w.name == "gpu_temperature")
    assert gpu.threshold == 85.0 and gpu.queries_per_cycle == 1
    assert cfg.verify() is True and cfg.bearer_token() is None


def test_default_watches_only_use_cataloged_metrics_and_pass_validation():
    from nomade.exporter.catalog import catalog_names

    names = catalog_names()
    for w in DEFAULT_WATCHES:
        used = set(re.findall(r"nomade_[a-z0-9_]+", w.query + " " + (w.threshold_query or "")))
        assert used and used <= names, (w.name, used - names)
        # the table form of the default validates and changes nothing
        assert parse_watch({"name": w.name, "query": w.query}) == w
        assert w.window / w.step + 1 >= w.min_points


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "analytics.toml"
    p.write_text(text)
    return p


def test_full_file(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "pw").write_text("hunter2\n")
    p = write(
        tmp_path,
        f"""
[analytics]
prometheus_url = "https://vm.example/select/0/prometheus"
listen_address = "0.0.0.0:19867"
interval = "15s"
timeout = 5
retries = 0
bearer_token_file = "{tmp_path}/token"
ca_file = "/etc/ssl/ca.pem"
cluster_label = "site"
cluster = "hpc1"
keep_labels = ["instance"]
include_default_watches = false

[analytics.basic_auth]
username = "nomade"
password_file = "{tmp_path}/pw"

[[analytics.watch]]
name = "scratch_inodes"
query = "nomade_filesystem_files - nomade_filesystem_files_free"
threshold_query = "nomade_filesystem_files"
match_on = ["node", "mountpoint"]
unit = "inodes"
window = "12h"
step = "10m"
horizons = ["6h", 86400]
min_points = 8
stale_after = "30m"
keep_labels = []

[[analytics.watch]]
name = "queue"
query = 'sum(nomade_slurm_queue_jobs{{state="pending"}})'
direction = "below"
threshold = 0
counter = false
""",
    )
    cfg = load_config(p)
    assert cfg.prometheus_url == "https://vm.example/select/0/prometheus"
    assert cfg.host_port() == ("0.0.0.0", 19867)
    assert (cfg.interval, cfg.timeout, cfg.retries) == (15.0, 5.0, 0)
    assert cfg.bearer_token() == "s3cret"
    assert cfg.verify() == "/etc/ssl/ca.pem"
    assert cfg.basic_auth == ("nomade", "hunter2")
    assert (cfg.cluster_label, cfg.cluster, cfg.keep_labels) == ("site", "hpc1", ("instance",))
    assert [w.name for w in cfg.watches] == ["scratch_inodes", "queue"]
    w = cfg.watches[0]
    assert w == Watch(
        name="scratch_inodes",
        query="nomade_filesystem_files - nomade_filesystem_files_free",
        threshold_query="nomade_filesystem_files",
        match_on=("node", "mountpoint"),
        unit="inodes",
        window=43200.0,
        step=600.0,
        horizons=(("6h", 21600.0), ("1d", 86400.0)),
        min_points=8,
        stale_after=1800.0,
        keep_labels=(),
    )
    q = cfg.watches[1]
    assert (q.direction, q.threshold, q.threshold_query, q.effective_stale_after) == ("below", 0.0, None, 600.0)


def test_insecure_skip_verify(tmp_path):
    cfg = load_config(write(tmp_path, '[analytics]\ninsecure_skip_verify = true\nca_file = "/x.pem"\n'))
    assert cfg.verify() is False


def test_watch_overrides_default_by_name_and_disables(tmp_path):
    p = write(
        tmp_path,
        """
[[analytics.watch]]
name = "gpu_temperature"
threshold = 80

[[analytics.watch]]
name = "nfs_latency"
enabled = false

[[analytics.watch]]
name = "filesystem_used"
threshold = 0.9e12

[[analytics.watch]]
name = "mine"
query = "up"
""",
    )
    cfg = load_config(p)
    names = [w.name for w in cfg.watches]
    assert names == [
        "filesystem_used",
        "pending_jobs",
        "failed_job_rate",
        "job_memory",
        "gpu_temperature",
        "license_usage",
        "mine",
    ]
    gpu = cfg.watches[4]
    default_gpu = next(w for w in DEFAULT_WATCHES if w.name == "gpu_temperature")
    assert gpu.threshold == 80.0 and gpu.query == default_gpu.query and gpu.window == default_gpu.window
    fs = cfg.watches[0]
    # a constant threshold replaces the default's threshold_query (and its matching labels)
    assert (fs.threshold, fs.threshold_query, fs.match_on) == (0.9e12, None, ())


def error_of(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert msg.startswith(str(p)), msg  # every message names the file
    return msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[analytics]\nintervall = 5\n", "unknown key analytics.intervall"),
        ("[exporter]\nmode = 'all'\n", "unknown section(s) exporter"),
        ("[analytics]\ninterval = 'soon'\n", "analytics.interval: 'soon' is not a duration"),
        ("[analytics]\ninterval = 0\n", "analytics.interval: must be positive"),
        ("[analytics]\nretries = -1\n", "analytics.retries must be an integer >= 0"),
        ("[analytics]\nprometheus_url = ''\n", "analytics.prometheus_url must be a non-empty string"),
        ("[analytics]\ncluster_label = 'a-b'\n", "analytics.cluster_label: 'a-b' is not a label name"),
        ("[analytics]\nkeep_labels = ['node']\n", "'node' is kept anyway"),
        ("[analytics]\ninsecure_skip_verify = 'yes'\n", "insecure_skip_verify must be true or false"),
        ("[analytics]\ninclude_default_watches = 1\n", "include_default_watches must be true or false"),
        ("[analytics.basic_auth]\nusername = 'u'\n", "exactly one of password and password_file"),
        ("[analytics.basic_auth]\npassword = 'p'\n", "basic_auth.username must be a non-empty string"),
        ("[analytics.basic_auth]\nusername = 'u'\npassword = 'p'\nrealm = 'x'\n", "analytics.basic_auth.realm"),
        ("[analytics]\nwatch = 3\n", "array of tables"),
        ("[[analytics.watch]]\nquery = 'up'\n", "analytics.watch[0].name must be a non-empty string"),
        ("[[analytics.watch]]\nname = 'x'\n", "watch 'x': query is required"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nwindoe = '1h'\n", "watch 'x': unknown key 'windoe'"),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\nthreshold = 1\nthreshold_query = 'up'\n",
            "give threshold or threshold_query, not both",
        ),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nthreshold = 'high'\n", "threshold must be a finite number"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nthreshold = nan\n", "threshold must be a finite number"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\ndirection = 'up'\n", "direction must be one of above, below"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nmatch_on = ['node']\n", "match_on needs threshold_query"),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\nthreshold_query = 'up'\nmatch_on = ['a b']\n",
            "match_on must be a list of label names",
        ),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nwindow = '6x'\n", "watch 'x': window: '6x' is not a duration"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nmin_points = 2\n", "min_points must be an integer >= 4"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\ncounter = 'no'\n", "counter must be true or false"),
        ("[[analytics.watch]]\nname = 'x'\nquery = 'up'\nhorizons = []\n", "horizons must be a non-empty list"),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\nhorizons = ['1h', 3600]\n",
            "horizons lists a horizon twice",
        ),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\nwindow = '5m'\nstep = '10m'\n",
            "step (10m) is longer than window (5m)",
        ),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\nwindow = '20m'\nstep = '5m'\n",
            "window 20m at step 5m gives 5 points, fewer than min_points (6)",
        ),
        (
            "[[analytics.watch]]\nname = 'x'\nquery = 'up'\n[[analytics.watch]]\nname = 'x'\nquery = 'up'\n",
            "watch name 'x' is used twice",
        ),
        ("[analytics\n", "Expected ']'"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, needle):
    assert needle in error_of(tmp_path, text)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.toml")
    cfg = load_config(write(tmp_path, f'[analytics]\nbearer_token_file = "{tmp_path}/nope"\n'))
    with pytest.raises(ConfigError, match="analytics.bearer_token_file"):
        cfg.bearer_token()
    (tmp_path / "empty").write_text("\n")
    cfg = load_config(write(tmp_path, f'[analytics]\nbearer_token_file = "{tmp_path}/empty"\n'))
    with pytest.raises(ConfigError, match="is empty"):
        cfg.bearer_token()


def test_listen_address_must_have_a_port():
    with pytest.raises(ConfigError, match="not host:port"):
        AnalyticsConfig(listen_address="localhost").host_port()
    assert AnalyticsConfig(listen_address="[::1]:9867").host_port() == ("::1", 9867)


# -- [analytics.risk] ---------------------------------------------------------------------------------------------


def test_risk_defaults():
    r = load_config(None).risk
    assert r == RiskConfig()
    assert r.enabled is True
    assert r.store == Path("/var/lib/nomade/analytics/jobs.sqlite")
    assert r.model_dir == Path("/var/lib/nomade/analytics/models")
    assert r.retrain_interval == 7 * 86400.0  # the seed's retrain_interval_days = 7
    assert (r.min_train_jobs, r.min_train_failures, r.cost_ratio) == (200, 20, 5.0)
    assert (r.harvest_lookback, r.history_window, r.drift_window) == (3600.0, 180 * 86400.0, 86400.0)
    assert (r.max_scored_jobs, r.keep_models, r.node_label, r.node_map) == (5000, 5, "node", None)
    assert r.models == ("gbm", "knn", "gnn", "autoencoder") and r.settings == ("submit", "run")


def test_risk_full_section(tmp_path):
    p = write(
        tmp_path,
        """
[analytics]
cluster = "hpc1"

[analytics.risk]
enabled = false
store = "/srv/nomade/jobs.sqlite"
model_dir = "/srv/nomade/models"
retrain_interval = "1d"
min_train_jobs = 30
min_train_failures = 5
cost_ratio = 2
harvest_lookback = "6h"
history_window = "30d"
max_scored_jobs = 100
node_label = "instance_node"
node_map = { "*" = "lab-host", "c01" = "node01" }
models = ["gbm", "autoencoder"]
settings = ["submit"]
keep_models = 2
drift_window = 7200
""",
    )
    cfg = load_config(p)
    assert cfg.cluster == "hpc1" and len(cfg.watches) == len(DEFAULT_WATCHES)
    assert cfg.risk == RiskConfig(
        enabled=False,
        store=Path("/srv/nomade/jobs.sqlite"),
        model_dir=Path("/srv/nomade/models"),
        retrain_interval=86400.0,
        min_train_jobs=30,
        min_train_failures=5,
        cost_ratio=2.0,
        harvest_lookback=21600.0,
        history_window=30 * 86400.0,
        max_scored_jobs=100,
        node_label="instance_node",
        node_map={"*": "lab-host", "c01": "node01"},
        models=("gbm", "autoencoder"),
        settings=("submit",),
        keep_models=2,
        drift_window=7200.0,
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[analytics]\nrisk = 3\n", "analytics.risk must be a table"),
        ("[analytics.risk]\nenable = true\n", "unknown key analytics.risk.enable"),
        ("[analytics.risk]\nenabled = 'yes'\n", "analytics.risk.enabled must be true or false"),
        ("[analytics.risk]\nstore = ''\n", "analytics.risk.store must be a path"),
        ("[analytics.risk]\nmodel_dir = 3\n", "analytics.risk.model_dir must be a path"),
        ("[analytics.risk]\nretrain_interval = 'weekly'\n", "analytics.risk.retrain_interval: 'weekly' is not a"),
        ("[analytics.risk]\ndrift_window = 0\n", "analytics.risk.drift_window: must be positive"),
        ("[analytics.risk]\nharvest_lookback = true\n", "analytics.risk.harvest_lookback: expected a duration"),
        ("[analytics.risk]\nmin_train_jobs = 5\n", "analytics.risk.min_train_jobs must be an integer >= 10"),
        ("[analytics.risk]\nmin_train_failures = 0\n", "analytics.risk.min_train_failures must be an integer >= 1"),
        ("[analytics.risk]\nmax_scored_jobs = 1.5\n", "analytics.risk.max_scored_jobs must be an integer >= 1"),
        ("[analytics.risk]\nkeep_models = true\n", "analytics.risk.keep_models must be an integer >= 1"),
        ("[analytics.risk]\ncost_ratio = 0\n", "analytics.risk.cost_ratio must be a positive finite number"),
        ("[analytics.risk]\ncost_ratio = inf\n", "analytics.risk.cost_ratio must be a positive finite number"),
        ("[analytics.risk]\nnode_label = 'a-b'\n", "analytics.risk.node_label: 'a-b' is not a label name"),
        ("[analytics.risk]\nnode_map = ['x']\n", "analytics.risk.node_map must be a table"),
        ("[analytics.risk]\nnode_map = { c01 = 1 }\n", "analytics.risk.node_map must be a table"),
        ("[analytics.risk]\nmodels = []\n", "analytics.risk.models must be a non-empty list"),
        ("[analytics.risk]\nmodels = ['gbm', 'svm']\n", "analytics.risk.models: unknown model 'svm'"),
        ("[analytics.risk]\nmodels = ['gbm', 'gbm']\n", "analytics.risk.models lists a name twice"),
        ("[analytics.risk]\nsettings = ['train']\n", "analytics.risk.settings: unknown setting 'train'"),
        ("[[analytics.watch]]\nname = 'risk'\nquery = 'up'\n", "the name 'risk' is reserved"),
    ],
)
def test_risk_config_errors_name_the_key(tmp_path, text, needle):
    assert needle in error_of(tmp_path, text)


def test_risk_models_are_the_pipelines():
    from nomade.analytics.pipeline import KNOWN_MODELS

    assert set(RiskConfig().models) == set(KNOWN_MODELS)
