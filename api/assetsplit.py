"""One answer computed by several processes, each over a share of the plant's assets.

An assessment (``api.assessment``) is a sum over assets: every asset's per-day elements,
window results and history span are computed on their own, then added up in register order.
Its per-asset part therefore splits by asset over the cores of the gateway: ``map_assets``
cuts the register into contiguous runs, sends all but the last to **worker processes** (one
round trip each per call) and computes the last itself meanwhile; the caller gets every run's
per-asset answer back in register order and sums them as one process would, so the answer
is the same JSON, bit for bit.

Workers (``kpi.assess_workers``; default one per core beyond the first for a register of 64
assets or more, 0: none):

- each is a fresh interpreter (``subprocess``: exec, never a fork of a process that runs
  threads; not ``multiprocessing``'s spawn either, which would import the parent's main
  module -- a benchmark's pandas -- into every worker), started on first use and kept warm:
  its imports, page cache and decoded runs serve the next call;
- it holds its own **read-only** connection to the embedded store (``SqliteStore(readonly=
  True)``) and a ``KpiService`` built from the same settings (sent with the first call of
  each service, ``_Context``), and computes its run inside its own ``KpiService.snapshot()``
  (one SQLite read transaction) and ``sharing_rows()``. **Consistency**: every number of one
  asset comes from one process, so from one snapshot; the runs of different processes read
  snapshots opened milliseconds apart (the caller's is opened first), so a plant total may
  mix two successive states of the store while a gateway writes -- as two successive
  requests would, never a half-written one;
- a store that is not the embedded one (InfluxDB, or its spool) is computed in the calling
  process: its reads are network requests, and the worker would need its own client and
  credentials (not done);
- a worker that dies, fails, or does not answer in time is ended, logged (WARNING, with its
  reason), and its run computed in the calling process: never wrong numbers, at worst the
  one-process time. The next call starts a new worker; after ``_MAX_FAILURES`` failures in a
  row workers are off for this process (ERROR, once).

``usage()`` gives each worker's CPU time and peak RSS (as of its last answer), for benchmarks
that count every process; ``shutdown()`` ends them (also at exit; a worker whose parent dies
sees its pipe close and exits).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, Final

from config.gcpause import collector_paused
from config.settings import Settings

from .service import KpiService

__all__ = ["map_assets", "shutdown", "usage", "workers_for"]

log = logging.getLogger("tierproof.assetsplit")

#: a run of the register's assets -> its per-asset answer (a module-level function: it is
#: sent to a worker by its qualified name)
AssetFn = Callable[..., Any]

#: failed calls in a row after which workers are off for this process
_MAX_FAILURES: Final = 3
#: a worker's run may take this much longer than the caller's own run, plus _GRACE_S (its
#: first run also imports and opens the store), before it is ended and computed here
_SLOWER: Final = 10.0
_GRACE_S: Final = 60.0
#: unset ``kpi.assess_workers``: workers for a register of at least this many assets. A split
#: costs ~0.1 s of CPU in all (each process reads its own tag table, day rows and plan; the
#: answer pickles) and a first assessment also starts the worker (an interpreter, its imports
#: and the store, ~0.5 s); half of a 30-day assessment's per-asset work (~2.6 ms an asset on
#: the 500 x 30 bench) outweighs that from about 80 assets. A demo-sized plant is assessed
#: in one process and starts no worker; a set value applies at any size
_AUTO_MIN_ASSETS: Final = 64
#: what ``_answer`` returns for a worker that failed
_FAILED: Final = object()
_BOOT: Final = ("import sys; sys.path[:0] = sys.argv[2:]; "
                "from api.assetsplit import _serve; _serve(int(sys.argv[1]))")


@dataclass(frozen=True, slots=True)
class _Context:
    """What a worker builds its KpiService from: sent with a service's first call to it."""

    token: int
    settings: Settings
    store_path: str
    synchronous: str
    rollups: bool
    declared_versions: dict[str, dict[str, Any]]


