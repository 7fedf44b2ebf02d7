"""Between protobuf messages and plain Python values: Structs and dicts, Timestamps and aware
datetimes, Durations and timedeltas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

__all__ = [
    "dict_from_struct",
    "duration_from_timedelta",
    "object_in_struct",
    "struct_from_dict",
    "time_from_timestamp",
    "timestamp_from_time",
    "value_from_proto",
]

# Struct numbers are doubles; a whole number within this bound comes back as an int, as it
# went in (beyond it a double cannot tell neighbouring integers apart anyway).
_EXACT_INTEGERS = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def value_from_proto(value: struct_pb2.Value) -> Any:
    """A Struct Value as the JSON-like Python value it holds."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < _EXACT_INTEGERS:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return dict_from_struct(value.struct_value)
    if kind == "list_value":
        return [value_from_proto(item) for item in value.list_value.values]
    return None


def dict_from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    fields = struct.fields
    # By key: the map's items() goes through a generic Mapping view, a third slower.
    return {key: value_from_proto(fields[key]) for key in fields}


def object_in_struct(struct: struct_pb2.Struct, key: str) -> dict[str, Any] | None:
    """The object at `key` of a Struct, converted alone; None when the key is missing or
    holds anything but an object."""
    value = struct.fields.get(key)
    if value is None or value.WhichOneof("kind") != "struct_value":
        return None
    return dict_from_struct(value.struct_value)


def struct_from_dict(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """A Struct of a JSON-like mapping. Raises `TypeError` for a value JSON cannot hold."""
    struct = struct_pb2.Struct()
    try:
        struct.update(values)
    except ValueError as exc:
        raise TypeError(f"not a JSON-like value: {exc}") from None
    return struct


def time_from_timestamp(timestamp: timestamp_pb2.Timestamp) -> datetime:
    # What Timestamp.ToDatetime(tzinfo=UTC) gives (nanos are never negative, so // rounds
    # toward zero as it does), in half its time: every event read converts one.
    return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)


def timestamp_from_time(moment: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp of an aware datetime. Raises `ValueError` for a naive one: which zone it
    meant cannot be known."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is needed, not {moment!r}")
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


def duration_from_timedelta(delta: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(delta)
    return duration
