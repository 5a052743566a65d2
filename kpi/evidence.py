"""The evidence behind one asset's KPIs: the tags and samples they rest on, the roles that are
missing, and the gaps that count against the asset.

Pure: roles, numpy arrays and plain records in, plain records out. Instants stay int64 ns;
whoever serves the evidence chooses how to write them (``AssetEvidence.as_dict``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from config.signals import Quality, Role

#: the roles without which a unit's OEE is not measured
REQUIRED_ROLES: Final[tuple[Role, ...]] = (Role.STATE, Role.MODE, Role.TOTAL_COUNT, Role.GOOD_COUNT)


def missing_roles(present: Collection[Role]) -> list[str]:
    """The required roles that ``present`` lacks. A total count is not missing where a reject
    count is present: the produced quantity is then good + reject."""
    return [
        r.value
        for r in REQUIRED_ROLES
        if r not in present and not (r is Role.TOTAL_COUNT and Role.REJECT_COUNT in present)
    ]


@dataclass(frozen=True, slots=True)
class TagEvidence:
    """One tag a KPI was computed from, and how many of its samples it saw."""

    path: str
    tag_id: int
    role: Role
    samples: int  # samples inside the window
    bad_samples: int  # of those, the ones whose quality is BAD or worse (not used)
    prior_ns: int | None  # the sample before the window that carries its value in, if any

    @classmethod
    def of(
        cls,
        path: str,
        tag_id: int,
        role: Role,
        ts_ns: npt.NDArray[np.int64],
        quality: npt.NDArray[np.uint8],
        start_ns: int,
        end_ns: int,
    ) -> TagEvidence:
        """From the samples read for [start_ns, end_ns), with the one before it (``prior``)."""
        inwin = (ts_ns >= start_ns) & (ts_ns < end_ns)
        return cls(
            path=path,
            tag_id=tag_id,
            role=role,
            samples=int(inwin.sum()),
            bad_samples=int((quality[inwin] >= Quality.BAD).sum()),
            prior_ns=int(ts_ns[0]) if len(ts_ns) and not inwin[0] else None,
        )


class GapLike(Protocol):
    """A recorded interval during which a device (or only one of its assets) delivered nothing;
    ``end_ns`` None while still open. The store's ``Gap`` records are such."""

    @property
    def device(self) -> str: ...
    @property
    def asset(self) -> str | None: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int | None: ...
    @property
    def reason(self) -> str: ...


G = TypeVar("G", bound=GapLike)


def asset_gaps(gaps: Iterable[G], asset: str) -> list[G]:
    """The gaps that count against ``asset``, from its devices' gaps: the device-wide ones and
    those of just this asset (a Sparkplug edge node offline)."""
    return [g for g in gaps if g.asset is None or g.asset == asset]


def gap_intervals(gaps: Iterable[GapLike], end_ns: int) -> list[tuple[int, int]]:
    """Each gap as [start, end); one still open runs to ``end_ns``."""
    return [(g.start_ns, g.end_ns if g.end_ns is not None else end_ns) for g in gaps]


@dataclass(frozen=True, slots=True)
class AssetEvidence:
    """What one asset's KPIs rest on."""

    tags: tuple[TagEvidence, ...]
    missing_roles: tuple[str, ...]
    gaps: tuple[GapLike, ...]
    planned_intervals: int  # intervals of planned busy time in the window
    ideal_cycle_time_s: float | None
    kind: str = "measured"
    #: counter increases excluded as implausible: (role, t0_ns, t1_ns, increase, allowed)
    implausible_increases: tuple[tuple[str, int, int, float, float], ...] = ()
    #: the operation mode taken from the asset's configured ``default_mode`` (it has no mode
    #: tag): configured, not measured; None when the mode was measured or is missing
    default_mode: str | None = None

    def as_dict(self, instant: Callable[[int | None], str | None]) -> dict[str, Any]:
        """JSON-ready, every instant written by ``instant`` (ns -> text, None -> None)."""
        return {
            "kind": self.kind,
            "tags": [
                {
                    "path": t.path,
                    "tag_id": t.tag_id,
                    "role": t.role.value,
                    "samples": t.samples,
                    "bad_samples": t.bad_samples,
                    "prior_sample": instant(t.prior_ns),
                }
                for t in self.tags
            ],
            "missing_roles": list(self.missing_roles),
            "mode": (
                {"source": "configured", "value": self.default_mode,
                 "note": "assets[].default_mode: the asset has no mode tag; its mode is "
                         "configured, not measured"}
                if self.default_mode is not None else None
            ),
            "gaps": [
                {"device": g.device, "asset": g.asset, "start": instant(g.start_ns),
                 "end": instant(g.end_ns), "reason": g.reason,
                 # stored data found damaged: the tag (its reason starts "stored data damaged")
                 **({"tag": tag} if (tag := getattr(g, "tag", None)) is not None else {})}
                for g in self.gaps
            ],
            "planned_intervals": self.planned_intervals,
            "ideal_cycle_time_s": self.ideal_cycle_time_s,
            "implausible_increases": [
                {"role": role, "from": instant(t0), "to": instant(t1), "increase": inc,
                 "allowed": allowed}
                for role, t0, t1, inc, allowed in self.implausible_increases
            ],
        }
