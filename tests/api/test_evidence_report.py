"""report.html of the evidence pack (``api.evidence.report``): rendered from a pack of a real
plant (the demo plant's two days of simulated history in a SQLite store, with a device gap, its
real assessment, and the CSVs read from that store by the pack writer itself), then opened from
disk in headless Chromium with the network blocked, in English and Chinese, and printed."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from api.evidence.keys import load_or_create_key
from api.evidence.pack import write_pack
from api.evidence.report import ReportError, render_report
from api.service import KpiService
from config.times import to_ns
from kpi import Kpis, TimeElements, roll_up
from store import SqliteStore
from tests.api.browser import CHROMIUM, Page, chromium_page
from tests.helpers import shipped_config, two_day_plant

SECTIONS = ("summary", "tiers", "compare", "trends", "timelines", "coverage", "losses", "methods")
GAP_REASON = "test: line 1 unreachable"
#: labels that read the same in both languages (ISO 22400 abbreviations)
SAME_IN_BOTH = {"APT", "ASUT"}


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    _, settings = two_day_plant(tmp, yaml.safe_load(shipped_config("demo.yaml").read_text()))
    with SqliteStore(tmp / "store.db") as store:
        # a real gap of one device (two machines) in the current window, as the collector records it
        now = datetime.now(UTC)
        gap = store.open_gap("line1-cnc", to_ns(now - timedelta(hours=5)), GAP_REASON)
        store.close_gap(gap, to_ns(now - timedelta(hours=4, minutes=20)))
        write_pack(tmp / "pack", settings, KpiService(settings, store),
                   load_or_create_key(tmp / "evidence_key.pem"))
    return tmp / "pack"


@pytest.fixture(scope="module")
def report(pack: Path) -> Path:
    html = render_report(pack)
    out = pack / "report.html"
    out.write_text(html, encoding="utf-8")
    print(f"report.html: {out.stat().st_size:,} bytes")
    return out


def _csv(pack: Path, name: str) -> list[dict[str, str]]:
    with (pack / "inputs" / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _elements(row: dict[str, str]) -> TimeElements:
    kw: dict[str, Any] = {}
    for f in fields(TimeElements):
        v = row[f.name]
        kw[f.name] = None if v == "" else (int(v) if f.type == "int" else float(v))
    return TimeElements(**kw)


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _expected_trends(pack: Path, tz: ZoneInfo) -> dict[str, Any]:
    """The plant's OEE and good parts per hour and per local day, recomputed from hourly.csv."""
    hours: dict[tuple[str, int], list[TimeElements]] = defaultdict(list)
    for row in _csv(pack, "hourly.csv"):
        hours[row["window"], _ms(row["hour_start"])].append(_elements(row))
    out: dict[str, Any] = {}
    days: dict[tuple[str, str], list[TimeElements]] = defaultdict(list)
    for (w, ms), es in sorted(hours.items()):
        t = roll_up(es)
        out.setdefault(f"oee_hour_{w}", []).append([ms, Kpis.of(t).oee])
        out.setdefault(f"parts_hour_{w}", []).append([ms, t.gq])
        days[w, datetime.fromtimestamp(ms / 1000, tz).date().isoformat()].extend(es)
    all_days = sorted({d for _, d in days})
    for w in ("baseline", "current"):
        out[f"oee_day_{w}"] = [Kpis.of(roll_up(days[w, d])).oee if (w, d) in days else None for d in all_days]
        out[f"parts_day_{w}"] = [roll_up(days[w, d]).gq if (w, d) in days else None for d in all_days]
    return out


def _close(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_close, got, want))
    if want is None or got is None:
        return got is None and want is None
    return bool(abs(got - want) <= 1e-12 * max(1.0, abs(want)))


