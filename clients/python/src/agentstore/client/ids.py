"""UUIDv7 identifiers, made by the client for events before an append is first sent (so that
resending it is safe), and by the server for sessions and events given without an id."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_uuid7"]


def new_uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by
    creation time and index well."""
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
