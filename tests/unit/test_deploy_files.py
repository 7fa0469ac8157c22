"""deploy/: the example configuration documents every key the loaders know, with its default; the systemd units.

Key sets are derived from the code (dataclass fields, the loaders' own key sets, the collectors' ``self.option(...)``
calls, the ``_check_keys`` lists of the Alertmanager settings), never from a list kept here, so a key added to a
loader without being documented in ``deploy/nomade.toml.example`` fails this test.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import importlib
import inspect
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from nomade.alerting import alertmanager
from nomade.alerting.config import MonitoringConfig, Thresholds, load_monitoring_config
from nomade.analytics import config as analytics_config
from nomade.cli.syscheck import COMPONENT_TABLES, split_config
from nomade.dashboards.config import GrafanaSettings
from nomade.exporter import config as exporter_config
from nomade.exporter.collectors import COLLECTOR_MODULES, collector_classes

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy/nomade.toml.example"
UNITS = sorted((REPO / "deploy/systemd").glob("*.service"))
_COMMENTED = re.compile(r"^#\s?(?=\[\[?[A-Za-z][\w.\-]*\]\]?\s*(#|$)|[A-Za-z_][\w.\-]*\s*=)")


# -- keys from the code --------------------------------------------------------------------------------------------


def option_defaults(module) -> dict[str, ast.expr]:
    """``{key: default expression}`` of every ``self.option("key", default)`` call in a collector module."""
    out: dict[str, ast.expr] = {}
    for n in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "option":
            assert isinstance(n.args[0], ast.Constant), f"{module.__name__}: option key is not a literal"
            out.setdefault(n.args[0].value, n.args[1])
    return out


def set_literal_in(func) -> set[str]:
    """The string set literal of a ``set(x) - {...}`` / ``x - {...}`` check inside ``func``."""
    for n in ast.walk(ast.parse(inspect.getsource(func).lstrip())):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub) and isinstance(n.right, ast.Set):
            return {ast.literal_eval(e) for e in n.right.elts}
    raise AssertionError(f"no key set in {func.__name__}")


def check_keys_lists() -> dict[str, set[str]]:
    """``{class name (+ '.inhibitions'): keys}`` from every ``_check_keys(table, [...], key)`` call."""
    out: dict[str, set[str]] = {}
    for cls in ast.walk(ast.parse(inspect.getsource(alertmanager))):
        if not isinstance(cls, ast.ClassDef):
            continue
        for n in ast.walk(cls):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_check_keys":
                suffix = ".inhibitions" if "inhibitions" in ast.unparse(n.args[2]) else ""
                out[cls.name + suffix] = {ast.literal_eval(e) for e in n.args[1].elts}
    return out


def field_names(cls, drop=()) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - set(drop)


# -- the example ---------------------------------------------------------------------------------------------------


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def uncommented() -> dict:
    """The example with every commented-out key and table header switched on: the documented key set."""
    lines = [_COMMENTED.sub("", ln) for ln in example_text().splitlines()]
    return tomllib.loads("\n".join(lines))


def load_part(tmp_path: Path, component: str, loader):
    path = tmp_path / f"{component}.toml"
    path.write_text(split_config(example_text())[component])
    return loader(path)


def test_example_splits_into_the_three_components_only():
    parts = split_config(example_text())
    assert set(parts) == set(COMPONENT_TABLES)
    assert set(tomllib.loads(example_text())) == {t for ts in COMPONENT_TABLES.values() for t in ts}


def test_exporter_part_loads_with_the_defaults(tmp_path):
    cfg = exporter_config.load_config(None)  # the built-in defaults
    got = load_part(tmp_path, "exporter", exporter_config.load_config)
    for key in field_names(exporter_config.ExporterConfig, ("collectors", "enabled", "state_dir")):
        assert getattr(got, key) == getattr(cfg, key), key
    assert got.state_dir == Path("/var/lib/nomade")  # the documented default when run as root (the services)
    classes = collector_classes()
    assert list(got.collectors) == list(classes)  # one section per collector, in COLLECTOR_MODULES order
    # `enabled` is left to the mode (commented out) in every default-on table; an explicit value would force the
    # collector in every mode (controller collectors on compute nodes). Only the opt-in collectors, which a table
    # with settings would switch on, keep an explicit `enabled = false` (their default).
    assert got.enabled == {name: False for name, cls in classes.items() if not cls.default_enabled}
    assert set(got.enabled) == {"licenses", "quota", "reachability"}


@pytest.mark.parametrize("mode", ["node", "controller", "all"])
def test_exporter_part_chooses_the_same_collectors_as_no_file(tmp_path, mode):
    """Copying the example's exporter tables changes nothing: each mode runs the same collectors as without a file."""
    from nomade.exporter.cli import _wanted

    got = load_part(tmp_path, "exporter", exporter_config.load_config)
    got.mode = mode
    default = exporter_config.load_config(None)
    default.mode = mode
    classes = collector_classes()
    chosen = {name for name, cls in classes.items() if _wanted(cls, got)}
    assert chosen == {name for name, cls in classes.items() if _wanted(cls, default)}
    if mode == "node":  # no controller collector (squeue, sacct, sshare...) on a compute node
        assert chosen and all(classes[name].mode == "node" for name in chosen)


