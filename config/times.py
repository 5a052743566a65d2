"""Instants as int64 nanoseconds since the Unix epoch: the one conversion every protocol uses.

An instant a store can hold lies in ``[0, NS_MAX]`` (1970-01-01 to 2262-04-11). A protocol
timestamp outside that range -- OPC UA's null date (1601-01-01), anything before 1970, or
after 2262 -- is *unknown*, never an error: the caller keeps the next timestamp of its
documented fallback order. Column-wise callers use :func:`valid_ns` as a mask.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["EPOCH", "NS_MAX", "datetime_ns", "valid_ns"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: the last instant int64 nanoseconds can hold (2262-04-11T23:47:16.854775807Z)
NS_MAX: Final = int(np.iinfo(np.int64).max)


def datetime_ns(dt: datetime) -> int | None:
    """``dt`` in ns since the epoch (a naive datetime is UTC, as asyncua decodes UA DateTime),
    or None when it lies outside ``[0, NS_MAX]``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        delta = dt - EPOCH
    except OverflowError:  # an aware datetime whose UTC value leaves datetime's range
        return None
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return ns if 0 <= ns <= NS_MAX else None


def valid_ns(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Mask of the instants that are known (not negative; int64 cannot exceed NS_MAX)."""
    return ns >= 0
