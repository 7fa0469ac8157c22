import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nomade.exporter.collectors.base import Collector, CollectorContext, CollectorError
from nomade.exporter.metrics import MetricSpec
from nomade.exporter.registry import ScrapeOrchestrator
from nomade.exporter.runner import CommandRunner


class Good(Collector):
    name = "good"
    mode = "node"
    metrics = (MetricSpec("nomade_good_value", "gauge", "A value."),)

    def collect(self, out):
        out.add("nomade_good_value", 42)


class Broken(Collector):
    name = "broken"
    mode = "controller"
    metrics = (MetricSpec("nomade_broken_value", "gauge", "Never seen."),)

    def collect(self, out):
        out.add("nomade_broken_value", 1)  # added, then the source fails: must not be exposed
        raise CollectorError("slurmctld unreachable")


class Slow(Collector):
    name = "slow"
    mode = "controller"
    metrics = (MetricSpec("nomade_slow_value", "gauge", "Late."),)
    calls = 0

    def collect(self, out):
        type(self).calls += 1
        time.sleep(self.ctx.options["sleep"])
        out.add("nomade_slow_value", 1)


def scrape(orch) -> dict[str, dict[tuple, float]]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(orch)
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def ctx(**opts):
    return CollectorContext(runner=CommandRunner(), options=opts)


def test_a_failing_collector_leaves_the_rest_of_the_scrape_intact():
    orch = ScrapeOrchestrator([Good(ctx()), Broken(ctx())], CommandRunner(), scrape_timeout=5)
    m = scrape(orch)
    assert m["nomade_good_value"][()] == 42
    assert "nomade_broken_value" not in m
    assert m["nomade_collector_up"][(("collector", "good"),)] == 1
    assert m["nomade_collector_up"][(("collector", "broken"),)] == 0
    assert m["nomade_collector_failures_total"][(("collector", "broken"), ("reason", "error"))] == 1
    assert (("collector", "broken"),) not in m["nomade_collector_last_success_timestamp_seconds"]
    assert m["nomade_collector_last_success_timestamp_seconds"][(("collector", "good"),)] > 1.6e9


def test_a_hung_collector_is_cut_by_the_scrape_timeout_and_not_restarted():
    Slow.calls = 0
    orch = ScrapeOrchestrator([Good(ctx()), Slow(ctx(sleep=3))], CommandRunner(), scrape_timeout=0.5)
    t0 = time.monotonic()
    m = scrape(orch)
    assert time.monotonic() - t0 < 2
    assert m["nomade_collector_up"][(("collector", "slow"),)] == 0
    assert m["nomade_good_value"][()] == 42
    m = scrape(orch)  # still running: joined, not started again
    assert Slow.calls == 1
    assert m["nomade_collector_failures_total"][(("collector", "slow"), ("reason", "timeout"))] == 2
    orch.close()


def test_concurrent_scrapes_share_one_collection():
    Slow.calls = 0
    orch = ScrapeOrchestrator([Slow(ctx(sleep=0.5))], CommandRunner(), scrape_timeout=5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(scrape(orch))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Slow.calls == 1
    assert all(r["nomade_collector_up"][(("collector", "slow"),)] == 1 for r in results)


def test_self_metrics_present():
    orch = ScrapeOrchestrator([Good(ctx())], CommandRunner(), scrape_timeout=5)
    scrape(orch)
    m = scrape(orch)
    assert m["nomade_exporter_scrapes_total"][()] == 2
    assert m["nomade_exporter_scrape_series"][()] == 1
    (labels,) = m["nomade_exporter_build_info"]
    assert dict(labels)["version"]


def test_scraper_timeout_header_shortens_the_deadline():
    import urllib.request

    from nomade.exporter.server import serve

    Slow.calls = 0
    orch = ScrapeOrchestrator([Good(ctx()), Slow(ctx(sleep=3))], CommandRunner(), scrape_timeout=20)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(orch)
    server = serve(reg, "127.0.0.1", 0, orch)
    try:
        port = server.server_address[1]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"}
        )
        t0 = time.monotonic()
        body = urllib.request.urlopen(req, timeout=10).read().decode()
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
        orch.close()
    assert elapsed < 1.0
    assert 'nomade_collector_up{collector="slow"} 0.0' in body
    assert 'nomade_collector_up{collector="good"} 1.0' in body
    assert "nomade_good_value 42.0" in body
