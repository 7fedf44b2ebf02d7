"""Making the many objects of a loaded history without the garbage collector's passes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for a block of synchronous work that makes
    many objects and no cycles, such as the framework events of a whole session.

    Every few hundred new objects the collector runs, and its older generations pass over
    every object the process holds: with a framework's modules loaded, that was about a
    third of the time of turning 5,000 stored events into ADK's (docs/performance.md). The
    objects made here hold no cycles, so those passes find nothing; reference counting
    frees them as ever. The block must not await: the pause is the whole process's. It is
    left as found when the collector was already off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
