"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from config import Settings
    from simulators import Plant
    from store.sqlite import SqliteStore
    from tests.helpers import Clock
    from tests.influx_servers import InfluxDB16, VictoriaMetrics
    from tests.mosquitto import Mosquitto


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    from tests.helpers import free_port

    return free_port()


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The shipped demo plant with the tests' own shift calendar (tests.helpers.SHIFT_CALENDAR;
    the model is frozen, so one load serves every test)."""
    from tests.helpers import shift_demo_settings

    return shift_demo_settings()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def plant(settings: Settings, request: pytest.FixtureRequest) -> Plant:
    """The demo plant, simulated from the test module's fixed instant ``NOW``."""
    from simulators import Plant

    return Plant(settings, now=request.module.NOW)


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """A settable simulated clock standing at the test module's ``NOW``."""
    from simulators import datetime_ns
    from tests.helpers import Clock

    return Clock(datetime_ns(request.module.NOW))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A fresh SqliteStore in the test's temporary directory, closed afterwards."""
    # imported here so that collecting unrelated tests does not depend on the store
    from store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "tierproof.db")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A started Debian mosquitto (plain, TLS and password listeners; see tests/mosquitto.py),
    stopped and its directory removed afterwards. Failing to start fails the test."""
    from tests.mosquitto import Mosquitto

    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def _serve(server: InfluxDB16 | VictoriaMetrics) -> Iterator[Any]:
    """Start ``server`` (a failure fails the test with the server's log), yield it, kill it."""
    from tests.influx_servers import ServerFailed

    try:
        try:
            server.start()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        server.kill()


@pytest.fixture
def influxdb16(tmp_path: Path) -> Iterator[InfluxDB16]:
    """A started InfluxDB 1.6 with database ``tierproof`` (see tests/influx_servers.py): may be
    stopped, killed and started again on the same port; ended after the test."""
    from tests.influx_servers import InfluxDB16

    yield from _serve(InfluxDB16(tmp_path / "influxdb"))


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A started VictoriaMetrics (see tests/influx_servers.py), restartable on the same port;
    ended after the test."""
    from tests.influx_servers import VictoriaMetrics

    yield from _serve(VictoriaMetrics(tmp_path / "victoria-metrics"))
