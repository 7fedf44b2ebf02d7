"""ListEvents pages, from this replica's kept replay of a session when it holds them.

A kept replay (service/replays.py) is a session's events from its first on, encoded. A page
whose filters bound only seqs and types is cut from it, after one statement checks that it is
still the session's history (`ReplayMark.holds`); a page of the whole history, oldest first,
that goes on past it reads the rest from the table and records it, as a replay does; the first
page of a session's whole history starts a kept replay. Any other page reads the table."""

from __future__ import annotations

from dataclasses import dataclass

from agentstore.domain.callers import Scope
from agentstore.domain.events import Event, EventFilter
from agentstore.metrics import METRICS
from agentstore.service.paging import MAX_INT64
from agentstore.service.replays import EncodedEvent, KeptReplay, ReplayCache, ReplayMark
from agentstore.store.events import EventRepository

__all__ = ["EventPages"]


@dataclass(frozen=True)
class _PageRead:
    """The events one ListEvents page reads: `count` of those matching `wanted`, beyond the
    page token's `cursor` (a seq) in the page's order."""

    wanted: EventFilter
    cursor: int | None
    count: int

    @property
    def after(self) -> int:
        """Every event read has a greater seq."""
        if self.wanted.descending or self.cursor is None:
            return self.wanted.after_seq
        return max(self.wanted.after_seq, self.cursor)

    @property
    def before(self) -> int:
        """Every event read has a smaller seq."""
        before = self.wanted.before_seq or MAX_INT64
        if self.wanted.descending and self.cursor is not None:
            return min(before, self.cursor)
        return before

    @property
    def seqs_and_types_only(self) -> bool:
        """Whether only seqs and types bound what is read: what a kept replay can tell."""
        wanted = self.wanted
        return not (
            wanted.author
            or wanted.agent_id
            or wanted.invocation_id
            or wanted.branch
            or wanted.start_time
            or wanted.end_time
        )

    @property
    def whole_history(self) -> bool:
        """Whether this reads every event after `after`, oldest first: what a replay is and
        what a kept replay records."""
        wanted = self.wanted
        return self.seqs_and_types_only and not (
            wanted.types or wanted.before_seq or wanted.descending
        )


class EventPages:
    def __init__(self, repository: EventRepository, replays: ReplayCache) -> None:
        self._repository = repository
        self._replays = replays

    async def read(
        self, scope: Scope, wanted: EventFilter, cursor: int | None, count: int
    ) -> list[EncodedEvent]:
        """`count` events matching `wanted` beyond the page token's `cursor` (a seq) in the
        page's order. Raises `NotFound` unless the session is live and in scope."""
        read = _PageRead(wanted, cursor, count)
        events = await self._from_kept(scope, read)
        if events is None:
            events = await self._from_table(scope, read)
        return events

    async def _from_kept(self, scope: Scope, read: _PageRead) -> list[EncodedEvent] | None:
        """The page from this replica's kept replay of the session (service/replays.py),
        checked, and the table after it when the page goes on past it; None when that cannot
        give it."""
        session_id = read.wanted.session_id
        kept = self._replays.kept(session_id) if read.seqs_and_types_only else None
        if kept is None or not kept.through:
            return None
        mark = kept.mark()
        check = await self._repository.kept_replay_check(scope, session_id, mark.through)
        if not mark.holds(check):
            self._replays.forget(session_id, only=kept)
            return None
        wanted = read.wanted
        selected = kept.select(
            mark.through, read.after, read.before, set(wanted.types),
            descending=wanted.descending, count=read.count,
        )  # fmt: skip
        whole = check.last_seq == mark.through or read.before <= mark.through + 1
        if whole or (not wanted.descending and len(selected) == read.count):
            _count_from_memory(selected, read)
            return selected
        if not read.whole_history or read.after > mark.through:
            return None
        # Oldest first, past the kept part: the rest from the table, recorded after it.
        rest = await self._extend(scope, kept, mark, read.count - len(selected))
        _count_from_memory(selected, read)
        return selected + rest

    async def _extend(
        self, scope: Scope, kept: KeptReplay, mark: ReplayMark, count: int
    ) -> list[EncodedEvent]:
        """Up to `count` events after the kept part, recorded with it: read from its last
        event on, which must still be the kept one (as a replay checks it)."""
        events = await self._repository.list_events(
            scope, EventFilter(session_id=kept.session_id), after=mark.through - 1, limit=count + 1
        )
        if mark.matches(events[0] if events else None):
            return self._encoded(events[1:], kept, mark.through)
        self._replays.forget(kept.session_id, only=kept)
        return self._encoded([event for event in events if event.seq > mark.through][:count])

    async def _from_table(self, scope: Scope, read: _PageRead) -> list[EncodedEvent]:
        """The page from the table; the first page of a session's whole history starts a kept
        replay of it."""
        kept = None
        if read.whole_history and read.after == 0 and self._replays.keeps:
            # The count first: a removal while the page is read then drops what it records.
            check = await self._repository.kept_replay_check(scope, read.wanted.session_id, 0)
            kept = self._replays.start(read.wanted.session_id, check.removed_count)
        events = await self._repository.list_events(
            scope, read.wanted, after=read.cursor, limit=read.count
        )
        return self._encoded(events, kept, 0)

    def _encoded(
        self, events: list[Event], kept: KeptReplay | None = None, after: int = 0
    ) -> list[EncodedEvent]:
        """The events' entries; recorded with `kept` when they follow on from `after`, its
        last seq."""
        if kept is None:
            entries = self._replays.encode(events)
        else:
            entries = self._replays.record(kept, after, events)
        return [EncodedEvent(e.seq, entry) for e, entry in zip(events, entries, strict=True)]


def _count_from_memory(selected: list[EncodedEvent], read: _PageRead) -> None:
    # The page's events, not the one more read to tell whether another page follows.
    amount = min(len(selected), read.count - 1)
    METRICS.count("agentstore_replay_events_from_memory_total", amount=amount)
