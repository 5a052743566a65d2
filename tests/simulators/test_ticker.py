"""The simulators' one update loop: a fixed grid, early wakes, failures logged, clean exit."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from simulators.ticker import Ticker


async def test_ticks_on_a_grid_that_a_slow_update_does_not_shift() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def update() -> None:
        times.append(loop.time())
        await asyncio.sleep(0.06)  # 60 % of the interval: a sleep-then-update loop would drift

    async with Ticker(update, 0.1, name="t", what="test update") as ticker:
        start = loop.time()
        await asyncio.sleep(1.05)
    assert len(times) >= 7
    assert ticker.ticks in (len(times) - 1, len(times))  # the last one may be cut short
    # every update starts near start + k * interval; sleeping 0.1 s after each 0.06 s update
    # would put the k-th one k * 0.06 s later
    for t in times:
        k = round((t - start) / 0.1)
        assert t - start == pytest.approx(0.1 * k, abs=0.03)
    assert round((times[-1] - start) / 0.1) >= 9


async def test_missed_ticks_are_skipped_not_caught_up() -> None:
    calls = 0

    def update() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.22)  # blocks the loop for four intervals and more

    async with Ticker(update, 0.05, name="t", what="test update"):
        await asyncio.sleep(0.4)
    # 1 slow tick at 0.05 s (to 0.27 s), then 0.30, 0.35 (and maybe 0.40): no burst of 4
    assert 3 <= calls <= 5


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
            await asyncio.sleep(0.15)
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
