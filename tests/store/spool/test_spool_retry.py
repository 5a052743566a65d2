"""SpooledStore retrying after 429 + Retry-After and 5xx.

A FAKE server on purpose: a real InfluxDB 1.6 cannot be made to answer 429 or 503 (it has no
write limiter and no overload answer), so a tiny local HTTP server plays a sink that answers
a scripted sequence of statuses to ``POST /write`` and records what it finally accepted. Every
other behaviour (outage, crash, refusal) is tested against real InfluxDB in
test_spool_influx.py.

No test here times anything: the drain's schedule is what it records (``Recording.delays``,
every delay it chose after a refused send), so the assertions hold on a loaded machine too.
"""

from __future__ import annotations

import gzip
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.base import Backoff
from config.errors import SinkUnavailable
from config.store import InfluxStoreSettings, SpoolSettings
from store import InfluxStore, SpooledStore, TagRecord
from store.batch import Batch
from store.spool.store import MAX_RETRY_AFTER_S, backoff_delay, open_spool


class ScriptedSink(ThreadingHTTPServer):
    """Answers each POST /write with the next (status, headers) of ``script``, then 204."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.attempts: list[int] = []  # the status answered to every POST
        self.accepted: list[str] = []  # line protocol lines taken
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedSink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            status, headers = self.server.script.pop(0) if self.server.script else (204, {})
            self.server.attempts.append(status)
            if status == 204:
                self.server.accepted += body.decode().splitlines()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        msg = b'{"error":"busy"}' if status != 204 else b""
        self.send_header("Content-Length", str(len(msg)))
        self.end_headers()
        self.wfile.write(msg)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink_factory() -> Iterator[type[ScriptedSink]]:
    servers: list[ScriptedSink] = []

    class Factory(ScriptedSink):
        def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
            super().__init__(script)
            servers.append(self)
            threading.Thread(target=self.serve_forever, daemon=True).start()

    yield Factory
    for s in servers:
        s.shutdown()
        s.server_close()


class Recording(SpooledStore):
    """A SpooledStore that keeps every retry delay it scheduled, in order."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.delays: list[float] = []  # before the drain thread starts
        super().__init__(*args, **kw)

    def _schedule_retry(self, delay: float) -> float:
        chosen = super()._schedule_retry(delay)
        self.delays.append(chosen)
        return chosen


def spooled(url: str, tmp_path: Path) -> tuple[Recording, int]:
    cfg = InfluxStoreSettings(
        type="influx", api="v1", url=url, database="db", timeout_s=2.0, meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"),
                            backoff=Backoff(initial_s=0.05, max_s=0.2, multiplier=2.0, jitter=0.0)),
    )
    store = Recording(InfluxStore(cfg), *open_spool(cfg.spool), cfg.spool.backoff)
    ids = store.register_tags([TagRecord(path="p/a/l/m/s", asset="p/a/l/m", role="analog", device="d",
                                         protocol="modbus")])
    return store, ids["p/a/l/m/s"]


def batch(tag: int, k: int) -> Batch:
    return Batch.of(np.full(10, tag), 1_000_000 * k + np.arange(10), float(k))


def test_429_retry_after_is_honoured(sink_factory: type[ScriptedSink], tmp_path: Path) -> None:
    sink = sink_factory([(429, {"Retry-After": "1"}), (429, {"Retry-After": "1"})])
    store, tag = spooled(sink.url, tmp_path)
    try:
        store.write(batch(tag, 0))  # 429: spooled, accepted
        store.write(batch(tag, 1))  # behind it in the spool
        assert store.spool_stats()["batches"] in (1, 2)
        assert store.wait_drained(30)
        # the direct write, one drain attempt refused, then taken (both batches at once, usually)
        assert sink.attempts[:2] == [429, 429] and set(sink.attempts[2:]) == {204}
        # the backoff alone would retry after 0.05 s, then 0.1 s; Retry-After said 1 s both times
        assert store.delays == [1.0, 1.0]
        # the samples' lines (the tag register follows the first write, in its own measurement)
        samples = [ln for ln in sink.accepted if ln.startswith("tierproof,")]
        assert [ln.split(" ")[-1] for ln in samples] == [str(1_000_000 * k + i) for k in (0, 1)
                                                                for i in range(10)]
    finally:
        store.close()


def test_5xx_backs_off_exponentially_and_delivers_in_order(
    sink_factory: type[ScriptedSink], tmp_path: Path
) -> None:
    sink = sink_factory([(503, {})] * 4)
    store, tag = spooled(sink.url, tmp_path)
    try:
        for k in range(3):
            store.write(batch(tag, k))
        assert store.wait_drained(30)
        assert sink.attempts[:4] == [503] * 4 and set(sink.attempts[4:]) == {204}
        # one delay per refusal, doubling up to max_s (jitter 0)
        assert store.delays == pytest.approx([0.05, 0.1, 0.2, 0.2])
        assert store.forward.retry_at_ns is None and store.forward.sink == "ok"
        samples = [ln for ln in sink.accepted if ln.startswith("tierproof,")]
        assert [ln.split(" ")[-1] for ln in samples] == [str(1_000_000 * k + i) for k in range(3)
                                                                for i in range(10)]
        assert store.spool_stats()["dropped_points"] == 0
    finally:
        store.close()


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(42)
    for attempt in range(12):
        base = min(30.0, 0.5 * 2.0**attempt)
        delays = [backoff_delay(backoff, attempt, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= min(30.0, base * 1.2)
        assert max(delays) > min(delays)  # jittered: gateways do not retry in step
    assert backoff_delay(backoff, 10**6, rng) <= 30.0  # no overflow for a long outage


def test_retry_after_is_taken_as_said_but_capped(sink_factory: type[ScriptedSink], tmp_path: Path) -> None:
    store, _ = spooled(sink_factory([]).url, tmp_path)
    try:
        assert store._unavailable_delay(SinkUnavailable("busy", retry_after_s=7.5)) == 7.5
        assert store._unavailable_delay(SinkUnavailable("busy", retry_after_s=-3)) == 0.0
        assert store._unavailable_delay(SinkUnavailable("typo", retry_after_s=9e9)) == MAX_RETRY_AFTER_S
        assert store._unavailable_delay(SinkUnavailable("down")) == -1.0  # the backoff decides
    finally:
        store.close()
