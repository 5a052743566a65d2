"""The collector registry: a device's ``protocol`` (its config ``type``) -> its collector class.

Importing it imports the drivers and has no other side effect.
"""

from __future__ import annotations

from .base import CollectorFactory
from .modbus import ModbusCollector
from .mqtt import MqttCollector
from .opcua import OpcUaCollector

__all__ = ["COLLECTORS"]

COLLECTORS: dict[str, CollectorFactory] = {
    "modbus": ModbusCollector,
    "mqtt": MqttCollector,
    "opcua": OpcUaCollector,
}
