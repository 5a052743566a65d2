"""Simulated machines: a ground-truth model, a plant, exact KPIs, and protocol servers."""

from .modbus_plant import (
    REGISTER_MAP,
    STATUS_BITS,
    PlantServers,
    RegisterField,
    assign_units,
    encode_words,
    machine_fields,
    register_map_table,
    serve_plant,
    with_ports,
    write_machine,
)
from .modbus_server import ModbusSimServer, RegisterImage
from .model import (
    NATIVE_CODES,
    Behaviour,
    DayClock,
    MachineModel,
    MachineProfile,
    Timeline,
    datetime_ns,
)
from .plant import HISTORY_ROLES, MachineValues, Plant, stored_values
from .truth import Elements, asset_elements, truth, write_truth

__all__ = [
    "HISTORY_ROLES",
    "NATIVE_CODES",
    "REGISTER_MAP",
    "STATUS_BITS",
    "Behaviour",
    "DayClock",
    "Elements",
    "MachineModel",
    "MachineProfile",
    "MachineValues",
    "ModbusSimServer",
    "Plant",
    "PlantServers",
    "RegisterField",
    "RegisterImage",
    "Timeline",
    "asset_elements",
    "assign_units",
    "datetime_ns",
    "encode_words",
    "machine_fields",
    "register_map_table",
    "serve_plant",
    "stored_values",
    "truth",
    "with_ports",
    "write_machine",
    "write_truth",
]

# the OPC UA simulator
from .opcua_server import (
    NAMESPACE_URI,
    OPCUA_SIGNALS,
    SECURITY_ALL,
    OpcUaPlantServer,
    SimUserManager,
    serve_opcua,
)

__all__ += [
    "NAMESPACE_URI",
    "OPCUA_SIGNALS",
    "SECURITY_ALL",
    "OpcUaPlantServer",
    "SimUserManager",
    "serve_opcua",
]

# the MQTT simulator
from .mqtt_publisher import JSON_LAYOUT, MQTT_SIGNALS, MqttPublisher, MqttStyle, serve_mqtt  # noqa: E402

__all__ += ["JSON_LAYOUT", "MQTT_SIGNALS", "MqttPublisher", "MqttStyle", "serve_mqtt"]

from .broker import embedded_broker  # noqa: E402

__all__ += ["embedded_broker"]

from .servers import SimulatedDevices, serve_devices  # noqa: E402

__all__ += ["SimulatedDevices", "serve_devices"]
