"""Which KPIs each asset's configured signals can yield, and why not: the warnings of
``tierproof check-config`` (and of ``run``/``demo`` at start).

Pure: a :class:`~config.settings.Settings` in, warnings out; nothing is read or connected. A
warning is not an error -- a plant may well run machines that give only some KPIs -- but it
says, per asset, which KPIs will be missing (``null``) and what to configure to get them, so
that a gap in the evidence is found when the file is written, not when an auditor asks.

What an asset's KPIs need (as ``kpi/oee.py`` computes them; ``docs/kpis.md``):

- any tag at all, or it is not networked: it reports nothing and gives no KPI;
- a ``state`` tag: every time element (APT, ASUT, ADET) and so availability,
  effectiveness, OEE, NEE, technical efficiency, setup rate, throughput, automation rate;
- a ``mode`` tag or ``assets[].default_mode``: without either, Executing time is in an
  unknown mode, so the same time elements are unknown (only OutOfService and NotAvailable
  are known whatever the mode); a ``default_mode`` other than Processing never gives APT;
- the produced quantity PQ: a ``total_count`` tag, or ``good_count`` and ``reject_count``;
  without it effectiveness, quality ratio, OEE, NEE, scrap (defect) rate and throughput are
  unknown -- and those of its line and of the plant too, since a roll-up's output ratios
  need every unit's output (its quality ratio every unit's good quantity);
- the good quantity GQ: a ``good_count`` tag, or ``total_count`` and ``reject_count``:
  quality and scrap ratio, and every figure weighted by standard output;
- ``ideal_cycle_time_s`` (PRU): effectiveness, OEE, NEE and the standard output (standard
  output rate, production efficiency, energy per standard hour);
- the channel mode: an asset with ``control: cnc``, ``plc`` or ``dcs`` and no
  ``channel_mode`` tag has processing time of unknown automation (it lowers the automation
  rate's coverage); ``control: manual`` or ``none`` counts as manual without one;
- an ``energy_kwh`` tag: energy per unit and per standard hour.

Tags of a disabled device (``enabled: false``) collect nothing, so they do not count; an
OPC UA browse rule's role counts (its tags are discovered at connect).
"""

from __future__ import annotations

from dataclasses import dataclass

from .opcua import OpcUaDevice
from .settings import Asset, Settings
from .signals import Role

__all__ = ["KpiWarning", "kpi_warnings"]

#: the KPIs that need the machine's time elements (state and mode)
TIME_KPIS = ("availability", "effectiveness", "oee", "nee", "technical_efficiency", "setup_rate",
             "throughput_per_h", "automation_rate")
#: the KPIs that need the produced quantity
PQ_KPIS = ("effectiveness", "quality_ratio", "oee", "nee", "scrap_ratio", "defect_rate",
           "throughput_per_h")
#: the KPIs that need the good quantity
GQ_KPIS = ("quality_ratio", "oee", "nee", "scrap_ratio", "defect_rate", "production_efficiency",
           "standard_output_rate", "energy_per_unit_kwh", "energy_per_standard_hour_kwh")
#: the KPIs that need the ideal cycle time
PRU_KPIS = ("effectiveness", "oee", "nee", "production_efficiency", "standard_output_rate",
            "energy_per_standard_hour_kwh")
#: the KPIs that need an energy meter
ENERGY_KPIS = ("energy_per_unit_kwh", "energy_per_standard_hour_kwh")


#: what a constant default_mode other than Processing makes of Executing time
_AS = {"Setup": "setup (ASUT)", "Maintenance": "maintenance", "None": "other time"}


@dataclass(frozen=True, slots=True)
class KpiWarning:
    """One reason an asset cannot give some KPIs."""

    index: int  # the asset's position in ``assets``
    asset: str  # its path
    kpis: tuple[str, ...]  # the KPIs (and tier figures) it cannot give; () for a note only
    reason: str  # why, and what to configure

    @property
    def field(self) -> str:
        return f"assets[{self.index}]"

    def __str__(self) -> str:
        what = f"no {', '.join(self.kpis)}: " if self.kpis else ""
        return f"{self.field} {self.asset}: {what}{self.reason}"


