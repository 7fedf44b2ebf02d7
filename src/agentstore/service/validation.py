"""Turning raw request data into validated domain inputs, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from agentstore.domain.errors import FieldViolation, InvalidArgument
from agentstore.domain.events import NO_NUL
from agentstore.domain.limits import Limits
from agentstore.domain.sessions import Identifier

__all__ = ["field_path", "validate", "validate_identifier"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validate(model: type[ModelT], data: Mapping[str, Any], limits: Limits) -> ModelT:
    """`model` validated from `data` under `limits`; raises `InvalidArgument` listing every
    bad field by its request path (for example `events[3].event_id`)."""
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        violations = [
            FieldViolation(field_path(error["loc"]), _description(error))
            for error in exc.errors(include_url=False)
        ]
        raise InvalidArgument(violations) from exc


def _description(error: Any) -> str:
    if error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] == NO_NUL:
        return "must not contain the NUL character (U+0000): PostgreSQL cannot store it"
    message = str(error["msg"])
    # pydantic prefixes messages of custom validators with "Value error, ".
    return message.removeprefix("Value error, ")


def validate_identifier(field: str, value: str, limits: Limits) -> str:
    """`value` if it is a non-empty id of the safe alphabet; else `InvalidArgument` on `field`."""
    try:
        return _IDENTIFIER.validate_python(value, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidArgument.of(field, _description(exc.errors()[0])) from exc
