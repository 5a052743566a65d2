"""Serve the simulated plant over Modbus TCP, with the register map of ``REGISTER_MAP.md``.

Every enabled Modbus device of the configuration becomes one server on its host:port; each
unit id its tags use hosts the asset those tags belong to. Every unit shows the same register
map (:data:`REGISTER_MAP`), like a fleet of machines running the same firmware: the
configuration's tags must point into it (``config/demo.yaml`` does).

Values are encoded with :mod:`struct`, one value at a time, independently of the collector's
numpy decoder, so that a test of the pair checks two implementations against each other.
Registers are rewritten from :meth:`Plant.values_at` every ``interval_s`` (default 0.15 s);
what a client writes into holding registers or coils is overwritten at the next update.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from config.modbus import ByteOrder, ModbusDevice
from config.settings import Settings
from config.signals import ChannelMode, MachineState, OperationMode, Role

from ..model import NATIVE_CODES
from ..plant import MachineValues, Plant
from ..ticker import Ticker
from .server import ModbusSimServer, RegisterImage, Table

__all__ = [
    "REGISTER_MAP",
    "STATUS_BITS",
    "PlantServers",
    "RegisterField",
    "assign_units",
    "encode_words",
    "machine_fields",
    "register_map_table",
    "serve_plant",
    "with_ports",
    "write_machine",
]

log = logging.getLogger("tierproof.simulators.modbus.plant")


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One entry of the register map: engineering value = raw * scale."""

    name: str
    table: Table
    address: int  # zero-based protocol address
    type: str  # a Modbus tag type (uint16 ... float64, string, bool)
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    length: int | None = None  # registers, for strings
    unit: str = ""
    role: Role = Role.ANALOG
    description: str = ""
    enum: dict[int, str] = field(default_factory=dict)  # raw -> canonical name

    @property
    def width(self) -> int:
        if self.type == "string":
            assert self.length is not None
            return self.length
        return {"bool": 1, "uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2,
                "uint64": 4, "int64": 4, "float64": 4}[self.type]


def _native(role: str) -> dict[int, str]:
    return {raw: name for name, raw in NATIVE_CODES[role].items()}


#: bit number -> meaning of the status word (holding register 3)
STATUS_BITS: dict[int, str] = {
    0: "executing (state Executing)",
    1: "alarm (state OutOfService)",
    2: "setup (mode Setup)",
    3: "automatic (channel mode Automatic)",
    4: "in shift (inside planned busy time)",
    5: "door closed (open during setup and repair)",
}

NAME_REGISTERS = 16

#: The register map every simulated unit serves.
REGISTER_MAP: tuple[RegisterField, ...] = (
    RegisterField("state", "holding", 0, "uint16", role=Role.STATE, enum=_native("state"),
                  description="machine state, native codes"),
    RegisterField("mode", "holding", 1, "uint16", role=Role.MODE, enum=_native("mode"),
                  description="operation mode, native codes"),
    RegisterField("channel_mode", "holding", 2, "uint16", role=Role.CHANNEL_MODE,
                  enum=_native("channel_mode"),
                  description="channel mode, Fanuc-like codes (4 = HANDLE is never written)"),
    RegisterField("status_word", "holding", 3, "uint16", role=Role.STATUS,
                  description="bit field, see the status word table"),
    RegisterField("stop_reason", "holding", 4, "uint16", role=Role.STOP_REASON,
                  enum=_native("stop_reason"),
                  description="why the machine stands, native codes (0 = no reason)"),
    RegisterField("total_count", "holding", 10, "uint32", "CDAB", unit="parts",
                  role=Role.TOTAL_COUNT, description="parts made since the last counter reset"),
    RegisterField("good_count", "holding", 12, "uint32", "CDAB", unit="parts",
                  role=Role.GOOD_COUNT, description="good parts since the last counter reset"),
    RegisterField("reject_count", "holding", 14, "uint32", "CDAB", unit="parts",
                  role=Role.REJECT_COUNT, description="rejects since the last counter reset"),
    RegisterField("energy_kwh", "holding", 16, "float64", "ABCD", unit="kWh",
                  role=Role.ENERGY_KWH, description="energy meter since the last reset"),
    RegisterField("last_state_change_ms", "holding", 20, "int64", "ABCD", unit="ms",
                  role=Role.STATUS, description="Unix time of the last state change"),
    RegisterField("run_seconds", "holding", 24, "uint64", "BADC", unit="s",
                  role=Role.ANALOG, description="Executing + Processing seconds since reset"),
    RegisterField("machine_name", "holding", 30, "string", length=NAME_REGISTERS,
                  role=Role.STATUS, description="asset name, ASCII, NUL padded"),
    RegisterField("power_kw", "input", 0, "float32", "DCBA", unit="kW",
                  description="electrical power"),
    RegisterField("temperature_c", "input", 2, "int16", scale=0.1, unit="°C",
                  description="spindle / drive temperature, tenths of a degree"),
    RegisterField("speed_rpm", "input", 3, "uint16", unit="rpm",
                  description="spindle / main drive speed"),
    RegisterField("cycle_time_s", "input", 4, "float32", "ABCD", unit="s",
                  description="mean actual cycle time of the current regime"),
    RegisterField("lamp_green", "coil", 0, "bool", role=Role.STATUS,
                  description="stack light green: producing"),
    RegisterField("lamp_amber", "coil", 1, "bool", role=Role.STATUS,
                  description="stack light amber: in shift, stopped or in setup"),
    RegisterField("lamp_red", "coil", 2, "bool", role=Role.STATUS,
                  description="stack light red: alarm"),
    RegisterField("executing", "discrete", 0, "bool", role=Role.STATUS,
                  description="state Executing"),
    RegisterField("alarm", "discrete", 1, "bool", role=Role.STATUS,
                  description="state OutOfService"),
    RegisterField("setup", "discrete", 2, "bool", role=Role.STATUS, description="mode Setup"),
    RegisterField("automatic", "discrete", 3, "bool", role=Role.STATUS,
                  description="channel mode Automatic"),
    RegisterField("door_closed", "discrete", 4, "bool", role=Role.STATUS,
                  description="guard door closed"),
)

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
           "int64": "q", "uint64": "Q", "float64": "d"}


