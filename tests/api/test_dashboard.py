"""The dashboard in a real headless Chromium (driven by Playwright, tests/api/browser.py)
against the demo (a subprocess: simulated plant -> collectors -> SQLite -> API):
the page's script fetches the API and renders every machine's state, mode and OEE, the OEE
per line, and its charts (the vendored ECharts) — OEE and its parts, the OEE losses, output and
energy, baseline vs current, a state timeline per machine — from the answers it got, checked
against the series ECharts holds (``getOption()``), not only that a canvas exists; the drill-
down plant -> line -> machine -> tag; the tier readiness page; English and Chinese (every
visible label changes); 1280 and 390 px; a banner when the gateway cannot be reached; no
request leaves 127.0.0.1. One Chromium for the module; screenshots are kept as artefacts in
tests/artifacts/dashboard/ (ignored by git)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import load_settings
from tests.api.browser import Page, chromium_page
from tests.helpers import demo_keys

#: screenshots of the views (test artefacts; `git status` ignores them)
ART = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
#: where the README's pictures are written when asked (DASHBOARD_DOCS_IMG=docs/img)
DOCS_IMG = os.environ.get("DASHBOARD_DOCS_IMG")
STATES = {"Executing", "NotExecuting", "OutOfService", "NotAvailable"}


def render(url: str, profile: Path, ready: str) -> str:
    """The DOM of ``url`` in a new browser (its own fresh profile) once ``ready`` holds."""
    with chromium_page(profile, width=1300) as p:
        p.goto(url)
        p.wait(ready, 60, f"{url} rendered: {ready}")
        assert p.errors == [] or all("401" in e for e in p.errors), p.errors
        return str(p.page.content())


@pytest.fixture(scope="module")
def page(demo: tuple[httpx.Client, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """One Chromium for the module's tests, on the demo's dashboard with its read key (the
    URL `tierproof demo` prints); each test checks the errors and requests of its own part."""
    client, cfg = demo
    ART.mkdir(parents=True, exist_ok=True)
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    with chromium_page(tmp_path_factory.mktemp("chromium"), width=1280) as p:
        p.goto(f"{client.base_url}/#key={read_key}")
        p.wait("!!window.tierproof && location.hash === ''", 60, "the dashboard loaded, its key taken")
        yield p


@contextlib.contextmanager
def clean(page: Page) -> Iterator[None]:
    """No console error and no request beyond 127.0.0.1 while the block runs."""
    errors, requests = len(page.errors), len(page.requests)
    yield
    assert page.errors[errors:] == [], page.errors[errors:]
    outside = [u for u in page.requests[requests:]
               if not u.startswith(("http://127.0.0.1", "data:", "about:", "blob:"))]
    assert outside == [], outside


def shot(page: Page, name: str, docs: str | None = None) -> None:
    page.screenshot(ART / name, full=True)
    if DOCS_IMG and docs:  # the README's pictures: the whole view, half size
        page.screenshot(Path(DOCS_IMG) / docs, full=True, scale=0.5)


def data(page: Page, expr: str) -> Any:
    return page.eval(f"(() => {{ const D = window.tierproof.data; return {expr}; }})()")


def option(page: Page, chart: str) -> dict[str, Any]:
    """What ECharts holds for chart ``chart`` (its series and axes), as JSON."""
    return page.eval(f"JSON.parse(JSON.stringify(window.tierproof.charts[{chart!r}].getOption()))")


def wait_view(page: Page, ready: str, what: str, timeout: float = 90) -> Any:
    # (a chart itself is not answered: true for it)
    try:
        return page.wait(f"(() => {{ const S = window.tierproof, D = S.data; try {{ const v = {ready}; "
                         "return v && v.getOption ? true : v; } catch (e) { return false; } })()",
                         timeout, what)
    except AssertionError as exc:  # what the page had, to tell why
        state = page.eval("JSON.stringify({hash: location.hash, data: Object.keys(window.tierproof.data), "
                          "cycles: window.tierproof.cycles, inFlight: window.tierproof.inFlight, "
                          "err: document.getElementById('err').textContent, "
                          "tiles: [...document.querySelectorAll('.tile')].map(e => e.dataset.state)})")
        raise AssertionError(f"{exc}; page: {state}; errors: {page.errors}") from None


def js_round(x: float) -> int:
    """JavaScript's Math.round: halves up (Python's round() takes halves to even)."""
    return math.floor(x + 0.5)


def r1(v: float | None) -> float | None:
    return None if v is None else js_round(v * 1000) / 10


def losses(e: dict[str, float]) -> tuple[list[float | None], list[float | None]]:
    """The loss breakdown in hours and parts, as docs/api.md (Dashboard) defines it."""
    pru = e["ideal_s"] / e["pq_plan"] if e["pq_plan"] > 0 and e["ideal_s"] > 0 else None
    secs = [e["asut_s"], e["adet_s"] - e["idle_s"], e["idle_s"], e["maintenance_s"],
            e["not_available_s"], e["other_s"],
            None if pru is None else e["apt_pru_s"] - e["ideal_s"],
            None if pru is None else pru * e["sq_plan"]]
    hours = [None if s is None else js_round(s / 3600 * 100) / 100 for s in secs]
    parts = [None if pru is None or s is None else js_round(s / pru) for s in secs[:-1]]
    return hours, [*parts, None if pru is None else js_round(e["sq_plan"])]


# the tiles and their figures, as the page drew them
TILES = """[...document.querySelectorAll('.tile')].map(e => ({asset: e.dataset.asset,
  state: e.dataset.state, text: e.innerText, stale: e.classList.contains('stale')}))"""


def test_overview_states_oee_and_its_charts(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """A tile per machine with its live state's name and OEE, the OEE per line, and the four
    charts drawn from the API's answers: OEE and its parts per hour (/kpis/series), the loss
    breakdown (/kpis elements), good and scrap parts and energy per hour, baseline vs current
    with the intervals (/kpis/deltas)."""
    client, cfg = demo
    settings = load_settings(cfg)
    with clean(page):
        page.hash("#/")
        tiles = wait_view(page, f"(() => {{ const t = {TILES}; return t.length === {len(settings.assets)} "
                          "&& t.every(x => x.state) && D.kpis && t; })()",
                          "a tile with a state for every machine")
        assert sorted(x["asset"] for x in tiles) == sorted(a.path for a in settings.assets)
        for x in tiles:  # each state is what the API answers for the machine's state tag, by name
            assert x["state"] in STATES, x
            assert re.search(r"OEE \d+(\.\d)?\s?%", x["text"]), x
        assert page.eval("document.getElementById('keyform').hidden"), "the page asked for a key it had"
        assert page.eval("document.getElementById('banner').hidden"), "unreachable banner with the gateway up"
        assert page.eval("document.getElementById('err').textContent") == ""
        lines = page.eval("[...document.querySelectorAll('.line-oee')].map(e => e.textContent)")
        assert len(lines) == len({a.path.rsplit("/", 1)[0] for a in settings.assets})
        assert all(re.fullmatch(r"\d+(\.\d)?\s?%", x) for x in lines), lines

        # OEE and its parts: the buckets of /kpis/series for the page's window, as percentages
        series = data(page, "D.series")
        again = client.get("/api/v1/kpis/series", params={**series["window"], "bucket": "1h"}).json()
        assert len(series["buckets"]) == len(again["buckets"]) >= 24
        # the closed hours are history: the page's answer is the API's (the last may still grow)
        for a, b in zip(series["buckets"][:-1], again["buckets"][:-1], strict=True):
            assert a["elements"]["pbt_s"] == b["elements"]["pbt_s"]
            assert a["oee"] == pytest.approx(b["oee"], abs=1e-3)
        oee = option(page, "chart")["series"]
        assert [s["type"] for s in oee] == ["bar", "line", "line", "line"]
        for s, figure in zip(oee, ("oee", "availability", "effectiveness", "quality_ratio"), strict=True):
            assert s["data"] == [r1(b[figure]) for b in series["buckets"]], figure
        assert any(v for v in oee[0]["data"]), "no OEE drawn"
        assert page.eval("(() => { const c = document.querySelector('#chart canvas'); "
                         "return c && c.width > 300 && c.height > 100; })()")

        # losses: availability losses by cause, performance and quality loss, hours and parts
        total = data(page, "D.kpis")
        k = client.get("/api/v1/kpis", params=total["window"]).json()
        assert k["total"]["elements"]["pbt_s"] == total["total"]["elements"]["pbt_s"]
        hours, parts = losses(total["total"]["elements"])
        drawn = option(page, "loss")["series"]
        assert drawn[0]["data"] == hours and drawn[1]["data"] == parts, (drawn, hours, parts)
        assert sum(h for h in hours[:6] if h) > 0 and hours[6] is not None and hours[7] > 0
        # the availability losses are the known planned time not produced in
        e = total["total"]["elements"]
        assert sum(hours[:6]) == pytest.approx((e["known_s"] - e["apt_s"]) / 3600, abs=0.05)

        # output and energy per hour
        counters = option(page, "counters")["series"]
        assert [s["name"] for s in counters] == ["Good parts", "Scrap", "Energy (kWh)"]
        for s, key in zip(counters, ("gq", "sq", "energy_kwh"), strict=True):
            assert s["data"] == [js_round(b["elements"][key] * 10) / 10 for b in series["buckets"]], key
        assert sum(counters[0]["data"]) > 0 and sum(counters[2]["data"]) > 0

        # baseline vs current: each figure's relative change and its 95 % interval
        wait_view(page, "D.deltas && S.charts.deltas.getOption().series[0].data.length", "the deltas chart")
        deltas = data(page, "D.deltas")
        shown = [(f, d) for f, d in deltas["deltas"].items() if d["point"] is not None]
        again = client.get("/api/v1/kpis/deltas").json()["deltas"]
        assert {f for f, _ in shown} == {f for f, d in again.items() if d["point"] is not None}
        bars, whiskers = option(page, "deltas")["series"]
        assert bars["data"] == [r1(d["point"]) for _, d in shown]
        assert whiskers["data"] == [[i, r1(d["low"]), r1(d["high"])] for i, (_, d) in enumerate(shown)]
        assert all(lo <= p <= hi for (_, lo, hi), p in zip(whiskers["data"], bars["data"], strict=True))
        shot(page, "overview-1280.png", "dashboard-overview.png")
        # refreshes never overlap: each is scheduled only after the previous one ended
        assert page.eval("window.tierproof.maxInFlight") == 1


def segments(samples: dict[str, Any], span: tuple[float, float], now_ms: float) -> list[list[Any]]:
    """A state tag's samples as the Gantt's segments (charts.js ``segments``): each holds until
    the next sample, the last until the window's end (or now); a bad sample's time unknown."""
    from datetime import UTC, datetime, timedelta

    epoch = datetime(1970, 1, 1, tzinfo=UTC)  # whole milliseconds, as JavaScript's Date.parse
    ms = [(datetime.fromisoformat(t.replace("Z", "+00:00")) - epoch) // timedelta(milliseconds=1)
          for t in samples["ts"]]
    out, end = [], min(span[1], now_ms)
    for i, t in enumerate(ms):
        s, e = max(span[0], t), ms[i + 1] if i + 1 < len(ms) else end
        if e > s:
            out.append([s, e, samples["name"][i] if samples["quality"][i] < 2 else None])
    return out


def test_drill_down_line_machine_tag(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """plant -> line -> machine -> tag by the page's own links: the line's timeline has a row per
    machine, the machine's timeline its state and mode as the raw samples say, its losses are
    its own elements', its tags are listed with their latest values, and a tag's page shows its
    history per bucket and its raw samples."""
    client, cfg = demo
    settings = load_settings(cfg)
    line = "demo/machining/line1"
    machines = sorted(a.path for a in settings.assets if a.path.startswith(line + "/"))
    with clean(page):
        page.hash("#/")
        href = page.wait(f"document.querySelector('section[data-line=\"{line}\"] h3 a')"
                         "?.getAttribute('href')", 60, "the line's link")
        page.hash(href)
        wait_view(page, "D.states && S.charts.gantt && S.charts.chart", "the line's view")
        gantt = option(page, "gantt")
        assert gantt["yAxis"][0]["data"] == [m.rsplit("/", 1)[1] for m in machines]
        rows = {item[0] for item in gantt["series"][0]["data"]}
        assert rows == set(range(len(machines))), rows  # every machine has a timeline
        assert {item[3] for item in gantt["series"][0]["data"]} <= STATES | {"unknown"}
        assert data(page, "D.series.selection") == {"asset": None, "line": line}
        mine = losses(data(page, "D.kpis.lines")[line]["elements"])[0]
        assert option(page, "loss")["series"][0]["data"] == mine
        shot(page, "line-1280.png")

        machine = machines[0]
        page.hash(page.eval(f"document.querySelector('.tile[data-asset=\"{machine}\"]').getAttribute('href')"))
        wait_view(page, "D.rows && S.charts.gantt && S.charts.loss && "
                  "document.querySelectorAll('#tags tbody tr').length", "the machine's view")
        rows = data(page, "D.rows")
        assert [r["r"] for r in rows] == ["state", "mode"]
        span = page.eval("(() => { const w = window.tierproof.data.series.window; "
                         "return [Date.parse(w.from), Date.parse(w.to)]; })()")
        drawn = option(page, "gantt")["series"][0]["data"]
        now_ms = max(item[2] for item in drawn)  # the page cut the last segment at its now
        for i, r in enumerate(rows):
            # the page's samples are the API's (the window's history does not change)
            api = client.get(f"/api/v1/tags/{machine}/{r['r']}/samples", params=r["s"]["window"]).json()
            assert api["ts"][:len(r["s"]["ts"]) - 1] == r["s"]["ts"][:-1]
            mine = [[s, e, n or "unknown"] for s, e, n in segments(r["s"], span, now_ms)]
            assert [item[1:] for item in drawn if item[0] == i] == mine, r["r"]
        names = {item[3] for item in drawn if item[0] == 0}
        assert names & STATES, names
        k = data(page, "D.kpis.assets")[machine]
        assert option(page, "loss")["series"][0]["data"] == losses(k["elements"])[0]
        assert data(page, "D.series.selection") == {"asset": machine, "line": None}
        listed = page.eval("[...document.querySelectorAll('#tags tbody tr')].map(e => e.dataset.tag)")
        assert listed == [t["path"] for t in client.get("/api/v1/tags", params={"asset": machine}).json()]
        shot(page, "machine-1280.png", "dashboard-machine.png")

        tag = f"{machine}/spindle_temperature"
        page.hash(page.eval(f"document.querySelector('#tags tr[data-tag=\"{tag}\"] a').getAttribute('href')"))
        wait_view(page, "D.history && D.samples && S.charts.history", "the tag's view")
        hist = data(page, "D.history")
        again = client.get(f"/api/v1/tags/{tag}/history",
                           params={**hist["window"], "bucket": hist["bucket"], "agg": "mean"}).json()
        drawn = option(page, "history")["series"][0]["data"]
        assert drawn == [b["value"] for b in hist["buckets"]]
        for a, b in zip(hist["buckets"][:-1], again["buckets"][:-1], strict=True):
            assert (a["value"] is None) == (b["value"] is None)
            assert a["value"] is None or math.isclose(a["value"], b["value"], rel_tol=1e-6)
        assert any(v is not None for v in drawn)
        samples = data(page, "D.samples")
        assert page.eval("document.querySelectorAll('#samples tbody tr').length") == samples["count"] > 0
        shot(page, "tag-1280.png")


def test_tier_page_lists_the_assessment(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """The tier readiness page: for the chosen tier every criterion of the assessment with its
    verdict, links to the samples behind each measured figure (in the assessed window), who
    declared each declared one, and the evidence pack's link."""
    client, _ = demo
    assessment = client.get("/api/v1/tiers/assessment").json()
    with clean(page):
        for tier in ("excellence", "basic"):
            page.hash(f"#/tiers?tier={tier}")
            rows = wait_view(page, "D.assessment && [...document.querySelectorAll('#criteria tbody tr')]"
                             ".map(e => [e.dataset.criterion, e.dataset.verdict])", f"the {tier} criteria")
            mine = data(page, "D.assessment.tiers")[tier]
            ids = [f"{c['tier']}/{c['id']}" for c in assessment["tiers"][tier]["criteria"]]
            assert [r[0] for r in rows] == ids
            assert [r[1] for r in rows] == [c["verdict"] for c in mine["criteria"]]
            verdict = page.eval("document.getElementById('tier-verdict').firstElementChild.dataset.verdict")
            assert verdict == mine["verdict"]
            pack = page.eval("document.getElementById('evidence-pack').getAttribute('href')")
            assert pack == f"/api/v1/evidence?tier={tier}"
            assert page.eval("document.getElementById('tier-picker').value") == tier
        page.hash("#/tiers?tier=excellence")
        wait_view(page, "document.querySelectorAll('#criteria tbody tr').length > 5",
                  "the excellence criteria")
        shot(page, "tiers-1280.png", "dashboard-tiers.png")
        # a measured criterion's evidence: the samples of its tags in the assessed window
        link = page.eval("document.querySelector('tr[data-criterion=\"advanced/automation\"] a.ev-samples')"
                         ".getAttribute('href')")
        win = data(page, "D.assessment.window")
        assert link.startswith("#/tag/"), link
        assert link.endswith(f"?from={win['from']}&to={win['to']}".replace(":", "%3A")), link
        declared = page.eval("document.querySelector('tr[data-criterion=\"excellence/maturity\"] .ev')"
                             ".innerText")
        assert "maturity" in declared and "supplied by" in declared, declared
        page.hash(link)
        samples = wait_view(page, "D.samples", "the evidence's samples")
        assert samples["window"] == win and samples["count"] > 0


