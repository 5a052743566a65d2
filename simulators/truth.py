"""Exact ground-truth KPIs of a simulated plant, straight from the machine model.

Independent of ``kpi/`` (planned busy time comes from :mod:`simulators.calendar`, which shares
no code with ``kpi/calendar.py``): these numbers come from the timeline and the parts
themselves, not from stored samples, so comparing them with what the gateway computes from
collected data tests the whole chain.

The output has the names and the shape of the KPI service's (``GET /api/v1/kpis``), so that a
user can diff the two::

    {"window": {"from": ISO, "to": ISO},
     "assets": {"<asset path>": {<KPI>: value, ..., "elements": {<element>: value, ...}}},
     "lines":  {"<site/area/line>": {... the same ...}},
     "total":  {... the same ...}}

KPI and element names are those of ``kpi.oee.Kpis`` and ``kpi.oee.TimeElements``; timestamps
are formatted by :func:`config.times.iso`, as the API formats them.

Time elements count inside planned busy time (PBT) of the window; quantities and energy count
over the whole window, and the parts completed inside PBT (``pq_plan``, ``gq_plan``,
``sq_plan``) are the basis of effectiveness and quality; those completed outside it are
``pq_outside_plan``. The simulator knows every instant and every part, so all of PBT is known
(``known_s``; ``coverage`` is 1), every channel mode is known (``apt_mode_known_s`` is
``apt_s``; ``automation_coverage`` is 1), every unit's output is measured (``pq_known``) and no
part is unattributed (``pq_unattributed`` is 0). (State, mode) map to elements as the
OPC 40001-1 annex says, restated here: OutOfService is a malfunction, NotAvailable is not
available, and otherwise Processing is APT when Executing and a minor stop (``idle_s``) when
not, Setup is ASUT, Maintenance is maintenance, no mode is ``other_s``; ADET is malfunctions
plus minor stops (ISO 22400-2 unit delays). Roll-ups (lines, total) sum elements, then divide
(``window_s`` is the window, not a sum). Ratios are fractions, None where the denominator is
zero. An asset without PRU has no effectiveness (nor OEE, nor NEE); roll-ups leave it out of
their effectiveness and count it in ``units_without_pru``. Parts of different products do not
add up: a roll-up's raw ``throughput_per_h`` and ``energy_per_unit_kwh`` are None unless all
its assets share one PRU (``shared_pru_s``); ``standard_output_rate`` (PRU x good parts in PBT
per busy hour) and ``energy_per_standard_hour_kwh`` (kWh per PRU x good parts, in hours) weigh
each part by its PRU. Energy per unit counts only the assets the configuration gives an energy
meter (an ``energy_kwh`` tag on an enabled device).

What the API gives and the truth deliberately does not (:data:`NOT_GIVEN`):

- ``counter_resets`` and ``implausible_increases``: what the stored counter samples showed
  (a reset shows only where the counter had counted something; a glitch is a bad sample), not
  something the machine did;
- ``evidence``, ``algorithm_version``, ``config_fingerprint`` and ``rollups`` (how many whole
  hours came from roll-up rows): how the service computed its numbers from stored data; the
  truth has no data, only the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import numpy as np

from config.settings import Settings
from config.signals import ChannelMode, MachineState, OperationMode, Role
from config.times import iso, parse_instant

from .calendar import overlap_seconds
from .model import NATIVE_CODES, NS, datetime_ns
from .plant import Plant

__all__ = ["NOT_GIVEN", "Elements", "asset_elements", "stop_truth", "truth", "write_truth"]

_NS_PER_H = 3600 * NS

#: names of the KPI service's output that the truth deliberately does not give (see above)
NOT_GIVEN: Final[frozenset[str]] = frozenset({
    "counter_resets", "implausible_increases",  # elements: observations of stored samples
    "evidence", "algorithm_version", "config_fingerprint", "rollups",  # how stored data was used
})


def _r(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(frozen=True, slots=True)
class Elements:
    """Additive ISO 22400 inputs of one asset, or of a sum of assets, over one window (named
    as ``kpi.oee.TimeElements``; seconds inside PBT unless said otherwise)."""

    window_s: float = 0.0  # the window (a roll-up keeps it, does not sum it)
    pbt_s: float = 0.0  # window ∩ planned busy time
    known_s: float = 0.0  # PBT whose (state, mode) maps to an element: all of it here
    apt_s: float = 0.0  # Executing & Processing
    asut_s: float = 0.0  # (Executing | NotExecuting) & Setup
    adet_s: float = 0.0  # OutOfService + NotExecuting & Processing: failures + minor stops
    idle_s: float = 0.0  # NotExecuting & Processing: the minor stops, a part of ADET
    maintenance_s: float = 0.0  # (Executing | NotExecuting) & Maintenance
    not_available_s: float = 0.0  # NotAvailable
    other_s: float = 0.0  # (Executing | NotExecuting) & no mode
    apt_auto_s: float = 0.0  # APT in channel mode Automatic
    apt_mode_known_s: float = 0.0  # APT whose channel mode is known: all of it here
    apt_outside_plan_s: float = 0.0  # Executing & Processing outside PBT
    pq: int = 0  # parts completed in [start, end)
    gq: int = 0
    sq: int = 0
    pq_plan: int = 0  # of those, completed inside PBT
    gq_plan: int = 0
    sq_plan: int = 0
    pq_unattributed: int = 0  # completed in unknown PBT: none, the model knows every instant
    pq_outside_plan: int = 0  # completed outside PBT (overtime): reported, not in E or Q
    ideal_s: float = 0.0  # PRU x PQ in PBT, over the assets whose PRU is known
    apt_pru_s: float = 0.0  # APT of the assets whose PRU is known
    energy_kwh: float = 0.0  # meter increase over [start, end)
    # standard-time weighting (parts of different products add up as PRU x parts):
    metered_kwh: float = 0.0  # energy of the assets the config gives an energy meter
    metered_gq: int = 0  # their good parts, whole window
    std_gq_s: float = 0.0  # PRU x GQ in PBT, of the assets with a PRU
    std_busy_s: float = 0.0  # APT + ASUT + ADET of those assets
    energy_std_kwh: float = 0.0  # energy of the assets with a meter and a PRU
    energy_std_gq_s: float = 0.0  # their PRU x GQ, whole window
    units: int = 1
    pq_known: int = 1  # units whose output is known: every one here
    gq_known: int = 1  # units whose good output is known: every one here
    units_without_pru: int = 0  # assets without PRU: left out of effectiveness
    std_units: int = 0  # assets with a PRU (in std_gq_s and std_busy_s)
    shared_pru_s: float | None = None  # the PRU all the units share, else None (not summed)

    def __add__(self, other: Elements) -> Elements:
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name)
                  for f in fields(self) if f.name not in ("window_s", "shared_pru_s")}
        shared = self.shared_pru_s if self.shared_pru_s == other.shared_pru_s else None
        return Elements(window_s=max(self.window_s, other.window_s), shared_pru_s=shared, **summed)

    def ratios(self) -> dict[str, float | None]:
        """The KPIs, named and ordered as ``kpi.oee.Kpis``."""
        availability = _r(self.apt_s, self.known_s)
        # may exceed 1: not clipped; over the assets with a PRU only, None when none has one
        effectiveness = (
            _r(self.ideal_s, self.apt_pru_s) if self.units_without_pru < self.units else None
        )
        quality = _r(self.gq_plan, self.pq_plan)
        e_q = None if effectiveness is None or quality is None else effectiveness * quality
        aupt = self.apt_s + self.asut_s
        nee_t = _r(aupt, self.known_s)
        busy = aupt + self.adet_s
        # raw parts add up for one product only: a roll-up needs one PRU shared by its units
        one_product = self.units == 1 or self.shared_pru_s is not None
        return {
            "availability": availability,
            "effectiveness": effectiveness,
            "quality_ratio": quality,
            "oee": None if availability is None or e_q is None else availability * e_q,
            "nee": None if nee_t is None or e_q is None else nee_t * e_q,
            "technical_efficiency": _r(self.apt_s, self.apt_s + self.adet_s),
            "setup_rate": _r(self.asut_s, aupt),
            "scrap_ratio": _r(self.sq_plan, self.pq_plan),
            "throughput_per_h": _r(self.pq_plan, busy / 3600.0) if one_product else None,
            "automation_rate": _r(self.apt_auto_s, self.apt_mode_known_s),
            "automation_coverage": _r(self.apt_mode_known_s, self.apt_s),
            "energy_per_unit_kwh": _r(self.metered_kwh, self.metered_gq) if one_product else None,
            "coverage": _r(self.known_s, self.pbt_s),
            "standard_output_rate": _r(self.std_gq_s, self.std_busy_s),
            "energy_per_standard_hour_kwh": _r(self.energy_std_kwh, self.energy_std_gq_s / 3600.0),
        }

    def elements(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def as_dict(self) -> dict[str, Any]:
        """KPIs and ``elements``, shaped as one entry of the KPI service's output."""
        return {**self.ratios(), "elements": self.elements()}