def test_hourly_inputs_add_up_to_the_assessed_window(pack: Path) -> None:
    """The pack's hours are parts of their local days, which tile the assessed window: each
    machine's hours of the current window sum to the assessment's time elements and
    quantities of that window. The share of a counter increase attributed to planned time
    may differ by at most one part per counter: an increase that spans the window's one
    local midnight is spread over its whole span in the window, over each day's side in the
    hours (docs/evidence.md; at a fixed instant where it does: test_evidence_midnight.py).
    With an exact pq_plan this test failed at Saturday and Sunday 16:30 UTC."""
    assessment = json.loads((pack / "assessment.json").read_text())
    by: dict[str, list[TimeElements]] = defaultdict(list)
    for row in _csv(pack, "hourly.csv"):
        if row["window"] == "current":
            by[row["asset"]].append(_elements(row))
    assert set(by) == set(assessment["assets"])
    for path, es in by.items():
        want = assessment["assets"][path]["elements"]
        got = roll_up(es).as_dict()
        for k in ("pbt_s", "known_s", "apt_s", "pq", "gq"):
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-6), (path, k)
        for k in ("pq_plan", "gq_plan"):
            assert abs(got[k] - want[k]) <= 1.0 + 1e-6, (path, k, got[k], want[k])
    assert any(r["reason"] == GAP_REASON for r in _csv(pack, "gaps.csv"))


def _labels(page: Page) -> list[list[str]]:
    return page.eval("""[...document.querySelectorAll('[data-i18n], [data-label]')]
        .map(e => [e.dataset.i18n || e.dataset.label, e.textContent.trim()])""")


def _series(page: Page, chart_id: str) -> dict[str, Any]:
    return page.eval(f"""(() => {{
        const c = echarts.getInstanceByDom(document.getElementById('{chart_id}'));
        return Object.fromEntries(c.getOption().series.map(s => [s.id, s.data]));
    }})()""")


def _switch(page: Page, lang: str) -> None:
    page.eval(f"""(() => {{ const s = document.getElementById('lang'); s.value = '{lang}';
        s.dispatchEvent(new Event('change')); }})()""")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/system-deps.sh)")
