"""The store's SQL: named queries in the `.sql` files of queries/, loaded once at import.

A file holds blocks, each starting with a line `-- name: query_name` and the comment lines
that document it, then the statement. Repositories take their statements as module constants
(`INSERT_SESSION = query("sessions", "insert_session")`), so a misspelt name fails at import,
not on the first call. Values are always bound parameters, never formatted in."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import LiteralString

__all__ = ["query", "query_name_of", "query_names"]

QUERIES_DIR = Path(__file__).with_name("queries")
# Statement text -> "file.name", for what reports on statements (tracing spans).
_NAMES: dict[str, str] = {}
_NAME_LINE = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@cache
def _load(file: str) -> dict[str, str]:
    text = (QUERIES_DIR / f"{file}.sql").read_text()
    parts = _NAME_LINE.split(text)
    # parts: [preamble, name, body, name, body, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{file}.sql names {name!r} twice")
        statement = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        queries[name] = statement.removesuffix(";")
    return queries


def query(file: str, name: str, **parts: LiteralString) -> LiteralString:
    """The statement named `name` in queries/`file`.sql, with each `{part}` in it replaced by
    the text given for it (another block of the file, or a keyword); the result still reports
    as `file.name` (query_name_of). Raises `KeyError` if there is no such statement or no such
    placeholder in it."""
    try:
        statement = _load(file)[name]
    except KeyError:
        raise KeyError(f"queries/{file}.sql has no query named {name!r}") from None
    for part, text in parts.items():
        placeholder = "{" + part + "}"
        if placeholder not in statement:
            raise KeyError(f"queries/{file}.sql: {name} has no {placeholder}")
        statement = statement.replace(placeholder, text)
    _NAMES[statement] = f"{file}.{name}"
    # Typed LiteralString as psycopg wants: the text comes from the package's own files, never
    # from input, as literal as a constant in the code.
    return statement


def query_name_of(statement: str) -> str:
    """The `file.name` of a statement `query()` gave; "statement" for any other."""
    return _NAMES.get(statement, "statement")


def query_names(file: str) -> list[str]:
    """Every query name of queries/`file`.sql, in file order."""
    return list(_load(file))
