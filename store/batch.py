"""The columnar batch: what collectors produce and stores take. No per-point objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from config.signals import Quality

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples of many tags: four parallel arrays, plus texts for string tags.

    ``text`` is None unless the batch carries string tags; then it is an object array of the
    same length holding a ``str`` where the sample is a text (its ``value`` is NaN) and None
    elsewhere.
    """

    tag_id: I32
    ts_ns: I64
    value: F64
    quality: U8
    text: npt.NDArray[np.object_] | None = None

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
    ) -> Batch:
        """Build a batch from array-likes (broadcasting ts_ns and quality), converting dtypes."""
        tid = np.asarray(tag_id, dtype=np.int32).ravel()
        n = len(tid)
        return cls(
            tid,
            np.broadcast_to(np.asarray(ts_ns, dtype=np.int64), (n,)).copy(),
            np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy(),
            np.broadcast_to(np.asarray(quality, dtype=np.uint8), (n,)).copy(),
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
        )


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
