"""Server-made ids and page tokens."""

from __future__ import annotations

import uuid

import pytest

from agentstore.domain.errors import InvalidArgument
from agentstore.domain.ids import new_uuid7
from agentstore.service.paging import decode_page_token, encode_page_token


def test_uuid7_has_version_7_and_sorts_by_creation() -> None:
    ids = [new_uuid7() for _ in range(200)]
    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert len(set(ids)) == 200
    # Same-millisecond ids may tie on the time prefix but never go backwards in it.
    prefixes = [value[:13] for value in ids]
    assert prefixes == sorted(prefixes)


def test_a_page_token_round_trips_with_the_same_filters() -> None:
    filters = {"app_name": "a", "user_id": ""}
    token = encode_page_token(["2026-01-01T00:00:00+00:00", "id-1"], filters)
    assert decode_page_token(token, filters) == ["2026-01-01T00:00:00+00:00", "id-1"]
    assert decode_page_token("", filters) is None


def test_a_page_token_is_refused_for_other_filters() -> None:
    token = encode_page_token([1], {"app_name": "a"})
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token, {"app_name": "b"})
    assert caught.value.violations[0].field == "page_token"
