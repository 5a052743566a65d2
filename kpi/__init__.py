"""KPI core: pure numpy computation, no I/O, no async."""

from .calendar import overlap_seconds, planned_intervals
from .oee import (
    ALGORITHM_VERSION,
    Kpis,
    TimeElements,
    UnitSignals,
    group_by_line,
    roll_up,
    time_elements,
)
from .steps import UNKNOWN, CounterDelta, Intervals, Step, combine, counter_increase

__all__ = [
    "ALGORITHM_VERSION",
    "UNKNOWN",
    "CounterDelta",
    "Intervals",
    "Kpis",
    "Step",
    "TimeElements",
    "UnitSignals",
    "combine",
    "counter_increase",
    "group_by_line",
    "overlap_seconds",
    "planned_intervals",
    "roll_up",
    "time_elements",
]
