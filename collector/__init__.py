"""Collectors: one driver per protocol, and the supervisor that runs them.

``COLLECTORS`` is the registry from a device's ``protocol`` (its config ``type``) to the
collector class; importing this package has no other side effect.
"""

from __future__ import annotations

from .base import Collector, CollectorFactory
from .modbus import ModbusCollector
from .opcua import OpcUaCollector

COLLECTORS: dict[str, CollectorFactory] = {"modbus": ModbusCollector, "opcua": OpcUaCollector}

from .supervisor import DeviceHealth, Supervisor, backoff_delays  # noqa: E402

__all__ = [
    "COLLECTORS",
    "Collector",
    "CollectorFactory",
    "DeviceHealth",
    "ModbusCollector",
    "OpcUaCollector",
    "Supervisor",
    "backoff_delays",
]
