"""Response models of the KPI routes (``/api/v1/kpis``, ``/kpis/deltas``, ``/tiers/assessment``).

Those routes answer JSON rendered once in a worker thread (``api.flight``), so FastAPI never
filters them through these models: the models describe the answers for the OpenAPI document
and for generated clients, and tests validate live answers against them (every field an
answer carries must be declared here). Their class names are the OpenAPI schema names.
Per-asset, per-line, per-figure and per-tier maps are keyed by path or name (open maps of
one model); everything else is an explicit field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kpi import TimeElements

__all__ = [
    "AssessmentOut",
    "DeltasOut",
    "KpiEntry",
    "KpisOut",
    "Window",
]

Verdict = Literal["met", "point_estimate_only", "not_met", "insufficient_data"]


class Window(BaseModel):
    """A resolved window [from, to), ISO 8601 UTC."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="start (inclusive), ISO 8601 UTC",
                       examples=["2026-12-06T00:00:00Z"])
    to: str = Field(description="end (exclusive), ISO 8601 UTC", examples=["2026-12-07T00:00:00Z"])


class TagEvidenceOut(BaseModel):
    """One tag a KPI was computed from, and how many of its samples the window holds."""

    path: str
    tag_id: int
    role: str = Field(description="the tag's role (state, mode, good_count, ...)")
    samples: int = Field(description="samples inside the window")
    bad_samples: int = Field(description="of those, the ones of quality BAD or worse (not used)")
    prior_sample: str | None = Field(
        description="time of the sample before the window that carries its value in, if any")


class ConfiguredMode(BaseModel):
    """The operation mode taken from the asset's configured ``default_mode``."""

    source: Literal["configured"]
    value: str
    note: str


class GapOut(BaseModel):
    """A recorded interval during which a device (or one of its assets) delivered nothing."""

    device: str
    asset: str | None = Field(description="null: the whole device")
    start: str | None
    end: str | None = Field(description="null while the gap is still open")
    reason: str
    tag: str | None = Field(default=None, description="stored data found damaged: the tag")


class ImplausibleIncrease(BaseModel):
    """A part-counter increase excluded as a glitch (faster than the asset can produce)."""

    model_config = ConfigDict(populate_by_name=True)

    role: str
    from_: str | None = Field(alias="from")
    to: str | None
    increase: float
    allowed: float


class Evidence(BaseModel):
    """What one asset's KPIs rest on."""

    kind: str = Field(description="`measured`")
    tags: list[TagEvidenceOut]
    missing_roles: list[str] = Field(description="required roles the asset has no tag for")
    mode: ConfiguredMode | None = Field(description="set when the mode is configured, not measured")
    gaps: list[GapOut]
    planned_intervals: int = Field(description="intervals of planned busy time in the window")
    ideal_cycle_time_s: float | None
    implausible_increases: list[ImplausibleIncrease]


class RollupUse(BaseModel):
    """Which whole hours of the window came from hourly roll-ups, and which did not."""

    whole_hours: int
    from_rollups: int
    from_raw_samples: int


class KpiEntry(BaseModel):
    """The KPIs of one asset, one line or the total (fractions; null where undefined)."""

    availability: float | None
    effectiveness: float | None
    quality_ratio: float | None
    oee: float | None
    nee: float | None
    technical_efficiency: float | None
    setup_rate: float | None
    scrap_ratio: float | None
    throughput_per_h: float | None = Field(description="a roll-up: only when its units share one PRU")
    automation_rate: float | None
    automation_coverage: float | None = Field(description="APT whose channel mode is known / APT")
    energy_per_unit_kwh: float | None = Field(description="a roll-up: only when its units share one PRU")
    coverage: float | None = Field(description="known planned busy time / planned busy time")
    standard_output_rate: float | None = Field(
        description="standard hours of good output per busy hour")
    energy_per_standard_hour_kwh: float | None = Field(
        description="kWh per standard hour of good output")
    elements: TimeElements = Field(description="the ISO 22400 time elements and quantities summed")
    evidence: Evidence | None = Field(
        default=None, description="assets of /api/v1/kpis only: the tags, gaps and plan behind them")
    rollups: RollupUse | None = Field(default=None, description="assets, with kpi.rollups on")


