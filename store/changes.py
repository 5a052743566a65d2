"""A store's change feed: who must know when stored data change for past times.

A KPI result is a function of the store's contents up to its window's end (a step signal's
value at the window's start comes from the last sample before it; the assessment's history
reaches back to the first sample). A cache of results can therefore keep an entry until a
write lands before the entry's window end: late or backfilled samples, spool drains, gaps
opened or closed, tags (re)registered, retention deleting old samples. A store that offers
``changes`` (an instance of :class:`Changes`) tells its subscribers the earliest time each
committed write touched; a store that cannot know every write (a remote InfluxDB that other
gateways also write to) offers none, and then nothing may be cached over it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["EVERYTHING", "Changes"]

log = logging.getLogger("tierproof.store.changes")

#: ``since_ns`` of a change that can affect any window (tags, retention)
EVERYTHING: Final = -(2**63)


class Changes:
    """Thread-safe: stores call :meth:`note` from their writer thread, after the commit (so
    that a reader that did not see the write is always told about it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []
        #: committed changes so far
        self.generation = 0

    def subscribe(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(since_ns)`` after every committed change; returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def note(self, since_ns: int) -> None:
        """A committed change touched stored data at times >= ``since_ns``."""
        with self._lock:
            self.generation += 1
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(int(since_ns))
            except Exception:  # the write is durable already: it must not appear to fail
                log.exception("a change listener failed")