def _roles(s: Settings) -> tuple[dict[str, set[Role]], dict[str, set[Role]]]:
    """asset -> roles on enabled devices, asset -> roles only on disabled ones."""
    on: dict[str, set[Role]] = {}
    off: dict[str, set[Role]] = {}
    for d in s.devices:
        found = [(t.asset, t.role) for t in d.tags]
        if isinstance(d, OpcUaDevice):
            found += [(b.asset, b.role) for b in d.browse]
        for asset, role in found:
            (on if d.enabled else off).setdefault(asset, set()).add(role)
    for asset, roles in off.items():
        roles -= on.get(asset, set())
    return on, off


def _asset(i: int, a: Asset, have: set[Role], disabled: set[Role]) -> list[KpiWarning]:
    def w(kpis: tuple[str, ...], reason: str) -> KpiWarning:
        return KpiWarning(i, a.path, kpis, reason)

    def lacking(role: Role) -> str:
        return (f"its {role.value} tag is on a disabled device" if role in disabled
                else f"no {role.value} tag")

    if not have:
        why = ("its tags are all on disabled devices" if disabled
               else "no tag of the asset is configured")
        return [w(("any KPI",), f"not networked: {why} (it counts as not reporting)")]
    out: list[KpiWarning] = []
    no_mode = Role.MODE not in have and a.default_mode is None
    mode_hint = ("a machine that has only one mode can declare it, e.g. default_mode: Processing")
    if Role.STATE not in have:
        also = f", {lacking(Role.MODE)} and no default_mode" if no_mode else ""
        out.append(w(TIME_KPIS, f"{lacking(Role.STATE)}{also}: its time elements (APT, ASUT, "
                                "ADET) are unknown"))
    elif no_mode:
        out.append(w(TIME_KPIS, f"{lacking(Role.MODE)} and no default_mode: Executing time is in "
                                f"an unknown mode, so APT, ASUT and minor stops are unknown; "
                                f"{mode_hint}"))
    if Role.MODE not in have and a.default_mode not in (None, "Processing"):
        out.append(w(("availability", "effectiveness", "oee", "nee", "throughput_per_h"),
                     f"default_mode {a.default_mode}: every Executing second counts as "
                     f"{_AS[str(a.default_mode)]}, never as production time (APT)"))
    if Role.MODE in have and a.default_mode is not None:
        out.append(w((), f"default_mode {a.default_mode} is not used: the asset has a mode tag, "
                         "which wins"))
    pq = Role.TOTAL_COUNT in have or {Role.GOOD_COUNT, Role.REJECT_COUNT} <= have
    gq = Role.GOOD_COUNT in have or {Role.TOTAL_COUNT, Role.REJECT_COUNT} <= have
    roll_up = "; its line's and the plant's ratios of output are then undefined too"
    if not pq and not gq:
        out.append(w(tuple(dict.fromkeys(PQ_KPIS + GQ_KPIS)),
                     "no part counter: neither its produced nor its good quantity is measured "
                     f"(needs two of total_count, good_count and reject_count){roll_up}"))
    elif not pq:
        out.append(w(PQ_KPIS, "its produced quantity is not measured (needs a total_count tag, or "
                              f"good_count and reject_count){roll_up}"))
    elif not gq:
        out.append(w(GQ_KPIS, "its good quantity is not measured (needs a good_count tag, or "
                              f"total_count and reject_count){roll_up}"))
    if a.ideal_cycle_time_s is None:
        out.append(w(PRU_KPIS, "no ideal_cycle_time_s (PRU): left out of its line's effectiveness "
                               "and standard output, and its line's throughput and energy per "
                               "unit are not reported (parts of unknown standard time)"))
    # without a state the automation rate is already gone with the time elements
    if Role.STATE in have and Role.CHANNEL_MODE not in have and a.control in ("cnc", "plc", "dcs"):
        out.append(w(("automation_rate",),
                     f"{lacking(Role.CHANNEL_MODE)} on a control: {a.control} asset: its "
                     "processing time is of unknown automation (it lowers automation_coverage); "
                     "control: manual or none would count it as manual"))
    if Role.ENERGY_KWH not in have:
        out.append(w(ENERGY_KPIS, lacking(Role.ENERGY_KWH)))
    return out


def kpi_warnings(s: Settings) -> list[KpiWarning]:
    """Every asset's KPIs that its configured roles cannot yield, and why (see the module)."""
    on, off = _roles(s)
    out: list[KpiWarning] = []
    for i, a in enumerate(s.assets):
        out += _asset(i, a, on.get(a.path, set()), off.get(a.path, set()))
    return out
