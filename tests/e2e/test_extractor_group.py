"""Extractor instances sharing tenants by Kafka group membership (issue 17): real
extractor processes, the real broker, the Siesa simulator.

Every row of every tenant is edited between phases, so each phase must emit each row's
new version: the raw topic, read with read_committed, must then hold every version of
every row exactly once, whoever owned the tenant when, and whatever instance was killed
or joined in between."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from devtools import procs
from devtools.stack import Stack
from services.common import tenant_feed, topics
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from tests.e2e.extractor_support import (
    SERDE,
    consultas,
    read_topic,
    siesa_tenant,
    state_of,
    wait_scan_after,
    wait_state,
)

log_figures = logging.getLogger("figures").info  # shown with --log-cli-level=INFO

TENANTS = [f"g{n:02d}" for n in range(60)]
COMPANIES = {tenant: 6100 + n for n, tenant in enumerate(TENANTS)}
ITEMS = 20
POLL_S = 2.0
MOVE_BOUND_S = 30.0
EDITED = re.compile(r" v(\d+)$")
POLLED = re.compile(r"(\S+) \(")  # "g01 (siesa, diff), g02 (siesa, diff)"


def all_raw(kafka: KafkaSettings) -> list[dict[str, Any]]:
    """Every committed RawItem of every tenant, decoded."""
    return [SERDE.decode_as("RawItem", r.value) for r in read_topic(kafka, topics.RAW)]


def version(item: dict[str, Any]) -> int:
    """The edit round a RawItem carries (1: as seeded)."""
    found = EDITED.search(item["row"].get("f120_descripcion") or "")
    return int(found.group(1)) if found else 1


def edit(stack: Stack, round_: int) -> dict[str, float]:
    """Every row of every tenant gets version `round_`; when each tenant's edit was done."""

    def one(tenant: str) -> float:
        rows = stack.siesa_items(COMPANIES[tenant])
        base = [{**r, "f120_descripcion": EDITED.sub("", r["f120_descripcion"])} for r in rows]
        stack.upsert_items(
            COMPANIES[tenant],
            [{**r, "f120_descripcion": f"{r['f120_descripcion']} v{round_}"} for r in base],
        )
        return time.time()

    with ThreadPoolExecutor(8) as pool:
        return dict(zip(TENANTS, pool.map(one, TENANTS), strict=True))


def wait_round(stack: Stack, kafka: KafkaSettings, round_: int, timeout: float) -> list[Any]:
    """Until the raw topic holds version `round_` of every row; the raw items then."""
    items: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal items
        stack.check_alive()
        items = all_raw(kafka)
        return sum(1 for i in items if version(i) == round_) >= len(TENANTS) * ITEMS

    procs.wait_until(done, timeout=timeout, interval=1.0, what=f"every row at v{round_}")
    return items


def assert_exactly_once(items: list[dict[str, Any]], rounds: int, skip: set[str]) -> None:
    """Every row of every tenant (but `skip`'s) emitted once per version, none twice."""
    emitted = Counter((i["tenant"], i["key"], i["fingerprint"]) for i in items)
    twice = [k for k, n in emitted.items() if n > 1 and k[0] not in skip]
    versions: dict[tuple[str, str], list[int]] = {}
    for item in items:
        if item["tenant"] not in skip:
            versions.setdefault((item["tenant"], item["key"]), []).append(version(item))
    assert len(versions) == (len(TENANTS) - len(skip)) * ITEMS, "every row, none lost"
    wrong = {k: sorted(v) for k, v in versions.items() if sorted(v) != list(range(1, rounds + 1))}
    assert not wrong, f"{len(wrong)} rows not once per version, e.g. {list(wrong.items())[:3]}"
    assert not twice, f"{len(twice)} rows emitted twice, e.g. {twice[:3]}"


def owned_by(stack: Stack, name: str) -> set[str]:
    """The tenants instance `name` polls now, as its log tells."""
    owned: set[str] = set()
    for line in stack.processes[name].log_path.read_text(errors="replace").splitlines():
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            continue
        if message.startswith("polling ") and "more tenants" in message:
            owned |= set(POLLED.findall(message.split(": ", 1)[1]))
        elif message.startswith("stopped ") and " tenants (" in message:
            owned -= set(json.loads(message.split(": ", 1)[1].replace("'", '"')))
    return owned


def wait_owning(stack: Stack, names: list[str], timeout: float) -> dict[str, set[str]]:
    """Until `names` poll every tenant between them, each some, none twice."""
    found: dict[str, set[str]] = {}

    def shared() -> bool:
        stack.check_alive()
        found.update({n: owned_by(stack, n) for n in names})
        counts = Counter(t for owned in found.values() for t in owned)
        return set(counts) == set(TENANTS) and set(counts.values()) == {1} and all(found.values())

    procs.wait_until(shared, timeout=timeout, interval=1.0, what=f"{names} sharing the tenants")
    return found


def resumed_within(
    items: list[dict[str, Any]], tenants: set[str], round_: int, at: float, edited: dict[str, float]
) -> float:
    """The longest any of `tenants` took to emit version `round_` after `at` (a kill) or,
    when later, after its edit."""
    first: dict[str, float] = {}
    for item in items:
        if item["tenant"] in tenants and version(item) == round_:
            when = item["extracted_at"].timestamp()
            first[item["tenant"]] = min(first.get(item["tenant"], when), when)
    assert set(first) == tenants
    return max(when - max(at, edited[tenant]) for tenant, when in first.items())


