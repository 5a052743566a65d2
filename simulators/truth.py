"""Exact ground-truth KPIs of a simulated plant, straight from the machine model.

Independent of ``kpi/`` (planned busy time comes from :mod:`simulators.calendar`, which shares
no code with ``kpi/calendar.py``): these numbers come from the timeline and the parts
themselves, not from stored samples, so comparing them with what the gateway computes from
collected data tests the whole chain.

Time elements count inside planned busy time (PBT) of the window; quantities and energy
count over the whole window, and the parts completed inside PBT (``pq_plan``, ``gq_plan``)
are the basis of effectiveness and quality; those completed outside it are
``pq_outside_plan``. The simulator knows every instant, so no time is unknown here.
Roll-ups (lines, plant) sum elements, then divide. Ratios are fractions, None where the
denominator is zero. An asset without PRU has no effectiveness (nor OEE); roll-ups leave it
out of their effectiveness and count it in ``units_without_pru``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from config.settings import Settings
from config.signals import ChannelMode, MachineState, OperationMode
from config.times import parse_instant

from .calendar import overlap_seconds
from .model import NS, datetime_ns
from .plant import Plant

__all__ = ["Elements", "asset_elements", "truth", "write_truth"]

_NS_PER_H = 3600 * NS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Elements:
    """Additive ISO 22400 inputs of one asset, or of a sum of assets, over one window."""

    pbt_s: float = 0.0  # window ∩ planned busy time
    apt_s: float = 0.0  # Executing & Processing ∩ PBT
    asut_s: float = 0.0  # (Executing | NotExecuting) & Setup ∩ PBT
    adet_s: float = 0.0  # (OutOfService | NotExecuting & Processing) ∩ PBT: failures + minor stops
    minor_stop_s: float = 0.0  # NotExecuting & Processing ∩ PBT (the minor-stop part of ADET)
    apt_auto_s: float = 0.0  # APT in channel mode Automatic
    pq: int = 0  # parts completed in [start, end)
    gq: int = 0
    sq: int = 0
    pq_plan: int = 0  # of those, completed inside PBT
    gq_plan: int = 0
    pq_outside_plan: int = 0  # completed outside PBT (overtime): reported, not in E or Q
    energy_kwh: float = 0.0  # meter increase over [start, end)
    pru_pq_s: float = 0.0  # sum of PRU x PQ over the assets whose PRU is known
    apt_pru_s: float = 0.0  # APT of the assets whose PRU is known
    units: int = 1
    units_without_pru: int = 0  # assets without PRU: left out of effectiveness

    def __add__(self, other: Elements) -> Elements:
        return Elements(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                           for f in fields(self)})

    def ratios(self) -> dict[str, float | None]:
        def r(num: float | None, den: float) -> float | None:
            return None if num is None or den <= 0 else num / den

        availability = r(self.apt_s, self.pbt_s)
        # may exceed 1: not clipped; over the assets with a PRU only, None when none has one
        effectiveness = (
            r(self.pru_pq_s, self.apt_pru_s) if self.units_without_pru < self.units else None
        )
        quality = r(self.gq_plan, self.pq_plan)
        oee = (
            availability * effectiveness * quality
            if availability is not None and effectiveness is not None and quality is not None
            else None
        )
        return {
            "availability": availability,
            "effectiveness": effectiveness,
            "quality_ratio": quality,
            "oee": oee,
            "automation_rate": r(self.apt_auto_s, self.apt_s),
            "scrap_ratio": r(self.pq_plan - self.gq_plan, self.pq_plan),
            "energy_per_unit": r(self.energy_kwh, self.gq),
        }

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(self.ratios())
        return out


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
    state, mode = tl.state, tl.mode
    executing = state == MachineState.Executing
    not_executing = state == MachineState.NotExecuting
    apt_mask = executing & (mode == OperationMode.Processing)
    setup_mask = (executing | not_executing) & (mode == OperationMode.Setup)
    minor_mask = not_executing & (mode == OperationMode.Processing)
    pru = (settings or plant.settings).asset(asset).ideal_cycle_time_s
    pq = int(tl.part_ns.size)  # the timeline holds exactly the parts of [start, end)
    gq = int(np.count_nonzero(tl.part_good))
    # a part is in the plan when its completion instant lies in a planned interval
    k = np.searchsorted(plan[0], tl.part_ns, side="right") - 1
    in_plan = (k >= 0) & (tl.part_ns < plan[1][np.maximum(k, 0)]) if plan[0].size else (
        np.zeros(tl.part_ns.size, bool))
    pq_plan = int(np.count_nonzero(in_plan))
    apt = float(np.sum(inside[apt_mask]))
    return Elements(
        pbt_s=pbt,
        apt_s=apt,
        asut_s=float(np.sum(inside[setup_mask])),
        # ISO 22400-2: unit delays are malfunctions and minor stops alike
        adet_s=float(np.sum(inside[(state == MachineState.OutOfService) | minor_mask])),
        minor_stop_s=float(np.sum(inside[minor_mask])),
        apt_auto_s=float(np.sum(inside[apt_mask & (tl.channel == ChannelMode.Automatic)])),
        pq=pq,
        gq=gq,
        sq=pq - gq,
        pq_plan=pq_plan,
        gq_plan=int(np.count_nonzero(tl.part_good & in_plan)),
        pq_outside_plan=pq - pq_plan,
        energy_kwh=float(np.sum(tl.power_kw * ((end - seg) / _NS_PER_H))),
        pru_pq_s=0.0 if pru is None else pru * pq_plan,
        apt_pru_s=0.0 if pru is None else apt,
        units=1,
        units_without_pru=int(pru is None),
    )


def _sum(items: Iterable[Elements]) -> Elements:
    total: Elements | None = None
    for e in items:
        total = e if total is None else total + e
    return total if total is not None else Elements(units=0)


def _instant_ns(x: datetime | str | int, now: datetime) -> int:
    if isinstance(x, int):
        return x
    return datetime_ns(parse_instant(x, now))


def truth(
    settings: Settings,
    start: datetime | str | int,
    end: datetime | str | int,
    now: datetime | None = None,
    *,
    plant: Plant | None = None,
) -> dict[str, Any]:
    """Ground truth of [start, end) per asset, per line and for the plant, as JSON-ready data.

    ``start``/``end`` are datetimes, ns since the epoch, or strings like ``now-7d``. Pass the
    ``plant`` whose history was stored (or the same ``now``) so that the regime boundary is
    the same.
    """
    if plant is None:
        plant = Plant(settings, now=now)
    ref = plant.now
    s_ns, e_ns = _instant_ns(start, ref), _instant_ns(end, ref)
    if e_ns <= s_ns:
        raise ValueError("truth window end must be after its start")
    per_asset = {a.path: asset_elements(plant, a.path, s_ns, e_ns, settings) for a in settings.assets}
    lines: dict[str, list[Elements]] = {}
    for a in settings.assets:
        lines.setdefault(a.line, []).append(per_asset[a.path])

    def iso(ns: int) -> str:
        return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat()

    return {
        "window": {"start": iso(s_ns), "end": iso(e_ns)},
        "assets": {path: e.as_dict() for path, e in per_asset.items()},
        "lines": {line: _sum(items).as_dict() for line, items in lines.items()},
        "plant": _sum(per_asset.values()).as_dict(),
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
    start, end = w.resolve(plant.now)
    data = truth(settings, start, end, plant=plant)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data
