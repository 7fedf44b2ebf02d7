"""ListEvents pages, from this replica's kept replay of a session when it holds them.

A kept replay (service/replays.py) is a session's events from its first on, encoded. A page
whose filters bound only seqs and types is cut from it once one statement (`read_history`)
has read, in one snapshot, the session's removed_count and last_seq and its events from the
kept last one on, which check that the kept replay is still the session's history
(`ReplayMark.holds`); a page of the whole history, oldest first, takes from that same read
the events past the kept part, recorded with it, as a replay does. The first page of a whole
history starts a kept replay with the same statement. Any other page reads the table."""

from __future__ import annotations

from dataclasses import dataclass

from agentstore.domain.callers import Scope
from agentstore.domain.events import Event, EventFilter
from agentstore.metrics import METRICS
from agentstore.service.paging import MAX_INT64
from agentstore.service.replays import EncodedEvent, KeptReplay, ReplayCache
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
        kept = self._replays.kept(wanted.session_id) if read.seqs_and_types_only else None
        if kept is not None and kept.through:
            page = await self._with_kept(scope, read, kept)
            if page is not None:
                return page
        if read.whole_history:
            history = await self._repository.read_history(
                scope, wanted.session_id, read.after, count
            )
            # The first page of a whole history starts a kept replay, with the count read.
            started = None
            if read.after == 0:
                started = self._replays.start(wanted.session_id, history.removed_count)
            return self._encoded(history.events, started, 0)
        events = await self._repository.list_events(scope, wanted, after=cursor, limit=count)
        return self._encoded(events)

    async def _with_kept(
        self, scope: Scope, read: _PageRead, kept: KeptReplay
    ) -> list[EncodedEvent] | None:
        """The page from the kept replay, checked, with the table's events after it when a
        page of the whole history goes on past it (recorded with it); None when it cannot
        give the page."""
        wanted, mark = read.wanted, kept.mark()
        selected = kept.select(
            mark.through, read.after, read.before, set(wanted.types),
            descending=wanted.descending, count=read.count,
        )  # fmt: skip
        extends = read.whole_history and read.after <= mark.through
        missing = read.count - len(selected) if extends else 0
        # The kept last event, to check, and what may follow it, with the count: one snapshot.
        history = await self._repository.read_history(
            scope, wanted.session_id, mark.through - 1, missing + 1
        )
        if not mark.holds(history.removed_count, history.events[0] if history.events else None):
            self._replays.forget(wanted.session_id, only=kept)
            return None
        whole = history.last_seq == mark.through or read.before <= mark.through + 1
        if not (whole or (not wanted.descending and len(selected) == read.count) or extends):
            return None
        _count_from_memory(selected, read)
        return selected + self._encoded(history.events[1:], kept, mark.through)

    def _encoded(
        self, events: list[Event], kept: KeptReplay | None = None, after: int = 0
    ) -> list[EncodedEvent]:
        """The events' entries; recorded with `kept` when they follow on from `after`, its
        last seq (ReplayCache.record)."""
        entries = self._replays.record(kept, after, events)
        return [EncodedEvent(e.seq, entry) for e, entry in zip(events, entries, strict=True)]


def _count_from_memory(selected: list[EncodedEvent], read: _PageRead) -> None:
    # The page's events, not the one more read to tell whether another page follows.
    amount = min(len(selected), read.count - 1)
    METRICS.count("agentstore_replay_events_from_memory_total", amount=amount)
