"""Real time-series servers for tests and benchmarks: InfluxDB 1.6 and VictoriaMetrics.

Both are the Debian binaries (``/usr/bin/influxd``, ``/usr/bin/victoria-metrics``); apt never
starts them, so each instance here runs as a child process on free 127.0.0.1 ports with its
data under a directory of its own. An instance can be stopped (SIGTERM), killed (SIGKILL)
and started again **on the same port with the same data**, which outage tests need.

A server that does not come up raises :class:`ServerFailed` carrying the tail of its log, so
that the test fails saying why (a missing server is a failure, never a skip).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

from tests.helpers import free_port, process_cpu_s

__all__ = ["INFLUXD", "VICTORIA_METRICS", "InfluxDB16", "ServerFailed", "VictoriaMetrics"]

INFLUXD = "/usr/bin/influxd"
VICTORIA_METRICS = "/usr/bin/victoria-metrics"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(RuntimeError):
    """A server binary is missing, exited, or did not answer in time; the message has its log."""


class _Server:
    """A child-process server with a log file, restartable on the same port."""

    name = "server"

    def __init__(self, root: Path, binary: str) -> None:
        self.root = root
        self.binary = binary
        self.port = free_port()
        self.log_path = root / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self, client: httpx.Client) -> bool:
        raise NotImplementedError

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, why: str) -> ServerFailed:
        return ServerFailed(f"{self.name} ({self.binary}) {why}; log {self.log_path}:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the running server process has used so far."""
        proc = self._proc
        if proc is None:
            raise self._fail("is not running")
        return process_cpu_s(proc.pid)

    def start(self) -> None:
        """Start (again) on the same port and data directory; return once it answers."""
        if self.running:
            return
        if not os.access(self.binary, os.X_OK):
            raise ServerFailed(f"{self.binary} is not installed (make system installs it)")
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (kept open while it runs)
        self._proc = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.root, start_new_session=True,  # a Ctrl-C of pytest must not hit it first
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    self._close_log()
                    raise self._fail(f"exited with status {code} while starting")
                try:
                    if self._ready(client):
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise self._fail(f"did not answer on {self.url} within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after a timeout). The port stays reserved for start()."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: an abrupt crash of the server."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, running={self.running})"


class InfluxDB16(_Server):
    """InfluxDB 1.6 (Debian ``influxdb``): HTTP on a free port; the RPC (backup) port, which
    defaults to 8088 on every interface, is moved to a free port too; everything besides HTTP
    (UDP, Graphite, OpenTSDB, Collectd, reporting, the _internal monitor store) is off."""

    name = "influxd"

    def __init__(self, root: Path, database: str = "tierproof", binary: str = INFLUXD,
                 cache_cold_s: float | None = None) -> None:
        """``cache_cold_s``: the server writes its in-memory cache to TSM files once no write
        came for that long (``cache-snapshot-write-cold-duration``, default 10 min; the cache
        is also written once it holds 25 MB): a server that has run a while holds older data
        in TSM files, one just (re)started everything since its last snapshot in the cache
        (reloaded from the WAL). See :meth:`cache_bytes`."""
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root, binary)
        self.database = database
        self.cache_cold_s = cache_cold_s
        self.rpc_port = free_port()
        self.config_path = root / "influxdb.conf"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        d = self.root
        cold = ("" if self.cache_cold_s is None else
                f'\n  cache-snapshot-write-cold-duration = "{self.cache_cold_s:g}s"')
        return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
  index-version = "inmem"
  trace-logging-enabled = false{cold}

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  max-row-limit = 0

[logging]
  level = "warn"

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.url}/ping").status_code == 204

    def query(self, q: str, database: str | None = None) -> dict[str, object]:
        """One InfluxQL statement over POST /query; raises on an HTTP or statement error."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        r = httpx.post(f"{self.url}/query", data=params, timeout=30.0)
        r.raise_for_status()
        body: dict[str, object] = r.json()
        results = body.get("results")
        if isinstance(results, list) and results and "error" in results[0]:
            raise RuntimeError(f"{q}: {results[0]['error']}")
        return body

    def cache_bytes(self) -> int:
        """Bytes the server holds in its in-memory cache, all shards (``/debug/vars``): 0 once
        every point is in TSM files."""
        doc = httpx.get(f"{self.url}/debug/vars", timeout=30.0).json()
        return sum(int(v.get("values", {}).get("memBytes", 0)) for k, v in doc.items()
                   if k.startswith("tsm1_cache"))

    def create_database(self, name: str | None = None) -> str:
        name = name or self.database
        self.query(f'CREATE DATABASE "{name}"')
        return name

    def start(self) -> None:
        super().start()
        self.create_database()  # idempotent in InfluxDB


class VictoriaMetrics(_Server):
    """VictoriaMetrics (Debian ``victoria-metrics``), single node, data in ``root/data``."""

    name = "victoria-metrics"

    def __init__(self, root: Path, binary: str = VICTORIA_METRICS) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root, binary)

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.root / 'data'}",
            "-retentionPeriod=100y",  # tests write fixed historic timestamps too
            "-loggerLevel=WARN",
        ]

    def _ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.url}/health").status_code == 200

    def force_flush(self) -> None:
        """Make what was written searchable now: this Debian build shows new samples only
        after ~10 s otherwise (its in-memory buffers are flushed on a timer)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=30.0).raise_for_status()
