"""KPI core: pure numpy computation, no I/O, no async."""

from .calendar import overlap_seconds, planned_intervals
from .evidence import (
    REQUIRED_ROLES,
    AssetEvidence,
    GapLike,
    TagEvidence,
    asset_gaps,
    gap_intervals,
    missing_roles,
)
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
    "REQUIRED_ROLES",
    "UNKNOWN",
    "AssetEvidence",
    "CounterDelta",
    "GapLike",
    "Intervals",
    "Kpis",
    "Step",
    "TagEvidence",
    "TimeElements",
    "UnitSignals",
    "asset_gaps",
    "combine",
    "counter_increase",
    "gap_intervals",
    "group_by_line",
    "missing_roles",
    "overlap_seconds",
    "planned_intervals",
    "roll_up",
    "time_elements",
]
