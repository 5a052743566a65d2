"""Evidence rules on hand-worked cases: missing roles, per-tag sample counts, the gaps that count
against an asset, and the evidence's JSON shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from config.signals import Quality, Role
from kpi import AssetEvidence, TagEvidence, asset_gaps, gap_intervals, missing_roles

S = 1_000_000_000
R = Role


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ((), ["state", "mode", "total_count", "good_count"]),
        ((R.STATE, R.MODE, R.TOTAL_COUNT, R.GOOD_COUNT), []),
        # good + reject stands in for the total
        ((R.STATE, R.MODE, R.GOOD_COUNT, R.REJECT_COUNT), []),
        ((R.STATE, R.MODE, R.TOTAL_COUNT), ["good_count"]),
        ((R.STATE, R.REJECT_COUNT, R.CHANNEL_MODE, R.ENERGY_KWH), ["mode", "good_count"]),
        ((R.ANALOG, R.STATUS), ["state", "mode", "total_count", "good_count"]),
    ],
)
def test_missing_roles(present: tuple[Role, ...], missing: list[str]) -> None:
    assert missing_roles(set(present)) == missing


def tag(ts_s: list[float], quality: list[int]) -> TagEvidence:
    """Evidence of a state tag read for the window [100 s, 200 s)."""
    ts = np.array([t * S for t in ts_s], np.int64)
    return TagEvidence.of("s/a/l/m/state", 7, R.STATE, ts, np.array(quality, np.uint8), 100 * S, 200 * S)


G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD_NOT_CONNECTED


@pytest.mark.parametrize(
    ("ts_s", "quality", "samples", "bad", "prior_s"),
    [
        # 90 is the prior sample; 100, 150, 199 are inside; 150 is bad, 199 only uncertain
        ([90, 100, 150, 199], [G, G, B, U], 3, 1, 90),
        # the first sample lies on the window's start: inside, no prior
        ([100, 120], [B, B], 2, 2, None),
        # a prior sample only: it carries its value in but is not a sample of the window
        ([40], [G], 0, 0, 40),
        ([], [], 0, 0, None),
    ],
)
def test_tag_evidence(
    ts_s: list[float], quality: list[int], samples: int, bad: int, prior_s: float | None
) -> None:
    ev = tag(ts_s, quality)
    assert (ev.samples, ev.bad_samples) == (samples, bad)
    assert ev.prior_ns == (None if prior_s is None else prior_s * S)


@dataclass(frozen=True)
class Gap:
    device: str
    asset: str | None
    start_ns: int
    end_ns: int | None
    reason: str


DEVICE_WIDE = Gap("mqtt", None, 10, 20, "broker down")
MINE = Gap("mqtt", "s/a/l/m", 30, None, "node offline")
OTHERS = Gap("mqtt", "s/a/l/other", 40, 50, "node offline")


def test_gaps_of_an_asset() -> None:
    gaps = asset_gaps([DEVICE_WIDE, MINE, OTHERS], "s/a/l/m")
    assert gaps == [DEVICE_WIDE, MINE]
    # the open gap runs to the window's end
    assert gap_intervals(gaps, 100) == [(10, 20), (30, 100)]


def test_asset_evidence_as_dict() -> None:
    ev = AssetEvidence(
        tags=(tag([90, 150], [G, B]),),
        missing_roles=("good_count",),
        gaps=(MINE,),
        planned_intervals=2,
        ideal_cycle_time_s=4.5,
        implausible_increases=(("total_count", 200 * S, 201 * S, 120.0, 1.15),),
    )
    assert ev.as_dict(lambda ns: None if ns is None else f"t{ns}") == {
        "kind": "measured",
        "tags": [
            {"path": "s/a/l/m/state", "tag_id": 7, "role": "state", "samples": 1,
             "bad_samples": 1, "prior_sample": f"t{90 * S}"},
        ],
        "missing_roles": ["good_count"],
        "mode": None,  # measured (or missing), not configured
        "gaps": [
            {"device": "mqtt", "asset": "s/a/l/m", "start": "t30", "end": None,
             "reason": "node offline"},
        ],
        "planned_intervals": 2,
        "ideal_cycle_time_s": 4.5,
        "implausible_increases": [
            {"role": "total_count", "from": f"t{200 * S}", "to": f"t{201 * S}", "increase": 120.0,
             "allowed": 1.15},
        ],
    }


def test_a_configured_mode_is_labelled_in_the_evidence() -> None:
    ev = AssetEvidence(tags=(), missing_roles=(), gaps=(), planned_intervals=1,
                       ideal_cycle_time_s=None, default_mode="Processing")
    assert ev.as_dict(lambda ns: None)["mode"] == {
        "source": "configured", "value": "Processing",
        "note": "assets[].default_mode: the asset has no mode tag; its mode is configured, not measured",
    }
