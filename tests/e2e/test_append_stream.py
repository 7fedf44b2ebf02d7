"""AppendStream through a real server: one acknowledgement per request, in order, each once
it has committed or failed; a failing request writes nothing and the stream goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import grpc
from google.rpc import code_pb2, error_details_pb2

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import all_events, event


def request(
    request_id: str,
    session_id: str,
    events: Iterable[event_pb2.Event],
    expected_last_seq: int | None = None,
) -> pb.AppendStreamRequest:
    message = pb.AppendStreamRequest(
        request_id=request_id, session_id=session_id, events=list(events)
    )
    if expected_last_seq is not None:
        message.expected_last_seq = expected_last_seq
    return message


async def acks_of(
    stub: SessionServiceStub, requests: Iterable[pb.AppendStreamRequest]
) -> list[pb.AppendStreamResponse]:
    return [ack async for ack in stub.AppendStream(iter(list(requests)))]


def reason_of(ack: pb.AppendStreamResponse) -> str:
    info = error_details_pb2.ErrorInfo()
    for detail in ack.error.details:
        if detail.Unpack(info):
            return info.reason
    return ""


async def new_session(stub: SessionServiceStub, app_name: str) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))).id


async def test_acks_arrive_in_request_order_with_each_events_seq(
    stub: SessionServiceStub, app_name: str
) -> None:
    first, second = await new_session(stub, app_name), await new_session(stub, app_name)
    acks = await acks_of(
        stub,
        [
            request("r1", first, [event("a"), event("b")]),
            request("r2", second, [event("c")]),
            request("r3", first, [event("d")]),
            request("r4", first, [event("e"), event("f"), event("g")]),
        ],
    )
    assert [a.request_id for a in acks] == ["r1", "r2", "r3", "r4"]
    assert [list(a.seqs) for a in acks] == [[1, 2], [1], [3], [4, 5, 6]]
    assert [(a.appended, a.duplicates, a.last_seq) for a in acks] == [
        (2, 0, 2), (1, 0, 1), (1, 0, 3), (3, 0, 6),
    ]  # fmt: skip
    assert [a.version for a in acks] == [2, 2, 3, 4]
    assert not any(a.HasField("error") for a in acks)
    stored = await all_events(stub, first)
    assert [e.content.text for e in stored] == ["a", "b", "d", "e", "f", "g"]


async def test_an_ack_means_committed_before_the_stream_ends(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    outgoing: asyncio.Queue[pb.AppendStreamRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.AppendStreamRequest]:
        while (item := await outgoing.get()) is not None:
            yield item

    call = stub.AppendStream(requests())
    acks = aiter(call)
    for n in range(1, 4):
        await outgoing.put(request(f"r{n}", session_id, [event(f"text {n}")]))
        ack = await asyncio.wait_for(anext(acks), 30)
        assert list(ack.seqs) == [n]
        # Readable by anyone the moment it is acknowledged, while the stream stays open.
        stored = await all_events(stub, session_id)
        assert [e.seq for e in stored] == list(range(1, n + 1))
    await outgoing.put(None)
    assert [a async for a in acks] == []


async def test_a_stale_expected_last_seq_fails_alone_and_the_stream_goes_on(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    acks = await acks_of(
        stub,
        [
            request("before", session_id, [event("one")], expected_last_seq=0),
            request("stale", session_id, [event("never")], expected_last_seq=0),
            request("after", session_id, [event("two")], expected_last_seq=1),
        ],
    )
    before, stale, after = acks
    assert (before.appended, list(before.seqs)) == (1, [1])
    assert stale.error.code == code_pb2.ABORTED
    assert reason_of(stale) == "LAST_SEQ_MISMATCH"
    assert (stale.appended, list(stale.seqs), stale.last_seq) == (0, [], 1)
    assert (after.appended, list(after.seqs), after.error.code) == (1, [2], code_pb2.OK)
    assert [e.content.text for e in await all_events(stub, session_id)] == ["one", "two"]


async def test_duplicates_are_counted_and_given_their_stored_seq(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await acks_of(stub, [request("first", session_id, [event("x", event_id="e-1")])])
    (resent,) = await acks_of(
        stub,
        [
            request(
                "resent",
                session_id,
                [
                    event("x", event_id="e-1"),  # stored before
                    event("y", event_id="e-2"),  # new
                    event("y", event_id="e-2"),  # the same id again in this request
                ],
            )
        ],
    )
    assert (resent.appended, resent.duplicates) == (1, 2)
    assert list(resent.seqs) == [1, 2, 2]
    assert resent.last_seq == 2


async def test_eight_concurrent_writers_on_one_session_stay_gapless(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)

    async def writer(w: int) -> list[int]:
        requests = [
            request(f"w{w}-{n}", session_id, [event(f"w{w} n{n} e{k}") for k in range(3)])
            for n in range(20)
        ]
        acks = await acks_of(stub, requests)
        assert [a.request_id for a in acks] == [r.request_id for r in requests]
        assert not any(a.HasField("error") for a in acks)
        return [seq for a in acks for seq in a.seqs]

    seqs = [seq for part in await asyncio.gather(*(writer(w) for w in range(8))) for seq in part]
    assert sorted(seqs) == list(range(1, 8 * 20 * 3 + 1))
    stored = await all_events(stub, session_id)
    assert [e.seq for e in stored] == list(range(1, 481))
    # Each request's events got consecutive seqs: a request is one transaction.
    by_text = {e.content.text: e.seq for e in stored}
    for w in range(8):
        for n in range(20):
            mine = [by_text[f"w{w} n{n} e{k}"] for k in range(3)]
            assert mine == list(range(mine[0], mine[0] + 3))


async def test_cancelling_mid_flight_keeps_every_acknowledged_request_and_halves_none(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    requests = [
        request(f"r{n}", session_id, [event(f"r{n} e{k}", event_id=f"r{n}-{k}") for k in range(5)])
        for n in range(200)
    ]
    call = stub.AppendStream(iter(requests))
    acknowledged: list[str] = []
    async for ack in call:
        acknowledged.append(ack.request_id)
        if len(acknowledged) == 20:
            call.cancel()
            break
    stored = await all_events(stub, session_id)
    ids = {e.event_id for e in stored}
    for n in range(200):
        present = [f"r{n}-{k}" in ids for k in range(5)]
        assert all(present) or not any(present), f"request r{n} half-written: {present}"
        if f"r{n}" in acknowledged:
            assert all(present), f"acknowledged request r{n} is missing"
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))


async def test_limits_and_missing_sessions_are_acknowledged_as_appendevents_reports_them(
    database_url: str, app_name: str
) -> None:
    async with extra_server(database_url, max_events_per_message=3) as small:
        session_id = await new_session(small, app_name)
        bad_event = event("no type", type="")
        acks = await acks_of(
            small,
            [
                request("missing", "no-such-session", [event("x")]),
                request("too-many", session_id, [event(str(k)) for k in range(4)]),
                request("invalid", session_id, [event("fine"), bad_event]),
                request("fine", session_id, [event("kept")]),
            ],
        )
        codes = [a.error.code for a in acks]
        assert codes == [
            code_pb2.NOT_FOUND, code_pb2.RESOURCE_EXHAUSTED, code_pb2.INVALID_ARGUMENT,
            code_pb2.OK,
        ]  # fmt: skip
        assert [reason_of(a) for a in acks[:2]] == ["SESSION_NOT_FOUND", "TOO_MANY_EVENTS"]
        bad_request = error_details_pb2.BadRequest()
        assert any(detail.Unpack(bad_request) for detail in acks[2].error.details)
        assert [v.field for v in bad_request.field_violations] == ["events[1].type"]
        assert [e.content.text for e in await all_events(small, session_id)] == ["kept"]


async def test_an_undecodable_request_is_acknowledged_as_invalid_and_the_stream_goes_on(
    channel: grpc.aio.Channel, stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    call = channel.stream_stream(
        "/agentstore.v1.SessionService/AppendStream",
        request_serializer=lambda data: data,
        response_deserializer=pb.AppendStreamResponse.FromString,
    )
    raw = [
        b"\x0a\x05ab",  # truncated
        request("good", session_id, [event("kept")]).SerializeToString(),
    ]
    acks = [ack async for ack in call(iter(raw))]
    assert [(a.request_id, a.error.code) for a in acks] == [
        ("", code_pb2.INVALID_ARGUMENT),
        ("good", code_pb2.OK),
    ]
    assert list(acks[1].seqs) == [1]
