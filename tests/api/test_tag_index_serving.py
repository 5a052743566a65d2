"""The API resolves tag paths through the gateway's tag index (``store.tag_index``), which lists
the store's tags again only when they change: over real HTTP against a real SQLite store, a tag
registered while serving is found by ``/tags/{path}/latest`` and ``/tags/latest``, a changed
enum renames its values at once, a tag another process registers into the same file is found
within ``recheck_s``, and answering the same tag again lists nothing; over a real InfluxDB 1.6
the same route reads from a worker thread."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.app import create_app
from config import settings_from_dict
from store import Batch, SqliteStore, TagIndex, TagRecord
from tests.api.series_server import serve
from tests.helpers import wait_for
from tests.influx_servers import InfluxDB16

ASSET = "s/a/l/m1"


def _record(signal: str, enum: dict[int, str] | None) -> TagRecord:
    return TagRecord(path=f"{ASSET}/{signal}", asset=ASSET, role="state", device="late",
                     protocol="opcua", enum=enum)


def _write(store: SqliteStore, tag_id: int, value: float) -> None:
    store.write(Batch(np.array([tag_id], np.int32), np.array([time.time_ns()], np.int64),
                      np.array([value]), np.zeros(1, np.uint8)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, SqliteStore, object]]:
    settings = settings_from_dict({
        "assets": [{"path": ASSET}], "devices": [],
        "store": {"type": "sqlite", "path": str(tmp_path / "api.db")},
    })
    store = SqliteStore(tmp_path / "api.db")
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app) as client:
            yield client, store, app
    finally:
        store.close()


def test_tag_registered_while_serving_is_found(
        served: tuple[httpx.Client, SqliteStore, object]) -> None:
    client, store, app = served
    path = f"{ASSET}/state"
    assert client.get(f"/api/v1/tags/{path}/latest").status_code == 404
    # registered in the serving process, as an OPC UA browse or a Sparkplug birth does
    tid = store.register_tags([_record("state", {7: "Executing"})])[path]
    _write(store, tid, 7.0)
    # the write's row not decoded yet: read in a worker thread; then summarised: on the loop
    assert not app.state.gateway.latest_on_loop()  # type: ignore[attr-defined]
    got = client.get(f"/api/v1/tags/{path}/latest")
    assert got.status_code == 200, got.text
    assert app.state.gateway.latest_on_loop()  # type: ignore[attr-defined]
    assert got.json()["value"] == 7.0 and got.json()["name"] == "Executing"
    batch = client.get("/api/v1/tags/latest", params={"asset": ASSET}).json()
    assert [(e["path"], e["name"]) for e in batch] == [(path, "Executing")]
    # the same tag again: answered from the index, the store's tags not listed again
    index = app.state.gateway.tags  # type: ignore[attr-defined]
    loads = index.loads
    for _ in range(5):
        assert client.get(f"/api/v1/tags/{path}/latest").json()["name"] == "Executing"
    assert index.loads == loads
    # a changed enum (a device re-mapped its codes) renames at once: the index is stale no more
    store.register_tags([_record("state", {7: "NotExecuting"})])
    assert client.get(f"/api/v1/tags/{path}/latest").json()["name"] == "NotExecuting"
    assert index.loads == loads + 1


def test_tag_registered_by_another_process_is_found(
        served: tuple[httpx.Client, SqliteStore, object], tmp_path: Path) -> None:
    client, store, app = served
    path = f"{ASSET}/other"
    assert client.get(f"/api/v1/tags/{path}/latest").status_code == 404
    # another connection to the file (as another process has): this store's number stays
    before = store.tags_version
    with SqliteStore(tmp_path / "api.db") as other:
        tid = other.register_tags([_record("other", None)])[path]
        _write(other, tid, 3.0)
    assert store.tags_version == before
    index: TagIndex = app.state.gateway.tags  # type: ignore[attr-defined]
    got = wait_for(lambda: (r := client.get(f"/api/v1/tags/{path}/latest")).status_code == 200
                   and r, index.recheck_s + 10, "the other process's tag to be found")
    assert got.json()["value"] == 3.0 and got.json()["name"] == "Executing"


def test_latest_over_influxdb(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """With InfluxDB as the store, /tags/{path}/latest (whose read runs on the event loop only
    for the embedded store) asks the real server from a worker thread, and a tag registered
    while serving is found there too."""
    settings = settings_from_dict({
        "assets": [{"path": ASSET}], "devices": [],
        "store": {"type": "influx", "api": "v1", "url": influxdb16.url, "database": "tierproof",
                  "meta_path": str(tmp_path / "meta.db")},
    })
    app = create_app(settings, collect=False, rollups_maintain=False)
    with serve(app) as client:
        gateway = app.state.gateway
        assert not gateway.latest_on_loop()
        path = f"{ASSET}/state"
        tid = gateway.store.register_tags([_record("state", {7: "Executing"})])[path]
        gateway.store.write(Batch(np.array([tid], np.int32), np.array([time.time_ns()], np.int64),
                                  np.array([7.0]), np.zeros(1, np.uint8)))
        got = wait_for(lambda: (r := client.get(f"/api/v1/tags/{path}/latest")).status_code == 200
                       and r.json()["value"] is not None and r, 30, "the sample in InfluxDB")
        assert got.json()["value"] == 7.0 and got.json()["name"] == "Executing"
