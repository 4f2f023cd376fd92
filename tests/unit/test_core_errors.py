"""The error taxonomy: what each kind carries and how ConfigError reports its problems."""

from __future__ import annotations

import pytest

from services.common.errors import (
    ConfigError,
    FatalError,
    RetriableError,
    SkippableError,
    SyncError,
)


def test_config_error_keeps_every_problem_and_lists_them() -> None:
    problems = ["tenant a: siesa.company: missing", "tenant b: target.type: unknown"]

    error = ConfigError(problems)

    assert error.problems == problems
    text = str(error)
    assert text.startswith("2 configuration problems:")
    assert all(f"  - {p}" in text for p in problems)
    assert error.message == "; ".join(problems)


def test_config_error_with_one_problem_is_just_that_problem() -> None:
    error = ConfigError("tenant a: id: defined twice")

    assert error.problems == ["tenant a: id: defined twice"]
    assert str(error) == "tenant a: id: defined twice"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConfigError("x"), "config"),
        (RetriableError("x"), "retriable"),
        (SkippableError("x"), "skippable"),
        (FatalError("x"), "fatal"),
    ],
)
def test_every_kind_is_a_siesa_sync_error_with_its_class(error: SyncError, kind: str) -> None:
    assert isinstance(error, SyncError)
    assert error.error_class == kind


def test_skippable_error_can_name_a_finer_class_without_changing_the_default() -> None:
    specific = SkippableError("bad row", tenant="acme", error_class="invalid_row")

    assert specific.error_class == "invalid_row"
    assert specific.tenant == "acme"
    assert SkippableError("other").error_class == "skippable"


def test_retriable_error_carries_the_server_delay() -> None:
    error = RetriableError("busy", tenant="acme", retry_after=2.5)

    assert (error.retry_after, error.tenant, error.message) == (2.5, "acme", "busy")
    assert RetriableError("busy").retry_after is None
