"""Recently replayed sessions, kept encoded, so that replaying one again sends bytes from memory.

Agent frameworks load a session's whole history at every turn (ADK's `get_session`, OpenAI
Agents' `get_items`), and a session only grows between two turns. Reading 5,000 events from
the table and encoding them took a replay about 20 ms of server and database time where
sending the same bytes takes 5. So a replay from the start of a session records what it sends
here, and the next replay of the session sends the kept part and reads only what came after.
ListEvents pages of a session's whole history, oldest first, record the same way, and a page
whose filters only bound seqs and types is cut from a kept replay (service/event_pages.py).

What was appended stays as it was: an event's encoding (its fields, seq, position and time)
never changes. Only two things make kept bytes wrong, and both are checked before any is sent:
- events taken back (RemoveEvents): the session's `removed_count` only grows, and the kept
  replay holds the count read with or before the first events it recorded; any other count
  drops it (a removal while it was read leaves it an older count too).
- another session under the same id (purged, then created or imported again): the kept
  replay's last event, read from the table in the same statement as what follows it, must
  be at its kept position, unique in the store and never reused (a new session has no event
  there, or one at another position).
Both are `ReplayMark.holds`.
Those checks are against the database, so every replica keeps its own and none is told of
another's removals. A replica drops its copy at once when it removes a session's events or
purges it (RemoveEvents, DeleteSession with purge); otherwise (other replicas, bulk deletes,
the reaper) at its next use of the copy, or when the copy is the least recently used
past the memory bound (`--replay-cache`). Removed content is never sent from here."""

from __future__ import annotations

import bisect
import sys
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple

from agentstore.domain.events import Event

__all__ = ["EncodeEvents", "EncodedEvent", "KeptReplay", "ReplayCache", "ReplayMark"]

# How events become bytes: the API's encoding of each event (injected, so that this layer does
# not depend on the API's).
EncodeEvents = Callable[[Sequence[Event]], list[bytes]]
# What a kept event costs beyond its bytes: the list slots, the bytes and int objects.
EVENT_OVERHEAD_BYTES = 100
# One session may take at most this share of the memory, so that one huge history does not
# push out every other.
SESSION_SHARE = 4


class EncodedEvent(NamedTuple):
    """One event as an element of a response's `events` (api/event_encoding.py), and its seq."""

    seq: int
    entry: bytes


class ReplayMark(NamedTuple):
    """Where a kept replay stood when a request looked at it: its last seq, that event's
    position and the removed_count it was read with. Taken before awaiting the database, as
    another replay may extend the kept one meanwhile."""

    through: int
    last_position: int
    removed_count: int

    def holds(self, removed_count: int, first: Event | None) -> bool:
        """Whether the kept replay, up to `through`, is still the history of the session:
        `removed_count` is the session's (no event taken back since), and `first`, the
        table's first event from `through` on, is the kept last event (the same seq at the
        same position)."""
        return (
            removed_count == self.removed_count
            and first is not None
            and first.seq == self.through
            and first.position == self.last_position
        )


