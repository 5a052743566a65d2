"""A generic Modbus server over a real socket or serial port, for simulators, tests and benchmarks.

Each unit id has a :class:`RegisterImage`: the four Modbus tables as numpy arrays that the
owner updates in place. :class:`ModbusSimServer` serves any number of images on one port with
pymodbus' TCP server (``framer="rtu"``: RTU frames over TCP, as a serial-to-Ethernet converter
passes them); :class:`ModbusSimSerialServer` serves them as RTU units on a serial port (e.g.
one end of a ``socat`` pseudo-terminal pair)::

    image = RegisterImage()
    image.set_value("holding", 10, 21.5, "float32")
    async with ModbusSimServer(units={1: image}) as server:
        ...  # connect to 127.0.0.1:server.port; server.requests counts what was served

Behaviour a client sees:

- Reads and writes of the four tables (function codes 1-6, 15, 16, 22, 23); input registers and
  discrete inputs are read-only, as in the Modbus data model.
- A request touching an address marked with :meth:`RegisterImage.set_exception` (or
  :meth:`RegisterImage.set_illegal`) gets that Modbus exception instead of data.
- A request for a unit id that has no image gets exception 0x0B (gateway target device
  failed to respond), as a Modbus TCP gateway answers for a device missing behind it. On a
  serial line (and with ``framer="rtu"``) such a request gets no answer at all, as on a real
  RTU bus, where nobody answers for an absent unit.

pymodbus 3.16's datastore classes (``ModbusDeviceContext`` ...) are deprecated and its
``SimDevice`` keeps registers in Python lists, so this module plugs its own context object
into pymodbus' server; only the server and protocol code of pymodbus are used.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from collector.modbus import encode_value
from config.modbus import ByteOrder

__all__ = ["ModbusSimSerialServer", "ModbusSimServer", "RegisterImage", "Table"]

log = logging.getLogger("tierproof.simulators.modbus")

Table = Literal["holding", "input", "coil", "discrete"]
_SIZE = 65536

# function code -> table it addresses
_FC_TABLE: dict[int, Table] = {
    1: "coil", 5: "coil", 15: "coil",
    2: "discrete",
    3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding",
    4: "input",
}
_WRITABLE: frozenset[Table] = frozenset({"holding", "coil"})


class RegisterImage:
    """The four tables of one unit id.

    ``holding`` and ``input`` are ``uint16[65536]``, ``coil`` and ``discrete`` are
    ``bool[65536]``; index = zero-based protocol address. Write to them directly or with the
    setters. Call the setters from the server's event loop thread: a request is then served
    either before or after a whole multi-register update, never in the middle of it.
    """

    def __init__(self) -> None:
        self.holding = np.zeros(_SIZE, np.uint16)
        self.input = np.zeros(_SIZE, np.uint16)
        self.coil = np.zeros(_SIZE, bool)
        self.discrete = np.zeros(_SIZE, bool)
        # per table, per address: 0 = served, else the Modbus exception code to answer
        self._exc: dict[Table, npt.NDArray[np.uint8]] = {
            t: np.zeros(_SIZE, np.uint8) for t in ("holding", "input", "coil", "discrete")
        }

    def table(self, table: Table) -> npt.NDArray[np.uint16] | npt.NDArray[np.bool_]:
        """The array of a table (``holding``, ``input``, ``coil``, ``discrete``)."""
        arr: npt.NDArray[np.uint16] | npt.NDArray[np.bool_] = getattr(self, table)
        return arr

    def set_registers(
        self, table: Table, address: int, words: Sequence[int] | npt.ArrayLike
    ) -> None:
        """Write raw 16-bit words to ``holding`` or ``input`` starting at ``address``."""
        if table not in ("holding", "input"):
            raise ValueError(f"{table} is not a register table")
        data = np.asarray(words, dtype=np.uint16).ravel()
        self.table(table)[address:address + len(data)] = data

    def set_bits(self, table: Table, address: int, bits: Sequence[bool] | npt.ArrayLike) -> None:
        """Write bits to ``coil`` or ``discrete`` starting at ``address``."""
        if table not in ("coil", "discrete"):
            raise ValueError(f"{table} is not a bit table")
        data = np.asarray(bits, dtype=bool).ravel()
        self.table(table)[address:address + len(data)] = data

    def set_value(
        self, table: Table, address: int, value: float | str, type_: str = "uint16",
        byte_order: ByteOrder = "ABCD", length: int | None = None,
    ) -> None:
        """Encode a typed value (as a tierproof tag of that type would decode it) and write it.

        ``type_`` is a Modbus tag type (int16 ... float64, string with ``length``).
        """
        self.set_registers(table, address, encode_value(value, type_, byte_order, length))

    def set_bit(self, table: Table, address: int, bit: int, on: bool) -> None:
        """Set or clear one bit of a register (a tag of type ``bit``)."""
        arr = self.table(table)
        if table not in ("holding", "input"):
            raise ValueError(f"{table} is not a register table")
        mask = np.uint16(1 << bit)
        arr[address] = (arr[address] | mask) if on else (arr[address] & ~mask)

    def set_exception(self, table: Table, addresses: Iterable[int] | int, code: int | None) -> None:
        """Answer requests touching these addresses with Modbus exception ``code``.

        ``code`` None (or 0) serves them normally again. 2 = illegal data address,
        4 = server device failure.
        """
        idx = [addresses] if isinstance(addresses, int) else list(addresses)
        self._exc[table][idx] = code or 0

    def set_illegal(
        self, table: Table, addresses: Iterable[int] | int, illegal: bool = True
    ) -> None:
        """Make addresses illegal (exception 2), or legal again."""
        self.set_exception(table, addresses, ExcCodes.ILLEGAL_ADDRESS if illegal else None)

    def check(self, table: Table, address: int, count: int) -> int:
        """The exception code a request for ``count`` items at ``address`` gets, or 0."""
        if count < 1 or address < 0 or address + count > _SIZE:
            return int(ExcCodes.ILLEGAL_ADDRESS)
        codes = self._exc[table][address:address + count]
        hit = np.flatnonzero(codes)
        return int(codes[hit[0]]) if len(hit) else 0


class _ImageContext(ModbusServerContext):
    """pymodbus server context backed by RegisterImages.

    Subclasses ModbusServerContext only because pymodbus 3.16's server accepts either that
    class or a SimDevice; ``old_simulator`` makes the server call our two methods directly.
    The parent constructor is skipped on purpose: it builds datastore objects we do not use
    and logs a deprecation warning for them.
    """

    def __init__(self, units: dict[int, RegisterImage], silent_missing: bool = False) -> None:
        self.units = units
        self.old_simulator = True
        self.simdevices = []
        # a missing unit raises NoSuchIdException, which a server with
        # ignore_missing_devices leaves unanswered
        self.silent_missing = silent_missing

    def device_ids(self) -> list[int]:
        return list(self.units)

    def _image(self, device_id: int) -> RegisterImage | None:
        image = self.units.get(device_id)
        if image is None and self.silent_missing:
            raise NoSuchIdException(f"no unit {device_id}")
        return image

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        image = self._image(device_id)
        if image is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        table = _FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if code := image.check(table, address, count):
            return ExcCodes(code)
        values: list[int] | list[bool] = image.table(table)[address:address + count].tolist()
        return values

    async def async_setValues(
        self, device_id: int, func_code: int, address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        image = self._image(device_id)
        if image is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        table = _FC_TABLE.get(func_code)
        if table is None or table not in _WRITABLE:
            return ExcCodes.ILLEGAL_FUNCTION
        if code := image.check(table, address, len(values)):
            return ExcCodes(code)
        image.table(table)[address:address + len(values)] = values
        return None


class _SimServer:
    """What both simulator servers share: the units they serve, the count and log of the
    requests they received, and start/stop as an async context manager."""

    def __init__(self, units: dict[int, RegisterImage], log_size: int) -> None:
        self.units = units
        self.requests: Counter[int] = Counter()
        self.request_log: deque[tuple[int, int, int, int]] = deque(maxlen=log_size)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def reset_counts(self) -> None:
        self.requests.clear()
        self.request_log.clear()

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests[pdu.function_code] += 1
            count = getattr(pdu, "count", 0) or len(getattr(pdu, "registers", ()) or ())
            self.request_log.append((pdu.dev_id, pdu.function_code, pdu.address, count))
        return pdu

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _listen_error(host: str, port: int) -> OSError:
    """Why a simulated Modbus server could not listen on ``host:port``, as the OSError a bind
    there raises now (the port in use, an address not of this machine), naming both."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        return OSError(exc.errno, f"cannot listen on {host}:{port}: {why}")
    return OSError(errno.EADDRINUSE, f"could not listen on {host}:{port} (free again now)")


