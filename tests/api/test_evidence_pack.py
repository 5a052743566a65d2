"""The evidence pack (issue 17): ``write_pack`` over a real SQLite store holding two days of
the simulated demo plant (its hourly and daily roll-ups kept, as a gateway has them), then
``verify_pack`` from the pack alone; every kind of tampering detected with its own message;
``tierproof evidence`` / ``tierproof verify`` as a user runs them; the signing key's file."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from api.cli import main
from api.evidence import Mismatch, load_or_create_key, public_pem, verify_pack, write_pack
from api.evidence import layout as L
from api.evidence.pack import sign_pack
from api.evidence.verify import REL_TOL
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import load_settings
from config.api_auth import ConfiguredKey
from config.loader import shipped_config
from config.settings import Settings
from config.times import to_ns
from kpi import Kpis, TimeElements
from store.sqlite import SqliteStore
from tests.helpers import two_day_plant


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    """The shipped demo plant (its declared evidence included) with two days of history, its
    roll-ups kept (the assessment reads them, verify recomputes from raw samples), and two
    gaps in the current window: a device unreachable for two hours, and one asset of another
    device for one hour."""
    tmp = tmp_path_factory.mktemp("evidence")
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    cfg, _ = two_day_plant(tmp, data)
    settings = load_settings(cfg)
    start = to_ns(datetime.fromisoformat(settings.kpi.current.start))
    with SqliteStore(Path(settings.store.path)) as store:
        by_device = {t.device: t.asset for t in store.tags()}
        (d1, _), (d2, a2) = sorted(by_device.items())[:2]
        g = store.open_gap(d1, start + 3 * HOUR, "device unreachable (test)")
        store.close_gap(g, start + 5 * HOUR)
        g = store.open_gap(d2, start + 7 * HOUR, "edge node offline (test)", a2)
        store.close_gap(g, start + 8 * HOUR)
        RollupMaintainer(KpiService(settings, store), backfill_days=None).run_once()
    return cfg, settings


@pytest.fixture(scope="module")
def pack(plant: tuple[Path, Settings], tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, settings = plant
    out = tmp_path_factory.mktemp("pack") / "pack"
    key = load_or_create_key(out.parent / "evidence_key.pem")
    with SqliteStore(Path(settings.store.path)) as store:
        service = KpiService(settings, store)
        assert service.use_rollups  # the gateway's path: roll-up rows where they are
        write_pack(out, settings, service, key)
    return out


@pytest.fixture
def copy(pack: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "pack"
    shutil.copytree(pack, dest)
    return dest


HOUR = 3_600_000_000_000


def _rows(p: Path) -> list[dict[str, str]]:
    import csv
    with p.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_pack_holds_the_contracted_files_and_columns(pack: Path, plant: tuple[Path, Settings]) -> None:
    _, settings = plant
    files = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())
    assert files == sorted([L.ASSESSMENT, L.VERSIONS, L.CONFIG, L.CRITERIA, L.DECLARED, L.HOURLY,
                            L.SAMPLES, L.STATES, L.GAPS, L.PLANNED, L.PUBLIC_KEY, L.MANIFEST,
                            L.SIGNATURE, L.REPORT, L.LOSSES, L.STOPS, L.EVENTS, L.ANNOTATIONS])
    for rel, cols in ((L.HOURLY, L.HOURLY_COLUMNS), (L.SAMPLES, L.SAMPLES_COLUMNS),
                      (L.STATES, L.STATES_COLUMNS), (L.GAPS, L.GAPS_COLUMNS),
                      (L.PLANNED, L.PLANNED_COLUMNS), (L.EVENTS, L.EVENTS_COLUMNS),
                      (L.ANNOTATIONS, L.ANNOTATIONS_COLUMNS)):
        assert (pack / rel).read_text().splitlines()[0] == ",".join(cols), rel
    assert L.HOURLY_COLUMNS[3:] == tuple(TimeElements.__dataclass_fields__)
    hourly = _rows(pack / L.HOURLY)
    assessment = json.loads((pack / L.ASSESSMENT).read_text())
    # one row per asset per hour of each window: the edge hours partial, with their real length
    for label, key in (("baseline", "baseline_window"), ("current", "window")):
        first = [r for r in hourly if r["window"] == label and r["asset"] == settings.assets[0].path]
        assert first[0]["hour_start"] == assessment[key]["from"].split(".")[0].rstrip("Z") + "Z"
        assert 0 < float(first[0]["window_s"]) < 3600 and float(first[1]["window_s"]) == 3600.0
        assert first[1]["hour_start"].endswith(":00:00Z")
        assert len({r["asset"] for r in hourly if r["window"] == label}) == len(settings.assets)
    samples = _rows(pack / L.SAMPLES)
    assert samples[0]["ts"].endswith("Z") and len(samples[0]["ts"].split(".")[1]) == 10
    keys = [(r["tag"], r["ts"]) for r in samples]
    assert keys == sorted(keys)
    # each tag's last sample before the window's start is in: its value holds at the start
    start = assessment["baseline_window"]["from"]
    assert all(any(r["ts"] < start for r in samples if r["tag"] == t) for t in {r["tag"] for r in samples})
    gaps = _rows(pack / L.GAPS)
    reasons = {r["reason"] for r in gaps}
    assert reasons == {"device unreachable (test)", "edge node offline (test)"}
    # the device-wide gap once per asset of the device, the asset's own once
    assert sum(r["reason"] == "edge node offline (test)" for r in gaps) == 1
    assert sum(r["reason"] == "device unreachable (test)" for r in gaps) >= 1
    gap = next(r for r in gaps if r["reason"] == "edge node offline (test)")
    states = _rows(pack / L.STATES)
    # inside the gap the state is unknown (empty), never carried across it
    assert any(r["asset"] == gap["asset"] and r["start"] == gap["start"] and r["state"] == ""
               for r in states)
    assert {r["state"] for r in states} <= {"", "NotAvailable", "OutOfService", "NotExecuting", "Executing"}
    assert "Executing" in {r["state"] for r in states} and "Processing" in {r["mode"] for r in states}
    versions = json.loads((pack / L.VERSIONS).read_text())
    assert set(versions) == {"criteria_version", "algorithm_version", "config_sha256",
                             "tierproof_version", "created"}
    assert versions["criteria_version"] == assessment["criteria_version"]
    declared = json.loads((pack / L.DECLARED).read_text())
    assert declared["items"]["maturity"]["version"] == 0  # the configuration's
    assert declared["items"]["maturity"]["value"]["supplied_by"] == "demo quality manager"
    manifest = json.loads((pack / L.MANIFEST).read_text())
    assert manifest["format"] == L.FORMAT
    assert set(manifest["files"]) == set(files) - {L.MANIFEST, L.SIGNATURE}


def test_secrets_are_redacted_and_the_fingerprint_is_reproduced() -> None:
    """config.yaml holds every secret as ***; verify loads it back with the gateway's
    fingerprint (a configured API key, which must be 32 characters, included)."""
    from api.evidence.pack import redacted_config
    from api.evidence.verify import load_pack_config
    from config.fingerprint import config_fingerprint

    api_key_value = "k" * 40
    for name, secret, env in (("examples/central.yaml", "s3cr3t-token", {"INFLUX_TOKEN": "s3cr3t-token"}),
                              ("examples/mqtt.yaml", "change-me", {}),
                              ("demo.yaml", api_key_value, {})):
        settings = load_settings(shipped_config(name), env=env)
        if name == "demo.yaml":
            auth = settings.api.auth.model_copy(update={"keys": [ConfiguredKey(
                name="grafana", key=SecretStr(api_key_value))]})
            settings = Settings.model_validate({**settings.model_dump(mode="python"),
                                                "api": settings.api.model_copy(update={"auth": auth})})
        text = yaml.safe_dump(redacted_config(settings))
        assert secret not in text and "***" in text and "**********" not in text, name
        assert config_fingerprint(load_pack_config(text.encode())) == config_fingerprint(settings), name


def test_verify_recomputes_the_pack_and_its_kpis_equal_the_assessment(pack: Path) -> None:
    report = str(verify_pack(pack))
    assert "signature: valid" in report and "every SHA-256 matches" in report
    assert "rows recomputed from the samples" in report and "verdicts" in report
    # the recomputed assessment is what verify compared with; the pack's KPIs are also
    # those of its hourly rows: summed per asset over the current window, Kpis.of them
    assessment = json.loads((pack / L.ASSESSMENT).read_text())
    hourly = _rows(pack / L.HOURLY)
    # an asset with the 2-hour device gap: the rows are parts of their local days (the
    # assessment's unit), and a day computed on its own counts a state sampled before a gap
    # unknown after it, as the whole window does (algorithm version 4)
    gap = next(r for r in _rows(pack / L.GAPS) if r["reason"] == "device unreachable (test)")
    asset = gap["asset"]
    rows = [r for r in hourly if r["window"] == "current" and r["asset"] == asset]
    summed = {f: sum(float(r[f]) for r in rows) for f in ("known_s", "apt_s", "pbt_s")}
    got = assessment["assets"][asset]
    for f in ("known_s", "apt_s", "pbt_s"):
        assert summed[f] == pytest.approx(got["elements"][f], rel=1e-9), f
    assert got["elements"]["known_s"] < got["elements"]["pbt_s"]  # the gap is unknown time
    assert Kpis.of(TimeElements(known_s=summed["known_s"], apt_s=summed["apt_s"])).availability \
        == pytest.approx(got["availability"], rel=1e-9)


def _flip(p: Path, at: int | None = None) -> None:
    data = bytearray(p.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", [L.ASSESSMENT, L.VERSIONS, L.CONFIG, L.CRITERIA, L.DECLARED,
                                 L.HOURLY, L.SAMPLES, L.STATES, L.GAPS, L.PLANNED, L.PUBLIC_KEY,
                                 L.REPORT])
def test_a_flipped_byte_in_any_file_is_named(copy: Path, rel: str) -> None:
    _flip(copy / rel, at=len((copy / rel).read_bytes()) - 2)
    with pytest.raises(Mismatch, match=rf"^{rel}: SHA-256: expected [0-9a-f]{{64}} \(manifest\), "
                                       r"found [0-9a-f]{64}: the file was changed after"):
        verify_pack(copy)


def test_a_flipped_byte_in_the_manifest_fails_the_signature(copy: Path) -> None:
    # a byte of a hash in the manifest: still JSON, no longer what was signed
    text = (copy / L.MANIFEST).read_text()
    i = text.index('"', text.index(L.HOURLY) + len(L.HOURLY) + 2) + 5
    (copy / L.MANIFEST).write_text(text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:])
    with pytest.raises(Mismatch, match=r"^manifest.sig: the signature does not match manifest.json"):
        verify_pack(copy)


def test_a_flipped_signature_byte_fails(copy: Path) -> None:
    sig = bytearray(base64.b64decode((copy / L.SIGNATURE).read_bytes().strip()))
    sig[10] ^= 0x01
    (copy / L.SIGNATURE).write_bytes(base64.b64encode(bytes(sig)))
    with pytest.raises(Mismatch, match=r"^manifest.sig: the signature does not match"):
        verify_pack(copy)


def test_a_removed_file_and_an_added_file_are_named(copy: Path) -> None:
    (copy / L.GAPS).unlink()
    with pytest.raises(Mismatch, match=r"^inputs/gaps.csv: listed in manifest.json but missing"):
        verify_pack(copy)
    (copy / L.GAPS).write_text(",".join(L.GAPS_COLUMNS) + "\n")
    (copy / "inputs" / "extra.csv").write_text("a,b\n")
    with pytest.raises(Mismatch, match=r"^inputs/extra.csv: not listed in manifest.json \(a file added"):
        verify_pack(copy)


def _edit_hourly(pack: Path) -> tuple[int, str]:
    """Raise one hour's apt_s by 60 s; returns (its line number, the value it had)."""
    lines = (pack / L.HOURLY).read_text().splitlines()
    col = L.HOURLY_COLUMNS.index("apt_s")
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if float(cells[col]) > 100:
            old = cells[col]
            cells[col] = repr(float(old) + 60)
            lines[n - 1] = ",".join(cells)
            (pack / L.HOURLY).write_text("\n".join(lines) + "\n")
            return n, old
    raise AssertionError("no producing hour")


