"""Plant time over HTTP (issue 15 items 4, 5): bare dates and times are the plant's local
time (DST gaps and folds included), ``tz=`` renders answers, shifts are addressed by name and
date, and state/mode tags carry their canonical names beside the raw value.

Two real APIs (uvicorn subprocesses on free ports, not collecting): the demo plant
(Asia/Shanghai) over a SQLite store holding six hours of its simulated history, written as
its collectors store it (raw device codes: the Modbus machines' native ones); and a plant in
Europe/Berlin with a night shift crossing midnight, over an empty store (windows only)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from api.gateway import tag_records
from api.plant_time import render_times
from config import Settings, settings_from_dict
from config.errors import ConfigError
from config.times import to_ns
from simulators import Plant
from store import SqliteStore
from tests.helpers import api_key, free_port, in_shift_end, one_week_demo, wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
#: the end of the demo plant's history: in the tests' shift calendar's late shift, so that its
#: machines ran in the six hours before (ending it at the wall clock, the state tags held no
#: Executing from about 20:00 to 22:00 UTC, and from Saturday 20:00 to Sunday 22:00 UTC)
NOW = in_shift_end(datetime.now(UTC))
HISTORY = timedelta(hours=6)
BERLIN_CALENDAR = {
    "timezone": "Europe/Berlin",
    "shifts": [{"name": "early", "start": "06:00", "end": "14:00",
                "days": ["mon", "tue", "wed", "thu", "fri"]},
               {"name": "late", "start": "14:00", "end": "22:00"},
               {"name": "night", "start": "22:00", "end": "06:00"}],  # crosses midnight
}


def _serve(tmp: Path, name: str, data: dict[str, Any], history: bool
           ) -> tuple[subprocess.Popen[bytes], str, str]:
    data["store"] = {"type": "sqlite", "path": str(tmp / f"{name}.db")}
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    if history:
        settings = Settings.model_validate(data)
        with SqliteStore(tmp / f"{name}.db") as store:
            ids = store.register_tags(tag_records(settings))
            for batch in Plant(settings, now=NOW).history_batches(
                    ids, to_ns(NOW - HISTORY), to_ns(NOW)):
                store.write(batch)
    key = api_key(Settings.model_validate(data), "read")  # before the start: no key, no start
    port = free_port()
    with (tmp / f"{name}.log").open("w") as log:  # the child holds its own handle
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(cfg), str(port)],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, f"http://127.0.0.1:{port}", key


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Client]]:
    """``shanghai``: the demo plant with history; ``berlin``: a DST plant, empty store."""
    tmp = tmp_path_factory.mktemp("plant_time")
    demo = one_week_demo()
    berlin = one_week_demo()
    berlin["calendar"] = BERLIN_CALENDAR
    berlin["kpi"]["baseline"] = {"start": "2026-03-02", "end": "2026-03-09"}
    servers = {"shanghai": _serve(tmp, "shanghai", demo, history=True),
               "berlin": _serve(tmp, "berlin", berlin, history=False)}
    clients = {n: httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": key})
               for n, (_, url, key) in servers.items()}
    try:
        for n, (proc, _, _) in servers.items():
            wait_for(lambda p=proc, c=clients[n]: p.poll() is None  # type: ignore[misc]
                     and c.get("/api/v1/health").status_code in (200, 503), 60, f"the {n} API")
        yield clients
    finally:
        for c in clients.values():
            c.close()
        for n, (proc, _, _) in servers.items():
            proc.terminate()
            proc.wait(30)
            print(n, (tmp / f"{n}.log").read_text()[-3000:])


def _window(c: httpx.Client, url: str, **params: str) -> dict[str, str]:
    r = c.get(url, params=params)
    assert r.status_code == 200, r.text
    w: dict[str, str] = r.json()["window"]
    return w


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- bare dates, DST


def test_a_bare_date_is_the_plants_local_midnight(api: dict[str, httpx.Client]) -> None:
    c = api["shanghai"]  # Asia/Shanghai, UTC+8 all year
    want = {"from": "2026-12-04T16:00:00Z", "to": "2026-12-05T16:00:00Z"}
    assert _window(c, "/api/v1/kpis", **{"from": "2026-12-05", "to": "2026-12-06"}) == want
    assert _window(c, "/api/v1/kpis", date="2026-12-05") == want  # the local day by name
    # a time without an offset is local too; one with an offset means what it says
    assert _window(c, "/api/v1/kpis", **{"from": "2026-12-05T06:00", "to": "2026-12-05T14:00:00Z"}) \
        == {"from": "2026-12-04T22:00:00Z", "to": "2026-12-05T14:00:00Z"}
    # tz= chooses the zone of the request's bare inputs (and of the answer's times)
    assert _window(c, "/api/v1/kpis", tz="UTC", **{"from": "2026-12-05", "to": "2026-12-06"}) \
        == {"from": "2026-12-05T00:00:00+00:00", "to": "2026-12-06T00:00:00+00:00"}


@pytest.mark.parametrize(("params", "window"), [
    # spring forward (2026-03-29, 02:00 -> 03:00): a 23-hour local day
    ({"from": "2026-03-29", "to": "2026-03-30"}, ("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")),
    ({"from": "2026-03-29T01:59:59", "to": "2026-03-29T03:00"},
     ("2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z")),  # one second apart: 02:xx is skipped
    # fall back (2026-10-25, 03:00 -> 02:00): a 25-hour day; 02:30 is read twice -> the earlier
    ({"from": "2026-10-25", "to": "2026-10-26"}, ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")),
    ({"from": "2026-10-25T02:30", "to": "2026-10-25T02:30:00+01:00"},
     ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z")),  # the later reading needs its offset
])
def test_dst_days_and_the_hour_read_twice(api: dict[str, httpx.Client], params: dict[str, str],
                                          window: tuple[str, str]) -> None:
    assert _window(api["berlin"], "/api/v1/kpis", **params) == {"from": window[0], "to": window[1]}


@pytest.mark.parametrize(("url", "name"), [
    ("/api/v1/kpis", "from"), ("/api/v1/kpis", "to"),
    ("/api/v1/kpis/deltas", "baseline_from"), ("/api/v1/tiers/assessment", "baseline_to"),
    ("/api/v1/tags/x/samples", "from"),
])
def test_a_skipped_local_time_is_a_400_naming_the_parameter(
        api: dict[str, httpx.Client], url: str, name: str) -> None:
    params = {"from": "2026-03-28", "to": "2026-03-30", "baseline_from": "2026-03-01",
              "baseline_to": "2026-03-08", name: "2026-03-29T02:30"}
    if url.endswith("samples"):  # a tag of the demo plant: the Berlin plant has none
        c, url = api["shanghai"], "/api/v1/tags/demo/machining/line1/lathe-01/state/samples"
        params = {"tz": "Europe/Berlin", "from": "2026-03-29T02:30", "to": "2026-03-30"}
    else:
        c = api["berlin"]
    r = c.get(url, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == name
    assert "2026-03-29T02:30:00 does not exist in Europe/Berlin" in body["detail"]
    assert "02:00:00 to 03:00:00" in body["detail"]


# --------------------------------------------------------------------------- shifts by name


@pytest.mark.parametrize(("shift", "date", "window", "hours"), [
    ("early", "2026-12-07", ("2026-12-07T05:00:00Z", "2026-12-07T13:00:00Z"), 8),
    ("night", "2026-12-07", ("2026-12-07T21:00:00Z", "2026-12-08T05:00:00Z"), 8),  # Mon -> Tue
    ("night", "2026-03-28", ("2026-03-28T21:00:00Z", "2026-03-29T04:00:00Z"), 7),  # spring fwd
    ("night", "2026-10-24", ("2026-10-24T20:00:00Z", "2026-10-25T05:00:00Z"), 9),  # fall back
])
def test_a_shift_by_name_and_date(api: dict[str, httpx.Client], shift: str, date: str,
                                  window: tuple[str, str], hours: int) -> None:
    c = api["berlin"]
    want = {"from": window[0], "to": window[1]}
    assert _window(c, "/api/v1/kpis", shift=shift, date=date) == want
    assert _at(want["to"]) - _at(want["from"]) == timedelta(hours=hours)
    # the same window for the deltas and the assessment (their baseline from kpi.baseline)
    for url in ("/api/v1/kpis/deltas", "/api/v1/tiers/assessment"):
        assert _window(c, url, shift=shift, date=date) == want
    # tz= renders the answer; the shift stays the plant's (Berlin) whatever the zone
    w = _window(c, "/api/v1/kpis", shift=shift, date=date, tz="Asia/Shanghai")
    assert w["from"].endswith("+08:00") and _at(w["from"]) == _at(want["from"])
    assert _at(w["to"]) == _at(want["to"])


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"shift": "nights", "date": "2026-12-07"}, 404,
     "no shift 'nights' in the calendar; its shifts: 'early', 'late', 'night'"),
    ({"shift": "early", "date": "2026-12-05"}, 404,  # a Saturday
     "shift 'early' is not worked on 2026-12-05 (sat); it runs on mon, tue, wed, thu, fri"),
    ({"shift": "early"}, 422, "parameter 'shift' ('early') needs 'date'"),
    ({"shift": "early", "date": "2026-12-07", "from": "now-1d"}, 422,
     "parameters 'shift'/'date' and 'from' both give the window"),
    ({"shift": "early", "date": "7.12.2026"}, 422, "parameter 'date': '7.12.2026' is not a date"),
    ({"date": "9999-12-31"}, 400, "outside 1970-01-02..2262-04-10"),
    ({"tz": "Mars/Olympus"}, 422, "query.tz: 'Mars/Olympus' is not an IANA time zone"),
    ({"tz": "America"}, 422, "query.tz: 'America' is not an IANA time zone"),  # a folder
])
def test_bad_shift_date_and_tz_are_named(api: dict[str, httpx.Client], params: dict[str, str],
                                         status: int, says: str) -> None:
    for url in ("/api/v1/kpis", "/api/v1/tiers/assessment"):
        r = api["berlin"].get(url, params=params)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert says in r.json()["detail"]


# --------------------------------------------------------------------------- tz= answers


def _same_instants(utc: Any, local: Any, tz: ZoneInfo, path: str = "") -> int:
    """``local`` is ``utc`` with every time written in ``tz`` with its numeric offset, the
    same instant, and nothing else changed; returns how many times were compared."""
    if isinstance(utc, dict):
        assert isinstance(local, dict) and utc.keys() == local.keys(), path
        return sum(_same_instants(utc[k], local[k], tz, f"{path}.{k}") for k in utc)
    if isinstance(utc, list):
        assert isinstance(local, list) and len(utc) == len(local), path
        return sum(_same_instants(u, v, tz, f"{path}[{i}]")
                   for i, (u, v) in enumerate(zip(utc, local, strict=True)))
    if isinstance(utc, str) and len(utc) >= 20 and utc.endswith("Z") and utc[10] == "T":
        at = _at(local)
        assert at == _at(utc), path
        assert local[-6] in "+-" and at.utcoffset() == at.astimezone(tz).utcoffset(), (path, local)
        return 1
    assert local == utc, path
    return 0


def test_tz_renders_every_time_with_its_offset_same_instants(api: dict[str, httpx.Client]) -> None:
    c = api["shanghai"]
    # a closed window of the history: both requests are one computation (api.flight)
    params = {"from": (NOW - HISTORY).isoformat(), "to": (NOW - timedelta(minutes=5)).isoformat()}
    utc = c.get("/api/v1/kpis", params=params)
    computed = c.get("/api/v1/health").json()["kpi"]["computed"]
    berlin = c.get("/api/v1/kpis", params={**params, "tz": "Europe/Berlin"})
    assert utc.status_code == berlin.status_code == 200, (utc.text, berlin.text)
    assert c.get("/api/v1/health").json()["kpi"]["computed"] == computed  # shared, not redone
    assert utc.json()["window"]["from"].endswith("Z")
    assert _same_instants(utc.json(), berlin.json(), ZoneInfo("Europe/Berlin")) >= 2

    tag = "/api/v1/tags/demo/machining/line1/lathe-01/state"
    utc = c.get(f"{tag}/samples", params=params)
    local = c.get(f"{tag}/samples", params={**params, "tz": "Asia/Shanghai"})
    assert utc.status_code == local.status_code == 200
    assert utc.json()["count"] > 0
    assert local.json()["ts"][0].endswith("+08:00")
    assert _same_instants(utc.json(), local.json(), ZoneInfo("Asia/Shanghai")) >= utc.json()["count"]
    latest = c.get(f"{tag}/latest", params={"tz": "Asia/Shanghai"}).json()
    assert latest["ts"].endswith("+08:00")
    assert _at(latest["ts"]) == _at(c.get(f"{tag}/latest").json()["ts"])


# --------------------------------------------------------------------------- state names

#: the canonical names of the raw values, as the demo plant's devices send them: the Modbus
#: CNC's native codes (2 is Executing there, 3 in OPC 40001-1), the OPC UA server's canonical ones
NAMES = {
    "demo/machining/line1/lathe-01/state":
        {0.0: "NotAvailable", 1.0: "NotExecuting", 2.0: "Executing", 4.0: "OutOfService"},
    "demo/machining/line1/lathe-01/channel_mode": {0.0: "MDI", 1.0: "Automatic", 4.0: "Manual",
                                                   5.0: "Manual"},
    "demo/assembly/line3/assembler-01/state":
        {0.0: "NotAvailable", 1.0: "OutOfService", 2.0: "NotExecuting", 3.0: "Executing"},
    "demo/assembly/line3/assembler-01/mode":
        {0.0: "None", 1.0: "Maintenance", 2.0: "Setup", 3.0: "Processing"},
}


@pytest.mark.parametrize("path", list(NAMES))
def test_state_and_mode_tags_carry_their_canonical_names(api: dict[str, httpx.Client],
                                                         path: str) -> None:
    c = api["shanghai"]
    r = c.get(f"/api/v1/tags/{path}/samples",
              params={"from": (NOW - HISTORY).isoformat(), "to": NOW.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] > 0
    assert body["name"] == [NAMES[path].get(v) for v in body["value"]]  # type: ignore[arg-type]
    if path.endswith("/state"):  # the machine ran: Executing is among the names
        assert "Executing" in body["name"]
    latest = c.get(f"/api/v1/tags/{path}/latest").json()
    assert latest["value"] is not None
    assert latest["name"] == NAMES[path][latest["value"]]


def test_other_tags_have_no_name(api: dict[str, httpx.Client]) -> None:
    c = api["shanghai"]
    path = "/api/v1/tags/demo/machining/line1/lathe-01/good_count"
    assert c.get(f"{path}/latest").json()["name"] is None
    body = c.get(f"{path}/samples", params={"from": (NOW - HISTORY).isoformat()}).json()
    assert body["count"] > 0 and body["name"] is None


# --------------------------------------------------------------------------- configuration


def test_configured_windows_with_bare_times_are_plant_local(api: dict[str, httpx.Client]) -> None:
    # the Berlin plant's kpi.baseline is {start: 2026-03-02, end: 2026-03-09}: local midnights
    r = api["berlin"].get("/api/v1/kpis/deltas", params={"from": "2026-03-09", "to": "2026-03-16"})
    assert r.status_code == 200, r.text
    assert r.json()["baseline_window"] == {"from": "2026-03-01T23:00:00Z", "to": "2026-03-08T23:00:00Z"}
    # with tz=, the request's own bare times move; the configured ones stay the plant's
    r = api["berlin"].get("/api/v1/kpis/deltas",
                          params={"from": "2026-03-09", "to": "2026-03-16", "tz": "UTC"})
    assert r.json()["window"]["from"] == "2026-03-09T00:00:00+00:00"
    assert r.json()["baseline_window"]["from"] == "2026-03-01T23:00:00+00:00"


def test_a_skipped_time_in_the_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"calendar": BERLIN_CALENDAR,
                            "kpi": {"current": {"start": "2026-03-29T02:15", "end": "now"}}})
    assert "kpi.current.start" in str(err.value)
    assert "does not exist in Europe/Berlin" in str(err.value)
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"calendar": {**BERLIN_CALENDAR, "shifts": [
            {"name": "early", "start": "06:00", "end": "14:00"},
            {"name": "early", "start": "14:00", "end": "22:00"}]}})
    assert "shift names must be unique" in str(err.value)


@pytest.mark.parametrize(("zone", "want"), [
    ("Europe/Berlin", ['"2026-10-25T02:30:00+02:00"', '"2026-10-25T02:30:00.500000+01:00"']),
    ("America/St_Johns", ['"2026-10-24T22:00:00-02:30"', '"2026-10-24T23:00:00.500000-02:30"']),
    ("UTC", ['"2026-10-25T00:30:00+00:00"', '"2026-10-25T01:30:00.500000+00:00"']),
])
def test_render_times_rewrites_whole_utc_times_only(zone: str, want: list[str]) -> None:
    """The response-time conversion itself (api.plant_time.render_times): both readings of
    the hour read twice, half-hour offsets, fractions kept, times inside texts untouched."""
    body = (b'{"a":"2026-10-25T00:30:00Z","b":["2026-10-25T01:30:00.500000Z"],'
            b'"detail":"gap from 2026-10-25T00:30:00Z","n":1}')
    out = render_times(body, ZoneInfo(zone)).decode()
    assert out == (f'{{"a":{want[0]},"b":[{want[1]}],'
                   '"detail":"gap from 2026-10-25T00:30:00Z","n":1}')
    # an offset with seconds (Monrovia until 1972: -0:44:30) is written whole, exactly
    early = render_times(b'["1971-06-01T12:00:00Z"]', ZoneInfo("Africa/Monrovia"))
    assert early == b'["1971-06-01T11:15:30-00:44:30"]'
    assert render_times(body, None) is body
