"""`target:` of a tenant as a type for the tenants file: the registered targets' settings
models, chosen by `type`, validated when the file loads.

Files of the first release wrote the credentials at the top of `target` (`username`,
`password`, `auth_scheme`): they still load, read as `auth: {type: login, ...}`, with a
warning saying how to write them now; their errors name the fields as they wrote them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails

from services.targets import TARGETS
from services.targets.base import TargetSettings
from services.targets.tagged import relocated, tagged_union

log = logging.getLogger(__name__)

# Old top-level field -> its place under `auth` (type login).
OLD_AUTH_FIELDS = {"username": "username", "password": "password", "auth_scheme": "scheme"}
_warned: set[str] = set()


def old_shape(value: Any) -> dict[str, Any] | None:
    """`value` in today's shape, if it is a target of the first release's; else None."""
    if not isinstance(value, dict) or "auth" in value:
        return None
    old = {k: v for k, v in value.items() if k in OLD_AUTH_FIELDS}
    if not old:
        return None
    auth = {"type": "login", **{OLD_AUTH_FIELDS[k]: v for k, v in old.items()}}
    return {**{k: v for k, v in value.items() if k not in OLD_AUTH_FIELDS}, "auth": auth}


def _translated(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    new = old_shape(value)
    if new is None:
        return handler(value)
    where = str(value.get("base_url", "?"))
    if where not in _warned:
        _warned.add(where)
        log.warning(
            "target at %s: %s at the top of `target` is the old shape, read as "
            "`auth: {type: login, username, password, scheme}`; move them under `auth:` "
            "(README.md, Tenants)",
            where,
            "/".join(k for k in OLD_AUTH_FIELDS if k in value),
        )
    try:
        return handler(new)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(
            exc.title, [_as_written(error) for error in exc.errors()]
        ) from None


def _as_written(error: Any) -> InitErrorDetails:
    """An error on a translated field, located where the old file has it."""
    loc = tuple(error["loc"])
    back = {v: k for k, v in OLD_AUTH_FIELDS.items()}
    if len(loc) >= 2 and loc[0] == "auth" and loc[1] in back:
        loc = (back[str(loc[1])], *loc[2:])
    elif loc == ("auth",):
        loc = ("username",)
    return relocated(error, loc)


if TYPE_CHECKING:
    TargetConfig = TargetSettings
else:
    TargetConfig = Annotated[
        tagged_union({name: p.settings for name, p in TARGETS.items()}, "target"),
        WrapValidator(_translated),
    ]


def parse_target(data: Any, base_dir: Path | None = None) -> TargetSettings:
    """One `target:` read on its own (tools, tests); secret files relative to
    `base_dir`. Raises pydantic's ValidationError."""
    settings: TargetSettings = _ADAPTER.validate_python(data, context={"base_dir": base_dir})
    return settings


_ADAPTER: TypeAdapter[TargetSettings] = TypeAdapter(TargetConfig)
