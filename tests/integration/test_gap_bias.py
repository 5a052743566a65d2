"""A long device gap leaves the ratios on one time basis, the known part of planned busy time:
availability does not halve and effectiveness does not double (issue 11 audit); the output
made in the gap is reported as unattributed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config.times import to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.helpers import shift_demo_settings

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
LINE = "demo/assembly/line4"


def test_half_the_plan_in_a_gap_biases_neither_a_nor_e(tmp_path: Path) -> None:
    settings = shift_demo_settings()
    store = SqliteStore(tmp_path / "bias.db")
    tag_ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    for batch in plant.history_batches(tag_ids, to_ns(NOW - timedelta(days=3)), to_ns(NOW)):
        store.write(batch)
    service = KpiService(settings, store)
    start = NOW - timedelta(days=2)
    before = service.kpis(start, NOW, line=LINE)
    g = store.open_gap("line4-mqtt", to_ns(NOW - timedelta(days=1, hours=10)), "broker unreachable")
    store.close_gap(g, to_ns(NOW - timedelta(hours=10)))
    after = service.kpis(start, NOW, line=LINE)
    for path, b in before["assets"].items():
        a = after["assets"][path]
        el = a["elements"]
        assert 0.35 < a["coverage"] < 0.6, path  # about half the plan is unknown
        # the machines' true speed and uptime did not change: neither ratio moves much
        assert a["effectiveness"] == pytest.approx(b["effectiveness"], abs=0.01), path
        assert a["availability"] == pytest.approx(b["availability"], abs=0.05), path
        assert a["quality_ratio"] == pytest.approx(b["quality_ratio"], abs=0.01), path
        # the old basis (APT / full PBT, all parts over known APT) would be ~0.5x and ~2x
        assert el["apt_s"] / el["pbt_s"] < 0.6 * a["availability"]
        # parts made in the gap are counted in PQ but reported apart from E and Q
        assert el["pq"] == b["elements"]["pq"]
        assert el["pq_unattributed"] > 0.3 * el["pq"]
        assert el["pq_plan"] + el["pq_unattributed"] + el["pq_outside_plan"] == pytest.approx(
            el["pq"]
        )
