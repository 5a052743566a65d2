"""The spool against a real InfluxDB 1.6 (issue 13, items 4 and 7):

- once InfluxDB is down the drain probes its /ping every ``probe_interval_s``, so the spool
  drains within seconds of its return, not after the backoff (here 30 s or more): asserted by
  counts (the points were sent right after an answered probe, before any backoff retry);
- 401 (a password changed under the gateway) and 403 (a revoked grant), from an InfluxDB with
  authentication on, are retried with the backoff and never quarantined; the status says so,
  and every point arrives once the credentials work again;
- /api/v1/health is ``degraded`` (503) naming the sink while InfluxDB is down and ``ok`` (200)
  after it drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from config.base import Backoff
from config.store import InfluxStoreSettings, SpoolSettings
from store import SpooledStore, open_store
from tests.helpers import key_headers, wait_for
from tests.influx_servers import InfluxDB16, ServerFailed
from tests.store.spool.test_spool_influx import batch_k, expected, stored, tag_records

pytestmark = pytest.mark.influxdb

#: the backoff alone would wait 24 s or more before its first retry (30 s +-20 %)
SLOW = Backoff(initial_s=30.0, max_s=60.0, multiplier=2.0, jitter=0.2)
FAST = Backoff(initial_s=0.05, max_s=0.3, multiplier=2.0, jitter=0.1)


def influx_settings(
    server: InfluxDB16, tmp_path: Path, backoff: Backoff, **kw: object
) -> InfluxStoreSettings:
    return InfluxStoreSettings(
        type="influx", api="v1", url=server.url, database=server.database, timeout_s=3.0,
        meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"), backoff=backoff, probe_interval_s=0.2),
        **kw,  # type: ignore[arg-type]
    )


def test_drain_resumes_right_after_a_probe_not_after_the_backoff(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    store = open_store(influx_settings(influxdb16, tmp_path, SLOW))
    assert isinstance(store, SpooledStore)
    try:
        ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
        store.write(batch_k(0, ids))
        influxdb16.stop()
        for k in range(1, 6):
            store.write(batch_k(k, ids))
        st = store.spool_stats()
        assert (st["sink"], st["batches"]) == ("unavailable", 5)
        assert st["retry_delay_s"] >= 24  # the backoff: the first retry is far away
        assert "probing every 0.2 s" in st["status"]
        wait_for(lambda: store.spool_stats()["probes"] >= 2, 10, "probes while InfluxDB is down")
        assert store.spool_stats()["probes_answered"] == 0
        influxdb16.start()
        # well below the backoff's 24 s: only a probe can have sent it this early
        assert store.wait_drained(15), store.spool_stats()
        st = store.spool_stats()
        assert st["probes_answered"] == 1
        assert st["drained_after_probe_points"] == st["drained_points"] == 5 * len(batch_k(1, ids))
        assert (st["sink"], st["status"], st["retry_at_ns"]) == ("ok", "ok", None)
        assert stored(influxdb16) == expected(range(6), ids)
    finally:
        store.close()


class AuthInfluxDB16(InfluxDB16):
    """InfluxDB 1.6 with authentication on: an admin and a user ``writer`` allowed to write."""

    name = "influxd-auth"
    ADMIN = ("admin", "admin-secret")

    def _config(self) -> str:
        return super()._config().replace("auth-enabled = false", "auth-enabled = true")

    def query(self, q: str, database: str | None = None) -> dict[str, object]:
        params = {"q": q, "epoch": "ns", **({"db": database} if database else {})}
        r = httpx.post(f"{self.url}/query", data=params, auth=self.ADMIN, timeout=30.0)
        r.raise_for_status()
        body: dict[str, object] = r.json()
        results = body.get("results")
        if isinstance(results, list) and results and "error" in results[0]:
            raise RuntimeError(f"{q}: {results[0]['error']}")
        return body

    def start(self) -> None:
        super(InfluxDB16, self).start()  # the server only: no user exists yet
        # the first admin may be created without credentials (and only then)
        httpx.post(f"{self.url}/query", timeout=30.0, data={
            "q": f"CREATE USER {self.ADMIN[0]} WITH PASSWORD '{self.ADMIN[1]}' WITH ALL PRIVILEGES"})
        self.create_database()
        self.query("CREATE USER writer WITH PASSWORD 'right'")
        self.query(f'GRANT WRITE ON "{self.database}" TO writer')


@pytest.fixture
def influxdb16_auth(tmp_path: Path) -> Iterator[AuthInfluxDB16]:
    server = AuthInfluxDB16(tmp_path / "influxdb-auth")
    try:
        try:
            server.start()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("status", "break_it", "fix_it"),
    [
        (401, "SET PASSWORD FOR writer = 'rotated'", "SET PASSWORD FOR writer = 'right'"),
        (403, 'REVOKE WRITE ON "tierproof" FROM writer', 'GRANT WRITE ON "tierproof" TO writer'),
    ],
    ids=["401-password-changed", "403-grant-revoked"],
)
def test_refused_credentials_are_retried_never_quarantined(
    influxdb16_auth: AuthInfluxDB16, tmp_path: Path, status: int, break_it: str, fix_it: str
) -> None:
    srv = influxdb16_auth
    store = open_store(influx_settings(srv, tmp_path, FAST, username="writer", password=SecretStr("right")))
    assert isinstance(store, SpooledStore)
    try:
        ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
        store.write(batch_k(0, ids))
        srv.query(break_it)
        for k in range(1, 4):
            store.write(batch_k(k, ids))
        st = wait_for(lambda: (s := store.spool_stats())["retry_delay_s"] and s, 10, "a retry scheduled")
        assert (st["sink"], st["quarantined_batches"]) == ("unauthorized", 0)
        assert st["status"].startswith(f"InfluxDB refuses our credentials ({status}): retrying every ")
        assert "right" not in st["status"]  # the password is never shown
        # it keeps retrying (the backoff is short here) and keeps the batches
        wait_for(lambda: store.spool_stats()["last_error_at_ns"] != st["last_error_at_ns"], 10,
                 "another attempt")
        assert (store.spool_stats()["batches"], store.spool_stats()["quarantined_batches"]) == (3, 0)
        srv.query(fix_it)
        assert store.wait_drained(15), store.spool_stats()
        st = store.spool_stats()
        assert (st["sink"], st["quarantined_batches"], st["dropped_points"]) == ("ok", 0, 0)
        assert stored(srv) == expected(range(4), ids)
    finally:
        store.close()


async def test_health_is_degraded_while_influxdb_is_down_and_ok_after(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    from api.app import create_app
    from config.settings import Settings

    cfg = influx_settings(influxdb16, tmp_path, SLOW)
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
    headers = key_headers(Settings(store=cfg))  # api.auth: every test sends a key
    app = create_app(Settings(store=cfg), store=store, collect=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
    ) as client:
        r = await client.get("/api/v1/health")
        assert (r.status_code, r.json()["status"], r.json()["reasons"]) == (200, "ok", [])
        await asyncio.to_thread(influxdb16.stop)
        await asyncio.to_thread(store.write, batch_k(0, ids))
        r = await client.get("/api/v1/health")
        assert (r.status_code, r.json()["status"]) == (503, "degraded")
        (reason,) = r.json()["reasons"]
        assert (reason["part"], reason["name"]) == ("sink", "influx")
        assert reason["reason"].startswith("InfluxDB unavailable: retrying every ")
        assert "Connection refused" in reason["reason"]
        assert str(tmp_path) not in r.text and "meta.db" not in r.text  # no file locations
        await asyncio.to_thread(influxdb16.start)
        assert await asyncio.to_thread(store.wait_drained, 15)
        r = await client.get("/api/v1/health")
        assert (r.status_code, r.json()["status"], r.json()["reasons"]) == (200, "ok", [])
        assert r.json()["store"]["spool"]["probes_answered"] == 1


async def test_health_is_degraded_by_spool_damage_found_at_this_start(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    """A gateway restarted on a damaged spool: the intact batches drain, the lost one is counted,
    and health says so (until the next start; the count stays in the spool status)."""
    from api.app import create_app
    from config.settings import Settings
    from store.spool import Spool

    cfg = influx_settings(influxdb16, tmp_path, FAST)
    store = open_store(cfg)
    ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
    store.close()
    with Spool(cfg.spool.path, cfg.spool.max_bytes) as sp:  # left by a run that could not send
        for k in range(3):
            sp.append(batch_k(k, ids))
    (seg,) = sorted(Path(cfg.spool.path).glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8  # inside batch 1's record
    seg.write_bytes(bytes(data))
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    headers = key_headers(Settings(store=cfg))  # api.auth: every test sends a key
    app = create_app(Settings(store=cfg), store=store, collect=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
    ) as client:
        assert await asyncio.to_thread(store.wait_drained, 15)
        r = await client.get("/api/v1/health")
        assert (r.status_code, r.json()["status"]) == (503, "degraded")
        (reason,) = r.json()["reasons"]
        assert (reason["part"], reason["name"]) == ("spool", "spool")
        assert reason["reason"].startswith("1 spooled batches lost to damaged")
        spool = r.json()["store"]["spool"]
        assert (spool["lost_batches"], spool["lost_points"], spool["sink"]) == (1, len(batch_k(1, ids)), "ok")
        assert any(seg.name in d for d in spool["damage"]) and str(tmp_path) not in r.text
    assert stored(influxdb16) == expected([0, 2], ids)
