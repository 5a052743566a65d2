"""Issue 9's Modbus faults: exception -> quality table, 64-bit integers beyond 2**53, the
configurable retry of refused tags, and answers that do not match their request."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator

import pytest

from collector import Supervisor
from collector.modbus import ModbusCollector
from collector.modbus.codec import EXACT_INT_LIMIT
from config.signals import Quality
from simulators.modbus import RegisterImage
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.modbus_helpers import StartServer, by_name, ids_for, mdevice, mtag, poll_once
from tests.helpers import FAST, register, wait_until

#: the README's table: Modbus exception code -> stored quality
QUALITY_OF_EXCEPTION = [
    (1, Quality.BAD_CONFIG),  # illegal function: this unit has no such table
    (2, Quality.BAD_CONFIG),  # illegal data address
    (3, Quality.BAD_CONFIG),  # illegal data value (e.g. a count the unit refuses)
    (4, Quality.BAD_DEVICE_FAILURE),  # server device failure
    (5, Quality.BAD_DEVICE_FAILURE),  # acknowledge (no data in the answer)
    (6, Quality.BAD_DEVICE_FAILURE),  # server device busy
    (7, Quality.BAD_DEVICE_FAILURE),  # negative acknowledge
    (8, Quality.BAD_DEVICE_FAILURE),  # memory parity error
    (10, Quality.BAD_NOT_CONNECTED),  # gateway path unavailable
    (11, Quality.BAD_NOT_CONNECTED),  # gateway target device failed to respond
]


@pytest.mark.parametrize(("code", "quality"), QUALITY_OF_EXCEPTION, ids=lambda v: str(int(v)))
async def test_exception_code_to_quality(start_server: StartServer, code: int, quality: Quality) -> None:
    image = RegisterImage()
    image.set_registers("holding", 0, [7, 8])
    image.set_exception("holding", 5, code)
    server = await start_server({1: image})
    # two requests: 5 and 6 (acknowledge, busy) refuse a whole request, not an address
    tags = [mtag("ok", 0), mtag("refused", 5)]
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert got["ok"] == (7.0, Quality.GOOD, None)
    assert got["refused"][1] == quality and math.isnan(got["refused"][0])
    assert f"Modbus exception {code} (" in c.tag_errors[tags[1].path]


async def test_64_bit_integers_beyond_2_53_are_rounded_and_uncertain(start_server: StartServer) -> None:
    image = RegisterImage()
    values = {
        "i_max_exact": ("int64", EXACT_INT_LIMIT),
        "i_min_exact": ("int64", -EXACT_INT_LIMIT),
        "i_above": ("int64", EXACT_INT_LIMIT + 1),
        "i_below": ("int64", -EXACT_INT_LIMIT - 1),
        "u_max_exact": ("uint64", EXACT_INT_LIMIT),
        "u_above": ("uint64", EXACT_INT_LIMIT + 1),
        "u_top": ("uint64", 2**64 - 1),
        "u_small": ("uint64", 12345),
    }
    tags = []
    for k, (name, (type_, value)) in enumerate(values.items()):
        order = "CDAB" if k % 2 else "ABCD"
        image.set_value("holding", 4 * k, value, type_, order)
        tags.append(mtag(name, 4 * k, type_, byte_order=order))
    server = await start_server({1: image})
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    for name, (_, value) in values.items():
        exact = abs(value) <= EXACT_INT_LIMIT
        assert got[name][0] == float(value), name  # the nearest float64
        assert got[name][1] == (Quality.GOOD if exact else Quality.UNCERTAIN), name
    assert got["i_above"][0] == float(EXACT_INT_LIMIT)  # 2**53 + 1 is not a float64


async def test_retry_of_refused_tags_is_a_device_option(start_server: StartServer) -> None:
    image = RegisterImage()
    image.set_registers("holding", 0, [1, 2, 3])
    image.set_illegal("holding", 1)
    server = await start_server({1: image})
    dev = mdevice(server.port, [mtag("a", 0), mtag("b", 1), mtag("c", 2)], poll_interval_s=0.02,
                  bad_tag_retry_s=0.2)
    assert mdevice(server.port, []).bad_tag_retry_s == 30.0  # the default
    ids = ids_for(dev)
    async with ModbusCollector(dev, ids) as c:
        assert c.bad_tag_retry_s == 0.2
        gen = c.batches()
        try:
            await asyncio.wait_for(anext(gen), 20)
            server.reset_counts()
            # the refused tag is asked alone again, every 0.2 s, not every 30 s
            while [a for _, _, a, _ in server.request_log].count(1) < 3:
                await asyncio.wait_for(anext(gen), 20)
        finally:
            await gen.aclose()


# ------------------------------------------------------------------ mismatched answers


class LyingServer:
    """A Modbus TCP server that answers read holding registers (fc 3) with 42s, or, when
    told, with an answer that does not match the request: another function code (4, a
    well-formed read-input answer pymodbus accepts as such) or fewer registers.

    Only this fault needs a home-made server: the real ones here cannot be made to lie
    (see tests/interop for modbus-serial's, whose answers a script rewrites on its socket).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                fc, _, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                fc_out, n = {"ok": (fc, count), "wrong_fc": (4, count), "short": (fc, count - 1)}[self.mode]
                body = bytes([fc_out, 2 * n]) + struct.pack(f">{n}H", *([42] * n))
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> LyingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def liar() -> AsyncIterator[LyingServer]:
    async with LyingServer() as server:
        yield server


@pytest.mark.parametrize(("mode", "reason"), [
    ("wrong_fc", "answered with function code 4 to a request with function code 3"),
    ("short", "answered 1 registers instead of 2"),
])
async def test_mismatched_answer_is_a_gap_at_once(
    liar: LyingServer, sqlite_store: SqliteStore, mode: str, reason: str
) -> None:
    """Regression (issue 9): an answer with another function code used to leave the device
    "connected" with nothing stored and no gap for bad_tag_retry_s (30 s)."""
    dev = mdevice(liar.port, [mtag("a", 0), mtag("b", 1)], poll_interval_s=0.05, backoff=FAST,
                  bad_tag_retry_s=3600)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        h = lambda: sup.status()[0]  # noqa: E731
        await wait_until(lambda: h().samples_delivered >= 4, what="data")
        liar.mode = mode
        await wait_until(lambda: h().gap_open_since is not None, what="a gap")
        assert reason in (h().last_error or "")
        gaps = sqlite_store.gaps(dev.name, 0, 2**62)
        assert len(gaps) == 1 and reason in gaps[0].reason and gaps[0].asset is None
        liar.mode = "ok"
        await wait_until(lambda: h().gap_open_since is None, what="the gap closed")
        assert h().bad_samples == 0  # nothing wrong was stored as a value
    latest = sqlite_store.latest(list(ids.values()))
    assert {(v.value, v.quality) for v in latest.values()} == {(42.0, Quality.GOOD)}
