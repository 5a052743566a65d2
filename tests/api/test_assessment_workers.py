"""``kpi.assess_workers``: an assessment whose assets are computed by worker processes
(``api.assetsplit``) answers the same JSON, bit for bit, as one process; a worker that dies,
fails or hangs is ended, logged, and its assets computed in the calling process. Against a
real SQLite store holding the simulated demo plant's history, rolled up."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api import assetsplit
from api.assessment import assess
from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import load_tiers
from config.settings import Asset, Settings
from config.times import iso, to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.helpers import one_week_demo, with_assess_workers

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
WINDOWS = {"from_": iso(to_ns(NOW - timedelta(days=3))), "to": iso(to_ns(NOW)),
           "baseline_from": iso(to_ns(NOW - timedelta(days=6))),
           "baseline_to": iso(to_ns(NOW - timedelta(days=3)))}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """The one-week demo plant's last 6 days in a store, every closed hour and day rolled up."""
    db = tmp_path_factory.mktemp("workers") / "plant.db"
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(db)}
    settings = Settings.model_validate(data)
    with SqliteStore(db) as store:
        ids = store.register_tags(tag_records(settings))
        plant = Plant(settings, now=NOW)
        for batch in plant.history_batches(ids, to_ns(NOW - timedelta(days=6)), to_ns(NOW)):
            store.write(batch)
        RollupMaintainer(KpiService(settings, store), backfill_days=None,
                         clock_ns=lambda: to_ns(NOW)).run_once()
    yield settings, db
    assetsplit.shutdown()


@pytest.fixture
def fresh() -> Iterator[None]:
    """No worker from an earlier test (and none left for the next)."""
    assetsplit.shutdown()
    yield
    assetsplit.shutdown()


def _with(settings: Settings, workers: int) -> Settings:
    return with_assess_workers(settings, workers)


def _assessed(settings: Settings, store: SqliteStore) -> str:
    service = KpiService(settings, store)
    with service.snapshot():
        return json.dumps(assess(settings, service, load_tiers(), now=NOW, **WINDOWS), sort_keys=True)


def test_workers_answer_the_same_json(plant: tuple[Settings, Path], fresh: None) -> None:
    settings, db = plant
    with SqliteStore(db, readonly=True) as store:
        alone = _assessed(_with(settings, 0), store)
        assert assetsplit.usage() == []  # 0: no worker started
        for n in (1, 2):
            before = sum(u["cpu_s"] for u in assetsplit.usage())
            assert _assessed(_with(settings, n), store) == alone
            used = assetsplit.usage()
            # the workers did compute: n other processes, each with CPU time of its own
            assert len(used) == n and all(u["pid"] != os.getpid() for u in used)
            assert sum(u["cpu_s"] for u in used) > before
        # warm: the same workers answer again, the same JSON
        pids = {u["pid"] for u in assetsplit.usage()}
        assert _assessed(_with(settings, 2), store) == alone
        assert {u["pid"] for u in assetsplit.usage()} == pids
    body = json.loads(alone)
    assert len(body["assets"]) == len(settings.assets) > 2
    assert body["figures"]["automation_rate"]["value"]["point"] is not None


def test_a_killed_worker_is_replaced(plant: tuple[Settings, Path], fresh: None,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """A worker killed between two assessments: the next one computes its assets here (the
    same JSON) with a WARNING naming it, and the one after starts a new worker."""
    settings, db = plant
    one = _with(settings, 1)
    with SqliteStore(db, readonly=True) as store:
        want = _assessed(one, store)
        (pid,) = [u["pid"] for u in assetsplit.usage()]
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # gone (left for the pool to reap)
        with caplog.at_level(logging.WARNING, logger="tierproof.assetsplit"):
            assert _assessed(one, store) == want
        assert [r for r in caplog.records if f"pid {pid}" in r.getMessage()
                and "computed in this process" in r.getMessage()]
        assert assetsplit.usage() == []
        assert _assessed(one, store) == want
        assert [u["pid"] for u in assetsplit.usage()] not in ([], [pid])


def _paths(service: KpiService, assets: list[Asset], how: str, caller: int) -> list[str]:
    """The assets' paths; in a worker (a process other than ``caller``), first ``how``: die,
    raise or hang."""
    if os.getpid() != caller:
        if how == "die":
            os._exit(3)
        if how == "raise":
            raise RuntimeError("only in a worker")
        if how == "hang":
            time.sleep(600)
    return [a.path for a in assets]


@pytest.mark.parametrize(("how", "logged"), [
    ("die", "ended (exit code 3"),
    ("raise", "RuntimeError: only in a worker"),
    ("hang", "did not answer within"),
])
def test_a_failing_worker_is_computed_here(
    plant: tuple[Settings, Path], fresh: None, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, how: str, logged: str,
) -> None:
    """A worker that dies, raises or hangs during its run: ended, logged, its run computed in
    this process -- the answer is every run's, in register order, never a missing one."""
    settings, db = plant
    if how == "hang":  # ended after ~1 s, not 60
        monkeypatch.setattr(assetsplit, "_GRACE_S", 1.0)
    with SqliteStore(db, readonly=True) as store:
        service = KpiService(_with(settings, 2), store)
        with caplog.at_level(logging.WARNING, logger="tierproof.assetsplit"), service.snapshot():
            runs = assetsplit.map_assets(service, _paths, how, os.getpid())
    assert len(runs) == 3 and all(runs)
    assert [p for run in runs for p in run] == [a.path for a in settings.assets]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all(logged in m for m in warned), warned
    assert assetsplit.usage() == []  # both ended


def test_workers_off_after_repeated_failures(plant: tuple[Settings, Path], fresh: None,
                                             caplog: pytest.LogCaptureFixture) -> None:
    settings, db = plant
    with SqliteStore(db, readonly=True) as store:
        service = KpiService(_with(settings, 1), store)
        with caplog.at_level(logging.WARNING, logger="tierproof.assetsplit"), service.snapshot():
            for _ in range(3):
                assert assetsplit.workers_for(service) == 1
                assetsplit.map_assets(service, _paths, "raise", os.getpid())
            assert assetsplit.workers_for(service) == 0
            assert assetsplit.map_assets(service, _paths, "raise", os.getpid()) == [
                [a.path for a in settings.assets]]
        assert [r for r in caplog.records
                if r.levelno == logging.ERROR and "off for this process" in r.getMessage()]
        assetsplit.shutdown()  # on again
        assert assetsplit.workers_for(service) == 1


def test_unset_workers_only_for_a_large_register(plant: tuple[Settings, Path], fresh: None) -> None:
    """``kpi.assess_workers`` unset: no worker for the demo's register (a worker's start and
    the split's fixed cost outweigh half its work), one per extra core from 64 assets on; a
    set value applies at any size."""
    settings, db = plant
    unset = with_assess_workers(settings, None)
    assert len(unset.assets) < 64
    big = unset.model_copy(update={"assets": [
        a.model_copy(update={"path": f"{a.path}-{k}"}) for k in range(64 // len(unset.assets) + 1)
        for a in unset.assets]})
    with SqliteStore(db, readonly=True) as store:
        assert assetsplit.workers_for(KpiService(unset, store)) == 0
        assert assetsplit.workers_for(KpiService(_with(settings, 1), store)) == 1
        assert assetsplit.workers_for(KpiService(big, store)) == len(os.sched_getaffinity(0)) - 1
