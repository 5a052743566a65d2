"""KPIs from on-change storage equal those from every-poll storage of the same polls.

The demo plant's two Modbus lines are served over real Modbus TCP (the simulator's clock
runs 90x faster than the wall clock, so forty minutes of plant time -- production, the evening
break's planned stop, counters rising -- pass in about half a minute) and polled by the
supervisor with the demo's role defaults: state, mode, channel mode and counters on change
(deadband 0, 60 s heartbeat), the rest every poll. One supervisor run writes two real SQLite
stores: every batch the collectors poll goes, as polled, to the *every-poll* store, and
through the storage filter to the *on-change* store; gaps and heartbeats go to both. Line 2's
server goes away for a while mid-run (a gap, then a reconnect). Every KPI and time element
of every asset, line and the plant, over several windows, must then be equal to 1e-9.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.gateway import tag_records
from api.service import KpiService
from collector import Supervisor
from collector.modbus import ModbusCollector
from config.base import DeviceBase
from config.modbus import ModbusDevice
from config.settings import Settings
from config.storage import LOSSLESS_ROLES
from config.times import to_ns
from simulators import Plant, serve_plant
from store.base import Gap
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import FAST, health, shift_demo_settings, wait_until

#: plant time: a Wednesday 17:30 in Shanghai, half an hour before the evening break (the
#: start, however long it takes on a loaded machine, must leave line 2's gap in production)
T0 = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)
MIN = 60 * 10**9
SPEED = 90  # plant seconds per wall second
KPI_ROLES = {r.value for r in LOSSLESS_ROLES}  # stored on change: steps, counters, reasons


class SimClock:
    """Plant time (ns): T0 when created, then SPEED times the wall clock's pace."""

    def __init__(self) -> None:
        self.t0 = to_ns(T0)
        self.m0 = time.monotonic_ns()

    def __call__(self) -> int:
        return self.t0 + (time.monotonic_ns() - self.m0) * SPEED


class Tee:
    """The supervisor's store: samples (already filtered) to ``on_change``; tags, gaps and
    heartbeats to both stores, which must hand out the same ids."""

    def __init__(self, on_change: SqliteStore, every_poll: SqliteStore) -> None:
        self.a, self.b = on_change, every_poll

    def write(self, batch: Batch) -> None:
        self.a.write(batch)

    def register_tags(self, tags: Sequence[Any]) -> dict[str, int]:
        ids = self.a.register_tags(tags)
        assert self.b.register_tags(tags) == ids
        return ids

    def open_gap(self, device: str, start_ns: int, reason: str, asset: str | None = None) -> int:
        g = self.a.open_gap(device, start_ns, reason, asset)
        assert self.b.open_gap(device, start_ns, reason, asset) == g
        return g

    def close_gap(self, gap_id: int, end_ns: int) -> None:
        self.a.close_gap(gap_id, end_ns)
        self.b.close_gap(gap_id, end_ns)

    def mark_alive(self, device: str, ts_ns: int) -> None:
        self.a.mark_alive(device, ts_ns)
        self.b.mark_alive(device, ts_ns)

    def last_alive(self, device: str) -> int | None:
        return self.a.last_alive(device)

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Gap]:
        return self.a.gaps(device, start_ns, end_ns)


def polled_to(store: SqliteStore, clock: SimClock) -> Any:
    """A Modbus collector factory on the plant clock whose polls also go, as polled, to
    ``store`` (the every-poll store)."""

    class EveryPoll(ModbusCollector):
        async def batches(self) -> AsyncIterator[Batch]:
            inner = super().batches()
            try:
                async for b in inner:
                    store.write(b)
                    yield b
            finally:
                await inner.aclose()

    def make(device: DeviceBase, tag_ids: Mapping[str, int]) -> ModbusCollector:
        return EveryPoll(device, tag_ids, clock=clock)

    return make


def fast_modbus(settings: Settings) -> Settings:
    """The demo's Modbus devices only, polled every 0.05 s (4.5 s of plant time)."""
    devices = [
        d.model_copy(update={"poll_interval_s": 0.05, "poll_groups": {"slow": 0.5},
                             "backoff": FAST})
        for d in settings.devices if isinstance(d, ModbusDevice)
    ]
    return settings.model_copy(update={"devices": devices})


def without_evidence(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scope in ("assets", "lines"):
        for path, entry in result[scope].items():
            out[f"{scope}:{path}"] = {k: v for k, v in entry.items() if k != "evidence"}
    out["total"] = result["total"]
    return out


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in entry.items() if k != "elements"}
    d.update({f"elements.{k}": v for k, v in entry["elements"].items()})
    return d


