"""Identifiers: the safe alphabet every id and name uses, and UUIDv7s for what comes without
an id; one definition of each, shared with the client (agentstore.client.ids)."""

from __future__ import annotations

from agentstore.client.ids import SAFE_ID_PATTERN, new_uuid7

__all__ = ["SAFE_ID_PATTERN", "new_uuid7"]
