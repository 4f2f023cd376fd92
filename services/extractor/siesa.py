"""The Siesa "consultas estándar" client (external-apis.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx

from services.common.errors import SiesaSyncError
from services.common.http import as_retriable, raise_for_transient, with_retries
from services.common.tenants import SiesaSource

log = logging.getLogger(__name__)

Row = dict[str, Any]


class SiesaError(SiesaSyncError):
    """Siesa answered with an error (not worth an immediate retry); the next poll tries again."""

    error_class = "siesa_error"


class SiesaAuthError(SiesaError):
    error_class = "siesa_auth"


class SiesaClient:
    def __init__(self, source: SiesaSource, *, tenant: str) -> None:
        self.source = source
        self.tenant = tenant
        self._http = httpx.Client(
            base_url=source.base_url.rstrip("/"),
            timeout=source.timeout_s,
            headers={
                "ConniKey": source.conni_key.get(),
                "ConniToken": source.conni_token.get(),
            },
        )

    def close(self) -> None:
        self._http.close()

    @with_retries(attempts=5)
    def page(self, number: int) -> list[Row]:
        """Rows of page `number` (from 1); the last page is the short or empty one."""
        params = {
            "idCompania": str(self.source.company),
            "descripcion": self.source.consulta,
            "paginacion": f"numPag={number}|tamPag={self.source.page_size}",
        }
        what = f"tenant {self.tenant}: Siesa page {number}"
        try:
            response = self._http.get("/ejecutarconsultaestandar", params=params)
        except httpx.TransportError as exc:
            raise as_retriable(exc, what) from None
        if response.status_code == 401:
            raise SiesaAuthError(
                f"{what}: HTTP 401: ConniKey/ConniToken refused", tenant=self.tenant
            )
        raise_for_transient(response, what)
        if response.status_code != 200:
            raise SiesaError(f"{what}: HTTP {response.status_code}", tenant=self.tenant)
        try:
            body = response.json()
        except ValueError:
            raise SiesaError(f"{what}: the answer is not JSON", tenant=self.tenant) from None
        if not isinstance(body, dict) or body.get("codigo") != 0:
            message = body.get("mensaje") if isinstance(body, dict) else None
            code = body.get("codigo") if isinstance(body, dict) else None
            raise SiesaError(f"{what}: codigo {code}: {message}", tenant=self.tenant)
        detalle = body.get("detalle") or {}
        rows = (detalle.get("Table") or []) if isinstance(detalle, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SiesaError(f"{what}: detalle.Table is not a list of rows", tenant=self.tenant)
        return rows

    def scan(self) -> Iterator[list[Row]]:
        """Every page of the consulta, in order, until the short (or empty) one."""
        number = 1
        while True:
            rows = self.page(number)
            yield rows
            if len(rows) < self.source.page_size:
                return
            number += 1
