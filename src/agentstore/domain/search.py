"""Search: what a query may filter on, how a query is prepared for the index, and a hit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentstore.domain.events import Event, Label, RequiredLabel
from agentstore.domain.sessions import OptionalIdentifier

__all__ = [
    "CJK_RANGES",
    "MAX_QUERY_LENGTH",
    "SearchFilter",
    "SearchHit",
    "prepare_query",
    "query_terms",
]

MAX_QUERY_LENGTH = 2000

# Hiragana, katakana, CJK ideographs (with extension A and compatibility forms) and halfwidth
# katakana: the ranges of cjk_ranges() in store/schema.sql, whose cjk_bigrams() rewrites
# stored text the way prepare_query() rewrites queries. A test checks the two are the same.
CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
CJK_RUN = re.compile(f"[{CJK_RANGES}]+")
_WORD = re.compile(r'"[^"]*"|[^\s"]+')


def _bigrams(run: str) -> str:
    if len(run) == 1:
        return run
    return " ".join(run[i : i + 2] for i in range(len(run) - 1))


def prepare_query(query: str) -> str:
    """`query` with every run of CJK characters replaced by its overlapping character pairs,
    quoted as a phrase so they must stand together (inside quotes they just join the
    phrase). The result goes to websearch_to_tsquery, which never fails on odd input."""
    prepared: list[str] = []
    position = 0
    in_quotes = False
    for match in CJK_RUN.finditer(query):
        before = query[position : match.start()]
        in_quotes ^= before.count('"') % 2 == 1
        pairs = _bigrams(match.group())
        prepared.append(before)
        if in_quotes:
            prepared.append(f" {pairs} ")
        else:
            # Keep a leading "-" attached: it excludes the phrase.
            separate = before and not before[-1].isspace() and not before.endswith("-")
            prepared.append(f'{" " if separate else ""}"{pairs}" ')
        position = match.end()
    prepared.append(query[position:])
    return "".join(prepared)


def query_terms(query: str) -> list[str]:
    """The words and phrases a query looks for (not those it excludes), for highlighting."""
    terms = []
    for token in _WORD.findall(query):
        if token.startswith("-") or token.upper() == "OR":
            continue
        term = token.strip('"').strip()
        if term:
            terms.append(term)
    return terms


Query = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=r"^[^\x00]*$")
]


class SearchFilter(BaseModel):
    """A search and what it is limited to; empty values match everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: Query
    app_name: OptionalIdentifier = ""
    user_id: OptionalIdentifier = ""
    agent_id: OptionalIdentifier = ""
    session_id: OptionalIdentifier = ""
    types: list[RequiredLabel] = Field(default_factory=list)
    author: Label = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    event: Event
    score: float
    snippet: str
