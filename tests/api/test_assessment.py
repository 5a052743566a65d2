"""GET /api/v1/tiers/assessment and ``tierproof assess``, in process against a SQLite store
holding the simulated demo plant's backfilled history (two weeks: the baseline regime, then the
improved one)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from api.gateway import tag_records
from config import load_settings, load_tiers, shipped_config
from config.settings import Settings
from config.times import iso, to_ns
from simulators import Plant
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
IMPROVED = NOW - timedelta(days=7)  # the demo's improvement_at (now-7d)
CURRENT = {"from": iso(to_ns(IMPROVED)), "to": iso(to_ns(NOW))}
BASELINE = {"from": iso(to_ns(NOW - timedelta(days=14))), "to": iso(to_ns(IMPROVED))}
WINDOWS = {**CURRENT, "baseline_from": BASELINE["from"], "baseline_to": BASELINE["to"]}
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """The demo config with its store in a temporary directory, holding 14 days of history."""
    tmp = tmp_path_factory.mktemp("assess")
    db = tmp / "assess.db"
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["store"] = {"type": "sqlite", "path": str(db)}
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(cfg)
    with SqliteStore(db) as store:
        tag_ids = store.register_tags(tag_records(settings))
        plant = Plant(settings, now=NOW)
        for batch in plant.history_batches(tag_ids, to_ns(NOW - timedelta(days=14)), to_ns(NOW)):
            store.write(batch)
    yield settings, cfg


class Client:
    """GETs against the app for ``settings`` (its own lifespan: gateway over the stored data,
    not collecting), each from synchronous test code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        async def run() -> httpx.Response:
            app = create_app(self.settings, collect=False)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tierproof"
            ) as c:
                return await c.get(url, params=params)

        return asyncio.run(run())


@pytest.fixture(scope="module")
def client(stored: tuple[Settings, Path]) -> Client:
    return Client(stored[0])


