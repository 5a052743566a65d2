"""GET /api/v1/tiers/assessment and ``tierproof assess``, in process against a SQLite store
holding the simulated demo plant's backfilled history (two weeks: the baseline regime, then the
improved one); and a second store in which one machine's data are missing."""

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
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import load_settings, load_tiers
from config.declared import Declared
from config.settings import Settings
from config.times import iso, to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.helpers import key_headers, one_week_demo

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
IMPROVED = NOW - timedelta(days=7)  # the demo's improvement_at (now-7d)
CURRENT = {"from": iso(to_ns(IMPROVED)), "to": iso(to_ns(NOW))}
BASELINE = {"from": iso(to_ns(NOW - timedelta(days=14))), "to": iso(to_ns(IMPROVED))}
WINDOWS = {**CURRENT, "baseline_from": BASELINE["from"], "baseline_to": BASELINE["to"]}
PROBLEM = "application/problem+json"


SILENT = "demo/machining/line1/lathe-01"  # a key CNC machine


def _backfill(tmp: Path, days: int, silent: str | None = None) -> tuple[Settings, Path]:
    """The demo config with its store under ``tmp``, holding ``days`` days of history up to NOW;
    the tags of asset ``silent`` are registered but hold no sample."""
    db = tmp / "assess.db"
    # these tests are about what an assessment says when evidence is missing, on one-week
    # windows: the demo plant without its declared evidence, improved a week ago (the shipped
    # demo, with two-week windows and its declared section, is tests/api/test_demo_story.py)
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(db)}
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(cfg)
    with SqliteStore(db) as store:
        tag_ids = store.register_tags(tag_records(settings))
        written = {p: i for p, i in tag_ids.items() if silent is None or not p.startswith(silent + "/")}
        plant = Plant(settings, now=NOW)
        for batch in plant.history_batches(written, to_ns(NOW - timedelta(days=days)), to_ns(NOW)):
            store.write(batch)
    return settings, cfg


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """The demo config with its store in a temporary directory, holding 14 days of history."""
    settings, cfg = _backfill(tmp_path_factory.mktemp("assess"), 14)
    # roll-ups are on by default: every closed hour (and local day) rolled up before the
    # first request, so that every request reads the same rows (an app's maintainer adding
    # rows between two requests would change the last digits, docs/kpis.md)
    with SqliteStore(Path(settings.store.path)) as store:
        RollupMaintainer(KpiService(settings, store), backfill_days=None).run_once()
    yield settings, cfg


