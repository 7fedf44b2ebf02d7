"""Limits on what a request may carry. Configurable (see config.py); passed to validation as
pydantic context so the models stay free of global state."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_EVENT_BYTES", "MAX_JSON_DEPTH", "RESPONSE_BUDGET_BYTES", "Limits"]

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


class Limits(BaseModel):
    """Upper bounds applied to every request."""

    model_config = ConfigDict(frozen=True)

    max_id_length: int = Field(default=128, ge=1, le=1024)
    max_metadata_bytes: int = Field(default=256 * KIB, ge=1)
    max_state_bytes: int = Field(default=256 * KIB, ge=1)
    max_event_bytes: int = Field(default=1 * MIB, ge=1, le=MAX_EVENT_BYTES)
    max_events_per_message: int = Field(default=1000, ge=1)
    max_message_bytes: int = Field(default=16 * MIB, ge=1)
