"""OpenAI Agents SDK items as agentstore events, and back: the one mapping, used by the
importer of SQLiteSession files (and by the session adapter).

An item (a Responses API input item: a message, a function call or its output, reasoning,
...) becomes one event:

- `type`: the item's `type` (`message` for a message item without one);
- `author` and `content.role`: the message's role; `assistant` for a function call,
  `tool` for its output;
- `content.text`: the item's text, for Search and for people: a message's text (its parts'
  texts joined by newlines), a call as `name(arguments)`, a call's output, reasoning's
  summary;
- `data.item`: the whole item as it was, so that nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentstore.client.convert import object_in_struct
from agentstore.client.types import Content, Event
from agentstore.v1 import event_pb2

__all__ = ["event_from_item", "item_from_event", "item_from_message", "item_text"]

# Where an event keeps its item: data.item.
_ITEM = "item"


def item_text(item: Mapping[str, Any]) -> tuple[str, str]:
    """(role, text) of an item, as its event's content shows it."""
    kind = item.get("type", "message")
    if kind == "message" or ("role" in item and "type" not in item):
        return str(item.get("role", "")), _text_of(item.get("content"))
    if kind == "function_call":
        return "assistant", f"{item.get('name', '')}({item.get('arguments', '')})"
    if kind == "function_call_output":
        output = item.get("output")
        return "tool", output if isinstance(output, str) else _text_of(output)
    if kind == "reasoning":
        return "assistant", _text_of(item.get("summary"))
    return "", _text_of(item.get("content"))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, Mapping)]
        return "\n".join(text for text in texts if isinstance(text, str) and text)
    if content is None:
        return ""
    return json.dumps(content, ensure_ascii=False)


def event_from_item(
    item: Mapping[str, Any], *, event_id: str = "", create_time: datetime | None = None
) -> Event:
    role, text = item_text(item)
    return Event(
        type=str(item.get("type", "message")),
        event_id=event_id,
        author=role,
        content=Content(role=role, text=text),
        data={_ITEM: dict(item)},
        create_time=create_time,
    )


def item_from_event(event: Event) -> dict[str, Any]:
    """The item an event was made from. Raises `ValueError` for an event that holds none."""
    item = (event.data or {}).get(_ITEM)
    if not isinstance(item, dict):
        raise _no_item(event.event_id)
    return item


def item_from_message(message: event_pb2.Event) -> dict[str, Any]:
    """item_from_event() of the event's message as it arrived, converting only the item
    (AsyncClient.stream_event_batches)."""
    item = object_in_struct(message.data, _ITEM)
    if item is None:
        raise _no_item(message.event_id)
    return item


def _no_item(event_id: str) -> ValueError:
    return ValueError(f"event {event_id} holds no OpenAI Agents item")
