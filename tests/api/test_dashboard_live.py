"""The dashboard's overview follows the machines while it is watched (issue 16): a demo of its
own whose simulated machines stop often and briefly (a minor stop every ~30 s of running,
~20 s long, instead of every 90 min), collected over Modbus, OPC UA and MQTT as in the shipped
demo, and the overview in Debian's Chromium: a tile's state (its name, its text and its colour)
changes at least once within a bounded wait, with no reload, and the store holds the change
the page showed. No timing is asserted: only that a change came within the bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
import yaml

from config import shipped_config
from tests.api.browser import CHROMIUM, Page, chromium_page
from tests.helpers import demo_keys, running_demo

#: the tiles' colours per state (api/static/style.css), as getComputedStyle gives them
COLOURS = {"Executing": "rgb(26, 127, 55)", "NotExecuting": "rgb(191, 135, 0)",
           "OutOfService": "rgb(207, 34, 46)", "NotAvailable": "rgb(110, 119, 129)"}
#: what the page shows of each tile: its state's name (data-state), text and colour
TILES = """[...document.querySelectorAll('.tile')].map(e => ({asset: e.dataset.asset,
  state: e.dataset.state, text: e.querySelector('.state').textContent,
  colour: getComputedStyle(e).backgroundColor,
  ts: window.tierproof.latest[e.dataset.asset + '/state']?.ts}))"""


@pytest.fixture(scope="module")
def lively(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str, int]]:
    """``tierproof demo`` with machines that stop every half minute of running (a little
    history only: the test watches the present); its client (admin key) and read key."""
    tmp = tmp_path_factory.mktemp("lively")
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    sim = data["simulation"]
    sim["history_days"] = 0.05
    for regime in ("baseline", "improved"):
        sim[regime].update(minor_stop_every_min=0.5, minor_stop_s=20)
    with running_demo(tmp, data) as (client, _, log):
        keys = demo_keys(log)
        client.headers["X-API-Key"] = keys["admin"]
        yield client, keys["read"], len(data["assets"])


@pytest.fixture(scope="module")
def page(lively: tuple[httpx.Client, str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (scripts/system-deps.sh)"
    client, read_key, _ = lively
    with chromium_page(tmp_path_factory.mktemp("chromium"), width=1280) as p:
        p.goto(f"{client.base_url}/#key={read_key}")
        p.wait("!!window.tierproof && location.hash === ''", 60, "the dashboard loaded, its key taken")
        yield p


def test_overview_tiles_follow_the_machines_state(page: Page, lively: tuple[httpx.Client, str, int]) -> None:
    """Every tile first shows a state; then, with the page left alone, some tile's state name,
    text and colour change (within 240 s; the machines stop about every 30 s); the new state
    is a later sample of the machine's state tag that the store holds."""
    client, _, machines = lively
    first = page.wait(f"(() => {{ const t = {TILES}; return t.length === {machines} && "
                      "t.every(x => x.state) && t; })()", 90, "a state on every tile")
    for x in first:
        assert x["colour"] == COLOURS[x["state"]], x
    before = {x["asset"]: x for x in first}
    cycles = page.eval("window.tierproof.cycles")
    try:
        changed = page.wait(f"(() => {{ const b = {json.dumps(before)}; return {TILES}"
                            ".filter(x => b[x.asset] && x.state && x.state !== b[x.asset].state); })()",
                            240, "a tile whose state changed while the page was watched")
    except AssertionError as exc:  # say what the page and the gateway had, to find out why
        now = {x["asset"]: (x["state"], x["ts"]) for x in page.eval(TILES)}
        status = client.get("/api/v1/collector/status").text[:3000]
        raise AssertionError(f"{exc}; page refreshes {cycles} -> {page.eval('window.tierproof.cycles')}; "
                             f"tiles first {[(a, x['state'], x['ts']) for a, x in before.items()]}; "
                             f"tiles now {now}; collectors {status}") from exc
    assert page.eval("window.tierproof.cycles") > cycles  # by the page's own refresh, no reload
    assert page.errors == [], page.errors
    for x in changed:
        old = before[x["asset"]]
        assert x["text"] != old["text"] and x["colour"] != old["colour"], (old, x)
        assert x["colour"] == COLOURS[x["state"]], x
        # the store holds the sample the tile shows, later than the one first shown
        ts = datetime.fromisoformat(x["ts"])
        assert ts > datetime.fromisoformat(old["ts"]), (old, x)
        # (an explicit end: "now" is rounded down to the second, before a sample of this second)
        samples = client.get(f"/api/v1/tags/{x['asset']}/state/samples",
                             params={"from": (ts - timedelta(seconds=1)).isoformat(),
                                     "to": (ts + timedelta(seconds=1)).isoformat()}).json()
        stored = [(datetime.fromisoformat(t), n) for t, n in zip(samples["ts"], samples["name"], strict=True)]
        assert (ts, x["state"]) in stored, (x, stored)
