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
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import yaml

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import Credentials, Stack

TENANTS = procs.ROOT / "config" / "tenants.yaml"
FIXTURE_PAGE = procs.ROOT / "tests" / "fixtures" / "siesa-items-page.json"
CREDENTIALS = procs.RUN_DIR / "credentials.json"
CONSOLE_USERS = procs.RUN_DIR / "console-users.yaml"
SEEDED = 5000
PORTS = {
    "Kafka": 9092,
    "Siesa simulator": 8081,
    "Kong simulator": 8082,
    "WMS simulator": 8083,
    "console": 9100,
}


def say(text: str) -> None:
    print(text, flush=True)


def check_ports() -> None:
    busy = [f"{what} port {port}" for what, port in PORTS.items() if procs.port_open(port)]
    if busy:
        sys.exit(f"cannot start: {', '.join(busy)} in use (is `make up` running? `make down`)")


def save_credentials(creds: Credentials, **more: str) -> None:
    CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    CREDENTIALS.touch(mode=0o600)
    CREDENTIALS.chmod(0o600)
    CREDENTIALS.write_text(json.dumps({**creds.__dict__, **more}, indent=2))


@dataclass(frozen=True)
class Console:
    url: str
    user: str
    password: str


def start_console(stack: Stack) -> Console:
    """The console on 127.0.0.1:9100 with one operator, its password generated now."""
    from services.console.users import write_user

    console = Console(f"http://127.0.0.1:{PORTS['console']}", "operator", secrets.token_urlsafe(12))
    CONSOLE_USERS.unlink(missing_ok=True)
    write_user(CONSOLE_USERS, console.user, "operator", console.password)
    stack.start_console(CONSOLE_USERS, PORTS["console"])
    save_credentials(
        stack.credentials, console_user=console.user, console_password=console.password
    )
    return console


def console_tenants(console: Console) -> list[str]:
    """Log in as a browser would and read the tenants the overview lists."""
    with httpx.Client(base_url=console.url, timeout=30) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        form = {"username": console.user, "password": console.password, "next": "/"}
        client.post("/login", data={**form, "csrf": token.group(1) if token else ""})
        return re.findall(r'data-tenant="([^"]+)"', client.get("/").text)


def show_console(console: Console, tenants: list[dict[str, Any]]) -> None:
    want = sorted(t["id"] for t in tenants)
    procs.wait_until(
        lambda: sorted(console_tenants(console)) == want,
        timeout=60,
        interval=1.0,
        what="the console listing the demo's tenants",
    )
    say("")
    say(f"console: {console.url}  (shows tenants {', '.join(want)})")
    say(f"  log in as {console.user!r} with password {console.password!r} (also in {CREDENTIALS})")


def start_all() -> tuple[LocalBroker, Stack, Console]:
    """Start everything; if any step fails, stop what was started and re-raise."""
    procs.stop_recorded()  # leftovers of an interrupted run
    check_ports()
    broker = LocalBroker(port=PORTS["Kafka"])
    stack = Stack(bootstrap=broker.bootstrap, free_health_ports=False)
    try:
        _start_all(broker, stack)
        console = start_console(stack)
    except BaseException:
        stack.stop_all()
        broker.stop()
        raise
    return broker, stack, console


def _start_all(broker: LocalBroker, stack: Stack) -> None:
    say("starting Kafka (fetching its jars with Maven the first time)...")
    broker.start()
    stack.tenants = yaml.safe_load(TENANTS.read_text())["tenants"]
    save_credentials(stack.credentials)
    say("starting the Siesa, Kong and WMS simulators...")
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
    say("starting the console...")


