"""Helpers shared by tests (a module, not a conftest, so tests can import them):
free ports, polling with a generous deadline, a fast reconnect backoff, tag registration,
supervisor health and simulated clocks."""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from collector.base import tag_record
from collector.supervisor import DeviceHealth, Supervisor
from config.base import Backoff, DeviceBase
from config.loader import shipped_config
from store.base import Store

# Reconnect quickly in tests: a restarted server is seen again within a fraction of a second.
FAST = Backoff(initial_s=0.05, max_s=0.3, multiplier=2.0, jitter=0.2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (``/proc/PID/stat``; OSError
    once it has exited and been reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll ``check()`` (blocking) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last error: {last!r}")


async def wait_until(
    cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Wait for cond() to hold: a generous deadline, never a timed assertion."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def on_free_ports(config: dict[str, Any]) -> dict[str, Any]:
    """A parsed configuration whose devices listen on free ports (Modbus port, OPC UA endpoint).
    MQTT devices are left alone: without ``broker`` the demo embeds one on a free port."""
    for d in config["devices"]:
        if d["protocol"] == "opcua":
            d["endpoint"] = f"opc.tcp://127.0.0.1:{free_port()}/tierproof/simulator"
        elif d["protocol"] == "modbus":
            d["port"] = free_port()
    return config


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Stop ``proc`` with ``sig`` and wait up to ``timeout`` s for it to exit, killing it after
    that; its exit code (negative: the signal that ended it)."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


@contextmanager
def running_demo(tmp: Path, data: dict[str, Any], duration: int = 600,
                 health: tuple[int, ...] = (200, 503)) -> Iterator[tuple[httpx.Client, Path, Path]]:
    """``tierproof demo`` of ``data`` (its devices moved to free ports here; its store in
    ``tmp/data``) until its API answers ``/api/v1/health`` with one of ``health`` (90 s);
    yields (a client of its API, the config file, the demo's log) and stops it with SIGINT.

    Free ports are free when chosen, not always when bound: a demo that exits because another
    process took one of them first is started again on new ports (3 attempts; a CI rehearsal
    saw a simulator's Modbus port taken). Any other early exit, or no answer, fails with the
    demo's log."""
    cfg, log = tmp / "demo.yaml", tmp / "demo.log"
    for attempt in range(3):
        on_free_ports(data)
        cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        shutil.rmtree(tmp / "data", ignore_errors=True)
        port = free_port()
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "demo", "--config", str(cfg), "--port", str(port),
                 "--data-dir", str(tmp / "data"), "--duration", str(duration)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            wait_for(lambda p=proc, c=client: p.poll() is not None
                     or c.get("/api/v1/health").status_code in health, 90, "the demo's API to answer")
        except AssertionError as exc:
            proc.kill()
            client.close()
            raise AssertionError(f"{exc}; the demo's log: {log.read_text()[-3000:]}") from exc
        if proc.poll() is None:
            break
        client.close()
        assert attempt < 2 and "address already in use" in log.read_text().lower(), log.read_text()[-3000:]
    try:
        yield client, cfg, log
    finally:
        client.close()
        stop(proc, signal.SIGINT)


#: A realistic shift calendar for the KPI tests, their own: two shifts Monday to Saturday with
#: breaks, Sundays and nights off (the shipped demo runs round the clock so that it is alive
#: whenever it is opened; the tests need off-shift time, idle Sundays and shift boundaries).
SHIFT_CALENDAR: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "shifts": [
        {"name": "early", "start": "06:00", "end": "14:00",
         "days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
        {"name": "late", "start": "14:00", "end": "22:00",
         "days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
    ],
    "planned_stops": [
        {"name": "morning break", "start": "09:30", "end": "09:40"},
        {"name": "lunch", "start": "12:00", "end": "12:30"},
        {"name": "evening break", "start": "18:00", "end": "18:15"},
    ],
    "holidays": [],
}


def in_shift_end(now: datetime) -> datetime:
    """The latest 20:00 of :data:`SHIFT_CALENDAR` (shifts 06:00-22:00, Monday to Saturday, in
    its zone) not after ``now``, in UTC: the 8 hours before it lie in shifts (less the evening
    break), whatever the wall clock says. A test that simulates data up to the wall clock and
    expects the machines to run, planned time or production there fails at some hours of the
    day or week (the calendar's nights and Sundays: 14:00 to 22:00 UTC, Saturday 16:00 to
    Sunday 22:00 UTC); ending its data here instead keeps the data recent."""
    local = now.astimezone(ZoneInfo(SHIFT_CALENDAR["timezone"]))
    t = local.replace(hour=20, minute=0, second=0, microsecond=0)
    while t > local or t.weekday() == 6:
        t -= timedelta(days=1)
    return t.astimezone(UTC)


def shift_demo() -> dict[str, Any]:
    """The shipped demo plant's data with the tests' :data:`SHIFT_CALENDAR`."""
    data: dict[str, Any] = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["calendar"] = copy.deepcopy(SHIFT_CALENDAR)
    return data


def shift_demo_settings() -> Any:
    """:func:`shift_demo` as settings."""
    from config import Settings

    return Settings.model_validate(shift_demo())


def one_week_demo() -> dict[str, Any]:
    """The shipped demo's data as the plant was before its two-week windows: no declared
    evidence, 14 days of history improved a week before its now, one-week KPI windows, and
    the tests' own :data:`SHIFT_CALENDAR`. For tests that use the demo plant as a setup and
    need both regimes in a short history."""
    data = shift_demo()
    data.pop("declared", None)
    data["simulation"].update(history_days=14, improvement_at="now-7d")
    data["kpi"].update(baseline={"start": "now-14d", "end": "now-7d"},
                       current={"start": "now-7d", "end": "now"})
    return data


def register(store: Store, *devices: DeviceBase) -> dict[str, int]:
    """Register the devices' tags in the store: path -> tag id."""
    return store.register_tags([tag_record(d, t) for d in devices for t in d.tags])


def health(sup: Supervisor, name: str | None = None) -> DeviceHealth:
    """The supervisor's health of device ``name`` (of its only device without a name)."""
    if name is None:
        return sup.status()[0]
    return next(h for h in sup.status() if h.name == name)


class Clock:
    """A settable simulated clock (ns): a test moves ``t`` on itself."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class TickingClock:
    """A simulated clock that moves on by ``step`` ns at every call, so every simulator
    refresh has its own instant (and its counters move); ``calls`` lists what it returned."""

    def __init__(self, t0: int, step: int) -> None:
        self.t, self.step = t0, step
        self.calls: list[int] = []

    def __call__(self) -> int:
        self.t += self.step
        self.calls.append(self.t)
        return self.t


class AcceleratedClock:
    """A simulated clock (ns) that stands at ``t0`` until :meth:`start`, then runs ``speed``
    times faster than the wall clock: one clock for simulators and collectors alike, so a
    live plant covers hours in a minute and every timestamp is in simulated time."""

    def __init__(self, t0: int, speed: float) -> None:
        self.t0, self.speed = t0, speed
        self._m0: int | None = None

    def start(self) -> None:
        self._m0 = time.monotonic_ns()

    def __call__(self) -> int:
        if self._m0 is None:
            return self.t0
        return self.t0 + int((time.monotonic_ns() - self._m0) * self.speed)


def flip_on_disk(path: Path, ts_ns: int) -> int:
    """Flip the low byte of every stored little-endian copy of ``ts_ns`` in the closed file
    (copies left in free pages are harmless); return how many: real damage to stored bytes."""
    data = bytearray(path.read_bytes())
    needle = struct.pack("<q", ts_ns)
    at, hits = data.find(needle), 0
    while at >= 0:
        data[at] ^= 0xFF
        hits += 1
        at = data.find(needle, at + 1)
    path.write_bytes(bytes(data))
    return hits


REPO = Path(__file__).resolve().parents[1]


def api_key(settings: Any, scope: str = "admin", name: str = "tests") -> str:
    """A new API key of ``scope`` in the keys file of ``settings`` (api.auth: beside the
    store's file): what a test of an app it builds sends (``key_headers``)."""
    from api.auth import KeyFile, keys_path

    path = keys_path(settings).resolve()
    # a test's store lives under its tmp_path; a key file in the repository is a test's mistake
    assert not path.is_relative_to(REPO), f"keys file {path} inside the repository"
    return KeyFile(path).create(name, scope)[1]  # type: ignore[arg-type]


def key_headers(settings: Any, scope: str = "admin") -> dict[str, str]:
    """``{"X-API-Key": <new key>}`` for an app built for ``settings`` (``api_key``)."""
    return {"X-API-Key": api_key(settings, scope)}


def demo_keys(log: Path, timeout: float = 90.0) -> dict[str, str]:
    """The read and admin keys that ``tierproof demo`` printed into its log ``log``."""
    import re

    def found() -> dict[str, str]:
        text = log.read_text(errors="replace")
        got = dict(re.findall(r"^\s*(read|admin) key\s+(tp_\S+)", text, re.M))
        assert {"read", "admin"} <= got.keys(), "the demo has not printed its keys yet"
        return got

    return wait_for(found, timeout, "the demo's keys")  # type: ignore[no-any-return]


def config_key_headers(config: Path, scope: str = "admin") -> dict[str, str]:
    """``key_headers`` for the gateway a test runs with the configuration file ``config``
    (``tierproof run|serve --config``): the key is in that file's keys file."""
    from config.loader import load_settings

    return key_headers(load_settings(config, store_only=True), scope)


def two_day_plant(tmp: Path, data: dict[str, Any], now: datetime | None = None) -> tuple[Path, Any]:
    """The demo plant ``data`` with two days of history up to ``now`` (default: the wall
    clock, to the second) in ``tmp/store.db``, its KPI windows closed (current: the last day
    up to 5 minutes before now, baseline: the day before, so they are computed once, then
    answered from the closed-result cache), written to ``tmp/plant.yaml``: (that file, its
    settings)."""
    from api.gateway import tag_records
    from config import Settings
    from config.times import to_ns
    from simulators import Plant
    from store import SqliteStore

    data["simulation"]["history_days"] = 2
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    data["kpi"].update(
        current={"start": (now - timedelta(days=1)).isoformat(),
                 "end": (now - timedelta(minutes=5)).isoformat()},
        baseline={"start": (now - timedelta(days=2)).isoformat(),
                  "end": (now - timedelta(days=1)).isoformat()})
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = Settings.model_validate(data)
    with SqliteStore(tmp / "store.db") as store:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=now).history_batches(
                ids, to_ns(now - timedelta(days=2)), to_ns(now)):
            store.write(batch)
    return cfg, settings


def with_assess_workers(settings: Any, workers: int | None) -> Any:
    """``settings`` with ``kpi.assess_workers`` set to ``workers`` (None: unset, the default)."""
    return settings.model_copy(update={"kpi": settings.kpi.model_copy(update={"assess_workers": workers})})
