"""KPI computations off the event loop, once per identical request, cached once closed.

Every KPI route (``/kpis``, ``/kpis/deltas``, ``/tiers/assessment``) hands its computation to
:class:`KpiRunner` under a key made of the *resolved* request (see ``api.deps.request_now``
for how relative windows become identical):

- **Worker threads.** The computation (store reads in one ``KpiService.snapshot()``, numpy, and
  rendering the JSON body) runs whole in one thread of a small dedicated pool, never in the
  event loop that also runs the collectors, and never in Starlette's shared thread pool, so a
  burst of heavy requests queues behind ``workers`` threads instead of taking every core.
- **Single flight.** A request whose key is being computed awaits that computation instead of
  starting another; all of them receive the same bytes. A waiter that goes away (client
  disconnect) does not cancel the computation the others await.
- **Cache of closed results.** A result is kept (LRU, at most ``cache_size`` bodies and
  ``cache_bytes`` of them) when every window
  it read ends at least ``settle_s`` before the time it completed, and only over a store with
  a change feed (``store.changes``, see ``store.changes``). A committed write touching a time
  before an entry's window end drops the entry (reads look back before a window's start, so
  any earlier write counts); a write committed while a computation runs stops its result from
  being cached. ``settle_s`` is no correctness bound (the feed is): it keeps the cache for
  windows that the collectors are no longer writing into, instead of churning it every second.
  Errors are never cached.
- **Writes the feed does not see.** The feed reports what this process's store object
  commits; a process that is not the only writer of its store (``tierproof serve`` beside a
  gateway on the same file or InfluxDB: ``create_app(sole_writer=False)``) must not trust it
  alone. Given ``version`` (a callable whose value moves whenever anyone commits to the store:
  ``SqliteStore.data_version``), every cache lookup asks it first and drops every entry
  computed under another value, and a result whose value moved while it was computed is not
  kept: still exact, whoever writes. Given ``closed_max_age_s`` (a store with no such number:
  InfluxDB), an entry is served only until that long after its computation started, then
  computed again: a write the feed did not report shows within that bound.
- **Recent answers of open windows** (:meth:`KpiRunner.run_recent`). A window that has not
  closed (it ends less than ``settle_s`` before the request's ``now``: the default window,
  today) gets a new key every ``now`` quantum, so neither of the above saves its
  computation. Such a request is answered with the most recent computation of the same
  *request spec* (the route's parameters before ``now`` resolves them) whose ``as_of`` (the
  ``now`` it was computed for) is at most ``max_age`` before the request's ``now``; if that
  answer is half ``max_age`` old or older, one computation for the request's ``now`` starts in
  the background (at most one per spec at a time) and replaces it when done. With no answer that
  recent, the request joins a computation of the spec in flight that started within the bound,
  or starts one and waits. A spec whose last computation took long (a loaded machine: issue
  12 measured 1.5-4 s of wall time for 0.4 s of CPU) is renewed earlier, once its answer is
  ``max_age - 1.5 x`` that duration old, so that the renewal usually ends before the answer
  passes the bound and no request waits for a whole computation (at most one renewal per
  spec is in flight, so a slow spec is renewed back to back, never more). The route states
  ``as_of`` (and the ``Age``) of what it sends.
  Writes do not drop recent answers: their staleness is bounded by time only (``api.kpi_max_age_s``,
  docs/api.md); closed windows keep the exact cache above.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from fastapi.encoders import jsonable_encoder

from store.changes import Changes

__all__ = ["Answer", "FlightStats", "KpiRunner", "json_body"]

Key = tuple[Hashable, ...]

_NS = 1_000_000_000


def json_body(content: Any) -> bytes:
    """``content`` as the bytes FastAPI's JSONResponse would send: rendered once in the worker
    thread, so that neither the event loop nor any waiter of the same result encodes it again."""
    return json.dumps(jsonable_encoder(content), ensure_ascii=False, allow_nan=False,
                      indent=None, separators=(",", ":")).encode("utf-8")


@dataclass(slots=True)
class FlightStats:
    computed: int = 0  # computations started
    joined: int = 0  # requests that awaited a computation already in flight
    cache_hits: int = 0
    invalidated: int = 0  # cached bodies dropped because a write touched their windows
    expired: int = 0  # cached bodies dropped as older than closed_max_age_s
    recent_hits: int = 0  # open-window requests answered with a recent computation (run_recent)
    refreshes: int = 0  # background computations started to renew a recent answer

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Answer:
    """A KPI body and the ``now`` (ns since the epoch) it was computed for: its data is the
    store as of that instant or later (the computation's snapshot opened after it)."""

    body: bytes
    as_of_ns: int


@dataclass(slots=True)
class _Recent:
    as_of_ns: int
    body: bytes
    took_ns: int = 0  # wall time from submitting its computation to its result


@dataclass(slots=True)
class _Pending:
    end_ns: int
    started_ns: int  # clock_ns() when submitted, before the computation's snapshot opened
    version: int | None  # the store's version() then
    dirty: bool = False


@dataclass(frozen=True, slots=True)
class _Entry:
    end_ns: int
    body: bytes
    started_ns: int
    version: int | None


class KpiRunner:
    """Runs KPI computations keyed by their resolved request; see the module docstring."""

    def __init__(
        self,
        changes: Changes | None,
        *,
        workers: int = 2,
        cache_size: int = 64,
        cache_bytes: int = 32 << 20,
        settle_s: float = 60.0,
        single_flight: bool = True,
        version: Callable[[], int] | None = None,
        closed_max_age_s: float | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``single_flight=False`` computes every request (and caches nothing): the behaviour
        before this module, for comparison (bench/bench_kpi_api.py). ``version`` and
        ``closed_max_age_s``: for a store that others write too (module doc); with none of
        ``changes``, ``version`` and ``closed_max_age_s`` nothing is cached."""
        if workers < 1 or cache_size < 0 or settle_s < 0:
            raise ValueError("workers >= 1, cache_size >= 0 and settle_s >= 0 are required")
        if closed_max_age_s is not None and closed_max_age_s < 0:
            raise ValueError(f"closed_max_age_s must be >= 0 or None, not {closed_max_age_s}")
        self.single_flight = single_flight
        checked = changes is not None or version is not None or closed_max_age_s is not None
        self.cache_size = cache_size if checked and single_flight else 0
        self._version = version
        self.closed_max_age_ns = (None if closed_max_age_s is None
                                  else int(closed_max_age_s * _NS))
        self.cache_bytes = cache_bytes
        self._bytes = 0  # of the bodies cached
        self.settle_ns = int(settle_s * _NS)
        self.stats = FlightStats()
        self._clock_ns = clock_ns
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierproof-kpi")
        self._inflight: dict[Key, asyncio.Future[bytes]] = {}
        # touched from the loop and, through the change feed, from the store's writer thread
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, _Entry] = OrderedDict()
        self._seen: int | None = None  # the version() the entries were computed under
        self._pending: dict[Key, _Pending] = {}
        # open windows (run_recent): per spec, its newest answer and the computation in flight
        self.recent_size = cache_size if single_flight else 0
        self._recent: OrderedDict[Hashable, _Recent] = OrderedDict()
        self._recent_bytes = 0
        self._spec_flight: dict[Hashable, tuple[int, Key]] = {}  # spec -> (as_of_ns, key)
        self._unsubscribe = changes.subscribe(self._changed) if changes is not None else None

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _changed(self, since_ns: int) -> None:
        """A write committed at times >= since_ns (on the writer's thread)."""
        with self._lock:
            self.stats.invalidated += self._drop([k for k, e in self._cache.items()
                                                  if e.end_ns > since_ns])
            for p in self._pending.values():
                if p.end_ns > since_ns:
                    p.dirty = True

    async def run(self, key: Key, end_ns: int, compute: Callable[[], bytes]) -> bytes:
        """The body of ``compute()`` (run in a worker thread), whose reads end at ``end_ns``
        (the latest end of its windows): from the cache, from the identical computation in
        flight, or computed now."""
        hit = self._cached(key)
        if hit is not None:
            return hit
        if not self.single_flight:
            self.stats.computed += 1
            return await asyncio.get_running_loop().run_in_executor(self._executor, compute)
        # shielded: a cancelled waiter must not cancel what the others await
        return await asyncio.shield(self._submit(key, end_ns, compute))

    def _drop(self, keys: list[Key]) -> int:
        """Drop these cached entries (under ``self._lock``); how many."""
        for k in keys:
            self._bytes -= len(self._cache.pop(k).body)
        return len(keys)

    def _cached(self, key: Key) -> bytes | None:
        # asked before the lock: a store's version() may take its own lock
        version = self._version() if self._version is not None and self._cache else None
        with self._lock:
            if version is not None and version != self._seen:
                # committed by someone since the entries' computations: any window may be touched
                self.stats.invalidated += self._drop([k for k, e in self._cache.items()
                                                      if e.version != version])
                self._seen = version
            hit = self._cache.get(key)
            if hit is None:
                return None
            if (self.closed_max_age_ns is not None
                    and self._clock_ns() - hit.started_ns > self.closed_max_age_ns):
                self.stats.expired += self._drop([key])
                return None
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            return hit.body

    def _submit(self, key: Key, end_ns: int, compute: Callable[[], bytes]) -> asyncio.Future[bytes]:
        """The computation of ``key`` in flight, started now if there is none."""
        fut = self._inflight.get(key)
        if fut is not None:
            self.stats.joined += 1
            return fut
        self.stats.computed += 1
        version = self._version() if self._version is not None and self.cache_size else None
        with self._lock:  # before the computation's snapshot opens: no write goes unseen
            self._pending[key] = _Pending(end_ns, self._clock_ns(), version)
        fut = asyncio.get_running_loop().run_in_executor(self._executor, compute)
        self._inflight[key] = fut
        fut.add_done_callback(lambda f: self._done(key, f))
        return fut

    async def run_recent(self, spec: Hashable, key: Key, end_ns: int,
                         compute: Callable[[], bytes], *, now_ns: int,
                         max_age_s: float) -> Answer:
        """Like :meth:`run` for a request whose ``now`` is ``now_ns``; if its window is open
        (``end_ns`` later than ``now_ns - settle_s``), answered with the most recent
        computation of ``spec`` whose ``as_of`` is at least ``now_ns - max_age_s`` (see the
        module doc). ``max_age_s = 0``, or a closed window: computed (or cached) as by
        :meth:`run`, ``as_of`` = ``now_ns``."""
        max_age_ns = int(max_age_s * _NS)
        if max_age_ns <= 0 or not self.recent_size or end_ns <= now_ns - self.settle_ns:
            return Answer(await self.run(key, end_ns, compute), now_ns)
        floor = now_ns - max_age_ns
        with self._lock:
            rec = self._recent.get(spec)
            if rec is not None and rec.as_of_ns >= floor:
                self._recent.move_to_end(spec)
                self.stats.recent_hits += 1
            else:
                rec = None
        # the computation's key names its 'now': a window with fixed ends (today) has the same
        # key at every 'now', and a request must never join one computed for a 'now' past the
        # bound under its own 'now'
        own = (*key, now_ns)
        if rec is not None:
            # renewed once half the bound old: one computation per spec per half bound at most,
            # whatever the request rate, and answers usually well within the bound; earlier
            # when computing takes long, so that the renewal is done before the bound
            renew_ns = min(max_age_ns // 2, max(0, max_age_ns - rec.took_ns * 3 // 2))
            if now_ns - rec.as_of_ns >= renew_ns and spec not in self._spec_flight:
                self.stats.refreshes += 1  # nobody waits for it: its result renews the answer
                self._submit_spec(spec, own, end_ns, compute, now_ns)
            return Answer(rec.body, rec.as_of_ns)
        flight = self._spec_flight.get(spec)
        if flight is not None and flight[0] >= floor and flight[1] in self._inflight:
            self.stats.joined += 1  # computed for a 'now' within the bound: good enough
            return Answer(await asyncio.shield(self._inflight[flight[1]]), flight[0])
        fut = self._submit_spec(spec, own, end_ns, compute, now_ns)
        return Answer(await asyncio.shield(fut), now_ns)

    def _submit_spec(self, spec: Hashable, key: Key, end_ns: int, compute: Callable[[], bytes],
                     as_of_ns: int) -> asyncio.Future[bytes]:
        """:meth:`_submit`, its result kept as ``spec``'s recent answer as of ``as_of_ns``."""
        started = time.monotonic_ns()
        fut = self._submit(key, end_ns, compute)
        flight = self._spec_flight.get(spec)
        if flight is None or flight[0] < as_of_ns:
            self._spec_flight[spec] = (as_of_ns, key)

        def done(f: asyncio.Future[bytes]) -> None:
            if self._spec_flight.get(spec) == (as_of_ns, key):
                del self._spec_flight[spec]
            if not f.cancelled() and f.exception() is None:
                self._remember(spec, as_of_ns, f.result(), time.monotonic_ns() - started)

        fut.add_done_callback(done)
        return fut

    def _remember(self, spec: Hashable, as_of_ns: int, body: bytes, took_ns: int = 0) -> None:
        with self._lock:
            old = self._recent.get(spec)
            if old is not None and old.as_of_ns >= as_of_ns:
                return  # a newer answer is already kept
            if len(body) > self.cache_bytes:
                return
            if old is not None:
                self._recent_bytes -= len(old.body)
                del self._recent[spec]
            self._recent[spec] = _Recent(as_of_ns, body, took_ns)
            self._recent_bytes += len(body)
            while len(self._recent) > self.recent_size or self._recent_bytes > self.cache_bytes:
                self._recent_bytes -= len(self._recent.popitem(last=False)[1].body)

    def _done(self, key: Key, fut: asyncio.Future[bytes]) -> None:
        self._inflight.pop(key, None)
        version = self._version() if self._version is not None and self.cache_size else None
        with self._lock:
            pending = self._pending.pop(key, None)
            if fut.cancelled() or fut.exception() is not None or pending is None:
                return
            closed = pending.end_ns <= self._clock_ns() - self.settle_ns
            body = fut.result()
            # a commit while it ran (the feed's, or anyone's through version()) may be unseen
            dirty = pending.dirty or version != pending.version
            if self.cache_size and closed and not dirty and len(body) <= self.cache_bytes:
                old = self._cache.pop(key, None)
                self._bytes += len(body) - (len(old.body) if old else 0)
                self._cache[key] = _Entry(pending.end_ns, body, pending.started_ns, version)
                while len(self._cache) > self.cache_size or self._bytes > self.cache_bytes:
                    self._bytes -= len(self._cache.popitem(last=False)[1].body)

    @property
    def closed_check(self) -> str:
        """How a cached closed answer is known current: ``feed`` (this process's writes),
        ``version`` (anyone's commits, asked before every hit), ``max_age`` (a time bound)."""
        parts = [name for name, on in (("feed", self._unsubscribe is not None),
                                       ("version", self._version is not None),
                                       ("max_age", self.closed_max_age_ns is not None)) if on]
        return "+".join(parts) if self.cache_size and parts else "none"

    def status(self) -> dict[str, Any]:
        return {**self.stats.as_dict(), "recent": len(self._recent),
                "cached": self.cached, "cache_size": self.cache_size,
                "cached_bytes": self._bytes, "cache_bytes": self.cache_bytes,
                "in_flight": len(self._inflight), "single_flight": self.single_flight,
                "closed_check": self.closed_check}

    def close(self) -> None:
        """Stop taking work; wait for the computations running (they read the store)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._executor.shutdown(wait=True, cancel_futures=True)
