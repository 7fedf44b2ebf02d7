"""The client's objects as JSON values, with the proto's field names: what `agentstore --json`
prints, one object per line. Times are RFC 3339 strings in UTC, enums their lower-case names,
empty optional parts left out."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any

__all__ = ["plain", "time_text"]


def time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """A JSON value of a client object (a dataclass of agentstore.client.types), recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        result = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if item is None:
                continue
            result[field.name] = plain(item)
        return result
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