class ModbusSimServer(_SimServer):
    """Modbus TCP server for a set of unit ids, as an async context manager.

    ``port=0`` binds a free port; ``.port`` is the bound one after :meth:`start`. After
    :meth:`stop` (which drops every client connection), :meth:`start` listens again on the
    same port, so clients see a device going away and coming back.

    ``requests`` counts requests received per function code (including refused ones);
    ``request_log`` keeps the last ``log_size`` requests as
    ``(unit_id, function_code, address, count)``. ``framer="rtu"`` serves RTU frames (with
    CRC, no MBAP header) over TCP, and leaves requests for missing unit ids unanswered.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0,
        units: dict[int, RegisterImage] | None = None, log_size: int = 10_000,
        framer: Literal["socket", "rtu"] = "socket",
    ) -> None:
        super().__init__(units if units is not None else {1: RegisterImage()}, log_size)
        self.host = host
        self.port = port
        self.framer = framer
        self._server: ModbusTcpServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        rtu = self.framer == "rtu"
        server = ModbusTcpServer(
            _ImageContext(self.units, silent_missing=rtu), address=(self.host, self.port),
            trace_pdu=self._trace, framer=FramerType.RTU if rtu else FramerType.SOCKET,
            ignore_missing_devices=rtu,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError:  # pymodbus logs why listen() failed and says only that it did
            await server.shutdown()
            raise _listen_error(self.host, self.port) from None
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server = server
        log.debug("modbus simulator listening on %s:%d (units %s)", self.host, self.port,
                  sorted(self.units))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()
        if isinstance(listener, asyncio.Server):
            await listener.wait_closed()


class ModbusSimSerialServer(_SimServer):
    """Modbus RTU units on a serial port (e.g. one end of a ``socat`` pty pair), as an async
    context manager. Requests for unit ids without an image get no answer, as on a real bus.

    ``requests`` and ``request_log`` count what was served, as in :class:`ModbusSimServer`.
    Linux pseudo-terminals refuse parity and 7 data bits (EINVAL): hence 8N1 by default.
    """

    def __init__(
        self, port: str, units: dict[int, RegisterImage], *, baudrate: int = 19200,
        bytesize: int = 8, parity: str = "N", stopbits: int = 1, log_size: int = 10_000,
    ) -> None:
        super().__init__(units, log_size)
        self.port = port
        self.baudrate, self.bytesize, self.parity, self.stopbits = baudrate, bytesize, parity, stopbits
        self._server: ModbusSerialServer | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        server = ModbusSerialServer(
            _ImageContext(self.units, silent_missing=True), framer=FramerType.RTU,
            port=self.port, baudrate=self.baudrate, bytesize=self.bytesize,
            parity=self.parity, stopbits=self.stopbits, ignore_missing_devices=True,
            trace_pdu=self._trace,
        )
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