class Client:
    """GETs against the app for ``settings`` (its own lifespan: gateway over the stored data,
    not collecting), each from synchronous test code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        async def run() -> httpx.Response:
            headers = key_headers(self.settings)  # api.auth: every test sends a key
            app = create_app(self.settings, collect=False)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
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
        if c["figure"] in ("cnc_rate_key_equipment", "networking_rate"):  # computed now
            assert c["value"] == 1.0 and c["interval"] is not None
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
    for key in ("window", "baseline_window", "assets", "lines", "total", "deltas"):
        assert body[key] == assessed[key], key
    table = subprocess.run([sys.executable, "-m", "api.cli", "assess", "--config", str(cfg), *args,
                            "--tier", "excellence"], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "defect-reduction" in table.stdout and "insufficient_data" in table.stdout
    # the figures table: the declared CNC rate on its own row under the verified one, units
    rows = {line.strip().split("  ")[0]: line for line in table.stdout.splitlines()}
    assert "9 of 9" in rows["cnc_rate_key_equipment (declared)"]
    assert "kWh/standard h" in rows["energy_per_standard_hour_kwh"]
    assert "1 (declared 1)" in next(line for line in table.stdout.splitlines() if " cnc-rate " in line)


def _kpis(client: Client, window: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/api/v1/kpis", params=window).json()
    return body


def test_cnc_and_networking_rates_of_the_demo(assessed: dict[str, Any]) -> None:
    # nine key machines, all CNC or PLC: declared 9 / 9; every machine reports on each of the
    # window's 7 planned days (its Sunday has no planned time): 63 / 63 key asset-days and
    # 77 / 77 asset-days (11 machines)
    cnc = assessed["figures"]["cnc_rate_key_equipment"]
    assert cnc["declared"]["value"] == 1.0
    assert (cnc["declared"]["numerator"], cnc["declared"]["denominator"]) == (9, 9)
    assert cnc["declared"]["kind"] == "declared"
    assert cnc["declared"]["config_fingerprint"] == assessed["config_fingerprint"]
    assert cnc["value"]["window"] == {"value": 1.0, "numerator": 63.0, "denominator": 63.0,
                                      "n_days": 7, "zero_days": 1}
    assert (cnc["value"]["low"], cnc["value"]["high"]) == (1.0, 1.0)
    net = assessed["figures"]["networking_rate"]["value"]
    assert (net["point"], net["window"]["numerator"], net["window"]["denominator"]) == (1.0, 77.0, 77.0)
    ex = _criteria(assessed)[("excellence", "excellence", "cnc-rate")]
    assert (ex["value"], ex["verdict"]) == (1.0, "met")


def test_a_silent_machine_lowers_the_verified_rates_not_the_declared_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # the lathe's tags are registered but its data never arrived: 8 of 9 key machines and 10
    # of 11 machines report on every planned day
    settings, _ = _backfill(tmp_path_factory.mktemp("silent"), 7, silent=SILENT)
    body = Client(settings).get("/api/v1/tiers/assessment", params={**CURRENT, "tier": "excellence"}).json()
    cnc = body["figures"]["cnc_rate_key_equipment"]
    assert cnc["declared"]["value"] == 1.0
    assert cnc["value"]["point"] == pytest.approx(8 / 9)
    assert (cnc["value"]["window"]["numerator"], cnc["value"]["window"]["denominator"]) == (56.0, 63.0)
    assert body["figures"]["networking_rate"]["value"]["point"] == pytest.approx(10 / 11)
    ex = {c["id"]: c for c in body["tiers"]["excellence"]["criteria"] if c["tier"] == "excellence"}
    assert (ex["cnc-rate"]["value"], ex["cnc-rate"]["verdict"]) == (pytest.approx(8 / 9), "not_met")
    assert body["assets"][SILENT]["coverage"] == 0.0


def test_energy_per_standard_hour_is_summed_from_the_kpis(
    client: Client, stored: tuple[Settings, Path], assessed: dict[str, Any]
) -> None:
    # Σ kWh / Σ PRU x GQ (in hours) over the machines with a meter and a PRU: every demo machine
    pru = {a.path: a.ideal_cycle_time_s for a in stored[0].assets}
    assets = _kpis(client, CURRENT)["assets"]
    kwh = sum(e["elements"]["energy_kwh"] for e in assets.values())
    std_h = sum(pru[p] * e["elements"]["gq"] / 3600 for p, e in assets.items())
    fig = assessed["figures"]["energy_per_standard_hour_kwh"]
    assert fig["unit"] == "kWh/standard h"
    assert fig["value"]["point"] == pytest.approx(kwh / std_h, rel=1e-9)
    assert fig["value"]["low"] < fig["value"]["point"] < fig["value"]["high"]
    assert assessed["figures"]["energy_per_unit_kwh"]["unit"] == "kWh/unit"
    assert "not weighted by standard time" in assessed["figures"]["energy_per_unit_kwh"]["note"]
    energy = _criteria(assessed)[("excellence", "excellence", "energy")]
    assert energy["figure"] == "energy_per_standard_hour_kwh"


def test_the_assessment_carries_the_kpis_and_deltas_of_its_windows(
    client: Client, assessed: dict[str, Any]
) -> None:
    kpis = _kpis(client, CURRENT)
    assert set(assessed["assets"]) == set(kpis["assets"])
    for path, entry in kpis["assets"].items():
        entry.pop("evidence")  # left to /api/v1/kpis: the assessment's window names it
        assert assessed["assets"][path] == entry
    assert assessed["lines"] == kpis["lines"] and assessed["total"] == kpis["total"]
    for f, fig in assessed["figures"].items():
        d = assessed["deltas"][f]
        if fig["delta"] is not None:
            assert {k: d[k] for k in fig["delta"]} == fig["delta"]
            assert d["current_value"] == fig["value"]["window"]["value"] if "window" in (
                fig["value"] or {}) else True
    pe = assessed["deltas"]["production_efficiency"]
    assert pe["current_value"] / pe["baseline_value"] - 1 == pytest.approx(pe["point"])
    assert assessed["deltas"]["carbon_per_standard_hour_kg"]["missing"].startswith(
        "needs declared.emission_factor")


WHO = {"supplied_by": "li.wei@plant.example", "supplied_at": "2026-12-01", "source": "ERP report FI-12"}


def _declaring(settings: Settings, **declared: Any) -> Client:
    return Client(settings.model_copy(update={"declared": Declared.model_validate(declared)}))


def test_carbon_labour_hours_and_a_benchmark_in_the_right_unit(
    stored: tuple[Settings, Path], assessed: dict[str, Any]
) -> None:
    settings = stored[0]
    c = _declaring(settings, emission_factor={**WHO, "value": 0.5, "unit": "kg CO2/kWh"},
                   labour_hours=[{**WHO, "period": "2026-11", "amount": 2000, "unit": "h"}],
                   energy_benchmark={**WHO, "value": 20.0, "unit": "kWh per standard hour"})
    body = c.get("/api/v1/tiers/assessment", params={**WINDOWS, "tier": "excellence"}).json()
    energy, carbon = (body["figures"][f]["value"] for f in ("energy_per_standard_hour_kwh",
                                                            "carbon_per_standard_hour_kg"))
    for k in ("point", "low", "high"):
        assert carbon[k] == pytest.approx(0.5 * energy[k], rel=1e-9)
    assert body["figures"]["carbon_per_standard_hour_kg"]["emission_factor"]["source"] == "ERP report FI-12"
    # November 2026 plans 25 days (Mon-Sat) of 15 h 05 min; each window holds 6 of them
    # (two partial Wednesdays make one), so each gets 2000 h x 6 / 25 = 480 labour hours
    labour = body["figures"]["production_efficiency_labour"]
    assert labour["value"]["month_shares"] == {"2026-11": pytest.approx(6 / 25)}
    assert labour["value"]["labour_hours"] == pytest.approx(480.0)
    std_h = body["figures"]["production_efficiency"]["value"]["window"]["numerator"]
    assert labour["value"]["standard_hours"] == pytest.approx(std_h)
    assert labour["value"]["point"] == pytest.approx(std_h / 480.0)
    assert "no interval" in labour["note"]
    base_std = body["figures"]["production_efficiency"]["delta"]["baseline"]["numerator"]
    assert body["deltas"]["production_efficiency_labour"]["point"] == pytest.approx(std_h / base_std - 1)
    ex = {c["id"]: c for c in body["tiers"]["excellence"]["criteria"] if c["tier"] == "excellence"}
    assert ex["energy"]["threshold"] == 20.0
    assert ex["energy"]["verdict"] == "met"  # the interval's high bound is below 20 kWh/standard h


def test_a_benchmark_in_another_unit_is_not_compared(stored: tuple[Settings, Path]) -> None:
    c = _declaring(stored[0], energy_benchmark={**WHO, "value": 0.2, "unit": "kWh/unit"})
    body = c.get("/api/v1/tiers/assessment", params={**WINDOWS, "tier": "excellence"}).json()
    ex = {c["id"]: c for c in body["tiers"]["excellence"]["criteria"] if c["tier"] == "excellence"}
    assert ex["energy"]["verdict"] == "insufficient_data"
    assert "declared in 'kWh/unit'" in ex["energy"]["missing"]
    assert "kWh/standard h" in ex["energy"]["missing"]
    labour = body["figures"]["production_efficiency_labour"]
    assert labour["value"]["point"] is None
    assert labour["missing"].startswith("needs declared.labour_hours for 2026-11")
