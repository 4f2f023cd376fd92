"""The request statistics middleware shared by the simulators."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from simulators.stats import RequestStats, StatsMiddleware, stats_middleware
from simulators.web import simulator_app


def _app(stats: RequestStats, release: asyncio.Event, arrived: asyncio.Event) -> Starlette:
    waiting = 0

    async def held(request: Request) -> Response:
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            arrived.set()
        await release.wait()
        return JSONResponse({"id": request.path_params["id"]})

    async def limited(request: Request) -> Response:
        return JSONResponse({"detail": "slow down"}, status_code=429)

    async def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    async def admin(request: Request) -> Response:
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/items/{id:int}", held),
            Route("/limited", limited),
            Route("/broken", broken),
            Route("/_admin/stats", admin),
        ],
        middleware=[stats_middleware(stats)],
    )


async def _exercise(stats: RequestStats) -> dict[str, object]:
    release, arrived = asyncio.Event(), asyncio.Event()
    transport = httpx.ASGITransport(app=_app(stats, release, arrived), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        held = [asyncio.create_task(client.get(f"/items/{i}")) for i in (1, 2, 3)]
        await asyncio.wait_for(arrived.wait(), timeout=5)
        during = stats.snapshot()
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert (await client.get("/limited")).status_code == 429
        assert (await client.get("/broken")).status_code == 500
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/_admin/stats")).status_code == 200
    return during


def test_counts_by_route_template_and_tracks_concurrency() -> None:
    stats = RequestStats()
    during = asyncio.run(_exercise(stats))
    assert during["in_flight"] == 3
    assert during["peak_concurrency"] == 3
    after = stats.snapshot()
    assert after["in_flight"] == 0
    assert after["peak_concurrency"] == 3
    assert after["served_429"] == 1
    assert after["requests"] == [
        {"route": "/broken", "method": "GET", "status": 500, "count": 1},
        {"route": "/items/{id}", "method": "GET", "status": 200, "count": 3},
        {"route": "/limited", "method": "GET", "status": 429, "count": 1},
        {"route": "/nowhere", "method": "GET", "status": 404, "count": 1},
    ]


def test_reset_forgets_counts_and_peak() -> None:
    stats = RequestStats()
    asyncio.run(_exercise(stats))
    middleware = StatsMiddleware(Starlette(), stats)
    middleware.reset()
    assert middleware.snapshot() == {
        "requests": [],
        "peak_concurrency": 0,
        "in_flight": 0,
        "served_429": 0,
        "first_request_at": None,
        "last_request_at": None,
    }


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def _item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


def test_the_request_log_keeps_each_requests_traceparent_and_its_trace_id() -> None:
    """`GET /_admin/requests[?trace_id=]`: what a test reads to follow a trace in."""
    stats = RequestStats(logged=3)
    app = simulator_app(object(), [Route("/items/{id:int}", _item)], stats)
    traced = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    with TestClient(app) as client:
        assert client.get("/items/1", headers=traced).status_code == 200
        assert client.get("/items/2?full=1").status_code == 200
        assert client.get("/items/3", headers={"traceparent": "not w3c"}).status_code == 200
        everything = client.get("/_admin/requests").json()
        of_trace = client.get("/_admin/requests", params={"trace_id": TRACE}).json()
        assert client.get("/items/4").status_code == 200
        rolled = client.get("/_admin/requests").json()
    shown = [
        (r["method"], r["route"], r["path"], r["query"], r["status"], r["trace_id"])
        for r in everything
    ]
    assert shown == [
        ("GET", "/items/{id}", "/items/1", "", 200, TRACE),
        ("GET", "/items/{id}", "/items/2", "full=1", 200, None),
        ("GET", "/items/{id}", "/items/3", "", 200, None),
    ]
    assert [r["traceparent"] for r in everything] == [traced["traceparent"], None, "not w3c"]
    assert of_trace == everything[:1]
    # The newest kept; admin requests (the log's own reads) are not logged.
    assert [r["path"] for r in rolled] == ["/items/2", "/items/3", "/items/4"]
    stats.reset()
    assert stats.requests() == []