def encode_words(value: float | int | str, type_: str, byte_order: ByteOrder = "ABCD",
                 length: int | None = None) -> list[int]:
    """Registers holding one value: struct packs it big-endian (bytes A B C D ...), then the
    byte order rearranges: ABCD as is, DCBA all bytes reversed, BADC bytes swapped in each
    word, CDAB words in reverse order. Strings: ASCII, two characters per register, first
    character in the high byte (low byte with BADC/DCBA), NUL padded."""
    if type_ == "string":
        if length is None:
            raise ValueError("a string needs a length in registers")
        raw = str(value).encode("ascii")[: 2 * length].ljust(2 * length, b"\0")
        if byte_order in ("BADC", "DCBA"):
            raw = bytes(b for pair in zip(raw[1::2], raw[0::2], strict=True) for b in pair)
        return list(struct.unpack(f">{length}H", raw))
    code = _STRUCT[type_]
    packed = struct.pack(">" + code, float(value) if code in "fd" else int(value))
    if byte_order == "DCBA":
        packed = packed[::-1]
    elif byte_order == "BADC":
        packed = bytes(b for pair in zip(packed[1::2], packed[0::2], strict=True) for b in pair)
    elif byte_order == "CDAB":
        words = [packed[i:i + 2] for i in range(0, len(packed), 2)]
        packed = b"".join(reversed(words))
    return list(struct.unpack(f">{len(packed) // 2}H", packed))


def machine_fields(v: MachineValues) -> dict[str, int | float | str | bool]:
    """The raw value of every register-map field for one machine's values."""
    state = MachineState(v.state)
    mode = OperationMode(v.mode)
    channel = ChannelMode(v.channel_mode)
    mode_name = "None" if mode is OperationMode.NoMode else mode.name
    executing = state is MachineState.Executing
    alarm = state is MachineState.OutOfService
    setup = mode is OperationMode.Setup
    automatic = channel is ChannelMode.Automatic
    door_closed = not (setup or alarm)
    producing = executing and mode is OperationMode.Processing
    bits = (executing, alarm, setup, automatic, v.in_shift, door_closed)
    status = sum(1 << i for i, on in enumerate(bits) if on)
    return {
        "state": NATIVE_CODES["state"][state.name],
        "mode": NATIVE_CODES["mode"][mode_name],
        "channel_mode": NATIVE_CODES["channel_mode"][channel.name],
        "status_word": status,
        "stop_reason": v.stop_reason,
        "total_count": v.total % 2**32,
        "good_count": v.good % 2**32,
        "reject_count": v.reject % 2**32,
        "energy_kwh": v.energy_kwh,
        "last_state_change_ms": v.last_state_change_ns // 1_000_000,
        "run_seconds": int(v.run_seconds),
        "machine_name": v.name.encode("ascii", "replace").decode()[: 2 * NAME_REGISTERS],
        "power_kw": v.power_kw,
        "temperature_c": max(-32768, min(32767, round(v.temperature_c / 0.1))),
        "speed_rpm": max(0, min(65535, round(v.speed_rpm))),
        "cycle_time_s": v.cycle_time_s,
        "lamp_green": producing,
        "lamp_amber": v.in_shift and not producing and not alarm,
        "lamp_red": alarm,
        "executing": executing,
        "alarm": alarm,
        "setup": setup,
        "automatic": automatic,
        "door_closed": door_closed,
    }


def write_machine(image: RegisterImage, v: MachineValues) -> None:
    """Write one machine's values into a unit's registers (call from the server's loop)."""
    raw = machine_fields(v)
    for f in REGISTER_MAP:
        value = raw[f.name]
        if f.table in ("coil", "discrete"):
            image.set_bits(f.table, f.address, [bool(value)])
        else:
            image.set_registers(
                f.table, f.address, encode_words(value, f.type, f.byte_order, f.length)
            )


