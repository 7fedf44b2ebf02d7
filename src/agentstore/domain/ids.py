"""Identifiers: the safe alphabet every id and name uses, and UUIDv7s for what comes without
an id (made the same way the client makes event ids)."""

from __future__ import annotations

import re

from agentstore.client.ids import new_uuid7

__all__ = ["SAFE_ID_PATTERN", "new_uuid7"]

# Ids travel in URLs, logs and file names of other systems: keep them to a boring alphabet.
SAFE_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@+\-]+")
