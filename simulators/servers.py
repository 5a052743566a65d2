"""Serve every simulated device of a configuration over its protocol (the demo, `simulate`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

from config.settings import OpcUaDevice, Settings

from .modbus_plant import PlantServers, serve_plant
from .opcua_server import OpcUaPlantServer, serve_opcua
from .plant import Plant


@dataclass
class SimulatedDevices:
    """The running servers: Modbus servers by device, OPC UA servers by device."""

    modbus: PlantServers
    opcua: dict[str, OpcUaPlantServer] = field(default_factory=dict)

    def describe(self) -> list[str]:
        out = [f"modbus {name} on 127.0.0.1:{port}" for name, port in self.modbus.ports.items()]
        out += [f"opcua {name} at {s.endpoint}" for name, s in self.opcua.items()]
        return out


@contextlib.asynccontextmanager
async def serve_devices(settings: Settings, plant: Plant) -> AsyncIterator[SimulatedDevices]:
    """Start a server for each enabled device of ``settings``, where its config says it is.

    Modbus devices: one server per device (unit ids = machines). OPC UA devices: one server
    per endpoint, showing the assets that the device's tags name, on the endpoint's port.
    """
    async with contextlib.AsyncExitStack() as stack:
        running = SimulatedDevices(await stack.enter_async_context(serve_plant(settings, plant)))
        for d in settings.devices:
            if not isinstance(d, OpcUaDevice) or not d.enabled:
                continue
            url = urlparse(d.endpoint)
            assets = sorted({t.asset for t in d.tags})
            running.opcua[d.name] = await stack.enter_async_context(
                serve_opcua(plant, assets, host=url.hostname or "127.0.0.1", port=url.port or 4840)
            )
        yield running
