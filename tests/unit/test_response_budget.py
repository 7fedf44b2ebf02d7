"""List pages within the response budget: whole when they fit, cut with a token that goes on
after the last item sent when they do not."""

from __future__ import annotations

from agentstore.api.response_budget import encode_page
from agentstore.service.paging import Page
from agentstore.v1 import event_pb2
from agentstore.v1.session_service_pb2 import ListEventsResponse


def fill(message: event_pb2.Event, seq: int) -> None:
    message.seq = seq
    message.content.text = "x" * 100


def page(seqs: list[int]) -> Page[int]:
    return Page(seqs, "the-next-page", lambda seq: f"after-{seq}")


def test_a_page_that_fits_is_sent_whole_with_its_token() -> None:
    response = ListEventsResponse()
    data = encode_page(response, response.events, page([1, 2, 3]), fill, budget=10_000)
    decoded = ListEventsResponse.FromString(data)
    assert [e.seq for e in decoded.events] == [1, 2, 3]
    assert decoded.next_page_token == "the-next-page"


def test_a_page_past_the_budget_is_cut_and_goes_on_after_its_last_item() -> None:
    response = ListEventsResponse()
    data = encode_page(response, response.events, page([1, 2, 3, 4, 5]), fill, budget=350)
    decoded = ListEventsResponse.FromString(data)
    assert [e.seq for e in decoded.events] == [1, 2, 3]
    assert decoded.next_page_token == "after-3"
    assert len(data) <= 350


def test_one_item_past_the_budget_goes_alone() -> None:
    response = ListEventsResponse()
    data = encode_page(response, response.events, page([1, 2]), fill, budget=50)
    decoded = ListEventsResponse.FromString(data)
    assert [e.seq for e in decoded.events] == [1]
    assert decoded.next_page_token == "after-1"
