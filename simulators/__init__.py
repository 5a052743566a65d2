"""Simulated machines: a ground-truth model, a plant, exact KPIs, and protocol servers.

The protocol-neutral parts sit here (``model``, ``plant``, ``truth``, ``calendar``, the
``servers`` composition and the ``ticker`` that refreshes every server); each protocol has
its package: ``modbus/``, ``opcua/``, ``mqtt/``.
"""

from .modbus import (
    REGISTER_MAP,
    STATUS_BITS,
    ModbusSimServer,
    PlantServers,
    RegisterField,
    RegisterImage,
    assign_units,
    encode_words,
    machine_fields,
    register_map_table,
    serve_plant,
    with_ports,
    write_machine,
)
from .model import (
    NATIVE_CODES,
    Behaviour,
    DayClock,
    MachineModel,
    MachineProfile,
    Timeline,
    datetime_ns,
)
from .mqtt import JSON_LAYOUT, MQTT_SIGNALS, MqttPublisher, MqttStyle, embedded_broker, serve_mqtt
from .opcua import (
    NAMESPACE_URI,
    OPCUA_SIGNALS,
    SECURITY_ALL,
    OpcUaPlantServer,
    SimUserManager,
    serve_opcua,
)
from .plant import HISTORY_ROLES, MachineValues, Plant, stored_values
from .servers import SimulatedDevices, serve_devices
from .truth import NOT_GIVEN, Elements, asset_elements, truth, write_truth

__all__ = [
    "HISTORY_ROLES",
    "JSON_LAYOUT",
    "MQTT_SIGNALS",
    "NAMESPACE_URI",
    "NATIVE_CODES",
    "NOT_GIVEN",
    "OPCUA_SIGNALS",
    "REGISTER_MAP",
    "SECURITY_ALL",
    "STATUS_BITS",
    "Behaviour",
    "DayClock",
    "Elements",
    "MachineModel",
    "MachineProfile",
    "MachineValues",
    "ModbusSimServer",
    "MqttPublisher",
    "MqttStyle",
    "OpcUaPlantServer",
    "Plant",
    "PlantServers",
    "RegisterField",
    "RegisterImage",
    "SimUserManager",
    "SimulatedDevices",
    "Timeline",
    "asset_elements",
    "assign_units",
    "datetime_ns",
    "embedded_broker",
    "encode_words",
    "machine_fields",
    "register_map_table",
    "serve_devices",
    "serve_mqtt",
    "serve_opcua",
    "serve_plant",
    "stored_values",
    "truth",
    "with_ports",
    "write_machine",
    "write_truth",
]
