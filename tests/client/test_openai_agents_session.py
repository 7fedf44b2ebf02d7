"""AgentstoreSession: the OpenAI Agents SDK's Session protocol on agentstore. The SDK's own
Runner with a scripted model runs the same flows on SQLiteSession (the reference) and on
agentstore, and what each stores and returns is compared field by field; then the protocol's
own contract: latest N in order, atomic pop under a racing writer, clear."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.items import ModelResponse, TResponseInputItem
from agents.memory.session import SessionABC
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from agentstore.app import AgentStoreServer
from agentstore.client import AsyncClient
from agentstore.client.openai_agents import AgentstoreSession

# The SDK would otherwise try to send its traces to OpenAI.
set_tracing_disabled(True)


class ScriptedModel(Model):
    """Answers each model call with the next outputs of its script."""

    def __init__(self, script: list[list[Any]]) -> None:
        self.script = list(script)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return ModelResponse(output=self.script.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the flows here do not stream")


def message(text: str, number: int) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{number}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def call(name: str, arguments: str, number: int) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        id=f"fc_{number}", call_id=f"call_{number}", type="function_call",
        name=name, arguments=arguments, status="completed",
    )  # fmt: skip


@function_tool
def order_status(order: int) -> str:
    """The status of an order."""
    return f"order {order} shipped on Monday"


FLOWS: dict[str, tuple[list[str], list[list[Any]]]] = {
    "a tool call between two turns": (
        ["Where is order 42?", "Thanks"],
        [
            [call("order_status", '{"order": 42}', 1)],
            [message("It shipped on Monday.", 2)],
            [message("You're welcome.", 3)],
        ],
    ),
    "three plain turns": (
        ["Hi", "What can you do?", "Bye"],
        [[message("Hello!", 1)], [message("I track orders.", 2)], [message("Goodbye.", 3)]],
    ),
}


async def run_flow(session: SessionABC, messages: list[str], script: list[list[Any]]) -> list[str]:
    agent = Agent(name="support", model=ScriptedModel(script), tools=[order_status])
    outputs = []
    for text in messages:
        result = await Runner.run(agent, text, session=session)
        outputs.append(str(result.final_output))
    return outputs


@pytest.fixture
async def ours(server: AgentStoreServer, app_name: str) -> AsyncIterator[AgentstoreSession]:
    session = AgentstoreSession(
        f"{app_name}-conversation", target=f"127.0.0.1:{server.port}", app_name=app_name
    )
    yield session
    await session.close()


def fields_of(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + fields_of(item) for item in value.values())
    if isinstance(value, list):
        return sum(fields_of(item) for item in value)
    return 0


@pytest.mark.parametrize("flow", sorted(FLOWS))
async def test_a_runner_stores_and_reads_the_same_on_agentstore_as_on_sqlite(
    flow: str, ours: AgentstoreSession
) -> None:
    messages, script = FLOWS[flow]
    reference = SQLiteSession("reference")
    try:
        expected_outputs = await run_flow(reference, messages, script)
        expected = await reference.get_items()
        expected_last_two = await reference.get_items(limit=2)
    finally:
        reference.close()
    got_outputs = await run_flow(ours, messages, script)
    assert got_outputs == expected_outputs
    assert await ours.get_items() == expected
    assert await ours.get_items(limit=2) == expected_last_two
    assert fields_of(expected) >= 4 * len(expected)


async def test_items_are_kept_whole_and_their_text_is_searchable(
    ours: AgentstoreSession, client: AsyncClient, app_name: str
) -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Is the parcel to Reykjavik late?"},
        {"type": "function_call", "call_id": "c1", "name": "track", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": {"eta": "Friday"}},  # type: ignore[typeddict-item]
    ]
    await ours.add_items(items)
    assert await ours.get_items() == items
    hits = [hit async for hit in client.search("Reykjavik", app_name=app_name)]
    assert [hit.event.seq for hit in hits] == [1]


async def test_pop_takes_the_newest_once_even_against_a_racing_writer(
    ours: AgentstoreSession, server: AgentStoreServer, app_name: str
) -> None:
    await ours.add_items([{"role": "user", "content": f"old {n}"} for n in range(10)])  # type: ignore[misc]
    others = [
        AgentstoreSession(ours.session_id, target=f"127.0.0.1:{server.port}", app_name=app_name)
        for _ in range(6)
    ]
    try:

        async def write() -> None:
            for n in range(5):
                await others[0].add_items([{"role": "user", "content": f"new {n}"}])

        popped = await asyncio.gather(*(other.pop_item() for other in others[1:]), write())
    finally:
        for other in others:
            await other.close()
    taken = [item["content"] for item in popped[:5] if item is not None]  # type: ignore[index]
    assert len(taken) == 5
    assert len(set(taken)) == 5
    remaining = [item["content"] for item in await ours.get_items()]  # type: ignore[typeddict-item]
    assert len(remaining) == 10
    assert set(taken).isdisjoint(remaining)
    assert await ours.pop_item() == {"role": "user", "content": remaining[-1]}


async def test_clear_then_go_on(ours: AgentstoreSession) -> None:
    assert await ours.pop_item() is None
    assert await ours.get_items() == []
    await ours.add_items([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    await ours.clear_session()
    assert await ours.get_items() == []
    await ours.add_items([{"role": "user", "content": "c"}])
    assert await ours.get_items() == [{"role": "user", "content": "c"}]
    assert await ours.get_items(limit=0) == []
