"""The Store protocol and the records it keeps besides samples."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from .batch import F64, I64, U8, Batch, Series


@dataclass(frozen=True, slots=True)
class TagRecord:
    """A tag as the store knows it; ``tag_id`` is assigned by the store and stable by ``path``."""

    path: str  # site/area/line/asset/signal
    asset: str  # site/area/line/asset
    role: str
    device: str
    protocol: str
    unit: str = ""
    enum: dict[int, str] | None = None
    tag_id: int = -1


@dataclass(frozen=True, slots=True)
class Gap:
    """An interval during which a device delivered nothing (``end_ns`` None: still open).

    ``asset`` None: the gap covers every asset of the device (the device was unreachable);
    else only that asset (a Sparkplug edge node offline while the device's other nodes report).
    """

    gap_id: int
    device: str
    start_ns: int
    end_ns: int | None
    reason: str
    asset: str | None = None
    #: the tag whose stored samples are damaged over the interval (``Damage.as_gap``); None
    #: for a gap of collection
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Damage:
    """Stored samples of one tag found damaged (a chunk whose checksum does not match or whose
    blobs do not decode): unknown over [start_ns, end_ns), never read as zero samples."""

    chunk_id: int
    tag_id: int
    path: str
    device: str
    asset: str
    start_ns: int
    end_ns: int  # the chunk's last sample + 1 ns
    samples: int
    reason: str
    found_ns: int
    #: the damaged ingest row's seq (recent data not yet in chunks; then ``chunk_id`` is a
    #: negative key of the row and tag, ``tag_id`` -1 when the row's tags are unknown);
    #: None for a chunk
    seq: int | None = None

    def as_gap(self) -> Gap:
        """The damaged range as a gap of the tag's asset (KPIs count it as unknown time)."""
        if self.tag_id < 0:  # an ingest row whose tags are unknown: any asset's data
            return Gap(-abs(self.chunk_id), self.device, self.start_ns, self.end_ns,
                       f"stored data damaged: unknown tags ({self.reason})", None, None)
        return Gap(-abs(self.chunk_id), self.device, self.start_ns, self.end_ns,
                   f"stored data damaged: {self.path} ({self.reason})", self.asset, self.path)


@dataclass(frozen=True, slots=True)
class Latest:
    ts_ns: int
    value: float
    quality: int
    text: str | None = None


class SamplePage(NamedTuple):
    """The first samples of one tag in a window (``Store.read_page``): parallel arrays in time
    order, server and gateway timestamps ``batch.TS_UNKNOWN`` where unknown, and ``more``:
    whether the window holds samples after the page's last."""

    ts_ns: I64
    value: F64
    quality: U8
    server_ts: I64
    gateway_ts: I64
    more: bool


@dataclass(slots=True)
class StoreStats:
    batches_written: int = 0
    points_written: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """What every store backend provides. Methods are synchronous and thread-safe;
    async callers run writes on one writer thread (see ``store.writer``)."""

    def register_tags(self, tags: Sequence[TagRecord]) -> dict[str, int]:
        """Insert or update tags; return path -> tag_id (ids are stable across restarts)."""
        ...

    def tags(self) -> list[TagRecord]: ...

    def write(self, batch: Batch) -> None:
        """Write a batch durably: when this returns, the batch survives a process crash."""
        ...

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Series:
        """Samples of one tag with start_ns <= ts < end_ns in time order; with ``prior``,
        also the last sample before start_ns (step signals need the value at the start)."""
        ...

    def read_many(
        self, tag_ids: Sequence[int], start_ns: int, end_ns: int, prior: bool = True
    ) -> dict[int, Series]:
        """``read`` of several tags at once (tag_id -> Series), from one consistent view."""
        ...

    def read_text(self, tag_id: int, start_ns: int, end_ns: int) -> list[tuple[int, str, int]]:
        """(ts_ns, text, quality) of a string tag in the window."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """A block in which every read of the calling thread sees one state of the store, so
        that the reads of one KPI request or one assessment agree with each other while the
        collectors keep writing. Writers are not blocked. Nested blocks share the outer one.
        SQLite: one read transaction (exact). InfluxDB: reads capped at the block's start
        (a sample written meanwhile with an earlier timestamp can still appear). The block
        belongs to the thread: use it in synchronous code (a route run in the thread pool, the
        CLI), never across an ``await``, where other coroutines of the thread would share it."""
        ...

    def read_timestamps(self, tag_id: int, start_ns: int, end_ns: int) -> tuple[I64, I64, I64]:
        """(ts, server_ts, gateway_ts) of the samples start_ns <= ts < end_ns in time order
        (the samples ``read(..., prior=False)`` returns); ``batch.TS_UNKNOWN`` where the
        protocol gave a sample no server or gateway timestamp."""
        ...

    def read_page(self, tag_id: int, start_ns: int, end_ns: int, limit: int) -> SamplePage:
        """The first ``limit`` (>= 1) samples with start_ns <= ts < end_ns, as ``read(...,
        prior=False)`` and ``read_timestamps`` would give them, read so that memory and
        time depend on ``limit``, not on how many samples the window holds."""
        ...

    def latest(self, tag_ids: Sequence[int]) -> dict[int, Latest]: ...

    def last_ts(self, tag_ids: Sequence[int]) -> int | None:
        """Newest sample time over these tags, or None."""
        ...

    def open_gap(self, device: str, start_ns: int, reason: str, asset: str | None = None) -> int:
        """Record the start of a gap of the device (``asset``: of that asset of it only)."""
        ...

    def close_gap(self, gap_id: int, end_ns: int) -> None: ...

    def mark_alive(self, device: str, ts_ns: int) -> None:
        """Record that the gateway was collecting ``device`` at ``ts_ns`` (a heartbeat)."""
        ...

    def last_alive(self, device: str) -> int | None:
        """The newest heartbeat of ``device``: after a restart, the time since then is a gap."""
        ...

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Gap]:
        """Gaps overlapping the window (open gaps count as reaching now), device-wide and
        asset-scoped ones alike."""
        ...

    def apply_retention(self, now_ns: int) -> int:
        """Delete samples older than the retention; return how many were deleted."""
        ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...


class RollupRow(NamedTuple):
    """One derived row of one asset and one hour [hour_ns, hour_ns + 1 h), opaque to the store
    (``api.rollups`` writes and reads them): ``key`` says what it was computed by and from,
    ``reach_ns`` the earliest time whose data it depends on, ``data`` and ``extra`` its
    content. The store drops a row in the same transaction as any change to the asset's data
    at a time before the hour's end (``SqliteStore.put_rollups``). A named tuple: a window
    of a month reads hundreds of them per asset."""

    asset: str
    hour_ns: int
    key: str
    reach_ns: int
    data: bytes
    extra: str | None = None
