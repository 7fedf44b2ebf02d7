"""Append throughput: agentstore's AppendEvents next to raw COPY into the same table.

    python bench/append.py [--database-url URL] [--events 40000]

Prints events/s through the server with 1 and 4 concurrent streams of 250-event messages,
the same events through psycopg COPY into the same table in the same run, the ratio, a
chatty agent's single-event messages on one stream (next to the same messages sent to a
bare grpc.aio server that only counts them), and messages/s with 16 streams. What search
indexing costs these appends is bench/indexing.py's to measure.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
from psycopg.types.json import Jsonb

from agentstore.v1 import event_pb2
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import (
    Stopwatch,
    parser,
    rate,
    running_grpc_baseline,
    running_server,
    scratch_database,
)

TEXT = (
    "The agent looked up the customer's last three invoices, compared the totals with the "
    "plan, and found that the March invoice charged the annual rate twice; it drafts a refund."
)[:200]
COPY_EVENTS = """
COPY events (session_id, seq, event_id, app_name, user_id, type, author, invocation_id,
             agent_id, branch, content_role, content_text, data, actions, metadata)
FROM STDIN (FORMAT BINARY)
"""
COPY_TYPES = ["text", "int8", "text", "text", "text", "text", "text", "text",
              "text", "text", "text", "text", "jsonb", "jsonb", "jsonb"]  # fmt: skip
DATA = {"model": "gpt-4o-mini", "tokens": 57, "latency_ms": 812.5}
METADATA = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}


def make_event(number: int) -> event_pb2.Event:
    event = event_pb2.Event(
        event_id=f"evt-{uuid.uuid4().hex}",
        type="message_complete" if number % 2 else "llm_end",
        author="assistant",
        invocation_id="inv-7f3a",
        agent_id="support-agent",
        branch="root.support",
        content=event_pb2.Content(role="assistant", text=TEXT),
    )
    event.data.update({**DATA, "content": TEXT[:40]} if number % 2 else DATA)
    event.metadata.update(METADATA)
    return event


def messages(session_id: str, count: int, per_message: int) -> list[pb.AppendEventsRequest]:
    events = [make_event(n) for n in range(count)]
    return [
        pb.AppendEventsRequest(session_id=session_id, events=events[i : i + per_message])
        for i in range(0, count, per_message)
    ]


async def new_sessions(stub: SessionServiceStub, count: int) -> list[str]:
    return [
        (await stub.CreateSession(pb.CreateSessionRequest(app_name="bench", user_id="u"))).id
        for _ in range(count)
    ]


async def stream_rate(
    stub: SessionServiceStub, batches: list[list[pb.AppendEventsRequest]]
) -> tuple[float, int, int]:
    """Seconds for `len(batches)` concurrent streams, each sending its messages; events and
    messages acknowledged."""

    async def one(stream: list[pb.AppendEventsRequest]) -> pb.AppendEventsResponse:
        return await stub.AppendEvents(iter(stream))

    with Stopwatch() as watch:
        responses = await asyncio.gather(*(one(stream) for stream in batches))
    appended = sum(response.appended for response in responses)
    sent = sum(len(stream) for stream in batches)
    return watch.seconds, appended, sent


def copy_rows(session_id: str, count: int) -> Iterator[tuple[Any, ...]]:
    for number in range(count):
        data = {**DATA, "content": TEXT[:40]} if number % 2 else DATA
        yield (
            session_id, number + 1, f"evt-{uuid.uuid4().hex}", "bench", "u",
            "message_complete" if number % 2 else "llm_end", "assistant", "inv-7f3a",
            "support-agent", "root.support", "assistant", TEXT, Jsonb(data), None,
            Jsonb(METADATA),
        )  # fmt: skip


async def copy_rate(database_url: str, session_id: str, count: int) -> float:
    """Seconds to COPY `count` prepared rows into the events table in one transaction."""
    rows = list(copy_rows(session_id, count))
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        with Stopwatch() as watch:
            async with connection.cursor().copy(COPY_EVENTS) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    await copy.write_row(row)
            await connection.commit()
    return watch.seconds


async def main() -> None:
    arguments = parser(__doc__ or "").parse_args()
    total = 40_000
    async with (
        scratch_database(arguments.database_url) as database_url,
        running_server(database_url) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = SessionServiceStub(channel)
        warm = await new_sessions(stub, 1)
        await stream_rate(stub, [messages(warm[0], 2000, 250)])

        (one,) = await new_sessions(stub, 1)
        seconds, appended, _ = await stream_rate(stub, [messages(one, total, 250)])
        one_stream = rate(appended, seconds)

        four = await new_sessions(stub, 4)
        seconds, appended, _ = await stream_rate(stub, [messages(s, total // 4, 250) for s in four])
        four_streams = rate(appended, seconds)

        copy_session = (await new_sessions(stub, 1))[0]
        raw_copy = rate(total, await copy_rate(database_url, copy_session, total))

        (chatty,) = await new_sessions(stub, 1)
        seconds, appended, _ = await stream_rate(stub, [messages(chatty, 20_000, 1)])
        chatty_rate = rate(appended, seconds)

        sixteen = await new_sessions(stub, 16)
        seconds, _, sent = await stream_rate(stub, [messages(s, 1500, 1) for s in sixteen])
        sixteen_messages = rate(sent, seconds)

    # The same single-event messages to a server that only counts them: gRPC's own ceiling.
    async with (
        running_grpc_baseline() as baseline_address,
        grpc.aio.insecure_channel(baseline_address) as baseline_channel,
    ):
        baseline_stub = SessionServiceStub(baseline_channel)
        await stream_rate(baseline_stub, [messages("warm", 2000, 1)])
        seconds, appended, _ = await stream_rate(baseline_stub, [messages("bare", 20_000, 1)])
        bare_grpc = rate(appended, seconds)

    size = make_event(1).ByteSize()
    print(f"event size: about {size} bytes encoded, {len(TEXT)} characters of text")
    print(f"raw COPY (psycopg, one transaction):       {raw_copy:10,.0f} events/s")
    print(f"AppendEvents, 1 stream, 250-event msgs:    {one_stream:10,.0f} events/s"
          f"  ratio to COPY {one_stream / raw_copy:.2f}")  # fmt: skip
    print(f"AppendEvents, 4 streams, 250-event msgs:   {four_streams:10,.0f} events/s"
          f"  ratio to COPY {four_streams / raw_copy:.2f}")  # fmt: skip
    print(f"bare grpc.aio server, 1 stream, 1-event msgs (counts them only):"
          f" {bare_grpc:,.0f} messages/s")  # fmt: skip
    print(f"AppendEvents, 1 stream, 1-event msgs:      {chatty_rate:10,.0f} events/s"
          f"  ratio to bare gRPC {chatty_rate / bare_grpc:.2f}")  # fmt: skip
    print(f"AppendEvents, 16 streams, 1-event msgs:    {sixteen_messages:10,.0f} messages/s")


if __name__ == "__main__":
    asyncio.run(main())
