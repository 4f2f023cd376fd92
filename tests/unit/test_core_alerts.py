"""Alerts to a real webhook receiver on loopback: once per condition, secrets masked."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from services.common.alerts import Alerter
from tests.webhook import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def test_one_post_while_the_condition_lasts_and_again_after_it_clears(receiver: Receiver) -> None:
    alerter = Alerter(receiver.url, "extractor")

    assert alerter.fire("acme", "failed", "Siesa answered 401") is True
    assert alerter.fire("acme", "failed", "Siesa answered 401") is False
    assert alerter.fire("beta", "failed", "timeout") is True
    alerter.clear("acme", "failed")
    assert alerter.fire("acme", "failed", "Siesa answered 401") is True

    assert [(b["tenant"], b["condition"]) for b in receiver.bodies] == [
        ("acme", "failed"),
        ("beta", "failed"),
        ("acme", "failed"),
    ]
    first = receiver.bodies[0]
    assert "acme" in first["text"]
    assert first["reason"] == "Siesa answered 401"
    assert first["service"] == "extractor"


def test_known_secrets_never_leave_in_an_alert(receiver: Receiver) -> None:
    alerter = Alerter(receiver.url, "extractor", secrets=["K3y-s3cret", "T0ken"])

    alerter.fire("acme", "failed", "bad ConniKey K3y-s3cret with T0ken")

    sent = json.dumps(receiver.bodies)
    assert "K3y-s3cret" not in sent
    assert "T0ken" not in sent
    assert receiver.bodies[0]["reason"] == "bad ConniKey *** with ***"


def test_an_unreachable_webhook_is_logged_not_raised() -> None:
    alerter = Alerter("http://127.0.0.1:9/hook", "loader", timeout_s=1)
    assert alerter.fire("acme", "dlq_growing", "101 dead letters") is False
