"""AgentstoreSessionService against the contract of ADK's session services (the cases of
adk-python's own session tests, written anew here): a real server, ADK's real types."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.adk.cli.service_registry import get_service_registry
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events import Event, EventActions
from google.adk.sessions import Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from agentstore.client.adk import AgentstoreSessionService
from agentstore.client.adk_events import session_key

try:
    from google.adk.errors._stale_session_error import StaleSessionError
except ImportError:  # pragma: no cover
    StaleSessionError = ValueError  # type: ignore[assignment,misc]


README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def service(server: AgentStoreServer) -> AsyncIterator[AgentstoreSessionService]:
    opened = AgentstoreSessionService(f"127.0.0.1:{server.port}")
    yield opened
    await opened.close()


def said(author: str, text: str, **fields: object) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        invocation_id="inv-1",
        author=author,
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_missing_session_is_none(service: AgentstoreSessionService, app_name: str) -> None:
    assert await service.get_session(app_name=app_name, user_id="u", session_id="nope") is None


async def test_create_get_delete_and_create_again(
    service: AgentstoreSessionService, app_name: str
) -> None:
    session = await service.create_session(app_name=app_name, user_id="u", state={"k": "v"})
    assert (session.app_name, session.user_id, session.state) == (app_name, "u", {"k": "v"})
    assert session.id
    assert session.last_update_time <= time.time()
    got = await service.get_session(app_name=app_name, user_id="u", session_id=session.id)
    assert got == session
    await service.delete_session(app_name=app_name, user_id="u", session_id=session.id)
    assert await service.get_session(app_name=app_name, user_id="u", session_id=session.id) is None
    # Deleting again is no error, and the id can be used again.
    await service.delete_session(app_name=app_name, user_id="u", session_id=session.id)
    again = await service.create_session(app_name=app_name, user_id="u", session_id=session.id)
    assert again.state == {}


async def test_an_id_taken_is_already_exists_but_other_apps_and_users_may_use_it(
    service: AgentstoreSessionService, app_name: str
) -> None:
    await service.create_session(app_name=app_name, user_id="u", session_id="s1")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=app_name, user_id="u", session_id="s1")
    other_app = await service.create_session(
        app_name=f"{app_name}-b", user_id="u", session_id="s1", state={"app": "b"}
    )
    other_user = await service.create_session(
        app_name=app_name, user_id="w", session_id="s1", state={"user": "w"}
    )
    assert (other_app.id, other_user.id) == ("s1", "s1")
    mine = await service.get_session(app_name=app_name, user_id="u", session_id="s1")
    assert mine is not None
    assert mine.state == {}


async def test_list_sessions_of_a_user_or_of_everyone_oldest_first(
    service: AgentstoreSessionService, app_name: str
) -> None:
    for user, session_id in (("u1", "a"), ("u1", "b"), ("u2", "c")):
        await service.create_session(
            app_name=app_name, user_id=user, session_id=session_id, state={"key": session_id}
        )
    first = await service.get_session(app_name=app_name, user_id="u1", session_id="a")
    assert first is not None
    await service.append_event(first, said("user", "now a is the most recent"))
    of_u1 = (await service.list_sessions(app_name=app_name, user_id="u1")).sessions
    assert [s.id for s in of_u1] == ["b", "a"]
    assert [s.state for s in of_u1] == [{"key": "b"}, {"key": "a"}]
    assert all(s.events == [] for s in of_u1)
    everyone = (await service.list_sessions(app_name=app_name)).sessions
    assert sorted(s.id for s in everyone) == ["a", "b", "c"]


async def test_state_scopes_as_adk_keeps_them(
    service: AgentstoreSessionService, app_name: str
) -> None:
    first = await service.create_session(
        app_name=app_name,
        user_id="u1",
        session_id="s1",
        state={"app:k1": "v1", "user:name": "Ann", "temp:scratch": 1, "own": 1},
    )
    assert first.state == {"app:k1": "v1", "user:name": "Ann", "own": 1}
    event = Event(
        invocation_id="inv-1",
        author="user",
        actions=EventActions(
            state_delta={"app:k2": "v2", "user:seen": True, "temp:step": 2, "own": 2}
        ),
    )
    await service.append_event(first, event)
    # The session object in hand sees temp: keys for the rest of the invocation...
    assert first.state["temp:step"] == 2
    # ...but they are never stored.
    stored = await service.get_session(app_name=app_name, user_id="u1", session_id="s1")
    assert stored is not None
    assert stored.state == {"app:k1": "v1", "app:k2": "v2", "user:name": "Ann",
                            "user:seen": True, "own": 2}  # fmt: skip
    assert "temp:step" not in (stored.events[0].actions.state_delta or {})

    same_user = await service.create_session(app_name=app_name, user_id="u1", session_id="s2")
    other_user = await service.create_session(app_name=app_name, user_id="u2", session_id="s3")
    assert same_user.state == {"app:k1": "v1", "app:k2": "v2", "user:name": "Ann",
                               "user:seen": True}  # fmt: skip
    assert other_user.state == {"app:k1": "v1", "app:k2": "v2"}
    assert await service.get_user_state(app_name=app_name, user_id="u1") == {
        "name": "Ann",
        "seen": True,
    }
    assert await service.get_user_state(app_name=app_name, user_id="nobody") == {}


async def test_events_come_back_in_order_whole_or_recent_or_after_a_time(
    service: AgentstoreSessionService, app_name: str
) -> None:
    session = await service.create_session(app_name=app_name, user_id="u")
    events = [said("user" if n % 2 == 0 else "agent", f"turn {n}") for n in range(6)]
    for event in events:
        await service.append_event(session, event)
    whole = await service.get_session(app_name=app_name, user_id="u", session_id=session.id)
    assert whole is not None
    assert whole.events == events
    assert whole.last_update_time >= events[-1].timestamp - 1

    def read(config: GetSessionConfig) -> asyncio.Future[Session | None]:
        return asyncio.ensure_future(
            service.get_session(
                app_name=app_name, user_id="u", session_id=session.id, config=config
            )
        )

    recent = await read(GetSessionConfig(num_recent_events=2))
    assert recent is not None
    assert recent.events == events[-2:]
    none = await read(GetSessionConfig(num_recent_events=0))
    assert none is not None
    assert none.events == []
    after = await read(GetSessionConfig(after_timestamp=events[3].timestamp))
    assert after is not None
    assert after.events == events[3:]
    both = await read(GetSessionConfig(after_timestamp=events[1].timestamp, num_recent_events=3))
    assert both is not None
    assert both.events == events[-3:]


async def test_every_field_of_an_adk_event_round_trips(
    service: AgentstoreSessionService, client: AsyncClient, app_name: str
) -> None:
    session = await service.create_session(app_name=app_name, user_id="u")
    call = types.FunctionCall(id="call-1", name="lookup", args={"order": 42, "deep": {"a": [1]}})
    reply = types.FunctionResponse(id="call-1", name="lookup", response={"status": "shipped"})
    events = [
        Event(
            invocation_id="inv-2",
            author="planner",
            branch="root.planner",
            content=types.Content(role="model", parts=[types.Part(function_call=call)]),
            long_running_tool_ids={"call-1"},
            actions=EventActions(
                state_delta={"step": 1},
                artifact_delta={"report.txt": 3},
                transfer_to_agent="billing",
                escalate=True,
                skip_summarization=True,
            ),
            custom_metadata={"trace": "t-9"},
            turn_complete=True,
        ),
        Event(
            invocation_id="inv-2",
            author="planner",
            content=types.Content(role="user", parts=[types.Part(function_response=reply)]),
        ),
        Event(
            invocation_id="inv-2",
            author="planner",
            content=types.Content(
                role="model",
                parts=[types.Part(text="Shipped on Monday."), types.Part(text="Anything else?")],
            ),
            error_code="NONE",
            interrupted=False,
        ),
    ]
    for event in events:
        await service.append_event(session, event)
    stored = await service.get_session(app_name=app_name, user_id="u", session_id=session.id)
    assert stored is not None
    assert stored.events == events
    compared = sum(len(e.model_dump(exclude_none=True)) for e in events)
    assert compared >= 20

    # And in agentstore's terms: searchable text, author, invocation and branch mapped.
    key = session_key(app_name, "u", session.id)
    ours = [event async for event in client.list_events(key)]
    assert [(e.type, e.author, e.invocation_id, e.branch) for e in ours] == [
        ("function_call", "planner", "inv-2", "root.planner"),
        ("function_response", "planner", "inv-2", ""),
        ("message", "planner", "inv-2", ""),
    ]
    hits = [hit async for hit in client.search("shipped Monday", session_id=key)]
    assert [hit.event.seq for hit in hits] == [3]


async def test_a_stale_copy_gets_adks_error_and_loses_nothing(
    service: AgentstoreSessionService, app_name: str
) -> None:
    created = await service.create_session(app_name=app_name, user_id="u", session_id="shared")
    other = await service.create_session(app_name=app_name, user_id="u", session_id="other")
    one = await service.get_session(app_name=app_name, user_id="u", session_id="shared")
    two = await service.get_session(app_name=app_name, user_id="u", session_id="shared")
    assert one is not None
    assert two is not None
    await service.append_event(one, said("user", "first writer"))
    # Writers of other sessions are never stale.
    await service.append_event(other, said("user", "elsewhere"))
    with pytest.raises(StaleSessionError):
        await service.append_event(two, said("user", "second writer, stale"))
    # One writer, many appends in a row, is never stale either.
    await service.append_event(one, said("agent", "first writer again"))
    stored = await service.get_session(app_name=app_name, user_id="u", session_id="shared")
    assert stored is not None
    assert [e.content.parts[0].text for e in stored.events if e.content and e.content.parts] == [
        "first writer",
        "first writer again",
    ]
    del created


async def test_partial_events_are_not_stored(
    service: AgentstoreSessionService, app_name: str
) -> None:
    session = await service.create_session(app_name=app_name, user_id="u")
    await service.append_event(session, said("agent", "Hel", partial=True))
    stored = await service.get_session(app_name=app_name, user_id="u", session_id=session.id)
    assert stored is not None
    assert stored.events == []


async def test_the_agentstore_uri_scheme_is_registered(
    server: AgentStoreServer, app_name: str
) -> None:
    made = get_service_registry().create_session_service(f"agentstore://127.0.0.1:{server.port}")
    assert isinstance(made, AgentstoreSessionService)
    try:
        session = await made.create_session(app_name=app_name, user_id="u")
        assert await made.get_session(app_name=app_name, user_id="u", session_id=session.id)
    finally:
        await made.close()


async def test_the_readmes_services_yaml_serves_adk_web(
    server: AgentStoreServer, app_name: str, tmp_path: Path
) -> None:
    """What `adk web --session_service_uri agentstore://...` does with the README's
    services.yaml, in a fresh process: load the agents folder's services, then make the
    session service from the URI, and use it."""
    readme = README.read_text()
    (services,) = re.findall(r"```yaml\n(services:\n.*?)```", readme, re.DOTALL)
    (tmp_path / "services.yaml").write_text(services)
    script = f"""
import asyncio
from google.adk.cli.service_registry import get_service_registry, load_services_module
load_services_module({str(tmp_path)!r})
service = get_service_registry().create_session_service("agentstore://127.0.0.1:{server.port}")
async def main():
    session = await service.create_session(app_name={app_name!r}, user_id="u")
    print(type(service).__name__, session.id)
    await service.close()
asyncio.run(main())
"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    name, session_id = out.decode().split()
    assert name == "AgentstoreSessionService"
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        stored = await client.get_session(session_key(app_name, "u", session_id))
    assert stored.metadata == {"adk_session_id": session_id}