def pareto_labels(pareto: list[dict[str, Any]]) -> list[str]:
    """The Pareto's categories as the page names them in English: the loss types and
    `unassigned` translated, a reason by the configuration's name (the API's label)."""
    names = {"speed_loss": "Speed loss", "scrap_rework": "Scrap / rework", "unassigned": "Unassigned"}
    return [names.get(p["key"], p["label"]) if p["kind"] == "loss_type" or p["key"] == "unassigned"
            else p["label"] for p in pareto]


#: the fills of the rectangles ECharts drew for a chart (its display list: what is on the canvas)
FILLS = ("[...new Set(window.tierproof.charts[{!r}].getZr().storage.getDisplayList()"
         ".filter(e => e.type === 'rect').map(e => e.style.fill))]")


def check_pareto(page: Page, client: httpx.Client, selection: dict[str, str]) -> dict[str, str]:
    """The Pareto drawn is the page's /losses answer (hours per reason, speed loss and scrap,
    largest first, and the cumulative share), which is the API's for the same window; the six
    big losses are listed under it. Returns each key's bar colour."""
    mine = data(page, "D.losses")
    again = client.get("/api/v1/losses", params={**selection, **mine["window"]}).json()
    # (a state that changed in the second before the page asked can move a few seconds)
    got = {p["key"]: p["hours"] for p in mine["pareto"]}
    for p in again["pareto"]:
        assert got.get(p["key"], 0.0) == pytest.approx(p["hours"], abs=0.01), p
    bars, line = option(page, "pareto")["series"]
    assert [b["value"] for b in bars["data"]] == [js_round(p["hours"] * 100) / 100 for p in mine["pareto"]]
    assert line["data"] == [r1(p["cumulative_share"]) for p in mine["pareto"]]
    assert line["data"] == sorted(line["data"]) and line["data"][-1] == 100.0
    assert option(page, "pareto")["xAxis"][0]["data"] == pareto_labels(mine["pareto"])
    assert len(mine["pareto"]) >= 3 and bars["data"][0]["value"] > 0
    listed = page.eval("[...document.querySelectorAll('#loss-types li')]"
                       ".map(e => [e.dataset.lossType, e.innerText])")
    assert [x[0] for x in listed] == [x["loss_type"] for x in mine["loss_types"]] == [
        "planned_downtime", "breakdown", "changeover_setup", "small_stop", "speed_loss", "scrap_rework"]
    assert listed[1][1].startswith("Breakdown: ") and listed[4][1].startswith("Speed loss: "), listed
    return {p["key"]: b["itemStyle"]["color"] for p, b in zip(mine["pareto"], bars["data"], strict=True)}


