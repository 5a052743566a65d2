"""An asset without a mode tag and its configured ``default_mode``, through the KPI service: a
real SQLite store holding a state tag and part counters only (most small PLCs have no mode
signal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import settings_from_dict
from store.batch import Batch
from store.sqlite import SqliteStore

S = 1_000_000_000
T0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday; the default calendar plans every hour
T0_NS = int(T0.timestamp()) * S
SMALL = "s/a/l/press"  # state + counters, no mode tag
FULL = "s/a/l/mill"  # state, counters and a mode tag (Setup throughout)


def config(**press: Any) -> dict[str, Any]:
    def tag(name: str, asset: str, role: str, address: int, **kw: Any) -> dict[str, Any]:
        return {"name": name, "asset": asset, "role": role, "address": address, **kw}

    state_enum = {0: "NotExecuting", 1: "Executing", 2: "OutOfService"}
    return {
        "assets": [{"path": SMALL, "ideal_cycle_time_s": 10, **press},
                   {"path": FULL, "ideal_cycle_time_s": 10, "default_mode": "Processing"}],
        "devices": [{
            "protocol": "modbus", "name": "plc", "host": "127.0.0.1",
            "tags": [
                tag("state", SMALL, "state", 0, enum=state_enum),
                tag("total", SMALL, "total_count", 1),
                tag("good", SMALL, "good_count", 2),
                tag("state", FULL, "state", 10, enum=state_enum),
                tag("mode", FULL, "mode", 11, enum={0: "Setup", 1: "Processing"}),
                tag("total", FULL, "total_count", 12),
                tag("good", FULL, "good_count", 13),
            ],
        }],
    }


def kpis(tmp_path: Path, **press: Any) -> dict[str, Any]:
    settings = settings_from_dict(config(**press))
    store = SqliteStore(tmp_path / "kpi.db")
    ids = store.register_tags(tag_records(settings))
    # both machines: Executing 0-600 s, OutOfService 600-700 s, Executing 700-1000 s;
    # 60 parts (all good), 30 counted at 300 s and 30 at 600 s, made in Executing time; the
    # mill's mode tag says Setup throughout
    rows = []
    for asset in (SMALL, FULL):
        rows += [(f"{asset}/state", t, v) for t, v in ((0, 1), (600, 2), (700, 1))]
        rows += [(f"{asset}/{c}", t, v) for c in ("total", "good") for t, v in ((0, 0), (300, 30), (600, 60))]
    rows.append((f"{FULL}/mode", 0, 0))
    store.write(Batch(
        np.array([ids[p] for p, _, _ in rows], np.int32),
        np.array([T0_NS + t * S for _, t, _ in rows], np.int64),
        np.array([v for _, _, v in rows], np.float64),
        np.zeros(len(rows), np.uint8),
    ))
    try:
        return KpiService(settings, store).kpis(T0, T0 + timedelta(seconds=1000))
    finally:
        store.close()


def test_state_only_machine_with_default_mode(tmp_path: Path) -> None:
    got = kpis(tmp_path, default_mode="Processing")["assets"]
    press = got[SMALL]
    # APT 0-600 + 700-1000 = 900 s of 1000 s planned; OutOfService 100 s is ADET
    # A = 0.9; E = 10 s x 60 / 900 s = 2/3; Q = 60 / 60; OEE = 0.9 x 2/3 = 0.6
    assert press["elements"]["apt_s"] == pytest.approx(900)
    assert press["elements"]["adet_s"] == pytest.approx(100)
    for k, v in (("availability", 0.9), ("effectiveness", 2 / 3), ("quality_ratio", 1.0),
                 ("oee", 0.6), ("coverage", 1.0)):
        assert press[k] == pytest.approx(v), k
    ev = press["evidence"]
    assert ev["mode"] == {"source": "configured", "value": "Processing",
                          "note": "assets[].default_mode: the asset has no mode tag; its mode is "
                                  "configured, not measured"}
    assert "mode" not in ev["missing_roles"]
    assert "mode" not in {t["role"] for t in ev["tags"]}
    # the mill has a mode tag (Setup) and a default_mode: the tag wins, nothing is defaulted
    mill = got[FULL]
    assert mill["elements"]["apt_s"] == 0 and mill["elements"]["asut_s"] == pytest.approx(900)
    assert mill["evidence"]["mode"] is None


def test_state_only_machine_without_default_mode_has_no_kpis(tmp_path: Path) -> None:
    press = kpis(tmp_path)["assets"][SMALL]
    # Executing in an unknown mode is unknown time: no APT, no effectiveness, no OEE. Only the
    # OutOfService 100 s is known (a malfunction whatever the mode), so availability is
    # 0 / 100 on a coverage of 0.1 -- below any coverage_min a verdict accepts
    assert press["elements"]["apt_s"] == 0
    assert press["effectiveness"] is None and press["oee"] is None
    assert press["coverage"] == pytest.approx(0.1)
    assert press["evidence"]["mode"] is None and "mode" in press["evidence"]["missing_roles"]
