"""The columnar batch: what collectors produce and stores take. No per-point objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from config.signals import Quality

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

#: In ``Batch.server_ts_ns``/``gateway_ts_ns`` (and the store's columns of them): this
#: sample has no such timestamp. INT64 min, 1677-09-21, is no plausible time.
TS_UNKNOWN = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples of many tags: four parallel arrays, plus texts for string tags, plus the
    protocol's other timestamps.

    ``text`` is None unless the batch carries string tags; then it is an object array of the
    same length holding a ``str`` where the sample is a text (its ``value`` is NaN) and None
    elsewhere.

    ``ts_ns`` is THE time of a sample, the one KPIs use: the source timestamp where the
    protocol has one. ``server_ts_ns`` (the server's timestamp, e.g. OPC UA
    ServerTimestamp) and ``gateway_ts_ns`` (the gateway's clock when the sample arrived) are
    None when the protocol offers none; otherwise int64 arrays of the same length holding
    :data:`TS_UNKNOWN` where one sample lacks it.
    """

    tag_id: I32
    ts_ns: I64
    value: F64
    quality: U8
    text: npt.NDArray[np.object_] | None = None
    server_ts_ns: I64 | None = None
    gateway_ts_ns: I64 | None = None

    def __post_init__(self) -> None:
        n = len(self.tag_id)
        for name, arr, dtype in (
            ("tag_id", self.tag_id, np.int32),
            ("ts_ns", self.ts_ns, np.int64),
            ("value", self.value, np.float64),
            ("quality", self.quality, np.uint8),
        ):
            if arr.dtype != dtype:
                raise TypeError(f"Batch.{name} must be {np.dtype(dtype)}, not {arr.dtype}")
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"Batch.{name} must be 1-D of length {n}, has shape {arr.shape}")
        if self.text is not None and len(self.text) != n:
            raise ValueError(f"Batch.text must have length {n}")
        for name, opt in (("server_ts_ns", self.server_ts_ns), ("gateway_ts_ns", self.gateway_ts_ns)):
            if opt is None:
                continue
            if opt.dtype != np.int64:
                raise TypeError(f"Batch.{name} must be int64, not {opt.dtype}")
            if opt.ndim != 1 or len(opt) != n:
                raise ValueError(f"Batch.{name} must be 1-D of length {n}, has shape {opt.shape}")

    def __len__(self) -> int:
        return len(self.tag_id)

    @classmethod
    def empty(cls) -> Batch:
        return cls(
            np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8)
        )

    @classmethod
    def of(
        cls,
        tag_id: npt.ArrayLike,
        ts_ns: npt.ArrayLike,
        value: npt.ArrayLike,
        quality: npt.ArrayLike | int = Quality.GOOD,
        *,
        server_ts_ns: npt.ArrayLike | None = None,
        gateway_ts_ns: npt.ArrayLike | None = None,
    ) -> Batch:
        """Build a batch from array-likes (broadcasting all but tag_id), converting dtypes."""
        tid = np.asarray(tag_id, dtype=np.int32).ravel()
        n = len(tid)

        def times(a: npt.ArrayLike) -> I64:
            return np.broadcast_to(np.asarray(a, dtype=np.int64), (n,)).copy()

        return cls(
            tid,
            times(ts_ns),
            np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy(),
            np.broadcast_to(np.asarray(quality, dtype=np.uint8), (n,)).copy(),
            None,
            None if server_ts_ns is None else times(server_ts_ns),
            None if gateway_ts_ns is None else times(gateway_ts_ns),
        )

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        text = None
        if any(b.text is not None for b in batches):
            text = np.concatenate(
                [b.text if b.text is not None else np.full(len(b), None, dtype=object) for b in batches]
            )
        return cls(
            np.concatenate([b.tag_id for b in batches]),
            np.concatenate([b.ts_ns for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
            text,
            concat_times([b.server_ts_ns for b in batches], [len(b) for b in batches]),
            concat_times([b.gateway_ts_ns for b in batches], [len(b) for b in batches]),
        )


def mark_non_finite(batch: Batch) -> tuple[Batch, int]:
    """``batch`` with every usable sample whose value is not finite (NaN, +-inf: a float
    register holding NaN, an OPC UA Double, ``1e999`` or ``Infinity`` in a payload) made
    :attr:`~config.signals.Quality.BAD`, and how many were. The value is kept as the source sent
    it (quality is kept with the value, never a replacement); a text sample (value NaN by
    definition) and a sample already bad are left as they are. Returns ``batch`` itself when
    nothing changes (the common case costs one ``isfinite`` over the values)."""
    value = batch.value
    odd = ~np.isfinite(value)
    if not odd.any():
        return batch, 0
    odd &= batch.quality < Quality.BAD
    if batch.text is not None:
        odd &= batch.text == None  # noqa: E711 (elementwise over the object column)
    n = int(np.count_nonzero(odd))
    if not n:
        return batch, 0
    quality = batch.quality.copy()
    quality[odd] = Quality.BAD
    return replace(batch, quality=quality), n


def concat_times(pieces: Sequence[I64 | None], lengths: Sequence[int]) -> I64 | None:
    """Optional timestamp columns of consecutive pieces (batches, runs) as one, TS_UNKNOWN
    where a piece has none; None when none has any."""
    if all(p is None for p in pieces):
        return None
    return np.concatenate([
        p if p is not None else np.full(n, TS_UNKNOWN, np.int64)
        for p, n in zip(pieces, lengths, strict=True)
    ])


class Series(NamedTuple):
    """One tag's samples in time order."""

    ts_ns: I64
    value: F64
    quality: U8

    @classmethod
    def empty(cls) -> Series:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8))

    def __len__(self) -> int:
        return len(self.ts_ns)

    def cut(self, i: int, j: int) -> Series:
        """The samples at positions [i, j) (views, not copies)."""
        return Series(self.ts_ns[i:j], self.value[i:j], self.quality[i:j])


def keep_last(ts: I64) -> npt.NDArray[np.bool_] | None:
    """Mask keeping the last of each run of equal ts (ts sorted), or None if all distinct."""
    if len(ts) < 2:
        return None
    keep = np.empty(len(ts), dtype=bool)
    np.not_equal(ts[1:], ts[:-1], out=keep[:-1])
    keep[-1] = True
    return None if keep.all() else keep
