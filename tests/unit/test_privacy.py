"""Pseudonymization of user and account names at exposition (exporter/privacy.py, MetricSet.families)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from conftest import MappedRunner, TextRunner, own_fixture
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest

from nomade.exporter import metrics, privacy
from nomade.exporter.catalog import catalog
from nomade.exporter.collectors.base import CollectorContext
from nomade.exporter.collectors.slurm_queue import SlurmQueueCollector
from nomade.exporter.collectors.slurm_reservations import SlurmReservationsCollector
from nomade.exporter.config import ConfigError, ExporterConfig, load_config
from nomade.exporter.metrics import MetricSet, MetricSpec
from nomade.exporter.parsers.slurm_units import parse_timestamp
from nomade.exporter.parsers.squeue import SQUEUE_ARGV, SQUEUE_JOBS_ARGV

KEY = b"k" * 16 + b"0123456789abcdef"
OTHER_KEY = b"z" * 32

JOBS = MetricSpec("nomade_test_jobs", "gauge", "test", ("user", "account", "partition"))
COUNT = MetricSpec("nomade_test_runs_total", "counter", "test", ("user",))
HIST = MetricSpec("nomade_test_wait_seconds", "histogram", "test", ("account",))
STALE = MetricSpec("nomade_test_stale_files", "gauge", "test", ("path", "owner"))
RES = MetricSpec("nomade_test_reservation_info", "info", "test", ("reservation", "users", "accounts"))
QUOTA = MetricSpec("nomade_test_quota_used_bytes", "gauge", "test", ("filesystem", "type", "name"))
GPU = MetricSpec("nomade_test_gpu_info", "info", "test", ("gpu", "name"))
JOBINFO = MetricSpec("nomade_test_job_info", "info", "test", ("job_id", "job_name", "user"))


def expected(category: str, value: str, key: bytes = KEY) -> str:
    return "u_" + hmac.new(key, (category + "\0" + value).encode(), hashlib.sha256).hexdigest()[:16]


@pytest.fixture(autouse=True)
def _no_rewriter():
    metrics.set_label_rewriter(None)
    yield
    metrics.set_label_rewriter(None)


def render(*sets: MetricSet) -> str:
    class _C:
        def collect(self):
            for s in sets:
                yield from s.families()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_C())
    return generate_latest(reg).decode()


def jobs_set() -> MetricSet:
    ms = MetricSet([JOBS])
    ms.add("nomade_test_jobs", 3, user="alice", account="physics", partition="cpu")
    ms.add("nomade_test_jobs", 1, user="", account="alice", partition="gpu")
    return ms


def install(categories=("user", "account"), key: bytes = KEY) -> privacy.Pseudonymizer:
    p = privacy.Pseudonymizer(key, categories)
    metrics.set_label_rewriter(p)
    return p


def key_file(tmp_path, data: bytes = KEY, mode: int = 0o600):
    path = tmp_path / "pseudonym.key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_off_by_default_labels_exposed_as_collected(tmp_path):
    cfg = ExporterConfig()
    assert cfg.pseudonymize_labels == [] and str(cfg.pseudonymize_key_file) == "/etc/nomade/pseudonym.key"
    cfg.pseudonymize_key_file = tmp_path / "absent.key"  # off: the key file is not even read
    assert privacy.configure(cfg) is None and metrics.label_rewriter() is None
    text = render(jobs_set())
    assert 'nomade_test_jobs{account="physics",partition="cpu",user="alice"} 3.0' in text


def test_user_and_account_hashed_with_the_exact_hmac_other_labels_untouched():
    install()
    ms = jobs_set()
    text = render(ms)
    u, a = expected("user", "alice"), expected("account", "physics")
    assert f'nomade_test_jobs{{account="{a}",partition="cpu",user="{u}"}} 3.0' in text
    # empty stays empty; the same string as an account maps differently from the user
    assert f'nomade_test_jobs{{account="{expected("account", "alice")}",partition="gpu",user=""}} 1.0' in text
    assert expected("account", "alice") != u and len(u) == 18 and int(u[2:], 16) >= 0
    assert "alice" not in text and "physics" not in text
    # the collector's own view is unchanged (derived figures, tests)
    assert ms.value("nomade_test_jobs", user="alice", account="physics", partition="cpu") == 3


def test_stable_across_instances_and_key_dependent():
    first = install()
    one = render(jobs_set())
    install()  # a restart, or another node with the same key file
    assert render(jobs_set()) == one
    install(key=OTHER_KEY)
    other = render(jobs_set())
    assert other != one and expected("user", "alice", OTHER_KEY) in other and expected("user", "alice") not in other
    assert first.pseudonym("user", "alice") == expected("user", "alice")
    assert first.pseudonym("user", "") == ""


def test_only_the_listed_categories():
    install(("user",))
    text = render(jobs_set())
    assert f'user="{expected("user", "alice")}"' in text and 'account="physics"' in text


def test_counters_histograms_owner_lists_and_quota_names():
    install(("user", "account", "group"))
    c = MetricSet([COUNT, HIST, STALE, RES, QUOTA, GPU])
    c.add("nomade_test_runs_total", 2, user="bob")
    c.histogram("nomade_test_wait_seconds", [(1.0, 1), (float("inf"), 2)], 3.0, 2, account="chemistry")
    c.add("nomade_test_stale_files", 5, path="/scratch", owner="alice")
    c.add("nomade_test_stale_files", 9, path="/scratch", owner="other")
    c.info("nomade_test_reservation_info", reservation="course", users="alice,-bob", accounts="chemistry,ph...")
    c.extend("nomade_test_quota_used_bytes", {("/home", "user", "alice"): 1.0, ("/home", "group", "physics"): 2.0})
    c.extend("nomade_test_gpu_info", {("0", "NVIDIA H100"): 1.0})
    text = render(c)
    ua, ub = expected("user", "alice"), expected("user", "bob")
    assert f'nomade_test_runs_total{{user="{ub}"}} 2.0' in text
    ac = expected("account", "chemistry")
    assert f'nomade_test_wait_seconds_bucket{{account="{ac}",le="1.0"}} 1.0' in text
    assert f'nomade_test_wait_seconds_sum{{account="{ac}"}} 3.0' in text
    assert f'nomade_test_stale_files{{owner="{ua}",path="/scratch"}} 5.0' in text
    assert 'nomade_test_stale_files{owner="other",path="/scratch"} 9.0' in text  # the bucket, not a user
    # list elements hashed one by one; SLURM's "-" (excluded user) kept; the cut element dropped, "..." kept
    assert f'accounts="{ac}...",reservation="course",users="{ua},-{ub}"' in text
    assert f'nomade_test_quota_used_bytes{{filesystem="/home",name="{ua}",type="user"}} 1.0' in text
    assert f'name="{expected("group", "physics")}",type="group"' in text
    assert 'name="NVIDIA H100"' in text  # a "name" without "type" is not a person's name
    for plain in ("alice", "bob", "chemistry", "physics", "ph."):
        assert plain not in text


def test_group_names_need_the_group_category_and_job_name_its_own():
    install(("user",))
    c = MetricSet([QUOTA, JOBINFO])
    c.extend("nomade_test_quota_used_bytes", {("/home", "group", "physics"): 2.0})
    c.info("nomade_test_job_info", job_id="7", job_name="alice_bert", user="alice")
    text = render(c)
    assert 'name="physics"' in text and 'job_name="alice_bert"' in text
    install(("user", "job_name"))
    text = render(c)
    assert f'job_name="{expected("job_name", "alice_bert")}"' in text and "alice" not in text


def test_long_lists_are_cut_after_hashing():
    p = privacy.Pseudonymizer(KEY, ["user"])
    users = ",".join(f"user{i:03d}" for i in range(100))
    out = p._list("user", users)
    assert len(out) <= privacy.LIST_MAX and out.endswith("...")
    first = out[:-3].split(",")
    assert first == [expected("user", f"user{i:03d}") for i in range(len(first))] and len(first) == 13


def test_configure_reads_the_key_file(tmp_path):
    path = key_file(tmp_path, KEY + b"\n")  # `openssl rand -hex 32 > FILE` ends in a newline: stripped
    cfg = ExporterConfig(pseudonymize_labels=["user"], pseudonymize_key_file=path)
    p = privacy.configure(cfg)
    assert p is not None and metrics.label_rewriter() is p
    assert p.pseudonym("user", "alice") == expected("user", "alice")
    assert KEY.decode() not in repr(p)
    cfg.pseudonymize_labels = []
    assert privacy.configure(cfg) is None and metrics.label_rewriter() is None


def test_key_file_errors_name_the_option_never_the_key(tmp_path, caplog):
    cfg = ExporterConfig(pseudonymize_labels=["user"], pseudonymize_key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match=r"exporter\.pseudonymize_key_file .*missing\.key: cannot read"):
        privacy.configure(cfg)
    short = b"fifteen-bytes!!"
    cfg.pseudonymize_key_file = key_file(tmp_path, short + b"\n")
    with pytest.raises(ConfigError, match=r"pseudonymize_key_file .* 15 bytes, at least 16") as err:
        privacy.configure(cfg)
    assert short.decode() not in str(err.value)
    assert metrics.label_rewriter() is None
    with pytest.raises(ValueError, match="shorter than 16"):
        privacy.Pseudonymizer(short, ["user"])
    with pytest.raises(ValueError, match="unknown pseudonym categories: owner"):
        privacy.Pseudonymizer(KEY, ["owner"])
    with pytest.raises(ConfigError, match="pseudonymize_labels: unknown pseudonym categories: owner"):
        privacy.install(["owner"], key_file(tmp_path))
    cfg.pseudonymize_key_file = key_file(tmp_path, KEY, 0o644)
    with caplog.at_level(logging.INFO, logger="nomade.exporter"):
        privacy.configure(cfg)
    assert "readable by every user" in caplog.text and KEY.decode() not in caplog.text


def test_config_file_keys(tmp_path):
    conf = tmp_path / "nomade.toml"
    conf.write_text('[exporter]\npseudonymize_labels = ["user", "account", "user"]\npseudonymize_key_file = "/k"\n')
    cfg = load_config(conf)
    assert cfg.pseudonymize_labels == ["user", "account"] and str(cfg.pseudonymize_key_file) == "/k"
    for bad, msg in (
        ('pseudonymize_labels = "user"', "must be a list of strings"),
        ('pseudonymize_labels = ["user", "email"]', "unknown 'email'"),
        ("pseudonymize_key_file = 3", "must be a non-empty path string"),
        ('pseudonymize_key = "inline-secret-value"', "unknown key exporter.pseudonymize_key"),
    ):
        conf.write_text(f"[exporter]\n{bad}\n")
        with pytest.raises(ConfigError, match=msg) as err:
            load_config(conf)
        assert "inline-secret-value" not in str(err.value)


NOW = parse_timestamp("2026-11-29T17:47:30")


def _queue_text() -> str:
    runner = MappedRunner(
        {
            SQUEUE_ARGV: own_fixture("squeue", "lab-squeue-Format-us-22.05.8-default.txt"),
            SQUEUE_JOBS_ARGV: own_fixture("squeue", "lab-squeue-jobs-Format-us-22.05.8.txt"),
        },
        missing=("exit", "slurm_load_jobs error"),
        finished_at=NOW,
    )
    col = SlurmQueueCollector(CollectorContext(runner=runner, options={"per_job": True}, clock=lambda: NOW))
    out = col.new_set()
    col.collect(out)
    return render(out)


def test_no_plain_name_in_a_slurm_queue_exposition(tmp_path):
    plain = _queue_text()
    names = ("alice", "bob", "physics", "chemistry")
    assert all(f'"{n}"' in plain for n in names)  # the fixture does carry them
    privacy.configure(ExporterConfig(pseudonymize_labels=["user", "account"], pseudonymize_key_file=key_file(tmp_path)))
    text = _queue_text()
    assert not [n for n in names if n in text]
    assert f'user="{expected("user", "alice")}"' in text and f'account="{expected("account", "chemistry")}"' in text
    assert text.count("\n") == plain.count("\n")  # same series, only label values differ
    assert 'partition="compute"' in text and 'job_id="1"' in text


def test_reservation_accounts_hashed_in_a_collector_run():
    install()
    col = SlurmReservationsCollector(
        CollectorContext(runner=TextRunner(own_fixture("reservations", "scontrol-show-res-o-two-23.11.txt")))
    )
    out = col.new_set()
    col.collect(out)
    text = render(out)
    assert "physics" not in text and "chemistry" not in text and 'users="root"' not in text
    assert f'accounts="{expected("account", "chemistry")},{expected("account", "physics")}"' in text


def test_every_catalog_label_naming_a_person_or_account_is_covered():
    p = privacy.Pseudonymizer(KEY, ["user", "account", "group", "job_name"])
    for owner, spec in catalog():
        for i, name in enumerate(spec.labels):
            personal = any(w in name for w in ("user", "account", "owner", "job_name")) or (
                name == "name" and "type" in spec.labels
            )
            if not personal:
                continue
            rw = p(spec)
            assert rw is not None, (owner, spec.name, name)
            key = tuple("user" if n == "type" else f"v{j}" for j, n in enumerate(spec.labels))
            assert rw(key)[i] != key[i], (owner, spec.name, name)
