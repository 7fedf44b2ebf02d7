"""The named-query files: every block loads under its name, comments stay out of the
statements, and a wrong name fails loudly."""

from __future__ import annotations

import pytest

from agentstore.store import queries
from agentstore.store.events import LIST_EVENTS_ASCENDING, LIST_EVENTS_DESCENDING
from agentstore.store.queries import QUERIES_DIR, query, query_names


def test_every_file_loads_and_every_statement_is_plain_sql() -> None:
    files = sorted(path.stem for path in QUERIES_DIR.glob("*.sql"))
    assert files == [
        "connection",
        "events",
        "keys",
        "migrations",
        "notifications",
        "search",
        "sessions",
        "states",
    ]
    for file in files:
        names = query_names(file)
        assert names, file
        for name in names:
            statement = query(file, name)
            assert statement.strip() == statement
            assert not statement.endswith(";"), (file, name)
            assert "-- name:" not in statement


def test_documentation_comments_are_not_sent() -> None:
    statement = query("sessions", "list_sessions")
    assert statement.startswith("SELECT")
    assert "Unprepared" not in statement
    assert "Empty filters" not in statement


def test_an_unknown_name_is_a_key_error_naming_the_file() -> None:
    with pytest.raises(KeyError, match=r"sessions\.sql has no query named 'selct_session'"):
        query("sessions", "selct_session")


def test_a_file_naming_a_query_twice_is_refused(tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / "twice.sql").write_text(  # type: ignore[operator]
        "-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n"
    )
    original = queries.QUERIES_DIR
    queries.QUERIES_DIR = tmp_path  # type: ignore[assignment]
    try:
        with pytest.raises(ValueError, match="names 'one' twice"):
            query("twice", "one")
    finally:
        queries.QUERIES_DIR = original
        queries._load.cache_clear()


def test_the_two_list_orders_come_from_one_text() -> None:
    assert "ORDER BY seq ASC" in LIST_EVENTS_ASCENDING
    assert "seq > %(cursor)s" in LIST_EVENTS_ASCENDING
    assert "ORDER BY seq DESC" in LIST_EVENTS_DESCENDING
    assert "seq < %(cursor)s" in LIST_EVENTS_DESCENDING
    assert "{" not in LIST_EVENTS_ASCENDING + LIST_EVENTS_DESCENDING
