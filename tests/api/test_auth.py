"""API keys, scopes and the HTTP guards around them (issue 15 item 1), over the real app:
the whole matrix -- no key, unknown, revoked, read, write, admin -- on every route the app
has (enumerated from ``app.routes``, so a route added later is covered, and one that no rule
classifies fails), both header forms, the keys file, the ``tierproof keys`` commands, the
refusal to start without a key, the Host allow-list, CORS, the per-key rate limit and TLS
(a real uvicorn with a self-signed certificate)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api import healthcheck
from api.app import create_app
from api.auth import ADMIN_PATHS, OPEN_PATHS, OPEN_PREFIXES, KeyFile, NoKeyError, keys_path
from api.cli import StartFailure, _check_tls, _listen, _uvicorn_server
from config import load_settings
from config.settings import Settings
from tests.helpers import REPO, free_port, one_week_demo, wait_for

#: what the brief opens to anyone (no plant data); anything else open is a finding
EXPECTED_OPEN = {"/", "/api/v1/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
#: where protected routes live; a route outside these and not open is unclassified
PROTECTED_PREFIXES = ("/api/", "/metrics")
SCOPES = ("read", "write", "admin")
#: a file of each static mount: the dashboard's page, the offline docs' Swagger UI stylesheet
STATIC_FILES = {"/static": "/index.html", "/static-offline-docs": "/swagger-ui.css"}
METHODS = ("GET", "POST")  # a safe and an unsafe method on every path, beside the route's own


def write_config(tmp: Path, **api: Any) -> Path:
    data = one_week_demo()
    data["store"] = {"type": "sqlite", "path": str(tmp / "store.db")}
    data["api"] = {"host": "127.0.0.1", "port": free_port(), **api}
    cfg = tmp / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


class Gateway:
    """An app (not collecting) over an empty store, its config file and keys of each scope."""

    def __init__(self, tmp: Path, **api: Any) -> None:
        self.cfg = write_config(tmp, **api)
        self.settings = load_settings(self.cfg)
        self.keys = KeyFile(keys_path(self.settings))
        self.key = {scope: self.keys.create(f"test-{scope}", scope)[1] for scope in SCOPES}
        revoked, self.revoked = self.keys.create("test-revoked", "admin")
        self.keys.revoke(revoked.id)
        self.app = create_app(self.settings, collect=False)


@contextmanager
def serving(g: Gateway) -> Iterator[httpx.Client]:
    """``g``'s app served by uvicorn (as ``tierproof serve`` does) on its own loop and
    thread; a client of it."""
    port = g.settings.api.port
    sock = _listen("127.0.0.1", port)
    server: list[Any] = []
    failed: list[BaseException] = []

    async def main() -> None:
        async with g.app.router.lifespan_context(g.app):
            server.append(_uvicorn_server(g.app, "127.0.0.1", port))
            await server[0].serve(sockets=[sock])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # shown by the test, not lost in the thread
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    scheme = "https" if g.settings.api.tls else "http"
    try:
        wait_for(lambda: failed or (server and server[0].started), 30, "the API to start")
        assert not failed, failed
        with httpx.Client(base_url=f"{scheme}://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        if server:
            server[0].should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, httpx.Client]]:
    g = Gateway(tmp_path_factory.mktemp("auth"))
    with serving(g) as client:
        yield g, client


def concrete(path: str, settings: Settings) -> str:
    """A route's path with its parameters filled in (a real tag for a tag path)."""
    _, tag = settings.all_tags()[0]
    return re.sub(r"\{[^}]+\}", lambda m: f"{tag.asset}/{tag.name}" if "path" in m.group() else "x", path)


def app_routes(app: Any) -> list[tuple[str, set[str]]]:
    """Every route of ``app`` as (path, methods), the routes of included routers too
    (FastAPI 0.165 includes a router as one entry that expands lazily)."""
    out: list[tuple[str, set[str]]] = []
    for r in app.routes:
        expand = getattr(r, "effective_route_contexts", None)
        for c in expand() if expand is not None else [r]:
            out.append((c.path, set(getattr(c, "methods", None) or ())))
    return out


def routes(app: Any) -> list[str]:
    return [path for path, _ in app_routes(app)]


