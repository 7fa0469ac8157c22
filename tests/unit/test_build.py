"""``nomade build`` (cli/build.py): the output tree, byte-identical reruns, provisioning files, errors.

The generated rules and Alertmanager configuration are checked with the real promtool/amtool (Debian packages
``prometheus`` and ``prometheus-alertmanager``); every metric name of every dashboard and rule must be in the metric
catalog, be a recording rule of ours, or be one of the series Prometheus writes for every scrape (``up``...).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nomade.alerting.config import load_monitoring_config
from nomade.cli import build as build_mod
from nomade.cli import targets as targets_mod
from nomade.cli.main import main
from nomade.dashboards import DASHBOARDS, build_all, common
from nomade.dashboards.health import PROMETHEUS_SERIES
from nomade.exporter.parsers.scontrol import parse_nodes

DASHBOARD_FILES = [
    "nomade-gpus.json",
    "nomade-health.json",
    "nomade-jobs-risk.json",
    "nomade-licenses.json",
    "nomade-nfs.json",
    "nomade-node-resources.json",
    "nomade-nodes.json",
    "nomade-overview.json",
    "nomade-queue.json",
    "nomade-storage.json",
]
FIXED_FILES = [
    "alertmanager/alertmanager.yml",
    "grafana/provisioning/dashboards/nomade.yaml",
    "grafana/provisioning/datasources/nomade.yaml",
    "prometheus/nomade-rules.yml",
    "prometheus/scrape-nomade.yml",
]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _build(out: Path, *extra: str) -> int:
    return main(["build", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "out"
    assert main(["build", "--out", str(out)]) == 0
    return out


def test_output_tree(built):
    files = sorted(_tree(built))
    assert files == sorted(FIXED_FILES + [f"grafana/dashboards/{f}" for f in DASHBOARD_FILES])
    assert sorted(f"nomade-{k}.json" for k, _ in DASHBOARDS) == DASHBOARD_FILES


def test_stdout_lists_the_written_files(tmp_path, capsys):
    assert _build(tmp_path / "o") == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(FIXED_FILES + [f"grafana/dashboards/{f}" for f in DASHBOARD_FILES])


def test_byte_identical_across_runs_and_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "nested" / "b"
    assert _build(a) == 0
    assert _build(b) == 0
    ta, tb = _tree(a), _tree(b)
    assert list(ta) == list(tb)
    for rel in ta:
        assert ta[rel] == tb[rel], rel
    assert _build(a) == 0  # rebuilding in place changes nothing
    assert _tree(a) == ta
    for rel, data in ta.items():  # no absolute path of --out leaks into the output
        assert str(tmp_path).encode() not in data, rel


def test_dashboard_files_are_the_models(built):
    cfg = load_monitoring_config(None)
    models = build_all(cfg)
    for name, model in models.items():
        text = (built / "grafana" / "dashboards" / name).read_text(encoding="utf-8")
        assert text == json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert json.loads(text) == model
        assert model["uid"].startswith("nomade-")


def test_provisioning_files(built):
    ds = yaml.safe_load((built / "grafana/provisioning/datasources/nomade.yaml").read_text())
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert source == {
        "name": "Prometheus",
        "uid": "nomade-prometheus",
        "type": "prometheus",
        "access": "proxy",
        "url": "http://127.0.0.1:9090",
        "isDefault": False,
        "editable": False,
        "jsonData": {"timeInterval": "15s", "httpMethod": "POST"},
    }
    # every dashboard's datasource variable defaults to that uid
    for f in DASHBOARD_FILES:
        model = json.loads((built / "grafana/dashboards" / f).read_text())
        [var] = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
        assert var["current"]["value"] == source["uid"], f
    prov = yaml.safe_load((built / "grafana/provisioning/dashboards/nomade.yaml").read_text())
    [provider] = prov["providers"]
    assert prov["apiVersion"] == 1
    assert provider["type"] == "file" and provider["folder"] == "NØMADE"
    assert provider["allowUiUpdates"] is True  # [grafana] editable defaults to true
    assert provider["options"]["path"] == build_mod.DEFAULT_GRAFANA_DASHBOARDS_PATH


def test_configuration_reaches_every_artefact(tmp_path):
    conf = tmp_path / "m.toml"
    conf.write_text(
        '[monitoring]\nexporter_job = "nx"\nanalytics_job = "na"\n'
        '[grafana]\ndatasource_uid = "site-prom"\ndatasource_name = "Site"\n'
        'datasource_url = "http://prom.example:9090"\nfolder = "HPC"\neditable = false\n'
    )
    out = tmp_path / "o"
    assert _build(out, "--config", str(conf)) == 0
    [source] = yaml.safe_load((out / "grafana/provisioning/datasources/nomade.yaml").read_text())["datasources"]
    assert (source["uid"], source["name"], source["url"]) == ("site-prom", "Site", "http://prom.example:9090")
    model = json.loads((out / "grafana/dashboards/nomade-health.json").read_text())
    [var] = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
    assert var["current"]["value"] == "site-prom"
    [provider] = yaml.safe_load((out / "grafana/provisioning/dashboards/nomade.yaml").read_text())["providers"]
    assert (provider["folder"], provider["allowUiUpdates"]) == ("HPC", False)
    text = (out / "prometheus/scrape-nomade.yml").read_text()
    scrape = yaml.safe_load(text)
    assert [j["job_name"] for j in scrape["scrape_configs"]] == ["nx", "na"]
    assert "# target of the nx job, next to file_sd_configs" in text


def test_scrape_snippet_exporter_job_reads_the_targets_file(built):
    text = (built / "prometheus/scrape-nomade.yml").read_text()
    scrape = yaml.safe_load(text)
    assert scrape["scrape_configs"] == [
        {
            "job_name": "nomade",
            "honor_labels": True,
            "file_sd_configs": [{"files": ["/etc/prometheus/file_sd/nomade.json"]}],
        },
        {"job_name": "nomade-analytics", "honor_labels": True, "static_configs": [{"targets": ["127.0.0.1:9867"]}]},
    ]
    assert build_mod.EXPORTER_FILE_SD == targets_mod.FILE_SD_PATH == "/etc/prometheus/file_sd/nomade.json"
    # no static exporter target: 127.0.0.1:9866 merged on the Prometheus host scraped that host as "controller"
    assert "9866" not in yaml.safe_dump(scrape) and "controller" not in yaml.safe_dump(scrape)
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert "#   nomade targets --out /etc/prometheus/file_sd/nomade.json" in header
    assert header[5:8] == [
        "# ACTION REQUIRED (controller exporter): add the SLURM controller's host:9866 as a static",
        "# target of the nomade job, next to file_sd_configs (no `node` label: its series carry theirs):",
        "#   static_configs: [{targets: ['<slurm-controller-host>:9866']}]",
    ]
    # the placeholder line is valid YAML for the job once uncommented
    example = yaml.safe_load(header[7].lstrip("# "))
    assert example == {"static_configs": [{"targets": ["<slurm-controller-host>:9866"]}]}


def test_scrape_snippet_and_rules_load_into_prometheus(built, tmp_path):
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing (Debian package prometheus)")
    scrape = yaml.safe_load((built / "prometheus/scrape-nomade.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert set(jobs) == {"nomade", "nomade-analytics"}
    assert all(j["honor_labels"] is True for j in jobs.values())
    # a prometheus.yml as the README tells an operator to write it: rule_files + the snippet's jobs, the controller
    # added as the header says, and the file_sd file of `nomade targets` at a temporary path
    file_sd = tmp_path / "file_sd/nomade.json"
    node = "NodeName=c001 NodeHostName=c001 NodeAddr=10.0.0.1 State=IDLE Partitions=compute"
    targets_mod.write_atomic(file_sd, targets_mod.render_file_sd(targets_mod.build_targets(parse_nodes(node).records)))
    assert jobs["nomade"]["file_sd_configs"] == [{"files": [targets_mod.FILE_SD_PATH]}]
    jobs["nomade"]["file_sd_configs"] = [{"files": [str(file_sd)]}]
    jobs["nomade"]["static_configs"] = [{"targets": ["slurmctl01:9866"]}]
    rules = built / "prometheus/nomade-rules.yml"
    conf = tmp_path / "prometheus.yml"
    conf.write_text(yaml.safe_dump({"rule_files": [str(rules)], **scrape}))
    res = subprocess.run(["promtool", "check", "config", str(conf)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout and "rules found" in res.stdout
    assert "WARNING" not in res.stdout + res.stderr  # the file_sd file exists and parses
    res = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning" not in (res.stdout + res.stderr).lower()


def test_alertmanager_file_passes_amtool(built):
    if shutil.which("amtool") is None:
        pytest.fail("amtool missing (Debian package prometheus-alertmanager)")
    path = built / "alertmanager/alertmanager.yml"
    res = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_metric_name_is_known(built):
    known = common.known_metric_names() | PROMETHEUS_SERIES
    for f in DASHBOARD_FILES:
        model = json.loads((built / "grafana/dashboards" / f).read_text())
        assert common.unknown_metric_names(model, known) == {}, f
    doc = yaml.safe_load((built / "prometheus/nomade-rules.yml").read_text())
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    assert recorded, "no recording rule"
    n = 0
    for group in doc["groups"]:
        for rule in group["rules"]:
            unknown = common.metric_names(rule["expr"]) - known - recorded
            assert not unknown, (rule.get("record") or rule.get("alert"), unknown)
            n += 1
    assert n >= 20
    # the recording rules named level:metric:operations
    for name in recorded:
        assert name.count(":") == 2, name


# ---- errors: exit status 2 and a message naming the path or key ---------------------------------------------


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert _build(blocker) == 2
    err = capsys.readouterr().err
    assert "nomade build:" in err and str(blocker) in err and "not a directory" in err
    assert _build(blocker / "sub") == 2
    err = capsys.readouterr().err
    assert str(blocker) in err, err


def test_unknown_config_key(tmp_path, capsys):
    conf = tmp_path / "bad.toml"
    conf.write_text("[monitoring]\nexporter_jobb = 'x'\n")
    out = tmp_path / "o"
    assert _build(out, "--config", str(conf)) == 2
    err = capsys.readouterr().err
    assert str(conf) in err and "exporter_jobb" in err
    assert not out.exists()  # nothing written


def test_bad_value_and_bad_toml_and_missing_file(tmp_path, capsys):
    conf = tmp_path / "bad.toml"
    conf.write_text('[grafana]\ndatasource_uid = "has space"\n')
    assert _build(tmp_path / "o", "--config", str(conf)) == 2
    err = capsys.readouterr().err
    assert "datasource_uid" in err and str(conf) in err
    conf.write_text("[monitoring\n")
    assert _build(tmp_path / "o", "--config", str(conf)) == 2
    assert str(conf) in capsys.readouterr().err
    missing = tmp_path / "nope.toml"
    assert _build(tmp_path / "o", "--config", str(missing)) == 2
    assert str(missing) in capsys.readouterr().err


def test_out_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build"])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_missing_build_extra_is_a_clear_error(tmp_path, capsys, monkeypatch):
    # An exporter-only install (no `build` extra) lacks grafanalib and attrs: say which extra to install, exit 2.
    def no_grafanalib(cfg):
        raise ModuleNotFoundError("No module named 'attr'", name="attr")

    monkeypatch.setattr(build_mod, "render_all", no_grafanalib)
    assert main(["build", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs the build extra (attr)" in err and "[build]" in err
    assert not (tmp_path / "out").exists()
