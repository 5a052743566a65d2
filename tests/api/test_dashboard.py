"""The dashboard in a real headless Chromium (driven over the DevTools protocol, tests/api/
cdp_browser.py): the page's script fetches the demo's API and renders every machine's state,
mode and OEE, the per-line OEE and the hourly OEE chart (the vendored ECharts), in English and
Chinese, at 1280 and 390 px, and a banner when the gateway cannot be reached."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import httpx

from config import load_settings
from tests.api.cdp_browser import chromium_page
from tests.helpers import demo_keys

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(url: str, profile: Path, shot: Path | None = None) -> str:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (scripts/system-deps.sh)"
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1300,900", "--virtual-time-budget=10000",
    ]
    if shot is not None:
        subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    out = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


# the tiles and their figures, as the page drew them
TILES = """[...document.querySelectorAll('.tile')].map(e => ({asset: e.dataset.asset,
  state: e.dataset.state, text: e.innerText, stale: e.classList.contains('stale')}))"""


def test_dashboard_overview_states_oee_chart_and_chinese(
        demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    """The URL the demo prints (its read key in the fragment): a tile per machine with its live
    state's name and OEE, the OEE per line, the hourly OEE chart drawn from the series API,
    the language switch to Chinese, and no console error; no request leaves 127.0.0.1."""
    client, cfg = demo
    settings = load_settings(cfg)
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    with chromium_page(tmp_path / "profile", width=1280) as page:
        page.goto(f"{client.base_url}/#key={read_key}")
        tiles = page.wait(f"(() => {{ const t = {TILES}; return t.length === {len(settings.assets)} "
                          "&& t.every(x => x.state) && window.tierproof.kpis && t; })()", 90,
                          "a tile with a state for every machine")
        assert sorted(x["asset"] for x in tiles) == sorted(a.path for a in settings.assets)
        names = {"Executing", "NotExecuting", "OutOfService", "NotAvailable"}
        for x in tiles:
            # each state is what the API answers for the machine's state tag, by name
            assert x["state"] in names, x
            assert re.search(r"OEE \d+(\.\d)?\s?%", x["text"]), x
        assert page.eval("document.getElementById('keyform').hidden"), "the page asked for a key it had"
        assert page.eval("document.getElementById('banner').hidden"), "unreachable banner with the gateway up"
        assert page.eval("document.getElementById('err').textContent") == ""
        lines = page.eval("[...document.querySelectorAll('.line-oee')].map(e => e.textContent)")
        assert len(lines) == len({a.path.rsplit("/", 1)[0] for a in settings.assets})
        assert all(re.fullmatch(r"\d+(\.\d)?\s?%", x) for x in lines), lines
        # the chart: ECharts drew the 24 hourly buckets of /kpis/series on its canvas
        series = client.get("/api/v1/kpis/series", params={"from": "now-24h", "bucket": "1h"}).json()
        drawn = page.eval("window.tierproof.chart.getOption().series[0].data")
        assert len(drawn) == len(series["buckets"]) and any(v is not None and v > 0 for v in drawn), drawn
        assert page.eval("(() => { const c = document.querySelector('#chart canvas'); "
                         "return c && c.width > 300 && c.height > 100; })()")
        page.screenshot(tmp_path / "overview-en.png")

        # the language switch: every label from the Chinese dictionary, remembered
        page.eval("(() => { const s = document.getElementById('lang'); s.value = 'zh-CN'; "
                  "s.dispatchEvent(new Event('change')); })()")
        heads = page.eval("[...document.querySelectorAll('h2')].map(e => e.textContent)")
        assert heads == ["工厂总览", "全厂每小时 OEE（最近 24 小时）", "采集器"], heads
        assert page.eval("document.documentElement.lang") == "zh-CN"
        zh_states = {"运行中", "待机", "停用", "不可用"}
        for x in page.eval(TILES):
            assert any(s in x["text"] for s in zh_states), x
        page.goto(f"{client.base_url}/")  # the key and the language are remembered
        page.wait("document.querySelectorAll('.tile').length > 0 && "
                  "document.querySelector('h2').textContent === '工厂总览'", 60, "the page in Chinese again")
        page.screenshot(tmp_path / "overview-zh.png")
        # refreshes never overlap: each is scheduled only after the previous one ended
        assert page.eval("window.tierproof.maxInFlight") == 1
        assert page.errors == [], page.errors
        outside = [u for u in page.requests if not u.startswith(("http://127.0.0.1", "data:", "about:"))]
        assert outside == [], outside


def test_dashboard_on_a_phone_has_no_horizontal_overflow(
        demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    client, cfg = demo
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    with chromium_page(tmp_path / "profile", width=390) as page:
        page.goto(f"{client.base_url}/#key={read_key}")
        page.wait("document.querySelectorAll('.tile').length === 11 && !!window.tierproof.chart", 90,
                  "the overview drawn")
        over = page.eval("[document.documentElement.scrollWidth, window.innerWidth]")
        assert over[0] <= over[1], f"the page is {over[0]} px wide in a {over[1]} px viewport"
        assert page.eval("document.querySelector('#chart canvas').width") <= 390
        page.screenshot(tmp_path / "overview-390.png")
        assert page.errors == [], page.errors


class Forwarder:
    """The gateway as the browser reaches it: a TCP relay to the demo's port that can be shut,
    which makes the gateway unreachable (connections refused) for the page without stopping
    the shared demo."""

    def __init__(self, target: int) -> None:
        self.target, self.conns = target, []  # type: ignore[var-annotated]
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
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
        self.server.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


#: what Chromium logs of a connection the test cut (not an error of the page)
CUT = re.compile(r"net::ERR_(CONNECTION_(REFUSED|RESET|CLOSED)|EMPTY_RESPONSE)")


def test_dashboard_shows_a_banner_when_the_gateway_goes_away(
        demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    client, cfg = demo
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    fwd = Forwarder(int(str(client.base_url).rsplit(":", 1)[1].strip("/")))
    try:
        with chromium_page(tmp_path / "profile", width=1280) as page:
            page.goto(f"http://127.0.0.1:{fwd.port}/#key={read_key}")
            page.wait("document.querySelectorAll('.tile').length === 11 && window.tierproof.lastOk", 90,
                      "the overview drawn")
            assert page.eval("document.getElementById('banner').hidden")
            fwd.close()
            banner = page.wait("!document.getElementById('banner').hidden && "
                               "document.getElementById('banner').textContent", 30, "the banner")
            assert "Gateway unreachable" in banner, banner
            # what is shown is no longer known: stale tiles, collectors in state unknown
            assert all(x["stale"] for x in page.eval(TILES))
            states = page.eval("[...document.querySelectorAll('#devices tbody tr td:nth-child(3)')]"
                               ".map(e => e.textContent)")
            assert states and set(states) == {"unknown"}, states
            page.screenshot(tmp_path / "unreachable.png")
            # a failed fetch logs nothing of the page's own: Chromium logs the cut connection
            # itself (refused, or reset for a request in flight when the relay closed)
            assert [e for e in page.errors if not CUT.search(e)] == [], page.errors
    finally:
        fwd.close()


def test_dashboard_without_a_key_asks_for_one(demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    """A new browser (no key stored) without a key in the URL: the API answers 401, and the
    page shows its key prompt instead of data."""
    client, _ = demo
    dom = render(f"{client.base_url}/", tmp_path / "fresh-profile")
    form = re.search(r'<form id="keyform"([^>]*)>', dom)
    assert form and "hidden" not in form.group(1), dom[:3000]
    assert "no API key" in dom
    assert not re.search(r'<tr class="asset"', dom)
