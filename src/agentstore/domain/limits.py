"""Limits on what a request may carry. Configurable (see config.py); passed to validation as
pydantic context so the models stay free of global state."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agentstore.client.ids import DEFAULT_MAX_ID_LENGTH

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_EVENT_BYTES",
    "MAX_JSON_DEPTH",
    "RESPONSE_BUDGET_BYTES",
    "Count",
    "DocumentBytes",
    "EventBytes",
    "IdLength",
    "Limits",
]

KIB = 1024
MIB = 1024 * KIB
# How deep objects and lists may nest in state, metadata, data and state deltas. Not a setting:
# protobuf decoders refuse messages nested past 100 levels, and each JSON level takes up to
# three (Struct, map entry, Value); at 30, an event inside a SearchResponse still decodes.
MAX_JSON_DEPTH = 30
# Responses hold items while they stay within this (api/response_budget.py), well inside the
# 4 MiB a default gRPC client accepts; one larger item goes alone.
RESPONSE_BUDGET_BYTES = 3 * MIB
# The most max_event_bytes may be set to: an event read back (with the fields the server sets)
# must still fit in a response a default client accepts.
MAX_EVENT_BYTES = 3 * MIB


# The bounds of each limit, defined once: Limits and the settings that feed it share them.
IdLength = Annotated[int, Field(ge=1, le=1024)]
DocumentBytes = Annotated[int, Field(ge=1)]
EventBytes = Annotated[int, Field(ge=1, le=MAX_EVENT_BYTES)]
Count = Annotated[int, Field(ge=1)]


class Limits(BaseModel):
    """Upper bounds applied to every request. The defaults here are the server's defaults:
    config.Settings takes them from this class."""

    model_config = ConfigDict(frozen=True)

    max_id_length: IdLength = DEFAULT_MAX_ID_LENGTH
    max_metadata_bytes: DocumentBytes = 256 * KIB
    max_state_bytes: DocumentBytes = 256 * KIB
    max_event_bytes: EventBytes = 1 * MIB
    max_events_per_message: Count = 1000
    max_message_bytes: DocumentBytes = 16 * MIB


DEFAULT_LIMITS = Limits()