def test_every_route_is_classified(gw: tuple[Gateway, httpx.Client]) -> None:
    g, _ = gw
    assert OPEN_PATHS == EXPECTED_OPEN
    unclassified = [p for p in routes(g.app)  # a mount (static files) is its path + "/..."
                    if p not in OPEN_PATHS and not (p + "/").startswith(OPEN_PREFIXES)
                    and not p.startswith(PROTECTED_PREFIXES)]
    assert not unclassified, f"routes no auth rule classifies (api.auth): {unclassified}"


def expected(method: str, path: str) -> str | None:
    """What the brief asks, written independently of api.auth.required_scope."""
    if path in EXPECTED_OPEN or (path + "/").startswith(
            ("/static/", "/static-offline-docs/", "/docs/", "/redoc/")):
        return None
    if path in ADMIN_PATHS:
        return "admin"
    return "read" if method in ("GET", "HEAD") else "write"


def test_auth_matrix_on_every_route(gw: tuple[Gateway, httpx.Client]) -> None:
    """Every route x {GET, POST} x {no key, unknown, revoked, read, write, admin}."""
    g, c = gw
    rank = {s: i for i, s in enumerate(SCOPES)}
    seen = 0
    for route, methods in app_routes(g.app):
        url = concrete(route, g.settings) + STATIC_FILES.get(route, "")
        for method in sorted((methods | set(METHODS)) - {"HEAD"}):
            need = expected(method, route)
            where = f"{method} {url}"
            no_key = c.request(method, url)
            if need is None:
                assert no_key.status_code not in (401, 403), where
                continue
            seen += 1
            for label, headers in (("no key", {}),
                                   ("unknown key", {"X-API-Key": "tp_00000000_" + "x" * 43}),
                                   ("revoked key", {"X-API-Key": g.revoked})):
                r = c.request(method, url, headers=headers)
                assert r.status_code == 401, (where, label, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer"), where
                assert r.headers["content-type"] == "application/problem+json", where
            assert "revoked" in c.request(method, url, headers={"X-API-Key": g.revoked}).json()["detail"]
            for scope in SCOPES:
                r = c.request(method, url, headers={"X-API-Key": g.key[scope]})
                if rank[scope] >= rank[need]:
                    assert r.status_code not in (401, 403, 429), (where, scope, r.status_code, r.text)
                else:
                    assert r.status_code == 403, (where, scope, r.status_code, r.text)
                    body = r.json()
                    assert body["needed_scope"] == need and f"needs scope '{need}'" in body["detail"]
    assert seen >= 20  # ten protected routes at least, two methods each


def test_open_routes_show_no_plant_data(gw: tuple[Gateway, httpx.Client]) -> None:
    g, c = gw
    assert c.get("/api/v1/health").status_code in (200, 503)
    assert c.get("/").status_code == 200
    assert c.get("/openapi.json").status_code == 200
    assert c.get("/docs").status_code == 200
    # what a protected answer would show is not in the open ones: the plant's asset names (the
    # OpenAPI's examples are the shipped demo plant's, so it is checked for this plant's
    # device addresses and store file instead)
    asset = g.settings.assets[0].path
    for path in ("/", "/docs"):
        assert asset not in c.get(path).text
    spec = c.get("/openapi.json").text
    for device in g.settings.devices:
        port = getattr(device, "port", None)
        if port is not None:
            assert f":{port}" not in spec, device.name
    assert str(g.settings.store.path) not in spec


def test_both_header_forms(gw: tuple[Gateway, httpx.Client]) -> None:
    g, c = gw
    key = g.key["read"]
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"},
                    {"Authorization": f"bearer {key}"},
                    {"X-API-Key": key, "Authorization": f"Bearer {key}"}):
        assert c.get("/api/v1/assets", headers=headers).status_code == 200, headers
    for headers, why in (({"Authorization": f"Basic {key}"}, "not 'Bearer <key>'"),
                         ({"Authorization": "Bearer"}, "not 'Bearer <key>'"),
                         ({"X-API-Key": key, "Authorization": f"Bearer {g.key['admin']}"},
                          "different keys"),
                         ({"X-API-Key": key[:-1]}, "not known")):
        r = c.get("/api/v1/assets", headers=headers)
        assert r.status_code == 401 and why in r.json()["detail"], (headers, r.text)


