"""Collection is isolated from serving (issue 13, item 1).

The fault test runs ``tierproof run`` (real process, its file limit at 1,024 as on the box of
the finding) polling the demo's Modbus lines (``tierproof simulate``, real sockets) every
second, and floods its API for a while: CPU-heavy KPI requests over the whole backfilled
history, large raw reads, and 1,100 idle or half-open connections -- more than the gateway's
file limit. Then it reads the store the gateway wrote and asserts that no poll was missed
beyond the tolerance, that any interval between two polls beyond it is a recorded gap (no
unrecorded stall), that no device lost its connection (no false gap from a poll that timed
out), that idle connections were closed by the server, that the API answers again, and that
the log stayed small.

A second test stalls the collectors' own event loop for real (a blocking call scheduled on
it, which is what a GIL-hogging or blocking bug does) and asserts the stall is a recorded gap
of the connected device.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from api.gateway import Gateway, tag_records
from collector.stall import STALL_REASON
from config import shipped_config
from config.loader import load_settings
from simulators import Plant, serve_devices
from store import SqliteStore
from tests.helpers import config_key_headers, free_port, on_free_ports, stop, wait_for, wait_until

NS = 1_000_000_000
POLL_S = 1.0
#: a poll may be this late before it counts as missed (one whole poll interval)
TOLERANCE_S = 1.0
FLOOD_S = 15.0
IDLE_CONNECTIONS = 1_100
GATEWAY_FILE_LIMIT = 1_024

# timing is what these tests assert (no poll later than one interval while the API is
# flooded): `make test` runs them alone, before the parallel pass, so that no other test's
# load can make a poll late
pytestmark = pytest.mark.serial


def _plant_config(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    data: dict[str, Any] = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["devices"] = [d for d in data["devices"] if d["protocol"] == "modbus"]
    on_free_ports(data)
    for d in data["devices"]:
        d["poll_interval_s"] = POLL_S
        d["storage"] = {"mode": "every_poll"}  # every poll is a stored sample: its time is seen
    data["simulation"]["history_days"] = 14
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "run.db")}
    data["api"] = {"host": "127.0.0.1", "port": free_port(), "max_connections": 200,
                   "header_timeout_s": 2.0, "keep_alive_s": 2.0}
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg, data


def _backfill(cfg: Path) -> None:
    """The simulated history, so that a KPI request over it is CPU-heavy."""
    settings = load_settings(cfg)
    store = SqliteStore(settings.store.path)  # type: ignore[union-attr]
    try:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=datetime.now(UTC)).history_batches(ids):
            store.write(batch)
    finally:
        store.close()


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    cfg, data = _plant_config(tmp_path)
    _backfill(cfg)
    with (tmp_path / "simulate.log").open("w") as log:
        sim = subprocess.Popen([sys.executable, "-m", "api.cli", "simulate", "--config", str(cfg)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        yield cfg, data
    finally:
        stop(sim)


def _gateway_limits() -> None:  # in the child, before exec: the finding's file limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (GATEWAY_FILE_LIMIT, GATEWAY_FILE_LIMIT))


class Flood:
    """Heavy KPI requests, raw reads and idle connections against one API, in threads."""

    def __init__(self, base: str, raw_path: str, headers: dict[str, str]) -> None:
        self.base, self.raw_path, self.headers = base, raw_path, headers
        self.stop = threading.Event()
        self.answers: dict[str, int] = {}
        self.failures = 0
        self.idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _loop(self, url: str) -> None:
        with httpx.Client(base_url=self.base, timeout=60, headers=self.headers) as c:
            while not self.stop.is_set():
                try:
                    r = c.get(url)
                    with self._lock:
                        self.answers[str(r.status_code)] = self.answers.get(str(r.status_code), 0) + 1
                except httpx.HTTPError:
                    with self._lock:
                        self.failures += 1

    def open_idle(self, port: int) -> None:
        for i in range(IDLE_CONNECTIONS):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                if i % 10 == 0:  # half-open: a request whose headers never end
                    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n")
            except OSError:
                s.close()
                continue
            self.idle.append(s)

    def threads(self) -> list[threading.Thread]:
        heavy = "/api/v1/kpis?from=now-14d&to=now"
        raw = f"/api/v1/tags/{self.raw_path}/samples?from=now-14d&limit=100000"
        return [threading.Thread(target=self._loop, args=(u,), daemon=True)
                for u in (heavy, heavy, heavy, heavy, raw, raw)]

    def closed_by_server(self) -> int:
        closed = 0
        for s in self.idle:
            s.setblocking(False)
            try:
                got = s.recv(4096)
                while got and got != b"":  # a 503 answer, then EOF
                    got = s.recv(4096)
                closed += 1
            except BlockingIOError:
                pass  # still open
            except OSError:
                closed += 1  # reset by the server
        return closed


def test_api_flood_neither_delays_polls_nor_hides_a_stall(
    tmp_path: Path, simulated: tuple[Path, dict[str, Any]]
) -> None:
    cfg, data = simulated
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # the test's own 1,100 idle sockets plus its clients
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    port = data["api"]["port"]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    headers = config_key_headers(cfg)  # api.auth: the gateway starts with a key, clients send it
    with log.open("w") as out:
        gw = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "--config", str(cfg)],
                              stdout=out, stderr=subprocess.STDOUT, preexec_fn=_gateway_limits)
    flood: Flood | None = None
    try:
        # no keep-alive: the gateway closes an idle connection after keep_alive_s (2 s), the
        # same time the test sleeps below, and a request sent on a pooled connection as the
        # server closes it is reset by the peer (seen under load) -- a race, not the finding
        with httpx.Client(base_url=base, timeout=10, headers=headers,
                          limits=httpx.Limits(max_keepalive_connections=0)) as c:
            def connected() -> bool:
                st = c.get("/api/v1/collector/status").json()
                return len(st) == len(data["devices"]) and all(
                    d["state"] == "connected" and d["samples_delivered"] > 0 for d in st)

            wait_for(connected, 60, "the gateway to poll the simulator")
            time.sleep(2 * POLL_S)
            tags = c.get("/api/v1/tags").json()
            raw_path = next(t["path"] for t in tags if t["path"].endswith("/energy_kwh"))
        flood = Flood(base, raw_path, headers)
        t0 = time.time_ns()
        threads = flood.threads()
        for t in threads:
            t.start()
        flood.open_idle(port)
        time.sleep(FLOOD_S)
        flood.stop.set()
        t1 = time.time_ns()
        # idle and half-open connections were closed by the server (503 at once beyond
        # api.max_connections, the others after api.header_timeout_s)
        try:
            wait_for(lambda: flood.closed_by_server() == len(flood.idle), 30,
                     "the server to close every idle connection")
            left_open = 0
        except AssertionError:  # asserted at the end, after what matters most: the polls
            left_open = len(flood.idle) - flood.closed_by_server()
        for t in threads:
            t.join(timeout=90)
        with httpx.Client(base_url=base, timeout=10, headers=headers) as c:  # the API is back
            assert wait_for(lambda: c.get("/api/v1/collector/status").status_code == 200, 30,
                            "the API to answer after the flood")
    finally:
        if flood is not None:
            flood.stop.set()
            for s in flood.idle:
                with contextlib.suppress(OSError):
                    s.close()
        stop(gw, timeout=60)
    out_text = log.read_text()
    assert gw.returncode == 0, out_text[-3000:]
    assert flood.answers.get("200", 0) > 0, (flood.answers, flood.failures)
    assert log.stat().st_size < 200_000, out_text[-3000:]  # no log flood

    store = SqliteStore(data["store"]["path"])
    try:
        ids = {t.path: t.tag_id for t in store.tags()}
        for d in data["devices"]:
            gaps = store.gaps(d["name"], t0, t1)
            other = [g for g in gaps if not g.reason.startswith(STALL_REASON)]
            # a poll that timed out under API load would be a (false) lost connection
            assert not other, (d["name"], other)
            tag = next(t for t in d["tags"] if t["name"] == "state")
            path = f"{tag['asset']}/{tag['name']}"
            # a Modbus sample's time is its poll's (the gateway's clock): the protocol has no
            # other; from the last poll before the flood to the flood's end
            polls, _, _ = store.read_timestamps(ids[path], t0 - 3 * NS, t1)
            assert int(np.count_nonzero(polls >= t0)) >= FLOOD_S / POLL_S - 2, (d["name"], len(polls))
            edges = np.append(polls, t1)
            steps = np.diff(edges) / NS
            late = [(int(edges[i]), float(s)) for i, s in enumerate(steps)
                    if s > POLL_S + TOLERANCE_S]
            unrecorded = [(at, s) for at, s in late if not any(
                g.start_ns <= at + int(s * NS) and (g.end_ns or t1) >= at for g in gaps)]
            assert not unrecorded, (d["name"], "stalls with no gap", unrecorded)
            assert not late, (d["name"], "missed polls", late, gaps)
    finally:
        store.close()
    assert left_open == 0, f"{left_open} of {len(flood.idle)} idle connections left open"


async def test_a_stall_of_the_collectors_loop_is_a_recorded_gap(tmp_path: Path) -> None:
    cfg, data = _plant_config(tmp_path)
    data["devices"] = data["devices"][:1]
    settings = load_settings(cfg).model_copy(update={"devices": load_settings(cfg).devices[:1]})
    plant = Plant(settings, now=datetime.now(UTC))
    async with serve_devices(settings, plant):
        async with Gateway(settings, isolate=True, stall_tolerance_s=0.5) as gw:
            sup, loop = gw.supervisor, gw.loop
            assert sup is not None and loop is not None

            def polled() -> bool:
                h = sup.status()[0]
                return h.state == "connected" and h.samples_delivered > 0

            await wait_until(polled, 60, "the first poll")
            before = time.time_ns()
            # a real stall of the collectors' loop: a blocking call on it, as a bug would make
            loop.call_soon_threadsafe(time.sleep, 2.0)
            # the monitor records the stall once the loop runs again; a loaded machine may start
            # the blocking call late, so wait for the record rather than a fixed 3 s
            await wait_until(lambda: sup.status()[0].stalls >= 1, 60, "the stall recorded as a gap")
            after = time.time_ns()
            assert gw.stall is not None and gw.stall.stats.stalls >= 1
            h = sup.status()[0]
            assert h.stalls >= 1 and h.stalled_s >= 1.5
            gaps = gw.store.gaps(settings.devices[0].name, before, after)
        stalled = [g for g in gaps if g.reason.startswith(STALL_REASON)]
        assert stalled, gaps
        g = stalled[0]
        assert g.end_ns is not None and (g.end_ns - g.start_ns) >= 1.5 * NS
        # the stall began when the monitor's tick was due: at most one tick before the call
        assert before - NS // 5 <= g.start_ns and g.end_ns <= after
