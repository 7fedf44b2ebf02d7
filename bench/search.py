"""Search latency at scale: 1,000,000 events in 10,000 sessions, loaded with COPY.

    python bench/search.py [--database-url URL] [--events 1000000] [--repeat 30]
                           [--search-candidates N]

Prints p50/p99 latency through the Search RPC of: a rare word app-wide, a common word
app-wide, a phrase, a Chinese word, a rare and a common word scoped to one user, and the
second page of the common word.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import grpc
import psycopg

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from bench.common import Stopwatch, parser, running_server, scratch_database

SESSIONS = 10_000
USERS = 1_000
WORDS = [
    "agent", "tool", "call", "result", "user", "message", "model", "token", "plan", "step",
    "invoice", "refund", "customer", "order", "payment", "account", "database", "migration",
    "deploy", "service", "error", "retry", "request", "response", "schema", "table", "query",
    "index", "cache", "queue", "worker", "job", "task", "review", "approve", "reject",
]  # fmt: skip
CHINESE = [
    "数据库迁移失败了",
    "用户提供了账户号码",
    "请检查服务日志",
    "订单已经退款",
    "今天天气很好",
]
RARE = "zanzibar"


def text_for(number: int, rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(12, 30))
    if number % 3 == 0:
        words.insert(rng.randrange(len(words)), "timeout")  # the common word: 1 in 3 events
    if number % 100_000 == 7:
        words.insert(rng.randrange(len(words)), RARE)  # the rare word: 10 events app-wide
    if number % 10 == 0:
        words.append(rng.choice(CHINESE))
    return " ".join(words)


async def load(database_url: str, events: int) -> None:
    rng = random.Random(42)
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        async with connection.cursor().copy(
            "COPY sessions (id, app_name, user_id, last_seq, event_count) FROM STDIN"
        ) as copy:
            per_session = events // SESSIONS
            for number in range(SESSIONS):
                await copy.write_row(
                    (f"s{number}", "bench", f"u{number % USERS}", per_session, per_session)
                )
        async with connection.cursor().copy(
            "COPY events (session_id, seq, event_id, app_name, user_id, type, author,"
            " content_role, content_text) FROM STDIN"
        ) as copy:
            for number in range(events):
                session = number % SESSIONS
                await copy.write_row((
                    f"s{session}", number // SESSIONS + 1, f"e{number}", "bench",
                    f"u{session % USERS}", "message_complete", "assistant", "assistant",
                    text_for(number, rng),
                ))  # fmt: skip
        await connection.commit()
        await connection.set_autocommit(True)
        await connection.execute("VACUUM ANALYZE events")
        await connection.execute("ANALYZE sessions")


async def measure(stub: SessionServiceStub, request: pb.SearchRequest, repeat: int) -> str:
    timings = []
    hits = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = await stub.Search(request)
        timings.append((time.perf_counter() - started) * 1000)
        hits = len(response.hits)
    timings.sort()
    p99 = timings[max(0, int(len(timings) * 0.99) - 1)]
    return f"p50 {statistics.median(timings):7.1f} ms  p99 {p99:7.1f} ms  ({hits} hits)"


async def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--events", type=int, default=1_000_000)
    arguments.add_argument("--repeat", type=int, default=30)
    arguments.add_argument(
        "--search-candidates", type=int, help="passed to the server (default: the server's)"
    )
    options = arguments.parse_args()
    flags = []
    if options.search_candidates:
        flags = ["--search-candidates", str(options.search_candidates)]
    async with scratch_database(options.database_url) as database_url:
        async with running_server(database_url):
            pass  # migrate the empty database
        with Stopwatch() as watch:
            await load(database_url, options.events)
        print(f"loaded {options.events:,} events in {SESSIONS:,} sessions in {watch.seconds:.0f} s")
        async with (
            running_server(database_url, *flags) as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            stub = SessionServiceStub(channel)
            user = f"u{7 % USERS}"  # owns the sessions holding the rare word
            cases = {
                "rare word, app-wide": pb.SearchRequest(app_name="bench", query=RARE),
                "common word, app-wide": pb.SearchRequest(app_name="bench", query="timeout"),
                "phrase, app-wide": pb.SearchRequest(app_name="bench", query='"refund customer"'),
                "Chinese word, app-wide": pb.SearchRequest(app_name="bench", query="迁移"),
                "rare word, one user": pb.SearchRequest(app_name="bench", user_id=user, query=RARE),
                "common word, one user": pb.SearchRequest(
                    app_name="bench", user_id=user, query="timeout"
                ),
            }
            # A later page also keeps to what the first page's snapshot saw.
            common = cases["common word, app-wide"]
            first_page = await stub.Search(common)
            cases["common word, 2nd page"] = pb.SearchRequest(
                app_name="bench", query=common.query, page_token=first_page.next_page_token
            )
            for name, request in cases.items():
                print(f"{name:24} {await measure(stub, request, options.repeat)}")


if __name__ == "__main__":
    asyncio.run(main())
