"""Serve every simulated device of a configuration over its protocol (the demo, `simulate`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlparse

from config.mqtt import MqttDevice, MqttFormat
from config.opcua import OpcUaDevice
from config.settings import Settings

from .modbus import PlantServers, serve_plant
from .mqtt import MqttPublisher, embedded_broker, serve_mqtt
from .opcua import OpcUaPlantServer, serve_opcua
from .plant import Plant

T = TypeVar("T")


@dataclass
class SimulatedDevices:
    """The running servers: Modbus servers by device, OPC UA servers by device, MQTT
    publishers by (device, style)."""

    modbus: PlantServers
    opcua: dict[str, OpcUaPlantServer] = field(default_factory=dict)
    mqtt: dict[tuple[str, MqttFormat], MqttPublisher] = field(default_factory=dict)
    mqtt_brokers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> list[str]:
        out = [f"modbus {name} on 127.0.0.1:{port}" for name, port in self.modbus.ports.items()]
        out += [f"opcua {name} at {s.endpoint}" for name, s in self.opcua.items()]
        out += [f"mqtt {name} publishes {style} to {self.mqtt_brokers[name]}"
                for name, style in self.mqtt]
        return out


def mqtt_publications(d: MqttDevice) -> list[tuple[MqttFormat, str, list[str]]]:
    """(style, topic prefix, assets) the simulator publishes for an MQTT device: one per
    payload format its tags use. The prefix is the first topic level of the format's
    subscription (its template's, else its filter's); for Sparkplug the group id."""
    out: list[tuple[MqttFormat, str, list[str]]] = []
    formats: tuple[MqttFormat, ...] = ("plain", "json", "sparkplug")
    for fmt in formats:
        assets = sorted({t.asset for t in d.tags if d.tag_kind(t) == fmt})
        subs = [sub for sub in d.subscriptions if sub.format == fmt]
        if not assets or not subs:
            continue
        sub = subs[0]
        if fmt == "sparkplug":
            prefix = sub.group_id if sub.group_id != "+" else "tierproof"
        else:
            prefix = (sub.template or sub.filter).split("/", 1)[0]
        out.append((fmt, prefix, assets))
    return out


@contextlib.asynccontextmanager
async def embedded_brokers(settings: Settings) -> AsyncIterator[Settings]:
    """Start the embedded MQTT broker when an enabled MQTT device names no ``broker`` and
    yield the settings with its URL filled in (unchanged settings when none is needed)."""
    needs = [d for d in settings.devices if isinstance(d, MqttDevice) and d.enabled and d.broker is None]
    if not needs:
        yield settings
        return
    async with embedded_broker() as url:
        devices = [d.model_copy(update={"broker": url}) if d in needs else d for d in settings.devices]
        yield settings.model_copy(update={"devices": devices})


async def _listening(stack: contextlib.AsyncExitStack, what: str, host: str, port: int,
                     server: AbstractAsyncContextManager[T]) -> T:
    """``server`` entered on ``stack``; the OSError of a port it cannot listen on raised again
    naming ``what`` and the address, so that the demo's one-line error says which device."""
    try:
        return await stack.enter_async_context(server)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, f"{what} cannot listen on {host}:{port}: {why}") from exc


@contextlib.asynccontextmanager
async def serve_devices(
    settings: Settings,
    plant: Plant,
    *,
    clock: Callable[[], int] = time.time_ns,
    interval_s: float | None = None,
) -> AsyncIterator[SimulatedDevices]:
    """Start a server for each enabled device of ``settings``, where its config says it is.

    Modbus devices: one server per device (unit ids = machines). OPC UA devices: one server
    per endpoint, showing the assets that the device's tags name, on the endpoint's port.
    MQTT devices: a publisher per payload format to the device's broker (which must be
    running: the demo starts an embedded one and sets ``broker``).

    ``clock`` gives every server the simulated instant in ns (default: the wall clock; an
    accelerated clock runs the plant faster). ``interval_s`` is how often every server shows
    the plant anew (default: each server's own, 0.15 to 0.2 s).
    """
    async with contextlib.AsyncExitStack() as stack:
        running = SimulatedDevices(await stack.enter_async_context(
            serve_plant(settings, plant, clock=clock, interval_s=interval_s or 0.15)
        ))
        for d in settings.devices:
            if not isinstance(d, OpcUaDevice) or not d.enabled:
                continue
            url = urlparse(d.endpoint)
            assets = sorted({t.asset for t in d.tags})
            host, port = url.hostname or "127.0.0.1", url.port or 4840
            server = serve_opcua(plant, assets, host=host, port=port, clock=clock,
                                 interval_s=interval_s or 0.2)
            what = f"simulated OPC UA device {d.name}"
            running.opcua[d.name] = await _listening(stack, what, host, port, server)
        for d in settings.devices:
            if not isinstance(d, MqttDevice) or not d.enabled:
                continue
            where = d.host_port
            if where is None:
                raise ValueError(f"device {d.name}: no broker to publish to (set broker:)")
            host, port, secure = where
            tls = None
            if secure and d.tls is not None and d.tls.ca_file is not None:
                tls = (d.tls.ca_file, d.tls.cert_file, d.tls.key_file)
            password = d.password.get_secret_value() if d.password is not None else None
            running.mqtt_brokers[d.name] = d.broker or ""
            for style, prefix, assets in mqtt_publications(d):
                running.mqtt[(d.name, style)] = await stack.enter_async_context(serve_mqtt(
                    plant, host, port, style=style, assets=assets, prefix=prefix,
                    username=d.username, password=password, tls=tls, clock=clock,
                    interval_s=interval_s or 0.2, primary_host=d.primary_host_id,
                ))
        yield running
