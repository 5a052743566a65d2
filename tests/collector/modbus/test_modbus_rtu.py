"""Modbus RTU: a serial line through a socat pty pair, and RTU frames over TCP, against
pymodbus' serial / RTU servers; several units on one line, one of them silent; two devices
sharing one serial port; results checked in a real SqliteStore."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector import Supervisor
from collector.modbus import ModbusCollector
from collector.modbus.line import _SHARED, ModbusLine
from config.errors import ConnectError
from config.modbus import ModbusDevice
from config.signals import Quality
from simulators.modbus import ModbusSimSerialServer, ModbusSimServer, RegisterImage
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.modbus_helpers import (
    by_name,
    ids_for,
    mdevice,
    mtag,
    poll_once,
    pty_pair,
    rtu_device,
)
from tests.helpers import FAST, register, wait_until


def unit_image(base: int) -> RegisterImage:
    image = RegisterImage()
    image.set_registers("holding", 0, [base, base + 1])
    image.set_value("input", 10, -1234.5, "float32", "CDAB")
    image.set_value("holding", 20, -(2**40), "int64")
    image.set_bits("coil", 0, [True, False, True])
    image.set_bits("discrete", 5, [False, True])
    return image


def unit_tags(unit: int, asset: str) -> list[Any]:
    return [
        mtag(f"u{unit}_a", 0, unit_id=unit, asset=asset),
        mtag(f"u{unit}_b", 1, unit_id=unit, asset=asset),
        mtag(f"u{unit}_f", 10, "float32", table="input", byte_order="CDAB", unit_id=unit, asset=asset),
        mtag(f"u{unit}_q", 20, "int64", unit_id=unit, asset=asset),
        mtag(f"u{unit}_c2", 2, "bool", table="coil", unit_id=unit, asset=asset),
        mtag(f"u{unit}_d6", 6, "bool", table="discrete", unit_id=unit, asset=asset),
    ]


def expected(unit: int, base: int) -> dict[str, float]:
    return {f"u{unit}_a": base, f"u{unit}_b": base + 1, f"u{unit}_f": -1234.5,
            f"u{unit}_q": -(2.0**40), f"u{unit}_c2": 1.0, f"u{unit}_d6": 1.0}


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with pty_pair(tmp_path) as pair:
        yield pair


StartSerial = Callable[..., Awaitable[ModbusSimSerialServer]]


@pytest.fixture
async def serial_server() -> AsyncIterator[StartSerial]:
    servers: list[ModbusSimSerialServer] = []

    async def start(tty: str, units: dict[int, RegisterImage], **kw: Any) -> ModbusSimSerialServer:
        server = ModbusSimSerialServer(tty, units, **kw)
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


async def test_rtu_values_of_every_table(ptys: tuple[str, str], serial_server: StartSerial) -> None:
    client_tty, server_tty = ptys
    await serial_server(server_tty, {1: unit_image(100)})
    dev = rtu_device(client_tty, unit_tags(1, "s/a/l/m1"))
    ids = ids_for(dev)
    batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert {k: v[0] for k, v in got.items()} == expected(1, 100)
    assert {v[1] for v in got.values()} == {Quality.GOOD}
    assert c.tag_errors == {} and c.gap_events[0][:2] == ("close", "unit 1")


async def test_rtu_line_with_a_silent_unit(
    ptys: tuple[str, str], serial_server: StartSerial, sqlite_store: SqliteStore
) -> None:
    """Units 1 and 2 answer, unit 3 does not: unit 3's tags get BAD_NOT_CONNECTED and its
    asset a gap; units 1 and 2 keep going; unit 3 coming back closes its gap."""
    client_tty, server_tty = ptys
    units = {1: unit_image(100), 2: unit_image(200)}
    server = await serial_server(server_tty, units)
    tags = unit_tags(1, "s/a/l/m1") + unit_tags(2, "s/a/l/m2") + unit_tags(3, "s/a/l/m3")
    # a generous timeout: an answering unit that misses one on a busy machine is silent too
    dev = rtu_device(client_tty, tags, poll_interval_s=0.05, timeout_s=1.0,
                     bad_tag_retry_s=0.5, backoff=FAST)
    ids = register(sqlite_store, dev)
    writer = Writer(sqlite_store)

    def latest(name: str) -> tuple[float, int] | None:
        tag = next(t for t in dev.tags if t.name == name)
        got = sqlite_store.latest([ids[tag.path]]).get(ids[tag.path])
        return None if got is None else (got.value, got.quality)

    async with Supervisor([dev], sqlite_store, writer, ids) as sup:
        h = lambda: sup.status()[0]  # noqa: E731
        await wait_until(lambda: h().samples_delivered >= 60, what="units 1 and 2 delivering")
        await writer.flush()
        for unit, base in ((1, 100), (2, 200)):
            for name, value in expected(unit, base).items():
                assert latest(name) == (value, Quality.GOOD), name
        for t in unit_tags(3, "s/a/l/m3"):
            got = latest(t.name)
            assert got is not None and got[1] == Quality.BAD_NOT_CONNECTED, t.name
            assert "unit 3 does not answer" in h().tag_errors[f"s/a/l/m3/{t.name}"]
        gaps = sqlite_store.gaps(None, 0, 2**62)
        assert [(g.device, g.asset, g.end_ns) for g in gaps] == [("rtu1", "s/a/l/m3", None)]
        assert "unit 3 does not answer" in gaps[0].reason
        assert h().state == "connected" and h().gap_open_since is None

        # unit 3 is powered up: asked again after bad_tag_retry_s, its gap closes
        units[3] = unit_image(300)
        await wait_until(lambda: latest("u3_a") == (300.0, Quality.GOOD), what="unit 3 back")
        await wait_until(lambda: all(g.end_ns is not None for g in sqlite_store.gaps(None, 0, 2**62)),
                         what="unit 3's gap closed")
        assert h().tag_errors == {}
        # the line was never torn down for it
        assert h().reconnects == 0
    assert set(server.requests) == {1, 2, 3, 4}


async def test_no_unit_answers_is_a_device_gap(
    ptys: tuple[str, str], serial_server: StartSerial, sqlite_store: SqliteStore
) -> None:
    client_tty, server_tty = ptys
    await serial_server(server_tty, {})  # nobody on the line
    dev = rtu_device(client_tty, unit_tags(1, "s/a/l/m1"), poll_interval_s=0.05, timeout_s=0.2,
                     backoff=FAST)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: sup.status()[0].gap_open_since is not None, what="device gap")
        assert "no unit answers" in (sup.status()[0].last_error or "")
    gaps = sqlite_store.gaps("rtu1", 0, 2**62)
    assert gaps and gaps[0].asset is None


async def test_two_devices_share_one_serial_line_one_request_at_a_time(
    ptys: tuple[str, str], serial_server: StartSerial, sqlite_store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two configured devices on one serial port (and two poll groups each) share one
    client; their requests are never on the line at the same time."""
    client_tty, server_tty = ptys
    await serial_server(server_tty, {1: unit_image(100), 2: unit_image(200)})
    in_flight = 0
    most = 0
    exchanges = 0
    original = ModbusLine.request

    async def counting(self: ModbusLine, call: Any) -> Any:
        async def wrapped(client: Any) -> Any:
            nonlocal in_flight, most, exchanges
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await call(client)
            finally:
                in_flight -= 1
                exchanges += 1
        return await original(self, wrapped)

    monkeypatch.setattr(ModbusLine, "request", counting)
    kw: dict[str, Any] = {"poll_interval_s": 0.02, "poll_groups": {"other": 0.03}, "timeout_s": 2.0,
                          "backoff": FAST}
    a = rtu_device(client_tty, [*unit_tags(1, "s/a/l/m1"), mtag("g", 1, unit_id=1,
                   asset="s/a/l/m1", group="other")], name="A", **kw)
    b = rtu_device(client_tty, [*unit_tags(2, "s/a/l/m2"), mtag("g", 1, unit_id=2,
                   asset="s/a/l/m2", group="other")], name="B", **kw)
    ids = register(sqlite_store, a, b)
    async with Supervisor([a, b], sqlite_store, Writer(sqlite_store), ids) as sup:
        await wait_until(lambda: all(h.samples_delivered >= 100 for h in sup.status()),
                         what="both devices delivering")
        assert len(_SHARED) == 1  # one client for the line
        status = sup.status()
    assert most == 1 and exchanges > 40
    assert all(h.bad_samples == 0 and h.reconnects == 0 for h in status)
    assert sqlite_store.gaps(None, 0, 2**62) == []
    assert _SHARED == {}  # closed by the last device


