"""The Modbus poll plan: the requests a poll group's tags are coalesced into, what the
collector keeps about bad tags and silent units, and what a Modbus exception code means for
the tags of a request (see :mod:`collector.modbus.driver`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from config.modbus import ModbusTable
from config.signals import Quality

from .codec import Decoder

__all__ = ["BIT_TABLES", "FUNCTION", "READERS", "REQUEST_WIDE", "SILENT", "ZEROS", "BadTag", "Group",
           "Request", "Unit", "describe", "quality"]

FUNCTION: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
READERS: dict[str, str] = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}
BIT_TABLES = frozenset({"coil", "discrete"})

_EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy", 7: "negative acknowledge",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: pseudo exception code: the unit did not answer within timeout_s
SILENT = 256
#: a refusal of the request as a whole, not of particular addresses: never split or isolate
REQUEST_WIDE = frozenset({5, 6, 10, 11, SILENT})
#: stand-in for the answer of a request not read (or refused) in a poll
ZEROS = [0] * 2000


def quality(code: int) -> Quality:
    """Quality of the tags of a request answered with exception ``code`` (the table in
    collector/modbus/README.md)."""
    if code in (1, 2, 3):  # the request is wrong for this device: fix the configuration
        return Quality.BAD_CONFIG
    if code in (10, 11, SILENT):  # the target device cannot be reached: nobody answered
        return Quality.BAD_NOT_CONNECTED
    return Quality.BAD_DEVICE_FAILURE  # the device answered, with an error


def describe(code: int) -> str:
    return f"Modbus exception {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})"


@dataclass(slots=True)
class Request:
    unit: int
    table: ModbusTable
    start: int
    count: int
    members: list[int]  # indices into the collector's tag list, in output order
    bits: bool  # coil / discrete: answers go to the group's bit stream, else its registers
    base: int  # where this request's answer starts in that stream
    lo: int  # slice of the group's output arrays
    hi: int
    bad: int | None = None  # tag index when this request isolates a bad tag
    errored: bool = False  # some member has an entry in tag_errors


@dataclass(slots=True)
class Group:
    name: str
    interval: float
    requests: list[Request]
    tag_id: npt.NDArray[np.int32]
    scale: npt.NDArray[np.float64] | None  # None: every tag has scale 1, offset 0
    offset: npt.NDArray[np.float64] | None
    has_text: bool
    # one decoder per stream: a poll decodes the concatenated answers of all its requests
    registers: Decoder
    bits: Decoder
    register_count: int
    bit_count: int


@dataclass(slots=True)
class BadTag:
    quality: Quality
    reason: str
    next_due: float  # event-loop time of the next retry


@dataclass(slots=True)
class Unit:
    """What the collector knows of one unit id during a connection."""

    tags: list[int]  # indices of its tags
    assets: tuple[str, ...]
    answered: bool = False  # answered once since connect (its part gap, if any, is closed)
    silent: bool = False
    next_due: float = 0.0  # silent: event-loop time of the next attempt
    last_ok_ns: int | None = None  # gateway time of its last answer
