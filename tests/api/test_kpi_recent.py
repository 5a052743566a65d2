"""The staleness contract of open-window KPI answers (``KpiRunner.run_recent``,
``api.kpi_max_age_s``): an answer is never computed for a 'now' more than the bound before the
request's; a write becomes visible at most the bound later; identical requests in flight share
one computation. The clock is the requests' ``now`` given to the runner (in the app: the one
``api.deps`` resolves, replaced here), so that nothing below depends on how fast this machine
is: the checks are "within the bound", never durations."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from api import deps
from api.app import create_app
from api.flight import Answer, KpiRunner
from config.settings import Settings
from config.times import iso, to_ns
from store import Batch
from store.changes import Changes
from store.sqlite import SqliteStore
from tests.api.test_assessment import NOW, _backfill
from tests.helpers import key_headers

S = 1_000_000_000
MAX_AGE_S = 5.0
SPEC = ("kpis", "now-1h", "now")


class Source:
    """What a computation reads: a value that writes change, and how many computations ran.
    ``hold`` cleared makes each computation wait for it (after setting ``entered``)."""

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def compute(self, as_of: int) -> Callable[[], bytes]:
        def run() -> bytes:
            with self.lock:
                self.calls += 1
            self.entered.set()
            assert self.hold.wait(60), "the test never released the computation"
            return f"{as_of} {self.value}".encode()
        return run


async def ask(runner: KpiRunner, src: Source, now: int, *, spec: tuple[str, ...] = SPEC,
              end_ns: int | None = None, max_age_s: float = MAX_AGE_S) -> Answer:
    """A request at ``now`` of a relative window ending at ``now`` (open) unless ``end_ns``."""
    key = (*spec, now)
    return await runner.run_recent(spec, key, now if end_ns is None else end_ns,
                                   src.compute(now), now_ns=now, max_age_s=max_age_s)


async def settled(runner: KpiRunner) -> None:
    """Until no computation is in flight (bounded: a broken test fails, never hangs)."""
    async with asyncio.timeout(60):
        while runner.status()["in_flight"]:
            await asyncio.sleep(0.005)


@pytest.fixture
async def runner() -> AsyncIterator[KpiRunner]:
    r = KpiRunner(Changes(), settle_s=60, clock_ns=lambda: 0)
    yield r
    r.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_answer_is_older_than_the_bound_and_writes_show_within_it(
        runner: KpiRunner, seed: int) -> None:
    """Requests at random instants over two minutes, writes between them, background
    computations sometimes finished before the next request and sometimes not: every answer
    was computed for a 'now' within the bound of its request's, is that computation's (its
    body names it), and holds every write made at least the bound before the request."""
    rng = random.Random(seed)
    src = Source()
    now = 1_000 * S
    writes: list[tuple[int, int]] = []  # (when, value)
    stale = 0
    for _ in range(300):
        now += rng.choice([0, S // 10, S // 2, S, 2 * S, 3 * S, 7 * S])
        if rng.random() < 0.3:
            src.value += 1
            writes.append((now, src.value))
        got = await ask(runner, src, now)
        as_of, value = map(int, got.body.split())
        assert as_of == got.as_of_ns and now - MAX_AGE_S * S <= as_of <= now
        seen = [v for t, v in writes if t <= now - MAX_AGE_S * S]
        assert value >= (seen[-1] if seen else 0)  # every write older than the bound shows
        stale += as_of < now
        if rng.random() < 0.5:
            await settled(runner)  # else the next request may find the refresh in flight
    await settled(runner)
    assert stale > 0 and runner.stats.recent_hits > 0  # the case was exercised
    assert runner.stats.refreshes <= runner.stats.recent_hits


async def test_an_answer_past_the_bound_is_never_served(runner: KpiRunner) -> None:
    src = Source()
    t0 = 1_000 * S
    first = await ask(runner, src, t0)
    assert first.as_of_ns == t0 and src.calls == 1
    # within the bound: the recent answer (not renewed before it is half the bound old)
    assert await ask(runner, src, t0 + 2 * S) == first and runner.stats.refreshes == 0
    # and one computation renewing it in the background once it is
    src.hold.clear()
    again = await ask(runner, src, t0 + 5 * S)
    assert again == first and runner.stats.refreshes == 1
    await asyncio.to_thread(src.entered.wait, 60)
    # a request within the bound of that refresh's 'now' but past the first answer's bound:
    # it joins the refresh in flight (computed for t0+5s) instead of computing again
    joining = asyncio.create_task(ask(runner, src, t0 + 6 * S))
    # one past the bound of both starts its own computation and waits for it
    own = asyncio.create_task(ask(runner, src, t0 + 11 * S))
    async with asyncio.timeout(60):
        while src.calls < 3:
            await asyncio.sleep(0.005)
    assert not joining.done() and not own.done()
    src.hold.set()
    assert (await joining).as_of_ns == t0 + 5 * S
    assert (await own).as_of_ns == t0 + 11 * S
    assert src.calls == 3


async def test_a_window_with_fixed_ends_never_joins_a_computation_past_the_bound(
        runner: KpiRunner) -> None:
    """``date=today``: the same resolved window (and key) at every 'now'. A request past the
    bound of the computation in flight does not join it: it gets one for its own 'now'."""
    src = Source()
    t0 = 1_000 * S
    end = t0 + 3_600 * S  # the day's end, ahead of every 'now' here
    src.hold.clear()
    old = asyncio.create_task(runner.run_recent(
        SPEC, ("today",), end, src.compute(t0), now_ns=t0, max_age_s=MAX_AGE_S))
    await asyncio.to_thread(src.entered.wait, 60)
    late = asyncio.create_task(runner.run_recent(
        SPEC, ("today",), end, src.compute(t0 + 6 * S), now_ns=t0 + 6 * S, max_age_s=MAX_AGE_S))
    async with asyncio.timeout(60):
        while src.calls < 2:
            await asyncio.sleep(0.005)
    src.hold.set()
    assert (await old).as_of_ns == t0
    got = await late
    assert got.as_of_ns == t0 + 6 * S and got.body.split()[0] == str(t0 + 6 * S).encode()


async def test_identical_requests_in_flight_compute_once(runner: KpiRunner) -> None:
    src = Source()
    src.hold.clear()
    tasks = [asyncio.create_task(ask(runner, src, 1_000 * S)) for _ in range(8)]
    async with asyncio.timeout(60):
        while runner.stats.joined < 7:
            await asyncio.sleep(0.005)
    src.hold.set()
    got = await asyncio.gather(*tasks)
    assert src.calls == 1 and runner.stats.computed == 1
    assert len({g.body for g in got}) == 1


async def test_a_zero_bound_or_a_closed_window_is_computed_for_its_own_now(
        runner: KpiRunner) -> None:
    src = Source()
    for i in range(3):
        got = await ask(runner, src, (1_000 + i) * S, max_age_s=0)
        assert got.as_of_ns == (1_000 + i) * S
    assert src.calls == 3 and runner.stats.recent_hits == 0
    # a window that ended more than settle_s (60 s) before 'now': the exact path (cached,
    # dropped by writes), never a recent answer of another 'now'
    for i in range(3):
        got = await ask(runner, src, (2_000 + i) * S, spec=("closed",), end_ns=1_000 * S)
        assert got.as_of_ns == (2_000 + i) * S
    assert runner.stats.recent_hits == 0


# -- the same through the API, over a real store --------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    settings, _ = _backfill(tmp_path_factory.mktemp("recent"), 1)
    return settings, Path(settings.store.path)  # type: ignore[union-attr]


def _samples(body: dict[str, object], path: str) -> int:
    assets = body["assets"]
    assert isinstance(assets, dict)
    return next(t["samples"] for a in assets.values() for t in a["evidence"]["tags"]
                if t["path"] == path)


async def test_the_api_states_the_age_and_shows_a_write_within_the_bound(
        stored: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, db = stored
    clock = [to_ns(NOW)]
    monkeypatch.setattr(deps, "time_ns", lambda: clock[0])  # the requests' 'now'
    headers = key_headers(settings)  # before the app starts (api.auth)
    store = SqliteStore(db)
    api = create_app(settings, store=store, collect=False, rollups_maintain=False)
    params = {"from": "now-2h"}  # to: now, an open window
    try:
        async with api.router.lifespan_context(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://tierproof",
            headers=headers, timeout=120,
        ) as c:
            runner: KpiRunner = api.state.runner
            first = await c.get("/api/v1/kpis", params=params)
            assert first.status_code == 200, first.text
            assert first.headers["age"] == "0" and first.headers["x-kpi-as-of"] == iso(clock[0])
            tag = next(t for t in store.tags() if t.role == "state")
            before = _samples(first.json(), tag.path)
            # one more sample inside the window, repeating the state held there
            t = to_ns(NOW - timedelta(minutes=30))
            held = store.read(tag.tag_id, t, t + 1, prior=True)
            store.write(Batch.of(np.array([tag.tag_id]), np.array([t + 1]),
                                 np.array([float(held.value[-1])])))
            clock[0] += 3 * S
            second = await c.get("/api/v1/kpis", params=params)
            # the answer computed 3 s before, saying so; its window is that computation's
            assert second.content == first.content
            assert second.headers["age"] == "3"
            assert second.headers["x-kpi-as-of"] == second.json()["window"]["to"] == iso(to_ns(NOW))
            await settled(runner)  # it was half the bound old: renewed (for NOW+3s) meanwhile
            clock[0] += 1 * S
            third = await c.get("/api/v1/kpis", params=params)
            assert third.headers["age"] == "1"  # not half the bound old: not renewed
            assert third.json()["window"]["to"] == iso(to_ns(NOW) + 3 * S)
            assert _samples(third.json(), tag.path) == before + 1  # the write shows
            # past the bound of every answer kept: computed for this request
            clock[0] += 10 * S
            fourth = await c.get("/api/v1/kpis", params=params)
            assert fourth.headers["age"] == "0"
            assert fourth.json()["window"]["to"] == iso(clock[0])
            health = (await c.get("/api/v1/health")).json()["kpi"]
            assert health["recent_hits"] == 2 and health["refreshes"] == 1
    finally:
        store.close()