async def test_rtu_over_tcp_with_a_silent_unit() -> None:
    """RTU frames over TCP (a serial-to-Ethernet converter): same tag model; a unit the
    converter gets no answer from is silent, the others are read."""
    async with ModbusSimServer(units={1: unit_image(100)}, framer="rtu") as server:
        tags = [*unit_tags(1, "s/a/l/m1"), mtag("gone", 0, unit_id=7, asset="s/a/l/m7")]
        dev = mdevice(server.port, tags, transport="rtu_over_tcp", timeout_s=1.0)
        ids = ids_for(dev)
        batch, c = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert {k: v[0] for k, v in got.items() if k != "gone"} == expected(1, 100)
    assert got["gone"][1] == Quality.BAD_NOT_CONNECTED
    assert ("open", "unit 7") in [e[:2] for e in c.gap_events]
    assert c.stats.no_answer == 1


async def test_missing_serial_port_is_a_connect_error(tmp_path: Path) -> None:
    dev = rtu_device(str(tmp_path / "no-such-tty"), unit_tags(1, "s/a/l/m1"))
    with pytest.raises(ConnectError, match=r"cannot open serial port .*no-such-tty"):
        async with ModbusCollector(dev, ids_for(dev)):
            pass
    assert _SHARED == {}


async def test_frame_gap_is_kept_between_frames() -> None:
    """Each request waits until the line has been silent for frame_gap_s since the last
    answer (observed through the line's sleep, not timed)."""
    dev = ModbusDevice(protocol="modbus", name="x", transport="rtu", frame_gap_s=0.25,
                       serial={"port": "/dev/null-not-opened"})
    line = ModbusLine(dev)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    class Client:
        connected = True

    async def exchange(client: Any) -> str:
        return "answer"

    line._sleep = sleep
    line.client = Client()  # type: ignore[assignment]
    line._quiet_from = float("-inf")  # silent for ever: no wait before the first request
    assert await line.request(exchange) == "answer"
    assert waits == []
    assert await line.request(exchange) == "answer"  # right after the first answer
    assert len(waits) == 1 and 0 < waits[0] <= 0.25


