"""Issue 13: every failure of the ``tierproof`` command line is one sentence on stderr and a
documented exit code; the traceback shows only under ``--debug``. Real subprocesses, real
files, a real socket holding the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from config import shipped_config
from tests.helpers import config_key_headers, free_port, on_free_ports

ROOT = Path(__file__).resolve().parents[2]


def tierproof(*args: str) -> subprocess.CompletedProcess[str]:
    # --log-level ERROR: the one sentence must be all; any logged error would show too
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "api.cli", "--log-level", "ERROR", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: the test) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def config(tmp_path: Path, **over: object) -> Path:
    data = {"assets": [{"path": "s/a/l/m1"}],
            "store": {"type": "sqlite", "path": str(tmp_path / "t.db")}, **over}
    p = tmp_path / "plant.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_api_port_in_use(tmp_path: Path, busy_port: int) -> None:
    r = tierproof("run", "--config", str(config(tmp_path)), "--port", str(busy_port), "--duration", "5")
    assert r.returncode == 3
    assert one_line(r) == (
        f"tierproof: cannot start: the API cannot listen on 127.0.0.1:{busy_port}: the port is in "
        "use by another process (stop it, or choose another port with --port or api.port)")
    assert not (tmp_path / "t.db").exists()  # bound before the store was opened


def test_debug_adds_the_traceback(tmp_path: Path, busy_port: int) -> None:
    r = tierproof("--debug", "run", "--config", str(config(tmp_path)), "--port", str(busy_port))
    assert r.returncode == 3
    assert "Traceback (most recent call last)" in r.stderr and "OSError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("tierproof: cannot start: the API cannot listen")


def test_demo_simulator_port_in_use(tmp_path: Path, busy_port: int) -> None:
    """A simulated machine's port taken by another process: one sentence naming the device,
    its address and the remedy (it was "internal error: RuntimeError: Could not start
    listen", pymodbus's words)."""
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    on_free_ports(data)
    data["simulation"]["history_days"] = 1
    (cnc,) = [d for d in data["devices"] if d["name"] == "line1-cnc"]
    cnc["port"] = busy_port
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data))
    r = tierproof("demo", "--config", str(cfg), "--port", str(free_port()), "--data-dir",
                  str(tmp_path / "data"), "--duration", "5")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr, r.stderr  # (pymodbus's own WARNING line may precede)
    assert r.stderr.strip().splitlines()[-1] == (
        f"tierproof: cannot start: simulated Modbus device line1-cnc cannot listen on "
        f"127.0.0.1:{busy_port}: Address already in use (stop the process that holds the port, or "
        "choose another port in the device's configuration)")


def test_a_damaged_database(tmp_path: Path) -> None:
    (tmp_path / "t.db").write_bytes(b"not a database, not at all: " * 100)
    r = tierproof("assess", "--config", str(config(tmp_path)))
    assert r.returncode == 3
    assert one_line(r) == (f"tierproof: the store cannot be used: {tmp_path / 't.db'}: open failed: "
                           "file is not a database")


def test_a_damaged_database_at_run(tmp_path: Path) -> None:
    (tmp_path / "t.db").write_bytes(b"not a database, not at all: " * 100)
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(tmp_path)
    config_key_headers(cfg)  # a key (api.auth): the start gets past the key check to the store
    r = tierproof("run", "--config", str(cfg), "--port", str(port), "--duration", "5")
    assert r.returncode == 3
    assert r.stdout.startswith("tierproof: 0 devices")
    assert one_line(r) == (f"tierproof: cannot start: {tmp_path / 't.db'}: open failed: "
                           "file is not a database")


@pytest.mark.parametrize(("state", "why"), [
    ('{"head_seq": ', "unreadable state file: Expecting value"),
    ('{"something": 1}', "state file lacks or garbles 'head_seq'"),
])
def test_a_bad_spool_state_file(tmp_path: Path, state: str, why: str) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "state.json").write_text(state)
    cfg = config(tmp_path, store={"type": "influx", "api": "v1", "database": "db",
                                  "url": "http://127.0.0.1:9", "meta_path": str(tmp_path / "meta.db"),
                                  "spool": {"path": str(spool)}})
    r = tierproof("spool", "list", "--config", str(cfg))
    assert r.returncode == 3
    line = one_line(r)
    assert line.startswith(f"tierproof: the store cannot be used: spool {spool / 'state.json'}: ")
    assert why in line


def test_a_missing_config_file(tmp_path: Path) -> None:
    r = tierproof("run", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert one_line(r) == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"


def test_an_unreadable_config_file(tmp_path: Path) -> None:
    r = tierproof("assess", "--config", str(tmp_path))  # a directory
    assert r.returncode == 2
    assert one_line(r) == f"{tmp_path}: cannot read: Is a directory"


def test_a_non_utf8_config_file(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_bytes(b"assets: [{path: s/a/l/m1, description: Dr\xfccke}]\n")
    r = tierproof("check-config", str(p))
    assert r.returncode == 2
    assert one_line(r) == f"{p}:1:42: not UTF-8 text: byte 0xfc at offset 41 (save the file as UTF-8)"


def test_a_password_in_a_url_is_not_echoed(tmp_path: Path) -> None:
    cfg = config(tmp_path, devices=[{
        "protocol": "mqtt", "name": "b", "broker": "mqtt://plant:hunter2@10.0.0.9:1883",
        "subscriptions": [{"topic": "p/+/+", "template": "p/{asset}/{signal}"}]}])
    for cmd in (("check-config", str(cfg)), ("run", "--config", str(cfg))):
        r = tierproof(*cmd)
        assert r.returncode == 2
        assert "hunter2" not in r.stderr + r.stdout
        assert one_line(r) == (f"{cfg}: devices[0].broker: mqtt://plant:***@10.0.0.9:1883: the URL "
                               "must not hold credentials (user:password@): use the device's "
                               "username and password")


def test_a_bad_option_value_is_a_usage_error() -> None:
    r = tierproof("simulate", "--at", "yesterday")
    assert r.returncode == 2
    assert "argument --at: 'yesterday' is neither an ISO 8601 time" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_documents_the_exit_codes() -> None:
    r = tierproof("--help")
    assert r.returncode == 0
    for line in ("exit codes:", "2  usage or configuration error", "3  cannot start",
                 "4  internal error", "--debug"):
        assert line in r.stdout
