"""Over HTTP against a real SQLite store: a tag's history per bucket (time-weighted mean,
min, max, last, count; text tags), cursor pagination of raw samples, and CSV of every tabular
answer compared with its JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.buckets import buckets
from api.history import aggregate
from config import settings_from_dict
from config.times import Calendar, iso
from store import Batch, SqliteStore
from tests.api.series_server import serve

MIN = 60 * 10**9
T0 = 1_790_000_000 * 10**9 // (3600 * 10**9) * (3600 * 10**9)  # a whole hour in 2026
TEMP = "s/a/l/m1/temp"
COUNT = "s/a/l/m1/count"
TEXT = "s/a/l/m1/recipe"
NOISE = "s/a/l/m1/noise"
GAP = (T0 + 70 * MIN, T0 + 100 * MIN)  # the device not collected
# temp: 5 before the window; 10, 20, a bad sample, 30 in its first hour; nothing in its second
TEMP_SAMPLES = [(-5, 5.0, 0), (0, 10.0, 0), (10, 20.0, 0), (40, 99.0, 2), (50, 30.0, 0)]


def _settings(tmp: Path) -> Any:
    tags = [{"name": n, "asset": "s/a/l/m1", "address": i}
            for i, n in enumerate(("temp", "count", "recipe", "noise"))]
    return settings_from_dict({
        "assets": [{"path": "s/a/l/m1"}],
        "devices": [{"protocol": "modbus", "name": "plc", "host": "127.0.0.1",
                     "enabled": False, "tags": tags}],
        "store": {"type": "sqlite", "path": str(tmp / "h.db")},
    })


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, SqliteStore]]:
    tmp = tmp_path_factory.mktemp("history")
    settings = _settings(tmp)
    store = SqliteStore(tmp / "h.db")
    app = create_app(settings, store=store, collect=False, rollups_maintain=False)
    try:
        with serve(app, timeout=60) as c:
            ids = {t["path"]: t["tag_id"] for t in c.get("/api/v1/tags").json()}
            for m, v, q in TEMP_SAMPLES:
                store.write(Batch.of([ids[TEMP]], [T0 + m * MIN], [v], q))
            # 25 counter samples a minute apart (the cursor's pages)
            store.write(Batch.of([ids[COUNT]] * 25, T0 + np.arange(25) * MIN,
                                 np.arange(25, dtype=np.float64)))
            texts = np.array(["A", "B", "X", "C"], dtype=object)  # X: of bad quality
            store.write(Batch(np.full(4, ids[TEXT], np.int32), T0 + np.array([1, 2, 3, 70]) * MIN,
                              np.full(4, np.nan), np.array([0, 0, 2, 0], np.uint8), texts))
            rng = np.random.default_rng(3)
            ts = np.sort(rng.choice(np.arange(-30 * 60, 180 * 60), 400, replace=False)) * 10**9 + T0
            store.write(Batch.of([ids[NOISE]] * len(ts), ts, rng.normal(50, 10, len(ts)),
                                 np.where(rng.random(len(ts)) < 0.1, 2, 0)))
            # the device not collected for 30 minutes of the second hour
            store.close_gap(store.open_gap("plc", GAP[0], "unreachable"), GAP[1])
            yield c, store
    finally:
        store.close()


WINDOW = {"from": iso(T0), "to": iso(T0 + 120 * MIN)}


def history(c: httpx.Client, path: str, agg: str, **kw: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/tags/{path}/history", params={**WINDOW, "bucket": "1h", "agg": agg, **kw})
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["buckets"]
    return out


def test_history_aggregates_per_bucket(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, _ = env
    # time-weighted: 10 for 10 min, 20 for 30 min, unknown 10 min (bad), 30 for 10 min
    mean = history(c, TEMP, "mean")
    assert [(b["from"], b["to"]) for b in mean] == [(iso(T0), iso(T0 + 60 * MIN)),
                                                    (iso(T0 + 60 * MIN), iso(T0 + 120 * MIN))]
    assert mean[0]["value"] == pytest.approx((10 * 10 + 20 * 30 + 30 * 10) / 50, rel=1e-12)
    assert mean[0]["known_s"] == 50 * 60.0
    # held, no sample; the device's gap is unknown time
    assert mean[1]["value"] == 30.0 and mean[1]["known_s"] == 1800.0
    assert [(b["count"], b["bad"]) for b in mean] == [(3, 1), (0, 0)]
    assert [b["value"] for b in history(c, TEMP, "min")] == [10.0, None]
    assert [b["value"] for b in history(c, TEMP, "max")] == [30.0, None]
    assert [b["value"] for b in history(c, TEMP, "last")] == [30.0, None]
    assert [b["value"] for b in history(c, TEMP, "count")] == [3.0, 0.0]
    # the value in force before the window opens it: 5 until the sample at T0 + 0
    early = history(c, TEMP, "mean", bucket="1d",
                    **{"from": iso(T0 - 2 * MIN), "to": iso(T0 + 2 * MIN)})
    assert early[0]["value"] == pytest.approx((5 * 2 + 10 * 2) / 4, rel=1e-12)
    # time to come is unknown, not the last value carried into the future
    future = history(c, TEMP, "mean", **{"from": "now+1h", "to": "now+3h"})
    assert [(b["value"], b["known_s"]) for b in future] == [(None, 0.0)] * len(future)


def test_text_tags_take_count_and_last_only(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, _ = env
    assert [b["value"] for b in history(c, TEXT, "last")] == ["B", "C"]
    assert [(b["value"], b["count"], b["bad"]) for b in history(c, TEXT, "count")] == [
        (2, 2, 1), (1, 1, 0)]
    r = c.get(f"/api/v1/tags/{TEXT}/history", params={**WINDOW, "agg": "mean"})
    assert r.status_code == 422 and "'agg'" in r.json()["detail"] and TEXT in r.json()["detail"]
    r = c.get(f"/api/v1/tags/{TEMP}/history", params={**WINDOW, "agg": "median"})
    assert r.status_code == 422 and r.json()["errors"][0]["parameter"] == "query.agg"


def _reference_mean(ts: list[int], vs: list[float], qs: list[int], a: int, b: int,
                    gap: tuple[int, int] = (0, 0)) -> float | None:
    """The time-weighted mean of [a, b) by a plain loop over the samples' steps, without
    the time of ``gap``."""
    integral = known = 0.0
    for i, t in enumerate(ts):
        lo, hi = max(t, a), min(ts[i + 1] if i + 1 < len(ts) else b, b)
        if hi > lo and qs[i] < 2:
            secs = ((hi - lo) - max(0, min(hi, gap[1]) - max(lo, gap[0]))) / 1e9
            integral += vs[i] * secs
            known += secs
    return integral / known if known else None


def test_history_pages_give_the_same_aggregates(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, store = env
    tid = next(t.tag_id for t in store.tags() if t.path == NOISE)
    s = store.read(tid, 0, T0 + 10**6 * MIN, prior=False)
    kolkata = Calendar(timezone="Asia/Kolkata")  # +05:30: its hours start at :30 UTC
    hours = buckets("1h", kolkata, T0, T0 + 120 * MIN, 100)
    assert [(b.start_ns - T0) // MIN for b in hours] == [0, 30, 90]
    bks = buckets("15m", kolkata, T0 - 7 * MIN, T0 + 120 * MIN, 100)
    assert len(bks) == 9 and (bks[1].start_ns - T0) % (15 * MIN) == 0
    one = aggregate(store, tid, bks, T0 + 10**6 * MIN)
    paged = aggregate(store, tid, bks, T0 + 10**6 * MIN, page=3)
    for f in ("count", "bad", "min", "max", "last"):
        np.testing.assert_array_equal(getattr(one, f), getattr(paged, f))
    np.testing.assert_allclose(paged.mean(), one.mean(), rtol=1e-12)
    want = [_reference_mean(s.ts_ns.tolist(), s.value.tolist(), s.quality.tolist(), b.start_ns,
                            b.end_ns) for b in bks]
    np.testing.assert_allclose(one.mean(), [np.nan if w is None else w for w in want], rtol=1e-12)
    got = history(c, NOISE, "mean", bucket="15m")
    want = [_reference_mean(s.ts_ns.tolist(), s.value.tolist(), s.quality.tolist(),
                            T0 + i * 15 * MIN, T0 + (i + 1) * 15 * MIN, GAP) for i in range(8)]
    assert [b["value"] is None for b in got] == [w is None for w in want]
    assert [b["value"] for b in got if b["value"] is not None] == pytest.approx(
        [w for w in want if w is not None], rel=1e-12)
    known = [b["known_s"] for b in got]  # the gap's quarters: known only outside it
    assert known[4] <= 600.0 and known[5] == 0.0 and known[6] <= 300.0 and got[5]["value"] is None


# ---------------------------------------------------------------------------- cursor

def test_cursor_pages_continue_exactly(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, _ = env
    url = f"/api/v1/tags/{COUNT}/samples"
    whole = c.get(url, params={**WINDOW, "limit": 1000}).json()
    assert whole["count"] == 25 and not whole["truncated"] and whole["next_cursor"] is None
    seen: list[str] = []
    r = c.get(url, params={**WINDOW, "limit": 7})
    pages = 0
    while True:
        body = r.json()
        pages += 1
        seen += body["ts"]
        assert body["window"] == whole["window"]
        if not body["truncated"]:
            assert body["next_cursor"] is None and "link" not in r.headers
            break
        link = r.headers["link"]
        assert link.endswith('>; rel="next"') and "cursor=" in link
        assert body["next_cursor"] in link
        r = c.get(link[1:link.index(">")])  # the Link target as given (relative)
    assert pages == 4 and seen == whole["ts"]  # 7 + 7 + 7 + 4, none twice, none missed


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1],  # one character changed
    lambda s: s[: len(s) // 2],  # cut
    lambda s: "garbage",
    lambda s: "%%%.!!!",
])
def test_a_tampered_cursor_is_a_400_naming_cursor(env: tuple[httpx.Client, SqliteStore],
                                                  mangle: Any) -> None:
    c, _ = env
    cursor = c.get(f"/api/v1/tags/{COUNT}/samples",
                   params={**WINDOW, "limit": 5}).json()["next_cursor"]
    r = c.get(f"/api/v1/tags/{COUNT}/samples", params={"cursor": mangle(cursor)})
    assert r.status_code == 400 and r.json()["parameter"] == "cursor", r.text
    # a good cursor of another tag
    r = c.get(f"/api/v1/tags/{TEMP}/samples", params={"cursor": cursor})
    assert r.status_code == 400 and "another tag" in r.json()["detail"]


# ---------------------------------------------------------------------------- CSV

def _csv(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.text)))


def _same(cell: str, v: Any) -> bool:
    if v is None:
        return cell == ""
    if isinstance(v, bool):
        return cell == str(v).lower()
    if isinstance(v, float):
        return float(cell) == v  # full precision
    if isinstance(v, int):
        return int(cell) == v
    return cell == v


def test_csv_of_samples_round_trips(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, _ = env
    url = f"/api/v1/tags/{NOISE}/samples"
    js = c.get(url, params={**WINDOW, "limit": 50}).json()
    r = c.get(url, params={**WINDOW, "limit": 50, "format": "csv"})
    rows = _csv(r)
    assert list(rows[0]) == ["ts", "value", "quality", "server_ts", "gateway_ts"]
    assert len(rows) == js["count"] == 50
    for i, row in enumerate(rows):
        assert all(_same(row[k], js[k][i]) for k in row), (i, row)
    assert 'rel="next"' in r.headers["link"]  # the CSV pages on too
    # Accept: text/csv asks the same; format=json wins over Accept
    assert c.get(url, params={**WINDOW, "limit": 50}, headers={"accept": "text/csv"}).text == r.text
    assert c.get(url, params={**WINDOW, "limit": 50, "format": "json"},
                 headers={"accept": "text/csv"}).json() == js
    # no samples: the header alone
    empty = c.get(url, params={"from": iso(T0 - 600 * MIN), "to": iso(T0 - 500 * MIN),
                               "format": "csv"})
    assert empty.text == "ts,value,quality,server_ts,gateway_ts\r\n"


def test_csv_of_every_tabular_answer(env: tuple[httpx.Client, SqliteStore]) -> None:
    c, _ = env
    for path, params in [("/api/v1/tags", {}), ("/api/v1/assets", {}),
                         (f"/api/v1/tags/{TEMP}/history", {**WINDOW, "agg": "mean"})]:
        js = c.get(path, params=params).json()
        items = js["buckets"] if isinstance(js, dict) else js
        rows = _csv(c.get(path, params={**params, "format": "csv"}))
        assert len(rows) == len(items) > 0, path
        for row, item in zip(rows, items, strict=True):
            for k, v in item.items():
                if isinstance(v, list | dict):
                    assert row[k] == ("" if v is None else
                                      __import__("json").dumps(v, separators=(",", ":"))), k
                else:
                    assert _same(row[k], v), (path, k, row[k], v)
    # nothing collecting: no devices' status, a header only
    status = c.get("/api/v1/collector/status", params={"format": "csv"})
    assert status.status_code == 200 and status.text.startswith("name,protocol,state,")
    assert status.text.count("\r\n") == 1
    kp = c.get("/api/v1/kpis", params=WINDOW).json()
    rows = _csv(c.get("/api/v1/kpis", params=WINDOW, headers={"accept": "text/csv"}))
    assert [(r["level"], r["path"]) for r in rows] == [
        ("asset", "s/a/l/m1"), ("line", "s/a/l"), ("total", "")]
    for row, entry in zip(rows, [kp["assets"]["s/a/l/m1"], kp["lines"]["s/a/l"], kp["total"]],
                          strict=True):
        for k, v in entry.items():
            if k == "elements":
                assert all(_same(row[f"elements.{e}"], x) for e, x in v.items())
            elif k not in ("evidence", "rollups"):
                assert _same(row[k], v), k
    # the OpenAPI declares text/csv beside JSON for every tabular operation
    spec = c.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/tags", "/api/v1/assets", "/api/v1/collector/status", "/api/v1/kpis",
              "/api/v1/kpis/series", "/api/v1/tags/{tag_path}/samples",
              "/api/v1/tags/{tag_path}/history"):
        assert "text/csv" in spec[p]["get"]["responses"]["200"]["content"], p