def test_extractors_share_tenants_and_move_them_on_a_kill_and_a_join_exactly_once(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        siesa_tenant(stack, t, COMPANIES[t], mode="diff", poll_interval_s=POLL_S) for t in TENANTS
    ]
    stack.start_siesa_simulator()
    for n, tenant in enumerate(TENANTS):
        stack.seed(COMPANIES[tenant], ITEMS, seed=n)
    names = ["extractor-1", "extractor-2", "extractor-3"]
    for n, name in enumerate(names, 1):
        stack.start_extractor(name, INSTANCE_ID=f"e{n}")
    wait_owning(stack, names, timeout=120)
    wait_round(stack, kafka, 1, timeout=180)
    edit(stack, 2)
    assert_exactly_once(wait_round(stack, kafka, 2, timeout=120), 2, set())

    # kill -9 of one instance: its tenants go on at the others', edited meanwhile.
    lost = owned_by(stack, "extractor-1")
    killed_at = time.time()
    stack.kill("extractor-1")
    edited = edit(stack, 3)
    items = wait_round(stack, kafka, 3, timeout=120)
    moved_s = resumed_within(items, lost, 3, killed_at, edited)
    log_figures("%d tenants of a killed instance resumed within %.1f s", len(lost), moved_s)
    assert moved_s <= MOVE_BOUND_S
    assert_exactly_once(items, 3, set())
    names.remove("extractor-1")

    # A fourth instance joins and takes some tenants (cooperative: only those move).
    stack.start_extractor("extractor-4", INSTANCE_ID="e4")
    names.append("extractor-4")
    owners = wait_owning(stack, names, timeout=120)
    edit(stack, 4)
    assert_exactly_once(wait_round(stack, kafka, 4, timeout=120), 4, set())

    # `pause` reaches the tenant's owner: Siesa sees no more of its requests.
    paused = sorted(owners["extractor-4"])[0]
    stack.run_cli(["pause", "--tenant", paused])
    wait_state(stack, kafka, paused, "paused", lambda s: s["paused"], timeout=60)
    requests = len(consultas(stack, COMPANIES[paused]))
    other = sorted(owners["extractor-3"])[0]
    for _ in range(2):  # two more scans of another tenant: the paused one had its turns
        wait_scan_after(stack, kafka, other, datetime.now().astimezone(), timeout=60)
    assert len(consultas(stack, COMPANIES[paused])) == requests

    # `resync` asked for while its tenant moves (its owner just killed) is applied once
    # by the new owner.
    resynced = sorted(owners["extractor-2"])[0]
    before = state_of(kafka, resynced)
    assert before is not None
    stack.kill("extractor-2")
    stack.run_cli(["resync", "--tenant", resynced])
    wait_state(
        stack,
        kafka,
        resynced,
        "re-emitted",
        lambda s: s["changed"] >= before["changed"] + ITEMS,
        timeout=120,
    )
    wait_scan_after(stack, kafka, resynced, datetime.now().astimezone(), timeout=60)
    items = all_raw(kafka)
    again = Counter(i["key"] for i in items if i["tenant"] == resynced and version(i) == 4)
    assert set(again.values()) == {2}, again  # once by round 4, once by the resync
    assert_exactly_once(items, 4, {resynced})


def test_an_extractor_follows_the_tenants_topic_once_it_holds_records(
    stack: Stack, kafka: KafkaSettings
) -> None:
    companies = {"live-a": 6201, "live-b": 6202, "live-c": 6203}
    entries = {
        t: siesa_tenant(stack, t, c, mode="diff", poll_interval_s=1) for t, c in companies.items()
    }
    entries["live-c"]["enabled"] = False  # in the file (its credentials given), not polled
    stack.tenants = list(entries.values())
    stack.start_siesa_simulator()
    for company in companies.values():
        stack.seed(company, ITEMS, seed=company)
    stack.start_extractor("extractor-1", INSTANCE_ID="e1")
    for tenant in ("live-a", "live-b"):  # the file's, the topic being empty
        wait_state(stack, kafka, tenant, "synced", lambda s: s["changed"] >= ITEMS, timeout=120)
    assert state_of(kafka, "live-c") is None

    # `tenants apply` of a file holding live-a and live-c (enabled), not live-b.
    entries["live-c"]["enabled"] = True
    topic = kafka.topic(topics.TENANTS)
    producer = make_producer(kafka)
    partitions = len(producer.list_topics(topic, timeout=30).topics[topic].partitions)
    for tenant, entry in (
        ("live-a", entries["live-a"]),
        ("live-b", None),
        ("live-c", entries["live-c"]),
    ):
        producer.produce(
            topic,
            key=tenant.encode(),
            value=tenant_feed.encode(entry),
            partition=tenant_feed.partition_of(tenant, partitions),
        )
    assert producer.flush(30) == 0

    # live-c is synced without a restart; live-b is no longer polled.
    wait_state(stack, kafka, "live-c", "synced", lambda s: s["changed"] >= ITEMS, timeout=120)
    procs.wait_until(
        lambda: owned_by(stack, "extractor-1") == {"live-a", "live-c"},
        timeout=60,
        what="extractor-1 polling live-a and live-c",
    )
    requests = len(consultas(stack, companies["live-b"]))
    for _ in range(2):  # two more scans of live-a: live-b would have had its turns
        wait_scan_after(stack, kafka, "live-a", datetime.now().astimezone(), timeout=60)
    assert len(consultas(stack, companies["live-b"])) == requests
    assert len([i for i in all_raw(kafka) if i["tenant"] == "live-c"]) == ITEMS
