"""Secrets by reference: a config names where a secret is (`{env: VAR}` or
`{file: path}`), never the secret itself; resolved into a `SecretStr`, so a repr, a log
line or an error shows `**********`.

A `Secret` is resolved when it is validated, unless the validation context names the
parts to resolve (`RESOLVE`) and the secret is in another part (`in_part` marks where
validation is): then it keeps its reference only. The tenants loader does this, so the
transformer never holds a target's password. Reading a secret that was never resolved
raises `UnresolvedSecret`, naming the reference, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from services.common.errors import FatalError

# Where a secret is inside a config: field names and indexes.
Location = tuple[str | int, ...]

# Validation context keys: where relative secret files are; the parts whose secrets are
# resolved (absent: all; empty: none); the part being validated (set by `in_part`).
BASE_DIR = "base_dir"
RESOLVE = "resolve_parts"
PART = "part"


class UnresolvedSecret(FatalError):
    """Code read a secret this process never resolved: a part it was not meant to use."""

    error_class = "unresolved_secret"


class SecretRef(BaseModel):
    """Where a secret comes from: an environment variable or a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, base_dir: Path | None = None) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None  # noqa: S101 - guaranteed by _one_source
        path = self.file if base_dir is None else base_dir / self.file
        try:
            return SecretStr(path.read_text().strip())
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None

    def __str__(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


class Secret(BaseModel):
    """A secret read from a `SecretRef` in a config (or built by code from a value)."""

    model_config = ConfigDict(frozen=True)

    ref: SecretRef | None = None
    _value: SecretStr | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _read(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if isinstance(data, Secret):
            return data
        if isinstance(data, dict) and isinstance(data.get("value"), SecretStr):
            built: Secret = handler({})  # built by code, not read from a file
            built._value = data["value"]
            return built
        if isinstance(data, str):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a field error
                "write a reference ({env: VAR} or {file: path}), not the secret"
            )
        if not isinstance(data, dict):
            return handler(data)
        context = info.context or {}
        secret: Secret = handler({"ref": SecretRef.model_validate(data)})
        secret._base_dir = context.get(BASE_DIR)
        if RESOLVE not in context or context.get(PART) in context[RESOLVE]:
            secret.resolve()
        return secret

    @property
    def resolved(self) -> bool:
        return self._value is not None

    def resolve(self) -> None:
        """Read the secret from its reference (once); ValueError says why it can't be."""
        if self._value is None and self.ref is not None:
            self._value = self.ref.resolve(self._base_dir)

    def get(self) -> str:
        if self._value is None:
            raise UnresolvedSecret(
                f"secret ({self.ref}) was not resolved: this process was not meant to use it"
            )
        return self._value.get_secret_value()


def secrets_in(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Secret]]:
    """Every `Secret` inside `value` (models, lists, dicts), with its location."""
    if isinstance(value, Secret):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_in(getattr(value, name), (*path, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secrets_in(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from secrets_in(item, (*path, index))


@contextmanager
def in_part(info: ValidationInfo, name: str) -> Iterator[None]:
    """Mark the secrets validated inside as `name`'s (see `RESOLVE`)."""
    context = info.context
    if not isinstance(context, dict):
        yield
        return
    outer = context.get(PART)
    context[PART] = name
    try:
        yield
    finally:
        context[PART] = outer