def asset_elements(
    plant: Plant, asset: str, start_ns: int, end_ns: int, settings: Settings | None = None
) -> Elements:
    """Exact elements of one asset over [start_ns, end_ns); its PRU from ``settings`` (the
    configuration being assessed), else from the plant's own."""
    tl = plant.timeline(asset, start_ns, end_ns)
    plan = plant.clock.planned(start_ns, end_ns)
    pbt = float(np.sum(plan[1] - plan[0])) / NS
    seg, end = tl.seg_ns, tl.seg_end
    inside = overlap_seconds(plan, seg, end)  # seconds of each segment inside PBT
    outside = (end - seg) / NS - inside
    state, mode = tl.state, tl.mode
    oos = state == MachineState.OutOfService
    na = state == MachineState.NotAvailable
    up = (state == MachineState.Executing) | (state == MachineState.NotExecuting)
    running = (state == MachineState.Executing) & (mode == OperationMode.Processing)
    minor = (state == MachineState.NotExecuting) & (mode == OperationMode.Processing)
    setup = up & (mode == OperationMode.Setup)
    maintenance = up & (mode == OperationMode.Maintenance)
    other = up & (mode == OperationMode.NoMode)
    known = oos | na | running | minor | setup | maintenance | other

    def s(mask: np.ndarray) -> float:
        return float(np.sum(inside[mask]))

    config = settings or plant.settings
    pru = config.asset(asset).ideal_cycle_time_s
    # the plant's meters are what the configuration collects: an asset without an energy
    # tag (on an enabled device) has no meter to read
    metered = any(t.asset == asset and t.role == Role.ENERGY_KWH
                  for d, t in config.all_tags() if d.enabled)
    pq = int(tl.part_ns.size)  # the timeline holds exactly the parts of [start, end)
    gq = int(np.count_nonzero(tl.part_good))
    # a part is in the plan when its completion instant lies in a planned interval
    k = np.searchsorted(plan[0], tl.part_ns, side="right") - 1
    in_plan = (k >= 0) & (tl.part_ns < plan[1][np.maximum(k, 0)]) if plan[0].size else (
        np.zeros(tl.part_ns.size, bool))
    pq_plan = int(np.count_nonzero(in_plan))
    gq_plan = int(np.count_nonzero(tl.part_good & in_plan))
    apt = s(running)
    busy = apt + s(setup) + s(oos | minor)
    energy = float(np.sum(tl.power_kw * ((end - seg) / _NS_PER_H)))
    return Elements(
        window_s=(end_ns - start_ns) / NS,
        pbt_s=pbt,
        known_s=s(known),
        apt_s=apt,
        asut_s=s(setup),
        adet_s=s(oos | minor),
        idle_s=s(minor),
        maintenance_s=s(maintenance),
        not_available_s=s(na),
        other_s=s(other),
        apt_auto_s=s(running & (tl.channel == ChannelMode.Automatic)),
        apt_mode_known_s=apt,
        apt_outside_plan_s=float(np.sum(outside[running])),
        pq=pq,
        gq=gq,
        sq=pq - gq,
        pq_plan=pq_plan,
        gq_plan=gq_plan,
        sq_plan=pq_plan - gq_plan,
        pq_unattributed=0,
        pq_outside_plan=pq - pq_plan,
        ideal_s=0.0 if pru is None else pru * pq_plan,
        apt_pru_s=0.0 if pru is None else apt,
        energy_kwh=energy,
        metered_kwh=energy if metered else 0.0,
        metered_gq=gq if metered else 0,
        std_gq_s=0.0 if pru is None else pru * gq_plan,
        std_busy_s=0.0 if pru is None else busy,
        energy_std_kwh=energy if metered and pru is not None else 0.0,
        energy_std_gq_s=pru * gq if metered and pru is not None else 0.0,
        units=1,
        pq_known=1,
        gq_known=1,
        units_without_pru=int(pru is None),
        std_units=int(pru is not None),
        shared_pru_s=pru,
    )


