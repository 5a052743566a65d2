"""SpooledStore against a real InfluxDB 1.6: outage, gateway crash, refusal and replay.

Every point is checked by reading InfluxDB back with InfluxQL. Batches also *correct* a point
of the batch before them (same series and time, new value): InfluxDB keeps the last value
written, so a batch delivered out of order shows up as a stale value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.cli import main as cli
from config.base import Backoff
from config.errors import StoreError
from config.store import InfluxStoreSettings, SpoolSettings
from store import SpooledStore, TagRecord, open_store
from store.batch import Batch
from store.influx import InfluxStore
from store.spool import Spool
from store.spool.quarantine import Quarantine
from tests.helpers import key_headers, wait_for
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_760_000_000_000_000_000
TAGS = 8
PER_TAG = 25
FAST = Backoff(initial_s=0.05, max_s=0.5, multiplier=2.0, jitter=0.1)


def tag_records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/area/line1/m1/s{i}", asset="plant/area/line1/m1", role="analog",
                      device="plc1", protocol="modbus") for i in range(TAGS)]


def batch_k(k: int, ids: list[int]) -> Batch:
    """Batch ``k``: PER_TAG new points per tag, plus (k > 0) a correction of the first point
    of batch k-1 of every tag, to value -k."""
    tid = np.repeat(np.array(ids, np.int32), PER_TAG)
    i = np.tile(np.arange(PER_TAG), len(ids))
    ts = T0 + k * 1_000_000 + i * 1000
    val = k * 1000.0 + i
    if k > 0:
        tid = np.concatenate([tid, np.array(ids, np.int32)])
        ts = np.concatenate([ts, np.full(len(ids), T0 + (k - 1) * 1_000_000)])
        val = np.concatenate([val, np.full(len(ids), -float(k))])
    return Batch.of(tid, ts, val)


def expected(batches: range | list[int], ids: list[int]) -> dict[str, dict[int, float]]:
    """signal -> {ts: value} after writing ``batches`` in order."""
    out: dict[str, dict[int, float]] = {f"s{i}": {} for i in range(TAGS)}
    sig = {tid: f"s{n}" for n, tid in enumerate(ids)}
    for k in batches:
        b = batch_k(k, ids)
        for t, ts, v in zip(b.tag_id.tolist(), b.ts_ns.tolist(), b.value.tolist(), strict=True):
            out[sig[t]][ts] = v
    return out


def stored(server: InfluxDB16, database: str | None = None) -> dict[str, dict[int, float]]:
    """signal -> {ts: value}, read with InfluxQL."""
    body: Any = server.query('SELECT "value" FROM "tierproof" GROUP BY "signal"', database or server.database)
    out: dict[str, dict[int, float]] = {f"s{i}": {} for i in range(TAGS)}
    for series in body["results"][0].get("series", []):
        out[series["tags"]["signal"]] = {int(ts): float(v) for ts, v in series["values"]}
    return out


def settings(server: InfluxDB16, tmp_path: Path, database: str | None = None) -> InfluxStoreSettings:
    return InfluxStoreSettings(
        type="influx", api="v1", url=server.url, database=database or server.database, timeout_s=3.0,
        meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"), backoff=FAST),
    )


def write_config(tmp_path: Path, cfg: InfluxStoreSettings) -> Path:
    """A gateway configuration file with this store (JSON is YAML)."""
    conf = tmp_path / "gateway.yaml"
    conf.write_text(json.dumps({"store": cfg.model_dump(mode="json") | {"password": None, "token": None}}))
    return conf


@pytest.fixture
def spooled(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[tuple[SpooledStore, list[int]]]:
    store = open_store(settings(influxdb16, tmp_path))
    assert isinstance(store, SpooledStore)
    try:
        ids = store.register_tags(tag_records())
        yield store, [ids[t.path] for t in tag_records()]
    finally:
        store.close()


def test_outage_mid_ingest_every_point_arrives_once_in_order(
    influxdb16: InfluxDB16, spooled: tuple[SpooledStore, list[int]]
) -> None:
    store, ids = spooled
    restarted = threading.Event()
    progress = [0]
    errors: list[BaseException] = []

    def ingest() -> None:  # a collector's writer thread, never pausing for the outage
        try:
            k, after_restart = 0, 0
            while after_restart < 60:  # until 60 batches after the server is back
                store.write(batch_k(k, ids))
                k += 1
                progress[0] = k
                after_restart += restarted.is_set()
                threading.Event().wait(0.01)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=ingest)
    t.start()
    wait_for(lambda: progress[0] >= 40, 30, "40 batches written directly")
    influxdb16.stop()
    at_stop = progress[0]
    wait_for(lambda: len(store.spool) >= 30, 30, "30 batches spooled during the outage")
    assert store.spool_stats()["sink"] == "unavailable"
    influxdb16.start()
    restarted.set()
    t.join(60)
    assert not errors and not t.is_alive()
    n_batches = progress[0]
    assert n_batches >= at_stop + 30 + 60
    assert store.wait_drained(60), f"spool not drained: {store.spool_stats()}"

    got = stored(influxdb16)
    want = expected(range(n_batches), ids)
    for sig in want:
        assert len(got[sig]) == len(want[sig]) == n_batches * PER_TAG
        assert got[sig] == want[sig], f"{sig}: a batch arrived out of order or not at all"
    f = store.forward
    assert f.spooled_points > 0 and f.direct_points > 0
    # each accepted point went to the sink exactly once: directly or from the spool
    assert f.direct_points + f.drained_points == sum(len(batch_k(k, ids)) for k in range(n_batches))
    s = store.spool_stats()
    assert (s["batches"], s["points"], s["dropped_points"], s["quarantined_batches"]) == (0, 0, 0, 0)


CHILD = textwrap.dedent("""
    # a gateway's write path: SpooledStore over InfluxStore, writing batch after batch
    import json, sys, time
    from config.store import InfluxStoreSettings
    from store import open_store
    from tests.store.spool.test_spool_influx import batch_k, tag_records

    cfg, first, last = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    settings = InfluxStoreSettings.model_validate(cfg)
    if sys.argv[4] == "crash-mid-drain":  # two batches per request; killed after the 20th
        import os, signal
        from store import InfluxStore, SpooledStore
        inner = InfluxStore(settings)
        send, sent = inner.write, [0]
        def send_then_crash(batch):
            send(batch)
            sent[0] += 1
            if sent[0] == 20:  # InfluxDB has the batches; the spool has not yet recorded it
                os.kill(os.getpid(), signal.SIGKILL)
        inner.write = send_then_crash
        store = SpooledStore.open(inner, settings.spool, drain_points=450)
    else:
        store = open_store(settings)
    ids = store.register_tags(tag_records())
    ids = [ids[t.path] for t in tag_records()]
    print("spooled at start", len(store.spool), flush=True)
    for k in range(first, last):
        store.write(batch_k(k, ids))
        print("acked", k, flush=True)
    if sys.argv[4] == "drain":
        print("drained", store.wait_drained(60), flush=True)
        store.close()
    else:
        time.sleep(600)  # until killed
