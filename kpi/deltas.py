"""Baseline→current deltas of ratio KPIs with 95 % intervals by day-block bootstrap.

A ratio KPI over a window is Σ numerator / Σ denominator over its days (defect rate = Σ scrap /
Σ produced; production efficiency = Σ PRU × GQ / Σ worked hours; automation rate = Σ automatic
APT / Σ mode-known APT; energy per unit = Σ kWh / Σ good units): sums first, then divide, never
an average of daily ratios. The delta is relative (``current / baseline - 1``, as the tier
criteria's ``measure: delta``) or absolute (``current - baseline``).

Why a day-block bootstrap: parts made on one day share that day's material, crew and machine
condition, so they are not independent and two-proportion formulas understate the spread.
Whole days are resampled (a day is one block: the correlation inside it is kept), the baseline
and current windows independently. The resampling is ``scipy.stats.bootstrap`` (multi-sample,
``paired=False``, vectorized; BCa by default), seeded, so the same data and seed give the same
interval. What is resampled are day indices; the statistic sums the resampled days' numerators
and denominators together, so a day's numerator always travels with its denominator.

Days whose denominator is 0 (nothing produced, no hours worked) carry no information about the
ratio: they are left out and counted. A window with fewer usable days than ``min_days`` gets a
point estimate but no interval, and ``enough_days`` False.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_DAYS",
    "DEFAULT_N_RESAMPLES",
    "BootstrapMethod",
    "Delta",
    "DeltaKind",
    "RatioEstimate",
    "WindowRatio",
    "ratio_delta",
    "ratio_estimate",
    "window_ratio",
]

DeltaKind = Literal["relative", "absolute"]
BootstrapMethod = Literal["BCa", "percentile", "basic"]

DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_N_RESAMPLES: Final = 9999
DEFAULT_MIN_DAYS: Final = 7

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class WindowRatio:
    """One window's ratio: Σ numerator / Σ denominator over all its days. A day whose
    denominator is 0 still adds its numerator (a day with no good output still used energy:
    leaving it out would flatter energy per unit); it is counted in ``zero_days`` and does
    not count towards ``n_days``, the days that can carry a ratio."""

    value: float | None  # None when no day has a denominator
    numerator: float
    denominator: float
    n_days: int  # days with a denominator > 0
    zero_days: int  # days whose denominator is 0 (their numerator counts all the same)

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "n_days": self.n_days,
            "zero_days": self.zero_days,
        }


def _days(num: npt.ArrayLike, den: npt.ArrayLike, what: str) -> tuple[F64, F64, int]:
    """The window's days as arrays, and how many have a denominator of 0."""
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    if n.ndim != 1 or n.shape != d.shape:
        raise ValueError(f"{what}: numerators and denominators must be 1-D arrays of equal length, "
                         f"got shapes {n.shape} and {d.shape}")
    if not (np.isfinite(n).all() and np.isfinite(d).all()):
        raise ValueError(f"{what}: numerators and denominators must be finite")
    if (d < 0).any():
        raise ValueError(f"{what}: denominators must be >= 0")
    return n, d, int((d == 0).sum())


def _window(n: F64, d: F64, zero: int) -> WindowRatio:
    sn, sd = float(n.sum()), float(d.sum())
    return WindowRatio(value=sn / sd if sd > 0 else None, numerator=sn, denominator=sd,
                       n_days=len(d) - zero, zero_days=zero)


def window_ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> WindowRatio:
    """Σ num / Σ den over all days of one window (per-day arrays)."""
    return _window(*_days(num, den, "window"))


@dataclass(frozen=True, slots=True)
class _Interval:
    low: float | None
    high: float | None
    reason: str | None


def _constant(n: F64, d: F64) -> bool:
    """Every day has the same ratio, so every resample has it too (zero-width interval); a day
    with no denominator must then add nothing either."""
    has = d > 0
    if (n[~has] != 0).any():
        return False
    r = n[has] / d[has]
    return bool(np.allclose(r, r[0], rtol=1e-12, atol=0.0))