def _sum(items: Iterable[Elements]) -> Elements:
    total: Elements | None = None
    for e in items:
        total = e if total is None else total + e
    return total if total is not None else Elements(units=0)


def _instant_ns(x: datetime | str | int, now: datetime, tz: ZoneInfo) -> int:
    """``x`` in ns; a string without an offset is the plant's local time (as the API reads it)."""
    if isinstance(x, int):
        return x
    return datetime_ns(parse_instant(x, now, tz))


def truth(
    settings: Settings,
    start: datetime | str | int,
    end: datetime | str | int,
    now: datetime | None = None,
    *,
    plant: Plant | None = None,
) -> dict[str, Any]:
    """Ground truth of [start, end) per asset, per line and in total, as JSON-ready data in
    the KPI service's shape (see the module's docstring).

    ``start``/``end`` are datetimes, ns since the epoch, or strings like ``now-7d``. Pass the
    ``plant`` whose history was stored (or the same ``now``) so that the regime boundary is
    the same.
    """
    if plant is None:
        plant = Plant(settings, now=now)
    ref = plant.now
    tz = ZoneInfo(settings.calendar.timezone)
    s_ns, e_ns = _instant_ns(start, ref, tz), _instant_ns(end, ref, tz)
    if e_ns <= s_ns:
        raise ValueError("truth window end must be after its start")
    per_asset = {a.path: asset_elements(plant, a.path, s_ns, e_ns, settings) for a in settings.assets}
    lines: dict[str, list[Elements]] = {}
    for a in settings.assets:
        lines.setdefault(a.line, []).append(per_asset[a.path])

    return {
        "window": {"from": iso(s_ns), "to": iso(e_ns)},
        "assets": {path: e.as_dict() for path, e in per_asset.items()},
        "lines": {line: _sum(items).as_dict() for line, items in sorted(lines.items())},
        "total": _sum(per_asset.values()).as_dict(),
    }


