"""Values at and past the edges of what the contract and PostgreSQL can hold: each is a clear
INVALID_ARGUMENT naming its field, written nowhere, or stored and readable by a default
client. Never INTERNAL or UNKNOWN, never a row that later reads fail on."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from agentstore.v1 import session_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import append, event, message
from tests.support import error_details, expect_error

# The deepest JSON the contract accepts (proto/agentstore/v1/session.proto says why).
MAX_JSON_DEPTH = 30


def nested(depth: int) -> dict[str, Any]:
    """A JSON object `depth` objects deep, counting itself."""
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def as_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


async def expect_invalid(call: object, field: str) -> None:
    error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    assert field in error_details(error).fields, error_details(error)


# --- Requests the server cannot decode --------------------------------------------------------

UNDECODABLE = {
    "invalid UTF-8 in a string field": b"\x0a\x02\xff\xfe",
    "a truncated message": b"\x0a\x05ab",
    "no protobuf at all": b"\xff\xff\xff",
}


@pytest.mark.parametrize("raw", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_an_undecodable_unary_request_is_invalid_argument(
    channel: grpc.aio.Channel, raw: bytes
) -> None:
    call = channel.unary_unary(
        "/agentstore.v1.SessionService/GetSession",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    await expect_invalid(call(raw), "request")


async def test_an_undecodable_stream_request_is_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.unary_stream(
        "/agentstore.v1.SessionService/StreamEvents",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call(UNDECODABLE["invalid UTF-8 in a string field"]):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in error_details(caught.value).fields


async def test_an_undecodable_append_message_stops_the_stream_after_what_committed(
    channel: grpc.aio.Channel, stub: SessionServiceStub, app_name: str
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    good = message(session.id, [event("kept")]).SerializeToString()
    call = channel.stream_unary(
        "/agentstore.v1.SessionService/AppendEvents",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    error = await expect_error(
        call(iter([good, UNDECODABLE["a truncated message"]])), grpc.StatusCode.INVALID_ARGUMENT
    )
    details = error_details(error)
    assert "request" in details.fields
    assert details.metadata["message_index"] == "1"
    stored = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert stored.last_seq == 1


# --- Times and durations ------------------------------------------------------------------


async def test_a_ttl_past_the_latest_expiry_is_refused_and_nothing_is_written(
    stub: SessionServiceStub, app_name: str
) -> None:
    longest = duration_pb2.Duration(seconds=315_576_000_000)  # protobuf's own maximum
    await expect_invalid(
        stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, ttl=longest)), "ttl"
    )
    page = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, show_deleted=True))
    assert list(page.sessions) == []
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    await expect_invalid(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, ttl=longest)), "ttl"
    )
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=session.id))).version == 1


async def test_the_longest_ttl_allowed_is_stored_and_read_back(
    stub: SessionServiceStub, app_name: str
) -> None:
    thousand_years = duration_pb2.Duration(seconds=365_000 * 86_400)
    session = await stub.CreateSession(
        pb.CreateSessionRequest(app_name=app_name, ttl=thousand_years)
    )
    again = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert again.expire_time.ToDatetime().year > 3000
    page = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name))
    assert [s.id for s in page.sessions] == [session.id]


@pytest.mark.parametrize(
    "timestamp",
    [
        timestamp_pb2.Timestamp(seconds=10**13),
        timestamp_pb2.Timestamp(seconds=-(10**12)),
        timestamp_pb2.Timestamp(seconds=1, nanos=-1),
        timestamp_pb2.Timestamp(seconds=1, nanos=1_000_000_000),
    ],
    ids=["seconds 10^13", "seconds -10^12", "nanos -1", "nanos 10^9"],
)
async def test_timestamps_outside_the_protobuf_range_are_refused(
    stub: SessionServiceStub, app_name: str, timestamp: timestamp_pb2.Timestamp
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    await expect_invalid(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, expire_time=timestamp)),
        "expire_time",
    )
    await expect_invalid(
        stub.ListEvents(pb.ListEventsRequest(session_id=session.id, start_time=timestamp)),
        "start_time",
    )
    await expect_invalid(
        stub.Search(pb.SearchRequest(app_name=app_name, query="x", end_time=timestamp)),
        "end_time",
    )


@pytest.mark.parametrize(
    "duration",
    [duration_pb2.Duration(seconds=10**12), duration_pb2.Duration(seconds=5, nanos=-1)],
    ids=["seconds 10^12", "mixed signs"],
)
async def test_durations_outside_the_protobuf_range_are_refused(
    stub: SessionServiceStub, app_name: str, duration: duration_pb2.Duration
) -> None:
    await expect_invalid(
        stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, ttl=duration)), "ttl"
    )


# --- Tokens ---------------------------------------------------------------------------------


def feed_token(tx_id: int, position: int) -> str:
    return base64.urlsafe_b64encode(f"{tx_id}.{position}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(("tx_id", "position"), [(2**64, 1), (1, 2**63), (10**30, 10**30)], ids=str)
async def test_a_resume_token_with_numbers_past_64_bits_is_refused(
    stub: SessionServiceStub, app_name: str, tx_id: int, position: int
) -> None:
    request = pb.StreamEventsRequest(app_name=app_name, resume_token=feed_token(tx_id, position))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamEvents(request):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resume_token" in error_details(caught.value).fields


def rewritten(token: str, position: list[Any]) -> str:
    """A page token with another position, as a client could forge it."""
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    payload["p"] = position
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_page_tokens_with_numbers_past_64_bits_are_refused(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    await append(stub, message(session.id, [event("one"), event("two")]))
    page = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id, page_size=1))
    forged = rewritten(page.next_page_token, [2**70])
    await expect_invalid(
        stub.ListEvents(
            pb.ListEventsRequest(session_id=session.id, page_size=1, page_token=forged)
        ),
        "page_token",
    )


# --- JSON nesting ---------------------------------------------------------------------------


async def test_json_nested_past_the_limit_is_refused_naming_the_field(
    stub: SessionServiceStub, app_name: str
) -> None:
    too_deep = as_struct(nested(MAX_JSON_DEPTH + 1))
    await expect_invalid(
        stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, state=too_deep)), "state"
    )
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    deep_event = event("deep")
    deep_event.data.CopyFrom(too_deep)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, message(session.id, [event("fine"), deep_event]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[1].data" in error_details(caught.value).fields
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=session.id))).last_seq == 0


async def test_json_at_the_depth_limit_is_readable_by_a_default_client_everywhere(
    stub: SessionServiceStub, app_name: str
) -> None:
    deepest = as_struct(nested(MAX_JSON_DEPTH))
    session = await stub.CreateSession(
        pb.CreateSessionRequest(app_name=app_name, state=deepest, metadata=deepest)
    )
    deep_event = event("deepest searchable")
    deep_event.data.CopyFrom(deepest)
    deep_event.metadata.CopyFrom(deepest)
    await append(stub, message(session.id, [deep_event]))
    got = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert got.state == deepest
    listed = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name))
    assert listed.sessions[0].metadata == deepest
    events = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id))
    assert events.events[0].data == deepest
    streamed = [m async for m in stub.StreamEvents(pb.StreamEventsRequest(session_id=session.id))]
    assert streamed[0].events[0].metadata == deepest
    found = await stub.Search(pb.SearchRequest(app_name=app_name, query="searchable"))
    assert found.hits[0].event.data == deepest


# --- The state size measure -------------------------------------------------------------------

STATE_LIMIT = 1024


def state_of_canonical_size(size: int) -> dict[str, Any]:
    """A state whose JSON text, as the proto documents the measure, is exactly `size` bytes:
    {"k0": "xxx", "k1": ...}, written the way PostgreSQL writes jsonb (a space after each
    `:` and `,`)."""
    keys = 20
    # '{' + keys * ('"kNN": ""') + (keys - 1) * ', ' + '}'
    overhead = 2 + sum(len(f'"k{i:02d}": ""') for i in range(keys)) + 2 * (keys - 1)
    filler = size - overhead
    state = {f"k{i:02d}": "x" * (filler // keys) for i in range(keys)}
    state["k00"] += "x" * (filler % keys)
    return state


async def test_a_state_accepted_at_creation_stays_changeable(database_url: str) -> None:
    async with extra_server(database_url, max_state_bytes=f"{STATE_LIMIT}B") as small:
        state = state_of_canonical_size(STATE_LIMIT)
        compact = json.dumps(state, separators=(",", ":"))
        assert len(compact) < STATE_LIMIT  # the old measure at creation
        session = await small.CreateSession(
            pb.CreateSessionRequest(app_name="state-measure", state=as_struct(state))
        )
        # Nothing that leaves the state as it is may fail on its size.
        updated = await small.UpdateSession(
            pb.UpdateSessionRequest(
                session_id=session.id, status=session_pb2.SESSION_STATUS_COMPLETED
            )
        )
        assert updated.state == session.state
        await append(small, message(session.id, [event("no delta")]))
        same_size = await append(
            small, message(session.id, [event("same size", state_delta={"k01": state["k01"]})])
        )
        assert same_size.appended == 1


async def test_one_byte_over_the_state_limit_is_refused_at_create_update_and_append(
    database_url: str,
) -> None:
    async with extra_server(database_url, max_state_bytes=f"{STATE_LIMIT}B") as small:
        over = state_of_canonical_size(STATE_LIMIT + 1)
        await expect_invalid(
            small.CreateSession(
                pb.CreateSessionRequest(app_name="state-measure", state=as_struct(over))
            ),
            "state",
        )
        fits = state_of_canonical_size(STATE_LIMIT)
        session = await small.CreateSession(
            pb.CreateSessionRequest(app_name="state-measure", state=as_struct(fits))
        )
        one_more = {"k00": fits["k00"] + "x"}
        await expect_invalid(
            small.UpdateSession(
                pb.UpdateSessionRequest(session_id=session.id, state_delta=as_struct(one_more))
            ),
            "state_delta",
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await append(small, message(session.id, [event("grow", state_delta=one_more)]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "events.actions.state_delta" in error_details(caught.value).fields
        stored = await small.GetSession(pb.GetSessionRequest(session_id=session.id))
        assert (stored.version, stored.last_seq) == (1, 0)
