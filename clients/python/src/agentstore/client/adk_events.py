"""Google ADK's sessions and events as agentstore's, and back: the one mapping, used by the
importer of ADK's DatabaseSessionService tables (and by the session service adapter).
Needs `google-adk` (`pip install 'agentstore-client[adk]'`).

An ADK event becomes one event:

- `event_id`, `author`, `invocation_id` and `branch` are ADK's;
- `type`: `function_call` or `function_response` when its content has such a part, `message`
  when it has text, `adk_event` otherwise (a state change, a transfer, an end of turn);
- `content`: its role (`user` or `model`) and its text parts joined by newlines, for Search;
- `actions`: its state delta split as ADK stores it: the session's keys in `state_delta`,
  `app:` and `user:` keys (without the prefix) in `app_state_delta` and `user_state_delta`;
  `temp:` keys are never stored;
- `data.adk`: the whole ADK event as ADK serializes it (camelCase JSON), so that it comes back
  field for field;
- `create_time`: its timestamp.

An ADK session is keyed by (app_name, user_id, session_id); agentstore's ids are global, so
`session_key()` makes one id of the three, and the session keeps `app_name` and `user_id`,
and ADK's own id in `metadata.adk_session_id`."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentstore.client.convert import object_in_struct
from agentstore.client.ids import DEFAULT_MAX_ID_LENGTH
from agentstore.client.types import Content, Event, EventActions
from agentstore.v1 import event_pb2

if TYPE_CHECKING:
    from google.adk.events import Event as AdkEvent

__all__ = [
    "SCOPED_PREFIXES",
    "adk_event_from_event",
    "adk_event_from_message",
    "event_from_adk_event",
    "merged_state",
    "session_key",
    "session_state",
    "split_state",
]

# State keys ADK keeps elsewhere than in the session's own state.
SCOPED_PREFIXES = ("app:", "user:", "temp:")
_PLAIN_PART = re.compile(r"[A-Za-z0-9._@+\-]+")
# Where an event keeps its ADK event: data.adk.
_ADK = "adk"


def session_key(app_name: str, user_id: str, session_id: str) -> str:
    """The agentstore session id of an ADK session: `adk:APP:USER:SESSION` when that is a
    valid id, else `adk:` and a SHA-256 of the three (still one id per ADK session)."""
    parts = (app_name, user_id, session_id)
    readable = "adk:" + ":".join(parts)
    if (
        all(_PLAIN_PART.fullmatch(part) for part in parts)
        and len(readable) <= DEFAULT_MAX_ID_LENGTH
    ):
        return readable
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"adk:{digest}"


def session_state(state: dict[str, Any]) -> dict[str, Any]:
    """The keys of an ADK state that belong to the session itself."""
    return {key: value for key, value in state.items() if not key.startswith(SCOPED_PREFIXES)}


def split_state(state: dict[str, Any]) -> EventActions:
    """An ADK state (or delta) as agentstore's three: the session's keys, the `app:` keys and
    the `user:` keys without their prefixes; `temp:` keys are dropped, as ADK never stores
    them."""
    app = {k.removeprefix("app:"): v for k, v in state.items() if k.startswith("app:")}
    user = {k.removeprefix("user:"): v for k, v in state.items() if k.startswith("user:")}
    return EventActions(
        state_delta=session_state(state), app_state_delta=app, user_state_delta=user
    )


def merged_state(
    session: dict[str, Any], app: dict[str, Any] | None, user: dict[str, Any] | None
) -> dict[str, Any]:
    """The one state ADK shows: the session's keys, `app:` and `user:` keys added."""
    merged = dict(session)
    merged.update({f"app:{key}": value for key, value in (app or {}).items()})
    merged.update({f"user:{key}": value for key, value in (user or {}).items()})
    return merged


def event_from_adk_event(adk_event: AdkEvent) -> Event:
    parts = adk_event.content.parts if adk_event.content and adk_event.content.parts else []
    texts = [part.text for part in parts if part.text and not part.thought]
    if any(part.function_call for part in parts):
        kind = "function_call"
    elif any(part.function_response for part in parts):
        kind = "function_response"
    elif texts:
        kind = "message"
    else:
        kind = "adk_event"
    content = None
    if adk_event.content is not None:
        role = adk_event.content.role or ("user" if adk_event.author == "user" else "model")
        content = Content(role=role, text="\n".join(texts))
    actions = split_state(adk_event.actions.state_delta) if adk_event.actions else None
    if actions is not None and not (
        actions.state_delta or actions.app_state_delta or actions.user_state_delta
    ):
        actions = None
    return Event(
        type=kind,
        event_id=adk_event.id,
        author=adk_event.author,
        invocation_id=adk_event.invocation_id,
        branch=adk_event.branch or "",
        content=content,
        data={_ADK: adk_event.model_dump(mode="json", by_alias=True, exclude_none=True)},
        actions=actions,
        create_time=datetime.fromtimestamp(adk_event.timestamp, UTC),
    )


def adk_event_from_event(event: Event) -> AdkEvent:
    """The ADK event an event was made from. Raises `ValueError` for an event that holds
    none."""
    from google.adk.events import Event as AdkEvent

    dumped = (event.data or {}).get(_ADK)
    if not isinstance(dumped, dict):
        raise _no_adk_event(event.event_id)
    return AdkEvent.model_validate(dumped)


def adk_event_from_message(message: event_pb2.Event) -> AdkEvent:
    """adk_event_from_event() of the event's message as it arrived, converting only the ADK
    event (AsyncClient.stream_event_batches)."""
    from google.adk.events import Event as AdkEvent

    dumped = object_in_struct(message.data, _ADK)
    if dumped is None:
        raise _no_adk_event(message.event_id)
    return AdkEvent.model_validate(dumped)


def _no_adk_event(event_id: str) -> ValueError:
    return ValueError(f"event {event_id} holds no ADK event")