def test_example_leaves_enabled_commented_in_default_on_tables():
    text = example_text()
    for name, cls in collector_classes().items():
        table = text.split(f"[collector.{name}]\n", 1)[1].split("\n[", 1)[0]
        if cls.default_enabled:
            assert "\n# enabled = " in "\n" + table and "\nenabled" not in "\n" + table, name
        else:
            assert "\nenabled = false" in "\n" + table, name


def test_collector_values_are_the_code_defaults():
    doc = tomllib.loads(example_text())["collector"]
    checked = 0
    for mod_name in COLLECTOR_MODULES:
        module = importlib.import_module(f"nomade.exporter.collectors.{mod_name}")
        name = module.COLLECTOR.name
        for key, expr in option_defaults(module).items():
            if key not in doc[name]:
                continue  # commented out: an "unset" default, checked below
            default = eval(ast.unparse(expr), vars(module))  # noqa: S307 - the collector's own default expression
            value = doc[name][key]
            if isinstance(default, tuple | set | frozenset):
                default = sorted(default) if isinstance(default, set | frozenset) else list(default)
            assert value == default, f"[collector.{name}] {key} = {value!r}, code default {default!r}"
            checked += 1
    assert checked > 90  # 93 when written


def test_commented_collector_keys_are_the_unset_ones():
    doc = tomllib.loads(example_text())["collector"]
    for mod_name in COLLECTOR_MODULES:
        module = importlib.import_module(f"nomade.exporter.collectors.{mod_name}")
        name = module.COLLECTOR.name
        for key, expr in option_defaults(module).items():
            if key in doc[name] or (name, key) == ("licenses", "servers"):
                continue
            # only options without a literal default may be left commented (None, or computed from the context)
            src = ast.unparse(expr)
            assert src == "None" or "ctx." in src, f"[collector.{name}] {key} is commented but defaults to {src}"


def test_analytics_and_monitoring_parts_load_as_the_defaults(tmp_path):
    assert load_part(tmp_path, "analytics", analytics_config.load_config) == analytics_config.AnalyticsConfig()
    assert load_part(tmp_path, "monitoring", load_monitoring_config) == MonitoringConfig()


def test_every_key_known_to_the_loaders_is_documented():
    doc = uncommented()
    # exporter
    assert set(doc["exporter"]) == field_names(exporter_config.ExporterConfig, ("collectors", "enabled"))
    classes = collector_classes()
    assert set(doc["collector"]) == set(classes)
    for mod_name in COLLECTOR_MODULES:
        module = importlib.import_module(f"nomade.exporter.collectors.{mod_name}")
        name = module.COLLECTOR.name
        assert set(doc["collector"][name]) == set(option_defaults(module)) | {"enabled"}, name
    from nomade.exporter.collectors import licenses

    assert set(doc["collector"]["licenses"]["servers"][0]) == set_literal_in(licenses.parse_servers)
    # analytics
    a = doc["analytics"]
    assert set(a) == analytics_config._SERVICE_KEYS
    assert set(a["watch"][0]) == analytics_config._WATCH_KEYS
    assert set(a["risk"]) == analytics_config._RISK_KEYS
    assert set(a["basic_auth"]) == set_literal_in(analytics_config._basic_auth)
    # monitoring
    assert set(doc["monitoring"]) == field_names(MonitoringConfig, ("alertmanager", "grafana"))
    assert set(doc["monitoring"]["thresholds"]) == field_names(Thresholds)
    assert set(doc["grafana"]) == field_names(GrafanaSettings)
    lists = check_keys_lists()
    am = doc["alertmanager"]
    receiver = am["receivers"]["hpc-admins"]
    assert set(am) == lists["AlertmanagerSettings"]
    assert set(am["smtp"]) == lists["SmtpSettings"]
    assert set(am["inhibitions"]) == lists["AlertmanagerSettings.inhibitions"]
    assert set(am["routes"][0]) == lists["RouteSettings"]
    assert set(receiver) == lists["ReceiverSettings"]
    assert set(receiver["email"]) == lists["EmailSettings"]
    assert set(receiver["slack"]) == lists["SlackSettings"]
    assert set(receiver["webhook"]) == lists["WebhookSettings"]


