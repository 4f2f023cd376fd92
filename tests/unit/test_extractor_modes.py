"""Modes, cursor, commands and request budget of the extractor, on the in-process Siesa
simulator with a fake transactional producer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.errors import ConfigError
from services.common.ratelimit import RateLimiter
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant, load_tenants
from services.extractor.memory import Cursor, TenantMemory
from services.extractor.poller import TenantPoller
from services.extractor.scan import Scanner
from services.sources.siesa.client import SiesaClient, SiesaCodigoError
from services.sources.siesa.source import SiesaSource, filter_parametros
from simulators.siesa import create_app
from tests.unit.fakes import (
    FakeTransactionalProducer,
    on_app,
    on_handler,
    set_secrets,
    tenant_config,
)

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "jwt-token"  # noqa: S105 - a test credential
COMPANY = 8585
SERDE = default_serde()
RAW = "siesa.items.raw.v1"
STATE = "sync.state.v1"


def make_tenant(monkeypatch: pytest.MonkeyPatch, **source: Any) -> Tenant:
    set_secrets(monkeypatch, "P", KEY, TOKEN, "u", "p")
    overrides = {f"source__{k}": v for k, v in source.items()}
    return Tenant.model_validate(
        tenant_config("acme", env="P", source__company=COMPANY, **overrides)
    )


@pytest.fixture
def app() -> Any:
    return create_app(KEY, TOKEN)


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        client.post(f"/_admin/companies/{COMPANY}/seed", json={"count": 25, "seed": 3})
        yield client


def poller_for(tenant: Tenant, app: Any, producer: FakeTransactionalProducer) -> TenantPoller:
    return TenantPoller(
        Scanner(
            tenant=tenant,
            source=SiesaSource(tenant.source, tenant=tenant.id, http=on_app(app)),
            producer=producer,  # type: ignore[arg-type]
            serde=SERDE,
            kafka=KafkaSettings(),
            memory=TenantMemory(tenant.id),
        )
    )


def raw_ops(producer: FakeTransactionalProducer) -> list[str]:
    return [
        SERDE.decode_as("RawItem", value)["op"]
        for transaction in producer.transactions
        for topic, _, value, _ in transaction
        if topic == RAW
    ]


def last_state(producer: FakeTransactionalProducer) -> dict[str, Any]:
    states = [v for t in producer.transactions for topic, _, v, _ in t if topic == STATE]
    return SERDE.decode_as("SyncState", states[-1])


def test_the_cursor_round_trips_and_survives_garbage() -> None:
    cursor = Cursor(("20261128103000", "SKU-1"), 1_700_000_000_000)
    assert Cursor.load(cursor.dump()) == cursor
    assert Cursor.load(None) == Cursor()
    assert Cursor.load("not json") == Cursor()


def test_the_filter_starts_at_the_watermark_day_minus_the_lookback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = make_tenant(monkeypatch, mode="filter", change_date_column="f", lookback_days=2)
    settings = tenant.source
    assert filter_parametros(settings, Cursor().watermark) is None  # no watermark: read all
    cursor = Cursor(("20260301093000", "K"))
    assert filter_parametros(settings, cursor.watermark) == "FechaInicio=20260227"
    # A stored watermark that is no date (e.g. a bad row from before) reads everything.
    assert filter_parametros(settings, Cursor(("2026-03-01", "K")).watermark) is None


def test_a_row_with_a_malformed_change_date_never_becomes_the_watermark(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    tenant = make_tenant(monkeypatch, mode="filter", change_date_column="f120_fecha_actualizacion")
    row = admin.get(f"/_admin/companies/{COMPANY}/items").json()[0]
    bad = {
        **row,
        "f120_referencia": "BAD-DATE",
        "f120_rowid": 999,
        "f120_fecha_actualizacion": "99999999",
    }
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=[bad])
    poller = poller_for(tenant, app, FakeTransactionalProducer())

    assert poller.poll_once().changed == 26
    watermark = poller.memory.cursor.watermark
    assert watermark is not None
    assert watermark[0] != "99999999"
    poller.poll_once()  # the next (filtered) poll works


def test_the_default_mode_is_hybrid_only_where_a_change_date_column_is_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert make_tenant(monkeypatch).source.effective_mode == "diff"
    dated = make_tenant(monkeypatch, change_date_column="f120_fecha_actualizacion")
    assert dated.source.effective_mode == "hybrid"


def test_filter_mode_without_a_date_column_is_a_config_error_naming_the_tenant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    set_secrets(monkeypatch, "P", KEY, TOKEN, "u", "p")
    path = tmp_path / "tenants.yaml"
    entry = (
        "  - id: {id}\n"
        "    siesa: {{base_url: http://x, company: 1, {siesa},\n"
        "            conni_key: {{env: P_CONNI_KEY}}, conni_token: {{env: P_CONNI_TOKEN}}}}\n"
        "    target: {{type: kong, base_url: http://y, username: {{env: P_KONG_USER}},\n"
        "             password: {{env: P_KONG_PASSWORD}},\n"
        "             settings: {{type_id: 1, customer_id: 1}}}}\n"
    )
    path.write_text(
        "tenants:\n"
        + entry.format(id="acme", siesa="mode: filter")
        + entry.format(id="beta", siesa="request_budget_per_min: 0, mode: sometimes")
    )
    with pytest.raises(ConfigError) as caught:
        load_tenants(path)
    problems = "\n".join(caught.value.problems)
    assert "tenant acme: siesa: Value error, mode filter needs a change_date_column" in problems
    assert "tenant beta: siesa.request_budget_per_min" in problems
    assert "tenant beta: siesa.mode" in problems


def test_hybrid_reconciles_first_then_filters_until_the_interval_passes(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    tenant = make_tenant(
        monkeypatch, change_date_column="f120_fecha_actualizacion", reconcile_interval_s=3600
    )
    producer = FakeTransactionalProducer()
    poller = poller_for(tenant, app, producer)

    assert poller.poll_once().kind == "diff"
    assert poller.next_kind() == "filter"
    old = int((time.time() - 3601) * 1000)
    poller.memory.state["cursor"] = Cursor(poller.memory.cursor.watermark, old).dump()
    assert poller.next_kind() == "diff"


def test_filter_scans_ask_siesa_for_recent_days_and_skip_rows_already_sent(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    tenant = make_tenant(monkeypatch, mode="filter", change_date_column="f120_fecha_actualizacion")
    producer = FakeTransactionalProducer()
    poller = poller_for(tenant, app, producer)
    assert poller.poll_once().changed == 25  # no watermark: everything
    watermark = poller.memory.cursor.watermark
    assert watermark is not None
    assert watermark == max(
        (r["f120_fecha_actualizacion"], r["f120_referencia"].strip())
        for r in admin.get(f"/_admin/companies/{COMPANY}/items").json()
    )

    again = poller.poll_once()

    day = datetime.strptime(watermark[0][:8], "%Y%m%d") - timedelta(days=1)
    log = admin.get("/_admin/stats").json()["consultas"][str(COMPANY)]
    assert [filtered for _, _, filtered in log] == [False, True]
    assert again.seen >= 1  # the watermark's own row at least, by the day filter
    assert again.changed == 0
    assert filter_parametros(tenant.source, poller.memory.cursor.watermark) == (
        f"FechaInicio={day:%Y%m%d}"
    )


def test_resync_re_emits_everything_once_and_pause_stops_polling(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    producer = FakeTransactionalProducer()
    poller = poller_for(make_tenant(monkeypatch, mode="diff"), app, producer)
    poller.poll_once()
    poller.poll_once()
    assert len(raw_ops(producer)) == 25

    poller.command("resync")
    poller._apply_commands()
    poller.poll_once()
    poller.poll_once()
    assert raw_ops(producer) == ["UPSERT"] * 50

    poller.command("pause")
    poller._apply_commands()
    assert poller.paused
    assert last_state(producer)["paused"] is True
    poller.command("resume")
    poller._apply_commands()
    assert not poller.paused
    assert last_state(producer)["paused"] is False
    with pytest.raises(ValueError, match="unknown command"):
        poller.command("drop")


def test_a_step_scans_then_says_when_the_tenant_is_next_due_backing_off_on_failures(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    producer = FakeTransactionalProducer()
    poller = poller_for(make_tenant(monkeypatch, mode="diff", poll_interval_s=10), app, producer)
    started = time.monotonic()
    due = poller.step()
    assert len(raw_ops(producer)) == 25
    assert started + 9 <= due <= time.monotonic() + 10  # a poll interval after it began

    poller.command("pause")  # applied by the next step, which scans nothing
    assert poller.step() >= time.monotonic() + 3000
    assert poller.paused
    admin.post(f"/_admin/companies/{COMPANY}/seed", json={"count": 30, "seed": 4})
    assert poller.step() >= time.monotonic() + 3000
    assert len(raw_ops(producer)) == 25

    poller.command("resume")
    admin.post("/_admin/faults", json={"codigo_error_rate": 1, "codigo": 5, "mensaje": "caído"})
    first = poller.step() - time.monotonic()
    second = poller.step() - time.monotonic()
    assert 19 <= first <= 20  # the poll interval doubled
    assert 39 <= second <= 40  # doubled again (up to max_backoff_s)
    assert last_state(producer)["status"] == "degraded"


def test_a_codigo_error_degrades_the_tenant_with_the_mensaje(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    producer = FakeTransactionalProducer()
    poller = poller_for(make_tenant(monkeypatch, mode="diff"), app, producer)
    admin.post("/_admin/faults", json={"codigo_error_rate": 1, "codigo": 5, "mensaje": "SQL caído"})

    with pytest.raises(SiesaCodigoError) as caught:
        poller.poll_once()
    poller._failed(1, caught.value)

    state = last_state(producer)
    assert state["status"] == "degraded"
    assert state["last_error"].endswith("codigo 5: SQL caído")
    assert raw_ops(producer) == []


def test_injected_http_errors_come_in_siesa_envelopes(admin: TestClient) -> None:
    admin.post("/_admin/faults", json={"error_rate": 1, "error_status": 429, "retry_after_s": 2})
    response = admin.get(
        "/api/siesa/v3/ejecutarconsultaestandar",
        params={"idCompania": COMPANY, "descripcion": "API_v2_Items", "paginacion": "numPag=1"},
        headers={"ConniKey": KEY, "ConniToken": TOKEN},
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["codigo"] == 429
    log = admin.get("/_admin/stats").json()["consultas"][str(COMPANY)]
    assert [status for _, status, _ in log] == [429]


def test_every_attempt_takes_a_slot_of_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = make_tenant(monkeypatch, request_budget_per_min=10)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, 61.0, clock=lambda: now[0], sleep=sleep)
    answers = [httpx.Response(503), httpx.Response(503)] + [
        httpx.Response(200, json={"codigo": 0, "mensaje": "ok", "detalle": {"Table": []}})
    ] * 2
    client = SiesaClient(
        tenant.source, tenant="acme", limiter=limiter, http=on_handler(lambda _r: answers.pop(0))
    )
    monkeypatch.setattr(SiesaClient.page.retry, "sleep", lambda _s: None)  # type: ignore[attr-defined]

    client.page(1)  # two 503s and a success: three slots
    assert waits == []
    client.page(2)  # the fourth request waits for the first slot to leave the window
    assert waits == [pytest.approx(61.001)]
    assert client.requests == 4


def test_the_cli_refuses_a_malformed_tenant_id_before_touching_kafka() -> None:
    from click.testing import CliRunner

    from services.cli import main

    result = CliRunner().invoke(main, ["resync", "--tenant", "Not A Tenant"])
    assert result.exit_code == 2
    assert "is not a tenant id" in result.output


def test_a_stop_ends_a_budget_wait_without_sending_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.common.stopper import Stopper
    from services.sources.base import StopRequested
    from services.sources.siesa.source import budget_limiter

    tenant = make_tenant(monkeypatch, request_budget_per_min=1)
    stopper = Stopper()
    limiter = budget_limiter(tenant.source, stopper, tenant="acme")
    assert limiter is not None
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"codigo": 0, "mensaje": "ok", "detalle": {"Table": []}})

    client = SiesaClient(tenant.source, tenant="acme", limiter=limiter, http=on_handler(answer))
    client.page(1)
    stopper.stop()
    with pytest.raises(StopRequested):
        client.page(2)  # would wait ~61 s for the budget; the stop ends the wait
    assert len(sent) == 1
