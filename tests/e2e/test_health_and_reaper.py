"""Health, reflection, and the background reaper of expired sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server


@pytest.mark.parametrize("service", ["", "agentstore.v1.SessionService"])
async def test_health_is_serving(channel: grpc.aio.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in reflection.ServerReflectionInfo(requests()):
        names = {service.name for service in response.list_services_response.service}
        break
    assert {"agentstore.v1.SessionService", "grpc.health.v1.Health"} <= names


async def expire_now(database_url: str, session_id: str, ago: timedelta) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(
            "UPDATE sessions SET expire_time = now() - %s WHERE id = %s", (ago, session_id)
        )


def reaping_server(
    database_url: str, **settings: str
) -> contextlib.AbstractAsyncContextManager[SessionServiceStub]:
    """A server whose reaper runs every 20 ms, with the given retention settings."""
    return extra_server(database_url, reaper_interval="20ms", **settings)


async def stored_ids(stub: SessionServiceStub, app_name: str) -> set[str]:
    listed = await stub.ListSessions(pb.ListSessionsRequest(app_name=app_name, show_deleted=True))
    return {session.id for session in listed.sessions}


async def wait_until_purged(stub: SessionServiceStub, app_name: str, session_id: str) -> None:
    """Until the reaper has purged the session; each listing is a round trip."""
    async with asyncio.timeout(30):
        while session_id in await stored_ids(stub, app_name):
            pass


async def test_the_reaper_purges_sessions_expired_past_the_grace_period(
    database_url: str, app_name: str
) -> None:
    async with reaping_server(database_url, expired_grace="1h") as stub:
        ttl = duration_pb2.Duration(seconds=3600)
        old = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, ttl=ttl))
        recent = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, ttl=ttl))
        live = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        await expire_now(database_url, old.id, timedelta(hours=2))
        await expire_now(database_url, recent.id, timedelta(minutes=1))
        await wait_until_purged(stub, app_name, old.id)
        assert await stored_ids(stub, app_name) == {recent.id, live.id}


async def test_the_reaper_purges_soft_deleted_sessions_after_the_retention(
    database_url: str, app_name: str
) -> None:
    async with reaping_server(database_url, deleted_retention="1d") as stub:
        old = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        recent = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name))
        for session in (old, recent):
            await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session.id))
        async with await psycopg.AsyncConnection.connect(database_url) as connection:
            await connection.execute(
                "UPDATE sessions SET delete_time = now() - interval '2 days' WHERE id = %s",
                (old.id,),
            )
        await wait_until_purged(stub, app_name, old.id)
        assert await stored_ids(stub, app_name) == {recent.id}
