"""A flush writes a tag's samples as chunks of at most ``runs.CHUNK_MAX`` samples, consecutive
in time and in write order, and every read across their edges gives what was written: the
KPI read-ahead (``read_ranges``, straight from the rows), ``read``, texts, server/gateway
timestamps and pages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from store import Batch, SqliteStore, TagRecord
from store.batch import TS_UNKNOWN
from store.sqlite.runs import CHUNK_MAX

SEC = 10**9
T0 = 1_700_000_000 * SEC


def test_a_long_flush_is_cut_into_chunks_that_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    na, nb, nc = 3 * CHUNK_MAX + 5, CHUNK_MAX + 3, 10
    ts_a = T0 + np.arange(na, dtype=np.int64) * SEC
    ts_b = T0 + np.arange(nb, dtype=np.int64) * 2 * SEC + 1
    ts_c = T0 + np.arange(nc, dtype=np.int64) * 3600 * SEC
    v_a = np.arange(na, dtype=np.float64) * 0.5
    q_a = (np.arange(na) % 7 == 0).astype(np.uint8) * 2
    # a: server timestamps on its first CHUNK_MAX + 10 samples only (its later chunks: NULL)
    srv_a = np.where(np.arange(na) < CHUNK_MAX + 10, ts_a - 5, TS_UNKNOWN)
    # b: a string tag, a text every 1,000th sample and on both sides of its chunk edge
    has_text = (np.arange(nb) % 1000 == 0) | np.isin(np.arange(nb), [CHUNK_MAX - 1, CHUNK_MAX])
    text_b = np.array([f"s{i}" if h else None for i, h in enumerate(has_text)], dtype=object)
    v_b = np.where(has_text, np.nan, np.arange(nb, dtype=np.float64))
    with SqliteStore(path) as s:
        a, b, c = s.register_tags([TagRecord(f"s/a/l/m/{x}", "s/a/l/m", "analog", "d", "modbus")
                                   for x in "abc"]).values()
        s.write(Batch(
            np.r_[np.full(na, a), np.full(nb, b), np.full(nc, c)].astype(np.int32),
            np.r_[ts_a, ts_b, ts_c], np.r_[v_a, v_b, np.ones(nc)],
            np.r_[q_a, np.zeros(nb + nc, np.uint8)],
            np.r_[np.full(na, None, object), text_b, np.full(nc, None, object)],
            np.r_[srv_a, np.full(nb + nc, TS_UNKNOWN)], None,
        ))
        assert s.compact() == 1
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT chunk_id, tag_id, t_min, t_max, n, server_ts IS NULL, texts"
                            " FROM chunks ORDER BY chunk_id").fetchall()
    conn.close()
    by_tag = {t: [r for r in rows if r[1] == t] for t in (a, b, c)}
    assert [r[4] for r in by_tag[a]] == [CHUNK_MAX, CHUNK_MAX, CHUNK_MAX, 5]
    assert [r[4] for r in by_tag[b]] == [CHUNK_MAX, 3]
    assert [r[4] for r in by_tag[c]] == [nc]
    for t, ts in ((a, ts_a), (b, ts_b)):  # consecutive in time, chunk_id order time order
        edges = np.arange(0, len(ts), CHUNK_MAX)
        assert [r[2] for r in by_tag[t]] == ts[edges].tolist()
        assert [r[3] for r in by_tag[t]] == ts[np.minimum(edges + CHUNK_MAX, len(ts)) - 1].tolist()
    assert [r[5] for r in by_tag[a]] == [0, 0, 1, 1]  # server_ts NULL where the chunk has none
    # texts indexed within their own chunk: b's sample CHUNK_MAX is the second chunk's first
    assert by_tag[b][1][6] == f'[[0, "s{CHUNK_MAX}"]]'
    assert by_tag[b][0][6].endswith(f'[{CHUNK_MAX - 1}, "s{CHUNK_MAX - 1}"]]')

    with SqliteStore(path) as s:  # a fresh process's store, as the /kpis bench
        assert s.verify().damage == [] and s.verify().chunks == len(rows)
        whole = s.read(a, T0 - SEC, T0 + na * SEC, prior=False)
        np.testing.assert_array_equal(whole.ts_ns, ts_a)
        np.testing.assert_array_equal(whole.value, v_a)
        np.testing.assert_array_equal(whole.quality, q_a)
        # windows across each chunk edge of a and b, with and without the prior sample
        wanted = []
        for t, ts in ((a, ts_a), (b, ts_b)):
            for e in range(CHUNK_MAX, len(ts), CHUNK_MAX):
                for lo, hi in ((e - 2, e + 2), (e, e + 1), (e - 1, e), (e + 1, len(ts))):
                    wanted.append((t, int(ts[lo]), int(ts[hi - 1]) + 1))
                wanted.append((t, int(ts[e - 1]) + 1, int(ts[e]) + 1))  # starts between chunks
        for prior in (True, False):
            got = s.read_ranges(wanted, prior)
            for (t, lo, hi), g in zip(wanted, got, strict=True):
                ts, v, q = (ts_a, v_a, q_a) if t == a else (ts_b, v_b, np.zeros(nb, np.uint8))
                i, j = np.searchsorted(ts, [lo, hi])
                i = max(i - 1, 0) if prior else i
                np.testing.assert_array_equal(g.ts_ns, ts[i:j], err_msg=f"{t} {lo} {hi} {prior}")
                np.testing.assert_array_equal(g.value, v[i:j])
                np.testing.assert_array_equal(g.quality, q[i:j])
                r = s.read(t, lo, hi, prior)
                np.testing.assert_array_equal(r.ts_ns, g.ts_ns)
        e = CHUNK_MAX
        texts = s.read_text(b, int(ts_b[e - 1001]), int(ts_b[e + 1]))
        want = [i for i in range(e - 1001, e + 1) if has_text[i]]
        assert texts == [(int(ts_b[i]), f"s{i}", 0) for i in want]
        t_, srv, gw = s.read_timestamps(a, int(ts_a[CHUNK_MAX - 3]), int(ts_a[CHUNK_MAX + 12]))
        np.testing.assert_array_equal(t_, ts_a[CHUNK_MAX - 3:CHUNK_MAX + 12])
        np.testing.assert_array_equal(srv, srv_a[CHUNK_MAX - 3:CHUNK_MAX + 12])
        assert (gw == TS_UNKNOWN).all()
        page = s.read_page(a, int(ts_a[2 * CHUNK_MAX - 4]), int(ts_a[-1]) + 1, 10)
        np.testing.assert_array_equal(page.ts_ns, ts_a[2 * CHUNK_MAX - 4:2 * CHUNK_MAX + 6])
        assert page.more