def test_report_opens_offline_in_both_languages_with_the_packs_numbers(
    report: Path, pack: Path, tmp_path: Path,
) -> None:
    cfg = yaml.safe_load((pack / "config.yaml").read_text())
    tz = ZoneInfo(cfg["calendar"]["timezone"])
    url = report.resolve().as_uri()
    with chromium_page(tmp_path / "profile", width=1200) as page:
        page.goto(url + "#lang=en")
        page.wait("window.reportReady === true", 60, "the report to render")

        # nothing but the file itself (and data: URLs) was requested: no network at all
        assert page.requests and [r for r in page.requests if r != url and not r.startswith("data:")] == []
        assert page.errors == []

        # every section is there, with the assessment's criteria
        assessment = json.loads((pack / "assessment.json").read_text())
        assert page.eval("[...document.querySelectorAll('section')].map(s => s.id)") == list(SECTIONS)
        rows = page.eval("document.querySelectorAll('#tier-tables tbody tr').length")
        assert rows == sum(len(t["criteria"]) for t in assessment["tiers"].values())
        verdicts = page.eval("[...document.querySelectorAll('#tier-tables td.verdict')]"
                             ".map(e => e.textContent)")
        assert set(verdicts) <= {"met", "not met", "insufficient data", "point estimate only"}

        # the charts draw the numbers computed from hourly.csv with the kpi/ formulas
        want = _expected_trends(pack, tz)
        got = {**_series(page, "chart-oee"), **_series(page, "chart-parts"), **_series(page, "chart-daily")}
        assert set(got) == set(want)
        for key, data in want.items():
            ys = [v[1] if isinstance(v, list) else v for v in data]
            assert any(y for y in ys), key  # something was drawn
            assert _close(got[key], data), key
        # each figure's relative change (baseline -> current) and its interval, as assessed
        deltas = [e["delta"] for e in assessment["figures"].values()
                  if (e.get("delta") or {}).get("point") is not None]
        drawn_d = _series(page, "chart-deltas")
        assert drawn_d["delta"] == [d["point"] for d in deltas] and len(deltas) >= 5
        assert drawn_d["delta_interval"] == [[i, d["low"], d["high"]] for i, d in enumerate(deltas)
                                             if d["low"] is not None and d["high"] is not None]
        # the state timelines: every interval of states.csv, in its window
        states = _csv(pack, "states.csv")
        drawn = _series(page, "chart-timeline-baseline") | _series(page, "chart-timeline-current")
        assets = cfg_assets(cfg, states)
        assert len(drawn["states_baseline"]) + len(drawn["states_current"]) == len(states)
        assert len(drawn["states_current"]) > 0 and len(drawn["states_baseline"]) > 0
        first = states[0]
        assert drawn["states_baseline"][0][:3] == [assets.index(first["asset"]), _ms(first["start"]),
                                                   _ms(first["end"])]
        # planned busy time shaded behind each window's timeline
        planned = {(_ms(r["start"]), _ms(r["end"])) for r in _csv(pack, "planned.csv")}
        shaded = page.eval("""['baseline', 'current'].flatMap(w => echarts.getInstanceByDom(
            document.getElementById('chart-timeline-' + w)).getOption().series[0].markArea.data
            .map(([a, b]) => [a.xAxis, b.xAxis]))""")
        assert sorted(map(tuple, shaded)) == sorted(planned)
        # the gap is in the coverage section, on every machine of the device
        gap_rows = page.eval("[...document.querySelectorAll('#gaps-table tbody tr')].map(r => r.innerText)")
        assert len(gap_rows) == len(_csv(pack, "gaps.csv")) == 3  # the device serves three machines
        assert all(GAP_REASON in r for r in gap_rows)
        # the losses' Pareto: every item of losses.json, largest first, the last at 100 %
        pareto = json.loads((pack / "losses.json").read_text())["pareto"]
        cells = page.eval("[...document.querySelectorAll('#pareto-table tbody tr')]"
                          ".map(r => [...r.cells].map(c => c.innerText))")
        assert len(pareto) >= 3 and len(cells) == len(pareto)
        assert [c[1] for c in cells] == [p["label"] for p in pareto]
        assert cells[-1][5] == "100.0%"

        # who supplied each declared item, and when
        declared = page.eval("[...document.querySelectorAll('#declared-items-table tbody tr')]"
                             ".map(r => r.innerText)")
        # one row per item of declared.json, or per entry inside it that names its own supplier
        items = json.loads((pack / "declared.json").read_text())["items"]
        inner = sum(json.dumps(i["value"]).count('"supplied_by"') for i in items.values())
        plain = sum(1 for i in items.values() if '"supplied_by"' not in json.dumps(i["value"]))
        assert inner >= 8 and len(declared) == inner + plain
        assert not any("[object Object]" in r for r in declared)
        assert any("demo energy manager" in r and "0.5366" in r for r in declared)

        # times in the plant's time zone, per locale
        start = datetime.fromisoformat(assessment["window"]["from"].replace("Z", "+00:00")).astimezone(tz)
        summary = page.eval("document.getElementById('summary-table').innerText")
        assert f"{start.strftime('%b')} {start.day}, {start.year}" in summary
        assert f"{start.hour % 12 or 12}:{start.minute:02d}" in summary
        en = _labels(page)
        assert len(en) > 150

        _switch(page, "zh-CN")
        page.wait("document.documentElement.lang === 'zh-CN'", 10, "the Chinese page")
        zh = _labels(page)
        assert [k for k, _ in zh] == [k for k, _ in en]  # the same labels, now in Chinese
        same = [(k, a) for (k, a), (_, b) in zip(en, zh, strict=True) if a == b and a not in SAME_IN_BOTH]
        assert same == []
        summary = page.eval("document.getElementById('summary-table').innerText")
        assert f"{start.year}年{start.month}月{start.day}日" in summary
        assert f"{start.hour:02d}:{start.minute:02d}" in summary
        # the charts' series names follow the language; their data do not change
        got_zh = _series(page, "chart-oee")
        assert _close(got_zh["oee_hour_current"], want["oee_hour_current"])
        names = page.eval("""echarts.getInstanceByDom(document.getElementById('chart-oee')).getOption()
                             .series.map(s => s.name)""")
        assert all("当前窗口" in n or "基线窗口" in n for n in names)
        assert page.errors == []

        # printing: A4, each section on its own page, charts drawn at the printable width
        page.media("print")
        # the charts are redrawn at A4's printable width (186 mm = 703 px) for print
        page.wait("""[...document.querySelectorAll('.chart')]
                     .every(e => Math.abs(echarts.getInstanceByDom(e).getWidth() - 703) <= 2)""",
                  10, "the charts redrawn at the printable width")
        breaks = page.eval("[...document.querySelectorAll('section')]"
                           ".map(s => getComputedStyle(s).breakBefore)")
        assert breaks == ["auto"] + ["page"] * (len(SECTIONS) - 1)
        assert page.eval("getComputedStyle(document.querySelector('tbody tr')).breakInside") == "avoid"
        assert page.eval("getComputedStyle(document.querySelector('.toolbar')).display") == "none"
        pdf = page.pdf()
        (tmp_path / "report.pdf").write_bytes(pdf)
        pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
        print(f"report.pdf: {len(pdf):,} bytes, {pages} A4 pages")
        assert pdf.startswith(b"%PDF") and pages >= len(SECTIONS)
        svg = page.eval("""[...document.querySelectorAll('.chart')]
            .map(e => e.querySelector('svg').getBoundingClientRect().width)""")
        assert all(w == pytest.approx(703, abs=2) for w in svg), svg
        # back on screen, the charts fill their boxes again
        page.media("screen")
        page.wait("""[...document.querySelectorAll('.chart')].every(e => e.clientWidth > 900
                     && Math.abs(echarts.getInstanceByDom(e).getWidth() - e.clientWidth) <= 1)""",
                  10, "the charts redrawn at the screen's width")
        assert page.errors == []

        # the page's own policy forbids every request: a fetch is refused before it leaves
        refused = page.eval("""new Promise(done => {
            document.addEventListener('securitypolicyviolation', e => done(e.effectiveDirective),
                                      {once: true});
            fetch('http://127.0.0.1:9/x').catch(() => {});
        })""")
        assert refused == "connect-src"
        page.errors.clear()  # the refusal is logged as an error, as it should be

        # intervals (two days give none: fewer than min_days) are drawn as whiskers: the same
        # pack with the production efficiency's delta interval as a longer window gives it
        other = tmp_path / "pack"
        shutil.copytree(pack, other, ignore=shutil.ignore_patterns("report.html"))
        doc = json.loads((other / "assessment.json").read_text())
        doc["figures"]["production_efficiency"]["delta"].update(low=-0.05, high=0.03)
        (other / "assessment.json").write_text(json.dumps(doc))
        (other / "report.html").write_text(render_report(other), encoding="utf-8")
        page.goto((other / "report.html").resolve().as_uri())
        page.wait("window.reportReady === true", 60, "the second report to render")
        drawn_d = _series(page, "chart-deltas")
        i = [k for k, e in doc["figures"].items() if (e.get("delta") or {}).get("point") is not None
             ].index("production_efficiency")
        assert drawn_d["delta_interval"] == [[i, -0.05, 0.03]]
        assert page.errors == []
    assert report.stat().st_size < 3_000_000