class KeptReplay:
    """One session's events up to `through`, in seq order, as a replay read and encoded them."""

    def __init__(self, session_id: str, removed_count: int) -> None:
        self.session_id = session_id
        # The session's removed_count when the replay that recorded this one read it.
        self.removed_count = removed_count
        self.seqs: list[int] = []
        self.types: list[str] = []
        self.entries: list[bytes] = []
        self.last_position = 0
        self.size = 0

    @property
    def through(self) -> int:
        """The seq up to which every event of the session is kept (0: none)."""
        return self.seqs[-1] if self.seqs else 0

    def mark(self) -> ReplayMark:
        return ReplayMark(self.through, self.last_position, self.removed_count)

    def select(
        self,
        through: int,
        after: int,
        before: int,
        types: Collection[str],
        *,
        descending: bool,
        count: int,
    ) -> list[EncodedEvent]:
        """Up to `count` kept events with `after` < seq < `before` and seq <= `through`, of the
        given types (empty: all), oldest first or newest first."""
        start = bisect.bisect_right(self.seqs, after)
        stop = bisect.bisect_left(self.seqs, min(before, through + 1))
        if not types:  # the common page, made in C
            if descending:
                start = max(start, stop - count)
                return list(
                    map(EncodedEvent, self.seqs[start:stop][::-1], self.entries[start:stop][::-1])
                )
            stop = min(stop, start + count)
            return list(map(EncodedEvent, self.seqs[start:stop], self.entries[start:stop]))
        indexes = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        selected: list[EncodedEvent] = []
        for index in indexes:
            if self.types[index] in types:
                selected.append(EncodedEvent(self.seqs[index], self.entries[index]))
                if len(selected) == count:
                    break
        return selected

    def entries_after(self, seq: int, through: int, types: Collection[str]) -> list[bytes]:
        """The kept entries of events after `seq` up to `through`, of the given types (empty:
        all)."""
        start = bisect.bisect_right(self.seqs, seq)
        stop = bisect.bisect_right(self.seqs, through)
        if not types:
            return self.entries[start:stop]
        return [
            entry
            for entry, kind in zip(self.entries[start:stop], self.types[start:stop], strict=True)
            if kind in types
        ]


class ReplayCache:
    """The kept replays of one replica, least recently used first, within `max_bytes` (0: keep
    nothing). Used from the event loop's thread only; nothing here awaits."""

    def __init__(self, encode: EncodeEvents, max_bytes: int) -> None:
        self._encode = encode
        self._max_bytes = max_bytes
        self._kept: OrderedDict[str, KeptReplay] = OrderedDict()
        self._bytes = 0

    @property
    def size(self) -> int:
        """The bytes kept, as counted against the bound."""
        return self._bytes

    def kept(self, session_id: str) -> KeptReplay | None:
        """The kept replay of this session, if any; before anything of it is sent, it must be
        checked against the database (`ReplayMark.holds`)."""
        kept = self._kept.get(session_id)
        if kept is not None:
            self._kept.move_to_end(session_id)
        return kept

    def start(self, session_id: str, removed_count: int) -> KeptReplay | None:
        """A new, empty replay of the session to record into, replacing any other; None when
        nothing is kept. `removed_count` is the session's, read with or before what will be
        recorded."""
        if not self._max_bytes:
            return None
        self.forget(session_id)
        kept = KeptReplay(session_id, removed_count)
        self._kept[session_id] = kept
        return kept

    def record(
        self, kept: KeptReplay | None, after_seq: int, events: Sequence[Event]
    ) -> list[bytes]:
        """The events' entries, encoded once; kept with `kept` when they follow on from it (a
        replay read them after `after_seq`, its last kept seq) and it is still the session's.
        Past the session's share of memory, nothing more is kept of it."""
        entries = self._encode(events)
        if (
            kept is None
            or not events
            or after_seq != kept.through  # another replay kept them first
            or self._kept.get(kept.session_id) is not kept
        ):
            return entries
        added = sum(map(len, entries)) + EVENT_OVERHEAD_BYTES * len(entries)
        if kept.size + added > self._max_bytes // SESSION_SHARE:
            self.forget(kept.session_id)
            return entries
        kept.seqs.extend(event.seq for event in events)
        # Interned: a session's events share a few types, kept once each.
        kept.types.extend(sys.intern(event.type) for event in events)
        kept.entries.extend(entries)
        kept.last_position = events[-1].position
        kept.size += added
        self._bytes += added
        while self._bytes > self._max_bytes:
            _, evicted = self._kept.popitem(last=False)
            self._bytes -= evicted.size
        return entries

    def forget(self, session_id: str, only: KeptReplay | None = None) -> None:
        """Drops the session's kept replay, if any (and if `only` is given, only if it is that
        one, not one started since)."""
        kept = self._kept.get(session_id)
        if kept is not None and (only is None or kept is only):
            del self._kept[session_id]
            self._bytes -= kept.size
