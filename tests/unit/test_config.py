from pathlib import Path

import pytest

from nomade.exporter.config import ConfigError, ExporterConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "nomade.toml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg.host_port() == ("127.0.0.1", 9866)
    assert cfg.mode == "auto"


def test_file_values_and_collector_sections(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
[exporter]
listen_address = "0.0.0.0:19866"
mode = "controller"
cache_ttl = 30
state_dir = "/tmp/x"

[collector.slurm_accounting]
enabled = false
lookback = 7200
""",
        )
    )
    assert cfg.host_port() == ("0.0.0.0", 19866)
    assert cfg.cache_ttl == 30.0 and isinstance(cfg.cache_ttl, float)
    assert cfg.state_dir == Path("/tmp/x")
    assert cfg.enabled == {"slurm_accounting": False}
    assert cfg.collectors["slurm_accounting"] == {"lookback": 7200}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[exporter]\nlisten = 1\n", "unknown key exporter.listen"),
        ("[exporter]\nmode = 'everything'\n", "exporter.mode must be one of"),
        ("[exporter]\ncache_ttl = -1\n", "cache_ttl must be a positive number"),
        ("[exporter\n", "nomade.toml"),
        ("collector = 3\n", "must be tables"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text))
    assert message in str(ei.value)


def test_ipv6_listen_address():
    assert ExporterConfig(listen_address="[::1]:9866").host_port() == ("::1", 9866)
    with pytest.raises(ConfigError):
        ExporterConfig(listen_address="localhost").host_port()


def test_a_configured_section_enables_an_off_by_default_collector(tmp_path):
    from nomade.exporter.cli import _wanted
    from nomade.exporter.collectors import collector_classes

    classes = collector_classes()
    assert not classes["licenses"].default_enabled
    cfg = load_config(write(tmp_path, "[collector.licenses]\nper_user = true\n"))
    assert _wanted(classes["licenses"], cfg)
    assert not _wanted(classes["quota"], cfg)
    cfg = load_config(write(tmp_path, "[collector.licenses]\nenabled = false\nper_user = true\n"))
    assert not _wanted(classes["licenses"], cfg)
