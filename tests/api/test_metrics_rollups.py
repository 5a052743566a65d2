"""``tierproof_rollup_lag_seconds`` (issue 15 item 7): how far the hourly roll-ups trail the
newest closed hour. On the demo plant's simulated history in a real SQLite store: unknown
before the maintainer has looked at the store, 0 once every closed hour is rolled up, the age
of the oldest hour a late write reopened until the next pass computes it again -- read
directly and through ``/metrics`` of the app (whose lifespan starts the maintainer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.gateway import tag_records
from api.rollups import HOUR_NS, RollupMaintainer
from api.service import KpiService
from config import Settings
from config.times import to_ns
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.api.test_metrics import one, scrape, serve, until
from tests.helpers import free_port

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)
HOURS = 6


def _filled(path: Path, settings: Settings, now: datetime) -> SqliteStore:
    store = SqliteStore(path)
    ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=now).history_batches(
            ids, to_ns(now - timedelta(hours=HOURS)), to_ns(now)):
        store.write(batch)
    return store


def test_the_lag_is_zero_when_rolled_up_and_the_reopened_hours_after_a_late_write(
        tmp_path: Path, settings: Settings) -> None:
    with _filled(tmp_path / "lag.db", settings, NOW) as store:
        service = KpiService(settings, store, rollups=True)
        m = RollupMaintainer(service, settle_s=300, clock_ns=lambda: to_ns(NOW))
        assert m.lag_s() is None  # the store's first sample is not known yet
        m.run_once()
        assert m.computed > 0 and m.lag_s() == 0
        closed = m.closed_end()
        hour = closed - 3 * HOUR_NS
        total = next(t for t in store.tags() if t.role == "total_count")
        v = float(store.read(total.tag_id, hour, hour, prior=True).value[-1])
        store.write(Batch(np.array([total.tag_id], np.int32), np.array([hour + 1234]),
                          np.array([v + 3]), np.zeros(1, np.uint8)))
        lag = m.lag_s()
        assert lag is not None and lag >= (closed - hour) / 1e9  # that hour waits again
        m.run_once()
        assert m.lag_s() == 0


@dataclass
class Api:
    client: httpx.AsyncClient


@pytest.fixture
async def api(tmp_path: Path, settings: Settings) -> AsyncIterator[Api]:
    """The demo's history (the last hours up to now) in a store, served with roll-ups on and
    without collecting; the one place a client is built."""
    port = free_port()
    data = settings.model_dump(mode="json")
    data["kpi"]["rollups"] = True
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "api.db")}
    data["api"] = {**data["api"], "host": "127.0.0.1", "port": port}
    live = Settings.model_validate(data)
    _filled(tmp_path / "api.db", live, datetime.now(UTC)).close()
    app = create_app(live, collect=False)
    async with serve(app, port) as c:
        yield Api(c)


async def test_metrics_show_the_maintainers_rows_and_lag(api: Api) -> None:
    async def rolled_up() -> bool:
        m = await scrape(api.client)
        return bool(m.get("tierproof_rollup_lag_seconds", {}).get(()) == 0
                    and one(m, "tierproof_rollup_rows_computed_total") > 0)

    await until(rolled_up, "the maintainer's first pass", timeout=60)
