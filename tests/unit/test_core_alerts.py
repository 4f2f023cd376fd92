"""Alerts to a real webhook receiver on loopback: once per condition, secrets masked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from services.common.alerts import Alerter


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


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
