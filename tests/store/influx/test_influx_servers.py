"""The server fixtures themselves: a server that cannot start is a loud failure with its log,
and a stopped or killed server comes back on the same port with its data."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.influx_servers import InfluxDB16, ServerFailed, VictoriaMetrics

pytestmark = pytest.mark.influxdb


def test_a_server_that_cannot_bind_fails_with_its_log(tmp_path: Path) -> None:
    server = InfluxDB16(tmp_path / "influxdb")
    with socket.socket() as taken:  # someone else holds the HTTP port
        taken.bind(("127.0.0.1", server.port))
        taken.listen(1)
        with pytest.raises(ServerFailed, match="address already in use") as info:
            server.start()
    assert "exited with status" in str(info.value) and not server.running


def test_missing_binary_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match="not installed"):
        VictoriaMetrics(tmp_path / "vm", binary=str(tmp_path / "no-such-binary")).start()


def test_influxdb_restarts_on_the_same_port_with_its_data(influxdb16: InfluxDB16) -> None:
    url = influxdb16.url
    r = httpx.post(f"{url}/write", params={"db": "tierproof"}, content=b"m v=1 1000000000")
    assert r.status_code == 204
    influxdb16.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping")
    influxdb16.start()
    assert influxdb16.url == url
    got = influxdb16.query('SELECT "v" FROM "m"', "tierproof")
    assert got["results"][0]["series"][0]["values"] == [[1000000000, 1]]  # type: ignore[index]


def test_victoria_metrics_restarts_on_the_same_port(victoria_metrics: VictoriaMetrics) -> None:
    url = victoria_metrics.url
    victoria_metrics.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    victoria_metrics.start()
    assert httpx.get(f"{url}/health").status_code == 200