def samples(store: SqliteStore, tag_ids: Sequence[int], start: int, end: int) -> int:
    return sum(len(s) for s in store.read_many(tag_ids, start, end, prior=False).values())


async def test_kpis_from_on_change_storage_equal_every_poll(tmp_path: Path) -> None:
    settings = fast_modbus(shift_demo_settings())
    plant = Plant(settings, now=T0 + timedelta(days=1))
    clock = SimClock()
    on_change, every_poll = SqliteStore(tmp_path / "on_change.db"), SqliteStore(tmp_path / "every.db")
    tee = Tee(on_change, every_poll)
    async with serve_plant(settings, plant, clock=clock, free_ports=True, interval_s=0.02) as srv:
        client = srv.client_settings(settings)
        tag_ids = tee.register_tags(tag_records(client))
        writer = Writer(tee)  # type: ignore[arg-type]  # the Store methods the supervisor uses
        sup = Supervisor(client.devices, tee, writer, tag_ids,  # type: ignore[arg-type]
                         {"modbus": polled_to(every_poll, clock)}, clock=clock)
        start_ns = clock()
        async with sup:
            await wait_until(lambda: all(h.samples_delivered for h in sup.status()), 30,
                             "first polls")
            # the gap falls in production, before the break: at 17:40 plant time, or at once
            # if the start took longer (from 17:50, the start, a fixed 2 s and the stop had to
            # fit in 10 plant minutes, under 7 s of wall time, for the gap to miss the break)
            await wait_until(lambda: clock() >= to_ns(T0) + 10 * MIN, 60, "17:40")
            line2 = srv.servers["line2-plc"]
            await line2.stop()
            await wait_until(lambda: health(sup, "line2-plc").gap_open_since is not None, 30,
                             "line 2's gap")
            await asyncio.sleep(1.5)
            await line2.start()
            await wait_until(lambda: health(sup, "line2-plc").gap_open_since is None, 30,
                             "line 2 back")
            # on into the evening break (18:00-18:15 plant time)
            await wait_until(lambda: clock() > to_ns(T0) + 40 * MIN, 90, "18:10")
        end_ns = clock()
        await writer.close()

    gaps = every_poll.gaps("line2-plc", start_ns, end_ns)
    assert len(gaps) == 1 and gaps[0].end_ns is not None
    # the on-change store holds far fewer samples of the step and counter tags
    kpi_tags = [t.tag_id for t in every_poll.tags() if t.role in KPI_ROLES]
    n_every = samples(every_poll, kpi_tags, start_ns, end_ns)
    n_change = samples(on_change, kpi_tags, start_ns, end_ns)
    assert n_change < n_every / 2, (n_change, n_every)
    other = [t.tag_id for t in every_poll.tags() if t.role not in KPI_ROLES]
    assert samples(on_change, other, start_ns, end_ns) == samples(every_poll, other, start_ns, end_ns)

    def window(a: float, b: float) -> tuple[datetime, datetime]:
        span = end_ns - start_ns
        return (datetime.fromtimestamp((start_ns + a * span) / 1e9, UTC),
                datetime.fromtimestamp((start_ns + b * span) / 1e9, UTC))

    modbus_assets = {t.asset for d in client.devices for t in d.tags}
    for a, b in ((0.0, 1.0), (0.1237, 0.8311), (0.45, 0.62), (-0.2, 1.3)):
        w0, w1 = window(a, b)
        want = KpiService(settings, every_poll).kpis(w0, w1)
        got = KpiService(settings, on_change).kpis(w0, w1)
        produced = [want["assets"][p]["elements"]["pq"] for p in modbus_assets]
        if (a, b) == (0.0, 1.0):  # the run saw the machines work, stop and go on
            assert sum(x > 0 for x in produced) >= 4, produced
            assert want["total"]["elements"]["known_s"] < want["total"]["elements"]["pbt_s"]
        w, g = without_evidence(want), without_evidence(got)
        assert w.keys() == g.keys()
        for key in w:
            fw, fg = flat(w[key]), flat(g[key])
            assert fw.keys() == fg.keys()
            for k, v in fw.items():
                if v is None:
                    assert fg[k] is None, (key, k)
                else:
                    assert fg[k] == pytest.approx(v, rel=1e-9, abs=1e-9), (a, b, key, k)
    on_change.close()
    every_poll.close()
