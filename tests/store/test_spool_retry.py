"""SpooledStore retrying after 429 + Retry-After and 5xx.

A FAKE server on purpose: a real InfluxDB 1.6 cannot be made to answer 429 or 503 (it has no
write limiter and no overload answer), so a tiny local HTTP server plays a sink that answers
a scripted sequence of statuses to ``POST /write`` and records what it finally accepted. Every
other behaviour (outage, crash, refusal) is tested against real InfluxDB in
test_spool_influx.py.
"""

from __future__ import annotations

import gzip
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from config.settings import Backoff, InfluxStoreSettings, SpoolSettings
from store import SpooledStore, TagRecord, open_store
from store.batch import Batch


class ScriptedSink(ThreadingHTTPServer):
    """Answers each POST /write with the next (status, headers) of ``script``, then 204."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.attempts: list[float] = []  # monotonic time of every POST
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
            self.server.attempts.append(time.monotonic())
            status, headers = self.server.script.pop(0) if self.server.script else (204, {})
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


def spooled(url: str, tmp_path: Path) -> tuple[SpooledStore, int]:
    store = open_store(InfluxStoreSettings(
        type="influx", api="v1", url=url, database="db", timeout_s=2.0, meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"),
                            backoff=Backoff(initial_s=0.05, max_s=0.2, multiplier=2.0, jitter=0.0)),
    ))
    assert isinstance(store, SpooledStore)
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
        a = sink.attempts
        assert len(a) >= 3  # the direct write, one drain attempt refused, one taken (both batches)
        # the backoff alone would retry after 0.05 s; Retry-After said 1 s
        assert a[1] - a[0] >= 0.95 and a[2] - a[1] >= 0.95
        assert [ln.split(" ")[-1] for ln in sink.accepted] == [str(1_000_000 * k + i) for k in (0, 1)
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
        a = sink.attempts
        assert len(a) >= 5  # direct write, 3 refused retries, then taken (usually all three at once)
        gaps = [b - x for x, b in itertools.pairwise(a)]  # backoff 0.05, 0.1, 0.2, 0.2 (max_s)
        assert gaps[0] >= 0.045 and gaps[1] >= 0.09 and gaps[2] >= 0.18 and gaps[3] >= 0.18
        assert [ln.split(" ")[-1] for ln in sink.accepted] == [str(1_000_000 * k + i) for k in range(3)
                                                                for i in range(10)]
        assert store.spool_stats()["dropped_points"] == 0
    finally:
        store.close()
