"""Migrations: an empty database migrates to exactly schema.sql, concurrently and repeatably."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from agentstore.store.migrator import (
    Migration,
    MigrationError,
    apply_migrations,
    load_migrations,
)

SCHEMA_SQL = (
    Path(__file__).resolve().parents[2] / "src" / "agentstore" / "store" / "schema.sql"
).read_text()

# Enough of the catalog to tell two schemas apart: columns with types, defaults and
# nullability; constraints and indexes with their full definitions.
DESCRIBE = [
    """SELECT table_name, column_name, data_type, column_default, is_nullable, is_identity,
              generation_expression
       FROM information_schema.columns WHERE table_schema = 'public'
         AND table_name <> 'schema_migrations'
       ORDER BY table_name, column_name""",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         AND conrelid::regclass::text <> 'schema_migrations'
       ORDER BY 1, 2""",
    """SELECT tablename, indexname, indexdef FROM pg_indexes
       WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
       ORDER BY 1, 2""",
    """SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid)
       FROM pg_proc WHERE pronamespace = 'public'::regnamespace
       ORDER BY 1, 2""",
]


async def describe(url: str) -> list[list[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        return [await (await connection.execute(query)).fetchall() for query in DESCRIBE]


async def applied_versions(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT version FROM schema_migrations ORDER BY 1")
        return [row[0] for row in await cursor.fetchall()]


async def test_migrating_an_empty_database_gives_schema_sql(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    migrated, reference = await create_database(), await create_database()
    assert await apply_migrations(migrated) == len(load_migrations())
    async with await psycopg.AsyncConnection.connect(reference, autocommit=True) as connection:
        await connection.execute(SCHEMA_SQL.encode())
    migrated_schema = await describe(migrated)
    assert migrated_schema == await describe(reference)
    assert any(migrated_schema), "the description must not be empty"


async def test_migrating_twice_applies_nothing_the_second_time(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    await apply_migrations(url)
    assert await apply_migrations(url) == 0
    assert await applied_versions(url) == [m.version for m in load_migrations()]


async def test_concurrent_migrations_take_turns(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    counts = await asyncio.gather(*(apply_migrations(url) for _ in range(4)))
    assert sorted(counts) == [0, 0, 0, len(load_migrations())]
    assert await applied_versions(url) == [m.version for m in load_migrations()]


async def test_an_edited_migration_is_refused(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    await apply_migrations(url)
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited\n") for m in load_migrations()]
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        await apply_migrations(url, edited)


async def test_a_failing_migration_rolls_back_and_keeps_the_earlier_ones(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    migrations = load_migrations()
    broken = Migration(len(migrations) + 1, "broken", "CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        await apply_migrations(url, [*migrations, broken])
    assert await applied_versions(url) == [m.version for m in migrations]
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT to_regclass('half')")
        assert (await cursor.fetchone()) == (None,)


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0003_third.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0002 is missing"):
        load_migrations(tmp_path)


async def test_the_session_summary_migration_fills_previews_of_existing_sessions(
    create_database: Callable[[], Awaitable[str]],
) -> None:
    url = await create_database()
    migrations = load_migrations()
    summary = next(m for m in migrations if m.name == "session_summary")
    await apply_migrations(url, [m for m in migrations if m.version < summary.version])
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO sessions (id, app_name, last_seq)"
            " VALUES ('said', 'a', 3), ('quiet', 'a', 1)"
        )
        await connection.execute(
            """INSERT INTO events (session_id, seq, event_id, app_name, type, content_role,
                                   content_text)
               VALUES ('said', 1, 'e1', 'a', 'message', 'assistant', 'Hello'),
                      ('said', 2, 'e2', 'a', 'message', 'user', '  where   is it  '),
                      ('said', 3, 'e3', 'a', 'message', 'user', 'later'),
                      ('quiet', 1, 'e4', 'a', 'message', 'assistant', 'Hi')"""
        )
    await apply_migrations(url, migrations)
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT id, preview FROM sessions ORDER BY id")
        assert await cursor.fetchall() == [("quiet", ""), ("said", "where is it")]
