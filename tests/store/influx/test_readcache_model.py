"""The read cache's answers against a model of what InfluxDB holds, over thousands of random
writes: in order and late, unordered within a write, with equal stamps, NaN, text, partial
writes, and reads kept at random moments. Whatever the cache answers must be exactly what a
read would have returned; what it cannot know it must not answer. (In process: the real
server's side of the same rules is ``test_influx_read_cache.py``; this one covers the
combinations a few hand-written scenarios cannot, e.g. many held tags in one write.)"""

from __future__ import annotations

import random

import numpy as np

from store.batch import Batch, Series
from store.influx.readcache import OPEN, ReadCache

S = 10**9
TAGS = 12


class Model:
    """What InfluxDB holds per tag: stamp -> (value, quality). A NaN or a text is written
    without a value field: the stamp keeps its earlier value (none: no value at all)."""

    def __init__(self) -> None:
        self.points: list[dict[int, tuple[float, int]]] = [{} for _ in range(TAGS)]

    def write(self, batch: Batch) -> None:
        text = batch.text
        for k in range(len(batch.tag_id)):
            tag, ts = int(batch.tag_id[k]), int(batch.ts_ns[k])
            v, q = float(batch.value[k]), int(batch.quality[k])
            if not np.isfinite(v) or (text is not None and text[k] is not None):
                if ts in self.points[tag]:
                    self.points[tag][ts] = (self.points[tag][ts][0], q)
                continue  # no value field: not a sample a value read returns
            self.points[tag][ts] = (v + 0.0, q)

    def read(self, tag: int, a: int, b: int) -> tuple[Series, Series]:
        """(the last sample before a, the samples in [a, b))"""
        stamps = sorted(self.points[tag])
        before = [t for t in stamps if t < a][-1:]
        inside = [t for t in stamps if a <= t < b]

        def series(ts: list[int]) -> Series:
            return Series(np.array(ts, np.int64),
                          np.array([self.points[tag][t][0] for t in ts], np.float64),
                          np.array([self.points[tag][t][1] for t in ts], np.uint8))
        return series(before), series(inside)


def _batch(rng: random.Random, now: int) -> Batch:
    n = rng.randint(1, 10)
    tags, stamps, values, texts = [], [], [], []
    for _ in range(n):
        tags.append(rng.randrange(TAGS))
        kind = rng.random()
        if kind < 0.97:
            stamps.append(now + rng.randrange(0, 2) * S)  # live: equal stamps in one write
        else:
            stamps.append(now - rng.randrange(1, 200) * S)  # late
        r = rng.random()
        values.append(float("nan") if r < 0.01 else -0.0 if r < 0.03 else rng.uniform(-5, 5))
        texts.append("jam" if r < 0.005 else None)
    text = np.array(texts, dtype=object) if any(t is not None for t in texts) else None
    return Batch(np.array(tags, np.int32), np.array(stamps, np.int64), np.array(values),
                 np.array([rng.randrange(3) for _ in range(n)], np.uint8), text)


def _same(got: Series, want: Series) -> bool:
    return (np.array_equal(got.ts_ns, want.ts_ns) and np.array_equal(got.value, want.value)
            and np.array_equal(got.quality, want.quality))


def test_the_cache_answers_only_what_a_read_would_return() -> None:
    rng = random.Random(20261208)
    # (the bound in samples, the answers at least given: 168 and 51 with this seed)
    for bound, least in ((1_000_000, 80), (60, 25)):
        model, cache = Model(), ReadCache(bound)
        now = 1_800_000_000 * S
        answered = 0
        given: list[tuple[Series, Series]] = []
        for _ in range(3000):
            now += rng.randrange(2, 4) * S
            step = rng.random()
            if step < 0.55:  # a write, taken whole or not
                batch = _batch(rng, now)
                whole = rng.random() < 0.95
                cache.writing(batch)
                if whole:
                    model.write(batch)
                else:  # a partial write: some of its points landed
                    keep = np.array([rng.random() < 0.5 for _ in range(len(batch.tag_id))])
                    model.write(Batch(batch.tag_id[keep], batch.ts_ns[keep], batch.value[keep],
                                      batch.quality[keep],
                                      None if batch.text is None else batch.text[keep]))
                cache.written(batch, whole)
            elif step < 0.75:  # a read, kept: a closed range or one open from lo on
                tag = rng.randrange(TAGS)
                lo = now - rng.randrange(0, 300) * S
                hi = OPEN if rng.random() < 0.7 else lo + rng.randrange(1, 300) * S
                gens = cache.generations([tag])
                prior, samples = model.read(tag, lo, hi)
                cache.keep(tag, lo, hi, prior if len(prior) else None, samples, gens)
            else:  # a question: answered exactly, or not at all
                tag = rng.randrange(TAGS)
                a = now - rng.randrange(0, 300) * S
                b = a + rng.randrange(1, 400) * S
                got = cache.answer(tag, a, b)
                if got is None:
                    continue
                answered += 1
                prior, samples = model.read(tag, a, b)
                want = Series(np.r_[prior.ts_ns, samples.ts_ns], np.r_[prior.value, samples.value],
                              np.r_[prior.quality, samples.quality])
                assert _same(got, want), (bound, tag, a, b, got, want)
                given.append((got, Series(got.ts_ns.copy(), got.value.copy(), got.quality.copy())))
        # an answer given out is not changed by the writes after it (an open range's room)
        assert all(_same(got, kept) for got, kept in given)
        assert answered >= least, (bound, answered)  # the cache did answer, not only refuse
