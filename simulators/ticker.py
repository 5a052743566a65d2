"""The one update loop of every simulator: refresh the served values, then rest.

Each protocol server shows the plant as it is *now*, so something must copy the model's values
into it periodically. :class:`Ticker` is that something, for all of them::

    async with Ticker(server.refresh, 0.2, name="opcua-plant-update", what="updating ..."):
        ...  # the server is refreshed every 0.2 s until the block is left

``update`` runs, then the loop rests ``interval_s`` before the next one (as each simulator's own
loop did): a slow update never leaves the server it feeds without time, where a fixed-rate
grid would run a 5,000-variable refresh back to back on a loaded machine. ``wake`` (an
:class:`asyncio.Event`) cuts the rest short and asks for an update at once, as the MQTT
publisher does after a (re)connect or a rebirth request. An update that raises is logged and
the loop goes on: a bad tick must not stop the simulation. Leaving the block cancels the loop
and waits for it, so nothing runs after the server is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

__all__ = ["Ticker"]

log = logging.getLogger(__name__)


class Ticker:
    """Run ``update()`` (a function or a coroutine function) every ``interval_s`` seconds
    while the ``async with`` block lasts; ``what`` names the update in the log when it
    fails, ``name`` names the asyncio task."""

    def __init__(
        self,
        update: Callable[[], Awaitable[None] | None],
        interval_s: float,
        *,
        name: str,
        what: str,
        wake: asyncio.Event | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        self.update = update
        self.interval_s = interval_s
        self.name = name
        self.what = what
        self.wake = wake
        self.log = logger or log
        #: updates run so far (failed ones included)
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _wait(self, delay: float) -> None:
        if self.wake is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), delay)
        # cleared before the update, so a wake during it asks for another one
        self.wake.clear()

    async def _run(self) -> None:
        while True:
            await self._wait(self.interval_s)
            try:
                result = self.update()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a bad tick must not stop the simulation
                self.log.exception("%s failed", self.what)
            self.ticks += 1

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"ticker {self.name} is already running")
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
