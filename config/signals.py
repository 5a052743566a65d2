"""Canonical meanings of the signals that KPIs are computed from.

Devices encode machine state and modes however they like; each tag's ``enum`` maps the
device's raw integers to these canonical names (OPC 40001-1 for state and operation mode,
OPC 40501 for the channel mode), so that the KPI core has one vocabulary.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(StrEnum):
    """What a tag means to the KPI core."""

    STATE = "state"  # MachineryItemState
    MODE = "mode"  # MachineryOperationMode
    CHANNEL_MODE = "channel_mode"  # Automatic / MDI / Manual (automation rate)
    GOOD_COUNT = "good_count"  # cumulative, may reset
    REJECT_COUNT = "reject_count"  # cumulative, may reset
    TOTAL_COUNT = "total_count"  # cumulative, may reset
    ENERGY_KWH = "energy_kwh"  # cumulative meter, may reset
    ANALOG = "analog"  # anything else (temperature, speed, ...)
    STATUS = "status"  # informational flags and texts
    STOP_REASON = "stop_reason"  # a PLC's stop/fault reason code (enum: raw -> reason id)
    REASON_EVENT = "reason_event"  # OPC UA events mapped to reasons (texts; config.opcua)


#: roles whose values are enumerations and therefore need a mapping to canonical names
ENUM_ROLES = (Role.STATE, Role.MODE, Role.CHANNEL_MODE)
#: roles whose values are cumulative counters (reset = drop to a lower value)
COUNTER_ROLES = (Role.GOOD_COUNT, Role.REJECT_COUNT, Role.TOTAL_COUNT, Role.ENERGY_KWH)
#: enumerated roles whose names are the configured reason ids (``reasons:``), not canonical
#: names: stored on change like the other enumerations, mapped to reasons when read
REASON_ROLES = (Role.STOP_REASON,)
#: roles whose samples are events (a text per event, never a step): OPC UA event
#: subscriptions mapped to reasons (``collector.opcua.events``)
EVENT_ROLES = (Role.REASON_EVENT,)
#: roles of which an asset may have at most one tag
SINGLE_ROLES = ENUM_ROLES + COUNTER_ROLES + REASON_ROLES + EVENT_ROLES


class MachineState(IntEnum):
    """OPC 40001-1 MachineryItemState."""

    NotAvailable = 0
    OutOfService = 1
    NotExecuting = 2
    Executing = 3


class OperationMode(IntEnum):
    """OPC 40001-1 MachineryOperationMode."""

    NoMode = 0  # "None" in the companion spec
    Maintenance = 1
    Setup = 2
    Processing = 3


class ChannelMode(IntEnum):
    """OPC 40501 channel mode of a machine tool."""

    Automatic = 0
    MDI = 1
    Manual = 2


CANONICAL: dict[Role, type[IntEnum]] = {
    Role.STATE: MachineState,
    Role.MODE: OperationMode,
    Role.CHANNEL_MODE: ChannelMode,
}


def canonical_names(role: Role) -> list[str]:
    """Names a tag of ``role`` may map its raw values to ("None" is OperationMode.NoMode)."""
    enum = CANONICAL[role]
    return ["None" if m.name == "NoMode" else m.name for m in enum]


def canonical_code(role: Role, name: str) -> int:
    """Canonical integer for a canonical name; raises KeyError for an unknown one."""
    enum = CANONICAL[role]
    key = "NoMode" if (enum is OperationMode and name == "None") else name
    return int(enum[key])


class Quality(IntEnum):
    """Quality stored with every sample (uint8). Anything >= BAD is not usable for KPIs."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2  # generic bad
    BAD_NOT_CONNECTED = 3  # device unreachable
    BAD_DEVICE_FAILURE = 4  # device answered with an error (e.g. Modbus exception)
    BAD_CONFIG = 5  # the address is illegal or the value cannot be decoded as configured
    BAD_STALE = 6  # the source declared the value stale (e.g. Sparkplug DEATH)

    @property
    def usable(self) -> bool:
        return self < Quality.BAD
