"""Single flight and the closed-result cache of the KPI routes (``api.flight``), in process
against a real SQLite store holding two days of the simulated demo plant's history. The
computation is counted by a spy around the real ``KpiService.results``; where a test must hold
a computation in flight, the spy waits on an event before doing the real work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api import deps
from api.app import create_app
from api.flight import KpiRunner
from api.service import KpiService
from config.settings import Settings
from config.times import iso, to_ns
from store import Batch
from store.changes import Changes
from store.sqlite import SqliteStore
from tests.api.test_assessment import NOW, _backfill
from tests.helpers import key_headers

DAY = {"from": iso(to_ns(NOW - timedelta(days=1))), "to": iso(to_ns(NOW))}
HOUR = {"from": iso(to_ns(NOW - timedelta(hours=2))), "to": iso(to_ns(NOW - timedelta(hours=1)))}
N = 8  # concurrent identical requests


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    settings, _ = _backfill(tmp_path_factory.mktemp("flight"), 2)
    db = Path(settings.store.path)  # type: ignore[union-attr]
    with SqliteStore(db) as store:
        store.compact()  # everything in the main file: a copy of it is the whole store
    return settings, db


@dataclass
class Spy:
    """Counts the real ``KpiService.results`` calls; while ``hold`` is clear, the first call
    waits for it (after setting ``entered``) before doing its real work."""

    calls: int = 0
    hold: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    threads: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    s = Spy()
    s.hold.set()  # not holding unless a test clears it
    real = KpiService.results

    def results(self: KpiService, *a: Any, **k: Any) -> Any:
        with s.lock:
            s.calls += 1
            s.threads.add(threading.current_thread().name)
        s.entered.set()
        assert s.hold.wait(60), "the test never released the computation"
        return real(self, *a, **k)

    monkeypatch.setattr(KpiService, "results", results)
    yield s
    s.hold.set()


@dataclass
class App:
    client: httpx.AsyncClient
    store: SqliteStore
    runner: KpiRunner
    settings: Settings


@pytest.fixture
async def app(stored: tuple[Settings, Path], tmp_path: Path) -> AsyncIterator[App]:
    settings, db = stored
    copy = tmp_path / "copy.db"  # a private copy: writes of one test must not reach another
    copy.write_bytes(db.read_bytes())
    store = SqliteStore(copy)
    headers = key_headers(settings)  # api.auth: every test sends a key
    # this process writes the store (the tests' writes stand for the gateway's collectors):
    # its change feed sees every write, and the cache is exact by it alone
    api = create_app(settings, store=store, collect=False, sole_writer=True)
    try:
        async with api.router.lifespan_context(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://tierproof", headers=headers, timeout=120
        ) as c:
            yield App(c, store, api.state.runner, settings)
    finally:
        store.close()


async def _until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` (bounded, so that a broken test fails instead of hanging)."""
    async with asyncio.timeout(60):
        while not cond():
            await asyncio.sleep(0.01)


async def test_concurrent_identical_requests_compute_once(app: App, spy: Spy) -> None:
    spy.hold.clear()
    tasks = [asyncio.create_task(app.client.get("/api/v1/kpis", params=DAY)) for _ in range(N)]
    await _until(lambda: app.runner.stats.joined == N - 1)  # all but one await the first
    spy.hold.set()
    got = await asyncio.gather(*tasks)
    assert [r.status_code for r in got] == [200] * N
    assert len({r.content for r in got}) == 1  # the same bytes for everyone
    assert spy.calls == 1
    assert app.runner.stats.computed == 1
    assert got[0].json()["window"] == DAY
    # the computation ran in the runner's own worker threads, not in the event loop's
    assert spy.threads and all(t.startswith("tierproof-kpi") for t in spy.threads)


async def test_different_windows_and_selections_compute_separately(app: App, spy: Spy) -> None:
    spy.hold.clear()
    line = app.settings.assets[0].line
    asks = [DAY, HOUR, {**DAY, "line": line}]
    tasks = [asyncio.create_task(app.client.get("/api/v1/kpis", params=p)) for p in asks]
    await _until(lambda: app.runner.stats.computed == len(asks))
    spy.hold.set()
    got = [r.json() for r in await asyncio.gather(*tasks)]
    assert spy.calls == len(asks) and app.runner.stats.joined == 0
    assert [g["window"] for g in got] == [DAY, HOUR, DAY]
    assert set(got[2]["lines"]) == {line} != set(got[0]["lines"])


async def test_a_closed_window_is_served_from_the_cache(app: App, spy: Spy) -> None:
    first = await app.client.get("/api/v1/kpis", params=DAY)
    again = await app.client.get("/api/v1/kpis", params=DAY)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert spy.calls == 1 and app.runner.stats.cache_hits == 1
    # an assessment, keyed on its tier and both windows, likewise
    ask = {**DAY, "baseline_from": HOUR["from"], "baseline_to": HOUR["to"], "tier": "excellence"}
    a1 = await app.client.get("/api/v1/tiers/assessment", params=ask)
    calls = spy.calls
    a2 = await app.client.get("/api/v1/tiers/assessment", params=ask)
    assert a1.status_code == 200 and a2.content == a1.content and spy.calls == calls
    other = await app.client.get("/api/v1/tiers/assessment", params={**ask, "tier": "basic"})
    assert other.status_code == 200 and spy.calls > calls  # another tier, another key
    assert app.runner.stats.cache_hits == 2