class _Worker:
    """One worker process and the caller's end of its pipe; one call at a time (``lock``)."""

    def __init__(self) -> None:
        ours, theirs = Pipe(duplex=True)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), *sys.path],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn: Connection = ours
        self.lock = threading.Lock()
        #: the token of the service whose settings and store the worker holds
        self.context: int | None = None
        #: (CPU seconds, peak RSS MB) of the worker as of its last answer
        self.usage: tuple[float, float] = (0.0, 0.0)

    def end(self) -> None:
        """Close the pipe (the worker exits on it) and reap the process, killed if need be."""
        self.conn.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Pool:
    """This process's workers, shared by every KpiService (each keeps its context token)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.failures = 0
        self.off = False
        self.tokens: weakref.WeakKeyDictionary[KpiService, int] = weakref.WeakKeyDictionary()
        self.count = itertools.count(1)

    def token(self, service: KpiService) -> int:
        with self.lock:
            t = self.tokens.get(service)
            if t is None:
                t = self.tokens[service] = next(self.count)
            return t

    def get(self, n: int) -> list[_Worker]:
        """``n`` workers, started where missing (a failure to start is logged: fewer)."""
        with self.lock:
            while len(self.workers) < n:
                try:
                    self.workers.append(_Worker())
                except OSError:
                    log.warning("assessment worker could not start; computing in this process",
                                exc_info=True)
                    break
            return self.workers[:n]

    def drop(self, w: _Worker, why: str) -> None:
        """End a worker that failed; after _MAX_FAILURES in a row, workers are off."""
        with self.lock:
            if w in self.workers:
                self.workers.remove(w)
            self.failures += 1
            off = self.failures >= _MAX_FAILURES and not self.off
            if off:
                self.off = True
        log.warning("assessment worker (pid %d) %s: its assets are computed in this process",
                    w.proc.pid, why)
        if w.proc.poll() is None:
            w.proc.kill()
        w.end()
        if off:
            log.error("assessment workers failed %d times in a row: off for this process "
                      "(every asset computed in it)", _MAX_FAILURES)

    def shutdown(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
            self.failures, self.off = 0, False
        for w in workers:
            w.end()


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def shutdown() -> None:
    """End every worker of this process; the next call starts new ones (workers turned off by
    failures are on again)."""
    _POOL.shutdown()


def usage() -> list[dict[str, float]]:
    """Each live worker's pid, CPU seconds and peak RSS (MB), as of its last answer."""
    with _POOL.lock:
        return [{"pid": w.proc.pid, "cpu_s": w.usage[0], "peak_rss_mb": w.usage[1]}
                for w in _POOL.workers]


def workers_for(service: KpiService) -> int:
    """How many workers ``map_assets`` uses for ``service``: ``kpi.assess_workers`` (unset:
    the cores beyond the first, for a register of ``_AUTO_MIN_ASSETS`` or more), 0 for a
    store other than the embedded one, when workers are off, or for fewer than two assets."""
    from store.sqlite import SqliteStore

    want = service.settings.kpi.assess_workers
    if want is None:
        n = len(service.settings.assets)
        want = len(os.sched_getaffinity(0)) - 1 if n >= _AUTO_MIN_ASSETS else 0
    if want <= 0 or _POOL.off or not isinstance(service.store, SqliteStore):
        return 0
    return max(0, min(want, len(service.settings.assets) - 1))


