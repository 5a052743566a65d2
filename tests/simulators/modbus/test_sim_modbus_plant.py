"""The plant over a real Modbus TCP socket: documented registers, decoded here with struct."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

import simulators.modbus
from collector.modbus import ModbusCollector, encode_value
from config import MachineState, Settings
from config.modbus import ModbusDevice
from config.signals import ChannelMode, OperationMode, Role
from simulators import (
    REGISTER_MAP,
    STATUS_BITS,
    MachineValues,
    Plant,
    PlantServers,
    assign_units,
    encode_words,
    register_map_table,
    serve_plant,
    stored_values,
)
from store.batch import Batch
from tests.helpers import Clock

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
# The documented native codes (REGISTER_MAP.md), written out independently of the code
STATE_RAW = {MachineState.NotAvailable: 0, MachineState.NotExecuting: 1,
             MachineState.Executing: 2, MachineState.OutOfService: 4}
MODE_RAW = {OperationMode.NoMode: 0, OperationMode.Processing: 1, OperationMode.Setup: 2,
            OperationMode.Maintenance: 3}
CHANNEL_RAW = {ChannelMode.MDI: 0, ChannelMode.Automatic: 1, ChannelMode.Manual: 5}


@pytest.fixture
async def served(settings: Settings, clock: Clock) -> AsyncIterator[PlantServers]:
    plant = Plant(settings, now=NOW)
    async with serve_plant(settings, plant, free_ports=True, clock=clock, interval_s=0.05) as s:
        yield s


def value_bytes(regs: Sequence[int], order: str) -> bytes:
    """The value's big-endian bytes from registers in a byte order (see REGISTER_MAP.md)."""
    raw = struct.pack(f">{len(regs)}H", *regs)
    if order == "DCBA":
        return raw[::-1]
    if order == "BADC":
        return bytes(raw[i ^ 1] for i in range(len(raw)))
    if order == "CDAB":
        return b"".join(raw[i:i + 2] for i in reversed(range(0, len(raw), 2)))
    return raw


async def read_unit(client: AsyncModbusTcpClient, unit: int) -> dict[str, object]:
    """Every documented value of one unit, decoded with struct."""
    hr = (await client.read_holding_registers(0, count=46, device_id=unit)).registers
    ir = (await client.read_input_registers(0, count=6, device_id=unit)).registers
    coils = (await client.read_coils(0, count=3, device_id=unit)).bits
    di = (await client.read_discrete_inputs(0, count=5, device_id=unit)).bits
    return {
        "state": hr[0], "mode": hr[1], "channel_mode": hr[2], "status_word": hr[3],
        "total": struct.unpack(">I", value_bytes(hr[10:12], "CDAB"))[0],
        "good": struct.unpack(">I", value_bytes(hr[12:14], "CDAB"))[0],
        "reject": struct.unpack(">I", value_bytes(hr[14:16], "CDAB"))[0],
        "energy_kwh": struct.unpack(">d", value_bytes(hr[16:20], "ABCD"))[0],
        "last_change_ms": struct.unpack(">q", value_bytes(hr[20:24], "ABCD"))[0],
        "run_seconds": struct.unpack(">Q", value_bytes(hr[24:28], "BADC"))[0],
        "name": struct.pack(">16H", *hr[30:46]).rstrip(b"\0").decode("ascii"),
        "power_kw": struct.unpack(">f", value_bytes(ir[0:2], "DCBA"))[0],
        "temperature_c": struct.unpack(">h", struct.pack(">H", ir[2]))[0] * 0.1,
        "speed_rpm": ir[3],
        "cycle_time_s": struct.unpack(">f", value_bytes(ir[4:6], "ABCD"))[0],
        "lamps": list(coils[:3]),
        "discrete": list(di[:5]),
    }


def expected(v: MachineValues) -> dict[str, object]:
    state, mode, channel = MachineState(v.state), OperationMode(v.mode), ChannelMode(v.channel_mode)
    executing = state is MachineState.Executing
    alarm = state is MachineState.OutOfService
    setup = mode is OperationMode.Setup
    auto = channel is ChannelMode.Automatic
    producing = executing and mode is OperationMode.Processing
    bits = [executing, alarm, setup, auto, v.in_shift, not (setup or alarm)]
    return {
        "state": STATE_RAW[state], "mode": MODE_RAW[mode], "channel_mode": CHANNEL_RAW[channel],
        "status_word": sum(b << i for i, b in enumerate(bits)),
        "total": v.total, "good": v.good, "reject": v.reject,
        "last_change_ms": v.last_state_change_ns // 1_000_000,
        "run_seconds": int(v.run_seconds), "name": v.name,
        "speed_rpm": round(v.speed_rpm),
        "lamps": [producing, v.in_shift and not producing and not alarm, alarm],
        "discrete": [executing, alarm, setup, auto, not (setup or alarm)],
    }


async def test_served_registers_are_the_documented_values(served: PlantServers,
                                                          clock: Clock) -> None:
    assert served.units == {
        "line1-cnc": {1: "demo/machining/line1/lathe-01", 2: "demo/machining/line1/mill-01",
                      3: "demo/machining/line1/mill-02"},
        "line2-plc": {1: "demo/machining/line2/press-01", 2: "demo/machining/line2/robot-01",
                      3: "demo/machining/line2/washer-01"},
    }
    values = served.plant.values_at(clock.t)
    seen_states = set()
    for device, units in served.units.items():
        client = AsyncModbusTcpClient("127.0.0.1", port=served.ports[device])
        assert await client.connect()
        try:
            for unit, asset in units.items():
                got = await read_unit(client, unit)
                v = values[asset]
                want = expected(v)
                assert {k: got[k] for k in want} == want, asset
                assert got["energy_kwh"] == v.energy_kwh  # float64: exact
                assert got["power_kw"] == pytest.approx(v.power_kw, rel=1e-6)  # float32
                assert got["cycle_time_s"] == pytest.approx(v.cycle_time_s, rel=1e-6)
                assert got["temperature_c"] == pytest.approx(v.temperature_c, abs=0.051)
                assert 15 < float(got["temperature_c"]) < 60  # type: ignore[arg-type]
                assert v.total == v.good + v.reject > 0
                seen_states.add(v.state)
        finally:
            client.close()
    assert MachineState.Executing in seen_states


async def test_registers_follow_the_clock(served: PlantServers, clock: Clock) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=served.ports["line2-plc"])
    assert await client.connect()
    try:
        before = await read_unit(client, 1)
        clock.t += 1800 * 10**9  # half an hour later
        want = served.plant.values_at(clock.t)["demo/machining/line2/press-01"]
        deadline = time.monotonic() + 10
        while (got := await read_unit(client, 1))["energy_kwh"] != want.energy_kwh:
            assert time.monotonic() < deadline, "registers did not follow the clock"
            await asyncio.sleep(0.02)
        assert got["total"] == want.total != before["total"]
    finally:
        client.close()


async def test_collector_stores_what_history_stores(served: PlantServers, clock: Clock) -> None:
    """The collector reading the live plant stores, for every KPI tag, exactly the value that
    history backfill writes for the same instant."""
    settings = served.client_settings()
    plant = served.plant
    for device in settings.devices:
        if not isinstance(device, ModbusDevice):
            continue
        ids = {t.path: i for i, t in enumerate(device.tags)}
        got: dict[int, float] = {}
        async with ModbusCollector(device, ids, clock=clock) as collector:
            gen = collector.batches()
            assert isinstance(gen, AsyncGenerator)
            try:
                while len(got) < len(ids):
                    batch: Batch = await asyncio.wait_for(anext(gen), 20)
                    assert np.all(batch.quality == 0)
                    got.update(zip(batch.tag_id.tolist(), batch.value.tolist(), strict=True))
            finally:
                await gen.aclose()
        checked = 0
        for tag in device.tags:
            if tag.role in simulators.HISTORY_ROLES:
                canonical = plant.signal(tag.asset, tag.role, [clock.t])
                assert got[ids[tag.path]] == stored_values(tag, canonical)[0], tag.path
                checked += 1
        assert checked == 24  # 3 units x (state, mode, channel, 3 counters, energy, stop reason)
        name_tag = next(t for t in device.tags if t.name == "machine_name")
        assert np.isnan(got[ids[name_tag.path]])  # a text: its value is NaN


def test_byte_orders() -> None:
    one = 0x3F800000  # float32 1.0
    assert encode_words(1.0, "float32", "ABCD") == [0x3F80, 0x0000]
    assert encode_words(1.0, "float32", "DCBA") == [0x0000, 0x803F]
    assert encode_words(1.0, "float32", "BADC") == [0x803F, 0x0000]
    assert encode_words(1.0, "float32", "CDAB") == [0x0000, 0x3F80]
    assert encode_words(one, "uint32", "CDAB") == [0x0000, 0x3F80]
    assert encode_words(0x0102030405060708, "uint64", "CDAB") == [0x0708, 0x0506, 0x0304, 0x0102]
    assert encode_words(-2, "int16") == [0xFFFE]
    assert encode_words("AB", "string", length=2) == [0x4142, 0]
    assert encode_words("AB", "string", "BADC", length=2) == [0x4241, 0]


@pytest.mark.parametrize("type_", ["int16", "uint16", "int32", "uint32", "int64", "uint64",
                                   "float32", "float64"])
@pytest.mark.parametrize("order", ["ABCD", "DCBA", "BADC", "CDAB"])
def test_encoding_agrees_with_the_collector(type_: str, order: str) -> None:
    value = -12345.5 if type_.startswith("float") else (-1234 if type_.startswith("int") else 54321)
    assert encode_words(value, type_, order) == encode_value(value, type_, order)  # type: ignore[arg-type]


def test_register_map_doc_is_current() -> None:
    doc = (Path(simulators.modbus.__file__).parent / "REGISTER_MAP.md").read_text(encoding="utf-8")
    assert register_map_table() in doc
    tables = {f.table for f in REGISTER_MAP}
    assert tables == {"holding", "input", "coil", "discrete"}
    assert {f.byte_order for f in REGISTER_MAP if f.width > 1 and f.type != "string"} >= {
        "ABCD", "CDAB", "DCBA", "BADC"}
    assert {"uint16", "uint32", "int16", "float32", "float64", "int64", "uint64", "string",
            "bool"} <= {f.type for f in REGISTER_MAP}
    # fields do not overlap
    for table in tables:
        used = [a for f in REGISTER_MAP if f.table == table
                for a in range(f.address, f.address + f.width)]
        assert len(used) == len(set(used))


def test_demo_tags_follow_the_register_map(settings: Settings) -> None:
    fields = {(f.table, f.address): f for f in REGISTER_MAP}
    for d in settings.devices:
        if not isinstance(d, ModbusDevice):
            continue
        for tag in d.tags:
            f = fields[(tag.table, tag.address)]
            if tag.type == "bit":
                assert f.name == "status_word" and tag.bit in STATUS_BITS
                continue
            assert (tag.type, tag.scale, tag.length) == (f.type, f.scale, f.length), tag.path
            if f.width > 1 and f.type != "string":
                assert tag.byte_order == f.byte_order, tag.path
            if tag.role is not Role.ANALOG:
                assert tag.role == f.role, tag.path
            if f.enum:
                assert tag.enum is not None
                assert all(tag.enum[raw] == name for raw, name in f.enum.items()), tag.path


def test_one_unit_is_one_machine(settings: Settings) -> None:
    d = settings.devices[0]
    assert isinstance(d, ModbusDevice)
    other = next(t for t in d.tags if t.asset != d.tags[0].asset)  # the next machine's first
    tags = [d.tags[0], other.model_copy(update={"unit_id": 1})]
    bad = settings.model_copy(update={"devices": [d.model_copy(update={"tags": tags})]})
    with pytest.raises(ValueError, match="unit id 1 carries tags of two assets"):
        assign_units(bad)
