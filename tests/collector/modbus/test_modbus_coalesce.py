"""Coalescing, counted by the requests the server actually received."""

from __future__ import annotations

import asyncio

import pytest

from collector.modbus import ModbusCollector
from config.errors import ConfigError, ConnectError
from config.signals import Quality
from simulators.modbus import RegisterImage
from store.batch import Batch
from tests.collector.modbus_helpers import StartServer, by_name, ids_for, mdevice, mtag, poll_once


def counting_image(n: int) -> RegisterImage:
    image = RegisterImage()
    image.set_registers("holding", 0, [1000 + i for i in range(n)])
    return image


async def test_60_adjacent_tags_take_one_request(start_server: StartServer) -> None:
    server = await start_server({1: counting_image(60)})
    dev = mdevice(server.port, [mtag(f"t{i}", i) for i in range(60)])
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    assert len(batch) == 60
    assert {n: v for n, (v, _, _) in by_name(batch, dev, ids).items()} == {
        f"t{i}": 1000.0 + i for i in range(60)
    }
    assert list(server.request_log) == [(1, 3, 0, 60)]
    assert len(set(batch.ts_ns.tolist())) == 1  # one gateway timestamp per request


async def test_more_than_125_registers_take_two_requests(start_server: StartServer) -> None:
    server = await start_server({1: counting_image(200)})
    # 65 float32 = 130 registers: 62 tags (124 registers) fit in the first request
    dev = mdevice(server.port, [mtag(f"f{i}", 2 * i, "float32") for i in range(65)])
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    assert len(batch) == 65
    assert list(server.request_log) == [(1, 3, 0, 124), (1, 3, 124, 6)]
    assert bool((batch.quality == Quality.GOOD).all())


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (10, [(0, 10), (10, 10), (20, 10)]),
        (125, [(0, 30)]),
        (7, [(0, 7), (7, 7), (14, 7), (21, 7), (28, 2)]),
    ],
)
async def test_max_registers_per_request(
    start_server: StartServer, limit: int, expected: list[tuple[int, int]]
) -> None:
    server = await start_server({1: counting_image(30)})
    dev = mdevice(server.port, [mtag(f"t{i}", i) for i in range(30)],
                  max_registers_per_request=limit)
    await poll_once(dev, ids_for(dev))
    assert [(a, c) for _, _, a, c in server.request_log] == expected


@pytest.mark.parametrize(("gap", "expected"), [(0, 3), (1, 2), (2, 1)])
async def test_coalesce_gap(start_server: StartServer, gap: int, expected: int) -> None:
    # tags at 0, 2 (1 unused register before it) and 5 (2 unused)
    server = await start_server({1: counting_image(10)})
    dev = mdevice(server.port, [mtag("a", 0), mtag("b", 2), mtag("c", 5)], coalesce_gap=gap)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    assert len(server.request_log) == expected
    assert {n: v for n, (v, _, _) in by_name(batch, dev, ids).items()} == {
        "a": 1000.0, "b": 1002.0, "c": 1005.0
    }


async def test_units_and_tables_are_never_joined(start_server: StartServer) -> None:
    server = await start_server({1: counting_image(4), 2: counting_image(4)})
    tags = [
        mtag("h1", 0), mtag("h1b", 1),
        mtag("h2", 2, unit_id=2),
        mtag("i1", 3, table="input"),
        mtag("c1", 4, "bool", table="coil"), mtag("c1b", 5, "bool", table="coil"),
    ]
    dev = mdevice(server.port, tags, coalesce_gap=10)
    await poll_once(dev, ids_for(dev))
    assert sorted(server.request_log) == [(1, 1, 4, 2), (1, 3, 0, 2), (1, 4, 3, 1), (2, 3, 2, 1)]


async def test_groups_with_different_intervals_poll_separately(start_server: StartServer) -> None:
    server = await start_server({1: counting_image(20)})
    tags = [mtag(f"fast{i}", i, group="fast") for i in range(10)]
    tags += [mtag(f"slow{i}", 10 + i, group="slow") for i in range(10)]
    dev = mdevice(server.port, tags, poll_groups={"fast": 0.02, "slow": 60.0})
    ids = ids_for(dev)
    fast_ids = {ids[t.path] for t in tags if t.group == "fast"}
    batches: list[Batch] = []
    async with ModbusCollector(dev, ids) as c:
        gen = c.batches()
        try:
            while sum(1 for b in batches if int(b.tag_id[0]) in fast_ids) < 5:
                batches.append(await asyncio.wait_for(anext(gen), 20))
        finally:
            await gen.aclose()
    # a batch is one poll of one group
    for b in batches:
        assert len({int(t) in fast_ids for t in b.tag_id}) == 1
        assert len(b) == 10
    slow = [b for b in batches if int(b.tag_id[0]) not in fast_ids]
    assert len(slow) == 1  # 60 s interval: polled once, at start
    blocks = {(a, n) for _, _, a, n in server.request_log}
    assert blocks == {(0, 10), (10, 10)}  # adjacent groups are not joined
    assert sum(1 for _, _, a, _ in server.request_log if a == 10) == 1
    assert sum(1 for _, _, a, _ in server.request_log if a == 0) >= 5


async def test_tag_without_id_is_refused_by_name(start_server: StartServer) -> None:
    dev = mdevice(1502, [mtag("known", 0), mtag("stranger", 1)])
    ids = {dev.tags[0].path: 1}
    with pytest.raises(ConfigError) as err:
        ModbusCollector(dev, ids)
    assert "site/area/line/m1/stranger" in str(err.value)
    assert "known" not in str(err.value).replace("site/area/line/m1/stranger", "")


async def test_tag_wider_than_a_request_is_refused() -> None:
    dev = mdevice(1502, [mtag("s", 0, "string", length=20)], max_registers_per_request=10)
    with pytest.raises(ConfigError, match="spans 20"):
        ModbusCollector(dev, ids_for(dev))


async def test_connect_refused_raises_connect_error(free_port: int) -> None:
    dev = mdevice(free_port, [mtag("a", 0)])
    with pytest.raises(ConnectError, match=str(free_port)):
        async with ModbusCollector(dev, ids_for(dev)):
            pass


async def test_server_going_away_raises_connect_error(start_server: StartServer) -> None:
    server = await start_server({1: counting_image(5)})
    dev = mdevice(server.port, [mtag("a", 0)], poll_interval_s=0.02, timeout_s=0.3)
    got: list[Batch] = []

    async def consume(c: ModbusCollector) -> None:
        async for b in c.batches():
            got.append(b)
            if len(got) == 3:
                await server.stop()

    async with ModbusCollector(dev, ids_for(dev)) as c:
        with pytest.raises(ConnectError, match=str(server.port)):
            await asyncio.wait_for(consume(c), 20)
    # polls already queued when the server stopped may still arrive; then it must end
    assert 3 <= len(got) <= 6
