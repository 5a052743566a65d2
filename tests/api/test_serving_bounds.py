"""The API's connection bounds (``api.serving``), on the server ``tierproof run`` builds: a
connection beyond ``api.max_connections`` is answered 503 with a problem and closed; an idle
or half-open connection is closed after ``api.header_timeout_s``; a request still works; a
client that takes nothing of its answer for as long is cut."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from api import cli
from api.app import create_app
from api.cli import _listen, _uvicorn_server
from api.gateway import tag_records
from api.serving import BACKLOG, FD_RESERVE, connection_limit
from config import shipped_config
from config.settings import Settings
from store import SqliteStore
from store.batch import Batch
from tests.helpers import free_port, key_headers, wait_until


def test_the_connection_cap_leaves_descriptors_for_collection() -> None:
    assert connection_limit(512, 4096) == 512
    assert connection_limit(512, 1024) == 512  # 1024 - 256 - 128 = 640 >= 512
    assert connection_limit(512, 700) == 700 - FD_RESERVE - BACKLOG
    assert connection_limit(512, 300) == 16  # at least a few, whatever the limit


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)  # until the server closes


def _app_on_a_free_port(tmp_path: Path, **api: Any) -> tuple[int, dict[str, str], Any]:
    """A free port, a key's headers (api.auth: every test sends a key) and an app (no
    collectors) of a store in ``tmp_path``, served there with the ``api`` settings given."""
    port = free_port()
    settings = Settings.model_validate({
        "store": {"type": "sqlite", "path": str(tmp_path / "s.db")},
        "api": {"host": "127.0.0.1", "port": port, **api},
    })
    return port, key_headers(settings), create_app(settings, collect=False)


@pytest.mark.parametrize("half_open", [False, True])
async def test_idle_connections_time_out_and_the_cap_refuses_with_503(
        tmp_path: Path, half_open: bool) -> None:
    port, headers, app = _app_on_a_free_port(tmp_path, max_connections=2, header_timeout_s=0.5)
    sock = _listen("127.0.0.1", port)
    async with app.router.lifespan_context(app):
        server = _uvicorn_server(app, "127.0.0.1", port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await wait_until(lambda: server.started, 10, "the server to start")
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            if half_open:  # headers that never end
                for _, w in idle:
                    w.write(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n")
            await asyncio.sleep(0.1)
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            refused = await _read_all(r3)
            assert refused.startswith(b"HTTP/1.1 503"), refused
            body = json.loads(refused.split(b"\r\n\r\n", 1)[1])
            assert "api.max_connections" in body["detail"]
            # the two idle ones are closed by the server after header_timeout_s, unanswered
            for r, _ in idle:
                assert await _read_all(r) == b""
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
                assert (await c.get("/api/v1/collector/status")).status_code == 200
            for _, w in [*idle, (r3, w3)]:
                w.close()
        finally:
            server.should_exit = True
            await task
            sock.close()


# serial: the cut comes header_timeout_s (0.5 s) after the socket buffers fill, while a ~28 MB
# answer is rendered; beside other tests on the same cores the read once timed out (CI)
@pytest.mark.serial
async def test_a_client_that_takes_nothing_of_its_answer_is_cut(tmp_path: Path) -> None:
    port = free_port()
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data.pop("simulation", None)
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "s.db")}
    # an answer of ~28 MB: more than the kernel's socket buffers hold
    data["api"] = {"host": "127.0.0.1", "port": port, "header_timeout_s": 0.5,
                   "max_samples": 1_000_000}
    settings = Settings.model_validate(data)
    store = SqliteStore(tmp_path / "s.db")
    ids = store.register_tags(tag_records(settings))
    path = next(p for p in ids if p.endswith("/energy_kwh"))
    n = 1_000_000
    t0 = time.time_ns() - n * 1_000_000_000
    store.write(Batch(np.full(n, ids[path], np.int32), t0 + np.arange(n, dtype=np.int64) * 1_000_000_000,
                      np.arange(n, dtype=np.float64), np.zeros(n, np.uint8)))
    store.close()
    headers = key_headers(settings)  # api.auth: every test sends a key
    app = create_app(settings, collect=False)
    sock = _listen("127.0.0.1", port)
    async with app.router.lifespan_context(app):
        server = _uvicorn_server(app, "127.0.0.1", port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        stack = contextlib.ExitStack()
        try:
            await wait_until(lambda: server.started, 10, "the server to start")
            client = stack.enter_context(socket.socket())  # closed even if the test fails
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", port))
            client.sendall(f"GET /api/v1/tags/{path}/samples?from=now-30d&limit={n} HTTP/1.1\r\n"
                           f"host: x\r\nx-api-key: {headers['X-API-Key']}\r\n\r\n".encode())
            protocol = server.config.http_protocol_class
            # the answer is rendered (seconds on a busy machine), fills the socket buffers,
            # and then waits for the reader for header_timeout_s: cut
            await wait_until(lambda: protocol.timed_out >= 1, 120, "the slow reader to be cut")
            client.settimeout(30)

            def read_all() -> tuple[bytes, bool]:
                got = b""
                try:
                    while chunk := client.recv(1 << 20):
                        got += chunk
                except ConnectionResetError:
                    return got, True
                return got, False

            # read in a thread: the server runs on this loop, and the socket its abort() or
            # close() ends is closed in a callback of it (a recv here blocked it: no RST came)
            received, reset = await asyncio.to_thread(read_all)
            client.close()
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            length = int(next(h.split(b":")[1] for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length")))
            # the server cut the connection: the answer was not delivered whole
            assert len(body) < length, (len(body), length, reset)
        finally:
            stack.close()
            server.should_exit = True
            await task
            sock.close()


def _no_delay(transport: asyncio.BaseTransport) -> int:
    return int(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


async def test_served_connections_send_without_nagle_delay(tmp_path: Path) -> None:
    """Every connection the CLI's server accepts has TCP_NODELAY: uvicorn writes an answer's
    head and body apart, and with Nagle's algorithm on the body waited for the client's
    delayed ACK (~40 ms a request on Linux: issue 12's p50 of 44 ms under 50 clients). The
    socket ``_listen`` binds makes asyncio set it by itself, and the bounded protocol sets it
    on whatever socket a connection comes from."""
    port, headers, app = _app_on_a_free_port(tmp_path)
    sock = _listen("127.0.0.1", port)
    async with app.router.lifespan_context(app):
        server = _uvicorn_server(app, "127.0.0.1", port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await wait_until(lambda: server.started, 10, "the server to start")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
                for _ in range(3):
                    assert (await c.get("/api/v1/collector/status")).status_code == 200
                served = list(server.server_state.connections)
                assert served, "the client's connection is open"
                assert [_no_delay(p.transport) for p in served] == [1] * len(served)
        finally:
            server.should_exit = True
            await task
            sock.close()

    # the listening socket alone, under a plain asyncio server (any protocol)
    accepted: list[asyncio.BaseTransport] = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    plain = _listen("127.0.0.1", 0)
    srv = await asyncio.get_running_loop().create_server(Keep, sock=plain)
    try:
        _, w = await asyncio.open_connection("127.0.0.1", plain.getsockname()[1])
        await wait_until(lambda: bool(accepted), 10, "the connection to be accepted")
        assert _no_delay(accepted[0]) == 1
        w.close()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_serving_starts_with_the_start_up_heap_frozen(tmp_path: Path) -> None:
    """``tierproof run/serve/demo`` (``api.cli._serve``) moves what start-up left alive out
    of the cyclic GC's reach before it serves: a full collection no longer traverses it
    (tens of ms with the GIL held, stalling the serving and collecting loops)."""
    port, headers, app = _app_on_a_free_port(tmp_path)
    gc.unfreeze()
    cli._STOP.install()
    task = asyncio.create_task(cli._serve(app, "127.0.0.1", port, None))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            async def up() -> bool:
                try:
                    return (await c.get("/api/v1/collector/status")).status_code == 200
                except httpx.TransportError:
                    return False
            for _ in range(200):
                if task.done() or await up():
                    break
                await asyncio.sleep(0.05)
            assert not task.done(), task
            assert await up()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, frozen  # the app, its settings and routes at least
    finally:
        assert cli._STOP._event is not None
        cli._STOP._event.set()  # as a stop signal does
        await asyncio.wait_for(task, 30)
        gc.unfreeze()  # the rest of the test session collects as before


def test_freezing_the_start_up_heap_is_no_full_collection() -> None:
    """The freeze runs with the collectors already polling: a full collection there traversed
    the whole start-up heap with the GIL held (0.22-0.26 s for the demo's, a recorded stall of
    every device on a loaded machine; the cause of a failed clean-start test). It collects
    the young generations only, so their garbage is still not frozen."""
    import weakref

    class Node:
        ref: object = None

    seen: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    young = Node()
    young.ref = young  # a cycle: only a collection frees it
    gone = weakref.ref(young)
    del young
    gc.callbacks.append(on_gc)
    try:
        assert cli._freeze_start_up_heap() > 0
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
    assert seen and max(seen) < 2, seen
    assert gone() is None  # the young garbage was collected, not frozen
