"""`tierproof demo` with a history already in its store (issue 18): it says so and continues
it only with --keep, deletes it only with --fresh (never from InfluxDB), and refuses without
either when no terminal can be asked; a backfill is never written on top of a history, and
backfilled time is never a "gateway not running" gap. Also `run --port 0` prints its port.

Each demo runs as a user runs it (a subprocess on free ports, in its own directory) for a
second or two, with a short history so that the backfill is quick."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from collector.supervisor import GATEWAY_NOT_RUNNING
from config import shipped_config
from store.sqlite import SqliteStore
from tests.helpers import REPO, config_key_headers, free_port, on_free_ports, wait_for

NS = 1_000_000_000


def _config(tmp: Path, store: dict[str, Any] | None = None) -> Path:
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    on_free_ports(data)
    data["simulation"]["history_days"] = 1
    if store is not None:
        data["store"] = store
    cfg = tmp / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def _demo(tmp: Path, cfg: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """One demo run of about a second, with no terminal (stdin: nothing)."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "demo", "--config", str(cfg), "--port", "0",
         "--data-dir", str(tmp / "data"), "--duration", "1", *flags],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO)})


def _demo_asked(tmp: Path, cfg: Path, answer: str) -> tuple[int, str]:
    """One demo run on a terminal (a pseudo-terminal): ``answer`` typed at its question."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--config", str(cfg), "--port", "0",
         "--data-dir", str(tmp / "data"), "--duration", "1"],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(slave)
    out, asked = b"", False
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the demo closed the terminal (it exited)
                    break
                if not chunk:
                    break
                out += chunk
            if not asked and b"[K/f]" in out:
                os.write(master, answer.encode() + b"\n")
                asked = True
        return proc.wait(timeout=60), out.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def _not_running(gaps: list[Any]) -> list[tuple[int, int | None]]:
    return sorted({(g.start_ns, g.end_ns) for g in gaps if g.reason == GATEWAY_NOT_RUNNING})


def test_demo_keeps_a_history_only_when_told_and_deletes_it_only_when_told(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    db = tmp_path / "data" / "demo.db"
    first = _demo(tmp_path, cfg)
    assert first.returncode == 0, first.stderr
    assert "backfilled 1 days of history" in first.stdout
    # --port 0: the URLs carry the port the API got
    ports = set(re.findall(r"http://127\.0\.0\.1:(\d+)/", first.stdout))
    assert len(ports) == 1 and ports != {"0"}, first.stdout
    # the printed example's date is the plant's yesterday (Asia/Shanghai), not UTC's
    (day,) = re.findall(r"shift=early&date=(\d{4}-\d{2}-\d{2})'  \(Asia/Shanghai\)", first.stdout)
    plant_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    assert date.fromisoformat(day) in (plant_today - timedelta(days=1), plant_today - timedelta(days=2))
    with SqliteStore(db) as s:
        last = s.last_ts([t.tag_id for t in s.tags()])
        assert last is not None
        assert _not_running(s.gaps(None, 0, 2**62)) == []
    size = db.stat().st_size

    # no flag, no terminal: refused in one sentence naming both choices; nothing touched
    refused = _demo(tmp_path, cfg)
    assert refused.returncode == 2
    (sentence,) = refused.stderr.strip().splitlines()
    assert str(db) in sentence and "--keep" in sentence and "--fresh" in sentence, sentence
    assert "backfilled" not in refused.stdout
    with SqliteStore(db) as s:
        assert s.last_ts([t.tag_id for t in s.tags()]) == last

    # --keep: no backfill on top; the time the demo was stopped is a true gap
    started = time.time_ns()
    kept = _demo(tmp_path, cfg, "--keep")
    assert kept.returncode == 0, kept.stderr
    assert "backfilled" not in kept.stdout and "kept the stored history" in kept.stdout
    with SqliteStore(db) as s:
        gaps = _not_running(s.gaps(None, 0, 2**62))
        assert gaps, "the stop between the runs is a recorded gap"
        # from the first run's last heartbeat (it collected live until its stop) to this start
        assert all(last - 5 * NS <= a < started and b is not None and b >= started
                   for a, b in gaps), (gaps, last, started)
        assert (s.last_ts([t.tag_id for t in s.tags()]) or 0) > last
    assert db.stat().st_size >= size

    # asked on a terminal, "f": deleted and backfilled anew (the kept run's gap gone with it),
    # as --fresh does
    code, fresh = _demo_asked(tmp_path, cfg, "f")
    assert code == 0, fresh
    assert "[k]eep it" in fresh and "backfilled 1 days of history" in fresh, fresh
    with SqliteStore(db) as s:
        assert all(a >= started for a, _ in _not_running(s.gaps(None, 0, 2**62)))

    both = _demo(tmp_path, cfg, "--keep", "--fresh")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_demo_help_says_what_it_does_with_existing_data() -> None:
    r = subprocess.run([sys.executable, "-m", "api.cli", "demo", "--help"],
                       capture_output=True, text=True, timeout=60)
    text = " ".join(r.stdout.split())
    assert "--keep" in text and "--fresh" in text
    assert "never deletes from InfluxDB" in text and "without one the demo refuses" in text


@pytest.mark.influxdb
def test_demo_on_influxdb_never_backfills_on_top_nor_records_a_false_gap(
    tmp_path: Path, influxdb16: Any
) -> None:
    meta = tmp_path / "meta.db"
    cfg = _config(tmp_path, {"type": "influx", "api": "v1", "url": influxdb16.url,
                             "database": "tierproof", "meta_path": str(meta),
                             "spool": {"path": str(tmp_path / "spool")}})

    def count() -> int:
        r = influxdb16.query('SELECT count("value") FROM "tierproof" WHERE "signal" = \'state\'',
                            "tierproof")
        series = r["results"][0].get("series") or [{"values": [[0, 0]]}]
        return int(series[0]["values"][0][1])

    first = _demo(tmp_path, cfg)
    assert first.returncode == 0, first.stderr
    assert "backfilled 1 days of history" in first.stdout
    before = wait_for(count, 30, "the backfill in InfluxDB")

    # (without a flag it refuses as on the embedded store: the same code)
    fresh = _demo(tmp_path, cfg, "--fresh")
    assert fresh.returncode == 2 and "does not delete" in fresh.stderr and "--keep" in fresh.stderr
    assert count() == before  # nothing written on top

    # the data deleted by hand, the local metadata (heartbeats of the first run) kept: a new
    # history is backfilled, and its time is no "gateway not running" gap
    influxdb16.query('DROP MEASUREMENT "tierproof"', "tierproof")
    started = time.time_ns()
    again = _demo(tmp_path, cfg)
    assert again.returncode == 0, again.stderr
    assert "backfilled 1 days of history" in again.stdout
    with SqliteStore(meta) as s:
        for a, _ in _not_running(s.gaps(None, 0, 2**62)):
            assert a >= started, "a gap over the backfilled history"


def test_run_port_0_prints_the_port_it_listens_on(tmp_path: Path) -> None:
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["devices"] = []
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "run.db")}
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    headers = config_key_headers(cfg, "read")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "--config", str(cfg),
                                 "--port", "0", "--duration", "120"], stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        port = int(wait_for(lambda: re.findall(r"API on http://127\.0\.0\.1:(\d+)", log.read_text()),
                            60, "the printed address")[0])
        assert port not in (0, free_port())
        r = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api/v1/kpis", headers=headers,
                                       timeout=10), 60, "the API on the printed port")
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_an_unreachable_device_is_named_once_per_line(tmp_path: Path) -> None:
    """One line per failed connect, naming the device once (pymodbus's own "Failed to
    connect" line, which repeated the address, is kept at DEBUG)."""
    port = free_port()  # nothing listens there
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump({
        "version": 1,
        "assets": [{"path": "acme/stamping/line1/press-1", "ideal_cycle_time_s": 12}],
        "devices": [{"name": "press-plc", "protocol": "modbus", "host": "127.0.0.1", "port": port,
                     "tags": [{"name": "state", "asset": "acme/stamping/line1/press-1",
                               "role": "state", "address": 0,
                               "enum": {0: "NotExecuting", 1: "Executing"}}]}],
        "store": {"type": "sqlite", "path": str(tmp_path / "run.db")},
        "api": {"auth": {"required": False}},
    }))
    r = subprocess.run([sys.executable, "-m", "api.cli", "run", "--config", str(cfg), "--port", "0",
                        "--duration", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    lines = [x for x in (r.stdout + r.stderr).splitlines() if f"127.0.0.1:{port}" in x]
    assert lines, r.stderr
    assert not [x for x in lines if "pymodbus" in x], lines
    for line in lines:
        assert line.count("press-plc") == 1 and line.count(str(port)) == 1, line


def test_make_demo_says_what_it_installs(tmp_path: Path) -> None:
    """A first `make demo` spends about half a minute installing: pip's own lines show it
    (not -q), after a line saying what is happening."""
    venv = tmp_path / "venv"
    r = subprocess.run(["make", "-n", "-B", "run-venv", f"VENV={venv}"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = r.stdout.splitlines()
    (install,) = [x for x in steps if "pip install" in x and "-e ." in x]
    assert " -q" not in install and "--quiet" not in install, install
    said = steps[steps.index(install) - 1]
    assert said.startswith("echo") and "installing tierproof" in said, steps