_ENTRY_EXAMPLE: dict[str, Any] = {
    "availability": 0.99, "effectiveness": 0.967, "quality_ratio": 0.98, "oee": 0.937,
    "nee": 0.937, "technical_efficiency": 0.99, "setup_rate": 0.0, "scrap_ratio": 0.02,
    "throughput_per_h": 76.6, "automation_rate": 1.0, "automation_coverage": 1.0,
    "energy_per_unit_kwh": 0.201, "coverage": 1.0, "standard_output_rate": 0.937,
    "energy_per_standard_hour_kwh": 16.1,
    "elements": {"window_s": 86400.0, "pbt_s": 13826.0, "known_s": 13826.0, "apt_s": 13687.2,
                 "adet_s": 138.8, "pq": 294.0, "gq": 288.0, "sq": 6.0, "units": 1},
}


class KpisOut(BaseModel):
    """ISO 22400 KPIs per asset, per line and in total over one window, with evidence."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "window": {"from": "2026-12-06T00:00:00Z", "to": "2026-12-07T00:00:00Z"},
        "algorithm_version": "tierproof-kpi/5+elements/2",
        "config_fingerprint": "77fbd1a2f9faf98f",
        "assets": {"demo/machining/line1/lathe-01": {
            **_ENTRY_EXAMPLE,
            "evidence": {"kind": "measured", "tags": [
                {"path": "demo/machining/line1/lathe-01/state", "tag_id": 1, "role": "state",
                 "samples": 9, "bad_samples": 0, "prior_sample": "2026-12-05T14:00:00Z"}],
                "missing_roles": [], "mode": None, "gaps": [], "planned_intervals": 2,
                "ideal_cycle_time_s": 45.0, "implausible_increases": []},
            "rollups": {"whole_hours": 24, "from_rollups": 23, "from_raw_samples": 1}}},
        "lines": {"demo/machining/line1": _ENTRY_EXAMPLE},
        "total": _ENTRY_EXAMPLE,
    }]})

    window: Window
    algorithm_version: str
    config_fingerprint: str = Field(description="of the configuration file's meaning (GET /api/v1/config)")
    assets: dict[str, KpiEntry] = Field(description="asset path -> its KPIs, elements and evidence")
    lines: dict[str, KpiEntry] = Field(description="line path -> the KPIs of its assets' summed elements")
    total: KpiEntry = Field(description="the selection's summed elements and their KPIs")


class WindowRatio(BaseModel):
    """One window's ratio: Σ numerator / Σ denominator over its days."""

    value: float | None
    numerator: float
    denominator: float
    n_days: int = Field(description="days with a denominator > 0")
    zero_days: int = Field(description="days whose denominator is 0 (their numerator counts)")


class BootstrapOut(BaseModel):
    """How the intervals were resampled (to reproduce them)."""

    seed: int
    n_resamples: int
    min_days: int
    method: str
    confidence: float


class DayCounts(BaseModel):
    baseline: int
    current: int


class RatioEstimateOut(BaseModel):
    """One window's ratio with its day-block bootstrap interval."""

    point: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str
    n_resamples: int
    seed: int
    min_days: int
    n_days: int
    zero_days: int
    window: WindowRatio
    reason: str | None = Field(description="why there is no interval, if there is none")


class RatioDeltaOut(BaseModel):
    """A baseline→current delta of a ratio with its day-block bootstrap interval."""

    kind: Literal["relative", "absolute"]
    point: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str
    n_resamples: int
    seed: int
    min_days: int
    n_days: DayCounts
    zero_days: DayCounts
    baseline: WindowRatio
    current: WindowRatio
    reason: str | None


class LabourWindow(BaseModel):
    """Standard output hours of one window per labour hour apportioned to it (no interval)."""

    point: float | None
    standard_hours: float
    labour_hours: float | None
    month_shares: dict[str, float] = Field(
        description="month YYYY-MM -> share of its planned busy time in the window")
    missing_months: list[str]


class LabourDelta(BaseModel):
    """The relative change of output per labour hour (a point, no interval)."""

    kind: Literal["relative"]
    point: float | None
    low: None
    high: None
    baseline: LabourWindow
    current: LabourWindow
    reason: str


class DeltaEntry(BaseModel):
    """One figure's baseline→current delta with both windows' values, or what is missing.
    The interval's details are present when the delta was computed."""

    kind: Literal["relative", "absolute"]
    point: float | None
    low: float | None
    high: float | None
    baseline_value: float | None
    current_value: float | None
    missing: str | None
    confidence: float | None = None
    method: str | None = None
    n_resamples: int | None = None
    seed: int | None = None
    min_days: int | None = None
    n_days: DayCounts | None = None
    zero_days: DayCounts | None = None
    baseline: WindowRatio | LabourWindow | None = None
    current: WindowRatio | LabourWindow | None = None
    reason: str | None = None


