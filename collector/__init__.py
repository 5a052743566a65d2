"""Collectors: one driver per protocol, and the supervisor that runs them.

``COLLECTORS`` is the registry from a device's ``protocol`` (its config ``type``) to the
collector class; importing this package has no other side effect.
"""

from __future__ import annotations

from .base import Collector, CollectorFactory
from .modbus import ModbusCollector
from .mqtt import MqttCollector
from .opcua import OpcUaCollector

COLLECTORS: dict[str, CollectorFactory] = {
    "modbus": ModbusCollector,
    "mqtt": MqttCollector,
    "opcua": OpcUaCollector,
}

from .supervisor import (  # noqa: E402
    Acknowledging,
    DeviceHealth,
    ReportsPartGaps,
    Supervisor,
    backoff_delays,
)

__all__ = [
    "COLLECTORS",
    "Acknowledging",
    "Collector",
    "CollectorFactory",
    "DeviceHealth",
    "ModbusCollector",
    "MqttCollector",
    "OpcUaCollector",
    "ReportsPartGaps",
    "Supervisor",
    "backoff_delays",
]
