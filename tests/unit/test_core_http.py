"""The HTTP retry policy: which answers are transient, Retry-After, `with_retries`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from services.common.errors import RetriableError, SkippableError
from services.common.http import (
    MAX_RETRY_AFTER_S,
    TransientHTTPError,
    as_retriable,
    raise_for_transient,
    retry_after_seconds,
    with_retries,
)


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://t/x"))


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 507, 520, 524])
def test_transient_statuses_raise_a_retriable_error(status: int) -> None:
    with pytest.raises(TransientHTTPError) as caught:
        raise_for_transient(response(status), "Kong GET /inventory/skus/")

    assert isinstance(caught.value, RetriableError)
    assert caught.value.message == f"Kong GET /inventory/skus/: HTTP {status}"


@pytest.mark.parametrize("status", [200, 201, 204, 400, 401, 403, 404, 422, 501])
def test_other_statuses_are_left_to_the_caller(status: int) -> None:
    raise_for_transient(response(status), "x")  # no exception


def test_the_server_delay_travels_with_the_error() -> None:
    with pytest.raises(TransientHTTPError) as caught:
        raise_for_transient(response(429, **{"Retry-After": "7"}), "x")

    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None), ("", None)],
)
def test_retry_after_in_seconds(value: str, seconds: float | None) -> None:
    assert retry_after_seconds(response(503, **{"Retry-After": value})) == seconds


def test_no_retry_after_header_is_none() -> None:
    assert retry_after_seconds(response(503)) is None


def test_retry_after_as_an_http_date_is_honoured_and_capped() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    far = "Wed, 21 Oct 2099 07:28:00 GMT"

    assert 20 < (retry_after_seconds(response(503, **{"Retry-After": soon})) or 0) <= 30
    assert retry_after_seconds(response(503, **{"Retry-After": far})) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize("value", ["inf", "nan", "1e999"])
def test_a_retry_after_that_is_not_a_finite_number_is_ignored(value: str) -> None:
    assert retry_after_seconds(response(503, **{"Retry-After": value})) is None


def test_a_transport_error_becomes_retriable_without_details_of_the_request() -> None:
    error = as_retriable(httpx.ConnectError("refused to http://user:pw@host"), "Kong login")

    assert isinstance(error, RetriableError)
    assert error.message == "Kong login: ConnectError"


# -- with_retries ---------------------------------------------------------------------


def flaky(failures: list[BaseException], result: str = "done") -> Callable[[], str]:
    """A call that raises each of `failures` in turn, then returns `result`."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


def retried(
    monkeypatch: pytest.MonkeyPatch, fn: Callable[[], Any], attempts: int
) -> tuple[Callable[[], Any], list[float]]:
    """`fn` under `with_retries(attempts)`, its waits recorded instead of slept."""
    wrapped = with_retries(attempts)(fn)
    waits: list[float] = []
    monkeypatch.setattr(wrapped.retry, "sleep", waits.append)  # type: ignore[attr-defined]
    return wrapped, waits


@pytest.mark.parametrize(
    "transient",
    [
        TransientHTTPError("503", retry_after=0.0),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["http", "connect", "timeout"],
)
def test_transient_failures_are_retried_until_success(
    monkeypatch: pytest.MonkeyPatch, transient: BaseException
) -> None:
    call = flaky([transient, transient])
    wrapped, waits = retried(monkeypatch, call, attempts=5)

    assert wrapped() == "done"
    assert len(call.calls) == 3  # type: ignore[attr-defined]
    assert len(waits) == 2


@pytest.mark.parametrize(
    "permanent",
    [
        SkippableError("bad record"),
        RetriableError("credentials refused: wait at the loop's pace"),
        ValueError("bug"),
        KeyError("id"),
    ],
    ids=["skippable", "retriable-not-transient", "value", "key"],
)
def test_other_failures_are_not_retried(
    monkeypatch: pytest.MonkeyPatch, permanent: BaseException
) -> None:
    call = flaky([permanent])
    wrapped, waits = retried(monkeypatch, call, attempts=5)

    with pytest.raises(type(permanent)):
        wrapped()

    assert len(call.calls) == 1  # type: ignore[attr-defined]
    assert waits == []


def test_the_last_transient_failure_is_raised_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[BaseException] = [TransientHTTPError(f"try {n}") for n in range(1, 10)]
    call = flaky(errors)
    wrapped, _waits = retried(monkeypatch, call, attempts=4)

    with pytest.raises(TransientHTTPError, match="try 4"):
        wrapped()

    assert len(call.calls) == 4  # type: ignore[attr-defined]


def test_retry_after_is_honoured_and_backoff_grows_with_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[BaseException] = [
        TransientHTTPError("429", retry_after=7.0),
        TransientHTTPError("a"),
        TransientHTTPError("b"),
        TransientHTTPError("c"),
    ]
    wrapped, waits = retried(monkeypatch, flaky(errors), attempts=5)

    assert wrapped() == "done"

    assert waits[0] == 7.0
    for attempt, wait in enumerate(waits[1:], start=2):
        assert 0.0 <= wait <= min(10.0, 0.2 * 2 ** (attempt - 1))


def test_a_long_retry_after_is_left_to_the_run_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    call = flaky([TransientHTTPError("429", retry_after=60.0)])
    wrapped, waits = retried(monkeypatch, call, attempts=5)

    with pytest.raises(TransientHTTPError) as caught:
        wrapped()

    assert caught.value.retry_after == 60.0
    assert waits == []
