"""The closed-result cache of a process that is not the only writer of its store: ``tierproof
serve`` beside a gateway (``create_app(collect=False)``, ``api.flight``). The gateway is a real
second process writing the same SQLite file; serve's own change feed never hears of its writes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from api.app import create_app
from api.flight import KpiRunner
from config.loader import load_settings
from config.settings import Settings
from config.store import InfluxStoreSettings
from config.times import to_ns
from store import InfluxStore
from store.sqlite import SqliteStore
from tests.api.test_assessment import NOW
from tests.api.test_single_flight import HOUR, App, Spy, _samples, spy, stored
from tests.helpers import free_port, key_headers, wait_for
from tests.influx_servers import InfluxDB16

__all__ = ["spy", "stored"]  # fixtures

ROOT = Path(__file__).resolve().parents[2]

_WRITER = """
import sys
import numpy as np
from store import Batch
from store.sqlite import SqliteStore
path, tag_id, ts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with SqliteStore(path) as store:
    held = store.read(tag_id, ts, ts + 1, prior=True)
    store.write(Batch.of(np.array([tag_id]), np.array([ts + 1]), np.array([float(held.value[-1])])))
"""


def _write_elsewhere(db: Path, tag_id: int, ts_ns: int) -> None:
    """One sample at ``ts_ns + 1`` ns of ``tag_id``, repeating the state it holds there, written
    and committed by another process (the gateway, a spool draining late)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", _WRITER, str(db), str(tag_id), str(ts_ns)],
                   check=True, env=env, timeout=120)


@pytest.fixture
async def serve(stored: tuple[Settings, Path], tmp_path: Path) -> AsyncIterator[App]:
    """The app as ``tierproof serve`` builds it: its own store object, no collectors."""
    settings, db = stored
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    store = SqliteStore(copy)
    headers = key_headers(settings)  # before the app starts: it needs a key
    api = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        async with api.router.lifespan_context(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://tierproof",
            headers=headers, timeout=120,
        ) as c:
            yield App(c, store, api.state.runner, settings)
    finally:
        store.close()


async def test_serve_shows_a_late_write_by_another_process(serve: App, spy: Spy) -> None:
    first = await serve.client.get("/api/v1/kpis", params=HOUR)
    again = await serve.client.get("/api/v1/kpis", params=HOUR)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and spy.calls == 1  # closed: served from the cache
    tag = next(t for t in serve.store.tags() if t.role == "state")
    await asyncio.to_thread(_write_elsewhere, serve.store.path, tag.tag_id,
                            to_ns(NOW - timedelta(hours=1, minutes=30)))
    after = await serve.client.get("/api/v1/kpis", params=HOUR)
    assert after.status_code == 200 and spy.calls == 2
    assert _samples(after.json(), tag.path) == _samples(first.json(), tag.path) + 1
    assert serve.runner.stats.invalidated >= 1
    # and the new answer is cached in turn while nobody writes
    assert (await serve.client.get("/api/v1/kpis", params=HOUR)).content == after.content
    assert spy.calls == 2
    health = (await serve.client.get("/api/v1/health")).json()
    assert health["kpi"]["closed_check"] == "feed+version"


def test_the_tierproof_serve_process_shows_a_late_write_of_another(
    stored: tuple[Settings, Path], tmp_path: Path
) -> None:
    """End to end: ``tierproof serve`` as its own process over a copy of the store, the
    writer a third process."""
    _, db = stored
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    cfg = tmp_path / "serve.yaml"
    src = yaml.safe_load((db.parent / "plant.yaml").read_text())  # tests.api.test_assessment
    src["store"] = {"type": "sqlite", "path": str(copy)}
    cfg.write_text(yaml.safe_dump(src, sort_keys=False))
    headers = key_headers(load_settings(cfg))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--config", str(cfg), "--port", str(port),
         "--duration", "300"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=120) as c:
            wait_for(lambda: c.get("/api/v1/health").status_code == 200, 60, "tierproof serve")
            first = c.get("/api/v1/kpis", params=HOUR)
            again = c.get("/api/v1/kpis", params=HOUR)
            assert first.status_code == 200 and again.content == first.content
            kpi = c.get("/api/v1/health").json()["kpi"]
            assert kpi["cache_hits"] == 1 and kpi["closed_check"] == "feed+version"
            with SqliteStore(copy, readonly=True) as store:
                tag = next(t for t in store.tags() if t.role == "state")
            _write_elsewhere(copy, tag.tag_id, to_ns(NOW - timedelta(hours=1, minutes=30)))
            after = c.get("/api/v1/kpis", params=HOUR)
            assert after.status_code == 200
            assert _samples(after.json(), tag.path) == _samples(first.json(), tag.path) + 1
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


