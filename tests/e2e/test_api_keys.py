"""API keys through a real server with `--auth api-key`: every RPC against every kind of
credential, scopes that confine a key to its apps, and the `agentstore keys` command."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentstore.app import with_keys
from agentstore.domain.callers import Role
from agentstore.service.keys import KeyService
from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server, server_settings
from tests.e2e.events_support import event
from tests.support import ServerProcess, run_agentstore

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
Metadata = tuple[tuple[str, str], ...]


@dataclass
class World:
    stub: SessionServiceStub
    app_a: str
    app_b: str
    keys: dict[str, Metadata]


def bearer(key: str) -> Metadata:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    app_a, app_b = f"keys-a-{uuid.uuid4().hex[:6]}", f"keys-b-{uuid.uuid4().hex[:6]}"
    settings = server_settings(database_url)

    async def make(keys: KeyService) -> dict[str, Metadata]:
        made = {}
        for name, apps, role in (
            ("admin of every app", [], Role.ADMIN),
            ("admin of A", [app_a], Role.ADMIN),
            ("writer of A", [app_a], Role.WRITER),
            ("reader of A", [app_a], Role.READER),
            ("writer of B", [app_b], Role.WRITER),
            ("revoked", [app_a], Role.WRITER),
            ("expired", [app_a], Role.WRITER),
        ):
            stored, secret = await keys.create(apps=apps, role=role, name=name)
            made[name] = bearer(secret)
            if name == "revoked":
                await keys.revoke(stored.id)
            if name == "expired":
                async with await psycopg.AsyncConnection.connect(database_url) as connection:
                    await connection.execute(
                        "UPDATE api_keys SET expire_time = now() - interval '1 s' WHERE id = %s",
                        (stored.id,),
                    )
                    await connection.commit()
        made["no key"] = ()
        made["unknown"] = bearer("as_" + "x" * 43)
        made["not a bearer"] = (("authorization", "Basic dXNlcjpwYXNz"),)
        return made

    keys = await with_keys(settings, make)
    async with extra_server(database_url, auth="api-key") as stub:
        yield World(stub, app_a, app_b, keys)


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return OK


async def new_session(world: World, app_name: str, *, deleted: bool = False) -> str:
    admin = world.keys["admin of every app"]
    session = await world.stub.CreateSession(
        pb.CreateSessionRequest(app_name=app_name, user_id="u"), metadata=admin
    )
    append = pb.AppendEventsRequest(session_id=session.id, events=[event("refund invoice")])
    await world.stub.AppendEvents(iter([append]), metadata=admin)
    if deleted:
        await world.stub.DeleteSession(
            pb.DeleteSessionRequest(session_id=session.id), metadata=admin
        )
    return session.id


async def stream_code(call: object, *, acks: bool = False) -> grpc.StatusCode:
    try:
        async for response in call:  # type: ignore[attr-defined]
            if acks and response.HasField("error"):
                return grpc.StatusCode(
                    next(c for c in grpc.StatusCode if c.value[0] == response.error.code)
                )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return OK


Call = Callable[[World, Metadata], Awaitable[grpc.StatusCode]]


async def create(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.CreateSessionRequest(app_name=world.app_a)
    return await code_of(world.stub.CreateSession(request, metadata=md))


async def get(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.GetSessionRequest(session_id=session_id)
    return await code_of(world.stub.GetSession(request, metadata=md))


async def list_sessions(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.ListSessionsRequest(app_name=world.app_a)
    return await code_of(world.stub.ListSessions(request, metadata=md))


async def update(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.UpdateSessionRequest(session_id=session_id, status=2)
    return await code_of(world.stub.UpdateSession(request, metadata=md))


async def delete(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.DeleteSessionRequest(session_id=session_id)
    return await code_of(world.stub.DeleteSession(request, metadata=md))


async def undelete(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a, deleted=True)
    request = pb.UndeleteSessionRequest(session_id=session_id)
    return await code_of(world.stub.UndeleteSession(request, metadata=md))


async def delete_many(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.DeleteSessionsRequest(app_name=world.app_a, user_id="nobody")
    return await code_of(world.stub.DeleteSessions(request, metadata=md))


async def store_stats(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.GetStoreStatsRequest(app_name=world.app_a)
    return await code_of(world.stub.GetStoreStats(request, metadata=md))


async def append_events(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.AppendEventsRequest(session_id=session_id, events=[event("more")])
    return await code_of(world.stub.AppendEvents(iter([request]), metadata=md))


async def append_stream(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.AppendStreamRequest(session_id=session_id, events=[event("more")])
    return await stream_code(world.stub.AppendStream(iter([request]), metadata=md), acks=True)


async def list_events(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.ListEventsRequest(session_id=session_id)
    return await code_of(world.stub.ListEvents(request, metadata=md))


async def session_stats(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.GetSessionStatsRequest(session_id=session_id)
    return await code_of(world.stub.GetSessionStats(request, metadata=md))


async def stream_session(world: World, md: Metadata) -> grpc.StatusCode:
    session_id = await new_session(world, world.app_a)
    request = pb.StreamEventsRequest(session_id=session_id)
    return await stream_code(world.stub.StreamEvents(request, metadata=md))


async def stream_feed(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.StreamEventsRequest(app_name=world.app_a)
    return await stream_code(world.stub.StreamEvents(request, metadata=md))


async def search(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.SearchRequest(app_name=world.app_a, query="refund")
    return await code_of(world.stub.Search(request, metadata=md))


async def get_state(world: World, md: Metadata) -> grpc.StatusCode:
    request = pb.GetStateRequest(app_name=world.app_a, user_id="u")
    return await code_of(world.stub.GetState(request, metadata=md))


async def update_state(world: World, md: Metadata) -> grpc.StatusCode:
    delta = struct_pb2.Struct()
    delta.update({"seen": True})
    request = pb.UpdateStateRequest(app_name=world.app_a, state_delta=delta)
    return await code_of(world.stub.UpdateState(request, metadata=md))


# Each call on app A, and what another app's key gets: NOT_FOUND for a session named by id
# (exactly as for a missing one), PERMISSION_DENIED for a call naming app A.
CALLS: dict[str, tuple[Call, bool, grpc.StatusCode]] = {
    # name: (call, writes, what a key of app B gets)
    "CreateSession": (create, True, DENIED),
    "GetSession": (get, False, NOT_FOUND),
    "ListSessions": (list_sessions, False, DENIED),
    "UpdateSession": (update, True, NOT_FOUND),
    "DeleteSession": (delete, True, NOT_FOUND),
    "UndeleteSession": (undelete, True, NOT_FOUND),
    "DeleteSessions": (delete_many, True, DENIED),
    "GetStoreStats": (store_stats, False, DENIED),
    "AppendEvents": (append_events, True, NOT_FOUND),
    "AppendStream": (append_stream, True, NOT_FOUND),
    "ListEvents": (list_events, False, NOT_FOUND),
    "GetSessionStats": (session_stats, False, NOT_FOUND),
    "StreamEvents (session)": (stream_session, False, NOT_FOUND),
    "StreamEvents (feed)": (stream_feed, False, DENIED),
    "Search": (search, False, DENIED),
    "GetState": (get_state, False, DENIED),
    "UpdateState": (update_state, True, DENIED),
}


def expected(credential: str, rpc: str) -> grpc.StatusCode:
    _, writes, other_app = CALLS[rpc]
    if credential in {"no key", "unknown", "not a bearer", "revoked", "expired"}:
        return UNAUTHENTICATED
    if credential == "writer of B":
        return other_app
    if credential == "reader of A" and writes:
        return DENIED
    if rpc == "DeleteSessions" and credential in {"writer of A", "reader of A"}:
        return DENIED  # a whole app's sessions at once takes an admin
    return OK


CREDENTIALS = [
    "no key", "unknown", "not a bearer", "revoked", "expired", "writer of B", "reader of A",
    "writer of A", "admin of A", "admin of every app",
]  # fmt: skip


@pytest.mark.parametrize("credential", CREDENTIALS)
async def test_every_rpc_answers_each_credential_as_it_should(
    world: World, credential: str
) -> None:
    got = {rpc: await call(world, world.keys[credential]) for rpc, (call, _, _) in CALLS.items()}
    want = {rpc: expected(credential, rpc) for rpc in CALLS}
    assert got == want


async def test_the_denials_say_nothing_about_the_key_or_the_other_app(world: World) -> None:
    answers = set()
    for credential in ("no key", "unknown", "revoked", "expired", "not a bearer"):
        try:
            await world.stub.GetStoreStats(
                pb.GetStoreStatsRequest(), metadata=world.keys[credential]
            )
        except grpc.aio.AioRpcError as error:
            answers.add((error.code(), error.details()))
    assert len(answers) == 1  # one and the same answer for every bad credential


async def test_a_scoped_key_naming_no_app_sees_only_its_apps(world: World) -> None:
    in_a = await new_session(world, world.app_a)
    in_b = await new_session(world, world.app_b)
    key_b = world.keys["writer of B"]
    listed = await world.stub.ListSessions(pb.ListSessionsRequest(page_size=1000), metadata=key_b)
    assert in_b in {s.id for s in listed.sessions}
    assert {s.app_name for s in listed.sessions} == {world.app_b}
    found = await world.stub.Search(pb.SearchRequest(query="refund invoice"), metadata=key_b)
    assert in_a not in {hit.event.session_id for hit in found.hits}
    assert {hit.event.session_id for hit in found.hits} <= {s.id for s in listed.sessions} | {in_b}
    stats = await world.stub.GetStoreStats(pb.GetStoreStatsRequest(), metadata=key_b)
    everything = await world.stub.GetStoreStats(
        pb.GetStoreStatsRequest(), metadata=world.keys["admin of every app"]
    )
    assert stats.total_sessions < everything.total_sessions


async def test_a_session_kept_in_memory_is_still_not_found_for_another_apps_key(
    world: World,
) -> None:
    """A replay and pages by a key that may read the session keep it in the replica's memory;
    a key of another app still finds nothing there, whichever way it reads."""
    in_a = await new_session(world, world.app_a)
    key_a, key_b = world.keys["reader of A"], world.keys["writer of B"]
    stream = world.stub.StreamEvents(pb.StreamEventsRequest(session_id=in_a), metadata=key_a)
    assert await stream_code(stream) == OK
    for filters in ({}, {"descending": True}, {"types": ["message"]}, {"after_seq": 1}):
        pages = pb.ListEventsRequest(session_id=in_a, **filters)
        assert await code_of(world.stub.ListEvents(pages, metadata=key_a)) == OK
        assert await code_of(world.stub.ListEvents(pages, metadata=key_b)) == NOT_FOUND
    stream = world.stub.StreamEvents(pb.StreamEventsRequest(session_id=in_a), metadata=key_b)
    assert await stream_code(stream) == NOT_FOUND


async def test_a_follower_of_app_a_sees_nothing_of_app_b(world: World) -> None:
    key_a, key_b = world.keys["writer of A"], world.keys["writer of B"]
    in_a = await new_session(world, world.app_a)
    in_b = await new_session(world, world.app_b)
    follower = world.stub.StreamEvents(
        pb.StreamEventsRequest(app_name=world.app_a, follow=True), metadata=key_a
    )
    responses = aiter(follower)
    while not (await anext(responses)).caught_up:
        pass
    await world.stub.AppendEvents(
        iter([pb.AppendEventsRequest(session_id=in_b, events=[event("b only")])]), metadata=key_b
    )
    await world.stub.AppendEvents(
        iter([pb.AppendEventsRequest(session_id=in_a, events=[event("a marker")])]),
        metadata=key_a,
    )
    seen: list[event_pb2.Event] = []
    while not any(e.content.text == "a marker" for e in seen):
        seen.extend((await anext(responses)).events)
    follower.cancel()
    assert all(e.session_id != in_b for e in seen)


async def test_keys_are_made_listed_and_revoked_with_the_command(database_url: str) -> None:
    flags = ("--database-url", database_url, "--log-level", "WARNING")
    code, stdout, stderr = await run_agentstore(
        "keys", "create", "--app", "cli-app", "--role", "reader", "--name", "from the cli",
        "--expires", "90d", *flags,
    )  # fmt: skip
    assert code == 0, stderr.decode()
    key = stdout.decode().strip().splitlines()[-1]
    assert key.startswith("as_")
    assert len(key) == 46
    code, listing, _ = await run_agentstore("keys", "list", *flags)
    assert code == 0
    assert key not in listing.decode()  # only its hash is kept
    (line,) = [row for row in listing.decode().splitlines() if "from the cli" in row]
    key_id = line.split()[0]
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute("SELECT key_hash FROM api_keys WHERE id = %s", (key_id,))
        (stored,) = await cursor.fetchone()  # type: ignore[misc]
    assert key.encode() not in bytes(stored)
    code, _, _ = await run_agentstore("keys", "revoke", key_id, *flags)
    assert code == 0
    code, _, stderr = await run_agentstore("keys", "revoke", key_id, *flags)
    assert code == 1
    assert b"no unrevoked key" in stderr


async def test_a_key_without_apps_must_be_an_admin(database_url: str) -> None:
    code, _, stderr = await run_agentstore(
        "keys", "create", "--role", "writer", "--database-url", database_url
    )
    assert code == 1
    assert b"only an admin may have none" in stderr


async def test_an_open_server_on_a_non_loopback_address_refuses_to_start(
    database_url: str,
) -> None:
    code, _, stderr = await run_agentstore(
        "serve", "--listen", "0.0.0.0:0", "--database-url", database_url
    )
    assert code == 1
    assert b"--insecure" in stderr
    assert b"without authentication" in stderr


@pytest.mark.parametrize("flags", [("--insecure",), ("--auth", "api-key")], ids=str)
async def test_insecure_or_keys_let_it_serve_a_non_loopback_address(
    database_url: str, flags: tuple[str, ...]
) -> None:
    server = ServerProcess("--listen", "0.0.0.0:0", "--database-url", database_url, *flags)
    address = await server.start()
    port = address.rpartition(":")[2]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert await server.stop() == 0


async def test_a_revoked_key_ends_its_open_streams(database_url: str, world: World) -> None:
    settings = server_settings(database_url)

    async def make(keys: KeyService) -> tuple[str, str]:
        stored, secret = await keys.create(apps=[world.app_a], role=Role.WRITER, name="doomed")
        return stored.id, secret

    key_id, secret = await with_keys(settings, make)
    session_id = await new_session(world, world.app_a)
    follower = world.stub.StreamEvents(
        pb.StreamEventsRequest(session_id=session_id, follow=True), metadata=bearer(secret)
    )
    responses = aiter(follower)
    while not (await anext(responses)).caught_up:
        pass
    outgoing: asyncio.Queue[pb.AppendStreamRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.AppendStreamRequest]:
        while True:
            yield await outgoing.get()

    writer = world.stub.AppendStream(requests(), metadata=bearer(secret))
    acks = aiter(writer)
    outgoing.put_nowait(pb.AppendStreamRequest(session_id=session_id, events=[event("before")]))
    assert list((await anext(acks)).seqs) == [2]

    await with_keys(settings, lambda keys: keys.revoke(key_id))
    # The follower is told within a few seconds, with nothing else written meanwhile.
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(drain(responses), 10)
    assert ended.value.code() == UNAUTHENTICATED
    # The writer's next request finds the key revoked and ends the stream.
    outgoing.put_nowait(pb.AppendStreamRequest(session_id=session_id, events=[event("after")]))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(anext(acks), 10)
    assert refused.value.code() == UNAUTHENTICATED
    events = await world.stub.ListEvents(
        pb.ListEventsRequest(session_id=session_id), metadata=world.keys["admin of every app"]
    )
    assert [e.content.text for e in events.events] == ["refund invoice", "before"]


async def drain(responses: AsyncIterator[object]) -> None:
    async for _ in responses:
        pass


async def test_a_key_over_its_limits_is_told_when_to_retry_and_others_go_on(
    database_url: str, world: World
) -> None:
    async with extra_server(
        database_url, auth="api-key", key_max_streams=1, key_append_rate=0.01, key_append_burst=3
    ) as limited:
        key_a, key_b = world.keys["writer of A"], world.keys["writer of B"]
        in_a = await new_session(world, world.app_a)
        in_b = await new_session(world, world.app_b)
        follower = limited.StreamEvents(
            pb.StreamEventsRequest(session_id=in_a, follow=True), metadata=key_a
        )
        responses = aiter(follower)
        while not (await anext(responses)).caught_up:
            pass
        second = limited.StreamEvents(pb.StreamEventsRequest(session_id=in_a), metadata=key_a)
        refused = await stream_code(second)
        assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
        other = limited.StreamEvents(pb.StreamEventsRequest(session_id=in_b), metadata=key_b)
        assert await stream_code(other) == OK
        follower.cancel()

        three = pb.AppendStreamRequest(session_id=in_a, events=[event(str(n)) for n in range(3)])
        one_more = pb.AppendStreamRequest(session_id=in_a, events=[event("over")])
        acks = [ack async for ack in limited.AppendStream(iter([three, one_more]), metadata=key_a)]
        assert [len(ack.seqs) for ack in acks] == [3, 0]
        assert acks[1].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in acks[1].error.details)
        assert retry.retry_delay.ToTimedelta().total_seconds() > 0
        b_acks = [
            ack
            async for ack in limited.AppendStream(
                iter([pb.AppendStreamRequest(session_id=in_b, events=[event("b")])]),
                metadata=key_b,
            )
        ]
        assert not b_acks[0].HasField("error")


async def test_only_an_admin_key_keeps_an_imported_time(world: World) -> None:
    """An import keeps sessions' and events' own times; time filters and retention trust them,
    so other keys may not set them, and the refusal names the field."""
    then = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    create = pb.CreateSessionRequest(app_name=world.app_a, create_time=then)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.CreateSession(create, metadata=world.keys["writer of A"])
    assert refused.value.code() == DENIED
    assert "create_time" in (refused.value.details() or "")
    session = await world.stub.CreateSession(create, metadata=world.keys["admin of A"])
    assert session.create_time == then

    imported = event("from another store")
    imported.create_time.CopyFrom(then)
    acks = world.stub.AppendStream(
        iter(
            [
                pb.AppendStreamRequest(session_id=session.id, events=[event("now"), imported]),
            ]
        ),
        metadata=world.keys["writer of A"],
    )
    (ack,) = [response async for response in acks]
    assert ack.error.code == DENIED.value[0]
    assert "events[1].create_time" in ack.error.message
    appended = world.stub.AppendStream(
        iter([pb.AppendStreamRequest(session_id=session.id, events=[event("now"), imported])]),
        metadata=world.keys["admin of A"],
    )
    assert [response.seqs async for response in appended] == [[1, 2]]
    page = await world.stub.ListEvents(
        pb.ListEventsRequest(session_id=session.id), metadata=world.keys["reader of A"]
    )
    assert page.events[1].create_time == then
    assert page.events[0].create_time.seconds > then.seconds


async def test_a_kept_time_in_the_future_is_invalid(world: World) -> None:
    admin = world.keys["admin of A"]
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await world.stub.CreateSession(
            pb.CreateSessionRequest(app_name=world.app_a, create_time=future), metadata=admin
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "create_time" in (invalid.value.details() or "")
