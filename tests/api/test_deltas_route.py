"""GET /api/v1/kpis/deltas on the SQLite store holding the simulated demo plant's two weeks
(the baseline regime, then the improved one), and the snapshot an assessment reads from."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api import assetsplit
from api.assessment import assess
from api.gateway import tag_records
from api.service import KpiService
from config import load_tiers
from config.fingerprint import config_fingerprint
from config.settings import Settings
from config.times import to_ns
from store import Batch
from store.sqlite import SqliteStore
from tests.api.test_assessment import BASELINE, CURRENT, NOW, WINDOWS, Client
from tests.api.test_assessment import client as client  # its client over the module's own store
from tests.api.test_assessment import stored as stored  # the module's own backfilled store
from tests.helpers import with_assess_workers

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def deltas(client: Client) -> dict[str, Any]:
    r = client.get("/api/v1/kpis/deltas", params=WINDOWS)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _assessment_deltas(body: dict[str, Any]) -> dict[str, Any]:
    """An assessment's deltas."""
    got: dict[str, Any] = body["deltas"]
    return got


def test_deltas_are_the_assessments_with_their_record(
    client: Client, deltas: dict[str, Any], stored: tuple[Settings, Path],
) -> None:
    a = client.get("/api/v1/tiers/assessment", params=WINDOWS).json()
    assert deltas["deltas"] == _assessment_deltas(a)
    assert deltas["window"] == CURRENT and deltas["baseline_window"] == BASELINE
    for k in ("criteria_version", "algorithm_version", "config_fingerprint", "bootstrap"):
        assert deltas[k] == a[k], k
    assert deltas["config_fingerprint"] == config_fingerprint(stored[0])
    assert deltas["bootstrap"]["seed"] == 0 and deltas["bootstrap"]["n_resamples"] > 0


def test_the_demo_improvement_shows_with_intervals(deltas: dict[str, Any]) -> None:
    got = deltas["deltas"]
    assert set(got) >= {"automation_rate", "defect_rate", "production_efficiency",
                        "energy_per_unit_kwh"}
    d = got["defect_rate"]  # the improved regime makes 1.2 % defects instead of 3 %
    assert d["low"] <= d["point"] <= d["high"] < 0
    assert got["production_efficiency"]["point"] > 0


def test_the_configured_baseline_is_the_default(client: Client, stored: tuple[Settings, Path]) -> None:
    # the demo's kpi.baseline is relative to now; fixed parameters for the current window only
    r = client.get("/api/v1/kpis/deltas", params=CURRENT)
    assert r.status_code == 200, r.text
    base = stored[0].kpi.baseline
    assert base is not None
    assert r.json()["baseline_window"] is not None and r.json()["window"] == CURRENT


def test_bad_parameters_are_problems(client: Client) -> None:
    r = client.get("/api/v1/kpis/deltas", params={**WINDOWS, "baseline_from": "yesterday-ish"})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert "baseline_from" in r.json()["detail"]


@pytest.mark.parametrize("workers", [0, 1])
def test_an_assessment_reads_one_snapshot_while_samples_arrive(
    stored: tuple[Settings, Path], tmp_path: Path, workers: int,
) -> None:
    """A writer adds samples inside both windows while one assessment runs, after its snapshot
    opened and before its per-asset work starts. In one process (``assess_workers: 0``) the
    assessment equals the one before the writes; with a worker (``api.assetsplit``), which
    opens its own snapshot after the writes, each asset's numbers are all from one snapshot:
    the worker's run of assets as after the writes, this process's as before. After it, the
    writes show everywhere. Real SQLite, a real worker process."""
    settings, _ = stored
    settings = with_assess_workers(settings, workers)
    db = Path(settings.store.path)  # type: ignore[union-attr]
    copy = tmp_path / "copy.db"
    with SqliteStore(db) as src:  # a private copy: the writes must not reach other tests
        src.compact()
    copy.write_bytes(db.read_bytes())
    criteria = load_tiers()
    kw: dict[str, Any] = {"from_": CURRENT["from"], "to": CURRENT["to"], "tier": "excellence",
                          "baseline_from": BASELINE["from"], "baseline_to": BASELINE["to"],
                          "now": NOW, "n_resamples": 200}
    with SqliteStore(copy) as store:
        ids = store.register_tags(tag_records(settings))
        service = KpiService(settings, store)
        before = assess(settings, service, criteria, **kw)
        # rejects at every minute of the two weeks: the defect rate must move if they are seen
        rejects = [i for p, i in ids.items() if p.endswith("/reject_count")]
        t = np.arange(to_ns(NOW - timedelta(days=14)), to_ns(NOW), 60 * 10**9)
        extra = Batch.of(np.repeat(rejects, len(t)), np.tile(t, len(rejects)),
                         np.tile(np.arange(len(t), dtype=float) * 1000, len(rejects)))
        real_first = service.first_sample_ns
        wrote: list[int] = []

        def first_sample_ns(end_ns: int) -> int | None:
            # read by the assessment in its snapshot before any asset's numbers: the writes
            # commit now, on the store's writer connection
            if not wrote:
                store.write(extra)
                store.compact()
                wrote.append(1)
            return real_first(end_ns)

        service.first_sample_ns = first_sample_ns  # type: ignore[method-assign]
        with service.snapshot():
            during = assess(settings, service, criteria, **kw)
        service.first_sample_ns = real_first  # type: ignore[method-assign]
        assert wrote
        after = assess(settings, service, criteria, **kw)
    assert _assessment_deltas(after) != _assessment_deltas(before)
    if workers == 0:
        assert during == before
        return
    paths = [a.path for a in settings.assets]
    (a, b), (c, d) = assetsplit._runs(len(paths), 2)  # the worker's run, then this process's
    theirs, ours = paths[a:b], paths[c:d]
    assert [during["assets"][p] for p in theirs] == [after["assets"][p] for p in theirs]
    assert [during["assets"][p] for p in ours] == [before["assets"][p] for p in ours]
    # the writes reach assets of both runs: the two states are told apart in each
    for run in (theirs, ours):
        assert any(before["assets"][p] != after["assets"][p] for p in run)