class DeltasOut(BaseModel):
    """Baseline-to-current deltas of the assessment's ratio figures."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "window": {"from": "2026-12-01T00:00:00Z", "to": "2026-12-08T00:00:00Z"},
        "baseline_window": {"from": "2026-11-24T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        "criteria_version": "tierproof-tiers/2026-12-06.2",
        "algorithm_version": "tierproof-kpi/5+elements/2",
        "config_fingerprint": "77fbd1a2f9faf98f",
        "bootstrap": {"seed": 0, "n_resamples": 9999, "min_days": 7,
                      "method": "day-block bootstrap (BCa)", "confidence": 0.95},
        "deltas": {"automation_rate": {
            "kind": "relative", "point": 0.026, "low": 0.011, "high": 0.04,
            "baseline_value": 0.955, "current_value": 0.98, "missing": None,
            "confidence": 0.95, "method": "day-block bootstrap (BCa)", "n_resamples": 9999,
            "seed": 0, "min_days": 7, "n_days": {"baseline": 7, "current": 7},
            "zero_days": {"baseline": 1, "current": 1},
            "baseline": {"value": 0.955, "numerator": 395421.6, "denominator": 414175.0,
                         "n_days": 7, "zero_days": 1},
            "current": {"value": 0.98, "numerator": 140867.1, "denominator": 143792.3,
                        "n_days": 7, "zero_days": 1},
            "reason": None}},
    }]})

    window: Window
    baseline_window: Window
    criteria_version: str
    algorithm_version: str
    config_fingerprint: str
    bootstrap: BootstrapOut
    deltas: dict[str, DeltaEntry] = Field(description="figure -> its delta")


class CncDeclared(BaseModel):
    """The register's CNC rate of key equipment (declared, not measured)."""

    value: float | None
    numerator: int
    denominator: int
    kind: Literal["declared"]
    config_fingerprint: str
    source: str


class EmissionFactorOut(BaseModel):
    """The declared emission factor a carbon figure is computed with."""

    value: float
    unit: str
    supplied_by: str
    supplied_at: str
    source: str


class FigureEntry(BaseModel):
    """One figure of the assessment: unit, value with its interval, delta, coverage, what is missing."""

    unit: str
    coverage: float | None
    value: RatioEstimateOut | LabourWindow | None
    delta: RatioDeltaOut | LabourDelta | None
    numerator_on_zero_days: float | None = Field(
        default=None, description="numerator of the days without a denominator: counted in the value")
    missing: str | None
    note: str | None = None
    baseline_coverage: float | None = None
    baseline_numerator_on_zero_days: float | None = None
    emission_factor: EmissionFactorOut | None = None
    declared: CncDeclared | None = None


class IntervalOut(BaseModel):
    low: float
    high: float
    confidence: float
    method: str


class SuppliedOut(BaseModel):
    """Who supplied a declared figure, when and from what."""

    item: str
    supplied_by: str
    supplied_at: str
    source: str


class CriterionOut(BaseModel):
    """One criterion of a tier, judged."""

    tier: str
    id: str
    title: str
    figure: str
    kind: str
    measure: str
    direction: str
    value: float | None
    interval: IntervalOut | None
    threshold: float | None
    reference: str | None
    reference_value: float | None
    reference_source: str | None
    reference_note: str | None
    factor: float
    verdict: Verdict
    reason: str
    coverage: float | None
    missing: str | None
    source: str
    supplied: list[SuppliedOut]


class VerdictCounts(BaseModel):
    met: int
    point_estimate_only: int
    insufficient_data: int
    not_met: int


class TierOut(BaseModel):
    """How far the plant is from one tier: every criterion's verdict and the tier's."""

    tier: str
    criteria_version: str
    verdict: Verdict
    coverage_min: float
    counts: VerdictCounts
    criteria: list[CriterionOut]


class AssessmentDays(BaseModel):
    current: list[str] = Field(description="the local calendar days of the current window")
    baseline: list[str]


class Periods(BaseModel):
    current_periods: list[str] = Field(description="calendar months YYYY-MM of the current window")
    baseline_periods: list[str]


