"""Collectors: one package per protocol, the registry and the supervisor that runs them.

``COLLECTORS`` (:mod:`collector.registry`) maps a device's ``protocol`` (its config ``type``)
to the collector class; importing this package has no other side effect.
"""

from __future__ import annotations

from .base import Collector, CollectorFactory
from .filter import StorageFilter, device_filter
from .lograte import LogLimiter
from .modbus import ModbusCollector
from .mqtt import MqttCollector
from .opcua import OpcUaCollector
from .registry import COLLECTORS
from .stall import StallMonitor, StallStats
from .supervisor import (
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
    "LogLimiter",
    "ModbusCollector",
    "MqttCollector",
    "OpcUaCollector",
    "ReportsPartGaps",
    "StallMonitor",
    "StallStats",
    "StorageFilter",
    "Supervisor",
    "backoff_delays",
    "device_filter",
]
