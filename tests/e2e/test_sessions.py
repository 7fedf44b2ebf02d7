"""Every session RPC through a real grpc.aio server on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from agentstore.v1 import session_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.support import error_details, expect_error

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def struct(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def ttl(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(timedelta(seconds=seconds))
    return message


async def create(stub: SessionServiceStub, app_name: str, **fields: object) -> session_pb2.Session:
    return await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, **fields))


async def test_create_makes_a_uuid7_and_returns_the_session(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(
        stub,
        app_name,
        user_id="u-1",
        agent_id="planner",
        metadata=struct(title="hello"),
        state=struct(step=1, tags=["a"]),
    )
    assert UUID7.fullmatch(session.id)
    assert (session.app_name, session.user_id, session.agent_id) == (app_name, "u-1", "planner")
    assert session.status == session_pb2.SESSION_STATUS_ACTIVE
    assert dict(session.metadata) == {"title": "hello"}
    assert session.state["step"] == 1
    assert list(session.state["tags"]) == ["a"]
    assert (session.version, session.last_seq, session.event_count) == (1, 0, 0)
    assert session.create_time == session.update_time
    assert not session.HasField("expire_time")
    assert not session.HasField("delete_time")


async def test_create_keeps_a_client_id_and_get_returns_it(
    stub: SessionServiceStub, app_name: str
) -> None:
    created = await create(stub, app_name, session_id=f"{app_name}-chosen")
    fetched = await stub.GetSession(pb.GetSessionRequest(session_id=f"{app_name}-chosen"))
    assert fetched == created


async def test_create_with_a_taken_id_is_already_exists(
    stub: SessionServiceStub, app_name: str
) -> None:
    await create(stub, app_name, session_id=f"{app_name}-dup")
    error = await expect_error(
        create(stub, app_name, session_id=f"{app_name}-dup"), grpc.StatusCode.ALREADY_EXISTS
    )
    assert error_details(error).reason == "SESSION_ALREADY_EXISTS"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({}, "app_name"),
        ({"session_id": "has space"}, "session_id"),
        ({"session_id": "x" * 129}, "session_id"),
        ({"user_id": "semi;colon"}, "user_id"),
        ({"agent_id": "ünïcode"}, "agent_id"),
        ({"metadata": struct(blob="x" * (256 * 1024))}, "metadata"),
        ({"state": struct(blob="x" * (256 * 1024))}, "state"),
        ({"state": struct(text="nul\x00byte")}, "state"),
        ({"ttl": ttl(-5)}, "ttl"),
        ({"status": 42}, "status"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    stub: SessionServiceStub, app_name: str, fields: dict[str, object], bad_field: str
) -> None:
    request = {"app_name": app_name, **fields} if bad_field != "app_name" else fields
    error = await expect_error(
        stub.CreateSession(pb.CreateSessionRequest(**request)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_field in error_details(error).fields
    listed = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, show_deleted=True))
    assert list(listed.sessions) == []


async def test_get_of_an_unknown_session_is_not_found(stub: SessionServiceStub) -> None:
    error = await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id="no-such-session")),
        grpc.StatusCode.NOT_FOUND,
    )
    details = error_details(error)
    assert details.reason == "SESSION_NOT_FOUND"
    assert details.metadata == {"session_id": "no-such-session"}


async def test_get_with_an_empty_id_is_invalid(stub: SessionServiceStub) -> None:
    error = await expect_error(
        stub.GetSession(pb.GetSessionRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "session_id" in error_details(error).fields


async def test_basic_view_leaves_out_state(stub: SessionServiceStub, app_name: str) -> None:
    created = await create(stub, app_name, state=struct(big="value"), metadata=struct(m=1))
    basic = await stub.GetSession(
        pb.GetSessionRequest(session_id=created.id, view=session_pb2.SESSION_VIEW_BASIC)
    )
    assert dict(basic.state) == {}
    assert dict(basic.metadata) == {"m": 1}
    listed = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, view=session_pb2.SESSION_VIEW_BASIC)
    )
    assert dict(listed.sessions[0].state) == {}


async def test_list_filters_by_user_agent_and_status(
    stub: SessionServiceStub, app_name: str
) -> None:
    a = await create(stub, app_name, user_id="alice", agent_id="coder")
    b = await create(stub, app_name, user_id="alice", agent_id="planner")
    c = await create(
        stub, app_name, user_id="bob", agent_id="coder", status=session_pb2.SESSION_STATUS_FAILED
    )
    await create(stub, f"{app_name}-other", user_id="alice")

    async def ids(**filters: object) -> set[str]:
        response = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, **filters))
        return {session.id for session in response.sessions}

    assert await ids() == {a.id, b.id, c.id}
    assert await ids(user_id="alice") == {a.id, b.id}
    assert await ids(agent_id="coder") == {a.id, c.id}
    assert await ids(status=session_pb2.SESSION_STATUS_FAILED) == {c.id}
    assert await ids(user_id="alice", agent_id="planner") == {b.id}


async def test_list_pages_newest_first_without_repeats_or_gaps(
    stub: SessionServiceStub, app_name: str
) -> None:
    created = [await create(stub, app_name, user_id="pager") for _ in range(23)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response = await stub.ListSessions(
            pb.ListSessionsRequest(app_name=app_name, page_size=5, page_token=token)
        )
        seen.extend(session.id for session in response.sessions)
        pages += 1
        token = response.next_page_token
        if not token:
            break
    expected = [s.id for s in sorted(created, key=lambda s: (s.create_time.ToDatetime(), s.id))]
    assert seen == expected[::-1]
    assert pages == 5


async def test_a_page_token_only_works_with_its_own_filters(
    stub: SessionServiceStub, app_name: str
) -> None:
    for _ in range(3):
        await create(stub, app_name, user_id="u")
    first = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, page_size=1))
    error = await expect_error(
        stub.ListSessions(
            pb.ListSessionsRequest(
                app_name=app_name, user_id="u", page_size=1, page_token=first.next_page_token
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in error_details(error).fields
    for garbage in ["not-a-token", "eyJ4IjoxfQ", "%%%"]:
        error = await expect_error(
            stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, page_token=garbage)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "page_token" in error_details(error).fields


async def test_list_rejects_a_negative_page_size(stub: SessionServiceStub, app_name: str) -> None:
    error = await expect_error(
        stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_size" in error_details(error).fields


async def test_update_changes_only_the_masked_fields_and_bumps_version(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name, metadata=struct(keep="me"), state=struct(a=1))
    updated = await stub.UpdateSession(
        pb.UpdateSessionRequest(
            session_id=session.id,
            status=session_pb2.SESSION_STATUS_COMPLETED,
            metadata=struct(ignored=True),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        )
    )
    assert updated.status == session_pb2.SESSION_STATUS_COMPLETED
    assert dict(updated.metadata) == {"keep": "me"}
    assert updated.version == 2
    assert updated.update_time.ToDatetime() >= session.update_time.ToDatetime()


async def test_update_without_a_mask_changes_what_is_set(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name, metadata=struct(old=1))
    updated = await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=session.id, metadata=struct(new=2))
    )
    assert dict(updated.metadata) == {"new": 2}
    assert updated.status == session_pb2.SESSION_STATUS_ACTIVE


async def test_state_delta_merges_and_null_deletes_a_key(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name, state=struct(a=1, b="two", c={"nested": True}))
    delta = struct(b="changed", d=4)
    delta.fields["a"].null_value = struct_pb2.NULL_VALUE
    updated = await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=session.id, state_delta=delta)
    )
    state = struct_pb2.Struct()
    state.CopyFrom(updated.state)
    assert {key: state[key] for key in state} == {"b": "changed", "c": state["c"], "d": 4}
    assert dict(state["c"]) == {"nested": True}


async def test_update_with_a_stale_expected_version_is_aborted_and_writes_nothing(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name)
    await stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, metadata=struct(v=2)))
    error = await expect_error(
        stub.UpdateSession(
            pb.UpdateSessionRequest(session_id=session.id, metadata=struct(v=3), expected_version=1)
        ),
        grpc.StatusCode.ABORTED,
    )
    details = error_details(error)
    assert details.reason == "VERSION_MISMATCH"
    assert details.metadata["current_version"] == "2"
    current = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert dict(current.metadata) == {"v": 2}
    assert current.version == 2
    ok = await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=session.id, metadata=struct(v=3), expected_version=2)
    )
    assert ok.version == 3


async def test_concurrent_guarded_updates_let_exactly_one_win(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name)
    results = await asyncio.gather(
        *(
            stub.UpdateSession(
                pb.UpdateSessionRequest(
                    session_id=session.id, state_delta=struct(writer=i), expected_version=1
                )
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, session_pb2.Session)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert all(loser.code() == grpc.StatusCode.ABORTED for loser in losers)


@pytest.mark.parametrize(
    ("request_fields", "bad_field"),
    [
        ({"update_mask": field_mask_pb2.FieldMask(paths=["app_name"])}, "update_mask"),
        ({"update_mask": field_mask_pb2.FieldMask(paths=["status"])}, "status"),
        ({}, "update_mask"),
        ({"state_delta": struct(big="x" * (256 * 1024))}, "state_delta"),
        ({"ttl": ttl(-1)}, "ttl"),
    ],
)
async def test_update_rejects_bad_input(
    stub: SessionServiceStub, app_name: str, request_fields: dict[str, object], bad_field: str
) -> None:
    session = await create(stub, app_name)
    error = await expect_error(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, **request_fields)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_field in error_details(error).fields
    unchanged = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert unchanged.version == 1


async def test_update_that_would_grow_state_past_the_limit_writes_nothing(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name, state=struct(first="x" * (200 * 1024)))
    error = await expect_error(
        stub.UpdateSession(
            pb.UpdateSessionRequest(session_id=session.id, state_delta=struct(more="y" * 100_000))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "state_delta" in error_details(error).fields
    unchanged = await stub.GetSession(pb.GetSessionRequest(session_id=session.id))
    assert unchanged.version == 1
    assert set(unchanged.state.keys()) == {"first"}


async def test_update_of_an_unknown_session_is_not_found(stub: SessionServiceStub) -> None:
    await expect_error(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id="missing", metadata=struct(a=1))),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_soft_delete_hides_the_session_until_undeleted(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name)
    deleted = await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id))
    assert deleted.session.HasField("delete_time")
    assert deleted.session.version == 2

    await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id=session.id)), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    visible = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name))
    assert list(visible.sessions) == []
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True)
    )
    assert [s.id for s in everything.sessions] == [session.id]

    restored = await stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=session.id))
    assert not restored.HasField("delete_time")
    assert restored.version == 3
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=session.id))).id == session.id


async def test_undelete_of_a_live_session_is_already_exists(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name)
    error = await expect_error(
        stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=session.id)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert error_details(error).reason == "SESSION_NOT_DELETED"
    await expect_error(
        stub.UndeleteSession(pb.UndeleteSessionRequest(session_id="never-existed")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_purge_removes_the_session_for_good(stub: SessionServiceStub, app_name: str) -> None:
    session = await create(stub, app_name, session_id=f"{app_name}-purged")
    response = await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id, purge=True))
    assert not response.HasField("session")
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True)
    )
    assert list(everything.sessions) == []
    await expect_error(
        stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=session.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id, purge=True)),
        grpc.StatusCode.NOT_FOUND,
    )
    # The id is free again.
    assert (await create(stub, app_name, session_id=session.id)).version == 1


async def test_purge_also_takes_a_soft_deleted_session(
    stub: SessionServiceStub, app_name: str
) -> None:
    session = await create(stub, app_name)
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id))
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id, purge=True))
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True)
    )
    assert list(everything.sessions) == []


async def test_delete_sessions_by_user_then_by_app(stub: SessionServiceStub, app_name: str) -> None:
    for user in ["alice", "alice", "bob"]:
        await create(stub, app_name, user_id=user)
    other_app = await create(stub, f"{app_name}-x", user_id="alice")

    by_user = await stub.DeleteSessions(
        pb.DeleteSessionsRequest(app_name=app_name, user_id="alice")
    )
    assert by_user.deleted_count == 2
    remaining = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name))
    assert [s.user_id for s in remaining.sessions] == ["bob"]

    purged = await stub.DeleteSessions(pb.DeleteSessionsRequest(app_name=app_name, purge=True))
    assert purged.deleted_count == 3  # the two soft-deleted ones and bob's
    everything = await stub.ListSessions(
        pb.ListSessionsRequest(app_name=app_name, show_deleted=True)
    )
    assert list(everything.sessions) == []
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=other_app.id))).id


async def test_delete_sessions_needs_an_app(stub: SessionServiceStub) -> None:
    error = await expect_error(
        stub.DeleteSessions(pb.DeleteSessionsRequest(user_id="alice")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "app_name" in error_details(error).fields


async def test_an_expired_session_behaves_as_deleted(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    session = await create(stub, app_name, ttl=ttl(3600))
    expire = session.expire_time.ToDatetime(tzinfo=UTC)
    assert timedelta(minutes=59) < expire - session.create_time.ToDatetime(tzinfo=UTC)
    await _move_expiry_to_the_past(database_url, session.id)

    await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id=session.id)), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, metadata=struct(a=1))),
        grpc.StatusCode.NOT_FOUND,
    )
    assert list((await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name))).sessions) == []
    shown = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, show_deleted=True))
    assert [s.id for s in shown.sessions] == [session.id]

    restored = await stub.UndeleteSession(pb.UndeleteSessionRequest(session_id=session.id))
    assert not restored.HasField("expire_time")


async def test_update_can_set_and_clear_the_expiry(stub: SessionServiceStub, app_name: str) -> None:
    session = await create(stub, app_name)
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    with_expiry = await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=session.id, expire_time=when)
    )
    assert with_expiry.expire_time == when
    extended = await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=session.id, ttl=ttl(7 * 86400))
    )
    assert extended.expire_time.ToDatetime() > when.ToDatetime()
    cleared = await stub.UpdateSession(
        pb.UpdateSessionRequest(
            session_id=session.id, update_mask=field_mask_pb2.FieldMask(paths=["expire_time"])
        )
    )
    assert not cleared.HasField("expire_time")
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    await expect_error(
        stub.UpdateSession(pb.UpdateSessionRequest(session_id=session.id, expire_time=past)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_store_stats_count_sessions_by_standing(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    live = [await create(stub, app_name) for _ in range(3)]
    await stub.UpdateSession(
        pb.UpdateSessionRequest(session_id=live[0].id, status=session_pb2.SESSION_STATUS_COMPLETED)
    )
    deleted = await create(stub, app_name)
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=deleted.id))
    expired = await create(stub, app_name, ttl=ttl(60))
    await _move_expiry_to_the_past(database_url, expired.id)

    stats = await stub.GetStoreStats(pb.GetStoreStatsRequest(app_name=app_name))
    assert (stats.total_sessions, stats.active_sessions) == (5, 3)
    assert (stats.deleted_sessions, stats.expired_sessions) == (1, 1)
    assert stats.total_events == 0
    assert stats.average_events_per_session == 0
    assert dict(stats.active_sessions_by_status) == {"active": 2, "completed": 1}

    everywhere = await stub.GetStoreStats(pb.GetStoreStatsRequest())
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute("SELECT count(*) FROM sessions")
        (in_the_table,) = await cursor.fetchone()  # type: ignore[misc]
    assert everywhere.total_sessions == in_the_table


async def _move_expiry_to_the_past(database_url: str, session_id: str) -> None:
    """Time travel for one session: clocks cannot be waited on in a test."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(
            "UPDATE sessions SET expire_time = now() - interval '1 second' WHERE id = %s",
            (session_id,),
        )