def cfg_assets(cfg: dict[str, Any], states: list[dict[str, str]]) -> list[str]:
    """The timeline's rows: the register's assets in order, then any other of states.csv."""
    order = [a["path"] for a in cfg["assets"]]
    order += [p for p in dict.fromkeys(r["asset"] for r in states) if p not in order]
    return order


@pytest.fixture
def copy(pack: Path, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "pack"
    shutil.copytree(pack, out, ignore=shutil.ignore_patterns("report.html", "samples.csv"))
    (out / "inputs" / "samples.csv").write_text("tag,asset,role,ts,value,quality\n")
    yield out


def test_bad_pack_is_an_error_naming_file_line_and_field(copy: Path) -> None:
    hourly = copy / "inputs" / "hourly.csv"
    lines = hourly.read_text().splitlines()
    hourly.write_text("\n".join([lines[0], lines[1].replace(",current,", ",later,", 1)
                                 .replace(",baseline,", ",later,", 1), *lines[2:]]) + "\n")
    with pytest.raises(ReportError, match=r"hourly\.csv line 2, field window: 'later' is neither"):
        render_report(copy)
    head = lines[0].split(",")
    row = lines[1].split(",")
    row[head.index("apt_s")] = "fast"
    hourly.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    with pytest.raises(ReportError, match=r"hourly\.csv line 2, field apt_s: 'fast' is not a \(finite\)"):
        render_report(copy)
    row[head.index("apt_s")] = "nan"
    hourly.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    with pytest.raises(ReportError, match=r"hourly\.csv line 2, field apt_s: 'nan' is not a \(finite\)"):
        render_report(copy)
    hourly.write_text("\n".join([lines[0].replace(",gq_plan,", ",gq_planned,"), *lines[1:]]) + "\n")
    with pytest.raises(ReportError, match=r"hourly\.csv: no column gq_plan"):
        render_report(copy)
    hourly.write_text("\n".join(lines) + "\n")
    states = copy / "inputs" / "states.csv"
    text = states.read_text()
    line = text[:text.index(",Executing,")].count("\n") + 1  # the first such row: data decide
    states.write_text(text.replace(",Executing,", ",Running,", 1))
    with pytest.raises(ReportError, match=rf"states\.csv line {line}, field state: 'Running' is not an OPC"):
        render_report(copy)
    states.write_text(states.read_text().replace(",Running,", ",Executing,", 1))
    (copy / "inputs" / "gaps.csv").unlink()
    with pytest.raises(ReportError, match=r"gaps\.csv: missing from the pack"):
        render_report(copy)


def test_inline_script_cannot_be_closed_by_pack_text(copy: Path) -> None:
    """Text of the pack (a gap reason, a config description) that looks like markup stays data."""
    gaps = copy / "inputs" / "gaps.csv"
    gaps.write_text(gaps.read_text().replace(GAP_REASON, "</script><script>alert(1)</script><!--"))
    html = render_report(copy)
    body = html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "alert(1)" in body and "</script" not in body.lower() and "<!--" not in body
    # and reads back as the same text (JSON.parse in the page, json here)
    reasons = [g["reason"] for g in json.loads(body)["gaps"]]
    assert "</script><script>alert(1)</script><!--" in reasons


def test_same_pack_same_bytes_and_a_pack_without_baseline(copy: Path) -> None:
    """The report is a function of the pack (no render time in it); without a baseline window
    it still renders, with the current window alone."""
    assert render_report(copy) == render_report(copy)
    doc = json.loads((copy / "assessment.json").read_text())
    doc["baseline_window"] = None
    (copy / "assessment.json").write_text(json.dumps(doc))
    hourly = copy / "inputs" / "hourly.csv"
    lines = hourly.read_text().splitlines()
    hourly.write_text("\n".join([lines[0], *(x for x in lines[1:] if ",baseline," not in x)]) + "\n")
    html = render_report(copy)
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert data["trends"]["oee_hour"]["baseline"] == [] and data["trends"]["oee_hour"]["current"]
    assert data["timeline"]["baseline"] == [] and data["timeline"]["current"]
    assert all(a["baseline"] is None and a["current"] for a in data["per_asset"])
