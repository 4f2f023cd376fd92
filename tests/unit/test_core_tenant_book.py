"""The tenant book's rule: the tenants file's tenants until `sync.tenants.v1` holds any
record, then the topic's; a record that does not parse is skipped (named), the tenant
kept as it was, never a crash."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from services.common import tenant_feed
from services.common.tenant_book import TenantView
from services.common.tenants import Tenant, parse_tenants
from tests.unit.fakes import set_secrets, tenant_config

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0LXRva2Vu"  # noqa: S105 - a test credential
PASSWORD = "pa55-w0rd-never-shown"  # noqa: S105 - a test credential


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch, "T", KEY, TOKEN, "integrator", PASSWORD)


def tenants(*entries: dict[str, Any]) -> dict[str, Tenant]:
    return parse_tenants(list(entries), "tenants.yaml", base_dir=Path())


def view(*file_entries: dict[str, Any], resolve: tuple[str, ...] = ()) -> TenantView:
    return TenantView(tenants(*file_entries), Path(), resolve)


def record(entry: dict[str, Any] | None, tenant: str = "") -> tuple[bytes, bytes]:
    name = tenant or str((entry or {})["id"])
    return name.encode(), tenant_feed.encode(entry)


def test_the_file_tenants_until_the_topic_holds_a_record() -> None:
    book = view(tenant_config("acme"), tenant_config("off", enabled=False))

    assert sorted(book.current()) == ["acme"]  # enabled ones only
    assert sorted(book.tenants()) == ["acme", "off"]


def test_once_the_topic_holds_a_record_it_is_the_truth() -> None:
    book = view(tenant_config("acme"))

    book.apply(*record(tenant_config("beta")))

    assert sorted(book.current()) == ["beta"]  # acme was only in the file


def test_a_removal_alone_still_makes_the_topic_the_truth() -> None:
    book = view(tenant_config("acme"))

    book.apply(*record(None, "acme"))

    assert book.current() == {}


def test_added_changed_and_removed_follow_the_records_in_order() -> None:
    book = view()
    book.apply(*record(tenant_config("acme")))
    book.apply(*record(tenant_config("beta")))
    book.apply(*record(tenant_config("acme", mapping="other")))
    book.apply(*record(None, "beta"))

    assert sorted(book.current()) == ["acme"]
    assert book.current()["acme"].mapping == "other"


def test_a_disabled_tenant_is_known_but_not_run() -> None:
    book = view()
    book.apply(*record(tenant_config("acme", enabled=False)))

    assert book.current() == {}
    assert sorted(book.tenants()) == ["acme"]


def test_a_bad_entry_is_named_and_the_tenant_kept_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = view()
    book.apply(*record(tenant_config("acme")))
    book.apply(*record(tenant_config("beta")))
    before = book.current()["acme"]

    with caplog.at_level(logging.ERROR):
        book.apply(*record(tenant_config("acme", source__page_size=1000)))
        book.apply(*record(tenant_config("gamma", target__base_url=7)))

    assert book.current() == {"acme": before, "beta": book.current()["beta"]}  # gamma: out
    messages = [r.getMessage() for r in caplog.records]
    assert any("tenant acme" in m and "source.page_size" in m for m in messages), messages
    assert any("tenant gamma" in m and "target.base_url" in m for m in messages), messages
    assert any("kept as it was" in m for m in messages)


def test_a_record_that_is_not_a_tenant_entry_is_skipped_never_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = view()
    book.apply(*record(tenant_config("acme")))

    with caplog.at_level(logging.ERROR):
        book.apply(b"acme", b"\xff not json")
        book.apply(b"beta", tenant_feed.encode(tenant_config("not-beta")))  # key and id differ

    assert sorted(book.current()) == ["acme"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "tenant acme" in messages
    assert "tenant beta" in messages


def test_a_secret_this_service_cannot_resolve_skips_only_that_tenant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = view(resolve=("target",))
    book.apply(*record(tenant_config("acme")))

    with caplog.at_level(logging.ERROR):
        book.apply(*record(tenant_config("beta", target__password={"env": "NOT_SET_ANYWHERE"})))

    assert sorted(book.current()) == ["acme"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "tenant beta" in messages
    assert "target" in messages
    assert PASSWORD not in messages


def test_no_secret_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    book = view(resolve=("source", "target"))
    with caplog.at_level(logging.DEBUG):
        book.apply(*record(tenant_config("acme")))
        book.apply(*record(tenant_config("acme", source__page_size=0)))
        book.apply(*record(None, "acme"))

    text = " ".join(r.getMessage() for r in caplog.records)
    for secret in (KEY, TOKEN, PASSWORD):
        assert secret not in text
