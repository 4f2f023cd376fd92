"""`make demo`, `make up`, `make down`: the whole pipeline on this machine.

    python -m devtools.demo demo   # start everything, sync, show live changes, stop
    python -m devtools.demo up     # start everything and leave it running
    python -m devtools.demo down   # stop what `up` started (by PID)

The broker, simulators and services run on their default ports (design.md) with the
demo tenants of config/tenants.yaml and fresh credentials (kept in .run/, mode 600).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import yaml

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import Credentials, Stack

TENANTS = procs.ROOT / "config" / "tenants.yaml"
FIXTURE_PAGE = procs.ROOT / "tests" / "fixtures" / "siesa-items-page.json"
CREDENTIALS = procs.RUN_DIR / "credentials.json"
SEEDED = 5000
PORTS = {"Kafka": 9092, "Siesa simulator": 8081, "Kong simulator": 8082}


def say(text: str) -> None:
    print(text, flush=True)


def check_ports() -> None:
    busy = [f"{what} port {port}" for what, port in PORTS.items() if procs.port_open(port)]
    if busy:
        sys.exit(f"cannot start: {', '.join(busy)} in use (is `make up` running? `make down`)")


def save_credentials(creds: Credentials) -> None:
    CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    CREDENTIALS.touch(mode=0o600)
    CREDENTIALS.chmod(0o600)
    CREDENTIALS.write_text(json.dumps(creds.__dict__, indent=2))


def start_all() -> tuple[LocalBroker, Stack]:
    """Start everything; if any step fails, stop what was started and re-raise."""
    procs.stop_recorded()  # leftovers of an interrupted run
    check_ports()
    broker = LocalBroker(port=PORTS["Kafka"])
    stack = Stack(bootstrap=broker.bootstrap, free_health_ports=False)
    try:
        _start_all(broker, stack)
    except BaseException:
        stack.stop_all()
        broker.stop()
        raise
    return broker, stack


def _start_all(broker: LocalBroker, stack: Stack) -> None:
    say("starting Kafka (fetching its jars with Maven the first time)...")
    broker.start()
    stack.tenants = yaml.safe_load(TENANTS.read_text())["tenants"]
    save_credentials(stack.credentials)
    say("starting the Siesa and Kong simulators...")
    stack.start_simulators()
    say(stack.create_topics().rstrip())
    for tenant in stack.tenants:
        company = tenant["siesa"]["company"]
        stack.seed(company, SEEDED, seed=42)
        page = json.loads(FIXTURE_PAGE.read_text())["detalle"]["Table"]
        stack.upsert_items(company, page, keep_dates=True)
        say(
            f"Siesa company {company} ({tenant['id']}): {SEEDED} seeded + {len(page)} fixture items"
        )
    say("starting extractor, transformer and loader...")
    stack.start_services()


def wait_for_sync(stack: Stack, want: int, started: float) -> None:
    last = -1

    def done() -> bool:
        nonlocal last
        stack.check_alive()
        count = len(stack.kong_skus())
        if count != last:
            say(f"  Kong holds {count:5d} / {want} SKUs  ({time.monotonic() - started:5.1f}s)")
            last = count
        return count >= want

    procs.wait_until(done, timeout=600, interval=1.0, what=f"Kong holding {want} SKUs")


def live_changes(stack: Stack, company: int) -> list[tuple[str, str, float]]:
    """Change three items in Siesa and time each until Kong shows it."""
    rows = [r for r in stack.siesa_items(company) if r["f120_ind_estado"] == 1]
    picks = [dict(rows[i]) for i in (3, len(rows) // 3, 2 * len(rows) // 3)]
    picks[0]["f120_descripcion"] = 'CAMISETA ALGODON & LINO "EDICION" #7 -- NUEVA'
    picks[1]["f120_descripcion_comercial"] = "Nombre comercial cambiado; 20x30"
    picks[2]["f120_ind_estado"] = 0
    expected = [
        ("name", picks[0]["f120_descripcion"]),
        ("display_name", picks[1]["f120_descripcion_comercial"]),
        ("is_active", False),
    ]
    changed_at = time.monotonic()
    stack.upsert_items(company, picks)
    say("changed 3 items in Siesa; waiting for Kong...")
    pending = {p["f120_referencia"].strip(): exp for p, exp in zip(picks, expected, strict=True)}
    arrived: list[tuple[str, str, float]] = []

    def all_arrived() -> bool:
        stack.check_alive()
        held = {s["external_id"]: s for s in stack.kong_skus()}
        for sku, (field, value) in list(pending.items()):
            if held.get(sku, {}).get(field) == value:
                arrived.append((sku, f"{field} = {value!r}", time.monotonic() - changed_at))
                say(f"  {sku}: {field} = {value!r} after {arrived[-1][2]:.1f}s")
                del pending[sku]
        return not pending

    procs.wait_until(all_arrived, timeout=120, interval=0.25, what="the changes in Kong")
    return arrived


def summary(stack: Stack, tenant: dict[str, Any], elapsed: float, changes: list[Any]) -> None:
    company = tenant["siesa"]["company"]
    interval = tenant["siesa"].get("poll_interval_s", 5)
    skus = stack.kong_skus()
    siesa = stack.siesa_items(company)
    active = sum(1 for s in skus if s.get("is_active"))
    say("")
    say("summary")
    say(f"  Siesa items               {len(siesa):>8}")
    inactive = len(skus) - active
    rate = len(skus) / elapsed
    say(f"  Kong SKUs                 {len(skus):>8}  ({active} active, {inactive} inactive)")
    say(f"  first full sync           {elapsed:>7.1f}s  ({rate:.0f} items/s end to end)")
    worst = max(c[2] for c in changes)
    arrived = len(changes)
    say(
        f"  live changes arrived      {arrived:>8}  (slowest {worst:.1f}s, polls every {interval}s)"
    )


def demo() -> None:
    broker, stack = start_all()
    try:
        tenant = stack.tenants[0]
        company = tenant["siesa"]["company"]
        want = len(stack.siesa_items(company))
        started = time.monotonic()
        wait_for_sync(stack, want, started)
        elapsed = time.monotonic() - started
        changes = live_changes(stack, company)
        summary(stack, tenant, elapsed, changes)
    finally:
        say("stopping everything...")
        stack.stop_all()
        broker.stop()
    say("done: no process left running")


def up() -> None:
    _, stack = start_all()
    say(f"up: Kafka {stack.bootstrap}, Siesa {stack.siesa_url}, Kong {stack.kong_url}")
    say(f"credentials in {CREDENTIALS}; logs in {procs.RUN_DIR / 'logs'}; `make down` stops all")


def down() -> None:
    stopped = procs.stop_recorded()
    say(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo")
    parser.add_argument("command", choices=["demo", "up", "down"])
    {"demo": demo, "up": up, "down": down}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
