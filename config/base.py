"""What every part of the configuration shares: the strict model base, names and asset
paths, and the fields every tag and every device has whatever its protocol."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from .bounds import Interval_s
from .signals import ENUM_ROLES, REASON_ROLES, Role, canonical_names


class Model(BaseModel):
    """Base for all settings: unknown fields are errors (a typo must not pass silently), and
    no number is infinite or NaN (YAML's ``.inf`` / ``.nan``); durations and ports have the
    physical bounds of :mod:`config.bounds`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)



_PATH_SEGMENT = r"[A-Za-z0-9_.\-]+"
ASSET_PATH = re.compile(rf"^{_PATH_SEGMENT}(/{_PATH_SEGMENT}){{3}}$")
NAME = re.compile(rf"^{_PATH_SEGMENT}$")


def _check_name(v: str) -> str:
    if not NAME.match(v):
        raise ValueError(f"{v!r} may hold only letters, digits, _ . -")
    return v


#: a device name or a path segment
Name = Annotated[str, AfterValidator(_check_name)]


class TagBase(Model):
    """What every tag has, whatever its protocol."""

    name: Name = Field(description="signal name, the last segment of the tag path")
    asset: str = Field(description="path of the asset this signal belongs to")
    role: Role = Role.ANALOG
    unit: str = ""
    description: str = ""
    enum: dict[int, str] | None = Field(
        default=None, description=(
            "raw value -> canonical name (state, mode, channel_mode), or reason id (stop_reason)"
        )
    )
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _enum_names(self) -> TagBase:
        if self.enum is not None:
            if self.role in REASON_ROLES:  # reason ids: checked against reasons: (cross_check)
                return self
            if self.role not in ENUM_ROLES:
                raise ValueError(f"enum is only for roles {', '.join(ENUM_ROLES + REASON_ROLES)}")
            allowed = canonical_names(self.role)
            bad = sorted({n for n in self.enum.values() if n not in allowed})
            if bad:
                raise ValueError(
                    f"enum names {bad} are not {self.role.value} names; use {allowed}"
                )
        return self

    @property
    def path(self) -> str:
        return f"{self.asset}/{self.name}"



class Backoff(Model):
    """Reconnect backoff: initial * multiplier**n, capped, with +-jitter fraction."""

    initial_s: Interval_s = 0.5
    max_s: Interval_s = 30.0
    multiplier: float = Field(default=2.0, ge=1, le=100)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> Backoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class DeviceBase(Model):
    name: Name
    enabled: bool = True
    backoff: Backoff = Field(default_factory=Backoff)
