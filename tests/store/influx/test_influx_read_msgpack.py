"""MessagePack answers on a real InfluxDB 1.6: with the ``msgpack`` package installed the store
asks for ``application/x-msgpack`` (InfluxDB encodes it at less CPU than JSON) and reads
exactly what the embedded store holds, chunked and whole; a server that answers JSON instead
is read as JSON and not asked for MessagePack again; a statement error carries the server's
message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack  # a dependency (pyproject.toml): missing, this module fails, it is not skipped
import numpy as np
import pytest

from config.errors import StoreError
from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, Series, SqliteStore, TagRecord
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
T0 = 1_700_000_000 * SEC + 123_456_789
MSGPACK = "application/x-msgpack"


def _records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/a/l{i % 2}/m{i % 5}/sig{i}", asset=f"plant/a/l{i % 2}/m{i % 5}",
                      role="analog", device="plc", protocol="modbus") for i in range(20)]


class JsonOnly(httpx.HTTPTransport):
    """The real server, asked without ``Accept: application/x-msgpack``: it answers JSON, as a
    server without MessagePack (InfluxDB 2.x/3.x) does."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("accept") == MSGPACK:
            request.headers["accept"] = "application/json"
        return super().handle_request(request)


@pytest.fixture
def filled(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[tuple[InfluxStore, SqliteStore, list[int]]]:
    settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url, database="tierproof",
                                   measurement="mp", meta_path=str(tmp_path / "meta.db"), gzip=False)
    influx, oracle = InfluxStore(settings), SqliteStore(tmp_path / "oracle.db")
    ids = influx.register_tags(_records())
    assert oracle.register_tags(_records()) == ids
    rng = np.random.default_rng(28)
    parts = []
    for k, t in enumerate(ids.values()):
        n = int(rng.integers(50, 400))
        ts = T0 + np.sort(rng.choice(20 * n, n, replace=False)).astype(np.int64) * SEC + k
        value = rng.normal(size=n) * 10.0 ** rng.integers(-3, 9)
        value[rng.random(n) < 0.05] = np.nan  # no value field: read back as NaN
        parts.append(Batch.of(np.full(n, t), ts, value, rng.choice([0, 1, 2], n).astype(np.uint8)))
    batch = Batch.concat(parts)
    influx.write(batch)
    oracle.write(batch)
    yield influx, oracle, list(ids.values())
    influx.close()
    oracle.close()


def _same(got: Series, want: Series, where: str) -> None:
    np.testing.assert_array_equal(got.ts_ns, want.ts_ns, err_msg=where)
    np.testing.assert_array_equal(got.value, want.value, err_msg=where)  # bit for bit; NaN == NaN
    np.testing.assert_array_equal(got.quality, want.quality, err_msg=where)


def test_msgpack_answers_read_what_the_store_holds(
        filled: tuple[InfluxStore, SqliteStore, list[int]]) -> None:
    influx, oracle, ids = filled
    assert influx._msgpack  # msgpack is installed
    types: list[str] = []
    chunked: list[bool] = []
    influx._http.event_hooks["response"].append(lambda r: types.append(r.headers["content-type"]))
    influx._http.event_hooks["request"].append(lambda r: chunked.append("chunked" in r.url.params))
    for k in range(2):  # the first read chunked (rates unknown), the second whole (small)
        wanted = [(t, T0 + (k * 300 + i * 7) * SEC, T0 + (k * 300 + i * 7 + 900) * SEC)
                  for i, t in enumerate(ids)]
        for (t, a, b), s in zip(wanted, influx.read_ranges(wanted, prior=True), strict=True):
            _same(s, oracle.read(t, a, b, prior=True), f"tag {t} [{a}, {b}) read {k}")
    assert True in chunked and False in chunked
    assert types and all(x.startswith(MSGPACK) for x in types)
    assert influx._msgpack


def test_a_server_answering_json_is_read_as_json(influxdb16: InfluxDB16, tmp_path: Path,
                                                 filled: tuple[InfluxStore, SqliteStore, list[int]]) -> None:
    _, oracle, ids = filled
    settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url, database="tierproof",
                                   measurement="mp", meta_path=str(tmp_path / "meta2.db"), gzip=False)
    with InfluxStore(settings) as influx:
        assert influx.register_tags(_records()) == dict(zip([r.path for r in _records()], ids, strict=True))
        influx._http._transport = JsonOnly()
        asked: list[str | None] = []
        influx._http.event_hooks["request"].append(lambda r: asked.append(r.headers.get("accept")))
        for k in range(2):
            got = influx.read_many(ids, T0 + k * 500 * SEC, T0 + (k + 1) * 700 * SEC)
            for t in ids:
                _same(got[t], oracle.read(t, T0 + k * 500 * SEC, T0 + (k + 1) * 700 * SEC),
                      f"tag {t} read {k}")
        assert not influx._msgpack
        assert asked[0] == MSGPACK and asked[-1] == "application/json"


def test_a_statement_error_in_msgpack_carries_the_servers_message(
        influxdb16: InfluxDB16, tmp_path: Path, filled: tuple[InfluxStore, SqliteStore, list[int]]) -> None:
    influx, _, _ = filled
    with pytest.raises(StoreError, match="error parsing query"):  # the whole answer's error
        influx._query(["SELECT FROM nothing WHERE"])
    settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url, database="nope",
                                   measurement="mp", meta_path=str(tmp_path / "meta3.db"))
    with InfluxStore(settings) as other:
        (t,) = other.register_tags(_records()[:1]).values()
        with pytest.raises(StoreError, match="database not found: nope"):  # a statement's
            other.read(t, T0, T0 + SEC)
    assert influx._msgpack and msgpack.version >= (1, 0, 0)
