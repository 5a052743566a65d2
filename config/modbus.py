"""Modbus settings: tags (table, address, type, byte order) and devices (TCP, RTU, RTU over
TCP), with the checks across devices that share a serial line."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .base import DeviceBase, Model, TagBase
from .bounds import Interval_s, Port, Timeout_s
from .signals import Role
from .storage import Storage, check_tag_storage

ModbusType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
ModbusTable = Literal["holding", "input", "coil", "discrete"]

#: registers occupied by each numeric type
REGISTER_WIDTH: dict[str, int] = {
    "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}



class ModbusTag(TagBase):
    """A Modbus tag: where it lives and how its registers decode."""

    unit_id: int = Field(default=1, ge=0, le=255)
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535, description="zero-based protocol address")
    type: ModbusType = "uint16"
    byte_order: ByteOrder = "ABCD"
    bit: int | None = Field(default=None, ge=0, le=15, description="bit number, type bit")
    length: int | None = Field(default=None, ge=1, le=125, description="registers, type string")
    group: str = "default"
    storage: Storage | None = Field(
        default=None, description="which polled samples are stored; default: the device's, else the role's",
    )

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: Storage | None, info: ValidationInfo) -> Storage | None:
        return check_tag_storage(info.data.get("role", Role.ANALOG), v)

    @model_validator(mode="after")
    def _shape(self) -> ModbusTag:
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"a {self.table} holds single bits: type must be bool")
        if not bit_table and self.type == "bool":
            raise ValueError("type bool is for coil and discrete tables; use bit for a register bit")
        if (self.type == "bit") != (self.bit is not None):
            raise ValueError("bit is required with type bit, and only with it")
        if (self.type == "string") != (self.length is not None):
            raise ValueError("length is required with type string, and only with it")
        if self.address + self.width > 65536:
            raise ValueError(f"address {self.address} + {self.width} runs past 65535")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits, for coil/discrete) this tag occupies."""
        if self.type == "string":
            assert self.length is not None
            return self.length
        if self.type == "bool":
            return 1
        return REGISTER_WIDTH[self.type]



ModbusTransport = Literal["tcp", "rtu", "rtu_over_tcp"]
Parity = Literal["none", "even", "odd"]


class ModbusSerial(Model):
    """The serial line of a Modbus RTU device (``transport: rtu``).

    Defaults are the Modbus serial line specification's: 19200 baud, 8 data bits, even parity,
    one stop bit. Devices on one line must all use the same settings.
    """

    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0 or /dev/ttyRS485")
    baudrate: int = Field(default=19200, gt=0, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Parity = "even"
    stopbits: Literal[1, 2] = 1

    def character_s(self) -> float:
        """Time one character takes on the line: start bit, data bits, parity, stop bits."""
        bits = 1 + self.bytesize + (0 if self.parity == "none" else 1) + self.stopbits
        return bits / self.baudrate


class ModbusDevice(DeviceBase):
    """A Modbus server: a PLC or gateway over TCP, or units on an RTU serial line.

    ``transport``: ``tcp`` (Modbus TCP, MBAP framing), ``rtu`` (Modbus RTU on the serial port
    of ``serial``) or ``rtu_over_tcp`` (RTU frames, with CRC, over a TCP socket to ``host`` and
    ``port``, as transparent serial-to-Ethernet converters pass them). Devices with the same
    serial port, or the same rtu_over_tcp host and port, share one line: their requests are
    sent one at a time.
    """

    protocol: Literal["modbus"]
    transport: ModbusTransport = "tcp"
    host: str = Field(default="", description="tcp and rtu_over_tcp: address of the server")
    port: Port = 502
    serial: ModbusSerial | None = Field(default=None, description="rtu: the serial line")
    frame_gap_s: float | None = Field(
        default=None, ge=0, le=10,
        description="rtu, rtu_over_tcp: silence kept on the line between an answer and the "
                    "next request; default 3.5 characters, at least 1.75 ms (the RTU t3.5)",
    )
    timeout_s: Timeout_s = 1.0
    poll_interval_s: Interval_s = 1.0
    poll_groups: dict[str, Interval_s] = Field(
        default_factory=dict, description="group name -> poll interval (s); tags pick by group"
    )
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    max_bits_per_request: int = Field(default=2000, ge=1, le=2000)
    coalesce_gap: int = Field(
        default=0, ge=0, le=100,
        description="unused registers a request may span to join two tags",
    )
    bad_tag_retry_s: Interval_s = Field(
        default=30.0,
        description="how often a tag the device refuses, or a unit id that does not answer, "
                    "is requested again (they are left out of the polls in between)",
    )
    storage: Storage | None = Field(
        default=None, description="default storage of the device's tags (see config.storage)",
    )
    tags: list[ModbusTag] = Field(default_factory=list)

    @model_validator(mode="after")
    def _transport(self) -> ModbusDevice:
        if self.transport == "rtu":
            if self.serial is None:
                raise ValueError("transport rtu needs serial: {port: /dev/ttyUSB0, ...}")
            if "host" in self.model_fields_set:
                raise ValueError("host is for transports tcp and rtu_over_tcp; rtu uses serial.port")
        else:
            if not self.host:
                raise ValueError(f"transport {self.transport} needs host")
            if self.serial is not None:
                raise ValueError(f"serial is only for transport rtu, not {self.transport}")
        if self.transport == "tcp" and self.frame_gap_s is not None:
            raise ValueError("frame_gap_s is for the RTU transports (rtu, rtu_over_tcp)")
        return self

    def group_interval(self, group: str) -> float:
        return self.poll_groups.get(group, self.poll_interval_s)

    @property
    def line(self) -> str:
        """Where the device is: host:port, or the serial port (also the key of a shared line)."""
        if self.transport == "rtu":
            assert self.serial is not None
            return self.serial.port
        return f"{self.host}:{self.port}"

    def frame_gap(self) -> float:
        """Silence between frames on an RTU line (0 for Modbus TCP)."""
        if self.transport == "tcp":
            return 0.0
        if self.frame_gap_s is not None:
            return self.frame_gap_s
        char = self.serial.character_s() if self.serial is not None else 11 / 19200
        return max(3.5 * char, 0.00175)


def modbus_cross_check(devices: list[tuple[int, ModbusDevice]]) -> list[tuple[str, str]]:
    """Devices on one RTU line (a serial port, or an rtu_over_tcp converter) must agree on
    how the line is driven: they share one connection."""
    problems: list[tuple[str, str]] = []
    first: dict[tuple[str, str], tuple[int, ModbusDevice]] = {}
    for di, d in devices:
        if d.transport == "tcp":
            continue
        key = (d.transport, d.line)
        if key not in first:
            first[key] = (di, d)
            continue
        fi, f = first[key]
        for field in ("serial", "timeout_s", "frame_gap_s"):
            if getattr(d, field) != getattr(f, field):
                problems.append((
                    f"devices[{di}].{field}",
                    f"differs from devices[{fi}] ({f.name}) on the same line {d.line}; "
                    f"devices sharing a line must use the same {field}",
                ))
    return problems