@pytest.fixture(scope="module")
def assessed(client: Client) -> dict[str, Any]:
    r = client.get("/api/v1/tiers/assessment", params=WINDOWS)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _criteria(body: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(assessed tier, criterion's tier, id) -> result."""
    return {(t, c["tier"], c["id"]): c for t, tr in body["tiers"].items() for c in tr["criteria"]}


def test_every_tier_and_criterion_with_its_record(assessed: dict[str, Any]) -> None:
    criteria = load_tiers()
    assert list(assessed["tiers"]) == [t.name for t in criteria.tiers]
    by = {t.name: t for t in criteria.tiers}
    for name, tr in assessed["tiers"].items():
        want = {(inc, c.id) for inc in [*by[name].includes, name] for c in by[inc].criteria}
        assert {(c["tier"], c["id"]) for c in tr["criteria"]} == want
        assert tr["criteria_version"] == criteria.version
    assert assessed["criteria_version"] == criteria.version
    assert assessed["algorithm_version"] and assessed["config_fingerprint"]
    assert assessed["window"] == {"from": CURRENT["from"], "to": CURRENT["to"]}
    assert assessed["baseline_window"] == BASELINE


def test_missing_evidence_is_insufficient_data_and_says_what_to_supply(
    assessed: dict[str, Any],
) -> None:
    for (_, _, cid), c in _criteria(assessed).items():
        if c["kind"] == "declared":  # the demo declares nothing
            assert c["verdict"] == "insufficient_data", cid
            assert "declared." in c["missing"], cid
        if c["figure"] in ("cnc_rate_key_equipment", "networking_rate"):
            assert c["verdict"] == "insufficient_data" and c["value"] is None
            assert "not computed by this version" in c["missing"]
        if c["reference"] is not None:  # no provincial reference values declared
            assert c["verdict"] == "insufficient_data"
            assert f"declared.references.{c['reference']}" in c["missing"]
    # the measured figures of the improved week, judged where a threshold is known
    ex = {cid: c for (t, ct, cid), c in _criteria(assessed).items() if t == ct == "excellence"}
    assert ex["automation"]["value"] is not None and ex["automation"]["interval"] is not None
    assert ex["defect-reduction"]["verdict"] in ("met", "point_estimate_only", "not_met")
    assert ex["stable-operation"]["verdict"] == "not_met"  # two weeks of history, not a year
    assert ex["stable-operation"]["value"] == pytest.approx(14 / 365.25)


def test_automation_rate_equals_the_kpis_of_the_window(
    client: Client, assessed: dict[str, Any]
) -> None:
    total = client.get("/api/v1/kpis", params=CURRENT).json()["total"]
    got = assessed["figures"]["automation_rate"]["value"]["point"]
    assert got == pytest.approx(total["automation_rate"], rel=0, abs=1e-9)
    ex = _criteria(assessed)[("excellence", "excellence", "automation")]
    assert ex["value"] == got


def test_energy_per_unit_counts_days_without_output(
    client: Client, assessed: dict[str, Any]
) -> None:
    # the demo's Sundays make no parts but use idle energy: the window's energy per unit is
    # all its energy over all its good units, as /kpis's elements give it (days without
    # output are not dropped, which would flatter the figure). /kpis no longer reports a raw
    # energy per unit for a total of several products (PRUs): its metered elements are used
    total = client.get("/api/v1/kpis", params=CURRENT).json()["total"]
    assert total["energy_per_unit_kwh"] is None
    got = assessed["figures"]["energy_per_unit_kwh"]["value"]["point"]
    e = total["elements"]
    assert got == pytest.approx(e["metered_kwh"] / e["metered_gq"], rel=1e-9)


def test_defect_rate_delta_equals_the_kpis_of_both_windows(
    client: Client, assessed: dict[str, Any]
) -> None:
    cur = client.get("/api/v1/kpis", params=CURRENT).json()["total"]["elements"]
    base = client.get("/api/v1/kpis", params=BASELINE).json()["total"]["elements"]
    want = (cur["sq_plan"] / cur["pq_plan"]) / (base["sq_plan"] / base["pq_plan"]) - 1
    delta = assessed["figures"]["defect_rate"]["delta"]
    assert delta["point"] == pytest.approx(want, rel=0, abs=1e-9)
    assert delta["low"] <= delta["point"] <= delta["high"]
    c = _criteria(assessed)[("excellence", "excellence", "defect-reduction")]
    assert c["value"] == delta["point"]


def test_same_seed_same_json(client: Client, assessed: dict[str, Any]) -> None:
    again = client.get("/api/v1/tiers/assessment", params=WINDOWS)
    assert again.json() == assessed
    assert json.dumps(again.json(), sort_keys=True) == json.dumps(assessed, sort_keys=True)


def test_one_tier(client: Client) -> None:
    body = client.get("/api/v1/tiers/assessment", params={**WINDOWS, "tier": "advanced"}).json()
    assert list(body["tiers"]) == ["advanced"]


def test_without_a_baseline_deltas_are_insufficient(stored: tuple[Settings, Path]) -> None:
    settings, _ = stored
    assert settings.kpi.baseline is not None  # the demo configures one: build a copy without
    c = Client(settings.model_copy(update={"kpi": settings.kpi.model_copy(
        update={"baseline": None})}))
    body = c.get("/api/v1/tiers/assessment", params={**CURRENT, "tier": "excellence"}).json()
    assert body["baseline_window"] is None
    deltas = [c for c in body["tiers"]["excellence"]["criteria"]
              if c["measure"] == "delta" and c["kind"] == "measured"]
    assert deltas
    for c in deltas:
        assert c["verdict"] == "insufficient_data" and "needs kpi.baseline" in c["missing"]


@pytest.mark.parametrize(
    ("params", "status", "mentions"),
    [
        ({"tier": "platinum"}, 404, "platinum"),
        ({"from": "last tuesday"}, 422, "from"),
        ({"from": "now", "to": "now-1d"}, 422, "empty"),
        ({"baseline_from": "the old days"}, 422, "baseline_from"),
    ],
)
def test_bad_parameters_are_problems(
    client: Client, params: dict[str, str], status: int, mentions: str
) -> None:
    r = client.get("/api/v1/tiers/assessment", params=params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    assert mentions in r.json()["detail"]


def test_cli_assess_json_has_the_same_verdicts(
    stored: tuple[Settings, Path], assessed: dict[str, Any]
) -> None:
    _, cfg = stored
    args = ["--from", CURRENT["from"], "--to", CURRENT["to"],
            "--baseline-from", BASELINE["from"], "--baseline-to", BASELINE["to"]]
    r = subprocess.run([sys.executable, "-m", "api.cli", "assess", "--config", str(cfg), *args,
                        "--format", "json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert {k: c["verdict"] for k, c in _criteria(body).items()} == {
        k: c["verdict"] for k, c in _criteria(assessed).items()}
    assert body["figures"] == assessed["figures"]
    table = subprocess.run([sys.executable, "-m", "api.cli", "assess", "--config", str(cfg), *args,
                            "--tier", "excellence"], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "defect-reduction" in table.stdout and "insufficient_data" in table.stdout
