"""ADK's own Runner, driving an agent with a scripted model through multi-turn flows twice:
once on ADK's InMemorySessionService (the reference), once on agentstore. What each stores and
returns is compared field by field, ids and times made comparable."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.events import Event
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService, InMemorySessionService, Session
from google.adk.tools import ToolContext
from google.genai import types

from agentstore.app import AgentStoreServer
from agentstore.client.adk import AgentstoreSessionService


class ScriptedModel(BaseLlm):
    """Answers each model call with the next response of its script."""

    script: list[LlmResponse]

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        yield self.script.pop(0)


def reply(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def calls(name: str, **args: Any) -> LlmResponse:
    call = types.FunctionCall(id=f"call-{name}", name=name, args=args)
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


def look_up_order(order: int, tool_context: ToolContext) -> dict[str, Any]:
    """Finds an order; remembers it for the user, counts lookups for the app."""
    tool_context.state["user:last_order"] = order
    tool_context.state["app:lookups"] = (tool_context.state.get("app:lookups") or 0) + 1
    tool_context.state["temp:raw"] = {"order": order}
    tool_context.state["status"] = "shipped"
    return {"order": order, "status": "shipped"}


FLOWS: dict[str, tuple[list[str], list[LlmResponse]]] = {
    "tool call with state in three scopes, then small talk": (
        ["Where is order 42?", "Thanks!"],
        [
            calls("look_up_order", order=42),
            reply("Order 42 has shipped."),
            reply("You're welcome."),
        ],
    ),
    "three plain turns": (
        ["Hi", "What can you do?", "Bye"],
        [reply("Hello!"), reply("I look up orders."), reply("Goodbye.")],
    ),
}


async def run_flow(
    service: BaseSessionService, app_name: str, user_id: str, messages: list[str], script: list
) -> tuple[Session, list[Event]]:
    agent = LlmAgent(
        name="support",
        model=ScriptedModel(model="scripted", script=list(script)),
        instruction="Help with orders.",
        tools=[look_up_order],
        output_key="last_answer",
    )
    runner = Runner(app_name=app_name, agent=agent, session_service=service)
    session = await service.create_session(
        app_name=app_name, user_id=user_id, state={"user:name": "Ann", "channel": "web"}
    )
    seen: list[Event] = []
    for text in messages:
        message = types.Content(role="user", parts=[types.Part(text=text)])
        async for event in runner.run_async(
            user_id=user_id, session_id=session.id, new_message=message
        ):
            seen.append(event)
    stored = await service.get_session(app_name=app_name, user_id=user_id, session_id=session.id)
    assert stored is not None
    return stored, seen


def comparable(value: Any, names: dict[str, str]) -> Any:
    """`value` with the ids and times that differ between two runs replaced by stable names
    (the first id seen is id-0, the next id-1, ...)."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key in {"id", "invocation_id", "timestamp", "last_update_time"} and item:
                item = names.setdefault(f"{key}:{item}", f"{key}-{len(names)}")
            result[key] = comparable(item, names)
        return result
    if isinstance(value, list):
        return [comparable(item, names) for item in value]
    return value


def fields_of(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + fields_of(item) for item in value.values())
    if isinstance(value, list):
        return sum(fields_of(item) for item in value)
    return 0


@pytest.fixture
async def agentstore_service(server: AgentStoreServer) -> AsyncIterator[AgentstoreSessionService]:
    service = AgentstoreSessionService(f"127.0.0.1:{server.port}")
    yield service
    await service.close()


@pytest.mark.parametrize("flow", sorted(FLOWS))
async def test_a_runner_stores_and_reads_the_same_on_agentstore_as_in_memory(
    flow: str, agentstore_service: AgentstoreSessionService, app_name: str
) -> None:
    messages, script = FLOWS[flow]
    reference, reference_seen = await run_flow(
        InMemorySessionService(), app_name, "u1", messages, script
    )
    ours, ours_seen = await run_flow(agentstore_service, app_name, "u1", messages, script)

    expected = comparable(reference.model_dump(mode="json"), {})
    got = comparable(ours.model_dump(mode="json"), {})
    assert got == expected
    assert comparable([e.model_dump(mode="json") for e in ours_seen], {}) == comparable(
        [e.model_dump(mode="json") for e in reference_seen], {}
    )
    assert ours.state["user:name"] == "Ann"
    assert "temp:raw" not in ours.state
    # Enough was compared to mean something: every event's fields, the state, the session.
    assert fields_of(expected) > 40 * len(messages)