class History(BaseModel):
    """How far the history held reaches back from the current window's end."""

    first_sample: str | None
    years: float | None
    coverage: float | None


class DeclaredVersionOut(BaseModel):
    """Which version of an item: 0 is the configuration file's value."""

    version: int = Field(ge=0, description="0: the configuration file's; 1, 2, ...: supplied through the API")
    supplied_by: str = Field(description="the API key's name (or X-Supplied-By); `config` for version 0")
    supplied_at: str | None = Field(description="when it was supplied, ISO 8601 UTC; null for version 0")
    source: Literal["config", "api"]
    reason: str = Field(description="why it was supplied, as the supplier said")


class AssessmentOut(BaseModel):
    """Which smart-factory tier the plant meets, criterion by criterion, with the figures,
    deltas and KPIs behind every verdict."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "criteria_version": "tierproof-tiers/2026-12-06.2",
        "algorithm_version": "tierproof-kpi/5+elements/2",
        "config_fingerprint": "77fbd1a2f9faf98f",
        "window": {"from": "2026-12-01T00:00:00Z", "to": "2026-12-08T00:00:00Z"},
        "baseline_window": {"from": "2026-11-24T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        "assets": {"demo/machining/line1/lathe-01": _ENTRY_EXAMPLE},
        "lines": {"demo/machining/line1": _ENTRY_EXAMPLE},
        "total": _ENTRY_EXAMPLE,
        "deltas": {"networking_rate": {"kind": "relative", "point": 0.0, "low": None, "high": None,
                                       "baseline_value": 1.0, "current_value": 1.0, "missing": None}},
        "days": {"current": ["2026-12-01", "2026-12-07"], "baseline": ["2026-11-24", "2026-11-30"]},
        "periods": {"current_periods": ["2026-12"], "baseline_periods": ["2026-11", "2026-12"]},
        "bootstrap": {"seed": 0, "n_resamples": 9999, "min_days": 7,
                      "method": "day-block bootstrap (BCa)", "confidence": 0.95},
        "figures": {"networking_rate": {"unit": "fraction", "coverage": 1.0, "value": None,
                                        "delta": None, "missing": None}},
        "history": {"first_sample": "2026-11-20T00:00:00Z", "years": 0.05, "coverage": 1.0},
        "not_computed": ["availability"],
        "declared_versions": {"labour-hours": {
            "version": 3, "supplied_by": "mes-sync", "supplied_at": "2026-12-01T02:00:00Z",
            "source": "api", "reason": "November's figure from the MES"}},
        "coverage_min": 0.9,
        "tiers": {"basic": {
            "tier": "basic", "criteria_version": "tierproof-tiers/2026-12-06.2",
            "verdict": "met", "coverage_min": 0.9,
            "counts": {"met": 1, "point_estimate_only": 0, "insufficient_data": 0, "not_met": 0},
            "criteria": [{
                "tier": "basic", "id": "networking", "title": "Equipment networked and reporting",
                "figure": "networking_rate", "kind": "measured", "measure": "value",
                "direction": ">=", "value": 1.0,
                "interval": {"low": 0.97, "high": 1.0, "confidence": 0.95, "method": "BCa"},
                "threshold": 0.85, "reference": "provincial_networking_rate",
                "reference_value": 0.85,
                "reference_source": "declared.references.provincial_networking_rate",
                "reference_note": None, "factor": 1.0, "verdict": "met",
                "reason": "the interval's lower bound meets the threshold", "coverage": 1.0,
                "missing": None, "source": "provincial", "supplied": []}]}},
    }]})

    criteria_version: str
    algorithm_version: str
    config_fingerprint: str
    window: Window
    baseline_window: Window | None = Field(description="null without a baseline")
    assets: dict[str, KpiEntry] = Field(description="the current window's KPIs per asset (no evidence)")
    lines: dict[str, KpiEntry]
    total: KpiEntry
    deltas: dict[str, DeltaEntry] = Field(description="figure -> baseline→current delta")
    days: AssessmentDays
    periods: Periods
    bootstrap: BootstrapOut
    figures: dict[str, FigureEntry] = Field(description="figure -> value, delta, coverage, unit")
    history: History
    not_computed: list[str] = Field(
        description="measured figures of the criteria this version does not compute")
    declared_versions: dict[str, DeclaredVersionOut] = Field(
        description="declared item -> the version of it this assessment used")
    coverage_min: float
    tiers: dict[str, TierOut] = Field(description="tier name -> its readiness")
