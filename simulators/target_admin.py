"""What the target simulators (Kong, WMS) share: the password check, the admin
endpoints stats and reset, and the ``stored_since`` filter of their admin listings."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulators.faults import Faults
from simulators.stats import RequestStats

STORED_AT = "_stored_at"


def stored_since(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``items`` stored (created or updated) at or after ``?stored_since=<time.time()>``;
    all of them without the parameter; None if it is not a number. A benchmark polling
    what changed among a large store fetches only that, not the whole store."""
    raw = request.query_params.get("stored_since")
    if raw is None:
        return items
    try:
        since = float(raw)
    except ValueError:
        return None
    return [item for item in items if item[STORED_AT] >= since]


BAD_STORED_SINCE = {"error": "stored_since must be a number (seconds since the epoch)"}


class Store(Protocol):
    def __len__(self) -> int: ...

    def clear(self) -> None: ...


class TargetAdmin:
    """Mixed into a target simulator that has ``_users``, ``stats``, ``faults``, ``_tokens`` and a
    store named by ``store_name`` (its attribute, and its count's key in the stats)."""

    store_name: str
    _users: dict[str, str]
    stats: RequestStats
    faults: Faults
    _tokens: dict[str, Any]

    def _password_ok(self, username: object, password: object) -> bool:
        """Whether ``username`` is a user and ``password`` is theirs (constant time)."""
        expected = self._users.get(username) if isinstance(username, str) else None
        return (
            expected is not None
            and isinstance(password, str)
            and secrets.compare_digest(password.encode(), expected.encode())
        )

    @property
    def _store(self) -> Store:
        store: Store = getattr(self, self.store_name)
        return store

    async def admin_stats(self, request: Request) -> Response:
        """``GET /_admin/stats``: request stats plus stored items and issued tokens."""
        return JSONResponse(
            {
                **self.stats.snapshot(),
                self.store_name: len(self._store),
                "tokens": len(self._tokens),
            }
        )

    async def admin_reset(self, request: Request) -> Response:
        """``POST /_admin/reset``: forget the store, tokens, stats and faults; users stay."""
        self._store.clear()
        self._tokens.clear()
        self.faults.set(self.faults.settings_class())
        self.stats.reset()
        return JSONResponse({"reset": True})
