"""Store-and-forward: a Store that spools batches while its sink cannot take them.

``SpooledStore(inner, spool, quarantine, backoff)`` writes straight to ``inner`` while the
spool is empty. When ``inner`` raises :class:`SinkUnavailable` (unreachable, timed out, 5xx,
429) the batch goes to the durable spool instead and ``write`` returns normally: the batch is
accepted. From then on every new batch goes to the spool's tail too, until a drain thread has
sent everything in it, oldest first, so each series reaches the sink in order. The drain
thread retries with exponential backoff (honouring the server's ``Retry-After``) and sends
as fast as the sink accepts, several spooled batches per request. While the sink does not
answer at all (refused, timed out: ``SinkUnavailable.unreachable``) the drain also *probes* it
every ``probe_interval_s`` (``inner.probe()``, InfluxDB's ``/ping``: no body, no data) and sends
as soon as it answers, so data flows within seconds of its return however long the backoff
has grown. A sink that refuses our credentials (:class:`SinkUnauthorized`, 401/403) is retried
with the backoff like an outage (the batches stay spooled until someone fixes the credentials)
and the status says so. A batch the sink refuses for
good (:class:`SinkRejected`, a 4xx other than 401, 403 and 429) goes to the quarantine with the reason; if
the quarantine is full it is dropped there, counted and logged once, and the drain goes on. (A
sink that stores a batch but drops some of its points, InfluxDB's "partial write", took the
batch: the inner store counts those points, shown as ``partial_write_dropped_points``.)

With ``flush_interval_s > 0`` every batch goes to the spool (durably, so ``write`` returning
still means the batch is safe) and the drain thread posts what gathered every
``flush_interval_s``, or as soon as ``flush_points`` points wait: fewer, larger requests when
collectors write many small batches (Telegraf's ``flush_interval``). ``close`` sends what
is waiting first (if the sink takes it within the timeout).

Opening a SpooledStore on a non-empty spool (after a restart or a crash) starts draining at
once, and new batches queue behind the old ones.

Reads go to ``inner``: points still in the spool are not visible to reads (nor to KPIs)
until they are drained. :meth:`SpooledStore.spool_stats` says how many are waiting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from config.base import Backoff
from config.errors import SinkRejected, SinkUnauthorized, SinkUnavailable, StoreError
from config.store import SpoolSettings

from ..base import Gap, Latest, RollupRow, SamplePage, Store, StoreStats, TagRecord
from ..batch import I64, Batch, Series
from .quarantine import Quarantine, open_quarantine
from .queue import Spool, SpoolEntry

__all__ = ["SpooledStore", "backoff_delay", "open_spool", "spool_problems"]

log = logging.getLogger("tierproof.store.spool")

#: a Retry-After longer than this is taken as this: a typo on the server must not park data for days
MAX_RETRY_AFTER_S = 3600.0


def backoff_delay(backoff: Backoff, attempt: int, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (0-based): initial * multiplier**attempt, capped
    at max_s, with +-jitter so that many gateways do not retry in step."""
    base = min(backoff.max_s, backoff.initial_s * backoff.multiplier ** min(attempt, 64))
    return min(backoff.max_s, base * (1.0 + rng.uniform(-backoff.jitter, backoff.jitter)))


def open_spool(settings: SpoolSettings) -> tuple[Spool, Quarantine]:
    """The spool and quarantine that ``settings`` describe (quarantine in ``<path>/quarantine``)."""
    spool = Spool(settings.path, settings.max_bytes, settings.when_full)
    return spool, open_quarantine(settings)


@dataclass(slots=True)
class ForwardStats:
    direct_batches: int = 0  # written straight to the sink
    direct_points: int = 0
    spooled_batches: int = 0  # accepted into the spool
    spooled_points: int = 0
    drained_batches: int = 0  # sent from the spool to the sink
    drained_points: int = 0
    quarantined_batches: int = 0
    quarantined_points: int = 0
    sink: str = "ok"  # ok | unavailable | unauthorized
    auth_status: int | None = None  # 401 or 403 while unauthorized
    last_error: str | None = None
    last_error_ns: int | None = None
    retry_at_ns: int | None = None
    retry_delay_s: float | None = None  # the delay before the next retry, when one is scheduled
    drain_error: str | None = None  # the drain itself failed (a bug, a disk error) and retries
    probes: int = 0  # /ping probes sent while the sink was unreachable
    probes_answered: int = 0  # of those, answered: each one sent the spool at once
    drained_after_probe_points: int = 0  # points a send right after an answered probe delivered


