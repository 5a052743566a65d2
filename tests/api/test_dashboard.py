"""The dashboard in a real headless Chromium: the page's script fetches the API and renders
every asset's OEE and every collector's state."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from config import load_settings
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


def test_dashboard_renders_kpis_and_collectors(demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    client, cfg = demo
    settings = load_settings(cfg)
    shot = tmp_path / "dashboard.png"
    # the URL the demo prints: its read key in the fragment, which the page sends as X-API-Key
    read_key = demo_keys(cfg.parent / "demo.log")["read"]
    dom = render(f"{client.base_url}/#key={read_key}", tmp_path / "profile", shot)
    assert re.search(r'<form id="keyform" hidden="">', dom), "the page asked for a key it had"
    assert re.search(r'<span id="err"></span>', dom), "the page reported an error"
    for a in settings.assets:
        row = re.search(rf'<tr class="asset" data-path="{re.escape(a.path)}">(.*?)</tr>', dom, re.S)
        assert row, f"no row for {a.path}"
        oee = re.search(r'class="oee">.*?([\d.]+) %', row.group(1), re.S)
        assert oee and 0 < float(oee.group(1)) <= 150, row.group(1)
    for d in settings.devices:
        row = re.search(rf'<tr data-device="{d.name}">(.*?)</tr>', dom, re.S)
        assert row and d.protocol in row.group(1), f"no collector row for {d.name}"
    # the store: the demo's embedded SQLite store, with the points it holds (no spool)
    store = re.search(r'<table id="store">.*?<tbody><tr><td>(\w+)</td><td>(\d+)</td>', dom, re.S)
    assert store and store.group(1) == "sqlite" and int(store.group(2)) > 0, dom[-2000:]
    assert shot.stat().st_size > 10_000  # a real picture was drawn


def test_dashboard_without_a_key_asks_for_one(demo: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    """A new browser (no key stored) without a key in the URL: the API answers 401, and the
    page shows its key prompt instead of data."""
    client, _ = demo
    dom = render(f"{client.base_url}/", tmp_path / "fresh-profile")
    form = re.search(r'<form id="keyform"([^>]*)>', dom)
    assert form and "hidden" not in form.group(1), dom[:3000]
    assert "no API key" in dom
    assert not re.search(r'<tr class="asset"', dom)
