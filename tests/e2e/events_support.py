"""Builders for event tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def event(
    text: str = "hello",
    *,
    type: str = "note",
    event_id: str = "",
    author: str = "agent",
    role: str = "assistant",
    data: dict[str, Any] | None = None,
    state_delta: dict[str, Any] | None = None,
    **fields: Any,
) -> event_pb2.Event:
    message = event_pb2.Event(
        type=type, event_id=event_id, author=author,
        content=event_pb2.Content(role=role, text=text), **fields,
    )  # fmt: skip
    if data is not None:
        message.data.CopyFrom(struct(data))
    if state_delta is not None:
        message.actions.state_delta.CopyFrom(struct(state_delta))
    return message


def message(
    session_id: str, events: Iterable[event_pb2.Event], expected_last_seq: int | None = None
) -> pb.AppendEventsRequest:
    request = pb.AppendEventsRequest(session_id=session_id, events=list(events))
    if expected_last_seq is not None:
        request.expected_last_seq = expected_last_seq
    return request


async def append(
    stub: SessionServiceStub, *messages: pb.AppendEventsRequest
) -> pb.AppendEventsResponse:
    return await stub.AppendEvents(iter(messages))


async def all_events(stub: SessionServiceStub, session_id: str, **filters: Any) -> list[Any]:
    events: list[Any] = []
    token = ""
    while True:
        page = await stub.ListEvents(
            pb.ListEventsRequest(session_id=session_id, page_size=1000, page_token=token, **filters)
        )
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events