def test_the_openapi_declares_the_keys(gw: tuple[Gateway, httpx.Client]) -> None:
    _, c = gw
    doc = c.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey", "in": "header",
                                       "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/api/v1/health"]["get"]["security"] == []
    kpis = doc["paths"]["/api/v1/kpis"]["get"]
    assert kpis["x-required-scope"] == "read" and {"401", "403", "429"} <= kpis["responses"].keys()
    assert doc["paths"]["/api/v1/config"]["get"]["x-required-scope"] == "admin"


def test_keys_file_holds_hashes_only(gw: tuple[Gateway, httpx.Client]) -> None:
    g, _ = gw
    text = g.keys.path.read_text()
    assert stat.S_IMODE(g.keys.path.stat().st_mode) == 0o600
    for key in [*g.key.values(), g.revoked]:
        assert key not in text and key.split("_", 2)[2] not in text  # the secret may hold "_"
        assert hashlib.sha256(key.encode()).hexdigest() in text
    doc = json.loads(text)
    assert {k["name"] for k in doc["keys"]} >= {"test-read", "test-write", "test-admin", "test-revoked"}
    assert all(set(k) == {"id", "name", "scope", "sha256", "created", "revoked", "last_used"}
               for k in doc["keys"])


def tierproof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tierproof ARGS`` in this process (as the console script runs it): code, stdout, stderr."""
    from api.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_create_list_revoke_reach_the_running_gateway(
        gw: tuple[Gateway, httpx.Client], capsys: pytest.CaptureFixture[str]) -> None:
    g, c = gw
    # once as a user runs it: the key alone on stdout
    made = tierproof("keys", "create", "--config", str(g.cfg), "--scope", "write", "--name", "mes")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"tp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key), made.stdout
    key_id = key.split("_")[1]
    assert f"created API key {key_id} (mes, scope write)" in made.stderr
    # the running gateway reads the changed file at the next request
    assert c.get("/api/v1/assets", headers={"X-API-Key": key}).status_code == 200
    code, listed, _ = cli(capsys, "keys", "list", "--config", str(g.cfg))
    assert code == 0
    row = next(line for line in listed.splitlines() if key_id in line)
    assert re.search(rf"{key_id}\s+mes\s+write\s+20\d\d-", row) and row.rstrip().endswith("-")
    assert key not in listed and key.split("_", 2)[2] not in listed
    revoked = next(line for line in listed.splitlines() if "test-revoked" in line)
    assert re.search(r"20\d\d-\S+$", revoked.strip())  # when it was revoked

    code, out, _ = cli(capsys, "keys", "revoke", key_id, "--config", str(g.cfg))
    assert code == 0 and f"revoked API key {key_id}" in out
    r = c.get("/api/v1/assets", headers={"X-API-Key": key})
    assert r.status_code == 401 and f"API key {key_id} was revoked" in r.json()["detail"]
    code, out, _ = cli(capsys, "keys", "revoke", key_id, "--config", str(g.cfg))
    assert code == 0 and "already revoked" in out

    code, _, err = cli(capsys, "keys", "revoke", "feedf00d", "--config", str(g.cfg))
    assert code == 1 and err.count("\n") == 1
    assert "no API key with id 'feedf00d'" in err and "keys list" in err
    code, _, err = cli(capsys, "keys", "create", "--config", str(g.cfg), "--scope", "root", "--name", "x")
    assert code == 2 and "invalid choice: 'root'" in err


def test_no_key_no_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    r = tierproof("serve", "--config", str(cfg), "--duration", "30")
    assert r.returncode == 3, (r.returncode, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert "holds no API key" in line and "tierproof keys create --config FILE --scope admin" in line
    assert str(tmp_path / "api_keys.json") in line
    # a revoked key is no key
    keys = KeyFile(tmp_path / "api_keys.json")
    keys.revoke(keys.create("old", "admin")[0].id)
    app = create_app(load_settings(cfg), collect=False)

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(NoKeyError, match="holds no API key that is not revoked"):
        asyncio.run(start())


def test_auth_off_warns_on_a_non_loopback_address(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from api.cli import _warn_open

    settings = load_settings(write_config(tmp_path, auth={"required": False}))
    g = Gateway.__new__(Gateway)  # no key at all
    g.settings, g.app = settings, create_app(settings, collect=False)
    assert not keys_path(settings).exists()
    with serving(g) as c:  # starts without any key, and asks none
        assert c.get("/api/v1/assets").status_code == 200
    for host, warned in (("127.0.0.1", False), ("::1", False), ("localhost", False),
                         ("0.0.0.0", True), ("192.168.1.20", True)):
        caplog.clear()
        _warn_open(settings, host)
        assert ("api.auth.required is false" in caplog.text) is warned, host


def test_host_allow_list(tmp_path: Path) -> None:
    g = Gateway(tmp_path, allowed_hosts=["gateway.plant.local", "*.example.com", "127.0.0.1"])
    key = {"X-API-Key": g.key["read"]}
    with serving(g) as c:
        for host in ("gateway.plant.local:8000", "a.example.com", "127.0.0.1:8000"):
            assert c.get("/api/v1/assets", headers={**key, "host": host}).status_code == 200, host
        for host in ("rebind.attacker.test", "example.com.attacker.test", "localhost:8000"):
            r = c.get("/api/v1/health", headers={"host": host})
            assert r.status_code == 400, host
            assert r.headers["content-type"] == "application/problem+json"
            assert "api.allowed_hosts" in r.json()["detail"]


def test_cors_preflight_and_headers(tmp_path: Path) -> None:
    g = Gateway(tmp_path, cors={"origins": ["https://mes.example.com"]})
    origin = "https://mes.example.com"
    with serving(g) as c:
        pre = c.options("/api/v1/kpis", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200, pre.text  # no key needed for a preflight
        assert pre.headers["access-control-allow-origin"] == origin
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        other = c.options("/api/v1/kpis", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        # a refused request carries the CORS headers too: the page can read why
        r = c.get("/api/v1/assets", headers={"Origin": origin})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == origin
        ok = c.get("/api/v1/assets", headers={"Origin": origin, "X-API-Key": g.key["read"]})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin


def test_rate_limit_per_key(tmp_path: Path) -> None:
    # one token per 100 s: the third request of a burst of two is refused whatever the timing
    g = Gateway(tmp_path, rate_limit_per_s=0.01, rate_limit_burst=2)
    with serving(g) as c:
        read = {"X-API-Key": g.key["read"]}
        assert [c.get("/api/v1/assets", headers=read).status_code for _ in range(2)] == [200, 200]
        r = c.get("/api/v1/assets", headers=read)
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 100
        assert "api.rate_limit_per_s" in r.json()["detail"]
        # per key: another key has its own bucket; open routes are not counted
        assert c.get("/api/v1/assets", headers={"X-API-Key": g.key["admin"]}).status_code == 200
        assert c.get("/api/v1/health").status_code in (200, 503)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    g = Gateway(tmp_path, tls={"cert": str(cert), "key": str(key)})
    base = f"https://127.0.0.1:{g.settings.api.port}"
    trust = ssl.create_default_context(cafile=str(cert))
    with serving(g), httpx.Client(base_url=base, verify=trust) as c:
        r = c.get("/api/v1/assets", headers={"X-API-Key": g.key["read"]})
        assert r.status_code == 200 and r.json()
        assert c.get("/api/v1/assets").status_code == 401
        # the handshake is real: a client that does not trust the certificate refuses it
        with httpx.Client(base_url=base) as untrusting, pytest.raises(
                httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.get("/api/v1/health")
        # and plain HTTP is not answered as HTTP
        with httpx.Client(base_url=base.replace("https", "http")) as plain, pytest.raises(
                httpx.HTTPError):
            plain.get("/api/v1/health")
        # Docker's HEALTHCHECK with api.tls: https to the container's own loopback address
        assert healthcheck.check(f"{base}/api/v1/health") == 0


def test_bad_tls_files_are_one_sentence(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with pytest.raises(StartFailure, match=r"api.tls: cert .*missing.pem with key .*key.pem cannot "
                                           r"be used: No such file"):
        _check_tls(str(tmp_path / "missing.pem"), str(key))
    with pytest.raises(StartFailure, match="cannot be used"):
        _check_tls(str(key), str(cert))  # swapped
