"""Whatever a client sends, the answer is a result or a clear status: never UNKNOWN or INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub

HOSTILE = [
    "",
    " ",
    "x" * 5000,
    "nul\x00byte",
    "\x01\x02\x1b[31m",
    "'; DROP TABLE sessions; --",
    "😀" * 200,
    "数据库",
    "../../etc/passwd",
    "%s %(id)s {}",
]
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


async def outcome(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def stream_outcome(call: grpc.aio.UnaryStreamCall) -> grpc.StatusCode:  # type: ignore[type-arg]
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_strings_get_clear_statuses_everywhere(
    stub: SessionServiceStub, app_name: str, value: str
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    calls = {
        "CreateSession id": stub.CreateSession(
            pb.CreateSessionRequest(app_name=app_name, session_id=value)
        ),
        "CreateSession app": stub.CreateSession(pb.CreateSessionRequest(app_name=value)),
        "GetSession": stub.GetSession(pb.GetSessionRequest(session_id=value)),
        "ListSessions": stub.ListSessions(
            pb.ListSessionsRequest(app_name=value, user_id=value, page_token=value)
        ),
        "UpdateSession": stub.UpdateSession(
            pb.UpdateSessionRequest(session_id=value, status=1)
        ),
        "DeleteSession": stub.DeleteSession(pb.DeleteSessionRequest(session_id=value)),
        "UndeleteSession": stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=value)),
        "DeleteSessions": stub.DeleteSessions(
            pb.DeleteSessionsRequest(app_name=value, user_id=value)
        ),
        "ListEvents": stub.ListEvents(
            pb.ListEventsRequest(session_id=session.id, types=[value], page_token=value)
        ),
        "GetSessionStats": stub.GetSessionStats(pb.GetSessionStatsRequest(session_id=value)),
        "GetStoreStats": stub.GetStoreStats(pb.GetStoreStatsRequest(app_name=value)),
        "Search": stub.Search(
            pb.SearchRequest(query=value or "x", app_name=value, page_token=value)
        ),
        "AppendEvents": stub.AppendEvents(
            iter([
                pb.AppendEventsRequest(
                    session_id=session.id,
                    events=[event_pb2.Event(
                        type=value or "t", event_id=value, author=value, branch=value,
                        content=event_pb2.Content(role=value, text=value),
                    )],
                )
            ])
        ),
    }  # fmt: skip
    codes = {name: await outcome(call) for name, call in calls.items()}
    codes["StreamEvents"] = await stream_outcome(
        stub.StreamEvents(
            pb.StreamEventsRequest(app_name=value or app_name, resume_token=value, types=[value])
        )
    )
    unclear = {
        name: code for name, code in codes.items() if code not in CLEAR | {grpc.StatusCode.OK}
    }
    assert not unclear