async def test_unit_gap_left_open_by_a_lost_connection_closes_after_reconnect(
    ptys: tuple[str, str], serial_server: StartSerial, sqlite_store: SqliteStore
) -> None:
    """Unit 3 silent (its asset gap opens), then unit 1 too (a device gap, reconnect); when
    both answer again the new connection closes both gaps."""
    client_tty, server_tty = ptys
    units = {1: unit_image(100)}
    await serial_server(server_tty, units)
    dev = rtu_device(client_tty, [mtag("one", 0, unit_id=1, asset="s/a/l/m1"),
                                  mtag("three", 0, unit_id=3, asset="s/a/l/m3")],
                     poll_interval_s=0.05, timeout_s=1.0, bad_tag_retry_s=0.3, backoff=FAST)
    ids = register(sqlite_store, dev)
    async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
        def gaps() -> list[tuple[str | None, bool]]:
            return sorted((g.asset or "", g.end_ns is None) for g in sqlite_store.gaps(None, 0, 2**62))

        await wait_until(lambda: gaps() == [("s/a/l/m3", True)], what="unit 3's gap")
        del units[1]
        await wait_until(lambda: ("", True) in gaps(), what="the device gap")
        assert "no unit answers" in (sup.status()[0].last_error or "")
        units[1] = unit_image(100)
        units[3] = unit_image(300)
        await wait_until(lambda: gaps() == [("", False), ("s/a/l/m3", False)], what="both closed")
        assert sup.status()[0].reconnects >= 1
