"""A plant of simulated machines: history backfill as Batches and live values for servers.

Counters (total, good, reject) and the energy meter are cumulative and reset to 0 every
``counter_reset_every_h`` hours, at an instant that differs per machine. Between two resets is
a *period*; every value a counter or the meter shows is computed inside its period from that
period's timeline alone, so a value never depends on the window that asked for it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from config.base import TagBase
from config.modbus import ModbusTag
from config.settings import Settings, SimulationSettings
from config.signals import CANONICAL, ENUM_ROLES, MachineState, OperationMode, Role
from config.times import parse_instant
from store.batch import Batch

from .model import (
    NATIVE_CODES,
    NS,
    DayClock,
    MachineModel,
    Timeline,
    datetime_ns,
)

__all__ = ["HISTORY_ROLES", "MachineValues", "Plant", "stored_values"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_NS_PER_H = 3600 * NS
_GRID_NS = 60 * NS  # the energy meter is sampled at least this often
_EXEC = int(MachineState.Executing)
_NOT_EXEC = int(MachineState.NotExecuting)
_PROC = int(OperationMode.Processing)
_SETUP = int(OperationMode.Setup)
_NO_MODE = int(OperationMode.NoMode)

#: roles whose history :meth:`Plant.history_batches` writes
HISTORY_ROLES = (
    Role.STATE, Role.MODE, Role.CHANNEL_MODE,
    Role.GOOD_COUNT, Role.REJECT_COUNT, Role.TOTAL_COUNT, Role.ENERGY_KWH, Role.STOP_REASON,
)
_COUNT_KIND = {Role.TOTAL_COUNT: "total", Role.GOOD_COUNT: "good", Role.REJECT_COUNT: "reject"}

_INT_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


@dataclass(frozen=True, slots=True)
class MachineValues:
    """What one machine shows at one instant (canonical codes, engineering units)."""

    asset: str
    name: str
    t_ns: int
    state: int  # MachineState
    mode: int  # OperationMode
    channel_mode: int  # ChannelMode
    total: int
    good: int
    reject: int
    energy_kwh: float  # meter since its last reset
    power_kw: float
    run_seconds: float  # Executing + Processing seconds since the last counter reset
    last_state_change_ns: int  # when ``state`` last changed (at most back to the last reset)
    in_shift: bool  # inside planned busy time
    speed_rpm: float
    temperature_c: float
    cycle_time_s: float  # mean actual cycle time in the current regime
    stop_reason: int = 0  # the PLC's stop reason code (NATIVE_CODES["stop_reason"]; 0: none)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Period:
    """One machine between two counter resets, with what evaluating its signals needs."""

    def __init__(self, r0: int, r1: int, tl: Timeline) -> None:
        self.r0, self.r1, self.tl = r0, r1, tl
        dur = tl.seg_end - tl.seg_ns
        self.e_cum = np.concatenate(([0.0], np.cumsum(tl.power_kw * (dur / _NS_PER_H))))
        self.run_cum = np.concatenate(([0.0], np.cumsum(np.where(tl.running, dur, 0) / NS)))
        self.parts: dict[str, I64] = {
            "total": tl.part_ns,
            "good": tl.part_ns[tl.part_good],
            "reject": tl.part_ns[~tl.part_good],
        }
        n = tl.state.size
        starts = np.ones(n, bool)
        starts[1:] = tl.state[1:] != tl.state[:-1]
        self.state_since = np.maximum.accumulate(np.where(starts, np.arange(n), 0))

    def energy(self, t: I64) -> F64:
        i = self.tl.index_at(t)
        return self.e_cum[i] + self.tl.power_kw[i] * ((t - self.tl.seg_ns[i]) / _NS_PER_H)

    def run_seconds(self, t: I64) -> F64:
        i = self.tl.index_at(t)
        running = self.tl.running[i]
        return self.run_cum[i] + np.where(running, (t - self.tl.seg_ns[i]) / NS, 0.0)

    def count(self, kind: str, t: I64) -> F64:
        # parts never sit on a reset or window edge, so "<= t" vs "< t" only matters at a
        # part's own sample, which must include the part
        return np.searchsorted(self.parts[kind], t, side="right").astype(np.float64)

    def value(self, role: Role, t: I64) -> F64:
        if role in ENUM_ROLES:
            codes = {Role.STATE: self.tl.state, Role.MODE: self.tl.mode,
                     Role.CHANNEL_MODE: self.tl.channel}[role]
            return codes[self.tl.index_at(t)].astype(np.float64)
        if role is Role.STOP_REASON:
            return self.tl.reason[self.tl.index_at(t)].astype(np.float64)
        if role is Role.ENERGY_KWH:
            return self.energy(t)
        return self.count(_COUNT_KIND[role], t)

    def candidates(self, role: Role, lo: int, hi: int) -> I64:
        """Instants in [lo, hi) at which ``role`` may change (a superset; equal values are
        dropped later)."""
        tl = self.tl
        seg = tl.seg_ns[(tl.seg_ns >= lo) & (tl.seg_ns < hi)]
        if role in ENUM_ROLES or role is Role.STOP_REASON:
            return seg
        extra = [np.array([self.r0], np.int64)] if lo == self.r0 else []
        if role is Role.ENERGY_KWH:
            g0 = -(-lo // _GRID_NS) * _GRID_NS
            grid = np.arange(g0, hi, _GRID_NS, dtype=np.int64)
            # a sample just before the reset, so that no energy goes unseen by a reader
            # that counts from zero after the drop
            if lo <= self.r1 - 1 < hi:
                extra.append(np.array([self.r1 - 1], np.int64))
            return np.unique(np.concatenate([seg, grid, *extra]))
        parts = self.parts[_COUNT_KIND[role]]
        p0, p1 = np.searchsorted(parts, [lo, hi], side="left")
        return np.concatenate([*extra, parts[p0:p1]])


def stored_values(tag: TagBase, values: F64) -> F64:
    """What a collector stores for ``tag`` when the machine shows canonical ``values``.

    A stop reason is the PLC's native code (``NATIVE_CODES["stop_reason"]``), whatever the
    tag's enum says: the device sends it so, and a code the enum does not map is unassigned.
    Enumerations become the tag's raw integer (the one the simulated firmware writes, when
    the tag's ``enum`` maps it; else the smallest raw value mapped to that name). Numbers are
    encoded as the device would hold them (``(value - offset) / scale``, rounded and wrapped
    for integer types, rounded to float32 for float32). Either is then stored as the collector
    stores every tag: ``raw * scale + offset``.
    """
    if tag.role is Role.STOP_REASON:
        return values * tag.scale + tag.offset
    if tag.role in ENUM_ROLES:
        raw = _enum_lut(tag)[values.astype(np.int64)]
        if np.isnan(raw).any():
            bad = sorted({int(c) for c in values[np.isnan(raw)]})
            names = [CANONICAL[tag.role](c).name for c in bad]
            raise ValueError(f"tag {tag.path}: its enum maps no raw value to {names}")
        return raw * tag.scale + tag.offset
    raw = (values - tag.offset) / tag.scale
    kind = tag.type if isinstance(tag, ModbusTag) else "float64"
    if kind in _INT_BITS:
        r = np.round(raw)
        bits = _INT_BITS[kind]
        if bits < 64:  # the device's register wraps like this
            span = float(2**bits)
            r = np.mod(r + span / 2, span) - span / 2 if kind.startswith("int") else np.mod(r, span)
        raw = r
    elif kind == "float32":
        raw = raw.astype(np.float32).astype(np.float64)
    elif kind in ("bit", "bool"):
        raw = (raw != 0).astype(np.float64)
    elif kind == "string":
        raise ValueError(f"tag {tag.path}: a {tag.role.value} tag cannot be a string")
    return raw * tag.scale + tag.offset


def _enum_lut(tag: TagBase) -> F64:
    enum_cls = CANONICAL[tag.role]
    lut = np.full(len(enum_cls), np.nan)
    native = NATIVE_CODES[tag.role.value]
    for member in enum_cls:
        name = "None" if member.name == "NoMode" else member.name
        raws = sorted(raw for raw, n in (tag.enum or {}).items() if n == name)
        if raws:
            lut[int(member)] = native[name] if native.get(name) in raws else raws[0]
    return lut


class Plant:
    """Every asset of a configuration as a simulated machine.

    ``now`` (default: the current time) resolves relative times of the simulation section,
    such as ``improvement_at: now-7d``; it is fixed for the plant's lifetime, so a live plant
    keeps one regime boundary while time moves on.
    """

    def __init__(self, settings: Settings, now: datetime | None = None) -> None:
        self.settings = settings
        self.simulation: SimulationSettings = settings.simulation or SimulationSettings()
        now = now or datetime.now(UTC)
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.now_ns = datetime_ns(self.now)
        # a time without an offset is the plant's local time, as in kpi windows
        self.improvement_at = parse_instant(self.simulation.improvement_at, self.now,
                                            ZoneInfo(settings.calendar.timezone))
        self.clock = DayClock(settings.calendar)
        imp = datetime_ns(self.improvement_at)
        self.models: dict[str, MachineModel] = {
            a.path: MachineModel(a, self.clock, self.simulation, imp) for a in settings.assets
        }
        self.reset_period_ns = max(1, round(self.simulation.counter_reset_every_h * 3600)) * NS
        self._phase: dict[str, int] = {
            path: int(m.profile.reset_phase_s * (self.reset_period_ns // NS)) * NS
            for path, m in self.models.items()
        }
        self._periods: OrderedDict[tuple[str, int], _Period] = OrderedDict()

    # ----------------------------------------------------------------- time structure

    def model(self, asset: str) -> MachineModel:
        return self.models[asset]

    def timeline(self, asset: str, start_ns: int, end_ns: int) -> Timeline:
        return self.models[asset].timeline(start_ns, end_ns)

    def history_window(self) -> tuple[int, int]:
        """[now - history_days, now) in ns."""
        days = self.simulation.history_days
        return self.now_ns - round(days * 86400) * NS, self.now_ns

    def reset_instants(self, asset: str, start_ns: int, end_ns: int) -> I64:
        """Counter resets of ``asset`` in [start_ns, end_ns)."""
        phase, period = self._phase[asset], self.reset_period_ns
        k0 = -(-(start_ns - phase) // period)
        k1 = -(-(end_ns - phase) // period)
        return phase + np.arange(k0, k1, dtype=np.int64) * period

    def _period_index(self, asset: str, t_ns: int) -> int:
        return (t_ns - self._phase[asset]) // self.reset_period_ns

    def _period(self, asset: str, k: int) -> _Period:
        key = (asset, k)
        hit = self._periods.get(key)
        if hit is not None:
            self._periods.move_to_end(key)
            return hit
        r0 = self._phase[asset] + k * self.reset_period_ns
        r1 = r0 + self.reset_period_ns
        p = _Period(r0, r1, self.models[asset].timeline(r0, r1))
        self._periods[key] = p
        if len(self._periods) > 8 * max(1, len(self.models)):
            self._periods.popitem(last=False)
        return p

    def signal(self, asset: str, role: Role, t_ns: npt.ArrayLike) -> F64:
        """Canonical value of one signal at each time (codes, counts, kWh)."""
        t = np.atleast_1d(np.asarray(t_ns, np.int64))
        out = np.empty(t.size, np.float64)
        ks = (t - self._phase[asset]) // self.reset_period_ns
        for k in np.unique(ks).tolist():
            sel = ks == k
            out[sel] = self._period(asset, int(k)).value(role, t[sel])
        return out

    # ----------------------------------------------------------------- history

    def history_tags(self, tag_ids: Mapping[str, int]) -> list[tuple[int, TagBase]]:
        """(tag id, tag) of every tag history is written for: an enabled device's tag of a
        history role whose path ``tag_ids`` names (other tags are skipped)."""
        out: list[tuple[int, TagBase]] = []
        for d in self.settings.devices:
            if not d.enabled:
                continue
            for t in d.tags:
                if t.role in HISTORY_ROLES and t.path in tag_ids and t.asset in self.models:
                    out.append((int(tag_ids[t.path]), t))
        return out

    def history_batches(
        self,
        tag_ids: Mapping[str, int],
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        max_points: int = 200_000,
        slice_ns: int = 86400 * NS,
    ) -> Iterator[Batch]:
        """The samples a collector would have stored over [start_ns, end_ns).

        Report by exception: every tag gets its value at ``start_ns``, then a sample only when
        its stored value changes (counters at each part and reset, state and modes at each
        change; the energy meter at each change of power and at least every 60 s, so linear
        interpolation between samples is exact). Values are stored as the tag encodes them
        (see :func:`stored_values`). Batches are in time order, at most ``max_points`` long;
        the defaults of start and end are :meth:`history_window`.
        """
        w0, w1 = self.history_window()
        start = w0 if start_ns is None else int(start_ns)
        end = w1 if end_ns is None else int(end_ns)
        if end <= start:
            return
        tags = self.history_tags(tag_ids)
        if not tags:
            return
        a = start
        while a < end:
            b = min(a + slice_ns, end)
            ids: list[npt.NDArray[np.int32]] = []
            tss: list[I64] = []
            vals: list[F64] = []
            for tid, tag in tags:
                ts, v = self._tag_samples(tag, a, b, initial=a == start)
                ids.append(np.full(ts.size, tid, np.int32))
                tss.append(ts)
                vals.append(v)
            tid_all = np.concatenate(ids)
            ts_all = np.concatenate(tss)
            v_all = np.concatenate(vals)
            order = np.lexsort((tid_all, ts_all))
            for i in range(0, order.size, max_points):
                sel = order[i:i + max_points]
                yield Batch(tid_all[sel], ts_all[sel], v_all[sel], np.zeros(sel.size, np.uint8))
            a = b

    def _tag_samples(self, tag: TagBase, a: int, b: int, initial: bool) -> tuple[I64, F64]:
        asset, role = tag.asset, tag.role
        ts_parts: list[I64] = []
        for k in range(self._period_index(asset, a), self._period_index(asset, b - 1) + 1):
            p = self._period(asset, k)
            lo, hi = max(a, p.r0), min(b, p.r1)
            ts_parts.append(p.candidates(role, lo, hi))
        if initial:  # the value at the window start, then changes
            ts = np.unique(np.concatenate([np.array([a], np.int64), *ts_parts]))
        else:  # probe just before the slice, so that a slice never repeats a value
            ts = np.unique(np.concatenate([np.array([a - 1], np.int64), *ts_parts]))
        values = stored_values(tag, self.signal(asset, role, ts))
        keep = np.empty(ts.size, bool)
        keep[0] = initial
        keep[1:] = values[1:] != values[:-1]
        return ts[keep], values[keep]

    # ----------------------------------------------------------------- live values

    def values_at(self, t_ns: int | None = None) -> dict[str, MachineValues]:
        """What every machine shows at ``t_ns`` (default: the plant's ``now``)."""
        t = self.now_ns if t_ns is None else int(t_ns)
        return {path: self.machine_values(path, t) for path in self.models}

    def machine_values(self, asset: str, t_ns: int) -> MachineValues:
        model = self.models[asset]
        p = self._period(asset, self._period_index(asset, t_ns))
        tt = np.array([t_ns], np.int64)
        i = int(p.tl.index_at(tt)[0])
        state, mode = int(p.tl.state[i]), int(p.tl.mode[i])
        running = state == _EXEC and mode == _PROC
        prof = model.profile
        rpm = 0.0
        if running:  # a slow, deterministic wobble around nominal
            rpm = prof.nominal_rpm * (1 + 0.004 * math.sin(2 * math.pi * (t_ns / NS) / 37.0))
        elif mode == _SETUP:
            rpm = 0.1 * prof.nominal_rpm
        return MachineValues(
            asset=asset,
            name=asset.rsplit("/", 1)[-1],
            t_ns=t_ns,
            state=state,
            mode=mode,
            channel_mode=int(p.tl.channel[i]),
            total=int(p.count("total", tt)[0]),
            good=int(p.count("good", tt)[0]),
            reject=int(p.count("reject", tt)[0]),
            energy_kwh=float(p.energy(tt)[0]),
            power_kw=float(p.tl.power_kw[i]),
            run_seconds=float(p.run_seconds(tt)[0]),
            last_state_change_ns=int(p.tl.seg_ns[p.state_since[i]]),
            in_shift=not (state == _NOT_EXEC and mode == _NO_MODE),
            speed_rpm=float(rpm),
            temperature_c=self._temperature(model, t_ns),
            cycle_time_s=float(model.behaviour_at(t_ns).cycle_s),
            stop_reason=int(p.tl.reason[i]),
        )

    @staticmethod
    def _temperature(model: MachineModel, t_ns: int, tau_s: float = 900.0) -> float:
        """First-order thermal response to what the machine did over the last 4 hours.

        Starting 16 time constants back from ambient makes the start value irrelevant
        (e**-16 of the rise), so no state has to be carried from earlier windows.
        """
        prof = model.profile
        tl = model.timeline(t_ns - int(16 * tau_s) * NS, t_ns + 1)
        load = np.where(tl.running, 1.0, np.where(tl.mode == _SETUP, 0.3, 0.0))
        target = prof.ambient_c + prof.temp_rise_c * load
        dur = np.minimum(tl.seg_end, t_ns) - tl.seg_ns
        after = np.concatenate((np.cumsum(dur[::-1])[::-1][1:], [0])) / NS  # time after each
        w_end = np.exp(-after / tau_s)
        w_start = np.exp(-(after + dur / NS) / tau_s)
        temp = prof.ambient_c * w_start[0] + float(np.sum(target * (w_end - w_start)))
        return float(temp)
