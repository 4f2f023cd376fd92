"""Secrets by reference: a config names where a secret is (`{env: VAR}` or
`{file: path}`), never the secret itself; resolved into a `SecretStr`, so a repr, a log
line or an error shows `**********`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, model_validator


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


class Secret(BaseModel):
    """A resolved secret: validated from a `SecretRef` in the file."""

    model_config = ConfigDict(frozen=True)

    value: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and isinstance(data.get("value"), SecretStr):
            return data  # built by code, not read from a file
        if isinstance(data, dict):
            base_dir = (info.context or {}).get("base_dir")
            return {"value": SecretRef.model_validate(data).resolve(base_dir)}
        if isinstance(data, str):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a field error
                "write a reference ({env: VAR} or {file: path}), not the secret"
            )
        return data

    def get(self) -> str:
        return self.value.get_secret_value()
