"""The HTTP retry policy: which failures are worth retrying, decided in one place.

Retriable: transport errors, 408, 409, 429 and 5xx but 501 (honouring `Retry-After`,
in seconds or as an HTTP date, capped). Everything else is permanent (401 is the
adapters' business: they log in again). tenacity decorates only the I/O call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from services.common.errors import RetriableError

T = TypeVar("T")

MAX_RETRY_AFTER_S = 300.0
MAX_IN_PLACE_WAIT_S = 10.0


def is_retriable_status(status: int) -> bool:
    return status in (408, 409, 429) or (500 <= status <= 599 and status != 501)


class TransientHTTPError(RetriableError):
    """A retriable HTTP answer or transport failure; `retry_after` when the server said."""

    error_class = "target_unavailable"


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def raise_for_transient(response: httpx.Response, what: str) -> None:
    """Raise TransientHTTPError if `response` is worth retrying."""
    if is_retriable_status(response.status_code):
        raise TransientHTTPError(
            f"{what}: HTTP {response.status_code}", retry_after=retry_after_seconds(response)
        )


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RetriableError) and exc.retry_after is not None:
        return exc.retry_after
    # Exponential backoff with full jitter: 0.2 s, 0.4 s, ... capped at 10 s.
    return random.uniform(0, min(10.0, 0.2 * 2 ** (state.attempt_number - 1)))  # noqa: S311


def _is_transient(exc: BaseException, max_wait_s: float = MAX_IN_PLACE_WAIT_S) -> bool:
    # Only passing, short faults of the call itself are retried in place. Other
    # RetriableErrors (refused credentials) and long Retry-Afters go straight up, to wait
    # at the run loop's pace instead of holding a batch (and its partitions) here.
    if isinstance(exc, TransientHTTPError):
        return exc.retry_after is None or exc.retry_after <= max_wait_s
    return isinstance(exc, httpx.TransportError)


def with_retries(
    attempts: int = 5,
    max_delay_s: float = 30.0,
    max_in_place_wait_s: float = MAX_IN_PLACE_WAIT_S,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry a call on transient failures, at most `attempts` times and `max_delay_s`
    seconds in all, then re-raise the last failure. A `Retry-After` longer than
    `max_in_place_wait_s` is not waited for here: the failure goes up at once."""
    decorator: Callable[[Callable[..., T]], Callable[..., T]] = retry(
        retry=retry_if_exception(lambda exc: _is_transient(exc, max_in_place_wait_s)),
        wait=_wait,
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay_s),
        reraise=True,
    )
    return decorator


def as_retriable(exc: httpx.TransportError, what: str) -> TransientHTTPError:
    return TransientHTTPError(f"{what}: {type(exc).__name__}")