def held(stack: Stack, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    """What the tenant's target holds (the demo gives each target one tenant)."""
    return stack.held(tenant["target"]["type"])


def inactive(tenant: dict[str, Any]) -> tuple[str, Any]:
    """The field and value that mark an inactive product in the tenant's target."""
    return ("status", "INACTIVE") if tenant["target"]["type"] == "wms" else ("is_active", False)


def wait_for_sync(stack: Stack, tenants: list[dict[str, Any]], started: float) -> list[float]:
    """Wait until every tenant's target holds its whole Siesa catalogue; seconds each."""
    want = {t["id"]: len(stack.siesa_items(t["siesa"]["company"])) for t in tenants}
    took: dict[str, float] = {}
    last: dict[str, int] = {}

    def done() -> bool:
        stack.check_alive()
        for tenant in tenants:
            if tenant["id"] in took:
                continue
            count = len(held(stack, tenant))
            if count != last.get(tenant["id"]):
                target = tenant["target"]["type"]
                say(
                    f"  {tenant['id']} ({target}) holds {count:5d} / {want[tenant['id']]}"
                    f"  ({time.monotonic() - started:5.1f}s)"
                )
                last[tenant["id"]] = count
            if count >= want[tenant["id"]]:
                took[tenant["id"]] = time.monotonic() - started
        return len(took) == len(tenants)

    procs.wait_until(done, timeout=600, interval=1.0, what="every tenant's catalogue")
    return [took[t["id"]] for t in tenants]


def live_changes(stack: Stack, tenant: dict[str, Any]) -> list[tuple[str, str, float]]:
    """Change three items in Siesa and time each until the tenant's target shows it."""
    company = tenant["siesa"]["company"]
    rows = [r for r in stack.siesa_items(company) if r["f120_ind_estado"] == 1]
    picks = [dict(rows[i]) for i in (3, len(rows) // 3, 2 * len(rows) // 3)]
    picks[0]["f120_descripcion"] = 'CAMISETA ALGODON & LINO "EDICION" #7 -- NUEVA'
    picks[1]["f120_descripcion_comercial"] = "Nombre comercial cambiado; 20x30"
    picks[2]["f120_ind_estado"] = 0
    expected = [
        ("name", picks[0]["f120_descripcion"]),
        ("display_name", picks[1]["f120_descripcion_comercial"]),
        inactive(tenant),
    ]
    changed_at = time.monotonic()
    stack.upsert_items(company, picks)
    say(f"changed 3 items of {tenant['id']} in Siesa; waiting for {tenant['target']['type']}...")
    pending = {p["f120_referencia"].strip(): exp for p, exp in zip(picks, expected, strict=True)}
    arrived: list[tuple[str, str, float]] = []

    def all_arrived() -> bool:
        stack.check_alive()
        now = {s["external_id"]: s for s in held(stack, tenant)}
        for sku, (field, value) in list(pending.items()):
            if now.get(sku, {}).get(field) == value:
                arrived.append((sku, f"{field} = {value!r}", time.monotonic() - changed_at))
                say(f"  {sku}: {field} = {value!r} after {arrived[-1][2]:.1f}s")
                del pending[sku]
        return not pending

    procs.wait_until(all_arrived, timeout=120, interval=0.25, what="the changes in the target")
    return arrived


def summary(stack: Stack, tenant: dict[str, Any], elapsed: float, changes: list[Any]) -> None:
    company = tenant["siesa"]["company"]
    interval = tenant["siesa"].get("poll_interval_s", 5)
    items = held(stack, tenant)
    siesa = stack.siesa_items(company)
    field, value = inactive(tenant)
    inactive_count = sum(1 for s in items if s.get(field) == value)
    target = tenant["target"]["type"]
    say("")
    say(f"summary: tenant {tenant['id']} (Siesa company {company} -> {target})")
    say(f"  Siesa items               {len(siesa):>8}")
    say(
        f"  {target:<5} products            {len(items):>8}  "
        f"({len(items) - inactive_count} active, {inactive_count} inactive)"
    )
    rate = len(items) / elapsed
    say(f"  first full sync           {elapsed:>7.1f}s  ({rate:.0f} items/s end to end)")
    worst = max(c[2] for c in changes)
    say(
        f"  live changes arrived      {len(changes):>8}  "
        f"(slowest {worst:.1f}s, polls every {interval}s)"
    )


def dead_letter_fixed_and_redriven(stack: Stack, tenant: dict[str, Any]) -> None:
    """Kong refuses one product for good (a 400): it lands in the DLQ; the cause is fixed
    in Kong; `siesa-sync dlq replay` sends it again and it arrives."""
    company = tenant["siesa"]["company"]
    row = dict(next(r for r in stack.siesa_items(company) if r["f120_ind_estado"] == 1))
    sku = row["f120_referencia"].strip()
    row["f120_descripcion"] = "PRODUCTO CORREGIDO TRAS RECHAZO"
    say("")
    say(f"dead letters: Kong is told to refuse {sku} (HTTP 400), and the item changes in Siesa")
    stack.set_faults(stack.kong_url, reject_external_ids=[sku], reject_message="blocked SKU")
    stack.upsert_items(company, [row])

    def dead_lettered() -> bool:
        stack.check_alive()
        listed = json.loads(stack.run_cli(["dlq", "list", "--tenant", tenant["id"], "--json"]))
        return any(d["key"] == f"{tenant['id']}/{sku}" for d in listed)

    procs.wait_until(dead_lettered, timeout=120, interval=1.0, what="the dead letter")
    say(stack.run_cli(["dlq", "list", "--tenant", tenant["id"]]).rstrip())
    say(f"fix in Kong (block lifted), then: siesa-sync dlq replay --tenant {tenant['id']}")
    stack.set_faults(stack.kong_url)
    say(stack.run_cli(["dlq", "replay", "--tenant", tenant["id"]]).rstrip())

    def arrived() -> bool:
        stack.check_alive()
        return any(
            s["external_id"] == sku and s["name"] == row["f120_descripcion"]
            for s in stack.kong_skus()
        )

    started = time.monotonic()
    procs.wait_until(arrived, timeout=120, interval=0.5, what="the redriven product in Kong")
    say(f"  {sku} is in Kong with its new name {time.monotonic() - started:.1f}s later")
    again = stack.run_cli(["dlq", "replay", "--tenant", tenant["id"]]).rstrip()
    say(f"a second replay sends nothing again: {again}")


def show_status(stack: Stack) -> None:
    def settled() -> bool:
        rows = json.loads(stack.run_cli(["status", "--json"]))
        return all(r["lag"] == 0 for r in rows)

    procs.wait_until(settled, timeout=120, interval=1.0, what="every stage caught up")
    say("")
    say(stack.run_cli(["status"]).rstrip())


def demo() -> None:
    broker, stack, console = start_all()
    try:
        started = time.monotonic()
        took = wait_for_sync(stack, stack.tenants, started)
        changes = [live_changes(stack, tenant) for tenant in stack.tenants]
        for tenant, elapsed, changed in zip(stack.tenants, took, changes, strict=True):
            summary(stack, tenant, elapsed, changed)
        kong = next(t for t in stack.tenants if t["target"]["type"] == "kong")
        dead_letter_fixed_and_redriven(stack, kong)
        show_status(stack)
        show_console(console, stack.tenants)
        keep = float(os.environ.get("DEMO_KEEP_S", "0"))
        if keep > 0:
            say(
                f"  kept running {keep:.0f} s for you to look (DEMO_KEEP_S); `make up` keeps it all"
            )
            time.sleep(keep)
        else:
            say("  (stopped with the rest now: `make up` keeps it running, DEMO_KEEP_S=300 too)")
    finally:
        say("stopping everything...")
        stack.stop_all()
        broker.stop()
    say("done: no process left running")


def up() -> None:
    _, stack, console = start_all()
    show_console(console, stack.tenants)
    say(
        f"up: Kafka {stack.bootstrap}, Siesa {stack.siesa_url}, Kong {stack.kong_url}, "
        f"WMS {stack.wms_url}"
    )
    say(f"credentials in {CREDENTIALS}; logs in {procs.RUN_DIR / 'logs'}; `make down` stops all")


def down() -> None:
    stopped = procs.stop_recorded()
    say(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo")
    parser.add_argument("command", choices=["demo", "up", "down"])
    procs.interrupt_on_sigterm()
    {"demo": demo, "up": up, "down": down}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