def _runs(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous runs of ``n`` items, sizes differing by one at most."""
    q, r = divmod(n, parts)
    out, at = [], 0
    for i in range(parts):
        size = q + (i < r)
        out.append((at, at + size))
        at += size
    return out


def map_assets(service: KpiService, fn: AssetFn, *args: Any) -> list[Any]:
    """``fn(service, assets, *args)`` over contiguous runs of the register's assets, in
    register order: the last run in this process (inside the caller's snapshot), the others
    in worker processes at the same time (``workers_for``); one run, in this process, when
    there is no worker. ``fn`` and ``args`` must pickle (a module-level function)."""
    assets = service.settings.assets
    n = workers_for(service)
    if n == 0:
        return [fn(service, assets, *args)]
    runs = _runs(len(assets), n + 1)
    context = _context(service)
    sent: dict[int, _Worker] = {}  # run -> the worker computing it
    for i, w in enumerate(_POOL.get(n)):  # n workers: the last run is always this process's
        w.lock.acquire()
        fresh = w.context != context.token
        try:
            w.conn.send_bytes(pickle.dumps(
                (context if fresh else context.token, fn, runs[i], args), pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # a broken pipe, or what cannot pickle
            w.lock.release()
            _POOL.drop(w, f"could not be sent its assets ({exc!r})")
            continue
        w.context = context.token
        sent[i] = w
    out: list[Any] = [None] * len(runs)
    t0 = time.perf_counter()
    try:
        for i, (a, b) in enumerate(runs):
            if i not in sent:
                out[i] = fn(service, assets[a:b], *args)
    except BaseException:
        for w in sent.values():  # their answers are not wanted, but must not be left unread
            _answer(w, _GRACE_S)
        raise
    timeout = _GRACE_S + _SLOWER * (time.perf_counter() - t0)
    for i, w in sent.items():
        got = _answer(w, timeout)
        a, b = runs[i]
        out[i] = fn(service, assets[a:b], *args) if got is _FAILED else got
    return out


def _answer(w: _Worker, timeout: float) -> Any:
    """A worker's answer, or _FAILED (the worker then ended and logged)."""
    try:
        try:
            if not w.conn.poll(timeout):
                why = f"did not answer within {timeout:.0f} s"
            else:
                kind, payload, use = pickle.loads(w.conn.recv_bytes())
                w.usage = use
                if kind == "ok":
                    _POOL.failures = 0
                    return payload
                why = f"failed:\n{payload}"
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            try:  # a pipe closed by a dying worker: its exit code follows within moments
                code: int | None = w.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            why = f"ended (exit code {code}, {exc!r})" if code is not None else f"broke ({exc!r})"
    finally:
        w.lock.release()
    _POOL.drop(w, why)
    return _FAILED


def _context(service: KpiService) -> _Context:
    store = service.store
    return _Context(_POOL.token(service), service.settings, str(store.path.resolve()),  # type: ignore[attr-defined]
                    str(getattr(store, "_synchronous", "normal")), service.use_rollups,
                    service.declared_versions)


# ------------------------------------------------------------------------------ the worker

def _usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def _serve(fd: int) -> None:
    """A worker's loop: one call in, one answer out, until the caller closes the pipe."""
    from store.sqlite import SqliteStore

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when it ends (pipe)
    conn = Connection(fd)
    service: KpiService | None = None
    store: SqliteStore | None = None
    token = None
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except EOFError:
                return
            try:
                ctx, fn, (a, b), args = pickle.loads(data)
                if isinstance(ctx, _Context):
                    if store is not None:
                        store.close()
                        store = service = None
                    store = SqliteStore(ctx.store_path, synchronous=ctx.synchronous,  # type: ignore[arg-type]
                                        readonly=True)
                    service = KpiService(ctx.settings, store, rollups=ctx.rollups,
                                         declared_versions=ctx.declared_versions)
                    token = ctx.token
                elif service is None or ctx != token:
                    raise RuntimeError(f"no context {ctx} in this worker")
                with service.snapshot(), service.sharing_rows(), collector_paused():
                    got = fn(service, service.settings.assets[a:b], *args)
                reply = pickle.dumps(("ok", got, _usage()), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                reply = pickle.dumps(("error", "".join(traceback.format_exception(exc)), _usage()))
            conn.send_bytes(reply)
    finally:
        if store is not None:
            store.close()
