"""Exception responses: exactly the refused tags go bad, the rest keep running, and recover."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from collector.modbus import ModbusCollector
from config.signals import Quality
from simulators.modbus import RegisterImage
from store.batch import Batch
from tests.collector.modbus_helpers import StartServer, by_name, ids_for, mdevice, mtag, poll_once


def image_with(n: int) -> RegisterImage:
    image = RegisterImage()
    image.set_registers("holding", 0, [500 + i for i in range(n)])
    return image


async def test_illegal_address_marks_exactly_that_tag_then_recovers(
    start_server: StartServer,
) -> None:
    image = image_with(10)
    image.set_illegal("holding", 4)
    server = await start_server({1: image})
    dev = mdevice(server.port, [mtag(f"t{i}", i) for i in range(10)], poll_interval_s=0.02)
    ids = ids_for(dev)
    bad_path = dev.tags[4].path
    seen: list[Batch] = []
    async with ModbusCollector(dev, ids, bad_tag_retry_s=1.0) as c:
        gen = c.batches()
        try:
            first = await asyncio.wait_for(anext(gen), 20)
            got = by_name(first, dev, ids)
            assert got["t4"][1] == Quality.BAD_CONFIG
            assert math.isnan(got["t4"][0])
            for i in (0, 1, 2, 3, 5, 6, 7, 8, 9):
                assert got[f"t{i}"] == (500.0 + i, Quality.GOOD, None)
            assert set(c.tag_errors) == {bad_path}
            assert "illegal data address" in c.tag_errors[bad_path]
            # the coalesced request failed, then each tag was read alone (the next poll may
            # have begun meanwhile)
            log = list(server.request_log)[:11]
            assert log == [(1, 3, 0, 10)] + [(1, 3, i, 1) for i in range(10)]

            # from now on: the two good blocks every poll, the bad tag alone and seldom
            server.reset_counts()

            def requested() -> list[tuple[int, int]]:
                return [(a, n) for _, _, a, n in server.request_log]

            while requested().count((0, 4)) < 5:
                seen.append(await asyncio.wait_for(anext(gen), 20))
            blocks = requested()
            # the poll that logged the fifth (0, 4) may not have read (5, 5) yet
            assert blocks.count((0, 4)) >= 5 and blocks.count((5, 5)) >= 4
            assert (0, 10) not in blocks
            assert blocks.count((4, 1)) < blocks.count((0, 4))
            for b in seen:
                for name, (_, q, _) in by_name(b, dev, ids).items():
                    assert q == (Quality.BAD_CONFIG if name == "t4" else Quality.GOOD)

            image.set_illegal("holding", 4, illegal=False)
            image.set_registers("holding", 4, [4444])

            async def recovered() -> Batch:
                while True:
                    b = await anext(gen)
                    g = by_name(b, dev, ids)
                    if g.get("t4", (0, Quality.BAD))[1] == Quality.GOOD:
                        return b
            b = await asyncio.wait_for(recovered(), 20)
            assert by_name(b, dev, ids)["t4"][0] == 4444.0
            assert c.tag_errors == {}
            # and the plan is one coalesced request again
            server.reset_counts()
            await asyncio.wait_for(anext(gen), 20)
            await asyncio.wait_for(anext(gen), 20)
            assert set(server.request_log) == {(1, 3, 0, 10)}
        finally:
            await gen.aclose()


async def test_device_failure_and_partial_multi_register_tag(start_server: StartServer) -> None:
    image = image_with(20)
    image.set_exception("holding", 3, 4)  # second register of the float32 at 2
    image.set_exception("holding", 9, 4)
    server = await start_server({1: image})
    tags = [mtag("a", 0), mtag("b", 1), mtag("f", 2, "float32"), mtag("c", 4),
            mtag("d", 9), mtag("e", 10)]
    dev = mdevice(server.port, tags, coalesce_gap=5)
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert {n for n, (_, q, _) in got.items() if q != Quality.GOOD} == {"f", "d"}
    assert got["f"][1] == got["d"][1] == Quality.BAD_DEVICE_FAILURE
    assert [got[n][0] for n in ("a", "b", "c", "e")] == [500.0, 501.0, 504.0, 510.0]
    assert set(c.tag_errors) == {tags[2].path, tags[4].path}
    assert "device failure" in c.tag_errors[tags[2].path]
    assert "2..3" in c.tag_errors[tags[2].path]


async def _batches(c: ModbusCollector, n: int) -> list[Batch]:
    out = []
    gen: AsyncIterator[Batch] = c.batches()
    try:
        for _ in range(n):
            out.append(await asyncio.wait_for(anext(gen), 20))
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
    return out


async def test_illegal_unused_register_in_a_gap_stops_gap_joining(
    start_server: StartServer,
) -> None:
    image = image_with(10)
    image.set_illegal("holding", [1, 2])  # unused registers between the tags
    server = await start_server({1: image})
    dev = mdevice(server.port, [mtag("a", 0), mtag("b", 3), mtag("c", 4)], coalesce_gap=2,
                  poll_interval_s=0.02)
    ids = ids_for(dev)
    async with ModbusCollector(dev, ids) as c:
        batches = await _batches(c, 4)
        assert c.tag_errors == {}
    for b in batches:
        assert bool((b.quality == Quality.GOOD).all())
        assert sorted(b.value.tolist()) == [500.0, 503.0, 504.0]
    log = list(server.request_log)
    assert log[:4] == [(1, 3, 0, 5), (1, 3, 0, 1), (1, 3, 3, 1), (1, 3, 4, 1)]
    # afterwards the tags are read without spanning the illegal gap
    assert set(log[4:]) == {(1, 3, 0, 1), (1, 3, 3, 2)}


async def test_missing_unit_behind_gateway_is_bad_for_its_tags_only(
    start_server: StartServer,
) -> None:
    server = await start_server({1: image_with(5)})
    tags = [mtag("here", 0), mtag("gone1", 0, unit_id=9), mtag("gone2", 1, unit_id=9)]
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert got["here"] == (500.0, Quality.GOOD, None)
    assert got["gone1"][1] == got["gone2"][1] == Quality.BAD_NOT_CONNECTED
    assert "gateway" in c.tag_errors[tags[1].path]
    # a gateway answer is about the whole unit: no tag-by-tag re-reads
    assert sorted(server.request_log) == [(1, 3, 0, 1), (9, 3, 0, 2)]


async def test_illegal_coil_is_isolated(start_server: StartServer) -> None:
    image = RegisterImage()
    image.set_bits("coil", 0, [True, False, True, True])
    image.set_illegal("coil", 2)
    server = await start_server({1: image})
    tags = [mtag(f"c{i}", i, "bool", table="coil") for i in range(4)]
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert [got[f"c{i}"][1] for i in range(4)] == [0, 0, Quality.BAD_CONFIG, 0]
    assert [got[f"c{i}"][0] for i in (0, 1, 3)] == [1.0, 0.0, 1.0]
    assert list(c.tag_errors) == [tags[2].path]


async def test_strings_in_a_refused_request(start_server: StartServer) -> None:
    image = RegisterImage()
    image.set_registers("holding", 0, [0x4F4B, 0x2100, 0])  # "OK!"
    image.set_illegal("holding", 5)
    server = await start_server({1: image})
    tags = [mtag("ok", 0, "string", length=3), mtag("bad", 3, "string", length=3)]
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert got["ok"][1:] == (Quality.GOOD, "OK!") and math.isnan(got["ok"][0])
    assert got["bad"][1:] == (Quality.BAD_CONFIG, None) and math.isnan(got["bad"][0])
    assert list(c.tag_errors) == [tags[1].path]


async def test_bad_tag_wait_does_not_hold_back_good_tags(start_server: StartServer) -> None:
    image = image_with(3)
    image.set_illegal("holding", 1)
    server = await start_server({1: image})
    dev = mdevice(server.port, [mtag("a", 0), mtag("b", 1), mtag("c", 2)], poll_interval_s=0.02)
    ids = ids_for(dev)
    async with ModbusCollector(dev, ids, bad_tag_retry_s=3600) as c:
        batches = await _batches(c, 6)
    # after the first poll, the bad tag is skipped (retry in an hour) and the others flow
    assert [len(b) for b in batches] == [3, 2, 2, 2, 2, 2]
    assert bool((batches[-1].quality == Quality.GOOD).all())
    assert sorted(batches[-1].value.tolist()) == [500.0, 502.0]
