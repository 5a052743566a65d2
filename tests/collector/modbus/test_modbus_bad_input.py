"""Issue 13 item 8 for Modbus: a flood of malformed frames gives a bounded number of one-line
log records (no hex dump above DEBUG, no traceback), and float registers holding NaN or
infinity are stored with bad quality.

The malformed frames come from a home-made server on a real socket: no real server here can be
made to send them (see LyingServer in test_modbus_faults.py for the same reason)."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import AsyncIterator

import pytest

from collector import Supervisor
from collector.modbus import logs as modbus_logs
from config.signals import Quality
from simulators.modbus import RegisterImage
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.modbus_helpers import StartServer, mdevice, mtag
from tests.helpers import FAST, health, register, wait_until

STRAY = 10  # frames of other transactions before each right answer (pymodbus 3.16 gives up on ~20)


class NoisyServer:
    """Answers read holding registers (fc 3) with 42s. ``mode`` "stray": each answer comes
    after STRAY well-formed answers carrying other transaction ids (pymodbus skips each with
    an ERROR record and a hex dump); "undecodable": the answer has function code 0x55, which
    pymodbus cannot decode (asyncio logs a fatal protocol error with a traceback and the
    connection closes)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.answered = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                fc, _, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                body = bytes([fc, 2 * count]) + struct.pack(f">{count}H", *([42] * count))
                out = b""
                if self.mode == "stray":
                    for k in range(STRAY):
                        other = (tid + 1000 + k) % 65536 or 1
                        out += struct.pack(">HHHB", other, 0, len(body) + 1, unit) + body
                else:
                    body = bytes([0x55, 2, 0, 42])
                out += struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body
                writer.write(out)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> NoisyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def stray() -> AsyncIterator[NoisyServer]:
    async with NoisyServer("stray") as server:
        yield server


@pytest.fixture
async def undecodable() -> AsyncIterator[NoisyServer]:
    async with NoisyServer("undecodable") as server:
        yield server


def about_modbus(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in ("pymodbus.logging", "asyncio")
            or r.name.startswith("tierproof.collector.modbus")]


async def test_a_flood_of_stray_frames_gives_a_bounded_log_and_polling_goes_on(
    stray: NoisyServer, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    modbus_logs.flush()  # a fresh interval: what earlier tests logged does not count here
    caplog.set_level(logging.DEBUG, logger="tierproof.collector.modbus")
    dev = mdevice(stray.port, [mtag("a", 0), mtag("b", 1)], poll_interval_s=0.02, backoff=FAST)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: health(sup).samples_delivered >= 2 * 30, what="30 polls")
        h = health(sup)
    assert h.reconnects == 0 and h.bad_samples == 0  # skipped frames cost nothing else
    records = about_modbus(caplog)
    loud = [r for r in records if r.levelno >= logging.INFO and r.name != "tierproof.collector.modbus"]
    # 30 polls x 10 stray frames: one line for the reason, not 300 multi-line dumps
    assert stray.answered >= 30
    assert 1 <= len(loud) <= 3, [r.getMessage() for r in loud]
    for r in loud:
        text = r.getMessage()
        assert "\n" not in text and ">>>>>" not in text and r.exc_info is None
        assert f"modbus line 127.0.0.1:{stray.port}" in text  # names the line
    # the hex goes to DEBUG, truncated
    hexes = [r.getMessage() for r in records if "pymodbus frames" in r.getMessage()]
    assert hexes and all(r.levelno == logging.DEBUG for r in records if "pymodbus frames" in r.getMessage())
    assert all(len(m) <= modbus_logs.HEX_MAX + 100 for m in hexes)
    latest = sqlite_store.latest(list(ids.values()))
    assert {(v.value, v.quality) for v in latest.values()} == {(42.0, Quality.GOOD)}
    # what was only counted is said in one summary line per reason
    modbus_logs.flush()
    # this line's summary: in another order (xdist) a collector of an earlier test in the same
    # process was still logging its own reason, and summary[0] was that one
    summary = [m for m in (r.getMessage() for r in about_modbus(caplog))
               if " more of " in m and f"modbus line 127.0.0.1:{stray.port}" in m]
    assert summary and int(summary[0].split()[1]) >= 30 * STRAY - 3


async def test_undecodable_answers_are_one_line_each_reconnect_without_a_traceback(
    undecodable: NoisyServer, sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    modbus_logs.flush()
    dev = mdevice(undecodable.port, [mtag("a", 0)], poll_interval_s=0.02, backoff=FAST)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: health(sup).reconnects >= 5, what="5 reconnects")
    records = [r for r in about_modbus(caplog) if r.name in ("pymodbus.logging", "asyncio")]
    assert records, "the first undecodable answer is logged"
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    fatal = [r for r in records if "undecodable Modbus answer" in r.getMessage()]
    assert len(fatal) == 1  # the first in full; the 5+ others counted for the summary
    assert "Unable to decode" in fatal[0].getMessage()
    assert not any("Traceback" in (r.exc_text or "") for r in caplog.records)


async def test_float_registers_holding_nan_or_infinity_are_stored_bad(
    start_server: StartServer, sqlite_store: SqliteStore
) -> None:
    image = RegisterImage()
    image.set_value("holding", 0, math.nan, "float32", "ABCD")
    image.set_value("holding", 2, math.inf, "float32", "ABCD")
    image.set_value("holding", 4, -math.inf, "float64", "ABCD")
    image.set_value("holding", 8, 1.5, "float32", "ABCD")
    server = await start_server({1: image})
    tags = [mtag("nan", 0, "float32"), mtag("inf", 2, "float32"), mtag("ninf", 4, "float64"),
            mtag("ok", 8, "float32")]
    dev = mdevice(server.port, tags, backoff=FAST)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: health(sup).samples_delivered >= 4, what="a poll")
        h = health(sup)
    assert h.non_finite == 3 and h.bad_samples == 3
    latest = sqlite_store.latest(list(ids.values()))
    got = {t.name: latest[ids[t.path]] for t in tags}
    for name in ("nan", "inf", "ninf"):
        assert got[name].quality == Quality.BAD and not math.isfinite(got[name].value), name
    assert (got["ok"].value, got["ok"].quality) == (1.5, Quality.GOOD)