def _bootstrap(
    samples: tuple[npt.NDArray[np.intp], ...],
    statistic: Any,
    *,
    confidence: float,
    method: BootstrapMethod,
    n_resamples: int,
    seed: int,
) -> _Interval:
    # imported here: scipy.stats costs ~0.3 s and tens of MB, and a gateway that never asks
    # for a delta should not pay for it at start
    from scipy.stats import DegenerateDataWarning, bootstrap

    # DegenerateDataWarning: every resample gave the same value (BCa cannot be computed);
    # scipy then returns NaN bounds, reported below as "no interval", not as an error
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap(
            samples,
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=False,
            axis=-1,
            confidence_level=confidence,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return _Interval(None, None, "the bootstrap gave no finite interval "
                                     "(resamples with a zero or undefined ratio)")
    return _Interval(low, high, None)


def _too_few(windows: dict[str, WindowRatio], min_days: int) -> str | None:
    short = [f"{name} has {w.n_days} usable days" for name, w in windows.items() if w.n_days < min_days]
    if not short:
        return None
    return f"too few days for an interval: {', '.join(short)} (at least {min_days} needed)"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """How an interval was resampled, recorded with it so that it can be reproduced."""

    confidence: float
    method: str
    n_resamples: int
    seed: int
    min_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            "method": f"day-block bootstrap ({self.method})",
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "min_days": self.min_days,
        }


@dataclass(frozen=True, slots=True)
class Delta:
    """A baseline→current delta of a ratio KPI with its bootstrap interval.

    ``point`` is the delta of the two windows' ratios (None when undefined: a window without a
    denominator, or a relative delta from a baseline of 0). ``low``/``high`` bound the two-sided
    ``confidence`` interval (None when there is none; ``reason`` says why). ``enough_days`` is
    False when a window has fewer than ``min_days`` usable days: then the data are insufficient
    for a verdict with confidence.
    """

    kind: DeltaKind
    point: float | None
    low: float | None
    high: float | None
    bootstrap: Bootstrap
    baseline: WindowRatio
    current: WindowRatio
    reason: str | None

    @property
    def n_days(self) -> tuple[int, int]:
        """Usable days (baseline, current)."""
        return (self.baseline.n_days, self.current.n_days)

    @property
    def zero_days(self) -> tuple[int, int]:
        """Days left out for a zero denominator (baseline, current)."""
        return (self.baseline.zero_days, self.current.zero_days)

    @property
    def enough_days(self) -> bool:
        return min(self.n_days) >= self.bootstrap.min_days

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "point": self.point,
            "low": self.low,
            "high": self.high,
            **self.bootstrap.as_dict(),
            "n_days": {"baseline": self.baseline.n_days, "current": self.current.n_days},
            "zero_days": {"baseline": self.baseline.zero_days, "current": self.current.zero_days},
            "baseline": self.baseline.as_dict(),
            "current": self.current.as_dict(),
            "reason": self.reason,
        }


def _delta(b: float, c: float, kind: DeltaKind) -> float | None:
    if kind == "absolute":
        return c - b
    return c / b - 1.0 if b != 0 else None


