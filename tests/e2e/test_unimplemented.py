"""The event RPCs exist in the contract before they are built, and say so."""

from __future__ import annotations

import grpc
import pytest

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub


async def test_stream_events_is_unimplemented(stub: SessionServiceStub) -> None:
    call = stub.StreamEvents(pb.StreamEventsRequest(session_id="x"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
