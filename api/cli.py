"""The ``tierproof`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from config.errors import ConfigError, StoreError, TierproofError
from config.fingerprint import config_fingerprint
from config.kpi_inputs import kpi_warnings
from config.loader import load_settings, shipped_config
from config.redact import redact_url
from config.settings import Settings
from config.times import iso, parse_instant, to_ns

from .allocator import start_trimming, tune_malloc
from .evidence import commands as evidence_commands
from .version import VERSION

log = logging.getLogger("tierproof.cli")
T = TypeVar("T")
_NS = 1_000_000_000

EPILOG = """\
examples:
  tierproof demo                         simulated plant + collectors + store + API on :8000
  tierproof check-config plant.yaml      validate a configuration file
  tierproof run --config plant.yaml      run the gateway for a real plant
  tierproof serve --config central.yaml  API + KPIs over a store, no collectors (enterprise)
  tierproof simulate --config config/demo.yaml --truth truth.json
  tierproof assess --config plant.yaml --format table   which tier the stored data meet
  tierproof spool list --config plant.yaml   batches waiting for InfluxDB, and refused ones
  tierproof store verify --config plant.yaml  check every stored chunk of the embedded store
  tierproof rollups status --config plant.yaml   hourly roll-ups: rows, hours missing
  tierproof keys create --config plant.yaml --scope read --name mes   an API key (shown once)
  tierproof evidence --config plant.yaml --out pack/   signed evidence pack of the assessment
  tierproof verify pack/ --public-key gateway.pem   check a pack and recompute it from its inputs
  tierproof grafana --config plant.yaml --output plant.json   Grafana dashboard, states mapped

exit codes:
  0  success
  1  the command ran and failed (e.g. a replayed batch was refused again, store verify found
     damaged data)
  2  usage or configuration error: a bad option; a configuration file missing, unreadable,
     not UTF-8, not YAML, or with an invalid field (each named with file, field and reason)
  3  cannot start: the API port is in use, the store or spool cannot be opened (a damaged
     database, a bad state.json), a file or directory cannot be read or written
  4  internal error (a bug): run again with --debug and report the traceback
  130  interrupted
A failure is one sentence on stderr; --debug adds its traceback.
"""

EXIT_FAILED, EXIT_CONFIG, EXIT_START, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


class StartFailure(TierproofError):
    """A command could not start: its API port, its store or its spool is not usable."""


def _settings(path: str | None) -> Settings:
    return load_settings(path or shipped_config("demo.yaml"))


def _log_kpi_warnings(settings: Settings) -> None:
    """Once at start: each asset's KPIs that its configured signals cannot yield (not for a
    central configuration, without devices: its tags come from the store)."""
    if not settings.devices:
        return
    for w in kpi_warnings(settings):
        log.warning("%s", w)


def _with_store_path(settings: Settings, path: Path) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"path": str(path)})})


def _uvicorn_server(app: object, host: str, port: int) -> Any:
    """uvicorn's server without its own signal handling: :data:`_STOP` owns SIGINT and SIGTERM
    so that both stop every command the same way (uvicorn's handlers re-raise the signal after
    its own shutdown, which killed the process before the rest of the stop ran). Nor does it
    run the app's lifespan: :func:`_serve` does, so that a failure to start is raised as
    itself instead of logged by uvicorn and turned into ``sys.exit(3)``."""
    import uvicorn

    from .serving import BACKLOG, bounded_protocol, connection_limit, raise_fd_limit

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # connections are bounded in number and in idle time (api.serving): a flood degrades the
    # API, never collection
    api = app.state.settings.api  # type: ignore[attr-defined]
    protocol = bounded_protocol(connection_limit(api.max_connections, raise_fd_limit()),
                                api.header_timeout_s)
    tls = api.tls
    if tls is not None:
        _check_tls(tls.cert, tls.key)
    # open HTTP connections get 5 s to finish: a hanging client cannot hold up the stop
    return Server(uvicorn.Config(app, host=host, port=port, log_level="warning",  # type: ignore[arg-type]
                                 timeout_graceful_shutdown=5, lifespan="off", http=protocol,
                                 timeout_keep_alive=api.keep_alive_s, backlog=BACKLOG,
                                 ssl_certfile=tls.cert if tls else None,
                                 ssl_keyfile=tls.key if tls else None))


def _check_tls(cert: str, key: str) -> None:
    """api.tls's files make a TLS server context, or a StartFailure naming them and why
    (uvicorn would fail later, inside the server task, with a bare ssl error)."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise StartFailure(f"api.tls: cert {cert} with key {key} cannot be used: {reason}") from exc


def _scheme(settings: Settings) -> str:
    return "https" if settings.api.tls is not None else "http"


def _warn_open(settings: Settings, host: str) -> None:
    """api.auth.required false on an address other machines reach: said at start."""
    from config.store import is_loopback_host

    if settings.api.auth.required:
        return
    if not is_loopback_host(host):
        log.warning("api.auth.required is false and the API listens on %s: anyone who reaches "
                    "this address reads the plant's data without a key", host)


