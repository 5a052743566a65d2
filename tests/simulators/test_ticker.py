"""The simulators' one update loop: a rest after every update, early wakes, failures logged,
clean exit."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from simulators.ticker import Ticker


async def test_every_update_is_followed_by_a_full_rest() -> None:
    loop = asyncio.get_running_loop()
    spans: list[tuple[float, float]] = []

    async def update() -> None:
        start = loop.time()
        await asyncio.sleep(0.03)  # a slow update: the server still gets its rest afterwards
        spans.append((start, loop.time()))

    async with Ticker(update, 0.02, name="t", what="test update") as ticker:
        while len(spans) < 4:
            await asyncio.sleep(0.01)
    assert ticker.ticks >= 4
    # lower bounds only (a sleep never ends early; a loaded machine may make it late)
    assert all(nxt[0] - prev[1] >= 0.02 - 0.001 for prev, nxt in itertools.pairwise(spans))


async def test_a_blocking_update_is_not_caught_up() -> None:
    starts: list[float] = []
    ends: list[float] = []

    def update() -> None:
        starts.append(time.monotonic())  # the event loop's clock
        if len(starts) == 1:
            time.sleep(0.2)  # blocks the loop for four intervals
        ends.append(time.monotonic())

    async with Ticker(update, 0.05, name="t", what="test update"):
        while len(starts) < 3:
            await asyncio.sleep(0.01)
    # no burst of the four missed ticks: each update starts a whole interval after the one
    # before it ended, the slow one included (a lower bound only: a sleep never ends early,
    # but a loaded machine may make it late, so when the test looks is no measure of it)
    assert len(ends) >= 2
    assert all(nxt - end >= 0.05 - 0.001 for end, nxt in zip(ends, starts[1:], strict=False))


async def test_wake_runs_the_update_at_once() -> None:
    wake = asyncio.Event()
    ticked = asyncio.Event()
    async with Ticker(ticked.set, 10.0, name="t", what="test update", wake=wake) as ticker:
        await asyncio.sleep(0.01)
        assert ticker.ticks == 0
        wake.set()
        await asyncio.wait_for(ticked.wait(), 1.0)
        assert ticker.ticks == 1
        assert not wake.is_set()  # cleared for the next request


async def test_a_failing_update_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def update() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    logger = logging.getLogger("tierproof.test.ticker")
    with caplog.at_level(logging.ERROR, logger=logger.name):
        async with Ticker(update, 0.02, name="t", what="updating the test values", logger=logger):
            for _ in range(1000):  # the loop goes on after the failure: two more calls come
                if calls >= 3:
                    break
                await asyncio.sleep(0.01)
    assert calls >= 3
    (record,) = [r for r in caplog.records if r.name == logger.name]
    assert record.getMessage() == "updating the test values failed"
    assert record.exc_info is not None


async def test_leaving_cancels_the_task_and_nothing_runs_after() -> None:
    calls = 0

    def update() -> None:
        nonlocal calls
        calls += 1

    ticker = Ticker(update, 0.01, name="sim-update-test", what="test update")
    async with ticker:
        assert any(t.get_name() == "sim-update-test" for t in asyncio.all_tasks())
        await asyncio.sleep(0.05)
    after = calls
    assert not any(t.get_name() == "sim-update-test" for t in asyncio.all_tasks())
    await asyncio.sleep(0.05)
    assert calls == after
    async with ticker:  # a left ticker can run again
        await asyncio.sleep(0.03)
    assert calls > after


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        Ticker(lambda: None, 0, name="t", what="test update")
