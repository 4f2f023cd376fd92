"""What the console computes for its pages: freshness quantiles from the loaders'
histogram over its own sampling window, tenant configuration without credentials,
charts as SVG."""

from __future__ import annotations

import pytest

from services.console.charts import Series, line_chart
from services.console.data import masked
from services.console.sampler import Sampler, quantile

INF = float("inf")


def metrics(tenant: str, counts: dict[str, float], breaker: int = 0) -> str:
    lines = ["# TYPE siesa_sync_freshness_seconds histogram"]
    lines += [
        f'siesa_sync_freshness_seconds_bucket{{tenant="{tenant}",le="{le}"}} {n}'
        for le, n in counts.items()
    ]
    lines += [
        f'siesa_sync_freshness_seconds_count{{tenant="{tenant}"}} {counts["+Inf"]}',
        f'siesa_sync_freshness_seconds_sum{{tenant="{tenant}"}} 0',
        "# TYPE siesa_sync_breaker_state gauge",
        f'siesa_sync_breaker_state{{tenant="{tenant}",target="kong"}} {breaker}',
    ]
    return "\n".join(lines) + "\n"


def test_quantile_interpolates_within_a_bucket_like_prometheus() -> None:
    buckets = {1.0: 0.0, 2.0: 50.0, 4.0: 100.0, INF: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(2.0)
    assert quantile(0.75, buckets) == pytest.approx(3.0)
    assert quantile(0.99, {1.0: 0.0, 8.0: 0.0, 15.0: 10.0, INF: 10.0}) == pytest.approx(14.93)
    assert quantile(0.99, {2.0: 1.0, INF: 10.0}) == 2.0  # in +Inf: the highest known bound
    assert quantile(0.5, {2.0: 0.0, INF: 0.0}) is None


def test_freshness_of_the_window_is_the_difference_between_samples() -> None:
    texts = iter(
        [
            # Before the window: 100 slow changes (all 10-15 s) since the loader started.
            metrics("acme", {"2.0": 0, "15.0": 100, "+Inf": 100}),
            # In the window: 40 more, all under 2 s.
            metrics("acme", {"2.0": 40, "15.0": 140, "+Inf": 140}, breaker=2),
        ]
    )
    now = [1000.0]
    sampler = Sampler(["x"], fetch=lambda _url: next(texts), clock=lambda: now[0])
    sampler.sample()
    only = sampler.freshness("acme")
    assert only is not None
    assert (only.confirmed, only.window_s) == (100, None)  # one sample: the loader's life
    now[0] = 1600.0
    sampler.sample()

    window = sampler.freshness("acme")
    assert window is not None
    assert (window.confirmed, window.window_s) == (40, 600.0)
    assert window.p99 is not None
    assert window.p99 <= 2.0
    assert sampler.breaker("acme") == "open"
    assert sampler.breaker("other") is None
    assert [f.confirmed for _, f in sampler.series("acme", step_s=60)] == [40]


def test_a_loader_restart_does_not_make_negative_counts() -> None:
    texts = iter(
        [
            metrics("acme", {"2.0": 90, "+Inf": 100}),
            metrics("acme", {"2.0": 5, "+Inf": 5}),  # restarted: counting from zero
        ]
    )
    sampler = Sampler(["x"], fetch=lambda _url: next(texts))
    sampler.sample()
    sampler.sample()
    window = sampler.freshness("acme")
    assert window is not None
    assert window.confirmed == 5


def test_unreachable_metrics_are_reported_not_fatal() -> None:
    def refuse(url: str) -> str:
        raise ValueError("no")

    sampler = Sampler(["http://127.0.0.1:1/metrics"], fetch=refuse)
    sampler.sample()
    assert sampler.unreachable() == ("http://127.0.0.1:1/metrics",)
    assert sampler.freshness("acme") is None


def test_tenant_configuration_is_shown_without_credentials() -> None:
    config = {
        "id": "acme",
        "siesa": {"conni_key": {"env": "ACME_KEY"}, "conni_token": {"file": "/run/token"}},
        "target": {
            "type": "kong",
            "username": {"env": "ACME_USER"},
            "password": "should-never-be-here",
            "settings": {"type_id": 1},
        },
    }
    shown = masked(config)
    assert shown["siesa"]["conni_key"] == "•••• (from env ACME_KEY)"
    assert shown["siesa"]["conni_token"] == "•••• (from file /run/token)"  # noqa: S105
    assert shown["target"]["password"] == "••••"  # noqa: S105
    assert shown["target"]["settings"] == {"type_id": 1}
    assert "should-never-be-here" not in str(shown)


def test_line_chart_is_svg_with_escaped_text_and_gaps() -> None:
    svg = line_chart(
        "a <b> chart", [Series("p99", [1.0, None, 3.0, 4.0])], ["10:00", "", "", "10:03"]
    )
    assert svg.startswith("<svg")
    assert "a &lt;b&gt; chart" in svg
    assert "<b>" not in svg
    assert svg.count("<polyline") == 1  # the gap splits the line: a point, then a line
    assert svg.count("<circle") == 1
