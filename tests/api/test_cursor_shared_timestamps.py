"""Cursor pagination of raw samples where samples share a timestamp, over HTTP: pages that
end inside a run of equal timestamps continue after exactly the samples delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from config import settings_from_dict
from config.times import iso
from store import Batch, SqliteStore
from tests.api.series_server import serve

MIN = 60 * 10**9
T0 = 1_790_000_000 * 10**9 // (3600 * 10**9) * (3600 * 10**9)
COUNT = "s/a/l/m1/count"


class _TwoPerInstant:
    """A store whose pages hold two samples at every timestamp, as a central InfluxDB can
    hold two points of one path from two gateways' series. A fake: the real stores keep one
    sample per tag and timestamp, so they cannot produce this; everything else is the real
    store."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_page(self, tag_id: int, start_ns: int, end_ns: int, limit: int) -> Any:
        p = self._store.read_page(tag_id, start_ns, end_ns, limit)
        two = [np.repeat(a, 2) for a in p[:5]]
        two[1] = two[1] + np.tile([0.0, 0.5], len(p.ts_ns))  # the second of a pair: +0.5
        more = p.more or len(two[0]) > limit
        return type(p)(*(a[:limit] for a in two), more)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[httpx.Client, SqliteStore]]:
    store = SqliteStore(tmp_path / "dup.db")
    settings = settings_from_dict({
        "assets": [{"path": "s/a/l/m1"}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1", "enabled": False,
                     "tags": [{"name": "count", "asset": "s/a/l/m1", "address": 0}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "dup.db")},
    })
    app = create_app(settings, store=_TwoPerInstant(store), collect=False,  # type: ignore[arg-type]
                     rollups_maintain=False)
    try:
        with serve(app, timeout=60) as c:
            yield c, store
    finally:
        store.close()


def test_cursor_pages_through_samples_that_share_a_timestamp(
        env: tuple[httpx.Client, SqliteStore]) -> None:
    c, store = env
    tid = {t["path"]: t["tag_id"] for t in c.get("/api/v1/tags").json()}[COUNT]
    store.write(Batch.of([tid] * 10, T0 + np.arange(10) * MIN, np.arange(10.0)))
    got: list[tuple[str, float]] = []
    params: dict[str, Any] = {"from": iso(T0), "to": iso(T0 + 60 * MIN), "limit": 3}
    pages = 0
    while True:  # pages of 3 end inside pairs of equal timestamps
        body = c.get(f"/api/v1/tags/{COUNT}/samples", params=params).json()
        pages += 1
        got += list(zip(body["ts"], body["value"], strict=True))
        if not body["next_cursor"]:
            break
        params = {"cursor": body["next_cursor"], "limit": 3}
    want = [(iso(T0 + i * MIN), i + half) for i in range(10) for half in (0.0, 0.5)]
    assert got == want and pages == 7


