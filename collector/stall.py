"""The collectors' stall detector: time their event loop could not run is a recorded gap.

Polls, subscriptions and acks all run on one event loop (the collectors' own, see
``docs/architecture.md``). Anything that keeps that loop from running -- a thread holding the
GIL, a blocking call by mistake, the process stopped (SIGSTOP, a VM paused), the host
swapping -- delays every device at once, and a device that was "connected" before and after
would show no gap at all. :class:`StallMonitor` sleeps ``tick_s`` at a time and measures how
late it wakes up (monotonic clock): an overshoot beyond ``tolerance_s`` is a stall, and
``on_stall(start_ns, end_ns)`` records it (the supervisor opens and closes a gap for every
device that was connected, with reason "collection stalled"). The stall is known only once
the loop runs again, which is also the first moment anything could be recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["STALL_REASON", "StallMonitor", "StallStats"]

log = logging.getLogger("tierproof.collector.stall")

#: reason of the gaps recorded for a stall (followed by its length)
STALL_REASON: Final = "collection stalled"
#: seconds between two looks at the clock
TICK_S: Final = 0.1
#: a wake-up later than this is a stall (half the shortest usual poll interval, 1 s)
TOLERANCE_S: Final = 0.5


@dataclass(slots=True)
class StallStats:
    """What the monitor saw since it started (read from any thread: plain numbers)."""

    stalls: int = 0  # stalls beyond the tolerance, each recorded as gaps
    stalled_s: float = 0.0  # their total length
    max_lag_s: float = 0.0  # the largest overshoot seen, stalls or not
    last_stall_ns: int | None = None  # wall-clock end of the last stall


class StallMonitor:
    """Measures the lag of the running event loop; see the module doc. Use as ``async with``
    on the loop it watches."""

    def __init__(
        self,
        on_stall: Callable[[int, int], Awaitable[None]],
        *,
        tolerance_s: float = TOLERANCE_S,
        tick_s: float = TICK_S,
    ) -> None:
        if not tick_s > 0 or not tolerance_s > 0:
            raise ValueError("tick_s and tolerance_s must be > 0")
        self._on_stall = on_stall
        self.tolerance_s = tolerance_s
        self.tick_s = tick_s
        self.stats = StallStats()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StallMonitor:
        self._task = asyncio.create_task(self._watch(), name="stall monitor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.tick_s)
            lag = time.monotonic() - before - self.tick_s
            if lag > self.stats.max_lag_s:
                self.stats.max_lag_s = lag
            if lag <= self.tolerance_s:
                continue
            end_ns = time.time_ns()
            # the loop could last have run at the end of the tick it slept
            start_ns = end_ns - int(lag * 1e9)
            self.stats.stalls += 1
            self.stats.stalled_s += lag
            self.stats.last_stall_ns = end_ns
            log.warning("the collectors could not run for %.2f s (tolerance %.2f s): recorded "
                        "as a gap of every connected device", lag, self.tolerance_s)
            try:
                await self._on_stall(start_ns, end_ns)
            except Exception:
                log.exception("could not record the stall of %.2f s as a gap", lag)