def _authority(host: str, sock: socket.socket) -> str:
    """``host:port`` of the bound socket: the port it got, also for ``--port 0``."""
    port = sock.getsockname()[1]
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts: a port in use is one sentence, and no
    collector has started for nothing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: the connections accepted from it inherit it, and asyncio sets
    # TCP_NODELAY only on sockets whose proto says TCP. With proto 0, Nagle held back each
    # answer's body (uvicorn writes head and body apart) until the client's delayed ACK: ~40 ms
    # per request on Linux (issue 12: p50 44 ms under 50 clients, 18 ms with the option)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = ("the port is in use by another process (stop it, or choose another port "
                      "with --port or api.port)")
        raise StartFailure(f"the API cannot listen on {host}:{port}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


async def _serve(app: Any, host: str, port: int, duration: float | None,
                 sock: socket.socket | None = None) -> None:
    """Serve until ``duration`` ends or a stop signal arrives, then shut down gracefully: the
    app's lifespan stops the collectors, flushes the writer and closes the store. ``sock``:
    the socket :func:`_listen` bound earlier (default: bound here, before anything starts)."""
    sock = sock if sock is not None else _listen(host, port)
    from .serving import limit_loop_errors

    _warn_open(app.state.settings, host)

    limit_loop_errors(asyncio.get_running_loop())  # an accept() flood of EMFILE: not a log flood
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:  # the lifespan opens the store and the spool and starts the collectors
                await stack.enter_async_context(app.router.lifespan_context(app))
            except ConfigError:
                raise  # exit code 2, as itself
            except (TierproofError, OSError) as exc:
                raise StartFailure(str(exc)) from exc
            _freeze_start_up_heap()
            server = _uvicorn_server(app, host, port)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            stop = asyncio.create_task(_STOP.wait())
            try:
                await asyncio.wait({task, stop}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not task.done():
                    server.should_exit = True
                await task
    finally:
        sock.close()


def _freeze_start_up_heap() -> int:
    """Move every object alive once the gateway has started (configuration, tag index, store,
    collectors, routes: ~137k objects for 100 machines) out of the cyclic garbage collector's
    reach (``gc.freeze``); returns how many are frozen. A full collection traversed them all
    each time: 83 ms measured on the 100-machine plant at start, during which, holding the
    GIL, it stops the serving loop and the collectors' loop alike (issue 12's p99). They are
    still freed by reference counting; only a cycle among them outlives its last use.

    Only the young generations are collected first: their garbage is not frozen. A full
    collection here is itself that pause, with the collectors already polling: 0.22-0.26 s
    for the demo's 560k objects on a quiet machine (a recorded stall of every device under a
    loaded one), and it found nothing (0 unreachable): start-up's older garbage is collected
    by the automatic full collections while it runs."""
    gc.collect(1)
    gc.freeze()
    return gc.get_freeze_count()


async def _wait_for_stop(duration: float | None) -> None:
    """Until ``duration`` ends or a stop signal arrives."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_STOP.wait(), duration)


class _StopSignal:
    """SIGINT and SIGTERM (Ctrl-C, ``docker stop``, systemd): the first one asks the running
    command to stop gracefully; a second one exits at once."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.received: str | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.received = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        name = signal.Signals(sig).name
        if self.received is not None:
            print(f"tierproof: second stop signal ({name}): exiting without a clean stop",
                  file=sys.stderr, flush=True)
            os._exit(128 + sig)
        self.received = name
        print(f"tierproof: {name}: stopping (collectors, writer, store); send it again to exit at once",
              file=sys.stderr, flush=True)
        assert self._event is not None
        self._event.set()

    async def wait(self) -> None:
        assert self._event is not None
        await self._event.wait()


_STOP = _StopSignal()


async def _until_stopped(runner: Callable[[argparse.Namespace], Awaitable[int]],
                         args: argparse.Namespace) -> int:
    _STOP.install()
    return await runner(args)


def backfill(settings: Settings, plant: object, tag_ids: dict[str, int], store: object, now: datetime) -> int:
    """Write the simulated history [now - history_days, now) into the store; return points."""
    sim = settings.simulation
    assert sim is not None
    end_ns = to_ns(now)
    start_ns = end_ns - int(sim.history_days * 86400) * _NS
    points, t0 = 0, time.monotonic()
    for batch in plant.history_batches(tag_ids, start_ns, end_ns):  # type: ignore[attr-defined]
        store.write(batch)  # type: ignore[attr-defined]
        points += len(batch)
    print(f"  backfilled {sim.history_days:g} days of history: {points:,} samples "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return points


@contextlib.asynccontextmanager
async def _on_own_loop(name: str, factory: Callable[[], contextlib.AbstractAsyncContextManager[T]]
                       ) -> AsyncIterator[T]:
    """Enter ``factory()`` on a new event loop in its own thread; yield what it yields."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def enter() -> T:
        return await stack.enter_async_context(factory())

    def on_loop(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    try:
        value = await on_loop(enter())
        try:
            yield value
        finally:
            await on_loop(stack.aclose())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()


async def _demo(args: argparse.Namespace) -> int:
    from simulators import Plant, serve_devices
    from simulators.servers import embedded_brokers
    from store import open_store

    from .app import create_app
    from .gateway import tag_records
    from .plant_time import last_worked

    settings = _settings(args.config)
    if settings.simulation is None:
        raise ConfigError(f"{args.config}: the demo needs a simulation: section")
    _log_kpi_warnings(settings)
    sock = _listen(args.host, args.port)  # a port in use is said before the backfill, not after
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    db = data / "demo.db"
    settings = _with_store_path(settings, db)
    embedded = settings.store.type == "sqlite"
    where = str(db) if embedded else f"the {settings.store.type} store"
    now = datetime.now(UTC)
    store = open_store(settings.store)
    try:
        tag_ids = store.register_tags(tag_records(settings))
        last = store.last_ts(list(tag_ids.values()))
        keep = last is not None and await _keep_history(args, settings, where, last)
        if last is not None and not keep:  # --fresh on the embedded store (else refused)
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            store = open_store(settings.store)
            tag_ids = store.register_tags(tag_records(settings))
    except BaseException:
        sock.close()
        store.close()
        raise
    read_key, admin_key = _demo_keys(settings)
    print(f"tierproof demo: {len(settings.assets)} simulated machines, store {where}", flush=True)
    plant = Plant(settings, now=now)
    try:
        if keep:
            assert last is not None
            print(f"  kept the stored history (up to {_plant_local(settings, last)}); the time "
                  "the demo was stopped is a gap (\"gateway not running\")", flush=True)
        else:
            backfill(settings, plant, tag_ids, store, now)
        @contextlib.asynccontextmanager
        async def simulated() -> AsyncIterator[tuple[Settings, Any]]:
            async with embedded_brokers(settings) as s, serve_devices(s, plant) as running:
                yield s, running

        # the simulated machines stand for other boxes: on their own loop, so that API load on
        # this one cannot slow their answers and make the collectors' polls time out
        async with _simulators_started(_on_own_loop("tierproof-simulators", simulated)) as (settings,
                                                                                           running):
            for line in running.describe():
                print(f"  {line}", flush=True)
            if not keep:
                # the new history stands for a gateway that collected until now: a heartbeat
                # left by an earlier run (the InfluxDB store's local metadata outlives its
                # data) must not make the backfilled time a "gateway not running" gap
                for device in settings.devices:
                    if store.last_alive(device.name) is not None:
                        store.mark_alive(device.name, time.time_ns())
            app = create_app(settings, store=store)
            url = f"{_scheme(settings)}://{_authority(args.host, sock)}"
            curl = f"curl -H 'X-API-Key: {read_key}'"  # every API route asks for a key
            print(f"  read key   {read_key}\n  admin key  {admin_key}\n"
                  f"  dashboard  {url}/#key={read_key}\n  API docs   {url}/docs\n"
                  f"  KPIs       {curl} {url}/api/v1/kpis\n"
                  f"  tiers      {curl} '{url}/api/v1/tiers/assessment?tier=excellence'",
                  flush=True)
            if (example := last_worked(settings, now)) is not None:  # dates are plant-local
                print(f"  shift KPIs {curl} '{url}/api/v1/kpis?shift={quote(example[0])}&date="
                      f"{example[1].isoformat()}'  ({settings.calendar.timezone})", flush=True)
            print("  press Ctrl-C to stop" if args.duration is None else
                  f"  stopping after {args.duration:g} s", flush=True)
            await _serve(app, args.host, args.port, args.duration, sock)
    finally:
        sock.close()
        store.close()
    return 0


@contextlib.asynccontextmanager
async def _simulators_started(servers: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """``servers`` entered; a simulated device that cannot listen (its port in use) is one
    sentence naming the device, its address and the remedy (exit code 3), not a traceback."""
    entered = False
    try:
        async with servers as value:
            entered = True
            yield value
    except OSError as exc:
        if entered:
            raise
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason += (" (stop the process that holds the port, or choose another port in the "
                       "device's configuration)")
        raise StartFailure(reason) from exc


def _plant_local(settings: Settings, ns: int) -> str:
    from zoneinfo import ZoneInfo

    tz = settings.calendar.timezone
    return f"{datetime.fromtimestamp(ns / _NS, ZoneInfo(tz)):%Y-%m-%d %H:%M} {tz}"


async def _keep_history(args: argparse.Namespace, settings: Settings, where: str, last: int) -> bool:
    """Whether the demo continues the history it finds in its store (``--keep``) or starts a
    fresh one (``--fresh``); without either, a terminal is asked (keep unless told to
    delete) and anything else is refused: the demo never deletes a history unasked, nor
    backfills a second one on top of it."""
    embedded = settings.store.type == "sqlite"
    if args.fresh and not embedded:
        raise ConfigError(
            f"{where} already holds samples (up to {_plant_local(settings, last)}) and the demo "
            "does not delete from it: delete them in the database yourself (or use another "
            "database or bucket) and start again, or continue them with --keep")
    if args.keep or args.fresh:
        return bool(args.keep)
    found = (f"{where} holds a demo history (up to {_plant_local(settings, last)})")
    if not sys.stdin.isatty():
        raise ConfigError(
            f"{found}: run again with --keep to continue it (the time since is a recorded gap) "
            "or with --fresh to delete it and backfill a new one"
            + ("" if embedded else " (on InfluxDB: delete the samples yourself first)"))
    if not embedded:
        print(f"{found}: continuing it (--keep); the demo does not delete from InfluxDB",
              flush=True)
        return True
    answer = await _ask(f"{found}.\n  [k]eep it and continue (the time since is a gap), or "
                        "start [f]resh (deletes it)? [K/f] ")
    return answer.strip().lower() not in ("f", "fresh")


async def _ask(prompt: str) -> str:
    """A line from the terminal, read in a daemon thread so that Ctrl-C (which the event loop
    owns, :data:`_STOP`) interrupts the question instead of waiting for Enter."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            line = input(prompt)
        except EOFError:
            line = ""

        def give() -> None:
            if not answer.done():
                answer.set_result(line)

        loop.call_soon_threadsafe(give)

    threading.Thread(target=read, name="tierproof-ask", daemon=True).start()
    stop = asyncio.ensure_future(_STOP.wait())
    waits: list[asyncio.Future[Any]] = [answer, stop]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not answer.done():
        raise KeyboardInterrupt
    return answer.result()


#: the names of the keys the demo makes; replaced at every start, like its history
DEMO_KEYS = ("demo-read", "demo-admin")


def _demo_keys(settings: Settings) -> tuple[str, str]:
    """A read key and an admin key for the demo (its earlier ones deleted; keys of other
    names in the same file are kept)."""
    from .auth import KeyFile, KeyFileError, keys_path

    keys = KeyFile(keys_path(settings))
    try:
        keys.remove(set(DEMO_KEYS))
        return keys.create(DEMO_KEYS[0], "read")[1], keys.create(DEMO_KEYS[1], "admin")[1]
    except KeyFileError as exc:
        raise StartFailure(str(exc)) from exc


async def _run(args: argparse.Namespace) -> int:
    from .app import create_app

    settings = load_settings(args.config)
    _log_kpi_warnings(settings)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    # without devices it is a central tierproof (docs/topology.md): it reads the roll-ups the
    # gateways write and writes none (it would not know when their data change)
    sock = _listen(host, port)  # bound first: --port 0 prints the port it got
    app = create_app(settings, rollups_maintain=bool(settings.devices))
    print(f"tierproof: {len(settings.devices)} devices, {len(settings.assets)} assets, "
          f"API on {_scheme(settings)}://{_authority(host, sock)}", flush=True)
    await _serve(app, host, port, args.duration, sock)
    return 0


async def _serve_stored(args: argparse.Namespace) -> int:
    """``serve``: the API, dashboard and KPIs over the configured store; no collectors."""
    from store import SINKS, open_store

    from .app import create_app

    settings = load_settings(args.config)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    sock = _listen(host, port)  # a port in use is one sentence before anything opens
    # a remote store without its spool: this process writes no samples, and must neither
    # lock nor drain the spool of a gateway that runs on the same file
    opener = SINKS.get(settings.store.type)
    store = opener(settings.store) if opener is not None else open_store(settings.store)
    try:
        app = create_app(settings, store=store, collect=False, rollups_maintain=False)
        print(f"tierproof serve: {len(settings.assets)} assets from the {settings.store.type} "
              f"store, no collectors; API on {_scheme(settings)}://{_authority(host, sock)}",
              flush=True)
        await _serve(app, host, port, args.duration, sock)
    finally:
        store.close()
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from simulators import Plant, serve_devices, write_truth
    from simulators.servers import embedded_brokers

    settings = _settings(args.config)
    if settings.simulation is None:
        raise ConfigError(f"{args.config}: simulate needs a simulation: section")
    now = parse_instant(args.at) if args.at else datetime.now(UTC)
    if args.truth:
        window = getattr(settings.kpi, args.window)
        if window is None:
            raise ConfigError(f"{args.config or 'config/demo.yaml'}: --window {args.window} needs "
                              f"kpi.{args.window} in the configuration")
        data = write_truth(settings, args.truth, now=now, window=args.window)
        w = data["window"]
        print(f"wrote ground truth of the {args.window} window ({w['from']} .. {w['to']}) "
              f"to {args.truth}")
        return 0
    if args.window != "current":
        raise ConfigError("--window chooses the window of --truth; without --truth it means nothing")
    plant = Plant(settings, now=now)
    async with embedded_brokers(settings) as settings, serve_devices(settings, plant) as running:
        for line in running.describe():
            print(f"  {line}", flush=True)
        print("simulating; Ctrl-C to stop", flush=True)
        await _wait_for_stop(args.duration)
    return 0


def _check(args: argparse.Namespace) -> int:
    files = [*args.files, *args.config]
    if not files:
        print("tierproof check-config: give FILE or --config FILE", file=sys.stderr)
        return 2
    status = 0
    for f in files:
        try:
            s = load_settings(f)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
        else:
            n_tags = len(s.all_tags())
            print(f"{f}: OK ({len(s.assets)} assets, {len(s.devices)} devices, {n_tags} tags)")
            # the fingerprint every KPI answer and assessment of this file records
            print(f"{f}: fingerprint {config_fingerprint(s)}")
            warnings = kpi_warnings(s) if s.devices else []
            if not s.devices and s.assets:
                print(f"{f}: no devices: a central configuration (tierproof serve): the assets' "
                      f"tags are read from the {s.store.type} store, where their gateways register them")
            if warnings:  # not errors: the exit code stays 0
                print(f"{f}: {len(warnings)} warning(s): KPIs the configured signals cannot yield")
                for w in warnings:
                    print(f"  {f}: warning: {w}")
    return status


def _when(ns: int | None) -> str:
    return iso(ns, timespec="seconds") or "-"


def _spool(args: argparse.Namespace) -> int:
    from store import open_spool_admin

    admin = open_spool_admin(load_settings(args.config, store_only=True), args.config)
    qid = getattr(args, "quarantine", None)
    if args.spool_command == "list":
        got = admin.listing()
        if not got.exists:
            print(f"spool {got.path}: does not exist yet (nothing was ever spooled)")
            return 0
        st, qs = got.stats, got.quarantine_stats
        assert st is not None and qs is not None
        print(f"spool {got.path}: {st.batches} batches, {st.points:,} points, {st.bytes:,} of "
              f"{st.max_bytes:,} bytes (when full: {st.when_full}); dropped {st.dropped_points:,} "
              f"points (oldest), refused {st.refused_points:,} points (newest); lost {st.lost_batches:,} "
              f"batches ({st.lost_points:,} points known) to damage")
        for d in st.damage:
            print(f"  damage: {d}")
        if got.entries:
            print(f"  {'batch':>8} {'points':>9} {'bytes':>11}  {'from':20}  {'to':20}  spooled")
        for e in got.entries:
            print(f"  {e.seq:>8} {e.points:>9,} {e.bytes:>11,}  {_when(e.ts_min):20}  "
                  f"{_when(e.ts_max):20}  {_when(e.spooled_ns)}")
        print(f"quarantine {got.path / 'quarantine'}: {qs.batches} batches, {qs.points:,} points; "
              f"replayed {qs.replayed_points:,} points, dropped {qs.dropped_points:,} points")
        if got.quarantine:
            print(f"  {'id':>8} {'points':>9} {'bytes':>11}  {'from':20}  {'to':20}  {'status':>6}  reason")
        for q in got.quarantine:
            print(f"  {q.id:>8} {q.points:>9,} {q.bytes:>11,}  {_when(q.ts_min):20}  {_when(q.ts_max):20}  "
                  f"{q.status if q.status is not None else '-':>6}  {q.reason}")
        return 0
    if args.spool_command == "drop":
        if not args.yes:
            what = f"quarantined batch {qid}" if qid is not None else "every quarantined batch"
            print(f"tierproof: not dropping {what} without --yes (the points are lost for good)",
                  file=sys.stderr)
            return 2
        dropped = admin.drop(qid)
        print(f"dropped {len(dropped)} quarantined batches, {sum(e.points for e in dropped):,} points")
        return 0
    assert args.spool_command == "replay"
    outcomes = admin.replay(qid)
    for o in outcomes:
        result = "replayed" if o.ok else f"refused again: {o.status} {o.reason}"
        print(f"  {o.id:>8} {o.points:>9,}  {result}")
    ok = [o for o in outcomes if o.ok]
    print(f"replayed {len(ok)} of {len(outcomes)} quarantined batches, {sum(o.points for o in ok):,} points")
    return 0 if len(ok) == len(outcomes) else 1


def _cell(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns (the last one unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]


def _figure_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per figure: current value with its interval, baseline→current delta, coverage,
    and what is missing; the declared CNC rate on the row after the verified one."""
    rows: list[tuple[str, ...]] = [("figure", "unit", "value", "interval", "delta", "delta interval",
                                    "coverage", "missing / note")]
    for name, f in result["figures"].items():
        v, d = f["value"] or {}, result["deltas"].get(name) or {}
        rows.append((
            name, f["unit"], _cell(v.get("point")),
            f"[{_cell(v['low'])}, {_cell(v['high'])}]" if v.get("low") is not None else "-",
            _cell(d.get("point")),
            f"[{_cell(d['low'])}, {_cell(d['high'])}]" if d.get("low") is not None else "-",
            _cell(f["coverage"]), f.get("missing") or f.get("note") or "",
        ))
        if "declared" in f:
            dec = f["declared"]
            rows.append((f"  {name} (declared)", f["unit"], _cell(dec["value"]), "-", "-", "-", "-",
                         f"{dec['numerator']} of {dec['denominator']}: {dec['source']}"))
    return rows


def _assess_table(result: dict[str, Any]) -> str:
    """The assessment as readable tables: the figures, then one row per tier and criterion."""
    base = result["baseline_window"]
    lines = [
        f"criteria {result['criteria_version']}, algorithm {result['algorithm_version']}, "
        f"config {result['config_fingerprint']}",
        f"window {result['window']['from']} .. {result['window']['to']}; baseline "
        + (f"{base['from']} .. {base['to']}" if base else "none (needs kpi.baseline)"),
        "",
        *_columns(_figure_rows(result)),
        "",
    ]
    declared = (result["figures"].get("cnc_rate_key_equipment") or {}).get("declared")
    head = ("tier", "criterion", "value", "interval", "threshold", "verdict", "missing")
    rows: list[tuple[str, ...]] = [head]
    for name, t in result["tiers"].items():
        for c in t["criteria"]:
            iv = c["interval"]
            value = _cell(c["value"])
            if c["figure"] == "cnc_rate_key_equipment" and declared:  # shown beside the verified one
                value += f" (declared {_cell(declared['value'])})"
            rows.append((
                name if c["tier"] == name else f"{name} ({c['tier']})", c["id"], value,
                f"[{_cell(iv['low'])}, {_cell(iv['high'])}]" if iv else "-",
                f"{c['direction']} {_cell(c['threshold'])}", c["verdict"], c["missing"] or "",
            ))
        rows.append((name, "(tier)", "", "", "", t["verdict"], ""))
    lines += _columns(rows)
    return "\n".join(line.rstrip() for line in lines)


def _assess(args: argparse.Namespace) -> int:
    import json

    from config import load_tiers
    from store import open_store

    from .assessment import assess
    from .declared import DeclaredEvidence
    from .service import KpiService

    # the declared items supplied through the API in place of the file's, as the API has them
    with DeclaredEvidence.open(load_settings(args.config)) as declared:
        settings = declared.settings
        versions = declared.versions()
    store = open_store(settings.store)  # read only: no tags registered, nothing collected
    try:
        if not settings.devices and callable(getattr(store, "discover_tags", None)):
            # a central configuration: the tags are those the gateways registered in InfluxDB
            store.discover_tags([a.path for a in settings.assets])  # type: ignore[attr-defined]
        service = KpiService(settings, store, declared_versions=versions)
        with service.snapshot():  # one state of the store, while a gateway may be writing
            result = assess(settings, service, load_tiers(), tier=args.tier,
                            from_=args.from_, to=args.to, baseline_from=args.baseline_from,
                            baseline_to=args.baseline_to)
    finally:
        store.close()
    print(json.dumps(result, indent=2) if args.format == "json" else _assess_table(result))
    return 0


def _rollups(args: argparse.Namespace) -> int:
    """``tierproof rollups status|rebuild``: the embedded store's roll-up rows."""
    from store import open_store

    from .rollups import DAY, HEAD, HOUR_NS, SUM, RollupMaintainer, has_rollups, rollup_key
    from .service import KpiService

    settings = load_settings(args.config)
    store = open_store(settings.store)
    try:
        if not has_rollups(store):
            raise ConfigError(f"{args.config}: store.type {settings.store.type!r} keeps no roll-ups "
                              "(the embedded sqlite store does)")
        service = KpiService(settings, store, rollups=True)
        where = getattr(settings.store, "path", settings.store.type)
        now = time.time_ns()
        m = RollupMaintainer(service, backfill_days=None)
        end = m.closed_end()
        first = service.first_sample_ns(now)
        tz = settings.calendar.zone  # a time without an offset is the plant's, as in the API
        lo = None if args.from_ is None else to_ns(parse_instant(args.from_, datetime.now(UTC), tz))
        hi = end if args.to is None else to_ns(parse_instant(args.to, datetime.now(UTC), tz))
        start = first if lo is None else lo
        if start is None:
            print(f"store {where}: no samples yet, nothing to roll up")
            return 0
        start = start // HOUR_NS * HOUR_NS
        hi = min(hi // HOUR_NS * HOUR_NS, end)  # the hours that end by --to
        by_asset = service._tags_by_asset()
        if args.rollups_command == "rebuild":
            dropped = store.drop_rollups(start, hi)  # type: ignore[attr-defined]
            print(f"dropped {dropped:,} rows of hours {iso(start)} to {iso(hi)}", flush=True)
            t0, total = time.monotonic(), 0
            for i, asset in enumerate(settings.assets, 1):
                total += m._asset(asset, by_asset.get(asset.path, {}), start, hi)
                print(f"  {i}/{len(settings.assets)} {asset.path}: {total:,} rows "
                      f"({time.monotonic() - t0:.1f} s)", flush=True)
            print(f"rebuilt {total:,} rows in {time.monotonic() - t0:.1f} s")
            return 0
        hours = max((hi - start) // HOUR_NS, 0)
        rows = days = missing = stale = 0
        for asset in settings.assets:
            tags = by_asset.get(asset.path, {})
            got = store.rollups([asset.path], start, hi)  # type: ignore[attr-defined]
            key = rollup_key(settings, asset, tags) if tags else None
            hour_rows = [r for r in got if r.hour_ns % HOUR_NS == 0]
            rows += len(hour_rows)
            days += sum(r.key == f"{key}{DAY}" for r in got if r.hour_ns % HOUR_NS)
            stale += sum(r.key != key for r in hour_rows)
            stale += sum(r.key not in (f"{key}{DAY}", f"{key}{SUM}", f"{key}{HEAD}")
                         for r in got if r.hour_ns % HOUR_NS)
            if tags:
                missing += hours - sum(r.key == key for r in hour_rows)
        print(f"store {where}: hours {iso(start)} to {iso(hi)} (closed), "
              f"{len(settings.assets)} assets")
        print(f"  rows {rows:,}, day rows {days:,}, hours missing {missing:,}, "
              f"key mismatches {stale:,}")
        return 0
    finally:
        store.close()


def _add_spool(sub: Any) -> None:
    """The ``spool`` command and its actions."""
    sp = sub.add_parser(
        "spool", help="inspect the store-and-forward spool and quarantine (InfluxDB store)",
        description="Batches wait in the spool while InfluxDB cannot take them and drain by "
        "themselves when it can. Batches InfluxDB refused for good (a 4xx other than 429) wait "
        "in the quarantine until you replay or drop them.",
    )
    spsub = sp.add_subparsers(dest="spool_command", required=True, metavar="ACTION")
    sl = spsub.add_parser("list", help="show spooled and quarantined batches",
                          description="Per batch: points, bytes, time range; quarantined ones "
                          "with the server's status and reason. Safe while the gateway runs.")
    sl.add_argument("--config", required=True, help="the gateway's configuration file")
    sr = spsub.add_parser("replay", help="send quarantined batches to InfluxDB again",
                          description="After fixing the cause (e.g. creating the database): a "
                          "batch InfluxDB takes leaves the quarantine; one it refuses stays, with "
                          "the new reason. Exit code 1 when any was refused.")
    sr.add_argument("--config", required=True, help="the gateway's configuration file")
    srw = sr.add_mutually_exclusive_group(required=True)
    srw.add_argument("--quarantine", type=int, metavar="ID", help="only this batch (ids from spool list)")
    srw.add_argument("--all", action="store_true", help="every quarantined batch, oldest first")
    sd = spsub.add_parser("drop", help="delete quarantined batches for good (counted and logged)",
                          description="Deletes quarantined batches; their points are counted as "
                          "dropped in the gateway status. Needs --yes.")
    sd.add_argument("--config", required=True, help="the gateway's configuration file")
    sdw = sd.add_mutually_exclusive_group(required=True)
    sdw.add_argument("--quarantine", type=int, metavar="ID", help="only this batch (ids from spool list)")
    sdw.add_argument("--all", action="store_true", help="every quarantined batch")
    sd.add_argument("--yes", action="store_true", help="confirm: the points are lost for good")


def _add_store(sub: Any) -> None:
    """The ``store`` command and its actions."""
    st = sub.add_parser(
        "store", help="check the embedded store (SQLite)",
        description="Every stored chunk of samples carries a checksum; reads skip a damaged one "
        "and report it as a gap (docs/store.md).",
    )
    stsub = st.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    sv = stsub.add_parser(
        "verify", help="check every stored chunk; exit code 1 when any is damaged",
        description="Reads every chunk and checks its checksums (chunks written before schema "
        "version 5 have none: they are only checked to decode). Damaged chunks are recorded in "
        "the store (the gateway's /api/v1/health and KPI evidence show them) and listed with "
        "their tag and time range. Safe while the gateway runs.")
    sv.add_argument("--config", required=True, help="the gateway's configuration file")


def _store(args: argparse.Namespace) -> int:
    from store import SqliteStore, open_store

    settings = load_settings(args.config, store_only=True)
    if settings.store.type != "sqlite":
        raise ConfigError(f"{args.config}: store.type: {settings.store.type!r}: store verify "
                          "checks the embedded store (type sqlite) only")
    store = open_store(settings.store)
    try:
        assert isinstance(store, SqliteStore)
        got = store.verify()
        name = store.path.name
    finally:
        store.close()
    print(f"store {name}: {got.chunks:,} chunks checked ({got.unverified:,} without checksums, "
          f"written before schema version 5: checked to decode only), {got.ingest_rows:,} ingest"
          f" rows checked ({got.ingest_unverified:,} without checksums, written before schema"
          f" version 6); {len(got.damage)} damaged")
    for d in got.damage:
        what = d.reason if d.seq is not None else f"chunk {d.chunk_id}: {d.reason}"
        who = f"{d.path or '?'} (tag id {d.tag_id})" if d.tag_id >= 0 else "unknown tags"
        print(f"  damaged: {who}: {d.samples:,} samples from "
              f"{iso(d.start_ns)} to {iso(d.end_ns - 1)} ({what})")
    return EXIT_FAILED if got.damage else 0


def _add_keys(sub: Any) -> None:
    """The ``keys`` command and its actions."""
    k = sub.add_parser(
        "keys", help="create, list and revoke API keys",
        description="API keys are kept hashed (SHA-256) in the keys file: api.auth.keys_file, "
        "by default api_keys.json beside the store's file. A key is shown once, when created. "
        "Scopes: read (GET), write (and every other method), admin (everything). Safe while "
        "the gateway runs: it reads the file again when it changes (docs/api.md#authentication).")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", help="make a key and print it (once)",
                         description="Prints the key alone on stdout (KEY=$(tierproof keys "
                         "create ...)), and what it is on stderr.")
    kc.add_argument("--config", required=True, help="the gateway's configuration file")
    kc.add_argument("--scope", required=True, choices=["read", "write", "admin"])
    kc.add_argument("--name", required=True, help="who or what uses it (e.g. mes, grafana)")
    kl = ksub.add_parser("list", help="id, name, scope, created, last used, revoked (never the key)")
    kl.add_argument("--config", required=True, help="the gateway's configuration file")
    kr = ksub.add_parser("revoke", help="revoke a key for good (the next request with it is a 401)")
    kr.add_argument("id", help="the key's id (from keys list; the 8 hex digits after tp_)")
    kr.add_argument("--config", required=True, help="the gateway's configuration file")


def _keys(args: argparse.Namespace) -> int:
    from .auth import KeyFile, KeyFileError, keys_path

    settings = load_settings(args.config, store_only=True)
    keys = KeyFile(keys_path(settings))
    try:
        if args.keys_command == "create":
            name = args.name.strip()
            if not name or len(name) > 64 or not name.isprintable():
                raise ConfigError(f"--name {name!r}: 1 to 64 printable characters")
            rec, key = keys.create(name, args.scope)
            print(key, flush=True)
            print(f"created API key {rec.id} ({rec.name}, scope {rec.scope}) in {keys.path}; it "
                  "is shown only now (the file keeps its SHA-256): send it as 'X-API-Key: <key>' "
                  "or 'Authorization: Bearer <key>'", file=sys.stderr)
            return 0
        if args.keys_command == "revoke":
            rec, now = keys.revoke(args.id)
            print(f"{'revoked' if now else 'already revoked:'} API key {rec.id} ({rec.name}, "
                  f"scope {rec.scope}) at {rec.revoked}")
            return 0
        records = keys.load()
    except KeyFileError as exc:
        if args.keys_command == "revoke" and "no API key with id" in str(exc):
            raise TierproofError(str(exc)) from exc
        raise StartFailure(str(exc)) from exc
    configured = settings.api.auth.keys
    print(f"keys file {keys.path}: {len(records)} keys "
          f"({sum(r.revoked is None for r in records)} in force)"
          + (f"; {len(configured)} more in the configuration (api.auth.keys)" if configured else ""))
    rows: list[tuple[str, ...]] = [("id", "name", "scope", "created", "last used", "revoked")]
    rows += [(r.id, r.name, r.scope, r.created, r.last_used or "-", r.revoked or "-")
             for r in records]
    rows += [(f"config:{c.name}", c.name, c.scope, "-", "-", "-") for c in configured]
    if len(rows) > 1:
        for line in _columns(rows):
            print(f"  {line}".rstrip())
    return 0


def _grafana(args: argparse.Namespace) -> int:
    from .grafana import dashboard_json

    text = dashboard_json(load_settings(args.config))
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote the Grafana dashboard of {args.config} to {args.output}")
    return 0


def _instant_arg(text: str) -> str:
    """An option's instant, checked when the options are read (a usage error, exit code 2)."""
    try:
        parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierproof",
        description="Edge gateway: collect factory telemetry, store it, serve auditable KPIs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--debug", action="store_true",
                   help="on a failure, print its traceback after the one-sentence error")
    p.add_argument("--version", action="version", version=f"tierproof {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run a simulated plant end to end with the API and dashboard",
                       description="Start simulated machines (history backfilled so KPIs exist at "
                       "once), their collectors, the embedded store and the API on 127.0.0.1.")
    d.add_argument("--config", help="configuration file (default: the shipped config/demo.yaml)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    d.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    d.add_argument("--data-dir", default="data", help="where the demo database goes (default "
                   "data/); a database already there is kept or deleted only as --keep or "
                   "--fresh says (a terminal is asked; without one the demo refuses)")
    once = d.add_mutually_exclusive_group()
    once.add_argument("--keep", action="store_true", help="continue the stored history: no "
                      "backfill; the time the demo was stopped is a recorded gap")
    once.add_argument("--fresh", action="store_true", help="delete the stored history and "
                      "backfill a new one (embedded store only: the demo never deletes from "
                      "InfluxDB)")

    r = sub.add_parser("run", help="run the gateway for a real plant",
                       description="Collect from the configured devices into the configured store "
                       "and serve the API. With an empty device list it collects nothing and "
                       "serves the configured assets from the store, as serve does.")
    r.add_argument("--config", required=True, help="configuration file")
    r.add_argument("--host", help="API host (default: api.host of the config)")
    r.add_argument("--port", type=int, help="API port (default: api.port of the config)")
    r.add_argument("--duration", type=float, help="stop after this many seconds")

    sv = sub.add_parser(
        "serve", help="serve the API, dashboard and KPIs over the configured store, no collectors",
        description="Serve stored data only: the API, the dashboard and the KPIs of the "
        "configured assets, from the configured store, with no collector running (devices in "
        "the file are ignored). With an InfluxDB store and no devices this is the central "
        "tierproof of an enterprise: it learns each asset's tags from the tag register the "
        "gateways write, reads their samples, gap markers and hourly roll-ups from the one "
        "database, computes whatever hour has no roll-up from raw samples (each asset's "
        "'rollups' in /api/v1/kpis says how many), and writes nothing. See docs/topology.md.")
    sv.add_argument("--config", required=True, help="configuration file (e.g. config/examples/central.yaml)")
    sv.add_argument("--host", help="API host (default: api.host of the config)")
    sv.add_argument("--port", type=int, help="API port (default: api.port of the config)")
    sv.add_argument("--duration", type=float, help="stop after this many seconds")

    c = sub.add_parser("check-config", help="validate configuration files",
                       description="Print OK and the file's fingerprint (the one the API and "
                       "every assessment record), or every error with file, field path and "
                       "reason; exit code 2 when a file is invalid. A valid file's warnings name "
                       "every asset whose configured signals cannot yield some KPIs, and why "
                       "(exit code 0).")
    c.add_argument("files", nargs="*", metavar="FILE")
    c.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="a file to check (as the other commands name it; may be repeated)")

    s = sub.add_parser("simulate", help="run the simulated machines alone, or write their ground truth",
                       description="Serve the config's simulated machines over their protocols, or "
                       "with --truth write the exact KPIs of the config's current (or baseline) "
                       "window as JSON, in the names and shape of the API's KPIs.")
    s.add_argument("--config", help="configuration file (default: the shipped config/demo.yaml)")
    s.add_argument("--truth", metavar="OUT.json", help="write ground-truth KPIs and exit (the "
                   "names and shape of GET /api/v1/kpis, to diff with it)")
    s.add_argument("--window", choices=["current", "baseline"], default="current",
                   help="with --truth: the config's kpi.current (default) or kpi.baseline window")
    s.add_argument("--at", type=_instant_arg,
                   help="the simulation's 'now' (ISO 8601), for reproducible truth")
    s.add_argument("--duration", type=float, help="stop serving after this many seconds")

    a = sub.add_parser("assess", help="judge every smart-factory tier on the stored data",
                       description="Read the configured store (without collecting) and print, per "
                       "tier and criterion, value, 95 %% interval, threshold, verdict and what is "
                       "missing. Windows default to kpi.current and kpi.baseline.")
    a.add_argument("--config", required=True, help="configuration file")
    a.add_argument("--from", dest="from_", help="current window start (ISO 8601 or now-7d)")
    a.add_argument("--to", help="current window end (ISO 8601 or now)")
    a.add_argument("--baseline-from", help="baseline window start")
    a.add_argument("--baseline-to", help="baseline window end")
    a.add_argument("--tier", help="one tier (default: every tier)")
    a.add_argument("--format", choices=["json", "table"], default="table")

    ro = sub.add_parser("rollups", help="inspect or rebuild the embedded store's hourly roll-ups",
                        description="The roll-ups are kept in the background by serve, run and "
                        "demo; status counts rows, closed hours without a current row and rows of "
                        "another key; rebuild drops the rows of the hours and recomputes them "
                        "from raw samples (safe while the gateway runs).")
    rosub = ro.add_subparsers(dest="rollups_command", required=True, metavar="ACTION")
    for name, text in (("status", "rows, hours missing and key mismatches"),
                       ("rebuild", "drop and recompute the rows of closed hours")):
        x = rosub.add_parser(name, help=text)
        x.add_argument("--config", required=True, help="the gateway's configuration file")
        x.add_argument("--from", dest="from_", help="first hour (ISO 8601 or now-7d; default: the "
                       "store's first sample)")
        x.add_argument("--to", help="end (default: the last closed hour)")

    g = sub.add_parser("grafana", help="write the Grafana dashboard of a plant's configuration",
                       description="Write the plant dashboard for Grafana (InfluxDB store) with "
                       "each machine's state and mode mapped from its own native codes to the "
                       "canonical names (OPC 40001-1), as its enum in the configuration says. "
                       "deploy/grafana/dashboards/plant.json is this command's output for "
                       "config/demo.yaml (the plant of deploy/gateway.yaml).")
    g.add_argument("--config", required=True, help="configuration file")
    g.add_argument("--output", metavar="FILE", help="write here (default: standard output)")

    _add_spool(sub)
    _add_store(sub)
    _add_keys(sub)
    evidence_commands.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # before any thread allocates (api.allocator: issue 13's memory growth): 2 arenas; the
    # fixed mmap threshold is the operator's choice (MALLOC_MMAP_THRESHOLD_): it costs CPU
    tune_malloc(mmap_threshold=None)
    args = parser().parse_args(argv)
    if args.command in ("run", "serve", "demo"):  # long-running: give freed pages back
        start_trimming()
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        # the protocol stacks log every server start and client retry at INFO; ours say what matters
        # httpx logs every request at INFO (hundreds a second into InfluxDB): the store writer
        # logs one throughput line a minute instead (store.writer)
        for noisy in ("pymodbus", "asyncua", "amqtt", "transitions", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _dispatch(args)
    except Exception as exc:  # every failure: one sentence (and the traceback under --debug)
        return _failed(exc, debug=args.debug)
    except KeyboardInterrupt as exc:
        return _failed(exc, debug=args.debug)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        return _check(args)
    if args.command == "spool":
        return _spool(args)
    if args.command == "store":
        return _store(args)
    if args.command == "assess":
        return _assess(args)
    if args.command == "rollups":
        return _rollups(args)
    if args.command == "keys":
        return _keys(args)
    if args.command == "evidence":
        return evidence_commands.evidence(args)
    if args.command == "verify":
        return evidence_commands.verify(args)
    if args.command == "grafana":
        return _grafana(args)
    runner = {"demo": _demo, "run": _run, "serve": _serve_stored,
              "simulate": _simulate}[args.command]
    return asyncio.run(_until_stopped(runner, args))


def _failed(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as one sentence on stderr (a configuration error: one line per problem,
    each naming file, field and reason), its traceback first under ``--debug``; return the
    exit code (see EPILOG)."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    code: int
    if isinstance(exc, KeyboardInterrupt):
        code, text = EXIT_INTERRUPTED, "tierproof: interrupted"
    elif isinstance(exc, ConfigError):
        code, text = EXIT_CONFIG, str(exc)
    elif isinstance(exc, StartFailure):
        code, text = EXIT_START, f"tierproof: cannot start: {exc}"
    elif isinstance(exc, StoreError):
        code, text = EXIT_START, f"tierproof: the store cannot be used: {exc}"
    elif isinstance(exc, TierproofError):
        code, text = EXIT_FAILED, f"tierproof: {exc}"
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        code, text = EXIT_START, f"tierproof: {where}{exc.strerror or exc}"
    else:
        first = str(exc).splitlines()[0] if str(exc) else ""
        code = EXIT_INTERNAL
        text = (f"tierproof: internal error: {type(exc).__name__}: {first}"
                + ("" if debug else " (run again with --debug for the traceback, and report it)"))
    # secrets are never echoed: whatever the message, a URL's password shows as ***
    print(redact_url(text), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
