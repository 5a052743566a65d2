"""The evidence pack's hourly rows are parts of their local day (``api.evidence.pack``), the
assessment's ``assets`` elements are the whole window's: at a fixed instant where a counter
increase spans the plant's local midnight with unknown time before it, the two differ in the
attribution of that one increase only (docs/evidence.md, "Hourly rows are parts of their
local day"). The instant is the one where tests/api/test_evidence_report.py's
test_hourly_inputs_add_up_to_the_assessed_window fails (its plant built at the wall clock)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.evidence.keys import load_or_create_key
from api.evidence.pack import write_pack
from api.service import KpiService
from config.times import to_ns
from kpi import TimeElements, roll_up
from store import SqliteStore
from tests.helpers import shipped_config, two_day_plant

#: Saturday 16:30 UTC = Sunday 00:30 in Shanghai: the current window (now-1d .. now-5min)
#: holds one local midnight, 16:00 UTC
NOW = datetime(2026, 12, 5, 16, 30, tzinfo=UTC)
LATHE = "demo/machining/line1/lathe-01"
#: always equal: time elements and whole quantities (dated by their later sample)
SAME = ("pbt_s", "known_s", "apt_s", "asut_s", "adet_s", "idle_s", "maintenance_s",
        "not_available_s", "other_s", "pq", "gq", "sq", "energy_kwh")
#: the attribution of an increase to known PBT, a gap or time outside PBT
ATTRIBUTED = ("pq_plan", "gq_plan", "sq_plan", "pq_unattributed", "pq_outside_plan")


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("midnight")
    _, settings = two_day_plant(tmp, yaml.safe_load(shipped_config("demo.yaml").read_text()), now=NOW)
    with SqliteStore(tmp / "store.db") as store:
        # line 1's device gap, as in test_evidence_report: lathe-01's mode, last sampled
        # before it (19:09 Shanghai), is then unknown until its next sample (23:52:04.6)
        gap = store.open_gap("line1-cnc", to_ns(NOW - timedelta(hours=5)), "test: line 1 unreachable")
        store.close_gap(gap, to_ns(NOW - timedelta(hours=4, minutes=20)))
        write_pack(tmp / "pack", settings, KpiService(settings, store),
                   load_or_create_key(tmp / "evidence_key.pem"), now=NOW)
    return tmp / "pack"


def _hour_sums(pack: Path) -> dict[str, TimeElements]:
    by: dict[str, list[TimeElements]] = defaultdict(list)
    with (pack / "inputs" / "hourly.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["window"] == "current":
                kw: dict[str, Any] = {}
                for fl in fields(TimeElements):
                    v = row[fl.name]
                    kw[fl.name] = None if v == "" else (int(v) if fl.type == "int" else float(v))
                by[row["asset"]].append(TimeElements(**kw))
    return {a: roll_up(es) for a, es in by.items()}


def test_hours_differ_from_the_window_only_in_a_midnight_increase_attribution(pack: Path) -> None:
    assessment = json.loads((pack / "assessment.json").read_text())
    sums = _hour_sums(pack)
    assert set(sums) == set(assessment["assets"])
    moved: dict[str, float] = {}
    for path, t in sums.items():
        got, want = t.as_dict(), assessment["assets"][path]["elements"]
        for k in SAME:
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-6), (path, k)
        # the increase moves between the attribution's shares, none is lost or made up
        assert sum(got[k] for k in ATTRIBUTED[3:]) + got["pq_plan"] == pytest.approx(want["pq"], rel=1e-12)
        assert sum(want[k] for k in ATTRIBUTED[3:]) + want["pq_plan"] == pytest.approx(want["pq"], rel=1e-12)
        d = got["pq_plan"] - want["pq_plan"]
        # one local midnight in the window: at most one increase of each counter spans it
        assert abs(d) <= 1.0, path
        if abs(d) > 1e-9:
            moved[path] = d
    # lathe-01's part 1003 -> 1004 (15:51:37.4 .. 16:00:47.1 UTC) spans midnight with 27.2 s
    # of unknown time and 47.1 s executing: the window puts 27.2 / 74.3 of it in
    # pq_unattributed, Sunday's own day (and its hours) all of it in pq_plan
    assert set(moved) == {LATHE}
    assert moved[LATHE] == pytest.approx(0.366350086, abs=1e-6)
    lathe = sums[LATHE].as_dict()
    want = assessment["assets"][LATHE]["elements"]
    assert want["pq_unattributed"] - lathe["pq_unattributed"] == pytest.approx(moved[LATHE], rel=1e-9)
    assert lathe["gq_plan"] - want["gq_plan"] == pytest.approx(moved[LATHE], rel=1e-9)
