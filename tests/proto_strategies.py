"""Hypothesis strategies for any request of the contract, built from the protos' descriptors.

Every field gets values a hostile or careless client could send: integers at their limits,
timestamps and durations inside and outside protobuf's ranges, unknown enum numbers, deep and
wide JSON, long and odd Unicode, garbage tokens, and ids of sessions that exist (so requests
reach past lookups). `raw_bytes` stands for what no protobuf encoder would send at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

__all__ = ["json_values", "raw_bytes", "requests_of"]

FieldDescriptor = descriptor.FieldDescriptor

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
EXTREME_INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63)]

# Printable, control, combining, right-to-left, CJK, emoji, NUL: anything UTF-8 can carry.
odd_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(
    ["", " ", "\x00", "nul\x00byte", "'; DROP TABLE sessions; --", "%s %(id)s {}", "数据库迁移",
     "ﾃｽﾄ", "\u202eevil", "e\u0301", "😀" * 50, "x" * 5000, "a" * 129, "../../etc/passwd"]
)  # fmt: skip
# What a well-behaved client sends, so that requests also get past validation.
plain_text = st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True)
garbage_tokens = st.sampled_from(
    ["", "=", "eyJwIjpbMV0sImYiOiIifQ", "MTIzLjQ1Ng", "OTk5OTk5OTk5OTk5OTk5OTk5OTkuMQ",
     "LTEuLTE", "e30", "bnVsbA", "W10"]
) | st.binary(max_size=40).map(lambda raw: raw.hex())  # fmt: skip


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """JSON values, some nested deep (past the 30-level limit) and some wide."""
    scalars = (
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**60), 2**60)
        | odd_text
    )
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
        max_leaves=max_leaves,
    )
    deep = st.integers(1, 60).map(_deep_object)
    wide = st.integers(1, 2000).map(lambda n: {f"k{i}": i for i in range(n)})
    return nested | deep | wide


def _deep_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else {"l": [value]}
    return value


def raw_bytes() -> st.SearchStrategy[bytes]:
    """Bytes no encoder of the request would make: bad UTF-8, truncations, noise."""
    return (
        st.binary(max_size=64)
        | st.sampled_from([b"\x0a\x02\xff\xfe", b"\x0a\x05ab", b"\xff\xff\xff", b"\x08"])
        | st.integers(1, 200).map(_nested_bytes)
    )


def _nested_bytes(depth: int) -> bytes:
    """A field 1 of length-delimited messages nested `depth` deep."""
    payload = b""
    for _ in range(depth):
        payload = b"\x0a" + _varint(len(payload)) + payload
    return payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def requests_of(
    message_descriptor: descriptor.Descriptor, known_ids: Sequence[str], known_apps: Sequence[str]
) -> st.SearchStrategy[Message]:
    """Instances of the request message described, with fields drawn as the module says."""
    return _message(message_descriptor, tuple(known_ids), tuple(known_apps), depth=0)


def _message(
    message_descriptor: descriptor.Descriptor,
    known_ids: tuple[str, ...],
    known_apps: tuple[str, ...],
    depth: int,
) -> st.SearchStrategy[Message]:
    full_name = message_descriptor.full_name
    if full_name == "google.protobuf.Struct":
        return json_values().filter(lambda v: isinstance(v, dict)).map(_struct) | st.just(
            _struct({})
        )
    if full_name == "google.protobuf.Timestamp":
        return _seconds_and_nanos(message_descriptor, 253_402_300_799)
    if full_name == "google.protobuf.Duration":
        return _seconds_and_nanos(message_descriptor, 315_576_000_000)
    message_class = message_factory.GetMessageClass(message_descriptor)
    fields = {
        field.name: _field(field, known_ids, known_apps, depth)
        for field in message_descriptor.fields
        if depth < 3 or field.message_type is None
    }
    optional = {name: strategy | st.none() for name, strategy in fields.items()}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(message_class, values)
    )


def _build(message_class: type[Message], values: dict[str, Any]) -> Message:
    message = message_class()
    for name, value in values.items():
        if value is None:
            continue
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(message, name)
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _field(
    field: FieldDescriptor,
    known_ids: tuple[str, ...],
    known_apps: tuple[str, ...],
    depth: int,
) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        single: st.SearchStrategy[Any] = _message(
            field.message_type, known_ids, known_apps, depth + 1
        )
    else:
        single = _scalar(field, known_ids, known_apps)
    if field.is_repeated:
        return st.lists(single, max_size=3)
    return single


def _scalar(
    field: FieldDescriptor, known_ids: tuple[str, ...], known_apps: tuple[str, ...]
) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 8)  # known values and numbers this server does not know
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return st.sampled_from(EXTREME_INTS[:5]) | st.integers(*INT32)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.sampled_from(EXTREME_INTS) | st.integers(*INT64) | st.integers(-2, 50)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats()
    if kind == FieldDescriptor.TYPE_STRING:
        name = field.name
        if name.endswith("token"):
            return garbage_tokens
        if name in {"session_id", "id"} and known_ids:
            return st.sampled_from(known_ids) | plain_text | odd_text
        if name == "app_name" and known_apps:
            return st.sampled_from(known_apps) | plain_text | odd_text
        return plain_text | odd_text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    raise NotImplementedError(f"no strategy for field {field.full_name} of type {kind}")


def _seconds_and_nanos(
    message_descriptor: descriptor.Descriptor, limit: int
) -> st.SearchStrategy[Message]:
    message_class = message_factory.GetMessageClass(message_descriptor)
    seconds = st.sampled_from([0, 1, -1, limit, limit + 1, -limit, 10**13, -(10**12)]) | (
        st.integers(*INT64)
    )
    nanos = st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000]) | st.integers(*INT32)
    return st.builds(lambda s, n: message_class(seconds=s, nanos=n), seconds, nanos)


def _struct(value: dict[str, Any]) -> Message:
    from google.protobuf import struct_pb2

    message = struct_pb2.Struct()
    _fill(message, value)
    return message


def _fill(message: Any, value: dict[str, Any]) -> None:
    for key, item in value.items():
        _set_value(message.fields[key], item)


def _set_value(target: Any, item: Any) -> None:
    if item is None:
        target.null_value = 0
    elif isinstance(item, bool):
        target.bool_value = item
    elif isinstance(item, int | float):
        target.number_value = float(item)
    elif isinstance(item, str):
        target.string_value = item
    elif isinstance(item, dict):
        target.struct_value.SetInParent()
        _fill(target.struct_value, item)
    else:
        target.list_value.SetInParent()
        for element in item:
            _set_value(target.list_value.values.add(), element)
