"""Modbus collector (TCP, RTU on a serial line, RTU over TCP): the driver, the register codec
and the lines it reaches devices through (see ``README.md``)."""

from __future__ import annotations

from .codec import EXACT_INT_LIMIT, NUMERIC_DTYPES, Decoder, byte_permutation, encode_value
from .driver import ModbusCollector, ModbusStats
from .line import ModbusLine, acquire_line, release_line

__all__ = [
    "EXACT_INT_LIMIT",
    "NUMERIC_DTYPES",
    "Decoder",
    "ModbusCollector",
    "ModbusLine",
    "ModbusStats",
    "acquire_line",
    "byte_permutation",
    "encode_value",
    "release_line",
]
