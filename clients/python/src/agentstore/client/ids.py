"""Identifiers: the alphabet every id and name uses, and UUIDv7s, made by the client for events
before an append is first sent (so that resending it is safe) and by the server for sessions
and events given without an id. The server takes both from here."""

from __future__ import annotations

import os
import re
import time
import uuid

__all__ = ["DEFAULT_MAX_ID_LENGTH", "SAFE_ID_PATTERN", "new_uuid7"]

# Ids travel in URLs, logs and file names of other systems: keep them to a boring alphabet.
SAFE_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@+\-]+")
# The longest id a server takes unless configured otherwise (--max-id-length).
DEFAULT_MAX_ID_LENGTH = 128


def new_uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by
    creation time and index well."""
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