def ratio_delta(
    baseline_num: npt.ArrayLike,
    baseline_den: npt.ArrayLike,
    current_num: npt.ArrayLike,
    current_den: npt.ArrayLike,
    *,
    kind: DeltaKind = "relative",
    confidence: float = DEFAULT_CONFIDENCE,
    method: BootstrapMethod = "BCa",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    min_days: int = DEFAULT_MIN_DAYS,
) -> Delta:
    """The delta from the baseline window's ratio to the current window's, with its interval.

    Arguments are per-day numerators and denominators of each window (one element per day).
    The interval resamples whole days of each window independently (``scipy.stats.bootstrap``,
    ``method``, ``n_resamples``, generator seeded with ``seed``).
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if min_days < 2:
        raise ValueError("min_days must be at least 2")
    if kind not in ("relative", "absolute"):
        raise ValueError(f"kind must be relative or absolute, not {kind!r}")
    bn, bd, bz = _days(baseline_num, baseline_den, "baseline")
    cn, cd, cz = _days(current_num, current_den, "current")
    base, cur = _window(bn, bd, bz), _window(cn, cd, cz)

    def result(point: float | None, iv: _Interval) -> Delta:
        return Delta(kind=kind, point=point, low=iv.low, high=iv.high,
                     bootstrap=Bootstrap(confidence, method, n_resamples, seed, min_days),
                     baseline=base, current=cur, reason=iv.reason)

    if base.value is None or cur.value is None:
        empty = [n for n, w in (("baseline", base), ("current", cur)) if w.value is None]
        return result(None, _Interval(None, None, f"no day with a denominator in the {' and '.join(empty)} "
                                                  "window"))
    point = _delta(base.value, cur.value, kind)
    if point is None:
        return result(None, _Interval(None, None, "the baseline value is 0: a relative delta is undefined"))
    short = _too_few({"baseline": base, "current": cur}, min_days)
    if short is not None:
        return result(point, _Interval(None, None, short))
    if _constant(bn, bd) and _constant(cn, cd):
        return result(point, _Interval(point, point, "every day of each window has the same ratio: "
                                                     "the interval has zero width"))

    def statistic(ib: npt.NDArray[Any], ic: npt.NDArray[Any], axis: int = -1) -> F64:
        ib, ic = ib.astype(np.intp), ic.astype(np.intp)
        b = bn[ib].sum(axis=axis) / bd[ib].sum(axis=axis)
        c = cn[ic].sum(axis=axis) / cd[ic].sum(axis=axis)
        return np.asarray(c - b if kind == "absolute" else c / b - 1.0, dtype=np.float64)

    iv = _bootstrap((np.arange(len(bn)), np.arange(len(cn))), statistic, confidence=confidence,
                    method=method, n_resamples=n_resamples, seed=seed)
    return result(point, iv)


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """One window's ratio with its day-block bootstrap interval (for ``measure: value``)."""

    point: float | None
    low: float | None
    high: float | None
    bootstrap: Bootstrap
    window: WindowRatio
    reason: str | None

    @property
    def enough_days(self) -> bool:
        return self.window.n_days >= self.bootstrap.min_days

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "low": self.low,
            "high": self.high,
            **self.bootstrap.as_dict(),
            "n_days": self.window.n_days,
            "zero_days": self.window.zero_days,
            "window": self.window.as_dict(),
            "reason": self.reason,
        }


def ratio_estimate(
    num: npt.ArrayLike,
    den: npt.ArrayLike,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    method: BootstrapMethod = "BCa",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    min_days: int = DEFAULT_MIN_DAYS,
) -> RatioEstimate:
    """One window's Σ num / Σ den with an interval from resampling its days."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if min_days < 2:
        raise ValueError("min_days must be at least 2")
    n, d, zero = _days(num, den, "window")
    w = _window(n, d, zero)

    def result(iv: _Interval) -> RatioEstimate:
        return RatioEstimate(point=w.value, low=iv.low, high=iv.high,
                             bootstrap=Bootstrap(confidence, method, n_resamples, seed, min_days),
                             window=w, reason=iv.reason)

    if w.value is None:
        return result(_Interval(None, None, "no day with a denominator in the window"))
    short = _too_few({"the window": w}, min_days)
    if short is not None:
        return result(_Interval(None, None, short))
    if _constant(n, d):
        return result(_Interval(w.value, w.value,
                                "every day has the same ratio: the interval has zero width"))

    def statistic(i: npt.NDArray[Any], axis: int = -1) -> F64:
        i = i.astype(np.intp)
        return np.asarray(n[i].sum(axis=axis) / d[i].sum(axis=axis), dtype=np.float64)

    return result(_bootstrap((np.arange(len(n)),), statistic, confidence=confidence, method=method,
                             n_resamples=n_resamples, seed=seed))