def register_map_table() -> str:
    """The register map and the status word's bits as Markdown tables (REGISTER_MAP.md
    embeds exactly this text, and a test keeps it so)."""
    rows = ["| table | address | name | type | order | scale | unit | role | meaning |",
            "|---|---|---|---|---|---|---|---|---|"]
    for f in REGISTER_MAP:
        last = f.address + f.width - 1
        addr = str(f.address) if last == f.address else f"{f.address}-{last}"
        typ = f"string[{f.length}]" if f.type == "string" else f.type
        order = f.byte_order if f.type not in ("bool", "string") and f.width > 1 else ""
        meaning = f.description
        if f.enum:
            meaning += ": " + ", ".join(f"{raw} = {name}" for raw, name in sorted(f.enum.items()))
        rows.append(
            f"| {f.table} | {addr} | `{f.name}` | {typ} | {order} | "
            f"{f.scale:g} | {f.unit} | {f.role.value} | {meaning} |"
        )
    rows += ["", "| status word bit | meaning |", "|---|---|"]
    rows += [f"| {bit} | {meaning} |" for bit, meaning in STATUS_BITS.items()]
    return "\n".join(rows)


# --------------------------------------------------------------------------- servers


def assign_units(settings: Settings) -> dict[str, dict[int, str]]:
    """device name -> unit id -> asset path, from the tags of every enabled Modbus device."""
    out: dict[str, dict[int, str]] = {}
    for d in settings.devices:
        if not isinstance(d, ModbusDevice) or not d.enabled:
            continue
        units: dict[int, str] = {}
        for t in d.tags:
            other = units.setdefault(t.unit_id, t.asset)
            if other != t.asset:
                raise ValueError(
                    f"device {d.name}: unit id {t.unit_id} carries tags of two assets "
                    f"({other}, {t.asset}); a simulated unit is one machine"
                )
        if units:
            out[d.name] = units
    return out


def with_ports(settings: Settings, ports: Mapping[str, int]) -> Settings:
    """A copy of ``settings`` whose named devices use the given ports (for clients in tests)."""
    devices = [
        d.model_copy(update={"port": ports[d.name]}) if d.name in ports else d
        for d in settings.devices
    ]
    return settings.model_copy(update={"devices": devices})


class PlantServers:
    """The running Modbus servers of a plant (what :func:`serve_plant` yields)."""

    def __init__(self, plant: Plant, servers: dict[str, ModbusSimServer],
                 units: dict[str, dict[int, str]]) -> None:
        self.plant = plant
        self.servers = servers
        self.units = units
        self.last_refresh_ns: int | None = None

    @property
    def ports(self) -> dict[str, int]:
        """device name -> bound port."""
        return {name: s.port for name, s in self.servers.items()}

    def client_settings(self, settings: Settings | None = None) -> Settings:
        """``settings`` (default: the plant's) with device ports set to the bound ones."""
        return with_ports(settings or self.plant.settings, self.ports)

    def refresh(self, t_ns: int) -> None:
        """Show every machine as it is at ``t_ns``."""
        values = self.plant.values_at(t_ns)
        for name, server in self.servers.items():
            for unit, asset in self.units[name].items():
                write_machine(server.units[unit], values[asset])
        self.last_refresh_ns = t_ns


@contextlib.asynccontextmanager
async def serve_plant(
    settings: Settings,
    plant: Plant,
    *,
    interval_s: float = 0.15,
    clock: Callable[[], int] = time.time_ns,
    ports: Mapping[str, int] | None = None,
    free_ports: bool = False,
    host: str | None = None,
) -> AsyncIterator[PlantServers]:
    """Run one Modbus TCP server per enabled Modbus device of ``settings``.

    ``ports`` overrides device ports by device name; ``free_ports`` binds every server to a
    free port (read them from ``.ports`` or use ``.client_settings()``). ``clock`` gives the
    simulated instant in ns (default: wall clock); a constant clock freezes the machines.
    Devices are not merged: two devices on one host:port need different ports.
    """
    units = assign_units(settings)
    servers: dict[str, ModbusSimServer] = {}
    for d in settings.devices:
        if not isinstance(d, ModbusDevice) or d.name not in units:
            continue
        port = 0 if free_ports else (ports or {}).get(d.name, d.port)
        images = {u: RegisterImage() for u in units[d.name]}
        servers[d.name] = ModbusSimServer(host or d.host, port, images)
    running = PlantServers(plant, servers, units)
    running.refresh(clock())  # the first request already sees real values
    async with contextlib.AsyncExitStack() as stack:
        for name, s in servers.items():
            try:
                await stack.enter_async_context(s)
            except OSError as exc:
                raise OSError(exc.errno, f"simulated Modbus device {name} {exc.strerror}") from exc
        # entered last, so left first: no refresh runs once the servers are stopping
        await stack.enter_async_context(Ticker(
            lambda: running.refresh(clock()), interval_s, name="modbus-plant-update",
            what="updating the simulated registers", logger=log,
        ))
        yield running

