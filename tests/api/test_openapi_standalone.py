"""The OpenAPI document stands alone (issue 15 item 2), against a live API: uvicorn in a
subprocess on a free port serving a real SQLite store of the shipped demo plant's simulated
history (two days, with its declared evidence; not collecting).

- every operation has a short snake_case operationId (its route function's name), unique;
  a summary, a response model with an example, examples for every parameter, and its
  problem responses;
- every read route's live answer validates against its response model, and the model keeps
  every field of it (nothing an answer carries goes undeclared);
- a client generated from the live ``/openapi.json`` by openapi-python-client in this run
  parses every read route's answer into its generated model classes, losing nothing;
- ``/docs`` (Swagger UI) and ``/redoc`` render the operations in headless Chromium (Playwright) with the
  network blocked: their assets come from the installed package, not a CDN.

Routes are enumerated from the app, never listed here, so routes added later are checked too.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from api.app import create_app
from api.declared import ITEMS
from api.problems import Problem
from api.routes import ROUTERS
from config import Settings, shipped_config
from tests.api.browser import chromium_page
from tests.helpers import free_port, key_headers, two_day_plant, wait_for

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
SERVER = """
import sys, uvicorn
from api.app import create_app
from config import load_settings
app = create_app(load_settings(sys.argv[1]), collect=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
#: short, stable, snake_case: a verb and what it reads or changes
OPERATION_ID = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
OPERATION_ID_MAX = 32
#: a read route answers 200 from this plant, except these (operation id -> status): the
#: embedded store has no spool (tests/store/spool/test_spool_influx.py reads a real one)
NOT_200 = {"get_spool": 404}
#: generated classes of answers' genuinely open objects, whose values may be any JSON: every
#: setting in force (its schema is the configuration's, docs/configuration.md), and the store
#: counters of /health (each backend has its own)
OPEN = {"ConfigOutSettings", "HealthOutStore"}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    """The shipped demo (declared evidence included) with two days of stored history."""
    tmp = tmp_path_factory.mktemp("openapi")
    return two_day_plant(tmp, yaml.safe_load(shipped_config("demo.yaml").read_text()))


@pytest.fixture(scope="module")
def api(plant: tuple[Path, Settings], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[httpx.Client]:
    """The one client of this file: the live API's base URL and any headers it needs."""
    cfg, settings = plant
    headers = key_headers(settings, "admin")  # every GET, /config's admin scope too
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(cfg), str(port)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, headers=headers)
    try:
        wait_for(lambda: proc.poll() is None
                 and client.get("/api/v1/health").status_code == 200, 60, "the API")
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        log.close()
        print(log_path.read_text()[-5000:])


@pytest.fixture(scope="module")
def openapi(api: httpx.Client) -> dict[str, Any]:
    got = api.get("/openapi.json")
    assert got.status_code == 200, got.text
    doc: dict[str, Any] = got.json()
    return doc


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def example_url(path: str, op: dict[str, Any]) -> str:
    """``path`` with every path parameter set to its first example."""
    for p in op.get("parameters", []):
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", str(p["schema"]["examples"][0]))
    return path


def json_answer(op: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of an operation's success answer; None when it has no JSON answer."""
    for status in ("200", "201"):
        schema = op["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            return dict(schema)
    return None


def routes(settings: Settings) -> dict[str, APIRoute]:
    """operation id -> route, of the app as built: its own routes and those of the routers it
    includes (``api.routes.ROUTERS``; FastAPI keeps those behind the included router)."""
    app = create_app(settings, collect=False)
    found = [*app.routes, *(r for router in ROUTERS for r in router.routes)]
    return {r.name: r for r in found if isinstance(r, APIRoute) and r.include_in_schema}


def test_every_operation_has_a_short_unique_id_a_model_examples_and_problems(
        openapi: dict[str, Any], plant: tuple[Path, Settings]) -> None:
    ops = list(operations(openapi))
    ids = [op.get("operationId") for _, _, op in ops]
    assert len(ids) >= 11 and len(set(ids)) == len(ids), ids
    schemas = openapi["components"]["schemas"]
    by_name = routes(plant[1])
    ops_by_id = {op["operationId"]: op for _, _, op in ops}
    assert set(ids) == set(by_name), "an operationId is not its route function's name"
    for path, method, op in ops:
        oid = op["operationId"]
        where = f"{method.upper()} {path} ({oid})"
        assert OPERATION_ID.match(oid) and len(oid) <= OPERATION_ID_MAX, where
        assert oid.startswith(method.lower() + "_") or method != "get", where
        assert op.get("summary"), f"{where}: no summary"
        for p in op.get("parameters", []):
            assert p["schema"].get("examples") or p.get("examples"), f"{where}: {p['name']} has no example"
        problems = {s for s, r in op["responses"].items()
                    if "application/problem+json" in r.get("content", {})}
        assert {"405", "500", "503"} <= problems, f"{where}: problems {problems}"
        if op.get("parameters"):
            assert {"400", "404", "422"} <= problems, f"{where}: problems {problems}"
        for status, declared in by_name[oid].responses.items():  # the route's own other answers
            if "model" in declared:  # e.g. a degraded /health: a HealthOut with 503
                assert "application/json" in op["responses"][str(status)]["content"], (where, status)
        if not json_answer(op):  # no content (204), or not JSON (e.g. Prometheus text)
            continue
        assert by_name[oid].response_model is not None, f"{where}: no response_model"
        schema = json_answer(op)
        ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
        assert ref, f"{where}: its answer is not a named model: {schema}"
        model = schemas[ref.rsplit("/", 1)[1]]
        assert model.get("examples"), f"{where}: {ref} has no example"
    assert schemas["Problem"].get("examples"), "the error answers have no example"
    for ex in schemas["Problem"]["examples"]:
        Problem.model_validate(ex)
    # every answer's example is what it says: it validates against its own model
    for oid, route in by_name.items():
        model = route.response_model
        if model is None or not json_answer(ops_by_id[oid]):  # checked above
            continue
        item = typing.get_args(model)[0] if typing.get_origin(model) is list else model
        for ex in schemas[item.__name__]["examples"]:
            TypeAdapter(item).validate_python(ex, strict=False)
        assert schemas[item.__name__]["examples"], oid


def _declared(raw: Any, dumped: Any, where: str) -> None:
    """Every key of the live answer ``raw`` survives validation and dumping (``dumped``)."""
    if isinstance(raw, dict):
        assert isinstance(dumped, dict), where
        lost = set(raw) - set(dumped)
        assert not lost, f"{where}: the model drops {sorted(lost)}"
        for k, v in raw.items():
            _declared(v, dumped[k], f"{where}.{k}")
    elif isinstance(raw, list):
        assert isinstance(dumped, list) and len(dumped) == len(raw), where
        for i, (a, b) in enumerate(zip(raw, dumped, strict=True)):
            _declared(a, b, f"{where}[{i}]")
    else:
        assert raw == dumped, f"{where}: {raw!r} became {dumped!r}"


def test_every_read_answer_validates_against_its_model_and_keeps_every_field(
        api: httpx.Client, openapi: dict[str, Any], plant: tuple[Path, Settings]) -> None:
    by_name = routes(plant[1])
    read = [(p, op) for p, m, op in operations(openapi) if m == "get" and json_answer(op)]
    assert read
    for path, op in read:
        oid = op["operationId"]
        got = api.get(example_url(path, op))
        if oid in NOT_200:
            assert got.status_code == NOT_200[oid], (oid, got.status_code, got.text[:500])
            assert got.headers["content-type"] == "application/problem+json"
            continue
        assert got.status_code == 200, (oid, got.status_code, got.text[:500])
        body = got.json()
        model = TypeAdapter(by_name[oid].response_model)
        parsed = model.validate_python(body)
        _declared(body, model.dump_python(parsed, mode="json", by_alias=True, exclude_unset=True), oid)


# --------------------------------------------------------------------- generated client

@pytest.fixture(scope="module")
def generated(openapi: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package openapi-python-client generates from the live /openapi.json, imported."""
    tmp = tmp_path_factory.mktemp("client")
    (tmp / "openapi.json").write_text(httpx.Response(200, json=openapi).text)
    # no post hooks (they would format the code with ruff): the test needs it to import; the
    # evidence zip is bytes to the generator (it knows no application/zip, docs/api.md)
    (tmp / "config.yaml").write_text("post_hooks: []\npackage_name_override: tierproof_client\n"
                                     "content_type_overrides: {application/zip: application/octet-stream}\n")
    out = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(tmp / "openapi.json"), "--meta", "none",
         "--output-path", str(tmp / "tierproof_client"), "--config", str(tmp / "config.yaml"),
         "--fail-on-warning"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module("tierproof_client")
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == "tierproof_client" or m.startswith("tierproof_client.")]:
            del sys.modules[name]


def _typed(value: Any, package: str, where: str) -> None:
    """``value`` is a generated model (or a list of them), and so is every object inside it:
    no untyped dict anywhere (an open map is a generated model whose
    ``additional_properties`` hold models or scalars)."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            _typed(v, package, f"{where}[{i}]")
        return
    assert attrs.has(type(value)) and type(value).__module__.startswith(package + ".models."), (
        f"{where}: {type(value)} is not a generated model")
    if type(value).__name__ in OPEN:
        return
    for f in attrs.fields(type(value)):
        v = getattr(value, f.name)
        items = (v.items() if f.name == "additional_properties"
                 else enumerate(v) if isinstance(v, list) else [(f.name, v)])
        for k, item in items:
            assert not isinstance(item, dict), f"{where}.{f.name}[{k}]: an untyped dict"
            if attrs.has(type(item)) or isinstance(item, list):
                _typed(item, package, f"{where}.{f.name}[{k}]")


def test_generated_client_gets_typed_models_for_every_read_route(
        generated: Any, api: httpx.Client, openapi: dict[str, Any]) -> None:
    called = []
    with generated.Client(base_url=str(api.base_url).rstrip("/"), headers=dict(api.headers),
                          timeout=httpx.Timeout(120), raise_on_unexpected_status=True) as client:
        for path, method, op in operations(openapi):
            if method != "get" or not json_answer(op):
                continue
            oid = op["operationId"]
            module = importlib.import_module(f"tierproof_client.api.{op['tags'][0]}.{oid}")
            kwargs = {p["name"]: p["schema"]["examples"][0]
                      for p in op.get("parameters", []) if p["in"] == "path"}
            got = module.sync_detailed(client=client, **kwargs)
            raw = api.get(example_url(path, op))
            assert int(got.status_code) == NOT_200.get(oid, 200), (oid, got.status_code, got.content[:300])
            parsed = got.parsed
            assert parsed is not None, oid
            _typed(parsed, generated.__name__, oid)
            # the typed answer holds the whole answer: back to JSON, it is what the server sent
            # (volatile fields aside: the health's time and KPI cache counters move between calls)
            back = [p.to_dict() for p in parsed] if isinstance(parsed, list) else parsed.to_dict()
            if oid == "get_health":
                assert set(back) == set(raw.json()) and back["status"] == raw.json()["status"]
            else:
                assert back == raw.json(), oid
            called.append(oid)
    assert {"get_kpis", "get_assessment", "get_kpi_deltas", "get_tag_latest", "get_tag_samples",
            "get_health", "get_config", "get_declared_items", "get_declared"} <= set(called), called


def test_generated_client_parses_each_declared_item_into_its_own_model(
        generated: Any, api: httpx.Client, openapi: dict[str, Any],
        plant: tuple[Path, Settings]) -> None:
    """A declared answer is one model per item, told apart by ``item`` (oneOf with a
    discriminator): the asset register (a list of objects) parses into Asset models, the
    shift calendar (an object) into its own model, and so on for every item."""
    union = openapi["components"]["schemas"]["DeclaredOut"]
    assert union["discriminator"]["propertyName"] == "item", union
    assert set(union["discriminator"]["mapping"]) == set(ITEMS), union["discriminator"]
    assert len(union["oneOf"]) == len(ITEMS), union["oneOf"]
    items = importlib.import_module("tierproof_client.api.declared.get_declared_items")
    one = importlib.import_module("tierproof_client.api.declared.get_declared")
    models = importlib.import_module("tierproof_client.models")
    with generated.Client(base_url=str(api.base_url).rstrip("/"), headers=dict(api.headers),
                          timeout=httpx.Timeout(120), raise_on_unexpected_status=True) as client:
        every = items.sync(client=client)
        calendar = one.sync(client=client, item=models.DeclaredItemName("calendar"))
    assert every is not None and calendar is not None
    by_item = {str(answer.item): answer for answer in every}
    assert set(by_item) == set(ITEMS)
    for name, answer in by_item.items():
        title = "".join(p.title() for p in name.split("-"))
        assert type(answer).__name__ == f"Declared{title}Out", (name, type(answer))
    assets = by_item["assets"].value
    assert assets and all(isinstance(a, models.Asset) for a in assets), assets
    assert {a.path for a in assets} == {a.path for a in plant[1].assets}
    for got in (by_item["calendar"], calendar):
        assert isinstance(got, models.DeclaredCalendarOut), type(got)
        assert isinstance(got.value, models.ShiftCalendar), type(got.value)
        assert got.value.timezone == plant[1].calendar.timezone
        assert all(isinstance(s, models.DailyRange) for s in got.value.shifts), got.value.shifts
    assert isinstance(by_item["ai-scenarios"].value.scenarios[0], models.AiScenario)
    assert isinstance(by_item["references"].value.additional_properties[
        "provincial_cnc_rate"], models.DeclaredValue)



# --------------------------------------------------------------------- offline docs

def render_offline(url: str, profile: Path, ready: str) -> str:
    """The DOM of ``url`` once ``ready`` holds, in headless Chromium (Playwright,
    tests/api/browser.py) that can reach loopback only: a request to any other host is aborted."""
    with chromium_page(profile, width=1300) as p:
        p.goto(url)
        p.wait(ready, 90, f"{url} rendered")
        return str(p.page.content())


def test_the_network_is_blocked_in_the_browser(tmp_path: Path) -> None:
    """The control: the same browser cannot load Swagger UI from its CDN."""
    page = tmp_path / "cdn.html"
    page.write_text('<html><body><div id="out">none</div>'
                    '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>'
                    '<script>document.getElementById("out").textContent = typeof SwaggerUIBundle;</script>'
                    '</body></html>')
    dom = render_offline(page.as_uri(), tmp_path / "profile", "document.readyState === 'complete'")
    assert '<div id="out">undefined</div>' in dom, dom[-1000:]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_show_every_operation_offline(page: str, api: httpx.Client, openapi: dict[str, Any],
                                           tmp_path: Path) -> None:
    ids = json.dumps([op["operationId"] for _, _, op in operations(openapi)])
    dom = render_offline(str(api.base_url).rstrip("/") + page, tmp_path / "profile",
                         f"{ids}.every(i => document.body.innerHTML.includes(i))")
    for _, _, op in operations(openapi):
        assert op["operationId"] in dom, f"{page}: {op['operationId']} not shown"
        summary = op["summary"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert summary in dom, f"{page}: {op['summary']!r} not shown"
