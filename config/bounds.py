"""Physical bounds of the configuration's numbers, as reusable annotated types.

Every duration, interval and port is one of these types instead of a bare ``float`` with a
per-field ``gt=0``: a value must be finite (YAML's ``.inf`` and ``.nan`` are refused) and lie
in a range that makes physical sense -- a poll interval of ``1e-12`` s would spin a core, a
timeout of ``.inf`` hangs a device's connection for good. The message names the kind of
number, the value and the range, so that ``file: field.path: reason`` is enough to fix it.
(Every other float of the configuration is finite too: :class:`config.base.Model` sets
``allow_inf_nan=False``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = [
    "Interval_ms", "Interval_s", "Port", "RetentionDays", "Timeout_s", "ZeroOrInterval_s",
    "in_range",
]


def _show(v: float, unit: str) -> str:
    return f"{v:g} {unit}"


def in_range(kind: str, unit: str, lo: float, hi: float, *, zero: bool = False,
             lo_text: str = "", hi_text: str = "") -> Callable[[float], float]:
    """A check that a float is finite and in ``[lo, hi]`` (in ``unit``), or exactly 0 when
    ``zero`` (the field's description says what 0 means); ``lo_text`` / ``hi_text`` say the
    bounds in words (``1 ms``)."""
    lo_s = _show(lo, unit) + (f" ({lo_text})" if lo_text else "")
    hi_s = _show(hi, unit) + (f" ({hi_text})" if hi_text else "")
    rule = (f"{kind} must be finite, greater than 0, at least {lo_s} and at most {hi_s}"
            + (" (or 0)" if zero else ""))

    def check(v: float) -> float:
        if zero and v == 0:
            return v
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{v:g} is out of range: {rule}")
        return v

    return check


#: how often something is done: a poll, a retry, a heartbeat (1 ms .. 1 day)
Interval_s = Annotated[float, AfterValidator(
    in_range("an interval", "s", 0.001, 86400.0, lo_text="1 ms", hi_text="1 day"))]
#: an interval where 0 has a meaning of its own (each field's description says which)
ZeroOrInterval_s = Annotated[float, AfterValidator(
    in_range("an interval", "s", 0.001, 86400.0, zero=True, lo_text="1 ms", hi_text="1 day"))]
#: an interval in milliseconds (1 ms .. 1 day)
Interval_ms = Annotated[float, AfterValidator(
    in_range("an interval", "ms", 1.0, 86_400_000.0, lo_text="1 ms", hi_text="1 day"))]
#: how long to wait for an answer or a connection (1 ms .. 1 hour)
Timeout_s = Annotated[float, AfterValidator(
    in_range("a timeout", "s", 0.001, 3600.0, lo_text="1 ms", hi_text="1 hour"))]
#: how long stored data is kept: at least an hour (roll-ups are hourly), at most 100 years
RetentionDays = Annotated[float, AfterValidator(
    in_range("a retention", "days", 1 / 24, 36500.0, lo_text="1 hour", hi_text="100 years"))]
#: a TCP port to connect to or listen on
Port = Annotated[int, Field(ge=1, le=65535)]
