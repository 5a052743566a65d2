"""Modbus lines: the connection a Modbus device is reached through, shared where it must be.

A *line* is one pymodbus client: a Modbus TCP socket (``transport: tcp``), a serial port
speaking RTU (``rtu``), or a TCP socket carrying RTU frames to a serial-to-Ethernet converter
(``rtu_over_tcp``). A serial line is a bus: only one request may be on it at a time, and the
answer of one unit must not be mistaken for another's. So every device configured on the same
serial port (or the same rtu_over_tcp host and port) gets the *same* :class:`ModbusLine`,
opened by the first and closed by the last, and every request goes through
:meth:`ModbusLine.request`, which sends one request at a time and keeps the RTU silent
interval (``frame_gap_s``) between an answer and the next request. Modbus TCP lines are
private to their device (MBAP transaction ids keep the answers apart).

The one place pymodbus clients are made and connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from config.errors import ConnectError
from config.modbus import ModbusDevice

from . import logs

__all__ = ["ModbusLine", "acquire_line", "release_line"]

T = TypeVar("T")

_PARITY = {"none": "N", "even": "E", "odd": "O"}

#: shared lines by (event loop, transport, where); only RTU lines are shared
_SHARED: dict[tuple[int, str, str], ModbusLine] = {}


class ModbusLine:
    """One pymodbus client and the lock that serializes the requests sent over it."""

    def __init__(self, device: ModbusDevice) -> None:
        self.transport = device.transport
        self.where = device.line
        self.shared = device.transport != "tcp"
        self._device = device
        self._gap = device.frame_gap()
        self._lock = asyncio.Lock()
        self._quiet_from = 0.0  # event-loop time the line has been silent since
        self.users = 0
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests observe waits
        logs.install()  # pymodbus's lines about bad frames: one line each, rate-limited

    def describe(self) -> str:
        if self.transport == "rtu":
            s = self._device.serial
            assert s is not None
            return (f"serial port {s.port} ({s.baudrate} baud, {s.bytesize}"
                    f"{_PARITY[s.parity]}{s.stopbits})")
        if self.transport == "rtu_over_tcp":
            return f"{self.where} (RTU over TCP)"
        return self.where

    def _make(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        d = self._device
        # reconnecting is the supervisor's job (reconnect_delay=0), retrying too (retries=0)
        if d.transport == "rtu":
            s = d.serial
            assert s is not None
            return AsyncModbusSerialClient(
                s.port, framer=FramerType.RTU, baudrate=s.baudrate, bytesize=s.bytesize,
                parity=_PARITY[s.parity], stopbits=s.stopbits, timeout=d.timeout_s,
                retries=0, reconnect_delay=0, name=d.line,
            )
        return AsyncModbusTcpClient(
            d.host, port=d.port, timeout=d.timeout_s, retries=0, reconnect_delay=0,
            name=d.name if d.transport == "tcp" else d.line,
            framer=FramerType.RTU if d.transport == "rtu_over_tcp" else FramerType.SOCKET,
        )

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.client.connected)

    async def open(self, name: str) -> None:
        """Connect, unless a device sharing the line has done it already."""
        # pymodbus's log lines name the line: its callbacks run in a copy of this context
        logs.LINE.set(f"{self._device.protocol} line {self.describe()}")
        async with self._lock:
            if self.connected:
                return
            if self.client is not None:
                self.client.close()
            client = self._make()
            try:
                ok = await client.connect()
            except (OSError, ModbusException, TimeoutError) as exc:
                client.close()
                raise ConnectError(f"{name}: cannot connect to {self.describe()}: {exc}") from exc
            if not ok:
                client.close()
                if self.transport == "rtu":
                    what, why = "cannot open", "missing, in use or not permitted"
                else:
                    what, why = "cannot connect to", "refused or timed out"
                raise ConnectError(f"{name}: {what} {self.describe()} ({why})")
            self.client = client
            self._quiet_from = asyncio.get_running_loop().time()

    async def request(self, call: Callable[[AsyncModbusTcpClient | AsyncModbusSerialClient], Awaitable[T]]
                      ) -> T:
        """Run one request/answer exchange alone on the line, after the RTU silent interval."""
        if not self.shared:  # Modbus TCP: pymodbus already sends one request at a time
            client = self.client
            if client is None or not client.connected:
                raise ConnectionError(f"{self.describe()} is not connected")
            return await call(client)
        async with self._lock:
            client = self.client
            if client is None or not client.connected:
                raise ConnectionError(f"{self.describe()} is not connected")
            if self._gap:
                loop = asyncio.get_running_loop()
                wait = self._quiet_from + self._gap - loop.time()
                if wait > 0:
                    await self._sleep(wait)
            try:
                return await call(client)
            finally:
                self._quiet_from = asyncio.get_running_loop().time()

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


async def acquire_line(device: ModbusDevice) -> ModbusLine:
    """The line of ``device``, connected (shared with the other devices on an RTU line)."""
    if device.transport == "tcp":
        line = ModbusLine(device)
    else:
        key = (id(asyncio.get_running_loop()), device.transport, device.line)
        line = _SHARED.get(key) or _SHARED.setdefault(key, ModbusLine(device))
    line.users += 1
    try:
        await line.open(device.name)
    except BaseException:
        release_line(line)
        raise
    return line


def release_line(line: ModbusLine) -> None:
    """Drop one user of ``line``; the last one closes it."""
    line.users -= 1
    if line.users > 0:
        return
    line.close()
    for key, shared in list(_SHARED.items()):
        if shared is line:
            del _SHARED[key]
