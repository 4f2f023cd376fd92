"""Unions of settings models chosen by a `type` field, whose errors name the fields as
the tenants file writes them.

pydantic puts the chosen tag in an error's location (`target.kong.settings.type_id`);
people wrote `target.settings.type_id`, so the tag is taken out again, and an unknown
`type` is reported at `type` with the known ones listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

UNKNOWN = "unknown_type"


def tag_of(default: str | None = None) -> Callable[[Any], str | None]:
    """The `type` of a value being validated (a dict from the file, or a model already
    built by code); `default` when a dict leaves it out."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            found = value.get("type", default)
            return found if isinstance(found, str) else None
        found = getattr(value, "type", None)
        return found if isinstance(found, str) else None

    return tag


def untagged(tag: Callable[[Any], str | None], known: Sequence[str], what: str) -> WrapValidator:
    """A validator that takes the union's tag out of error locations and names an
    unknown `type` with the known ones."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            chosen = tag(value)
            raise ValidationError.from_exception_data(
                exc.title, [_details(error, chosen, known, what) for error in exc.errors()]
            ) from None

    return WrapValidator(validate)


def _details(error: Any, chosen: str | None, known: Sequence[str], what: str) -> InitErrorDetails:
    loc = tuple(error["loc"])
    if error["type"] == UNKNOWN and not loc:  # this union's own: no such type
        given = f"{chosen!r}" if chosen is not None else "missing"
        return InitErrorDetails(
            type=_custom(f"{what} type {given} is not one of {', '.join(known)}"),
            loc=("type",),
            input=chosen,
        )
    if loc and loc[0] == chosen:
        loc = loc[1:]
    return relocated(error, loc)


def relocated(error: Any, loc: tuple[int | str, ...]) -> InitErrorDetails:
    """`error` (from `ValidationError.errors()`) at another location, to raise again."""
    kind = _custom(error["msg"]) if error["type"] == UNKNOWN else error["type"]
    details = InitErrorDetails(type=kind, loc=loc, input=error["input"])
    if "ctx" in error and error["type"] != UNKNOWN:
        details["ctx"] = error["ctx"]
    return details


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError(UNKNOWN, message.replace("{", "{{").replace("}", "}}"))


def tagged_union(models: dict[str, type[BaseModel]], what: str, default: str | None = None) -> Any:
    """`Annotated[Union[...], ...]` of `models` by their tag (`type`), for a field."""
    tag = tag_of(default)
    choices = tuple(Annotated[model, Tag(name)] for name, model in models.items())
    union: Any = Union[choices]  # noqa: UP007 - built at run time from a registry
    return Annotated[
        union,
        Discriminator(tag, custom_error_type=UNKNOWN, custom_error_message=f"unknown {what}"),
        untagged(tag, list(models), what),
    ]
