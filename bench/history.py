"""Loading a whole session's history: agentstore next to psycopg reading the same rows.

    python -m bench.history [--database-url URL] [--events 5000] [--loads 20]

An agent resuming a session loads all of it. For a session of `--events` events this prints
the median time of `--loads` loads through StreamEvents (replay, no follow) and through
ListEvents (pages of 1,000), next to psycopg reading the same rows in the same run and
decoding their JSON (`SELECT ... ORDER BY seq`, jsonb parsed), which is what OpenAI Agents'
SQL session does; the readers take turns load by load. The replay and the pages are each
measured twice: on a server that sends a session read again from memory (the default,
`--replay-cache`), and on a second server without it (`--replay-cache 0`), which reads every
load from the table, as any first read after a start or on another replica does. Target
(issue 11): within 1.2x of psycopg.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
import psycopg

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import analyze, parser, running_server, scratch_database
from bench.stream import load_session


async def median_seconds(loads: int, *readers: Callable[[], Awaitable[int]]) -> list[float]:
    """The median time of each reader's loads. Their loads take turns (the first two of each
    warm caches and prepared statements and are not counted), so that a drift of this
    machine's speed falls on all of them alike."""
    durations: list[list[float]] = [[] for _ in readers]
    for _ in range(loads + 2):
        for reader, times in zip(readers, durations, strict=True):
            started = time.perf_counter()
            count = await reader()
            times.append(time.perf_counter() - started)
            assert count > 0
    return [statistics.median(times[2:]) for times in durations]


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--events", type=int, default=5000)
    options.add_argument("--loads", type=int, default=20)
    arguments = options.parse_args()
    events = arguments.events
    async with (
        scratch_database(arguments.database_url) as database_url,
        running_server(database_url) as server,
        running_server(database_url, "--replay-cache", "0") as uncached,
        grpc.aio.insecure_channel(server.address) as channel,
        grpc.aio.insecure_channel(uncached.address) as uncached_channel,
    ):
        stub = SessionServiceStub(channel)
        table_stub = SessionServiceStub(uncached_channel)
        session_id = await load_session(stub, events)
        await analyze(database_url)

        async def replay(through: SessionServiceStub) -> int:
            count = 0
            request = pb.StreamEventsRequest(session_id=session_id)
            async for response in through.StreamEvents(request):
                count += len(response.events)
            assert count == events, count
            return count

        async def by_stream() -> int:
            return await replay(stub)

        async def by_table_stream() -> int:
            return await replay(table_stub)

        async def pages(through: SessionServiceStub) -> int:
            count, token = 0, ""
            while True:
                page = await through.ListEvents(
                    pb.ListEventsRequest(session_id=session_id, page_size=1000, page_token=token)
                )
                count += len(page.events)
                if not (token := page.next_page_token):
                    break
            assert count == events, count
            return count

        async def by_pages() -> int:
            return await pages(stub)

        async def by_table_pages() -> int:
            return await pages(table_stub)

        async with await psycopg.AsyncConnection.connect(database_url) as connection:

            async def by_psycopg() -> int:
                cursor = await connection.execute(
                    "SELECT session_id, seq, event_id, type, author, content_role, content_text,"
                    " data, actions, metadata, create_time FROM events WHERE session_id = %s"
                    " ORDER BY seq",
                    (session_id,),
                )
                return len(await cursor.fetchall())

            floor, stream, table_stream, paged, table_paged = await median_seconds(
                arguments.loads, by_psycopg, by_stream, by_table_stream, by_pages, by_table_pages
            )
    print(f"loading a {events:,}-event session, median of {arguments.loads} loads:")
    print(f"psycopg, rows with JSON decoded:       {floor * 1000:8.1f} ms   baseline")
    print(f"StreamEvents replay:                   {stream * 1000:8.1f} ms   {stream / floor:.2f}x")
    print(
        f"StreamEvents replay, from the table:   {table_stream * 1000:8.1f} ms"
        f"   {table_stream / floor:.2f}x"
    )
    print(f"ListEvents, pages of 1,000:            {paged * 1000:8.1f} ms   {paged / floor:.2f}x")
    print(
        f"ListEvents, pages, from the table:     {table_paged * 1000:8.1f} ms"
        f"   {table_paged / floor:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
