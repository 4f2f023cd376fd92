"""The request statistics middleware shared by the simulators."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.stats import RequestStats, StatsMiddleware, stats_middleware


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
