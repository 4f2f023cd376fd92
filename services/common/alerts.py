"""Alerts: one JSON POST to a webhook when a tenant's condition starts, none while it
lasts, and a new one only after it has cleared and come back.

The body is Slack-compatible (``text``) and carries ``tenant``, ``condition``,
``reason`` and ``service`` for other receivers. Known secret values are masked from
the reason before it leaves, whatever produced it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from services.product import NAME

log = logging.getLogger(__name__)

MASK = "***"


class Alerter:
    """Sends alerts to ``url`` (None: alerts are only logged)."""

    def __init__(
        self,
        url: str | None,
        service: str,
        secrets: Iterable[str] = (),
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.service = service
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._timeout = timeout_s
        self._active: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.sent = 0

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def fire(self, tenant: str, condition: str, reason: str) -> bool:
        """Alert once for (tenant, condition) until it is cleared; True if sent now."""
        with self._lock:
            if (tenant, condition) in self._active:
                return False
            self._active.add((tenant, condition))
        reason = self.mask(reason)
        log.warning(
            "alert: tenant %s: %s: %s",
            tenant,
            condition,
            reason,
            extra={"tenant": tenant, "condition": condition},
        )
        if self.url is None:
            return False
        return self._post(self.body(tenant, condition, reason))

    def clear(self, tenant: str, condition: str) -> None:
        """The condition is over: the next `fire` for it alerts again."""
        with self._lock:
            was_active = (tenant, condition) in self._active
            self._active.discard((tenant, condition))
        if was_active:
            log.info(
                "alert cleared: tenant %s: %s",
                tenant,
                condition,
                extra={"tenant": tenant, "condition": condition},
            )

    def body(self, tenant: str, condition: str, reason: str) -> dict[str, Any]:
        return {
            "text": f":rotating_light: {NAME} {self.service}: tenant *{tenant}* "
            f"{condition}: {reason}",
            "tenant": tenant,
            "condition": condition,
            "reason": reason,
            "service": self.service,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _post(self, body: dict[str, Any]) -> bool:
        assert self.url is not None  # noqa: S101 - checked by the caller
        try:
            answer = httpx.post(self.url, json=body, timeout=self._timeout)
        except httpx.HTTPError as exc:
            log.warning("alert not delivered to the webhook: %s", type(exc).__name__)
            return False
        if answer.is_error:
            log.warning("alert not accepted by the webhook: HTTP %d", answer.status_code)
            return False
        self.sent += 1
        return True
