"""The plant over Modbus: a register-image server (TCP, RTU over TCP, serial RTU) and the
plant's register map (``REGISTER_MAP.md``)."""

from .plant import (
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
from .server import ModbusSimSerialServer, ModbusSimServer, RegisterImage, Table

__all__ = [
    "REGISTER_MAP",
    "STATUS_BITS",
    "ModbusSimSerialServer",
    "ModbusSimServer",
    "PlantServers",
    "RegisterField",
    "RegisterImage",
    "Table",
    "assign_units",
    "encode_words",
    "machine_fields",
    "register_map_table",
    "serve_plant",
    "with_ports",
    "write_machine",
]
