"""AppendEvents, ListEvents and GetSessionStats through a real server and database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import all_events, append, event, message, struct
from tests.support import error_details, expect_error


@pytest.fixture
async def session_id(stub: SessionServiceStub, app_name: str) -> str:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id="u"))
    return session.id


async def test_appended_events_get_gapless_seqs_and_round_trip(
    stub: SessionServiceStub, session_id: str
) -> None:
    response = await append(
        stub,
        message(session_id, [
            event("first", event_id="e-1", invocation_id="inv-1", agent_id="planner",
                  branch="root.planner", metadata=struct({"trace": "t1"})),
            event("second", type="tool_start", data={"tool_name": "search", "arguments": {"q": 1}}),
        ]),
        message(session_id, [event("third", role="user", author="user")]),
    )  # fmt: skip
    assert (response.appended, response.duplicates) == (3, 0)
    assert dict(response.last_seq) == {session_id: 3}

    events = await all_events(stub, session_id)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.content.text for e in events] == ["first", "second", "third"]
    first, second, third = events
    assert (first.event_id, first.invocation_id, first.agent_id) == ("e-1", "inv-1", "planner")
    assert first.branch == "root.planner"
    assert dict(first.metadata) == {"trace": "t1"}
    assert first.session_id == session_id
    assert second.type == "tool_start"
    assert second.data["tool_name"] == "search"
    assert (third.content.role, third.author) == ("user", "user")
    assert len(second.event_id) == 36  # a server-made UUIDv7
    assert first.position < second.position < third.position

    session = await stub.GetSession(pb.GetSessionRequest(session_id=session_id))
    assert (session.last_seq, session.event_count, session.version) == (3, 3, 3)


async def test_events_are_visible_while_the_stream_is_still_open(
    stub: SessionServiceStub, session_id: str
) -> None:
    call = stub.AppendEvents()
    await call.write(message(session_id, [event("live")]))
    async with asyncio.timeout(30):
        while not await all_events(stub, session_id):
            pass  # each ListEvents is a round trip: wait for the commit we expect
    await call.write(message(session_id, [event("later")]))
    await call.done_writing()
    response = await call
    assert response.appended == 2


async def test_eight_concurrent_writers_on_one_session_make_seqs_without_gaps(
    stub: SessionServiceStub, session_id: str
) -> None:
    writers, messages_each, events_each = 8, 25, 4

    async def writer(number: int) -> pb.AppendEventsResponse:
        return await append(
            stub,
            *(
                message(session_id, [
                    event(f"w{number}-m{m}-e{e}", event_id=f"w{number}-m{m}-e{e}")
                    for e in range(events_each)
                ])
                for m in range(messages_each)
            ),
        )  # fmt: skip

    responses = await asyncio.gather(*(writer(n) for n in range(writers)))
    total = writers * messages_each * events_each
    assert sum(r.appended for r in responses) == total
    events = await all_events(stub, session_id)
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert len({e.event_id for e in events}) == total
    # Each message is contiguous: its events were written in one transaction, in order.
    by_id = {e.event_id: e.seq for e in events}
    for n in range(writers):
        for m in range(messages_each):
            seqs = [by_id[f"w{n}-m{m}-e{e}"] for e in range(events_each)]
            assert seqs == list(range(seqs[0], seqs[0] + events_each))


async def test_a_resent_event_is_a_duplicate_and_stored_once(
    stub: SessionServiceStub, session_id: str
) -> None:
    batch = [event("a", event_id="same-1"), event("b", event_id="same-2")]
    first = await append(stub, message(session_id, batch))
    again = await append(
        stub,
        message(session_id, batch),
        message(session_id, [event("a", event_id="same-1"), event("c", event_id="new-3")]),
        message(session_id, [event("d", event_id="dup-in-message"),
                             event("d", event_id="dup-in-message")]),
    )  # fmt: skip
    assert (first.appended, first.duplicates) == (2, 0)
    assert (again.appended, again.duplicates) == (2, 4)
    events = await all_events(stub, session_id)
    assert [e.event_id for e in events] == ["same-1", "same-2", "new-3", "dup-in-message"]
    assert dict(again.last_seq) == {session_id: 4}


async def test_a_stale_expected_last_seq_is_aborted_and_writes_nothing_of_that_message(
    stub: SessionServiceStub, session_id: str
) -> None:
    error = await expect_error(
        append(
            stub,
            message(session_id, [event("one")], expected_last_seq=0),
            message(session_id, [event("two")], expected_last_seq=1),
            message(session_id, [event("stale")], expected_last_seq=1),
            message(session_id, [event("never read")]),
        ),
        grpc.StatusCode.ABORTED,
    )
    details = error_details(error)
    assert details.reason == "LAST_SEQ_MISMATCH"
    assert details.metadata["last_seq"] == "2"
    assert details.metadata["message_index"] == "2"
    assert [e.content.text for e in await all_events(stub, session_id)] == ["one", "two"]


async def test_a_resend_of_stored_events_succeeds_whatever_it_expected(
    stub: SessionServiceStub, session_id: str
) -> None:
    batch = [event("x", event_id="retry-1")]
    await append(stub, message(session_id, batch, expected_last_seq=0))
    await append(stub, message(session_id, [event("y")]))
    retried = await append(stub, message(session_id, batch, expected_last_seq=0))
    assert (retried.appended, retried.duplicates) == (0, 1)


@pytest.mark.parametrize(
    ("bad_event", "field"),
    [
        (event("nul \x00 inside"), "events[1].content.text"),
        (event(type=""), "events[1].type"),
        (event(event_id="bad id"), "events[1].event_id"),
        (event(author="x" * 257), "events[1].author"),
        (event(type="llm_stream", data={"token": "no delta"}), "events[1].data.delta"),
        (event(type="llm_end", data={"total_tokens": -1}), "events[1].data.total_tokens"),
        (event(type="stage_change", data={"to_stage": 3}), "events[1].data.to_stage"),
        (event(state_delta={"nan": float("nan")}), "events[1].actions.state_delta"),
    ],
)
async def test_a_message_with_a_bad_event_writes_nothing_and_names_the_field(
    stub: SessionServiceStub, session_id: str, bad_event: object, field: str
) -> None:
    error = await expect_error(
        append(stub, message(session_id, [event("fine"), bad_event])),  # type: ignore[list-item]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field in error_details(error).fields, error_details(error).fields
    assert await all_events(stub, session_id) == []
    session = await stub.GetSession(pb.GetSessionRequest(session_id=session_id))
    assert (session.last_seq, session.version) == (0, 1)


async def test_appending_to_a_missing_deleted_or_expired_session_is_not_found(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    await expect_error(append(stub, message("no-such", [event()])), grpc.StatusCode.NOT_FOUND)
    deleted = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=deleted.id))
    await expect_error(append(stub, message(deleted.id, [event()])), grpc.StatusCode.NOT_FOUND)
    expired = await stub.CreateSession(
        pb.CreateSessionRequest(app_name=app_name, ttl={"seconds": 60})
    )
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(
            "UPDATE sessions SET expire_time = now() - interval '1 s' WHERE id = %s",
            (expired.id,),
        )
    error = await expect_error(
        append(stub, message(expired.id, [event()])), grpc.StatusCode.NOT_FOUND
    )
    assert error_details(error).reason == "SESSION_NOT_FOUND"


async def test_text_round_trips_byte_for_byte(stub: SessionServiceStub, session_id: str) -> None:
    texts = [
        "数据库迁移失败了，请检查日志。",
        "データベースの移行に失敗しました。",
        "emoji 🚀🔥👩🏽‍💻 and a flag 🇯🇵",
        "controls \x01\x07\x1b[31m tab\tnewline\n bell",
        "mixed 中文 English 日本語 😀",
    ]
    await append(stub, message(session_id, [event(text) for text in texts]))
    assert [e.content.text for e in await all_events(stub, session_id)] == texts


async def test_json_values_round_trip(stub: SessionServiceStub, session_id: str) -> None:
    data = {
        "huge": 1e300, "tiny": -2.5e-300, "whole": 2**52, "past_64_bits": 3e19, "half": 0.5,
        "yes": True, "none": None, "empty": {}, "list": [[], {}, "文字", 7],
        "nested": {"deeper": {"deepest": ["a", {"b": False}]}},
    }  # fmt: skip
    await append(stub, message(session_id, [event("values", data=data)]))
    (stored,) = await all_events(stub, session_id)
    expected = struct_pb2.Struct()
    expected.update(data)
    assert stored.data == expected


async def test_a_one_mebibyte_event_round_trips(stub: SessionServiceStub, session_id: str) -> None:
    text = "界" * (349_000)  # 1,047,000 bytes of UTF-8: within 1 MiB once encoded
    big = event(text)
    assert big.ByteSize() <= 1024 * 1024
    await append(stub, message(session_id, [big]))
    (stored,) = await all_events(stub, session_id)
    assert stored.content.text == text


async def test_limits_are_resource_exhausted_and_leave_the_server_healthy(
    stub: SessionServiceStub, session_id: str
) -> None:
    too_big = event("x" * (1024 * 1024 + 1))
    error = await expect_error(
        append(stub, message(session_id, [event("ok"), too_big])),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    details = error_details(error)
    assert (details.reason, details.metadata["limit"]) == ("EVENT_TOO_LARGE", str(1024 * 1024))
    assert "events[1]" in details.fields

    error = await expect_error(
        append(stub, message(session_id, [event(str(n)) for n in range(1001)])),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert error_details(error).reason == "TOO_MANY_EVENTS"
    assert await all_events(stub, session_id) == []
    ok = await append(stub, message(session_id, [event("still serving")]))
    assert ok.appended == 1


async def test_state_deltas_merge_into_the_session_state(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await stub.CreateSession(
        pb.CreateSessionRequest(app_name=app_name, state=struct({"keep": 1, "drop": 2}))
    )
    remove = struct_pb2.Struct()
    remove.fields["drop"].null_value = struct_pb2.NULL_VALUE
    with_null = event("second")
    with_null.actions.state_delta.CopyFrom(remove)
    await append(
        stub,
        message(session.id, [event("first", state_delta={"step": 1, "topic": "billing"})]),
        message(session.id, [with_null, event("third", state_delta={"step": 2})]),
    )
    updated = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert dict(updated.state) == {"keep": 1, "step": 2, "topic": "billing"}
    assert updated.version == 3
    stored = await all_events(stub, session.id)
    assert dict(stored[0].actions.state_delta) == {"step": 1, "topic": "billing"}


async def test_a_delta_that_would_outgrow_the_state_limit_fails_only_its_message(
    stub: SessionServiceStub, session_id: str
) -> None:
    chunk = "s" * (200 * 1024)
    error = await expect_error(
        append(
            stub,
            message(session_id, [event("fits", state_delta={"a": chunk})]),
            message(session_id, [event("overflows", state_delta={"b": chunk})]),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_details(error).metadata["message_index"] == "1"
    assert [e.content.text for e in await all_events(stub, session_id)] == ["fits"]


async def test_a_broken_stream_keeps_what_committed_and_the_client_can_resume(
    stub: SessionServiceStub, session_id: str
) -> None:
    call = stub.AppendEvents()
    sent = [event(f"m{n}", event_id=f"resume-{n}") for n in range(6)]
    for item in sent[:3]:
        await call.write(message(session_id, [item]))
    async with asyncio.timeout(30):
        while (await stub.GetSession(pb.GetSessionRequest(session_id=session_id))).last_seq < 3:
            pass
    call.cancel()
    # Resume: resend everything not known to be acknowledged; duplicates are harmless.
    resumed = await append(stub, *(message(session_id, [item]) for item in sent))
    assert (resumed.appended, resumed.duplicates) == (3, 3)
    assert [e.event_id for e in await all_events(stub, session_id)] == [e.event_id for e in sent]


async def test_many_single_event_messages_commit_in_order(
    stub: SessionServiceStub, session_id: str
) -> None:
    count = 2000
    response = await append(stub, *(message(session_id, [event(str(n))]) for n in range(count)))
    assert response.appended == count
    events = await all_events(stub, session_id)
    assert [e.content.text for e in events] == [str(n) for n in range(count)]


async def test_one_stream_can_write_to_many_sessions(
    stub: SessionServiceStub, app_name: str
) -> None:
    sessions = [
        (await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))).id for _ in range(3)
    ]
    response = await append(stub, *(message(sessions[n % 3], [event(str(n))]) for n in range(30)))
    assert dict(response.last_seq) == dict.fromkeys(sessions, 10)


async def test_paging_through_twenty_thousand_events(
    stub: SessionServiceStub, session_id: str
) -> None:
    total = 20_000
    await append(
        stub,
        *(
            message(session_id, [event(f"{m}-{e}") for e in range(1000)])
            for m in range(total // 1000)
        ),
    )
    seqs: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListEvents(
            pb.ListEventsRequest(session_id=session_id, page_size=700, page_token=token)
        )
        seqs.extend(e.seq for e in page.events)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seqs == list(range(1, total + 1))
    assert pages == -(-total // 700)


async def test_list_filters_and_descending_order(stub: SessionServiceStub, session_id: str) -> None:
    await append(
        stub,
        message(session_id, [
            event("a", type="llm_stream", data={"delta": "a"}, author="llm"),
            event("b", type="tool_start", data={"tool_name": "t"}, author="tool",
                  invocation_id="i-2"),
            event("c", type="llm_stream", data={"delta": "c"}, author="llm", branch="root.x"),
            event("d", type="note", author="user", agent_id="helper"),
        ]),
    )  # fmt: skip

    async def texts(**filters: object) -> list[str]:
        return [e.content.text for e in await all_events(stub, session_id, **filters)]

    assert await texts(types=["llm_stream"]) == ["a", "c"]
    assert await texts(types=["llm_stream", "note"]) == ["a", "c", "d"]
    assert await texts(author="tool") == ["b"]
    assert await texts(invocation_id="i-2") == ["b"]
    assert await texts(branch="root.x") == ["c"]
    assert await texts(agent_id="helper") == ["d"]
    assert await texts(after_seq=2) == ["c", "d"]
    assert await texts(before_seq=3) == ["a", "b"]
    assert await texts(descending=True) == ["d", "c", "b", "a"]
    page = await stub.ListEvents(
        pb.ListEventsRequest(session_id=session_id, descending=True, page_size=3)
    )
    rest = await stub.ListEvents(
        pb.ListEventsRequest(
            session_id=session_id, descending=True, page_size=3, page_token=page.next_page_token
        )
    )
    assert [e.seq for e in page.events] == [4, 3, 2]
    assert [e.seq for e in rest.events] == [1]
    assert rest.next_page_token == ""
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await texts(start_time={"seconds": int(future.timestamp())}) == []
    assert await texts(end_time={"seconds": int(future.timestamp())}) == ["a", "b", "c", "d"]


async def test_list_events_of_a_missing_session_is_not_found(stub: SessionServiceStub) -> None:
    await expect_error(
        stub.ListEvents(pb.ListEventsRequest(session_id="absent")), grpc.StatusCode.NOT_FOUND
    )


async def test_list_events_of_a_deleted_session_is_not_found_though_its_events_remain(
    stub: SessionServiceStub, session_id: str
) -> None:
    await append(stub, message(session_id, [event("a"), event("b")]))
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session_id))
    for descending in (False, True):
        await expect_error(
            stub.ListEvents(pb.ListEventsRequest(session_id=session_id, descending=descending)),
            grpc.StatusCode.NOT_FOUND,
        )
    await stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=session_id))
    listed = await stub.ListEvents(pb.ListEventsRequest(session_id=session_id))
    assert [e.content.text for e in listed.events] == ["a", "b"]


async def test_session_stats_count_events_without_reading_them(
    stub: SessionServiceStub, session_id: str
) -> None:
    empty = await stub.GetSessionStats(pb.GetSessionStatsRequest(session_id=session_id))
    assert empty.event_count == 0
    assert not empty.HasField("first_event_time")
    await append(
        stub,
        message(session_id, [event("héllo", author="user", role="user"),
                             event("世界", author="bot", type="llm_stream",
                                   data={"delta": "世界"})]),
        message(session_id, [event("!", author="bot")]),
    )  # fmt: skip
    stats = await stub.GetSessionStats(pb.GetSessionStatsRequest(session_id=session_id))
    assert stats.event_count == 3
    assert dict(stats.events_by_type) == {"note": 2, "llm_stream": 1}
    assert dict(stats.events_by_author) == {"user": 1, "bot": 2}
    assert dict(stats.events_by_role) == {"user": 1, "assistant": 2}
    assert stats.text_chars == len("héllo") + len("世界") + len("!")
    assert stats.first_event_time.ToDatetime() <= stats.last_event_time.ToDatetime()
    await expect_error(
        stub.GetSessionStats(pb.GetSessionStatsRequest(session_id="absent")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_purge_removes_the_events_too(
    stub: SessionServiceStub, session_id: str, database_url: str
) -> None:
    await append(stub, message(session_id, [event("gone")]))
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session_id, purge=True))
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM events WHERE session_id = %s", (session_id,)
        )
        assert await cursor.fetchone() == (0,)


async def test_two_streams_racing_with_the_same_event_ids_store_each_once(
    stub: SessionServiceStub, session_id: str
) -> None:
    batches = [[event(f"r{m}-{e}", event_id=f"r{m}-{e}") for e in range(5)] for m in range(60)]

    async def writer() -> pb.AppendEventsResponse:
        return await append(stub, *(message(session_id, batch) for batch in batches))

    first, second = await asyncio.gather(writer(), writer())
    assert first.appended + second.appended == 300
    assert first.duplicates + second.duplicates == 300
    events = await all_events(stub, session_id)
    assert [e.seq for e in events] == list(range(1, 301))
    assert sorted(e.event_id for e in events) == sorted(
        f"r{m}-{e}" for m in range(60) for e in range(5)
    )


async def test_a_large_event_of_varied_chinese_text_is_stored_and_indexed(
    stub: SessionServiceStub, session_id: str
) -> None:
    # Many distinct character pairs: more than a tsvector could hold if all were indexed.
    text = "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(300_000))
    await append(stub, message(session_id, [event(text)]))
    (stored,) = await all_events(stub, session_id)
    assert stored.content.text == text


async def test_a_message_over_the_size_limit_is_resource_exhausted(
    database_url: str, app_name: str
) -> None:
    async with extra_server(database_url, max_message_bytes="64KiB") as stub:
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        big = message(session.id, [event("x" * 50_000), event("y" * 50_000)])
        error = await expect_error(append(stub, big), grpc.StatusCode.RESOURCE_EXHAUSTED)
        details = error_details(error)
        assert (details.reason, details.metadata["limit"]) == ("MESSAGE_TOO_LARGE", "65536")
        # Past twice the limit gRPC itself refuses the message; still nothing is written.
        huge = message(session.id, [event("z" * 200_000)])
        await expect_error(append(stub, huge), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert await all_events(stub, session.id) == []
        assert (await append(stub, message(session.id, [event("ok")]))).appended == 1