def test_drift_is_detected(tmp_path):
    """The key-set comparison can fail: a documented key removed from the example is noticed."""
    text = example_text().replace("max_scored_jobs = 5000", "", 1)
    lines = [_COMMENTED.sub("", ln) for ln in text.splitlines()]
    doc = tomllib.loads("\n".join(lines))
    assert analytics_config._RISK_KEYS - set(doc["analytics"]["risk"]) == {"max_scored_jobs"}


# -- systemd units -------------------------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, str]]:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    cp.optionxform = str  # keys are case-sensitive in systemd
    cp.read_string(path.read_text())
    return {s: dict(cp[s]) for s in cp.sections()}


# Keys this repository's units may use, with the manual page defining each (systemd 252, Debian 12). The test only
# falls back to this list for the key check when systemd-analyze is missing.
KNOWN_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "After"},  # systemd.unit(5)
    "Install": {"WantedBy"},  # systemd.unit(5)
    "Service": {
        "Type", "ExecStart", "Restart", "RestartSec",  # systemd.service(5)
        "User", "Group", "StateDirectory", "StateDirectoryMode", "ReadWritePaths", "Environment", "UMask",
        "CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges", "ProtectSystem", "ProtectHome",
        "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "RestrictNamespaces",
        "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
        "RestrictAddressFamilies", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
        # systemd.exec(5) above; systemd.resource-control(5) below
        "MemoryMax", "TasksMax",
    },
}  # fmt: skip


def test_units_exist_and_use_known_keys():
    assert [p.name for p in UNITS] == [
        "nomade-analytics.service",
        "nomade-exporter-controller.service",
        "nomade-exporter-node.service",
    ]
    for path in UNITS:
        unit = parse_unit(path)
        assert set(unit) == {"Unit", "Service", "Install"}, path.name
        for section, keys in unit.items():
            assert set(keys) <= KNOWN_KEYS[section], (path.name, set(keys) - KNOWN_KEYS[section])


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_hardening(path):
    s = parse_unit(path)["Service"]
    assert s["User"] == "nomade" and s["Group"] == "nomade"
    assert s["NoNewPrivileges"] == "yes"
    assert s["ProtectSystem"] == "strict"
    assert s["PrivateTmp"] == "yes"
    assert s["SystemCallFilter"] == "@system-service"
    assert set(s["RestrictAddressFamilies"].split()) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert re.fullmatch(r"\d+[MG]", s["MemoryMax"])
    state = "/var/lib/" + s["StateDirectory"]
    assert s["ReadWritePaths"] == state
    assert not s["ExecStart"].startswith(("/bin/sh", "/usr/bin/env", "bash"))  # no shell
    if path.name == "nomade-exporter-node.service":
        # job_io / job_hygiene: the only capabilities, documented in the unit
        assert s["CapabilityBoundingSet"].split() == ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]
        assert s["AmbientCapabilities"] == s["CapabilityBoundingSet"]
        assert s["ProtectHome"] == "read-only" and "ProtectProc" not in s
        assert "--mode node" in s["ExecStart"]
        text = path.read_text()
        for collector in ("job_io", "job_usage", "gpu", "job_hygiene"):
            assert f"#   {collector}:" in text
    else:
        assert s["CapabilityBoundingSet"] == "" and s["AmbientCapabilities"] == ""
        assert s["ProtectHome"] == "yes" and s["PrivateDevices"] == "yes"
    if path.name == "nomade-exporter-controller.service":
        assert "--mode controller" in s["ExecStart"]
        assert "repquota" in path.read_text()


def _verify(tmp_path: Path, text: str, name: str) -> subprocess.CompletedProcess:
    # systemd-analyze verify insists that ExecStart's binary exists: point it at one that does
    unit = tmp_path / name
    unit.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={shutil.which('true')}", text, flags=re.M))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(tmp_path, path):
    res = _verify(tmp_path, path.read_text(), path.name)
    own = [ln for ln in (res.stdout + res.stderr).splitlines() if path.name in ln]
    assert res.returncode == 0 and own == [], res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_catches_a_bad_key(tmp_path):
    """Negative control: verify reports an unknown key (as a warning with status 0), so the test above can fail."""
    text = UNITS[0].read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nProtectEverything=yes")
    res = _verify(tmp_path, text, "bad.service")
    assert "Unknown key 'ProtectEverything'" in res.stdout + res.stderr


def test_deploy_shell_scripts_pass_shellcheck() -> None:
    # The lab and demo scripts run as root and start services: ShellCheck's warnings (unquoted expansions, unused
    # variables, A && B || C) are bugs there. `make test` installs shellcheck, so a missing one fails.
    assert shutil.which("shellcheck"), "shellcheck not installed (deploy/lab/lab.sh install adds it)"
    scripts = sorted(str(p) for p in (REPO / "deploy").rglob("*.sh"))
    assert any(s.endswith("deploy/sim/sim.sh") for s in scripts) and any(s.endswith("lab.sh") for s in scripts)
    proc = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout
