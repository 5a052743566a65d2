"""The generic Modbus simulator server, seen through a plain pymodbus client."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.modbus import ModbusSimServer, RegisterImage
from tests.collector.modbus_helpers import StartServer
from tests.helpers import wait_until


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    clients: list[AsyncModbusTcpClient] = []

    async def connect(port: int) -> AsyncModbusTcpClient:
        c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
        assert await c.connect()
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


async def test_tables_units_exceptions_and_counts(start_server: StartServer, client_for) -> None:
    one, two = RegisterImage(), RegisterImage()
    one.set_value("holding", 0, -2.5, "float32")
    one.set_value("input", 10, "AB", "string", length=2)
    one.set_bit("holding", 5, 3, True)
    one.set_bits("discrete", 0, [False, True])
    two.set_registers("holding", 0, [42])
    one.set_illegal("holding", 100)
    one.set_exception("holding", 200, 4)
    server = await start_server({1: one, 2: two})
    c = await client_for(server.port)

    rr = await c.read_holding_registers(0, count=2, device_id=1)
    assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] == -2.5
    assert (await c.read_holding_registers(5, count=1, device_id=1)).registers == [8]
    assert (await c.read_input_registers(10, count=2, device_id=1)).registers == [0x4142, 0]
    assert (await c.read_discrete_inputs(0, count=2, device_id=1)).bits[:2] == [False, True]
    assert (await c.read_holding_registers(0, count=1, device_id=2)).registers == [42]
    # exceptions: a request touching a marked address anywhere in its span
    assert (await c.read_holding_registers(90, count=20, device_id=1)).exception_code == 2
    assert (await c.read_holding_registers(199, count=2, device_id=1)).exception_code == 4
    assert (await c.read_holding_registers(0, count=1, device_id=9)).exception_code == 11
    # writes reach the image; input registers are read-only
    assert not (await c.write_registers(50, [7, 8], device_id=2)).isError()
    assert two.holding[50:52].tolist() == [7, 8]
    assert (await c.write_coil(3, True, device_id=1)).isError() is False
    assert bool(one.coil[3])
    one.set_illegal("holding", 100, illegal=False)
    assert not (await c.read_holding_registers(90, count=20, device_id=1)).isError()

    assert server.requests == {3: 7, 4: 1, 2: 1, 16: 1, 5: 1}
    assert server.request_log[0] == (1, 3, 0, 2)
    server.reset_counts()
    assert server.total_requests == 0


async def test_stop_drops_clients_and_restart_uses_same_port(
    start_server: StartServer, client_for
) -> None:
    img = RegisterImage()
    img.set_registers("holding", 0, [1])
    server = await start_server({1: img})
    port = server.port
    assert port > 0
    c = await client_for(port)
    assert (await c.read_holding_registers(0, count=1, device_id=1)).registers == [1]
    await server.stop()
    assert not server.running
    await wait_until(lambda: not c.connected, what="the client to see the connection drop")
    with pytest.raises(ModbusException, match=r"[Nn]ot connected|[Cc]onnection"):
        await c.read_holding_registers(0, count=1, device_id=1)
    img.set_registers("holding", 0, [2])
    await server.start()
    assert server.port == port
    c2 = await client_for(port)
    assert (await c2.read_holding_registers(0, count=1, device_id=1)).registers == [2]


async def test_port_zero_gives_distinct_free_ports() -> None:
    async with ModbusSimServer() as a, ModbusSimServer() as b:
        assert a.port != b.port and a.port > 0 and b.port > 0
        assert a.running and b.running
    assert not a.running