def write_truth(
    settings: Settings,
    out_path: str | Path,
    now: datetime | None = None,
    *,
    window: Literal["current", "baseline"] = "current",
    plant: Plant | None = None,
) -> dict[str, Any]:
    """Write the truth of the config's ``kpi.current`` (or ``kpi.baseline``) window as JSON."""
    if plant is None:
        plant = Plant(settings, now=now)
    w = settings.kpi.current if window == "current" else settings.kpi.baseline
    if w is None:
        raise ValueError(f"the configuration has no kpi.{window} window")
    start, end = w.resolve(plant.now, ZoneInfo(settings.calendar.timezone))
    data = truth(settings, start, end, plant=plant)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def stop_truth(plant: Plant, asset: str, start_ns: int, end_ns: int,
               settings: Settings | None = None) -> dict[str, Any]:
    """The exact stops of one asset over [start_ns, end_ns), restated from the timeline with
    no code from ``kpi/`` (docs/kpis.md, "Losses and reasons"): seconds of stop time inside
    PBT per reason id (``unassigned`` where the PLC shows no code) and per loss type, and the
    stop events, each a maximal stretch of stop time in PBT with one element and one reason.

    A stop is any PBT time not in Executing + Processing (every instant of the model is
    known). Its element: OutOfService is a malfunction, else Processing a minor stop, Setup a
    setup, Maintenance maintenance, NotAvailable not available, no mode other. Its loss type:
    its reason's category's, or unassigned, breakdown (setup: changeover_setup, maintenance:
    planned_downtime); shorter than ``reasons.small_stop_s`` a small stop, unless planned
    downtime or a changeover."""
    config = settings or plant.settings
    tree = config.reasons.tree()
    id_of = {code: rid for rid, code in NATIVE_CODES["stop_reason"].items()}
    tl = plant.timeline(asset, start_ns, end_ns)
    ps, pe = plant.clock.planned(start_ns, end_ns)
    # pieces: the segments cut at the plan's edges, each wholly in or out of PBT
    cuts = np.unique(np.concatenate((tl.seg_ns, ps, pe, np.array([start_ns, end_ns], np.int64))))
    cuts = cuts[(cuts >= start_ns) & (cuts <= end_ns)]
    a, b = cuts[:-1], cuts[1:]
    k = np.searchsorted(ps, a, side="right") - 1
    in_plan = (k >= 0) & (a < pe[np.maximum(k, 0)]) if ps.size else np.zeros(a.size, bool)
    i = tl.index_at(a)
    state, mode, code = tl.state[i], tl.mode[i], tl.reason[i]
    oos = state == MachineState.OutOfService
    element = np.where(
        oos, 1, np.where(state == MachineState.NotAvailable, 5, np.select(
            [mode == OperationMode.Processing, mode == OperationMode.Setup,
             mode == OperationMode.Maintenance], [2, 3, 4], 6)))
    running = (state == MachineState.Executing) & (mode == OperationMode.Processing) & ~oos
    stop = in_plan & ~running
    events: list[dict[str, Any]] = []
    for j in np.flatnonzero(stop).tolist():
        rid = id_of.get(int(code[j]), "unassigned")
        last = events[-1] if events else None
        if (last is not None and last["end_ns"] == int(a[j]) and last["reason"] == rid
                and last["element"] == int(element[j])):
            last["end_ns"] = int(b[j])
        else:
            events.append({"start_ns": int(a[j]), "end_ns": int(b[j]), "reason": rid,
                           "element": int(element[j])})
    by_element = {1: "breakdown", 2: "breakdown", 3: "changeover_setup", 4: "planned_downtime",
                  5: "breakdown", 6: "breakdown"}
    reasons: dict[str, float] = {}
    loss_types: dict[str, float] = {}
    for ev in events:
        sec = (ev["end_ns"] - ev["start_ns"]) / NS
        rid = ev["reason"]
        lt = by_element[ev["element"]] if rid == "unassigned" else tree.loss_type(rid)
        if sec < config.reasons.small_stop_s and lt not in ("planned_downtime", "changeover_setup"):
            lt = "small_stop"
        ev["loss_type"] = lt
        reasons[rid] = reasons.get(rid, 0.0) + sec
        loss_types[lt] = loss_types.get(lt, 0.0) + sec
    return {"reasons": reasons, "loss_types": loss_types, "events": events}