async def test_a_write_by_another_process_during_a_computation_keeps_it_out_of_the_cache(
    serve: App, spy: Spy
) -> None:
    spy.hold.clear()
    task = asyncio.create_task(serve.client.get("/api/v1/kpis", params=HOUR))
    await asyncio.to_thread(spy.entered.wait, 60)
    tag = next(t for t in serve.store.tags() if t.role == "state")
    await asyncio.to_thread(_write_elsewhere, serve.store.path, tag.tag_id,
                            to_ns(NOW - timedelta(hours=1, minutes=30)))
    spy.hold.set()
    first = await task
    assert first.status_code == 200 and serve.runner.cached == 0  # it may have missed the write
    again = await serve.client.get("/api/v1/kpis", params=HOUR)
    assert spy.calls == 2 and serve.runner.cached == 1  # computed again, and now cached
    assert _samples(again.json(), tag.path) >= _samples(first.json(), tag.path)


async def test_a_closed_answer_without_a_version_is_kept_max_age_at_most() -> None:
    """A store that cannot tell when others write (InfluxDB under serve): a time bound."""
    now = [1_000 * 10**9]
    runner = KpiRunner(None, settle_s=0, closed_max_age_s=60, clock_ns=lambda: now[0])
    calls = 0

    def compute() -> bytes:
        nonlocal calls
        calls += 1
        return b"%d" % calls

    try:
        assert runner.closed_check == "max_age"
        assert await runner.run(("a",), 0, compute) == b"1"
        now[0] += 60 * 10**9  # 60 s after the computation started: still served
        assert await runner.run(("a",), 0, compute) == b"1" and calls == 1
        now[0] += 1
        assert await runner.run(("a",), 0, compute) == b"2"  # past the bound: computed again
        assert runner.stats.expired == 1 and runner.cached == 1
    finally:
        runner.close()


async def test_without_feed_version_or_bound_nothing_is_cached() -> None:
    runner = KpiRunner(None, settle_s=0)
    try:
        assert runner.closed_check == "none"
        await runner.run(("a",), 0, lambda: b"x")
        assert runner.cached == 0
    finally:
        runner.close()


@pytest.mark.influxdb
async def test_serve_over_influxdb_keeps_a_closed_answer_max_age_at_most(
    influxdb16: InfluxDB16, stored: tuple[Settings, Path], tmp_path: Path, spy: Spy
) -> None:
    """``tierproof serve`` over InfluxDB (the gateway's configuration: devices, so not the
    central tierproof): its feed exists but hears only its own writes, InfluxDB has no version
    to ask, so closed answers are served ``api.kpi_closed_max_age_s`` at most (here 0:
    never); the gateway (``sole_writer``) keeps them by its feed alone."""
    base, _ = stored
    store_settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url,
                                         database="tierproof", meta_path=str(tmp_path / "meta.db"))
    settings = base.model_copy(update={
        "store": store_settings,
        "api": base.api.model_copy(update={"kpi_closed_max_age_s": 0.0})})
    headers = key_headers(settings)
    for sole_writer, check, calls in ((None, "feed+max_age", 2), (True, "feed", 1)):
        store = InfluxStore(store_settings)
        api = create_app(settings, store=store, collect=False, rollups_maintain=False,
                         sole_writer=sole_writer)
        try:
            async with api.router.lifespan_context(api), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api), base_url="http://tierproof",
                headers=headers, timeout=120,
            ) as c:
                spy.calls = 0
                runner: KpiRunner = api.state.runner
                assert runner.closed_check == check
                for _ in range(2):
                    assert (await c.get("/api/v1/kpis", params=HOUR)).status_code == 200
                assert spy.calls == calls
                assert runner.stats.expired == (1 if sole_writer is None else 0)
        finally:
            store.close()