def check_stops(page: Page, client: httpx.Client, selection: dict[str, str], assets: list[str],
                colours: dict[str, str]) -> None:
    """The stop timeline: a row per machine, a bar per stop of the page's /stops answer (the
    API's for the window), each filled with its reason's colour -- the colour of the reason's
    bar in the Pareto; the legend names each reason drawn."""
    stops = data(page, "D.stops")
    assert stops["count"] == len(stops["stops"]) > 0 and not stops["truncated"]
    again = client.get("/api/v1/stops", params={**selection, **stops["window"]}).json()
    # the stops that began before the window's last minute (a state the page asked for in its
    # last second may have been stored since)
    cut = ms(stops["window"]["to"]) - 60_000
    assert [(s["id"], s["reason"]) for s in stops["stops"] if ms(s["start"]) < cut] == \
        [(s["id"], s["reason"]) for s in again["stops"] if ms(s["start"]) < cut]
    opt = option(page, "stops")
    assert opt["yAxis"][0]["data"] == [a.rsplit("/", 1)[1] for a in assets]
    span = [ms(stops["window"]["from"]), ms(stops["window"]["to"])]
    assert opt["series"][0]["data"] == [
        [assets.index(s["asset"]), max(span[0], ms(s["start"])), min(span[1], ms(s["end"])), s["reason"], k]
        for k, s in enumerate(stops["stops"])]
    reasons = {s["reason"] for s in stops["stops"]}
    legend = dict(page.eval("[...document.querySelectorAll('#stops-legend li')].map(e => "
                            "[e.dataset.reason, getComputedStyle(e.querySelector('i')).backgroundColor])"))
    assert set(legend) == reasons
    hex_rgb = {k: "rgb({}, {}, {})".format(*(int(v[i:i + 2], 16) for i in (1, 3, 5)))
               for k, v in colours.items()}
    for r in reasons & hex_rgb.keys():  # the Pareto's colour of the reason, in the legend
        assert legend[r] == hex_rgb[r], r
    drawn = set(page.eval(FILLS.format("stops")))
    assert reasons <= colours.keys(), reasons - colours.keys()  # every stop's reason is in the Pareto
    assert {colours[r] for r in reasons} <= drawn, drawn  # and its colour is on the timeline's canvas
    assert len({legend[r] for r in reasons}) == len(reasons)  # one colour per reason


