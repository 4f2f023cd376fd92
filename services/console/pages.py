"""The console's pages and actions. Reads go through ConsoleData (services/ops/ under
it); actions through services/ops/actions.py, exactly as the CLI's, so each is audited
and a redrive keeps its guarantees (each dead letter once, the loop guard)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.common.errors import SyncError
from services.console import charts
from services.console.auth import Guard
from services.console.data import ConsoleData
from services.console.render import render
from services.console.sampler import Freshness
from services.ops import actions
from services.ops.audit import Actor
from services.ops.dlq import Filters, dead_letters
from services.ops.replay import STAGE_INPUTS
from services.ops.times import parse_time

TENANT_ACTIONS = ("resync", "pause", "resume", "replay")
DLQ_SHOWN = 500


def _data(request: Request) -> ConsoleData:
    data: ConsoleData = request.app.state.data
    return data


def _guard(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


def _render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    return render(request, template, context, status)


def _time(text: str | None, what: str) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise HTTPException(400, f"{what}: {exc}") from None


# -- pages ------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    _guard(request).viewer(request)
    data = _data(request)
    rows = await run_in_threadpool(data.rows)
    recent = await run_in_threadpool(data.audit, None, 10)
    unreachable = data.sampler.unreachable()
    context = {"rows": rows, "audit": recent, "unreachable": unreachable}
    return _render(request, "overview.html", context)


async def overview_fragment(request: Request) -> Response:
    _guard(request).viewer(request)
    rows = await run_in_threadpool(_data(request).rows)
    return _render(request, "_tenants.html", {"rows": rows})


def _charts(data: ConsoleData, tenant: str) -> dict[str, Any]:
    activity = data.activity()
    labels = [
        (activity.since + timedelta(minutes=i)).strftime("%H:%M") for i in range(activity.minutes)
    ]
    throughput = charts.line_chart(
        "records per minute, last hour",
        [
            charts.Series(name, activity.per_minute(name, tenant))
            for name in ("extracted", "transformed", "dead_lettered")
        ],
        labels,
    )
    # Freshness per interval of ~1 minute, on the same minute axis as the throughput.
    slots: list[Freshness | None] = [None] * activity.minutes
    points = data.sampler.series(tenant, step_s=60.0)
    for at, interval in points:
        minute = int((at - activity.since.timestamp()) // 60)
        if 0 <= minute < activity.minutes:
            slots[minute] = interval
    freshness = charts.line_chart(
        "freshness (change seen -> confirmed by the target), seconds",
        [
            charts.Series("p50", [f.p50 if f else None for f in slots]),
            charts.Series("p99", [f.p99 if f else None for f in slots]),
        ],
        labels,
        unit="s",
    )
    confirmed = charts.line_chart(
        "changes confirmed by the target per minute",
        [charts.Series("confirmed", [float(f.confirmed) if f else None for f in slots])],
        labels,
    )
    return {
        "throughput": throughput,
        "freshness_chart": freshness,
        "confirmed_chart": confirmed,
        "freshness_points": len(points),
        "syncs": activity.recent_syncs(tenant),
    }


async def tenant_page(request: Request) -> Response:
    _guard(request).viewer(request)
    tenant = request.path_params["tenant"]
    data = _data(request)
    row = await run_in_threadpool(data.row, tenant)
    config = await run_in_threadpool(data.tenant_config, tenant)
    if row is None and config is None:
        raise HTTPException(404, f"no tenant {tenant!r}")
    mapping = (config or {}).get("mapping", "siesa-items")
    context = {
        "tenant": tenant,
        "row": row,
        "config": json.dumps(config, indent=2, ensure_ascii=False, default=str),
        "target": (config or {}).get("target", {}),
        "mapping_name": mapping,
        "mapping": await run_in_threadpool(data.mapping_text, str(mapping)),
        "audit": await run_in_threadpool(data.audit, tenant, 20),
        "stages": sorted(STAGE_INPUTS),
        **await run_in_threadpool(_charts, data, tenant),
    }
    return _render(request, "tenant.html", context)


async def confirm_action(request: Request) -> Response:
    user = _guard(request).viewer(request)
    tenant, action = request.path_params["tenant"], request.path_params["action"]
    if action not in TENANT_ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    params = dict(request.query_params)
    if action == "replay":
        _replay_window(params)
    context = {
        "tenant": tenant,
        "action": action,
        "params": params,
        "may_act": user.may("operator"),
    }
    return _render(request, "confirm.html", context)


def _replay_window(form: dict[str, Any] | FormData) -> tuple[str, datetime, datetime | None]:
    stage = str(form.get("stage", ""))
    if stage not in STAGE_INPUTS:
        raise HTTPException(400, f"stage: one of {', '.join(sorted(STAGE_INPUTS))}")
    since = _time(str(form.get("from", "")), "from")
    if since is None:
        raise HTTPException(400, "from: required (ISO time or an age such as 2h)")
    until = _time(str(form.get("to", "")), "to")
    if until is not None and until <= since:
        raise HTTPException(400, "to: must be after from")
    return stage, since, until


async def act(request: Request) -> Response:
    user, form = await _guard(request).action(request)
    tenant, action = request.path_params["tenant"], request.path_params["action"]
    if action not in TENANT_ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    data = _data(request)
    if await run_in_threadpool(data.tenant_config, tenant) is None:
        raise HTTPException(404, f"no tenant {tenant!r} configured")
    actor = Actor(user.name, "console")
    try:
        if action == "replay":
            stage, since, until = _replay_window(form)
            report = await run_in_threadpool(
                actions.replay, data.kafka, tenant, stage, since, until, actor
            )
            s = report.summary()
            message = (
                f"replay {s['replay_id']}: {s['replayed']} products of {tenant} sent to {stage} "
                f"({s['in_window']} records in the window; {s['newer_after_window']} skipped "
                "as changed since)"
            )
        else:
            await run_in_threadpool(actions.command, data.kafka, tenant, action, actor)
            message = f"{action} requested for tenant {tenant}"
    except SyncError as exc:
        raise HTTPException(502, f"{action} failed: {exc.message}") from None
    data.changed()
    return _render(request, "result.html", {"message": message, "back": f"/tenants/{tenant}"})


# -- dead letters -----------------------------------------------------------------------


def _filters(source: Any, with_selection: bool = False) -> Filters:
    only = None
    if with_selection:
        only = frozenset(str(v) for v in source.getlist("only"))
        if not only:
            raise HTTPException(400, "select at least one dead letter")
    return Filters(
        tenant=source.get("tenant") or None,
        error_class=source.get("error_class") or None,
        since=_time(source.get("since"), "since"),
        stage=source.get("stage") or None,
        until=_time(source.get("until"), "until"),
        only=only,
    )


FILTER_FIELDS = ("tenant", "error_class", "stage", "since", "until")


async def dlq_page(request: Request) -> Response:
    _guard(request).viewer(request)
    query = request.query_params
    filters = _filters(query)
    data = _data(request)
    letters = await run_in_threadpool(dead_letters, data.kafka, filters)
    context = {
        "letters": letters[-DLQ_SHOWN:],
        "total": len(letters),
        "shown": DLQ_SHOWN,
        "filters": {f: query.get(f, "") for f in FILTER_FIELDS},
    }
    return _render(request, "dlq.html", context)


async def dlq_letter(request: Request) -> Response:
    _guard(request).viewer(request)
    partition, offset = request.path_params["partition"], request.path_params["offset"]
    data = _data(request)
    found = await run_in_threadpool(
        dead_letters, data.kafka, Filters(only=frozenset({f"{partition}/{offset}"}))
    )
    if not found:
        raise HTTPException(404, f"no dead letter at {partition}/{offset}")
    view = found[0].view(data.serde)
    context = {
        "letter": found[0],
        "view": view,
        "payload": json.dumps(view.get("value"), indent=2, ensure_ascii=False),
    }
    return _render(request, "letter.html", context)


async def dlq_preview(request: Request) -> Response:
    user, form = await _guard(request).action(request)
    selected = form.get("scope") == "selected"
    filters = _filters(form, with_selection=selected)
    data = _data(request)
    report = await run_in_threadpool(
        actions.redrive, data.kafka, filters, Actor(user.name, "console"), dry_run=True
    )
    context = {
        "report": report.summary(),
        "sending": [d.view(data.serde) for d in report.sent[:DLQ_SHOWN]],
        "filters": {f: form.get(f, "") for f in FILTER_FIELDS},
        "only": sorted(filters.only) if filters.only is not None else [],
        "scope": "selected" if selected else "all",
    }
    return _render(request, "dlq_preview.html", context)


async def dlq_redrive(request: Request) -> Response:
    user, form = await _guard(request).action(request)
    selected = form.get("scope") == "selected"
    filters = _filters(form, with_selection=selected)
    data = _data(request)
    try:
        report = await run_in_threadpool(
            actions.redrive, data.kafka, filters, Actor(user.name, "console")
        )
    except SyncError as exc:
        raise HTTPException(502, f"redrive failed: {exc.message}") from None
    s = report.summary()
    data.changed()
    message = (
        f"sent {s['sent']}; skipped: {s['already_redriven']} already redriven, "
        f"{s['at_max_attempts']} at max attempts, {s['superseded']} superseded by a newer "
        f"version, {s['not_redrivable']} not redrivable"
    )
    return _render(request, "result.html", {"message": message, "back": "/dlq"})


async def audit_page(request: Request) -> Response:
    _guard(request).viewer(request)
    tenant = request.query_params.get("tenant") or None
    entries = await run_in_threadpool(_data(request).audit, tenant, 200)
    return _render(request, "audit.html", {"entries": entries, "tenant": tenant or ""})


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview),
        Route("/fragments/overview", overview_fragment),
        Route("/tenants/{tenant}", tenant_page),
        Route("/tenants/{tenant}/confirm/{action}", confirm_action),
        Route("/tenants/{tenant}/actions/{action}", act, methods=["POST"]),
        Route("/dlq", dlq_page),
        Route("/dlq/preview", dlq_preview, methods=["POST"]),
        Route("/dlq/redrive", dlq_redrive, methods=["POST"]),
        Route("/dlq/{partition:int}/{offset:int}", dlq_letter),
        Route("/audit", audit_page),
    ]
