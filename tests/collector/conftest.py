"""Fixtures for the collector tests: real Modbus TCP servers on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators.modbus import ModbusSimServer, RegisterImage
from tests.collector.modbus_helpers import StartServer


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """start_server(units={1: RegisterImage()}, port=0) -> running ModbusSimServer."""
    servers: list[ModbusSimServer] = []

    async def start(
        units: dict[int, RegisterImage] | None = None, port: int = 0
    ) -> ModbusSimServer:
        server = ModbusSimServer(port=port, units=units or {1: RegisterImage()})
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()
