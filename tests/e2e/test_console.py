"""The operator console on the real pipeline, in a real browser (Debian's Chromium,
driven by Playwright): log in, the overview shows what Kong and WMS really hold, a dead
letter redriven from the page lands in Kong, actions are confirmed and audited, a
viewer can't act, a POST without the CSRF token and every anonymous request are
refused. Screenshots of each page go to .run/screenshots/.

Also here, on the same running services: every metric the Grafana dashboard and the
alert rules query is one the services really export.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import BrowserContext, Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from devtools import procs
from devtools.stack import SERVICES, Stack
from services.common.settings import KafkaSettings
from services.console import pages
from services.console.users import write_user
from services.ops import audit

ITEMS = 200
KONG_COMPANY, WMS_COMPANY = 8585, 8020
PASSWORDS = {"olga": "olga-operator-pass", "vic": "vic-viewer-password"}
SCREENSHOTS = procs.ROOT / ".run" / "screenshots"
DEPLOY = procs.ROOT / "deploy"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Synced:
    stack: Stack
    url: str
    blocked: str  # the SKU Kong refused: one dead letter of acme


def status(stack: Stack) -> dict[str, dict[str, Any]]:
    rows = json.loads(
        stack.run_cli(["status", "--json", "--tenants-file", str(stack.tenants_file)])
    )
    return {row["tenant"]: row for row in rows}


@pytest.fixture(scope="module")
def synced(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    """Two tenants synced (acme to Kong, one product refused; bodega to WMS), the
    pipeline settled, and the console running on it."""
    home = tmp_path_factory.mktemp("console")
    stack = Stack(
        bootstrap=kafka_bootstrap,
        run_dir=home / "run",
        siesa_port=procs.free_port(),
        kong_port=procs.free_port(),
        wms_port=procs.free_port(),
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
    )
    try:
        stack.tenants = [
            stack.kong_tenant("acme", KONG_COMPANY),
            stack.wms_tenant("bodega", WMS_COMPANY),
        ]
        stack.start_simulators()
        stack.seed(KONG_COMPANY, ITEMS, seed=1)
        stack.seed(WMS_COMPANY, ITEMS, seed=2)
        blocked = stack.siesa_items(KONG_COMPANY)[7]["f120_referencia"].strip()
        stack.set_faults(
            stack.kong_url, reject_external_ids=[blocked], reject_message="blocked SKU"
        )
        stack.create_topics()
        stack.start_services()

        def settled() -> bool:
            stack.check_alive()
            if len(stack.kong_skus()) != ITEMS - 1 or len(stack.wms_products()) != ITEMS:
                return False
            rows = status(stack)
            return all(rows[t]["lag"] == 0 for t in ("acme", "bodega")) and (
                rows["acme"]["dead_lettered"] == 1
            )

        procs.wait_until(settled, timeout=180, interval=1.0, what="both tenants synced")
        users = home / "users.yaml"
        write_user(users, "olga", "operator", PASSWORDS["olga"])
        write_user(users, "vic", "viewer", PASSWORDS["vic"])
        url = stack.start_console(users, procs.free_port())
        yield Synced(stack, url, blocked)
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: `make setup` installs it (Debian's chromium package)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{url}/")


def log_out(page: Page) -> None:
    page.click("form[action='/logout'] button")
    page.wait_for_url(re.compile(r".*/login$"))


def cell(page: Page, tenant: str, column: str) -> str:
    return page.locator(f"tr[data-tenant='{tenant}'] td.{column}").inner_text().strip()


def wait(what: str, condition: Any, timeout: float = 60) -> None:
    procs.wait_until(condition, timeout=timeout, interval=0.5, what=what)


def test_console_in_a_real_browser(synced: Synced, browser: BrowserContext) -> None:
    stack, url = synced.stack, synced.url
    page = browser.new_page()

    page.goto(f"{url}/")
    assert "/login" in page.url  # nothing without logging in
    shot(page, "login")
    log_in(page, url, "olga")

    # The overview: both tenants, with the counts their targets really hold.
    held = {"acme": len(stack.kong_skus()), "bodega": len(stack.wms_products())}
    assert held == {"acme": ITEMS - 1, "bodega": ITEMS}

    def overview_shows_held() -> bool:
        page.reload()
        return all(cell(page, t, "loaded") == str(n) for t, n in held.items())

    wait("the overview's counts", overview_shows_held)
    assert page.locator("tr[data-tenant]").count() == 2
    assert cell(page, "acme", "failed") == "1"
    shot(page, "overview")

    # Live changes: a tenant's page charts them (freshness from the loader's histogram,
    # sampled by the console), with its syncs, mapping and target; never a credential.
    changed = [dict(r) for r in stack.siesa_items(KONG_COMPANY)[20:25]]
    for row in changed:
        row["f120_descripcion"] = f"CAMBIADO {row['f120_referencia'].strip()}"
    stack.upsert_items(KONG_COMPANY, changed)
    names = {r["f120_referencia"].strip(): r["f120_descripcion"] for r in changed}
    wait(
        "the changes in Kong",
        lambda: all(names.get(s["external_id"], s["name"]) == s["name"] for s in stack.kong_skus()),
    )

    def charted() -> bool:
        page.goto(f"{url}/tenants/acme")
        return page.locator("svg[aria-label^='freshness'] :is(circle, polyline)").count() > 0

    wait("the changes' freshness charted", charted)
    assert page.locator("svg.chart").count() == 3
    assert "siesa-items" in page.inner_text("main")
    creds = stack.credentials
    content = page.content()
    for secret in (creds.conni_key, creds.conni_token, creds.kong_password, creds.wms_password):
        assert secret not in content
    shot(page, "tenant")

    # The dead letter: its headers and decoded payload.
    key = f"acme/{synced.blocked}"
    page.goto(f"{url}/dlq?tenant=acme")
    row = page.locator(f"tr[data-key='{key}']")
    assert row.count() == 1
    shot(page, "dead-letters")
    row.locator("a", has_text="open").click()
    assert "blocked SKU" in page.inner_text("table.headers")
    assert f'"sku": "{synced.blocked}"' in page.inner_text("pre.payload")
    shot(page, "dead-letter")

    # Fixed in Kong; redriven from the page after a dry-run preview: it lands in Kong.
    stack.set_faults(stack.kong_url)
    page.goto(f"{url}/dlq?tenant=acme")
    page.locator(f"tr[data-key='{key}'] input[type=checkbox]").check()
    page.click("button[value=selected]")
    assert "Would send 1" in page.inner_text("p.preview")
    assert synced.blocked in page.inner_text("table.letters")
    assert synced.blocked not in {s["external_id"] for s in stack.kong_skus()}  # dry run
    shot(page, "redrive-preview")
    page.click("button.danger")
    assert page.inner_text("p.result").startswith("sent 1;")
    shot(page, "redrive-done")
    wait(
        "the redriven product in Kong",
        lambda: synced.blocked in {s["external_id"] for s in stack.kong_skus()},
    )

    # Pause, confirmed; the overview shows it live (no reload): paused, by whom.
    page.goto(f"{url}/tenants/acme")
    page.click("a.button:has-text('Pause')")
    shot(page, "confirm-pause")
    page.click("button.danger")
    assert "pause requested for tenant acme" in page.inner_text("p.result")
    page.goto(f"{url}/")
    wait("acme paused, live", lambda: "paused" in cell(page, "acme", "status-cell"))
    assert "by olga" in cell(page, "acme", "status-cell")
    shot(page, "overview-paused")
    page.goto(f"{url}/tenants/acme/confirm/resume")
    page.click("button.danger")
    assert "resume requested" in page.inner_text("p.result")

    # A viewer sees, but can't act: 403 even with a valid CSRF token.
    log_out(page)
    log_in(page, url, "vic")
    page.goto(f"{url}/tenants/acme/confirm/resync")
    assert "Actions need the operator role" in page.inner_text("main")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(f"{url}/tenants/acme/actions/resync", form={"csrf": token or ""})
    assert refused.status == 403
    log_out(page)

    # An operator's POST without the CSRF token (or a forged one) is refused.
    log_in(page, url, "olga")
    for form in ({}, {"csrf": "forged"}):
        refused = page.request.post(f"{url}/tenants/acme/actions/resync", form=form)
        assert refused.status == 403
    page.goto(f"{url}/audit")
    shot(page, "audit")

    # Every action is in the audit topic, with user and tenant; the refused ones aren't.
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    entries = sorted(audit.read(kafka), key=lambda e: e.at)
    assert [(e.action, e.tenant, e.user, e.via, e.outcome) for e in entries] == [
        ("dlq-replay", "acme", "olga", "console", "ok"),
        ("pause", "acme", "olga", "console", "ok"),
        ("resume", "acme", "olga", "console", "ok"),
    ]
    audit_page = page.inner_text("table.audit")
    assert audit_page.count("olga") == 3


def test_anonymous_requests_to_every_page_and_action_are_refused(synced: Synced) -> None:
    sample = {"tenant": "acme", "action": "pause", "partition": "0", "offset": "0"}
    paths = [("POST", "/logout")]
    for route in pages.routes():
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: sample[m.group(1)], route.path)  # type: ignore[attr-defined]
        paths += [(m, path) for m in sorted(route.methods or []) if m != "HEAD"]  # type: ignore[attr-defined]
    assert len(paths) >= 11
    with httpx.Client(base_url=synced.url) as client:  # no cookies: anonymous
        for method, path in paths:
            response = client.request(method, path, data={"csrf": "x", "from": "1h"})
            if method == "GET":
                assert response.status_code == 303, path
                assert response.headers["location"].startswith("/login"), path
            else:
                assert response.status_code == 403, (method, path)
            assert "bodega" not in response.text


METRIC = re.compile(r"\bsiesa_sync_[a-z_]+\b")


def test_dashboard_and_alert_rules_query_only_metrics_the_services_export(synced: Synced) -> None:
    exported: set[str] = set()
    for name in SERVICES:
        text = httpx.get(f"{synced.stack.health_url(name)}/metrics", timeout=10).text
        exported |= {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    dashboard = json.loads((DEPLOY / "grafana" / "siesa-sync.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert all(p["targets"] for p in dashboard["panels"])
    rules = yaml.safe_load((DEPLOY / "prometheus" / "siesa-sync-alerts.yml").read_text())
    queries += [r["expr"] for group in rules["groups"] for r in group["rules"]]

    queried = {m for q in queries for m in METRIC.findall(q)}

    assert len(queried) >= 10
    assert queried <= exported, f"queried but not exported: {sorted(queried - exported)}"