def ms(iso: str) -> int:
    """An ISO time as JavaScript's Date.parse gives it (whole milliseconds)."""
    from datetime import UTC, datetime, timedelta

    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_loss_pareto_and_stop_timeline(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """Issue 19 on the dashboard: the plant's loss Pareto on the overview; a line's Pareto and
    its stop timeline (a row per machine, coloured by reason); a machine's."""
    client, cfg = demo
    settings = load_settings(cfg)
    line = "demo/machining/line1"
    machines = sorted(a.path for a in settings.assets if a.path.startswith(line + "/"))
    with clean(page):
        page.hash("#/")
        wait_view(page, "D.losses && S.charts.pareto", "the plant's Pareto")
        check_pareto(page, client, {})
        page.hash(f"#/line/{line}")
        wait_view(page, "D.losses && D.stops && S.charts.stops && S.charts.pareto", "the line's losses")
        colours = check_pareto(page, client, {"line": line})
        check_stops(page, client, {"line": line}, machines, colours)
        shot(page, "line-losses-1280.png")
        page.hash(f"#/machine/{machines[0]}")
        wait_view(page, "D.losses && D.stops && S.charts.stops && S.charts.pareto", "the machine's losses")
        colours = check_pareto(page, client, {"asset": machines[0]})
        check_stops(page, client, {"asset": machines[0]}, machines[:1], colours)


def test_tier_page_window_picker(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """The tier page's window: as configured by default (no from/to asked), the last 7 days,
    or plant dates with an inclusive end -- each what the assessment answers for and what the
    evidence pack's link asks for."""
    client, _ = demo
    with clean(page):
        page.hash("#/tiers?tier=basic")
        configured = wait_view(page, "D.assessment && D.assessment.window", "the configured window")
        assert page.eval("document.getElementById('tier-window').value") == ""
        assert ms(configured["to"]) - ms(configured["from"]) == 14 * 86_400_000  # kpi.current: now-14d
        page.eval("(() => { const s = document.getElementById('tier-window'); s.value = 'now-7d'; "
                  "s.dispatchEvent(new Event('change')); })()")
        week = wait_view(page, "location.hash.includes('now-7d') && D.assessment && D.assessment.window",
                         "the last 7 days assessed")
        assert ms(week["to"]) - ms(week["from"]) == 7 * 86_400_000
        assert page.eval("document.getElementById('evidence-pack').getAttribute('href')") == \
            "/api/v1/evidence?tier=basic&from=now-7d&to=now"
        # dates of the plant (Asia/Shanghai): from its midnight to the midnight after the last day
        page.eval("(() => { const s = document.getElementById('tier-window'); s.value = 'custom'; "
                  "s.dispatchEvent(new Event('change')); })()")
        assert page.eval("document.getElementById('tier-dates').hidden") is False
        page.eval("(() => { document.getElementById('tier-from').value = '2026-11-23'; "
                  "document.getElementById('tier-to').value = '2026-11-29'; "
                  "document.getElementById('tier-apply').click(); })()")
        days = wait_view(page, "location.hash.includes('2026-11-23') && D.assessment && D.assessment.window",
                         "the chosen dates assessed")
        assert (days["from"], days["to"]) == ("2026-11-22T16:00:00Z", "2026-11-29T16:00:00Z")
        assert page.eval("document.getElementById('evidence-pack').getAttribute('href')") == \
            "/api/v1/evidence?tier=basic&from=2026-11-23&to=2026-11-30"
        assert page.eval("[document.getElementById('tier-window').value, "
                         "document.getElementById('tier-to').value]") == ["custom", "2026-11-29"]
        # (the page's own request: the gateway's cache answers it)
        again = client.get("/api/v1/tiers/assessment", params={"from": "2026-11-23", "to": "2026-11-30"},
                           timeout=180).json()
        mine = data(page, "D.assessment.tiers.basic")
        assert [c["verdict"] for c in mine["criteria"]] == \
            [c["verdict"] for c in again["tiers"]["basic"]["criteria"]]


def visible_texts(page: Page) -> list[str]:
    """Every visible text of the page but the API's own texts (class raw: reasons, errors)."""
    return page.eval("""(() => { const out = [];
      const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n; (n = w.nextNode());) { const s = n.textContent.trim(), el = n.parentElement;
        if (s && !el.closest('.raw, #lang, script, style, option') && el.checkVisibility()) out.push(s); }
      return out; })()""")


def language(page: Page, lang: str) -> None:
    """Choose ``lang`` in the header's language switch, as a user does."""
    page.eval(f"(() => {{ const s = document.getElementById('lang'); s.value = '{lang}'; "
              "s.dispatchEvent(new Event('change')); })()")


def test_language_switch_changes_every_label(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """In Chinese no label of the overview, a machine page or the tier page is left in English:
    what stays Latin is data (asset, tag and device names, protocols, units the config gives)
    and OEE; the charts' series are named in Chinese; the choice is remembered."""
    client, cfg = demo
    settings = load_settings(cfg)
    data_words = {"OEE", "MDI", "API", "CSV", "tierproof", "kWh", "Asia", "Shanghai", "UTC"}
    for t in client.get("/api/v1/tags").json():
        data_words.update([*re.split(r"[/_\-]", t["path"]), *t["path"].split("/"),
                           t["device"], t["protocol"]])
    latin = re.compile(r"[A-Za-z][A-Za-z_\-0-9]*")
    machine = f"#/machine/{settings.assets[0].path}"
    reason = f"{settings.assets[0].path}/stop_reason"
    views = {"#/": "D.kpis && D.series && D.losses && S.charts.loss",
             machine: "D.rows && D.kpis && D.losses && D.stops && S.charts.gantt",
             # (the custom dates shown: their labels too)
             "#/tiers?tier=excellence": "D.assessment && "
                                        "document.querySelectorAll('#criteria tbody tr').length && "
                                        "(() => { const s = document.getElementById('tier-window'); "
                                        "s.value = 'custom'; s.dispatchEvent(new Event('change')); "
                                        "return !document.getElementById('tier-dates').hidden; })()"}
    with clean(page):
        for view, ready in views.items():
            language(page, "en")
            page.hash(view)
            wait_view(page, ready, view)
            en = visible_texts(page)
            names_en = [] if "tiers" in view else [s["name"] for s in option(page, "chart")["series"]]
            if view == machine:  # the machine stands for a reason (or not, now): its id is data
                page.eval(f"(() => {{ const l = window.tierproof.latest; "
                          f"l[{reason!r}] = {{...l[{reason!r}], name: 'no_operator'}}; }})()")
            language(page, "zh-CN")
            zh = visible_texts(page)
            assert page.eval("document.documentElement.lang") == "zh-CN"
            left = sorted({w for s in zh for w in latin.findall(s) if w not in data_words and len(w) > 2})
            assert left == [], (view, left)
            if view == machine:  # (shown, as the configuration spells it)
                assert page.eval(f"document.querySelector('#tags tr[data-tag=\"{reason}\"] .raw')"
                                 ".textContent") == "no_operator"
            assert len(set(en) - set(zh)) > 10, view  # the labels changed
            if names_en:
                names_zh = [s["name"] for s in option(page, "chart")["series"]]
                assert names_zh != names_en and names_zh[1:] == ["可用率", "性能率", "质量率"], names_zh
        shot(page, "tiers-zh-1280.png")
        page.hash("#/")
        page.goto(str(client.base_url) + "/")  # the key and the language are remembered
        page.wait("document.querySelectorAll('.tile').length > 0 && "
                  "document.querySelector('h2').textContent === '工厂总览'", 60, "the page in Chinese again")
        zh_states = {"运行中", "待机", "停用", "不可用"}
        for x in page.eval(TILES):
            assert any(s in x["text"] for s in zh_states), x
        shot(page, "overview-zh-1280.png")
        language(page, "en")


def test_phone_width_has_no_horizontal_overflow(page: Page, demo: tuple[httpx.Client, Path]) -> None:
    _, cfg = demo
    settings = load_settings(cfg)
    views = {"#/": "D.kpis && S.charts.chart",
             f"#/machine/{settings.assets[0].path}": "D.rows && S.charts.gantt",
             "#/tiers?tier=excellence": "document.querySelectorAll('#criteria tbody tr').length"}
    page.width(390)
    try:
        with clean(page):
            for view, ready in views.items():
                page.hash(view)
                wait_view(page, ready, view)
                over = page.eval("[document.documentElement.scrollWidth, window.innerWidth]")
                assert over[0] <= over[1], f"{view}: the page is {over[0]} px wide in a {over[1]} px viewport"
                widths = page.eval("[...document.querySelectorAll('canvas')]"
                                   ".map(c => c.getBoundingClientRect().right)")
                assert (widths or "tiers" in view) and max(widths, default=0) <= 390, (view, widths)
                shot(page, f"{view.split('?')[0].strip('#/').split('/')[0] or 'overview'}-390.png")
    finally:
        page.width(1280)


def test_dashboard_without_a_key_asks_for_one(demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    """A new browser (no key stored) without a key in the URL: the API answers 401, and the
    page shows its key prompt instead of data."""
    client, _ = demo
    dom = render(f"{client.base_url}/", tmp_path / "fresh-profile",
                 "!document.getElementById('keyform').hidden")
    form = re.search(r'<form id="keyform"([^>]*)>', dom)
    assert form and "hidden" not in form.group(1), dom[:3000]
    assert "no API key" in dom
    assert not re.search(r'<tr class="asset"', dom)


class Forwarder:
    """The gateway as the browser reaches it: a TCP relay to the demo's port that can be shut,
    which makes the gateway unreachable (connections refused) for the page without stopping
    the shared demo."""

    def __init__(self, target: int) -> None:
        self.target, self.conns = target, []  # type: ignore[var-annotated]
        self.closed, self.lock = False, threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:  # accepted as the relay was shut: the gateway is gone for it too
                    c.close()
                    return
                u = socket.create_connection(("127.0.0.1", self.target))
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self.lock:
            self.closed = True
        # shutdown first: on Linux a close() alone does not wake the accept() blocked in the
        # relay's thread, which would then take one more connection and relay it to the
        # gateway -- a keep-alive connection the page could go on using, gateway "up"
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for c in self.conns:
            # shutdown first: a close() alone leaves a socket another thread is blocked on open,
            # and a request in flight (the deltas take seconds) would hang instead of failing
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()


#: what Chromium logs of a connection the test cut (not an error of the page)
CUT = re.compile(r"net::ERR_(CONNECTION_(REFUSED|RESET|CLOSED)|EMPTY_RESPONSE)")


def test_dashboard_shows_a_banner_when_the_gateway_goes_away(
        page: Page, demo: tuple[httpx.Client, Path]) -> None:
    """(The module's last test of the shared page: it leaves it on a gateway that is gone.)"""
    client, cfg = demo
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    fwd = Forwarder(int(str(client.base_url).rsplit(":", 1)[1].strip("/")))
    errors = len(page.errors)
    try:
        if True:
            page.goto(f"http://127.0.0.1:{fwd.port}/#key={read_key}")
            page.wait("document.querySelectorAll('.tile').length === 11 && window.tierproof.lastOk", 90,
                      "the overview drawn")
            assert page.eval("document.getElementById('banner').hidden")
            fwd.close()
            # the next refresh fails, and shows the banner. The page's own next refresh comes
            # 5 to 60 s later (three times as long as the last took: a minute on a loaded
            # machine); a user's choice of window refreshes at once (after the refresh in
            # flight, which the closed relay fails), as this does: no waiting for the back-off
            page.eval("(() => { const s = document.getElementById('window-picker'); s.value = '7d'; "
                      "s.dispatchEvent(new Event('change')); })()")
            banner = page.wait("!document.getElementById('banner').hidden && "
                               "document.getElementById('banner').textContent", 60, "the banner")
            assert "Gateway unreachable" in banner, banner
            # what is shown is no longer known: stale tiles, collectors in state unknown
            assert all(x["stale"] for x in page.eval(TILES))
            states = page.eval("[...document.querySelectorAll('#devices tbody tr td:nth-child(3)')]"
                               ".map(e => e.textContent)")
            assert states and set(states) == {"unknown"}, states
            shot(page, "unreachable-1280.png")
            # a failed fetch logs nothing of the page's own: Chromium logs the cut connection
            # itself (refused, or reset for a request in flight when the relay closed)
            assert [e for e in page.errors[errors:] if not CUT.search(e)] == [], page.errors
    finally:
        fwd.close()
