"""The ``tierproof`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config.errors import ConfigError, TierproofError
from config.loader import load_settings, shipped_config
from config.settings import Settings, parse_instant

log = logging.getLogger("tierproof.cli")
_NS = 1_000_000_000

EPILOG = """\
examples:
  tierproof demo                         simulated plant + collectors + store + API on :8000
  tierproof check-config plant.yaml      validate a configuration file
  tierproof run --config plant.yaml      run the gateway for a real plant
  tierproof simulate --config config/demo.yaml --truth truth.json
"""


def _settings(path: str | None) -> Settings:
    return load_settings(path or shipped_config("demo.yaml"))


def _with_store_path(settings: Settings, path: Path) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"path": str(path)})})


async def _serve(app: object, host: str, port: int, duration: float | None) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve())
    try:
        if duration is None:
            await task
        else:
            done, _ = await asyncio.wait({task}, timeout=duration)
            if not done:
                server.should_exit = True
                await task
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise


def backfill(settings: Settings, plant: object, tag_ids: dict[str, int], store: object, now: datetime) -> int:
    """Write the simulated history [now - history_days, now) into the store; return points."""
    sim = settings.simulation
    assert sim is not None
    end_ns = int(now.timestamp() * 1e6) * 1000
    start_ns = end_ns - int(sim.history_days * 86400) * _NS
    points, t0 = 0, time.monotonic()
    for batch in plant.history_batches(tag_ids, start_ns, end_ns):  # type: ignore[attr-defined]
        store.write(batch)  # type: ignore[attr-defined]
        points += len(batch)
    print(f"  backfilled {sim.history_days:g} days of history: {points:,} samples "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return points


async def _demo(args: argparse.Namespace) -> int:
    from simulators import Plant, serve_devices
    from store import open_store

    from .app import create_app
    from .gateway import tag_records

    settings = _settings(args.config)
    if settings.simulation is None:
        raise ConfigError(f"{args.config}: the demo needs a simulation: section")
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    db = data / "demo.db"
    for suffix in ("", "-wal", "-shm"):  # the demo starts from a fresh history every time
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = _with_store_path(settings, db)
    now = datetime.now(UTC)
    print(f"tierproof demo: {len(settings.assets)} simulated machines, store {db}", flush=True)
    plant = Plant(settings, now=now)
    store = open_store(settings.store)
    try:
        tag_ids = store.register_tags(tag_records(settings))
        backfill(settings, plant, tag_ids, store, now)
        async with serve_devices(settings, plant):
            app = create_app(settings, store=store)
            url = f"http://{args.host}:{args.port}"
            print(f"  dashboard  {url}/\n  API docs   {url}/docs\n  KPIs       {url}/api/v1/kpis",
                  flush=True)
            print("  press Ctrl-C to stop" if args.duration is None else
                  f"  stopping after {args.duration:g} s", flush=True)
            await _serve(app, args.host, args.port, args.duration)
    finally:
        store.close()
    return 0


async def _run(args: argparse.Namespace) -> int:
    from .app import create_app

    settings = load_settings(args.config)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    app = create_app(settings)
    print(f"tierproof: {len(settings.devices)} devices, API on http://{host}:{port}", flush=True)
    await _serve(app, host, port, args.duration)
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from simulators import Plant, serve_devices, write_truth

    settings = _settings(args.config)
    if settings.simulation is None:
        raise ConfigError(f"{args.config}: simulate needs a simulation: section")
    now = parse_instant(args.at) if args.at else datetime.now(UTC)
    if args.truth:
        write_truth(settings, args.truth, now=now)
        print(f"wrote ground truth of the current window to {args.truth}")
        return 0
    plant = Plant(settings, now=now)
    async with serve_devices(settings, plant) as running:
        for line in running.describe():
            print(f"  {line}", flush=True)
        print("simulating; Ctrl-C to stop", flush=True)
        if args.duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(args.duration)
    return 0


def _check(args: argparse.Namespace) -> int:
    status = 0
    for f in args.files:
        try:
            s = load_settings(f)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
        else:
            n_tags = len(s.all_tags())
            print(f"{f}: OK ({len(s.assets)} assets, {len(s.devices)} devices, {n_tags} tags)")
    return status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierproof",
        description="Edge gateway: collect factory telemetry, store it, serve auditable KPIs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run a simulated plant end to end with the API and dashboard",
                       description="Start simulated machines (history backfilled so KPIs exist at "
                       "once), their collectors, the embedded store and the API on 127.0.0.1.")
    d.add_argument("--config", help="configuration file (default: the shipped config/demo.yaml)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    d.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    d.add_argument("--data-dir", default="data", help="where the demo database goes (default data/)")

    r = sub.add_parser("run", help="run the gateway for a real plant",
                       description="Collect from the configured devices into the configured store "
                       "and serve the API.")
    r.add_argument("--config", required=True, help="configuration file")
    r.add_argument("--host", help="API host (default: api.host of the config)")
    r.add_argument("--port", type=int, help="API port (default: api.port of the config)")
    r.add_argument("--duration", type=float, help="stop after this many seconds")

    c = sub.add_parser("check-config", help="validate configuration files",
                       description="Print OK, or every error with file, field path and reason; "
                       "exit code 2 when a file is invalid.")
    c.add_argument("files", nargs="+", metavar="FILE")

    s = sub.add_parser("simulate", help="run the simulated machines alone, or write their ground truth",
                       description="Serve the config's simulated machines over their protocols, or "
                       "with --truth write the exact KPIs of the config's current window as JSON.")
    s.add_argument("--config", help="configuration file (default: the shipped config/demo.yaml)")
    s.add_argument("--truth", metavar="OUT.json", help="write ground-truth KPIs and exit")
    s.add_argument("--at", help="the simulation's 'now' (ISO 8601), for reproducible truth")
    s.add_argument("--duration", type=float, help="stop serving after this many seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        # the protocol stacks log every server start and client retry at INFO; ours say what matters
        for noisy in ("pymodbus", "asyncua"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "check-config":
            return _check(args)
        runner = {"demo": _demo, "run": _run, "simulate": _simulate}[args.command]
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(runner(args))
        return 130
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except TierproofError as exc:
        print(f"tierproof: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
