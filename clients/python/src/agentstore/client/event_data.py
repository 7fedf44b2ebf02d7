"""Typed `data` of the well-known event types (from the agent frameworks our users run).

The server validates `data` of these types on append; any other type's `data` is free-form.
Each model allows extra keys: clients may record more than the fields named here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REMOVAL_NOTICE",
    "WELL_KNOWN_TYPES",
    "AgentEndData",
    "AgentErrorData",
    "AgentStartData",
    "EventData",
    "EventsRemovedData",
    "FinishData",
    "LLMEndData",
    "LLMStartData",
    "LLMStreamData",
    "MessageCompleteData",
    "MessageDeltaData",
    "NodeEndData",
    "NodeStartData",
    "StageChangeData",
    "ToolEndData",
    "ToolStartData",
]

NonNegative = Field(default=None, ge=0)


class EventData(BaseModel):
    """Base of the typed data models."""

    model_config = ConfigDict(extra="allow", frozen=True)


class AgentStartData(EventData):
    """`agent_start`: an agent run begins."""

    agent_name: str
    input: str | None = None


class AgentEndData(EventData):
    """`agent_end`: an agent run finished successfully."""

    agent_name: str
    output: str | None = None
    duration_ms: float | None = NonNegative


class AgentErrorData(EventData):
    """`agent_error`: an agent run failed."""

    error: str
    agent_name: str | None = None
    error_type: str | None = None
    traceback: str | None = None


class LLMStartData(EventData):
    """`llm_start`: a model call begins."""

    model: str
    agent_name: str | None = None
    prompt_tokens: int | None = NonNegative


class LLMStreamData(EventData):
    """`llm_stream`: a piece of a model's output as it is generated."""

    delta: str
    model: str | None = None
    index: int | None = NonNegative


class LLMEndData(EventData):
    """`llm_end`: a model call finished."""

    model: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = NonNegative
    completion_tokens: int | None = NonNegative
    total_tokens: int | None = NonNegative


class ToolStartData(EventData):
    """`tool_start`: a tool is called."""

    tool_name: str
    tool_call_id: str | None = None
    arguments: dict[str, Any] | None = None


class ToolEndData(EventData):
    """`tool_end`: a tool returned (or failed: `error`)."""

    tool_name: str
    tool_call_id: str | None = None
    result: Any = None
    error: str | None = None
    duration_ms: float | None = NonNegative


class MessageDeltaData(EventData):
    """`message_delta`: a piece of a message as it is written."""

    delta: str
    message_id: str | None = None
    role: str | None = None


class MessageCompleteData(EventData):
    """`message_complete`: a whole message (of a node or agent)."""

    content: str
    message_id: str | None = None
    role: str | None = None
    agent_name: str | None = None


class NodeStartData(EventData):
    """`node_start`: a graph node begins."""

    node_name: str
    agent_name: str | None = None


class NodeEndData(EventData):
    """`node_end`: a graph node finished."""

    node_name: str
    agent_name: str | None = None
    duration_ms: float | None = NonNegative


class StageChangeData(EventData):
    """`stage_change`: a workflow moves between stages (requirement -> design -> ...)."""

    to_stage: str
    from_stage: str | None = None


class FinishData(EventData):
    """`finish`: the whole workflow ends."""

    status: str | None = None
    reason: str | None = None
    output: str | None = None


# The type of the event the server appends when RemoveEvents takes events back; clients
# cannot append it.
REMOVAL_NOTICE = "events_removed"


class EventsRemovedData(EventData):
    """`events_removed`: events were taken back (RemoveEvents); written by the server."""

    ranges: list[tuple[int, int]]
    count: int

    def seqs(self) -> list[int]:
        """Every removed seq, in order."""
        return [seq for first, last in self.ranges for seq in range(first, last + 1)]


WELL_KNOWN_TYPES: dict[str, type[EventData]] = {
    "agent_start": AgentStartData,
    "agent_end": AgentEndData,
    "agent_error": AgentErrorData,
    "llm_start": LLMStartData,
    "llm_stream": LLMStreamData,
    "llm_end": LLMEndData,
    "tool_start": ToolStartData,
    "tool_end": ToolEndData,
    "message_delta": MessageDeltaData,
    "message_complete": MessageCompleteData,
    "node_start": NodeStartData,
    "node_end": NodeEndData,
    "stage_change": StageChangeData,
    "finish": FinishData,
    REMOVAL_NOTICE: EventsRemovedData,
}
