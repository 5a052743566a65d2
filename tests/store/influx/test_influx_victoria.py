"""InfluxStore's ``api: v2`` path (influxdb-client, ``/api/v2/write``) against a real server:
VictoriaMetrics, which speaks InfluxDB's v2 write API (InfluxDB 2.x cannot run here).

VictoriaMetrics has no InfluxQL, so the data is read back through its own export API: a field
``f`` of measurement ``m`` becomes the metric ``m_f``, tags become labels, times are kept in
milliseconds, and string fields are dropped. Written data shows there after a
flush of VictoriaMetrics' in-memory buffers, which the test forces (else ~10 s with this build).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from config.errors import SinkUnavailable
from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, TagRecord
from tests.influx_servers import VictoriaMetrics

pytestmark = pytest.mark.influxdb

TOKEN = "vm-t0ken-never-logged"
SEC = 10**9
MS = 10**6


def v2_settings(url: str, tmp_path: Path) -> InfluxStoreSettings:
    return InfluxStoreSettings(
        type="influx", api="v2", url=url, token=SecretStr(TOKEN), org="plant", bucket="tierproof",
        meta_path=str(tmp_path / "meta.db"), batch_size=1000,
    )


def export(vm: VictoriaMetrics, metric: str, expect_series: int,
           timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every series of ``metric`` from /api/v1/export, polled until ``expect_series`` show."""
    deadline = time.monotonic() + timeout_s
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        vm.force_flush()
        r = httpx.get(f"{vm.url}/api/v1/export", params={"match[]": f'{{__name__="{metric}"}}'})
        r.raise_for_status()
        got = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        if len(got) >= expect_series:
            return got
        time.sleep(0.25)
    raise AssertionError(f"{metric}: {len(got)} of {expect_series} series after {timeout_s:g} s")


def test_v2_write_arrives_with_hierarchy_tags(victoria_metrics: VictoriaMetrics, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now_ms = time.time_ns() // MS * MS  # VictoriaMetrics keeps milliseconds
    records = [
        TagRecord(path=f"plant/assembly/line{i % 2}/press-{i % 5}/sig{i}",
                  asset=f"plant/assembly/line{i % 2}/press-{i % 5}",
                  role="state" if i % 4 == 0 else "analog", device=f"plc-{i % 5}", protocol="opcua")
        for i in range(40)
    ]
    with InfluxStore(v2_settings(victoria_metrics.url, tmp_path)) as store:
        ids = store.register_tags(records)
        # 1,000 points: two lanes of 500 (posts_in_flight), two POSTs at once via influxdb-client
        tid = np.repeat(np.array(list(ids.values()), np.int32), 25)
        ts = now_ms - 60 * SEC + np.tile(np.arange(25, dtype=np.int64), 40) * SEC
        value = np.arange(1000, dtype=np.float64) / 4
        quality = (np.arange(1000) % 3).astype(np.uint8)
        store.write(Batch(tid, ts, value, quality))
        store.write(Batch(tid[:10], ts[:10] + 1 * MS, value[:10] + 0.5, quality[:10]))  # 2nd POST
        gap = store.open_gap("plc-1", now_ms - 30 * SEC, "connection refused")
        store.close_gap(gap, now_ms - 20 * SEC)
        assert store.stats().points_written == 1010

    series = export(victoria_metrics, "tierproof_value", 40)
    by_signal = {s["metric"]["signal"]: s for s in series}
    assert len(by_signal) == 40
    for i, rec in enumerate(records):
        s = by_signal[f"sig{i}"]
        site, area, line, asset, signal = rec.path.split("/")
        labels = s["metric"]
        assert {k: labels[k] for k in ("site", "area", "line", "asset", "signal", "role", "device")} \
            == {"site": site, "area": area, "line": line, "asset": asset, "signal": signal,
                "role": rec.role, "device": rec.device}
        k = np.flatnonzero(tid == ids[rec.path])
        resent = k[:10] if i == 0 else k[:0]  # the second write: the first 10 points of sig0
        want_ts = ts[k].tolist() + (ts[resent] + MS).tolist()
        want_v = value[k].tolist() + (value[resent] + 0.5).tolist()
        order = np.argsort(want_ts)
        assert s["timestamps"] == [want_ts[j] // MS for j in order]
        assert s["values"] == [want_v[j] for j in order]
    quality_series = export(victoria_metrics, "tierproof_quality", 40)
    qualities = {s["metric"]["signal"]: s["values"] for s in quality_series}
    assert qualities["sig3"] == quality[tid == ids[records[3].path]].astype(float).tolist()
    (gap_series,) = export(victoria_metrics, "tierproof_gaps_end_ns", 1)
    assert gap_series["metric"]["device"] == "plc-1"
    assert gap_series["values"] == [float(now_ms - 20 * SEC)]
    assert TOKEN not in caplog.text


def test_v2_stopped_server_is_unavailable_then_recovers(victoria_metrics: VictoriaMetrics,
                                                        tmp_path: Path) -> None:
    now_ms = time.time_ns() // MS * MS
    rec = TagRecord(path="plant/a/l/m/temp", asset="plant/a/l/m", role="analog", device="plc",
                    protocol="modbus")
    with InfluxStore(v2_settings(victoria_metrics.url, tmp_path)) as store:
        (tid,) = store.register_tags([rec]).values()
        batch = Batch.of([tid, tid], [now_ms - 2 * SEC, now_ms - SEC], [20.5, 21.5])
        victoria_metrics.stop()
        with pytest.raises(SinkUnavailable) as info:
            store.write(batch)
        for text in (str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))):
            assert TOKEN not in text
        victoria_metrics.start()
        store.write(batch)
    (s,) = export(victoria_metrics, "tierproof_value", 1)
    assert s["values"] == [20.5, 21.5]
    assert s["timestamps"] == [(now_ms - 2 * SEC) // MS, (now_ms - SEC) // MS]
