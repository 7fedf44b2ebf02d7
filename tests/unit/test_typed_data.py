"""Event.typed_data() gives the model of a well-known type and a dict otherwise."""

from __future__ import annotations

from typing import Any

from agentstore.client import Event
from agentstore.client.event_data import EventData, LLMStreamData, StageChangeData, ToolStartData
from agentstore.v1 import event_pb2


def get_typed_data(message: event_pb2.Event) -> EventData | dict[str, Any]:
    return Event.from_proto(message).typed_data()


def make(type_: str, data: dict[str, object]) -> event_pb2.Event:
    event = event_pb2.Event(type=type_)
    event.data.update(data)
    return event


def test_a_well_known_type_gives_its_model() -> None:
    typed = get_typed_data(make("llm_stream", {"delta": "Hel", "index": 3}))
    assert isinstance(typed, LLMStreamData)
    assert (typed.delta, typed.index) == ("Hel", 3)
    stage = get_typed_data(make("stage_change", {"from_stage": "design", "to_stage": "build"}))
    assert isinstance(stage, StageChangeData)
    assert stage.to_stage == "build"


def test_extra_keys_are_kept() -> None:
    typed = get_typed_data(make("tool_start", {"tool_name": "search", "shard": "eu"}))
    assert isinstance(typed, ToolStartData)
    assert typed.model_extra == {"shard": "eu"}


def test_another_type_gives_a_dict() -> None:
    assert get_typed_data(make("custom", {"a": 1, "b": [True]})) == {"a": 1, "b": [True]}
