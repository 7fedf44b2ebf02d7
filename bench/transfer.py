"""Export and import speed, next to batched appends in the same run.

    python -m bench.transfer [--database-url URL] [--events 40000] [--sessions 20]

Fills a scratch database through a server with AppendEvents (1 stream, 250-event messages:
bench.append's batched figure, measured here too), exports it with the client
(`agentstore.client.transfer`, what `agentstore export` runs) and imports the file into a
second scratch database through a second server, timing each in events/s.
"""

from __future__ import annotations

import asyncio
import io

import grpc

from agentstore.client import AsyncClient
from agentstore.client.transfer import export_sessions, import_sessions, read_export
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.append import messages, new_sessions, stream_rate
from bench.common import Stopwatch, analyze, parser, rate, running_server, scratch_databases


async def main() -> None:
    options = parser(__doc__ or "")
    options.add_argument("--events", type=int, default=40_000)
    options.add_argument("--sessions", type=int, default=20)
    arguments = options.parse_args()
    per_session = arguments.events // arguments.sessions
    async with scratch_databases(arguments.database_url, 2) as (source_url, target_url):
        async with (
            running_server(source_url) as source,
            grpc.aio.insecure_channel(source.address) as channel,
        ):
            stub = SessionServiceStub(channel)
            sessions = await new_sessions(stub, arguments.sessions)
            stream = [m for session in sessions for m in messages(session, per_session, 250)]
            seconds, appended, _ = await stream_rate(stub, [stream])
            append_rate = rate(appended, seconds)
            await analyze(source_url)
            exported = io.StringIO()
            async with AsyncClient(source.address) as client:
                with Stopwatch() as watch:
                    summary = await export_sessions(client, exported, app_name="bench")
            export_rate = rate(summary.events, watch.seconds)
        lines = exported.getvalue().splitlines(keepends=True)
        async with running_server(target_url) as target, AsyncClient(target.address) as client:
            with Stopwatch() as watch:
                imported = await import_sessions(client, read_export(lines))
            import_rate = rate(imported.events_appended, watch.seconds)
            assert not imported.problems, imported.problems
            assert imported.events_appended == appended, (imported, appended)
    print(f"{appended:,} events in {arguments.sessions} sessions")
    print(f"AppendEvents, 1 stream, 250-event msgs: {append_rate:10,.0f} events/s")
    print(f"export (client, to memory):             {export_rate:10,.0f} events/s")
    print(f"import (client, from memory):           {import_rate:10,.0f} events/s"
          f"  ratio to AppendEvents {import_rate / append_rate:.2f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
