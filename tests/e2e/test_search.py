"""Search: ranked full-text search in English, Chinese and Japanese, scoped and paged."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest

from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import extra_server
from tests.e2e.events_support import append, event, message
from tests.support import error_details

ENGLISH = [
    "The nightly database migration failed because the orders table was locked.",
    "Customer asked for a refund of the March invoice; the agent approved it.",
    "Migrations of the billing schema finished without errors.",
    "The user gave their account number so the agent could verify the payment.",
]
CHINESE = [
    "数据库迁移失败了，请检查日志。",
    "用户提供了他的账户号码，用于核对付款。",
    "今天的天气很好，我们去公园散步吧。",
]
JAPANESE = [
    "データベースの移行に失敗しました。ログを確認してください。",
    "ユーザーは口座番号を伝えて、支払いを確認しました。",
    "東京の天気は晴れです。",
]


async def new_session(stub: SessionServiceStub, app_name: str, user_id: str = "u1") -> str:
    session = await stub.CreateSession(pb.CreateSessionRequest(app_name=app_name, user_id=user_id))
    return session.id


@pytest.fixture
async def corpus(stub: SessionServiceStub, app_name: str) -> dict[str, str]:
    """One session per language, one event per sentence; returns the session ids."""
    sessions = {}
    for language, sentences in (("en", ENGLISH), ("zh", CHINESE), ("ja", JAPANESE)):
        sessions[language] = await new_session(stub, app_name)
        await append(stub, message(sessions[language], [event(text) for text in sentences]))
    return sessions


async def texts(
    stub: SessionServiceStub, app_name: str, query: str, **filters: object
) -> list[str]:
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query=query, **filters))
    return [hit.event.content.text for hit in response.hits]


async def test_english_words_match_across_word_forms(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    found = await texts(stub, app_name, "migration")
    assert set(found) == {ENGLISH[0], ENGLISH[2]}  # "migration" and "Migrations"
    assert await texts(stub, app_name, "refunds") == [ENGLISH[1]]


async def test_a_chinese_word_finds_the_sentence_that_contains_it(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    assert await texts(stub, app_name, "迁移") == [CHINESE[0]]
    assert await texts(stub, app_name, "账户号码") == [CHINESE[1]]
    assert await texts(stub, app_name, "公园") == [CHINESE[2]]
    # The characters must stand together: 迁 and 败 both occur, 迁败 does not.
    assert await texts(stub, app_name, "迁败") == []


async def test_a_japanese_word_finds_the_sentence_that_contains_it(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    assert await texts(stub, app_name, "移行") == [JAPANESE[0]]
    assert await texts(stub, app_name, "口座番号") == [JAPANESE[1]]
    assert await texts(stub, app_name, "データベース") == [JAPANESE[0]]


async def test_mixed_language_text_and_queries(stub: SessionServiceStub, app_name: str) -> None:
    session_id = await new_session(stub, app_name)
    mixed = "部署 deployment 失败: the rollout of 服务器 v2 stalled"
    await append(stub, message(session_id, [event(mixed), event("unrelated note")]))
    assert await texts(stub, app_name, "deployment 服务器") == [mixed]
    assert await texts(stub, app_name, "rollout 失败") == [mixed]


async def test_phrases_must_match_in_order(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    assert await texts(stub, app_name, '"account number"') == [ENGLISH[3]]
    assert await texts(stub, app_name, '"number account"') == []


async def test_exclusion_and_or(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    assert await texts(stub, app_name, "migration -billing") == [ENGLISH[0]]
    assert set(await texts(stub, app_name, "refund OR payment")) == {ENGLISH[1], ENGLISH[3]}


async def test_chinese_exclusion(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    # 天气 is in a Chinese and (as 天気, another character) not in the Japanese sentence.
    assert await texts(stub, app_name, "天气") == [CHINESE[2]]
    assert await texts(stub, app_name, "天气 -公园") == []


async def test_hits_are_ranked_with_a_score_and_a_highlighted_snippet(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await append(
        stub,
        message(session_id, [
            event("a timeout happened once"),
            event("timeout after timeout: the timeout budget is exhausted"),
        ]),
    )  # fmt: skip
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query="timeout"))
    assert [hit.event.seq for hit in response.hits] == [2, 1]
    assert response.hits[0].score > response.hits[1].score > 0
    assert "<b>timeout</b>" in response.hits[0].snippet


async def test_chinese_snippets_mark_the_word(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query="迁移"))
    assert "<b>迁移</b>" in response.hits[0].snippet


async def test_data_strings_are_searchable(stub: SessionServiceStub, app_name: str) -> None:
    session_id = await new_session(stub, app_name)
    await append(
        stub,
        message(session_id, [
            event("", type="tool_start",
                  data={"tool_name": "kubectl", "arguments": {"x": "rollback"}}),
            event("", type="message_complete", data={"content": "部署已回滚"}),
        ]),
    )  # fmt: skip
    hits = (await stub.Search(pb.SearchRequest(app_name=app_name, query="rollback"))).hits
    assert [hit.event.type for hit in hits] == ["tool_start"]
    hits = (await stub.Search(pb.SearchRequest(app_name=app_name, query="回滚"))).hits
    assert [hit.event.type for hit in hits] == ["message_complete"]


async def test_scoping_never_shows_another_users_hits(
    stub: SessionServiceStub, app_name: str
) -> None:
    alice = await new_session(stub, app_name, "alice")
    bob = await new_session(stub, app_name, "bob")
    other_app = await new_session(stub, f"{app_name}-x", "alice")
    for session_id in (alice, bob, other_app):
        await append(stub, message(session_id, [event(f"secret invoice of {session_id}")]))

    async def sessions(**filters: object) -> set[str]:
        response = await stub.Search(pb.SearchRequest(query="invoice", **filters))
        return {hit.event.session_id for hit in response.hits}

    assert await sessions(app_name=app_name, user_id="alice") == {alice}
    assert await sessions(app_name=app_name, user_id="bob") == {bob}
    assert await sessions(app_name=app_name) == {alice, bob}
    assert await sessions(session_id=bob) == {bob}
    assert other_app not in await sessions(app_name=app_name)


async def test_filters_on_type_agent_and_author(stub: SessionServiceStub, app_name: str) -> None:
    session_id = await new_session(stub, app_name)
    await append(
        stub,
        message(session_id, [
            event("quota warning", type="note", author="monitor", agent_id="ops"),
            event("quota exceeded", type="alert", author="monitor", agent_id="ops"),
            event("quota raised", type="note", author="admin", agent_id="billing"),
        ]),
    )  # fmt: skip
    assert await texts(stub, app_name, "quota", types=["alert"]) == ["quota exceeded"]
    assert set(await texts(stub, app_name, "quota", author="monitor")) == {
        "quota warning",
        "quota exceeded",
    }
    assert await texts(stub, app_name, "quota", agent_id="billing") == ["quota raised"]


async def test_paging_never_repeats_or_skips_a_hit(stub: SessionServiceStub, app_name: str) -> None:
    session_id = await new_session(stub, app_name)
    await append(
        stub,
        message(session_id, [event(("deploy " * (1 + n % 4)) + f"step {n}") for n in range(45)]),
    )
    seen: list[int] = []
    token = ""
    while True:
        response = await stub.Search(
            pb.SearchRequest(app_name=app_name, query="deploy", page_size=10, page_token=token)
        )
        seen.extend(hit.event.seq for hit in response.hits)
        token = response.next_page_token
        if not token:
            break
    assert sorted(seen) == list(range(1, 46))
    assert len(seen) == 45


async def test_deleted_and_expired_sessions_never_appear(
    stub: SessionServiceStub, app_name: str, database_url: str
) -> None:
    deleted, expired, live = (
        await new_session(stub, app_name),
        await new_session(stub, app_name),
        await new_session(stub, app_name),
    )
    for session_id in (deleted, expired, live):
        await append(stub, message(session_id, [event("ephemeral zebra")]))
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=deleted))
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(
            "UPDATE sessions SET expire_time = now() - interval '1 s' WHERE id = %s", (expired,)
        )
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query="zebra"))
    assert [hit.event.session_id for hit in response.hits] == [live]


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE events; --",
        '"unbalanced quote',
        "a & b | !c <-> d:*",
        "OR OR OR - - -",
        "(((((",
        "\\x00 \\u0000",
        "\x01\x02\x1b[31m",
        "the and of",
        "中",
        "x" * 1999,
        "😀 🚀",
    ],
)
async def test_hostile_queries_get_results_not_errors(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str], query: str
) -> None:
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query=query))
    # Whatever matched comes from this app's corpus, with the query's matches only.
    assert {hit.event.session_id for hit in response.hits} <= set(corpus.values())


@pytest.mark.parametrize("query", ["", "   ", "x" * 10_000, "nul \x00 inside"])
async def test_unusable_queries_are_invalid_argument(
    stub: SessionServiceStub, app_name: str, query: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(pb.SearchRequest(app_name=app_name, query=query))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "query" in error_details(caught.value).fields


async def test_the_events_table_survives_an_injection_attempt(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str]
) -> None:
    await stub.Search(pb.SearchRequest(app_name=app_name, query="x'); DROP TABLE events; --"))
    assert await texts(stub, app_name, "migration")


@pytest.fixture
async def five_candidates(database_url: str) -> AsyncIterator[SessionServiceStub]:
    """A client of a server that ranks only the newest 5 matches of a search."""
    async with extra_server(database_url, search_candidates=5) as stub:
        yield stub


async def eight_tickets(stub: SessionServiceStub, app_name: str) -> str:
    """A new session holding "ticket 0" to "ticket 7" (seq 1-8), one message each."""
    session_id = await new_session(stub, app_name)
    for n in range(8):
        await append(stub, message(session_id, [event(f"ticket {n}")]))
    return session_id


def with_position(token: str, position: list[object]) -> str:
    """A page token like `token` (of the same request) that continues after `position`."""
    payload = json.loads(base64.urlsafe_b64decode(token + "=="))
    payload["p"] = position
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def position_of(token: str) -> list[object]:
    return list(json.loads(base64.urlsafe_b64decode(token + "=="))["p"])


async def test_only_the_newest_candidates_are_ranked(
    five_candidates: SessionServiceStub, app_name: str
) -> None:
    stub = five_candidates
    await eight_tickets(stub, app_name)
    response = await stub.Search(pb.SearchRequest(app_name=app_name, query="ticket"))
    assert sorted(hit.event.seq for hit in response.hits) == [4, 5, 6, 7, 8]


async def test_later_pages_keep_the_first_pages_view_while_events_arrive(
    five_candidates: SessionServiceStub, app_name: str
) -> None:
    stub = five_candidates
    session_id = await eight_tickets(stub, app_name)
    request = pb.SearchRequest(app_name=app_name, query="ticket", page_size=2)
    first = await stub.Search(request)
    assert [hit.event.seq for hit in first.hits] == [8, 7]
    # New matches would push the rest of the first page's candidates out of the window.
    for n in range(3):
        await append(stub, message(session_id, [event(f"ticket late {n}")]))
    seen = []
    token = first.next_page_token
    while token:
        request.page_token = token
        page = await stub.Search(request)
        seen.extend(hit.event.seq for hit in page.hits)
        token = page.next_page_token
    assert seen == [6, 5, 4]
    fresh = await stub.Search(pb.SearchRequest(app_name=app_name, query="ticket"))
    assert [hit.event.seq for hit in fresh.hits][:3] == [11, 10, 9]


@pytest.mark.parametrize(
    "snapshot", ["", "garbage", "5:3:", "3:9:4,2", "1:99999999999999999999999:", 7, None]
)
async def test_a_forged_page_token_is_invalid_argument(
    stub: SessionServiceStub, app_name: str, corpus: dict[str, str], snapshot: object
) -> None:
    request = pb.SearchRequest(app_name=app_name, query="agent", page_size=1)
    first = await stub.Search(request)
    position = position_of(first.next_page_token)
    request.page_token = with_position(first.next_page_token, [*position[:3], snapshot])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in error_details(caught.value).fields


async def test_page_tokens_of_the_previous_version_still_page(
    stub: SessionServiceStub, app_name: str
) -> None:
    session_id = await new_session(stub, app_name)
    await append(stub, message(session_id, [event(f"invoice {n}") for n in range(3)]))
    request = pb.SearchRequest(app_name=app_name, query="invoice", page_size=1)
    first = await stub.Search(request)
    # (score, session_id, seq): no snapshot
    position = position_of(first.next_page_token)[:3]
    request.page_token = with_position(first.next_page_token, position)
    second = await stub.Search(request)
    assert [hit.event.seq for hit in [*first.hits, *second.hits]] == [3, 2]
