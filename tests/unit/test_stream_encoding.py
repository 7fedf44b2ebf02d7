"""StreamEvents responses: the encoder shares work between followers without mixing them up,
and its conversions agree with protobuf's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from agentstore.api.mapping import datetime_to_timestamp, dict_to_struct, event_to_proto
from agentstore.api.stream_encoding import StreamEncoder, _Recent
from agentstore.domain.events import Event
from agentstore.service.streams import StreamMessage
from agentstore.v1.session_service_pb2 import StreamEventsResponse as Response


def encoded(encoder: StreamEncoder, message: StreamMessage) -> list[Response]:
    """The encoder's responses for `message`, decoded as a client would."""
    return [Response.FromString(data) for data in encoder.encode(message)]


def make_event(seq: int, **changes: Any) -> Event:
    event = Event(
        session_id="s-1", seq=seq, event_id=f"e-{seq}", position=100 + seq, type="llm_stream",
        author="assistant", invocation_id="inv", agent_id="agent", branch="root",
        content_role="assistant", content_text=f"token {seq}", data={"delta": "Hel", "n": 3},
        actions={"state_delta": {"step": seq}}, metadata={"trace": "t"},
        create_time=datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC),
    )  # fmt: skip
    return event._replace(**changes)


def test_timestamps_match_from_datetime() -> None:
    for value in (
        datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=9))),
        datetime(2026, 1, 1, 9, 30),  # naive: UTC
    ):
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(value)
        assert datetime_to_timestamp(value) == expected, value


def test_structs_match_struct_update() -> None:
    value = {
        "text": "退款 ✓", "count": 3, "ratio": 0.25, "big": 2**60, "yes": True, "no": False,
        "none": None, "empty": {}, "nested": {"list": [1, "two", None, True, {"x": []}, [[]]]},
    }  # fmt: skip
    expected = struct_pb2.Struct()
    expected.update(value)
    assert dict_to_struct(value) == expected


def test_replay_pages_encode_every_field() -> None:
    events = [make_event(1), make_event(2, data=None, actions=None, content_text="")]
    (response,) = encoded(StreamEncoder(), StreamMessage(events=events))
    assert list(response.events) == [event_to_proto(event) for event in events]
    first = response.events[0]
    assert (first.seq, first.position, first.content.text) == (1, 101, "token 1")
    assert first.create_time.ToDatetime(tzinfo=UTC) == events[0].create_time
    assert dict(first.actions.state_delta) == {"step": 1}
    assert not response.events[1].HasField("data")


def test_followers_of_live_events_get_equal_responses_with_their_own_tokens() -> None:
    encoder = StreamEncoder()
    shared = [make_event(1), make_event(2)]
    (first,) = encoded(encoder, StreamMessage(events=shared, live=True))
    (second,) = encoded(encoder, StreamMessage(events=list(shared), live=True))
    assert first == second
    assert [e.seq for e in first.events] == [1, 2]
    # A feed follower: the same events carry tokens, which must not leak into other replies.
    (with_tokens,) = encoded(
        encoder, StreamMessage(events=shared, tokens=["t1", "t2"], resume_token="t2", live=True)
    )
    assert [e.resume_token for e in with_tokens.events] == ["t1", "t2"]
    assert [e.resume_token for e in first.events] == ["", ""]
    # A follower filtering by type gets only part of the batch.
    (part,) = encoded(encoder, StreamMessage(events=shared[1:], live=True))
    assert [e.seq for e in part.events] == [2]


def test_equal_but_distinct_events_are_converted_from_their_own_values() -> None:
    encoder = StreamEncoder(max_entries=2)
    for seq in range(1, 50):  # more than the capacity: old entries go, ids may be reused
        event = make_event(seq)
        (response,) = encoded(encoder, StreamMessage(events=[event], live=True))
        assert [e.seq for e in response.events] == [seq]


def test_large_live_events_are_encoded_but_not_kept() -> None:
    encoder = StreamEncoder(max_bytes=100)  # smaller than one event
    event = make_event(1, content_text="x" * 1000)
    for _ in range(2):
        (response,) = encoded(encoder, StreamMessage(events=[event], live=True))
        assert response.events[0].content.text == "x" * 1000


def test_recent_entries_stay_within_their_count_and_size() -> None:
    recent: _Recent[str, None, str] = _Recent(max_entries=3, max_bytes=10)
    for key, size in (("a", 4), ("b", 4), ("c", 4)):  # c passes 10 bytes: a goes
        recent.put(key, None, key.upper(), size)
    assert recent.get("a") is None
    assert recent.get("b") == (None, "B")
    assert recent.get("c") == (None, "C")
    recent.put("huge", None, "H", 11)  # larger than everything: not kept, nothing evicted
    assert recent.get("huge") is None
    assert recent.get("b") == (None, "B")
    for key in ("d", "e", "f"):  # count limit
        recent.put(key, None, key, 1)
    assert [key for key in "bcdef" if recent.get(key) is not None] == ["d", "e", "f"]


def test_a_message_past_the_budget_is_split_with_each_part_within_it() -> None:
    events = [make_event(seq, content_text="x" * 400) for seq in range(1, 11)]
    one_event = event_to_proto(events[0]).ByteSize()
    budget = 3 * one_event + 30  # three events and their framing fit, four do not
    for live in (False, True):
        message = StreamMessage(
            events=events, tokens=[f"t{e.seq}" for e in events], resume_token="t10",
            caught_up=True, live=live,
        )  # fmt: skip
        responses = encoded(StreamEncoder(budget=budget), message)
        assert [[e.seq for e in r.events] for r in responses] == [
            [1, 2, 3],
            [4, 5, 6],
            [7, 8, 9],
            [10],
        ]
        assert all(r.ByteSize() <= budget for r in responses)
        # Each part resumes after its own last event; only the last carries the markers.
        assert [r.resume_token for r in responses] == ["t3", "t6", "t9", "t10"]
        assert [r.caught_up for r in responses] == [False, False, False, True]


def test_an_event_larger_than_the_budget_goes_alone() -> None:
    small, large = make_event(1), make_event(2, content_text="x" * 5000)
    responses = encoded(StreamEncoder(budget=1000), StreamMessage(events=[small, large, small]))
    assert [[e.seq for e in r.events] for r in responses] == [[1], [2], [1]]


def test_a_marker_message_is_one_response() -> None:
    (response,) = encoded(StreamEncoder(), StreamMessage(heartbeat=True, resume_token="t"))
    assert (response.heartbeat, response.resume_token, len(response.events)) == (True, "t", 0)


def test_followers_of_a_live_message_share_one_encoding() -> None:
    encoder = StreamEncoder()
    shared = [make_event(1), make_event(2)]
    first = encoder.encode(StreamMessage(events=shared, live=True))
    second = encoder.encode(StreamMessage(events=list(shared), live=True))
    assert first[0] is second[0]
