"""Search's rules that live on both sides of the wire: the CJK character ranges are the same
in SQL (cjk_ranges(), which indexes stored text) and in Python (which rewrites queries)."""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable

import psycopg

from agentstore.domain.search import CJK_RANGES, prepare_query
from agentstore.store.migrator import apply_migrations


async def test_the_cjk_ranges_are_the_same_in_sql_and_python(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    await apply_migrations(url)
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT cjk_ranges(), cjk_bigrams(%s)", ("迁移失败了",))
        row = await cursor.fetchone()
    assert row is not None
    sql_ranges, stored = row
    assert codecs.decode(sql_ranges, "unicode_escape") == CJK_RANGES
    # Stored text and queries are rewritten alike.
    assert stored == "迁移 移失 失败 败了"
    assert prepare_query("迁移失败了") == '"迁移 移失 失败 败了" '
