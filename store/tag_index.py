"""A store's tags by path and by id, kept in memory and read again only when they change.

Listing every tag of the store costs a query and a record per tag (1,266 tags of a 100-machine
plant: ~1 ms of CPU); the API resolves a path to its tag record on every ``/tags/{path}/...``
request, so it asks a :class:`TagIndex` instead. A store that offers ``tags_version`` (an int
it bumps after every commit that adds a tag or changes one: :class:`~store.sqlite.SqliteStore`,
and the stores built on it -- InfluxDB's local tag register, the spool) is listed again only
when that number moved; a store without it is listed on every look-up (correct, as slow as
before). Tags registered by another process into the same file do not bump this process's
number: a path not found is looked up again in the store, at most every ``recheck_s``, so
such a tag is found within ``recheck_s`` and a flood of unknown paths costs one listing per
``recheck_s``, not one per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from .base import TagRecord

__all__ = ["TagIndex"]


class _Lister(Protocol):
    def tags(self) -> list[TagRecord]: ...


class _View(NamedTuple):
    version: int | None
    tags: tuple[TagRecord, ...]
    by_path: dict[str, TagRecord]
    by_id: dict[int, TagRecord]
    loaded: float  # time.monotonic() of the listing


class TagIndex:
    """The tags of ``store`` (``store.tags()``, in its order) by path and by id; thread-safe
    (a look-up reads one immutable view; a reload replaces it whole)."""

    def __init__(self, store: _Lister, recheck_s: float = 1.0) -> None:
        self._store = store
        self.recheck_s = recheck_s
        self._view: _View | None = None
        self._lock = threading.Lock()
        #: listings made (tests and benchmarks: a cached look-up makes none)
        self.loads = 0

    def _version(self) -> int | None:
        v = getattr(self._store, "tags_version", None)
        return v if isinstance(v, int) else None

    def _load(self) -> _View:
        with self._lock:
            # the number first: tags registered meanwhile make the view newer than its
            # number, and the next look-up lists them again (never older than its number)
            version = self._version()
            tags = tuple(self._store.tags())
            self.loads += 1
            view = _View(version, tags, {t.path: t for t in tags}, {t.tag_id: t for t in tags},
                         time.monotonic())
            self._view = view
            return view

    def _current(self) -> _View:
        view = self._view
        if view is None or view.version is None or view.version != self._version():
            view = self._load()
        return view

    def all(self) -> Sequence[TagRecord]:
        """Every tag, in the order of ``store.tags()`` (an immutable sequence)."""
        return self._current().tags

    def by_path(self, path: str) -> TagRecord | None:
        view = self._current()
        tag = view.by_path.get(path)
        if tag is None and time.monotonic() - view.loaded >= self.recheck_s:
            tag = self._load().by_path.get(path)  # registered by another process, maybe
        return tag

    def by_id(self, tag_id: int) -> TagRecord | None:
        view = self._current()
        tag = view.by_id.get(tag_id)
        if tag is None and time.monotonic() - view.loaded >= self.recheck_s:
            tag = self._load().by_id.get(tag_id)
        return tag
