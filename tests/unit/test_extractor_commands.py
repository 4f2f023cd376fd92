"""Operator commands reach the tenant's owner, also across a move
(services/extractor/commands.py): every instance remembers the recent ones; a tenant
starting here gets its latest pause/resume and a resync not done yet, and no command
is handed over twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from services.extractor.commands import RESYNC_SLACK_S, Commands


class Polled:
    """The tenants polled here, and what was handed to them."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.handed: list[tuple[str, str]] = []

    def state_of(self, tenant: str) -> dict[str, Any] | None:
        return self.states.get(tenant)

    def command(self, tenant: str, name: str) -> None:
        self.handed.append((tenant, name))


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def commands(polled: Polled, max_age_s: float = 3600.0) -> Commands:
    recent = Commands(max_age_s)
    recent.tenants = polled
    return recent


def test_a_command_of_a_tenant_polled_here_is_handed_over_at_once() -> None:
    polled = Polled()
    polled.states["acme"] = {"last_scan_started_at": None, "last_scan_ended_at": None}
    recent = commands(polled)

    recent.dispatch("acme", "pause", time.time())
    recent.dispatch("acme", "resync", time.time())

    assert polled.handed == [("acme", "pause"), ("acme", "resync")]


def test_commands_of_a_tenant_polled_elsewhere_are_applied_when_it_moves_here() -> None:
    polled, now = Polled(), time.time()
    recent = commands(polled)
    recent.dispatch("acme", "pause", now - 30)
    recent.dispatch("acme", "resume", now - 20)  # the latest pause/resume wins
    recent.dispatch("acme", "resync", now - 10)
    assert polled.handed == []

    # It moves here; its owner had not scanned since the resync was asked for.
    polled.states["acme"] = {
        "last_scan_started_at": at(now - 40),
        "last_scan_ended_at": at(now - 39),
    }
    with recent.lock:
        recent.started("acme")

    assert polled.handed == [("acme", "resume"), ("acme", "resync")]


def test_a_resync_its_last_owner_did_is_not_done_again() -> None:
    polled, now = Polled(), time.time()
    recent = commands(polled)
    recent.dispatch("acme", "resync", now - 100)
    polled.states["acme"] = {  # a complete scan began after the resync reached its owner
        "last_scan_started_at": at(now - 100 + RESYNC_SLACK_S + 1),
        "last_scan_ended_at": at(now - 50),
    }
    with recent.lock:
        recent.started("acme")

    assert polled.handed == []


def test_a_resync_cut_short_by_the_move_is_done_by_the_new_owner() -> None:
    polled, now = Polled(), time.time()
    recent = commands(polled)
    recent.dispatch("acme", "resync", now - 100)
    polled.states["acme"] = {  # the resync's scan began, and never completed
        "last_scan_started_at": at(now - 60),
        "last_scan_ended_at": at(now - 100),
    }
    with recent.lock:
        recent.started("acme")

    assert polled.handed == [("acme", "resync")]


def test_old_commands_are_ignored_and_an_older_toggle_never_overrides_a_newer() -> None:
    polled, now = Polled(), time.time()
    polled.states["acme"] = {"last_scan_started_at": None, "last_scan_ended_at": None}
    recent = commands(polled, max_age_s=60)

    recent.dispatch("acme", "resync", now - 120)
    recent.dispatch("acme", "resume", now - 5)
    recent.dispatch("acme", "pause", now - 10)  # read after, asked for before

    assert polled.handed == [("acme", "resume")]
