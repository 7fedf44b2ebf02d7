"""Typed access to an event's `data` for Python clients (the stubs give a bare Struct):

    from agentstore.typed_data import get_typed_data
    data = get_typed_data(event)          # LLMStreamData for an `llm_stream` event
    print(data.delta)

Well-known types give their pydantic model (see `agentstore.domain.event_data`), validated as
the server validated them on append; any other type gives the data as a plain dict."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from agentstore.domain.event_data import WELL_KNOWN_TYPES, EventData
from agentstore.v1 import event_pb2

__all__ = ["WELL_KNOWN_TYPES", "get_typed_data"]


def get_typed_data(event: event_pb2.Event) -> EventData | dict[str, Any]:
    """The event's `data` as its type's model, or as a dict for other types.

    Raises `pydantic.ValidationError` if a well-known type's data does not fit its model
    (which the server never stores)."""
    # Only the stubs and pydantic: a client importing this does not load the server.
    data = json_format.MessageToDict(event.data)
    model = WELL_KNOWN_TYPES.get(event.type)
    return model.model_validate(data) if model is not None else data
