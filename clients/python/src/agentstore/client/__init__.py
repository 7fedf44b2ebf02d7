"""The Python client of agentstore.

    from agentstore.client import AsyncClient

    async with AsyncClient("127.0.0.1:50051", api_key=key) as client:
        session = await client.create_session("support-bot", user_id="u-42")
        await client.append(session.id, {"type": "message",
                                         "content": {"role": "user", "text": "hello"}})
        async for event in client.follow(session_id=session.id):
            print(event.seq, event.content.text if event.content else event.type)

`Client` is the synchronous twin with the same methods. Errors are the exceptions of
`agentstore.client.errors`; values are the objects of `agentstore.client.types`."""

from agentstore.client.async_client import AppendWriter, AsyncClient
from agentstore.client.connection import TLS
from agentstore.client.errors import (
    AgentstoreError,
    AlreadyExists,
    Cancelled,
    Conflict,
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
)
from agentstore.client.sync_client import Client
from agentstore.client.types import (
    AppendResult,
    Content,
    Event,
    EventActions,
    RemovalResult,
    ScopedState,
    SearchHit,
    Session,
    SessionStats,
    SessionStatus,
    SessionView,
    StoreStats,
)

__all__ = [
    "TLS",
    "AgentstoreError",
    "AlreadyExists",
    "AppendResult",
    "AppendWriter",
    "AsyncClient",
    "Cancelled",
    "Client",
    "Conflict",
    "Content",
    "DeadlineExceeded",
    "Event",
    "EventActions",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RemovalResult",
    "ResourceExhausted",
    "ScopedState",
    "SearchHit",
    "ServerError",
    "Session",
    "SessionStats",
    "SessionStatus",
    "SessionView",
    "StoreStats",
    "Unauthenticated",
    "Unavailable",
]
