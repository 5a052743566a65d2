"""Canonical names of enumerated samples (machine state, operation mode, channel mode).

A state, mode or channel-mode tag stores the device's raw value (a Modbus PLC's native code,
an OPC UA server's enumeration value); its ``enum`` maps raw values to the canonical names of
OPC 40001-1 / OPC 40501 (``config.signals``). The KPIs read them through the same mapping
(``KpiService._lut``), so the name given beside a raw value here is what the KPIs counted it
as, whatever the protocol: a raw value the mapping does not hold has no name (null), as the
KPIs count it unknown; a tag without an ``enum`` (a discovered one) carries canonical codes.
A ``stop_reason`` tag's names are the reason ids its ``enum`` maps codes to (``kpi.losses``).
"""

from __future__ import annotations

from collections.abc import Iterable

from config.signals import CANONICAL, Role
from store import TagRecord

__all__ = ["enum_names", "names_of"]


def enum_names(tag: TagRecord | None) -> dict[float, str] | None:
    """Raw value -> canonical name for an enumerated tag; None for any other tag."""
    if tag is None:
        return None
    try:
        role = Role(tag.role)
    except ValueError:
        return None
    if role is Role.STOP_REASON:  # raw code -> reason id (a code it does not map: no name)
        return {float(raw): name for raw, name in (tag.enum or {}).items()}
    enum = CANONICAL.get(role)
    if enum is None:
        return None
    if tag.enum is not None:  # names were validated as canonical names at load (config.base)
        return {float(raw): name for raw, name in tag.enum.items()}
    return {float(m.value): "None" if m.name == "NoMode" else m.name for m in enum}


def names_of(tag: TagRecord | None, values: Iterable[float | None]) -> list[str | None] | None:
    """The canonical name of each value (null where the mapping has none, e.g. NaN or a bad
    sample's placeholder); None when ``tag`` is not enumerated."""
    names = enum_names(tag)
    if names is None:
        return None
    return [None if v is None else names.get(v) for v in values]
