"""Which polled samples are stored: every poll, or on change with a deadband and a heartbeat.

A polled tag is read every poll interval whether it changed or not. ``storage`` says which of
those samples the gateway keeps, as Ignition's historian does: ``every_poll``, or
``on_change`` -- a sample is stored when its value moved beyond the deadband from the last
stored value, when its quality changed, at least every ``max_interval_s`` (the heartbeat that
keeps liveness visible), and always as the first sample after a (re)connect. The filter that
applies it is :class:`collector.filter.StorageFilter`.

Precedence for one tag: the tag's own ``storage``, else its device's ``storage``, else the
default of its role (:func:`role_default`): state, mode, channel mode and the counters on
change with deadband 0 and a 60 s heartbeat (lossless for their meaning: a step holds its
value until the next sample, a counter's increases are the differences of its samples),
every other tag every poll. A deadband never applies to those roles (set on the tag it is an
error; a device's deadband is not used for them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Model
from .bounds import Interval_s
from .signals import COUNTER_ROLES, ENUM_ROLES, REASON_ROLES, Role

__all__ = [
    "DEFAULT_MAX_INTERVAL_S",
    "LOSSLESS_ROLES",
    "Storage",
    "StorageDeadband",
    "check_tag_storage",
    "effective_storage",
    "role_default",
]

#: roles whose samples are steps (enumerations) or cumulative counters: stored on change with
#: deadband 0 by default, which loses nothing KPIs read from them
LOSSLESS_ROLES: tuple[Role, ...] = ENUM_ROLES + COUNTER_ROLES + REASON_ROLES
DEFAULT_MAX_INTERVAL_S = 60.0


class StorageDeadband(Model):
    """How far a polled value must move from the last *stored* value to be stored again.

    ``absolute``: by more than ``value`` in the tag's engineering unit (after scale and
    offset). ``percent``: by more than ``value`` % of the last stored value's magnitude --
    so at a last stored value of 0 the band is empty and any change is stored. (Not the OPC UA
    subscription deadband's percent of an EURange: a polled register has none.)
    """

    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)

    @model_validator(mode="after")
    def _range(self) -> StorageDeadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percent deadband must be 0..100")
        return self


class Storage(Model):
    """Storage of a polled tag's samples (see the module docstring)."""

    mode: Literal["every_poll", "on_change"] = Field(
        default="on_change", description="every_poll: store every sample read; on_change: see deadband"
    )
    deadband: StorageDeadband | None = Field(
        default=None, description="on_change: the move from the last stored value that counts as a change; "
        "none: any change (texts always compare exactly)",
    )
    max_interval_s: Interval_s = Field(
        default=DEFAULT_MAX_INTERVAL_S,
        description="on_change: a sample is stored at least this often, changed or not",
    )

    @model_validator(mode="after")
    def _on_change_only(self) -> Storage:
        if self.mode == "every_poll":
            extra = sorted({"deadband", "max_interval_s"} & self.model_fields_set)
            if extra:
                raise ValueError(f"{' and '.join(extra)} apply to mode on_change, not every_poll")
        return self


_ON_CHANGE = Storage()
_EVERY_POLL = Storage(mode="every_poll")


def role_default(role: Role) -> Storage:
    """On change (deadband 0, 60 s heartbeat) for steps and counters, else every poll."""
    return _ON_CHANGE if role in LOSSLESS_ROLES else _EVERY_POLL


def check_tag_storage(role: Role, storage: Storage | None) -> Storage | None:
    """A tag's own ``storage``: no deadband on a step or counter role."""
    if storage is not None and storage.deadband is not None and role in LOSSLESS_ROLES:
        why = (
            "it is an enumeration: any change matters"
            if role in ENUM_ROLES + REASON_ROLES
            else "an increase inside the band would be lost at a counter reset"
        )
        raise ValueError(
            f"a {role.value} tag takes no deadband ({why}); on_change with deadband 0 "
            "already stores only its changes"
        )
    return storage


def effective_storage(role: Role, tag_storage: Storage | None, device_storage: Storage | None
                      ) -> Storage:
    """The storage in force for a tag: its own, else its device's (without a deadband for
    the lossless roles), else its role's default."""
    if tag_storage is not None:
        return tag_storage
    if device_storage is not None:
        if device_storage.deadband is not None and role in LOSSLESS_ROLES:
            return device_storage.model_copy(update={"deadband": None})
        return device_storage
    return role_default(role)