def _rehash(pack: Path, key: Ed25519PrivateKey | None) -> None:
    """A manifest over the pack's files as they are now; signed by ``key`` (its public key put
    in the pack), or, without one, keeping the old signature."""
    manifest = json.loads((pack / L.MANIFEST).read_text())
    sig = (pack / L.SIGNATURE).read_bytes()
    if key is not None:
        (pack / L.PUBLIC_KEY).write_bytes(public_pem(key.public_key()))
    (pack / L.MANIFEST).unlink()
    (pack / L.SIGNATURE).unlink()
    sign_pack(pack, key or Ed25519PrivateKey.generate(), manifest["created"])
    if key is None:
        doc = json.loads((pack / L.MANIFEST).read_text())
        doc["public_key"] = manifest["public_key"]  # claims the gateway's key, without it
        (pack / L.MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
        (pack / L.SIGNATURE).write_bytes(sig)


def test_a_manifest_rehashed_without_the_key_fails(copy: Path) -> None:
    _edit_hourly(copy)
    _rehash(copy, None)
    with pytest.raises(Mismatch, match=r"^manifest.sig: the signature does not match manifest.json"):
        verify_pack(copy)


def test_a_pack_resigned_by_another_key_fails_its_recomputation_and_the_pinned_key(
    copy: Path, pack: Path,
) -> None:
    line, old = _edit_hourly(copy)
    _rehash(copy, Ed25519PrivateKey.generate())
    with pytest.raises(Mismatch, match=rf"^inputs/hourly.csv: line {line} \(demo/.*\) apt_s: "
                                       rf"expected {old}, found "):
        verify_pack(copy)
    (copy.parent / "gateway.pem").write_bytes((pack / L.PUBLIC_KEY).read_bytes())
    with pytest.raises(Mismatch, match=r"^manifest.json: public_key: the pack is signed by key \S+, "
                                       r"not by the key of .*gateway.pem"):
        verify_pack(copy, copy.parent / "gateway.pem")


def test_an_edited_assessment_figure_fails_its_recomputation(copy: Path) -> None:
    """Re-signed (an attacker's own key): only recomputation can tell; it names the field."""
    doc = json.loads((copy / L.ASSESSMENT).read_text())
    point = doc["figures"]["automation_rate"]["value"]["point"]
    doc["figures"]["automation_rate"]["value"]["point"] = point * (1 + 100 * REL_TOL)
    (copy / L.ASSESSMENT).write_text(json.dumps(doc))
    _rehash(copy, Ed25519PrivateKey.generate())
    with pytest.raises(Mismatch, match=r"^assessment.json: figures.automation_rate.value.point: "
                                       r"recomputed 0\.\d+, found 0\.\d+"):
        verify_pack(copy)


def test_an_edited_sample_fails_the_hourly_rows(copy: Path) -> None:
    lines = (copy / L.SAMPLES).read_text().splitlines()
    i = next(n for n, x in enumerate(lines) if "/total_count," in x and n > 10)
    cells = lines[i].split(",")
    cells[4] = repr(float(cells[4]) + 500)  # a counter jump: parts never made
    lines[i] = ",".join(cells)
    (copy / L.SAMPLES).write_text("\n".join(lines) + "\n")
    _rehash(copy, Ed25519PrivateKey.generate())
    with pytest.raises(Mismatch, match=r"^inputs/hourly.csv: line \d+ \(demo/.*\) \w+: expected "):
        verify_pack(copy)


def test_the_wrong_public_key_is_refused(pack: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(Mismatch, match=r"^manifest.json: public_key: the pack is signed by key"):
        verify_pack(pack, other)
    assert "the key of" in str(verify_pack(pack, pack / L.PUBLIC_KEY))


def test_the_signing_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "evidence_key.pem"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_pem(load_or_create_key(path).public_key()) == public_pem(key.public_key())
    assert not list(path.parent.glob(".*tmp"))


def test_the_cli_writes_prints_the_key_and_verifies(
    plant: tuple[Path, Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands as a user runs them (``api.cli.main``, in process: the same code as the
    console script without another interpreter's start-up)."""
    cfg, settings = plant
    out = tmp_path / "pack"
    assert main(["evidence", "--config", str(cfg), "--out", str(out), "--tier", "basic"]) == 0
    assert "evidence pack written to" in capsys.readouterr().out
    key_file = Path(settings.store.path).parent / "evidence_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert main(["evidence", "--config", str(cfg), "--print-public-key"]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "gateway.pem").write_text(pem)
    assert list(json.loads((out / L.ASSESSMENT).read_text())["tiers"]) == ["basic"]
    assert main(["verify", str(out), "--public-key", str(tmp_path / "gateway.pem")]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"OK: {out} verifies") and "the key of" in said
    _flip(out / L.STATES)
    assert main(["verify", str(out)]) == 1
    assert capsys.readouterr().err.startswith("tierproof: inputs/states.csv: SHA-256: expected ")
    assert main(["evidence", "--config", str(cfg), "--out", str(out)]) == 1
    assert "exists and is not an empty directory" in capsys.readouterr().err


def _edit_lines(rel: str, edit: Callable[[list[str]], None]) -> Callable[[Path], None]:
    def apply(pack: Path) -> None:
        lines = (pack / rel).read_text().splitlines()
        edit(lines)
        (pack / rel).write_text("\n".join(lines) + "\n")
    return apply


def _set(row: int, column: int, value: str) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        cells = lines[row].split(",")
        cells[column] = value
        lines[row] = ",".join(cells)
    return edit


def _renamed(row: int, column: int) -> Callable[[list[str]], None]:
    """A state name other than the row's: "OutOfService", or "Executing" where it is that
    already (the first state of a pack made at night often is: setting it changed nothing and
    verify rightly found no mismatch, CI rehearsal /tmp/ci61 at 19:00 UTC)."""
    def edit(lines: list[str]) -> None:
        name = lines[row].split(",")[column]
        _set(row, column, "Executing" if name == "OutOfService" else "OutOfService")(lines)
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_edit_lines(L.HOURLY, lambda lines: lines.__setitem__(0, lines[0].replace("apt_s", "apt"))),
     r"^inputs/hourly.csv: header: expected asset,window,hour_start,window_s,.*apt_s.*, found "),
    (_edit_lines(L.HOURLY, lambda lines: lines.pop()),
     r"^inputs/hourly.csv: line \d+: expected a row demo/\S+,current,\S+Z, found the end of the file"),
    (_edit_lines(L.PLANNED, _set(1, 2, "2020-01-01T00:00:00Z")),
     r"^inputs/planned.csv: line 2 \(demo/\S+\) end: expected \S+Z, found 2020-01-01T00:00:00Z"),
    (_edit_lines(L.STATES, _renamed(1, 3)),
     r"^inputs/states.csv: line 2 \(demo/\S+\) state: expected \w+, found (OutOfService|Executing)"),
    (_edit_lines(L.SAMPLES, _set(1, 0, "demo/nowhere/line9/ghost/state")),
     r"^inputs/samples.csv: line 2: tag 'demo/nowhere/line9/ghost/state' is not a tag of config.yaml"),
    (_edit_lines(L.REPORT, lambda lines: lines.insert(len(lines) // 2, "<p>OEE 99.9 %</p>")),
     r"^report.html: differs from the report rendered again from the pack's inputs"),
], ids=["hourly header", "hourly row removed", "planned interval", "state name", "unknown tag",
        "report text"])
def test_a_resigned_pack_with_edited_inputs_names_file_line_and_field(
    copy: Path, edit: Callable[[Path], None], message: str,
) -> None:
    edit(copy)
    _rehash(copy, Ed25519PrivateKey.generate())
    with pytest.raises(Mismatch, match=message):
        verify_pack(copy)


def test_a_window_starting_after_a_gap_holds_that_gap_and_verifies(
    plant: tuple[Path, Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A window that starts just after the 2-hour device gap: its state sampled before the gap
    is unknown until the next sample (kpi/4), so the pack must hold the gap that ended before
    the window's start, or verify disagrees with a legitimate pack."""
    cfg, settings = plant
    start = to_ns(datetime.fromisoformat(settings.kpi.current.start))
    iso = lambda ns: datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()  # noqa: E731
    out = tmp_path / "pack"
    assert main(["evidence", "--config", str(cfg), "--out", str(out), "--tier", "basic",
                 "--from", iso(start + 5 * HOUR + 1_000_000_000), "--to", iso(start + 9 * HOUR)]) == 0
    capsys.readouterr()
    assert any(r["reason"] == "device unreachable (test)" for r in _rows(out / L.GAPS))
    assert main(["verify", str(out)]) == 0, capsys.readouterr().err
