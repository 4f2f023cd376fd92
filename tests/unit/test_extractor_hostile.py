"""Hostile input at the extractor (issue 13 items 2 and 3), on the in-process Siesa
simulator with a fake transactional producer: a bad row is dead-lettered alone and the
scan goes on; a Siesa that pours without end is stopped, the tenant degraded and
alerted at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory
from services.extractor.poller import TenantPoller
from services.extractor.scan import Scanner
from services.sources.base import SourceLimit
from services.sources.siesa.client import SiesaClient, SiesaLimit
from services.sources.siesa.source import SiesaSource
from simulators.catalogue import generate_items
from simulators.siesa import create_app
from tests.unit.fakes import FakeTransactionalProducer, on_app, on_handler, set_secrets
from tests.unit.fakes import tenant_config as config

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "jwt-token"  # noqa: S105 - a test credential
COMPANY = 8585
SERDE = default_serde()
RAW, DLQ, STATE = "siesa.items.raw.v1", "products.dlq.v1", "sync.state.v1"


@pytest.fixture
def app() -> Any:
    return create_app(KEY, TOKEN)


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def make_tenant(monkeypatch: pytest.MonkeyPatch, **source: Any) -> Tenant:
    set_secrets(monkeypatch, "P", KEY, TOKEN, "u", "p")
    overrides = {f"source__{k}": v for k, v in source.items()}
    return Tenant.model_validate(
        config("acme", env="P", source__company=COMPANY, source__mode="diff", **overrides)
    )


def scanner(tenant: Tenant, http: httpx.Client, producer: Any, **options: Any) -> Scanner:
    return Scanner(
        tenant=tenant,
        source=SiesaSource(tenant.source, tenant=tenant.id, http=http),
        producer=producer,
        serde=SERDE,
        kafka=KafkaSettings(),
        memory=TenantMemory(tenant.id),
        **options,
    )


def written(producer: FakeTransactionalProducer, topic: str) -> list[tuple[Any, ...]]:
    return [r for t in producer.transactions for r in t if r[0] == topic]


def raw_keys(producer: FakeTransactionalProducer) -> list[str]:
    return [SERDE.decode_as("RawItem", v)["key"] for _, _, v, _ in written(producer, RAW)]


def letters(producer: FakeTransactionalProducer) -> dict[str, dict[str, Any]]:
    """Dead letters by key: headers (text) plus the value as `value`."""
    out = {}
    for _, key, value, headers in written(producer, DLQ):
        text = {k: v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
        out[(key or b"").decode("utf-8", "backslashreplace")] = {**text, "value": value}
    return out


def items(count: int, seed: int, start: int = 1) -> list[dict[str, Any]]:
    return generate_items(COMPANY, count, seed, start_rowid=start)


def test_rows_with_malformed_text_are_refused_alone_naming_their_field(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    good = items(6, seed=1)
    bad = items(4, seed=2, start=7)
    bad[0]["f120_descripcion"] = "caf\udce9 con leche"  # a byte that is not UTF-8
    bad[1]["f120_unidad_medida"] = "UN\ud800"  # a lone surrogate escape
    bad[2]["f120_descripcion_comercial\udcff"] = "x"  # in a column's name
    bad[3]["f120_referencia"] = "REF-\udcc3"  # in the key itself
    # As JSON escapes (ensure_ascii): the admin API's JSON carries the broken text.
    admin.post(f"/_admin/companies/{COMPANY}/items", content=json.dumps(good + bad))
    producer = FakeTransactionalProducer()

    result = scanner(make_tenant(monkeypatch, page_size=4), on_app(app), producer).scan("diff")

    assert result.complete
    assert sorted(raw_keys(producer)) == sorted(r["f120_referencia"].strip() for r in good)
    dead = letters(producer)
    refs = [r["f120_referencia"].strip() for r in bad[:3]]
    assert sorted(dead) == sorted([*(f"acme/{r}" for r in refs), "acme/REF-\\udcc3"])
    for letter in dead.values():
        assert letter["error.class"] == "invalid_row"
        assert letter["error.stage"] == "extract"
        assert letter["value"].decode("ascii")  # the row, escaped: exact and writable
    refused = "text that is not valid Unicode"
    assert (
        f"field f120_descripcion: {refused} (character 3)"
        in (dead[f"acme/{refs[0]}"]["error.message"])
    )
    assert (
        f"field f120_unidad_medida: {refused} (character 2)"
        in (dead[f"acme/{refs[1]}"]["error.message"])
    )
    assert (
        f"field f120_descripcion_comercial\\udcff: {refused} (name)"
        in (dead[f"acme/{refs[2]}"]["error.message"])
    )
    assert (
        f"field f120_referencia: {refused} (character 4)"
        in (dead["acme/REF-\\udcc3"]["error.message"])
    )
    assert result.rejected == 4


def test_a_row_over_the_dlq_size_is_dead_lettered_cut_to_fit_and_the_scan_goes_on(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    rows = items(5, seed=3)
    rows[2]["f120_descripcion"] = "D" * 2_000_000
    admin.post(f"/_admin/companies/{COMPANY}/items", json=rows)
    producer = FakeTransactionalProducer()
    max_bytes = 100_000

    scanner(make_tenant(monkeypatch), on_app(app), producer, max_bytes=max_bytes).scan("diff")

    key = rows[2]["f120_referencia"].strip()
    assert sorted(raw_keys(producer)) == sorted(
        r["f120_referencia"].strip() for r in rows if r is not rows[2]
    )
    (letter,) = letters(producer).values()
    assert (
        f"item {key}: field f120_descripcion is 2000000 characters long"
        in (letter["error.message"])
    )
    (record,) = written(producer, DLQ)
    size = len(record[1] or b"") + len(record[2] or b"")
    size += sum(len(k) + len(v or b"") for k, v in record[3].items())
    assert size <= max_bytes
    assert letter["error.truncated"].startswith("value: ")
    assert letter["value"].startswith(b'{"f120_')


def test_a_row_whose_record_is_over_the_raw_topics_size_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    rows = items(3, seed=4)
    rows[1].update({f"extra_{i}": "E" * 3000 for i in range(20)})  # 60 KB, fields in limit
    admin.post(f"/_admin/companies/{COMPANY}/items", json=rows)
    producer = FakeTransactionalProducer()

    scanner(make_tenant(monkeypatch), on_app(app), producer, max_bytes=40_000).scan("diff")

    assert len(raw_keys(producer)) == 2
    (letter,) = letters(producer).values()
    assert "its RawItem would be" in letter["error.message"]
    assert "over the 40000 a record may hold" in letter["error.message"]


def test_an_unexpected_error_on_one_row_dead_letters_that_row_only(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    rows = items(4, seed=5)
    admin.post(f"/_admin/companies/{COMPANY}/items", json=rows)
    tenant = make_tenant(monkeypatch)
    producer = FakeTransactionalProducer()
    scan = scanner(tenant, on_app(app), producer)
    doomed = rows[1]["f120_referencia"].strip()
    normal = scan.source.row

    def row(raw: dict[str, Any]) -> Any:
        if raw["f120_referencia"].strip() == doomed:
            raise KeyError("a bug")
        return normal(raw)

    monkeypatch.setattr(scan.source, "row", row)
    assert scan.scan("diff").complete

    assert len(raw_keys(producer)) == 3
    letter = letters(producer)[f"acme/{doomed}"]
    assert letter["error.class"] == "unexpected"
    assert f"item {doomed}: unexpected KeyError" in letter["error.message"]


@dataclass
class Alerts:
    """An alerter that stops the poller once it has alerted."""

    stopper: Stopper
    fired: list[tuple[str, str, str]] = field(default_factory=list)

    def fire(self, tenant: str, condition: str, reason: str) -> None:
        self.fired.append((tenant, condition, reason))
        self.stopper.stop()

    def clear(self, tenant: str, condition: str) -> None:
        pass


def poll_until_alerted(tenant: Tenant, http: httpx.Client) -> tuple[dict[str, Any], Alerts]:
    """One failing poll of `tenant`: its stored state and the alert it raised."""
    producer = FakeTransactionalProducer()
    stopper = Stopper()
    alerts = Alerts(stopper)
    poller = TenantPoller(scanner(tenant, http, producer), alerter=alerts)  # type: ignore[arg-type]
    poller.run(stopper)
    states = [v for _, _, v, _ in written(producer, STATE)]
    return SERDE.decode_as("SyncState", states[-1]), alerts


@pytest.mark.parametrize(
    ("hostile", "source", "expected"),
    [
        ("repeat_page", {"page_size": 5}, "Siesa page 2 is page 1 again (Siesa ignores numPag)"),
        (
            "oversized",
            {"max_response_bytes": 100_000},
            "Siesa page 1: the answer is over the cap of 100000 bytes (source.max_response_bytes)",
        ),
        ("html", {}, "Siesa page 1: the answer is not JSON (HTTP 200, content-type text/html"),
        (None, {"page_size": 2, "max_pages": 3}, "over the cap of 3 pages (source.max_pages)"),
    ],
)
def test_a_hostile_siesa_stops_the_scan_degrades_the_tenant_and_alerts_at_once(
    monkeypatch: pytest.MonkeyPatch,
    app: Any,
    admin: TestClient,
    hostile: str | None,
    source: dict[str, Any],
    expected: str,
) -> None:
    admin.post(f"/_admin/companies/{COMPANY}/seed", json={"count": 12, "seed": 6})
    if hostile:
        admin.post("/_admin/faults", json={"hostile": {str(COMPANY): hostile}})

    state, alerts = poll_until_alerted(make_tenant(monkeypatch, **source), on_app(app))

    assert state["status"] == "degraded"
    assert state["last_error"].startswith("siesa_limit: tenant acme: Siesa page ")
    assert expected in state["last_error"]
    assert state["last_error"].endswith("scan stopped")
    (alert,) = alerts.fired
    assert alert[:2] == ("acme", "sync_failed")
    assert expected in alert[2]


def test_a_page_of_more_rows_than_asked_stops_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = items(6, seed=7)
    body = {"codigo": 0, "mensaje": "ok", "detalle": {"Table": rows}}
    client = SiesaClient(
        make_tenant(monkeypatch, page_size=5).source,
        tenant="acme",
        http=on_handler(lambda _r: httpx.Response(200, json=body)),
    )

    with pytest.raises(SiesaLimit, match=r"page 1 holds 6 rows, more than the 5 asked"):
        list(client.scan())


def test_an_answer_without_length_is_cut_at_the_cap_while_streamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        yield b'{"codigo": 0, "detalle": {"Table": ['
        while True:  # a Siesa that never ends its answer
            sent.append(1)
            yield b" " * 65536

    client = SiesaClient(
        make_tenant(monkeypatch, max_response_bytes=1_000_000).source,
        tenant="acme",
        http=on_handler(lambda _r: httpx.Response(200, content=endless())),
    )

    with pytest.raises(SourceLimit, match="over the cap of 1000000 bytes"):
        client.page(1)
    assert len(sent) <= 17  # read no further than the cap


def test_bytes_that_are_not_utf8_spoil_only_their_value(monkeypatch: pytest.MonkeyPatch) -> None:
    body = (
        b'{"codigo":0,"detalle":{"Table":[{"f120_referencia":"A","d":"caf\xe9"},'
        b'{"f120_referencia":"B","d":"ok \xc3\xa9"}]}}'
    )
    client = SiesaClient(
        make_tenant(monkeypatch).source,
        tenant="acme",
        http=on_handler(lambda _r: httpx.Response(200, content=body)),
    )

    assert client.page(1) == [
        {"f120_referencia": "A", "d": "caf\udce9"},
        {"f120_referencia": "B", "d": "ok é"},
    ]


def test_a_refused_row_is_dead_lettered_once_until_it_changes(
    monkeypatch: pytest.MonkeyPatch, app: Any, admin: TestClient
) -> None:
    rows = items(3, seed=8)
    rows[1]["f120_descripcion"] = "X" * 5000
    admin.post(f"/_admin/companies/{COMPANY}/items", json=rows)
    producer = FakeTransactionalProducer()
    scan = scanner(make_tenant(monkeypatch), on_app(app), producer)

    scan.scan("diff")
    scan.scan("diff")  # unchanged: not dead-lettered again
    assert len(written(producer, DLQ)) == 1
    admin.post(
        f"/_admin/companies/{COMPANY}/items", json=[{**rows[1], "f120_descripcion": "Y" * 5001}]
    )
    scan.scan("diff")  # changed, still too long: dead-lettered again

    messages = [h["error.message"] for _, _, _, h in written(producer, DLQ)]
    assert len(messages) == 2
    assert "is 5000 characters long" in messages[0]
    assert "is 5001 characters long" in messages[1]
    assert len(raw_keys(producer)) == 2