""")


def run_child(cfg: InfluxStoreSettings, first: int, last: int, mode: str) -> subprocess.Popen[str]:
    arg = json.dumps(cfg.model_dump(mode="json") | {"password": None, "token": None})
    return subprocess.Popen([sys.executable, "-c", CHILD, arg, str(first), str(last), mode], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def test_kill_9_with_spooled_batches_loses_nothing(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    cfg = settings(influxdb16, tmp_path)
    influxdb16.stop()  # everything the gateway accepts now waits in the spool
    acked: list[int] = []
    with run_child(cfg, 0, 10_000, "run") as child:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["spooled", "at", "start", "0"]
        while len(acked) < 60:
            line = child.stdout.readline().split()
            assert line[0] == "acked", line
            acked.append(int(line[1]))
        os.kill(child.pid, signal.SIGKILL)  # mid-append, most likely
        acked += [int(ln.split()[1]) for ln in child.stdout.read().splitlines()]
    assert acked == list(range(len(acked)))
    ro = Spool(cfg.spool.path, cfg.spool.max_bytes, readonly=True)
    assert len(ro) >= len(acked), "every acknowledged batch is in the spool"
    ro.close()

    influxdb16.start()
    last = len(acked) + 1 + 20  # batch len(acked) may have been spooled unacknowledged
    with run_child(cfg, len(acked) + 1, last, "drain") as child:
        assert child.stdout is not None
        out = child.stdout.read().splitlines()
    assert child.returncode == 0, out
    restarted_with = int(out[0].split()[-1])
    assert restarted_with >= len(acked)
    assert out[-1] == "drained True"

    got = stored(influxdb16)
    ids = list(range(TAGS))  # what is expected per signal does not depend on the ids
    with_unacked = expected([*range(len(acked) + 1), *range(len(acked) + 1, last)], ids)
    without = expected([*range(len(acked)), *range(len(acked) + 1, last)], ids)
    assert got in (with_unacked, without), "lost, duplicated or reordered points after the crash"


def test_kill_9_mid_drain_sends_the_rest_after_restart(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """A crash between sending spooled batches and recording it: after the restart they are
    sent again (at least once), and InfluxDB still holds each point once, in order."""
    cfg = settings(influxdb16, tmp_path)
    influxdb16.stop()
    n = 300
    with run_child(cfg, 0, n, "drain") as child:  # spools all n, then waits (in vain) for the sink
        assert child.stdout is not None
        for _ in range(n + 1):
            child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
    influxdb16.start()

    def spooled_now() -> int:
        with Spool(cfg.spool.path, cfg.spool.max_bytes, readonly=True) as ro:
            return len(ro)

    assert spooled_now() == n
    # the child kills itself between a send and its record: a parent watching the spool and
    # killing the child raced the drain (on a loaded machine it could drain all n first)
    with run_child(cfg, n, n, "crash-mid-drain") as child:
        assert child.wait(120) == -signal.SIGKILL
    left = spooled_now()
    assert 0 < left < n, f"killed with {left} of {n} batches still spooled"
    with run_child(cfg, n, n + 10, "drain") as child:
        assert child.stdout is not None
        out = child.stdout.read().splitlines()
    assert out[0] == f"spooled at start {left}" and out[-1] == "drained True", out
    assert stored(influxdb16) == expected(range(n + 10), list(range(TAGS)))


def test_refused_batch_is_quarantined_then_replayed_from_the_cli(
    influxdb16: InfluxDB16, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = settings(influxdb16, tmp_path, database="plant")  # no such database yet: 404
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    try:
        ids = store.register_tags(tag_records())
        idl = [ids[t.path] for t in tag_records()]
        store.write(batch_k(0, idl))  # accepted: kept in the quarantine, not lost
        s = store.spool_stats()
        assert (s["quarantined_batches"], s["quarantined_points"], s["batches"]) == (1, TAGS * PER_TAG, 0)
        (entry,) = store.quarantine.entries()
        assert entry.status == 404 and "database not found" in entry.reason

        conf = write_config(tmp_path, cfg)
        capsys.readouterr()
        assert cli(["spool", "list", "--config", str(conf)]) == 0
        listing = capsys.readouterr().out
        assert f"{entry.id}" in listing and "404" in listing and "database not found" in listing

        assert cli(["spool", "replay", "--config", str(conf), "--all"]) == 1  # still no database
        assert "refused again: 404" in capsys.readouterr().out
        assert store.quarantine.entries()[0].attempts == 2

        influxdb16.create_database("plant")  # the fix
        assert cli(["spool", "replay", "--config", str(conf), "--quarantine", str(entry.id)]) == 0
        assert "replayed 1 of 1" in capsys.readouterr().out
        assert store.quarantine.entries() == []
        assert stored(influxdb16, "plant") == expected([0], idl)
        assert store.quarantine.stats().replayed_points == TAGS * PER_TAG
    finally:
        store.close()


def test_drop_needs_yes_and_is_counted(influxdb16: InfluxDB16, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = settings(influxdb16, tmp_path, database="nowhere")
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    try:
        ids = store.register_tags(tag_records())
        store.write(batch_k(0, [ids[t.path] for t in tag_records()]))
        conf = write_config(tmp_path, cfg)
        assert cli(["spool", "drop", "--config", str(conf), "--all"]) == 2
        assert "without --yes" in capsys.readouterr().err
        assert cli(["spool", "drop", "--config", str(conf), "--quarantine", "99", "--yes"]) == 1
        assert "no quarantined batch 99" in capsys.readouterr().err
        assert cli(["spool", "drop", "--config", str(conf), "--all", "--yes"]) == 0
        assert f"{TAGS * PER_TAG:,} points" in capsys.readouterr().out
        s = store.spool_stats()
        assert (s["quarantined_batches"], s["dropped_points"]) == (0, TAGS * PER_TAG)
    finally:
        store.close()


async def test_health_and_spool_endpoint_show_waiting_and_dropped_points(
    influxdb16: InfluxDB16, spooled: tuple[SpooledStore, list[int]], tmp_path: Path
) -> None:
    import asyncio

    import httpx

    from api.app import create_app
    from api.routes.gateway import SpoolOut
    from config.settings import Settings

    store, ids = spooled
    influxdb16.stop()
    store.write(batch_k(0, ids))
    store.write(batch_k(1, ids))
    gateway = Settings(store=settings(influxdb16, tmp_path))
    headers = key_headers(gateway)  # api.auth: every test sends a key
    app = create_app(gateway, store=store, collect=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
    ) as client:
        spool = (await client.get("/api/v1/health")).json()["store"]["spool"]
        assert (spool["sink"], spool["batches"], spool["dropped_points"]) == ("unavailable", 2, 0)
        assert "Connection refused" in spool["last_error"] and spool["last_error_at"].startswith("20")
        assert spool["points"] == len(batch_k(0, ids)) + len(batch_k(1, ids))
        assert spool["oldest"].startswith("2025-10-09")  # T0, ISO 8601
        again = (await client.get("/api/v1/store/spool")).json()
        # the drain keeps retrying meanwhile, each time with a new jittered delay (in status too)
        volatile = {"last_error", "last_error_at", "retry_at", "retry_delay_s", "status"}
        assert set(again) == set(spool)
        # its response model declares every figure (/health's store.spool is not filtered)
        assert set(SpoolOut.model_validate(again).model_dump()) == set(spool)
        assert {k: v for k, v in again.items() if k not in volatile} == {
            k: v for k, v in spool.items() if k not in volatile}
        await asyncio.to_thread(influxdb16.start)
        assert await asyncio.to_thread(store.wait_drained, 30)
        after = (await client.get("/api/v1/store/spool")).json()
        assert (after["sink"], after["batches"], after["points"], after["oldest"]) == ("ok", 0, 0, None)


@pytest.mark.parametrize("when_full", ["drop_oldest", "refuse_newest"])
def test_full_spool_policy_counts_every_dropped_point(
    influxdb16: InfluxDB16, tmp_path: Path, when_full: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = settings(influxdb16, tmp_path)
    cfg = cfg.model_copy(update={"spool": cfg.spool.model_copy(
        update={"max_bytes": 1 << 16, "when_full": when_full})})
    influxdb16.stop()
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    try:
        ids = store.register_tags(tag_records())
        idl = [ids[t.path] for t in tag_records()]
        accepted, refused = [], []
        for k in range(40):
            try:
                store.write(batch_k(k, idl))
                accepted.append(k)
            except StoreError as exc:
                assert f"refused {len(batch_k(k, idl))} points" in str(exc)
                refused.append(k)
        s = store.spool_stats()
        kept = [e.seq for e in store.spool.entries()]
        if when_full == "refuse_newest":
            assert refused and accepted == list(range(len(accepted)))  # the first ones, then none
            assert s["refused_newest_points"] == sum(len(batch_k(k, idl)) for k in refused)
            assert kept == list(range(len(accepted)))
            sent = accepted
        else:
            assert not refused
            sent = list(range(40 - len(kept), 40))  # the newest that fit
            assert s["dropped_oldest_points"] == sum(len(batch_k(k, idl)) for k in range(40 - len(kept)))
            assert "points dropped in all" in caplog.text
        assert s["dropped_points"] == sum(len(batch_k(k, idl)) for k in range(40) if k not in sent)
        influxdb16.start()
        assert store.wait_drained(30)
        assert stored(influxdb16) == expected(sent, idl)
    finally:
        store.close()


def test_flush_interval_gathers_small_batches_into_few_posts(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """flush_interval_s > 0: batches wait (durably) in the spool and go out together."""
    cfg = settings(influxdb16, tmp_path).model_copy(update={"flush_interval_s": 2.0})
    store = open_store(cfg)
    assert isinstance(store, SpooledStore)
    try:
        ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
        for k in range(10):
            store.write(batch_k(k, ids))
        # accepted at once, posted later: nothing is in InfluxDB yet, all of it in the spool
        f = store.forward
        assert (f.direct_points, f.spooled_batches, len(store.spool)) == (0, 10, 10)
        assert stored(influxdb16) == {f"s{i}": {} for i in range(TAGS)}
        assert store.wait_drained(10)
        assert stored(influxdb16) == expected(range(10), ids)
        # the ten batches went out in one request (all within one flush interval)
        assert store.inner.stats().batches_written == 1
        # a batch written after the flush waits for the next one; close() sends it
        store.write(batch_k(10, ids))
        assert len(store.spool) == 1
    finally:
        store.close()
    assert stored(influxdb16) == expected(range(11), ids)


def nearly_full_quarantine(path: Path, ids: list[int]) -> Quarantine:
    """A quarantine holding one refused batch, with room for ~100 bytes more: too little
    for any other batch."""
    Quarantine(path, 1 << 30).add(batch_k(0, ids), 400, "an earlier refusal")
    used = sum(p.stat().st_size for p in path.glob("q-*.rec"))
    return Quarantine(path, used + 100)


def test_full_quarantine_drops_a_refused_batch_once_and_the_drain_goes_on(
    influxdb16: InfluxDB16, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A poison batch InfluxDB refuses for good, alone and with others (a text over influxd's
    25 MB max-body-size: 413), spooled in front of a good batch while the quarantine is full:
    the poison batch is dropped and counted once, the good one still reaches InfluxDB."""
    cfg = settings(influxdb16, tmp_path).model_copy(update={"gzip": False})  # the body itself is too large
    inner = InfluxStore(cfg)
    ids = [inner.register_tags(tag_records())[t.path] for t in tag_records()]
    quarantine = nearly_full_quarantine(tmp_path / "quarantine", ids)
    poison = dataclasses.replace(Batch.of([ids[0]], T0 - 1, float("nan")),
                                 text=np.array(["x" * 25_000_001], dtype=object))
    good = batch_k(1, ids)
    # flush_points: the drain starts once both wait, so they go out together first (one 413)
    store = SpooledStore(inner, Spool(tmp_path / "spool", 1 << 30, "drop_oldest"), quarantine, FAST,
                         flush_interval_s=3600.0, flush_points=len(poison) + len(good))
    try:
        store.write(poison)
        store.write(good)
        assert store.wait_drained(30)
        s = store.spool_stats()
        assert (s["dropped_points"], s["quarantine_dropped_points"], s["quarantined_batches"]) == (1, 1, 1)
        assert store.forward.drained_points == len(good) and store.forward.quarantined_batches == 0
        assert stored(influxdb16) == expected([1], ids)
        store.write(batch_k(2, ids))  # draining goes on, and the drop is not counted again
        store.write(batch_k(3, ids))  # (together over flush_points)
        assert store.wait_drained(30)
        assert stored(influxdb16) == expected([1, 2, 3], ids)
        assert store.spool_stats()["dropped_points"] == 1
    finally:
        store.close()
    assert caplog.text.count("dropped a refused batch of 1 points") == 1
    assert "Request Entity Too Large" in caplog.text