def _samples(body: dict[str, Any], path: str) -> int:
    return next(t["samples"] for a in body["assets"].values() for t in a["evidence"]["tags"]
                if t["path"] == path)


async def test_a_write_inside_a_cached_window_invalidates_it(app: App, spy: Spy) -> None:
    before = (await app.client.get("/api/v1/kpis", params=HOUR)).json()
    tag = next(t for t in app.store.tags() if t.role == "state")
    # a write after the window's end leaves it cached
    late = to_ns(NOW) + 10**9
    app.store.write(Batch.of(np.array([tag.tag_id]), np.array([late]), np.array([0.0])))
    assert (await app.client.get("/api/v1/kpis", params=HOUR)).json() == before
    assert spy.calls == 1
    # one more sample inside the window, repeating the state it already holds there
    t = to_ns(NOW - timedelta(hours=1, minutes=30))
    held = app.store.read(tag.tag_id, t, t + 1, prior=True)
    app.store.write(Batch.of(np.array([tag.tag_id]), np.array([t + 1]),
                             np.array([float(held.value[-1])])))
    after = (await app.client.get("/api/v1/kpis", params=HOUR)).json()
    assert spy.calls == 2 and app.runner.stats.invalidated >= 1
    assert _samples(after, tag.path) == _samples(before, tag.path) + 1


async def test_a_write_during_a_computation_keeps_its_result_out_of_the_cache(
    app: App, spy: Spy
) -> None:
    spy.hold.clear()
    task = asyncio.create_task(app.client.get("/api/v1/kpis", params=HOUR))
    await asyncio.to_thread(spy.entered.wait, 60)
    tag = next(t for t in app.store.tags() if t.role == "state")
    t = to_ns(NOW - timedelta(hours=1, minutes=30))
    app.store.write(Batch.of(np.array([tag.tag_id]), np.array([t + 1]), np.array([0.0])))
    spy.hold.set()
    assert (await task).status_code == 200
    assert app.runner.cached == 0
    await app.client.get("/api/v1/kpis", params=HOUR)
    assert spy.calls == 2  # computed again, not served what may have missed the write


async def test_the_event_loop_answers_while_an_assessment_runs(app: App, spy: Spy) -> None:
    spy.hold.clear()
    ask = {**DAY, "baseline_from": HOUR["from"], "baseline_to": HOUR["to"]}
    assessing = asyncio.create_task(app.client.get("/api/v1/tiers/assessment", params=ask))
    await asyncio.to_thread(spy.entered.wait, 60)  # the assessment is computing
    health = await app.client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json()["kpi"]["in_flight"] == 1
    assert not assessing.done()  # the health answer came while the assessment was held
    spy.hold.set()
    assert (await assessing).status_code == 200


async def test_relative_windows_in_one_quantum_are_identical(
    app: App, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests of the default window 0.5 s apart in one second resolve to one window and
    share one computation; the window records the rounded 'now'."""
    base = to_ns(NOW) // 10**9 * 10**9
    clock = iter([base + 200_000_000, base + 700_000_000])
    monkeypatch.setattr(deps, "time_ns", lambda: next(clock))
    spy.hold.clear()
    first = asyncio.create_task(app.client.get("/api/v1/kpis"))
    await asyncio.to_thread(spy.entered.wait, 60)
    second = asyncio.create_task(app.client.get("/api/v1/kpis"))
    await _until(lambda: app.runner.stats.joined == 1)
    spy.hold.set()
    a, b = await asyncio.gather(first, second)
    assert a.content == b.content and spy.calls == 1
    assert a.json()["window"]["to"] == iso(base)


async def test_a_waiter_going_away_cancels_nothing(app: App, spy: Spy) -> None:
    """The request that started a computation is cancelled (its client went away): the
    computation goes on for the request that joined it."""
    spy.hold.clear()
    leader = asyncio.create_task(app.client.get("/api/v1/kpis", params=DAY))
    await asyncio.to_thread(spy.entered.wait, 60)
    joiner = asyncio.create_task(app.client.get("/api/v1/kpis", params=DAY))
    await _until(lambda: app.runner.stats.joined == 1)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    spy.hold.set()
    r = await joiner
    assert r.status_code == 200 and r.json()["window"] == DAY
    assert spy.calls == 1


async def test_the_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    """KpiRunner alone, over a bare change feed: at most 2 bodies and 10 bytes."""
    changes = Changes()
    runner = KpiRunner(changes, cache_size=2, cache_bytes=10, settle_s=0, clock_ns=lambda: 100)
    try:
        for k in "abc":
            assert await runner.run((k,), 50, lambda k=k: k.encode() * 4) == k.encode() * 4
        assert runner.cached == 2 and runner.stats.computed == 3  # "a" went
        await runner.run(("b",), 50, lambda: b"never")  # a hit: "b" is now the newest
        assert runner.stats.cache_hits == 1
        await runner.run(("d",), 90, lambda: b"d" * 8)  # 16 bytes: "c", then "b" go
        assert runner.status()["cached_bytes"] == 8 and runner.cached == 1
        await runner.run(("e",), 50, lambda: b"e" * 11)  # larger than the whole cache
        assert runner.cached == 1
        await runner.run(("f",), 200, lambda: b"f")  # not closed at the clock's 100
        assert runner.cached == 1
        changes.note(60)  # before d's end (90): d goes
        assert runner.cached == 0 and runner.stats.invalidated == 1
    finally:
        runner.close()