class SpooledStore:
    """A :class:`~store.base.Store` that forwards writes to ``inner`` through a spool."""

    def __init__(
        self,
        inner: Store,
        spool: Spool,
        quarantine: Quarantine,
        backoff: Backoff,
        *,
        drain_points: int = 50_000,
        drain_batches: int = 256,
        flush_interval_s: float = 0.0,
        flush_points: int = 5000,
        probe_interval_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if flush_interval_s < 0:
            raise ValueError("flush_interval_s must be >= 0")
        self.inner = inner
        self.spool = spool
        self.quarantine = quarantine
        self.backoff = backoff
        self.drain_points = drain_points
        self.drain_batches = drain_batches
        self.flush_interval_s = flush_interval_s
        self.flush_points = flush_points
        self.probe_interval_s = probe_interval_s
        probe = getattr(inner, "probe", None)
        self._probe_fn = probe if callable(probe) else None
        self._unreachable_since: float | None = None  # monotonic; set while the sink does not answer
        self._last_probe = 0.0
        self._after_probe = False  # the next send follows an answered probe
        # counters at opening: health reports losses since this start
        s0, q0 = spool.stats(), quarantine.stats()
        self._lost_at_start = s0.lost_batches - s0.lost_since_open
        self._dropped_at_start = s0.dropped_points + s0.refused_points + q0.dropped_points
        #: monotonic time the oldest batch waiting for a flush arrived (None: send at once)
        self._gathering_since: float | None = None
        self.forward = ForwardStats()
        self._rng = rng or random.Random()
        self._write_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = False
        self._closed = False
        self._not_before = 0.0  # monotonic time before which the drain must not send
        self._attempt = 0  # failed sends in a row: the backoff's exponent
        self._thread = threading.Thread(target=self._drain_loop, name="tierproof-spool-drain", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, inner: Store, settings: SpoolSettings, **kw: Any) -> SpooledStore:
        spool, quarantine = open_spool(settings)
        kw.setdefault("probe_interval_s", settings.probe_interval_s)
        return cls(inner, spool, quarantine, settings.backoff, **kw)

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> None:
        """Write to the sink, or durably to the spool when the sink cannot take it now.

        Raises :class:`StoreError` only when the spool refused the batch (full,
        ``refuse_newest``): the caller may still hold it. A batch the sink refused for good that
        does not fit the full quarantine is dropped, counted and logged there, and ``write``
        returns normally: raising would only make a source redeliver a batch that can never
        be kept.
        """
        if not len(batch):
            return
        with self._write_lock:
            if self._closed:
                raise StoreError("store is closed")
            if self.spool.empty and self.flush_interval_s == 0:
                try:
                    self.inner.write(batch)
                except SinkUnavailable as exc:
                    # the drain's first attempt waits like any retry (Retry-After included)
                    self._schedule_retry(self._unavailable_delay(exc))
                except SinkRejected as exc:
                    self._quarantine(batch, exc)
                    return
                else:
                    self.forward.direct_batches += 1
                    self.forward.direct_points += len(batch)
                    return
            got = self.spool.append(batch)
            if not got.accepted:
                raise StoreError(
                    f"spool {self.spool.path} refused {len(batch)} points: it holds {self.spool.bytes} "
                    f"of {self.spool.max_bytes} bytes (when_full: {self.spool.when_full}), or the "
                    "batch alone is larger than the whole spool"
                )
            self.forward.spooled_batches += 1
            self.forward.spooled_points += len(batch)
            if self.flush_interval_s and self._gathering_since is None and len(self.spool) == 1:
                self._gathering_since = time.monotonic()
        with self._wake:
            self._wake.notify_all()

    def _unavailable(self, exc: SinkUnavailable) -> None:
        state = "unauthorized" if isinstance(exc, SinkUnauthorized) else "unavailable"
        if self.forward.sink != state:
            log.warning("sink %s (%s); spooling batches in %s until it recovers", state, exc,
                        self.spool.path)
        self.forward.sink = state
        self.forward.auth_status = exc.status if isinstance(exc, SinkUnauthorized) else None
        self.forward.last_error = str(exc)
        self.forward.last_error_ns = time.time_ns()
        if exc.unreachable and self._probe_fn is not None:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            self._last_probe = time.monotonic()
        else:
            self._unreachable_since = None

    def _quarantine(self, batch: Batch, exc: SinkRejected) -> None:
        """Keep a refused batch in the quarantine. When it does not fit, ``Quarantine.add`` has
        dropped, counted and logged it: that is final, so nothing here retries it (a retry
        would count the same points again and hold up every batch behind it)."""
        if self.quarantine.add(batch, exc.status, exc.reason or str(exc)) is None:
            return
        self.forward.quarantined_batches += 1
        self.forward.quarantined_points += len(batch)

    # ------------------------------------------------------------------ draining

    def _drain_loop(self) -> None:
        while True:
            probe = False
            with self._wake:
                while not self._stopping:
                    if self.spool.empty:
                        self._wake.wait()
                        continue
                    now, send_at = time.monotonic(), self._send_at()
                    if now >= send_at:
                        break
                    probe_at = self._probe_at()
                    if probe_at is not None and now >= probe_at:
                        probe = True
                        break
                    self._wake.wait(min(send_at, probe_at if probe_at is not None else send_at) - now)
                if self._stopping:
                    return
            if probe:
                self._probe()
                continue
            try:
                delay = self._drain_once()
            except Exception as exc:  # a bug or a disk error must not end draining for good
                log.exception("spool drain failed; will retry")
                self.forward.last_error = self.forward.drain_error = f"{type(exc).__name__}: {exc}"
                self.forward.last_error_ns = time.time_ns()
                delay = -1.0
            if delay is None:
                self.forward.drain_error = None
                self._attempt = 0
                self.forward.retry_at_ns = self.forward.retry_delay_s = None
                continue
            self._schedule_retry(delay)

    def _probe_at(self) -> float | None:
        """Monotonic time of the next probe, or None: no probing (the sink answered, if with an
        error: then its Retry-After or our backoff decides)."""
        if self._unreachable_since is None or self._probe_fn is None:
            return None
        return self._last_probe + self.probe_interval_s

    def _probe(self) -> None:
        assert self._probe_fn is not None
        self._last_probe = time.monotonic()
        self.forward.probes += 1
        try:
            answered = bool(self._probe_fn())
        except Exception:  # a probe must never end the drain
            log.debug("sink probe failed", exc_info=True)
            answered = False
        if not answered:
            return
        self.forward.probes_answered += 1
        down = time.monotonic() - (self._unreachable_since or self._last_probe)
        log.info("sink answers its probe again after %.1f s; sending the %d spooled batches now",
                 down, len(self.spool))
        self._unreachable_since = None
        self._after_probe = True
        with self._wake:
            self._not_before = 0.0

    def _schedule_retry(self, delay: float) -> float:
        """Hold the drain for ``delay`` seconds (-1: the backoff's next delay) after a failed
        send, and say when in ``forward.retry_at_ns``; returns the delay chosen."""
        if delay < 0:
            delay = backoff_delay(self.backoff, self._attempt, self._rng)
        self._attempt += 1
        self.forward.retry_at_ns = time.time_ns() + int(delay * 1e9)
        self.forward.retry_delay_s = delay
        self._after_probe = False
        with self._wake:
            self._not_before = time.monotonic() + delay
        return delay

    def _send_at(self) -> float:
        """Monotonic time of the next send: after the backoff, and when gathering for a flush,
        ``flush_interval_s`` after the oldest waiting batch unless ``flush_points`` wait."""
        since = self._gathering_since
        if since is None or self.spool.points >= self.flush_points:
            return self._not_before
        return max(self._not_before, since + self.flush_interval_s)

    def _drain_once(self) -> float | None:
        """Send the oldest spooled batches. None: progress made; else the delay before the
        next attempt (-1: the backoff's next delay)."""
        items = self.spool.peek(self.drain_batches, self.drain_points)
        if not items:
            return None
        try:
            self.inner.write(Batch.concat([b for _, b in items]))
        except SinkUnavailable as exc:
            return self._unavailable_delay(exc)
        except SinkRejected as exc:
            if len(items) == 1:
                self._quarantine(items[0][1], exc)
                self._popped(items[0][0])
                return None
            # one of them is refused: send them one by one to keep the others
            return self._drain_singly(items)
        self._sent(items)
        return None

    def _unavailable_delay(self, exc: SinkUnavailable) -> float:
        self._unavailable(exc)
        if exc.retry_after_s is not None:  # the server said when: that, not our backoff
            return min(max(exc.retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        return -1.0

    def _drain_singly(self, items: list[tuple[SpoolEntry, Batch]]) -> float | None:
        for entry, batch in items:
            try:
                self.inner.write(batch)
            except SinkUnavailable as exc:
                return self._unavailable_delay(exc)
            except SinkRejected as exc:
                self._quarantine(batch, exc)  # kept there, or dropped and counted: done either way
                self._popped(entry)
                continue
            self._sent([(entry, batch)])
        return None

    def _popped(self, entry: SpoolEntry) -> None:
        """``entry`` left the spool without reaching the sink (quarantined or dropped)."""
        self.spool.pop(entry.seq)
        if self.spool.empty:
            if self.flush_interval_s:
                self._gathering_since = None
            with self._wake:
                self._wake.notify_all()

    def _sent(self, items: list[tuple[SpoolEntry, Batch]]) -> None:
        self.spool.pop(items[-1][0].seq)
        self.forward.drained_batches += len(items)
        self.forward.drained_points += sum(e.points for e, _ in items)
        if self._after_probe:
            self.forward.drained_after_probe_points += sum(e.points for e, _ in items)
            self._after_probe = False
        self._unreachable_since = None
        if self.forward.sink != "ok":
            log.info("sink available again; %d batches (%d points) still spooled",
                     len(self.spool), self.spool.points)
        self.forward.sink = "ok"
        if self.flush_interval_s:  # what arrived meanwhile waits for the next flush
            self._gathering_since = None if self.spool.empty else time.monotonic()
        if self.spool.empty:
            if not self.flush_interval_s:
                log.info("spool drained: %d batches, %d points forwarded since start",
                         self.forward.drained_batches, self.forward.drained_points)
            with self._wake:
                self._wake.notify_all()

    def wait_drained(self, timeout: float) -> bool:
        """Block until the spool is empty (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while not self.spool.empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.5))
        return True

    # ------------------------------------------------------------------ status

    def spool_stats(self) -> dict[str, Any]:
        """Spool and quarantine figures for health and collector status."""
        s = self.spool.stats()
        q = self.quarantine.stats()
        f = self.forward
        # dropped by the sink itself from writes it otherwise stored (InfluxDB "partial write")
        partial = self.inner.stats().extra.get("partial_write_dropped_points", 0)
        return {
            "sink": f.sink,
            "status": self._status_text(),
            "batches": s.batches,
            "points": s.points,
            "bytes": s.bytes,
            "max_bytes": s.max_bytes,
            "when_full": s.when_full,
            "oldest_ns": s.oldest_ns,
            "oldest_spooled_ns": s.oldest_spooled_ns,
            "dropped_points": s.dropped_points + s.refused_points + q.dropped_points,
            "dropped_batches": s.dropped_batches + s.refused_batches + q.dropped_batches,
            "dropped_oldest_points": s.dropped_points,
            "refused_newest_points": s.refused_points,
            "quarantined_batches": q.batches,
            "quarantined_points": q.points,
            "quarantine_dropped_points": q.dropped_points,
            "partial_write_dropped_points": partial if isinstance(partial, int) else 0,
            "direct_points": f.direct_points,
            "spooled_points": f.spooled_points,
            "drained_points": f.drained_points,
            "lost_batches": s.lost_batches,
            "lost_points": s.lost_points,
            "lost_batches_since_start": s.lost_batches - self._lost_at_start,
            "dropped_points_since_start": (s.dropped_points + s.refused_points + q.dropped_points
                                           - self._dropped_at_start),
            "damage": list(s.damage),
            "drain_error": f.drain_error,
            "last_error": f.last_error,
            "last_error_at_ns": f.last_error_ns,
            "retry_at_ns": f.retry_at_ns,
            "retry_delay_s": None if f.retry_delay_s is None else round(f.retry_delay_s, 3),
            "probe_interval_s": self.probe_interval_s if self._probe_fn is not None else None,
            "probes": f.probes,
            "probes_answered": f.probes_answered,
            "drained_after_probe_points": f.drained_after_probe_points,
        }

    def _status_text(self) -> str:
        """The sink's state in a sentence, for health and the spool status."""
        f = self.forward
        every = "" if f.retry_delay_s is None else f": retrying every {f.retry_delay_s:.3g} s"
        if f.sink == "unauthorized":
            return f"InfluxDB refuses our credentials ({f.auth_status}){every} ({f.last_error})"
        if f.sink == "unavailable":
            probing = (f", probing every {self.probe_interval_s:g} s"
                       if self._unreachable_since is not None else "")
            return f"InfluxDB unavailable{every}{probing} ({f.last_error})"
        return "ok"

    def stats(self) -> StoreStats:
        st = self.inner.stats()
        return StoreStats(st.batches_written, st.points_written, {**st.extra, "spool": self.spool_stats()})

    # ------------------------------------------------------------------ everything else: inner

    def register_tags(self, tags: Sequence[TagRecord]) -> dict[str, int]:
        return self.inner.register_tags(tags)

    def tags(self) -> list[TagRecord]:
        return self.inner.tags()

    @property
    def tags_version(self) -> int | None:
        """The inner store's (``store.tag_index``); None when it keeps none."""
        v = getattr(self.inner, "tags_version", None)
        return v if isinstance(v, int) else None

    def snapshot(self) -> AbstractContextManager[None]:
        """The inner store's: spooled points are not in it, so no snapshot sees them."""
        return self.inner.snapshot()

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Series:
        return self.inner.read(tag_id, start_ns, end_ns, prior)

    def read_many(
        self, tag_ids: Sequence[int], start_ns: int, end_ns: int, prior: bool = True
    ) -> dict[int, Series]:
        return self.inner.read_many(tag_ids, start_ns, end_ns, prior)

    def read_text(self, tag_id: int, start_ns: int, end_ns: int) -> list[tuple[int, str, int]]:
        return self.inner.read_text(tag_id, start_ns, end_ns)

    def read_timestamps(self, tag_id: int, start_ns: int, end_ns: int) -> tuple[I64, I64, I64]:
        return self.inner.read_timestamps(tag_id, start_ns, end_ns)

    def read_page(self, tag_id: int, start_ns: int, end_ns: int, limit: int) -> SamplePage:
        return self.inner.read_page(tag_id, start_ns, end_ns, limit)

    def latest(self, tag_ids: Sequence[int]) -> dict[int, Latest]:
        return self.inner.latest(tag_ids)

    def last_ts(self, tag_ids: Sequence[int]) -> int | None:
        return self.inner.last_ts(tag_ids)

    def open_gap(self, device: str, start_ns: int, reason: str, asset: str | None = None) -> int:
        return self.inner.open_gap(device, start_ns, reason, asset)

    def close_gap(self, gap_id: int, end_ns: int) -> None:
        self.inner.close_gap(gap_id, end_ns)

    def mark_alive(self, device: str, ts_ns: int) -> None:
        self.inner.mark_alive(device, ts_ns)

    def last_alive(self, device: str) -> int | None:
        return self.inner.last_alive(device)

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Gap]:
        return self.inner.gaps(device, start_ns, end_ns)

    def apply_retention(self, now_ns: int) -> int:
        return self.inner.apply_retention(now_ns)

    # roll-ups and the central reader (``store.influx.rollups``): the inner store's. Rows are
    # not spooled: they are derived, and a put that fails is computed again by the maintainer;
    # the voids a late write carries go with its samples, through the spool.

    @property
    def changes(self) -> Any:
        """The inner store's change feed: told when spooled samples reach it."""
        return getattr(self.inner, "changes", None)

    def rollup_claim(self, end_ns: int) -> int:
        return self.inner.rollup_claim(end_ns)  # type: ignore[attr-defined]

    def put_rollups(self, rows: Sequence[RollupRow], token: int) -> int:
        return self.inner.put_rollups(rows, token)  # type: ignore[attr-defined]

    def rollups(self, assets: Sequence[str], start_ns: int, end_ns: int, key: str | None = None,
                min_reach_ns: int | None = None) -> list[RollupRow]:
        return self.inner.rollups(assets, start_ns, end_ns, key=key,  # type: ignore[attr-defined]
                                  min_reach_ns=min_reach_ns)

    def discover_tags(self, assets: Sequence[str]) -> int:
        return self.inner.discover_tags(assets)  # type: ignore[attr-defined]

    #: what readers ask of a store beyond the ``Store`` protocol, with ``getattr`` and a
    #: default (``api.service``, ``api.rollups``, ``api.readahead``): the inner store's where
    #: it has them. Without them a gateway over InfluxDB (always behind this spool) took the
    #: default ``keeps_day_rows = True`` and kept day, day-sum and head rows in InfluxDB,
    #: whose voids (points on the hour grid) a late write cannot reach, and read its raw
    #: edges and roll-up rows through the general paths, a statement per tag and range
    _INNER_CAPABILITIES = frozenset({"keeps_day_rows", "read_ranges", "rollups_keyed",
                                     "rollups_dense", "first_ts"})

    def __getattr__(self, name: str) -> Any:
        if name in SpooledStore._INNER_CAPABILITIES and "inner" in self.__dict__:
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def close(self, timeout: float = 30.0) -> None:
        """Send what waits for a flush (within ``timeout``), stop draining (what is still
        spooled stays for the next start), then close."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        if self.flush_interval_s and self._gathering_since is not None and self.forward.sink == "ok":
            with self._wake:
                self._gathering_since = None  # due now
                self._wake.notify_all()
            self.wait_drained(min(timeout, 10.0))
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("spool drain still sending after %.0f s; closing anyway", timeout)
        try:
            if self.spool.points:
                log.info("closing with %d batches (%d points) spooled; they drain at the next start",
                         len(self.spool), self.spool.points)
            self.spool.close()
        finally:
            self.inner.close()


#: the spool's fill (share of max_bytes) from which health reports it
FULL_WARNING = 0.9


def spool_problems(st: dict[str, Any]) -> list[tuple[str, str]]:
    """``(part, reason)`` for each thing wrong in ``SpooledStore.spool_stats()``: part ``sink``
    (unavailable or refusing our credentials) or ``spool`` (batches lost to damage or dropped
    since this start, nearly full, batches quarantined). Empty when all is well."""
    out: list[tuple[str, str]] = []
    if st.get("sink", "ok") != "ok":
        out.append(("sink", str(st.get("status") or st.get("last_error"))))
    if st.get("drain_error"):
        out.append(("spool", f"draining fails and is retried: {st['drain_error']}"))
    if (lost := int(st.get("lost_batches_since_start") or 0)) > 0:
        out.append(("spool", f"{lost} spooled batches lost to damaged, truncated or missing segments "
                             "since this start (see tierproof spool list)"))
    if (dropped := int(st.get("dropped_points_since_start") or 0)) > 0:
        out.append(("spool", f"{dropped} points dropped since this start (spool or quarantine full)"))
    if st.get("max_bytes") and int(st.get("bytes") or 0) >= FULL_WARNING * int(st["max_bytes"]):
        out.append(("spool", f"spool {100 * int(st['bytes']) / int(st['max_bytes']):.0f} % full; "
                             f"when full it {st.get('when_full', 'drop_oldest').replace('_', 's the ', 1)}"))
    if (q := int(st.get("quarantined_batches") or 0)) > 0:
        out.append(("spool", f"{q} batches ({st.get('quarantined_points', 0)} points) refused by the sink "
                             "wait in the quarantine (tierproof spool list, then replay or drop)"))
    return out