def test_full_quarantine_refused_direct_write_returns_and_counts_once(
    influxdb16: InfluxDB16, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written straight to the sink (the spool empty) and refused for good (a time influxd
    cannot hold: 400 "time outside range") with the quarantine full: ``write`` returns (the
    drop is counted and logged; raising would only make an MQTT source redeliver it forever)."""
    inner = InfluxStore(settings(influxdb16, tmp_path))
    ids = [inner.register_tags(tag_records())[t.path] for t in tag_records()]
    quarantine = nearly_full_quarantine(tmp_path / "quarantine", ids)
    store = SpooledStore(inner, Spool(tmp_path / "spool", 1 << 30, "drop_oldest"), quarantine, FAST)
    try:
        poison = Batch.of(np.array(ids, np.int32), 2**63 - 1, 1.0)
        store.write(poison)
        store.write(batch_k(1, ids))
        s = store.spool_stats()
        assert (s["dropped_points"], s["quarantined_batches"], s["batches"]) == (TAGS, 1, 0)
        assert store.forward.direct_points == len(batch_k(1, ids))
        assert stored(influxdb16) == expected([1], ids)
    finally:
        store.close()
    assert caplog.text.count(f"dropped a refused batch of {TAGS} points") == 1


def test_partial_write_is_delivered_and_its_dropped_points_shown(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    """InfluxDB 1.6 stores a batch but drops its points older than the retention policy
    (400 "partial write: points beyond retention policy dropped=N"): not quarantined, the
    drop counted where health and the spool endpoint show it."""
    db = influxdb16.create_database("hourly")
    influxdb16.query(f'CREATE RETENTION POLICY "hour" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    store = open_store(settings(influxdb16, tmp_path, database=db))
    assert isinstance(store, SpooledStore)
    try:
        ids = [store.register_tags(tag_records())[t.path] for t in tag_records()]
        now = time.time_ns()
        old = now - 86_400 * 10**9
        store.write(Batch.of(np.array(ids + ids, np.int32), np.repeat([old, now], TAGS), 1.0))
        s = store.spool_stats()
        assert s["partial_write_dropped_points"] == TAGS
        assert (s["quarantined_batches"], s["dropped_points"], s["batches"]) == (0, 0, 0)
        assert store.stats().extra["partial_write_dropped_points"] == TAGS  # health copies it
        assert {sig: list(v) for sig, v in stored(influxdb16, db).items()} == {
            f"s{i}": [now] for i in range(TAGS)}
    finally:
        store.close()


def test_partial_write_sent_again_after_a_refusal_is_counted_once(
    influxdb16: InfluxDB16, tmp_path: Path
) -> None:
    """Two spooled batches go out together: the first partly dropped (a point beyond the
    retention policy), the second refused for good (a time influxd cannot hold). The drain
    sends them again one by one: the first batch's dropped points count once, not twice."""
    db = influxdb16.create_database("hourly")
    influxdb16.query(f'CREATE RETENTION POLICY "hour" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    now = time.time_ns()
    old = now - 86_400 * 10**9
    cfg = settings(influxdb16, tmp_path, database=db).model_copy(update={"batch_size": 2 * TAGS})
    inner = InfluxStore(cfg)
    ids = [inner.register_tags(tag_records())[t.path] for t in tag_records()]
    partly = Batch.of(np.array(ids + ids, np.int32), np.repeat([old, now], TAGS), 1.0)
    refused = Batch.of(np.array(ids, np.int32), 2**63 - 1, 2.0)
    # one body per batch (batch_size); flush_points: both batches go out in one drain first
    store = SpooledStore(inner, Spool(tmp_path / "spool", 1 << 30, "drop_oldest"),
                         Quarantine(tmp_path / "quarantine", 1 << 30), FAST,
                         flush_interval_s=3600.0, flush_points=len(partly) + len(refused))
    try:
        store.write(partly)
        store.write(refused)
        assert store.wait_drained(30)
        s = store.spool_stats()
        assert (s["partial_write_dropped_points"], s["quarantined_points"]) == (TAGS, TAGS)
        assert {sig: list(v) for sig, v in stored(influxdb16, db).items()} == {
            f"s{i}": [now] for i in range(TAGS)}
        (entry,) = store.quarantine.entries()
        assert entry.status == 400 and "time outside range" in entry.reason
    finally:
        store.close()
